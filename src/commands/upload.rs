//! `episode-run upload RUN_DIR s3://bucket/prefix/`: uploads a completed run alone (a retry of a
//! harvest's `--upload`).

use super::{remote, Error, Outcome};
use crate::cli::UploadArgs;
use crate::config::UploadConfig;
use crate::log;

pub fn run(args: &UploadArgs) -> Result<Outcome, Error> {
    log::set_format(args.log_format);
    let cfg = UploadConfig::from_args(args)?;
    remote::upload(&cfg.run_dir, &cfg.dest, &cfg.remote, cfg.quiet)
}
