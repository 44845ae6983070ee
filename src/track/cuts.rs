//! Shot-cut detection on decoded frames. A colour histogram of the whole frame misses the cuts TV
//! is full of (two people filmed against the same grey wall: only a ninth of the frame changes),
//! and a plain pixel difference fires on every fast gesture, so the score here is local and
//! motion-tolerant, and the decision is adaptive:
//!
//! 1. **Features.** The 64×64 thumbnail of every frame is cut into a 16×16 grid of blocks, and
//!    each block is reduced to its mean luma and chroma. Luma is normalised over the frame
//!    (mean 0, a fixed spread), so a camera flash or a change of exposure moves nothing.
//! 2. **Score.** Each block of one frame is compared with the best-matching block within two
//!    blocks of it in the other frame (both ways: what appears and what disappears), so motion of
//!    up to an eighth of the frame per frame costs little. The frame's score is the mean of its
//!    four worst blocks: a change confined to one region counts in full.
//! 3. **Decision.** A cut is a spike: the frame's score must be `ratio` times the mean score of
//!    its neighbours (the 8 frames before it and the 2 after it) and at least `min_score`, at
//!    least `min_shot` frames after the previous cut. A burst of motion raises the neighbours as
//!    much as the frame; a cut is one frame. Looking 2 frames ahead means a frame's shot is known
//!    2 decoded frames after it (PySceneDetect's AdaptiveDetector looks both ways too).
//!
//! Measured on the test episode `scripts/build_cut_episode` writes and on the real clips (see
//! `[cuts]` in configs/default.toml).

use std::collections::VecDeque;

use crate::types::RgbImage;

/// Blocks per side of the grid.
const GRID: usize = 16;
/// How far (in blocks) a block may have moved between frames and still match.
const REACH: usize = 2;
/// The frame's score is the mean of this many worst-matching blocks.
const WORST: usize = 4;
/// Neighbours a frame's score is compared with: frames before, frames after.
const BEFORE: usize = 8;
pub const LOOKAHEAD: usize = 2;
/// Added to the neighbours' mean so a still shot does not make every flicker a spike.
const FLOOR: f32 = 0.03;
/// Spread of the normalised luma, and what is added to the frame's luma deviation before
/// dividing (a flat frame is not blown up into noise).
const LUMA_SPREAD: f32 = 40.0;
const LUMA_SOFT: f32 = 8.0;

/// Per block: normalised luma, and the two chroma differences, as 0..255-scaled values.
type Features = Vec<[f32; 3]>;

/// Reduces a thumbnail to its block features (any size of at least `GRID` pixels a side).
pub fn features(img: &RgbImage) -> Features {
    let (w, h) = (img.width, img.height);
    let mut sums = vec![[0f32; 3]; GRID * GRID];
    let mut counts = vec![0u32; GRID * GRID];
    for y in 0..h {
        let by = y * GRID / h.max(1);
        for x in 0..w {
            let bx = x * GRID / w.max(1);
            let p = &img.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
            let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
            let luma = 0.299 * r + 0.587 * g + 0.114 * b;
            let s = &mut sums[by * GRID + bx];
            s[0] += luma;
            s[1] += (b - luma) * 0.564;
            s[2] += (r - luma) * 0.713;
            counts[by * GRID + bx] += 1;
        }
    }
    let mut f: Features = sums.iter().zip(&counts).map(|(s, &n)| s.map(|v| v / n.max(1) as f32)).collect();
    let n = f.len() as f32;
    let mean = f.iter().map(|b| b[0]).sum::<f32>() / n;
    let sd = (f.iter().map(|b| (b[0] - mean) * (b[0] - mean)).sum::<f32>() / n).sqrt();
    for b in &mut f {
        b[0] = (b[0] - mean) / (sd + LUMA_SOFT) * LUMA_SPREAD;
    }
    f
}

/// For each block of `a`, the distance (0..~1) to the closest block of `b` within `REACH`.
fn unmatched(a: &Features, b: &Features, out: &mut Vec<f32>) {
    out.clear();
    for i in 0..GRID {
        for j in 0..GRID {
            let fa = a[i * GRID + j];
            let mut best = f32::INFINITY;
            for bi in i.saturating_sub(REACH)..(i + REACH + 1).min(GRID) {
                for bj in j.saturating_sub(REACH)..(j + REACH + 1).min(GRID) {
                    let fb = b[bi * GRID + bj];
                    best = best.min((fa[0] - fb[0]).abs() + (fa[1] - fb[1]).abs() + (fa[2] - fb[2]).abs());
                }
            }
            out.push(best / 255.0);
        }
    }
}

/// The mean of the `WORST` largest values (sorted in place).
fn worst(d: &mut [f32]) -> f32 {
    d.sort_unstable_by(|x, y| y.total_cmp(x));
    d.iter().take(WORST).sum::<f32>() / WORST as f32
}

/// How much changed between two frames' features: what appeared or disappeared, whichever is more.
pub fn score(prev: &Features, cur: &Features) -> f32 {
    let mut d = Vec::with_capacity(GRID * GRID);
    unmatched(cur, prev, &mut d);
    let appeared = worst(&mut d);
    unmatched(prev, cur, &mut d);
    appeared.max(worst(&mut d))
}

/// The detector's settings (see `[cuts]` in configs/default.toml).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CutParams {
    pub ratio: f32,
    pub min_score: f32,
    pub min_shot: u64,
}

/// A frame whose shot is settled: whether it starts a new one, and its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settled {
    pub idx: u64,
    pub cut: bool,
    pub score: f32,
}

/// A pushed frame still waiting for the frames after it.
struct Open {
    idx: u64,
    /// None for the first frame (nothing to compare it with).
    score: Option<f32>,
    features: Features,
}

/// Pushes one frame at a time and settles each frame `LOOKAHEAD` frames later.
pub struct CutDetector {
    params: CutParams,
    open: VecDeque<Open>,
    /// Scores of the last `BEFORE` settled frames (frame 0 has none).
    before: VecDeque<f32>,
    /// Features of the last settled frame: what a resume from right after it starts from.
    settled_features: Option<Features>,
    last_cut: u64,
}

/// What a [`CutDetector`] carries from the last settled frame to the next, for a checkpoint: a
/// detector restored from it and fed the frames after that frame settles them as this one did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CutState {
    /// The settled frame's block features, flattened (luma, chroma, chroma per block).
    pub prev: Option<Vec<f32>>,
    /// Scores of the frames settled before it, oldest first, at most 8.
    #[serde(default)]
    pub scores: Vec<f32>,
    pub last_cut: u64,
}

impl CutDetector {
    pub fn new(params: CutParams) -> Self {
        Self { params, open: VecDeque::new(), before: VecDeque::new(), settled_features: None, last_cut: 0 }
    }

    /// The state as of the last settled frame (frames pushed after it are not in it).
    pub fn state(&self) -> CutState {
        CutState {
            prev: self.settled_features.as_ref().map(|f| f.iter().flatten().copied().collect()),
            scores: self.before.iter().copied().collect(),
            last_cut: self.last_cut,
        }
    }

    /// Continues from a [`state`](Self::state): the next push is the frame after the settled one.
    /// Features of the wrong size (another version's state) are ignored.
    pub fn restore(&mut self, state: &CutState) {
        let features: Option<Features> =
            state.prev.as_ref().filter(|v| v.len() == GRID * GRID * 3).map(|v| v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect());
        self.settled_features = features;
        self.open.clear();
        self.before = state.scores.iter().rev().take(BEFORE).rev().copied().collect();
        self.last_cut = state.last_cut;
    }

    /// `idx` must increase by one each call. Returns the frame settled by this one, if any
    /// (frame `idx - LOOKAHEAD`); frame 0 starts shot 0 and is no cut.
    pub fn push(&mut self, idx: u64, thumb: &RgbImage) -> Option<Settled> {
        let f = features(thumb);
        // The last pushed frame: the newest open one, else the last settled one.
        let prev = self.open.back().map(|o| &o.features).or(self.settled_features.as_ref());
        let s = prev.map(|p| score(p, &f));
        self.open.push_back(Open { idx, score: s, features: f });
        if self.open.len() > LOOKAHEAD {
            self.settle()
        } else {
            None
        }
    }

    /// Settles the frames still waiting (the end of the stream: fewer frames after them).
    pub fn finish(&mut self) -> Vec<Settled> {
        std::iter::from_fn(|| self.settle()).collect()
    }

    fn settle(&mut self) -> Option<Settled> {
        let o = self.open.pop_front()?;
        let neighbours: Vec<f32> = self.before.iter().copied().chain(self.open.iter().take(LOOKAHEAD).filter_map(|n| n.score)).collect();
        let mut cut = false;
        if let Some(s) = o.score {
            let base = neighbours.iter().sum::<f32>() / neighbours.len().max(1) as f32;
            let spike = !neighbours.is_empty() && s >= self.params.ratio * (base + FLOOR);
            cut = o.idx > 0 && spike && s >= self.params.min_score && o.idx.saturating_sub(self.last_cut) >= self.params.min_shot;
            if cut {
                self.last_cut = o.idx;
            }
            self.before.push_back(s);
            if self.before.len() > BEFORE {
                self.before.pop_front();
            }
        }
        self.settled_features = Some(o.features);
        Some(Settled { idx: o.idx, cut, score: o.score.unwrap_or(0.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: CutParams = CutParams { ratio: 2.8, min_score: 0.08, min_shot: 8 };

    /// A 64×64 grey frame with a `side`-pixel square of `rgb` at (x, y).
    fn frame(x: usize, y: usize, side: usize, rgb: [u8; 3]) -> RgbImage {
        let mut data = [128u8; 3].repeat(64 * 64);
        for yy in y..(y + side).min(64) {
            for xx in x..(x + side).min(64) {
                data[(yy * 64 + xx) * 3..(yy * 64 + xx) * 3 + 3].copy_from_slice(&rgb);
            }
        }
        RgbImage::new(64, 64, data).unwrap()
    }

    /// A textured frame: a diagonal ramp, brightened by `gain` (a flash).
    fn texture(shift: usize, gain: f32) -> RgbImage {
        let mut data = Vec::with_capacity(64 * 64 * 3);
        for y in 0..64 {
            for x in 0..64 {
                let v = (((x + shift) * 3 + y * 2) % 160 + 40) as f32;
                let v = (v * gain).min(255.0) as u8;
                data.extend([v, v / 2 + 60, 255 - v]);
            }
        }
        RgbImage::new(64, 64, data).unwrap()
    }

    fn run(frames: &[RgbImage]) -> Vec<u64> {
        let mut det = CutDetector::new(P);
        let mut settled: Vec<Settled> = frames.iter().enumerate().filter_map(|(i, f)| det.push(i as u64, f)).collect();
        settled.extend(det.finish());
        assert_eq!(settled.iter().map(|s| s.idx).collect::<Vec<_>>(), (0..frames.len() as u64).collect::<Vec<_>>(), "every frame settles once, in order");
        settled.iter().filter(|s| s.cut).map(|s| s.idx).collect()
    }

    #[test]
    fn a_change_in_a_ninth_of_the_frame_is_a_cut() {
        // Two people in the middle of the same grey frame: a red square, then a blue one.
        let mut frames: Vec<RgbImage> = (0..20).map(|_| frame(22, 22, 20, [200, 40, 40])).collect();
        frames.extend((0..20).map(|_| frame(22, 22, 20, [40, 40, 200])));
        assert_eq!(run(&frames), vec![20]);
    }

    #[test]
    fn motion_flashes_and_stills_are_not_cuts() {
        // A face-coloured square gliding a quarter block a frame, then a texture panning with a
        // 2-frame flash.
        let mut frames: Vec<RgbImage> = (0..20).map(|i| frame(4 + i, 20, 16, [160, 110, 100])).collect();
        frames.extend((0..30).map(|i| texture(i, if (10..12).contains(&i) { 1.5 } else { 1.0 })));
        assert_eq!(run(&frames), vec![20], "only the change of scene");
    }

    #[test]
    fn shots_are_at_least_min_shot_frames() {
        let a = frame(22, 22, 20, [200, 40, 40]);
        let b = frame(22, 22, 20, [40, 200, 40]);
        let mut frames: Vec<RgbImage> = (0..10).map(|_| a.clone()).collect();
        frames.extend((0..4).map(|_| b.clone()));
        frames.extend((0..10).map(|_| a.clone()));
        assert_eq!(run(&frames), vec![10], "the cut back 4 frames later is too soon");
    }

    #[test]
    fn a_restored_detector_settles_the_rest_as_the_original() {
        let mut frames: Vec<RgbImage> = (0..15).map(|i| texture(i, 1.0)).collect();
        frames.extend((0..15).map(|i| frame(10 + i, 30, 20, [30, 200, 90])));
        frames.extend((0..15).map(|_| frame(22, 22, 20, [40, 40, 200])));
        let mut straight = CutDetector::new(P);
        let mut all = Vec::new();
        let mut states = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if let Some(s) = straight.push(i as u64, f) {
                all.push(s);
                states.push((s.idx, straight.state()));
            }
        }
        all.extend(straight.finish());
        assert_eq!(all.iter().filter(|s| s.cut).map(|s| s.idx).collect::<Vec<_>>(), vec![15, 30]);
        for (at, state) in states {
            // Round trip through the checkpoint's JSON, as a resume does.
            let state: CutState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            let mut resumed = CutDetector::new(P);
            resumed.restore(&state);
            let mut rest: Vec<Settled> = frames.iter().enumerate().skip(at as usize + 1).filter_map(|(i, f)| resumed.push(i as u64, f)).collect();
            rest.extend(resumed.finish());
            assert_eq!(rest, all[at as usize + 1..], "resumed after frame {at}");
        }
    }
}
