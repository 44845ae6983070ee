//! `--provider`: where ONNX Runtime runs the models, and that a provider that cannot run is
//! never silent. Real binary, real runtime, real models, on the Hamilton clip.
//!
//! CI has no GPU and no CUDA build (`make setup-gpu` is not part of `make setup`), so these
//! tests cover the CPU build and a runtime folder whose CUDA provider cannot register; the last
//! test, ignored by default, runs the CUDA build where `make setup-gpu` installed it. The harvest on a real GPU is
//! `scripts/gpu_check`, run on a GPU machine (README, "Run on a GPU").

mod util;

use std::path::{Path, PathBuf};
use std::process::Output;

use util::*;

fn cpu_build() -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/lib/libonnxruntime.so.1.31.1");
    assert!(lib.is_file(), "run `make setup` first: {}", lib.display());
    lib
}

fn harvest_with(lib: &Path, out: &Path, extra: &[&str]) -> Output {
    harvest_cmd(&hamilton(), out, &[&["--stride", "8"], extra].concat()).env("EPISODE_RUN_ORT_LIB", lib).output().unwrap()
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().map(str::to_string).collect()
}

fn sessions(run: &Run) -> serde_json::Value {
    run.manifest["onnxruntime"]["sessions"].clone()
}

#[test]
fn the_cpu_build_runs_auto_on_the_cpu_quietly_and_refuses_cuda_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = cpu_build();
    let auto = harvest_with(&lib, &tmp.path().join("auto"), &[]);
    assert!(auto.status.success() && auto.stderr.is_empty(), "{:?}", stderr_lines(&auto));
    let cpu = harvest_with(&lib, &tmp.path().join("cpu"), &["--provider", "cpu"]);
    assert!(cpu.status.success(), "{:?}", stderr_lines(&cpu));
    let (auto, cpu) = (Run::load(&tmp.path().join("auto")), Run::load(&tmp.path().join("cpu")));
    let on_cpu = serde_json::json!({"detector": "CPUExecutionProvider", "embedder": "CPUExecutionProvider"});
    for (run, asked) in [(&auto, "auto"), (&cpu, "cpu")] {
        assert_eq!(run.manifest["onnxruntime"]["provider"], asked);
        assert_eq!(sessions(run), on_cpu);
        assert_eq!(run.manifest["onnxruntime"]["execution_provider"], "CPUExecutionProvider");
        assert!(run.manifest["onnxruntime"].get("fallback").is_none());
    }
    assert_eq!(auto.faces_text, cpu.faces_text);
    assert_eq!(auto.embeddings, cpu.embeddings);
    let report = std::fs::read_to_string(tmp.path().join("auto/report.html")).unwrap();
    assert!(report.contains("1.31.1, CPUExecutionProvider"), "the report header names the provider");

    let out = tmp.path().join("cuda");
    let o = harvest_with(&lib, &out, &["--provider", "cuda"]);
    let lines = stderr_lines(&o);
    assert_eq!(o.status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--provider cuda") && lines[0].contains("CPU build") && lines[0].contains("make setup-gpu"), "{lines:?}");
    assert!(!out.join("faces.jsonl").exists());
}

/// A runtime folder that looks like the CUDA build (a CUDA provider file beside the library)
/// where CUDA cannot run: without a driver (CI) the check for one says so; with one, the CPU
/// build's CUDA entry point refuses to register, ONNX Runtime's own error, which by default it
/// would only log before running on the CPU.
#[test]
fn a_cuda_build_that_cannot_run_is_an_error_or_a_said_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ort");
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libonnxruntime.so.1.31.1");
    std::os::unix::fs::symlink(cpu_build(), &lib).unwrap();
    std::fs::write(dir.join("libonnxruntime_providers_cuda.so"), b"").unwrap();

    let o = harvest_with(&lib, &tmp.path().join("cuda"), &["--provider", "cuda"]);
    let lines = stderr_lines(&o);
    assert_eq!((o.status.code(), lines.len()), (Some(2), 1), "{lines:?}");
    assert!(lines[0].starts_with("error: --provider cuda: "), "{lines:?}");
    // Without a driver the check for one says so; with one, ONNX Runtime's refusal is the reason.
    assert_eq!(lines[0].contains("no NVIDIA driver here"), !has_nvidia_driver(), "{lines:?}");

    let o = harvest_with(&lib, &tmp.path().join("auto"), &[]);
    let lines = stderr_lines(&o);
    assert!(o.status.success(), "{lines:?}");
    assert_eq!(lines.len(), 1, "one warning, however many sessions: {lines:?}");
    assert!(lines[0].starts_with("warning: CUDA cannot run the models") && lines[0].contains("running on the CPU"), "{lines:?}");
    let run = Run::load(&tmp.path().join("auto"));
    assert_eq!(sessions(&run), serde_json::json!({"detector": "CPUExecutionProvider", "embedder": "CPUExecutionProvider"}));
    let fallback = run.manifest["onnxruntime"]["fallback"].as_str().unwrap_or_default().to_string();
    assert!(lines[0].contains(&fallback) && !fallback.is_empty(), "the manifest records why: {fallback}");
    let report = std::fs::read_to_string(tmp.path().join("auto/report.html")).unwrap();
    assert!(report.contains("CUDA could not run the models"), "the report header says so");

    let cpu = harvest_with(&cpu_build(), &tmp.path().join("cpu"), &["--provider", "cpu"]);
    assert!(cpu.status.success());
    let cpu = Run::load(&tmp.path().join("cpu"));
    assert_eq!((run.faces_text, run.embeddings), (cpu.faces_text, cpu.embeddings), "the fallback is the CPU run");
}

/// The CUDA build `make setup-gpu` installs: on a machine without a GPU `cuda` is one line and
/// exit 2 and `auto` says it runs on the CPU; on a GPU, both run on CUDA. CI has no CUDA build,
/// so it reports this test as skipped; run it with `cargo nextest run --run-ignored all --test
/// provider` after `make setup-gpu`.
#[test]
#[ignore = "needs the CUDA build: make setup-gpu"]
fn the_installed_cuda_build_runs_on_a_gpu_or_says_why_not() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/gpu/lib/libonnxruntime.so.1.31.1");
    assert!(lib.is_file(), "run `make setup-gpu` first: {}", lib.display());
    let tmp = tempfile::tempdir().unwrap();
    let gpu = std::process::Command::new("nvidia-smi").arg("-L").output().is_ok_and(|o| o.status.success());
    let cuda = harvest_with(&lib, &tmp.path().join("cuda"), &["--provider", "cuda"]);
    let auto = harvest_with(&lib, &tmp.path().join("auto"), &[]);
    let (cl, al) = (stderr_lines(&cuda), stderr_lines(&auto));
    assert!(auto.status.success(), "{al:?}");
    let run = Run::load(&tmp.path().join("auto"));
    if gpu {
        assert!(cuda.status.success() && al.is_empty(), "{cl:?} {al:?}");
        assert_eq!(sessions(&run), serde_json::json!({"detector": "CUDAExecutionProvider", "embedder": "CUDAExecutionProvider"}));
    } else {
        assert_eq!((cuda.status.code(), cl.len()), (Some(2), 1), "{cl:?}");
        assert!(cl[0].starts_with("error: --provider cuda: "), "{cl:?}");
        assert_eq!(al.len(), 1, "{al:?}");
        assert!(al[0].contains("running on the CPU"), "{al:?}");
        assert_eq!(sessions(&run), serde_json::json!({"detector": "CPUExecutionProvider", "embedder": "CPUExecutionProvider"}));
    }
}

/// Whether the NVIDIA driver's library is where the dynamic loader finds it (the loader's cache,
/// or `LD_LIBRARY_PATH`).
fn has_nvidia_driver() -> bool {
    let cache = std::process::Command::new("ldconfig").arg("-p").output().map(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1")).unwrap_or(false);
    let path = std::env::var_os("LD_LIBRARY_PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("libcuda.so.1").exists()));
    cache || path
}
