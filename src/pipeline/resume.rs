//! Checkpoints, so a killed harvest loses seconds, not the run. Every `checkpoint.interval_s`
//! the writer syncs `faces.jsonl` and `embeddings.npy` (both only ever grow) and records, in
//! `checkpoint.json` written atomically (temp + fsync + rename), their byte lengths and all the
//! state needed to go on after the last frame written: where decoding stood (frame, timestamp,
//! shot-cut state, the open shot), the tracker and per-track totals, counts and shots so far.
//! Resuming truncates the outputs to those lengths, seeks the video to just after that frame and
//! continues, so the result is byte-identical to a run that was never stopped. A checkpoint with
//! a `tail` was taken when every frame was done: resuming from it only redoes the finalisation.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::sink::SinkState;
use crate::config::HarvestConfig;
use crate::output::manifest::{mtime_ns, ModelFile};
use crate::output::{self, OutputError, Position, ShotRecord};
use crate::track::cuts::CutState;
use crate::video::DecodeIssue;

pub const CHECKPOINT: &str = "checkpoint.json";

/// Where the decode side stood right after a sampled frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecodeState {
    /// The first frame not yet decoded.
    pub next_frame: u64,
    /// Presentation timestamp and time of the frame before it.
    pub pts: Option<i64>,
    pub t: f64,
    /// Frames sampled so far.
    pub sampled: u64,
    pub cut: CutState,
    /// The shot that frame is in, ending at it.
    pub shot: ShotRecord,
}

/// What only the end of the stream knows: the last shots, the last problems, the input's hash.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tail {
    /// Frames decoded in all (some may follow the last sampled frame).
    pub frames_decoded: u64,
    pub shots: Vec<ShotRecord>,
    pub issues: Vec<DecodeIssue>,
    pub input_blake3: Option<String>,
}

/// One process's share of a run, for the manifest's resume history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub started_at: String,
    pub ended_at: String,
    pub first_frame: u64,
    pub frames_done: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Input, settings, seeds and models, as the manifest records them.
    pub identity: serde_json::Value,
    pub decode: DecodeState,
    pub sink: SinkState,
    pub position: Position,
    /// Present once every frame was processed (finalisation pending).
    pub tail: Option<Tail>,
    /// Earlier processes, then this one as of the checkpoint.
    pub history: Vec<Attempt>,
}

/// A checkpoint without its sink state (which goes to the sink): where to pick up.
pub struct ResumePoint {
    pub decode: DecodeState,
    pub position: Position,
    pub tail: Option<Tail>,
    pub history: Vec<Attempt>,
}

impl Checkpoint {
    /// Faces written before this checkpoint.
    pub fn sink_faces(&self) -> u64 {
        self.sink.faces()
    }

    pub fn split(self) -> (SinkState, ResumePoint) {
        let Checkpoint { identity: _, decode, sink, position, tail, history } = self;
        (sink, ResumePoint { decode, position, tail, history })
    }

    /// The checkpoint in `out_dir`, if there is a readable one.
    pub fn load(out_dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(out_dir.join(CHECKPOINT)).ok()?).ok()
    }

    pub fn save(&self, out_dir: &Path) -> Result<(), OutputError> {
        let path = out_dir.join(CHECKPOINT);
        let bytes = serde_json::to_vec(self).map_err(|e| OutputError { path: path.clone(), source: e.into() })?;
        output::write_atomic(&path, &bytes)
    }

    pub fn remove(out_dir: &Path) -> Result<(), OutputError> {
        let path = out_dir.join(CHECKPOINT);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(OutputError { path, source: e }),
            _ => Ok(()),
        }
    }
}

/// What makes two runs the same run: the keys `existing::check` compares, shaped as in the
/// manifest.
pub fn identity(cfg: &HarvestConfig, models: &BTreeMap<&'static str, ModelFile>) -> serde_json::Value {
    let meta = std::fs::metadata(&cfg.input).ok();
    serde_json::json!({
        "input": {
            "path": cfg.input,
            "size_bytes": meta.as_ref().map_or(0, |m| m.len()),
            "mtime_ns": meta.as_ref().map_or(0, mtime_ns),
        },
        "config": serde_json::to_value(&cfg.settings).unwrap_or_default(),
        "seeds": cfg.seeds,
        "models": models,
    })
}
