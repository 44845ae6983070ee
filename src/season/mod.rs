//! A season: many episodes harvested by the tasks of an existing batch engine (a Slurm job
//! array, a Kubernetes Indexed Job, an AWS Batch array job), each task one episode, S3 in and
//! out. We write no scheduler: [`plan`] fixes the episodes and settings once, in `season.json`,
//! so that index N means the same episode on every machine; [`task`] harvests one index and is
//! safe to retry, kill and race; [`merge`] turns the finished episodes into the season's cast.
//!
//! Under the season's prefix `<out>/`:
//!
//! ```text
//! season.json                  the plan
//! <episode id>/…               the episode's run folder, as `harvest --upload` sends it
//! <episode id>/_DONE.json      written last, once: the episode is complete (see [`Done`])
//! <episode id>/.partial/…      a running task's checkpoints (see [`publish`]), removed at the end
//! season/…                     what `season merge` writes
//! ```

pub mod merge;
pub mod plan;
mod publish;
pub mod task;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::s3::{S3Error, S3Url, Store};

/// The plan's name, beside the episodes under the season's prefix.
pub const PLAN: &str = "season.json";
/// An episode's completion marker.
pub const DONE: &str = "_DONE.json";
/// Where a running task keeps its checkpoints, under the episode's prefix.
pub const PARTIAL: &str = ".partial/";
/// Where `season merge` writes, under the season's prefix.
pub const MERGED: &str = "season/";
/// The plan's format; a plan of another one is refused.
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SeasonError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Harvest(#[from] crate::pipeline::HarvestError),
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error(transparent)]
    Read(#[from] crate::output::ReadError),
    #[error(transparent)]
    RunDir(#[from] crate::run_dir::RunDirError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

impl SeasonError {
    fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        SeasonError::Invalid { what: what.into(), why: why.into() }
    }

    fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| SeasonError::Io { path: path.to_path_buf(), source }
    }
}

/// `season.json`: the episodes in order, and everything that makes their harvests the same on
/// every machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub tool_version: String,
    pub created_at: String,
    /// The list file or prefix the episodes came from.
    pub source: String,
    /// The season's prefix (`s3://bucket/prefix/`).
    pub out: String,
    /// Every setting, as `harvest` would use them (model paths as given: empty is the
    /// installed ones, resolved on each machine, and checked by [`Plan::models`]).
    pub settings: Settings,
    /// SHA-256 of the settings that change outputs (`Settings::output_settings`).
    pub settings_hash: String,
    /// SHA-256 of each model, by role: a task whose models differ refuses to run.
    pub models: BTreeMap<String, String>,
    /// Seconds between a task's checkpoints to S3.
    pub remote_checkpoint_s: f64,
    pub episodes: Vec<Episode>,
}

/// One episode of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    pub index: usize,
    /// From the file name; the episode's folder under the season's prefix.
    pub id: String,
    /// `s3://bucket/key` of the video.
    pub input: String,
    pub size: u64,
    /// The object version planned: a task finding another one refuses (plan again).
    pub etag: String,
}

impl Plan {
    pub fn out_url(&self) -> Result<S3Url, SeasonError> {
        Ok(S3Url::parse(&self.out)?)
    }

    /// The episode's prefix, `<out>/<id>/`.
    pub fn episode_url(&self, episode: &Episode) -> Result<S3Url, SeasonError> {
        Ok(self.out_url()?.join(&format!("{}/", episode.id)))
    }

    /// The plan at `url` (an `s3://…/season.json`, or a local file).
    pub fn load(store: &Store, url: &str) -> Result<Self, SeasonError> {
        let bytes = if S3Url::is_s3(url) {
            let at = S3Url::parse(url)?;
            match store.get_bytes(&at)? {
                Some(got) => got.bytes,
                None => return Err(SeasonError::invalid(url, "no season plan there (run `episode-run season plan` first)")),
            }
        } else {
            std::fs::read(url).map_err(SeasonError::io(std::path::Path::new(url)))?
        };
        let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| SeasonError::invalid(url, format!("not a season plan: {e}")))?;
        if plan.format != FORMAT {
            return Err(SeasonError::invalid(url, format!("a season plan of format {}, this episode-run reads format {FORMAT}", plan.format)));
        }
        Ok(plan)
    }
}

/// `<episode>/_DONE.json`: the episode is complete, and what it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done {
    pub episode: Episode,
    pub settings_hash: String,
    pub models: BTreeMap<String, String>,
    pub tool_version: String,
    pub git_commit: String,
    pub finished_at: String,
    /// `done`, or `done_with_errors` when part of the input could not be decoded.
    pub status: crate::run_dir::Status,
    pub duration_s: Option<f64>,
    pub counts: crate::output::manifest::Counts,
    pub people: u64,
    /// Every object of the episode's run folder, by path under its prefix.
    pub objects: BTreeMap<String, ObjectFact>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectFact {
    pub size: u64,
    pub sha256: String,
}

impl Done {
    /// Whether this marker is the plan's episode harvested with the plan's settings and models.
    pub fn matches(&self, plan: &Plan, episode: &Episode) -> bool {
        self.episode == *episode && self.settings_hash == plan.settings_hash && self.models == plan.models
    }

    /// The episode's marker, with its ETag, if it has one (of any plan).
    pub fn read(store: &Store, episode_url: &S3Url) -> Result<Option<(Self, String)>, SeasonError> {
        let url = episode_url.join(DONE);
        let Some(got) = store.get_bytes(&url)? else { return Ok(None) };
        let done = serde_json::from_slice(&got.bytes).map_err(|e| SeasonError::invalid(url.to_string(), format!("not a completion marker: {e}")))?;
        Ok(Some((done, got.etag)))
    }
}
