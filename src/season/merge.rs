//! `season merge`: the season's cast from its completed episodes. Each episode's people
//! (`people.jsonl`, `people_embeddings.npy`) are clustered into season people with the plan's
//! `[people]` settings; two people of one episode are never joined (they were told apart there,
//! often while on screen together). Only those two files, the markers and the chosen best crops
//! are read, each checked against the SHA-256 its marker records, so a merge costs seconds
//! however long the episodes are, and can be run again at any time.
//!
//! Written locally and to `<out>/season/`: `episodes.jsonl`, `people.jsonl`,
//! `people_embeddings.npy`, `appearances.jsonl`, `crops/person_<id>.jpg` and `report.html`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::{Done, Episode, Plan, SeasonError, MERGED};
use crate::config::RemoteCfg;
use crate::log;
use crate::output::{self, PersonRecord};
use crate::people::cluster::{cluster, Item};
use crate::report::season::{Cast, CastPerson};
use crate::run_dir::{self, Status};
use crate::s3::Store;

/// A `season merge`, checked.
#[derive(Clone, Debug)]
pub struct MergeConfig {
    pub plan: String,
    /// Where the season's files are written before they are uploaded.
    pub work_dir: PathBuf,
    pub remote: RemoteCfg,
    pub quiet: bool,
}

/// How a merge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeEnd {
    Done,
    /// These plan indexes have no completion marker of this plan: nothing was written.
    Missing(Vec<usize>),
}

/// One row of `episodes.jsonl`.
#[derive(Debug, Serialize)]
struct EpisodeRow<'a> {
    index: usize,
    id: &'a str,
    input: &'a str,
    status: Status,
    duration_s: Option<f64>,
    frames: u64,
    faces: u64,
    faces_embedded: u64,
    tracks: u64,
    shots: u64,
    people: u64,
    /// The season people seen in it.
    season_people: Vec<u64>,
}

/// One row of the season's `people.jsonl`.
#[derive(Debug, Serialize)]
struct SeasonPerson {
    person_id: u64,
    name: Option<String>,
    episodes: u64,
    episode_ids: Vec<String>,
    screen_time_s: f64,
    n_tracks: u64,
    n_faces: u64,
    n_embedded: u64,
    /// Where the best crop comes from: the episode person with the most screen time.
    best_episode: String,
    best_episode_person_id: u64,
    /// `crops/person_<id>.jpg`; null when that episode person has no crop.
    crop: Option<String>,
    /// Row in the season's `people_embeddings.npy`.
    embedding_row: u64,
}

/// One row of `appearances.jsonl`: a season person in one episode.
#[derive(Debug, Serialize)]
struct Appearance<'a> {
    person_id: u64,
    episode: &'a str,
    index: usize,
    episode_person_id: u64,
    screen_time_s: f64,
    n_tracks: u64,
    n_faces: u64,
    first_t: f64,
    last_t: f64,
}

/// An episode person, with where it comes from.
struct Member {
    episode: usize,
    person: PersonRecord,
    embedding: Vec<f32>,
}

pub fn run(cfg: &MergeConfig) -> Result<MergeEnd, SeasonError> {
    let start = std::time::Instant::now();
    let store = Store::connect((&cfg.remote).into())?;
    let plan = Plan::load(&store, &cfg.plan)?;
    let mut dones = Vec::new();
    let mut missing = Vec::new();
    for episode in &plan.episodes {
        match Done::read(&store, &plan.episode_url(episode)?)? {
            Some((done, _)) if done.matches(&plan, episode) => dones.push(done),
            _ => missing.push(episode.index),
        }
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|i| format!("{i} ({})", plan.episodes[*i].id)).collect();
        let text = format!(
            "{} of {} episodes are not complete: index {}; run those tasks (`episode-run season run --plan … --index N`), then merge again",
            missing.len(),
            plan.episodes.len(),
            names.join(", ")
        );
        log::event("season_incomplete", Some(&text), json!({"missing": missing}));
        return Ok(MergeEnd::Missing(missing));
    }
    let work = &cfg.work_dir;
    std::fs::create_dir_all(work.join(run_dir::CROPS)).map_err(SeasonError::io(work))?;
    let mut members = Vec::new();
    for (episode, done) in plan.episodes.iter().zip(&dones) {
        let dir = work.join("episodes").join(&episode.id);
        let people: Vec<PersonRecord> = output::read_jsonl(&fetch_into(&store, &plan, episode, done, run_dir::PEOPLE, &dir)?)?;
        let rows = output::read_npy(&fetch_into(&store, &plan, episode, done, run_dir::PEOPLE_EMBEDDINGS, &dir)?)?;
        for person in people {
            let Some(row) = rows.outer_iter().nth(person.embedding_row as usize) else {
                return Err(SeasonError::invalid(
                    format!("{}{}", plan.episode_url(episode)?, run_dir::PEOPLE),
                    format!("person {} has no embedding row", person.person_id),
                ));
            };
            members.push(Member { episode: episode.index, embedding: unit(row.to_vec()), person });
        }
    }
    let items: Vec<Item> =
        members.iter().map(|m| Item { embedding: Some(&m.embedding), n_usable: m.person.n_embedded, name: m.person.name.as_deref() }).collect();
    let mut cannot = Vec::new();
    for a in 0..members.len() {
        for b in a + 1..members.len() {
            if members[a].episode == members[b].episode {
                cannot.push((a, b));
            }
        }
    }
    let clustering = cluster(&items, &cannot, &plan.settings.people);
    // Groups by cluster label, then everyone left alone as their own season person.
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, label) in clustering.labels.iter().enumerate() {
        let key = match label {
            Some(l) => (0, *l),
            None => (1, i),
        };
        groups.entry(key).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    let screen = |g: &Vec<usize>| -> f64 { g.iter().map(|i| members[*i].person.screen_time_s).sum() };
    groups.sort_by(|a, b| screen(b).total_cmp(&screen(a)));

    let dim = members.first().map_or(0, |m| m.embedding.len());
    let mut season_people = Vec::new();
    let mut embeddings = Vec::new();
    let mut appearances = Vec::new();
    let mut cast = Vec::new();
    let mut seen_in: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (id, group) in groups.iter().enumerate() {
        let id = id as u64;
        let best = group
            .iter()
            .copied()
            .max_by(|a, b| members[*a].person.screen_time_s.total_cmp(&members[*b].person.screen_time_s).then(b.cmp(a)))
            .unwrap_or(group[0]);
        let best_ep = &plan.episodes[members[best].episode];
        let crop_rel = format!("{}/{}", run_dir::CROPS, run_dir::person_crop(id));
        // A crop its episode's marker lists must arrive whole; one it does not list was never made.
        let source = format!("{}/{}", run_dir::CROPS, run_dir::person_crop(members[best].person.person_id));
        let crop = if dones[best_ep.index].objects.contains_key(&source) {
            // Written once, where the season's crop goes: nothing reads the episode's copy.
            let bytes = fetch_checked(&store, &plan, best_ep, &dones[best_ep.index], &source)?;
            output::write_atomic(&work.join(&crop_rel), &bytes)?;
            Some(bytes)
        } else {
            None
        };
        let mut mean = vec![0f32; dim];
        let mut per_episode = vec![0f64; plan.episodes.len()];
        let mut names: Vec<&str> = Vec::new();
        for &i in group {
            let m = &members[i];
            let w = m.person.n_embedded.max(1) as f32;
            mean.iter_mut().zip(&m.embedding).for_each(|(a, x)| *a += w * x);
            per_episode[m.episode] += m.person.screen_time_s;
            seen_in.entry(m.episode).or_default().push(id);
            names.extend(m.person.name.as_deref());
            let p = &m.person;
            appearances.push(Appearance {
                person_id: id,
                episode: &plan.episodes[m.episode].id,
                index: m.episode,
                episode_person_id: p.person_id,
                screen_time_s: p.screen_time_s,
                n_tracks: p.n_tracks,
                n_faces: p.n_faces,
                first_t: p.first_t,
                last_t: p.last_t,
            });
        }
        let name = names.first().filter(|n| names.iter().all(|x| x == *n)).map(|n| n.to_string());
        // One member per episode at most (cannot-links), in episode order.
        let episode_ids: Vec<String> = group.iter().map(|i| plan.episodes[members[*i].episode].id.clone()).collect();
        season_people.push(SeasonPerson {
            person_id: id,
            name: name.clone(),
            episodes: episode_ids.len() as u64,
            episode_ids,
            screen_time_s: output::round_t(screen(group)),
            n_tracks: group.iter().map(|i| members[*i].person.n_tracks).sum(),
            n_faces: group.iter().map(|i| members[*i].person.n_faces).sum(),
            n_embedded: group.iter().map(|i| members[*i].person.n_embedded).sum(),
            best_episode: best_ep.id.clone(),
            best_episode_person_id: members[best].person.person_id,
            crop: crop.is_some().then_some(crop_rel),
            embedding_row: id,
        });
        embeddings.push(unit(mean));
        cast.push(CastPerson { person_id: id, name, crop, screen_s: per_episode });
    }
    appearances.sort_by_key(|a| (a.index, a.person_id));
    let episode_rows: Vec<EpisodeRow> = plan
        .episodes
        .iter()
        .zip(&dones)
        .map(|(e, d)| EpisodeRow {
            index: e.index,
            id: &e.id,
            input: &e.input,
            status: d.status,
            duration_s: d.duration_s,
            frames: d.counts.frames_decoded,
            faces: d.counts.faces_detected,
            faces_embedded: d.counts.faces_embedded,
            tracks: d.counts.tracks,
            shots: d.counts.shots,
            people: d.people,
            season_people: {
                let mut ids = seen_in.get(&e.index).cloned().unwrap_or_default();
                ids.sort_unstable();
                ids
            },
        })
        .collect();
    output::write_jsonl_atomic(&work.join("episodes.jsonl"), &episode_rows)?;
    output::write_jsonl_atomic(&work.join(run_dir::PEOPLE), &season_people)?;
    output::write_jsonl_atomic(&work.join("appearances.jsonl"), &appearances)?;
    output::write_npy_atomic(&work.join(run_dir::PEOPLE_EMBEDDINGS), &embeddings, dim)?;
    let page = crate::report::season::render(&Cast {
        season: plan.out.clone(),
        episodes: plan.episodes.iter().zip(&dones).map(|(e, d)| (e.id.clone(), d.duration_s)).collect(),
        people: cast,
    })?;
    output::write_atomic(&work.join(run_dir::REPORT), page.as_bytes())?;

    let dest = plan.out_url()?.join(MERGED);
    let mut files = vec!["episodes.jsonl".to_string(), run_dir::PEOPLE.into(), run_dir::PEOPLE_EMBEDDINGS.into(), "appearances.jsonl".into()];
    files.extend(season_people.iter().filter_map(|p| p.crop.clone()));
    files.push(run_dir::REPORT.into());
    for rel in &files {
        store.put_file(&work.join(rel), &dest.join(rel))?;
    }
    let recurring = season_people.iter().filter(|p| p.episodes > 1).count();
    let text = format!(
        "merged {} episodes: {} episode people into {} season people ({} in more than one episode); {} files in {dest} (and {}) in {:.1} s",
        plan.episodes.len(),
        members.len(),
        season_people.len(),
        recurring,
        files.len(),
        work.display(),
        start.elapsed().as_secs_f64()
    );
    log::event(
        "season_merged",
        (!cfg.quiet).then_some(text.as_str()),
        json!({"people": season_people.len(), "recurring": recurring, "dest": dest.to_string()}),
    );
    Ok(MergeEnd::Done)
}

/// Downloads `rel` of the episode's run and checks it against its marker.
fn fetch_checked(store: &Store, plan: &Plan, episode: &Episode, done: &Done, rel: &str) -> Result<Vec<u8>, SeasonError> {
    let url = plan.episode_url(episode)?.join(rel);
    let Some(fact) = done.objects.get(rel) else { return Err(SeasonError::invalid(url.to_string(), "its episode's marker does not list it")) };
    let Some(got) = store.get_bytes(&url)? else { return Err(SeasonError::invalid(url.to_string(), "missing, though its episode is marked complete")) };
    if got.bytes.len() as u64 != fact.size || crate::digest::sha256_hex(&got.bytes) != fact.sha256 {
        return Err(SeasonError::invalid(url.to_string(), "not the file its episode's marker records (size or SHA-256 differ)"));
    }
    Ok(got.bytes)
}

/// [`fetch_checked`], kept as `rel` under `dir` for the readers that take a path.
fn fetch_into(store: &Store, plan: &Plan, episode: &Episode, done: &Done, rel: &str, dir: &Path) -> Result<PathBuf, SeasonError> {
    let bytes = fetch_checked(store, plan, episode, done, rel)?;
    let url = plan.episode_url(episode)?.join(rel);
    let path = crate::names::safe_join(dir, rel, "a file of an episode").map_err(|e| SeasonError::invalid(url.to_string(), e.to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(SeasonError::io(parent))?;
    }
    output::write_atomic(&path, &bytes)?;
    Ok(path)
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
