//! Cast matching: a gallery of seed embeddings (one row per person, the normalised mean of their
//! photos) scored against faces and tracks with one matrix product, reporting the best name, its
//! cosine, and the margin over the second-best so that ambiguity is shown, not hidden.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2, Axis};

use crate::embed::l2_normalize;

/// Matching settings (`[identify]` in configs/default.toml).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchParams {
    /// Below this cosine to the best seed a face is unknown.
    pub threshold: f64,
    /// Below this lead of the best seed over the second-best a face is unknown.
    pub min_margin: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read seeds folder {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no seed images (*.jpg, *.jpeg, *.png) in {path}")]
    Empty { path: PathBuf },
}

/// Who a face or track looks like. `name` is `None` (unknown) below the threshold or margin.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub name: Option<String>,
    pub score: f64,
    pub margin: f64,
}

/// Seed images grouped by person: `DIR/<name>.<ext>` or `DIR/<name>/*.<ext>`, sorted by name.
pub fn list_seeds(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, SeedError> {
    let read = |p: &Path| -> Result<Vec<PathBuf>, SeedError> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(p).map_err(|source| SeedError::Read { path: p.to_path_buf(), source })?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        Ok(v)
    };
    let is_image =
        |p: &Path| p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"));
    let mut people = Vec::new();
    for entry in read(dir)? {
        let name = entry.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if entry.is_dir() {
            let images: Vec<PathBuf> = read(&entry)?.into_iter().filter(|p| is_image(p)).collect();
            if !images.is_empty() {
                let dir_name = entry.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                people.push((dir_name, images));
            }
        } else if is_image(&entry) {
            people.push((name, vec![entry]));
        }
    }
    if people.is_empty() {
        return Err(SeedError::Empty { path: dir.to_path_buf() });
    }
    people.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(people)
}

/// SHA-256 (hex) over every seed photo's person name, file name and bytes, in [`list_seeds`]
/// order: what identifies a run's seeds. The same photos under another path (a trailing `/`,
/// an absolute path) are the same seeds; an added, removed or changed photo is not.
pub fn seeds_digest(dir: &Path) -> Result<String, SeedError> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (name, images) in list_seeds(dir)? {
        field(name.as_bytes());
        for path in images {
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            field(file.as_bytes());
            field(&std::fs::read(&path).map_err(|source| SeedError::Read { path: path.clone(), source })?);
        }
    }
    Ok(crate::digest::hex(&hasher.finalize()))
}

/// The seeds as a matrix (people × D) of unit rows.
#[derive(Clone, Debug)]
pub struct Gallery {
    names: Vec<String>,
    seeds: Array2<f32>,
}

impl Gallery {
    /// One entry per person: the normalised mean of their photos' embeddings.
    pub fn new(people: Vec<(String, Vec<Vec<f32>>)>) -> Self {
        let dim = people.iter().flat_map(|(_, v)| v.first()).map(|e| e.len()).next().unwrap_or(0);
        let mut seeds = Array2::<f32>::zeros((people.len(), dim));
        let mut names = Vec::with_capacity(people.len());
        for (i, (name, embeddings)) in people.into_iter().enumerate() {
            let mut mean = vec![0f32; dim];
            for e in &embeddings {
                mean.iter_mut().zip(e).for_each(|(m, x)| *m += x);
            }
            l2_normalize(&mut mean);
            seeds.row_mut(i).iter_mut().zip(mean).for_each(|(s, m)| *s = m);
            names.push(name);
        }
        Self { names, seeds }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Identities of `rows` (N × D unit vectors) in one matrix product.
    pub fn match_rows(&self, rows: ArrayView2<f32>, params: &MatchParams) -> Vec<Identity> {
        let scores = rows.dot(&self.seeds.t());
        scores
            .axis_iter(Axis(0))
            .map(|s| {
                let (mut best, mut second, mut at) = (f32::NEG_INFINITY, f32::NEG_INFINITY, 0);
                for (j, &v) in s.iter().enumerate() {
                    if v > best {
                        second = best;
                        best = v;
                        at = j;
                    } else if v > second {
                        second = v;
                    }
                }
                let score = f64::from(best);
                // A single seed has no rival: its margin is its score.
                let margin = if second.is_finite() { f64::from(best - second) } else { score };
                let known = score >= params.threshold && margin >= params.min_margin;
                Identity { name: known.then(|| self.names[at].clone()), score: (score * 1e4).round() / 1e4, margin: (margin * 1e4).round() / 1e4 }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn gallery() -> Gallery {
        Gallery::new(vec![("ann".into(), vec![vec![1.0, 0.0, 0.0]]), ("bob".into(), vec![vec![0.0, 1.0, 0.0], vec![0.0, 0.8, 0.6]])])
    }

    const P: MatchParams = MatchParams { threshold: 0.363, min_margin: 0.05 };

    #[test]
    fn seeds_are_identified_by_their_photos_not_their_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cast");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("ann.jpg"), b"photo of ann").unwrap();
        let first = seeds_digest(&dir).unwrap();
        let slash = format!("{}/", dir.display());
        assert_eq!(seeds_digest(Path::new(&slash)).unwrap(), first);
        std::fs::write(dir.join("bob.png"), b"photo of bob").unwrap();
        let added = seeds_digest(&dir).unwrap();
        assert_ne!(added, first);
        std::fs::write(dir.join("bob.png"), b"another photo of bob").unwrap();
        assert_ne!(seeds_digest(&dir).unwrap(), added);
    }

    #[test]
    fn several_photos_are_averaged() {
        let g = gallery();
        let bob = g.seeds.row(1);
        assert!((bob[1] - 0.9487).abs() < 1e-3 && (bob[2] - 0.3162).abs() < 1e-3);
    }

    #[test]
    fn best_seed_wins_with_margin() {
        let ids = gallery().match_rows(array![[0.9f32, 0.1, 0.0]].view(), &P);
        assert_eq!(ids[0].name.as_deref(), Some("ann"));
        assert!((ids[0].score - 0.9).abs() < 1e-4);
        assert!(ids[0].margin > 0.7);
    }

    #[test]
    fn below_threshold_is_unknown() {
        let ids = gallery().match_rows(array![[0.3f32, 0.0, 0.0]].view(), &P);
        assert_eq!(ids[0].name, None);
        assert!((ids[0].score - 0.3).abs() < 1e-4);
    }

    #[test]
    fn too_close_to_call_is_unknown() {
        // Equally like ann and the first axis of bob: margin ~0.
        let v = 1.0 / 2f32.sqrt();
        let ids = Gallery::new(vec![("a".into(), vec![vec![1.0, 0.0]]), ("b".into(), vec![vec![0.0, 1.0]])]).match_rows(array![[v, v]].view(), &P);
        assert_eq!(ids[0].name, None);
        assert!(ids[0].score > 0.7 && ids[0].margin < 1e-4);
    }

    #[test]
    fn seeds_folder_layouts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zoe.png"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("al")).unwrap();
        std::fs::write(dir.path().join("al/1.JPG"), b"x").unwrap();
        std::fs::write(dir.path().join("al/2.jpeg"), b"x").unwrap();
        let people = list_seeds(dir.path()).unwrap();
        let names: Vec<&str> = people.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["al", "zoe"]);
        assert_eq!(people[0].1.len(), 2);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(list_seeds(empty.path()), Err(SeedError::Empty { .. })));
    }
}
