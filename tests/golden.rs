//! Golden outputs: the Hamilton clip at strides 1 and 4, with and without seeds, must give
//! exactly the bytes recorded in `tests/golden/hamilton.json` (SHA-256 of every result file and
//! of the crops). The record was first made by 190b427, before the run-folder and module restructuring,
//! so refactoring cannot change a result unnoticed. Regenerate only on purpose, when a change is
//! meant to change results:
//!
//! ```text
//! EPISODE_RUN_GOLDEN=regenerate [EPISODE_RUN_GOLDEN_BIN=path/to/episode-run] cargo test --test golden
//! ```
//!
//! The models' arithmetic is ONNX Runtime's on this CPU kind (the record names the CPU); another
//! CPU family may round embeddings differently.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use util::*;

const RESULTS: [&str; 7] = ["faces.jsonl", "embeddings.npy", "tracks.jsonl", "shots.jsonl", "track_embeddings.npy", "people.jsonl", "people_embeddings.npy"];

fn record_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hamilton.json")
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of each result file, and one over every crop's name and bytes.
fn digests(out: &Path) -> BTreeMap<String, String> {
    let mut d: BTreeMap<String, String> = RESULTS.iter().map(|n| (n.to_string(), sha256(&std::fs::read(out.join(n)).unwrap()))).collect();
    let mut crops = Sha256::new();
    for (rel, path) in files_under(&out.join("crops")) {
        crops.update(rel.as_bytes());
        crops.update(sha256(&std::fs::read(path).unwrap()).as_bytes());
    }
    d.insert("crops".into(), crops.finalize().iter().map(|b| format!("{b:02x}")).collect());
    d
}

#[test]
fn hamilton_outputs_match_the_golden_record() {
    let regenerate = std::env::var("EPISODE_RUN_GOLDEN").is_ok_and(|v| v == "regenerate");
    let exe = std::env::var("EPISODE_RUN_GOLDEN_BIN").ok().filter(|_| regenerate).unwrap_or_else(|| bin().to_string());
    let tmp = tempfile::tempdir().unwrap();
    let cast = seeds(tmp.path());
    let mut found = BTreeMap::new();
    for stride in ["1", "4"] {
        for with_seeds in [false, true] {
            let name = format!("stride{stride}{}", if with_seeds { "_seeds" } else { "" });
            let out = tmp.path().join(&name);
            let mut cmd = Command::new(&exe);
            cmd.arg("harvest").arg(hamilton()).arg("--out").arg(&out).args(["--stride", stride, "--quiet"]);
            if with_seeds {
                cmd.arg("--seeds").arg(&cast);
            }
            let o = cmd.output().unwrap();
            assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
            found.insert(name, digests(&out));
        }
    }
    if regenerate {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpu.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("").trim().to_string();
        let record = serde_json::json!({"made_by": exe, "cpu": cpu, "runs": found});
        std::fs::create_dir_all(record_path().parent().unwrap()).unwrap();
        std::fs::write(record_path(), serde_json::to_string_pretty(&record).unwrap() + "\n").unwrap();
        return;
    }
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(record_path()).expect("tests/golden/hamilton.json")).unwrap();
    let expected: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_value(record["runs"].clone()).unwrap();
    for (run, files) in &expected {
        for (file, digest) in files {
            assert_eq!(&found[run][file], digest, "{run}: {file} differs from the golden record (made on {})", record["cpu"]);
        }
    }
    assert_eq!(found.len(), expected.len());
}
