//! One module per command, each with one entry function, `run(&args)`, that returns how the
//! command ended ([`Outcome`]) or why it failed ([`Error`], always exit 2). `main` turns both
//! into exit codes in one place.

pub mod floor;
pub mod harvest;
pub mod identify;
pub mod people;
#[cfg(feature = "s3")]
mod remote;
#[cfg(not(feature = "s3"))]
#[path = "remote_none.rs"]
mod remote;
pub mod report;
#[cfg(feature = "s3")]
pub mod season;
pub mod upload;

/// How a command ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or nothing to do: exit 0.
    Done,
    /// Done, but part of the input was lost (manifest `done_with_errors`): exit 1.
    DoneWithLoss,
    /// S3 failed and a retry may succeed; what was done is intact: a harvest's or `upload`'s
    /// upload, or a season task's transfers: exit 3.
    S3Failed,
    /// Stopped by Ctrl-C / SIGTERM after publishing what it had: exit 130.
    Interrupted,
    /// `season merge`: some episodes are not complete yet: exit 4.
    Incomplete,
    /// `season run`: another task holds this episode, this one stopped: exit 75 (EX_TEMPFAIL).
    Superseded,
}

/// Why a command failed: one line, exit 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Harvest(#[from] crate::pipeline::HarvestError),
    #[error(transparent)]
    RunDir(#[from] crate::run_dir::RunDirError),
    #[error(transparent)]
    Read(#[from] crate::output::ReadError),
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error(transparent)]
    People(#[from] crate::output::people::PeopleError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    #[error(transparent)]
    Video(#[from] crate::video::VideoError),
    #[cfg(feature = "s3")]
    #[error(transparent)]
    S3(#[from] crate::s3::S3Error),
    #[cfg(feature = "s3")]
    #[error(transparent)]
    Season(#[from] crate::season::SeasonError),
}
