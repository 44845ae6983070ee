//! Cast photos: embedding the seed images with the run's own models, and the `identify` command
//! that re-names an existing run from its saved embeddings without decoding the video again.

use std::path::Path;

use ndarray::Array2;

use super::{assess, HarvestError};
use crate::config::{IdentifyConfig, Quality};
use crate::detect::{self, Detector};
use crate::embed::sface::SfaceEmbedder;
use crate::embed::Embedder;
use crate::identify::{list_seeds, Gallery, MatchParams};
use crate::onnx;
use crate::output;
use crate::run_dir::{EMBEDDINGS, FACES, TRACKS, TRACK_EMBEDDINGS};
use crate::video::VideoDecoder;

/// Embeds every seed image (its largest face that passes the quality gates) and averages each
/// person's photos. An image without such a face is an error naming the file.
pub fn build_gallery(dir: &Path, detector: &mut dyn Detector, embedder: &mut dyn Embedder, gates: &Quality) -> Result<Gallery, HarvestError> {
    let mut people = Vec::new();
    for (name, images) in list_seeds(dir)? {
        let mut embeddings = Vec::with_capacity(images.len());
        for path in images {
            embeddings.push(embed_seed(&path, detector, embedder, gates)?);
        }
        people.push((name, embeddings));
    }
    Ok(Gallery::new(people))
}

fn embed_seed(path: &Path, detector: &mut dyn Detector, embedder: &mut dyn Embedder, gates: &Quality) -> Result<Vec<f32>, HarvestError> {
    let no_face = || HarvestError::SeedWithoutFace { path: path.to_path_buf() };
    let mut decoder = VideoDecoder::open(path, 1, 1)?;
    let image = decoder.next_frame()?.and_then(|f| f.image).ok_or_else(no_face)?;
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let face = detector
        .detect(&image)?
        .into_iter()
        .map(|d| assess(&image, d, gates))
        .filter(|f| f.skip.is_none())
        .max_by(|a, b| area(&a.det.bbox).total_cmp(&area(&b.det.bbox)))
        .ok_or_else(no_face)?;
    let crop = face.aligned.as_ref().ok_or_else(no_face)?;
    embedder.embed(&[crop])?.pop().ok_or_else(no_face)
}

/// What `identify` changed.
#[derive(Debug)]
pub struct IdentifySummary {
    pub faces_named: u64,
    pub tracks_named: u64,
    pub people: Vec<String>,
}

/// Re-matches the run in `cfg.run_dir` against `cfg.seeds` and rewrites the `identity` fields of
/// `faces.jsonl` and `tracks.jsonl` atomically, with the same matching as a harvest.
pub fn identify(cfg: &IdentifyConfig) -> Result<IdentifySummary, HarvestError> {
    let _lock = crate::run_dir::open(&cfg.run_dir)?;
    onnx::init_runtime(&cfg.ort_lib)?;
    let detect = &cfg.settings.detect;
    let mut detector = detect::load(&cfg.detector, cfg.threads, detect.clone(), detect.family)?;
    let mut embedder = SfaceEmbedder::load(&cfg.embedder, cfg.threads)?;
    let gallery = build_gallery(&cfg.seeds, detector.as_mut(), &mut embedder, &cfg.settings.quality)?;
    let params = &cfg.settings.identify;
    let faces_named = rename(&cfg.run_dir.join(FACES), &cfg.run_dir.join(EMBEDDINGS), &gallery, params)?;
    let tracks_named = rename(&cfg.run_dir.join(TRACKS), &cfg.run_dir.join(TRACK_EMBEDDINGS), &gallery, params)?;
    Ok(IdentifySummary { faces_named, tracks_named, people: gallery.names().to_vec() })
}

/// Sets `identity` on every row of the JSONL file at `rows_path` from its `embedding_row` in the
/// `.npy` at `npy_path` (one matrix product for all rows); returns how many got a name.
fn rename(rows_path: &Path, npy_path: &Path, gallery: &Gallery, params: &MatchParams) -> Result<u64, HarvestError> {
    let read_err = |path: &Path, reason: String| HarvestError::RunRead { path: path.to_path_buf(), reason };
    let matrix = read_npy(npy_path).map_err(|e| read_err(npy_path, e))?;
    let text = std::fs::read_to_string(rows_path).map_err(|e| read_err(rows_path, e.to_string()))?;
    let identities = gallery.match_rows(matrix.view(), params);
    let mut out = Vec::with_capacity(text.len());
    let mut named = 0;
    for (n, line) in text.lines().enumerate() {
        let mut row: serde_json::Value = serde_json::from_str(line).map_err(|e| read_err(rows_path, format!("line {}: {e}", n + 1)))?;
        let identity = match row["embedding_row"].as_u64() {
            Some(r) => {
                let id = identities.get(r as usize).ok_or_else(|| read_err(npy_path, format!("has no row {r}")))?;
                named += u64::from(id.name.is_some());
                serde_json::to_value(id).map_err(|e| read_err(rows_path, e.to_string()))?
            }
            None => serde_json::Value::Null,
        };
        row["identity"] = identity;
        serde_json::to_writer(&mut out, &row).map_err(|e| read_err(rows_path, e.to_string()))?;
        out.push(b'\n');
    }
    output::write_atomic(rows_path, &out)?;
    Ok(named)
}

fn read_npy(path: &Path) -> Result<Array2<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| e.to_string())?;
    let shape = npy.shape().to_vec();
    let [rows, cols] = shape[..] else { return Err(format!("expected a 2-D array, found shape {shape:?}")) };
    let data: Vec<f32> = npy.into_vec().map_err(|e| e.to_string())?;
    Array2::from_shape_vec((rows as usize, cols as usize), data).map_err(|e| e.to_string())
}
