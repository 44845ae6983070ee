//! Shot-cut detection on decoded frames: a colour histogram of a small thumbnail of every frame,
//! compared with the previous frame's. A cut is a histogram change above a threshold, at least
//! `min_shot` frames after the previous cut (a flash or a fast pan can exceed the threshold on
//! consecutive frames, and a real shot is never that short).

use crate::types::RgbImage;

const BINS: usize = 16;

/// Per-channel RGB histogram, `BINS` bins each, normalised to sum 1 per channel.
pub fn histogram(img: &RgbImage) -> [f32; 3 * BINS] {
    let mut h = [0f32; 3 * BINS];
    for p in img.data.chunks_exact(3) {
        for c in 0..3 {
            h[c * BINS + usize::from(p[c]) * BINS / 256] += 1.0;
        }
    }
    let n = (img.data.len() / 3).max(1) as f32;
    h.iter_mut().for_each(|v| *v /= n);
    h
}

/// Half the L1 distance per channel, averaged: 0 identical, 1 disjoint colours.
pub fn distance(a: &[f32; 3 * BINS], b: &[f32; 3 * BINS]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / 6.0
}

/// Pushes one frame at a time; says whether that frame starts a new shot.
pub struct CutDetector {
    threshold: f32,
    min_shot: u64,
    prev: Option<[f32; 3 * BINS]>,
    last_cut: u64,
}

/// What a [`CutDetector`] carries from one frame to the next, for a checkpoint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CutState {
    pub prev: Option<Vec<f32>>,
    pub last_cut: u64,
}

impl CutDetector {
    pub fn new(threshold: f32, min_shot: u64) -> Self {
        Self { threshold, min_shot, prev: None, last_cut: 0 }
    }

    pub fn state(&self) -> CutState {
        CutState { prev: self.prev.map(|h| h.to_vec()), last_cut: self.last_cut }
    }

    /// Continues from a [`state`](Self::state); a histogram of the wrong length is ignored.
    pub fn restore(&mut self, state: &CutState) {
        self.prev = state.prev.as_ref().and_then(|h| <[f32; 3 * BINS]>::try_from(h.as_slice()).ok());
        self.last_cut = state.last_cut;
    }

    /// `frame_idx` must increase by one each call. Returns the histogram distance to the previous
    /// frame and whether this frame starts a new shot (frame 0 starts shot 0 and is no cut).
    pub fn push(&mut self, frame_idx: u64, thumb: &RgbImage) -> (f32, bool) {
        let h = histogram(thumb);
        let d = self.prev.map_or(0.0, |p| distance(&p, &h));
        self.prev = Some(h);
        let cut = frame_idx > 0 && d > self.threshold && frame_idx - self.last_cut >= self.min_shot;
        if cut {
            self.last_cut = frame_idx;
        }
        (d, cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(rgb: [u8; 3]) -> RgbImage {
        RgbImage::new(4, 4, rgb.repeat(16)).unwrap()
    }

    #[test]
    fn identical_frames_are_not_cuts_and_disjoint_ones_are() {
        let a = solid([10, 10, 10]);
        let b = solid([240, 240, 240]);
        assert_eq!(distance(&histogram(&a), &histogram(&a)), 0.0);
        assert!((distance(&histogram(&a), &histogram(&b)) - 1.0).abs() < 1e-6);
        let mut det = CutDetector::new(0.4, 5);
        assert_eq!(det.push(0, &a), (0.0, false));
        assert!(!det.push(1, &a).1);
        assert!(!det.push(2, &a).1);
        // Frame 3 is only 3 frames after the start: too close to be a shot.
        assert!(!det.push(3, &b).1);
        assert!(det.push(5, &a).1, "a real cut after min_shot frames");
        assert!(!det.push(6, &b).1, "a flash right after a cut is no new shot");
    }

    #[test]
    fn small_changes_stay_in_the_shot() {
        let mut det = CutDetector::new(0.4, 1);
        det.push(0, &solid([100, 100, 100]));
        // 100 -> 110 stays in bin 6; 100 -> 120 moves one channel bin per channel.
        assert!(!det.push(1, &solid([110, 100, 100])).1);
        let mut half = [100u8, 100, 100].repeat(8);
        half.extend([200u8, 200, 200].repeat(8));
        let (d, cut) = det.push(2, &RgbImage::new(4, 4, half).unwrap());
        assert!((d - 0.5).abs() < 1e-6 && cut == (d > 0.4));
    }
}
