//! Every fatal case: exit 2, one stderr line naming the problem and the path, no panic,
//! `progress.json` says failed where the out dir is writable, and no complete-looking outputs.

mod util;

use std::path::{Path, PathBuf};

use util::*;

fn installed_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/models").join(name)
}

const SFACE: &str = "face_recognition_sface_2021dec_fp32.onnx";
const YUNET: &str = "face_detection_yunet_2023mar.onnx";

/// Runs a harvest expected to fail and checks the common contract; returns stderr.
fn fails(input: &Path, out: &Path, extra: &[&str], expect: &[&str]) -> String {
    let o = harvest(input, out, extra);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "stderr lacks {e:?}: {stderr}");
    }
    if out.is_dir() {
        let names: Vec<String> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n == "faces.jsonl" || n == "embeddings.npy"), "outputs left: {names:?}");
        let progress: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("progress.json")).unwrap()).unwrap();
        assert_eq!(progress["status"], "failed");
        assert!(!progress["error"].as_str().unwrap().is_empty());
    }
    stderr
}

#[test]
fn missing_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("nope.mp4");
    fails(&input, &tmp.path().join("out"), &[], &["input not found", "nope.mp4"]);
}

#[test]
fn directory_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a_dir");
    std::fs::create_dir(&dir).unwrap();
    fails(&dir, &tmp.path().join("out"), &[], &["is a directory", "a_dir"]);
}

#[test]
fn empty_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty.mp4");
    std::fs::write(&input, b"").unwrap();
    fails(&input, &tmp.path().join("out"), &[], &["empty file", "empty.mp4"]);
}

#[test]
fn garbage_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("garbage.mp4");
    // Deterministic noise (xorshift), so a failure reproduces.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&input, bytes).unwrap();
    fails(&input, &tmp.path().join("out"), &[], &["garbage.mp4"]);
}

#[test]
fn audio_only_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("tone.m4a");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", input.to_str().unwrap()]);
    fails(&input, &tmp.path().join("out"), &[], &["no video stream", "tone.m4a"]);
}

#[test]
fn missing_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("absent.onnx");
    fails(&hamilton(), &tmp.path().join("out"), &["--det-model", model.to_str().unwrap()], &["model not found", "absent.onnx"]);
}

#[test]
fn invalid_model_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("broken.onnx");
    std::fs::write(&model, b"this is not a protobuf").unwrap();
    fails(&hamilton(), &tmp.path().join("out"), &["--embed-model", model.to_str().unwrap()], &["cannot load model", "broken.onnx"]);
}

#[test]
fn truncated_model_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(installed_model(SFACE)).unwrap();
    let model = tmp.path().join("half.onnx");
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    fails(&hamilton(), &tmp.path().join("out"), &["--embed-model", model.to_str().unwrap()], &["cannot load model", "half.onnx"]);
}

#[test]
fn embedder_given_as_detector_names_the_expected_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let sface = installed_model(SFACE);
    fails(&hamilton(), &tmp.path().join("out"), &["--det-model", sface.to_str().unwrap()], &["is not a YuNet face detector", "`input` [1, 3, ?, ?]", SFACE]);
}

#[test]
fn detector_given_as_embedder_names_the_expected_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let yunet = installed_model(YUNET);
    fails(
        &hamilton(),
        &tmp.path().join("out"),
        &["--embed-model", yunet.to_str().unwrap()],
        &["is not a SFace face embedder", "`data` [?, 3, 112, 112]", YUNET],
    );
}

#[test]
fn unprepared_sface_is_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = installed_model("face_recognition_sface_2021dec_int8bq.onnx");
    fails(&hamilton(), &tmp.path().join("out"), &["--embed-model", raw.to_str().unwrap()], &["face_recognition_sface_2021dec_int8bq.onnx"]);
}

#[test]
fn out_dir_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("taken");
    std::fs::write(&out, b"user data").unwrap();
    fails(&hamilton(), &out, &[], &["is not a directory", "taken"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"user data", "the file is untouched");
}

#[test]
fn out_dir_not_writable() {
    // Root ignores permission bits, so use a place nobody can create files in.
    let out = Path::new("/proc/episode-run-test-out");
    fails(&hamilton(), out, &[], &["not writable", "/proc/episode-run-test-out"]);
}

#[test]
fn bad_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[sampling]\nstrid = 2\n").unwrap();
    fails(&hamilton(), &tmp.path().join("out"), &["--config", cfg.to_str().unwrap()], &["bad.toml", "strid"]);
}

#[test]
fn unbounded_resources_are_refused_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fails(&hamilton(), &out, &["--config", "/dev/zero"], &["/dev/zero", "not a regular file"]);
    fails(&hamilton(), &out, &["--threads", "1000"], &["--threads 1000", "at most"]);
    let huge = tmp.path().join("huge.toml");
    std::fs::write(&huge, "[detect]\ninput_size = 32768\n").unwrap();
    fails(&hamilton(), &out, &["--config", huge.to_str().unwrap()], &["detect.input_size", "4096"]);
    assert!(!out.exists(), "refused before the out dir was made");
}
