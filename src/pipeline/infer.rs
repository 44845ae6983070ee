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
//!
//! The coordinator also ties faces into tracks, as frames leave. With `--embed-every track` the
//! tracker decides which of a frame's faces to embed, so a frame is planned only once the one
//! before it has been tracked: its embedder call is then the only one in flight, and workers
//! take embedder calls before detections so the frames behind it wait as little as possible.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, unbounded, Receiver, Sender, TryRecvError};

use super::budget::CpuBudget;
use super::error::HarvestError;
use super::frames::{ms, Carry, EmbeddedFrame, FaceOut, FrameTiming, SampledFrame, TrackedFrame};
use super::gates::assess;
use crate::config::{EmbedEvery, Quality};
use crate::detect::Detector;
use crate::embed::batching::{Call, Packer, Part};
use crate::embed::Embedder;
use crate::onnx::OnnxError;
use crate::track::{Look, TrackInput, Tracker};
use crate::types::{RgbImage, SkipReason};

/// One worker's sessions.
pub(super) struct Models {
    pub detector: Box<dyn Detector + Send>,
    /// Absent with `--detect-only`.
    pub embedder: Option<Box<dyn Embedder + Send>>,
}

/// How the stage plans and bounds its work.
pub(super) struct Plan {
    /// Pack crops of consecutive frames (`--batch-embed`), or one call per face.
    pub batch: bool,
    pub packer: Packer,
    pub gates: Quality,
    /// Intra-op threads of each worker's sessions: the permits a job holds.
    pub worker_threads: usize,
    pub every: EmbedEvery,
    pub track_refresh: u32,
    /// The tracker to continue (a fresh one, or a checkpoint's).
    pub tracker: Tracker,
}

enum Job {
    /// Detect, gate and align one sampled frame.
    Frame(Box<SampledFrame>),
    /// One planned embedder call over these crops.
    Embed { call: u64, crops: Vec<RgbImage> },
}

enum Done {
    Frame(Box<EmbeddedFrame>),
    Embed { call: u64, vectors: Vec<Vec<f32>>, took: Duration },
}

/// Jobs handed out and not yet done, per worker: enough that a worker finishing one finds the
/// next waiting, few enough that frames in flight stay bounded.
const JOBS_PER_WORKER: usize = 3;
/// Frames detected ahead of the first one not yet planned, per job slot: with `--embed-every
/// track` detection runs on while a frame's embedder call is out, but not without bound.
const AHEAD_PER_JOB: usize = 4;

/// Runs the stage until `frames` closes and every frame has gone to `out` (or `out` closed).
/// With no workers (decode-only) frames pass straight through with no faces. Returns how many
/// frames had to be split over several calls to stay within memory.
pub(super) fn run(
    frames: Receiver<SampledFrame>,
    out: Sender<TrackedFrame>,
    workers: Vec<Models>,
    plan: Plan,
    budget: &CpuBudget,
) -> Result<u64, HarvestError> {
    let (job_tx, job_rx) = unbounded::<Job>();
    let (embed_tx, embed_rx) = unbounded::<Job>();
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
            let (jobs, embeds, done) = (job_rx.clone(), embed_rx.clone(), done_tx.clone());
            let handle = thread::Builder::new()
                .name(format!("model-{i}"))
                .spawn_scoped(s, move || work(models, Queues { embeds, jobs }, done, Worker { gates, threads, budget, stop }))
                .map_err(|source| HarvestError::ThreadStart { stage: format!("model-{i}"), source })?;
            spawned.push(handle);
        }
        drop((job_rx, embed_rx, done_tx));
        let mut c = Coordinator {
            jobs: job_tx,
            embeds: embed_tx,
            done: done_rx,
            out,
            packer: plan.packer,
            batch: plan.batch,
            embedding,
            every: plan.every,
            refresh: plan.track_refresh,
            tracker: plan.tracker,
            pass_through: spawned.is_empty(),
            unpacked: VecDeque::new(),
            detected: BTreeMap::new(),
            waiting: VecDeque::new(),
            calls: HashMap::new(),
            next_call: 0,
            outstanding: 0,
        };
        let result = c.drive(&frames, max_jobs, AHEAD_PER_JOB * max_jobs);
        let frames_split = c.packer.split_frames();
        stop.store(true, Ordering::Relaxed);
        // Closing the job queue lets the workers end; the scope joins them.
        drop(c);
        result.map(|()| frames_split)
    })
}

/// A worker's two queues: embedder calls go first.
struct Queues {
    embeds: Receiver<Job>,
    jobs: Receiver<Job>,
}

impl Queues {
    /// The next job, an embedder call when one waits; `None` once both queues are closed and empty.
    fn next(&self) -> Option<Job> {
        match self.embeds.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return self.jobs.recv().ok(),
            Err(TryRecvError::Empty) => {}
        }
        select! {
            recv(self.embeds) -> job => job.ok().or_else(|| self.jobs.recv().ok()),
            recv(self.jobs) -> job => job.ok().or_else(|| self.embeds.recv().ok()),
        }
    }
}

/// A worker: runs jobs until the queues close, each under its permits. A panic in a job is
/// reported as a failure so the coordinator never waits for a result that will not come.
fn work(mut models: Models, queues: Queues, done: Sender<Result<Done, HarvestError>>, w: Worker) {
    while let Some(job) = queues.next() {
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
            Ok(Done::Frame(Box::new(detected(*frame, faces, timing))))
        }
        Job::Embed { call, crops } => {
            let embedder = models.embedder.as_mut().ok_or_else(|| OnnxError::Run { role: "embedder", reason: "no embedder loaded".into() })?;
            let refs: Vec<&RgbImage> = crops.iter().collect();
            let (vectors, took) = embedder.embed_timed(&refs)?;
            Ok(Done::Embed { call, vectors, took })
        }
    }
}

/// A sampled frame with its faces found: its pixels dropped, what it carried kept.
fn detected(frame: SampledFrame, faces: Vec<FaceOut>, timing: FrameTiming) -> EmbeddedFrame {
    let SampledFrame { idx, t, shot, carry, .. } = frame;
    let Carry { decode_ms, decode, closed_shots, issues } = carry;
    EmbeddedFrame { idx, t, shot, faces, embed_calls: Vec::new(), timing: FrameTiming { decode_ms, ..timing }, decode, closed_shots, issues }
}

/// A frame whose crops are not all embedded yet; `passed` indexes its faces to embed.
struct Waiting {
    frame: EmbeddedFrame,
    passed: Vec<usize>,
    remaining: usize,
}

struct Coordinator {
    jobs: Sender<Job>,
    embeds: Sender<Job>,
    done: Receiver<Result<Done, HarvestError>>,
    out: Sender<TrackedFrame>,
    packer: Packer,
    batch: bool,
    embedding: bool,
    every: EmbedEvery,
    refresh: u32,
    tracker: Tracker,
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
    fn drive(&mut self, frames: &Receiver<SampledFrame>, max_jobs: usize, max_ahead: usize) -> Result<(), HarvestError> {
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
            if !self.settle()? {
                return Ok(());
            }
            let accept = input_open && self.outstanding < max_jobs && self.unpacked.len() < max_ahead;
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
            self.detected.insert(frame.idx, detected(frame, Vec::new(), FrameTiming::default()));
            return Ok(());
        }
        self.send(Job::Frame(Box::new(frame)))
    }

    fn take_done(&mut self, done: Done) -> Result<(), HarvestError> {
        match done {
            Done::Frame(frame) => {
                self.detected.insert(frame.idx, *frame);
                Ok(())
            }
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

    /// Plans and tracks frames until neither can go further; false once the writer is gone.
    fn settle(&mut self) -> Result<bool, HarvestError> {
        loop {
            let planned = self.plan_ready()?;
            match self.send_ready() {
                None => return Ok(false),
                Some(sent) if !planned && !sent => return Ok(true),
                Some(_) => {}
            }
        }
    }

    /// Plans detected frames in frame order, each frame's calls going out as soon as they are
    /// planned; with `--embed-every track` only once the frame before has been tracked. Returns
    /// whether it planned any.
    fn plan_ready(&mut self) -> Result<bool, HarvestError> {
        let mut planned = false;
        while let Some(&idx) = self.unpacked.front() {
            let by_track = self.embedding && self.every == EmbedEvery::Track;
            if by_track && !self.waiting.is_empty() {
                break;
            }
            let Some(mut frame) = self.detected.remove(&idx) else { break };
            self.unpacked.pop_front();
            planned = true;
            let passed = self.to_embed(&mut frame);
            let mut calls: Vec<Call> = if self.batch {
                self.packer.push(frame.idx, passed.len())
            } else {
                (0..passed.len()).map(|start| vec![Part { frame: frame.idx, start, len: 1 }]).collect()
            };
            if by_track {
                // The next frame waits for this one: nothing may stay pending.
                calls.extend(self.packer.flush());
            }
            self.waiting.push_back(Waiting { remaining: passed.len(), passed, frame });
            for call in calls {
                self.dispatch(call)?;
            }
        }
        Ok(planned)
    }

    /// The faces of `frame` to embed, by index. With `--embed-every track`, the usable faces
    /// the tracker finds add nothing to their tracks are marked redundant instead.
    fn to_embed(&self, frame: &mut EmbeddedFrame) -> Vec<usize> {
        if !self.embedding {
            return Vec::new();
        }
        let usable = |f: &FaceOut| f.skip.is_none();
        let chosen = match self.every {
            EmbedEvery::Face => frame.faces.iter().map(usable).collect(),
            EmbedEvery::Track => {
                let inputs: Vec<TrackInput> = frame.faces.iter().map(|f| track_input(f, None)).collect();
                self.tracker.to_embed(frame.idx, frame.shot, &inputs, self.refresh)
            }
        };
        for (face, &embed) in frame.faces.iter_mut().zip(&chosen) {
            if usable(face) && !embed {
                face.skip = Some(SkipReason::Redundant);
            }
        }
        chosen.iter().enumerate().filter(|&(_, &embed)| embed).map(|(i, _)| i).collect()
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
            w.frame.embed_calls.push(crops.len() as u64);
        }
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(id, slots);
        self.send(Job::Embed { call: id, crops })
    }

    fn send(&mut self, job: Job) -> Result<(), HarvestError> {
        let queue = if matches!(job, Job::Embed { .. }) { &self.embeds } else { &self.jobs };
        if queue.send(job).is_err() {
            return Err(self.root_cause());
        }
        self.outstanding += 1;
        Ok(())
    }

    /// Every worker is gone: the failure one of them reported before it stopped, if any.
    fn root_cause(&self) -> HarvestError {
        self.done.try_iter().find_map(Result::err).unwrap_or(HarvestError::Panicked { stage: "model worker" })
    }

    /// Tracks and sends the frames at the front whose crops are all embedded. Returns whether it
    /// sent any, or `None` once the writer is gone.
    fn send_ready(&mut self) -> Option<bool> {
        let mut sent = false;
        while let Some(w) = self.waiting.pop_front_if(|w| w.remaining == 0) {
            let frame = w.frame;
            let inputs: Vec<TrackInput> = frame.faces.iter().map(|f| track_input(f, f.embedding.as_deref())).collect();
            let (tracks, ended) = self.tracker.push_in_shot(frame.idx, frame.shot, &inputs);
            self.out.send(TrackedFrame { frame, tracks, ended, tracker: self.tracker.clone() }).ok()?;
            sent = true;
        }
        Some(sent)
    }
}

/// A face as the tracker sees it; only faces that passed the gates have a look.
fn track_input<'a>(face: &FaceOut, embedding: Option<&'a [f32]>) -> TrackInput<'a> {
    let look = SkipReason::usable(face.skip).then(|| Look { rank: face.quality.rank(face.det.score), yaw: face.quality.yaw, face_px: face.quality.face_px });
    TrackInput { bbox: face.det.bbox, score: face.det.score, embedding, look }
}

#[cfg(test)]
mod tests {
    //! The coordinator with fake workers: no model, but real gating and aligning, real threads,
    //! and results that complete out of order.

    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use crate::align::ARCFACE_TEMPLATE;
    use crate::detect::letterbox::Normalize;
    use crate::detect::{DetectorInput, InputPlan};
    use crate::output::ShotRecord;
    use crate::pipeline::frames::DecodeState;
    use crate::track::cuts::CutState;
    use crate::types::Detection;

    const PLAN: fn() -> InputPlan = || InputPlan::new(None, 64, Normalize { bgr: false, mean: 0.0, scale: 1.0 });

    /// Two frontal faces per frame, side by side; the first call of all is slow, so a later frame's detection
    /// finishes first. Fails (or panics) on the `fail_on`-th call when asked.
    struct FakeDetector {
        calls: Arc<AtomicUsize>,
        fail_on: Option<(usize, bool)>,
    }

    impl Detector for FakeDetector {
        fn input_plan(&self) -> InputPlan {
            PLAN()
        }
        fn detect_prepared(&mut self, _: &DetectorInput) -> Result<(Vec<Detection>, Duration), OnnxError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                thread::sleep(Duration::from_millis(150));
            }
            match self.fail_on {
                Some((at, true)) if at == n => panic!("fake detector panics"),
                Some((at, false)) if at == n => return Err(OnnxError::Run { role: "detector", reason: "fake failure".into() }),
                _ => {}
            }
            let face = |dx: f32| Detection {
                bbox: [40.0 + dx, 20.0, 152.0 + dx, 132.0],
                landmarks: ARCFACE_TEMPLATE.map(|p| [p[0] + 40.0 + dx, p[1] + 20.0]),
                score: 0.9,
            };
            Ok((vec![face(0.0), face(160.0)], Duration::from_millis(1)))
        }
    }

    /// Each crop's embedding is its mean brightness: the test can tell whose it is.
    struct FakeEmbedder;

    impl Embedder for FakeEmbedder {
        fn dim(&self) -> usize {
            1
        }
        fn embed(&mut self, crops: &[&RgbImage]) -> Result<Vec<Vec<f32>>, OnnxError> {
            Ok(crops.iter().map(|c| vec![brightness(c)]).collect())
        }
    }

    fn brightness(img: &RgbImage) -> f32 {
        img.data.iter().map(|&v| f32::from(v)).sum::<f32>() / img.data.len() as f32
    }

    /// Frame `idx`: sharp stripes whose brightness depends on the frame.
    fn sampled(idx: u64) -> SampledFrame {
        let (lo, hi) = (10 + idx as u8 * 3, 200 + idx as u8);
        let data = (0..400 * 200).flat_map(|i| if (i % 400 / 3) % 2 == 0 { [lo; 3] } else { [hi; 3] }).collect();
        let image = RgbImage::new(400, 200, data).unwrap();
        let shot = ShotRecord { shot: 0, start_frame: 0, end_frame: idx, t_start: 0.0, t_end: idx as f64 };
        let decode = DecodeState {
            next_frame: idx + 1,
            pts: None,
            t: idx as f64,
            sampled: idx + 1,
            cut: CutState { prev: None, scores: Vec::new(), last_cut: 0 },
            shot,
        };
        SampledFrame {
            idx,
            t: idx as f64,
            shot: 0,
            input: Some(PLAN().prepare(&image)),
            image: Some(image),
            carry: Carry { decode_ms: 0.0, decode, closed_shots: Vec::new(), issues: Vec::new() },
        }
    }

    fn gates() -> Quality {
        Quality { min_face: 20.0, det_threshold: 0.6, min_blur: 8.0, max_yaw: 75.0 }
    }

    /// Runs the stage over `frames` frames with `workers` fake workers.
    fn run_stage(frames: u64, workers: usize, batch_size: usize, fail_on: Option<(usize, bool)>) -> (Result<u64, HarvestError>, Vec<EmbeddedFrame>) {
        let (result, out) = run_every(EmbedEvery::Face, frames, workers, batch_size, fail_on);
        (result, out.into_iter().map(|t| t.frame).collect())
    }

    fn run_every(
        every: EmbedEvery,
        frames: u64,
        workers: usize,
        batch_size: usize,
        fail_on: Option<(usize, bool)>,
    ) -> (Result<u64, HarvestError>, Vec<TrackedFrame>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let models = (0..workers)
            .map(|_| Models { detector: Box::new(FakeDetector { calls: calls.clone(), fail_on }), embedder: Some(Box::new(FakeEmbedder)) })
            .collect();
        let tracker = Tracker::new(crate::track::TrackParams { high_score: 0.6, iou: 0.3, low_iou: 0.5, max_gap: 30, min_cosine: 0.3 });
        let plan = Plan { batch: true, packer: Packer::new(batch_size, 16), gates: gates(), worker_threads: 1, every, track_refresh: 4, tracker };
        let (frame_tx, frame_rx) = crossbeam_channel::bounded(2);
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let budget = CpuBudget::new(workers);
        let result = thread::scope(|s| {
            s.spawn(move || {
                for idx in 0..frames {
                    if frame_tx.send(sampled(idx)).is_err() {
                        return;
                    }
                }
            });
            run(frame_rx, out_tx, models, plan, &budget)
        });
        (result, out_rx.try_iter().collect())
    }

    #[test]
    fn frames_leave_in_order_with_their_own_embeddings_whatever_finishes_first() {
        for batch_size in [1, 4] {
            let (result, out) = run_stage(12, 3, batch_size, None);
            assert_eq!(result.unwrap(), 0);
            assert_eq!(out.iter().map(|f| f.idx).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>(), "batch {batch_size}");
            for frame in &out {
                assert_eq!(frame.faces.len(), 2);
                for face in &frame.faces {
                    assert_eq!(face.skip, None, "frame {}: {:?}", frame.idx, face.quality);
                    let crop = face.aligned.as_ref().unwrap();
                    assert_eq!(face.embedding.as_deref(), Some(&[brightness(crop)][..]), "frame {} got another frame's embedding", frame.idx);
                }
                assert_eq!(frame.decode.next_frame, frame.idx + 1, "what the frame carried stays with it");
            }
            let calls: u64 = out.iter().map(|f| f.embed_calls.len() as u64).sum();
            assert!(out.iter().flat_map(|f| &f.embed_calls).all(|&n| n == 2 || n == batch_size as u64), "{batch_size}");
            assert_eq!(calls, if batch_size == 1 { 12 } else { 6 }, "batch {batch_size}: two crops per frame, packed up to the batch size");
        }
    }

    #[test]
    fn by_track_only_faces_that_add_are_embedded_and_tracks_stay_the_same() {
        for batch_size in [1, 4] {
            let (result, out) = run_every(EmbedEvery::Track, 12, 3, batch_size, None);
            assert_eq!(result.unwrap(), 0);
            assert_eq!(out.iter().map(|f| f.frame.idx).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
            for t in &out {
                let frame = &t.frame;
                assert_eq!(t.tracks, vec![0, 1], "frame {}", frame.idx);
                // The first face of each track, then every 4th (the refresh): the same still faces.
                let embedded = frame.idx % 4 == 0;
                for face in &frame.faces {
                    match embedded {
                        true => {
                            assert_eq!(face.skip, None, "frame {}", frame.idx);
                            assert_eq!(face.embedding.as_deref(), Some(&[brightness(face.aligned.as_ref().unwrap())][..]));
                        }
                        false => assert_eq!((face.skip, face.embedding.as_ref()), (Some(SkipReason::Redundant), None), "frame {}", frame.idx),
                    }
                }
                let crops: u64 = frame.embed_calls.iter().sum();
                assert_eq!(crops, if embedded { 2 } else { 0 }, "frame {}: its own crops, in calls of its own", frame.idx);
            }
            let (_, faces) = run_every(EmbedEvery::Face, 12, 3, batch_size, None);
            let tracks = |o: &[TrackedFrame]| o.iter().map(|t| t.tracks.clone()).collect::<Vec<_>>();
            assert_eq!(tracks(&out), tracks(&faces), "the same tracks as with every face embedded");
        }
    }

    #[test]
    fn a_failing_worker_reports_its_own_error() {
        let (result, out) = run_stage(12, 2, 4, Some((5, false)));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("fake failure"), "the worker's own error, not a generic one: {err}");
        assert!(out.len() < 12);
        let (result, _) = run_stage(12, 2, 4, Some((5, true)));
        assert!(matches!(result, Err(HarvestError::Panicked { stage: "model worker" })));
    }
}
