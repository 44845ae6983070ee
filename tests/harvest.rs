//! End-to-end: the real binary, the real models, the real Hamilton clip and reference photos.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use util::*;

const MATCH: f32 = 0.363;

/// Best cosine to `reference` among the embedded faces of each frame.
fn best_per_frame(run: &Run, reference: &[f32]) -> BTreeMap<u64, f32> {
    let mut best = BTreeMap::new();
    for f in &run.faces {
        if let Some(row) = f["embedding_row"].as_u64() {
            let c = cosine(&run.embeddings[row as usize], reference);
            let e = best.entry(f["frame_idx"].as_u64().unwrap()).or_insert(f32::MIN);
            *e = e.max(c);
        }
    }
    best
}

fn fraction_matched(best: &BTreeMap<u64, f32>, frames: std::ops::RangeInclusive<u64>) -> f64 {
    let n = frames.clone().count() as f64;
    frames.filter(|f| best.get(f).is_some_and(|&c| c >= MATCH)).count() as f64 / n
}

#[test]
fn finds_lin_manuel_miranda_and_obama_in_their_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let lin = harvest_ok(&media("lin-manuel-miranda.png"), &tmp.path().join("lin"), &[]).largest_face_embedding();
    let obama = harvest_ok(&media("obama.jpg"), &tmp.path().join("obama"), &[]).largest_face_embedding();
    let run = harvest_ok(&hamilton(), &tmp.path().join("clip"), &["--stride", "1"]);

    let lin_frac = fraction_matched(&best_per_frame(&run, &lin), 82..=210);
    let obama_frac = fraction_matched(&best_per_frame(&run, &obama), 211..=274);
    assert!(lin_frac >= 0.95, "Lin-Manuel Miranda matched in {:.1}% of frames 82-210", lin_frac * 100.0);
    assert!(obama_frac >= 0.95, "Obama matched in {:.1}% of frames 211-274", obama_frac * 100.0);

    // Output contract: every row's fields, dense ids, unit-norm rows that map one-to-one.
    assert_eq!(run.shape[0] as usize, run.embeddings.len());
    assert_eq!(run.shape[1], 128);
    let mut rows = BTreeSet::new();
    for (i, f) in run.faces.iter().enumerate() {
        assert_eq!(f["face_id"].as_u64(), Some(i as u64));
        assert_eq!(f["bbox"].as_array().unwrap().len(), 4);
        assert_eq!(f["landmarks"].as_array().unwrap().len(), 5);
        assert!(f["det_score"].is_f64() && f["t"].is_f64());
        match f["embedding_row"].as_u64() {
            Some(r) => {
                assert!(f["skip_reason"].is_null());
                assert!(rows.insert(r));
            }
            None => assert!(f["skip_reason"].is_string(), "unembedded face without a reason: {f}"),
        }
    }
    assert_eq!(rows.len(), run.embeddings.len());
    for e in &run.embeddings {
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() <= 1e-3, "row norm {norm}");
    }
    let frames: Vec<u64> = run.faces.iter().map(|f| f["frame_idx"].as_u64().unwrap()).collect();
    assert!(frames.windows(2).all(|w| w[0] <= w[1]), "faces are in frame order");
    // The clip's video starts at pts 0.852 s: t is what a player shows.
    let first = &run.faces[0];
    assert_eq!(first["frame_idx"], 0);
    assert!((first["t"].as_f64().unwrap() - 0.852).abs() < 0.01, "t = {}", first["t"]);
    // Landmarks are left eye then right eye as seen in the image.
    let lm = first["landmarks"].as_array().unwrap();
    assert!(lm[0][0].as_f64() < lm[1][0].as_f64());

    let m = &run.manifest;
    assert_eq!(m["counts"]["faces_detected"].as_u64(), Some(run.faces.len() as u64));
    assert_eq!(m["counts"]["faces_embedded"].as_u64(), Some(run.embeddings.len() as u64));
    // The default detector: YuNet 2023mar with its sizes made symbolic by scripts/prepare_yunet.py.
    assert_eq!(m["models"]["detector"]["sha256"], "32829cae78ddccbeff15df81f4be5e4f78b2b5f1a89f18fd33b7d663c8029bd2");
    assert_eq!(m["onnxruntime"]["version"], "1.31.1");
    assert_eq!(run.progress["status"], "done");
    assert_eq!(run.progress["frames_decoded"], 275);
}

#[test]
fn batch_and_no_batch_give_the_same_faces() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = harvest_ok(&hamilton(), &tmp.path().join("b"), &["--stride", "3"]);
    let single = harvest_ok(&hamilton(), &tmp.path().join("s"), &["--stride", "3", "--no-batch-embed"]);
    assert_eq!(batch.faces_text, single.faces_text, "faces.jsonl rows differ");
    assert_eq!(batch.embeddings.len(), single.embeddings.len());
    let worst = batch.embeddings.iter().zip(&single.embeddings).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs())).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "max embedding difference {worst}");

    let frames_with_embedded: BTreeSet<u64> = batch.faces.iter().filter(|f| f["embedding_row"].is_u64()).map(|f| f["frame_idx"].as_u64().unwrap()).collect();
    assert!(batch.faces.len() > frames_with_embedded.len(), "the clip has frames with several faces");
    assert_eq!(batch.manifest["counts"]["embed_calls"].as_u64(), Some(frames_with_embedded.len() as u64));
    assert_eq!(single.manifest["counts"]["embed_calls"], single.manifest["counts"]["faces_embedded"]);
    assert_eq!(single.manifest["counts"]["faces_embedded"].as_u64(), Some(single.embeddings.len() as u64));
}

#[test]
fn stride_four_samples_exactly_every_fourth_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let run = harvest_ok(&hamilton(), &tmp.path().join("s4"), &["--stride", "4"]);
    let total = ffprobe_frame_count(&hamilton());
    assert_eq!(total, 275);
    let counts = &run.manifest["counts"];
    assert_eq!(counts["frames_decoded"].as_u64(), Some(total));
    assert_eq!(counts["frames_sampled"].as_u64(), Some(total.div_ceil(4)));
    let sampled: BTreeSet<u64> = run.faces.iter().map(|f| f["frame_idx"].as_u64().unwrap()).collect();
    assert!(sampled.iter().all(|f| f % 4 == 0), "a face from an unsampled frame: {sampled:?}");
    // Faces are on screen in nearly every frame, so nearly every sampled frame has faces.
    assert!(sampled.len() as u64 >= total.div_ceil(4) * 9 / 10, "{} frames with faces", sampled.len());
    assert_eq!(run.manifest["config"]["sampling"]["stride"], 4);
}

#[test]
fn one_thread_uses_one_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t1");
    let start = std::time::Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
    let child =
        std::process::Command::new(bin()).args(["harvest", "--quiet", "--threads", "1", "--stride", "2", "--out"]).arg(&out).arg(hamilton()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 gives the CPU time of exactly this child, all its threads included.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "harvest failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    assert!(cpu / wall <= 1.10, "--threads 1 used {cpu:.2} s CPU in {wall:.2} s wall ({:.2})", cpu / wall);
    let m = Run::load(&out).manifest;
    assert_eq!(m["threads"]["budget"], 1);
    assert_eq!(m["threads"]["decode"], 1);
}

#[test]
fn version_and_help() {
    let o = std::process::Command::new(bin()).arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
    let o = std::process::Command::new(bin()).args(["harvest", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--stride", "--out", "--threads", "--no-batch-embed", "--det-model", "--embed-model", "--config", "--min-face", "--det-threshold"] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

fn iou(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let v = |x: &serde_json::Value| -> Vec<f64> { x.as_array().unwrap().iter().map(|n| n.as_f64().unwrap()).collect() };
    let (a, b) = (v(a), v(b));
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

#[test]
fn scrfd_is_picked_from_the_model_file_and_finds_the_same_faces() {
    let tmp = tempfile::tempdir().unwrap();
    let scrfd_model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/scrfd_500m_bnkps.onnx");
    let scrfd = harvest_ok(&hamilton(), &tmp.path().join("scrfd"), &["--stride", "8", "--det-model", scrfd_model.to_str().unwrap()]);
    let yunet = harvest_ok(&hamilton(), &tmp.path().join("yunet"), &["--stride", "8"]);
    assert!(scrfd.manifest["models"]["detector"]["path"].as_str().unwrap().ends_with("scrfd_500m_bnkps.onnx"));
    // Every confident YuNet face of Miranda on stage (frames 82-210) has an SCRFD box on it.
    // (Below 0.8, YuNet has a spurious box on his hair at frame 152 that SCRFD rightly lacks.)
    let stage = |r: &Run, min: f64| -> Vec<serde_json::Value> {
        r.faces.iter().filter(|f| (82..=210).contains(&f["frame_idx"].as_u64().unwrap()) && f["det_score"].as_f64().unwrap() >= min).cloned().collect()
    };
    let (y, s) = (stage(&yunet, 0.8), stage(&scrfd, 0.0));
    assert!(!y.is_empty());
    for f in &y {
        let best = s.iter().filter(|g| g["frame_idx"] == f["frame_idx"]).map(|g| iou(&f["bbox"], &g["bbox"])).fold(0.0, f64::max);
        assert!(best >= 0.6, "frame {}: best IoU {best:.2} with SCRFD", f["frame_idx"]);
    }
    assert!(scrfd.embeddings.len() >= y.len(), "SCRFD faces are embedded too");
}

#[test]
fn detect_only_and_decode_only_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let det = harvest_ok(&hamilton(), &tmp.path().join("det"), &["--stride", "8", "--detect-only"]);
    assert!(!det.faces.is_empty());
    assert!(det.faces.iter().all(|f| f["embedding_row"].is_null()));
    assert_eq!(det.shape, vec![0, 0]);
    assert!(det.manifest["models"].get("embedder").is_none(), "the embedder is not loaded");
    assert_eq!(det.manifest["counts"]["embed_calls"], 0);

    let dec = harvest_ok(&hamilton(), &tmp.path().join("dec"), &["--stride", "4", "--decode-only"]);
    assert!(dec.faces.is_empty());
    assert_eq!(dec.manifest["models"], serde_json::json!({}));
    assert_eq!(dec.manifest["counts"]["frames_decoded"], 275);
    assert_eq!(dec.manifest["counts"]["frames_sampled"], 69);
    assert!(dec.manifest["onnxruntime"].is_null(), "ONNX Runtime is not loaded");
    // Proved: with no runtime library at all, decoding alone still works.
    let o = std::process::Command::new(bin())
        .args(["harvest", hamilton().to_str().unwrap(), "--stride", "4", "--decode-only", "--quiet", "--out"])
        .arg(tmp.path().join("no_ort"))
        .env("EPISODE_RUN_ORT_LIB", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(det.manifest["onnxruntime"]["version"].is_string());
}

#[test]
fn packing_frames_and_the_memory_bound_keep_results() {
    let tmp = tempfile::tempdir().unwrap();
    let base = harvest_ok(&hamilton(), &tmp.path().join("base"), &["--stride", "5"]);
    let packed = harvest_ok(&hamilton(), &tmp.path().join("packed"), &["--stride", "5", "--batch-size", "8"]);
    let tight = harvest_ok(&hamilton(), &tmp.path().join("tight"), &["--stride", "5", "--embed-mem-mb", "8"]);
    for (name, other) in [("--batch-size 8", &packed), ("--embed-mem-mb 8", &tight)] {
        // The first line that differs, whole, rather than two 200-line texts.
        if let Some((i, (a, b))) = base.faces_text.lines().zip(other.faces_text.lines()).enumerate().find(|(_, (a, b))| a != b) {
            panic!("{name}: faces.jsonl line {} differs from the default's:\n  default: {a}\n  {name}: {b}", i + 1);
        }
        assert_eq!(other.faces_text.lines().count(), base.faces_text.lines().count(), "{name}: faces");
        let worst = base.embeddings.iter().zip(&other.embeddings).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs())).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "max embedding difference {worst}");
    }
    let calls = |r: &Run| r.manifest["counts"]["embed_calls"].as_u64().unwrap();
    assert!(calls(&packed) < calls(&base), "packing whole frames makes fewer calls: {} vs {}", calls(&packed), calls(&base));
    assert_eq!(packed.manifest["embed_batching"]["batch_size"], 8);
    // 8 MiB holds one crop: every frame with several embedded faces is split, one call per face.
    assert_eq!(tight.manifest["embed_batching"]["max_crops_per_call"], 1);
    assert_eq!(calls(&tight), tight.embeddings.len() as u64);
    let mut per_frame: BTreeMap<u64, u64> = BTreeMap::new();
    for f in base.faces.iter().filter(|f| f["embedding_row"].is_u64()) {
        *per_frame.entry(f["frame_idx"].as_u64().unwrap()).or_default() += 1;
    }
    let multi = per_frame.values().filter(|&&n| n > 1).count() as u64;
    assert!(multi > 0);
    assert_eq!(tight.manifest["counts"]["frames_split_for_memory"].as_u64(), Some(multi));
    assert_eq!(base.manifest["counts"]["frames_split_for_memory"], 0);
}

/// Every output file of a run except the ones that hold timings.
fn output_bytes(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "manifest.json" | "progress.json" | "timings.jsonl" | "report.html"))
        .map(|(name, p)| (name, std::fs::read(p).unwrap()))
        .collect()
}

#[test]
fn the_parallel_pipeline_writes_the_same_bytes_as_one_thread() {
    let tmp = tempfile::tempdir().unwrap();
    // One call per frame, and calls packed across frames (whose detections may finish out of
    // order on two workers).
    for (n, extra) in [&[][..], &["--batch-size", "4"][..]].into_iter().enumerate() {
        let one = tmp.path().join(format!("one{n}"));
        let two = tmp.path().join(format!("two{n}"));
        harvest_ok(&hamilton(), &one, &[&["--stride", "2", "--threads", "1"][..], extra].concat());
        let run = harvest_ok(&hamilton(), &two, &[&["--stride", "2", "--threads", "2"][..], extra].concat());
        assert_eq!(run.manifest["threads"], serde_json::json!({"budget": 2, "decode": 1, "workers": 2, "worker_threads": 1}));
        let (a, b) = (output_bytes(&one), output_bytes(&two));
        assert!(a.contains_key("faces.jsonl") && a.contains_key("embeddings.npy") && a.keys().any(|k| k.starts_with("crops")));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (name, bytes) in &a {
            assert!(bytes == &b[name], "{name} differs between --threads 1 and --threads 2 ({extra:?})");
        }
    }
}

#[test]
fn floor_replays_exactly_the_runs_model_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let run = harvest_ok(&hamilton(), &out, &["--stride", "8", "--threads", "1"]);
    let o = std::process::Command::new(bin()).arg("floor").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let floor: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(floor["frames"], run.manifest["counts"]["frames_sampled"]);
    assert_eq!(floor["faces"], run.manifest["counts"]["faces_embedded"]);
    assert_eq!(floor["threads"], 1);
    let (det, emb, total) = (floor["detect_s"].as_f64().unwrap(), floor["embed_s"].as_f64().unwrap(), floor["floor_s"].as_f64().unwrap());
    assert!(det > 0.0 && emb > 0.0 && (det + emb - total).abs() < 0.002, "{floor}");
    assert_eq!(floor["embed_ms_per_face"].as_object().unwrap().len(), 5);
    let missing = std::process::Command::new(bin()).arg("floor").arg(tmp.path().join("nope")).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("manifest.json"));
}

#[test]
fn skip_nonref_samples_reference_frames_with_true_indices() {
    let tmp = tempfile::tempdir().unwrap();
    // Non-reference B-frames (no pyramid), so FFmpeg has frames to skip.
    let clip = tmp.path().join("bframes.mp4");
    ffmpeg(&[
        "-i",
        hamilton().to_str().unwrap(),
        "-an",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-x264-params",
        "bframes=2:b-pyramid=none:b-adapt=0",
        clip.to_str().unwrap(),
    ]);
    let all = harvest_ok(&clip, &tmp.path().join("all"), &["--stride", "4", "--decode-only"]);
    let skip = harvest_ok(&clip, &tmp.path().join("skip"), &["--stride", "4", "--decode-only", "--skip-nonref"]);
    let decoded = |r: &Run| r.manifest["counts"]["frames_decoded"].as_u64().unwrap();
    assert_eq!(decoded(&all), 275);
    assert!(decoded(&skip) < 250, "non-reference frames were skipped: {}", decoded(&skip));
    assert_eq!(skip.manifest["config"]["sampling"]["skip_nonref"], true);

    let faces = harvest_ok(&clip, &tmp.path().join("faces"), &["--stride", "4", "--skip-nonref"]);
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(tmp.path().join("faces/timings.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let idx: Vec<u64> = rows.iter().map(|r| r["frame_idx"].as_u64().unwrap()).collect();
    assert!(idx.windows(2).all(|w| w[0] / 4 < w[1] / 4), "one sampled frame per stride slot: {idx:?}");
    assert!(idx.len() >= 60, "almost every slot has a reference frame: {}", idx.len());
    // Indices are the frames' true positions: t = t0 + idx / fps.
    let fps = 30000.0 / 1001.0;
    let at = |f: &serde_json::Value| (f["frame_idx"].as_f64().unwrap(), f["t"].as_f64().unwrap());
    let (i0, t0) = at(&faces.faces[0]);
    for f in &faces.faces {
        let (i, t) = at(f);
        assert!((t - (t0 + (i - i0) / fps)).abs() < 0.002, "frame {i} at {t}");
    }
    assert!(faces.embeddings.len() > 50);
}
