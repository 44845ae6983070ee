//! What stops a harvest (or a command built on its stages): every variant is fatal (exit 2),
//! and its message names the file or stage.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::onnx::OnnxError;
use crate::output::OutputError;
use crate::run_dir::RunDirError;
use crate::video::VideoError;

/// A harvest that could not complete. Every variant is fatal (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    People(#[from] crate::output::people::PeopleError),
    #[error("no frame could be decoded from {path}")]
    NoFrames { path: PathBuf },
    #[error("cannot read model {path}: {source}")]
    ModelRead { path: PathBuf, source: std::io::Error },
    #[error("the {stage} thread panicked")]
    Panicked { stage: &'static str },
    #[error("cannot start the {stage} thread: {source}; {hint}", hint = crate::onnx::THREAD_LIMIT_HINT)]
    ThreadStart { stage: String, source: std::io::Error },
    #[error(transparent)]
    Seeds(#[from] crate::identify::SeedError),
    #[error("seed image {path} has no usable face")]
    SeedWithoutFace { path: PathBuf },
    #[error("cannot read {path}: {reason}")]
    RunRead { path: PathBuf, reason: String },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{dir} holds a run with a different {what}; pass --force to replace it, or choose another --out")]
    OtherRun { dir: PathBuf, what: String },
    #[error("--resume: {dir} holds no unfinished run to resume")]
    NothingToResume { dir: PathBuf },
}
