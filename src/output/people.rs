//! The people outputs of a run folder: reads a finished run's `tracks.jsonl`,
//! `track_embeddings.npy`, `shots.jsonl` and `faces.jsonl`, groups its tracks into people
//! ([`crate::people`]), and writes `people.jsonl`, `people_embeddings.npy`,
//! `crops/person_<id>.jpg` and `person_id` on every track and face.
//!
//! A harvest ([`apply`]), `episode-run people` and `episode-run identify` ([`recluster`], which
//! also records the settings in the manifest) share this step, so a re-cluster equals what a
//! harvest with the same settings wrote, byte for byte. Applying twice changes nothing, so a
//! step killed half-way is mended by running it again.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use super::{FaceRecord, OutputError, PersonRecord, ReadError, ShotRecord, TrackRecord};
use crate::people::{self, cluster, PeopleParams, PeopleSection, RunFacts, Seen};
use crate::run_dir::{self, ManifestHead, CROPS, FACES, MANIFEST, PEOPLE, PEOPLE_EMBEDDINGS, SHOTS, TRACKS, TRACK_EMBEDDINGS};
use crate::types::SkipReason;

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Write(#[from] OutputError),
    #[error(transparent)]
    RunDir(#[from] run_dir::RunDirError),
}

/// Clusters the tracks of the run in `dir` and (re)writes every people output.
pub fn apply(dir: &Path, params: &PeopleParams, facts: RunFacts) -> Result<PeopleSection, PeopleError> {
    let start = Instant::now();
    let mut tracks: Vec<TrackRecord> = super::read_jsonl(&dir.join(TRACKS))?;
    let npy = dir.join(TRACK_EMBEDDINGS);
    let matrix = super::read_npy(&npy)?;
    let shots: Vec<ShotRecord> = super::read_jsonl(&dir.join(SHOTS))?;
    let mut faces: Vec<FaceRecord> = super::read_jsonl(&dir.join(FACES))?;

    let seen: Vec<Seen> = tracks.iter().map(|t| Seen { shot: t.shot, t_start: t.t_start, t_end: t.t_end }).collect();
    let shot_ends: Vec<(u64, f64)> = shots.iter().map(|s| (s.shot, s.t_end)).collect();
    let spans = people::intervals(&seen, &shot_ends, facts);
    let cannot = people::cooccurring(&seen, &spans);
    // Faces that passed the gates, per track: with `--embed-every track` many of them are not
    // embedded, yet they say as much about how long and how well a track was seen.
    let mut usable: HashMap<u64, u64> = HashMap::new();
    for f in faces.iter().filter(|f| SkipReason::usable(f.skip_reason)) {
        *usable.entry(f.track_id).or_default() += 1;
    }
    let n_usable = |t: &TrackRecord| usable.get(&t.track_id).copied().unwrap_or(0);
    let mut items = Vec::with_capacity(tracks.len());
    for t in &tracks {
        let embedding = match t.embedding_row {
            Some(r) if (r as usize) < matrix.nrows() => matrix.row(r as usize).to_slice(),
            Some(r) => return Err(ReadError { path: npy, why: format!("has no row {r} (track {})", t.track_id) }.into()),
            None => None,
        };
        let name = t.identity.as_ref().and_then(|i| i.name.as_deref());
        items.push(cluster::Item { embedding, n_usable: n_usable(t), name });
    }
    let c = cluster::cluster(&items, &cannot, params);

    // People numbered by first appearance: their earliest track (first frame, then track id).
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); c.clusters];
    for (i, label) in c.labels.iter().enumerate() {
        if let Some(l) = label {
            members[*l].push(i);
        }
    }
    members.sort_by_key(|m| m.iter().map(|&i| (tracks[i].first_frame, tracks[i].track_id)).min());
    let face_at: HashMap<u64, usize> = faces.iter().enumerate().map(|(i, f)| (f.face_id, i)).collect();
    let dim = matrix.ncols();
    let mut persons = Vec::with_capacity(members.len());
    let mut rows = Vec::with_capacity(members.len());
    let mut person_of: HashMap<u64, u64> = HashMap::new();
    for (pid, m) in members.iter().enumerate() {
        let pid = pid as u64;
        let mut sum = vec![0f32; dim];
        for &i in m {
            person_of.insert(tracks[i].track_id, pid);
            if let Some(e) = items[i].embedding {
                let w = items[i].n_usable as f32;
                sum.iter_mut().zip(e).for_each(|(s, x)| *s += w * x);
            }
        }
        crate::embed::l2_normalize(&mut sum);
        rows.push(sum);
        // The best face of the person: the best of its tracks' best faces, ranked as tracks rank
        // them (a face that passed the quality gates beats any that did not).
        let rank = |i: usize| {
            face_at.get(&tracks[i].best_face_id).map_or(f64::NEG_INFINITY, |&f| {
                let face = &faces[f];
                face.quality.rank(face.det_score as f32) + if face.skip_reason.is_none() { 1.0 } else { 0.0 }
            })
        };
        let best = m.iter().copied().max_by(|&a, &b| rank(a).total_cmp(&rank(b)).then(tracks[b].best_face_id.cmp(&tracks[a].best_face_id))).unwrap_or(m[0]);
        let mut intervals: Vec<(f64, f64)> = m.iter().map(|&i| spans[i]).collect();
        let identity = people::person_identity(m.iter().map(|&i| tracks[i].identity.as_ref()));
        persons.push(PersonRecord {
            person_id: pid,
            name: identity.as_ref().and_then(|i| i.name.clone()),
            identity,
            n_tracks: m.len() as u64,
            n_faces: m.iter().map(|&i| tracks[i].n_faces).sum(),
            n_embedded: m.iter().map(|&i| tracks[i].n_embedded).sum(),
            screen_time_s: super::round_t(people::union_length(&mut intervals)),
            first_t: m.iter().map(|&i| tracks[i].t_start).fold(f64::INFINITY, f64::min),
            last_t: m.iter().map(|&i| tracks[i].t_end).fold(f64::NEG_INFINITY, f64::max),
            shots: m.iter().map(|&i| tracks[i].shot).collect::<BTreeSet<_>>().into_iter().collect(),
            best_face_id: tracks[best].best_face_id,
            best_track_id: tracks[best].track_id,
            embedding_row: pid,
        });
    }

    write_crops(dir, &persons)?;
    super::write_npy_atomic(&dir.join(PEOPLE_EMBEDDINGS), &rows, dim)?;
    super::write_jsonl_atomic(&dir.join(PEOPLE), &persons)?;
    for t in &mut tracks {
        t.person_id = person_of.get(&t.track_id).copied();
    }
    super::write_jsonl_atomic(&dir.join(TRACKS), &tracks)?;
    for f in &mut faces {
        f.person_id = person_of.get(&f.track_id).copied();
    }
    super::write_jsonl_atomic(&dir.join(FACES), &faces)?;
    Ok(PeopleSection {
        settings: params.clone(),
        people: persons.len() as u64,
        tracks: tracks.len() as u64,
        tracks_assigned: person_of.len() as u64,
        unassigned_no_embedding: c.no_embedding as u64,
        unassigned_short: c.short_unassigned as u64,
        short_attached: c.short_attached as u64,
        cannot_links: cannot.len() as u64,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// `crops/person_<id>.jpg`: a copy of its best track's crop (the same 224×112 image). Person
/// crops of an earlier clustering go first.
fn write_crops(dir: &Path, people: &[PersonRecord]) -> Result<(), PeopleError> {
    let crops = dir.join(CROPS);
    if !crops.is_dir() {
        return Ok(());
    }
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputError { path, source }
    };
    for entry in std::fs::read_dir(&crops).map_err(err(&crops))? {
        let path = entry.map_err(err(&crops))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("person_") && name.ends_with(".jpg") {
            std::fs::remove_file(&path).map_err(err(&path))?;
        }
    }
    for p in people {
        let from = crops.join(crate::run_dir::track_crop(p.best_track_id));
        if let Ok(bytes) = std::fs::read(&from) {
            super::write_atomic(&crops.join(crate::run_dir::person_crop(p.person_id)), &bytes)?;
        }
    }
    Ok(())
}

/// The `[people]` settings a run was last grouped with, from its manifest.
pub fn recorded_params(dir: &Path) -> Result<PeopleParams, PeopleError> {
    Ok(ManifestHead::read(dir)?.config.people)
}

/// Re-groups the people of the finished run in `dir` with `params`, and rewrites its manifest's
/// record of them: the `people` section, `[people]` in `config` and in the run identity, and the
/// list of result files (person crops come and go). The caller holds the folder's lock.
pub fn recluster(dir: &Path, params: &PeopleParams) -> Result<PeopleSection, PeopleError> {
    let path = dir.join(MANIFEST);
    let unreadable = |why: String| ReadError { path: path.clone(), why };
    let bytes = std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?;
    let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    let head: ManifestHead = serde_json::from_value(manifest.clone()).map_err(|e| unreadable(e.to_string()))?;
    if matches!(head.status, run_dir::Status::Running | run_dir::Status::Failed) {
        return Err(unreadable(format!("is of a run that is {} (only a finished or interrupted run has people)", head.status)).into());
    }
    let frame_rate = manifest.pointer("/input/video/frame_rate").and_then(serde_json::Value::as_f64);
    let section = apply(dir, params, RunFacts::new(head.config.sampling.stride, frame_rate))?;
    // Plain structs of numbers and strings: serialising them cannot fail.
    manifest["people"] = serde_json::json!(section);
    manifest["config"]["people"] = serde_json::json!(params);
    manifest["identity"]["settings"]["people"] = serde_json::json!(params);
    manifest["files"] = serde_json::json!(run_dir::result_files(dir)?);
    super::write_json_atomic(&path, &manifest)?;
    Ok(section)
}
