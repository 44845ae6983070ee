//! What an out dir already holds. A completed run of the same identity (input, settings that
//! change outputs, models, seed photos) is not redone: the check answers in well under a second
//! (path, size and mtime first, the input's BLAKE3 only when those disagree, model SHA-256s). An
//! unfinished run resumes only from a checkpoint of the same identity. A run of anything else
//! is never silently overwritten or continued: the harvest is refused with what differs,
//! unless `--force`.

use std::collections::BTreeMap;

use super::error::HarvestError;
use super::resume::{self, Checkpoint};
use crate::config::{HarvestConfig, Mode};
use crate::output::manifest::ModelFile;
use crate::run_dir::{self, RunIdentity, FACES};

/// The verdict on an out dir.
#[derive(Debug)]
pub enum Existing {
    /// No run there: harvest.
    Nothing,
    /// The same harvest, completed: nothing to do.
    Done,
    /// The same harvest, stopped early: go on from its checkpoint, if it has one.
    Unfinished(Option<Box<Checkpoint>>),
    /// A run of something else; says what.
    Other(String),
}

/// Compares the run recorded in `cfg.out_dir` with the run `cfg` describes. The checkpoint,
/// when there is one, is the newest state of the folder and is compared first.
pub fn check(cfg: &HarvestConfig) -> Result<Existing, HarvestError> {
    let checkpoint = Checkpoint::load(&cfg.out_dir);
    let manifest = run_dir::ManifestHead::read(&cfg.out_dir).ok();
    if checkpoint.is_none() && manifest.is_none() {
        if cfg.out_dir.join(run_dir::MANIFEST).exists() {
            return Ok(Existing::Other("format (its manifest.json was written by an older episode-run)".into()));
        }
        return Ok(Existing::Nothing);
    }
    let now = identity_now(cfg)?;
    if let Some(c) = checkpoint {
        return Ok(match c.identity.differs(&now, None) {
            Some(what) => Existing::Other(what),
            None => Existing::Unfinished(Some(Box::new(c))),
        });
    }
    let Some(m) = manifest else { return Ok(Existing::Nothing) };
    if let Some(what) = m.identity.differs(&now, m.input.blake3.as_deref()) {
        return Ok(Existing::Other(what));
    }
    Ok(match m.status.is_done() && cfg.out_dir.join(FACES).is_file() {
        true => Existing::Done,
        false => Existing::Unfinished(None),
    })
}

/// The identity of the run `cfg` asks for, hashing the models it would load.
fn identity_now(cfg: &HarvestConfig) -> Result<RunIdentity, HarvestError> {
    let mode = cfg.settings.run.mode;
    let mut models = BTreeMap::new();
    for (role, path, used) in [("detector", &cfg.detector, mode != Mode::DecodeOnly), ("embedder", &cfg.embedder, mode == Mode::Full)] {
        if used {
            let file = ModelFile::hash(path).map_err(|source| HarvestError::ModelRead { path: path.clone(), source })?;
            models.insert(role, file);
        }
    }
    resume::identity(cfg, &models)
}
