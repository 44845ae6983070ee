//! Helpers for the integration tests: run the real binary on real media from ../shared/media.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_episode-run")
}

/// `../shared/media/<name>`; panics with a clear message when the shared media are absent.
pub fn media(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media").join(name);
    assert!(p.is_file(), "test media missing: {} (CI provides ../shared/media)", p.display());
    p
}

pub fn hamilton() -> PathBuf {
    media("short_hamilton_clip.mp4")
}

pub fn harvest(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("harvest").arg(input).arg("--out").arg(out).arg("--quiet").args(extra);
    cmd.output().expect("run episode-run")
}

/// Runs a harvest that must succeed and returns its out dir's parsed faces and embeddings.
pub fn harvest_ok(input: &Path, out: &Path, extra: &[&str]) -> Run {
    let o = harvest(input, out, extra);
    assert!(o.status.success(), "harvest {} failed: {}", input.display(), String::from_utf8_lossy(&o.stderr));
    Run::load(out)
}

pub struct Run {
    pub faces: Vec<serde_json::Value>,
    pub faces_text: String,
    pub embeddings: Vec<Vec<f32>>,
    pub shape: Vec<u64>,
    pub manifest: serde_json::Value,
    pub progress: serde_json::Value,
}

impl Run {
    pub fn load(dir: &Path) -> Self {
        let faces_text = std::fs::read_to_string(dir.join("faces.jsonl")).unwrap();
        let faces = faces_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let bytes = std::fs::read(dir.join("embeddings.npy")).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        let shape = npy.shape().to_vec();
        let flat: Vec<f32> = npy.into_vec().unwrap();
        let embeddings = if shape[1] == 0 { vec![] } else { flat.chunks(shape[1] as usize).map(|c| c.to_vec()).collect() };
        let json = |name: &str| serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        Run { faces, faces_text, embeddings, shape, manifest: json("manifest.json"), progress: json("progress.json") }
    }

    /// Embedding of the largest embedded face: the subject of a reference photo.
    pub fn largest_face_embedding(&self) -> Vec<f32> {
        let area = |f: &serde_json::Value| {
            let b: Vec<f64> = f["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            (b[2] - b[0]) * (b[3] - b[1])
        };
        let face =
            self.faces.iter().filter(|f| f["embedding_row"].is_u64()).max_by(|a, b| area(a).total_cmp(&area(b))).expect("reference photo has an embedded face");
        self.embeddings[face["embedding_row"].as_u64().unwrap() as usize].clone()
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Frame count of the first video stream by full decode, as ffprobe reports it.
pub fn ffprobe_frame_count(path: &Path) -> u64 {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (installed by make setup)");
    String::from_utf8_lossy(&o.stdout).trim().parse().expect("ffprobe frame count")
}

/// Makes a media file with the ffmpeg CLI, failing the test if ffmpeg does.
pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().expect("ffmpeg");
    assert!(o.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Every file under `dir` (recursively), as (path relative to `dir`, full path), sorted.
pub fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), p));
            }
        }
    }
    files.sort();
    files
}
