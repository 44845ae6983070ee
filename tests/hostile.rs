//! Hostile inputs and faults that are not plain bad usage: damaged, unusual or huge media, a full
//! disk, Ctrl-C, and a bounded fuzz of the decoder path. Each asserts the exit code (0 done,
//! 1 done with losses, 2 fatal, 130 interrupted), one clear stderr line, and that what was
//! harvested is kept.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// The Hamilton clip remuxed with its index first (`+faststart`), as streaming files are.
fn faststart(dir: &Path) -> PathBuf {
    let out = dir.join("faststart.mp4");
    ffmpeg(&["-i", hamilton().to_str().unwrap(), "-c", "copy", "-movflags", "+faststart", out.to_str().unwrap()]);
    out
}

/// Runs a harvest; returns (exit code, stderr lines).
fn run(input: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, Vec<String>) {
    let o = harvest(input, out, extra);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (o.status.code(), stderr.lines().map(str::to_string).collect())
}

/// Rows of faces.jsonl and embeddings.npy agree: every embedding_row exists, none is extra.
fn consistent(r: &Run) {
    let rows: Vec<u64> = r.faces.iter().filter_map(|f| f["embedding_row"].as_u64()).collect();
    assert_eq!(rows, (0..r.embeddings.len() as u64).collect::<Vec<_>>());
}

#[test]
fn mp4_truncated_at_half_harvests_what_decoded_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(faststart(tmp.path())).unwrap();
    let input = tmp.path().join("half.mp4");
    std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();
    let out = tmp.path().join("out");
    let (code, lines) = run(&input, &out, &["--stride", "4"]);
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("half.mp4") && lines[0].contains("ended early"), "{lines:?}");
    let r = Run::load(&out);
    consistent(&r);
    let decoded = r.manifest["counts"]["frames_decoded"].as_u64().unwrap();
    assert!((100..275).contains(&decoded), "{decoded} frames");
    assert!(!r.faces.is_empty());
    assert_eq!(r.manifest["status"], "done_with_errors");
    assert_eq!(r.progress["status"], "done_with_errors");
    assert!(r.manifest["decode_issues"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().contains("lists 275 frames")));
}

#[test]
fn mp4_truncated_before_its_index_is_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(hamilton()).unwrap();
    let input = tmp.path().join("noindex.mp4");
    std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();
    let (code, lines) = run(&input, &tmp.path().join("out"), &[]);
    assert_eq!(code, Some(2));
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("cannot open") && lines[0].contains("noindex.mp4"), "{lines:?}");
}

#[test]
fn corrupted_bytes_mid_stream_lose_only_those_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(hamilton()).unwrap();
    let mid = bytes.len() / 2;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in &mut bytes[mid..mid + 20_000] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let input = tmp.path().join("corrupt.mp4");
    std::fs::write(&input, &bytes).unwrap();
    let out = tmp.path().join("out");
    let (code, lines) = run(&input, &out, &["--stride", "4"]);
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("corrupt.mp4") && lines[0].contains("undecodable"), "{lines:?}");
    let r = Run::load(&out);
    consistent(&r);
    let decoded = r.manifest["counts"]["frames_decoded"].as_u64().unwrap();
    assert!((200..275).contains(&decoded), "{decoded} frames");
    assert!(r.manifest["counts"]["frames_failed"].as_u64().unwrap() > 0);
}

#[test]
fn ten_bit_and_444_video_is_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let base = harvest_ok(&hamilton(), &tmp.path().join("base"), &["--stride", "10"]);
    for fmt in ["yuv420p10le", "yuv444p"] {
        let input = tmp.path().join(format!("{fmt}.mkv"));
        ffmpeg(&["-i", hamilton().to_str().unwrap(), "-an", "-pix_fmt", fmt, "-c:v", "ffv1", input.to_str().unwrap()]);
        let out = tmp.path().join(fmt);
        let (code, lines) = run(&input, &out, &["--stride", "10"]);
        assert_eq!(code, Some(0), "{fmt}: {lines:?}");
        let r = Run::load(&out);
        assert_eq!(r.manifest["input"]["video"]["pixel_format"], fmt);
        let n = r.embeddings.len() as i64;
        let want = base.embeddings.len() as i64;
        assert!((n - want).abs() <= 2, "{fmt}: {n} embedded faces, the 8-bit source gives {want}");
    }
}

#[test]
fn an_8k_still_image_is_harvested() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("obama_8k.png");
    ffmpeg(&["-i", media("obama.jpg").to_str().unwrap(), "-vf", "scale=7680:4320", input.to_str().unwrap()]);
    let out = tmp.path().join("out");
    let (code, lines) = run(&input, &out, &[]);
    assert_eq!(code, Some(0), "{lines:?}");
    let r = Run::load(&out);
    assert_eq!(r.manifest["input"]["video"]["width"], 7680);
    assert!(!r.embeddings.is_empty(), "the face is found at 8K");
}

#[test]
fn a_1x1_video_has_frames_and_no_faces() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("dot.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:size=16x16:rate=10:duration=1,scale=1:1", "-c:v", "ffv1", input.to_str().unwrap()]);
    let out = tmp.path().join("out");
    let (code, lines) = run(&input, &out, &["--stride", "1"]);
    assert_eq!(code, Some(0), "{lines:?}");
    let r = Run::load(&out);
    assert_eq!(r.manifest["counts"]["frames_decoded"], 10);
    assert!(r.faces.is_empty() && r.shape == vec![0, 128]);
}

#[test]
fn a_video_with_no_frame_data_is_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(faststart(tmp.path())).unwrap();
    // Keep the index (which lists 275 frames) and the media box header, drop every sample.
    let mdat = bytes.windows(4).position(|w| w == b"mdat").expect("mdat box");
    let input = tmp.path().join("header_only.mp4");
    std::fs::write(&input, &bytes[..mdat + 4]).unwrap();
    let out = tmp.path().join("out");
    let (code, lines) = run(&input, &out, &[]);
    assert_eq!(code, Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("no frame could be decoded") && lines[0].contains("header_only.mp4"), "{lines:?}");
}

#[test]
fn a_failed_run_leaves_an_earlier_runs_outputs_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    harvest_ok(&media("obama.jpg"), &out, &[]);
    let before = (std::fs::read(out.join("faces.jsonl")).unwrap(), std::fs::read(out.join("embeddings.npy")).unwrap());
    let garbage = tmp.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![0x42u8; 4096]).unwrap();
    let (code, lines) = run(&garbage, &out, &["--force"]);
    assert_eq!((code, lines.len()), (Some(2), 1), "{lines:?}");
    assert!(lines[0].contains("garbage.mp4"), "the input's own error, not the out-dir check: {lines:?}");
    let after = (std::fs::read(out.join("faces.jsonl")).unwrap(), std::fs::read(out.join("embeddings.npy")).unwrap());
    assert!(before == after, "the earlier run's outputs were changed");
}

#[test]
fn ctrl_c_publishes_what_was_harvested_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let child = Command::new(bin())
        .args(["harvest", hamilton().to_str().unwrap(), "--stride", "1", "--threads", "1", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is well into the clip.
    let start = Instant::now();
    loop {
        let p: Option<serde_json::Value> = std::fs::read(out.join("progress.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if p.is_some_and(|p| p["frames_decoded"].as_u64().unwrap_or(0) >= 40) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "harvest made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let r = Run::load(&out);
    consistent(&r);
    let decoded = r.manifest["counts"]["frames_decoded"].as_u64().unwrap();
    assert!((40..275).contains(&decoded), "{decoded} frames");
    assert_eq!(r.manifest["status"], "interrupted");
    assert_eq!(r.progress["status"], "interrupted");
    assert!(r.faces.iter().all(|f| f["frame_idx"].as_u64().unwrap() < decoded));
}

#[test]
fn a_full_disk_mid_run_is_one_fatal_line() {
    // A 256 KiB tmpfs holds the first outputs but not a stride-1 harvest of the clip.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test mounts a tmpfs and must run as root (CI does)");
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let out = mnt.join("out");
    let (code, lines) = run(&hamilton(), &out, &["--stride", "1"]);
    let progress: Option<serde_json::Value> = std::fs::read(out.join("progress.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let _ = Command::new("umount").arg(&mnt).status();
    let progress = progress.expect("progress.json is readable on the full disk");
    assert_eq!(progress["status"], "failed", "a fatal error never leaves progress.json running: {progress}");
    assert!(progress["error"].as_str().unwrap().contains("No space left"), "{progress}");
    assert_eq!(code, Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("No space left") && lines[0].contains("out"), "{lines:?}");
}

/// Random truncations and corruptions of the clip, and random bytes, through the decoder path
/// for a bounded time: every run ends (no hang) with 0, 1 or 2 and never panics.
#[test]
fn fuzz_the_decoder_path_with_damaged_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = [std::fs::read(hamilton()).unwrap(), std::fs::read(faststart(tmp.path())).unwrap()];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    let start = Instant::now();
    let mut cases = 0;
    while start.elapsed() < Duration::from_secs(20) || cases < 10 {
        let src = &sources[next(2)];
        let bytes: Vec<u8> = match next(3) {
            0 => src[..next(src.len())].to_vec(),
            1 => {
                let mut b = src.clone();
                for _ in 0..1 + next(64) {
                    let at = next(b.len());
                    b[at] = next(256) as u8;
                }
                b
            }
            _ => (0..next(200_000)).map(|_| next(256) as u8).collect(),
        };
        let input = tmp.path().join(format!("case{cases}.mp4"));
        std::fs::write(&input, &bytes).unwrap();
        let mut child = Command::new(bin())
            .args(["harvest", input.to_str().unwrap(), "--decode-only", "--quiet", "--out"])
            .arg(tmp.path().join("out"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_or_kill(&mut child, Duration::from_secs(30)).unwrap_or_else(|| panic!("case {cases} hangs (kept at {})", input.display()));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(matches!(status.code(), Some(0..=2)), "case {cases}: {status:?} {stderr}");
        assert!(!stderr.contains("panicked"), "case {cases}: {stderr}");
        if status.code() != Some(0) {
            assert_eq!(stderr.lines().count(), 1, "case {cases}: {stderr}");
        }
        std::fs::remove_file(&input).unwrap();
        cases += 1;
    }
}
