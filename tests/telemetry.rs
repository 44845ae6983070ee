//! Telemetry: timings.jsonl per sampled frame, per-stage percentiles and host facts in the
//! manifest, and `--log-format json` events.

mod util;

use util::*;

#[test]
fn timings_manifest_stats_and_json_events() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = harvest(&hamilton(), &out, &["--stride", "4", "--log-format", "json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"start"));
    assert!(names.contains(&"checkpoint"), "{names:?}");
    assert_eq!(names.last(), Some(&"finish"));
    assert!(events.iter().all(|e| e["time"].is_string()));

    let run = Run::load(&out);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("timings.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len() as u64, run.manifest["counts"]["frames_sampled"].as_u64().unwrap());
    assert!(rows.iter().enumerate().all(|(i, r)| r["frame_idx"] == (i as u64 * 4)));
    for key in ["decode_ms", "detect_ms", "align_ms", "embed_ms", "faces"] {
        assert!(rows.iter().all(|r| r[key].as_f64().is_some_and(|v| v >= 0.0)), "{key}");
    }
    let faces: u64 = rows.iter().map(|r| r["faces"].as_u64().unwrap()).sum();
    assert_eq!(faces, run.manifest["counts"]["faces_detected"].as_u64().unwrap());
    for stage in ["decode", "detect", "align", "embed"] {
        let s = &run.manifest["timings"][stage];
        let v = |k: &str| s[k].as_f64().unwrap();
        assert!(v("min_ms") <= v("p50_ms") && v("p50_ms") <= v("p95_ms") && v("p95_ms") <= v("max_ms"), "{stage}: {s}");
        assert_eq!(s["frames"], rows.len() as u64);
    }
    assert!(run.manifest["host"]["cores"].as_u64().unwrap() >= 1);
    assert!(run.manifest["host"]["memory_gib"].as_f64().unwrap() > 0.0);
    assert_eq!(run.manifest["history"].as_array().unwrap().len(), 1);
}

#[test]
fn json_errors_are_one_object() {
    let tmp = tempfile::tempdir().unwrap();
    let o = harvest(&tmp.path().join("missing.mp4"), &tmp.path().join("out"), &["--log-format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error");
    assert!(last["message"].as_str().unwrap().contains("missing.mp4"));
}
