//! The messages between the harvest's stages: a sampled frame on its way to inference, what it
//! carries along for the writer (the decode state a checkpoint records to seek back to), the
//! embedded frame that comes back, and what the end of the stream adds.

use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

use crate::align::SquareCrop;
use crate::detect;
use crate::output::ShotRecord;
use crate::track::cuts::CutState;
use crate::track::Tracker;
use crate::types::{Detection, FaceQuality, RgbImage, SkipReason};
use crate::video::DecodeIssue;

/// Where the decode side stood right after a sampled frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecodeState {
    /// The first frame not yet decoded.
    pub next_frame: u64,
    /// Presentation timestamp and time of the frame before it.
    pub pts: Option<i64>,
    pub t: f64,
    /// Frames sampled so far.
    pub sampled: u64,
    pub cut: CutState,
    /// The shot that frame is in, ending at it.
    pub shot: ShotRecord,
}

/// What only the end of the stream knows: the last shots, the last problems, the input's hash.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tail {
    /// Frames decoded in all (some may follow the last sampled frame).
    pub frames_decoded: u64,
    pub shots: Vec<ShotRecord>,
    pub issues: Vec<DecodeIssue>,
    pub input_blake3: Option<String>,
}

/// A sampled frame on its way to inference, with its pixels and detector input when a
/// detector runs.
pub struct SampledFrame {
    pub idx: u64,
    pub t: f64,
    pub shot: u64,
    pub image: Option<RgbImage>,
    pub input: Option<detect::DetectorInput>,
    pub carry: Carry,
}

/// What rides along with a sampled frame to the writer: the decode state right after it (a
/// checkpoint taken after writing it continues from there) and the shots closed and problems
/// met since the previous sampled frame.
pub struct Carry {
    /// Decoding since the previous sampled frame, and this frame's detector input.
    pub decode_ms: f64,
    pub decode: DecodeState,
    pub closed_shots: Vec<ShotRecord>,
    pub issues: Vec<DecodeIssue>,
}

/// One face after the gates: measured, aligned when possible, embedded when it passed.
pub struct FaceOut {
    pub det: Detection,
    pub quality: FaceQuality,
    pub skip: Option<SkipReason>,
    pub embedding: Option<Vec<f32>>,
    pub aligned: Option<RgbImage>,
    /// Made only if the face becomes its track's best.
    pub context: SquareCrop,
}

/// A sampled frame's faces, in detector order.
pub struct EmbeddedFrame {
    pub idx: u64,
    pub t: f64,
    pub shot: u64,
    pub faces: Vec<FaceOut>,
    /// The crops of each embedder call this frame began (a call packs whole frames, and is
    /// counted at its first).
    pub embed_calls: Vec<u64>,
    pub timing: FrameTiming,
    pub decode: DecodeState,
    pub closed_shots: Vec<ShotRecord>,
    pub issues: Vec<DecodeIssue>,
}

/// An embedded frame with its faces tied into tracks: the inference stage tracks frames in frame
/// order as they leave, since with `--embed-every track` what it embeds depends on the tracks.
pub struct TrackedFrame {
    pub frame: EmbeddedFrame,
    /// Each face's track, in face order.
    pub tracks: Vec<u64>,
    /// The tracks that ended before this frame's faces joined theirs (a cut, a gap, a split).
    pub ended: Vec<u64>,
    /// The tracker right after this frame: a checkpoint taken after writing it continues from it.
    pub tracker: Tracker,
}

/// Milliseconds a sampled frame spent in each stage (a row of `timings.jsonl`).
#[derive(Default)]
pub struct FrameTiming {
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub align_ms: f64,
    pub embed_ms: f64,
}

pub struct Shared {
    pub decoded: AtomicU64,
    pub sampled: AtomicU64,
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
