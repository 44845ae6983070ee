//! What a report reads from a run folder, leniently: each file is optional and each row keeps
//! only the fields the report shows, all defaulted, so a run from an older version (or one
//! that was interrupted, or failed) renders with what its files hold. What could not be read
//! is listed, to be said on the page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::run_dir;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Face {
    pub t: f64,
    pub bbox: [f64; 4],
    pub det_score: f64,
    pub embedding_row: Option<u64>,
    pub skip_reason: Option<String>,
}

impl Face {
    /// The box's shorter side, in pixels: what `--min-face` compares.
    pub fn size(&self) -> f64 {
        (self.bbox[2] - self.bbox[0]).min(self.bbox[3] - self.bbox[1])
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Track {
    pub track_id: u64,
    pub shot: u64,
    pub t_start: f64,
    pub t_end: f64,
    pub n_faces: u64,
    pub n_embedded: u64,
    pub person_id: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Person {
    pub person_id: u64,
    pub name: Option<String>,
    pub identity: Option<crate::identify::Identity>,
    pub n_tracks: u64,
    pub n_faces: u64,
    pub screen_time_s: f64,
    pub first_t: f64,
    pub last_t: f64,
    pub shots: Vec<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Shot {
    pub shot: u64,
    pub t_start: f64,
    pub t_end: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Timing {
    pub frame_idx: u64,
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub align_ms: f64,
    pub embed_ms: f64,
    /// Seconds since the process that wrote the row started (absent before it was recorded).
    pub elapsed_s: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub status: Option<String>,
    pub frames_decoded: u64,
    pub updated_at: Option<String>,
    pub error: Option<String>,
}

/// The manifest, as far as the report reads it; every part may be missing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub version: Option<String>,
    pub git_commit: Option<String>,
    pub status: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub wall_s: Option<f64>,
    pub seeds: Option<PathBuf>,
    pub input: Option<Input>,
    pub models: BTreeMap<String, Model>,
    pub onnxruntime: Option<Runtime>,
    pub host: Option<Host>,
    pub threads: Option<Threads>,
    pub counts: Option<Counts>,
    pub timings: BTreeMap<String, Stage>,
    pub decode_issues: Vec<String>,
    pub history: Vec<serde_json::Value>,
    pub config: serde_json::Value,
    pub people: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Input {
    pub path: PathBuf,
    pub source: Option<String>,
    pub size_bytes: u64,
    pub video: Video,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub codec: String,
    pub frames_total: Option<u64>,
    pub frame_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Model {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub version: String,
    pub execution_provider: String,
    /// Why `--provider auto` ran on the CPU though the CUDA build is installed.
    pub fallback: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Host {
    pub cpu: String,
    pub cores: u64,
    pub memory_gib: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Threads {
    pub budget: u64,
    pub decode: u64,
    pub workers: u64,
    pub worker_threads: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub faces_detected: u64,
    pub faces_embedded: u64,
    pub faces_skipped: BTreeMap<String, u64>,
    pub embed_calls: u64,
    pub embed_call_crops: BTreeMap<String, u64>,
    pub shots: u64,
    pub tracks: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Stage {
    pub frames: u64,
    pub total_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

/// Everything a report is made from.
#[derive(Debug, Default)]
pub struct RunFiles {
    pub dir: PathBuf,
    pub manifest: Option<Manifest>,
    pub progress: Option<Progress>,
    pub faces: Option<Vec<Face>>,
    pub tracks: Option<Vec<Track>>,
    pub people: Option<Vec<Person>>,
    pub shots: Option<Vec<Shot>>,
    pub timings: Option<Vec<Timing>>,
    /// Files that were there but could not be read, with why.
    pub unreadable: Vec<String>,
}

impl RunFiles {
    pub fn read(dir: &Path) -> Self {
        let mut files = Self { dir: dir.to_path_buf(), ..Self::default() };
        files.manifest = files.json(run_dir::MANIFEST);
        files.progress = files.json(run_dir::PROGRESS);
        files.faces = files.jsonl(run_dir::FACES);
        files.tracks = files.jsonl(run_dir::TRACKS);
        files.people = files.jsonl(run_dir::PEOPLE);
        files.shots = files.jsonl(run_dir::SHOTS);
        files.timings = files.jsonl(run_dir::TIMINGS);
        files
    }

    /// A JSON file; `None` when it is not there or not readable.
    fn json<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        serde_json::from_slice(&bytes).map_err(|e| self.unreadable.push(format!("{name}: {e}"))).ok()
    }

    /// Rows of a published JSON-lines file; `None` when it is not there or not readable.
    fn jsonl<T: DeserializeOwned>(&mut self, name: &str) -> Option<Vec<T>> {
        let text = std::fs::read_to_string(self.dir.join(name)).ok()?;
        let rows: Result<Vec<T>, _> = text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect();
        rows.map_err(|e| self.unreadable.push(format!("{name}: {e}"))).ok()
    }

    /// The bytes of a crop in `crops/`, when there.
    pub fn crop(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(run_dir::CROPS).join(name)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_or_partial_folder_reads_as_far_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(run_dir::FACES), "{\"t\":1.5,\"bbox\":[0,0,40,30],\"det_score\":0.9}\n\n").unwrap();
        std::fs::write(dir.path().join(run_dir::TRACKS), "not json\n").unwrap();
        std::fs::write(dir.path().join(run_dir::MANIFEST), "{\"status\":\"done\",\"counts\":{\"frames_decoded\":7}}").unwrap();
        let f = RunFiles::read(dir.path());
        let faces = f.faces.as_ref().unwrap();
        assert_eq!((faces.len(), faces[0].size(), faces[0].skip_reason.clone()), (1, 30.0, None));
        assert!(f.tracks.is_none() && f.people.is_none() && f.progress.is_none());
        assert_eq!(f.unreadable.len(), 1, "{:?}", f.unreadable);
        assert!(f.unreadable[0].starts_with("tracks.jsonl"));
        assert_eq!(f.manifest.unwrap().counts.unwrap().frames_decoded, 7);
    }
}
