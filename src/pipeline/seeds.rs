//! Cast photos: embedding the seed images with the run's own models (for a harvest, and for
//! `identify`, which re-names a finished run).

use std::path::Path;

use super::error::HarvestError;
use super::gates::assess;
use crate::config::Quality;
use crate::detect::Detector;
use crate::embed::Embedder;
use crate::identify::{list_seeds, Gallery};
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
