//! The run folder, owned by one module: the names of every file in it, the run's status, the
//! ownership marker, the one-writer lock, and the identity that says which run a folder holds.
//!
//! A harvest writes into an out dir only when it does not exist, is empty, or already holds a
//! run of ours ([`MARKER`], written before anything else; a `manifest.json` of ours from before
//! the marker existed also counts). Anything else is refused before a byte is written, so
//! `--out ~` or `--out /etc` can never delete or overwrite a user's files.
//!
//! One process at a time works on a run folder: every command that changes one (harvest,
//! identify, upload) holds an exclusive advisory lock (`flock`) on the marker for as long as it
//! runs. The kernel drops the lock when the process dies, SIGKILL included, so a stale lock
//! cannot exist. Taking the lock writes nothing, so a re-run that finds nothing to do leaves
//! the folder byte-identical.

use std::collections::BTreeMap;
use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FACES: &str = "faces.jsonl";
pub const EMBEDDINGS: &str = "embeddings.npy";
pub const TIMINGS: &str = "timings.jsonl";
pub const PROGRESS: &str = "progress.json";
pub const MANIFEST: &str = "manifest.json";
pub const SHOTS: &str = "shots.jsonl";
pub const TRACKS: &str = "tracks.jsonl";
pub const TRACK_EMBEDDINGS: &str = "track_embeddings.npy";
pub const PEOPLE: &str = "people.jsonl";
pub const PEOPLE_EMBEDDINGS: &str = "people_embeddings.npy";
pub const CROPS: &str = "crops";
/// The page that shows a run (`episode-run report`); made from the other files, never read.
pub const REPORT: &str = "report.html";
pub const CHECKPOINT: &str = "checkpoint.json";
/// Where an upload records its unfinished multipart uploads.
pub const UPLOAD_STATE: &str = ".upload-state.json";
/// What grows with the video beside the checkpoint (see `pipeline::spill`): closed tracks and
/// their mean embeddings, closed shots, and the pixels of open tracks' best faces.
pub const CLOSED_TRACKS: &str = ".closed-tracks.partial";
pub const TRACK_MEANS: &str = ".track-means.partial";
pub const SHOTS_SO_FAR: &str = ".shots-so-far.partial";
pub const BEST_FACES: &str = ".best-faces.partial";
/// The ownership marker, and the file the lock is taken on.
pub const MARKER: &str = ".episode-run";

/// A track's crop in `crops/`.
pub fn track_crop(track_id: u64) -> String {
    format!("track_{track_id}.jpg")
}

/// A person's crop in `crops/` (a copy of its best track's).
pub fn person_crop(person_id: u64) -> String {
    format!("person_{person_id}.jpg")
}

/// The result files a run publishes, besides `crops/` and the manifest that vouches for them.
const RESULTS: [&str; 8] = [FACES, EMBEDDINGS, TIMINGS, SHOTS, TRACKS, TRACK_EMBEDDINGS, PEOPLE, PEOPLE_EMBEDDINGS];

const MARKER_TEXT: &[u8] = b"episode-run run folder: written by episode-run, which only writes into folders holding this file\n";

/// Where a run stands, as `progress.json` and `manifest.json` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Done,
    /// Done, past decode problems (see the manifest's `decode_issues`).
    DoneWithErrors,
    /// Stopped by a signal; the outputs hold every frame up to there.
    Interrupted,
    Failed,
}

impl Status {
    /// Every frame was processed: the outputs are final.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Done | Status::DoneWithErrors)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::DoneWithErrors => "done_with_errors",
            Status::Interrupted => "interrupted",
            Status::Failed => "failed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("out dir {path} exists and is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("out dir {path} is not writable: {source}")]
    Unwritable { path: PathBuf, source: io::Error },
    #[error("{path} is not empty and holds no episode-run run (no {MARKER} marker): refusing to write into it, choose a new or empty --out")]
    Foreign { path: PathBuf },
    #[error("{path} is not an episode-run run folder (no {MARKER} marker and no manifest.json of ours)")]
    NotARun { path: PathBuf },
    #[error("{path} is in use by {holder}: wait for it to finish, or use another folder")]
    InUse { path: PathBuf, holder: String },
    #[error("cannot read {path} (written by another version of episode-run?): {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RunDirError + 'a {
    move |source| RunDirError::Io { action, path: path.to_path_buf(), source }
}

/// A run folder this process holds the lock on; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _marker: File,
    dir: PathBuf,
}

impl RunLock {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether a harvest may write into `dir`: it does not exist, is an empty directory, or holds a
/// run of ours. Writes nothing (so it can run before an input is fetched).
pub fn check_claimable(dir: &Path) -> Result<(), RunDirError> {
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(RunDirError::NotADirectory { path: dir.to_path_buf() }),
        Ok(_) if !is_ours(dir) && !is_empty(dir)? => Err(RunDirError::Foreign { path: dir.to_path_buf() }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

/// For a harvest: makes `dir` ours (creating it, or adopting it when empty) and locks it.
/// A folder holding anything but a run of ours is refused without writing into it.
pub fn claim(dir: &Path) -> Result<RunLock, RunDirError> {
    check_claimable(dir)?;
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|source| RunDirError::Unwritable { path: dir.to_path_buf(), source })?;
    }
    write_marker(dir)?;
    lock(dir)
}

/// For a command on an existing run (identify, upload): `dir` must hold a run of ours.
pub fn open(dir: &Path) -> Result<RunLock, RunDirError> {
    if !dir.is_dir() || !is_ours(dir) {
        return Err(RunDirError::NotARun { path: dir.to_path_buf() });
    }
    // A run made before the marker existed is adopted.
    write_marker(dir)?;
    lock(dir)
}

/// Writes the marker if it is missing, atomically (temp file, fsync, rename).
fn write_marker(dir: &Path) -> Result<(), RunDirError> {
    let marker = dir.join(MARKER);
    if marker.is_file() {
        return Ok(());
    }
    let tmp = partial_name(&marker);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(MARKER_TEXT)?;
        f.sync_all()?;
        fs::rename(&tmp, &marker)
    })();
    written.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        RunDirError::Unwritable { path: dir.to_path_buf(), source }
    })
}

/// Whether `dir` holds a run of ours: the marker, or a manifest.json written by episode-run.
pub fn is_ours(dir: &Path) -> bool {
    if fs::symlink_metadata(dir.join(MARKER)).is_ok_and(|m| m.is_file()) {
        return true;
    }
    #[derive(Deserialize)]
    struct Tool {
        tool: String,
    }
    fs::read(dir.join(MANIFEST)).ok().and_then(|b| serde_json::from_slice::<Tool>(&b).ok()).is_some_and(|t| t.tool == env!("CARGO_PKG_NAME"))
}

fn is_empty(dir: &Path) -> Result<bool, RunDirError> {
    Ok(fs::read_dir(dir).map_err(io_err("list", dir))?.next().is_none())
}

fn lock(dir: &Path) -> Result<RunLock, RunDirError> {
    let path = dir.join(MARKER);
    let file = File::open(&path).map_err(io_err("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _marker: file, dir: dir.to_path_buf() }),
        Err(TryLockError::WouldBlock) => {
            let holder = file.metadata().ok().and_then(|m| lock_holder(m.dev(), m.ino()));
            let holder = holder.map_or_else(|| "another process".to_string(), |pid| format!("process {pid}"));
            Err(RunDirError::InUse { path: dir.to_path_buf(), holder })
        }
        Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// The process holding a `flock` on the file `dev:ino`, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`).
fn lock_holder(dev: u64, ino: u64) -> Option<u32> {
    let text = fs::read_to_string("/proc/locks").ok()?;
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, id) = (f.get(1)?, f.get(4)?, f.get(5)?);
        let mut parts = id.split(':');
        let (maj, min, node) = (parts.next()?, parts.next()?, parts.next()?);
        let same = u32::from_str_radix(maj, 16).ok()? == major && u32::from_str_radix(min, 16).ok()? == minor && node.parse::<u64>().ok()? == ino;
        (*kind == "FLOCK" && same).then(|| pid.parse().ok()).flatten()
    })
}

/// Removes every result of the run a folder held, the manifest first (so nothing claims `done`
/// from then on), before a new run writes its own: old outputs are never seen beside new ones.
pub fn clear_results(dir: &Path) -> Result<(), RunDirError> {
    remove_file(&dir.join(MANIFEST))?;
    // The manifest's removal reaches the disk before anything of the new run does.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync", dir))?;
    for name in RESULTS.iter().chain([&REPORT, &UPLOAD_STATE]) {
        remove_file(&dir.join(name))?;
        remove_file(&partial_name(&dir.join(name)))?;
    }
    clear_checkpoint(dir)?;
    remove_dir(&dir.join(CROPS))?;
    remove_dir(&partial_name(&dir.join(CROPS)))
}

/// Removes the checkpoint and the state it keeps beside it (a run that completed needs neither).
pub fn clear_checkpoint(dir: &Path) -> Result<(), RunDirError> {
    for name in [CHECKPOINT, CLOSED_TRACKS, TRACK_MEANS, SHOTS_SO_FAR] {
        remove_file(&dir.join(name))?;
    }
    remove_dir(&dir.join(BEST_FACES))
}

/// Removes a file; one that is not there is fine.
fn remove_file(path: &Path) -> Result<(), RunDirError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Removes a folder and what it holds; one that is not there is fine.
fn remove_dir(path: &Path) -> Result<(), RunDirError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// How a file of a running harvest changes until the run is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// Only ever appended to while the run goes (resuming truncates it back to the checkpoint).
    Appends,
    /// Written whole, possibly again under the same name.
    Replaced,
}

/// The files an unfinished run resumes from, relative to `dir` with `/` separators: the
/// checkpoint, the growing outputs and spill files beside it, and the crops and best faces
/// written so far. What `season run` copies to S3 so that another machine can go on with the run.
pub fn resumable_state(dir: &Path) -> Result<Vec<(String, Growth)>, RunDirError> {
    let mut files = vec![(CHECKPOINT.to_string(), Growth::Replaced)];
    for name in [FACES, EMBEDDINGS, TIMINGS].map(|n| partial_name(Path::new(n))).iter().filter_map(|p| p.to_str().map(str::to_string)) {
        files.push((name, Growth::Appends));
    }
    files.extend([CLOSED_TRACKS, TRACK_MEANS, SHOTS_SO_FAR].map(|n| (n.to_string(), Growth::Appends)));
    files.retain(|(rel, _)| fs::symlink_metadata(dir.join(rel)).is_ok_and(|m| m.is_file()));
    for sub in [partial_name(Path::new(CROPS)), PathBuf::from(BEST_FACES)] {
        let folder = dir.join(&sub);
        if !folder.is_dir() {
            continue;
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&folder).map_err(io_err("list", &folder))? {
            let entry = entry.map_err(io_err("list", &folder))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(format!("{}/{}", sub.display(), entry.file_name().to_string_lossy()));
            }
        }
        names.sort();
        files.extend(names.into_iter().map(|n| (n, Growth::Replaced)));
    }
    Ok(files)
}

/// `dir/.name.partial` for `dir/name`: hidden, and never mistaken for the real file.
pub fn partial_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// What makes two harvests the same run: their outputs would be byte-identical. Recorded in the
/// checkpoint and the manifest; a run resumes or is "already harvested" only on a match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub input: InputId,
    /// The settings that change outputs ([`crate::config::Settings::output_settings`]).
    pub settings: serde_json::Value,
    /// SHA-256 of each model, by role.
    pub models: BTreeMap<String, String>,
    /// SHA-256 of the seed photos' names and bytes (not the folder's path).
    pub seeds: Option<String>,
}

/// What commands read back from a run's `manifest.json` (the harvest writes it whole, see
/// `output::manifest::Manifest`).
#[derive(Clone, Debug, Deserialize)]
pub struct ManifestHead {
    pub status: Status,
    pub identity: RunIdentity,
    /// Every setting in force.
    pub config: crate::config::Settings,
    pub input: RecordedInput,
    /// The models by role (`detector`, `embedder`).
    pub models: BTreeMap<String, RecordedModel>,
    pub threads: RecordedThreads,
    /// Every result file of the run, relative to its folder with `/` separators: what an
    /// upload sends (with `progress.json` and the manifest itself), and nothing else.
    pub files: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RecordedInput {
    pub path: PathBuf,
    pub blake3: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RecordedModel {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct RecordedThreads {
    pub budget: usize,
}

impl ManifestHead {
    /// The manifest in `dir`, if there is one of this version's shape.
    pub fn read(dir: &Path) -> Result<Self, RunDirError> {
        let path = dir.join(MANIFEST);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| RunDirError::Unreadable { path, why: e.to_string() })
    }

    /// What an upload of the completed run in `dir` sends, relative to it: the result files
    /// this manifest lists, `report.html` when there, then `progress.json` and the manifest
    /// itself, last.
    pub fn upload_names(&self, dir: &Path) -> Vec<String> {
        let mut names = self.files.clone();
        if dir.join(REPORT).is_file() {
            names.push(REPORT.to_string());
        }
        names.extend([PROGRESS, MANIFEST].map(str::to_string));
        names
    }
}

/// The input file as last seen: its canonical path, size and modification time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputId {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub mtime_ns: u64,
}

impl InputId {
    pub fn of(path: &Path) -> Self {
        let meta = fs::metadata(path).ok();
        Self {
            path: fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            size_bytes: meta.as_ref().map_or(0, |m| m.len()),
            mtime_ns: meta.as_ref().map_or(0, mtime_ns),
        }
    }
}

impl RunIdentity {
    /// What differs between the run recorded here and `now`, in words, or `None` for the same run.
    /// The input is the same when path, size and mtime are; otherwise, for a completed run
    /// whose `blake3` is known, when the file `now.input.path` has that BLAKE3 (a touched or
    /// copied file of the same bytes).
    pub fn differs(&self, now: &RunIdentity, blake3_there: Option<&str>) -> Option<String> {
        let input = || format!("input ({} there)", self.input.path.display());
        if self.input.size_bytes != now.input.size_bytes {
            return Some(input());
        }
        if self.input != now.input {
            let same = blake3_there.is_some_and(|there| blake3_file(&now.input.path).is_ok_and(|h| h == there));
            if !same {
                return Some(input());
            }
        }
        if let Some(what) = settings_differ(&self.settings, &now.settings) {
            return Some(what);
        }
        for (role, sha) in &now.models {
            if self.models.get(role) != Some(sha) {
                return Some(format!("{role} model"));
            }
        }
        if self.models.len() != now.models.len() {
            return Some("set of models".into());
        }
        if self.seeds != now.seeds {
            let there = if self.seeds.is_some() { "other photos" } else { "none" };
            return Some(format!("seeds ({there} there)"));
        }
        None
    }
}

/// The first setting that differs, as `setting section.key (old there, new now)`.
fn settings_differ(there: &serde_json::Value, ours: &serde_json::Value) -> Option<String> {
    let (Some(there), Some(ours)) = (there.as_object(), ours.as_object()) else { return Some("settings".into()) };
    for (section, values) in ours {
        let Some(fields) = values.as_object() else { continue };
        for (key, value) in fields {
            let old = there.get(section).and_then(|s| s.get(key)).cloned().unwrap_or_default();
            if old != *value {
                // People are a step over the run's files: no re-harvest is needed for them.
                let hint = if section == "people" { "; `episode-run people` re-groups a run without harvesting it again" } else { "" };
                return Some(format!("setting {section}.{key} ({old} there, {value} now{hint})"));
            }
        }
    }
    (there.len() != ours.len()).then(|| "settings".into())
}

/// Modification time in nanoseconds since the epoch (0 when the filesystem has none).
pub fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64)
}

/// The result files of the run in `dir` as they are now (see [`ManifestHead::files`]): the
/// published outputs, then every crop, sorted.
pub fn result_files(dir: &Path) -> Result<Vec<String>, RunDirError> {
    let mut files: Vec<String> =
        RESULTS.into_iter().filter(|name| fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file())).map(str::to_string).collect();
    let crops_dir = dir.join(CROPS);
    if crops_dir.is_dir() {
        let mut crops = Vec::new();
        for entry in fs::read_dir(&crops_dir).map_err(io_err("list", &crops_dir))? {
            let entry = entry.map_err(io_err("list", &crops_dir))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                crops.push(format!("{CROPS}/{}", entry.file_name().to_string_lossy()));
            }
        }
        crops.sort();
        files.extend(crops);
    }
    Ok(files)
}

/// BLAKE3 of a whole file (only when a cheap check could not decide).
fn blake3_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_foreign_folder_is_refused_untouched_and_an_empty_one_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("thesis");
        fs::create_dir_all(user.join("crops")).unwrap();
        fs::write(user.join("crops/thesis.txt"), b"years of work").unwrap();
        assert!(matches!(claim(&user), Err(RunDirError::Foreign { .. })));
        assert!(!user.join(MARKER).exists(), "nothing written into a foreign folder");
        assert!(matches!(open(&user), Err(RunDirError::NotARun { .. })));

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let lock = claim(&empty).unwrap();
        assert!(empty.join(MARKER).is_file());
        drop(lock);
        claim(&empty).unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(claim(&file), Err(RunDirError::NotADirectory { .. })));
    }

    #[test]
    fn a_legacy_run_with_our_manifest_is_ours() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(MANIFEST), br#"{"tool": "episode-run", "status": "done"}"#).unwrap();
        assert!(is_ours(tmp.path()));
        fs::write(tmp.path().join(MANIFEST), br#"{"tool": "other"}"#).unwrap();
        assert!(!is_ours(tmp.path()));
    }

    #[test]
    fn one_lock_holder_at_a_time_and_it_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let held = claim(tmp.path()).unwrap();
        let err = claim(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("in use by process {}", std::process::id())), "{err}");
        assert!(open(tmp.path()).is_err());
        drop(held);
        open(tmp.path()).unwrap();
    }

    #[test]
    fn clearing_a_run_removes_its_results_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for name in [MANIFEST, FACES, CHECKPOINT, ".faces.jsonl.partial", MARKER, "notes.txt"] {
            fs::write(d.join(name), b"x").unwrap();
        }
        fs::create_dir_all(d.join(CROPS)).unwrap();
        fs::write(d.join("crops/track_0.jpg"), b"x").unwrap();
        clear_results(d).unwrap();
        let mut left: Vec<String> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [MARKER, "notes.txt"]);
    }

    fn identity(stride: u64) -> RunIdentity {
        RunIdentity {
            input: InputId { path: "/v/a.mp4".into(), size_bytes: 10, mtime_ns: 5 },
            settings: json!({"sampling": {"stride": stride}, "quality": {"min_face": 20.0}}),
            models: BTreeMap::from([("detector".to_string(), "ab".to_string())]),
            seeds: None,
        }
    }

    #[test]
    fn identities_name_what_differs() {
        let a = identity(4);
        assert_eq!(a.differs(&a.clone(), None), None);
        assert_eq!(a.differs(&identity(1), None).unwrap(), "setting sampling.stride (4 there, 1 now)");
        let mut p = a.clone();
        p.settings["people"] = json!({"threshold": 0.5});
        let there = RunIdentity { settings: json!({"sampling": {"stride": 4}, "quality": {"min_face": 20.0}, "people": {"threshold": 0.4}}), ..a.clone() };
        assert!(there.differs(&p, None).unwrap().contains("people.threshold (0.4 there, 0.5 now; `episode-run people` re-groups"));
        let mut b = a.clone();
        b.input.mtime_ns = 6;
        assert_eq!(a.differs(&b, None).unwrap(), "input (/v/a.mp4 there)");
        let mut c = a.clone();
        c.models.insert("detector".into(), "cd".into());
        assert_eq!(a.differs(&c, None).unwrap(), "detector model");
        let d = RunIdentity { seeds: Some("ff".into()), ..a.clone() };
        assert_eq!(a.differs(&d, None).unwrap(), "seeds (none there)");
    }
}
