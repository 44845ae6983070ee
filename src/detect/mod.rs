//! Face detection: the [`Detector`] trait the pipeline drives, and its YuNet implementation.
//!
//! Detectors take a frame of any size and aspect ratio and return boxes and landmarks in pixels
//! of that frame; resizing for the model and mapping back are their business. [`load`] picks the
//! family from the model file's outputs (YuNet's `cls_*`/`obj_*`, SCRFD's `score_*`) unless the
//! config names one.

pub mod letterbox;
pub mod nms;
pub mod scrfd;
pub mod yunet;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ndarray::ArrayView4;
use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use crate::onnx::{self, OnnxError};
use crate::types::{Detection, RgbImage};
use letterbox::{fill_input, Letterbox, Normalize};

/// Finds faces in one frame, in two steps so the pipeline can prepare the next frame's input
/// on another thread while the model runs: [`InputPlan::prepare`] (pure CPU, any thread), then
/// [`Detector::detect_prepared`] (the model).
pub trait Detector {
    /// How a frame becomes this model's input.
    fn input_plan(&self) -> InputPlan;
    /// Runs the model on a prepared input. Returns faces in frame pixels and the time spent in
    /// ONNX Runtime alone (the model floor of this frame).
    fn detect_prepared(&mut self, input: &DetectorInput) -> Result<(Vec<Detection>, Duration), OnnxError>;

    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, OnnxError> {
        let input = self.input_plan().prepare(image);
        self.detect_prepared(&input).map(|(faces, _)| faces)
    }
}

/// The model input's geometry and normalisation; `Copy` so another thread can hold one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputPlan {
    /// The model's fixed input `(width, height)`, if it has one.
    fixed: Option<(usize, usize)>,
    /// Longer side for models with a symbolic input size.
    input_size: usize,
    norm: Normalize,
}

impl InputPlan {
    /// A plan for a model of fixed `(width, height)` input, or (`None`) of symbolic size whose
    /// longer side is `input_size`.
    pub fn new(fixed: Option<(usize, usize)>, input_size: usize, norm: Normalize) -> Self {
        Self { fixed, input_size, norm }
    }

    /// Letterboxes `image` into a 1×3×H×W tensor, normalised as the model wants.
    pub fn prepare(&self, image: &RgbImage) -> DetectorInput {
        let lb = Letterbox::plan(image.width, image.height, self.fixed, self.input_size);
        self.filled(image, lb.scale, lb, None)
    }

    /// The input of geometry `lb` with `image` written into it at `scale`, in a tensor from
    /// `pool` if given, which the input gives back when dropped.
    fn filled(&self, image: &RgbImage, scale: f32, lb: Letterbox, pool: Option<&TensorPool>) -> DetectorInput {
        let mut tensor = pool.map_or_else(Vec::new, TensorPool::take);
        if tensor.len() != 3 * lb.height * lb.width {
            tensor.clear();
            tensor.resize(3 * lb.height * lb.width, 0.0);
        }
        fill_input(image, &Letterbox { scale, ..lb }, &self.norm, &mut tensor);
        DetectorInput { tensor, lb, pool: pool.cloned() }
    }

    /// The size a `width × height` frame has inside the model input (before padding).
    fn content_size(&self, width: u32, height: u32) -> (u32, u32) {
        let lb = Letterbox::plan(width as usize, height as usize, self.fixed, self.input_size);
        let side = |v: u32, max: usize| ((v as f32 * lb.scale).round() as usize).clamp(1, max) as u32;
        (side(width, lb.width), side(height, lb.height))
    }

    /// The size of the scaled copy of a `width × height` frame the decoder should make for
    /// [`prepare_frame`](Self::prepare_frame), or `None` when the frame itself serves: at its
    /// own size, or reduced by a whole factor (block means, cheaper than FFmpeg's scaler: on
    /// 720p that copy cost most of what decoding the frame did).
    pub fn scaled_size(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        let lb = Letterbox::plan(width as usize, height as usize, self.fixed, self.input_size);
        let direct = lb.scale == 1.0 || lb.whole_reduction(width as usize, height as usize).is_some();
        (!direct).then(|| self.content_size(width, height))
    }

    /// The input for a decoded frame, in a tensor from `pool`: from the copy the decoder scaled
    /// to [`scaled_size`](Self::scaled_size), where it asked for one (only padding and
    /// normalisation left), else from the frame.
    pub fn prepare_frame(&self, frame: &RgbImage, scaled: Option<&RgbImage>, pool: &TensorPool) -> DetectorInput {
        let lb = Letterbox::plan(frame.width, frame.height, self.fixed, self.input_size);
        // The scaled copy is already at the model's scale; the input keeps the frame's, to map
        // boxes back.
        let (image, scale) = match scaled {
            Some(copy) => (copy, 1.0),
            None => (frame, lb.scale),
        };
        self.filled(image, scale, lb, Some(pool))
    }
}

/// Input tensors given back once detected, for later frames. A 720p frame's input is 3 MB, and
/// [`fill_input`] writes all of it (padding included): zeroing a new tensor for each frame was
/// 0.4 % of a harvest's CPU time, a third of what filling it costs.
#[derive(Clone, Debug, Default)]
pub struct TensorPool(Arc<Mutex<Vec<Vec<f32>>>>);

impl TensorPool {
    /// Tensors kept: the frames between the decoder and the detectors, and a few more.
    const KEEP: usize = 8;

    /// A tensor given back, if there is one (its old values are left to be written over).
    fn take(&self) -> Vec<f32> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default()
    }

    /// Keeps `tensor` for a later frame, unless enough are kept already.
    fn give(&self, tensor: Vec<f32>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < Self::KEEP {
            kept.push(tensor);
        }
    }
}

/// One frame ready for the detector model.
pub struct DetectorInput {
    /// Planar `3 × lb.height × lb.width` values.
    tensor: Vec<f32>,
    lb: Letterbox,
    /// Where the tensor goes back when the input is dropped.
    pool: Option<TensorPool>,
}

impl Drop for DetectorInput {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give(std::mem::take(&mut self.tensor));
        }
    }
}

/// Detector settings shared by every family.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectParams {
    /// Candidates scoring below this are dropped before NMS (they are not faces at all).
    pub min_score: f64,
    /// IoU above which two boxes are one face.
    pub nms_iou: f64,
    /// Longer side, in pixels, that a frame is scaled to for models with a dynamic input size.
    pub input_size: u32,
    /// At most this many faces per frame, best first.
    pub max_faces: usize,
    /// `auto`, `yunet` or `scrfd`.
    pub family: Family,
}

impl DetectParams {
    /// NMS over every candidate of a frame, then at most `max_faces`, best first.
    fn keep_best(&self, candidates: Vec<Detection>) -> Vec<Detection> {
        let mut kept = nms::nms(candidates, self.nms_iou as f32);
        kept.truncate(self.max_faces);
        kept
    }
}

/// Which detector family a model file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Decide from the model's outputs.
    Auto,
    Yunet,
    Scrfd,
}

/// Loads a detector model with `threads` intra-op threads, checking its shapes.
pub fn load(path: &Path, threads: usize, params: DetectParams, family: Family) -> Result<Box<dyn Detector + Send>, OnnxError> {
    let session = onnx::session(path, "detector", threads)?;
    let family = match family {
        Family::Auto if session.outputs().iter().any(|o| o.name() == "score_8") => Family::Scrfd,
        Family::Auto => Family::Yunet,
        f => f,
    };
    Ok(match family {
        Family::Scrfd => Box::new(scrfd::ScrfdDetector::from_session(session, path, params)?),
        _ => Box::new(yunet::YunetDetector::from_session(session, path, params)?),
    })
}

/// Runs a prepared input through the session, timing ONNX Runtime alone.
fn run_prepared<'s>(session: &'s mut Session, input: &str, prepared: &DetectorInput) -> Result<(SessionOutputs<'s>, Duration), OnnxError> {
    let run_err = |e: ort::Error| OnnxError::Run { role: "detector", reason: e.to_string() };
    let lb = &prepared.lb;
    let view =
        ArrayView4::from_shape((1, 3, lb.height, lb.width), &prepared.tensor[..]).map_err(|e| OnnxError::Run { role: "detector", reason: e.to_string() })?;
    let value = TensorRef::from_array_view(view).map_err(run_err)?;
    let start = Instant::now();
    let outputs = session.run(ort::inputs![input => value]).map_err(run_err)?;
    Ok((outputs, start.elapsed()))
}

/// The named f32 output of a detector run.
fn output_f32<'a>(outputs: &'a SessionOutputs, name: &str) -> Result<&'a [f32], OnnxError> {
    let value = outputs.get(name).ok_or_else(|| OnnxError::Run { role: "detector", reason: format!("no output {name}") })?;
    value.try_extract_tensor::<f32>().map(|(_, data)| data).map_err(|e| OnnxError::Run { role: "detector", reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_scaled_by_the_decoder_gives_the_same_geometry_as_letterboxing_it_here() {
        let plan = InputPlan { fixed: Some((640, 640)), input_size: 640, norm: Normalize { bgr: true, mean: 0.0, scale: 1.0 } };
        assert_eq!(plan.content_size(1000, 720), (640, 461));
        assert_eq!(plan.content_size(360, 1000), (230, 640));
        let full = RgbImage::new(1000, 720, vec![0; 1000 * 720 * 3]).unwrap();
        let scaled = RgbImage::new(640, 461, vec![7; 640 * 461 * 3]).unwrap();
        let input = plan.prepare_frame(&full, Some(&scaled), &TensorPool::default());
        assert_eq!((input.lb.width, input.lb.height), (640, 640));
        assert!((input.lb.scale - 0.64).abs() < 1e-6, "boxes map back by the frame's scale");
        assert_eq!(input.tensor.len(), 3 * 640 * 640);
        assert_eq!((input.tensor[0], input.tensor[640 * 461 - 1], input.tensor[640 * 461]), (7.0, 7.0, 0.0), "content, then black padding");
        let dynamic = InputPlan { fixed: None, ..plan };
        assert_eq!(dynamic.content_size(1000, 720), (640, 461));
        assert_eq!(dynamic.prepare_frame(&full, Some(&scaled), &TensorPool::default()).lb.height, 480);
    }

    #[test]
    fn a_tensor_given_back_is_written_over_entirely() {
        let norm = Normalize { bgr: true, mean: 0.0, scale: 1.0 };
        let dynamic = InputPlan { fixed: None, input_size: 640, norm };
        let square = InputPlan { fixed: Some((640, 640)), ..dynamic };
        let frame = |w: usize, h: usize| RgbImage::new(w, h, (0..w * h * 3).map(|i| (i % 253) as u8).collect()).unwrap();
        let copy = frame(640, 360);
        // At the model's size, padded; halved; bilinear; from the decoder's copy; into a square.
        let cases = [
            (dynamic, frame(640, 360), None),
            (dynamic, frame(1280, 720), None),
            (dynamic, frame(1000, 720), None),
            (dynamic, frame(854, 480), Some(&copy)),
            (square, frame(1280, 720), None),
        ];
        for (plan, image, scaled) in cases {
            let fresh = plan.prepare_frame(&image, scaled, &TensorPool::default()).tensor.clone();
            let pool = TensorPool::default();
            pool.0.lock().unwrap().push(vec![f32::NAN; fresh.len()]);
            let input = plan.prepare_frame(&image, scaled, &pool);
            assert!(pool.0.lock().unwrap().is_empty(), "the pooled tensor was taken");
            assert_eq!(input.tensor, fresh, "{}x{}", image.width, image.height);
            drop(input);
            assert_eq!(pool.0.lock().unwrap().len(), 1, "and given back");
        }
    }

    #[test]
    fn the_decoder_scales_a_copy_only_where_the_frame_cannot_serve_itself() {
        let norm = Normalize { bgr: true, mean: 0.0, scale: 1.0 };
        let dynamic = InputPlan { fixed: None, input_size: 640, norm };
        // At the model's size, and reduced by 2, 3 or 6: the frame itself.
        for (w, h) in [(640, 360), (1280, 720), (1920, 1080), (3840, 2160), (720, 1280)] {
            assert_eq!(dynamic.scaled_size(w, h), None, "{w}x{h}");
        }
        // Any other scale: a copy at the content size.
        assert_eq!(dynamic.scaled_size(854, 480), Some((640, 360)));
        assert_eq!(dynamic.scaled_size(320, 180), Some((640, 360)), "enlarged");
        assert_eq!(dynamic.scaled_size(1282, 720), Some((640, 359)));
        let square = InputPlan { fixed: Some((640, 640)), ..dynamic };
        assert_eq!(square.scaled_size(1280, 720), None, "fits by its width, halved");
        assert_eq!(square.scaled_size(1280, 1000), None, "halved, 640×500");
        assert_eq!(square.scaled_size(1300, 1000), Some((640, 492)));
        // The frame itself gives the same input as a copy made at its own size.
        let frame = RgbImage::new(640, 360, (0..640 * 360 * 3).map(|i| (i % 251) as u8).collect()).unwrap();
        let pool = TensorPool::default();
        assert_eq!(dynamic.prepare_frame(&frame, None, &pool).tensor, dynamic.prepare_frame(&frame, Some(&frame), &pool).tensor);
    }
}
