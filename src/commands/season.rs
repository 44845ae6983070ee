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
    let common = match &args.command {
        SeasonCommand::Plan(a) => &a.common,
        SeasonCommand::Run(a) => &a.common,
        SeasonCommand::Merge(a) => &a.common,
    };
    log::set_format(common.log_format);
    match &args.command {
        SeasonCommand::Plan(a) => {
            plan::make(&plan_config(a)?)?;
            Ok(Outcome::Done)
        }
        SeasonCommand::Run(a) => {
            let cfg = run_config(a)?;
            // SIGTERM (an engine stopping the task) checkpoints to S3 before the task exits.
            crate::interrupt::install();
            task_outcome(task::run(&cfg))
        }
        SeasonCommand::Merge(a) => Ok(match merge::run(&merge_config(a)?)? {
            MergeEnd::Done => Outcome::Done,
            MergeEnd::Missing(_) => Outcome::Incomplete,
        }),
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
            Ok(Outcome::S3Failed)
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

    fn season(argv: &[&str]) -> SeasonCommand {
        match crate::cli::Cli::try_parse_from([&["episode-run", "season"], argv].concat()).unwrap().command {
            crate::cli::Command::Season(SeasonArgs { command }) => command,
            _ => unreachable!("a season command was parsed"),
        }
    }

    fn plan_args(extra: &[&str]) -> SeasonPlanArgs {
        match season(&[&["plan", "s3://b-1/in/", "--out", "s3://b-1/s1"], extra].concat()) {
            SeasonCommand::Plan(p) => p,
            _ => unreachable!("season plan was parsed"),
        }
    }

    fn run_args(extra: &[&str]) -> SeasonRunArgs {
        match season(&[&["run", "--plan", "s3://b-1/s1/season.json"], extra].concat()) {
            SeasonCommand::Run(r) => r,
            _ => unreachable!("season run was parsed"),
        }
    }

    fn merge_args(extra: &[&str]) -> SeasonMergeArgs {
        match season(&[&["merge", "--plan", "season.json"], extra].concat()) {
            SeasonCommand::Merge(m) => m,
            _ => unreachable!("season merge was parsed"),
        }
    }

    #[test]
    fn a_task_takes_its_index_and_cache_dir_or_leaves_them_to_the_engine_and_the_default() {
        let cfg = run_config(&run_args(&["--index", "3", "--cache-dir", "/tmp/c"])).unwrap();
        assert_eq!((cfg.plan.as_str(), cfg.index, cfg.cache_dir.as_path()), ("s3://b-1/s1/season.json", Some(3), std::path::Path::new("/tmp/c")));
        let cfg = run_config(&run_args(&[])).unwrap();
        assert_eq!((cfg.index, cfg.cache_dir), (None, default_cache_dir()), "the index comes from the engine's variable when the task starts");
        let negative = crate::cli::Cli::try_parse_from(["episode-run", "season", "run", "--plan", "p", "--index", "-1"]);
        assert!(negative.is_err(), "a negative index is a usage error");
    }

    #[test]
    fn every_season_step_checks_its_s3_flags() {
        let bad = ["--s3-concurrency", "0"];
        assert!(plan_config(&plan_args(&bad)).unwrap_err().to_string().contains("--s3-concurrency"));
        assert!(run_config(&run_args(&bad)).unwrap_err().to_string().contains("--s3-concurrency"));
        assert!(merge_config(&merge_args(&bad)).unwrap_err().to_string().contains("--s3-concurrency"));
        let endpoint = ["--s3-endpoint", "localhost:9000"];
        assert!(run_config(&run_args(&endpoint)).unwrap_err().to_string().contains("--s3-endpoint"));
        assert!(run_config(&run_args(&["--s3-endpoint", "http://127.0.0.1:9000", "--s3-path-style", "-q"])).is_ok_and(|c| c.remote.path_style && c.quiet));
    }

    #[test]
    fn a_merge_works_in_the_cache_dir_unless_told_where() {
        assert_eq!(merge_config(&merge_args(&[])).unwrap().work_dir, default_cache_dir().join("season-merge"));
        assert_eq!(merge_config(&merge_args(&["--work-dir", "w"])).unwrap().work_dir, std::path::PathBuf::from("w"));
    }

    #[test]
    fn a_plan_takes_a_prefix_and_a_checkpoint_interval_in_range() {
        let cfg = plan_config(&plan_args(&["--stride", "3"])).unwrap();
        assert_eq!((cfg.out.to_string(), cfg.remote_checkpoint_s, cfg.settings.sampling.stride), ("s3://b-1/s1/".into(), 60.0, 3));
        assert!(plan_config(&plan_args(&["--remote-checkpoint-s", "0.5"])).unwrap_err().to_string().contains("1..=3600"));
        assert_eq!(plan_config(&plan_args(&["--remote-checkpoint-s", "2"])).unwrap().remote_checkpoint_s, 2.0);
    }
}
