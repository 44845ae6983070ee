//! `season run`: one task of a batch engine harvests one episode of the plan. Engines retry,
//! kill, requeue and sometimes run a task twice, so a task is cheap and harmless to repeat: one
//! whose episode is already complete exits at once without downloading anything; one that
//! finds another task's checkpoint in S3 goes on from it (see [`super::publish`]); a finished
//! episode is uploaded, then marked complete by `_DONE.json`, written once and last.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::json;

use super::publish::{self, Known, Publisher};
use super::{plan, Done, Episode, ObjectFact, Plan, SeasonError, DONE};
use crate::config::{CheckpointHook, HarvestConfig, RemoteCfg};
use crate::log;
use crate::run_dir::{self, ManifestHead};
use crate::s3::{Condition, Put, S3Url, Store};

/// The variables batch engines hand each task its index in, in the order they are looked for.
pub const INDEX_VARS: [&str; 3] = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"];

/// A `season run`, checked.
#[derive(Clone, Debug)]
pub struct TaskConfig {
    /// `s3://…/season.json`, or a local copy of it.
    pub plan: String,
    pub index: Option<usize>,
    pub cache_dir: PathBuf,
    pub remote: RemoteCfg,
    pub quiet: bool,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// Harvested, uploaded and marked complete.
    Done,
    /// The episode was complete before this task started.
    AlreadyDone,
    /// Another task holds the episode; this one stopped without writing anything of it.
    Superseded,
    /// Stopped by a signal after publishing its checkpoint: requeue it.
    Interrupted,
}

/// The index to run: `--index`, else the first of [`INDEX_VARS`] set, with where it came from.
pub fn pick_index(given: Option<usize>, var: impl Fn(&str) -> Option<String>) -> Result<(usize, String), SeasonError> {
    if let Some(i) = given {
        return Ok((i, "--index".into()));
    }
    for name in INDEX_VARS {
        if let Some(value) = var(name) {
            return match value.trim().parse::<usize>() {
                Ok(i) => Ok((i, format!("${name}"))),
                Err(_) => Err(SeasonError::invalid(format!("${name}"), format!("{value:?} is not an index"))),
            };
        }
    }
    Err(SeasonError::invalid("season run", format!("no index: give --index N or run under an engine that sets {}", INDEX_VARS.join(", "))))
}

fn say(quiet: bool, event: &str, text: &str, fields: serde_json::Value) {
    log::event(event, (!quiet).then_some(text), fields);
}

pub fn run(cfg: &TaskConfig) -> Result<TaskEnd, SeasonError> {
    let start = Instant::now();
    let store = Store::connect((&cfg.remote).into())?;
    let plan = Plan::load(&store, &cfg.plan)?;
    let (index, from) = pick_index(cfg.index, |k| std::env::var(k).ok())?;
    let Some(episode) = plan.episodes.get(index) else {
        return Err(SeasonError::invalid(format!("index {index} (from {from})"), format!("the plan has episodes 0-{}", plan.episodes.len().saturating_sub(1))));
    };
    let dest = plan.episode_url(episode)?;
    let text = format!("episode {index} of {} ({}, index from {from}) into {dest}", plan.episodes.len(), episode.id);
    say(cfg.quiet, "season_task", &text, json!({"index": index, "from": from, "episode": episode.id}));
    let old_done = Done::read(&store, &dest)?;
    if let Some((done, _)) = &old_done {
        if done.matches(&plan, episode) {
            let text =
                format!("episode {index} ({}) is already complete ({}): nothing to do ({:.2} s)", episode.id, dest.join(DONE), start.elapsed().as_secs_f64());
            say(cfg.quiet, "season_already_done", &text, json!({"index": index}));
            return Ok(TaskEnd::AlreadyDone);
        }
    }
    let models = plan::model_hashes(&plan.settings)?;
    if let Some((role, _)) = plan.models.iter().find(|(role, sha)| models.get(*role) != Some(sha)) {
        return Err(SeasonError::invalid(
            format!("the {role} model on this machine"),
            format!("its SHA-256 is not the plan's ({}): install the plan's models, or plan the season again", plan.models[role]),
        ));
    }
    let mut pointer = publish::read_pointer(&store, &dest)?;
    if let Some((seen, etag)) = &pointer {
        if !seen.released {
            let lease = seen.lease();
            let text = format!(
                "episode {index} has a checkpoint of task {} (frame {}): waiting {:.0} s to see whether it is still running",
                seen.owner,
                seen.next_frame.unwrap_or(0),
                lease.as_secs_f64()
            );
            say(cfg.quiet, "season_wait", &text, json!({"owner": seen.owner, "lease_s": lease.as_secs_f64()}));
            std::thread::sleep(lease);
            let again = publish::read_pointer(&store, &dest)?;
            if again.as_ref().map(|(_, e)| e) != Some(etag) {
                let text = format!("episode {index} ({}) is being harvested by another task: this one stops", episode.id);
                say(false, "season_superseded", &text, json!({"index": index}));
                return Ok(TaskEnd::Superseded);
            }
            pointer = again;
        }
    }
    let input = fetch_input(&store, episode, &cfg.cache_dir)?;
    let dir = cfg.cache_dir.join("season").join(&crate::digest::sha256_hex(plan.out.as_bytes())[..12]).join(&episode.id);
    let owner = attempt_id();
    let known = match &pointer {
        Some((snapshot, _)) if !local_is_ahead(&dir, snapshot.next_frame) => {
            let known = restore(&store, &dest, snapshot, &dir, &input)?;
            let text = format!("resuming episode {index} from the checkpoint in S3 of task {} (frame {})", snapshot.owner, snapshot.next_frame.unwrap_or(0));
            say(cfg.quiet, "season_restored", &text, json!({"owner": snapshot.owner, "next_frame": snapshot.next_frame, "files": snapshot.files.len()}));
            known
        }
        _ => Known::default(),
    };
    let publisher = Publisher::new(Store::connect((&cfg.remote).into())?, &dest, owner, plan.remote_checkpoint_s, pointer.map(|(_, etag)| etag), known);
    let publisher = Arc::new(Mutex::new(publisher));
    let hook = {
        let publisher = publisher.clone();
        CheckpointHook(Arc::new(move |dir, stopping| publisher.lock().unwrap_or_else(PoisonError::into_inner).on_checkpoint(dir, stopping)))
    };
    let harvest = HarvestConfig::for_task(plan.settings.clone(), input, dir.clone(), cfg.remote.clone(), hook)?;
    let summary = crate::pipeline::harvest(&harvest)?;
    let mut publisher = publisher.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(why) = &publisher.superseded {
        say(false, "season_superseded", &format!("episode {index} ({}): {why}; this task stops", episode.id), json!({"index": index}));
        return Ok(TaskEnd::Superseded);
    }
    if summary.interrupted {
        let text = format!("interrupted: episode {index} ({}) is checkpointed in S3; the next task for this index goes on from there", episode.id);
        say(false, "interrupted", &text, json!({"index": index}));
        return Ok(TaskEnd::Interrupted);
    }
    if !publisher.finishing()? {
        say(false, "season_superseded", &format!("episode {index} ({}): another task took it over; this task stops", episode.id), json!({"index": index}));
        return Ok(TaskEnd::Superseded);
    }
    let sent = store.upload_run(&dir, &dest)?;
    let done = marker(&plan, episode, &dir, &sent.sha256)?;
    let body = serde_json::to_vec_pretty(&done).unwrap_or_default();
    let condition = match &old_done {
        Some((_, etag)) => Condition::IfMatch(etag.clone()),
        None => Condition::IfAbsent,
    };
    if store.put_bytes(&dest.join(DONE), body, &condition)? == Put::Refused {
        // Another task completed it first: fine when its marker is this plan's.
        match Done::read(&store, &dest)? {
            Some((d, _)) if d.matches(&plan, episode) => {}
            _ => return Err(SeasonError::invalid(dest.join(DONE).to_string(), "another task wrote a marker of another plan meanwhile")),
        }
    }
    publisher.remove_all();
    let text = format!(
        "episode {index} ({}) complete: {} faces, {} tracks, {} people; {} objects sent ({} already there) to {dest} in {:.1} s",
        episode.id,
        done.counts.faces_detected,
        done.counts.tracks,
        done.people,
        sent.objects_sent,
        sent.objects_skipped,
        start.elapsed().as_secs_f64()
    );
    say(cfg.quiet, "season_done", &text, json!({"index": index, "counts": done.counts, "status": done.status}));
    if let Some(problem) = &summary.problem {
        log::event("warning", Some(&format!("warning: {problem}")), json!({}));
    }
    Ok(TaskEnd::Done)
}

/// The planned object, fetched into the cache: refused when it is not the version planned.
fn fetch_input(store: &Store, episode: &Episode, cache_dir: &std::path::Path) -> Result<PathBuf, SeasonError> {
    let url = S3Url::parse(&episode.input)?;
    match store.head(&url)? {
        None => return Err(SeasonError::invalid(&episode.input, "the planned input is gone")),
        Some(o) if o.etag != episode.etag || o.size != episode.size => {
            let why = format!(
                "changed since the plan ({} bytes, ETag {} then; {} bytes, ETag {} now): run `episode-run season plan` again",
                episode.size, episode.etag, o.size, o.etag
            );
            return Err(SeasonError::invalid(&episode.input, why));
        }
        Some(_) => {}
    }
    Ok(store.fetch(&url, &cache_dir.join("s3"))?.path)
}

/// A name for this task attempt, unique across machines and restarts.
fn attempt_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let host = crate::host::hostname().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect::<String>();
    format!("{host}-{}-{nanos:x}", std::process::id())
}

/// The local folder already holds the run at least as far as the checkpoint in S3 (a task
/// restarted on the same machine), or completed.
fn local_is_ahead(dir: &std::path::Path, remote: Option<u64>) -> bool {
    if ManifestHead::read(dir).is_ok_and(|m| m.status.is_done()) {
        return true;
    }
    crate::pipeline::checkpoint_frame(dir).is_some_and(|local| local >= remote.unwrap_or(0))
}

/// Replaces whatever `dir` holds with the checkpoint in S3, pointed at the local `input`.
fn restore(store: &Store, dest: &S3Url, snapshot: &publish::Snapshot, dir: &std::path::Path, input: &std::path::Path) -> Result<Known, SeasonError> {
    if dir.exists() {
        if !run_dir::is_ours(dir) {
            return Err(SeasonError::invalid(dir.display().to_string(), "not a run folder of episode-run: not replacing it"));
        }
        std::fs::remove_dir_all(dir).map_err(SeasonError::io(dir))?;
    }
    let lock = run_dir::claim(dir)?;
    let known = publish::restore(store, dest, snapshot, dir)?;
    crate::pipeline::rebind_checkpoint(dir, input)?;
    drop(lock);
    Ok(known)
}

/// `_DONE.json` for the completed run in `dir`.
fn marker(plan: &Plan, episode: &Episode, dir: &std::path::Path, uploaded: &BTreeMap<PathBuf, String>) -> Result<Done, SeasonError> {
    let head = ManifestHead::read(dir)?;
    let path = dir.join(run_dir::MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).map_err(SeasonError::io(&path))?).unwrap_or_default();
    let counts: crate::output::manifest::Counts = serde_json::from_value(manifest["counts"].clone()).unwrap_or_default();
    let frame_rate = manifest["input"]["video"]["frame_rate"].as_f64().filter(|r| *r > 0.0);
    let mut objects = BTreeMap::new();
    for rel in head.upload_names(dir) {
        let path = dir.join(&rel);
        let size = std::fs::metadata(&path).map_err(SeasonError::io(&path))?.len();
        // The upload hashed every file it sent or found there already: the same list, hashed once.
        let sha256 = uploaded.get(&path).cloned().ok_or_else(|| SeasonError::invalid(path.display().to_string(), "the upload did not include it"))?;
        objects.insert(rel, ObjectFact { size, sha256 });
    }
    Ok(Done {
        episode: episode.clone(),
        settings_hash: plan.settings_hash.clone(),
        models: plan.models.clone(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: env!("EPISODE_RUN_GIT_COMMIT").into(),
        finished_at: log::now_rfc3339(),
        status: head.status,
        duration_s: frame_rate.map(|r| ((counts.frames_decoded as f64 / r) * 1000.0).round() / 1000.0),
        people: manifest["people"]["people"].as_u64().unwrap_or(0),
        counts,
        objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_comes_from_the_flag_then_the_engines_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(pick_index(Some(3), env(&[("SLURM_ARRAY_TASK_ID", "1")])).unwrap(), (3, "--index".into()));
        assert_eq!(pick_index(None, env(&[("SLURM_ARRAY_TASK_ID", "1")])).unwrap(), (1, "$SLURM_ARRAY_TASK_ID".into()));
        assert_eq!(pick_index(None, env(&[("SLURM_ARRAY_TASK_ID", "1"), ("JOB_COMPLETION_INDEX", "2")])).unwrap().0, 2);
        assert_eq!(pick_index(None, env(&[("AWS_BATCH_JOB_ARRAY_INDEX", " 7 ")])).unwrap(), (7, "$AWS_BATCH_JOB_ARRAY_INDEX".into()));
        assert!(pick_index(None, env(&[("SLURM_ARRAY_TASK_ID", "x")])).unwrap_err().to_string().contains("SLURM_ARRAY_TASK_ID"));
        assert!(pick_index(None, env(&[])).unwrap_err().to_string().contains("--index"));
    }
}
