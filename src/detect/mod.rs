//! Face detection: the [`Detector`] trait the pipeline drives, and its YuNet implementation.
//!
//! Detectors take a frame of any size and aspect ratio and return boxes and landmarks in pixels
//! of that frame; resizing for the model and mapping back are their business.

pub mod nms;
pub mod yunet;

use crate::onnx::OnnxError;
use crate::types::{Detection, RgbImage};

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
}
