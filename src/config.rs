//! Raw flags + TOML → one validated [`HarvestConfig`]. All up-front checks happen here, once:
//! the config parses and is in range, the out dir is (or can be made) a writable directory, and
//! the runtime library and models are located. Nothing later re-reads flags or files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cli::{HarvestArgs, IdentifyArgs, PeopleArgs, S3Args, SettingsArgs, UploadArgs};
use crate::detect::DetectParams;
use crate::identify::MatchParams;
use crate::track::TrackParams;

/// The defaults, compiled in so the binary works from any directory.
pub const DEFAULT_TOML: &str = include_str!("../configs/default.toml");

/// Bounds on settings that size memory or threads, so nothing out of range reaches a dependency.
const MAX_INPUT_SIZE: u32 = 4096;
const MAX_BATCH: usize = 256;
const MAX_FACES: usize = 10_000;
/// The most embedded faces `people.min_track_faces` may ask of a track.
const MAX_TRACK_FACES: u64 = 10_000;
const MAX_MEM_BUDGET_MB: u64 = 1 << 20;
const MAX_TRACK_REFRESH: u32 = 10_000;
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// `--threads` at most this many times the cores available (and never above 256).
const THREADS_PER_CORE: usize = 4;
const MAX_THREADS: usize = 256;

/// Env var naming the ONNX Runtime shared library.
pub const ORT_LIB_ENV: &str = "EPISODE_RUN_ORT_LIB";
/// Env var naming the folder `make setup` filled (runtime library, models).
pub const HOME_ENV: &str = "EPISODE_RUN_HOME";
/// Runtime library file inside the set-up folder.
pub const ORT_LIB_FILE: &str = "lib/libonnxruntime.so.1.31.1";
/// The CUDA build of the same runtime, inside the set-up folder (`make setup-gpu`).
pub const GPU_ORT_LIB_FILE: &str = "gpu/lib/libonnxruntime.so.1.31.1";
pub const DEFAULT_DETECTOR: &str = "models/face_detection_yunet_2023mar_dynamic.onnx";
pub const DEFAULT_EMBEDDER: &str = "models/face_recognition_sface_2021dec_fp32.onnx";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// How much of the pipeline runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Full,
    DetectOnly,
    DecodeOnly,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCfg {
    pub mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub stride: u64,
    /// Let FFmpeg skip non-reference frames (faster decoding; the sampled set changes).
    pub skip_nonref: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    pub min_face: f64,
    pub det_threshold: f64,
    pub min_blur: f64,
    pub max_yaw: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cuts {
    pub ratio: f64,
    pub min_score: f64,
    pub min_shot: u64,
}

impl Cuts {
    pub fn params(&self) -> crate::track::cuts::CutParams {
        crate::track::cuts::CutParams { ratio: self.ratio as f32, min_score: self.min_score as f32, min_shot: self.min_shot }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embed {
    pub batch: bool,
    pub batch_size: usize,
    pub mem_budget_mb: u64,
    pub every: EmbedEvery,
    /// With `every = "track"`: a track embeds again after this many of its faces went unembedded.
    pub track_refresh: u32,
}

/// Which faces the embedder sees; defined with the flag that sets it.
pub use crate::cli::EmbedEvery;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub threads: usize,
    /// Settings written before providers existed (a season plan, a checkpoint) mean `auto`.
    #[serde(default)]
    pub provider: Provider,
}

/// Where the models run; defined with the flag that sets it.
pub use crate::cli::Provider;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub detector: PathBuf,
    pub embedder: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressCfg {
    pub interval_s: f64,
    /// Seconds between checkpoints (outputs synced, state recorded) that a killed run resumes from.
    pub checkpoint_s: f64,
}

/// Every tunable, as in `configs/default.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub run: RunCfg,
    pub sampling: Sampling,
    pub detect: DetectParams,
    pub quality: Quality,
    pub embed: Embed,
    pub runtime: Runtime,
    pub models: Models,
    pub progress: ProgressCfg,
    pub track: TrackParams,
    pub cuts: Cuts,
    pub identify: MatchParams,
    pub people: crate::people::PeopleParams,
}

impl Settings {
    /// The compiled-in defaults with `overlay` (a TOML document, possibly partial) merged on top.
    pub fn layered(overlay: Option<(&Path, &str)>) -> Result<Self, ConfigError> {
        let builtin = Path::new("configs/default.toml");
        let parse = |path: &Path, text: &str| {
            text.parse::<toml::Table>().map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: one_line(&e, Some(text)) })
        };
        let mut table = parse(builtin, DEFAULT_TOML)?;
        let origin = match overlay {
            Some((path, text)) => {
                merge(&mut table, parse(path, text)?);
                path
            }
            None => builtin,
        };
        table.try_into().map_err(|e: toml::de::Error| ConfigError::Parse { path: origin.to_path_buf(), message: one_line(&e, None) })
    }

    /// The defaults layered with the TOML file at `path`, if any: a regular file of at most
    /// 1 MiB (`/dev/zero` or a FIFO would be read forever).
    pub fn from_file(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(p) = path else { return Self::layered(None) };
        let read = |source| ConfigError::Read { path: p.to_path_buf(), source };
        let meta = std::fs::metadata(p).map_err(read)?;
        if !meta.is_file() {
            return Err(read(std::io::Error::other("not a regular file")));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(std::fs::File::open(p).map_err(read)?, MAX_CONFIG_BYTES + 1), &mut text).map_err(read)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(read(std::io::Error::other("larger than 1 MiB")));
        }
        Self::layered(Some((p, &text)))
    }

    /// The settings a harvest's flags ask for: the defaults, `--config`, then each flag given,
    /// checked (models and threads still open: [`HarvestConfig`] resolves them on the machine
    /// that runs).
    pub fn from_flags(args: &SettingsArgs) -> Result<Self, ConfigError> {
        let mut s = Settings::from_file(args.config.as_deref())?;
        if args.skip_nonref {
            s.sampling.skip_nonref = true;
        }
        if let Some(v) = args.stride {
            s.sampling.stride = v;
        }
        if args.detect_only {
            s.run.mode = Mode::DetectOnly;
        }
        if args.decode_only {
            s.run.mode = Mode::DecodeOnly;
        }
        if let Some(v) = args.threads {
            s.runtime.threads = v;
        }
        if let Some(v) = args.batch_embed() {
            s.embed.batch = v;
        }
        if let Some(v) = args.batch_size {
            s.embed.batch_size = v;
        }
        if let Some(v) = args.embed_mem_mb {
            s.embed.mem_budget_mb = v;
        }
        if let Some(v) = args.embed_every {
            s.embed.every = v;
        }
        if let Some(v) = args.provider {
            s.runtime.provider = v;
        }
        if let Some(v) = args.min_face {
            s.quality.min_face = v;
        }
        if let Some(v) = args.det_threshold {
            s.quality.det_threshold = v;
        }
        s.override_models(args.det_model.as_ref(), args.embed_model.as_ref());
        s.validate()?;
        Ok(s)
    }

    /// The model files these settings load on this machine (the installed ones where they
    /// name none).
    pub fn installed_models(&self) -> (PathBuf, PathBuf) {
        let (detector, embedder, _, _) = self.clone().resolve();
        (detector, embedder)
    }

    /// Model paths given on the command line win over the file.
    fn override_models(&mut self, detector: Option<&PathBuf>, embedder: Option<&PathBuf>) {
        if let Some(v) = detector {
            self.models.detector = v.clone();
        }
        if let Some(v) = embedder {
            self.models.embedder = v.clone();
        }
    }

    /// Fills in the installed models and the core count where the settings leave them open, and
    /// returns (detector, embedder, runtime library, threads).
    fn resolve(&mut self) -> (PathBuf, PathBuf, PathBuf, usize) {
        let home = setup_dir();
        let installed = |rel: &str| home.as_ref().map(|h| h.join(rel)).unwrap_or_else(|| PathBuf::from(".deps").join(rel));
        let pick = |configured: &Path, rel: &str| {
            if configured.as_os_str().is_empty() {
                installed(rel)
            } else {
                configured.to_path_buf()
            }
        };
        let detector = pick(&self.models.detector, DEFAULT_DETECTOR);
        let embedder = pick(&self.models.embedder, DEFAULT_EMBEDDER);
        self.models = Models { detector: detector.clone(), embedder: embedder.clone() };
        let ort_lib = ort_library(std::env::var_os(ORT_LIB_ENV).map(PathBuf::from), installed, self.runtime.provider);
        if self.runtime.threads == 0 {
            self.runtime.threads = cores();
        }
        (detector, embedder, ort_lib, self.runtime.threads)
    }

    /// `--threads` within what this machine can run: 4 × its cores, at most 256. Past that a
    /// run only starts threads that wait (2,250 for `--threads 1000`), or cannot start them.
    fn check_threads(&self) -> Result<(), ConfigError> {
        let max = (THREADS_PER_CORE * cores()).min(MAX_THREADS);
        match self.runtime.threads {
            n if n > max => {
                Err(ConfigError::Invalid(format!("--threads {n} is more than this machine can use: at most {max} (4 × {} cores, never above 256)", cores())))
            }
            _ => Ok(()),
        }
    }

    /// The settings that change a run's outputs, as the run identity records them: everything
    /// but the thread budget, the progress and checkpoint intervals, model paths (models are
    /// identified by their SHA-256) and how embedder calls are sized (`--no-batch-embed`,
    /// `--batch-size` and the memory budget give byte-identical outputs by contract). With
    /// `--embed-every face` the track-mode keys are left out too: they change nothing there, and
    /// runs made before they existed keep their identity.
    pub fn output_settings(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(all) = v.as_object_mut() {
            for section in ["runtime", "progress", "models"] {
                all.remove(section);
            }
            if let Some(embed) = all.get_mut("embed").and_then(|e| e.as_object_mut()) {
                for key in ["batch", "batch_size", "mem_budget_mb"] {
                    embed.remove(key);
                }
                if self.embed.every == EmbedEvery::Face {
                    embed.remove("every");
                    embed.remove("track_refresh");
                }
            }
        }
        v
    }

    /// Range checks that serde cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.sampling.stride == 0 {
            return bad("stride must be at least 1");
        }
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !unit(self.detect.min_score) || !unit(self.quality.det_threshold) || !unit(self.detect.nms_iou) {
            return bad("detect.min_score, detect.nms_iou and quality.det_threshold (--det-threshold) must be within 0..1");
        }
        if self.quality.min_face.is_nan() || self.quality.min_face < 0.0 {
            return bad("quality.min_face (--min-face) must be 0 or more");
        }
        if self.detect.input_size < 32 || !self.detect.input_size.is_multiple_of(32) {
            return bad("detect.input_size must be a positive multiple of 32");
        }
        if self.detect.input_size > MAX_INPUT_SIZE {
            return bad("detect.input_size must be at most 4096 (the detector input's longer side)");
        }
        if !(1..=MAX_BATCH).contains(&self.embed.batch_size) {
            return bad("embed.batch_size (--batch-size) must be within 1..256");
        }
        if !(1..=MAX_TRACK_REFRESH).contains(&self.embed.track_refresh) {
            return bad("embed.track_refresh must be within 1..10000 (1 embeds every face of a track)");
        }
        if self.embed.mem_budget_mb > MAX_MEM_BUDGET_MB {
            return bad("embed.mem_budget_mb (--embed-mem-mb) must be at most 1048576 (1 TiB; 0 sizes it from available memory)");
        }
        if !(1..=MAX_FACES).contains(&self.detect.max_faces) {
            return bad("detect.max_faces must be within 1..10000");
        }
        if !unit(self.cuts.min_score) || !unit(self.track.iou) || !unit(self.track.low_iou) || !unit(self.track.high_score) {
            return bad("cuts.min_score, track.iou, track.low_iou and track.high_score must be within 0..1");
        }
        if !(1.0..=100.0).contains(&self.cuts.ratio) {
            return bad("cuts.ratio must be within 1..100 (a cut's score over its neighbours' mean)");
        }
        if !(-1.0..=1.0).contains(&self.track.min_cosine) || !(-1.0..=1.0).contains(&self.identify.threshold) {
            return bad("track.min_cosine and identify.threshold (cosines) must be within -1..1");
        }
        let people = &self.people;
        if !(-1.0..=1.0).contains(&people.threshold) || !(-1.0..=1.0).contains(&people.attach_threshold) {
            return bad("people.threshold and people.attach_threshold (cosines) must be within -1..1");
        }
        if people.min_track_faces > MAX_TRACK_FACES {
            return bad("people.min_track_faces must be within 0..10000");
        }
        if !(0.0..=2.0).contains(&self.identify.min_margin) {
            return bad("identify.min_margin must be within 0..2");
        }
        if !(0.0..=90.0).contains(&self.quality.max_yaw) || self.quality.min_blur.is_nan() || self.quality.min_blur < 0.0 {
            return bad("quality.max_yaw must be within 0..90 degrees and quality.min_blur 0 or more");
        }
        if !(self.progress.checkpoint_s >= 0.0 && self.progress.checkpoint_s.is_finite()) {
            return bad("progress.checkpoint_s must be 0 (after every frame) or more seconds");
        }
        self.check_threads()?;
        if !(0.25..=2.0).contains(&self.progress.interval_s) {
            return bad("progress.interval_s must be within 0.25..2 (at most 4 writes a second, at least one every 2 s)");
        }
        Ok(())
    }
}

/// Cores this process may use (cgroup and affinity limits included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A TOML error as one line (toml's Display draws a multi-line snippet): the message, and the
/// line number when the error points into `text`.
fn one_line(e: &toml::de::Error, text: Option<&str>) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match (e.span(), text) {
        (Some(span), Some(text)) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        _ => msg,
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// A harvest, fully resolved and checked.
#[derive(Clone, Debug)]
pub struct HarvestConfig {
    pub input: PathBuf,
    pub out_dir: PathBuf,
    /// The settings in force after the file and the flags, as recorded in the manifest.
    pub settings: Settings,
    pub threads: usize,
    pub detector: PathBuf,
    pub embedder: PathBuf,
    pub ort_lib: PathBuf,
    pub quiet: bool,
    /// Write `report.html` when the run ends (`--no-report` skips it).
    pub report: bool,
    /// Cast photos to name faces and tracks after (`--seeds`).
    pub seeds: Option<PathBuf>,
    /// Harvest even when the out dir holds this run completed, or replace a different run.
    pub force: bool,
    /// Insist on continuing an unfinished run (an error when there is none).
    pub resume: bool,
    /// The `s3://` URL the input came from; `input` is then its local copy once fetched.
    pub source: Option<String>,
    /// Upload the completed run under this `s3://` prefix.
    pub upload: Option<String>,
    /// Where `s3://` inputs are downloaded to.
    pub cache_dir: PathBuf,
    pub remote: RemoteCfg,
    /// Called after each checkpoint (see [`CheckpointHook`]).
    pub after_checkpoint: Option<CheckpointHook>,
}

/// Called on the writer thread right after each checkpoint is saved, while the run folder holds
/// exactly what the checkpoint describes, with the out dir and whether the run is stopping on a
/// signal: how `season run` copies a running harvest to S3.
#[derive(Clone)]
pub struct CheckpointHook(pub Arc<CheckpointFn>);

/// See [`CheckpointHook`]: `(out_dir, stopping)`.
pub type CheckpointFn = dyn Fn(&Path, bool) + Send + Sync;

impl std::fmt::Debug for CheckpointHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointHook")
    }
}

impl HarvestConfig {
    /// One episode of a season: the plan's settings on this machine's models and cores, into a
    /// run folder in the task's cache, quiet (the task tells its own story), `after_checkpoint`
    /// publishing it as it goes.
    pub fn for_task(mut settings: Settings, input: PathBuf, out_dir: PathBuf, remote: RemoteCfg, hook: CheckpointHook) -> Result<Self, ConfigError> {
        settings.validate()?;
        let (detector, embedder, ort_lib, threads) = settings.resolve();
        Ok(Self {
            input,
            out_dir,
            settings,
            threads,
            detector,
            embedder,
            ort_lib,
            quiet: true,
            report: true,
            seeds: None,
            force: false,
            resume: false,
            source: None,
            upload: None,
            cache_dir: default_cache_dir(),
            remote,
            after_checkpoint: Some(hook),
        })
    }

    pub fn from_args(args: &HarvestArgs) -> Result<Self, ConfigError> {
        let mut s = Settings::from_flags(&args.settings)?;
        if args.seeds.is_some() && s.run.mode != Mode::Full {
            return Err(ConfigError::Invalid("--seeds needs the embedder: not with --detect-only or --decode-only".into()));
        }
        let (detector, embedder, ort_lib, threads) = s.resolve();

        let out_dir = match &args.out {
            Some(out) => out.clone(),
            None => default_out_dir(&args.input)?,
        };
        let source = args.input.to_str().filter(|t| t.starts_with(S3_SCHEME)).map(str::to_string);
        let upload = args.upload.clone();
        if let Some(u) = &upload {
            if !u.starts_with(S3_SCHEME) {
                return Err(ConfigError::Invalid(format!("--upload takes an s3://bucket/prefix/ URL, not {u:?}")));
            }
        }
        if (source.is_some() || upload.is_some()) && !cfg!(feature = "s3") {
            return Err(ConfigError::Invalid("this episode-run was built without S3 support (cargo feature \"s3\")".into()));
        }
        Ok(Self {
            input: args.input.clone(),
            out_dir,
            settings: s,
            threads,
            detector,
            embedder,
            ort_lib,
            quiet: args.quiet,
            report: !args.no_report,
            seeds: args.seeds.clone(),
            force: args.force,
            resume: args.resume,
            source,
            upload,
            cache_dir: args.cache_dir.clone().unwrap_or_else(default_cache_dir),
            remote: RemoteCfg::from_args(&args.s3)?,
            after_checkpoint: None,
        })
    }
}

const S3_SCHEME: &str = "s3://";

/// How to reach S3, checked. Secrets are not here: they stay in the AWS chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCfg {
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub concurrency: usize,
    pub part_size: u64,
}

impl RemoteCfg {
    pub const DEFAULT_CONCURRENCY: usize = 4;
    pub const DEFAULT_PART_MIB: u64 = 8;

    pub fn from_args(args: &S3Args) -> Result<Self, ConfigError> {
        let concurrency = args.s3_concurrency.unwrap_or(Self::DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err(ConfigError::Invalid(format!("--s3-concurrency must be 1..=64, not {concurrency}")));
        }
        let part_mib = args.s3_part_mib.unwrap_or(Self::DEFAULT_PART_MIB);
        // S3's own limits: parts of 5 MiB to 5 GiB.
        if !(5..=5120).contains(&part_mib) {
            return Err(ConfigError::Invalid(format!("--s3-part-mib must be 5..=5120 (S3's part limits), not {part_mib}")));
        }
        if let Some(e) = &args.s3_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::Invalid("--s3-endpoint must be an http:// or https:// URL".into()));
            }
        }
        Ok(Self { endpoint: args.s3_endpoint.clone(), path_style: args.s3_path_style, concurrency, part_size: part_mib << 20 })
    }
}

/// An `upload` of a completed run.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    pub run_dir: PathBuf,
    pub dest: String,
    pub remote: RemoteCfg,
    pub quiet: bool,
}

impl UploadConfig {
    pub fn from_args(args: &UploadArgs) -> Result<Self, ConfigError> {
        if !args.dest.starts_with(S3_SCHEME) {
            return Err(ConfigError::Invalid(format!("the destination must be an s3://bucket/prefix/ URL, not {:?}", args.dest)));
        }
        if !cfg!(feature = "s3") {
            return Err(ConfigError::Invalid("this episode-run was built without S3 support (cargo feature \"s3\")".into()));
        }
        Ok(Self { run_dir: args.run_dir.clone(), dest: args.dest.clone(), remote: RemoteCfg::from_args(&args.s3)?, quiet: args.quiet })
    }
}

/// `$XDG_CACHE_HOME/episode-run`, else `~/.cache/episode-run`, else `.cache/episode-run`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("episode-run")
}

/// A `floor` measurement of a completed run.
#[derive(Clone, Debug)]
pub struct FloorConfig {
    pub run_dir: PathBuf,
    /// Intra-op threads; `None` uses the run's own budget.
    pub threads: Option<usize>,
    pub ort_lib: PathBuf,
}

impl FloorConfig {
    pub fn from_args(args: &crate::cli::FloorArgs) -> Result<Self, ConfigError> {
        if args.threads == Some(0) {
            return Err(ConfigError::Invalid("--threads must be at least 1".into()));
        }
        let mut s = Settings::from_file(None)?;
        // The floor is CPU work: core-seconds of the run's model calls.
        s.runtime.provider = Provider::Cpu;
        let (_, _, ort_lib, _) = s.resolve();
        Ok(Self { run_dir: args.run_dir.clone(), threads: args.threads, ort_lib })
    }
}

/// An `identify` run, resolved and checked.
#[derive(Clone, Debug)]
pub struct IdentifyConfig {
    pub run_dir: PathBuf,
    pub seeds: PathBuf,
    pub settings: Settings,
    pub threads: usize,
    pub detector: PathBuf,
    pub embedder: PathBuf,
    pub ort_lib: PathBuf,
}

impl IdentifyConfig {
    pub fn from_args(args: &IdentifyArgs) -> Result<Self, ConfigError> {
        Self::new(&args.run_dir, &args.seeds, args.config.as_deref(), args.threads, args.det_model.as_ref(), args.embed_model.as_ref())
    }

    fn new(
        run_dir: &Path,
        seeds: &Path,
        config: Option<&Path>,
        threads: Option<usize>,
        det: Option<&PathBuf>,
        emb: Option<&PathBuf>,
    ) -> Result<Self, ConfigError> {
        let mut s = Settings::from_file(config)?;
        if let Some(v) = threads {
            s.runtime.threads = v;
        }
        s.override_models(det, emb);
        s.validate()?;
        let (detector, embedder, ort_lib, threads) = s.resolve();
        Ok(Self { run_dir: run_dir.to_path_buf(), seeds: seeds.to_path_buf(), settings: s, threads, detector, embedder, ort_lib })
    }
}

/// A `people` run, resolved and checked.
#[derive(Clone, Debug)]
pub struct PeopleConfig {
    pub run_dir: PathBuf,
    pub people: crate::people::PeopleParams,
    /// With `--seeds`: the tracks and faces are named first, as `identify` names them.
    pub identify: Option<IdentifyConfig>,
}

impl PeopleConfig {
    pub fn from_args(args: &PeopleArgs) -> Result<Self, ConfigError> {
        let s = Settings::from_file(args.config.as_deref())?;
        s.validate()?;
        let identify = match &args.seeds {
            Some(seeds) => Some(IdentifyConfig::new(&args.run_dir, seeds, args.config.as_deref(), args.threads, None, None)?),
            None => None,
        };
        Ok(Self { run_dir: args.run_dir.clone(), people: s.people, identify })
    }
}

/// `runs/<input stem>/`, when the stem is a plain name (an input called `...mp4` has the stem
/// `..`, which would put the run in the current directory).
pub fn default_out_dir(input: &Path) -> Result<PathBuf, ConfigError> {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "input".into());
    crate::names::safe_join(Path::new("runs"), &stem, "the input's file name").map_err(|e| ConfigError::Invalid(format!("{e}; pass --out")))
}

/// The ONNX Runtime library to load: `$EPISODE_RUN_ORT_LIB` when set; else, unless the models
/// must run on the CPU, the CUDA build where `make setup-gpu` installed it; else the CPU build.
fn ort_library(from_env: Option<PathBuf>, installed: impl Fn(&str) -> PathBuf, provider: Provider) -> PathBuf {
    if let Some(path) = from_env {
        return path;
    }
    let gpu = installed(GPU_ORT_LIB_FILE);
    if provider != Provider::Cpu && gpu.is_file() {
        gpu
    } else {
        installed(ORT_LIB_FILE)
    }
}

/// The folder `make setup` filled: `$EPISODE_RUN_HOME`, else a `.deps` folder beside or above the
/// executable (a cargo build lives in `<repo>/target/<profile>/`), else the one in the source tree
/// this binary was built from.
pub fn setup_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os(HOME_ENV) {
        return Some(PathBuf::from(h));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|d| d.join(".deps"))
        .find(|d| d.is_dir())
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps")).filter(|d| d.is_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> HarvestArgs {
        let mut argv = vec!["episode-run", "harvest", "/videos/ep42.mp4"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Harvest(h) => h,
            _ => unreachable!("harvest was parsed"),
        }
    }

    #[test]
    fn builtin_defaults_parse() {
        let s = Settings::layered(None).unwrap();
        assert_eq!(s.sampling.stride, 1);
        assert!(s.embed.batch);
        s.validate().unwrap();
    }

    #[test]
    fn overlay_merges_and_rejects_unknown_keys() {
        let s = Settings::layered(Some((Path::new("x.toml"), "[sampling]\nstride = 3\n"))).unwrap();
        assert_eq!(s.sampling.stride, 3);
        assert_eq!(s.detect.nms_iou, 0.3, "untouched keys keep their defaults");
        let err = Settings::layered(Some((Path::new("x.toml"), "[sampling]\nstrid = 3\n"))).unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("strid") && !err.contains('\n'), "{err}");
        let err = Settings::layered(Some((Path::new("y.toml"), "[sampling]\nstride = = 3\n"))).unwrap_err().to_string();
        assert!(err.contains("y.toml: line 2:") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[sampling]\nstride = 3\n[quality]\nmin_face = 50.0\n").unwrap();
        let cfg = HarvestConfig::from_args(&args(&["--config", file.to_str().unwrap(), "--stride", "4"])).unwrap();
        assert_eq!(cfg.settings.sampling.stride, 4);
        assert_eq!(cfg.settings.quality.min_face, 50.0);
    }

    #[test]
    fn a_report_is_written_unless_told_not_to() {
        assert!(HarvestConfig::from_args(&args(&[])).unwrap().report);
        assert!(!HarvestConfig::from_args(&args(&["--no-report"])).unwrap().report);
    }

    #[test]
    fn modes() {
        assert_eq!(HarvestConfig::from_args(&args(&[])).unwrap().settings.run.mode, Mode::Full);
        assert_eq!(HarvestConfig::from_args(&args(&["--detect-only"])).unwrap().settings.run.mode, Mode::DetectOnly);
        assert_eq!(HarvestConfig::from_args(&args(&["--decode-only"])).unwrap().settings.run.mode, Mode::DecodeOnly);
        assert!(HarvestConfig::from_args(&args(&["--detect-only", "--seeds", "x"])).is_err());
    }

    #[test]
    fn default_out_dir_uses_input_stem() {
        let cfg = HarvestConfig::from_args(&args(&[])).unwrap();
        assert_eq!(cfg.out_dir, PathBuf::from("runs/ep42"));
    }

    #[test]
    fn explicit_models_and_threads_are_kept() {
        let cfg = HarvestConfig::from_args(&args(&["--det-model", "d.onnx", "--threads", "3", "--no-batch-embed"])).unwrap();
        assert_eq!(cfg.detector, PathBuf::from("d.onnx"));
        assert_eq!(cfg.threads, 3);
        assert!(!cfg.settings.embed.batch);
        assert!(cfg.embedder.ends_with(DEFAULT_EMBEDDER));
    }

    #[test]
    fn the_provider_comes_from_the_flag_or_the_file_and_picks_the_runtime_build() {
        assert_eq!(HarvestConfig::from_args(&args(&[])).unwrap().settings.runtime.provider, Provider::Auto);
        assert_eq!(HarvestConfig::from_args(&args(&["--provider", "cuda"])).unwrap().settings.runtime.provider, Provider::Cuda);
        let file = Settings::layered(Some((Path::new("x.toml"), "[runtime]\nprovider = \"cpu\"\n"))).unwrap();
        assert_eq!(file.runtime.provider, Provider::Cpu);
        assert!(Settings::layered(Some((Path::new("x.toml"), "[runtime]\nprovider = \"gpu\"\n"))).is_err());

        let home = tempfile::tempdir().unwrap();
        let installed = |rel: &str| home.path().join(rel);
        let (cpu_lib, gpu_lib) = (installed(ORT_LIB_FILE), installed(GPU_ORT_LIB_FILE));
        for p in [Provider::Auto, Provider::Cpu, Provider::Cuda] {
            assert_eq!(ort_library(None, installed, p), cpu_lib, "no CUDA build installed: {p:?}");
        }
        std::fs::create_dir_all(gpu_lib.parent().unwrap()).unwrap();
        std::fs::write(&gpu_lib, b"").unwrap();
        assert_eq!(ort_library(None, installed, Provider::Auto), gpu_lib);
        assert_eq!(ort_library(None, installed, Provider::Cuda), gpu_lib);
        assert_eq!(ort_library(None, installed, Provider::Cpu), cpu_lib);
        assert_eq!(ort_library(Some(PathBuf::from("/x/ort.so")), installed, Provider::Cuda), PathBuf::from("/x/ort.so"));
    }

    #[test]
    fn s3_settings_are_checked() {
        let cfg = HarvestConfig::from_args(&args(&["--upload", "s3://bucket/runs/", "--s3-part-mib", "16"])).unwrap();
        assert_eq!(cfg.upload.as_deref(), Some("s3://bucket/runs/"));
        assert_eq!((cfg.remote.part_size, cfg.remote.concurrency), (16 << 20, RemoteCfg::DEFAULT_CONCURRENCY));
        assert_eq!(cfg.source, None);
        for bad in [&["--upload", "runs/"][..], &["--s3-part-mib", "4"], &["--s3-concurrency", "0"], &["--s3-endpoint", "127.0.0.1:9000"]] {
            assert!(HarvestConfig::from_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(HarvestConfig::from_args(&args(&["--stride", "0"])).is_err());
        assert!(HarvestConfig::from_args(&args(&["--det-threshold", "1.5"])).is_err());
        assert!(HarvestConfig::from_args(&args(&["--min-face=-3"])).is_err());
    }

    #[test]
    fn sizes_and_thread_counts_are_bounded() {
        let over = (4 * cores()).min(256) + 1;
        let err = HarvestConfig::from_args(&args(&["--threads", &over.to_string()])).unwrap_err().to_string();
        assert!(err.contains("--threads") && err.contains("at most"), "{err}");
        HarvestConfig::from_args(&args(&["--threads", &(over - 1).to_string()])).unwrap();
        assert!(HarvestConfig::from_args(&args(&["--batch-size", "257"])).is_err());
        assert!(HarvestConfig::from_args(&args(&["--embed-mem-mb", "2000000"])).is_err());
        for toml in ["[detect]\ninput_size = 32768\n", "[detect]\nmax_faces = 100000\n"] {
            let err = Settings::layered(Some((Path::new("x.toml"), toml))).and_then(|s| s.validate().map(|()| s)).unwrap_err().to_string();
            assert!(err.contains("at most") || err.contains("within"), "{toml}: {err}");
        }
    }

    #[test]
    fn a_config_file_is_a_small_regular_file() {
        for bad in ["/dev/zero", "/dev/urandom", "/"] {
            let err = Settings::from_file(Some(Path::new(bad))).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("not a regular file"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
        let err = Settings::from_file(Some(&big)).unwrap_err().to_string();
        assert!(err.contains("larger than 1 MiB"), "{err}");
    }

    #[test]
    fn a_default_out_dir_never_leaves_runs() {
        assert_eq!(default_out_dir(Path::new("/v/ep 1.mkv")).unwrap(), PathBuf::from("runs/ep 1"));
        for bad in ["/v/...mp4", "/v/..mp4", "/v/a\nb.mp4"] {
            let err = default_out_dir(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("--out"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_settings_that_change_outputs_identify_a_run() {
        let base = Settings::layered(None).unwrap();
        let mut same = base.clone();
        same.runtime.threads = 7;
        same.embed.batch = false;
        same.embed.batch_size = 3;
        same.embed.mem_budget_mb = 100;
        same.progress.interval_s = 1.5;
        same.progress.checkpoint_s = 60.0;
        same.models.detector = "elsewhere.onnx".into();
        assert_eq!(base.output_settings(), same.output_settings());
        let mut stride = base.clone();
        stride.sampling.stride = 9;
        let mut gate = base.clone();
        gate.quality.min_face = 80.0;
        let mut refresh = base.clone();
        refresh.embed.track_refresh = 99;
        assert_eq!(base.output_settings(), refresh.output_settings(), "the refresh changes nothing when every face is embedded");
        let mut track = base.clone();
        track.embed.every = EmbedEvery::Track;
        let mut track_refresh = track.clone();
        track_refresh.embed.track_refresh = 99;
        assert_ne!(track.output_settings(), track_refresh.output_settings(), "with every = track the refresh changes outputs");
        for other in [stride, gate, track] {
            assert_ne!(base.output_settings(), other.output_settings());
        }
    }
}
