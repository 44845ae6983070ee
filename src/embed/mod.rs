//! Face embedding: aligned 112×112 crops in, unit-length vectors out. The [`Embedder`] trait takes
//! a whole batch so the pipeline can send all crops of a frame in ONE model call; the SFace
//! implementation stacks them into one N×3×112×112 tensor.

pub mod batching;
pub mod sface;

use std::time::Duration;

use crate::onnx::OnnxError;
use crate::types::RgbImage;

/// Turns a batch of aligned crops into L2-normalised embeddings, one per crop, in order.
pub trait Embedder {
    /// Length of each embedding.
    fn dim(&self) -> usize;
    /// Embeds `crops` in one model call. An empty batch is an error, not a silent no-op.
    fn embed(&mut self, crops: &[&RgbImage]) -> Result<Vec<Vec<f32>>, OnnxError>;
    /// [`embed`](Self::embed), with the time the model itself took (for the timings and the
    /// model floor; by default the whole call).
    fn embed_timed(&mut self, crops: &[&RgbImage]) -> Result<(Vec<Vec<f32>>, Duration), OnnxError> {
        let start = std::time::Instant::now();
        self.embed(crops).map(|v| (v, start.elapsed()))
    }
}

/// Scales `v` to unit length in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 3];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-6);
    }
}
