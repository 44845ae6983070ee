//! `s3://` inputs: the object is downloaded once into a local cache with ranged GETs, each
//! pinned to the ETag seen at the start (`If-Match`), so a changed object is noticed instead of
//! stitched. A download that stops part-way leaves `<file>.partial` plus a small JSON note of
//! the ETag and size it belongs to; the next fetch of the same, unchanged object continues from
//! there. The finished file is checked against the object's size and SHA-256 (the S3 checksum,
//! or the `sha256` metadata our uploads set) before it is renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_s3::types::ChecksumMode;
use serde::{Deserialize, Serialize};

use super::{S3Error, S3Url, Store};

/// Bytes per ranged GET.
const RANGE: u64 = 8 << 20;

/// A fetched input.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// Bytes downloaded by this call (0: the cached copy was unchanged).
    pub downloaded: u64,
    /// Bytes already in a `.partial` file from an earlier, interrupted fetch.
    pub resumed_from: u64,
    pub size: u64,
}

/// What the cache knows about a local copy: the object version it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CacheNote {
    url: String,
    etag: String,
    size: u64,
}

pub(super) async fn fetch(store: &Store, url: &S3Url, cache_dir: &Path) -> Result<Fetched, S3Error> {
    if url.key.is_empty() || url.key.ends_with('/') {
        return Err(S3Error::BadUrl { url: url.to_string(), why: "an input must name an object, not a prefix".into() });
    }
    // The local copy's path is built from the bucket and key: checked before any request, so
    // a key like `/etc/passwd` or `a/../../x` can never name a file outside the cache.
    let unsafe_key = |source| S3Error::UnsafeKey { url: url.to_string(), source };
    let bucket_dir = crate::names::safe_join(cache_dir, &url.bucket, "S3 bucket").map_err(unsafe_key)?;
    let dest = crate::names::safe_join(&bucket_dir, &url.key, "S3 key").map_err(unsafe_key)?;
    let head = match store.client.head_object().bucket(&url.bucket).key(&url.key).checksum_mode(ChecksumMode::Enabled).send().await {
        Ok(head) => head,
        Err(e) => {
            let err = super::describe(e, url, false, &store.endpoint);
            // A HEAD 404 cannot say whether the bucket or the key is missing: ask the bucket.
            if matches!(err, S3Error::NoSuchKey { .. }) {
                store.check_bucket_async(url).await?;
            }
            return Err(err);
        }
    };
    let size = head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let etag = head.e_tag().unwrap_or_default().to_string();
    let expected_sha = expected_sha256(head.checksum_sha256(), head.metadata().and_then(|m| m.get("sha256")).map(String::as_str));
    let note = CacheNote { url: url.to_string(), etag: etag.clone(), size };

    let dir = dest.parent().unwrap_or(cache_dir).to_path_buf();
    fs::create_dir_all(&dir).map_err(S3Error::local("create cache dir", &dir))?;
    let note_path = with_suffix(&dest, ".s3.json");
    if read_note(&note_path).as_ref() == Some(&note) && fs::metadata(&dest).map(|m| m.len()).ok() == Some(size) {
        return Ok(Fetched { path: dest, downloaded: 0, resumed_from: 0, size });
    }

    let partial = with_suffix(&dest, ".partial");
    let partial_note = with_suffix(&dest, ".partial.s3.json");
    let mut have = match (read_note(&partial_note), fs::metadata(&partial)) {
        (Some(n), Ok(m)) if n == note && m.len() <= size => m.len(),
        _ => 0,
    };
    if have == 0 {
        // Note first, then an empty file: a crash in between leaves nothing to resume wrongly.
        write_note(&partial_note, &note)?;
        File::create(&partial).map_err(S3Error::local("create", &partial))?;
    }
    let resumed_from = have;
    let mut file = OpenOptions::new().append(true).open(&partial).map_err(S3Error::local("open", &partial))?;
    let discard = || {
        let _ = fs::remove_file(&partial);
        let _ = fs::remove_file(&partial_note);
    };
    while have < size {
        let end = (have + RANGE).min(size) - 1;
        let mut tries = 0;
        let bytes = loop {
            tries += 1;
            match get_range(store, url, &etag, have, end, size).await {
                Ok(bytes) => break bytes,
                Err(RangeError::Wrong(why)) if tries < RANGE_TRIES => log_retry(url, &why),
                Err(RangeError::Wrong(why)) => {
                    // Bytes from a server that answers ranges wrongly are not worth keeping.
                    discard();
                    return Err(S3Error::BadRange { url: url.to_string(), why, tries });
                }
                Err(RangeError::S3(e)) => return Err(e),
            }
        };
        file.write_all(&bytes).map_err(S3Error::local("write", &partial))?;
        have += bytes.len() as u64;
    }
    file.sync_all().map_err(S3Error::local("sync", &partial))?;
    drop(file);
    let on_disk = fs::metadata(&partial).map_err(S3Error::local("read", &partial))?.len();
    if on_disk != size {
        discard();
        let why = format!("the downloaded file has {on_disk} bytes, the object {size}");
        return Err(S3Error::BadRange { url: url.to_string(), why, tries: 1 });
    }

    if let Some((what, expected)) = expected_sha {
        let found = crate::output::manifest::sha256_file(&partial).map_err(S3Error::local("read", &partial))?;
        if found != expected {
            // Bad bytes are not worth resuming from.
            discard();
            return Err(S3Error::Corrupt { url: url.to_string(), what, expected, found });
        }
    }
    // The note of the finished file is replaced only after the file itself is in place.
    let _ = fs::remove_file(&note_path);
    fs::rename(&partial, &dest).map_err(S3Error::local("rename into", &dest))?;
    write_note(&note_path, &note)?;
    let _ = fs::remove_file(&partial_note);
    Ok(Fetched { path: dest, downloaded: size - resumed_from, resumed_from, size })
}

/// Attempts at one ranged GET whose answer is wrong (wrong range, length or body size).
const RANGE_TRIES: u32 = 3;

enum RangeError {
    /// The server answered, but not with the bytes asked for.
    Wrong(String),
    S3(S3Error),
}

fn log_retry(url: &S3Url, why: &str) {
    crate::log::event("fetch_retry", None, serde_json::json!({"url": url.to_string(), "why": why}));
}

/// Bytes `start..=end` of the object of `size` bytes, checked: the answer must be a partial
/// response for exactly that range (`Content-Range: bytes start-end/size`; a server that
/// ignores `Range` answers 200 without one), of that length, with a body of that length.
async fn get_range(store: &Store, url: &S3Url, etag: &str, start: u64, end: u64, size: u64) -> Result<Vec<u8>, RangeError> {
    let mut request = store.client.get_object().bucket(&url.bucket).key(&url.key).range(format!("bytes={start}-{end}"));
    if !etag.is_empty() {
        request = request.if_match(etag);
    }
    let mut out = request.send().await.map_err(|e| {
        RangeError::S3(match super::describe(e, url, false, &store.endpoint) {
            S3Error::Request { why, .. } if why.contains("PreconditionFailed") => {
                S3Error::Changed { url: url.to_string(), expected: etag.to_string(), found: "another version".into() }
            }
            other => other,
        })
    })?;
    if let Some(found) = out.e_tag() {
        if !etag.is_empty() && found != etag {
            return Err(RangeError::S3(S3Error::Changed { url: url.to_string(), expected: etag.to_string(), found: found.to_string() }));
        }
    }
    let want = end - start + 1;
    let asked = format!("bytes {start}-{end}/{size}");
    match out.content_range() {
        Some(range) if range == asked => {}
        Some(range) => return Err(RangeError::Wrong(format!("asked for {asked}, the server sent {range}"))),
        None => return Err(RangeError::Wrong(format!("asked for {asked}, the server sent no Content-Range (it ignored the Range header)"))),
    }
    if let Some(len) = out.content_length().filter(|&n| u64::try_from(n).ok() != Some(want)) {
        return Err(RangeError::Wrong(format!("asked for {want} bytes, the server announced {len}")));
    }
    let mut bytes = Vec::with_capacity(want as usize);
    while let Some(chunk) = out.body.next().await {
        let chunk = chunk.map_err(|e| RangeError::S3(S3Error::Request { url: url.to_string(), why: super::chain(&e) }))?;
        if bytes.len() + chunk.len() > want as usize {
            return Err(RangeError::Wrong(format!("asked for {want} bytes, the server sent more")));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != want {
        return Err(RangeError::Wrong(format!("asked for {want} bytes, the server sent {}", bytes.len())));
    }
    Ok(bytes)
}

/// The SHA-256 the object declares, as lowercase hex: S3's own full-object checksum (base64;
/// a multipart composite "…-N" is not a digest of the bytes), else our `sha256` metadata.
fn expected_sha256(checksum: Option<&str>, metadata: Option<&str>) -> Option<(&'static str, String)> {
    use base64::Engine;
    if let Some(c) = checksum.filter(|c| !c.contains('-')) {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(c) {
            return Some(("SHA-256 checksum", crate::digest::hex(&bytes)));
        }
    }
    metadata.filter(|m| m.len() == 64).map(|m| ("sha256 metadata", m.to_ascii_lowercase()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_note(path: &Path) -> Option<CacheNote> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn write_note(path: &Path, note: &CacheNote) -> Result<(), S3Error> {
    crate::output::write_json_atomic(path, note).map_err(S3Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_digest_prefers_a_full_object_checksum() {
        // sha256("") in base64 and hex.
        let b64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(expected_sha256(Some(b64), None), Some(("SHA-256 checksum", hex.to_string())));
        assert_eq!(expected_sha256(Some("abc-3"), Some(hex)), Some(("sha256 metadata", hex.to_string())));
        assert_eq!(expected_sha256(None, Some("short")), None);
    }
}
