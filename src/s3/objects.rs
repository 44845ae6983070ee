//! Small objects read and written whole, and prefixes listed: what a season keeps beside its
//! runs (its plan, per-episode markers, a remote checkpoint's pointer). Writes can be
//! conditional, so several tasks sharing one prefix can coordinate through S3 alone: create an
//! object only if it is absent (`If-None-Match: *`), or replace it only if it is still the
//! version this task last saw (`If-Match: <ETag>`, compare-and-swap).

use aws_sdk_s3::primitives::ByteStream;

use super::{S3Error, S3Url, Store};

/// When a [`Store::put_bytes`] may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always (replacing whatever is there).
    Always,
    /// Only if no object has the key.
    IfAbsent,
    /// Only if the object is still the version with this ETag.
    IfMatch(String),
}

/// What a conditional write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Written; the new version's ETag.
    Written { etag: String },
    /// Not written: the condition did not hold (the object exists, or changed).
    Refused,
}

/// An object read whole, with the version it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// One object under a listed prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// Objects read whole are refused past this size: these are markers and plans, not videos.
const MAX_SMALL_OBJECT: u64 = 64 << 20;

impl Store {
    /// The object at `url` read whole, or `None` when there is no such key.
    pub fn get_bytes(&self, url: &S3Url) -> Result<Option<Got>, S3Error> {
        self.rt.block_on(async {
            let out = match self.client.get_object().bucket(&url.bucket).key(&url.key).send().await {
                Ok(out) => out,
                Err(e) => return self.key_missing(super::describe(e, url, false, &self.endpoint), url).await.map(|()| None),
            };
            let too_large = |size: u64| S3Error::Request { url: url.to_string(), why: format!("{size} bytes is too large for a marker or plan") };
            let size = out.content_length().unwrap_or(0).max(0) as u64;
            if size > MAX_SMALL_OBJECT {
                return Err(too_large(size));
            }
            let etag = out.e_tag().unwrap_or_default().to_string();
            // Read against the bound, not the declared length: a server may send more than it says.
            let mut body = out.body;
            let mut bytes = Vec::with_capacity(size as usize);
            while let Some(chunk) = body.try_next().await.map_err(|e| S3Error::Request { url: url.to_string(), why: e.to_string() })? {
                if (bytes.len() + chunk.len()) as u64 > MAX_SMALL_OBJECT {
                    return Err(too_large((bytes.len() + chunk.len()) as u64));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(Got { bytes, etag }))
        })
    }

    /// The object's size and ETag, or `None` when there is no such key.
    pub fn head(&self, url: &S3Url) -> Result<Option<Listed>, S3Error> {
        self.rt.block_on(async {
            match self.client.head_object().bucket(&url.bucket).key(&url.key).send().await {
                Ok(h) => {
                    let size = h.content_length().unwrap_or(0).max(0) as u64;
                    Ok(Some(Listed { key: url.key.clone(), size, etag: h.e_tag().unwrap_or_default().to_string() }))
                }
                Err(e) => self.key_missing(super::describe(e, url, false, &self.endpoint), url).await.map(|()| None),
            }
        })
    }

    /// Writes `bytes` to `url` when `condition` holds.
    pub fn put_bytes(&self, url: &S3Url, bytes: Vec<u8>, condition: &Condition) -> Result<Put, S3Error> {
        use sha2::Digest;
        let sha = sha2::Sha256::digest(&bytes);
        self.rt.block_on(async {
            let mut request = self
                .client
                .put_object()
                .bucket(&url.bucket)
                .key(&url.key)
                .checksum_sha256(super::b64(&sha))
                .metadata("sha256", crate::digest::hex(&sha))
                .body(ByteStream::from(bytes));
            request = match condition {
                Condition::Always => request,
                Condition::IfAbsent => request.if_none_match("*"),
                Condition::IfMatch(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(out) => Ok(Put::Written { etag: out.e_tag().unwrap_or_default().to_string() }),
                Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) => Ok(Put::Refused),
                Err(e) => Err(super::describe(e, url, false, &self.endpoint)),
            }
        })
    }

    /// Every object whose key starts with `prefix`'s key, in key order.
    pub fn list(&self, prefix: &S3Url) -> Result<Vec<Listed>, S3Error> {
        self.rt.block_on(async {
            let mut found = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut request = self.client.list_objects_v2().bucket(&prefix.bucket).prefix(&prefix.key);
                if let Some(t) = &token {
                    request = request.continuation_token(t);
                }
                let page = request.send().await.map_err(|e| super::describe(e, prefix, true, &self.endpoint))?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    found.push(Listed { key: key.to_string(), size: o.size().unwrap_or(0).max(0) as u64, etag: o.e_tag().unwrap_or_default().to_string() });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(found)
        })
    }

    /// Removes the object at `url` (one that is not there is fine).
    pub fn delete(&self, url: &S3Url) -> Result<(), S3Error> {
        self.rt.block_on(async {
            self.client.delete_object().bucket(&url.bucket).key(&url.key).send().await.map(|_| ()).map_err(|e| super::describe(e, url, false, &self.endpoint))
        })
    }
}
