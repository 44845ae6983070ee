//! The decode side of a harvest: every frame through FFmpeg, shot cuts on each, and the sampled
//! frames prepared for the detector.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::frames::{ms, Carry, DecodeState, SampledFrame, Shared, Tail};
use crate::detect;
use crate::output::{round_t, ShotRecord};
use crate::track::cuts::{CutDetector, Settled};
use crate::types::RgbImage;
use crate::video::{DecodeIssue, VideoDecoder, VideoError};

/// Sampled frames decoded ahead of inference, beyond those in the workers' hands.
pub const SAMPLED_AHEAD: usize = 2;

/// Once it has its permits, the decode thread decodes sampled frames for this long before it
/// gives them back, [`RUN_FRAMES`] at most. Every hand-off of a permit puts one thread to sleep
/// and wakes another, and on this 2-core machine the kernel often wakes it onto the busy core,
/// leaving the other idle for a scheduler tick or more (`perf sched`: two threads time-sharing
/// one core beside an idle one). One hand-off per sampled frame left 2.0 core-s of 32 idle on
/// Hamilton ×8 720p stride 4 at `--threads 2`; runs of this length, 0.8 (README, "Where the
/// idle cores went").
const RUN_FOR: Duration = Duration::from_millis(25);
/// Sampled frames one run may hold, whatever their time: the frames in hand stay bounded.
const RUN_FRAMES: usize = 4;

#[derive(Default)]
pub struct DecodeStats {
    /// Stopped early because a signal asked to.
    pub interrupted: bool,
    /// The end of the stream; its `issues` are those met after the last sampled frame (they
    /// had no frame to ride on).
    pub tail: Tail,
}

/// A decoded frame whose shot is not settled yet (the cut detector looks ahead), with what it
/// brings: the problems met decoding it and, when sampled, its pixels and detector input.
struct Waiting {
    idx: u64,
    t: f64,
    pts: Option<i64>,
    issues: Vec<DecodeIssue>,
    sampled: Option<(Option<RgbImage>, Option<detect::DetectorInput>)>,
}

/// The decode thread's running state: shot cuts, the open shot, the frames waiting for their
/// shot, and what waits for the next sampled frame to carry it.
pub struct DecodeSide {
    cuts: CutDetector,
    shot: Option<ShotRecord>,
    shots_started: u64,
    sampled: u64,
    closed: Vec<ShotRecord>,
    issues: Vec<DecodeIssue>,
    /// Decoding time since the last sampled frame.
    decode_ms: f64,
    waiting: VecDeque<Waiting>,
    ready: VecDeque<SampledFrame>,
    stream_ended: bool,
    /// Detector input tensors, given back by the workers once detected.
    tensors: detect::TensorPool,
}

impl DecodeSide {
    pub fn new(params: &crate::config::Cuts, resume: Option<&DecodeState>) -> Self {
        let mut cuts = CutDetector::new(params.params());
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
            waiting: VecDeque::new(),
            ready: VecDeque::new(),
            stream_ended: false,
            tensors: detect::TensorPool::default(),
        }
    }

    /// Settles the oldest waiting frame: follows shots across it and, when it was sampled, makes
    /// it ready with the state right after it.
    fn settle(&mut self, settled: Settled) {
        let Some(w) = self.waiting.pop_front() else { return };
        debug_assert_eq!(w.idx, settled.idx, "frames settle in decoding order");
        self.issues.extend(w.issues);
        let t = round_t(w.t);
        match self.shot.as_mut() {
            Some(open) if !settled.cut => {
                open.end_frame = w.idx;
                open.t_end = t;
            }
            _ => {
                self.closed.extend(self.shot.take());
                self.shot = Some(ShotRecord { shot: self.shots_started, start_frame: w.idx, end_frame: w.idx, t_start: t, t_end: t });
                self.shots_started += 1;
            }
        }
        if let Some((image, input)) = w.sampled {
            self.sampled += 1;
            let shot = self.shots_started - 1;
            let carry = self.carry(w.idx + 1, w.pts, w.t);
            self.ready.push_back(SampledFrame { idx: w.idx, t: w.t, shot, image, input, carry });
        }
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
    pub fn finish(&mut self) -> Vec<ShotRecord> {
        let mut shots = std::mem::take(&mut self.closed);
        shots.extend(self.shot.take());
        shots
    }

    /// Problems not yet carried by a sampled frame, those of frames still waiting included.
    fn take_issues(&mut self) -> Vec<DecodeIssue> {
        let mut issues = std::mem::take(&mut self.issues);
        issues.extend(self.waiting.iter_mut().flat_map(|w| std::mem::take(&mut w.issues)));
        issues
    }
}

/// One run of the decode thread under its permits ([`RUN_FOR`]): the sampled frames decoded, in
/// order, and whether the stream has ended (or the error that stopped it).
pub fn decode_run(
    decoder: &mut VideoDecoder,
    side: &mut DecodeSide,
    plan: Option<&detect::InputPlan>,
    stats: &mut DecodeStats,
    shared: &Shared,
) -> (Vec<SampledFrame>, Result<bool, VideoError>) {
    let start = Instant::now();
    let mut frames = Vec::new();
    loop {
        let (frame, ended) = decode_next(decoder, side, plan, stats, shared);
        frames.extend(frame);
        match ended {
            Ok(false) if frames.len() < RUN_FRAMES && start.elapsed() < RUN_FOR => {}
            ended => return (frames, ended),
        }
    }
}

/// Decodes until the next sampled frame's shot is settled, following shots and preparing the
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
        if let Some(frame) = side.ready.pop_front() {
            return (Some(frame), Ok(false));
        }
        if side.stream_ended {
            stats.tail.issues = side.take_issues();
            return (None, Ok(true));
        }
        if crate::interrupt::requested().is_some() {
            stats.interrupted = true;
            stats.tail.issues = side.take_issues();
            return (None, Ok(true));
        }
        let t0 = Instant::now();
        let next = match decoder.next_frame() {
            Ok(next) => next,
            Err(e) => return (None, Err(e)),
        };
        let issues = decoder.take_issues();
        let Some(frame) = next else {
            // The frames still waiting settle with fewer frames after them; problems met after
            // the last frame go to the tail.
            for settled in side.cuts.finish() {
                side.settle(settled);
            }
            side.issues.extend(issues);
            side.stream_ended = true;
            continue;
        };
        side.decode_ms += ms(t0.elapsed());
        shared.decoded.fetch_add(1, Ordering::Relaxed);
        let sampled = frame.sampled.then(|| {
            shared.sampled.fetch_add(1, Ordering::Relaxed);
            let t1 = Instant::now();
            let input = match (plan, &frame.image) {
                (Some(p), Some(full)) => Some(p.prepare_frame(full, frame.scaled.as_ref(), &side.tensors)),
                _ => None,
            };
            side.decode_ms += ms(t1.elapsed());
            (frame.image, input)
        });
        side.waiting.push_back(Waiting { idx: frame.idx, t: frame.t, pts: frame.pts, issues, sampled });
        if let Some(settled) = side.cuts.push(frame.idx, &frame.thumb) {
            side.settle(settled);
        }
    }
}
