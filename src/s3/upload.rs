//! Uploading a completed run. Every file gets a SHA-256: sent as the S3 checksum of the object
//! (or of each part), so the server rejects damaged bytes, and stored as `sha256` metadata, so
//! a re-run skips objects that are already there with the same content. Files of at least
//! `part_size` go as multipart uploads; the upload id and each finished part are recorded in
//! `.upload-state.json` in the run dir (written atomically), so an upload killed part-way
//! resumes its unfinished object without re-sending the parts the server already holds. At most
//! `concurrency` requests are in flight; the SDK retries each with backoff. `manifest.json` goes
//! last, so a reader that finds it can trust the rest is there.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{S3Error, S3Url, Store};

/// Test hook: abort the process (as a kill would) after this many parts or objects were sent
/// and recorded, to prove an interrupted upload resumes.
pub const FAULT_AFTER_PARTS_ENV: &str = "EPISODE_RUN_S3_FAULT_AFTER_PARTS";

/// Where an upload records its unfinished multipart uploads, inside the run dir.
pub const STATE_FILE: &str = crate::run_dir::UPLOAD_STATE;

/// What an upload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UploadReport {
    pub objects: usize,
    pub objects_sent: usize,
    /// Already present with the same SHA-256.
    pub objects_skipped: usize,
    pub bytes_sent: u64,
    pub parts_sent: u64,
    /// Parts of an interrupted multipart upload that the server already held.
    pub parts_reused: u64,
    /// The SHA-256 (hex) of every file, sent or skipped, by its local path: what a caller
    /// that records the digests of what it uploaded reads instead of hashing the files again.
    #[serde(skip)]
    pub sha256: BTreeMap<PathBuf, String>,
}

/// One file to one object.
#[derive(Clone, Debug)]
pub struct Job {
    path: PathBuf,
    url: S3Url,
    size: u64,
}

impl Job {
    pub fn new(path: &Path, url: &S3Url) -> Result<Self, S3Error> {
        let size = fs::metadata(path).map_err(S3Error::local("read", path))?.len();
        Ok(Self { path: path.to_path_buf(), url: url.clone(), size })
    }
}

/// The files the manifest of the completed run in `run_dir` lists, its `report.html` when there,
/// then `progress.json`, then the manifest that vouches for them, each under `prefix`. Nothing else in the folder is sent:
/// every listed name must be a plain relative path to a regular file (not a link) inside it.
pub(super) fn run_jobs(run_dir: &Path, prefix: &S3Url) -> Result<Vec<Job>, S3Error> {
    let not_a_run = |why: String| S3Error::NotARun { path: run_dir.to_path_buf(), why };
    let manifest = crate::run_dir::ManifestHead::read(run_dir)
        .map_err(|e| not_a_run(format!("it has no manifest.json of this version, one that lists the run's files ({e})")))?;
    if !manifest.status.is_done() {
        return Err(not_a_run(format!("its manifest says the run is \"{}\", not done", manifest.status)));
    }
    manifest
        .upload_names(run_dir)
        .iter()
        .map(|rel| {
            let path = crate::names::safe_join(run_dir, rel, "a file the manifest lists").map_err(|e| not_a_run(e.to_string()))?;
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                return Err(not_a_run(format!("its manifest lists {rel}, which is not a regular file there")));
            }
            Job::new(&path, &prefix.join(rel))
        })
        .collect()
}

/// A multipart upload in progress, as recorded on disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Unfinished {
    upload_id: String,
    sha256: String,
    part_size: u64,
    parts: BTreeMap<i32, DonePart>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DonePart {
    etag: String,
    checksum_sha256: String,
    size: u64,
}

/// `.upload-state.json`: unfinished multipart uploads by object URL.
struct StateFile {
    path: Option<PathBuf>,
    uploads: BTreeMap<String, Unfinished>,
}

impl StateFile {
    fn load(dir: Option<&Path>) -> Self {
        let path = dir.map(|d| d.join(STATE_FILE));
        let uploads = path.as_ref().and_then(|p| fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { path, uploads }
    }

    fn save(&self) -> Result<(), S3Error> {
        let Some(path) = &self.path else { return Ok(()) };
        if self.uploads.is_empty() {
            return match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(S3Error::Local { action: "remove", path: path.clone(), source: e }),
                _ => Ok(()),
            };
        }
        crate::output::write_json_atomic(path, &self.uploads).map_err(S3Error::from)
    }
}

/// Shared by every task of one upload.
struct Shared {
    client: aws_sdk_s3::Client,
    /// The endpoint as errors show it.
    endpoint: String,
    permits: Semaphore,
    state: Mutex<StateFile>,
    sent: AtomicU64,
    fault_after: Option<u64>,
}

impl Shared {
    /// Counts one part or object sent; the test hook stops the process here.
    fn count_sent(&self) {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fault_after == Some(n) {
            std::process::abort();
        }
    }

    /// One request's place among the `concurrency` in flight.
    async fn permit(&self, url: &str) -> Result<tokio::sync::SemaphorePermit<'_>, S3Error> {
        self.permits.acquire().await.map_err(|e| S3Error::Request { url: url.to_string(), why: e.to_string() })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut StateFile) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// Digests of one file: the whole, and each `part_size` slice when it goes multipart.
struct Digests {
    sha256_hex: String,
    sha256_b64: String,
    parts: Vec<(u64, u64, String)>,
}

fn digest(job: &Job, part_size: u64) -> Result<Digests, S3Error> {
    let mut file = File::open(&job.path).map_err(S3Error::local("read", &job.path))?;
    let mut whole = Sha256::new();
    let mut parts = Vec::new();
    let multipart = job.size >= part_size;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < job.size || offset == 0 {
        let len = if multipart { part_size.min(job.size - offset) } else { job.size };
        let mut part = Sha256::new();
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).map_err(S3Error::local("read", &job.path))?;
            if n == 0 {
                return Err(S3Error::Local { action: "read", path: job.path.clone(), source: std::io::ErrorKind::UnexpectedEof.into() });
            }
            whole.update(&buf[..n]);
            part.update(&buf[..n]);
            left -= n as u64;
        }
        parts.push((offset, len, super::b64(&part.finalize())));
        offset += len;
        if len == 0 {
            break;
        }
    }
    let digest = whole.finalize();
    Ok(Digests { sha256_hex: crate::digest::hex(&digest), sha256_b64: super::b64(&digest), parts: if multipart { parts } else { Vec::new() } })
}

pub(super) async fn upload_files(store: &Store, jobs: Vec<Job>, state_dir: Option<&Path>) -> Result<UploadReport, S3Error> {
    let part_size = store.options.part_size;
    let shared = Arc::new(Shared {
        client: store.client.clone(),
        endpoint: store.endpoint.clone(),
        permits: Semaphore::new(store.options.concurrency.max(1)),
        state: Mutex::new(StateFile::load(state_dir)),
        sent: AtomicU64::new(0),
        fault_after: std::env::var(FAULT_AFTER_PARTS_ENV).ok().and_then(|v| v.parse().ok()),
    });
    let mut report = UploadReport { objects: jobs.len(), ..UploadReport::default() };
    let (last, rest) = match jobs.split_last() {
        Some((last, rest)) => (Some(last.clone()), rest.to_vec()),
        None => (None, Vec::new()),
    };
    // Everything but the last file in parallel; the last (the manifest of a run) after them.
    let mut set = tokio::task::JoinSet::new();
    for job in rest {
        let digests = digest(&job, part_size)?;
        report.sha256.insert(job.path.clone(), digests.sha256_hex.clone());
        set.spawn(upload_one(shared.clone(), job, digests, part_size));
    }
    let mut first_error = None;
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Ok(one)) => report.add(&one),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(S3Error::Request { url: "an upload task".into(), why: join.to_string() });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(job) = last {
        let digests = digest(&job, part_size)?;
        report.sha256.insert(job.path.clone(), digests.sha256_hex.clone());
        match upload_one(shared.clone(), job, digests, part_size).await {
            Ok(one) => report.add(&one),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// What uploading one file did.
struct One {
    sent: bool,
    bytes: u64,
    parts_sent: u64,
    parts_reused: u64,
}

impl UploadReport {
    fn add(&mut self, one: &One) {
        if one.sent {
            self.objects_sent += 1;
        } else {
            self.objects_skipped += 1;
        }
        self.bytes_sent += one.bytes;
        self.parts_sent += one.parts_sent;
        self.parts_reused += one.parts_reused;
    }
}

async fn upload_one(shared: Arc<Shared>, job: Job, digests: Digests, part_size: u64) -> Result<One, S3Error> {
    let url = job.url.clone();
    {
        let _permit = shared.permit(&url.to_string()).await?;
        match shared.client.head_object().bucket(&url.bucket).key(&url.key).send().await {
            Ok(head) => {
                let same_size = head.content_length() == i64::try_from(job.size).ok();
                let same_sha = head.metadata().and_then(|m| m.get("sha256")) == Some(&digests.sha256_hex);
                if same_size && same_sha {
                    crate::log::event("upload_skip", None, serde_json::json!({"url": url.to_string(), "bytes": job.size}));
                    return Ok(One { sent: false, bytes: 0, parts_sent: 0, parts_reused: 0 });
                }
            }
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => {}
            Err(e) => return Err(super::describe(e, &url, false, &shared.endpoint)),
        }
    }
    let one = if digests.parts.is_empty() {
        let _permit = shared.permit(&url.to_string()).await?;
        let body = ByteStream::read_from().path(&job.path).build().await.map_err(|e| S3Error::Request { url: url.to_string(), why: super::chain(&e) })?;
        shared
            .client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_length(i64::try_from(job.size).unwrap_or(i64::MAX))
            .checksum_sha256(&digests.sha256_b64)
            .metadata("sha256", &digests.sha256_hex)
            .body(body)
            .send()
            .await
            .map_err(|e| super::describe(e, &url, false, &shared.endpoint))?;
        shared.count_sent();
        One { sent: true, bytes: job.size, parts_sent: 0, parts_reused: 0 }
    } else {
        multipart(&shared, &job, &digests, part_size).await?
    };
    crate::log::event("upload_object", None, serde_json::json!({"url": url.to_string(), "bytes": job.size, "parts": digests.parts.len()}));
    Ok(one)
}

/// Sends `job` in parts, reusing those an interrupted upload of the same content left behind.
async fn multipart(shared: &Arc<Shared>, job: &Job, digests: &Digests, part_size: u64) -> Result<One, S3Error> {
    let url = &job.url;
    let key = url.to_string();
    let (recorded, stale): (Option<Unfinished>, Option<Unfinished>) = match shared.with_state(|s| s.uploads.get(&key).cloned()) {
        Some(u) if u.sha256 == digests.sha256_hex && u.part_size == part_size => (Some(u), None),
        other => (None, other),
    };
    if let Some(stale) = stale {
        // The file changed since: its parts are of no use. Best effort; S3 lifecycle rules
        // clean up what this misses.
        let _permit = shared.permit(&key).await?;
        let _ = shared.client.abort_multipart_upload().bucket(&url.bucket).key(&url.key).upload_id(&stale.upload_id).send().await;
    }
    let mut done: BTreeMap<i32, DonePart> = BTreeMap::new();
    let mut upload_id = None;
    if let Some(rec) = recorded {
        // Trust a recorded part only if the server still holds it, at the same size.
        let listed = shared.client.list_parts().bucket(&url.bucket).key(&url.key).upload_id(&rec.upload_id).send().await;
        if let Ok(listed) = listed {
            for p in listed.parts() {
                let (Some(n), Some(size)) = (p.part_number(), p.size()) else { continue };
                if let Some(mine) = rec.parts.get(&n).filter(|m| i64::try_from(m.size).ok() == Some(size)) {
                    done.insert(n, mine.clone());
                }
            }
            upload_id = Some(rec.upload_id.clone());
        }
    }
    let parts_reused = done.len() as u64;
    let upload_id = match upload_id {
        Some(id) => id,
        None => {
            let _permit = shared.permit(&key).await?;
            let created = shared
                .client
                .create_multipart_upload()
                .bucket(&url.bucket)
                .key(&url.key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .metadata("sha256", &digests.sha256_hex)
                .send()
                .await
                .map_err(|e| super::describe(e, url, false, &shared.endpoint))?;
            created.upload_id().unwrap_or_default().to_string()
        }
    };
    shared.with_state(|s| {
        s.uploads.insert(key.clone(), Unfinished { upload_id: upload_id.clone(), sha256: digests.sha256_hex.clone(), part_size, parts: done.clone() });
        s.save()
    })?;

    let mut set = tokio::task::JoinSet::new();
    for (i, (offset, len, checksum)) in digests.parts.iter().enumerate() {
        let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if done.contains_key(&number) {
            continue;
        }
        let (shared, path, url, upload_id, checksum, key) = (shared.clone(), job.path.clone(), url.clone(), upload_id.clone(), checksum.clone(), key.clone());
        let (offset, len) = (*offset, *len);
        set.spawn(async move {
            let _permit = shared.permit(&key).await?;
            let body = ByteStream::read_from()
                .path(&path)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| S3Error::Request { url: key.clone(), why: super::chain(&e) })?;
            let out = shared
                .client
                .upload_part()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(&upload_id)
                .part_number(number)
                .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                .checksum_sha256(&checksum)
                .body(body)
                .send()
                .await
                .map_err(|e| super::describe(e, &url, false, &shared.endpoint))?;
            let part = DonePart { etag: out.e_tag().unwrap_or_default().to_string(), checksum_sha256: checksum, size: len };
            shared.with_state(|s| {
                if let Some(u) = s.uploads.get_mut(&key) {
                    u.parts.insert(number, part.clone());
                }
                s.save()
            })?;
            crate::log::event("upload_part", None, serde_json::json!({"url": key, "part": number, "bytes": len}));
            shared.count_sent();
            Ok::<_, S3Error>((number, part))
        });
    }
    let mut parts_sent = 0;
    let mut bytes = 0;
    while let Some(joined) = set.join_next().await {
        let (number, part) = joined.map_err(|e| S3Error::Request { url: key.clone(), why: e.to_string() })??;
        bytes += part.size;
        parts_sent += 1;
        done.insert(number, part);
    }
    let completed: Vec<CompletedPart> =
        done.iter().map(|(n, p)| CompletedPart::builder().part_number(*n).e_tag(&p.etag).checksum_sha256(&p.checksum_sha256).build()).collect();
    {
        let _permit = shared.permit(&key).await?;
        shared
            .client
            .complete_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| super::describe(e, url, false, &shared.endpoint))?;
    }
    shared.with_state(|s| {
        s.uploads.remove(&key);
        s.save()
    })?;
    Ok(One { sent: true, bytes, parts_sent, parts_reused })
}
