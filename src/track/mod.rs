//! Tracking: ties the faces of successive sampled frames into tracks, and finds shot cuts.
//!
//! [`Tracker`] is a small state machine in the ByteTrack style: push one frame's detections, get
//! a track id for each. Confident detections are matched first to the tracks' constant-velocity
//! predictions by box overlap, then the weak ones to what is left with a stricter overlap; an
//! overlap match whose embedding disagrees with the track's mean appearance is refused (and
//! counted as a prevented identity switch). A track refused so and matched by no other face in
//! that frame is split: it ends there, since the face in its place is someone else (a cut the
//! cut detector missed, or a person replaced in the same spot), so it can never hold two people
//! whose faces were embedded. Tracks also end after `max_gap` frames unseen, at a cut, or at the
//! end of the video; every detection gets a track, new ones when nothing matches.

pub mod cuts;
pub mod summary;

use crate::detect::nms::iou;

/// Tracker settings (see `[track]` in configs/default.toml).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackParams {
    /// Detections at or above this score are matched in the first stage.
    pub high_score: f64,
    /// Minimum IoU with a track's prediction in the first stage.
    pub iou: f64,
    /// Minimum IoU for low-score detections in the second stage.
    pub low_iou: f64,
    /// A track unseen for more than this many decoded frames ends.
    pub max_gap: u64,
    /// An overlap match is refused when the face's embedding has a lower cosine than this to the
    /// track's mean embedding.
    pub min_cosine: f64,
}

/// One detection as the tracker sees it.
#[derive(Clone, Copy, Debug)]
pub struct TrackInput<'a> {
    pub bbox: [f32; 4],
    pub score: f32,
    pub embedding: Option<&'a [f32]>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Track {
    id: u64,
    bbox: [f32; 4],
    /// Change of each box coordinate per decoded frame.
    velocity: [f32; 4],
    last_frame: u64,
    updates: u32,
    /// Sum of the unit embeddings seen so far (its direction is the mean appearance).
    appearance: Option<Vec<f32>>,
}

impl Track {
    fn predict(&self, frame: u64) -> [f32; 4] {
        let dt = frame.saturating_sub(self.last_frame) as f32;
        std::array::from_fn(|i| self.bbox[i] + self.velocity[i] * dt)
    }

    fn agrees(&self, embedding: Option<&[f32]>, min_cosine: f32) -> bool {
        match (&self.appearance, embedding) {
            (Some(sum), Some(e)) => {
                let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
                norm == 0.0 || sum.iter().zip(e).map(|(a, b)| a * b).sum::<f32>() / norm >= min_cosine
            }
            _ => true,
        }
    }

    fn update(&mut self, frame: u64, det: &TrackInput) {
        let dt = frame.saturating_sub(self.last_frame).max(1) as f32;
        let v: [f32; 4] = std::array::from_fn(|i| (det.bbox[i] - self.bbox[i]) / dt);
        self.velocity = if self.updates == 0 { v } else { std::array::from_fn(|i| 0.5 * self.velocity[i] + 0.5 * v[i]) };
        self.bbox = det.bbox;
        self.last_frame = frame;
        self.updates += 1;
        if let Some(e) = det.embedding {
            match &mut self.appearance {
                Some(sum) => sum.iter_mut().zip(e).for_each(|(s, x)| *s += x),
                None => self.appearance = Some(e.to_vec()),
            }
        }
    }
}

/// The ByteTrack-style state machine; see the module docs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tracker {
    params: TrackParams,
    tracks: Vec<Track>,
    next_id: u64,
    refused_matches: u64,
    /// Tracks ended because a different-looking face took their place.
    #[serde(default)]
    splits: u64,
}

impl Tracker {
    pub fn new(params: TrackParams) -> Self {
        Self { params, tracks: Vec::new(), next_id: 0, refused_matches: 0, splits: 0 }
    }

    /// Overlap matches refused because the appearance disagreed: identity switches the tracker
    /// would otherwise have made.
    pub fn id_switches_prevented(&self) -> u64 {
        self.refused_matches
    }

    /// Tracks ended where a face that did not look like them took their place.
    pub fn splits(&self) -> u64 {
        self.splits
    }

    /// Assigns a track id to each detection of `frame` (in input order) and returns them with the
    /// ids of the tracks that ended: unseen too long, or split.
    pub fn push(&mut self, frame: u64, dets: &[TrackInput]) -> (Vec<u64>, Vec<u64>) {
        let max_gap = self.params.max_gap;
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            let keep = frame.saturating_sub(t.last_frame) <= max_gap;
            if !keep {
                ended.push(t.id);
            }
            keep
        });
        let mut ids: Vec<Option<u64>> = vec![None; dets.len()];
        let mut used = vec![false; self.tracks.len()];
        let mut refused = vec![false; self.tracks.len()];
        let high = |d: &TrackInput| f64::from(d.score) >= self.params.high_score;
        let stages = [(true, self.params.iou as f32), (false, self.params.low_iou as f32)];
        for (want_high, min_iou) in stages {
            let mut pairs = Vec::new();
            for (di, d) in dets.iter().enumerate().filter(|(_, d)| high(d) == want_high) {
                for (ti, t) in self.tracks.iter().enumerate().filter(|(ti, _)| !used[*ti]) {
                    let o = iou(&t.predict(frame), &d.bbox);
                    if o >= min_iou {
                        pairs.push((o, di, ti));
                    }
                }
            }
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            for (_, di, ti) in pairs {
                if ids[di].is_some() || used[ti] {
                    continue;
                }
                if !self.tracks[ti].agrees(dets[di].embedding, self.params.min_cosine as f32) {
                    self.refused_matches += 1;
                    refused[ti] = true;
                    continue;
                }
                used[ti] = true;
                self.tracks[ti].update(frame, &dets[di]);
                ids[di] = Some(self.tracks[ti].id);
            }
        }
        let (mut index, mut splits) = (0, 0);
        self.tracks.retain(|t| {
            let split = refused[index] && !used[index];
            index += 1;
            if split {
                ended.push(t.id);
                splits += 1;
            }
            !split
        });
        self.splits += splits;
        let ids = ids
            .into_iter()
            .zip(dets)
            .map(|(id, d)| {
                id.unwrap_or_else(|| {
                    let id = self.next_id;
                    self.next_id += 1;
                    let mut t = Track { id, bbox: d.bbox, velocity: [0.0; 4], last_frame: frame, updates: 0, appearance: None };
                    if let Some(e) = d.embedding {
                        t.appearance = Some(e.to_vec());
                    }
                    self.tracks.push(t);
                    id
                })
            })
            .collect();
        (ids, ended)
    }

    /// Ends every track (a shot cut, or the end of the video) and returns their ids.
    pub fn end_all(&mut self) -> Vec<u64> {
        self.tracks.drain(..).map(|t| t.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrackParams {
        TrackParams { high_score: 0.6, iou: 0.3, low_iou: 0.5, max_gap: 10, min_cosine: 0.2 }
    }

    fn det(x: f32, y: f32) -> TrackInput<'static> {
        TrackInput { bbox: [x, y, x + 20.0, y + 20.0], score: 0.9, embedding: None }
    }

    #[test]
    fn a_still_face_keeps_its_track() {
        let mut t = Tracker::new(params());
        for f in 0..5 {
            assert_eq!(t.push(f, &[det(100.0, 100.0)]).0, vec![0]);
        }
    }

    #[test]
    fn crossing_faces_keep_their_ids() {
        // Two faces move towards each other 8 px a frame, cross, and move on.
        let mut t = Tracker::new(params());
        let mut last = vec![];
        for f in 0..12u64 {
            let a = det(40.0 + 8.0 * f as f32, 100.0);
            let b = det(128.0 - 8.0 * f as f32, 104.0);
            let (ids, ended) = t.push(f, &[a, b]);
            assert!(ended.is_empty());
            if f == 0 {
                last = ids.clone();
            }
            assert_eq!(ids, last, "ids swapped at frame {f}");
        }
    }

    #[test]
    fn a_face_missing_for_a_few_frames_comes_back_to_its_track() {
        let mut t = Tracker::new(params());
        t.push(0, &[det(100.0, 100.0)]);
        t.push(2, &[det(104.0, 100.0)]);
        for f in 3..8 {
            assert_eq!(t.push(f, &[]).0, Vec::<u64>::new());
        }
        // Unseen for 6 frames (< max_gap 10), moving 2 px a frame: predicted near 116.
        assert_eq!(t.push(8, &[det(116.0, 100.0)]).0, vec![0]);
    }

    #[test]
    fn a_face_gone_longer_than_the_gap_ends_its_track() {
        let mut t = Tracker::new(params());
        t.push(0, &[det(100.0, 100.0)]);
        let (ids, ended) = t.push(20, &[det(100.0, 100.0)]);
        assert_eq!(ended, vec![0]);
        assert_eq!(ids, vec![1]);
    }

    #[test]
    fn a_cut_ends_every_track() {
        let mut t = Tracker::new(params());
        t.push(0, &[det(0.0, 0.0), det(100.0, 0.0)]);
        assert_eq!(t.end_all(), vec![0, 1]);
        assert_eq!(t.push(1, &[det(0.0, 0.0)]).0, vec![2], "same place after a cut is a new track");
    }

    #[test]
    fn low_score_faces_only_extend_tracks_with_strong_overlap() {
        let mut t = Tracker::new(params());
        t.push(0, &[det(100.0, 100.0)]);
        let weak = |x| TrackInput { score: 0.3, ..det(x, 100.0) };
        // IoU of a 20 px box shifted 8 px is 12/28 ≈ 0.43: enough for stage 1, not for stage 2.
        assert_eq!(t.push(1, &[weak(108.0)]).0, vec![1]);
        assert_eq!(t.push(2, &[weak(100.0)]).0, vec![0]);
    }

    #[test]
    fn disagreeing_appearance_refuses_the_match() {
        let mut t = Tracker::new(params());
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        t.push(0, &[TrackInput { embedding: Some(&a), ..det(100.0, 100.0) }]);
        let (ids, ended) = t.push(1, &[TrackInput { embedding: Some(&b), ..det(100.0, 100.0) }]);
        assert_eq!(ids, vec![1]);
        assert_eq!(ended, vec![0], "someone else in its place: the track is split");
        assert_eq!((t.id_switches_prevented(), t.splits()), (1, 1));
        let (ids, _) = t.push(2, &[TrackInput { embedding: Some(&b), ..det(100.0, 100.0) }]);
        assert_eq!(ids, vec![1], "the new face keeps its new track");
    }

    #[test]
    fn swapped_faces_are_refused_but_not_split() {
        // Two people swap places between frames: each face is refused by the other's track and
        // taken by its own, so neither track ends.
        let mut t = Tracker::new(params());
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let at = |x, e| TrackInput { embedding: Some(e), ..det(x, 100.0) };
        assert_eq!(t.push(0, &[at(100.0, &a), at(106.0, &b)]).0, vec![0, 1]);
        let (ids, ended) = t.push(1, &[at(106.0, &a), at(100.0, &b)]);
        assert_eq!(ids, vec![0, 1]);
        assert!(ended.is_empty());
        assert_eq!((t.id_switches_prevented(), t.splits()), (2, 0));
    }
}
