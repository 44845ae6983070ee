//! Object storage in and out, for fleets that keep episodes and results in S3: fetch an
//! `s3://` input into a local cache ([`fetch`]), upload a completed run ([`upload`]), and read,
//! list and conditionally write small objects ([`objects`]). The AWS
//! SDK (and its async runtime) stays inside this module: callers get a blocking [`Store`] and
//! typed [`S3Error`]s whose messages name the bucket and key, never a secret.
//!
//! Credentials, region and endpoint come from the standard AWS chain (env vars, shared
//! config/credentials files, `AWS_ENDPOINT_URL`, …); [`S3Options`] adds an explicit endpoint and
//! path-style addressing for S3-compatible servers.

mod fetch;
mod objects;
mod upload;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use fetch::Fetched;
pub use objects::{Condition, Got, Listed, Put};
pub use upload::{UploadReport, FAULT_AFTER_PARTS_ENV};

/// Requests are tried this many times (with exponential backoff) before an error is final.
const MAX_ATTEMPTS: u32 = 5;

/// `s3://bucket/key`: an object, or with a trailing `/` a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub key: String,
}

impl S3Url {
    /// Whether `text` names an object store location rather than a local path.
    pub fn is_s3(text: &str) -> bool {
        text.starts_with("s3://")
    }

    pub fn parse(text: &str) -> Result<Self, S3Error> {
        let bad = |why: &str| S3Error::BadUrl { url: text.to_string(), why: why.to_string() };
        let rest = text.strip_prefix("s3://").ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len()) && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad("the bucket name must be 3-63 characters of a-z, 0-9, '-' and '.'"));
        }
        if key.split('/').any(|part| part == ".." || part == ".") {
            return Err(bad("the key must not contain '.' or '..' segments"));
        }
        Ok(Self { bucket: bucket.to_string(), key: key.to_string() })
    }

    /// The key of `name` under this prefix (`prefix/` + name; a prefix without a trailing
    /// slash still names a folder).
    pub fn join(&self, name: &str) -> S3Url {
        let key = match self.key.as_str() {
            "" => name.to_string(),
            k if k.ends_with('/') => format!("{k}{name}"),
            k => format!("{k}/{name}"),
        };
        S3Url { bucket: self.bucket.clone(), key }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// How to reach the store and how hard to push it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint URL for S3-compatible servers (otherwise the AWS chain's, e.g. `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`.
    pub path_style: bool,
    /// Requests in flight at once during an upload.
    pub concurrency: usize,
    /// Files at least this large are sent as multipart uploads of parts this large.
    pub part_size: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        Self { endpoint: None, path_style: false, concurrency: 4, part_size: 8 << 20 }
    }
}

impl From<&crate::config::RemoteCfg> for S3Options {
    fn from(r: &crate::config::RemoteCfg) -> Self {
        Self { endpoint: r.endpoint.clone(), path_style: r.path_style, concurrency: r.concurrency, part_size: r.part_size }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 URL {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot start the S3 client: {0}")]
    Runtime(std::io::Error),
    #[error("cannot reach the S3 endpoint{endpoint} for {url}: {why}")]
    Unreachable { url: String, endpoint: String, why: String },
    #[error("no AWS credentials for {url}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials")]
    NoCredentials { url: String },
    #[error("access denied to {url} ({code}): check the credentials and the bucket policy")]
    Denied { url: String, code: String },
    #[error("bucket {bucket} does not exist (for {url})")]
    NoSuchBucket { bucket: String, url: String },
    #[error("{url} does not exist (no such key {key:?} in bucket {bucket})")]
    NoSuchKey { url: String, bucket: String, key: String },
    #[error("S3 request for {url} failed: {why}")]
    Request { url: String, why: String },
    #[error("{url} changed while it was being downloaded (ETag {expected} became {found})")]
    Changed { url: String, expected: String, found: String },
    #[error("{url}: the downloaded bytes do not match the object's {what} ({expected}, got {found})")]
    Corrupt { url: String, what: &'static str, expected: String, found: String },
    #[error("cannot fetch {url}: {source}")]
    UnsafeKey { url: String, source: crate::names::UnsafeName },
    #[error("{url}: the server answered a ranged GET wrongly ({why}) {tries} time(s); the partial download was discarded")]
    BadRange { url: String, why: String, tries: u32 },
    #[error(transparent)]
    RunDir(#[from] crate::run_dir::RunDirError),
    #[error("{path} is not a completed run: {why}")]
    NotARun { path: PathBuf, why: String },
    #[error("cannot {action} {path}: {source}")]
    Local { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl S3Error {
    fn local(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> S3Error {
        let path = path.into();
        move |source| S3Error::Local { action, path, source }
    }
}

impl From<crate::output::OutputError> for S3Error {
    fn from(e: crate::output::OutputError) -> Self {
        S3Error::Local { action: "write", path: e.path, source: e.source }
    }
}

/// A connected client: one small async runtime driven from blocking calls.
pub struct Store {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    options: S3Options,
    /// The endpoint as errors show it (no user info), or empty for AWS's own.
    endpoint: String,
}

impl Store {
    /// Builds the client from the AWS chain plus `options`. Makes no request yet.
    pub fn connect(options: S3Options) -> Result<Self, S3Error> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(S3Error::Runtime)?;
        let client = rt.block_on(build_client(&options));
        let endpoint = match options.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()) {
            Some(e) => format!(" {}", redact_endpoint(&e)),
            None => String::new(),
        };
        Ok(Self { rt, client, options, endpoint })
    }

    /// Downloads `url` into `cache_dir` (or finds it there unchanged) and returns the local file.
    pub fn fetch(&self, url: &S3Url, cache_dir: &std::path::Path) -> Result<Fetched, S3Error> {
        self.rt.block_on(fetch::fetch(self, url, cache_dir))
    }

    /// Uploads one local file to `url` (multipart when large), skipping it when the object is
    /// already there with the same SHA-256. Returns whether bytes were sent.
    pub fn put_file(&self, path: &std::path::Path, url: &S3Url) -> Result<bool, S3Error> {
        let report = self.rt.block_on(upload::upload_files(self, vec![upload::Job::new(path, url)?], None))?;
        Ok(report.objects_sent > 0)
    }

    /// Uploads every file of the completed run in `run_dir` under `prefix` (see [`upload`]),
    /// holding the run folder's lock throughout.
    pub fn upload_run(&self, run_dir: &std::path::Path, prefix: &S3Url) -> Result<UploadReport, S3Error> {
        let _lock = crate::run_dir::open(run_dir)?;
        let jobs = upload::run_jobs(run_dir, prefix)?;
        self.check_bucket(prefix)?;
        self.rt.block_on(upload::upload_files(self, jobs, Some(run_dir)))
    }

    /// Fails early when `prefix`'s bucket cannot be written to by these credentials (before a
    /// long harvest whose upload would then fail).
    pub fn check_bucket(&self, prefix: &S3Url) -> Result<(), S3Error> {
        self.rt.block_on(self.check_bucket_async(prefix))
    }

    /// `Ok(())` when `err` is a missing key in a bucket that exists: a 404 cannot say whether
    /// the bucket or the key is missing, so the bucket is asked. Any other error stays.
    async fn key_missing(&self, err: S3Error, url: &S3Url) -> Result<(), S3Error> {
        match err {
            S3Error::NoSuchKey { .. } => self.check_bucket_async(url).await,
            other => Err(other),
        }
    }

    async fn check_bucket_async(&self, url: &S3Url) -> Result<(), S3Error> {
        self.client.head_bucket().bucket(&url.bucket).send().await.map(|_| ()).map_err(|e| describe(e, url, true, &self.endpoint))
    }
}

/// One clear error for a failed request on `url`. `bucket_level`: a 404 means the bucket.
fn describe<E, R>(err: SdkError<E, R>, url: &S3Url, bucket_level: bool, endpoint: &str) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + HttpStatus + 'static,
{
    let shown = url.to_string();
    let status = err.raw_response().map(HttpStatus::status);
    match &err {
        _ if is_credentials_error(&err) => return S3Error::NoCredentials { url: shown },
        SdkError::DispatchFailure(_) => {
            return S3Error::Unreachable { url: shown, endpoint: endpoint.to_string(), why: chain(&err) };
        }
        SdkError::TimeoutError(_) => {
            return S3Error::Unreachable { url: shown, endpoint: endpoint.to_string(), why: "timed out".into() };
        }
        _ => {}
    }
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code).map(str::to_string);
    match (code.as_deref(), status) {
        (Some("NoSuchBucket"), _) => S3Error::NoSuchBucket { bucket: url.bucket.clone(), url: shown },
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) if !bucket_level => {
            S3Error::NoSuchKey { url: shown, bucket: url.bucket.clone(), key: url.key.clone() }
        }
        (_, Some(404)) => S3Error::NoSuchBucket { bucket: url.bucket.clone(), url: shown },
        (Some(c @ ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken")), _) => {
            S3Error::Denied { url: shown, code: c.to_string() }
        }
        (None, Some(s @ (401 | 403))) => S3Error::Denied { url: shown, code: format!("HTTP {s}") },
        _ => S3Error::Request { url: shown, why: chain(&err) },
    }
}

/// Status of a raw HTTP response, whatever the SDK's response type.
trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Whether the request never left because no credentials could be resolved.
fn is_credentials_error<E: std::error::Error + 'static, R: fmt::Debug + 'static>(err: &SdkError<E, R>) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.to_string().to_lowercase().contains("credentials provider") || e.to_string().contains("no credentials") {
            return true;
        }
        source = e.source();
    }
    false
}

/// An error and its causes on one line (the SDK's top-level message alone says little).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// An endpoint URL without any `user:password@` part.
pub fn redact_endpoint(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else { return endpoint.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => endpoint.to_string(),
    }
}

async fn build_client(options: &S3Options) -> aws_sdk_s3::Client {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;

    let http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS).with_initial_backoff(Duration::from_millis(500)))
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).read_timeout(Duration::from_secs(60)).build());
    if let Some(endpoint) = &options.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(options.path_style);
    if shared.region().is_none() {
        config = config.region(aws_sdk_s3::config::Region::new("us-east-1"));
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// Standard base64 of a digest, as S3's `x-amz-checksum-sha256` carries it.
fn b64(digest: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let u = S3Url::parse("s3://my-bucket/shows/ep42.mp4").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("my-bucket", "shows/ep42.mp4"));
        assert_eq!(u.to_string(), "s3://my-bucket/shows/ep42.mp4");
        let p = S3Url::parse("s3://my-bucket/runs/").unwrap();
        assert_eq!(p.join("faces.jsonl").key, "runs/faces.jsonl");
        assert_eq!(S3Url::parse("s3://my-bucket/runs").unwrap().join("a").key, "runs/a");
        assert_eq!(S3Url::parse("s3://my-bucket").unwrap().join("a").key, "a");
        for bad in ["http://x/y", "s3://", "s3://AB/x", "s3://ok-bucket/../x", "s3://b/x"] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_lose_their_user_info() {
        assert_eq!(redact_endpoint("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(redact_endpoint("https://user:secret@minio.local:9000/x"), "https://minio.local:9000/x");
        assert_eq!(redact_endpoint("https://minio.local/a@b"), "https://minio.local/a@b");
    }
}
