//! YuNet (OpenCV Zoo, MIT): the default detector. Input 1×3×H×W BGR 0..255 without
//! normalisation; outputs `cls`/`obj`/`bbox`/`kps` for strides 8, 16 and 32, one anchor per cell.
//!
//! Frames are letterboxed, never stretched: scaled by one factor to fit the model input, placed
//! at the top-left corner, the rest left black (see [`super::letterbox`]). The 2023mar model as
//! shipped has a fixed 640×640 input; the default is that model with its sizes made symbolic
//! (`scripts/prepare_yunet.py`). Models with a symbolic H×W get the frame scaled to `input_size`
//! on its longer side, padded up to a multiple of 32, so a 16:9 frame is detected at 640×384
//! instead of paying for a square.

use std::path::Path;
use std::time::Duration;

use ort::session::Session;

use super::letterbox::{Letterbox, Normalize};
use super::{output_f32, run_prepared, DetectParams, Detector, DetectorInput, InputPlan};
use crate::onnx::{self, Dim, OnnxError};
use crate::types::Detection;

const STRIDES: [usize; 3] = [8, 16, 32];
const INPUT: &str = "input";
/// BGR, 0..255, no normalisation.
const YUNET_INPUT: Normalize = Normalize { bgr: true, mean: 0.0, scale: 1.0 };

/// The four raw outputs of one stride level, each `[cells × channels]` flattened.
pub struct Level<'a> {
    pub stride: usize,
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

/// Decodes one level into detections in frame pixels (dividing model coordinates by `scale`):
/// score = sqrt(cls·obj), centre = (cell + offset)·stride, size = exp(log-size)·stride,
/// landmark = (cell + offset)·stride.
pub fn decode_level(level: &Level, lb: &Letterbox, min_score: f32, out: &mut Vec<Detection>) {
    let cols = lb.width / level.stride;
    let cells = cols * (lb.height / level.stride);
    let cells = cells.min(level.cls.len()).min(level.obj.len()).min(level.bbox.len() / 4).min(level.kps.len() / 10);
    let s = level.stride as f32;
    let inv = 1.0 / lb.scale;
    for i in 0..cells {
        let score = (level.cls[i].clamp(0.0, 1.0) * level.obj[i].clamp(0.0, 1.0)).sqrt();
        if score < min_score {
            continue;
        }
        let (col, row) = ((i % cols) as f32, (i / cols) as f32);
        let b = &level.bbox[i * 4..i * 4 + 4];
        let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
        let (w, h) = (b[2].exp() * s, b[3].exp() * s);
        let k = &level.kps[i * 10..i * 10 + 10];
        let mut landmarks = [[0.0f32; 2]; 5];
        for (j, lm) in landmarks.iter_mut().enumerate() {
            *lm = [(k[2 * j] + col) * s * inv, (k[2 * j + 1] + row) * s * inv];
        }
        out.push(Detection { bbox: [(cx - w / 2.0) * inv, (cy - h / 2.0) * inv, (cx + w / 2.0) * inv, (cy + h / 2.0) * inv], landmarks, score });
    }
}

/// YuNet on an ONNX Runtime session.
pub struct YunetDetector {
    session: Session,
    fixed: Option<(usize, usize)>,
    params: DetectParams,
}

impl YunetDetector {
    /// Checks the input and the twelve outputs of a loaded session before any frame is seen.
    pub fn from_session(session: Session, path: &Path, params: DetectParams) -> Result<Self, OnnxError> {
        let role = "YuNet face detector";
        let dims = onnx::check_dims(path, role, onnx::dims(session.inputs(), INPUT), INPUT, &[Dim::Fixed(1), Dim::Fixed(3), Dim::Any, Dim::Any])?;
        for s in STRIDES {
            for (name, ch) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)] {
                let name = format!("{name}_{s}");
                onnx::check_dims(path, role, onnx::dims(session.outputs(), &name), &name, &[Dim::Fixed(1), Dim::Any, Dim::Fixed(ch)])?;
            }
        }
        let fixed = (dims[2] > 0 && dims[3] > 0).then(|| (dims[3] as usize, dims[2] as usize));
        if let Some((w, h)) = fixed {
            if !w.is_multiple_of(32) || !h.is_multiple_of(32) {
                return Err(OnnxError::Shape {
                    path: path.to_path_buf(),
                    role,
                    expected: "an input size that is a multiple of 32".into(),
                    found: format!("{w}x{h}"),
                });
            }
        }
        Ok(Self { session, fixed, params })
    }
}

impl Detector for YunetDetector {
    fn input_plan(&self) -> InputPlan {
        InputPlan { fixed: self.fixed, input_size: self.params.input_size as usize, norm: YUNET_INPUT }
    }

    fn detect_prepared(&mut self, input: &DetectorInput) -> Result<(Vec<Detection>, Duration), OnnxError> {
        let (outputs, took) = run_prepared(&mut self.session, INPUT, input)?;
        let lb = input.lb;
        let mut dets = Vec::new();
        for stride in STRIDES {
            let get = |name: &str| output_f32(&outputs, &format!("{name}_{stride}"));
            let level = Level { stride, cls: get("cls")?, obj: get("obj")?, bbox: get("bbox")?, kps: get("kps")? };
            decode_level(&level, &lb, self.params.min_score as f32, &mut dets);
        }
        Ok((self.params.keep_best(dets), took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_level_maps_a_cell_back_to_frame_pixels() {
        // A 64×32 input at stride 32 has 2 columns × 1 row; the face sits in cell 1 (col 1, row 0).
        let lb = Letterbox { scale: 0.5, width: 64, height: 32 };
        let cls = [0.1, 0.81];
        let obj = [0.1, 1.0];
        let bbox = [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, (2.0f32).ln()];
        let mut kps = [0.0f32; 20];
        kps[10..20].copy_from_slice(&[0.25, 0.25, 0.75, 0.25, 0.5, 0.5, 0.25, 0.75, 0.75, 0.75]);
        let level = Level { stride: 32, cls: &cls, obj: &obj, bbox: &bbox, kps: &kps };
        let mut dets = Vec::new();
        decode_level(&level, &lb, 0.5, &mut dets);
        assert_eq!(dets.len(), 1, "cell 0 scores 0.1 and is dropped");
        let d = &dets[0];
        assert!((d.score - 0.9).abs() < 1e-6);
        // Model space: centre (48, 16), size 32×64 -> box [32, -16, 64, 48]; frame = model / 0.5.
        let want = [64.0, -32.0, 128.0, 96.0];
        for (a, b) in d.bbox.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{:?}", d.bbox);
        }
        // First landmark: (0.25 + 1) × 32 / 0.5 = 80, (0.25 + 0) × 32 / 0.5 = 16.
        assert!((d.landmarks[0][0] - 80.0).abs() < 1e-4 && (d.landmarks[0][1] - 16.0).abs() < 1e-4);
        assert!((d.landmarks[4][0] - 112.0).abs() < 1e-4 && (d.landmarks[4][1] - 48.0).abs() < 1e-4);
    }
}
