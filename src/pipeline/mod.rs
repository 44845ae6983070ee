//! The only module that spawns threads and owns channels. A harvest runs as three stages:
//!
//! ```text
//! decode thread ──SampledFrame──▶ infer thread ──EmbeddedFrame──▶ writer (calling thread)
//! (FFmpeg, every frame,          (coordinator: detect, gate,      (tracks, identities, files,
//!  shot cuts)                     align, embed on model workers)   progress)
//! ```
//!
//! Channels are bounded, so memory does not grow with video length; shutdown is by dropping
//! senders. When a stage fails, the stages downstream see a closed channel and the ones upstream
//! a failed send; both stop quietly, and the error reported is the root cause (gifski's rule).
//! A [`CpuBudget`] of `--threads` permits keeps the busy threads of the process within the cap.

mod budget;
mod existing;
mod floor;
mod infer;
mod progress;
mod resume;
mod seeds;
mod sink;
mod spill;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError};

use crate::align::align_face;
use crate::align::quality::{landmarks_outside, laplacian_variance, yaw_degrees};
use crate::config::{ConfigError, HarvestConfig, Mode};
use crate::detect;
use crate::embed::batching::{max_crops_for, Packer};
use crate::embed::sface::SfaceEmbedder;
use crate::embed::Embedder;
use crate::log;
use crate::onnx::{self, OnnxError};
use crate::output::manifest::{Counts, EmbedBatching, Host, InputFacts, Manifest, ModelFile, ThreadSplit, Timings};
use crate::output::{self, CropsDir, OutputError, Progress, RunWriter, ShotRecord};
use crate::run_dir::{self, RunDirError, RunIdentity, Status};
use crate::track::cuts::CutDetector;
use crate::types::{Detection, FaceQuality, RgbImage, SkipReason};
use crate::video::{DecodeIssue, VideoDecoder, VideoError};
pub use budget::CpuBudget;
pub use floor::{floor, Floor};
use progress::{bar_line, eta, RateWindow};
pub use resume::Attempt;
use resume::{Checkpoint, DecodeState, Tail};
pub use seeds::{identify, IdentifySummary};
use sink::{context_crop, round_t, Sink};

/// Frames in flight between two stages.
const CHANNEL_DEPTH: usize = 4;
/// Decode problems listed in the manifest before they are only counted.
const MAX_LISTED_ISSUES: usize = 20;

/// A harvest that could not complete. Every variant is fatal (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("no frame could be decoded from {path}")]
    NoFrames { path: PathBuf },
    #[error("cannot read model {path}: {source}")]
    ModelRead { path: PathBuf, source: std::io::Error },
    #[error("the {stage} thread panicked")]
    Panicked { stage: &'static str },
    #[error(transparent)]
    Seeds(#[from] crate::identify::SeedError),
    #[error("seed image {path} has no usable face")]
    SeedWithoutFace { path: PathBuf },
    #[error("cannot read {path}: {reason}")]
    RunRead { path: PathBuf, reason: String },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{dir} holds a run with a different {what}; pass --force to replace it, or choose another --out")]
    OtherRun { dir: PathBuf, what: String },
    #[error("--resume: {dir} holds no unfinished run to resume")]
    NothingToResume { dir: PathBuf },
}

/// What a completed harvest did.
#[derive(Debug)]
pub struct HarvestSummary {
    pub out_dir: PathBuf,
    pub counts: Counts,
    pub wall_s: f64,
    /// What was lost, in one line, when decoding went past problems (frames lost, or the input
    /// ended early): exit 1, not 0.
    pub problem: Option<String>,
    /// The run stopped early on SIGINT/SIGTERM; its outputs hold every frame up to that point.
    pub interrupted: bool,
    /// The out dir already held this harvest, completed: nothing was done or written.
    pub already_harvested: bool,
}

/// A sampled frame on its way to inference, with its pixels and detector input when a
/// detector runs.
struct SampledFrame {
    idx: u64,
    t: f64,
    shot: u64,
    image: Option<RgbImage>,
    input: Option<detect::DetectorInput>,
    carry: Carry,
}

/// What rides along with a sampled frame to the writer: the decode state right after it (a
/// checkpoint taken after writing it continues from there) and the shots closed and problems
/// met since the previous sampled frame.
struct Carry {
    /// Decoding since the previous sampled frame, and this frame's detector input.
    decode_ms: f64,
    decode: DecodeState,
    closed_shots: Vec<ShotRecord>,
    issues: Vec<DecodeIssue>,
}

/// One face after the gates: measured, aligned when possible, embedded when it passed.
struct FaceOut {
    det: Detection,
    quality: FaceQuality,
    skip: Option<SkipReason>,
    embedding: Option<Vec<f32>>,
    aligned: Option<RgbImage>,
    context: RgbImage,
}

/// A sampled frame's faces, in detector order.
struct EmbeddedFrame {
    idx: u64,
    t: f64,
    shot: u64,
    faces: Vec<FaceOut>,
    embed_calls: u64,
    timing: FrameTiming,
    decode: DecodeState,
    closed_shots: Vec<ShotRecord>,
    issues: Vec<DecodeIssue>,
}

/// Milliseconds a sampled frame spent in each stage (a row of `timings.jsonl`).
#[derive(Default)]
struct FrameTiming {
    decode_ms: f64,
    detect_ms: f64,
    align_ms: f64,
    embed_ms: f64,
}

struct Shared {
    decoded: AtomicU64,
    sampled: AtomicU64,
}

/// Runs one harvest to completion. On failure after the out dir is ready, `progress.json` says
/// `failed` with the error, and no `faces.jsonl`/`embeddings.npy` of this run is published.
pub fn harvest(cfg: &HarvestConfig) -> Result<HarvestSummary, HarvestError> {
    let start = Instant::now();
    // Ours or refused before anything is written; held until the run is over.
    let _lock = run_dir::claim(&cfg.out_dir)?;
    if !cfg.force {
        match existing::check(cfg)? {
            existing::Existing::Done => {
                return Ok(HarvestSummary {
                    out_dir: cfg.out_dir.clone(),
                    counts: Counts::default(),
                    wall_s: start.elapsed().as_secs_f64(),
                    problem: None,
                    interrupted: false,
                    already_harvested: true,
                })
            }
            existing::Existing::Other(what) => return Err(HarvestError::OtherRun { dir: cfg.out_dir.clone(), what }),
            existing::Existing::Nothing | existing::Existing::Unfinished => {}
        }
    }
    let checkpoint = if cfg.force { None } else { Checkpoint::load(&cfg.out_dir) };
    if cfg.resume && checkpoint.is_none() {
        return Err(HarvestError::NothingToResume { dir: cfg.out_dir.clone() });
    }
    log::event("start", None, serde_json::json!({"input": cfg.input, "out_dir": cfg.out_dir, "threads": cfg.threads, "stride": cfg.settings.sampling.stride}));
    if let Some(c) = &checkpoint {
        let text = format!("resuming {}: frames 0-{} are already harvested", cfg.out_dir.display(), c.decode.next_frame.saturating_sub(1));
        log::event("resume", Some(&text), serde_json::json!({"next_frame": c.decode.next_frame, "faces": c.sink_faces()}));
    }
    let result = harvest_into_out_dir(cfg, start, checkpoint);
    if let Err(e) = &result {
        let failed = Progress {
            status: Status::Failed,
            frames_decoded: 0,
            frames_sampled: 0,
            frames_total: None,
            faces: 0,
            fps: 0.0,
            eta_s: None,
            elapsed_s: start.elapsed().as_secs_f64(),
            updated_at: output::now_rfc3339(),
            error: Some(e.to_string()),
        };
        // Best effort: the failure itself may be a full or vanished disk.
        let _ = failed.write_last(&cfg.out_dir.join(run_dir::PROGRESS));
    }
    result
}

fn harvest_into_out_dir(cfg: &HarvestConfig, start: Instant, checkpoint: Option<Checkpoint>) -> Result<HarvestSummary, HarvestError> {
    let started_at = output::now_rfc3339();
    let split = ThreadSplit::plan(cfg.threads, cfg.settings.run.mode != Mode::DecodeOnly);
    let input_meta = std::fs::metadata(&cfg.input).ok();
    let runtime = onnx::init_runtime(&cfg.ort_lib)?;
    let mut decoder = VideoDecoder::open(&cfg.input, split.decode, cfg.settings.sampling.stride)?;
    if cfg.settings.sampling.skip_nonref {
        decoder = decoder.skipping_nonref();
    }
    let run = run(cfg, decoder, split, start, checkpoint)?;
    let manifest = Manifest {
        tool: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("EPISODE_RUN_GIT_COMMIT"),
        config: serde_json::to_value(&cfg.settings).unwrap_or_default(),
        seeds: cfg.seeds.clone(),
        identity: run.identity,
        input: InputFacts {
            path: cfg.input.clone(),
            source: cfg.source.clone(),
            size_bytes: input_meta.as_ref().map_or(0, |m| m.len()),
            mtime_ns: input_meta.as_ref().map_or(0, run_dir::mtime_ns),
            blake3: run.input_blake3,
            video: run.video,
        },
        models: run.models,
        onnxruntime: runtime,
        host: Host::here(),
        threads: split,
        embed_batching: run.batching,
        started_at,
        finished_at: output::now_rfc3339(),
        wall_s: start.elapsed().as_secs_f64(),
        counts: run.counts.clone(),
        timings: run.timings,
        status: run.status,
        decode_issues: run.issues.iter().take(MAX_LISTED_ISSUES).cloned().collect(),
        files: run_dir::result_files(&cfg.out_dir)?,
        history: run.history,
    };
    output::write_json_atomic(&cfg.out_dir.join(run_dir::MANIFEST), &manifest)?;
    let done = Progress { status: run.status, eta_s: Some(0.0), updated_at: output::now_rfc3339(), ..run.last_progress };
    output::write_json_atomic(&cfg.out_dir.join(run_dir::PROGRESS), &done)?;
    if !run.interrupted_resumable {
        run_dir::clear_checkpoint(&cfg.out_dir)?;
    }
    let problem = problem_line(&cfg.input, &run.issues, &run.counts);
    Ok(HarvestSummary {
        out_dir: cfg.out_dir.clone(),
        counts: run.counts,
        wall_s: manifest.wall_s,
        problem,
        interrupted: run.status == Status::Interrupted,
        already_harvested: false,
    })
}

/// One line for everything decoding went past, or `None` when nothing was lost.
fn problem_line(input: &std::path::Path, issues: &[String], counts: &Counts) -> Option<String> {
    // A cut-off input is the news; the broken last packet that came with it is a detail.
    let first = issues.iter().find(|i| i.contains("ended early")).or(issues.first())?;
    let more = match issues.len() {
        1 => String::new(),
        n => format!(" and {} more problem(s)", n - 1),
    };
    Some(format!("{}: {first}{more}; harvested the {} frames that decoded, see manifest.json", input.display(), counts.frames_decoded))
}

struct RunResult {
    /// Done, done with errors, or interrupted.
    status: Status,
    /// Interrupted with a checkpoint on disk: keep it for the next run.
    interrupted_resumable: bool,
    history: Vec<Attempt>,
    identity: RunIdentity,
    input_blake3: Option<String>,
    batching: EmbedBatching,
    video: crate::video::VideoInfo,
    models: BTreeMap<&'static str, ModelFile>,
    counts: Counts,
    timings: Timings,
    issues: Vec<String>,
    last_progress: Progress,
}

fn run(cfg: &HarvestConfig, decoder: VideoDecoder, split: ThreadSplit, start: Instant, checkpoint: Option<Checkpoint>) -> Result<RunResult, HarvestError> {
    let started_at = output::now_rfc3339();
    let (sink_state, checkpoint) = match checkpoint.map(Checkpoint::split) {
        Some((sink, point)) => (Some(sink), Some(point)),
        None => (None, None),
    };
    let video = decoder.info().clone();
    let mode = cfg.settings.run.mode;
    let detect = &cfg.settings.detect;
    // Start-up is each worker's sessions and two model hashes: run them side by side, as many
    // at a time as the budget allows (each is one busy thread).
    let loading = CpuBudget::new(cfg.threads);
    let (workers, models) = thread::scope(|s| {
        let hashes: Vec<_> = [("detector", &cfg.detector, mode != Mode::DecodeOnly), ("embedder", &cfg.embedder, mode == Mode::Full)]
            .into_iter()
            .filter(|m| m.2)
            .map(|(role, path, _)| {
                let loading = &loading;
                s.spawn(move || {
                    loading.run(1, || ModelFile::hash(path).map(|f| (role, f)).map_err(|source| HarvestError::ModelRead { path: path.clone(), source }))
                })
            })
            .collect();
        let n = split.worker_threads;
        let sessions: Vec<_> = (0..split.workers)
            .map(|_| {
                let loading = &loading;
                let embedder = s.spawn(move || match mode {
                    Mode::Full => loading.run(1, || SfaceEmbedder::load(&cfg.embedder, n)).map(Some),
                    _ => Ok(None),
                });
                let detector = s.spawn(move || loading.run(1, || detect::load(&cfg.detector, n, detect.clone(), detect.family)));
                (detector, embedder)
            })
            .collect();
        let workers: Result<Vec<infer::Models>, HarvestError> =
            sessions.into_iter().map(|(d, e)| Ok(infer::Models { detector: join_scoped(d)?, embedder: join_scoped(e)? })).collect();
        let models: Result<BTreeMap<_, _>, HarvestError> = hashes.into_iter().map(join_scoped).collect();
        (workers, models)
    });
    let (mut workers, models) = (workers?, models?);
    let identity = resume::identity(cfg, &models)?;
    let gallery = match (&cfg.seeds, workers.first_mut()) {
        (Some(dir), Some(infer::Models { detector, embedder: Some(e) })) => Some(seeds::build_gallery(dir, detector.as_mut(), e, &cfg.settings.quality)?),
        _ => None,
    };
    let dim = workers.first().and_then(|m| m.embedder.as_ref()).map_or(0, |e| e.dim());
    let (mut writer, crops) = match &checkpoint {
        Some(c) => (RunWriter::resume(&cfg.out_dir, dim, c.position)?, CropsDir::resume(&cfg.out_dir)?),
        None => {
            // A fresh run: whatever run the folder held goes first, its manifest before the
            // rest, so its outputs are never seen beside this run's (the input and models
            // have loaded by now, so a run that cannot start leaves the old one in place).
            run_dir::clear_results(&cfg.out_dir)?;
            (RunWriter::create(&cfg.out_dir, dim)?, CropsDir::create(&cfg.out_dir)?)
        }
    };
    let batching = EmbedBatching::plan(&cfg.settings.embed);

    let budget = Arc::new(CpuBudget::new(cfg.threads));
    let (first_frame, first_sampled) = checkpoint.as_ref().map_or((0, 0), |c| (c.decode.next_frame, c.decode.sampled));
    let decoded_before = checkpoint.as_ref().and_then(|c| c.tail.as_ref()).map_or(first_frame, |t| t.frames_decoded);
    let shared = Arc::new(Shared { decoded: AtomicU64::new(decoded_before), sampled: AtomicU64::new(first_sampled) });
    let (frame_tx, frame_rx) = bounded::<SampledFrame>(SAMPLED_AHEAD);
    let (face_tx, face_rx) = bounded::<EmbeddedFrame>(CHANNEL_DEPTH);

    let plan = workers.first().map(|m| m.detector.input_plan());
    let mut decoder = match plan {
        // The decoder scales each sampled frame for the detector as it converts it.
        Some(plan) => decoder.with_scaled(Box::new(move |w, h| plan.content_size(w, h))),
        None => decoder.without_images(),
    };
    let mut side = DecodeSide::new(&cfg.settings.cuts, checkpoint.as_ref().map(|c| &c.decode));
    let finished_tail = checkpoint.as_ref().and_then(|c| c.tail.clone());
    let resume_at = checkpoint.as_ref().filter(|c| c.tail.is_none()).map(|c| c.decode.clone());
    let decode_handle = {
        let (budget, shared) = (budget.clone(), shared.clone());
        thread::Builder::new()
            .name("decode".into())
            .spawn(move || -> Result<DecodeStats, VideoError> {
                let mut stats = DecodeStats::default();
                if let Some(tail) = finished_tail {
                    // Every frame was done before: only the finalisation is left.
                    stats.tail = tail;
                    return Ok(stats);
                }
                if let Some(at) = resume_at {
                    budget.run_first(split.decode, || decoder.resume_after(at.next_frame, at.pts, at.t))?;
                }
                loop {
                    // Up to the next sampled frame, letterboxed for the detector here so the
                    // workers only run models; the permits are not held while the frame waits.
                    let (frame, ended) = budget.run_first(split.decode, || decode_next(&mut decoder, &mut side, plan.as_ref(), &mut stats, &shared));
                    let ended = ended?;
                    if let Some(frame) = frame {
                        if frame_tx.send(frame).is_err() {
                            return Ok(stats);
                        }
                    }
                    if ended {
                        stats.tail.frames_decoded = shared.decoded.load(Ordering::Relaxed);
                        stats.tail.shots = side.finish();
                        if !stats.interrupted {
                            stats.tail.input_blake3 = Some(decoder.input_blake3()?);
                        }
                        return Ok(stats);
                    }
                }
            })
            .map_err(|_| HarvestError::Panicked { stage: "decode" })?
    };

    let infer_plan = infer::Plan {
        batch: cfg.settings.embed.batch,
        packer: Packer::new(cfg.settings.embed.batch_size, batching.max_crops_per_call),
        gates: cfg.settings.quality.clone(),
        worker_threads: split.worker_threads,
    };
    let infer_handle = {
        let budget = budget.clone();
        thread::Builder::new()
            .name("infer".into())
            .spawn(move || infer::run(frame_rx, face_tx, workers, infer_plan, &budget))
            .map_err(|_| HarvestError::Panicked { stage: "infer" })?
    };

    let mut history = checkpoint.as_ref().map(|c| c.history.clone()).unwrap_or_default();
    let this = Attempt { started_at, ended_at: String::new(), first_frame, frames_done: first_frame };
    let (spill, sink_state) = match sink_state {
        Some(state) => {
            let (spill, restored) = spill::Spill::resume(&cfg.out_dir, dim, state.spill())?;
            (spill, Some((state, restored)))
        }
        None => (spill::Spill::create(&cfg.out_dir, dim)?, None),
    };
    let sink = Sink::new(&mut writer, &crops, spill, gallery.as_ref(), cfg.settings.identify.clone(), cfg.settings.track.clone(), sink_state)?;
    let mut keeper = Keeper { out_dir: &cfg.out_dir, identity: identity.clone(), history: history.clone(), this, last: checkpoint.map(|c| c.decode) };
    let written = write_stage(cfg, &video, sink, face_rx, &shared, start, &mut keeper);
    // Root cause first: a decoder error explains an empty or short run better than anything
    // downstream; an inference error explains a writer that saw the channel close.
    let decoded = decode_handle.join().map_err(|_| HarvestError::Panicked { stage: "decode" })??;
    let frames_split = infer_handle.join().map_err(|_| HarvestError::Panicked { stage: "infer" })??;
    let (mut sink, last_progress) = written?;

    let tail = decoded.tail.clone();
    if !decoded.interrupted {
        // Every frame is done: a crash from here on only redoes this finalisation.
        keeper.save(&mut sink, Some(tail.clone()))?;
        if std::env::var_os(FAULT_ENV).is_some_and(|v| v == "finalise") {
            std::process::abort();
        }
    }
    history.push(Attempt { frames_done: shared.decoded.load(Ordering::Relaxed), ..keeper.attempt() });
    let sink::Finished { mut counts, tracks, track_rows, shots, issues: decode_issues, timings } = sink.finish(&tail)?;

    let mut issues = Vec::new();
    for issue in &decode_issues {
        let line = match issue {
            DecodeIssue::BadPacket { after_frame, reason } => {
                counts.frames_failed += 1;
                format!("undecodable data after frame {after_frame}: {reason}")
            }
            DecodeIssue::EndedEarly { after_frame, reason } => format!("input ended early after frame {after_frame}: {reason}"),
        };
        issues.push(line);
    }
    counts.frames_decoded = shared.decoded.load(Ordering::Relaxed);
    counts.frames_sampled = shared.sampled.load(Ordering::Relaxed);
    counts.shots = shots.len() as u64;
    counts.frames_split_for_memory += frames_split;
    if counts.frames_decoded == 0 && !decoded.interrupted {
        return Err(HarvestError::NoFrames { path: cfg.input.clone() });
    }
    crops.publish()?;
    output::write_jsonl_atomic(&cfg.out_dir.join(run_dir::SHOTS), &shots)?;
    output::write_jsonl_atomic(&cfg.out_dir.join(run_dir::TRACKS), &tracks)?;
    output::write_npy_atomic(&cfg.out_dir.join(run_dir::TRACK_EMBEDDINGS), &track_rows, writer.dim())?;
    writer.finish()?;
    let status = match (decoded.interrupted, issues.is_empty()) {
        (true, _) => Status::Interrupted,
        (false, true) => Status::Done,
        (false, false) => Status::DoneWithErrors,
    };
    Ok(RunResult {
        status,
        interrupted_resumable: decoded.interrupted && keeper.last.is_some(),
        history,
        identity,
        input_blake3: tail.input_blake3,
        batching,
        video,
        models,
        counts,
        timings,
        issues,
        last_progress,
    })
}

/// Set to `finalise` to abort right after the end-of-stream checkpoint, as a crash during
/// finalisation would (used by the resume tests; there is no other way to hit that moment).
const FAULT_ENV: &str = "EPISODE_RUN_FAULT";

/// Writes checkpoints for the writer stage.
struct Keeper<'a> {
    out_dir: &'a std::path::Path,
    identity: RunIdentity,
    history: Vec<Attempt>,
    this: Attempt,
    /// Decode state after the last frame written (or the checkpoint resumed from).
    last: Option<DecodeState>,
}

impl Keeper<'_> {
    fn attempt(&self) -> Attempt {
        Attempt { ended_at: output::now_rfc3339(), frames_done: self.last.as_ref().map_or(self.this.first_frame, |d| d.next_frame), ..self.this.clone() }
    }

    /// Syncs the outputs and records where the run stands; nothing to do before the first frame.
    fn save(&mut self, sink: &mut Sink, tail: Option<Tail>) -> Result<(), OutputError> {
        let Some(decode) = self.last.clone() else { return Ok(()) };
        let (state, position) = sink.checkpoint()?;
        let mut history = self.history.clone();
        let done = tail.as_ref().map_or(decode.next_frame, |t| t.frames_decoded);
        history.push(Attempt { frames_done: done, ..self.attempt() });
        let next_frame = decode.next_frame;
        let checkpoint = Checkpoint { identity: self.identity.clone(), decode, sink: state, position, tail, history };
        checkpoint.save(self.out_dir)?;
        sink.checkpoint_saved(&checkpoint.sink);
        log::event("checkpoint", None, serde_json::json!({"next_frame": next_frame, "position": position}));
        Ok(())
    }
}

/// Sampled frames decoded ahead of inference, beyond those in the workers' hands.
const SAMPLED_AHEAD: usize = 2;

#[derive(Default)]
struct DecodeStats {
    /// Stopped early because a signal asked to.
    interrupted: bool,
    /// The end of the stream; its `issues` are those met after the last sampled frame (they
    /// had no frame to ride on).
    tail: Tail,
}

/// The decode thread's running state: shot cuts, the open shot, and what waits for the next
/// sampled frame to carry it.
struct DecodeSide {
    cuts: CutDetector,
    shot: Option<ShotRecord>,
    shots_started: u64,
    sampled: u64,
    closed: Vec<ShotRecord>,
    issues: Vec<DecodeIssue>,
    /// Decoding time since the last sampled frame.
    decode_ms: f64,
}

impl DecodeSide {
    fn new(params: &crate::config::Cuts, resume: Option<&DecodeState>) -> Self {
        let mut cuts = CutDetector::new(params.threshold as f32, params.min_shot);
        if let Some(r) = resume {
            cuts.restore(&r.cut);
        }
        Self {
            cuts,
            shot: resume.map(|r| r.shot.clone()),
            shots_started: resume.map_or(0, |r| r.shot.shot + 1),
            sampled: resume.map_or(0, |r| r.sampled),
            closed: Vec::new(),
            issues: Vec::new(),
            decode_ms: 0.0,
        }
    }

    /// Follows shots across one decoded frame; returns the frame's shot.
    fn frame(&mut self, idx: u64, t: f64, thumb: &RgbImage) -> u64 {
        let (_, cut) = self.cuts.push(idx, thumb);
        let t = round_t(t);
        match self.shot.as_mut() {
            Some(open) if !cut => {
                open.end_frame = idx;
                open.t_end = t;
            }
            _ => {
                self.closed.extend(self.shot.take());
                self.shot = Some(ShotRecord { shot: self.shots_started, start_frame: idx, end_frame: idx, t_start: t, t_end: t });
                self.shots_started += 1;
            }
        }
        self.shots_started - 1
    }

    /// What a sampled frame carries: the state right after it, and what waited for it.
    fn carry(&mut self, next_frame: u64, pts: Option<i64>, t: f64) -> Carry {
        let shot = self.shot.clone().unwrap_or(ShotRecord { shot: 0, start_frame: 0, end_frame: 0, t_start: 0.0, t_end: 0.0 });
        Carry {
            decode_ms: std::mem::take(&mut self.decode_ms),
            decode: DecodeState { next_frame, pts, t, sampled: self.sampled, cut: self.cuts.state(), shot },
            closed_shots: std::mem::take(&mut self.closed),
            issues: std::mem::take(&mut self.issues),
        }
    }

    /// The shots not yet carried, the open one closed: the end of `shots.jsonl`.
    fn finish(&mut self) -> Vec<ShotRecord> {
        let mut shots = std::mem::take(&mut self.closed);
        shots.extend(self.shot.take());
        shots
    }
}

/// Decodes up to and including the next sampled frame, following shots and preparing the
/// sampled frame's detector input. Returns the frame (none at the end) and whether the stream
/// has ended.
fn decode_next(
    decoder: &mut VideoDecoder,
    side: &mut DecodeSide,
    plan: Option<&detect::InputPlan>,
    stats: &mut DecodeStats,
    shared: &Shared,
) -> (Option<SampledFrame>, Result<bool, VideoError>) {
    loop {
        if crate::interrupt::requested().is_some() {
            stats.interrupted = true;
            stats.tail.issues = std::mem::take(&mut side.issues);
            return (None, Ok(true));
        }
        let t0 = Instant::now();
        let next = match decoder.next_frame() {
            Ok(next) => next,
            Err(e) => return (None, Err(e)),
        };
        side.issues.extend(decoder.take_issues());
        let Some(frame) = next else {
            stats.tail.issues = std::mem::take(&mut side.issues);
            return (None, Ok(true));
        };
        side.decode_ms += ms(t0.elapsed());
        shared.decoded.fetch_add(1, Ordering::Relaxed);
        let shot = side.frame(frame.idx, frame.t, &frame.thumb);
        if frame.sampled {
            shared.sampled.fetch_add(1, Ordering::Relaxed);
            side.sampled += 1;
            let t1 = Instant::now();
            let image = frame.image;
            let input = match (plan, &image, &frame.scaled) {
                (Some(p), Some(full), Some(scaled)) => Some(p.prepare_scaled(scaled, full.width as u32, full.height as u32)),
                _ => None,
            };
            side.decode_ms += ms(t1.elapsed());
            let carry = side.carry(frame.idx + 1, frame.pts, frame.t);
            return (Some(SampledFrame { idx: frame.idx, t: frame.t, shot, image, input, carry }), Ok(false));
        }
    }
}

/// The result of a scoped start-up thread; its panic goes on in the caller.
fn join_scoped<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Estimated memory of one crop inside an SFace call: its 147 KiB input plus activations.
const BYTES_PER_CROP: u64 = 8 << 20;

impl EmbedBatching {
    /// The memory budget from the config, or a quarter of available memory (at most 4 GiB).
    fn plan(cfg: &crate::config::Embed) -> Self {
        let budget = match cfg.mem_budget_mb {
            0 => available_memory().map_or(1 << 30, |m| (m / 4).min(4 << 30)),
            mb => mb << 20,
        };
        let max_crops_per_call = max_crops_for(budget, BYTES_PER_CROP);
        EmbedBatching { batch_size: cfg.batch_size.min(max_crops_per_call), max_crops_per_call, mem_budget_mb: budget >> 20 }
    }
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib << 10)
}

/// Measures one detection, applies the quality gates in order (size, score, frame, pose,
/// alignment, sharpness), and keeps its aligned crop and context image.
fn assess(image: &RgbImage, det: Detection, gates: &crate::config::Quality) -> FaceOut {
    let aligned = align_face(image, &det.landmarks).ok();
    let quality = FaceQuality { blur: aligned.as_ref().map(laplacian_variance), face_px: f64::from(det.min_side()), yaw: yaw_degrees(&det.landmarks) };
    let skip = if quality.face_px < gates.min_face {
        Some(SkipReason::TooSmall)
    } else if f64::from(det.score) < gates.det_threshold {
        Some(SkipReason::LowScore)
    } else if landmarks_outside(&det.landmarks, image.width, image.height) {
        Some(SkipReason::OutOfFrame)
    } else if quality.yaw.abs() > gates.max_yaw {
        Some(SkipReason::Profile)
    } else if aligned.is_none() {
        Some(SkipReason::AlignFailed)
    } else if quality.blur.is_some_and(|b| b < gates.min_blur) {
        Some(SkipReason::Blurry)
    } else {
        None
    };
    let context = context_crop(image, &det.bbox);
    FaceOut { det, quality, skip, embedding: None, aligned, context }
}

type Written<'a> = (Sink<'a>, Progress);

/// Feeds every frame to the sink in order and keeps progress.json (and the terminal bar) current.
fn write_stage<'a>(
    cfg: &HarvestConfig,
    video: &crate::video::VideoInfo,
    mut sink: Sink<'a>,
    rx: crossbeam_channel::Receiver<EmbeddedFrame>,
    shared: &Shared,
    start: Instant,
    keeper: &mut Keeper,
) -> Result<Written<'a>, OutputError> {
    let progress_path = cfg.out_dir.join(run_dir::PROGRESS);
    let interval = Duration::from_secs_f64(cfg.settings.progress.interval_s);
    let checkpoint_every = Duration::from_secs_f64(cfg.settings.progress.checkpoint_s);
    let mut last_checkpoint = Instant::now();
    let bar = !cfg.quiet && std::io::stderr().is_terminal();
    // fps and ETA count this process's frames only (a resumed run starts past zero).
    let mut rate = RateWindow::new(Duration::from_secs(5), start, shared.decoded.load(Ordering::Relaxed));
    let mut last_write: Option<Instant> = None;
    let snapshot = |rate: &mut RateWindow, faces: u64| {
        let decoded = shared.decoded.load(Ordering::Relaxed);
        let fps = rate.push(Instant::now(), decoded);
        Progress {
            status: Status::Running,
            frames_decoded: decoded,
            frames_sampled: shared.sampled.load(Ordering::Relaxed),
            frames_total: video.frames_total,
            faces,
            fps: (fps * 10.0).round() / 10.0,
            eta_s: eta(decoded, video.frames_total, fps).map(|s| s.round()),
            elapsed_s: (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            updated_at: output::now_rfc3339(),
            error: None,
        }
    };
    loop {
        match rx.recv_timeout(interval) {
            Ok(frame) => {
                let decode = frame.decode.clone();
                sink.push(frame)?;
                keeper.last = Some(decode);
                if last_checkpoint.elapsed() >= checkpoint_every {
                    keeper.save(&mut sink, None)?;
                    last_checkpoint = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_write.is_none_or(|t| t.elapsed() >= interval) {
            let p = snapshot(&mut rate, sink.faces_written());
            output::write_json_atomic(&progress_path, &p)?;
            if bar {
                eprint!("\r{}\x1b[K", bar_line(p.frames_decoded, p.frames_total, p.fps, p.faces, p.eta_s));
            }
            last_write = Some(Instant::now());
        }
    }
    if crate::interrupt::requested().is_some() {
        // Stopped by a signal: exactly where the outputs end, for the next run to go on from.
        keeper.save(&mut sink, None)?;
    }
    let p = snapshot(&mut rate, sink.faces_written());
    if bar {
        eprintln!("\r{}\x1b[K", bar_line(p.frames_decoded, p.frames_total, p.fps, p.faces, Some(0.0)));
    }
    Ok((sink, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::ARCFACE_TEMPLATE;

    fn gates() -> crate::config::Quality {
        crate::config::Quality { min_face: 20.0, det_threshold: 0.6, min_blur: 8.0, max_yaw: 75.0 }
    }

    /// A 200×200 frame of sharp stripes with a frontal face (the template, doubled, at 40,20).
    fn frame() -> RgbImage {
        let data = (0..200 * 200).flat_map(|i| if (i % 200 / 3) % 2 == 0 { [30u8; 3] } else { [220u8; 3] }).collect();
        RgbImage::new(200, 200, data).unwrap()
    }

    fn face() -> Detection {
        let landmarks = ARCFACE_TEMPLATE.map(|p| [p[0] * 1.0 + 40.0, p[1] * 1.0 + 20.0]);
        Detection { bbox: [40.0, 20.0, 152.0, 132.0], landmarks, score: 0.9 }
    }

    #[test]
    fn a_good_face_passes_every_gate() {
        let out = assess(&frame(), face(), &gates());
        assert_eq!(out.skip, None, "{:?}", out.quality);
        assert!(out.aligned.is_some());
        assert_eq!((out.context.width, out.context.height), (112, 112));
    }

    #[test]
    fn too_small() {
        let d = Detection { bbox: [40.0, 20.0, 55.0, 132.0], ..face() };
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::TooSmall));
    }

    #[test]
    fn low_score() {
        let d = Detection { score: 0.55, ..face() };
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::LowScore));
    }

    #[test]
    fn out_of_frame() {
        let mut d = face();
        d.landmarks[1][0] = 205.0;
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::OutOfFrame));
    }

    #[test]
    fn profile() {
        let mut d = face();
        d.landmarks[2][0] = d.landmarks[0][0] - 30.0; // nose far outside the eyes
        let out = assess(&frame(), d, &gates());
        assert_eq!(out.skip, Some(SkipReason::Profile), "yaw {}", out.quality.yaw);
    }

    #[test]
    fn align_failed() {
        let mut d = face();
        d.landmarks[3] = [f32::NAN, f32::NAN];
        // A landmark the model could not place: no transform exists.
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::AlignFailed));
    }

    #[test]
    fn blurry() {
        let flat = RgbImage::new(200, 200, vec![128; 200 * 200 * 3]).unwrap();
        let out = assess(&flat, face(), &gates());
        assert_eq!(out.skip, Some(SkipReason::Blurry));
        assert_eq!(out.quality.blur, Some(0.0));
    }
}
