//! SFace (OpenCV Zoo, Apache-2.0) prepared by `scripts/prepare_sface.py`: input N×3×112×112 RGB
//! 0..255 (the graph normalises internally), output N×128.

use std::path::Path;
use std::time::{Duration, Instant};

use ndarray::{Array4, ArrayView4};
use ort::session::Session;
use ort::value::TensorRef;

use super::{l2_normalize, Embedder};
use crate::align::CROP;
use crate::onnx::{self, Dim, OnnxError};
use crate::types::RgbImage;

const INPUT: &str = "data";
const OUTPUT: &str = "fc1";
const ROLE: &str = "SFace face embedder";

pub struct SfaceEmbedder {
    session: Session,
    dim: usize,
}

impl SfaceEmbedder {
    /// Loads the model and checks it takes a batch of 112×112 RGB crops and returns vectors.
    pub fn load(path: &Path, threads: usize) -> Result<Self, OnnxError> {
        let session = onnx::session(path, "embedder", threads)?;
        let crop = CROP as i64;
        let input = onnx::check_dims(path, ROLE, onnx::dims(session.inputs(), INPUT), INPUT, &[Dim::Any, Dim::Fixed(3), Dim::Fixed(crop), Dim::Fixed(crop)])?;
        if input[0] >= 0 {
            // A fixed batch (1 as shipped) is the unprepared model: it fails on the first multi-face frame.
            return Err(OnnxError::Shape {
                path: path.to_path_buf(),
                role: ROLE,
                expected: "`data` [N, 3, 112, 112] with a symbolic batch N (run scripts/prepare_sface.py)".into(),
                found: format!("`data` {input:?}"),
            });
        }
        let output = onnx::check_dims(path, ROLE, onnx::dims(session.outputs(), OUTPUT), OUTPUT, &[Dim::Any, Dim::Any])?;
        let dim = usize::try_from(output[1]).ok().filter(|&d| d > 0).ok_or_else(|| OnnxError::Shape {
            path: path.to_path_buf(),
            role: ROLE,
            expected: "`fc1` [N, D] with a fixed D".into(),
            found: format!("`fc1` {output:?}"),
        })?;
        Ok(Self { session, dim })
    }
}

/// Packs crops into an N×3×112×112 RGB float tensor.
pub fn crops_to_tensor(crops: &[&RgbImage]) -> Array4<f32> {
    let mut t = Array4::<f32>::zeros((crops.len(), 3, CROP, CROP));
    for (n, crop) in crops.iter().enumerate() {
        for (i, px) in crop.data.chunks_exact(3).enumerate().take(CROP * CROP) {
            let (y, x) = (i / CROP, i % CROP);
            for c in 0..3 {
                t[[n, c, y, x]] = f32::from(px[c]);
            }
        }
    }
    t
}

impl Embedder for SfaceEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, crops: &[&RgbImage]) -> Result<Vec<Vec<f32>>, OnnxError> {
        if crops.is_empty() {
            return Err(OnnxError::Run { role: "embedder", reason: "empty batch".into() });
        }
        self.embed_timed(crops).map(|(vectors, _)| vectors)
    }

    /// Times ONNX Runtime alone, not the tensor packing.
    fn embed_timed(&mut self, crops: &[&RgbImage]) -> Result<(Vec<Vec<f32>>, Duration), OnnxError> {
        self.embed_tensor(crops_to_tensor(crops).view())
    }
}

impl SfaceEmbedder {
    /// Embeds an N×3×112×112 tensor in one call; also returns the time spent in ONNX Runtime
    /// alone (what the model floor of `scripts/bench` adds up).
    pub fn embed_tensor(&mut self, input: ArrayView4<f32>) -> Result<(Vec<Vec<f32>>, Duration), OnnxError> {
        let n = input.shape()[0];
        let run_err = |e: ort::Error| OnnxError::Run { role: "embedder", reason: e.to_string() };
        let tensor = TensorRef::from_array_view(input).map_err(run_err)?;
        let start = Instant::now();
        let outputs = self.session.run(ort::inputs![INPUT => tensor]).map_err(run_err)?;
        let took = start.elapsed();
        let (_, data) = outputs[OUTPUT].try_extract_tensor::<f32>().map_err(run_err)?;
        if data.len() != n * self.dim {
            return Err(OnnxError::Run { role: "embedder", reason: format!("expected {}×{} values, got {}", n, self.dim, data.len()) });
        }
        let vectors = data
            .chunks_exact(self.dim)
            .map(|row| {
                let mut v = row.to_vec();
                l2_normalize(&mut v);
                v
            })
            .collect();
        Ok((vectors, took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_is_planar_rgb() {
        let mut data = vec![0u8; CROP * CROP * 3];
        data[..3].copy_from_slice(&[1, 2, 3]);
        let last = (CROP * CROP - 1) * 3;
        data[last..].copy_from_slice(&[7, 8, 9]);
        let crop = RgbImage::new(CROP, CROP, data).unwrap();
        let t = crops_to_tensor(&[&crop, &crop]);
        assert_eq!(t.shape(), &[2, 3, CROP, CROP]);
        assert_eq!([t[[1, 0, 0, 0]], t[[1, 1, 0, 0]], t[[1, 2, 0, 0]]], [1.0, 2.0, 3.0]);
        assert_eq!(t[[0, 2, CROP - 1, CROP - 1]], 9.0);
    }
}
