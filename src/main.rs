//! Thin entry point: parse flags, validate them into a config, run, map the outcome to an exit
//! code — 0 done, 1 done but some input could not be decoded, 2 fatal (one line on stderr),
//! 3 the harvest is done but its S3 upload failed (the local run is intact), 130 stopped by
//! Ctrl-C/SIGTERM after publishing what it had.

use std::process::ExitCode;

use clap::Parser;
use episode_run::cli::{Cli, Command};
use episode_run::config::{FloorConfig, HarvestConfig, IdentifyConfig, UploadConfig};
use episode_run::{interrupt, log};
use serde_json::json;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Harvest(args) => {
            interrupt::install();
            log::set_format(args.log_format);
            let mut cfg = match HarvestConfig::from_args(&args) {
                Ok(cfg) => cfg,
                Err(e) => return fatal(e.into()),
            };
            // Before any download or bucket check: an out dir we may not write into is refused now.
            if let Err(e) = episode_run::run_dir::check_claimable(&cfg.out_dir) {
                return fatal(e.into());
            }
            let upload = match remote::before_harvest(&mut cfg) {
                Ok(upload) => upload,
                Err(code) => return code,
            };
            match episode_run::harvest(&cfg) {
                Ok(summary) if summary.already_harvested => {
                    let text =
                        format!("already harvested: {} holds this run of {} completed (--force re-runs it)", summary.out_dir.display(), cfg.input.display());
                    log::event("already_harvested", Some(&text), json!({"out_dir": summary.out_dir}));
                    println!("{}", summary.out_dir.display());
                    remote::after_harvest(upload, &summary.out_dir, cfg.quiet).unwrap_or(ExitCode::SUCCESS)
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
                    if let Some(failed) = remote::after_harvest(upload, &summary.out_dir, cfg.quiet) {
                        return failed;
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
            let result = IdentifyConfig::from_args(&args).map_err(anyhow::Error::from).and_then(|cfg| episode_run::identify(&cfg).map_err(anyhow::Error::from));
            match result {
                Ok(s) => {
                    eprintln!("matched against {} people: {} faces and {} tracks named", s.people.len(), s.faces_named, s.tracks_named);
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(e),
            }
        }
        Command::Upload(args) => {
            log::set_format(args.log_format);
            match UploadConfig::from_args(&args) {
                Ok(cfg) => remote::upload(&cfg),
                Err(e) => fatal(e.into()),
            }
        }
        Command::Floor(args) => {
            let result =
                FloorConfig::from_args(&args).map_err(anyhow::Error::from).and_then(|cfg| episode_run::pipeline::floor(&cfg).map_err(anyhow::Error::from));
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

/// Exit code of a harvest whose upload failed, and of a failed `upload`.
const UPLOAD_FAILED: u8 = 3;

/// S3 around a harvest: fetch an `s3://` input first, upload the completed run after.
#[cfg(feature = "s3")]
mod remote {
    use super::*;
    use episode_run::config::RemoteCfg;
    use episode_run::s3::{S3Error, S3Url, Store};
    use std::path::Path;

    /// Where a completed harvest goes.
    pub struct Upload {
        store: Store,
        dest: S3Url,
        remote: RemoteCfg,
    }

    /// Fetches an `s3://` input into the cache (cfg.input becomes the local copy) and checks
    /// that the upload destination's bucket is reachable before hours of harvesting.
    pub fn before_harvest(cfg: &mut HarvestConfig) -> Result<Option<Upload>, ExitCode> {
        if cfg.source.is_none() && cfg.upload.is_none() {
            return Ok(None);
        }
        let store = Store::connect((&cfg.remote).into()).map_err(|e| fatal(e.into()))?;
        if let Some(source) = cfg.source.clone() {
            let url = S3Url::parse(&source).map_err(|e| fatal(e.into()))?;
            let fetched = store.fetch(&url, &cfg.cache_dir.join("s3")).map_err(|e| fatal(e.into()))?;
            let text = match (fetched.downloaded, fetched.resumed_from) {
                (0, _) => format!("{url}: unchanged, using the cached copy {}", fetched.path.display()),
                (n, 0) => format!("{url}: downloaded {} into {}", mib(n), fetched.path.display()),
                (n, r) => format!("{url}: resumed a download at {}, fetched the other {} into {}", mib(r), mib(n), fetched.path.display()),
            };
            log::event(
                "fetch",
                (!cfg.quiet).then_some(text.as_str()),
                json!({"url": source, "path": fetched.path, "bytes": fetched.size, "downloaded": fetched.downloaded, "resumed_from": fetched.resumed_from}),
            );
            cfg.input = fetched.path;
        }
        let Some(dest) = cfg.upload.clone() else { return Ok(None) };
        let dest = S3Url::parse(&dest).map_err(|e| fatal(e.into()))?;
        match store.check_bucket(&dest) {
            Ok(()) => Ok(Some(Upload { store, dest, remote: cfg.remote.clone() })),
            Err(e) => Err(upload_failed(&e, &dest, None)),
        }
    }

    /// Uploads the run; `Some(code)` when that failed.
    pub fn after_harvest(upload: Option<Upload>, out_dir: &Path, quiet: bool) -> Option<ExitCode> {
        let Upload { store, dest, remote } = upload?;
        send(&store, out_dir, &dest, &remote, quiet).err()
    }

    /// `episode-run upload RUN_DIR s3://…`.
    pub fn upload(cfg: &UploadConfig) -> ExitCode {
        let dest = match S3Url::parse(&cfg.dest) {
            Ok(dest) => dest,
            Err(e) => return fatal(e.into()),
        };
        let store = match Store::connect((&cfg.remote).into()) {
            Ok(store) => store,
            Err(e) => return fatal(e.into()),
        };
        send(&store, &cfg.run_dir, &dest, &cfg.remote, cfg.quiet).err().unwrap_or(ExitCode::SUCCESS)
    }

    fn send(store: &Store, run_dir: &Path, dest: &S3Url, remote: &RemoteCfg, quiet: bool) -> Result<(), ExitCode> {
        match store.upload_run(run_dir, dest) {
            Ok(r) => {
                let mut text = format!(
                    "uploaded {} to {dest}: {} objects sent ({}), {} already there",
                    run_dir.display(),
                    r.objects_sent,
                    mib(r.bytes_sent),
                    r.objects_skipped
                );
                if r.parts_reused > 0 {
                    text.push_str(&format!(", {} parts kept from an interrupted upload", r.parts_reused));
                }
                log::event("upload", (!quiet).then_some(text.as_str()), json!({"dest": dest.to_string(), "report": r}));
                Ok(())
            }
            Err(e @ (S3Error::NotARun { .. } | S3Error::RunDir(_))) => Err(fatal(e.into())),
            Err(e) => Err(upload_failed(&e, dest, Some((run_dir, remote)))),
        }
    }

    fn upload_failed(e: &S3Error, dest: &S3Url, run: Option<(&Path, &RemoteCfg)>) -> ExitCode {
        let text = match run {
            Some((dir, remote)) => format!(
                "error: upload to {dest} failed: {e}; the run in {} is complete and intact (retry the upload alone: {})",
                dir.display(),
                retry_command(dir, dest, remote)
            ),
            None => format!("error: cannot upload to {dest}: {e}; nothing was harvested"),
        };
        log::event("upload_failed", Some(&text.replace('\n', " ")), json!({"dest": dest.to_string()}));
        ExitCode::from(UPLOAD_FAILED)
    }

    /// `episode-run upload DIR DEST` with the flags that reach the same store, quoted for a
    /// POSIX shell.
    fn retry_command(dir: &Path, dest: &S3Url, remote: &RemoteCfg) -> String {
        let mut words = vec!["episode-run".to_string(), "upload".into(), shell_quote(&dir.to_string_lossy()), shell_quote(&dest.to_string())];
        if let Some(endpoint) = &remote.endpoint {
            words.extend(["--s3-endpoint".into(), shell_quote(&episode_run::s3::redact_endpoint(endpoint))]);
        }
        if remote.path_style {
            words.push("--s3-path-style".into());
        }
        words.join(" ")
    }

    /// `text` as one shell word: as it is when it holds only safe characters, else in single quotes.
    fn shell_quote(text: &str) -> String {
        let safe = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:@=+,%".contains(c));
        if safe {
            text.to_string()
        } else {
            format!("'{}'", text.replace('\'', "'\\''"))
        }
    }

    fn mib(bytes: u64) -> String {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_retry_hint_reaches_the_same_store_and_survives_a_shell() {
            let dest = S3Url::parse("s3://bucket/runs/").unwrap();
            let remote = RemoteCfg { endpoint: Some("http://user:pw@127.0.0.1:9000".into()), path_style: true, concurrency: 4, part_size: 8 << 20 };
            let hint = retry_command(Path::new("/data/it's mine"), &dest, &remote);
            assert_eq!(hint, "episode-run upload '/data/it'\\''s mine' s3://bucket/runs/ --s3-endpoint http://127.0.0.1:9000 --s3-path-style");
        }
    }
}

/// Built without S3: the config refuses `s3://`, so there is nothing to do.
#[cfg(not(feature = "s3"))]
mod remote {
    use super::*;
    use std::path::Path;

    pub struct Upload;

    pub fn before_harvest(_: &mut HarvestConfig) -> Result<Option<Upload>, ExitCode> {
        Ok(None)
    }

    pub fn after_harvest(_: Option<Upload>, _: &Path, _: bool) -> Option<ExitCode> {
        None
    }

    pub fn upload(_: &UploadConfig) -> ExitCode {
        ExitCode::from(UPLOAD_FAILED)
    }
}

/// `text` as one printable line: newlines become spaces, other control characters (a key or a
/// path may hold any) their escapes, so nothing reaches the terminal as a control sequence.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_debug()),
            c => out.push(c),
        }
    }
    out
}

/// Our errors already carry their cause in their message: one line, no chain, exit 2.
fn fatal(e: anyhow::Error) -> ExitCode {
    let message = printable(&e.to_string());
    log::event("error", Some(&format!("error: {message}")), json!({}));
    ExitCode::from(2)
}
