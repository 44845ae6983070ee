//! The engine files in deploy/: the Kubernetes manifests validated offline against the
//! Kubernetes 1.37 schemas (`kubernetes-validate --strict`, installed by `make setup` into the
//! set-up venv) and checked for what the schema cannot say (an Indexed Job whose bad-input exit
//! fails the index at once, node loss not counted, the cache an emptyDir at the task's
//! --cache-dir, requests equal to limits); the command lines of the Kubernetes and AWS Batch
//! files parsed by the real binary; the shell scripts parsed by bash. The Slurm files run for
//! real in tests/slurm.rs; the Dockerfile and the AWS files are not run here.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(rel)
}

fn venv(tool: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/venv/bin").join(tool);
    assert!(p.is_file(), "{} missing: `make setup` installs it", p.display());
    p
}

fn validate(file: &Path) -> (bool, String) {
    let o = Command::new(venv("kubernetes-validate")).args(["--strict", "--no-warn"]).arg(file).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// The YAML documents of `file`, as JSON (PyYAML comes with kubernetes-validate).
fn yaml(file: &Path) -> Vec<serde_json::Value> {
    let o = Command::new(venv("python"))
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs the binary with a manifest's arguments (the plan a file that is not there): the flags
/// must parse, so the error is about the plan, not the command line.
fn assert_parses(args: &[String]) {
    let o = Command::new(util::bin()).args(args).env_remove("JOB_COMPLETION_INDEX").output().unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {text}");
    assert!(!text.contains("Usage:") && text.contains("/nonexistent/season.json"), "{args:?} do not parse: {text}");
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

#[test]
fn the_kubernetes_manifests_pass_the_schemas_and_say_what_a_season_needs() {
    for name in ["season-job.yaml", "merge-job.yaml", "secret.example.yaml"] {
        let (ok, text) = validate(&deploy(&format!("kubernetes/{name}")));
        assert!(ok, "{name}: {text}");
    }
    // The validator does reject what Kubernetes would.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.yaml");
    let text = std::fs::read_to_string(deploy("kubernetes/season-job.yaml")).unwrap().replace("backoffLimitPerIndex:", "backoffLimitPerIndexx:");
    std::fs::write(&broken, text).unwrap();
    assert!(!validate(&broken).0, "a misspelt field passes the validator");

    let job = &yaml(&deploy("kubernetes/season-job.yaml"))[0];
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert!(spec["completions"].as_u64().unwrap() >= 1 && spec["parallelism"].as_u64().unwrap() >= 1);
    assert!(spec["backoffLimitPerIndex"].as_u64().unwrap() >= 1 && spec["maxFailedIndexes"].is_u64());
    let rules = spec["podFailurePolicy"]["rules"].as_array().unwrap();
    let fail_index = rules.iter().find(|r| r["action"] == "FailIndex").expect("a FailIndex rule");
    assert_eq!(
        (fail_index["onExitCodes"]["operator"].as_str(), fail_index["onExitCodes"]["values"].as_array().unwrap().clone()),
        (Some("In"), vec![serde_json::json!(2)])
    );
    assert!(rules.iter().any(|r| r["action"] == "Ignore" && r["onPodConditions"][0]["type"] == "DisruptionTarget"), "node loss is not counted");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["name"], fail_index["onExitCodes"]["containerName"], "the exit-code rule names the container");
    let args = strings(&c["args"]);
    assert_eq!(&args[..2], ["season", "run"]);
    let cache = &args[args.iter().position(|a| a == "--cache-dir").unwrap() + 1];
    let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == cache.as_str()).expect("the cache is mounted");
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert!(volume["emptyDir"].is_object(), "the cache is an emptyDir");
    assert_eq!(c["resources"]["requests"]["cpu"], c["resources"]["limits"]["cpu"], "CPU requests match the limit (the plan's --threads)");
    assert!(c["envFrom"][0]["secretRef"]["name"].is_string(), "credentials from a Secret");
    assert!(!args.iter().any(|a| a.contains("--index")), "the index comes from JOB_COMPLETION_INDEX");
    let with_plan = |args: Vec<String>| args.into_iter().map(|a| a.replace("$(PLAN)", "/nonexistent/season.json")).collect::<Vec<_>>();
    assert_parses(&with_plan(args.clone()).into_iter().chain(["--index".into(), "0".into()]).collect::<Vec<_>>());

    let merge = &yaml(&deploy("kubernetes/merge-job.yaml"))[0];
    let margs = strings(&merge["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(&margs[..2], ["season", "merge"]);
    assert_parses(&with_plan(margs));
}

#[test]
fn the_aws_batch_files_hold_an_array_job_that_does_not_retry_bad_input() {
    let def: serde_json::Value = serde_json::from_slice(&std::fs::read(deploy("aws-batch/job-definition.json")).unwrap()).unwrap();
    let command = strings(&def["containerProperties"]["command"]);
    assert_eq!(&command[..2], ["season", "run"]);
    let exits = def["retryStrategy"]["evaluateOnExit"].as_array().unwrap();
    assert!(exits.iter().any(|e| e["onExitCode"] == "2" && e["action"] == "EXIT"), "exit 2 is not retried");
    assert_eq!(exits.last().unwrap()["action"], "RETRY", "anything else is retried");
    let plan = |args: Vec<String>| args.into_iter().map(|a| a.replace("Ref::plan", "/nonexistent/season.json")).collect::<Vec<_>>();
    assert_parses(&plan(command).into_iter().chain(["--index".into(), "0".into()]).collect::<Vec<_>>());
    let merge: serde_json::Value = serde_json::from_slice(&std::fs::read(deploy("aws-batch/merge-job-definition.json")).unwrap()).unwrap();
    let command = strings(&merge["containerProperties"]["command"]);
    assert_eq!(&command[..2], ["season", "merge"]);
    assert_parses(&plan(command));
}

#[test]
fn the_engine_scripts_parse() {
    for script in ["slurm/season.sbatch", "slurm/merge.sbatch", "slurm/submit", "aws-batch/submit"] {
        let o = Command::new("bash").arg("-n").arg(deploy(script)).output().unwrap();
        assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let sbatch = std::fs::read_to_string(deploy("slurm/season.sbatch")).unwrap();
    for option in ["--requeue", "--open-mode=append", "--cpus-per-task="] {
        assert!(sbatch.lines().any(|l| l.starts_with("#SBATCH") && l.contains(option)), "season.sbatch sets {option}");
    }
    assert!(std::fs::read_to_string(deploy("slurm/submit")).unwrap().contains("--dependency=\"afterok:"), "the merge waits for the array");
}
