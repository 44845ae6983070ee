//! The decode side of a harvest: every frame through FFmpeg, shot cuts on each, and the sampled
//! frames prepared for the detector.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::frames::{ms, Carry, DecodeState, SampledFrame, Shared, Tail};
use crate::detect;
use crate::output::{round_t, ShotRecord};
use crate::track::cuts::CutDetector;
use crate::types::RgbImage;
use crate::video::{DecodeIssue, VideoDecoder, VideoError};

/// Sampled frames decoded ahead of inference, beyond those in the workers' hands.
pub const SAMPLED_AHEAD: usize = 2;

#[derive(Default)]
pub struct DecodeStats {
    /// Stopped early because a signal asked to.
    pub interrupted: bool,
    /// The end of the stream; its `issues` are those met after the last sampled frame (they
    /// had no frame to ride on).
    pub tail: Tail,
}

/// The decode thread's running state: shot cuts, the open shot, and what waits for the next
/// sampled frame to carry it.
pub struct DecodeSide {
    pub cuts: CutDetector,
    pub shot: Option<ShotRecord>,
    pub shots_started: u64,
    pub sampled: u64,
    pub closed: Vec<ShotRecord>,
    pub issues: Vec<DecodeIssue>,
    /// Decoding time since the last sampled frame.
    pub decode_ms: f64,
}

impl DecodeSide {
    pub fn new(params: &crate::config::Cuts, resume: Option<&DecodeState>) -> Self {
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
    pub fn frame(&mut self, idx: u64, t: f64, thumb: &RgbImage) -> u64 {
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
    pub fn carry(&mut self, next_frame: u64, pts: Option<i64>, t: f64) -> Carry {
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
}

/// Decodes up to and including the next sampled frame, following shots and preparing the
/// sampled frame's detector input. Returns the frame (none at the end) and whether the stream
/// has ended.
pub fn decode_next(
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
