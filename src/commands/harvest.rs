//! `episode-run harvest INPUT`: the flags validated into a config, the out dir checked before
//! any download, an `s3://` input fetched, the harvest run, its result told in one line, and the
//! run uploaded when asked.

use serde_json::json;

use super::{remote, Error, Outcome};
use crate::cli::HarvestArgs;
use crate::config::HarvestConfig;
use crate::{interrupt, log, pipeline, run_dir};

pub fn run(args: &HarvestArgs) -> Result<Outcome, Error> {
    interrupt::install();
    log::set_format(args.log_format);
    let mut cfg = HarvestConfig::from_args(args)?;
    // Before any download or bucket check: an out dir we may not write into is refused now.
    run_dir::check_claimable(&cfg.out_dir)?;
    let upload = match remote::before_harvest(&mut cfg)? {
        Ok(upload) => upload,
        Err(stop) => return Ok(stop),
    };
    let summary = pipeline::harvest(&cfg)?;
    let out_dir = &summary.out_dir;
    if summary.already_harvested {
        let text = format!("already harvested: {} holds this run of {} completed (--force re-runs it)", out_dir.display(), cfg.input.display());
        log::event("already_harvested", Some(&text), json!({"out_dir": out_dir}));
        println!("{}", out_dir.display());
        return remote::after_harvest(upload, out_dir, cfg.quiet);
    }
    let c = &summary.counts;
    let skipped: u64 = c.faces_skipped.values().sum();
    let text = format!(
        "harvested {} frames ({} sampled, {} shots): {} faces in {} tracks, {} embedded, {} skipped, {} embed calls in {:.1} s",
        c.frames_decoded, c.frames_sampled, c.shots, c.faces_detected, c.tracks, c.faces_embedded, skipped, c.embed_calls, summary.wall_s
    );
    log::event("finish", (!cfg.quiet).then_some(text.as_str()), json!({"out_dir": out_dir, "counts": c, "wall_s": summary.wall_s}));
    println!("{}", out_dir.display());
    if summary.interrupted {
        let text = format!(
            "interrupted: stopped after {} frames; {} holds everything harvested up to there (run the same command again to resume)",
            c.frames_decoded,
            out_dir.display()
        );
        log::event("interrupted", Some(&text), json!({"frames_decoded": c.frames_decoded}));
        return Ok(Outcome::Interrupted);
    }
    if remote::after_harvest(upload, out_dir, cfg.quiet)? == Outcome::S3Failed {
        return Ok(Outcome::S3Failed);
    }
    if let Some(problem) = &summary.problem {
        log::event("warning", Some(&format!("warning: {problem}")), json!({}));
        return Ok(Outcome::DoneWithLoss);
    }
    Ok(Outcome::Done)
}
