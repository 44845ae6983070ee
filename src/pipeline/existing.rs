//! What an out dir already holds. A completed run of the same input, settings and models is not
//! redone: the check answers in well under a second (path, size and mtime first, the input's
//! BLAKE3 only when those disagree, model SHA-256s). A run of anything else is never silently
//! overwritten: the harvest is refused with what differs, unless `--force`.

use std::path::Path;

use super::resume::CHECKPOINT;
use crate::config::HarvestConfig;
use crate::output::{self, manifest};

/// The verdict on an out dir.
#[derive(Debug, PartialEq)]
pub enum Existing {
    /// No run there (or nothing readable as one): harvest.
    Nothing,
    /// The same harvest, completed: nothing to do.
    Done,
    /// The same harvest, stopped early: harvest again.
    Unfinished,
    /// A run of something else; says what.
    Other(String),
}

/// Compares the run recorded in `cfg.out_dir` with `cfg`.
pub fn check(cfg: &HarvestConfig) -> Existing {
    let read = |name: &str| std::fs::read(cfg.out_dir.join(name)).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let checkpoint = read(CHECKPOINT).map(|c| c["identity"].clone());
    let Some(m) = read(output::MANIFEST).or(checkpoint.clone()) else {
        return Existing::Nothing;
    };
    if let Some(what) = input_differs(cfg, &m["input"]) {
        return Existing::Other(what);
    }
    let ours = serde_json::to_value(&cfg.settings).unwrap_or_default();
    if let Some(what) = settings_differ(&m["config"], &ours) {
        return Existing::Other(what);
    }
    let seeds = cfg.seeds.as_ref().map(|p| serde_json::json!(p));
    if m["seeds"] != seeds.unwrap_or(serde_json::Value::Null) {
        return Existing::Other(format!("seeds ({} there)", m["seeds"]));
    }
    let models = m["models"].as_object().cloned().unwrap_or_default();
    for (role, recorded) in models {
        let path = if role == "detector" { &cfg.detector } else { &cfg.embedder };
        let now = manifest::sha256_file(path).ok();
        if recorded["sha256"].as_str() != now.as_deref() {
            return Existing::Other(format!("the {role} model ({} there)", recorded["path"]));
        }
    }
    match m["status"].as_str() {
        Some("done" | "done_with_errors") if checkpoint.is_none() && cfg.out_dir.join(output::FACES).is_file() => Existing::Done,
        _ => Existing::Unfinished,
    }
}

/// `None` when the recorded input is this one: same path, size and mtime, or the same BLAKE3.
fn input_differs(cfg: &HarvestConfig, recorded: &serde_json::Value) -> Option<String> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let meta = std::fs::metadata(&cfg.input).ok()?;
    let (size, mtime) = (meta.len(), manifest::mtime_ns(&meta));
    let path_there = recorded["path"].as_str().map(Path::new)?;
    let same_path = canonical(path_there) == canonical(&cfg.input);
    if recorded["size_bytes"].as_u64() != Some(size) {
        return Some(format!("input ({} there)", path_there.display()));
    }
    if same_path && recorded["mtime_ns"].as_u64() == Some(mtime) {
        return None;
    }
    let hash = blake3_file(&cfg.input).ok();
    match (recorded["blake3"].as_str(), hash.as_deref()) {
        (Some(a), Some(b)) if a == b => None,
        _ => Some(format!("input ({} there)", path_there.display())),
    }
}

/// The first setting that differs, ignoring those that cannot change the outputs (threads,
/// progress interval) and model paths (the models are compared by hash).
fn settings_differ(there: &serde_json::Value, ours: &serde_json::Value) -> Option<String> {
    let (Some(there), Some(ours)) = (there.as_object(), ours.as_object()) else { return Some("settings".into()) };
    for (section, values) in ours {
        if matches!(section.as_str(), "runtime" | "progress" | "models") {
            continue;
        }
        let Some(fields) = values.as_object() else { continue };
        for (key, value) in fields {
            let old = &there.get(section).and_then(|s| s.get(key)).cloned().unwrap_or_default();
            if old != value {
                return Some(format!("setting {section}.{key} ({old} there, {value} now)"));
            }
        }
    }
    None
}

/// BLAKE3 of a whole file (only when a cheap check could not decide).
fn blake3_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_that_change_outputs_are_named_and_the_others_ignored() {
        let there = json!({"sampling": {"stride": 4}, "runtime": {"threads": 2}, "models": {"detector": "/a"}});
        let same = json!({"sampling": {"stride": 4}, "runtime": {"threads": 8}, "models": {"detector": "/b"}});
        assert_eq!(settings_differ(&there, &same), None);
        let other = json!({"sampling": {"stride": 2}, "runtime": {"threads": 2}});
        assert_eq!(settings_differ(&there, &other).unwrap(), "setting sampling.stride (4 there, 2 now)");
    }
}
