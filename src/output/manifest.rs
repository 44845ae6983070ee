//! `manifest.json`: everything needed to know how a run's outputs were made — tool version,
//! resolved config, input, model hashes, runtime, thread split, counts and per-stage timings.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::host::Host;
use crate::onnx::RuntimeInfo;
use crate::run_dir::{RunIdentity, Status};
use crate::types::SkipReason;
use crate::video::VideoInfo;

/// One stage's per-frame times over a whole run (resumed parts included), from `timings.jsonl`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageSummary {
    pub frames: u64,
    pub total_s: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

/// The `q` quantile of `sorted` (ascending) by nearest rank: the smallest value with at least
/// `q` of them at or below it; 0 for none. The manifest's percentiles and the report's axes use it.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1],
    }
}

impl StageSummary {
    /// Summary of `ms` (nearest-rank percentiles).
    pub fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| nearest_rank(&ms, p);
        let total: f64 = ms.iter().sum();
        let r = |v: f64| (v * 1e3).round() / 1e3;
        Self {
            frames: ms.len() as u64,
            total_s: r(total / 1e3),
            min_ms: r(ms[0]),
            mean_ms: r(total / ms.len() as f64),
            p50_ms: r(rank(0.5)),
            p95_ms: r(rank(0.95)),
            max_ms: r(ms[ms.len() - 1]),
        }
    }
}

/// Per-stage time per sampled frame: `decode` covers the frames decoded since the previous
/// sampled one and the detector input, `embed` the frame's share of its embedder calls.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub decode: StageSummary,
    pub detect: StageSummary,
    pub align: StageSummary,
    pub embed: StageSummary,
}

impl Timings {
    pub fn from_rows(rows: &[crate::output::TimingRecord]) -> Self {
        let of = |f: fn(&crate::output::TimingRecord) -> f64| StageSummary::of(rows.iter().map(f).collect());
        Self { decode: of(|r| r.decode_ms), detect: of(|r| r.detect_ms), align: of(|r| r.align_ms), embed: of(|r| r.embed_ms) }
    }
}

/// What a run did, counted.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Counts {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub faces_detected: u64,
    pub faces_embedded: u64,
    pub faces_skipped: BTreeMap<SkipReason, u64>,
    pub embed_calls: u64,
    /// Embedder calls by the crops they held: `{"12": 40}` is 40 calls of 12 crops.
    #[serde(default)]
    pub embed_call_crops: BTreeMap<u64, u64>,
    pub frames_failed: u64,
    /// Frames whose crops exceeded the memory bound and were embedded in several calls.
    pub frames_split_for_memory: u64,
    pub shots: u64,
    pub tracks: u64,
    /// Box-overlap matches the tracker refused because the faces' embeddings disagreed.
    pub id_switches_prevented: u64,
    /// Tracks ended because a face that did not look like them took their place (a missed cut,
    /// or someone replaced in the same spot); the face starts a new track.
    #[serde(default)]
    pub track_splits: u64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ModelFile {
    pub path: PathBuf,
    pub sha256: String,
}

impl ModelFile {
    pub fn hash(path: &Path) -> std::io::Result<Self> {
        Ok(Self { path: path.to_path_buf(), sha256: sha256_file(path)? })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct InputFacts {
    /// The local file decoded (for an `s3://` input, its copy in the cache).
    pub path: PathBuf,
    /// The `s3://` URL the file was fetched from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub size_bytes: u64,
    pub mtime_ns: u64,
    /// BLAKE3 of the file, from the bytes read for decoding; absent for an interrupted run.
    pub blake3: Option<String>,
    pub video: VideoInfo,
}

/// How the `--threads` budget was spent: FFmpeg decodes with `decode` threads, and `workers`
/// model workers each run their own detector and embedder sessions with `worker_threads`
/// intra-op threads. Every stage holds one CPU permit per busy thread, so busy threads never
/// exceed `budget`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ThreadSplit {
    pub budget: usize,
    pub decode: usize,
    pub workers: usize,
    pub worker_threads: usize,
}

/// How embedder calls were sized.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct EmbedBatching {
    /// Crops of consecutive whole frames packed into one call, at most.
    pub batch_size: usize,
    /// The memory bound: a frame with more crops than this is split.
    pub max_crops_per_call: usize,
    pub mem_budget_mb: u64,
}

/// One process's share of a run, for the manifest's resume history.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Attempt {
    pub started_at: String,
    pub ended_at: String,
    pub first_frame: u64,
    pub frames_done: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub tool: &'static str,
    pub version: &'static str,
    pub git_commit: &'static str,
    pub config: serde_json::Value,
    /// `--seeds`, when given.
    pub seeds: Option<PathBuf>,
    /// What makes this run this run (input, settings that change outputs, models' and seed
    /// photos' SHA-256): a re-run with the same identity is "already harvested".
    pub identity: RunIdentity,
    pub input: InputFacts,
    pub models: BTreeMap<&'static str, ModelFile>,
    /// The ONNX Runtime library used; `null` when no model ran (`--decode-only` does not load it).
    pub onnxruntime: Option<RuntimeInfo>,
    pub host: Host,
    pub threads: ThreadSplit,
    pub embed_batching: EmbedBatching,
    /// `done`, `done_with_errors` (decode problems, see `decode_issues`) or `interrupted`.
    pub status: Status,
    pub started_at: String,
    pub finished_at: String,
    pub wall_s: f64,
    pub counts: Counts,
    /// How the tracks were grouped into people (rewritten by `episode-run people` and
    /// `identify`).
    pub people: crate::people::PeopleSection,
    pub timings: Timings,
    /// Decoding problems the run went past, first ones only.
    pub decode_issues: Vec<String>,
    /// Each process that worked on this run (more than one when it was resumed).
    pub history: Vec<Attempt>,
    /// The run's result files, relative to the run folder: all an upload sends besides
    /// `progress.json` and this manifest.
    pub files: Vec<String>,
}

/// Lower-case hex SHA-256 of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::digest::hex(&hasher.finalize()))
}

#[cfg(test)]
mod summary_tests {
    use super::StageSummary;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = StageSummary::of((1..=100).map(f64::from).collect());
        assert_eq!((s.frames, s.min_ms, s.p50_ms, s.p95_ms, s.max_ms, s.mean_ms), (100, 1.0, 50.0, 95.0, 100.0, 50.5));
        assert_eq!(StageSummary::of(vec![]).frames, 0);
        assert_eq!(StageSummary::of(vec![7.0]).p95_ms, 7.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
