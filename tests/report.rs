//! report.html in a real browser: Debian's Chromium, headless, with no network, on a real
//! harvest (cast photos, a hostile seed name), on a synthetic 48-minute episode (size, load
//! time), on a run from before people and reports existed, and on a failed run.

mod util;

use std::path::Path;
use std::process::Command;

use util::*;

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

fn report_cmd(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin()).arg("report").arg(dir).args(extra).output().unwrap()
}

/// Every `src`/`href` in `dom` is inline (a data: URI) or a fragment: nothing to fetch.
fn assert_self_contained(dom: &str) {
    for attr in ["src=\"", "href=\""] {
        for value in dom.split(attr).skip(1).map(|s| s.split('"').next().unwrap()) {
            assert!(value.starts_with("data:image/jpeg;base64,") || value.starts_with('#'), "{attr}{value:.80}");
        }
    }
    for banned in ["<link", "@import", "url(", "<iframe", "<object"] {
        assert!(!dom.contains(banned), "{banned}");
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Track ids of the timeline's bars, sorted.
fn bar_tracks(dom: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = dom.split("class=\"bar\" data-track=\"").skip(1).map(|s| s.split('"').next().unwrap().parse().unwrap()).collect();
    ids.sort();
    ids
}

fn tracks_with_a_person(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> =
        json_lines(&dir.join("tracks.jsonl")).iter().filter(|t| !t["person_id"].is_null()).map(|t| t["track_id"].as_u64().unwrap()).collect();
    ids.sort();
    ids
}

#[test]
fn the_check_sees_network_use_and_console_errors() {
    // The browser checks below must be able to fail: a page that fetches and throws is caught.
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("bad.html");
    std::fs::write(&page, "<html><body><img src=\"http://example.com/x.png\"><script>console.error('no'); missing();</script></body></html>").unwrap();
    let b = open_in_chromium(&page);
    assert_eq!(b.requests, ["http://example.com/x.png"]);
    assert_eq!(b.console.len(), 2, "{:?}", b.console);
}

#[test]
fn a_harvest_with_cast_photos_shows_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = tmp.path().join("seeds");
    std::fs::create_dir(&seeds).unwrap();
    std::fs::copy(media("lin-manuel-miranda.png"), seeds.join("lin_manuel_miranda.png")).unwrap();
    std::fs::copy(media("obama.jpg"), seeds.join(format!("{HOSTILE}.jpg"))).unwrap();
    let out = tmp.path().join("run");
    harvest_ok(&hamilton(), &out, &["--stride", "4", "--seeds", seeds.to_str().unwrap()]);
    let people = json_lines(&out.join("people.jsonl"));
    assert!(people.iter().any(|p| p["name"] == HOSTILE), "the hostile seed names a person: {people:?}");
    let report = out.join("report.html");

    let b = open_in_chromium(&report);
    assert!(b.console.is_empty(), "console: {:?}", b.console);
    assert!(b.requests.is_empty(), "network: {:?}", b.requests);
    assert_self_contained(&b.dom);
    assert_eq!(count(&b.dom, "<article class=\"person\" data-person="), people.len());
    assert_eq!(bar_tracks(&b.dom), tracks_with_a_person(&out), "one timeline bar per track that has a person");
    // The hostile name is text wherever it shows, never an element.
    assert!(b.dom.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!b.dom.contains("<img src=\"x\"") && !b.dom.contains("onerror=\""), "markup from a seed name");
    let load = b.load_ms.expect("the page records its load time");
    assert!(load < 2000, "{load} ms");
    for section in ["id=\"people\"", "id=\"timeline\"", "id=\"screen-time\"", "id=\"contact\"", "id=\"quality\"", "id=\"performance\""] {
        assert!(b.dom.contains(section), "{section}");
    }
    assert!(!b.dom.contains("class=\"banner"), "a completed run has no status banner");

    let png = tmp.path().join("shot.png");
    let img = screenshot(&report, &png, 1280, 2000);
    assert_eq!(img.dimensions(), (1280, 2000));
    let luma: Vec<f64> = img.pixels().map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0]).collect();
    assert!(var > 300.0 && colours.len() > 200, "a blank-looking screenshot: variance {var:.0}, {} colours", colours.len());

    // Rendered again from the folder alone: the same page, byte for byte.
    let again = tmp.path().join("again.html");
    let o = report_cmd(&out, &["-o", again.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&report).unwrap());

    // --no-report leaves it out.
    let bare = tmp.path().join("bare");
    harvest_ok(&hamilton(), &bare, &["--stride", "8", "--no-report"]);
    assert!(!bare.join("report.html").exists());
}

#[test]
fn a_run_from_before_people_and_reports_still_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    harvest_ok(&hamilton(), &out, &["--stride", "8", "--no-report"]);
    // What an older version left: no people files or fields, no wall-clock times, no per-call counts.
    for name in ["people.jsonl", "people_embeddings.npy"] {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    let strip = |name: &str, keys: &[&str]| {
        let rows: Vec<String> = json_lines(&out.join(name))
            .into_iter()
            .map(|mut r| {
                keys.iter().for_each(|k| _ = r.as_object_mut().unwrap().remove(*k));
                r.to_string()
            })
            .collect();
        std::fs::write(out.join(name), rows.join("\n") + "\n").unwrap();
    };
    strip("tracks.jsonl", &["person_id"]);
    strip("faces.jsonl", &["person_id"]);
    strip("timings.jsonl", &["elapsed_s"]);
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("people");
    manifest["counts"].as_object_mut().unwrap().remove("embed_call_crops");
    std::fs::write(out.join("manifest.json"), manifest.to_string()).unwrap();

    let o = report_cmd(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), out.join("report.html").display().to_string());
    let b = open_in_chromium(&out.join("report.html"));
    assert!(b.console.is_empty() && b.requests.is_empty(), "{:?} {:?}", b.console, b.requests);
    assert_eq!(count(&b.dom, "<article class=\"person\" data-person="), 0);
    assert!(b.dom.contains("No people.jsonl"), "says why there are no people");
    assert!(b.dom.contains("no wall-clock times") && b.dom.contains("per-call crop counts"));
    assert!(b.dom.contains("Frames</dt><dd>"), "the header still has the run's facts");

    // Not a run folder: refused, naming it.
    let o = report_cmd(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an episode-run run folder"));
}

#[test]
fn a_failed_harvest_says_so_at_the_top() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("broken.onnx");
    std::fs::write(&model, b"not a model").unwrap();
    let out = tmp.path().join("run");
    let o = harvest(&hamilton(), &out, &["--det-model", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let b = open_in_chromium(&out.join("report.html"));
    assert!(b.console.is_empty(), "{:?}", b.console);
    assert!(b.dom.contains("class=\"banner error\""), "a failed run's report says so at the top");
    assert!(b.dom.contains("The last harvest into this folder failed") && b.dom.contains("broken.onnx"), "and why");
}

/// A synthetic 48-minute episode at 29.97 fps and stride 4, as big as the issue's: 86,400
/// frames in 720 shots, 6,600 tracks of 10 faces (66,000 faces), 10 main cast who are in most
/// shots and 290 guests, real crops (copies of a real run's).
fn build_episode(real: &Path, out: &Path) {
    std::fs::create_dir_all(out.join("crops")).unwrap();
    std::fs::copy(real.join(".episode-run"), out.join(".episode-run")).unwrap();
    let fps = 29.97;
    let (shots, per_shot, faces_per_track, stride) = (720u64, 9u64, 10u64, 4u64);
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(real.join("manifest.json")).unwrap()).unwrap();
    manifest["counts"]["frames_decoded"] = (shots * 120).into();
    manifest["counts"]["frames_sampled"] = (shots * 30).into();
    manifest["input"]["video"]["frames_total"] = (shots * 120).into();
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let real_crops: Vec<std::path::PathBuf> =
        files_under(&real.join("crops")).into_iter().map(|(_, p)| p).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("track_")).collect();

    let mut rng = 15u64;
    let mut next = move || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((rng >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..300).map(|_| (0..128).map(|_| next() as f32).collect()).collect();
    let (mut tracks, mut faces, mut shot_rows, mut embeddings) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut track_id = 0u64;
    for s in 0..shots {
        let start = s * 120;
        shot_rows.push(
            serde_json::json!({"shot": s, "start_frame": start, "end_frame": start + 119, "t_start": start as f64 / fps, "t_end": (start + 119) as f64 / fps}),
        );
        // 120 shots of 10 tracks and 600 of 9: 6,600.
        for k in 0..per_shot + u64::from(s < 120) {
            let person = if k < 3 { (s + k * 3) % 10 } else { 10 + (s * 6 + k - 3) % 290 };
            let first = start + k * 8;
            for f in 0..faces_per_track {
                let frame = first + f * stride;
                faces.push(serde_json::json!({"face_id": 0, "frame_idx": frame, "t": frame as f64 / fps, "bbox": [100.0, 80.0, 100.0 + 40.0 + (k * 7) as f64, 150.0 + (k * 7) as f64],
                    "landmarks": [[110.0, 100.0], [130.0, 100.0], [120.0, 115.0], [112.0, 130.0], [128.0, 130.0]], "det_score": 0.6 + 0.04 * k as f64, "embedding_row": null, "skip_reason": null, "track_id": track_id, "shot": s,
                    "quality": {"blur": 100.0, "face_px": 60.0, "yaw": 0.0}, "identity": null, "person_id": null}));
            }
            let last = first + (faces_per_track - 1) * stride;
            tracks.push(serde_json::json!({"track_id": track_id, "shot": s, "first_frame": first, "last_frame": last, "t_start": first as f64 / fps, "t_end": last as f64 / fps,
                "n_faces": faces_per_track, "n_embedded": faces_per_track, "best_face_id": 0, "embedding_row": track_id, "identity": null, "person_id": null}));
            let mut e: Vec<f32> = centres[person as usize].iter().map(|c| c + 0.3 * next() as f32).collect();
            let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
            e.iter_mut().for_each(|v| *v /= norm);
            embeddings.push(e);
            std::fs::hard_link(&real_crops[track_id as usize % real_crops.len()], out.join("crops").join(format!("track_{track_id}.jpg"))).unwrap();
            track_id += 1;
        }
    }
    assert_eq!(track_id, 6600);
    faces.sort_by_key(|f| (f["frame_idx"].as_u64().unwrap(), f["track_id"].as_u64().unwrap()));
    let mut best = std::collections::HashMap::new();
    for (i, f) in faces.iter_mut().enumerate() {
        f["face_id"] = (i as u64).into();
        best.entry(f["track_id"].as_u64().unwrap()).or_insert(i as u64);
    }
    for t in &mut tracks {
        t["best_face_id"] = best[&t["track_id"].as_u64().unwrap()].into();
    }
    let timings: Vec<serde_json::Value> = (0..shots * 30)
        .map(|i| serde_json::json!({"frame_idx": i * stride, "decode_ms": 6.0 + (i % 7) as f64, "detect_ms": 14.0 + (i % 5) as f64, "align_ms": 1.5, "embed_ms": 30.0 + (i % 11) as f64 * 3.0, "faces": 2, "elapsed_s": i as f64 * 0.055}))
        .collect();
    let jsonl = |name: &str, rows: &[serde_json::Value]| {
        let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(out.join(name), text).unwrap();
    };
    jsonl("faces.jsonl", &faces);
    jsonl("tracks.jsonl", &tracks);
    jsonl("shots.jsonl", &shot_rows);
    jsonl("timings.jsonl", &timings);
    episode_run::output::write_npy_atomic(&out.join("track_embeddings.npy"), &embeddings, 128).unwrap();
}

#[test]
fn a_48_minute_episode_makes_a_small_page_that_opens_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    harvest_ok(&hamilton(), &real, &["--stride", "2", "--no-report"]);
    let out = tmp.path().join("episode");
    build_episode(&real, &out);
    let o = Command::new(bin()).arg("people").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let people = json_lines(&out.join("people.jsonl"));
    assert!(people.len() >= 250, "{} people", people.len());

    let o = report_cmd(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = out.join("report.html");
    let size = std::fs::metadata(&report).unwrap().len();
    let b = open_in_chromium(&report);
    eprintln!("48-minute episode: {} people, report {size} bytes, load event at {:?} ms", people.len(), b.load_ms);
    assert!(size <= 3_000_000, "{size} bytes");
    assert!(b.console.is_empty() && b.requests.is_empty(), "{:?} {:?}", b.console, b.requests);
    assert_eq!(count(&b.dom, "<article class=\"person\" data-person="), people.len());
    assert_eq!(bar_tracks(&b.dom), tracks_with_a_person(&out));
    assert!(b.dom.contains("more tracks"), "capped crops say how many more there are");
    let load = b.load_ms.expect("the page records its load time");
    assert!(load < 2000, "{load} ms");
}
