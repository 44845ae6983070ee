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
//!
//! With `--embed-every track` the tracker also says which faces are worth embedding
//! ([`Tracker::to_embed`]): a face whose match is certain and that looks like what its track
//! has already embedded adds nothing, so it is not embedded. Every face the appearance check
//! could decide about (a box two tracks could claim, or two boxes one track could) is embedded,
//! so that check works as it does when every face is embedded.

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
    /// How the face looks, when it passed the quality gates (only such faces are embedded).
    pub look: Option<Look>,
}

/// What of a usable face decides whether it adds to its track.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Look {
    /// [`crate::types::FaceQuality::rank`].
    pub rank: f64,
    pub yaw: f64,
    pub face_px: f64,
}

/// A track's last embedded face, and how many usable faces it has had since.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Embedded {
    last: Look,
    best_rank: f64,
    since: u32,
}

/// An uncontested overlap match below this IoU (a jump, or a box that changed shape) is embedded.
const CERTAIN_IOU: f32 = 0.5;
/// A face whose rank is this many times the best its track has embedded is clearly better.
const BETTER_RANK: f64 = 1.25;
/// A yaw change (degrees) or a size change (ratio of the shorter box sides) since the last
/// embedded face past which the face is embedded again.
const YAW_CHANGE: f64 = 20.0;
const SIZE_CHANGE: f64 = 1.5;

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
    #[serde(default)]
    embedded: Option<Embedded>,
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
        self.add_look(det);
    }

    /// Adds a face's appearance, and what it says of the faces still worth embedding.
    fn add_look(&mut self, det: &TrackInput) {
        if let Some(e) = det.embedding {
            match &mut self.appearance {
                Some(sum) => sum.iter_mut().zip(e).for_each(|(s, x)| *s += x),
                None => self.appearance = Some(e.to_vec()),
            }
        }
        match (det.look, det.embedding.is_some(), &mut self.embedded) {
            (Some(look), true, embedded) => {
                let best_rank = embedded.as_ref().map_or(look.rank, |e| e.best_rank.max(look.rank));
                *embedded = Some(Embedded { last: look, best_rank, since: 0 });
            }
            (Some(_), false, Some(e)) => e.since += 1,
            _ => {}
        }
    }

    /// Whether a usable face matched to this track for certain (at overlap `o`) adds to it.
    fn adds(&self, look: &Look, o: f32, refresh: u32) -> bool {
        let Some(e) = &self.embedded else { return true };
        let size = look.face_px.max(1e-6) / e.last.face_px.max(1e-6);
        o < CERTAIN_IOU
            || look.rank > e.best_rank * BETTER_RANK
            || (look.yaw - e.last.yaw).abs() > YAW_CHANGE
            || !(1.0 / SIZE_CHANGE..=SIZE_CHANGE).contains(&size)
            || e.since + 1 >= refresh
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
    /// The shot of the last frame pushed: a new one ends every track.
    #[serde(default)]
    shot: Option<u64>,
}

impl Tracker {
    pub fn new(params: TrackParams) -> Self {
        Self { params, tracks: Vec::new(), next_id: 0, refused_matches: 0, splits: 0, shot: None }
    }

    /// [`Tracker::push`] for a frame of shot `shot`: a shot other than the last one's ends every
    /// track first (they are among the ids returned as ended).
    pub fn push_in_shot(&mut self, frame: u64, shot: u64, dets: &[TrackInput]) -> (Vec<u64>, Vec<u64>) {
        let mut ended = if self.shot.is_some_and(|s| s != shot) { self.end_all() } else { Vec::new() };
        self.shot = Some(shot);
        let (ids, more) = self.push(frame, dets);
        ended.extend(more);
        (ids, ended)
    }

    /// Which of a frame's detections to embed before it is pushed, when only faces that add to
    /// their track are embedded (`--embed-every track`). A usable face (one with a [`Look`]) is
    /// embedded when no track can take it (a new track), when it or its track could go another
    /// way (another track, or another detection, overlaps enough to be matched instead: the
    /// appearance check decides those), or, matched for certain, when its track has embedded
    /// nothing yet, the overlap is below [`CERTAIN_IOU`], its rank is clearly above the best its
    /// track embedded, its pose or size changed, or `refresh` faces have passed since the last.
    pub fn to_embed(&self, frame: u64, shot: u64, dets: &[TrackInput], refresh: u32) -> Vec<bool> {
        let live: Vec<&Track> = match self.shot.is_some_and(|s| s != shot) {
            true => Vec::new(),
            false => self.tracks.iter().filter(|t| frame.saturating_sub(t.last_frame) <= self.params.max_gap).collect(),
        };
        // The tracks each detection could be matched to, with their overlaps.
        let candidates: Vec<Vec<(usize, f32)>> = dets
            .iter()
            .map(|d| {
                let min_iou = if f64::from(d.score) >= self.params.high_score { self.params.iou } else { self.params.low_iou } as f32;
                live.iter().enumerate().map(|(ti, t)| (ti, iou(&t.predict(frame), &d.bbox))).filter(|&(_, o)| o >= min_iou).collect()
            })
            .collect();
        let claims = |ti: usize| candidates.iter().filter(|c| c.iter().any(|&(t, _)| t == ti)).count();
        dets.iter()
            .zip(&candidates)
            .map(|(d, c)| match (d.look, c.as_slice()) {
                (None, _) => false,
                (Some(_), []) => true,
                (Some(look), [(ti, o)]) if claims(*ti) == 1 => live[*ti].adds(&look, *o, refresh),
                (Some(_), _) => true,
            })
            .collect()
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
                    let mut t = Track { id, bbox: d.bbox, velocity: [0.0; 4], last_frame: frame, updates: 0, appearance: None, embedded: None };
                    t.add_look(d);
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
        TrackInput { bbox: [x, y, x + 20.0, y + 20.0], score: 0.9, embedding: None, look: None }
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

    fn look(rank: f64, yaw: f64, face_px: f64) -> Option<Look> {
        Some(Look { rank, yaw, face_px })
    }

    /// Pushes `n` frames of a still face at x, embedding it only where `to_embed` says, and
    /// returns which frames were embedded.
    fn embedded_frames(t: &mut Tracker, frames: std::ops::Range<u64>, x: f32, l: Option<Look>, refresh: u32) -> Vec<u64> {
        let e = [1.0f32, 0.0];
        let mut out = Vec::new();
        for f in frames {
            let d = TrackInput { look: l, ..det(x, 100.0) };
            let embed = t.to_embed(f, 0, &[d], refresh)[0];
            if embed {
                out.push(f);
            }
            t.push_in_shot(f, 0, &[TrackInput { embedding: embed.then_some(&e[..]), ..d }]);
        }
        out
    }

    #[test]
    fn a_track_embeds_its_first_face_then_every_refresh() {
        let mut t = Tracker::new(params());
        assert_eq!(embedded_frames(&mut t, 0..10, 100.0, look(0.5, 0.0, 20.0), 4), vec![0, 4, 8]);
        assert_eq!(embedded_frames(&mut t, 10..12, 100.0, look(0.5, 0.0, 20.0), 1), vec![10, 11], "refresh 1 embeds every face");
    }

    #[test]
    fn gated_faces_are_never_embedded() {
        let mut t = Tracker::new(params());
        assert!(embedded_frames(&mut t, 0..3, 100.0, None, 4).is_empty());
    }

    #[test]
    fn a_better_face_a_turned_head_or_a_new_size_is_embedded() {
        let still = look(0.4, 0.0, 20.0);
        for (changed, embedded) in [
            (look(0.45, 5.0, 22.0), false),
            (look(0.6, 0.0, 20.0), true),
            (look(0.4, 25.0, 20.0), true),
            (look(0.4, 0.0, 31.0), true),
            (look(0.4, 0.0, 13.0), true),
        ] {
            let mut t = Tracker::new(params());
            embedded_frames(&mut t, 0..2, 100.0, still, 100);
            let d = TrackInput { look: changed, ..det(100.0, 100.0) };
            assert_eq!(t.to_embed(2, 0, &[d], 100), vec![embedded], "{changed:?}");
        }
    }

    #[test]
    fn a_match_the_appearance_check_could_decide_is_embedded() {
        let l = look(0.5, 0.0, 20.0);
        let e = [1.0f32, 0.0];
        let mut t = Tracker::new(params());
        let at = |x: f32, emb| TrackInput { look: l, embedding: emb, ..det(x, 100.0) };
        t.push_in_shot(0, 0, &[at(100.0, Some(&e[..])), at(200.0, Some(&e[..]))]);
        t.push_in_shot(1, 0, &[at(100.0, None), at(200.0, None)]);
        assert_eq!(t.to_embed(2, 0, &[at(100.0, None), at(200.0, None)], 100), vec![false, false], "two certain matches");
        // A third face between the first two could be either track's: it and both others are embedded.
        assert_eq!(t.to_embed(2, 0, &[at(100.0, None), at(200.0, None), at(106.0, None)], 100), vec![true, false, true]);
        // A box two tracks could claim.
        assert_eq!(t.to_embed(2, 0, &[at(150.0, None)], 100), vec![true], "no track overlaps it enough: a new track");
        let mut near = Tracker::new(params());
        near.push_in_shot(0, 0, &[at(100.0, Some(&e[..])), at(112.0, Some(&e[..]))]);
        assert_eq!(near.to_embed(1, 0, &[at(106.0, None)], 100), vec![true], "overlaps both tracks");
        // A weak overlap (a jump) is embedded; a face in a new shot starts a new track.
        assert_eq!(t.to_embed(2, 0, &[at(106.0, None)], 100), vec![false], "IoU 0.54 with one track: certain");
        assert_eq!(t.to_embed(2, 0, &[at(108.0, None)], 100), vec![true], "IoU 0.43: a jump");
        assert_eq!(t.to_embed(2, 1, &[at(100.0, None)], 100), vec![true], "a new shot");
    }

    #[test]
    fn a_new_shot_ends_every_track() {
        let mut t = Tracker::new(params());
        t.push_in_shot(0, 0, &[det(100.0, 100.0)]);
        assert_eq!(t.push_in_shot(1, 0, &[det(100.0, 100.0)]), (vec![0], vec![]));
        assert_eq!(t.push_in_shot(2, 1, &[det(100.0, 100.0)]), (vec![1], vec![0]));
    }
}
