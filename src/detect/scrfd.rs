//! SCRFD (InsightFace; research-only licence, so never a default and never fetched by set-up):
//! input N×3×H×W RGB `(x − 127.5) / 128` at any size that is a multiple of 32; outputs
//! `score`/`bbox`/`kps` for strides 8, 16 and 32 with two anchors per cell, whose box and
//! landmark offsets are distances × stride from the anchor centre. Supported so users can compare
//! with InsightFace's FaceAnalysis on identical models.

use std::path::Path;
use std::time::Duration;

use ort::session::Session;

use super::letterbox::{Letterbox, Normalize};
use super::{run_prepared, DetectParams, Detector, DetectorInput, InputPlan};
use crate::onnx::{self, Dim, OnnxError};
use crate::types::Detection;

const STRIDES: [usize; 3] = [8, 16, 32];
const ANCHORS: usize = 2;
const INPUT: &str = "input.1";
const NORM: Normalize = Normalize { bgr: false, mean: 127.5, scale: 1.0 / 128.0 };
const ROLE: &str = "SCRFD face detector";

/// Decodes one stride level (`score` per anchor, `bbox` 4 and `kps` 10 per anchor) into
/// detections in frame pixels. Anchors are cell-major: anchor `i` sits at cell `i / 2`.
pub fn decode_level(stride: usize, score: &[f32], bbox: &[f32], kps: &[f32], lb: &Letterbox, min_score: f32, out: &mut Vec<Detection>) {
    let cols = lb.width / stride;
    let n = (cols * (lb.height / stride) * ANCHORS).min(score.len()).min(bbox.len() / 4).min(kps.len() / 10);
    let s = stride as f32;
    let inv = 1.0 / lb.scale;
    for i in 0..n {
        if score[i] < min_score {
            continue;
        }
        let cell = i / ANCHORS;
        let (cx, cy) = ((cell % cols) as f32 * s, (cell / cols) as f32 * s);
        let b = &bbox[i * 4..i * 4 + 4];
        let k = &kps[i * 10..i * 10 + 10];
        let mut landmarks = [[0.0f32; 2]; 5];
        for (j, lm) in landmarks.iter_mut().enumerate() {
            *lm = [(cx + k[2 * j] * s) * inv, (cy + k[2 * j + 1] * s) * inv];
        }
        out.push(Detection { bbox: [(cx - b[0] * s) * inv, (cy - b[1] * s) * inv, (cx + b[2] * s) * inv, (cy + b[3] * s) * inv], landmarks, score: score[i] });
    }
}

pub struct ScrfdDetector {
    session: Session,
    params: DetectParams,
}

impl ScrfdDetector {
    /// Checks the input and the nine outputs of a loaded session.
    pub fn from_session(session: Session, path: &Path, params: DetectParams) -> Result<Self, OnnxError> {
        onnx::check_dims(path, ROLE, onnx::dims(session.inputs(), INPUT), INPUT, &[Dim::Any, Dim::Fixed(3), Dim::Any, Dim::Any])?;
        for s in STRIDES {
            for (name, ch) in [("score", 1), ("bbox", 4), ("kps", 10)] {
                let name = format!("{name}_{s}");
                let dims = onnx::dims(session.outputs(), &name);
                // Batched exports are [N, anchors, C]; older ones [anchors, C].
                let rank = dims.as_ref().map_or(3, Vec::len);
                let want: &[Dim] = if rank == 2 { &[Dim::Any, Dim::Fixed(ch)] } else { &[Dim::Any, Dim::Any, Dim::Fixed(ch)] };
                onnx::check_dims(path, ROLE, dims, &name, want)?;
            }
        }
        Ok(Self { session, params })
    }
}

impl Detector for ScrfdDetector {
    fn input_plan(&self) -> InputPlan {
        InputPlan { fixed: None, input_size: self.params.input_size as usize, norm: NORM }
    }

    fn detect_prepared(&mut self, input: &DetectorInput) -> Result<(Vec<Detection>, Duration), OnnxError> {
        let (outputs, took) = run_prepared(&mut self.session, INPUT, input)?;
        let lb = input.lb;
        let mut dets = Vec::new();
        for stride in STRIDES {
            let get = |name: &str| super::output_f32(&outputs, &format!("{name}_{stride}"));
            decode_level(stride, get("score")?, get("bbox")?, get("kps")?, &lb, self.params.min_score as f32, &mut dets);
        }
        Ok((self.params.keep_best(dets), took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_cell_major_and_offsets_are_distances() {
        // 64×32 input at stride 32: 2 cells × 2 anchors. Anchor 3 = cell 1 (col 1, row 0), centre (32, 0).
        let lb = Letterbox { scale: 0.5, width: 64, height: 32 };
        let score = [0.1, 0.2, 0.3, 0.95];
        let mut bbox = [0.0f32; 16];
        bbox[12..16].copy_from_slice(&[0.5, 0.25, 0.5, 1.0]);
        let mut kps = [0.0f32; 40];
        kps[30..40].copy_from_slice(&[-0.25, 0.25, 0.25, 0.25, 0.0, 0.5, -0.25, 0.75, 0.25, 0.75]);
        let mut dets = Vec::new();
        decode_level(32, &score, &bbox, &kps, &lb, 0.5, &mut dets);
        assert_eq!(dets.len(), 1);
        let d = &dets[0];
        assert_eq!(d.score, 0.95);
        // Model space: [32-16, 0-8, 32+16, 0+32] = [16, -8, 48, 32]; frame = model / 0.5.
        assert_eq!(d.bbox, [32.0, -16.0, 96.0, 64.0]);
        assert_eq!(d.landmarks[0], [48.0, 16.0]);
        assert_eq!(d.landmarks[2], [64.0, 32.0]);
    }
}
