//! Tracks, shots, quality gates and cast matching on the real Hamilton clip and cast photos.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use util::*;

/// The clip's shot cuts, found by looking at it frame by frame: a wide shot of the stage (0-19),
/// a close-up profile of Lin-Manuel Miranda (20-81), Miranda on stage (82-210), the audience
/// with Barack Obama (211-274). Each number is the first frame of a new shot.
const CUTS: [u64; 3] = [20, 82, 211];

/// A seeds folder of symlinks named as the issue names the people.
fn seeds(dir: &Path) -> std::path::PathBuf {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    for (file, name) in [("lin-manuel-miranda.png", "lin_manuel_miranda.png"), ("alex-lacamoire.png", "alex_lacamoire.png"), ("obama.jpg", "barack_obama.jpg")]
    {
        std::os::unix::fs::symlink(media(file), seeds.join(name)).unwrap();
    }
    seeds
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn name(v: &serde_json::Value) -> Option<&str> {
    v["identity"]["name"].as_str()
}

#[test]
fn tracks_shots_and_names_on_the_hamilton_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = seeds(tmp.path());
    let out = tmp.path().join("run");
    let run = harvest_ok(&hamilton(), &out, &["--stride", "2", "--seeds", seeds.to_str().unwrap()]);
    let tracks = jsonl(&out.join("tracks.jsonl"));
    let shots = jsonl(&out.join("shots.jsonl"));
    let threshold = run.manifest["config"]["identify"]["threshold"].as_f64().unwrap();

    // Shots: the cuts found are exactly the clip's cuts, and the shots tile the clip.
    let starts: Vec<u64> = shots.iter().map(|s| s["start_frame"].as_u64().unwrap()).collect();
    assert_eq!(starts, [0, CUTS[0], CUTS[1], CUTS[2]]);
    assert_eq!(shots.last().unwrap()["end_frame"], 274);
    for pair in shots.windows(2) {
        assert_eq!(pair[0]["end_frame"].as_u64().unwrap() + 1, pair[1]["start_frame"].as_u64().unwrap());
    }
    let shot_of =
        |frame: u64| shots.iter().position(|s| s["start_frame"].as_u64().unwrap() <= frame && frame <= s["end_frame"].as_u64().unwrap()).unwrap() as u64;

    // No track spans a cut; every face's shot and track agree with tracks.jsonl.
    let by_id: BTreeMap<u64, &serde_json::Value> = tracks.iter().map(|t| (t["track_id"].as_u64().unwrap(), t)).collect();
    for t in &tracks {
        let (first, last) = (t["first_frame"].as_u64().unwrap(), t["last_frame"].as_u64().unwrap());
        assert_eq!(shot_of(first), shot_of(last), "track {} spans a cut: {t}", t["track_id"]);
        assert_eq!(t["shot"].as_u64(), Some(shot_of(first)));
    }
    let mut faces_per_track: BTreeMap<u64, u64> = BTreeMap::new();
    for f in &run.faces {
        let track = by_id[&f["track_id"].as_u64().unwrap()];
        let frame = f["frame_idx"].as_u64().unwrap();
        assert_eq!(f["shot"].as_u64(), Some(shot_of(frame)));
        assert_eq!(f["shot"], track["shot"]);
        assert!(track["first_frame"].as_u64().unwrap() <= frame && frame <= track["last_frame"].as_u64().unwrap());
        *faces_per_track.entry(f["track_id"].as_u64().unwrap()).or_default() += 1;
        for key in ["blur", "face_px", "yaw"] {
            assert!(f["quality"].get(key).is_some(), "quality.{key} missing: {f}");
        }
    }
    for t in &tracks {
        assert_eq!(faces_per_track[&t["track_id"].as_u64().unwrap()], t["n_faces"].as_u64().unwrap());
        assert!(out.join(format!("crops/track_{}.jpg", t["track_id"])).is_file());
    }

    // Names: Miranda's on-stage track(s) and Obama's track.
    let lin_frames: BTreeSet<u64> = run
        .faces
        .iter()
        .filter(|f| name(by_id[&f["track_id"].as_u64().unwrap()]) == Some("lin_manuel_miranda"))
        .map(|f| f["frame_idx"].as_u64().unwrap())
        .filter(|f| (82..=210).contains(f))
        .collect();
    let sampled_stage: BTreeSet<u64> = (82..=210).filter(|f| f % 2 == 0).collect();
    assert!(lin_frames.len() * 100 >= sampled_stage.len() * 95, "Miranda's tracks cover {} of {} sampled frames 82-210", lin_frames.len(), sampled_stage.len());
    assert!(
        tracks
            .iter()
            .filter(|t| name(t) == Some("barack_obama"))
            .any(|t| t["first_frame"].as_u64().unwrap() >= 211 && t["last_frame"].as_u64().unwrap() <= 274),
        "no track within 211-274 named barack_obama: {tracks:?}"
    );
    for t in &tracks {
        if let Some(n) = name(t) {
            assert!(t["identity"]["score"].as_f64().unwrap() >= threshold, "{n} named under the threshold: {t}");
            for f in run.faces.iter().filter(|f| f["track_id"] == t["track_id"]) {
                assert!(name(f).is_none_or(|fname| fname == n), "face in track named {n} carries {f}");
            }
        }
    }
    for f in &run.faces {
        assert_eq!(f["identity"].is_null(), f["embedding_row"].is_null(), "identity exactly for embedded faces: {f}");
    }
    // Gates: skipped faces carry a reason and are not embedded.
    let reasons: BTreeSet<&str> = run.faces.iter().filter_map(|f| f["skip_reason"].as_str()).collect();
    assert!(reasons.contains("blurry") && reasons.contains("low_score"), "{reasons:?}");

    // The track embeddings file has one unit row per track with embedded faces.
    let bytes = std::fs::read(out.join("track_embeddings.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let with_rows = tracks.iter().filter(|t| t["embedding_row"].is_u64()).count() as u64;
    assert_eq!(npy.shape(), &[with_rows, 128]);
    assert_eq!(run.manifest["counts"]["tracks"].as_u64(), Some(tracks.len() as u64));
    assert_eq!(run.manifest["counts"]["shots"], 4);

    // identify re-matches from the saved embeddings and gives the same identity fields.
    let before_faces = std::fs::read_to_string(out.join("faces.jsonl")).unwrap();
    let before_tracks = std::fs::read_to_string(out.join("tracks.jsonl")).unwrap();
    let blank = |text: &str| -> String {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["identity"] = serde_json::Value::Null;
                v.to_string() + "\n"
            })
            .collect()
    };
    std::fs::write(out.join("faces.jsonl"), blank(&before_faces)).unwrap();
    std::fs::write(out.join("tracks.jsonl"), blank(&before_tracks)).unwrap();
    let o = std::process::Command::new(bin()).arg("identify").arg(&out).arg("--seeds").arg(&seeds).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(out.join("faces.jsonl")).unwrap(), before_faces);
    assert_eq!(std::fs::read_to_string(out.join("tracks.jsonl")).unwrap(), before_tracks);
}

#[test]
fn a_seed_image_without_a_face_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = tmp.path().join("seeds");
    std::fs::create_dir(&seeds).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:s=320x240", "-frames:v", "1", seeds.join("nobody.png").to_str().unwrap()]);
    let o = harvest(&media("obama.jpg"), &tmp.path().join("out"), &["--seeds", seeds.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nobody.png") && stderr.contains("no usable face"), "{stderr}");
}
