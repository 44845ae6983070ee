//! People: tracks grouped into people on a test episode that `scripts/build_people_episode` builds
//! from the real photos and clips in ../shared (14 people, 53 shots, each person back in several
//! shots far apart, two-person shots), scored against the ground truth the script writes; the
//! `people` command against the harvest; and names kept consistent with `--seeds` and `identify`.

mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use util::*;

fn build_episode(dir: &Path) -> (PathBuf, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build_people_episode");
    let o = Command::new(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "build_people_episode: {}", String::from_utf8_lossy(&o.stderr));
    let truth = serde_json::from_slice(&std::fs::read(dir.join("people_truth.json")).unwrap()).unwrap();
    (dir.join("people_episode.mp4"), truth)
}

/// Each true person's track per shot: the track with the most face area in the person's part of
/// the frame (as scripts/eval_people scores it); other tracks (a background face, a hand taken
/// for a face) are unknown.
fn track_truth(truth: &serde_json::Value, faces: &[serde_json::Value]) -> HashMap<u64, String> {
    let mut area: BTreeMap<(u64, usize), (u64, f64)> = BTreeMap::new();
    let mut sums: BTreeMap<(u64, usize, u64), f64> = BTreeMap::new();
    for f in faces {
        let frame = f["frame_idx"].as_u64().unwrap();
        let seg = truth["segments"].as_array().unwrap().iter().find(|s| s["start"].as_u64().unwrap() <= frame && frame <= s["end"].as_u64().unwrap()).unwrap();
        let b: Vec<f64> = f["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (k, p) in seg["people"].as_array().unwrap().iter().enumerate() {
            let cx = (b[0] + b[2]) / 2.0;
            if p["x0"].as_f64().unwrap() <= cx && cx < p["x1"].as_f64().unwrap() {
                *sums.entry((seg["start"].as_u64().unwrap(), k, f["track_id"].as_u64().unwrap())).or_default() += (b[2] - b[0]) * (b[3] - b[1]);
            }
        }
    }
    for ((start, k, track), a) in sums {
        let best = area.entry((start, k)).or_insert((track, a));
        if a > best.1 {
            *best = (track, a);
        }
    }
    let mut out = HashMap::new();
    for s in truth["segments"].as_array().unwrap() {
        for (k, p) in s["people"].as_array().unwrap().iter().enumerate() {
            if let Some((track, _)) = area.get(&(s["start"].as_u64().unwrap(), k)) {
                out.insert(*track, p["name"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

/// The files the people step writes, by name, with their bytes.
fn people_outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for name in ["people.jsonl", "people_embeddings.npy", "tracks.jsonl", "faces.jsonl"] {
        out.insert(name.to_string(), std::fs::read(dir.join(name)).unwrap());
    }
    for (rel, path) in files_under(&dir.join("crops")) {
        out.insert(format!("crops/{rel}"), std::fs::read(path).unwrap());
    }
    out
}

fn run_people(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin()).arg("people").arg(dir).args(extra).output().unwrap()
}

#[test]
fn people_on_a_built_episode_match_the_truth_and_the_people_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (video, truth) = build_episode(tmp.path());
    let out = tmp.path().join("run");
    harvest_ok(&video, &out, &["--stride", "4", "--threads", "2"]);
    let manifest = check_contract(&out);
    let faces = json_lines(&out.join("faces.jsonl"));
    let tracks = json_lines(&out.join("tracks.jsonl"));
    let people_rows = json_lines(&out.join("people.jsonl"));

    // Every true person is found, in exactly one person, holding no one else.
    let truth_of = track_truth(&truth, &faces);
    let mut homes: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut held: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for (track, name) in &truth_of {
        let p = tracks[*track as usize]["person_id"].as_u64().unwrap_or_else(|| panic!("track {track} of {name} has no person"));
        homes.entry(name).or_default().insert(p);
        held.entry(p).or_default().insert(name);
    }
    let everyone: BTreeSet<&str> = truth["people"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(homes.keys().copied().collect::<BTreeSet<_>>(), everyone, "every true person has tracks");
    for (name, h) in &homes {
        assert_eq!(h.len(), 1, "{name}'s tracks are in people {h:?}");
    }
    for (p, names) in &held {
        assert_eq!(names.len(), 1, "person {p} holds {names:?}");
    }
    // The rest (a face in a photo's background, a hand) are at most 2 more people.
    assert!(people_rows.len() <= everyone.len() + 2, "{} people for {} true", people_rows.len(), everyone.len());
    // A two-person shot's people are two people.
    for s in truth["segments"].as_array().unwrap().iter().filter(|s| s["kind"] == "duo") {
        let names: BTreeSet<&str> = s["people"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        let ps: BTreeSet<u64> = names.iter().flat_map(|n| homes[n].iter().copied()).collect();
        assert_eq!(ps.len(), 2, "shot at {} ({names:?})", s["start"]);
    }
    let section = &manifest["people"];
    assert_eq!(section["settings"]["linkage"], "average");
    assert_eq!(section["tracks"], tracks.len());
    let unassigned = tracks.iter().filter(|t| t["person_id"].is_null()).count() as u64;
    assert_eq!(section["unassigned_no_embedding"].as_u64().unwrap() + section["unassigned_short"].as_u64().unwrap(), unassigned);
    assert!(section["cannot_links"].as_u64().unwrap() >= 5, "the two-person shots' tracks co-occur: {section}");

    // `people` re-clusters from the files alone: other settings change the outputs, and the
    // defaults again give the harvest's bytes (and a manifest that records what was used).
    let harvested = people_outputs(&out);
    let loose = tmp.path().join("loose.toml");
    std::fs::write(&loose, "[people]\nthreshold = 0.05\nlinkage = \"single\"\n").unwrap();
    let o = run_people(&out, &["--config", loose.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = json_lines(&out.join("people.jsonl"));
    assert!(merged.len() < people_rows.len(), "a loose threshold merges people: {} vs {}", merged.len(), people_rows.len());
    let m = check_contract(&out);
    assert_eq!(m["people"]["settings"]["threshold"], 0.05);
    assert_eq!(m["identity"]["settings"]["people"]["linkage"], "single");
    let o = run_people(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("into {} people", people_rows.len())), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(people_outputs(&out), harvested, "people with the harvest's settings gives the harvest's bytes");
    check_contract(&out);
    // The same harvest again gives the same bytes whatever the thread count.
    let again = tmp.path().join("again");
    harvest_ok(&video, &again, &["--stride", "4", "--threads", "1"]);
    assert_eq!(people_outputs(&again), harvested, "--threads changes nothing");
}

/// A seeds folder of symlinks named as the issue names the people.
fn seeds(dir: &Path) -> PathBuf {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    for (file, name) in [("lin-manuel-miranda.png", "lin_manuel_miranda.png"), ("alex-lacamoire.png", "alex_lacamoire.png"), ("obama.jpg", "barack_obama.jpg")]
    {
        std::os::unix::fs::symlink(media(file), seeds.join(name)).unwrap();
    }
    seeds
}

/// Every person's name is the one name its named tracks carry, and a named track's person has
/// its name.
fn assert_names_consistent(dir: &Path) {
    let tracks = json_lines(&dir.join("tracks.jsonl"));
    let people = json_lines(&dir.join("people.jsonl"));
    for p in &people {
        let names: BTreeSet<&str> = tracks.iter().filter(|t| t["person_id"] == p["person_id"]).filter_map(|t| t["identity"]["name"].as_str()).collect();
        assert!(names.len() <= 1, "person {} holds tracks named {names:?}", p["person_id"]);
        assert_eq!(p["name"].as_str(), names.first().copied(), "person {}", p["person_id"]);
        assert_eq!(p["name"], p["identity"]["name"]);
    }
}

#[test]
fn names_stay_consistent_through_seeds_identify_and_people() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = seeds(tmp.path());
    let named = tmp.path().join("named");
    harvest_ok(&hamilton(), &named, &["--stride", "4", "--seeds", seeds.to_str().unwrap()]);
    check_contract(&named);
    assert_names_consistent(&named);
    let people = json_lines(&named.join("people.jsonl"));
    let names: BTreeSet<&str> = people.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["barack_obama", "lin_manuel_miranda"]), "{people:?}");
    let harvested = people_outputs(&named);

    // identify with the same seeds re-groups to the same people.
    let o = Command::new(bin()).arg("identify").arg(&named).arg("--seeds").arg(&seeds).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(people_outputs(&named), harvested);
    // `people` keeps the names the tracks carry.
    let o = run_people(&named, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(people_outputs(&named), harvested);

    // A run harvested without seeds, named later by `people --seeds`, is the seeded harvest.
    let plain = tmp.path().join("plain");
    harvest_ok(&hamilton(), &plain, &["--stride", "4"]);
    assert!(json_lines(&plain.join("people.jsonl")).iter().all(|p| p["name"].is_null() && p["identity"].is_null()));
    let o = run_people(&plain, &["--seeds", seeds.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(people_outputs(&plain), harvested);
    assert_names_consistent(&plain);
    check_contract(&plain);
}

#[test]
fn people_refuses_what_is_not_a_finished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_people(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[people]\nthreshold = 3.0\n").unwrap();
    let o = run_people(tmp.path(), &["--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("people.threshold"), "{}", String::from_utf8_lossy(&o.stderr));
}
