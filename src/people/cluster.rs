//! Tracks into people: agglomerative clustering of track embeddings under cannot-link
//! constraints (two tracks seen at the same time, or named after different seeds, are never one
//! person), stopped at a similarity threshold. Pure: no files, no threads.
//!
//! The linkages (average, single, complete) are all *reducible* with the constraint as a
//! similarity of −∞ that spreads to whatever a constrained cluster joins: merging two clusters
//! never makes the result more similar to a third than the closer of the two was. That makes the
//! nearest-neighbour-chain algorithm exact: O(n²) time on an n × n similarity matrix instead of
//! the O(n³) of the textbook loop, and a cluster whose best neighbour is below the threshold is
//! finished for good. Ties go to the lower index, so the result depends only on the input order.

use ndarray::{Array2, ArrayView2};

/// How the similarity of two groups of tracks is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Linkage {
    /// The mean cosine over all pairs of their tracks (UPGMA).
    Average,
    /// The best pair (chains easily: one look-alike pair joins two people).
    Single,
    /// The worst pair (splits a person whose tracks differ in pose or light).
    Complete,
}

/// Settings (`[people]` in configs/default.toml).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleParams {
    pub linkage: Linkage,
    /// Two groups of tracks are one person while their linkage cosine is at least this.
    pub threshold: f64,
    /// Tracks with fewer usable faces than this are not clustered; each then joins the most
    /// similar person when its cosine to the person's embedding is at least `attach_threshold`,
    /// and no person otherwise.
    pub min_track_faces: u64,
    pub attach_threshold: f64,
    /// With `--seeds`: tracks named after the same seed are joined first (unless they were
    /// seen at the same time).
    pub join_named: bool,
}

/// One track as the clustering sees it.
#[derive(Clone, Debug)]
pub struct Item<'a> {
    /// Unit vector; `None` when the track has no embedded face (never assigned).
    pub embedding: Option<&'a [f32]>,
    /// Faces that passed the quality gates (embedded, or redundant with `--embed-every track`):
    /// the track's weight in its person's embedding, and what `min_track_faces` counts.
    pub n_usable: u64,
    /// The seed it is confidently named after, if any.
    pub name: Option<&'a str>,
}

/// Where each item went.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// Per item: its cluster (dense, 0..clusters, numbered by lowest member index), or `None`.
    pub labels: Vec<Option<usize>>,
    pub clusters: usize,
    /// Items with no embedding.
    pub no_embedding: usize,
    /// Short items (below `min_track_faces`) that joined nobody.
    pub short_unassigned: usize,
    /// Short items that joined a person.
    pub short_attached: usize,
}

/// Clusters `items`; `cannot` lists pairs of item indices that are never one person.
pub fn cluster(items: &[Item], cannot: &[(usize, usize)], params: &PeopleParams) -> Clustering {
    let n = items.len();
    let core: Vec<usize> = (0..n).filter(|&i| items[i].embedding.is_some() && items[i].n_usable >= params.min_track_faces.max(1)).collect();
    let mut slot = vec![usize::MAX; n];
    for (k, &i) in core.iter().enumerate() {
        slot[i] = k;
    }
    let dim = core.first().and_then(|&i| items[i].embedding).map_or(0, <[f32]>::len);
    let mut emb = Array2::<f32>::zeros((core.len(), dim));
    for (k, &i) in core.iter().enumerate() {
        if let Some(e) = items[i].embedding {
            emb.row_mut(k).iter_mut().zip(e).for_each(|(d, s)| *d = *s);
        }
    }
    let mut groups = Groups::new(emb.view(), params.linkage);
    for &(a, b) in cannot {
        if slot[a] != usize::MAX && slot[b] != usize::MAX {
            groups.forbid(slot[a], slot[b]);
        }
    }
    // Differently named tracks are different people, so a person's name is never in doubt.
    let named: Vec<(usize, &str)> = core.iter().enumerate().filter_map(|(k, &i)| items[i].name.map(|nm| (k, nm))).collect();
    for (x, &(a, na)) in named.iter().enumerate() {
        for &(b, nb) in &named[x + 1..] {
            if na != nb {
                groups.forbid(a, b);
            }
        }
    }
    if params.join_named {
        let mut by_name: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
        for &(k, nm) in &named {
            by_name.entry(nm).or_default().push(k);
        }
        for ks in by_name.values() {
            for &k in &ks[1..] {
                let (a, b) = (groups.find(ks[0]), groups.find(k));
                if a != b && groups.sim(a, b) > f32::NEG_INFINITY {
                    groups.merge(a, b);
                }
            }
        }
    }
    groups.run(params.threshold as f32);

    // Dense cluster numbers for the core, by lowest member.
    let mut labels: Vec<Option<usize>> = vec![None; n];
    let mut number = vec![usize::MAX; core.len()];
    let mut clusters = 0;
    for (k, &i) in core.iter().enumerate() {
        let root = groups.find(k);
        if number[root] == usize::MAX {
            number[root] = clusters;
            clusters += 1;
        }
        labels[i] = Some(number[root]);
    }
    // Each cluster's embedding: the normalised sum of its tracks' means weighted by usable faces.
    let mut centre = Array2::<f32>::zeros((clusters, dim));
    let mut names: Vec<Option<&str>> = vec![None; clusters];
    for &i in &core {
        if let (Some(c), Some(e)) = (labels[i], items[i].embedding) {
            let w = items[i].n_usable as f32;
            centre.row_mut(c).iter_mut().zip(e).for_each(|(d, s)| *d += w * s);
            names[c] = names[c].or(items[i].name);
        }
    }
    for mut row in centre.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row.mapv_inplace(|v| v / norm);
        }
    }
    let mut conflicts: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in cannot {
        conflicts[a].push(b);
        conflicts[b].push(a);
    }
    let (mut no_embedding, mut short_unassigned, mut short_attached) = (0, 0, 0);
    for i in 0..n {
        if slot[i] != usize::MAX {
            continue;
        }
        let Some(e) = items[i].embedding else {
            no_embedding += 1;
            continue;
        };
        // The most similar person it may join, against the clusters as they came out of the
        // core (so the order of short tracks changes nothing but their mutual conflicts).
        let mut best: Option<(usize, f32)> = None;
        for (c, name) in names.iter().enumerate() {
            let s: f32 = centre.row(c).iter().zip(e).map(|(a, b)| a * b).sum();
            let allowed = f64::from(s) >= params.attach_threshold
                && name.zip(items[i].name).is_none_or(|(a, b)| a == b)
                && !conflicts[i].iter().any(|&j| labels[j] == Some(c));
            if allowed && best.is_none_or(|(_, bs)| s > bs) {
                best = Some((c, s));
            }
        }
        match best {
            Some((c, _)) => {
                labels[i] = Some(c);
                short_attached += 1;
            }
            None => short_unassigned += 1,
        }
    }
    Clustering { labels, clusters, no_embedding, short_unassigned, short_attached }
}

/// The clusters while they merge: a dense similarity matrix between live clusters (row of the
/// cluster's lowest-numbered root), sizes, and a union-find over the original items.
struct Groups {
    sim: Array2<f32>,
    size: Vec<f32>,
    parent: Vec<usize>,
    /// Still able to merge (live, and not known to be finished).
    open: Vec<bool>,
    linkage: Linkage,
}

impl Groups {
    fn new(emb: ArrayView2<f32>, linkage: Linkage) -> Self {
        let n = emb.nrows();
        let sim = emb.dot(&emb.t());
        Self { sim, size: vec![1.0; n], parent: (0..n).collect(), open: vec![true; n], linkage }
    }

    fn forbid(&mut self, a: usize, b: usize) {
        self.sim[[a, b]] = f32::NEG_INFINITY;
        self.sim[[b, a]] = f32::NEG_INFINITY;
    }

    fn sim(&self, a: usize, b: usize) -> f32 {
        self.sim[[a, b]]
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    /// Joins the live clusters `a` and `b` into the lower of the two (Lance–Williams update).
    fn merge(&mut self, a: usize, b: usize) {
        let (keep, gone) = (a.min(b), a.max(b));
        let (wa, wb) = (self.size[keep], self.size[gone]);
        for k in 0..self.sim.nrows() {
            if k == keep || k == gone || self.parent[k] != k {
                continue;
            }
            let (x, y) = (self.sim[[keep, k]], self.sim[[gone, k]]);
            let v = if x == f32::NEG_INFINITY || y == f32::NEG_INFINITY {
                f32::NEG_INFINITY
            } else {
                match self.linkage {
                    Linkage::Average => (wa * x + wb * y) / (wa + wb),
                    Linkage::Single => x.max(y),
                    Linkage::Complete => x.min(y),
                }
            };
            self.sim[[keep, k]] = v;
            self.sim[[k, keep]] = v;
        }
        self.size[keep] = wa + wb;
        self.parent[gone] = keep;
        self.open[gone] = false;
    }

    /// The most similar open cluster to `a` (ties: the lower index).
    fn nearest(&self, a: usize) -> Option<(usize, f32)> {
        let row = self.sim.row(a);
        let mut best: Option<(usize, f32)> = None;
        for (k, &s) in row.iter().enumerate() {
            if k != a && self.open[k] && best.is_none_or(|(_, b)| s > b) {
                best = Some((k, s));
            }
        }
        best
    }

    /// Merges reciprocal nearest neighbours at or above `threshold` until none are left.
    fn run(&mut self, threshold: f32) {
        let n = self.sim.nrows();
        let mut chain: Vec<usize> = Vec::new();
        let mut next_start = 0;
        loop {
            if chain.is_empty() {
                while next_start < n && !self.open[next_start] {
                    next_start += 1;
                }
                if next_start == n {
                    return;
                }
                chain.push(next_start);
            }
            let top = chain[chain.len() - 1];
            let prev = chain.len().checked_sub(2).map(|p| chain[p]);
            match self.nearest(top) {
                Some((best, s)) if s >= threshold => {
                    // The previous link wins ties, so the chain always ends in a reciprocal pair.
                    if let Some(p) = prev.filter(|&p| self.sim[[top, p]] >= s) {
                        chain.truncate(chain.len() - 2);
                        self.merge(top, p);
                    } else {
                        chain.push(best);
                    }
                }
                // Nothing it could ever merge with: finished.
                _ => {
                    chain.pop();
                    self.open[top] = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn params(linkage: Linkage, threshold: f64) -> PeopleParams {
        PeopleParams { linkage, threshold, min_track_faces: 1, attach_threshold: 0.5, join_named: true }
    }

    fn items(embs: &[Vec<f32>]) -> Vec<Item<'_>> {
        embs.iter().map(|e| Item { embedding: Some(e), n_usable: 5, name: None }).collect()
    }

    /// Two people, three tracks each, around two orthogonal directions.
    fn two_people() -> Vec<Vec<f32>> {
        vec![unit(&[1.0, 0.1, 0.0]), unit(&[0.1, 1.0, 0.0]), unit(&[1.0, 0.0, 0.2]), unit(&[0.0, 1.0, 0.1]), unit(&[1.0, -0.1, 0.1]), unit(&[-0.1, 1.0, 0.2])]
    }

    #[test]
    fn two_people_come_out_as_two() {
        let e = two_people();
        for linkage in [Linkage::Average, Linkage::Single, Linkage::Complete] {
            let c = cluster(&items(&e), &[], &params(linkage, 0.5));
            assert_eq!(c.clusters, 2, "{linkage:?}");
            assert_eq!(c.labels, [0, 1, 0, 1, 0, 1].map(Some), "{linkage:?}");
        }
    }

    #[test]
    fn tracks_seen_together_are_never_one_person() {
        let e = two_people();
        // Tracks 0 and 2 look alike but co-occur: they are two people, and 4 joins one of them.
        let c = cluster(&items(&e), &[(0, 2)], &params(Linkage::Average, 0.5));
        assert_ne!(c.labels[0], c.labels[2]);
        assert!(c.labels[4] == c.labels[0] || c.labels[4] == c.labels[2]);
        assert_eq!(c.clusters, 3);
        // The constraint spreads through merges: 4 joined 0, so 2 may not join 4 either.
        for linkage in [Linkage::Average, Linkage::Single, Linkage::Complete] {
            let c = cluster(&items(&e), &[(0, 2), (2, 4)], &params(linkage, 0.5));
            assert_ne!(c.labels[2], c.labels[0], "{linkage:?}");
            assert_ne!(c.labels[2], c.labels[4], "{linkage:?}");
        }
    }

    #[test]
    fn threshold_edges() {
        let e = vec![unit(&[1.0, 0.0]), unit(&[0.6, 0.8])]; // cosine exactly 0.6
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Average, 0.6)).clusters, 1, "at the threshold is joined");
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Average, 0.6001)).clusters, 2, "below it is not");
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Average, -1.0)).clusters, 1);
        assert_eq!(cluster(&items(&e), &[(0, 1)], &params(Linkage::Average, -1.0)).clusters, 2, "even at -1");
    }

    #[test]
    fn empty_input_and_one_track() {
        let c = cluster(&[], &[], &params(Linkage::Average, 0.5));
        assert_eq!((c.clusters, c.labels.len()), (0, 0));
        let e = vec![unit(&[1.0, 0.0])];
        let c = cluster(&items(&e), &[], &params(Linkage::Average, 0.5));
        assert_eq!((c.clusters, c.labels.clone()), (1, vec![Some(0)]));
        let none = [Item { embedding: None, n_usable: 0, name: None }];
        let c = cluster(&none, &[], &params(Linkage::Average, 0.5));
        assert_eq!((c.clusters, c.labels[0], c.no_embedding), (0, None, 1));
    }

    #[test]
    fn average_linkage_is_the_mean_over_track_pairs() {
        // a-b 0.9; c against them 0.55 and 0.35: mean 0.45 < 0.5 < single's 0.55.
        let a = vec![1.0f32, 0.0, 0.0];
        let b = unit(&[0.9, 0.435_889_9, 0.0]);
        let cx = 0.55f32;
        let cy = (0.35 - cx * b[0]) / b[1];
        let c = vec![cx, cy, (1.0 - cx * cx - cy * cy).sqrt()];
        let e = vec![a, b, c];
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Average, 0.5)).clusters, 2);
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Single, 0.5)).clusters, 1);
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Complete, 0.3)).clusters, 1);
        assert_eq!(cluster(&items(&e), &[], &params(Linkage::Complete, 0.4)).clusters, 2);
    }

    #[test]
    fn short_tracks_attach_only_when_close_and_allowed() {
        let mut e = two_people();
        e.push(unit(&[1.0, 0.05, 0.05])); // 6: close to person 0
        e.push(unit(&[0.7, 0.7, 0.0])); // 7: between the two (cosine ~0.7 to each centre)
        e.push(unit(&[1.0, 0.0, 0.0])); // 8: close to person 0, but seen beside track 0
        let mut it = items(&e);
        for item in &mut it[6..9] {
            item.n_usable = 1;
        }
        let p = PeopleParams { min_track_faces: 2, attach_threshold: 0.8, ..params(Linkage::Average, 0.5) };
        let c = cluster(&it, &[(8, 0)], &p);
        assert_eq!(c.clusters, 2);
        assert_eq!(c.labels[6], c.labels[0]);
        assert_eq!(c.labels[7], None);
        assert_eq!(c.labels[8], None);
        assert_eq!((c.short_attached, c.short_unassigned), (1, 2));
    }

    #[test]
    fn names_join_and_separate() {
        let e = two_people();
        let mut it = items(&e);
        // 0 and 1 are far apart but named alike: joined. 2 is named otherwise: kept apart from 0.
        it[0].name = Some("ann");
        it[1].name = Some("ann");
        it[2].name = Some("bob");
        let c = cluster(&it, &[], &params(Linkage::Average, 0.5));
        assert_eq!(c.labels[0], c.labels[1]);
        assert_ne!(c.labels[0], c.labels[2]);
        let c = cluster(&it, &[], &PeopleParams { join_named: false, ..params(Linkage::Average, 0.5) });
        assert_ne!(c.labels[0], c.labels[1]);
        assert_ne!(c.labels[0], c.labels[2]);
    }

    #[test]
    fn deterministic_and_independent_of_nothing_but_input() {
        // Many noisy tracks of 5 people: the same input twice gives the same labels.
        let mut e = Vec::new();
        let mut x = 12345u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f32 / 1000.0 - 0.5
        };
        for t in 0..200 {
            let p = t % 5;
            let v: Vec<f32> = (0..8).map(|d| if d == p { 2.0 } else { 0.0 } + rnd()).collect();
            e.push(unit(&v));
        }
        let it = items(&e);
        let cannot: Vec<(usize, usize)> = (0..199).step_by(7).map(|i| (i, i + 1)).collect();
        let a = cluster(&it, &cannot, &params(Linkage::Average, 0.5));
        let b = cluster(&it, &cannot, &params(Linkage::Average, 0.5));
        assert_eq!(a, b);
        assert_eq!(a.clusters, 5);
        for &(i, j) in &cannot {
            assert_ne!(a.labels[i], a.labels[j]);
        }
    }
}
