//! The only module that spawns threads and owns channels. A harvest runs as three stages:
//!
//! ```text
//! decode thread ──SampledFrame──▶ infer thread ──TrackedFrame──▶ writer (calling thread)
//! (FFmpeg, every frame,          (coordinator: detect, gate,      (track totals, identities,
//!  shot cuts)                     align, embed on model workers,   files, progress)
//!                                 track)
//! ```
//!
//! Channels are bounded, so memory does not grow with video length; shutdown is by dropping
//! senders. When a stage fails, the stages downstream see a closed channel and the ones upstream
//! a failed send; both stop quietly, and the error reported is the root cause (gifski's rule).
//! A [`CpuBudget`] of `--threads` permits keeps the busy threads of the process within the cap.

mod budget;
mod decode;
mod error;
mod existing;
mod frames;
mod gates;
mod infer;
mod memory;
mod progress;
mod resume;
mod seeds;
mod sink;
mod spill;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::bounded;

use crate::config::{HarvestConfig, Mode};
use crate::detect;
use crate::embed::batching::Packer;
use crate::embed::sface::SfaceEmbedder;
use crate::embed::Embedder;
use crate::log;
use crate::onnx;
use crate::output::manifest::{Attempt, Counts, EmbedBatching, Host, InputFacts, Manifest, ModelFile, ThreadSplit, Timings};
use crate::output::{self, CropsDir, Progress, RunWriter};
use crate::people;
use crate::run_dir::{self, RunIdentity, Status};
use crate::track::Tracker;
use crate::video::{DecodeIssue, VideoDecoder, VideoError};
pub use budget::CpuBudget;
use decode::{decode_run, DecodeSide, DecodeStats, SAMPLED_AHEAD};
pub use error::HarvestError;
use frames::{SampledFrame, Shared, TrackedFrame};
use resume::Checkpoint;
pub use resume::{checkpoint_frame, rebind_checkpoint};
pub use seeds::build_gallery;
use sink::Sink;
use writer::{write_stage, Keeper};

/// Frames in flight between two stages.
const CHANNEL_DEPTH: usize = 4;
/// Decode problems listed in the manifest before they are only counted.
const MAX_LISTED_ISSUES: usize = 20;

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

/// Runs one harvest to completion. On failure after the out dir is ready, `progress.json` says
/// `failed` with the error, and no `faces.jsonl`/`embeddings.npy` of this run is published.
pub fn harvest(cfg: &HarvestConfig) -> Result<HarvestSummary, HarvestError> {
    let start = Instant::now();
    // Ours or refused before anything is written; held until the run is over.
    let _lock = run_dir::claim(&cfg.out_dir)?;
    let checkpoint = match cfg.force {
        true => None,
        false => match existing::check(cfg)? {
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
            existing::Existing::Unfinished(checkpoint) => checkpoint.map(|c| *c),
            existing::Existing::Nothing => None,
        },
    };
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
            updated_at: log::now_rfc3339(),
            error: Some(e.to_string()),
        };
        // Best effort: the failure itself may be a full or vanished disk.
        let _ = failed.write_last(&cfg.out_dir.join(run_dir::PROGRESS));
    }
    if cfg.report {
        write_report(&cfg.out_dir, result.is_ok());
    }
    result
}

/// The run's `report.html`, for every run that got under way (done, interrupted or failed). One
/// that cannot be written is a warning after a run that ended well (its results stand without
/// it), and nothing after a failed one: the failure is the one line that run prints.
fn write_report(dir: &std::path::Path, warn: bool) {
    if let Err(e) = crate::report::write(dir, None) {
        if warn {
            log::event("warning", Some(&format!("warning: no {}: {e}", run_dir::REPORT)), serde_json::json!({}));
        }
    }
}

fn harvest_into_out_dir(cfg: &HarvestConfig, start: Instant, checkpoint: Option<Checkpoint>) -> Result<HarvestSummary, HarvestError> {
    let started_at = log::now_rfc3339();
    let split = ThreadSplit::plan(cfg.threads, cfg.settings.run.mode != Mode::DecodeOnly);
    let input_meta = std::fs::metadata(&cfg.input).ok();
    // Decoding alone needs no model, so ONNX Runtime is not even loaded (the manifest says null).
    if cfg.settings.run.mode != Mode::DecodeOnly {
        onnx::init_runtime(&cfg.ort_lib, cfg.settings.runtime.provider)?;
    }
    let mut decoder = VideoDecoder::open(&cfg.input, split.decode, cfg.settings.sampling.stride)?;
    if cfg.settings.sampling.skip_nonref {
        decoder = decoder.skipping_nonref()?;
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
        // Read once the sessions are built: it says what each one runs on (none when decoding only).
        onnxruntime: onnx::runtime_info(),
        host: Host::here(),
        threads: split,
        embed_batching: run.batching,
        started_at,
        finished_at: log::now_rfc3339(),
        wall_s: start.elapsed().as_secs_f64(),
        counts: run.counts.clone(),
        people: run.people,
        timings: run.timings,
        status: run.status,
        decode_issues: run.issues.iter().take(MAX_LISTED_ISSUES).cloned().collect(),
        files: run_dir::result_files(&cfg.out_dir)?,
        history: run.history,
    };
    output::write_json_atomic(&cfg.out_dir.join(run_dir::MANIFEST), &manifest)?;
    let done = Progress { status: run.status, eta_s: Some(0.0), updated_at: log::now_rfc3339(), ..run.last_progress };
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
    people: people::PeopleSection,
    timings: Timings,
    issues: Vec<String>,
    last_progress: Progress,
}

fn run(cfg: &HarvestConfig, decoder: VideoDecoder, split: ThreadSplit, start: Instant, checkpoint: Option<Checkpoint>) -> Result<RunResult, HarvestError> {
    let started_at = log::now_rfc3339();
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
        let hashes: Result<Vec<_>, HarvestError> = [("detector", &cfg.detector, mode != Mode::DecodeOnly), ("embedder", &cfg.embedder, mode == Mode::Full)]
            .into_iter()
            .filter(|m| m.2)
            .map(|(role, path, _)| {
                let loading = &loading;
                start_scoped(s, "hash model", move || {
                    loading.run(1, || ModelFile::hash(path).map(|f| (role, f)).map_err(|source| HarvestError::ModelRead { path: path.clone(), source }))
                })
            })
            .collect();
        let n = split.worker_threads;
        let sessions: Result<Vec<_>, HarvestError> = (0..split.workers)
            .map(|_| {
                let loading = &loading;
                let embedder = start_scoped(s, "load embedder", move || match mode {
                    Mode::Full => loading.run(1, || SfaceEmbedder::load(&cfg.embedder, n)).map(|e| Some(Box::new(e) as Box<dyn Embedder + Send>)),
                    _ => Ok(None),
                })?;
                let detector = start_scoped(s, "load detector", move || loading.run(1, || detect::load(&cfg.detector, n, detect.clone(), detect.family)))?;
                Ok((detector, embedder))
            })
            .collect();
        // Threads already started finish as the scope ends, even when a later one could not start.
        let workers: Result<Vec<infer::Models>, HarvestError> =
            sessions.and_then(|all| all.into_iter().map(|(d, e)| Ok(infer::Models { detector: join_scoped(d)?, embedder: join_scoped(e)? })).collect());
        let models: Result<BTreeMap<_, _>, HarvestError> = hashes.and_then(|all| all.into_iter().map(join_scoped).collect());
        (workers, models)
    });
    let (mut workers, models) = (workers?, models?);
    let identity = resume::identity(cfg, &models)?;
    let gallery = match (&cfg.seeds, workers.first_mut()) {
        (Some(dir), Some(infer::Models { detector, embedder: Some(e) })) => {
            Some(seeds::build_gallery(dir, detector.as_mut(), e.as_mut(), &cfg.settings.quality)?)
        }
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

    let budget = Arc::new(CpuBudget::pinned(cfg.threads));
    let (first_frame, first_sampled) = checkpoint.as_ref().map_or((0, 0), |c| (c.decode.next_frame, c.decode.sampled));
    let decoded_before = checkpoint.as_ref().and_then(|c| c.tail.as_ref()).map_or(first_frame, |t| t.frames_decoded);
    let shared = Arc::new(Shared { decoded: AtomicU64::new(decoded_before), sampled: AtomicU64::new(first_sampled) });
    let (frame_tx, frame_rx) = bounded::<SampledFrame>(SAMPLED_AHEAD);
    let (face_tx, face_rx) = bounded::<TrackedFrame>(CHANNEL_DEPTH);

    let plan = workers.first().map(|m| m.detector.input_plan());
    let mut decoder = match plan {
        // The decoder scales a copy of each sampled frame for the detector where the frame
        // cannot serve as it is.
        Some(plan) => decoder.with_scaled(Box::new(move |w, h| plan.scaled_size(w, h))),
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
                    // A run of sampled frames, letterboxed for the detector here so the workers
                    // only run models; the permits are not held while the frames wait.
                    let (frames, ended) = budget.run_first(split.decode, || decode_run(&mut decoder, &mut side, plan.as_ref(), &mut stats, &shared));
                    for frame in frames {
                        if frame_tx.send(frame).is_err() {
                            return Ok(stats);
                        }
                    }
                    let ended = ended?;
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
            .map_err(|source| HarvestError::ThreadStart { stage: "decode".into(), source })?
    };

    let tracker = sink_state.as_ref().map_or_else(|| Tracker::new(cfg.settings.track.clone()), |s| s.tracker().clone());
    let infer_plan = infer::Plan {
        batch: cfg.settings.embed.batch,
        packer: Packer::new(cfg.settings.embed.batch_size, batching.max_crops_per_call),
        gates: cfg.settings.quality.clone(),
        worker_threads: split.worker_threads,
        every: cfg.settings.embed.every,
        track_refresh: cfg.settings.embed.track_refresh,
        tracker: tracker.clone(),
    };
    let infer_handle = {
        let budget = budget.clone();
        thread::Builder::new()
            .name("infer".into())
            .spawn(move || infer::run(frame_rx, face_tx, workers, infer_plan, &budget))
            .map_err(|source| HarvestError::ThreadStart { stage: "infer".into(), source })?
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
    let sink = Sink::new(&mut writer, &crops, spill, gallery.as_ref(), cfg.settings.identify.clone(), tracker, sink_state)?;
    let mut keeper = Keeper {
        out_dir: &cfg.out_dir,
        identity: identity.clone(),
        history: history.clone(),
        this,
        last: checkpoint.map(|c| c.decode),
        hook: cfg.after_checkpoint.as_ref(),
    };
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
    let people = output::people::apply(&cfg.out_dir, &cfg.settings.people, people::RunFacts::new(cfg.settings.sampling.stride, video.frame_rate))?;
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
        people,
        timings,
        issues,
        last_progress,
    })
}

/// Set to `finalise` to abort right after the end-of-stream checkpoint, as a crash during
/// finalisation would (used by the resume tests; there is no other way to hit that moment).
const FAULT_ENV: &str = "EPISODE_RUN_FAULT";

/// Starts a named start-up thread; one the system cannot start is an error, not a panic.
fn start_scoped<'s, T: Send + 's>(
    s: &'s thread::Scope<'s, '_>,
    stage: &str,
    work: impl FnOnce() -> T + Send + 's,
) -> Result<thread::ScopedJoinHandle<'s, T>, HarvestError> {
    thread::Builder::new().name(stage.into()).spawn_scoped(s, work).map_err(|source| HarvestError::ThreadStart { stage: stage.into(), source })
}

/// The result of a scoped start-up thread; its panic goes on in the caller.
fn join_scoped<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
