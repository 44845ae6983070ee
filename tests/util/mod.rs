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

/// The Hamilton clip's cast photos in `dir/cast`, named as a user would (a file per person).
pub fn seeds(dir: &Path) -> PathBuf {
    let s = dir.join("cast");
    std::fs::create_dir_all(&s).unwrap();
    for (file, name) in [("lin-manuel-miranda.png", "Lin-Manuel Miranda.png"), ("alex-lacamoire.png", "Alex Lacamoire.png"), ("obama.jpg", "Barack Obama.jpg")]
    {
        std::fs::copy(media(file), s.join(name)).unwrap();
    }
    s
}

/// `episode-run harvest INPUT --out OUT --quiet EXTRA…`, ready for more settings.
pub fn harvest_cmd(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("harvest").arg(input).arg("--out").arg(out).arg("--quiet").args(extra);
    cmd
}

pub fn harvest(input: &Path, out: &Path, extra: &[&str]) -> Output {
    harvest_cmd(input, out, extra).output().expect("run episode-run")
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

/// Rows of a `.npy` file of f32 as vectors, with its shape.
pub fn read_rows(path: &Path) -> (Vec<u64>, Vec<Vec<f32>>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: not a .npy file: {e}", path.display()));
    let shape = npy.shape().to_vec();
    assert_eq!(shape.len(), 2, "{}: shape {shape:?}", path.display());
    let flat: Vec<f32> = npy.into_vec().unwrap();
    let rows = if shape[1] == 0 { vec![] } else { flat.chunks(shape[1] as usize).map(<[f32]>::to_vec).collect() };
    (shape, rows)
}

/// Every JSON line of `path`, each required to be a JSON object.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{} line {}: not JSON: {e}", path.display(), i + 1));
            assert!(v.is_object(), "{} line {}: not an object", path.display(), i + 1);
            v
        })
        .collect()
}

/// The output contract of a finished run, checked file against file: valid JSON everywhere,
/// dense ids, unit-norm embedding rows each named by exactly one face (or track) in order,
/// tracks that hold the faces that name them, boxes centred inside the displayed frame, and
/// manifest counts equal to the rows of the files. Returns the manifest.
pub fn check_contract(dir: &Path) -> serde_json::Value {
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"))
    };
    let (manifest, progress) = (json("manifest.json"), json("progress.json"));
    assert_eq!(manifest["status"], "done", "{}", dir.display());
    assert_eq!(progress["status"], "done");
    let faces = json_lines(&dir.join("faces.jsonl"));
    let tracks = json_lines(&dir.join("tracks.jsonl"));
    let shots = json_lines(&dir.join("shots.jsonl"));
    let (shape, rows) = read_rows(&dir.join("embeddings.npy"));
    let (track_shape, track_rows) = read_rows(&dir.join("track_embeddings.npy"));
    let unit = |name: &str, rows: &[Vec<f32>]| {
        for (i, r) in rows.iter().enumerate() {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-3, "{name} row {i} has norm {n}");
        }
    };
    unit("embeddings.npy", &rows);
    unit("track_embeddings.npy", &track_rows);
    let (w, h) = (manifest["input"]["video"]["width"].as_f64().unwrap(), manifest["input"]["video"]["height"].as_f64().unwrap());
    let mut next_row = 0;
    let mut last_frame = 0;
    for (i, f) in faces.iter().enumerate() {
        assert_eq!(f["face_id"], i, "face ids are dense");
        let frame = f["frame_idx"].as_u64().unwrap();
        assert!(frame >= last_frame, "faces are in frame order");
        last_frame = frame;
        let b: Vec<f64> = f["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(b.len() == 4 && b[0] < b[2] && b[1] < b[3], "face {i} bbox {b:?}");
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        assert!((0.0..=w).contains(&cx) && (0.0..=h).contains(&cy), "face {i} bbox {b:?} is centred outside the {w}×{h} frame");
        if let Some(row) = f["embedding_row"].as_u64() {
            assert_eq!(row, next_row, "face {i}: embedding rows follow face order");
            assert!(f["skip_reason"].is_null(), "face {i} is embedded and skipped");
            next_row += 1;
        } else {
            assert!(f["skip_reason"].is_string(), "face {i} has neither a row nor a skip reason");
        }
        let t = f["track_id"].as_u64().unwrap() as usize;
        assert!(t < tracks.len(), "face {i} names track {t} of {}", tracks.len());
        assert_eq!(tracks[t]["shot"], f["shot"], "face {i} and its track are in one shot");
    }
    assert_eq!(next_row as usize, rows.len(), "every embedding row is named by a face");
    let mut next_track_row = 0;
    for (i, t) in tracks.iter().enumerate() {
        assert_eq!(t["track_id"], i, "track ids are dense");
        let members: Vec<_> = faces.iter().filter(|f| f["track_id"] == i).collect();
        assert_eq!(t["n_faces"], members.len(), "track {i} n_faces");
        assert_eq!(t["n_embedded"], members.iter().filter(|f| f["embedding_row"].is_u64()).count(), "track {i} n_embedded");
        assert!(members.iter().any(|f| f["face_id"] == t["best_face_id"]), "track {i}'s best face is one of its faces");
        if let Some(row) = t["embedding_row"].as_u64() {
            assert_eq!(row, next_track_row, "track rows follow track order");
            next_track_row += 1;
        }
    }
    assert_eq!(next_track_row as usize, track_rows.len(), "every track row is named by a track");
    for (i, s) in shots.iter().enumerate() {
        assert_eq!(s["shot"], i, "shot ids are dense");
    }
    let c = &manifest["counts"];
    assert_eq!(c["faces_detected"], faces.len());
    assert_eq!(c["faces_embedded"], rows.len());
    assert_eq!(c["tracks"], tracks.len());
    assert_eq!(c["shots"], shots.len());
    assert_eq!(shape[0] as usize, rows.len());
    assert_eq!(track_shape[0] as usize, track_rows.len());
    check_people(dir, &manifest, &faces, &tracks);
    for f in manifest["files"].as_array().unwrap() {
        let p = dir.join(f.as_str().unwrap());
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("manifest lists {}: {e}", p.display()));
        if p.extension().is_some_and(|e| e == "jpg") {
            assert!(bytes.starts_with(&[0xFF, 0xD8]), "{} is not a JPEG", p.display());
        }
    }
    manifest
}

/// The people layer of the contract: dense people in order of first appearance, unit rows named
/// by `embedding_row`, `person_id` on each face equal to its track's, sums over member tracks,
/// no person holding two tracks seen in one frame, a crop per person, and the manifest's count.
fn check_people(dir: &Path, manifest: &serde_json::Value, faces: &[serde_json::Value], tracks: &[serde_json::Value]) {
    let people = json_lines(&dir.join("people.jsonl"));
    let (shape, rows) = read_rows(&dir.join("people_embeddings.npy"));
    assert_eq!(shape[0] as usize, people.len(), "one people_embeddings row per person");
    assert_eq!(manifest["people"]["people"], people.len());
    let mut first_seen = 0;
    for (i, p) in people.iter().enumerate() {
        assert_eq!(p["person_id"], i, "person ids are dense");
        assert_eq!(p["embedding_row"], i);
        let n = rows[i].iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-3, "people_embeddings row {i} has norm {n}");
        let members: Vec<_> = tracks.iter().filter(|t| t["person_id"] == i).collect();
        assert_eq!(p["n_tracks"], members.len(), "person {i} n_tracks");
        let sum = |k: &str| members.iter().map(|t| t[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!((p["n_faces"].as_u64(), p["n_embedded"].as_u64()), (Some(sum("n_faces")), Some(sum("n_embedded"))), "person {i} sums");
        assert!(members.iter().any(|t| t["track_id"] == p["best_track_id"] && t["best_face_id"] == p["best_face_id"]), "person {i}'s best face is a track's");
        let first = members.iter().map(|t| t["first_frame"].as_u64().unwrap()).min().unwrap();
        assert!(first >= first_seen, "people are numbered by first appearance");
        first_seen = first;
        let span: f64 = members.iter().map(|t| t["t_end"].as_f64().unwrap() - t["t_start"].as_f64().unwrap()).sum();
        let st = p["screen_time_s"].as_f64().unwrap();
        assert!(st > 0.0 || span == 0.0, "person {i} has screen time {st}");
        assert!(dir.join(format!("crops/person_{i}.jpg")).is_file(), "crops/person_{i}.jpg");
    }
    let mut seen = std::collections::HashMap::new();
    for f in faces {
        let t = &tracks[f["track_id"].as_u64().unwrap() as usize];
        assert_eq!(f["person_id"], t["person_id"], "face {} has its track's person", f["face_id"]);
        if t["embedding_row"].is_null() {
            assert!(t["person_id"].is_null(), "track {} has a person and no embedding", t["track_id"]);
        }
        if let Some(p) = f["person_id"].as_u64() {
            let other = seen.insert((p, f["frame_idx"].as_u64().unwrap()), f["track_id"].clone());
            assert!(other.is_none_or(|o| o == f["track_id"]), "person {p} holds two tracks in frame {}", f["frame_idx"]);
        }
    }
    // The report shows the same people and tracks (tests/report.rs opens it in a browser).
    let report = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert_eq!(report.matches("<article class=\"person\" data-person=").count(), people.len(), "one report card per person");
    let with_person = tracks.iter().filter(|t| !t["person_id"].is_null()).count();
    assert_eq!(report.matches("<rect class=\"bar\" data-track=").count(), with_person, "one timeline bar per track in a person");
}

/// Waits for `child` at most `limit`; kills it and returns None when it is still running then.
pub fn wait_or_kill(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// What headless Chromium (Debian's, installed by set-up) saw of a page opened from disk.
pub struct Browsed {
    /// The DOM after the load event, serialised.
    pub dom: String,
    /// Console messages (errors, exceptions, logs): a clean page has none.
    pub console: Vec<String>,
    /// Network requests the page made (not the browser's own background ones), by URL.
    pub requests: Vec<String>,
    /// Milliseconds from navigation to the load event, as the page recorded it.
    pub load_ms: Option<u64>,
}

/// Flags for a browser with no network: every host resolves to nothing and every request
/// goes to a proxy that is not there; no background services, a throw-away profile.
fn chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

fn file_url(page: &Path) -> String {
    format!("file://{}", std::fs::canonicalize(page).unwrap().display())
}

/// Opens `page` from `file://` and returns its DOM, console and network use.
pub fn open_in_chromium(page: &Path) -> Browsed {
    let tmp = tempfile::tempdir().unwrap();
    let netlog = tmp.path().join("net.json");
    let o = chromium(&tmp.path().join("profile"))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(file_url(page))
        .output()
        .expect("chromium (installed by scripts/setup)");
    assert!(o.status.success(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let console = String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    // The page's own requests carry its file:// origin as their network isolation key.
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(&netlog).unwrap()).unwrap();
    let mut requests: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["params"]["network_isolation_key"].as_str().is_some_and(|k| k.contains("file://")))
        .filter_map(|e| e["params"]["url"].as_str())
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .map(str::to_string)
        .collect();
    requests.dedup();
    let load_ms = dom.split("data-load-ms=\"").nth(1).and_then(|s| s.split('"').next()).and_then(|s| s.parse().ok());
    Browsed { dom, console, requests, load_ms }
}

/// A `width`×`height` screenshot of `page`, as RGB pixels.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> image::RgbImage {
    let tmp = tempfile::tempdir().unwrap();
    let o = chromium(&tmp.path().join("profile"))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(file_url(page))
        .output()
        .expect("chromium (installed by scripts/setup)");
    assert!(o.status.success(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    image::open(png).unwrap().to_rgb8()
}
