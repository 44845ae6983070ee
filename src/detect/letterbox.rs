//! Fitting a frame of any size into a detector's input without stretching it: one scale factor,
//! the frame at the top-left corner, the rest padded black. Shared by every detector family;
//! mapping back to frame pixels is a division by [`Letterbox::scale`].

use crate::types::RgbImage;

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
            Some((width, height)) => Letterbox { scale: (width as f32 / fw).min(height as f32 / fh), width, height },
            None => {
                let scale = input_size as f32 / fw.max(fh);
                let up32 = |v: f32| (((v * scale).round() as usize).max(1)).div_ceil(32) * 32;
                Letterbox { scale, width: up32(fw), height: up32(fh) }
            }
        }
    }
}

/// How a detector wants its pixels: channel order and `(value − mean) × scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub bgr: bool,
    pub mean: f32,
    pub scale: f32,
}

/// Writes `image`, scaled by `lb.scale` (bilinear, OpenCV's pixel-centre convention), into a
/// planar buffer of `3 × lb.height × lb.width`, normalised as `norm` says; the padding is black
/// before normalisation, as `cv2.dnn.blobFromImage` of a zero-padded image gives.
pub fn fill_input(image: &RgbImage, lb: &Letterbox, norm: &Normalize, out: &mut [f32]) {
    let plane = lb.width * lb.height;
    out.fill((0.0 - norm.mean) * norm.scale);
    let (first, last) = if norm.bgr { (2, 0) } else { (0, 2) };
    if lb.scale == 1.0 {
        // Already scaled: a copy into the planes.
        let w = image.width.min(lb.width);
        for y in 0..image.height.min(lb.height) {
            let row = &image.data[y * image.width * 3..][..w * 3];
            let o = y * lb.width;
            for (x, px) in row.chunks_exact(3).enumerate() {
                out[o + x] = (f32::from(px[first]) - norm.mean) * norm.scale;
                out[plane + o + x] = (f32::from(px[1]) - norm.mean) * norm.scale;
                out[2 * plane + o + x] = (f32::from(px[last]) - norm.mean) * norm.scale;
            }
        }
        return;
    }
    let sw = ((image.width as f32 * lb.scale).round() as usize).min(lb.width);
    let sh = ((image.height as f32 * lb.scale).round() as usize).min(lb.height);
    // Separable bilinear taps, computed once per column and row: (index, next index, weight).
    let taps = |n: usize, src: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let s = ((i as f32 + 0.5) / lb.scale - 0.5).clamp(0.0, (src - 1) as f32);
                let i0 = s.floor();
                (i0 as usize, (i0 as usize + 1).min(src - 1), s - i0)
            })
            .collect()
    };
    let (xs, ys) = (taps(sw, image.width), taps(sh, image.height));
    let row = image.width * 3;
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        let (r0, r1) = (&image.data[y0 * row..(y0 + 1) * row], &image.data[y1 * row..(y1 + 1) * row]);
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let w = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
            let px: [f32; 3] = std::array::from_fn(|c| {
                w[0] * f32::from(r0[x0 * 3 + c]) + w[1] * f32::from(r0[x1 * 3 + c]) + w[2] * f32::from(r1[x0 * 3 + c]) + w[3] * f32::from(r1[x1 * 3 + c])
            });
            let o = y * lb.width + x;
            out[o] = (px[first] - norm.mean) * norm.scale;
            out[plane + o] = (px[1] - norm.mean) * norm.scale;
            out[2 * plane + o] = (px[last] - norm.mean) * norm.scale;
        }
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
        fill_input(&image, &lb, &Normalize { bgr: true, mean: 0.0, scale: 1.0 }, &mut out);
        // B plane, G plane, R plane; pixel (0,0) then (1,0); the rest padding.
        assert_eq!(&out[0..2], &[30.0, 60.0]);
        assert_eq!(&out[8..10], &[20.0, 50.0]);
        assert_eq!(&out[16..18], &[10.0, 40.0]);
        assert!(out[2..8].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn downscaling_averages_neighbours_and_keeps_edges() {
        // A 4×1 image scaled by 0.5: output x samples source x = 0.5 and 2.5.
        let image = RgbImage::new(4, 1, [0u8, 100, 200, 250].iter().flat_map(|&v| [v; 3]).collect()).unwrap();
        let lb = Letterbox { scale: 0.5, width: 2, height: 1 };
        let mut out = vec![0.0; 6];
        fill_input(&image, &lb, &Normalize { bgr: false, mean: 0.0, scale: 1.0 }, &mut out);
        assert_eq!(&out[..2], &[50.0, 225.0]);
    }

    #[test]
    fn fill_input_normalises_rgb_and_padding() {
        let image = RgbImage::new(1, 1, vec![255, 127, 0]).unwrap();
        let lb = Letterbox { scale: 1.0, width: 2, height: 1 };
        let mut out = vec![0.0; 6];
        fill_input(&image, &lb, &Normalize { bgr: false, mean: 127.5, scale: 1.0 / 128.0 }, &mut out);
        let n = |v: f32| (v - 127.5) / 128.0;
        assert_eq!(out, vec![n(255.0), n(0.0), n(127.0), n(0.0), n(0.0), n(0.0)]);
    }
}
