//! Never destroy, mix or leak: a harvest writes only into folders that hold a run of ours, one
//! process works on a run folder at a time, a run resumes or counts as "already harvested" only
//! from a run of the same identity, and paths built from user-given names stay where they belong.
//! (The S3 side of this, hostile keys and wrong ranged GETs, is in tests/s3.rs.)

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir).into_iter().map(|(rel, p)| (rel, std::fs::read(p).unwrap())).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 2 with one line holding every one of `words`.
fn refused(o: &Output, words: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for w in words {
        assert!(err.contains(w), "{err:?} should say {w:?}");
    }
}

fn spawn(input: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(bin());
    cmd.arg("harvest").arg(input).arg("--out").arg(out).arg("--quiet").args(extra).envs(env.iter().copied());
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until the run in `out` has a checkpoint past frame `frames`.
fn wait_for_checkpoint(child: &mut Child, out: &Path, frames: u64) {
    let start = Instant::now();
    loop {
        let c: Option<serde_json::Value> = std::fs::read(out.join("checkpoint.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if c.is_some_and(|c| c["decode"]["next_frame"].as_u64().unwrap_or(0) >= frames) {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the harvest ended before its checkpoint at frame {frames}");
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint at frame {frames}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

/// A config that checkpoints after every frame, so a kill always has a recent one to find.
fn every_frame(dir: &Path) -> PathBuf {
    let p = dir.join("every_frame.toml");
    std::fs::write(&p, "[progress]\ncheckpoint_s = 0.0\n").unwrap();
    p
}

#[test]
fn a_folder_that_is_not_ours_is_never_written_into() {
    let tmp = tempfile::tempdir().unwrap();
    // A user's folder whose names collide with ours.
    let user = tmp.path().join("thesis");
    std::fs::create_dir_all(user.join("crops")).unwrap();
    std::fs::write(user.join("crops/thesis.txt"), b"years of work").unwrap();
    std::fs::write(user.join("shots.jsonl"), b"my own shots\n").unwrap();
    let before = snapshot(&user);
    for extra in [&[][..], &["--force"], &["--decode-only"]] {
        let o = harvest(&hamilton(), &user, extra);
        refused(&o, &["thesis", "holds no episode-run run", "--out"]);
        assert!(snapshot(&user) == before, "the folder changed");
    }
    // A home-like folder: refused before anything, so nothing there can be uploaded either.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), b"-----BEGIN PRIVATE KEY-----").unwrap();
    refused(&harvest(&hamilton(), &home, &["--upload", "s3://bucket/x/"]), &["home", "holds no episode-run run"]);
    assert_eq!(files_under(&home).len(), 1);

    // The system's own folders (CI runs as root, so nothing but this check protects them).
    for system in ["/", "/etc"] {
        let names = |d: &str| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect::<std::collections::BTreeSet<_>>();
        let listed = names(system);
        refused(&harvest(&hamilton(), Path::new(system), &[]), &["holds no episode-run run"]);
        assert_eq!(names(system), listed, "{system} changed");
    }

    // identify and upload refuse folders that are not runs too.
    let o = Command::new(bin()).args(["identify"]).arg(&user).arg("--seeds").arg(media("obama.jpg").parent().unwrap()).output().unwrap();
    refused(&o, &["thesis", "not an episode-run run folder"]);
    let o = Command::new(bin()).arg("upload").arg(&user).args(["s3://bucket/x/", "--s3-endpoint", "http://127.0.0.1:9"]).output().unwrap();
    refused(&o, &["thesis", "not an episode-run run folder"]);
    assert!(snapshot(&user) == before);

    // An empty folder is adopted.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    harvest_ok(&hamilton(), &empty, &["--stride", "8"]);
}

#[test]
fn one_process_at_a_time_and_no_stale_lock_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = every_frame(tmp.path());
    let slow = ["--stride", "1", "--threads", "1", "--config", cfg.to_str().unwrap()];
    let mut first = spawn(&hamilton(), &out, &slow, &[]);
    wait_for_checkpoint(&mut first, &out, 10);
    let holder = format!("in use by process {}", first.id());
    refused(&harvest(&hamilton(), &out, &slow), &[&holder]);
    refused(&harvest(&hamilton(), &out, &["--stride", "4", "--force"]), &[&holder]);
    let o = Command::new(bin()).arg("identify").arg(&out).arg("--seeds").arg(tmp.path().join("none")).output().unwrap();
    refused(&o, &[&holder]);
    let o = Command::new(bin()).arg("upload").arg(&out).args(["s3://bucket/x/", "--s3-endpoint", "http://127.0.0.1:9"]).output().unwrap();
    refused(&o, &[&holder]);
    assert!(!out.join("manifest.json").exists(), "nobody published over the running harvest");

    // SIGKILL leaves no lock behind: the same command resumes and completes.
    kill(first);
    let resumed = harvest(&hamilton(), &out, &slow);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming"), "{}", stderr(&resumed));
    let fresh = harvest_ok(&hamilton(), &tmp.path().join("fresh"), &["--stride", "1"]);
    assert_eq!(Run::load(&out).faces_text, fresh.faces_text);
}

#[test]
fn a_run_never_resumes_from_another_runs_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = every_frame(tmp.path());
    let cfg_flag = ["--config", cfg.to_str().unwrap()];
    let stride4 = harvest_ok(&hamilton(), &out, &["--stride", "4"]);

    // A --force run of other settings, killed after a checkpoint: the old run's results are
    // gone at once (nothing says done over a mixture), and the first command is refused.
    let mut other = spawn(&hamilton(), &out, &[&["--stride", "1", "--threads", "1", "--force"][..], &cfg_flag].concat(), &[]);
    wait_for_checkpoint(&mut other, &out, 30);
    kill(other);
    assert!(!out.join("manifest.json").exists() && !out.join("faces.jsonl").exists(), "the replaced run's results were removed first");
    refused(&harvest(&hamilton(), &out, &["--stride", "4"]), &["sampling.stride (1 there, 4 now)", "--force"]);
    let o = Command::new(bin()).arg("upload").arg(&out).args(["s3://bucket/x/", "--s3-endpoint", "http://127.0.0.1:9"]).output().unwrap();
    refused(&o, &["not a completed run"]);
    // Its own command resumes it; --force of the first gives exactly the first run again.
    let resumed = harvest(&hamilton(), &out, &[&["--stride", "1", "--threads", "1"][..], &cfg_flag].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(Run::load(&out).manifest["config"]["sampling"]["stride"], 1);
    assert_eq!(harvest_ok(&hamilton(), &out, &["--stride", "4", "--force"]).faces_text, stride4.faces_text);

    // The same with another input: its checkpoint is never continued with this one's frames.
    let other_input = tmp.path().join("b.mp4");
    ffmpeg(&["-i", hamilton().to_str().unwrap(), "-vf", "hflip", "-c:v", "libx264", "-preset", "veryfast", other_input.to_str().unwrap()]);
    let mut b = spawn(&other_input, &out, &[&["--stride", "1", "--threads", "1", "--force"][..], &cfg_flag].concat(), &[]);
    wait_for_checkpoint(&mut b, &out, 30);
    kill(b);
    refused(&harvest(&hamilton(), &out, &["--stride", "1"]), &["input", "b.mp4 there", "--force"]);

    // A --force run killed during finalisation: no manifest claims its half-written results.
    let o = Command::new(bin())
        .arg("harvest")
        .arg(hamilton())
        .arg("--out")
        .arg(&out)
        .args(["--stride", "2", "--force", "--quiet"])
        .env("EPISODE_RUN_FAULT", "finalise")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(!out.join("manifest.json").exists());
    refused(&harvest(&hamilton(), &out, &["--stride", "4"]), &["sampling.stride (2 there, 4 now)"]);
    assert_eq!(harvest_ok(&hamilton(), &out, &["--stride", "4", "--force"]).faces_text, stride4.faces_text);
}

#[test]
fn seeds_are_known_by_their_photos_not_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = tmp.path().join("cast");
    std::fs::create_dir(&seeds).unwrap();
    std::fs::copy(media("obama.jpg"), seeds.join("Barack Obama.jpg")).unwrap();
    let out = tmp.path().join("out");
    let with = |dir: &str| ["--stride", "8", "--seeds", dir].map(str::to_string);
    let run = |args: &[String], cwd: &Path| {
        Command::new(bin()).arg("harvest").arg(hamilton()).arg("--out").arg(&out).arg("--quiet").args(args).current_dir(cwd).output().unwrap()
    };
    let o = run(&with(seeds.to_str().unwrap()), tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&out);
    // The same photos by another spelling of the path: already harvested, nothing written.
    for (spelling, cwd) in [(format!("{}/", seeds.display()), tmp.path()), ("cast".to_string(), tmp.path()), ("../cast/".to_string(), &out)] {
        let o = run(&with(&spelling), cwd);
        assert!(o.status.success() && stderr(&o).contains("already harvested"), "{spelling}: {}", stderr(&o));
        assert!(snapshot(&out) == before, "{spelling}: the run changed");
    }
    // Another photo in the folder: different seeds, refused without --force.
    std::fs::copy(media("alex-lacamoire.png"), seeds.join("Alex Lacamoire.png")).unwrap();
    refused(&run(&with("cast"), tmp.path()), &["seeds", "--force"]);
    assert!(snapshot(&out) == before);
}

#[test]
fn a_default_out_dir_never_leaves_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("...mp4");
    std::fs::copy(hamilton(), &input).unwrap();
    let cwd = tmp.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let o = Command::new(bin()).arg("harvest").arg(&input).current_dir(&cwd).output().unwrap();
    refused(&o, &["\"..\"", "--out"]);
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "nothing written in the current directory");
}

#[test]
fn devices_and_fifos_are_not_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.mp4");
    assert_eq!(unsafe { libc::mkfifo(std::ffi::CString::new(fifo.to_str().unwrap()).unwrap().as_ptr(), 0o600) }, 0);
    for input in [PathBuf::from("/dev/zero"), PathBuf::from("/dev/urandom"), fifo] {
        let o = harvest(&input, &tmp.path().join("out"), &[]);
        refused(&o, &["not a regular file", input.to_str().unwrap()]);
    }
}
