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

use ndarray::Array4;
use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use crate::onnx::{self, OnnxError};
use crate::types::{Detection, RgbImage};
use letterbox::{fill_input, Letterbox, Normalize};

/// Finds faces in one frame.
pub trait Detector {
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, OnnxError>;
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
    let session = onnx::session(path, threads)?;
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

/// Letterboxes `image` into a 1×3×H×W tensor, normalised as the model wants, and runs it.
fn run_letterboxed<'s>(session: &'s mut Session, input: &str, image: &RgbImage, lb: &Letterbox, norm: &Normalize) -> Result<SessionOutputs<'s>, OnnxError> {
    let run_err = |e: ort::Error| OnnxError::Run { role: "detector", reason: e.to_string() };
    let mut tensor = Array4::<f32>::zeros((1, 3, lb.height, lb.width));
    let buf = tensor.as_slice_mut().ok_or(OnnxError::Run { role: "detector", reason: "input not contiguous".into() })?;
    fill_input(image, lb, norm, buf);
    let value = TensorRef::from_array_view(tensor.view()).map_err(run_err)?;
    session.run(ort::inputs![input => value]).map_err(run_err)
}

/// The named f32 output of a detector run.
fn output_f32<'a>(outputs: &'a SessionOutputs, name: &str) -> Result<&'a [f32], OnnxError> {
    let value = outputs.get(name).ok_or_else(|| OnnxError::Run { role: "detector", reason: format!("no output {name}") })?;
    value
        .try_extract_tensor::<f32>()
        .map(|(_, data)| data)
        .map_err(|e| OnnxError::Run { role: "detector", reason: e.to_string() })
}
