//! The quality gates: each detection measured, aligned, and passed or skipped with a reason.

use super::frames::FaceOut;
use crate::align::quality::{landmarks_outside, laplacian_variance, yaw_degrees};
use crate::align::{align_face, square_crop, SquareCrop, CROP};
use crate::types::{Detection, FaceQuality, RgbImage, SkipReason};

/// Measures one detection, applies the quality gates in order (size, score, frame, pose,
/// alignment, sharpness), and keeps its aligned crop and what its context image needs.
pub fn assess(image: &RgbImage, det: Detection, gates: &crate::config::Quality) -> FaceOut {
    let aligned = align_face(image, &det.landmarks).ok();
    let quality = FaceQuality { blur: aligned.as_ref().map(laplacian_variance), face_px: f64::from(det.min_side()), yaw: yaw_degrees(&det.landmarks) };
    let skip = if quality.face_px < gates.min_face {
        Some(SkipReason::TooSmall)
    } else if f64::from(det.score) < gates.det_threshold {
        Some(SkipReason::LowScore)
    } else if landmarks_outside(&det.landmarks, image.width, image.height) {
        Some(SkipReason::OutOfFrame)
    } else if quality.yaw.abs() > gates.max_yaw {
        Some(SkipReason::Profile)
    } else if aligned.is_none() {
        Some(SkipReason::AlignFailed)
    } else if quality.blur.is_some_and(|b| b < gates.min_blur) {
        Some(SkipReason::Blurry)
    } else {
        None
    };
    let context = context_crop(image, &det.bbox);
    FaceOut { det, quality, skip, embedding: None, aligned, context }
}

/// The context image of a face, to be made if it is wanted: a square twice the box's longer side
/// around its centre.
pub fn context_crop(image: &RgbImage, bbox: &[f32; 4]) -> SquareCrop {
    let center = [(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0];
    let side = 2.0 * (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]);
    square_crop(image, center, side, CROP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::ARCFACE_TEMPLATE;

    fn gates() -> crate::config::Quality {
        crate::config::Quality { min_face: 20.0, det_threshold: 0.6, min_blur: 8.0, max_yaw: 75.0 }
    }

    /// A 200×200 frame of sharp stripes with a frontal face (the template, doubled, at 40,20).
    fn frame() -> RgbImage {
        let data = (0..200 * 200).flat_map(|i| if (i % 200 / 3) % 2 == 0 { [30u8; 3] } else { [220u8; 3] }).collect();
        RgbImage::new(200, 200, data).unwrap()
    }

    fn face() -> Detection {
        let landmarks = ARCFACE_TEMPLATE.map(|p| [p[0] * 1.0 + 40.0, p[1] * 1.0 + 20.0]);
        Detection { bbox: [40.0, 20.0, 152.0, 132.0], landmarks, score: 0.9 }
    }

    #[test]
    fn a_good_face_passes_every_gate() {
        let out = assess(&frame(), face(), &gates());
        assert_eq!(out.skip, None, "{:?}", out.quality);
        assert!(out.aligned.is_some());
        let context = out.context.image();
        assert_eq!((context.width, context.height), (112, 112));
    }

    #[test]
    fn too_small() {
        let d = Detection { bbox: [40.0, 20.0, 55.0, 132.0], ..face() };
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::TooSmall));
    }

    #[test]
    fn low_score() {
        let d = Detection { score: 0.55, ..face() };
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::LowScore));
    }

    #[test]
    fn out_of_frame() {
        let mut d = face();
        d.landmarks[1][0] = 205.0;
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::OutOfFrame));
    }

    #[test]
    fn profile() {
        let mut d = face();
        d.landmarks[2][0] = d.landmarks[0][0] - 30.0; // nose far outside the eyes
        let out = assess(&frame(), d, &gates());
        assert_eq!(out.skip, Some(SkipReason::Profile), "yaw {}", out.quality.yaw);
    }

    #[test]
    fn align_failed() {
        let mut d = face();
        d.landmarks[3] = [f32::NAN, f32::NAN];
        // A landmark the model could not place: no transform exists.
        assert_eq!(assess(&frame(), d, &gates()).skip, Some(SkipReason::AlignFailed));
    }

    #[test]
    fn blurry() {
        let flat = RgbImage::new(200, 200, vec![128; 200 * 200 * 3]).unwrap();
        let out = assess(&flat, face(), &gates());
        assert_eq!(out.skip, Some(SkipReason::Blurry));
        assert_eq!(out.quality.blur, Some(0.0));
    }
}
