//! The inference stage: one coordinator thread hands model work to a pool of model workers and
//! puts the results back in frame order.
//!
//! ```text
//!                 ┌──Job::Frame (detect, gate, align)──▶ model worker 0 ──┐
//! sampled frames ─┤                                       model worker 1 ──┼─Done─▶ coordinator ─▶ writer
//!  (coordinator)  └──Job::Embed (one planned call)─────▶ …               ──┘  (packs calls in
//!                                                                             frame order)
//! ```
//!
//! Each worker owns its own detector and embedder sessions at a few intra-op threads, and holds
//! that many CPU permits while it runs a job. Why a pool rather than one session spread over
//! every thread: ONNX Runtime's intra-op threads scale poorly on the small calls a harvest makes
//! (one frame's 1–3 crops), while one-thread calls side by side do not (`scripts/ort_threads_probe.py`,
//! on this 2-core machine: SFace on one crop, 23.6 ms for a 2-thread call against 20.8 ms per
//! call for two one-thread calls side by side; at 2–8 crops they are about even); and any
//! worker picks up whatever is ready — the next frame's detection or an earlier frame's
//! embedding — so a core does not sit idle while another finishes a call.
//!
//! Outputs do not depend on the pool: frames are packed into embedder calls in frame order
//! whatever order their detections finish in, so the calls are the same as on one thread, every
//! session has the same thread count, and frames leave in frame order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, unbounded, Receiver, Sender};

use super::budget::CpuBudget;
use super::error::HarvestError;
use super::frames::{ms, Carry, EmbeddedFrame, FaceOut, FrameTiming, SampledFrame};
use super::gates::assess;
use crate::config::Quality;
use crate::detect::Detector;
use crate::embed::batching::{Call, Packer, Part};
use crate::embed::sface::{crops_to_tensor, SfaceEmbedder};
use crate::onnx::OnnxError;
use crate::types::RgbImage;

/// One worker's sessions.
pub(super) struct Models {
    pub detector: Box<dyn Detector + Send>,
    /// Absent with `--detect-only`.
    pub embedder: Option<SfaceEmbedder>,
}

/// How the stage plans and bounds its work.
pub(super) struct Plan {
    /// Pack crops of consecutive frames (`--batch-embed`), or one call per face.
    pub batch: bool,
    pub packer: Packer,
    pub gates: Quality,
    /// Intra-op threads of each worker's sessions: the permits a job holds.
    pub worker_threads: usize,
}

enum Job {
    /// Detect, gate and align one sampled frame.
    Frame(Box<SampledFrame>),
    /// One planned embedder call over these crops.
    Embed { call: u64, crops: Vec<RgbImage> },
}

enum Done {
    Frame(EmbeddedFrame),
    Embed { call: u64, vectors: Vec<Vec<f32>>, took: Duration },
}

/// Jobs handed out and not yet done, per worker: enough that a worker finishing one finds the
/// next waiting, few enough that frames in flight stay bounded.
const JOBS_PER_WORKER: usize = 3;

/// Runs the stage until `frames` closes and every frame has gone to `out` (or `out` closed).
/// With no workers (decode-only) frames pass straight through with no faces. Returns how many
/// frames had to be split over several calls to stay within memory.
pub(super) fn run(
    frames: Receiver<SampledFrame>,
    out: Sender<EmbeddedFrame>,
    workers: Vec<Models>,
    plan: Plan,
    budget: &CpuBudget,
) -> Result<u64, HarvestError> {
    let (job_tx, job_rx) = unbounded::<Job>();
    let (done_tx, done_rx) = unbounded::<Result<Done, HarvestError>>();
    let embedding = workers.first().is_some_and(|m| m.embedder.is_some());
    let max_jobs = JOBS_PER_WORKER * workers.len().max(1);
    let (gates, threads) = (&plan.gates, plan.worker_threads);
    // Set when the coordinator stops early (a failure, or the writer gone): jobs still queued
    // are dropped rather than run.
    let stop = AtomicBool::new(false);
    let stop = &stop;
    thread::scope(|s| {
        let mut spawned = Vec::new();
        for (i, models) in workers.into_iter().enumerate() {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            let handle = thread::Builder::new()
                .name(format!("model-{i}"))
                .spawn_scoped(s, move || work(models, jobs, done, Worker { gates, threads, budget, stop }))
                .map_err(|_| HarvestError::Panicked { stage: "model worker" })?;
            spawned.push(handle);
        }
        drop((job_rx, done_tx));
        let mut c = Coordinator {
            jobs: job_tx,
            done: done_rx,
            out,
            packer: plan.packer,
            batch: plan.batch,
            embedding,
            pass_through: spawned.is_empty(),
            unpacked: VecDeque::new(),
            detected: BTreeMap::new(),
            waiting: VecDeque::new(),
            calls: HashMap::new(),
            next_call: 0,
            outstanding: 0,
        };
        let result = c.drive(&frames, max_jobs);
        let frames_split = c.packer.split_frames();
        stop.store(true, Ordering::Relaxed);
        // Closing the job queue lets the workers end; the scope joins them.
        drop(c);
        result.map(|()| frames_split)
    })
}

/// A worker: runs jobs until the queue closes, each under its permits. A panic in a job is
/// reported as a failure so the coordinator never waits for a result that will not come.
fn work(mut models: Models, jobs: Receiver<Job>, done: Sender<Result<Done, HarvestError>>, w: Worker) {
    for job in jobs {
        if w.stop.load(Ordering::Relaxed) {
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(|| w.budget.run(w.threads, || run_job(&mut models, job, w.gates))))
            .unwrap_or(Err(HarvestError::Panicked { stage: "model worker" }));
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

/// What every worker shares.
struct Worker<'a> {
    gates: &'a Quality,
    threads: usize,
    budget: &'a CpuBudget,
    stop: &'a AtomicBool,
}

fn run_job(models: &mut Models, job: Job, gates: &Quality) -> Result<Done, HarvestError> {
    match job {
        Job::Frame(frame) => {
            let mut timing = FrameTiming::default();
            let faces: Vec<FaceOut> = match (&frame.input, &frame.image) {
                (Some(input), Some(image)) => {
                    let (dets, took) = models.detector.detect_prepared(input)?;
                    timing.detect_ms = ms(took);
                    let t1 = Instant::now();
                    let faces = dets.into_iter().map(|det| assess(image, det, gates)).collect();
                    timing.align_ms = ms(t1.elapsed());
                    faces
                }
                _ => Vec::new(),
            };
            Ok(Done::Frame(detected(*frame, faces, timing)))
        }
        Job::Embed { call, crops } => {
            let embedder = models.embedder.as_mut().ok_or_else(|| OnnxError::Run { role: "embedder", reason: "no embedder loaded".into() })?;
            let refs: Vec<&RgbImage> = crops.iter().collect();
            let (vectors, took) = embedder.embed_tensor(crops_to_tensor(&refs).view())?;
            Ok(Done::Embed { call, vectors, took })
        }
    }
}

/// A sampled frame with its faces found: its pixels dropped, what it carried kept.
fn detected(frame: SampledFrame, faces: Vec<FaceOut>, timing: FrameTiming) -> EmbeddedFrame {
    let SampledFrame { idx, t, shot, carry, .. } = frame;
    let Carry { decode_ms, decode, closed_shots, issues } = carry;
    EmbeddedFrame { idx, t, shot, faces, embed_calls: 0, timing: FrameTiming { decode_ms, ..timing }, decode, closed_shots, issues }
}

/// A frame whose crops are not all embedded yet; `passed` indexes its faces to embed.
struct Waiting {
    frame: EmbeddedFrame,
    passed: Vec<usize>,
    remaining: usize,
}

struct Coordinator {
    jobs: Sender<Job>,
    done: Receiver<Result<Done, HarvestError>>,
    out: Sender<EmbeddedFrame>,
    packer: Packer,
    batch: bool,
    embedding: bool,
    pass_through: bool,
    /// Frames sent for detection and not yet packed, in frame order.
    unpacked: VecDeque<u64>,
    /// Detected frames waiting for the earlier ones before they are packed.
    detected: BTreeMap<u64, EmbeddedFrame>,
    /// Packed frames, in frame order, until their crops are embedded and they leave.
    waiting: VecDeque<Waiting>,
    /// Each embedder call in flight: the (frame, face) of each of its crops.
    calls: HashMap<u64, Vec<(u64, usize)>>,
    next_call: u64,
    /// Jobs handed out and not yet done.
    outstanding: usize,
}

impl Coordinator {
    fn drive(&mut self, frames: &Receiver<SampledFrame>, max_jobs: usize) -> Result<(), HarvestError> {
        let (mut input_open, mut flushed) = (true, false);
        // What a stage waits on when it must not take frames, or has no job out.
        let (no_frames, no_results) = (never(), never());
        loop {
            if !input_open && self.unpacked.is_empty() && !flushed {
                flushed = true;
                if let Some(call) = self.packer.flush() {
                    self.dispatch(call)?;
                }
            }
            if !self.send_ready() {
                return Ok(());
            }
            let accept = input_open && self.outstanding < max_jobs;
            if !accept && self.outstanding == 0 {
                // The input has ended and every job is done.
                return Ok(());
            }
            let frames = if accept { frames } else { &no_frames };
            let done = if self.outstanding > 0 { &self.done } else { &no_results };
            select! {
                recv(frames) -> frame => match frame {
                    Ok(frame) => self.take_frame(frame)?,
                    Err(_) => input_open = false,
                },
                recv(done) -> result => match result {
                    Ok(result) => {
                        self.outstanding -= 1;
                        self.take_done(result?)?;
                    }
                    Err(_) => return Err(self.root_cause()),
                },
            }
        }
    }

    fn take_frame(&mut self, frame: SampledFrame) -> Result<(), HarvestError> {
        self.unpacked.push_back(frame.idx);
        if self.pass_through {
            return self.take_detected(detected(frame, Vec::new(), FrameTiming::default()));
        }
        self.send(Job::Frame(Box::new(frame)))
    }

    fn take_done(&mut self, done: Done) -> Result<(), HarvestError> {
        match done {
            Done::Frame(frame) => self.take_detected(frame),
            Done::Embed { call, vectors, took } => {
                let slots = self.calls.remove(&call).unwrap_or_default();
                // Each frame's share of the call, by its crops.
                let share = ms(took) / slots.len().max(1) as f64;
                for ((frame, face), v) in slots.into_iter().zip(vectors) {
                    if let Some(w) = self.waiting.iter_mut().find(|w| w.frame.idx == frame) {
                        w.frame.timing.embed_ms += share;
                        w.frame.faces[face].embedding = Some(v);
                        w.remaining -= 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// Packs detected frames in frame order: each frame's calls go out as soon as they are planned.
    fn take_detected(&mut self, frame: EmbeddedFrame) -> Result<(), HarvestError> {
        self.detected.insert(frame.idx, frame);
        while let Some(frame) = self.unpacked.front().and_then(|idx| self.detected.remove(idx)) {
            self.unpacked.pop_front();
            let passed: Vec<usize> = if self.embedding { (0..frame.faces.len()).filter(|&i| frame.faces[i].skip.is_none()).collect() } else { Vec::new() };
            let calls: Vec<Call> = if self.batch {
                self.packer.push(frame.idx, passed.len())
            } else {
                (0..passed.len()).map(|start| vec![Part { frame: frame.idx, start, len: 1 }]).collect()
            };
            self.waiting.push_back(Waiting { remaining: passed.len(), passed, frame });
            for call in calls {
                self.dispatch(call)?;
            }
        }
        Ok(())
    }

    /// Sends one planned call's crops to the workers.
    fn dispatch(&mut self, call: Call) -> Result<(), HarvestError> {
        let mut slots = Vec::new();
        let mut crops = Vec::new();
        for part in &call {
            let Some(w) = self.waiting.iter().find(|w| w.frame.idx == part.frame) else { continue };
            for &face in &w.passed[part.start..part.start + part.len] {
                if let Some(crop) = &w.frame.faces[face].aligned {
                    slots.push((part.frame, face));
                    crops.push(crop.clone());
                }
            }
        }
        if let Some(w) = call.first().and_then(|p| self.waiting.iter_mut().find(|w| w.frame.idx == p.frame)) {
            w.frame.embed_calls += 1;
        }
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(id, slots);
        self.send(Job::Embed { call: id, crops })
    }

    fn send(&mut self, job: Job) -> Result<(), HarvestError> {
        if self.jobs.send(job).is_err() {
            return Err(self.root_cause());
        }
        self.outstanding += 1;
        Ok(())
    }

    /// Every worker is gone: the failure one of them reported before it stopped, if any.
    fn root_cause(&self) -> HarvestError {
        self.done.try_iter().find_map(Result::err).unwrap_or(HarvestError::Panicked { stage: "model worker" })
    }

    /// Sends the frames at the front whose crops are all embedded; false once the writer is gone.
    fn send_ready(&mut self) -> bool {
        while self.waiting.front().is_some_and(|w| w.remaining == 0) {
            if let Some(w) = self.waiting.pop_front() {
                if self.out.send(w.frame).is_err() {
                    return false;
                }
            }
        }
        true
    }
}
