//! People: the identity layer above tracks, as pure code. Tracks are clustered into people
//! ([`cluster`]) under the constraint that tracks seen at the same time ([`cooccurring`], from
//! each track's interval, [`intervals`]) are never one person; a person's screen time is the
//! union of its tracks' intervals ([`union_length`]). `output::people` reads a run's files,
//! applies this and writes the people outputs.

pub mod cluster;

use std::collections::{BTreeMap, HashMap};

use crate::identify::Identity;
pub use cluster::{Linkage, PeopleParams};

/// What the people step needs to know about the run besides its files.
#[derive(Clone, Copy, Debug)]
pub struct RunFacts {
    /// Decoded frames between two sampled ones.
    pub stride: u64,
    /// Seconds of one frame (1 / the stream's frame rate; 0 when the stream gives none).
    pub frame_s: f64,
}

impl RunFacts {
    pub fn new(stride: u64, frame_rate: Option<f64>) -> Self {
        Self { stride, frame_s: frame_rate.filter(|r| r.is_finite() && *r > 0.0).map_or(0.0, |r| 1.0 / r) }
    }
}

/// When a track was seen: what its interval is made of.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub shot: u64,
    pub t_start: f64,
    pub t_end: f64,
}

/// The manifest's `people` section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeopleSection {
    pub settings: PeopleParams,
    pub people: u64,
    pub tracks: u64,
    /// Tracks in a person (`person_id` set).
    pub tracks_assigned: u64,
    /// Tracks without `person_id` because none of their faces was embedded.
    pub unassigned_no_embedding: u64,
    /// Tracks without `person_id` because they were short and close to no person.
    pub unassigned_short: u64,
    /// Short tracks that joined a person.
    pub short_attached: u64,
    /// Pairs of tracks seen at the same time (never one person).
    pub cannot_links: u64,
    pub wall_s: f64,
}

/// A person's name and match from its tracks' (`--seeds`): the best-scoring track named (all
/// named tracks of a person carry one name, see [`cluster`]), else the best-scoring track, whose
/// name is then `null`. `None` without seeds.
pub fn person_identity<'a>(of: impl Iterator<Item = Option<&'a Identity>>) -> Option<Identity> {
    let all: Vec<&Identity> = of.flatten().collect();
    let best = |v: Vec<&'a Identity>| v.into_iter().max_by(|a, b| a.score.total_cmp(&b.score)).cloned();
    best(all.iter().copied().filter(|i| i.name.is_some()).collect()).or_else(|| best(all))
}

/// Each track's interval in seconds: from its first sampled face to one stride after its last
/// (the frames up to the next sampled frame, when it was no longer checked), never past the end
/// of its shot (its last frame's start plus one frame).
/// `shots` are (shot, time of its last frame).
pub fn intervals(tracks: &[Seen], shots: &[(u64, f64)], facts: RunFacts) -> Vec<(f64, f64)> {
    let shot_end: HashMap<u64, f64> = shots.iter().map(|&(s, t)| (s, t + facts.frame_s)).collect();
    tracks
        .iter()
        .map(|t| {
            let end = t.t_end + facts.stride as f64 * facts.frame_s;
            (t.t_start, shot_end.get(&t.shot).map_or(end, |&e| end.min(e)).max(t.t_end))
        })
        .collect()
}

/// Pairs of tracks whose intervals overlap (in one shot: tracks never outlive their shot), by a
/// sweep over each shot's tracks in order of start.
pub fn cooccurring(tracks: &[Seen], spans: &[(f64, f64)]) -> Vec<(usize, usize)> {
    let mut by_shot: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, t) in tracks.iter().enumerate() {
        by_shot.entry(t.shot).or_default().push(i);
    }
    let mut pairs = Vec::new();
    for mut ids in by_shot.into_values() {
        ids.sort_by(|&a, &b| spans[a].0.total_cmp(&spans[b].0).then(a.cmp(&b)));
        let mut open: Vec<usize> = Vec::new();
        for i in ids {
            // Times are to the microsecond: intervals that only touch (to float noise) do not overlap.
            open.retain(|&j| spans[j].1 > spans[i].0 + 1e-6);
            for &j in &open {
                pairs.push((j.min(i), j.max(i)));
            }
            open.push(i);
        }
    }
    pairs.sort_unstable();
    pairs
}

/// Total length of the union of `intervals` (sorted in place).
pub fn union_length(intervals: &mut [(f64, f64)]) -> f64 {
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for &(s, e) in intervals.iter() {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + current.map_or(0.0, |(s, e)| e - s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(shot: u64, t_start: f64, t_end: f64) -> Seen {
        Seen { shot, t_start, t_end }
    }

    #[test]
    fn intervals_reach_one_stride_on_within_the_shot() {
        let shots = vec![(0, 1.9)];
        let tracks = vec![track(0, 0.0, 0.8), track(0, 1.2, 1.8)];
        let s = intervals(&tracks, &shots, RunFacts::new(4, Some(10.0)));
        assert!((s[0].1 - 1.2).abs() < 1e-9, "{s:?}");
        assert!((s[1].1 - 2.0).abs() < 1e-9, "clipped to the shot's end: {s:?}");
        // Touching intervals (one ends where the next is first seen) do not co-occur.
        assert!(cooccurring(&tracks, &s).is_empty());
        let none = intervals(&tracks, &shots, RunFacts::new(4, None));
        assert_eq!(none[0], (0.0, 0.8));
    }

    #[test]
    fn overlapping_tracks_of_one_shot_co_occur() {
        let tracks = vec![track(0, 0.0, 1.0), track(0, 0.5, 2.0), track(0, 1.5, 3.0), track(1, 0.0, 3.0)];
        let s: Vec<(f64, f64)> = tracks.iter().map(|t| (t.t_start, t.t_end)).collect();
        assert_eq!(cooccurring(&tracks, &s), [(0, 1), (1, 2)]);
    }

    #[test]
    fn screen_time_is_the_union() {
        assert_eq!(union_length(&mut []), 0.0);
        assert!((union_length(&mut [(2.0, 3.0), (0.0, 1.0), (0.5, 1.5)]) - 2.5).abs() < 1e-12);
        assert!((union_length(&mut [(0.0, 4.0), (1.0, 2.0)]) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn a_person_is_named_by_its_named_tracks() {
        let id = |name: Option<&str>, score: f64| Identity { name: name.map(str::to_string), score, margin: 0.2 };
        let (a, b, c) = (id(None, 0.9), id(Some("ann"), 0.5), id(Some("ann"), 0.6));
        let p = person_identity([Some(&a), Some(&b), None, Some(&c)].into_iter()).unwrap();
        assert_eq!((p.name.as_deref(), p.score), (Some("ann"), 0.6));
        let p = person_identity([Some(&a), None].into_iter()).unwrap();
        assert_eq!((p.name, p.score), (None, 0.9));
        assert_eq!(person_identity([None, None].into_iter()), None);
    }
}
