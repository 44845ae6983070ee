//! The one place that loads ONNX Runtime and builds sessions (as fastembed-rs does in
//! `common.rs`): every model gets the same thread settings and execution provider, and every
//! model's input/output shapes are checked at load so a wrong model fails with the shape it
//! should have had.
//!
//! Execution providers fail silently in ONNX Runtime by default (a CUDA session that cannot
//! start runs on the CPU and says nothing). Here a requested provider is registered with ort's
//! error-on-failure: `--provider cuda` that cannot run is an error, `auto` falls back to the CPU
//! and says why, and every session's provider is recorded for the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

pub use crate::cli::Provider;

/// Why the runtime or a model could not be used. Each variant names the file.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot load ONNX Runtime from {path}: {reason} (set EPISODE_RUN_ORT_LIB or run `make setup`)")]
    Runtime { path: PathBuf, reason: String },
    #[error("--provider cuda: {reason}")]
    Cuda { reason: String },
    #[error("model not found: {path}")]
    ModelMissing { path: PathBuf },
    #[error("cannot load model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("model {path} is not a {role}: expected {expected}, found {found}")]
    Shape { path: PathBuf, role: &'static str, expected: String, found: String },
    #[error("{role} inference failed: {reason}")]
    Run { role: &'static str, reason: String },
}

pub const CPU: &str = "CPUExecutionProvider";
pub const CUDA: &str = "CUDAExecutionProvider";
/// ONNX Runtime's CUDA provider, beside the runtime library in its CUDA build.
const CUDA_PROVIDER_LIB: &str = "libonnxruntime_providers_cuda.so";
/// The NVIDIA driver's user-space library: there is no GPU to use without it.
const CUDA_DRIVER_LIB: &str = "libcuda.so.1";
/// The CUDA and cuDNN libraries `make setup-gpu` installs (`<gpu>/cuda/`), in load order: each
/// after the ones it needs. The CUDA provider finds them loaded by their sonames.
const CUDA_LIBS: &[&str] = &[
    "libnvJitLink.so.13",
    "libcudart.so.13",
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libnvrtc.so.13",
    "libcurand.so.10",
    "libcufft.so.12",
    "libcudnn_graph.so.9",
    "libcudnn_engines_runtime_compiled.so.9",
    "libcudnn_engines_precompiled.so.9",
    "libcudnn_heuristic.so.9",
    "libcudnn_ops.so.9",
    "libcudnn_cnn.so.9",
    "libcudnn_adv.so.9",
    "libcudnn.so.9",
];

/// The runtime library actually loaded and what each model runs on, for the manifest.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuntimeInfo {
    pub library: PathBuf,
    pub version: String,
    pub build_info: String,
    /// What was asked for (`--provider`).
    pub provider: Provider,
    /// The provider the sessions run on (`CUDAExecutionProvider` or `CPUExecutionProvider`;
    /// both, by role, if they differ).
    pub execution_provider: String,
    /// Each model's provider, by role (detector, embedder); a role whose sessions (one per
    /// model worker) run on different providers lists them, joined by `+`.
    pub sessions: BTreeMap<&'static str, String>,
    /// Why `auto` runs on the CPU though the CUDA build is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
    version: String,
    provider: Provider,
    /// Whether sessions try CUDA (until one fails under `auto`).
    cuda: Mutex<CudaState>,
}

#[derive(Clone, Debug, PartialEq)]
enum CudaState {
    /// Sessions are built on CUDA; under `auto` the first failure turns this to `Off`.
    Try,
    /// Every session runs on the CPU; with the reason `auto` gave up, if it did.
    Off(Option<String>),
}

static RUNTIME: OnceLock<Result<Runtime, OnnxError>> = OnceLock::new();
/// The providers each role's sessions were built on.
static SESSIONS: Mutex<BTreeMap<&'static str, BTreeSet<&'static str>>> = Mutex::new(BTreeMap::new());

/// Loads the ONNX Runtime shared library once per process, ready to build sessions on
/// `provider`; later calls return the first result. `--provider cuda` fails here when the
/// library is not the CUDA build or the CUDA libraries do not load.
pub fn init_runtime(library: &Path, provider: Provider) -> Result<(), OnnxError> {
    let result = RUNTIME.get_or_init(|| {
        let runtime_err = |reason: String| OnnxError::Runtime { path: library.to_path_buf(), reason };
        if !library.is_file() {
            return Err(runtime_err("file not found".into()));
        }
        let env = ort::init_from(library)
            .map_err(|e| runtime_err(e.to_string()))?
            .with_name("episode-run")
            .with_telemetry(false)
            .build()
            .map_err(|e| runtime_err(e.to_string()))?;
        let version = library_version(library).map_err(runtime_err)?;
        // `cpu` never probes for CUDA (no driver load, no CUDA library preload).
        let cuda = match provider {
            Provider::Cpu => CudaState::Off(None),
            // No CUDA build: the CPU, as before `make setup-gpu`, and nothing to say.
            Provider::Auto if !has_cuda_provider(library) => CudaState::Off(None),
            Provider::Auto | Provider::Cuda => match cuda_ready(library) {
                Ok(()) => CudaState::Try,
                Err(reason) if provider == Provider::Cuda => return Err(OnnxError::Cuda { reason }),
                Err(reason) => {
                    warn_fallback(&reason);
                    CudaState::Off(Some(reason))
                }
            },
        };
        Ok(Runtime { env, library: library.to_path_buf(), version, provider, cuda: Mutex::new(cuda) })
    });
    result.as_ref().map(|_| ()).map_err(OnnxError::clone)
}

/// The runtime loaded and the provider of every session built so far; `None` before
/// [`init_runtime`] succeeded.
pub fn runtime_info() -> Option<RuntimeInfo> {
    let runtime = RUNTIME.get()?.as_ref().ok()?;
    let sessions: BTreeMap<&'static str, String> = lock(&SESSIONS).iter().map(|(role, on)| (*role, on.iter().copied().collect::<Vec<_>>().join("+"))).collect();
    let providers: BTreeSet<&str> = sessions.values().map(String::as_str).collect();
    let execution_provider = match providers.len() {
        0 => CPU.to_string(),
        1 => providers.iter().copied().collect(),
        _ => sessions.iter().map(|(role, p)| format!("{role}: {p}")).collect::<Vec<_>>().join(", "),
    };
    // Only `auto` gives up with a reason: `cpu` never tries and `cuda` fails instead.
    let fallback = match &*lock(&runtime.cuda) {
        CudaState::Off(reason) => reason.clone(),
        CudaState::Try => None,
    };
    Some(RuntimeInfo {
        library: runtime.library.clone(),
        version: runtime.version.clone(),
        build_info: ort::info().to_string(),
        provider: runtime.provider,
        execution_provider,
        sessions,
        fallback,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn has_cuda_provider(library: &Path) -> bool {
    library.with_file_name(CUDA_PROVIDER_LIB).is_file()
}

/// Whether `library` is the CUDA build and the CUDA libraries it needs load; if not, why.
/// `make setup-gpu` puts them in `<gpu>/cuda/` beside the library's `<gpu>/lib/`; without that
/// folder they are left to the system's loader (a CUDA install on the library path).
fn cuda_ready(library: &Path) -> Result<(), String> {
    if !has_cuda_provider(library) {
        return Err(format!(
            "{} is the CPU build of ONNX Runtime (no {CUDA_PROVIDER_LIB} beside it); `make setup-gpu` installs the CUDA build",
            library.display()
        ));
    }
    // SAFETY: the NVIDIA driver's library, loaded to be kept (as ort's preload does); its
    // initialisers are the driver's own.
    if unsafe { libloading::Library::new(CUDA_DRIVER_LIB) }.map(std::mem::ManuallyDrop::new).is_err() {
        return Err(format!("no NVIDIA driver here ({CUDA_DRIVER_LIB} does not load), so no GPU to run on"));
    }
    let Some(dir) = library.parent().and_then(Path::parent).map(|gpu| gpu.join("cuda")).filter(|d| d.is_dir()) else { return Ok(()) };
    for name in CUDA_LIBS {
        let path = dir.join(name);
        ort::util::preload_dylib(&path).map_err(|e| format!("cannot load {}: {e} (rerun `make setup-gpu`)", path.display()))?;
    }
    Ok(())
}

fn warn_fallback(reason: &str) {
    crate::log::event(
        "warning",
        Some(&format!(
            "warning: CUDA cannot run the models ({reason}); running on the CPU (--provider cpu says so up front, --provider cuda makes this an error)"
        )),
        serde_json::json!({"provider": "auto", "fallback": reason}),
    );
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

/// Builds the `role` model's session with `threads` intra-op threads, one inter-op thread and
/// spinning off, so the process never has more busy threads than the budget it was given; on
/// CUDA when the runtime was loaded to try it.
pub fn session(model: &Path, role: &'static str, threads: usize) -> Result<Session, OnnxError> {
    if !model.is_file() {
        return Err(OnnxError::ModelMissing { path: model.to_path_buf() });
    }
    let Some(Ok(runtime)) = RUNTIME.get() else {
        return Err(OnnxError::Model { path: model.to_path_buf(), reason: "ONNX Runtime is not loaded".into() });
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
    let try_cuda = *lock(&runtime.cuda) == CudaState::Try;
    if try_cuda {
        let cuda = ort::ep::CUDA::default().build().error_on_failure();
        // Registration fails without the CUDA libraries or a driver; the commit, without a GPU.
        let built = builder(&runtime.env, threads)
            .map_err(|e| err(&e))?
            .with_execution_providers([cuda])
            .map_err(|e| e.to_string())
            .and_then(|mut b| b.commit_from_file(model).map_err(|e| e.to_string()));
        match built {
            Ok(session) => {
                lock(&SESSIONS).entry(role).or_default().insert(CUDA);
                return Ok(session);
            }
            Err(reason) if runtime.provider == Provider::Cuda => {
                return Err(OnnxError::Cuda { reason: format!("cannot run {} on CUDA: {}", model.display(), one_line(&reason)) });
            }
            Err(reason) => {
                let mut state = lock(&runtime.cuda);
                if *state == CudaState::Try {
                    let reason = one_line(&reason);
                    warn_fallback(&reason);
                    *state = CudaState::Off(Some(reason));
                }
            }
        }
    }
    let session = builder(&runtime.env, threads).map_err(|e| err(&e))?.commit_from_file(model).map_err(|e| err(&e))?;
    lock(&SESSIONS).entry(role).or_default().insert(CPU);
    Ok(session)
}

/// ONNX Runtime's errors can span lines (a C++ trace); the manifest and the terminal get one.
fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A session builder with this process's thread settings.
fn builder(env: &ort::environment::Environment, threads: usize) -> ort::Result<SessionBuilder> {
    Ok(Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(threads.max(1))?
        .with_inter_threads(1)?
        .with_parallel_execution(false)?
        .with_intra_op_spinning(false)?
        .with_inter_op_spinning(false)?)
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
