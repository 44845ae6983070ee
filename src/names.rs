//! Names from outside — an S3 bucket or key, a file name in a manifest, an input's stem — turned
//! into paths only when they cannot leave the folder they are joined to.

use std::path::{Component, Path, PathBuf};

/// A name that would not stay inside its base folder.
#[derive(Debug, thiserror::Error)]
#[error("{what} {name:?} cannot name a file inside {base}: {why}")]
pub struct UnsafeName {
    pub what: &'static str,
    pub name: String,
    pub base: PathBuf,
    pub why: &'static str,
}

/// Longest name, and longest relative path, accepted from outside (S3's key limit is 1024 bytes,
/// Linux's file name limit 255).
const MAX_NAME: usize = 255;
const MAX_PATH: usize = 1024;

/// `base` joined with `rel`, a `/`-separated relative path from outside (an S3 key, a name in a
/// manifest, an input's stem), when every segment is a plain name: not empty (no leading `/`,
/// no `//`), not `.` or `..`, no control characters, at most 255 bytes each and 1024 in all.
/// The result is checked to lie inside `base`.
pub fn safe_join(base: &Path, rel: &str, what: &'static str) -> Result<PathBuf, UnsafeName> {
    let unsafe_name = |why| UnsafeName { what, name: rel.to_string(), base: base.to_path_buf(), why };
    if rel.is_empty() {
        return Err(unsafe_name("it is empty"));
    }
    if rel.len() > MAX_PATH {
        return Err(unsafe_name("it is longer than 1024 bytes"));
    }
    if rel.chars().any(char::is_control) {
        return Err(unsafe_name("it holds control characters"));
    }
    let mut path = base.to_path_buf();
    for segment in rel.split('/') {
        match segment {
            "" => return Err(unsafe_name("it has an empty segment (a leading '/' or '//')")),
            "." | ".." => return Err(unsafe_name("it has a '.' or '..' segment")),
            s if s.len() > MAX_NAME => return Err(unsafe_name("a segment is longer than 255 bytes")),
            s => path.push(s),
        }
    }
    let inside = path.strip_prefix(base).is_ok_and(|r| r.components().all(|c| matches!(c, Component::Normal(_))));
    if !inside {
        return Err(unsafe_name("it leaves the folder"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_never_leave_the_base() {
        let base = Path::new("/cache/s3/bucket");
        assert_eq!(safe_join(base, "shows/ep 1.mp4", "key").unwrap(), base.join("shows/ep 1.mp4"));
        let long_segment = "a".repeat(256);
        let long_path = "a/".repeat(600);
        for bad in ["", "/tmp/victim/precious.txt", "a//b", "../x", "a/./b", "a/..", ".", "x\ny", "tab\there", "nul\0", &long_segment, &long_path] {
            let err = safe_join(base, bad, "key").unwrap_err().to_string();
            assert!(err.contains("key") && err.contains("/cache/s3/bucket"), "{bad:?}: {err}");
        }
    }
}
