//! A running task's checkpoints in S3, so that a task killed mid-episode goes on from where it
//! was on any machine, with an empty disk.
//!
//! After a local checkpoint (at most every `remote_checkpoint_s` seconds, and once more when a
//! signal stops the run) the task sends what changed in the run folder's resumable state
//! ([`run_dir::resumable_state`]): of a file that only grows, the bytes appended since the last
//! snapshot; of any other file, the file when its size, mtime or inode changed. All of it goes
//! in one or a few new, never rewritten objects (`.partial/<owner>/<seq>-<k>`, at most 32 MiB
//! each), and the snapshot, which maps every file to its pieces and SHA-256, is the pointer
//! `.partial/latest.json`.
//!
//! **One writer.** The pointer is only ever written by compare-and-swap: `If-Match` the ETag the
//! task last wrote (or read, when it takes an episode over), `If-None-Match: *` when there was
//! none. A task whose swap is refused has been replaced by another and stops at once. A task
//! that finds a pointer it did not write waits one lease (twice the writer's interval, plus 5 s)
//! for it to move: if it moves, another task is alive and this one stops; if not, this one takes
//! the episode over by swapping from that ETag (a task stopped by a signal says it let go, and
//! is not waited for). No clocks are compared, and two tasks never both keep going.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{SeasonError, PARTIAL};
use crate::log;
use crate::run_dir::{self, Growth};
use crate::s3::{Condition, Put, S3Url, Store};

/// The pointer's name under `.partial/`.
const POINTER: &str = "latest.json";
/// A bundle of a snapshot holds at most this many bytes.
const BUNDLE_MAX: usize = 32 << 20;

/// `.partial/latest.json`: where the newest checkpoint's files are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The task attempt that wrote it.
    pub owner: String,
    pub seq: u64,
    pub written_at: String,
    /// Seconds between this writer's snapshots (its lease is twice that, plus 5 s).
    pub interval_s: f64,
    /// The writer stopped on a signal and let go: the next task need not wait.
    pub released: bool,
    /// The writer finished the episode and is uploading it.
    pub finishing: bool,
    /// The checkpoint's next frame to decode.
    pub next_frame: Option<u64>,
    pub files: BTreeMap<String, Entry>,
}

/// One file of a snapshot: its bytes are its pieces, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub len: u64,
    pub sha256: String,
    pub appends: bool,
    pub pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    /// The bundle, under `.partial/`.
    pub bundle: String,
    pub offset: u64,
    pub len: u64,
}

impl Snapshot {
    /// How long a task waits for this writer to show it is alive.
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(2.0 * self.interval_s.clamp(0.0, 3600.0) + 5.0)
    }
}

/// The episode's pointer, with its ETag, if a task has published one.
pub fn read_pointer(store: &Store, episode: &S3Url) -> Result<Option<(Snapshot, String)>, SeasonError> {
    let url = episode.join(PARTIAL).join(POINTER);
    let Some(got) = store.get_bytes(&url)? else { return Ok(None) };
    let snapshot = serde_json::from_slice(&got.bytes).map_err(|e| SeasonError::invalid(url.to_string(), format!("not a checkpoint pointer: {e}")))?;
    Ok(Some((snapshot, got.etag)))
}

/// What a task knows of the files it published (or restored), to send only what changed.
#[derive(Clone, Default)]
pub struct Known {
    snapshot: Snapshot,
    /// Of each growing file, the hash of its bytes so far.
    hashers: BTreeMap<String, Sha256>,
    /// Of every file, (size, mtime, inode) when last sent or restored.
    stamps: BTreeMap<String, (u64, u64, u64)>,
}

fn stamp(meta: &std::fs::Metadata) -> (u64, u64, u64) {
    (meta.len(), run_dir::mtime_ns(meta), meta.ino())
}

/// Publishes a running harvest's checkpoints; see the module's docs.
pub struct Publisher {
    store: Store,
    partial: S3Url,
    owner: String,
    interval: Duration,
    last: Option<Instant>,
    /// The pointer's ETag this task holds (or takes over from).
    etag: Option<String>,
    known: Known,
    /// Another task took the episode: why, once it happened.
    pub superseded: Option<String>,
}

impl Publisher {
    pub fn new(store: Store, episode: &S3Url, owner: String, interval_s: f64, etag: Option<String>, known: Known) -> Self {
        let partial = episode.join(PARTIAL);
        Self { store, partial, owner, interval: Duration::from_secs_f64(interval_s), last: None, etag, known, superseded: None }
    }

    /// After a local checkpoint: publishes it when the interval has passed or the run is
    /// stopping. A failed upload is a warning (the next checkpoint tries again); a lost
    /// pointer stops the harvest.
    pub fn on_checkpoint(&mut self, dir: &Path, stopping: bool) {
        if self.superseded.is_some() || (!stopping && self.last.is_some_and(|t| t.elapsed() < self.interval)) {
            return;
        }
        self.last = Some(Instant::now());
        match self.publish(dir, stopping, false) {
            Ok(true) => {}
            Ok(false) => crate::interrupt::request_stop(),
            Err(e) => {
                let text = format!("warning: checkpoint to {} failed, the next one tries again: {e}", self.partial);
                log::event("warning", Some(&text), json!({}));
            }
        }
    }

    /// Says, by swapping the pointer, that this task is uploading the finished episode;
    /// `false` when another task holds it.
    pub fn finishing(&mut self) -> Result<bool, SeasonError> {
        let mut snapshot = self.known.snapshot.clone();
        snapshot.finishing = true;
        self.swap(snapshot).map(|held| held.is_some())
    }

    /// Sends what changed since the last snapshot and swaps the pointer to it. `Ok(false)`:
    /// another task holds the episode (recorded in `superseded`).
    fn publish(&mut self, dir: &Path, released: bool, finishing: bool) -> Result<bool, SeasonError> {
        let seq = self.known.snapshot.seq + 1;
        let mut next = self.known.clone();
        let mut bundles = Bundles::new(format!("{}/{seq}", self.owner));
        let mut files = BTreeMap::new();
        for (rel, growth) in run_dir::resumable_state(dir)? {
            let path = dir.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let now = stamp(&meta);
            let prev = self.known.snapshot.files.get(&rel);
            let grows = growth == Growth::Appends && prev.is_some_and(|p| p.len <= now.0);
            let entry = match (prev, next.hashers.get_mut(&rel)) {
                (Some(p), Some(hasher)) if grows => {
                    let bytes = read_range(&path, p.len, now.0 - p.len)?;
                    hasher.update(&bytes);
                    let mut pieces = p.pieces.clone();
                    pieces.extend(bundles.add(&bytes));
                    Entry { len: now.0, sha256: crate::digest::hex(&hasher.clone().finalize()), appends: true, pieces }
                }
                (Some(p), _) if growth == Growth::Replaced && self.known.stamps.get(&rel) == Some(&now) => p.clone(),
                _ => {
                    let bytes = read_range(&path, 0, now.0)?;
                    let hasher = Sha256::new_with_prefix(&bytes);
                    let sha256 = crate::digest::hex(&hasher.clone().finalize());
                    let appends = growth == Growth::Appends;
                    if appends {
                        next.hashers.insert(rel.clone(), hasher);
                    }
                    Entry { len: now.0, sha256, appends, pieces: bundles.add(&bytes) }
                }
            };
            next.stamps.insert(rel.clone(), now);
            files.insert(rel, entry);
        }
        next.hashers.retain(|rel, _| files.contains_key(rel));
        next.stamps.retain(|rel, _| files.contains_key(rel));
        let sent = bundles.bytes();
        for (name, bytes) in bundles.done() {
            self.store.put_bytes(&self.partial.join(&name), bytes, &Condition::Always)?;
        }
        let snapshot = Snapshot {
            owner: self.owner.clone(),
            seq,
            written_at: log::now_rfc3339(),
            interval_s: self.interval.as_secs_f64(),
            released,
            finishing,
            next_frame: crate::pipeline::checkpoint_frame(dir),
            files,
        };
        let Some(snapshot) = self.swap(snapshot)? else { return Ok(false) };
        log::event(
            "remote_checkpoint",
            None,
            json!({"seq": snapshot.seq, "next_frame": snapshot.next_frame, "bytes_sent": sent, "bytes_held": snapshot.files.values().map(|e| e.len).sum::<u64>(), "files": snapshot.files.len(), "released": released}),
        );
        next.snapshot = snapshot;
        self.known = next;
        Ok(true)
    }

    /// Swaps the pointer to `snapshot`; `None` when another task holds the episode.
    fn swap(&mut self, snapshot: Snapshot) -> Result<Option<Snapshot>, SeasonError> {
        let body = serde_json::to_vec(&snapshot).unwrap_or_default();
        let condition = match &self.etag {
            Some(etag) => Condition::IfMatch(etag.clone()),
            None => Condition::IfAbsent,
        };
        match self.store.put_bytes(&self.partial.join(POINTER), body, &condition)? {
            Put::Written { etag } => {
                self.etag = Some(etag);
                Ok(Some(snapshot))
            }
            Put::Refused => {
                let why = format!("another task took over this episode ({} changed under this one)", self.partial.join(POINTER));
                log::event("superseded", None, json!({"pointer": self.partial.join(POINTER).to_string()}));
                self.superseded = Some(why);
                Ok(None)
            }
        }
    }

    /// Removes the episode's checkpoints once it is complete (best effort: a leftover only costs
    /// storage, and the next task of a completed episode never reads it).
    pub fn remove_all(&self) {
        let result = self
            .store
            .list(&self.partial)
            .and_then(|all| all.iter().try_for_each(|o| self.store.delete(&S3Url { bucket: self.partial.bucket.clone(), key: o.key.clone() })));
        if let Err(e) = result {
            log::event("warning", Some(&format!("warning: could not remove the checkpoints under {}: {e}", self.partial)), json!({}));
        }
    }
}

/// A snapshot's new bytes, packed into objects of at most [`BUNDLE_MAX`].
struct Bundles {
    stem: String,
    done: Vec<(String, Vec<u8>)>,
}

impl Bundles {
    fn new(stem: String) -> Self {
        Self { stem, done: Vec::new() }
    }

    /// Adds `bytes`, returning where they went.
    fn add(&mut self, mut bytes: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        while !bytes.is_empty() {
            if self.done.last().is_none_or(|(_, b)| b.len() >= BUNDLE_MAX) {
                self.done.push((format!("{}-{}", self.stem, self.done.len()), Vec::new()));
            }
            let Some((name, bundle)) = self.done.last_mut() else { break };
            let n = bytes.len().min(BUNDLE_MAX - bundle.len());
            pieces.push(Piece { bundle: name.clone(), offset: bundle.len() as u64, len: n as u64 });
            bundle.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        pieces
    }

    fn bytes(&self) -> u64 {
        self.done.iter().map(|(_, b)| b.len() as u64).sum()
    }

    fn done(self) -> Vec<(String, Vec<u8>)> {
        self.done
    }
}

fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, SeasonError> {
    let mut f = File::open(path).map_err(SeasonError::io(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(SeasonError::io(path))?;
    let mut bytes = vec![0u8; len as usize];
    f.read_exact(&mut bytes).map_err(SeasonError::io(path))?;
    Ok(bytes)
}

/// Writes the snapshot's files into `dir` (which the caller holds, emptied of any resumable
/// state), each checked against its SHA-256, and returns what the next snapshot builds on.
pub fn restore(store: &Store, episode: &S3Url, snapshot: &Snapshot, dir: &Path) -> Result<Known, SeasonError> {
    let partial = episode.join(PARTIAL);
    let names: BTreeSet<&str> = snapshot.files.values().flat_map(|e| e.pieces.iter().map(|p| p.bundle.as_str())).collect();
    let mut bundles = BTreeMap::new();
    for name in names {
        let url = partial.join(name);
        let Some(got) = store.get_bytes(&url)? else { return Err(SeasonError::invalid(url.to_string(), "a checkpoint's piece is missing")) };
        bundles.insert(name, got.bytes);
    }
    let mut known = Known { snapshot: snapshot.clone(), ..Known::default() };
    for (rel, entry) in &snapshot.files {
        let path = crate::names::safe_join(dir, rel, "a checkpoint's file").map_err(|e| SeasonError::invalid(partial.to_string(), e.to_string()))?;
        let mut hasher = Sha256::new();
        let mut bytes = Vec::with_capacity(entry.len as usize);
        for p in &entry.pieces {
            let piece = bundles.get(p.bundle.as_str()).and_then(|b| b.get(p.offset as usize..(p.offset + p.len) as usize));
            let Some(piece) = piece else { return Err(SeasonError::invalid(partial.join(&p.bundle).to_string(), "shorter than the pointer says")) };
            hasher.update(piece);
            bytes.extend_from_slice(piece);
        }
        if bytes.len() as u64 != entry.len || crate::digest::hex(&hasher.clone().finalize()) != entry.sha256 {
            return Err(SeasonError::invalid(format!("{partial}{rel}"), "the checkpoint's pieces do not add up to the file it recorded"));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(SeasonError::io(parent))?;
        }
        let mut f = File::create(&path).map_err(SeasonError::io(&path))?;
        f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(SeasonError::io(&path))?;
        let meta = std::fs::metadata(&path).map_err(SeasonError::io(&path))?;
        known.stamps.insert(rel.clone(), stamp(&meta));
        if entry.appends {
            known.hashers.insert(rel.clone(), hasher);
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_split_at_their_limit_and_pieces_point_into_them() {
        let mut b = Bundles::new("o/1".into());
        let big = vec![7u8; BUNDLE_MAX + 10];
        let p1 = b.add(b"abc");
        let p2 = b.add(&big);
        assert_eq!(p1, [Piece { bundle: "o/1-0".into(), offset: 0, len: 3 }]);
        assert_eq!(p2[0], Piece { bundle: "o/1-0".into(), offset: 3, len: (BUNDLE_MAX - 3) as u64 });
        assert_eq!(p2[1], Piece { bundle: "o/1-1".into(), offset: 0, len: 13 });
        assert!(b.add(b"").is_empty());
        assert_eq!(b.bytes(), (BUNDLE_MAX + 13) as u64);
        assert_eq!(b.done().len(), 2);
    }

    #[test]
    fn the_lease_is_two_intervals_and_five_seconds() {
        let s = Snapshot { interval_s: 60.0, ..Snapshot::default() };
        assert_eq!(s.lease(), Duration::from_secs(125));
    }
}
