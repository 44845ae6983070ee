//! The one place that loads ONNX Runtime and builds sessions (as fastembed-rs does in
//! `common.rs`): every model gets the same thread settings, and every model's input/output
//! shapes are checked at load so a wrong model fails with the shape it should have had.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

/// Why the runtime or a model could not be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot load ONNX Runtime from {path}: {reason} (set EPISODE_RUN_ORT_LIB or run `make setup`)")]
    Runtime { path: PathBuf, reason: String },
    #[error("model not found: {path}")]
    ModelMissing { path: PathBuf },
    #[error("cannot load model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("model {path} is not a {role}: expected {expected}, found {found}")]
    Shape { path: PathBuf, role: &'static str, expected: String, found: String },
    #[error("{role} inference failed: {reason}")]
    Run { role: &'static str, reason: String },
}

/// The runtime library actually loaded, for the manifest.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuntimeInfo {
    pub library: PathBuf,
    pub version: String,
    pub build_info: String,
    pub execution_provider: &'static str,
}

static ENVIRONMENT: OnceLock<Result<(ort::environment::Environment, RuntimeInfo), String>> = OnceLock::new();

/// Loads the ONNX Runtime shared library once per process; later calls return the first result.
pub fn init_runtime(library: &Path) -> Result<RuntimeInfo, OnnxError> {
    let result = ENVIRONMENT.get_or_init(|| {
        if !library.is_file() {
            return Err("file not found".to_string());
        }
        let env = ort::init_from(library).map_err(|e| e.to_string())?.with_name("episode-run").with_telemetry(false).build().map_err(|e| e.to_string())?;
        let info = RuntimeInfo {
            library: library.to_path_buf(),
            version: library_version(library)?,
            build_info: ort::info().to_string(),
            execution_provider: "CPUExecutionProvider",
        };
        Ok((env, info))
    });
    match result {
        Ok((_, info)) => Ok(info.clone()),
        Err(reason) => Err(OnnxError::Runtime { path: library.to_path_buf(), reason: reason.clone() }),
    }
}

/// The version string the library reports (`OrtGetApiBase()->GetVersionString()`); ort does
/// not expose it, and the manifest must say which runtime produced the embeddings.
fn library_version(library: &Path) -> Result<String, String> {
    // SAFETY: the library is already loaded by ort (dlopen returns the same handle);
    // OrtGetApiBase has this signature in every ONNX Runtime release, and the string it
    // returns is static and NUL-terminated.
    unsafe {
        let lib = libloading::Library::new(library).map_err(|e| e.to_string())?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> = lib.get(b"OrtGetApiBase").map_err(|e| e.to_string())?;
        let base = get_base();
        if base.is_null() {
            return Err("OrtGetApiBase returned null".into());
        }
        let v = ((*base).GetVersionString)();
        Ok(std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// A dimension a model must have: a fixed size, or "any" (symbolic or fixed, either is accepted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dim {
    Fixed(i64),
    Any,
}

/// What to say when the system refuses a thread.
pub const THREAD_LIMIT_HINT: &str = "a thread limit was reached (`ulimit -u`, or the cgroup's pids.max); try fewer --threads";

/// Builds a CPU session with `threads` intra-op threads, one inter-op thread and spinning off, so
/// the process never has more busy threads than the budget it was given.
pub fn session(model: &Path, threads: usize) -> Result<Session, OnnxError> {
    if !model.is_file() {
        return Err(OnnxError::ModelMissing { path: model.to_path_buf() });
    }
    let env = match ENVIRONMENT.get() {
        Some(Ok((env, _))) => env,
        _ => return Err(OnnxError::Model { path: model.to_path_buf(), reason: "ONNX Runtime is not loaded".into() }),
    };
    let err = |e: &dyn std::fmt::Display| {
        let reason = e.to_string();
        // ONNX Runtime starts its pool threads here and reports a failure as a C++ source line.
        let reason = match reason.find("pthread_create failed") {
            Some(at) => format!("ONNX Runtime could not start its threads ({}); {THREAD_LIMIT_HINT}", &reason[at..]),
            None => reason,
        };
        OnnxError::Model { path: model.to_path_buf(), reason }
    };
    Session::builder(env)
        .map_err(|e| err(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(&e))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| err(&e))?
        .with_inter_threads(1)
        .map_err(|e| err(&e))?
        .with_parallel_execution(false)
        .map_err(|e| err(&e))?
        .with_intra_op_spinning(false)
        .map_err(|e| err(&e))?
        .with_inter_op_spinning(false)
        .map_err(|e| err(&e))?
        .commit_from_file(model)
        .map_err(|e| err(&e))
}

/// The dims of a session's tensor input or output (`-1` for symbolic), by name.
pub fn dims(outlets: &[ort::value::Outlet], name: &str) -> Option<Vec<i64>> {
    outlets.iter().find(|o| o.name() == name).and_then(|o| o.dtype().tensor_shape()).map(|s| s.iter().copied().collect())
}

/// Checks that the named tensor exists with the expected rank and fixed dims.
pub fn check_dims(model: &Path, role: &'static str, found: Option<Vec<i64>>, name: &str, expected: &[Dim]) -> Result<Vec<i64>, OnnxError> {
    let want = describe(name, expected);
    let shape_err = |found: String| OnnxError::Shape { path: model.to_path_buf(), role, expected: want.clone(), found };
    let dims = found.ok_or_else(|| shape_err(format!("no tensor named `{name}`")))?;
    let ok = dims.len() == expected.len()
        && dims.iter().zip(expected).all(|(&d, e)| match e {
            Dim::Fixed(v) => d == *v || d < 0,
            Dim::Any => true,
        });
    if ok {
        Ok(dims)
    } else {
        Err(shape_err(format!("`{name}` {dims:?}")))
    }
}

fn describe(name: &str, dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => v.to_string(),
            Dim::Any => "?".into(),
        })
        .collect();
    format!("`{name}` [{}]", parts.join(", "))
}
