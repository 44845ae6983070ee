//! Thin entry point: parse flags, validate them into a config, run, map the outcome to an exit
//! code — 0 done, 1 done but some input could not be decoded, 2 fatal (one line on stderr),
//! 130 stopped by Ctrl-C/SIGTERM after publishing what it had.

use std::process::ExitCode;

use clap::Parser;
use episode_run::cli::{Cli, Command};
use episode_run::config::{FloorConfig, HarvestConfig, IdentifyConfig};
use episode_run::{interrupt, log};
use serde_json::json;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Harvest(args) => {
            interrupt::install();
            log::set_format(args.log_format);
            let cfg = match HarvestConfig::from_args(&args) {
                Ok(cfg) => cfg,
                Err(e) => return fatal(e.into()),
            };
            match episode_run::harvest(&cfg) {
                Ok(summary) if summary.already_harvested => {
                    let text = format!("already harvested: {} holds this run of {} completed (--force re-runs it)", summary.out_dir.display(), cfg.input.display());
                    log::event("already_harvested", Some(&text), json!({"out_dir": summary.out_dir}));
                    println!("{}", summary.out_dir.display());
                    ExitCode::SUCCESS
                }
                Ok(summary) => {
                    let c = &summary.counts;
                    let skipped: u64 = c.faces_skipped.values().sum();
                    let text = format!(
                        "harvested {} frames ({} sampled, {} shots): {} faces in {} tracks, {} embedded, {} skipped, {} embed calls in {:.1} s",
                        c.frames_decoded, c.frames_sampled, c.shots, c.faces_detected, c.tracks, c.faces_embedded, skipped, c.embed_calls, summary.wall_s
                    );
                    log::event("finish", (!cfg.quiet).then_some(text.as_str()), json!({"out_dir": summary.out_dir, "counts": c, "wall_s": summary.wall_s}));
                    println!("{}", summary.out_dir.display());
                    if summary.interrupted {
                        let text = format!(
                            "interrupted: stopped after {} frames; {} holds everything harvested up to there (run the same command again to resume)",
                            c.frames_decoded,
                            summary.out_dir.display()
                        );
                        log::event("interrupted", Some(&text), json!({"frames_decoded": c.frames_decoded}));
                        return ExitCode::from(130);
                    }
                    if let Some(problem) = summary.problem {
                        log::event("warning", Some(&format!("warning: {problem}")), json!({}));
                        return ExitCode::from(1);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(e.into()),
            }
        }
        Command::Identify(args) => {
            let result = IdentifyConfig::from_args(&args)
                .map_err(anyhow::Error::from)
                .and_then(|cfg| episode_run::identify(&cfg).map_err(anyhow::Error::from));
            match result {
                Ok(s) => {
                    eprintln!("matched against {} people: {} faces and {} tracks named", s.people.len(), s.faces_named, s.tracks_named);
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(e),
            }
        }
        Command::Floor(args) => {
            let result = FloorConfig::from_args(&args)
                .map_err(anyhow::Error::from)
                .and_then(|cfg| episode_run::pipeline::floor(&cfg).map_err(anyhow::Error::from));
            match result.and_then(|f| serde_json::to_string(&f).map_err(anyhow::Error::from)) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(e),
            }
        }
    }
}

/// Our errors already carry their cause in their message: one line, no chain, exit 2.
fn fatal(e: anyhow::Error) -> ExitCode {
    let message = e.to_string().replace('\n', " ");
    log::event("error", Some(&format!("error: {message}")), json!({}));
    ExitCode::from(2)
}
