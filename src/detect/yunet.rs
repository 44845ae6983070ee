//! YuNet (OpenCV Zoo, MIT): the default detector. Input 1×3×H×W BGR 0..255 without
//! normalisation; outputs `cls`/`obj`/`bbox`/`kps` for strides 8, 16 and 32, one anchor per cell.
//!
//! Frames are letterboxed, never stretched: scaled by one factor to fit the model input, placed
//! at the top-left corner, the rest left black. The 2023mar model has a fixed 640×640 input;
//! models with a symbolic H×W get the frame scaled to `input_size` on its longer side, padded up
//! to a multiple of 32, so a 16:9 frame does not pay for a square.

use std::path::Path;

use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::nms::nms;
use super::{DetectParams, Detector};
use crate::onnx::{self, Dim, OnnxError};
use crate::types::{Detection, RgbImage};

const STRIDES: [usize; 3] = [8, 16, 32];
const INPUT: &str = "input";

/// How a frame maps into the model input: `model = frame × scale`, padded to `width × height`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub width: usize,
    pub height: usize,
}

impl Letterbox {
    /// For a fixed model input, fit the frame inside it; for a dynamic one, scale the longer side
    /// to `input_size` and round each side up to a multiple of 32.
    pub fn plan(frame_w: usize, frame_h: usize, fixed: Option<(usize, usize)>, input_size: usize) -> Self {
        let (fw, fh) = (frame_w.max(1) as f32, frame_h.max(1) as f32);
        match fixed {
            Some((width, height)) => {
                Letterbox { scale: (width as f32 / fw).min(height as f32 / fh), width, height }
            }
            None => {
                let scale = input_size as f32 / fw.max(fh);
                let up32 = |v: f32| (((v * scale).round() as usize).max(1)).div_ceil(32) * 32;
                Letterbox { scale, width: up32(fw), height: up32(fh) }
            }
        }
    }
}

/// Writes `image`, scaled by `lb.scale` (bilinear, OpenCV's pixel-centre convention), into a
/// zeroed planar BGR buffer of `3 × lb.height × lb.width`.
pub fn fill_input(image: &RgbImage, lb: &Letterbox, out: &mut [f32]) {
    let plane = lb.width * lb.height;
    out.fill(0.0);
    let sw = ((image.width as f32 * lb.scale).round() as usize).min(lb.width);
    let sh = ((image.height as f32 * lb.scale).round() as usize).min(lb.height);
    let exact = (lb.scale - 1.0).abs() < 1e-6;
    let mut px = [0.0f32; 3];
    for y in 0..sh {
        for x in 0..sw {
            if exact {
                let i = (y * image.width + x) * 3;
                px = [f32::from(image.data[i]), f32::from(image.data[i + 1]), f32::from(image.data[i + 2])];
            } else {
                let sx = ((x as f32 + 0.5) / lb.scale - 0.5).clamp(0.0, (image.width - 1) as f32);
                let sy = ((y as f32 + 0.5) / lb.scale - 0.5).clamp(0.0, (image.height - 1) as f32);
                image.sample_bilinear(sx, sy, &mut px);
            }
            let o = y * lb.width + x;
            out[o] = px[2];
            out[plane + o] = px[1];
            out[2 * plane + o] = px[0];
        }
    }
}

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
        out.push(Detection {
            bbox: [(cx - w / 2.0) * inv, (cy - h / 2.0) * inv, (cx + w / 2.0) * inv, (cy + h / 2.0) * inv],
            landmarks,
            score,
        });
    }
}

/// YuNet on an ONNX Runtime session.
pub struct YunetDetector {
    session: Session,
    fixed: Option<(usize, usize)>,
    params: DetectParams,
}

impl YunetDetector {
    /// Loads the model and checks its input and the twelve outputs before any frame is seen.
    pub fn load(path: &Path, threads: usize, params: DetectParams) -> Result<Self, OnnxError> {
        let session = onnx::session(path, threads)?;
        let role = "YuNet face detector";
        let dims = onnx::check_dims(
            path,
            role,
            onnx::dims(session.inputs(), INPUT),
            INPUT,
            &[Dim::Fixed(1), Dim::Fixed(3), Dim::Any, Dim::Any],
        )?;
        for s in STRIDES {
            for (name, ch) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)] {
                let name = format!("{name}_{s}");
                onnx::check_dims(path, role, onnx::dims(session.outputs(), &name), &name, &[Dim::Fixed(1), Dim::Any, Dim::Fixed(ch)])?;
            }
        }
        let fixed = (dims[2] > 0 && dims[3] > 0).then(|| (dims[3] as usize, dims[2] as usize));
        if let Some((w, h)) = fixed {
            if w % 32 != 0 || h % 32 != 0 {
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
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, OnnxError> {
        let lb = Letterbox::plan(image.width, image.height, self.fixed, self.params.input_size as usize);
        let mut input = Array4::<f32>::zeros((1, 3, lb.height, lb.width));
        let buf = input.as_slice_mut().ok_or(OnnxError::Run { role: "detector", reason: "input not contiguous".into() })?;
        fill_input(image, &lb, buf);
        let run_err = |e: ort::Error| OnnxError::Run { role: "detector", reason: e.to_string() };
        let tensor = TensorRef::from_array_view(input.view()).map_err(run_err)?;
        let outputs = self.session.run(ort::inputs![INPUT => tensor]).map_err(run_err)?;
        let mut dets = Vec::new();
        for stride in STRIDES {
            let get = |name: &str| -> Result<&[f32], OnnxError> {
                let key = format!("{name}_{stride}");
                let value = outputs.get(&key).ok_or_else(|| OnnxError::Run { role: "detector", reason: format!("no output {key}") })?;
                value.try_extract_tensor::<f32>().map(|(_, data)| data).map_err(run_err)
            };
            let level = Level { stride, cls: get("cls")?, obj: get("obj")?, bbox: get("bbox")?, kps: get("kps")? };
            decode_level(&level, &lb, self.params.min_score as f32, &mut dets);
        }
        let mut kept = nms(dets, self.params.nms_iou as f32);
        kept.truncate(self.params.max_faces);
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_fits_fixed_input_without_stretching() {
        let lb = Letterbox::plan(1280, 720, Some((640, 640)), 640);
        assert_eq!((lb.width, lb.height), (640, 640));
        assert!((lb.scale - 0.5).abs() < 1e-6);
        let portrait = Letterbox::plan(360, 1280, Some((640, 640)), 640);
        assert!((portrait.scale - 0.5).abs() < 1e-6);
    }

    #[test]
    fn letterbox_dynamic_pads_to_multiple_of_32() {
        let lb = Letterbox::plan(1920, 1080, None, 640);
        assert_eq!((lb.width, lb.height), (640, 384));
        assert!((lb.scale - 1.0 / 3.0).abs() < 1e-6);
        let tiny = Letterbox::plan(1, 1, None, 640);
        assert_eq!((tiny.width, tiny.height), (640, 640));
    }

    #[test]
    fn fill_input_swaps_to_bgr_planes_and_pads_black() {
        let image = RgbImage::new(2, 1, vec![10, 20, 30, 40, 50, 60]).unwrap();
        let lb = Letterbox { scale: 1.0, width: 4, height: 2 };
        let mut out = vec![9.0; 3 * 8];
        fill_input(&image, &lb, &mut out);
        // B plane, G plane, R plane; pixel (0,0) then (1,0); the rest padding.
        assert_eq!(&out[0..2], &[30.0, 60.0]);
        assert_eq!(&out[8..10], &[20.0, 50.0]);
        assert_eq!(&out[16..18], &[10.0, 40.0]);
        assert!(out[2..8].iter().all(|&v| v == 0.0));
    }

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
