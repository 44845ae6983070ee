//! `episode-run season plan|run|merge`: the flags checked into each step's config, the step run,
//! and how it ended turned into the exit codes batch engines act on: 0 done (or nothing to do),
//! 2 a fatal error that retrying cannot mend (bad input, wrong models, a bad plan), 3 S3 failed
//! (a retry may succeed), 4 merge found episodes not complete, 75 another task holds this
//! episode, 130 stopped by a signal after checkpointing to S3.

use super::{Error, Outcome};
use crate::cli::{SeasonArgs, SeasonCommand, SeasonMergeArgs, SeasonPlanArgs, SeasonRunArgs};
use crate::config::{default_cache_dir, ConfigError, RemoteCfg, Settings};
use crate::log;
use crate::season::merge::{self, MergeConfig, MergeEnd};
use crate::season::plan::{self, PlanConfig};
use crate::season::task::{self, TaskConfig, TaskEnd};
use crate::season::SeasonError;

/// Seconds between a task's checkpoints to S3, by default, and the range allowed.
const REMOTE_CHECKPOINT_S: f64 = 60.0;
const REMOTE_CHECKPOINT_RANGE: std::ops::RangeInclusive<f64> = 1.0..=3600.0;

pub fn run(args: &SeasonArgs) -> Result<Outcome, Error> {
    match &args.command {
        SeasonCommand::Plan(a) => {
            log::set_format(a.common.log_format);
            plan::make(&plan_config(a)?)?;
            Ok(Outcome::Done)
        }
        SeasonCommand::Run(a) => {
            log::set_format(a.common.log_format);
            let cfg = run_config(a)?;
            // SIGTERM (an engine stopping the task) checkpoints to S3 before the task exits.
            crate::interrupt::install();
            task_outcome(task::run(&cfg))
        }
        SeasonCommand::Merge(a) => {
            log::set_format(a.common.log_format);
            Ok(match merge::run(&merge_config(a)?)? {
                MergeEnd::Done => Outcome::Done,
                MergeEnd::Missing(_) => Outcome::Incomplete,
            })
        }
    }
}

/// A task's S3 failure is worth a retry (exit 3), unlike its other errors (exit 2).
fn task_outcome(result: Result<TaskEnd, SeasonError>) -> Result<Outcome, Error> {
    match result {
        Ok(TaskEnd::Done | TaskEnd::AlreadyDone) => Ok(Outcome::Done),
        Ok(TaskEnd::Superseded) => Ok(Outcome::Superseded),
        Ok(TaskEnd::Interrupted) => Ok(Outcome::Interrupted),
        Err(SeasonError::S3(e)) => {
            let text = format!("error: {e}; nothing of this episode was lost (run the task again)");
            log::event("error", Some(&text.replace('\n', " ")), serde_json::json!({}));
            Ok(Outcome::UploadFailed)
        }
        Err(e) => Err(e.into()),
    }
}

fn plan_config(a: &SeasonPlanArgs) -> Result<PlanConfig, ConfigError> {
    let out = s3_prefix(&a.out, "--out")?;
    let remote_checkpoint_s = a.remote_checkpoint_s.unwrap_or(REMOTE_CHECKPOINT_S);
    if !REMOTE_CHECKPOINT_RANGE.contains(&remote_checkpoint_s) {
        return Err(ConfigError::Invalid(format!("--remote-checkpoint-s must be within 1..=3600 seconds, not {remote_checkpoint_s}")));
    }
    Ok(PlanConfig {
        source: a.source.clone(),
        out,
        settings: Settings::from_flags(&a.settings)?,
        remote_checkpoint_s,
        remote: RemoteCfg::from_args(&a.common.s3)?,
        local: a.plan_file.clone(),
        quiet: a.common.quiet,
    })
}

fn run_config(a: &SeasonRunArgs) -> Result<TaskConfig, ConfigError> {
    Ok(TaskConfig {
        plan: a.plan.clone(),
        index: a.index,
        cache_dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
        remote: RemoteCfg::from_args(&a.common.s3)?,
        quiet: a.common.quiet,
    })
}

fn merge_config(a: &SeasonMergeArgs) -> Result<MergeConfig, ConfigError> {
    Ok(MergeConfig {
        plan: a.plan.clone(),
        work_dir: a.work_dir.clone().unwrap_or_else(|| default_cache_dir().join("season-merge")),
        remote: RemoteCfg::from_args(&a.common.s3)?,
        quiet: a.common.quiet,
    })
}

/// `text` as an `s3://bucket/prefix/` URL, or why not.
fn s3_prefix(text: &str, flag: &str) -> Result<crate::s3::S3Url, ConfigError> {
    let mut url = crate::s3::S3Url::parse(text).map_err(|e| ConfigError::Invalid(format!("{flag}: {e}")))?;
    if !url.key.is_empty() && !url.key.ends_with('/') {
        url.key.push('/');
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan_args(extra: &[&str]) -> SeasonPlanArgs {
        let argv = [&["episode-run", "season", "plan", "s3://b-1/in/", "--out", "s3://b-1/s1"], extra].concat();
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Season(SeasonArgs { command: SeasonCommand::Plan(p) }) => p,
            _ => unreachable!("season plan was parsed"),
        }
    }

    #[test]
    fn a_plan_takes_a_prefix_and_a_checkpoint_interval_in_range() {
        let cfg = plan_config(&plan_args(&["--stride", "3"])).unwrap();
        assert_eq!((cfg.out.to_string(), cfg.remote_checkpoint_s, cfg.settings.sampling.stride), ("s3://b-1/s1/".into(), 60.0, 3));
        assert!(plan_config(&plan_args(&["--remote-checkpoint-s", "0.5"])).unwrap_err().to_string().contains("1..=3600"));
        assert_eq!(plan_config(&plan_args(&["--remote-checkpoint-s", "2"])).unwrap().remote_checkpoint_s, 2.0);
    }
}
