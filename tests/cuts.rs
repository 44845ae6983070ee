//! Shot cuts where only part of the frame changes, and tracks that never hold two people, on a
//! test episode that `scripts/build_cut_episode` builds from the real media in ../shared and
//! whose ground truth (every cut, every shot's kind and people) it writes.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use util::*;

struct Truth {
    cuts: Vec<u64>,
    segments: Vec<Segment>,
}

/// One true shot.
struct Segment {
    start: u64,
    end: u64,
    kind: String,
    people: Vec<String>,
    /// The hard negative it is, if any (no cut may fall inside).
    negative: Option<String>,
    /// The frozen background of the inset shots has faces of its own, the same in each.
    background_faces: bool,
    /// Where an inset shot's own person is.
    inset_box: Option<[f64; 4]>,
}

impl Segment {
    /// Who a face centred at (x, y) is: the shot's people, or the inset background's.
    fn who(&self, x: f64, y: f64) -> Vec<String> {
        let in_box = self.inset_box.is_some_and(|b| (b[0]..=b[2]).contains(&x) && (b[1]..=b[3]).contains(&y));
        if self.background_faces && !in_box {
            vec!["inset background".to_string()]
        } else {
            self.people.clone()
        }
    }
}

fn build_episode(dir: &Path) -> (std::path::PathBuf, Truth) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build_cut_episode");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let o = Command::new("python3").arg(script).arg(dir).arg("--shared").arg(shared).output().expect("python3");
    assert!(o.status.success(), "build_cut_episode: {}", String::from_utf8_lossy(&o.stderr));
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cuts_truth.json")).unwrap()).unwrap();
    let cuts = t["cuts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let segments = t["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Segment {
            start: s["start"].as_u64().unwrap(),
            end: s["end"].as_u64().unwrap(),
            kind: s["kind"].as_str().unwrap().to_string(),
            people: s["people"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect(),
            negative: s["negative"].as_str().map(str::to_string),
            background_faces: s["background_faces"].as_bool().unwrap(),
            inset_box: s["inset_box"].as_array().map(|b| std::array::from_fn(|i| b[i].as_f64().unwrap())),
        })
        .collect();
    (dir.join("cuts_episode.mp4"), Truth { cuts, segments })
}

impl Truth {
    fn segment_of(&self, frame: u64) -> usize {
        self.segments.iter().position(|s| (s.start..=s.end).contains(&frame)).unwrap()
    }
}

/// Precision, recall and F1 of `found` against the truth, a cut matching within ±1 frame.
fn score(found: &[u64], truth: &[u64]) -> (f64, f64, f64) {
    let near = |a: u64, b: u64| a.abs_diff(b) <= 1;
    let tp = truth.iter().filter(|c| found.iter().any(|f| near(**c, *f))).count() as f64;
    let correct = found.iter().filter(|f| truth.iter().any(|c| near(*c, **f))).count() as f64;
    let (p, r) = (correct / found.len().max(1) as f64, tp / truth.len() as f64);
    (p, r, 2.0 * p * r / (p + r).max(1e-9))
}

/// Each track's true shots, and who its embedded faces are.
fn track_truth(dir: &Path, truth: &Truth) -> BTreeMap<u64, (BTreeSet<usize>, BTreeSet<Vec<String>>)> {
    let mut by = BTreeMap::<u64, (BTreeSet<usize>, BTreeSet<Vec<String>>)>::new();
    for f in json_lines(&dir.join("faces.jsonl")) {
        let seg = truth.segment_of(f["frame_idx"].as_u64().unwrap());
        let e = by.entry(f["track_id"].as_u64().unwrap()).or_default();
        e.0.insert(seg);
        if f["embedding_row"].is_u64() {
            let b: Vec<f64> = f["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            e.1.insert(truth.segments[seg].who((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0));
        }
    }
    by
}

#[test]
fn partial_frame_cuts_are_found_and_no_track_holds_two_people() {
    let tmp = tempfile::tempdir().unwrap();
    let (video, truth) = build_episode(tmp.path());
    assert!(truth.cuts.len() >= 28 && truth.segments.iter().filter(|s| s.kind == "wide").count() >= 12, "the episode is the one described");

    let out = tmp.path().join("run");
    harvest_ok(&video, &out, &["--stride", "5"]);
    let manifest = check_contract(&out);
    let shots = json_lines(&out.join("shots.jsonl"));
    let found: Vec<u64> = shots.iter().skip(1).map(|s| s["start_frame"].as_u64().unwrap()).collect();
    let (p, r, f1) = score(&found, &truth.cuts);
    eprintln!("cuts: {} found of {} true: precision {p:.3}, recall {r:.3}, F1 {f1:.3}", found.len(), truth.cuts.len());
    assert!(f1 >= 0.97, "F1 {f1:.3} (precision {p:.3}, recall {r:.3}); found {found:?}, truth {:?}", truth.cuts);
    // No false cut inside a hard negative: pans, zooms, a blurred pan, flashes, a fade, the crowd.
    for f in &found {
        let s = &truth.segments[truth.segment_of(*f)];
        assert!(s.negative.is_none() || *f <= s.start + 1, "false cut at frame {f} inside the {:?} shot {}..={}", s.negative, s.start, s.end);
    }

    // A cut ends every track, so no track spans a true cut; each true shot holds one person
    // (besides the frozen background's own faces), so no track holds two people.
    let spans: Vec<_> = track_truth(&out, &truth).into_iter().filter(|(_, (segs, _))| segs.len() > 1).collect();
    assert!(spans.is_empty(), "tracks spanning a true cut (track, segments): {spans:?}");
    assert!(manifest["counts"]["tracks"].as_u64().unwrap() > 50);

    // With the cut detector switched off, the appearance check alone must still keep people
    // apart: a track whose embedded faces lie in shots of different people would hold two.
    let cfg = tmp.path().join("no_cuts.toml");
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.toml")).unwrap();
    std::fs::write(&cfg, default.replace("min_score = 0.08", "min_score = 1.0")).unwrap();
    let blind = tmp.path().join("blind");
    harvest_ok(&video, &blind, &["--stride", "5", "--config", cfg.to_str().unwrap()]);
    let m = check_contract(&blind);
    assert_eq!(m["counts"]["shots"], 1, "no cuts at all");
    assert!(m["counts"]["track_splits"].as_u64().unwrap() >= 10, "the missed cuts between people are split: {}", m["counts"]);
    for (track, (_, people)) in track_truth(&blind, &truth) {
        assert!(people.len() <= 1, "track {track} holds embedded faces of {people:?}");
    }
}
