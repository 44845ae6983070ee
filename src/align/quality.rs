//! Quality measures of a face, all pure: sharpness of the aligned crop, head yaw from the five
//! landmarks, and whether the landmarks lie inside the frame. The gates in the pipeline compare
//! them with configured limits; `faces.jsonl` records the measured values.

use crate::types::RgbImage;

/// Variance of the 4-neighbour Laplacian of the grey image: low for blurry crops.
pub fn laplacian_variance(img: &RgbImage) -> f64 {
    let (w, h) = (img.width, img.height);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let grey: Vec<f64> = img.data.chunks_exact(3).map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect();
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let l = grey[i - 1] + grey[i + 1] + grey[i - w] + grey[i + w] - 4.0 * grey[i];
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum2 / n - mean * mean
}

/// Nose-tip depth in front of the eye plane, in half inter-ocular distances (adult average).
const NOSE_DEPTH: f64 = 0.7;

/// Estimated yaw in degrees (0 frontal, towards ±90 in profile; positive when the nose points to
/// the image right), from where the nose tip falls along the eye axis. With eyes at ±e and the
/// nose tip `NOSE_DEPTH`·e in front of them, turning by θ puts the nose at offset
/// `NOSE_DEPTH·tan θ` (in half eye distances) from the eyes' midpoint, so θ = atan(offset / depth).
/// Rotation in the image plane does not change it.
pub fn yaw_degrees(landmarks: &[[f32; 2]; 5]) -> f64 {
    let [le, re, nose, _, _] = landmarks.map(|p| [f64::from(p[0]), f64::from(p[1])]);
    let axis = [re[0] - le[0], re[1] - le[1]];
    let len2 = axis[0] * axis[0] + axis[1] * axis[1];
    if len2 <= f64::EPSILON {
        return 90.0;
    }
    // 0 at the left eye, 1 at the right eye, 0.5 frontal.
    let t = ((nose[0] - le[0]) * axis[0] + (nose[1] - le[1]) * axis[1]) / len2;
    ((2.0 * t - 1.0) / NOSE_DEPTH).atan().to_degrees()
}

/// True when any landmark lies outside `width × height`.
pub fn landmarks_outside(landmarks: &[[f32; 2]; 5], width: usize, height: usize) -> bool {
    landmarks.iter().any(|p| p[0] < 0.0 || p[1] < 0.0 || p[0] >= width as f32 || p[1] >= height as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::ARCFACE_TEMPLATE;

    #[test]
    fn flat_image_has_no_sharpness_and_edges_do() {
        let flat = RgbImage::new(8, 8, vec![128; 8 * 8 * 3]).unwrap();
        assert_eq!(laplacian_variance(&flat), 0.0);
        let checker: Vec<u8> = (0..64).flat_map(|i| if (i % 8 + i / 8) % 2 == 0 { [0u8; 3] } else { [255u8; 3] }).collect();
        let sharp = RgbImage::new(8, 8, checker).unwrap();
        assert!(laplacian_variance(&sharp) > 1e5);
    }

    #[test]
    fn frontal_template_has_near_zero_yaw() {
        assert!(yaw_degrees(&ARCFACE_TEMPLATE).abs() < 3.0);
    }

    #[test]
    fn nose_over_an_eye_is_a_strong_turn() {
        let mut lm = ARCFACE_TEMPLATE;
        lm[2] = lm[1];
        let y = yaw_degrees(&lm);
        assert!((y - (1.0f64 / NOSE_DEPTH).atan().to_degrees()).abs() < 1e-6 && y > 50.0);
        lm[2] = lm[0];
        assert!((yaw_degrees(&lm) + y).abs() < 1e-6, "symmetric");
        lm[2][0] -= 40.0; // nose far beyond the left eye: near full profile
        assert!(yaw_degrees(&lm) < -75.0);
    }

    #[test]
    fn yaw_ignores_in_plane_rotation() {
        let mut lm = ARCFACE_TEMPLATE;
        lm[2][0] += 6.0; // turned a little
        let rot = |p: [f32; 2]| {
            let (s, c) = 0.5f32.sin_cos();
            [c * p[0] - s * p[1], s * p[0] + c * p[1]]
        };
        assert!((yaw_degrees(&lm) - yaw_degrees(&lm.map(rot))).abs() < 1e-3);
        assert!(yaw_degrees(&lm) > 10.0);
    }

    #[test]
    fn out_of_frame_landmarks() {
        assert!(!landmarks_outside(&ARCFACE_TEMPLATE, 112, 112));
        assert!(landmarks_outside(&ARCFACE_TEMPLATE, 60, 112));
        let mut lm = ARCFACE_TEMPLATE;
        lm[0][0] = -1.0;
        assert!(landmarks_outside(&lm, 112, 112));
    }
}
