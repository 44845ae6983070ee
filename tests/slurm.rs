//! A season on a real Slurm cluster (Debian's Slurm 22.05, installed by `make setup` with munge):
//! a one-node cluster started here without systemd (munged if none runs, `slurmctld -c` with
//! clean state, `slurmd`, on free ports, with a temp `slurm.conf`), stopped by PID at the end.
//! The season is submitted with `deploy/slurm/submit` as a user would: a job array of the four
//! test episodes, two tasks at a time with `--threads 1`, against a real `s3s-fs`, and the merge
//! queued behind it with `--dependency=afterok`.
//!
//! Faults: task 0 is SIGKILLed after its first checkpoint reached S3, its node-local cache
//! deleted, and the task requeued: it goes on from S3. Episode 2 starts out as a corrupt file:
//! its task fails with exit 2 and is not retried, so the queued merge never starts, and a merge
//! run by hand exits 4 naming index 2; once the input is fixed, planned again and index 2 run
//! again, the merge completes. Every episode's outputs are then byte-identical to a local
//! harvest of the same file, and the season people join Obama and the recurring cast.
#![cfg(feature = "s3")]

#[path = "util/s3server.rs"]
mod s3server;
#[path = "util/season.rs"]
mod season;
mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use s3server::{env_pairs, free_port, SECRET};
use season::{episodes, Season};

/// A one-node Slurm cluster, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<Child>,
    /// The munged this test started (none when one was already running).
    munged: Option<i32>,
}

fn munge_works() -> bool {
    let Ok(cred) = Command::new("munge").arg("-n").stderr(Stdio::null()).output() else { return false };
    let mut check = Command::new("unmunge").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), &cred.stdout).unwrap();
    cred.status.success() && check.wait().unwrap().success()
}

impl Cluster {
    fn start() -> Self {
        assert!(
            Path::new("/usr/sbin/slurmctld").is_file() && Path::new("/usr/sbin/munged").is_file(),
            "Slurm is not installed: `make setup` installs slurm-wlm and munge"
        );
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "slurmd runs jobs as their users, so this test needs root (CI has it)");
        let munged = match munge_works() {
            true => None,
            false => {
                let run = Path::new("/run/munge");
                std::fs::create_dir_all(run).unwrap();
                assert!(Command::new("chown").args(["munge:munge", "/run/munge"]).status().unwrap().success());
                assert!(Command::new("chmod").args(["755", "/run/munge"]).status().unwrap().success());
                assert!(Command::new("runuser").args(["-u", "munge", "--", "/usr/sbin/munged"]).status().unwrap().success(), "munged did not start");
                let pid = std::fs::read_to_string("/run/munge/munged.pid").unwrap().trim().parse().unwrap();
                assert!(munge_works(), "munge does not work after starting munged");
                Some(pid)
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["state", "spool"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
        let cpus = std::thread::available_parallelism().unwrap().get();
        let conf = d.join("slurm.conf");
        let text = format!(
            "ClusterName=episoderun\nSlurmctldHost=localhost(127.0.0.1)\nSlurmUser=root\nSlurmdUser=root\nSlurmctldPort={}\nSlurmdPort={}\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\nAuthType=auth/munge\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nSchedulerType=sched/backfill\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\nMpiDefault=none\nReturnToService=2\n\
             MinJobAge=3600\nNodeName=episoderun1 NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN\n\
             PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            d = d.display()
        );
        std::fs::write(&conf, text).unwrap();
        let daemon = |args: &[&str]| Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let c = conf.to_string_lossy().into_owned();
        let daemons = vec![daemon(&["/usr/sbin/slurmctld", "-c", "-D", "-f", &c]), daemon(&["/usr/sbin/slurmd", "-D", "-N", "episoderun1", "-f", &c])];
        let cluster = Cluster { dir, conf, daemons, munged };
        let started = Instant::now();
        while cluster.output(&["sinfo", "-h", "-o", "%t"]).trim() != "idle" {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the node did not come up: {}",
                std::fs::read_to_string(cluster.dir.path().join("slurmctld.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    /// A Slurm client command for this cluster.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..]).env("SLURM_CONF", &self.conf);
        cmd
    }

    fn output(&self, args: &[&str]) -> String {
        let o = self.cmd(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `field` of `scontrol show job JOB` (`JobState`, `Reason`, `ExitCode`, `Restarts`, …).
    fn job(&self, job: &str, field: &str) -> String {
        let text = self.output(&["scontrol", "show", "job", "-o", job]);
        let prefix = format!("{field}=");
        text.split_whitespace().find_map(|w| w.strip_prefix(&prefix)).unwrap_or_default().to_string()
    }

    /// Waits until `job` is in one of `states`.
    fn wait_for(&self, job: &str, states: &[&str], limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let state = self.job(job, "JobState");
            if states.contains(&state.as_str()) {
                return state;
            }
            assert!(started.elapsed() < limit, "job {job} is {state}, not {states:?}, after {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd(&["scancel", "--full", "--user=root"]).status();
        for d in &mut self.daemons {
            // SAFETY: a plain kill(2) of our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            if util::wait_or_kill(d, Duration::from_secs(10)).is_none() {
                eprintln!("a Slurm daemon did not stop on SIGTERM and was killed");
            }
        }
        if let Some(pid) = self.munged {
            // SAFETY: a plain kill(2) of the munged this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// The process of array task `task` of job `array` (the season task, exec'd by the script).
fn task_process(array: &str, task: usize) -> Option<i32> {
    let want = [format!("SLURM_ARRAY_JOB_ID={array}"), format!("SLURM_ARRAY_TASK_ID={task}")];
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        let ours = String::from_utf8_lossy(&cmdline).contains("season\0run") && want.iter().all(|w| vars.contains(&w.as_bytes()));
        ours.then_some(pid)
    })
}

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/slurm").join(name)
}

#[test]
fn a_season_runs_on_slurm_survives_a_killed_task_and_a_bad_input_and_merges() {
    let cluster = Cluster::start();
    let s = Season::new("media", "s1");
    let eps = episodes(s.tmp.path());
    let corrupt = s.tmp.path().join("corrupt.mp4");
    std::fs::write(&corrupt, b"\x00\x00\x00\x18ftypmp42 and then nothing a decoder could read ".repeat(400)).unwrap();
    for (i, e) in eps.iter().enumerate() {
        s.put(if i == 2 { &corrupt } else { &e.file }, &format!("media/{}", e.name));
    }
    assert!(s.plan().status.success());

    let logs = s.tmp.path().join("logs");
    let scratch = s.tmp.path().join("scratch");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    // What a user exports before submitting: the plan, the binary, how to reach S3.
    let env = |cmd: &mut Command| {
        cmd.current_dir(&logs)
            .env("PLAN", &s.plan)
            .env("EPISODE_RUN", util::bin())
            .env("EPISODE_RUN_FLAGS", s.server.flags().join(" "))
            .env("TMPDIR", &scratch)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        for (k, v) in env_pairs(SECRET) {
            cmd.env(k, v);
        }
    };
    let mut submit = cluster.cmd(&[deploy("submit").to_str().unwrap(), s.tmp.path().join("season.json").to_str().unwrap(), "2"]);
    env(&mut submit);
    submit.env("SBATCH_TASK_OPTS", "--cpus-per-task=1 --mem=1G");
    let o = submit.output().unwrap();
    assert!(o.status.success(), "submit: {}", String::from_utf8_lossy(&o.stderr));
    let ids = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (array, merge) = ids.split_once(' ').unwrap_or_else(|| panic!("submit printed {ids:?}"));

    // Task 0 loses its process and its disk after its first checkpoint to S3.
    let pointer = s.object("s1/ep0_hamilton/.partial/latest.json");
    let started = Instant::now();
    while !pointer.is_file() {
        assert!(started.elapsed() < Duration::from_secs(180), "task 0 checkpointed nothing to S3: {}", cluster.output(&["squeue"]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = task_process(array, 0).expect("the process of task 0");
    // SAFETY: a plain kill(2) of the task's process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let task0 = format!("{array}_0");
    cluster.wait_for(&task0, &["FAILED"], Duration::from_secs(60));
    assert!(!s.object("s1/ep0_hamilton/_DONE.json").exists());
    std::fs::remove_dir_all(scratch.join("episode-run").join(&task0)).unwrap();
    assert!(cluster.cmd(&["scontrol", "requeue", &task0]).status().unwrap().success());
    // A requeued job waits about two minutes before it may start again; let it go now.
    assert!(cluster.cmd(&["scontrol", "update", &format!("JobId={task0}"), "StartTime=now"]).status().unwrap().success());

    for task in 0..4 {
        cluster.wait_for(&format!("{array}_{task}"), &["COMPLETED", "FAILED"], Duration::from_secs(600));
    }
    let state = |task: usize, field: &str| cluster.job(&format!("{array}_{task}"), field);
    let log = |task: usize| std::fs::read_to_string(logs.join(format!("episode-run-season-{array}_{task}.log"))).unwrap_or_default();
    assert_eq!((state(0, "JobState"), state(0, "Restarts")), ("COMPLETED".into(), "1".into()), "{}", log(0));
    assert!(log(0).contains("restart 0") && log(0).contains("restart 1"), "a requeued task appends to its log: {}", log(0));
    assert!(log(0).contains("index from $SLURM_ARRAY_TASK_ID") && log(0).contains("resuming episode 0 from the checkpoint in S3"), "{}", log(0));
    for task in [1, 3] {
        assert_eq!(state(task, "JobState"), "COMPLETED", "{}", log(task));
    }
    assert_eq!((state(2, "JobState"), state(2, "ExitCode"), state(2, "Restarts")), ("FAILED".into(), "2:0".into(), "0".into()), "{}", log(2));
    // The merge never starts while an episode failed (once the scheduler has looked again).
    let started = Instant::now();
    while cluster.job(merge, "Reason") != "DependencyNeverSatisfied" {
        assert_eq!(cluster.job(merge, "JobState"), "PENDING");
        assert!(started.elapsed() < Duration::from_secs(120), "the merge's dependency is {}", cluster.job(merge, "Reason"));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(cluster.cmd(&["scancel", merge]).status().unwrap().success());

    let sbatch_wait = |args: &[&str]| -> (Output, String) {
        let mut cmd = cluster.cmd(&[&["sbatch", "--wait", "--parsable", "--export=ALL"], args].concat());
        env(&mut cmd);
        let o = cmd.output().unwrap();
        let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (o, job)
    };
    let (o, job) = sbatch_wait(&[deploy("merge.sbatch").to_str().unwrap()]);
    let merge_log = std::fs::read_to_string(logs.join(format!("episode-run-merge-{job}.log"))).unwrap_or_default();
    assert_eq!(o.status.code(), Some(4), "{merge_log}");
    assert!(merge_log.contains("index 2 (ep2_bbt_group)"), "{merge_log}");

    // The input is fixed and planned again; index 2 is run again, then the merge.
    s.put(&eps[2].file, "media/ep2_bbt_group.mp4");
    assert!(s.plan().status.success());
    let (o, job) = sbatch_wait(&["--array=2", "--cpus-per-task=1", "--mem=1G", deploy("season.sbatch").to_str().unwrap()]);
    assert!(o.status.success(), "{}", std::fs::read_to_string(logs.join(format!("episode-run-season-{job}_2.log"))).unwrap_or_default());
    let (o, job) = sbatch_wait(&[deploy("merge.sbatch").to_str().unwrap()]);
    assert!(o.status.success(), "{}", std::fs::read_to_string(logs.join(format!("episode-run-merge-{job}.log"))).unwrap_or_default());

    s.assert_like_local(&eps);
    s.assert_cast(&eps);
}
