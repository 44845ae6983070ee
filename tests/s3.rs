//! S3 in and out against a real S3 server: `s3s-fs` (installed by `make setup` into
//! .deps/s3s-fs), started on 127.0.0.1 with a temp root and test credentials for each test and
//! killed when it ends. Every command's output and every file of the runs is checked for the
//! secret key.
#![cfg(feature = "s3")]

#[path = "util/s3server.rs"]
mod s3server;
mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use episode_run::s3::{Condition, Put, S3Error, S3Url};
use s3server::{env_pairs, free_port, Server, BUCKET, SECRET};
use util::{bin, files_under, hamilton};

/// Runs the binary with the test credentials (or `secret` instead) and checks that neither the
/// real nor a wrong secret shows up in what it prints.
fn run(args: &[String], secret: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
    for (k, v) in env_pairs(secret) {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run episode-run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(SECRET) && !text.contains(secret), "a secret was printed: {text}");
    out
}

fn args(parts: &[&str], more: &[String]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).chain(more.iter().cloned()).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON events named `name` on stderr (runs with --log-format json).
fn events(o: &Output, name: &str) -> Vec<serde_json::Value> {
    stderr(o).lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|e| e["event"] == name).collect()
}

/// Every file under `dir` by relative path, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir).into_iter().map(|(rel, p)| (rel, std::fs::read(p).unwrap())).collect()
}

/// The files of a finished run that an upload sends: all but the ownership marker.
fn uploadable(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dir).into_iter().filter(|(rel, _)| rel != ".episode-run").collect()
}

/// Adds `rel` to the files the run's manifest lists (as a longer episode's large result would be).
fn list_in_manifest(run_dir: &Path, rel: &str) {
    let path = run_dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["files"].as_array_mut().unwrap().push(rel.into());
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn assert_no_secret_in(dir: &Path) {
    for (path, bytes) in snapshot(dir) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "{path} holds the secret key");
    }
}

/// A finished local harvest of the Hamilton clip at stride 4.
fn local_run(dir: &Path) -> PathBuf {
    let out = dir.join("local");
    let o = util::harvest(&hamilton(), &out, &["--stride", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

#[test]
fn round_trip_from_s3_to_s3_equals_a_local_run() {
    let server = Server::start();
    let store = server.store();
    let tmp = tempfile::tempdir().unwrap();
    let clip = S3Url::parse(&format!("s3://{BUCKET}/media/hamilton.mp4")).unwrap();
    assert!(store.put_file(&hamilton(), &clip).unwrap(), "the clip was uploaded");
    assert!(!store.put_file(&hamilton(), &clip).unwrap(), "an unchanged object is not sent again");
    let local = local_run(tmp.path());

    let (out, cache) = (tmp.path().join("from_s3"), tmp.path().join("cache"));
    let dest = format!("s3://{BUCKET}/runs/hamilton/");
    let harvest = args(
        &[
            "harvest",
            &clip.to_string(),
            "--stride",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--upload",
            &dest,
            "--log-format",
            "json",
        ],
        &server.flags(),
    );
    let o = run(&harvest, SECRET, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let size = std::fs::metadata(hamilton()).unwrap().len();
    assert_eq!(events(&o, "fetch")[0]["downloaded"], size, "{}", stderr(&o));

    // The same results as the local file.
    for name in ["faces.jsonl", "embeddings.npy", "tracks.jsonl", "track_embeddings.npy", "shots.jsonl"] {
        assert_eq!(std::fs::read(out.join(name)).unwrap(), std::fs::read(local.join(name)).unwrap(), "{name} differs from the local run");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["input"]["source"], clip.to_string());

    // Every file of the run is in the bucket, byte for byte; download them to compare.
    let uploaded = &events(&o, "upload")[0]["report"];
    let files = uploadable(&out);
    assert_eq!(uploaded["objects"], files.len() as u64);
    assert_eq!(uploaded["objects_sent"], files.len() as u64);
    let downloads = tmp.path().join("downloads");
    for (rel, bytes) in &files {
        let url = S3Url::parse(&dest).unwrap().join(rel);
        let got = store.fetch(&url, &downloads).unwrap();
        assert_eq!(&std::fs::read(&got.path).unwrap(), bytes, "{url} differs from the local file");
    }

    // Again, with the endpoint from the standard AWS variable: nothing is downloaded or sent.
    let again: Vec<String> = harvest.iter().filter(|a| *a != "--s3-endpoint" && **a != server.endpoint).cloned().collect();
    let o = run(&again, SECRET, &[("AWS_ENDPOINT_URL", &server.endpoint)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(events(&o, "fetch")[0]["downloaded"], 0, "the cached copy is used");
    assert!(!events(&o, "already_harvested").is_empty());
    let report = &events(&o, "upload")[0]["report"];
    assert_eq!((report["objects_sent"].as_u64(), report["objects_skipped"].as_u64()), (Some(0), Some(files.len() as u64)));

    // A download cut short resumes from its .partial file; bad bytes there are caught.
    let cached = cache.join("s3").join(BUCKET).join("media/hamilton.mp4");
    let cache2 = tmp.path().join("cache2");
    let partial = cache2.join("s3").join(BUCKET).join("media/hamilton.mp4.partial");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let note = std::fs::read(cached.with_extension("mp4.s3.json")).unwrap();
    std::fs::write(partial.with_extension("partial.s3.json"), &note).unwrap();
    let clip_bytes = std::fs::read(hamilton()).unwrap();
    let half = clip_bytes.len() / 2;
    let from_cache2 = |out: &str| {
        let a = args(
            &["harvest", &clip.to_string(), "--stride", "4", "--out", out, "--cache-dir", cache2.to_str().unwrap(), "--log-format", "json"],
            &server.flags(),
        );
        run(&a, SECRET, &[])
    };
    let mut damaged = clip_bytes[..half].to_vec();
    damaged[1000] ^= 0xff;
    std::fs::write(&partial, &damaged).unwrap();
    let o = from_cache2(tmp.path().join("bad").to_str().unwrap());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("do not match the object's SHA-256"), "{}", stderr(&o));
    assert!(!partial.exists(), "damaged bytes are not resumed from");
    std::fs::write(partial.with_extension("partial.s3.json"), &note).unwrap();
    std::fs::write(&partial, &clip_bytes[..half]).unwrap();
    let resumed_out = tmp.path().join("resumed");
    let o = from_cache2(resumed_out.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    let fetch = &events(&o, "fetch")[0];
    assert_eq!((fetch["resumed_from"].as_u64(), fetch["downloaded"].as_u64()), (Some(half as u64), Some(size - half as u64)), "{fetch}");
    assert_eq!(std::fs::read(resumed_out.join("embeddings.npy")).unwrap(), std::fs::read(local.join("embeddings.npy")).unwrap());

    // No secret in the run, its manifest and progress, or the cache.
    assert_no_secret_in(&out);
    assert_no_secret_in(&cache);
}

#[test]
fn failures_name_the_bucket_and_key_and_lose_nothing() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = local_run(tmp.path());
    let before = snapshot(&run_dir);
    let cache = tmp.path().join("cache");
    server.store().put_file(&hamilton(), &S3Url::parse(&format!("s3://{BUCKET}/media/hamilton.mp4")).unwrap()).unwrap();
    let down = vec!["--s3-endpoint".to_string(), format!("http://127.0.0.1:{}", free_port()), "--s3-path-style".into()];
    let fetch_into = tmp.path().join("fetched");

    // (flags, secret, object, expected words): harvest from s3 must exit 2, upload must exit 3.
    let cases: [(&[String], &str, String, &[&str]); 4] = [
        (&down, SECRET, format!("s3://{BUCKET}/media/hamilton.mp4"), &["cannot reach", "127.0.0.1"]),
        (&server.flags(), "a-wrong-secret-Zq81", format!("s3://{BUCKET}/media/hamilton.mp4"), &["access denied", BUCKET, "media/hamilton.mp4"]),
        (
            &server.flags(),
            SECRET,
            "s3://no-such-bucket/media/hamilton.mp4".into(),
            &["bucket no-such-bucket does not exist", "s3://no-such-bucket/media/hamilton.mp4"],
        ),
        (&server.flags(), SECRET, format!("s3://{BUCKET}/media/missing.mp4"), &["no such key \"media/missing.mp4\"", BUCKET]),
    ];
    for (flags, secret, object, words) in cases {
        let o = run(&args(&["harvest", &object, "--out", fetch_into.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()], flags), secret, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{object}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        for w in words {
            assert!(err.contains(w), "{object}: {err:?} should say {w:?}");
        }
        assert!(!fetch_into.exists(), "a failed fetch made no run dir");
        if object.ends_with("missing.mp4") {
            continue; // the bucket itself is fine for uploads
        }

        // Uploading the finished run there fails with exit 3 and leaves the run as it was.
        let bucket = S3Url::parse(&object).unwrap().bucket;
        let o = run(&args(&["upload", run_dir.to_str().unwrap(), &format!("s3://{bucket}/runs/x/")], flags), secret, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "upload to {bucket}: {err}");
        assert!(err.contains(&format!("s3://{bucket}/runs/x/")) && err.contains("intact"), "{err}");
        assert!(err.contains(&format!("--s3-endpoint {}", flags[1])) && err.contains("--s3-path-style"), "the retry hint reaches the same store: {err}");
        assert_eq!(snapshot(&run_dir), before, "the run dir is untouched");

        // A harvest whose upload cannot work stops before harvesting, with the upload's code.
        let o = run(
            &args(&["harvest", hamilton().to_str().unwrap(), "--out", run_dir.to_str().unwrap(), "--force", "--upload", &format!("s3://{bucket}/r/")], flags),
            secret,
            &[],
        );
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert_eq!(snapshot(&run_dir), before, "the earlier run is untouched");
    }
    assert_no_secret_in(&run_dir);
}

#[test]
fn a_killed_upload_resumes_without_resending() {
    let server = Server::start();
    let store = server.store();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = local_run(tmp.path());
    let dest = format!("s3://{BUCKET}/runs/killed/");
    let upload_args =
        args(&["upload", run_dir.to_str().unwrap(), &dest, "--s3-concurrency", "1", "--s3-part-mib", "5", "--log-format", "json"], &server.flags());
    let upload = |env: &[(&str, &str)]| run(&upload_args, SECRET, env);

    // Stopped by the fault hook after 5 whole objects: the next upload sends only the others.
    let total = uploadable(&run_dir).len() as u64;
    let o = upload(&[(episode_run::s3::FAULT_AFTER_PARTS_ENV, "5")]);
    assert!(!o.status.success(), "the fault hook stops the upload");
    let o = upload(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &events(&o, "upload")[0]["report"];
    assert_eq!((r["objects_skipped"].as_u64(), r["objects_sent"].as_u64()), (Some(5), Some(total - 5)), "{r}");

    // A large result goes in 5 MiB parts. SIGKILL the upload once two parts are in: the next
    // one sends only the parts the server lacks and the server's copy is whole.
    // (Deterministic bytes that do not compress.)
    const PARTS: u64 = 13;
    let big: Vec<u8> = (0u64..(PARTS * 5 - 2) << 20).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
    std::fs::write(run_dir.join("large_result.bin"), &big).unwrap();
    list_in_manifest(&run_dir, "large_result.bin");
    let mut child = Command::new(bin());
    child.args(&upload_args);
    for (k, v) in env_pairs(SECRET) {
        child.env(k, v);
    }
    let mut child = child.stderr(Stdio::piped()).spawn().unwrap();
    let mut parts_seen = 0;
    for line in std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap())) {
        if line.unwrap().contains("\"upload_part\"") {
            parts_seen += 1;
            if parts_seen == 2 {
                child.kill().unwrap();
            }
        }
    }
    assert!(!child.wait().unwrap().success(), "killed");
    assert!(run_dir.join(".upload-state.json").is_file(), "the unfinished upload is recorded");
    let o = upload(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &events(&o, "upload")[0]["report"];
    let (reused, sent) = (r["parts_reused"].as_u64().unwrap(), r["parts_sent"].as_u64().unwrap());
    assert!((2..PARTS).contains(&reused) && reused + sent == PARTS, "{r}");
    // The manifest changed too (it now lists the large file): it goes again, whole.
    let manifest_len = std::fs::metadata(run_dir.join("manifest.json")).unwrap().len();
    assert_eq!(r["bytes_sent"].as_u64(), Some(big.len() as u64 - ((reused * 5) << 20) + manifest_len), "only the missing parts were sent: {r}");
    assert_eq!(r["objects_sent"].as_u64(), Some(2), "{r}");
    assert!(!run_dir.join(".upload-state.json").exists(), "the record goes once the upload is complete");
    let got = store.fetch(&S3Url::parse(&dest).unwrap().join("large_result.bin"), &tmp.path().join("dl")).unwrap();
    assert!(std::fs::read(got.path).unwrap() == big, "the resumed multipart object is byte-identical");

    // Interrupted again, then the file changes: the stale upload is aborted, not reused.
    let changed: Vec<u8> = big.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(run_dir.join("large_result.bin"), &changed).unwrap();
    assert!(!upload(&[(episode_run::s3::FAULT_AFTER_PARTS_ENV, "1")]).status.success());
    let last: Vec<u8> = big.iter().map(|b| b ^ 0xa5).collect();
    std::fs::write(run_dir.join("large_result.bin"), &last).unwrap();
    let o = upload(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &events(&o, "upload")[0]["report"];
    assert_eq!((r["parts_reused"].as_u64(), r["parts_sent"].as_u64()), (Some(0), Some(PARTS)), "{r}");
    let got = store.fetch(&S3Url::parse(&dest).unwrap().join("large_result.bin"), &tmp.path().join("dl2")).unwrap();
    assert!(std::fs::read(got.path).unwrap() == last);
    let leftovers: Vec<_> =
        std::fs::read_dir(server.root.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains("upload_id")).collect();
    assert!(leftovers.is_empty(), "no multipart upload is left on the server: {leftovers:?}");
}

#[test]
fn upload_sends_only_the_files_the_manifest_lists() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = local_run(tmp.path());
    let listed = uploadable(&run_dir);
    // What a careless user keeps beside a run: none of it may leave the machine.
    for (rel, text) in [(".ssh/id_rsa", "-----BEGIN PRIVATE KEY-----"), (".aws/credentials", SECRET), ("notes.txt", "private")] {
        std::fs::create_dir_all(run_dir.join(rel).parent().unwrap()).unwrap();
        std::fs::write(run_dir.join(rel), text).unwrap();
    }
    std::os::unix::fs::symlink("/etc/hostname", run_dir.join("crops/link.jpg")).unwrap();
    let o = run(&args(&["upload", run_dir.to_str().unwrap(), &format!("s3://{BUCKET}/runs/only/")], &server.flags()), SECRET, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let on_server = snapshot(&server.root.path().join(BUCKET).join("runs/only"));
    let sent: Vec<&String> = on_server.keys().filter(|k| !k.ends_with(".json") || k.as_str() == "manifest.json" || k.as_str() == "progress.json").collect();
    assert_eq!(sent, listed.keys().collect::<Vec<_>>(), "exactly the run's files");
    for (rel, bytes) in &listed {
        assert_eq!(&on_server[rel], bytes, "{rel}");
    }

    // A manifest that names anything outside the run is refused (exit 2), nothing sent.
    list_in_manifest(&run_dir, "../../etc/passwd");
    let o = run(&args(&["upload", run_dir.to_str().unwrap(), &format!("s3://{BUCKET}/runs/evil/")], &server.flags()), SECRET, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("../../etc/passwd"), "{}", stderr(&o));
    assert!(!server.root.path().join(BUCKET).join("runs/evil").exists());
}

/// tests/support/hostile_s3.py serving the Hamilton clip under any key, answering GETs as `mode`
/// says; killed on drop.
struct Hostile {
    child: Child,
    endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Hostile {
    fn start(mode: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/hostile_s3.py");
        let mut child = Command::new("python3").arg(script).arg(hamilton()).arg(mode).arg(&log).stdout(Stdio::piped()).spawn().expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        Hostile { child, endpoint: format!("http://127.0.0.1:{port}"), log, _dir: dir }
    }

    fn flags(&self) -> Vec<String> {
        vec!["--s3-endpoint".into(), self.endpoint.clone(), "--s3-path-style".into()]
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn hostile_keys_never_name_a_file_outside_the_cache() {
    let server = Hostile::start("ok");
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim/precious.txt");
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    std::fs::write(&victim, b"years of work").unwrap();
    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("out"));
    let long = "a".repeat(300);
    let keys = [
        format!("/{}", victim.display()),
        "media//clip.mp4".to_string(),
        "a/../../victim/precious.txt".to_string(),
        "./clip.mp4".to_string(),
        format!("{long}.mp4"),
        "clip\u{7}.mp4".to_string(),
    ];
    for key in &keys {
        let url = format!("s3://{BUCKET}/{key}");
        let o = run(&args(&["harvest", &url, "--out", out.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()], &server.flags()), SECRET, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{key:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        let shown: String = key.chars().take(40).flat_map(char::escape_debug).collect();
        assert!(err.contains(&shown), "the error names the key {key:?}: {err}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"years of work");
    let files: Vec<String> = files_under(tmp.path()).into_iter().map(|f| f.0).collect();
    assert_eq!(files, ["victim/precious.txt"], "nothing was written anywhere");
    assert!(server.requests().is_empty(), "refused before any request: {}", server.requests());

    // The same server with an ordinary key is harvested (the checks accept a correct server).
    let url = format!("s3://{BUCKET}/shows/ep 1.mp4");
    let o =
        run(&args(&["harvest", &url, "--stride", "8", "--out", out.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()], &server.flags()), SECRET, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(cache.join("s3").join(BUCKET).join("shows/ep 1.mp4")).unwrap(), std::fs::read(hamilton()).unwrap());
}

#[test]
fn wrong_answers_to_ranged_gets_are_discarded_not_harvested() {
    let tmp = tempfile::tempdir().unwrap();
    let size = std::fs::metadata(hamilton()).unwrap().len();
    let url = format!("s3://{BUCKET}/media/clip.mp4");
    let cached = |cache: &Path| cache.join("s3").join(BUCKET).join("media/clip.mp4");
    let partial = |cache: &Path| cache.join("s3").join(BUCKET).join("media/clip.mp4.partial");
    for (mode, resumed) in [("ignore-range", false), ("extra", false), ("wrong-range", false), ("short", false), ("ignore-range", true)] {
        let server = Hostile::start(mode);
        let (cache, out) = (tmp.path().join(format!("cache-{mode}-{resumed}")), tmp.path().join(format!("out-{mode}-{resumed}")));
        if resumed {
            // Half a download left by a killed fetch, with its note: the server must send the rest.
            std::fs::create_dir_all(partial(&cache).parent().unwrap()).unwrap();
            std::fs::write(partial(&cache), &std::fs::read(hamilton()).unwrap()[..(size / 2) as usize]).unwrap();
            let note = serde_json::json!({"url": url, "etag": "\"hostile-etag-1\"", "size": size});
            std::fs::write(cache.join("s3").join(BUCKET).join("media/clip.mp4.partial.s3.json"), note.to_string()).unwrap();
        }
        let o = run(&args(&["harvest", &url, "--out", out.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()], &server.flags()), SECRET, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{mode}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("ranged GET") && err.contains(&url) && err.contains("3 time(s)"), "{mode}: {err}");
        assert!(!cached(&cache).exists() && !partial(&cache).exists(), "{mode}: nothing kept from a wrong answer");
        assert!(!out.exists(), "{mode}: nothing harvested");
        assert_eq!(server.requests().matches("GET").count(), 3, "{mode}: three tries: {}", server.requests());
    }
}

/// Small objects through the library against the real server: whole reads, listing past one
/// page, and conditional writes that refuse a second creator and a stale compare-and-swap
/// (what a season's tasks coordinate with).
#[test]
fn small_objects_are_listed_read_and_written_conditionally() {
    let server = Server::start();
    let store = server.store();
    let url = |key: &str| S3Url::parse(&format!("s3://{BUCKET}/{key}")).unwrap();
    assert_eq!(store.get_bytes(&url("season/absent.json")).unwrap(), None);

    let Put::Written { etag: first } = store.put_bytes(&url("season/lease.json"), b"a".to_vec(), &Condition::IfAbsent).unwrap() else {
        panic!("the first creator must win")
    };
    assert_eq!(store.put_bytes(&url("season/lease.json"), b"b".to_vec(), &Condition::IfAbsent).unwrap(), Put::Refused, "a second creator is refused");
    let got = store.get_bytes(&url("season/lease.json")).unwrap().unwrap();
    assert_eq!((got.bytes.as_slice(), got.etag.as_str()), (b"a".as_slice(), first.as_str()));

    let Put::Written { etag: second } = store.put_bytes(&url("season/lease.json"), b"c".to_vec(), &Condition::IfMatch(first.clone())).unwrap() else {
        panic!("a swap from the current version must win")
    };
    assert_ne!(first, second);
    assert_eq!(store.put_bytes(&url("season/lease.json"), b"d".to_vec(), &Condition::IfMatch(first)).unwrap(), Put::Refused, "a stale swap is refused");
    assert_eq!(store.get_bytes(&url("season/lease.json")).unwrap().unwrap().bytes, b"c");
    assert!(matches!(store.put_bytes(&url("season/lease.json"), b"e".to_vec(), &Condition::Always).unwrap(), Put::Written { .. }));

    // More keys than one page of a listing (1,000) holds, in key order, and nothing outside the prefix.
    for i in 0..1005 {
        store.put_bytes(&url(&format!("season/ep/{i:04}.json")), vec![b'x'; i % 7], &Condition::Always).unwrap();
    }
    let listed = store.list(&url("season/ep/")).unwrap();
    assert_eq!(listed.len(), 1005);
    assert_eq!(listed[0].key, "season/ep/0000.json");
    assert_eq!(listed[1004].key, "season/ep/1004.json");
    assert_eq!(listed[6].size, 6);
    store.delete(&url("season/ep/0000.json")).unwrap();
    store.delete(&url("season/ep/0000.json")).unwrap();
    assert_eq!(store.list(&url("season/ep/")).unwrap().len(), 1004);

    // A missing bucket is named as such, not mistaken for a missing key.
    let err = store.get_bytes(&S3Url::parse("s3://no-such-bucket-here/x.json").unwrap()).unwrap_err();
    assert!(matches!(err, S3Error::NoSuchBucket { .. }), "{err}");
}
