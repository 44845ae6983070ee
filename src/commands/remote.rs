//! S3 around the commands: fetch an `s3://` input before a harvest, upload a completed run after
//! it (or alone, for `upload`). An upload that fails is exit 3 with a message saying the local
//! run is intact and how to retry; everything else that fails here is fatal.

use std::path::Path;

use serde_json::json;

use super::{Error, Outcome};
use crate::config::{HarvestConfig, RemoteCfg};
use crate::log;
use crate::s3::{redact_endpoint, S3Error, S3Url, Store};

/// Where a completed harvest goes.
pub struct Upload {
    store: Store,
    dest: S3Url,
    remote: RemoteCfg,
}

/// Fetches an `s3://` input into the cache (cfg.input becomes the local copy) and checks that the
/// upload destination's bucket is reachable before hours of harvesting. `Ok(Err(outcome))`: the
/// destination cannot be used, the harvest must not start.
pub fn before_harvest(cfg: &mut HarvestConfig) -> Result<Result<Option<Upload>, Outcome>, Error> {
    if cfg.source.is_none() && cfg.upload.is_none() {
        return Ok(Ok(None));
    }
    let store = Store::connect((&cfg.remote).into())?;
    if let Some(source) = cfg.source.clone() {
        let url = S3Url::parse(&source)?;
        let fetched = store.fetch(&url, &cfg.cache_dir.join("s3"))?;
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
    let Some(dest) = cfg.upload.clone() else { return Ok(Ok(None)) };
    let dest = S3Url::parse(&dest)?;
    Ok(match store.check_bucket(&dest) {
        Ok(()) => Ok(Some(Upload { store, dest, remote: cfg.remote.clone() })),
        Err(e) => Err(upload_failed(&e, &dest, None)),
    })
}

/// Uploads the run if the harvest was asked to.
pub fn after_harvest(upload: Option<Upload>, out_dir: &Path, quiet: bool) -> Result<Outcome, Error> {
    match upload {
        Some(Upload { store, dest, remote }) => send(&store, out_dir, &dest, &remote, quiet),
        None => Ok(Outcome::Done),
    }
}

/// `episode-run upload RUN_DIR s3://…`.
pub fn upload(run_dir: &Path, dest: &str, remote: &RemoteCfg, quiet: bool) -> Result<Outcome, Error> {
    let dest = S3Url::parse(dest)?;
    let store = Store::connect(remote.into())?;
    send(&store, run_dir, &dest, remote, quiet)
}

fn send(store: &Store, run_dir: &Path, dest: &S3Url, remote: &RemoteCfg, quiet: bool) -> Result<Outcome, Error> {
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
            Ok(Outcome::Done)
        }
        // Not a run, or one in use: nothing was attempted, a plain fatal error.
        Err(e @ (S3Error::NotARun { .. } | S3Error::RunDir(_))) => Err(e.into()),
        Err(e) => Ok(upload_failed(&e, dest, Some((run_dir, remote)))),
    }
}

fn upload_failed(e: &S3Error, dest: &S3Url, run: Option<(&Path, &RemoteCfg)>) -> Outcome {
    let text = match run {
        Some((dir, remote)) => format!(
            "error: upload to {dest} failed: {e}; the run in {} is complete and intact (retry the upload alone: {})",
            dir.display(),
            retry_command(dir, dest, remote)
        ),
        None => format!("error: cannot upload to {dest}: {e}; nothing was harvested"),
    };
    log::event("upload_failed", Some(&text.replace('\n', " ")), json!({"dest": dest.to_string()}));
    Outcome::S3Failed
}

/// `episode-run upload DIR DEST` with the flags that reach the same store, quoted for a POSIX shell.
fn retry_command(dir: &Path, dest: &S3Url, remote: &RemoteCfg) -> String {
    let mut words = vec!["episode-run".to_string(), "upload".into(), shell_quote(&dir.to_string_lossy()), shell_quote(&dest.to_string())];
    if let Some(endpoint) = &remote.endpoint {
        words.extend(["--s3-endpoint".into(), shell_quote(&redact_endpoint(endpoint))]);
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
