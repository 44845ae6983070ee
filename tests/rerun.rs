//! Re-running: a completed run is not redone (exit 0 in under a second, nothing written), a
//! touched but unchanged input is recognised by its BLAKE3, and a run of something else is
//! never overwritten without --force.

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use util::*;

/// Every file under `dir` with its bytes and mtime.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    files_under(dir).into_iter().map(|(name, p)| (name, (std::fs::read(&p).unwrap(), std::fs::metadata(&p).unwrap().modified().unwrap()))).collect()
}

#[test]
fn a_completed_run_is_not_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("clip.mp4");
    std::fs::copy(hamilton(), &input).unwrap();
    let out = tmp.path().join("out");
    let first = harvest_ok(&input, &out, &["--stride", "8"]);
    assert_eq!(
        first.manifest["input"]["blake3"].as_str().unwrap(),
        blake3::hash(&std::fs::read(&input).unwrap()).to_hex().as_str(),
        "the hash taken while decoding is the file's"
    );
    let before = snapshot(&out);

    let start = Instant::now();
    let o = harvest(&input, &out, &["--stride", "8", "--threads", "1"]);
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(stderr.lines().count(), 1);
    assert!(stderr.contains("already harvested"), "{stderr}");
    assert!(snapshot(&out) == before, "a file in the out dir changed");

    // Touched, same bytes: recognised by the hash.
    let f = std::fs::File::options().append(true).open(&input).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
    let o = harvest(&input, &out, &["--stride", "8"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already harvested"));
    assert!(snapshot(&out) == before);

    // --force re-runs: same outputs again.
    let again = harvest_ok(&input, &out, &["--stride", "8", "--force"]);
    assert_eq!(again.faces_text, first.faces_text);
}

#[test]
fn a_run_of_something_else_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    harvest_ok(&hamilton(), &out, &["--stride", "8"]);
    let before = snapshot(&out);
    let seeds = tmp.path().join("cast");
    std::fs::create_dir(&seeds).unwrap();
    std::fs::copy(media("obama.jpg"), seeds.join("obama.jpg")).unwrap();
    for (input, extra, names) in [
        (hamilton(), vec!["--stride", "4"], "sampling.stride"),
        (media("obama.jpg"), vec![], "input"),
        (hamilton(), vec!["--stride", "8", "--seeds", seeds.to_str().unwrap()], "seeds"),
    ] {
        let o = harvest(&input, &out, &extra);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(names) && stderr.contains("--force"), "{stderr}");
        assert!(snapshot(&out) == before, "refused, yet the out dir changed");
    }
    let replaced = harvest_ok(&hamilton(), &out, &["--stride", "4", "--force"]);
    assert_eq!(replaced.manifest["config"]["sampling"]["stride"], 4);
}

/// The settings that cannot change outputs do not make another run; those that can do.
#[test]
fn only_settings_that_change_outputs_make_another_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    harvest_ok(&hamilton(), &out, &["--stride", "8"]);
    let before = snapshot(&out);
    let progress = tmp.path().join("progress.toml");
    std::fs::write(&progress, "[progress]\ninterval_s = 1.5\ncheckpoint_s = 30.0\n").unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/models");
    let same_detector = tmp.path().join("same_detector.onnx");
    std::fs::copy(models.join("face_detection_yunet_2023mar_dynamic.onnx"), &same_detector).unwrap();
    for extra in [
        vec!["--no-batch-embed"],
        vec!["--threads", "1"],
        vec!["--batch-size", "3"],
        vec!["--embed-mem-mb", "64"],
        vec!["--config", progress.to_str().unwrap()],
        vec!["--det-model", same_detector.to_str().unwrap()],
    ] {
        let o = harvest(&hamilton(), &out, &[&["--stride", "8"][..], &extra].concat());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && stderr.contains("already harvested"), "{extra:?}: {stderr}");
        assert!(snapshot(&out) == before, "{extra:?} changed the run");
    }
    let other_detector = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/yunet_n_dynamic.onnx");
    for (extra, names) in [
        (vec!["--stride", "4"], "sampling.stride"),
        (vec!["--min-face", "50"], "quality.min_face"),
        (vec!["--det-threshold", "0.8"], "quality.det_threshold"),
        (vec!["--detect-only"], "run.mode"),
        (vec!["--det-model", other_detector.to_str().unwrap()], "detector model"),
    ] {
        let args: Vec<&str> = if extra[0] == "--stride" { extra.clone() } else { [&["--stride", "8"][..], &extra].concat() };
        let o = harvest(&hamilton(), &out, &args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(names) && stderr.contains("--force"), "{extra:?}: {stderr}");
        assert!(snapshot(&out) == before, "refused, yet {extra:?} changed the run");
    }
}
