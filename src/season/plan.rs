//! `season plan`: the episodes of a season in a fixed order, with the settings and models every
//! task must use, written once to `season.json` (locally and under the season's prefix). The
//! episodes come from an S3 prefix (its videos, sorted by key) or from a list file (one
//! `s3://` URL per line, in that order); each keeps the size and ETag it had, so a task never
//! harvests a file other than the one planned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Episode, Plan, SeasonError, FORMAT, PLAN};
use crate::config::{Mode, RemoteCfg, Settings};
use crate::digest::sha256_hex;
use crate::log;
use crate::output::manifest::ModelFile;
use crate::s3::{Condition, S3Url, Store};

/// What files of a prefix are episodes.
const VIDEO_EXTENSIONS: [&str; 12] = ["mp4", "mkv", "mov", "m4v", "avi", "webm", "ts", "mts", "mpg", "mpeg", "wmv", "flv"];
/// A list file larger than this is not a list of episodes.
const MAX_LIST_BYTES: u64 = 16 << 20;

/// A `season plan`, checked.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// A list file, or an `s3://` prefix.
    pub source: String,
    pub out: S3Url,
    pub settings: Settings,
    pub remote_checkpoint_s: f64,
    pub remote: RemoteCfg,
    /// Where the local copy of the plan goes.
    pub local: PathBuf,
    pub quiet: bool,
}

/// Makes the plan, writes it locally and to `<out>/season.json`, and returns it.
pub fn make(cfg: &PlanConfig) -> Result<Plan, SeasonError> {
    if cfg.settings.run.mode != Mode::Full {
        return Err(SeasonError::invalid(
            "season plan",
            "a season needs the embedder (people are merged across episodes): not with --detect-only or --decode-only",
        ));
    }
    let models = model_hashes(&cfg.settings)?;
    let store = Store::connect((&cfg.remote).into())?;
    store.check_bucket(&cfg.out)?;
    let found = match S3Url::is_s3(&cfg.source) {
        true => from_prefix(&store, &cfg.source)?,
        false => from_list(&store, Path::new(&cfg.source))?,
    };
    if found.is_empty() {
        return Err(SeasonError::invalid(&cfg.source, "no episodes there (videos by extension: mp4, mkv, mov, …)"));
    }
    if let Some(f) = found.iter().find(|f| f.etag.is_empty()) {
        return Err(SeasonError::invalid(f.url.to_string(), "the store lists it without an ETag, so a task could not tell whether it changed after the plan"));
    }
    let episodes = with_ids(found);
    let settings_json = serde_json::to_vec(&cfg.settings.output_settings()).unwrap_or_default();
    let plan = Plan {
        format: FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: log::now_rfc3339(),
        source: cfg.source.clone(),
        out: cfg.out.to_string(),
        settings: cfg.settings.clone(),
        settings_hash: sha256_hex(&settings_json),
        models,
        remote_checkpoint_s: cfg.remote_checkpoint_s,
        episodes,
    };
    let plan_url = cfg.out.join(PLAN);
    if let Ok(old) = Plan::load(&store, &plan_url.to_string()) {
        warn_reordered(&old, &plan);
    }
    let bytes = serde_json::to_vec_pretty(&plan).unwrap_or_default();
    crate::output::write_atomic(&cfg.local, &bytes)?;
    store.put_bytes(&plan_url, bytes, &Condition::Always)?;
    let text = format!("planned {} episodes into {plan_url} (and {}): run indexes 0-{}", plan.episodes.len(), cfg.local.display(), plan.episodes.len() - 1);
    log::event("season_plan", (!cfg.quiet).then_some(text.as_str()), json!({"plan": plan_url.to_string(), "episodes": plan.episodes.len()}));
    Ok(plan)
}

/// SHA-256 of the models these settings load on this machine, by role.
pub fn model_hashes(settings: &Settings) -> Result<BTreeMap<String, String>, SeasonError> {
    let (detector, embedder) = settings.installed_models();
    let mut out = BTreeMap::new();
    for (role, path) in [("detector", detector), ("embedder", embedder)] {
        let file = ModelFile::hash(&path).map_err(|e| SeasonError::invalid(format!("{role} model {}", path.display()), e.to_string()))?;
        out.insert(role.to_string(), file.sha256);
    }
    Ok(out)
}

/// An episode found, before it has an id.
struct Found {
    url: S3Url,
    size: u64,
    etag: String,
}

fn is_video(key: &str) -> bool {
    key.rsplit_once('.').is_some_and(|(_, ext)| VIDEO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

fn from_prefix(store: &Store, source: &str) -> Result<Vec<Found>, SeasonError> {
    let mut prefix = S3Url::parse(source)?;
    if !prefix.key.is_empty() && !prefix.key.ends_with('/') {
        prefix.key.push('/');
    }
    let listed = store.list(&prefix)?;
    let total = listed.len();
    let mut found = Vec::new();
    for o in listed.into_iter().filter(|o| is_video(&o.key) && o.size > 0) {
        let url = S3Url { bucket: prefix.bucket.clone(), key: o.key };
        // Some S3-compatible servers list objects without their ETag: ask the object.
        let etag = match o.etag.is_empty() {
            true => store.head(&url)?.map(|h| h.etag).unwrap_or_default(),
            false => o.etag,
        };
        found.push(Found { url, size: o.size, etag });
    }
    if found.len() < total {
        let text = format!("{source}: {} of {total} objects are not videos (by extension) or are empty, and are not episodes", total - found.len());
        log::event("season_plan_skipped", Some(&text), json!({"skipped": total - found.len()}));
    }
    Ok(found)
}

fn from_list(store: &Store, list: &Path) -> Result<Vec<Found>, SeasonError> {
    let meta = std::fs::metadata(list).map_err(SeasonError::io(list))?;
    if !meta.is_file() || meta.len() > MAX_LIST_BYTES {
        return Err(SeasonError::invalid(list.display().to_string(), "not a list file (a regular file of at most 16 MiB, one s3:// URL per line)"));
    }
    let text = std::fs::read_to_string(list).map_err(SeasonError::io(list))?;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", list.display(), n + 1);
        if !S3Url::is_s3(line) {
            return Err(SeasonError::invalid(at(), format!("{line:?} is not an s3:// URL (a season's tasks run on other machines: inputs come from S3)")));
        }
        let url = S3Url::parse(line)?;
        let Some(o) = store.head(&url)? else { return Err(SeasonError::invalid(at(), format!("{url} does not exist"))) };
        found.push(Found { url, size: o.size, etag: o.etag });
    }
    Ok(found)
}

/// Numbers the episodes in order and names each after its file: the stem, with anything but
/// `A-Za-z0-9._-` replaced, and `-2`, `-3`, … when two files share a name.
fn with_ids(found: Vec<Found>) -> Vec<Episode> {
    let mut taken = BTreeSet::new();
    found
        .into_iter()
        .enumerate()
        .map(|(index, f)| {
            let base = episode_id(&f.url.key);
            let mut id = base.clone();
            let mut n = 2;
            while !taken.insert(id.clone()) {
                id = format!("{base}-{n}");
                n += 1;
            }
            Episode { index, id, input: f.url.to_string(), size: f.size, etag: f.etag }
        })
        .collect()
}

/// The id of the episode in `key`: a safe single path segment made from its file stem.
fn episode_id(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let id: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let id = id.trim_start_matches('.').to_string();
    // An episode named like the season's own folder would land inside it.
    if id.is_empty() || id == super::MERGED.trim_end_matches('/') {
        format!("episode{id}")
    } else {
        id
    }
}

fn warn_reordered(old: &Plan, new: &Plan) {
    for (a, b) in old.episodes.iter().zip(&new.episodes) {
        if a.id != b.id {
            let text = format!(
                "warning: index {} was {} in the plan there and is now {}: tasks still running from the old plan harvest other episodes",
                a.index, a.id, b.id
            );
            log::event("warning", Some(&text), json!({"index": a.index}));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(key: &str) -> Found {
        Found { url: S3Url { bucket: "b-1".into(), key: key.into() }, size: 1, etag: "e".into() }
    }

    #[test]
    fn ids_come_from_file_names_are_safe_and_unique() {
        let eps = with_ids(vec![found("s1/Ep 01 (pilot).mp4"), found("s2/Ep 01 (pilot).MKV"), found("x/..hidden.mp4"), found("season.mp4"), found("a/ép.mp4")]);
        let ids: Vec<&str> = eps.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["Ep_01__pilot_", "Ep_01__pilot_-2", "hidden", "episodeseason", "_p"]);
        assert_eq!(eps.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn videos_are_known_by_extension() {
        assert!(is_video("a/b.MP4") && is_video("x.mkv") && is_video("y.ts"));
        assert!(!is_video("notes.txt") && !is_video("mp4") && !is_video("season.json"));
    }
}
