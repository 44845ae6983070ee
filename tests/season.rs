//! `season plan|run|merge` run by hand against a real S3 server (`s3s-fs`), for what an engine
//! does not show: the index from each engine's variable, an input changed after the plan, a
//! task stopped by SIGTERM that lets go of its episode, two tasks racing on one index (one
//! completes, the other exits 75), retries of complete episodes that download nothing, and a
//! merge. The whole season on a real Slurm cluster is `tests/slurm.rs`.
#![cfg(feature = "s3")]

#[path = "util/s3server.rs"]
mod s3server;
#[path = "util/season.rs"]
mod season;
mod util;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use season::{command, episodes, id, stderr, Season};
use util::{files_under, json_lines};

#[test]
fn tasks_take_their_index_refuse_a_changed_input_let_go_on_sigterm_and_race_safely() {
    let s = Season::new("media", "s1");
    let all = episodes(s.tmp.path());
    let eps = [&all[1], &all[3]];
    for e in eps {
        s.put(&e.file, &format!("media/{}", e.name));
    }
    s.put(&util::hamilton(), "media/notes.txt");
    let o = s.plan();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 of 3 objects are not videos"), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(s.tmp.path().join("season.json")).unwrap()).unwrap();
    let ids: Vec<&str> = plan["episodes"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ep1_obama_bbt", "ep3_twd"], "episodes in key order, named after their files");
    assert_eq!(std::fs::read(s.object("s1/season.json")).unwrap(), std::fs::read(s.tmp.path().join("season.json")).unwrap());

    // An input replaced after the plan is refused (exit 2), the original is fine again.
    s.put(&all[3].file, "media/ep1_obama_bbt.mp4");
    let o = s.task(0, "SLURM_ARRAY_TASK_ID", "cache-a");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("changed since the plan") && stderr(&o).contains("season plan"), "{}", stderr(&o));
    s.put(&all[1].file, "media/ep1_obama_bbt.mp4");
    let o = s.task(0, "AWS_BATCH_JOB_ARRAY_INDEX", "cache-a");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("index from $AWS_BATCH_JOB_ARRAY_INDEX") && stderr(&o).contains("complete"), "{}", stderr(&o));

    // SIGTERM (an engine stopping a task): the checkpoint goes to S3 marked as let go, exit 130.
    let pointer = s.object("s1/ep3_twd/.partial/latest.json");
    let mut child =
        command(&s.task_args("cache-b", &[]), &[("JOB_COMPLETION_INDEX", "1".into())]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !pointer.is_file() {
        assert!(child.try_wait().unwrap().is_none(), "the task ended before its first checkpoint to S3");
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint reached S3");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let let_go: serde_json::Value = serde_json::from_slice(&std::fs::read(&pointer).unwrap()).unwrap();
    assert_eq!(let_go["released"], true, "{let_go}");

    // Two tasks on that index at once (fresh machines): both go on from S3 without waiting for
    // a lease, one completes, the other finds the pointer moved and stops.
    let racers: Vec<_> = ["cache-c", "cache-d"]
        .iter()
        .map(|c| command(&s.task_args(c, &["--index", "1"]), &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    let ended: Vec<Output> = racers.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let texts: Vec<String> = ended.iter().map(stderr).collect();
    let mut codes: Vec<i32> = ended.iter().map(|o| o.status.code().unwrap()).collect();
    codes.sort_unstable();
    assert_eq!(codes, [0, 75], "one racer completes, the other stops: {texts:?}");
    assert!(texts.iter().all(|t| t.contains("resuming episode 1 from the checkpoint in S3") && !t.contains("waiting")), "{texts:?}");
    assert!(files_under(&s.episode_dir("ep3_twd")).iter().all(|(rel, _)| !rel.starts_with(".partial")), "checkpoints removed once complete");
    s.assert_like_local(&all[3..]);

    // Retries of complete episodes: exit 0 in under 2 s, no video downloaded.
    for index in [0, 1] {
        let t = Instant::now();
        let o = s.task(index, "SLURM_ARRAY_TASK_ID", "cache-retry");
        let took = t.elapsed();
        assert!(o.status.success() && stderr(&o).contains("already complete"), "{}", stderr(&o));
        assert!(took < Duration::from_secs(2), "a retry of a complete episode took {took:?}");
    }
    assert!(!s.tmp.path().join("cache-retry").join("s3").exists(), "a retry downloads no video");

    let o = s.merge();
    assert!(o.status.success(), "{}", stderr(&o));
    let season = s.object("s1/season");
    assert_eq!(json_lines(&season.join("episodes.jsonl")).iter().map(|e| e["id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), ids);
    let people = json_lines(&season.join("people.jsonl"));
    let in_both = people.iter().filter(|p| p["episodes"] == 2).count();
    assert_eq!(in_both, 0, "nobody of the Obama/Big Bang Theory episode is in The Walking Dead: {people:?}");
    let episode_crops: Vec<Vec<u8>> =
        ids.iter().flat_map(|id| std::fs::read_dir(s.object(&format!("s1/{id}/crops"))).unwrap()).map(|f| std::fs::read(f.unwrap().path()).unwrap()).collect();
    for p in &people {
        let crop = p["crop"].as_str().unwrap_or_else(|| panic!("every episode person has a crop: {p}"));
        let bytes = std::fs::read(season.join(crop)).unwrap_or_else(|e| panic!("{crop} is in the season folder: {e}"));
        assert!(episode_crops.contains(&bytes), "{crop} is an episode's crop, byte for byte");
    }
    assert!(eps.iter().all(|e| std::fs::read_to_string(season.join("report.html")).unwrap().contains(id(e))));
}
