//! Crash-safe resume: a harvest killed at any point (SIGKILL, Ctrl-C, or an abort during
//! finalisation) and run again ends with outputs byte-identical to a run never stopped.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

const OUTPUTS: [&str; 5] = ["faces.jsonl", "embeddings.npy", "tracks.jsonl", "shots.jsonl", "track_embeddings.npy"];

fn spawn(input: &Path, out: &Path, extra: &[&str], env: Option<(&str, &str)>) -> Child {
    let mut cmd = Command::new(bin());
    cmd.arg("harvest").arg(input).arg("--out").arg(out).arg("--quiet").args(extra);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn frames_decoded(out: &Path) -> u64 {
    std::fs::read(out.join("progress.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|p| p["frames_decoded"].as_u64())
        .unwrap_or(0)
}

/// Kills `child` with `signal` once progress.json reports at least `frames`.
fn kill_at(mut child: Child, out: &Path, frames: u64, signal: i32) -> std::process::Output {
    let start = Instant::now();
    while frames_decoded(out) < frames {
        assert!(child.try_wait().unwrap().is_none(), "the harvest ended before frame {frames}");
        assert!(start.elapsed() < Duration::from_secs(300), "no progress to frame {frames}");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait_with_output().unwrap()
}

/// Every output file and crop, by name.
fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = OUTPUTS.iter().map(|n| (n.to_string(), std::fs::read(out.join(n)).unwrap())).collect();
    let mut crops: Vec<PathBuf> = std::fs::read_dir(out.join("crops")).unwrap().map(|e| e.unwrap().path()).collect();
    crops.sort();
    files.extend(crops.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())));
    files
}

fn assert_same(a: &Path, b: &Path) {
    let (x, y) = (outputs(a), outputs(b));
    assert_eq!(x.iter().map(|f| &f.0).collect::<Vec<_>>(), y.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((name, bytes), (_, other)) in x.iter().zip(&y) {
        assert!(bytes == other, "{name} differs from the uninterrupted run");
    }
}

#[test]
fn sigkill_at_10_50_90_percent_and_in_finalisation_resumes_to_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("hamilton_x4.mp4");
    ffmpeg(&[
        "-stream_loop",
        "3",
        "-i",
        hamilton().to_str().unwrap(),
        "-an",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        clip.to_str().unwrap(),
    ]);
    let total = ffprobe_frame_count(&clip);
    let reference = tmp.path().join("reference");
    harvest_ok(&clip, &reference, &["--stride", "1"]);

    // Checkpoint after every frame, so every kill has something to resume from.
    let config = tmp.path().join("often.toml");
    std::fs::write(&config, "[progress]\ncheckpoint_s = 0.0\n").unwrap();
    let args = ["--stride", "1", "--config", config.to_str().unwrap()];
    let out = tmp.path().join("killed");
    let mut resumed_from = Vec::new();
    for percent in [10, 50, 90] {
        let o = kill_at(spawn(&clip, &out, &args, None), &out, total * percent / 100, libc::SIGKILL);
        assert_eq!(o.status.code(), None, "killed by a signal");
        let checkpoint: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("checkpoint.json")).unwrap()).unwrap();
        resumed_from.push(checkpoint["decode"]["next_frame"].as_u64().unwrap());
    }
    assert!(resumed_from.windows(2).all(|w| w[0] < w[1]), "each run went further: {resumed_from:?}");

    // An abort right after the end-of-stream checkpoint: a crash during finalisation.
    let o = spawn(&clip, &out, &args, Some(("EPISODE_RUN_FAULT", "finalise"))).wait_with_output().unwrap();
    assert_eq!(o.status.code(), None, "aborted");
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming"));
    assert!(!out.join("manifest.json").exists());

    let o = spawn(&clip, &out, &args, None).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("frames 0-{} are already harvested", total - 1)), "{stderr}");
    assert!(!out.join("checkpoint.json").exists(), "a finished run leaves no checkpoint");
    assert_same(&reference, &out);
    let run = Run::load(&out);
    assert_eq!(run.manifest["counts"]["frames_decoded"], total);
    let history = run.manifest["history"].as_array().unwrap();
    assert!(history.len() >= 4, "{history:?}");
    assert_eq!(history.last().unwrap()["frames_done"], total);
}

#[test]
fn ctrl_c_then_the_same_command_resumes_to_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    harvest_ok(&hamilton(), &reference, &["--stride", "2"]);
    let out = tmp.path().join("stopped");
    let o = kill_at(spawn(&hamilton(), &out, &["--stride", "2", "--threads", "1"], None), &out, 100, libc::SIGINT);
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("checkpoint.json").is_file());
    let report = || std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report().contains("class=\"banner warn\" id=\"status\">Interrupted after"), "an interrupted run's report says so at the top");

    // A different setting is refused, naming it; the stopped run is untouched.
    let o = harvest(&hamilton(), &out, &["--stride", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sampling.stride"));

    let o = harvest(&hamilton(), &out, &["--stride", "2", "--resume"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    assert_same(&reference, &out);
    assert_eq!(Run::load(&out).manifest["status"], "done");
    assert!(!report().contains("class=\"banner"), "the resumed run's report is a done run's");
}

#[test]
fn resume_with_nothing_to_resume_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("empty");
    let o = harvest(&hamilton(), &out, &["--resume"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1);
    assert!(stderr.contains("no unfinished run"), "{stderr}");
}

#[test]
fn sigkill_after_the_third_checkpoint_of_a_x4_input_resumes_to_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("hamilton_x4.mp4");
    let src = hamilton();
    ffmpeg(&["-stream_loop", "3", "-i", src.to_str().unwrap(), "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", clip.to_str().unwrap()]);
    let reference = tmp.path().join("reference");
    harvest_ok(&clip, &reference, &["--stride", "2"]);

    // A checkpoint every half second; kill right after the third one is on disk.
    let config = tmp.path().join("half_second.toml");
    std::fs::write(&config, "[progress]\ncheckpoint_s = 0.5\n").unwrap();
    let args = ["--stride", "2", "--threads", "1", "--config", config.to_str().unwrap(), "--log-format", "json"];
    let out = tmp.path().join("killed");
    let mut child = spawn(&clip, &out, &args, None);
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut checkpoints = 0;
    for line in std::io::BufRead::lines(stderr) {
        if line.unwrap().contains("\"event\":\"checkpoint\"") {
            checkpoints += 1;
            if checkpoints == 3 {
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                break;
            }
        }
    }
    assert_eq!(checkpoints, 3, "the run ended before its third checkpoint");
    child.wait().unwrap();
    // The checkpoint is small: what grows with the video is in the spill files beside it.
    let size = std::fs::metadata(out.join("checkpoint.json")).unwrap().len();
    assert!(size < 64 << 10, "checkpoint.json is {size} bytes");
    assert!(out.join(".closed-tracks.partial").is_file() && out.join(".best-faces.partial").is_dir());

    let o = spawn(&clip, &out, &args, None).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"event\":\"resume\""));
    assert_same(&reference, &out);
    let left: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.ends_with(".partial") || n == "checkpoint.json"), "a completed run keeps no checkpoint state: {left:?}");
}
