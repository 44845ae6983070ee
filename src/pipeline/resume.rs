//! Checkpoints, so a killed harvest loses seconds, not the run. Every `checkpoint.interval_s`
//! the writer syncs `faces.jsonl` and `embeddings.npy` (both only ever grow) and the spill files
//! (closed tracks, their means, closed shots: see [`super::spill`]), and records, in
//! `checkpoint.json` written atomically (temp + fsync + rename), their byte lengths and the state
//! needed to go on after the last frame written: where decoding stood (frame, timestamp,
//! shot-cut state, the open shot), the tracker, the open tracks' totals (their best faces by
//! reference to a side file), counts. None of it grows with the video, so the checkpoint stays a
//! few KB. Resuming truncates the outputs to those lengths, seeks the video to just after that
//! frame and continues, so the result is byte-identical to a run that was never stopped. A
//! checkpoint with a `tail` was taken when every frame was done: resuming from it only redoes the
//! finalisation. A checkpoint is used only by a run of the same [`RunIdentity`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::HarvestError;
use super::frames::{DecodeState, Tail};
use super::sink::SinkState;
use crate::config::HarvestConfig;
use crate::output::manifest::{Attempt, ModelFile};
use crate::output::{self, OutputError, Position};
use crate::run_dir::{InputId, RunIdentity, CHECKPOINT};

#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run this checkpoint belongs to: only a run of the same identity resumes from it.
    pub identity: RunIdentity,
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
}

/// The identity of the harvest `cfg` describes, with its models' SHA-256 by role.
pub fn identity(cfg: &HarvestConfig, models: &BTreeMap<&'static str, ModelFile>) -> Result<RunIdentity, HarvestError> {
    let seeds = cfg.seeds.as_deref().map(crate::identify::seeds_digest).transpose()?;
    Ok(RunIdentity {
        input: InputId::of(&cfg.input),
        settings: cfg.settings.output_settings(),
        models: models.iter().map(|(role, m)| (role.to_string(), m.sha256.clone())).collect(),
        seeds,
    })
}

/// How far the checkpoint in `out_dir` got: the next frame to decode, `None` without a readable
/// checkpoint.
pub fn checkpoint_frame(out_dir: &Path) -> Option<u64> {
    Checkpoint::load(out_dir).map(|c| c.decode.next_frame)
}

/// Points the checkpoint in `out_dir` at `input`, a copy of the file it was taken on made on
/// another machine (same bytes, another path and mtime; the caller has checked the bytes), so
/// that the next harvest of `input` resumes from it. `false` without a readable checkpoint.
pub fn rebind_checkpoint(out_dir: &Path, input: &Path) -> Result<bool, OutputError> {
    let Some(mut c) = Checkpoint::load(out_dir) else { return Ok(false) };
    c.identity.input = InputId::of(input);
    c.save(out_dir)?;
    Ok(true)
}
