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

impl Normalize {
    /// A channel value as the model wants it.
    fn apply(&self, v: f32) -> f32 {
        (v - self.mean) * self.scale
    }
}

impl Letterbox {
    /// `k` when the frame shrinks by exactly a whole factor `k` of 2, 3, 4 or 6 (1280×720,
    /// 1920×1080, 2560×1440 or 3840×2160 into 640×360): each model pixel is then the mean of a
    /// `k × k` block (see [`fill_input`]).
    pub fn whole_reduction(&self, frame_w: usize, frame_h: usize) -> Option<usize> {
        let k = (1.0 / self.scale).round();
        let whole = [2.0, 3.0, 4.0, 6.0].contains(&k) && (k * self.scale - 1.0).abs() < 1e-6;
        let k = k as usize;
        (whole && frame_w.is_multiple_of(k) && frame_h.is_multiple_of(k) && frame_w / k <= self.width && frame_h / k <= self.height).then_some(k)
    }
}

/// Writes `image`, scaled by `lb.scale`, into a planar buffer of `3 × lb.height × lb.width`,
/// normalised as `norm` says; the padding is black before normalisation, as
/// `cv2.dnn.blobFromImage` of a zero-padded image gives. A reduction by a whole factor `k`
/// ([`Letterbox::whole_reduction`]) averages each `k × k` block (OpenCV's `INTER_AREA`:
/// anti-aliased, unlike a two-tap filter that skips source pixels at `k ≥ 3`, and cheap); any
/// other scale is bilinear in OpenCV's pixel-centre convention (`INTER_LINEAR`), the two alike
/// at `k = 2`.
pub fn fill_input(image: &RgbImage, lb: &Letterbox, norm: &Normalize, out: &mut [f32]) {
    let norm_px = |v: f32| norm.apply(v);
    let (first, last) = if norm.bgr { (2, 0) } else { (0, 2) };
    if lb.scale == 1.0 {
        // Already scaled: a copy into the planes.
        let (w, h) = (image.width.min(lb.width), image.height.min(lb.height));
        pad(out, lb, w, h, norm_px(0.0));
        for y in 0..h {
            let row = &image.data[y * image.width * 3..][..w * 3];
            let o = y * lb.width;
            let [b0, b1, b2] = planes(out, lb, o, w, first, last);
            for (x, px) in row.chunks_exact(3).enumerate() {
                b0[x] = norm_px(f32::from(px[0]));
                b1[x] = norm_px(f32::from(px[1]));
                b2[x] = norm_px(f32::from(px[2]));
            }
        }
        return;
    }
    match lb.whole_reduction(image.width, image.height) {
        Some(2) => return fill_whole_reduction::<2>(image, lb, norm, (first, last), out),
        Some(3) => return fill_whole_reduction::<3>(image, lb, norm, (first, last), out),
        Some(4) => return fill_whole_reduction::<4>(image, lb, norm, (first, last), out),
        Some(6) => return fill_whole_reduction::<6>(image, lb, norm, (first, last), out),
        _ => {}
    }
    let sw = ((image.width as f32 * lb.scale).round() as usize).min(lb.width);
    let sh = ((image.height as f32 * lb.scale).round() as usize).min(lb.height);
    pad(out, lb, sw, sh, norm_px(0.0));
    let plane = lb.width * lb.height;
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
            out[o] = norm_px(px[first]);
            out[plane + o] = norm_px(px[1]);
            out[2 * plane + o] = norm_px(px[last]);
        }
    }
}

/// The block means of a reduction by `K`, one output row at a time: the `K` source rows summed
/// into one row (a loop the compiler runs on many bytes at once), then each run of `K` pixels
/// summed and scaled by `1 / K²`. Sums of at most 6² bytes fit in `u16`.
fn fill_whole_reduction<const K: usize>(image: &RgbImage, lb: &Letterbox, norm: &Normalize, order: (usize, usize), out: &mut [f32]) {
    let (sw, sh) = (image.width / K, image.height / K);
    pad(out, lb, sw, sh, norm.apply(0.0));
    let inv = 1.0 / (K * K) as f32;
    let norm_px = |sum: u16| norm.apply(f32::from(sum) * inv);
    let row_len = image.width * 3;
    let mut sums = vec![0u16; row_len];
    for y in 0..sh {
        let mut rows = image.data[y * K * row_len..(y + 1) * K * row_len].chunks_exact(row_len);
        if let Some(first) = rows.next() {
            sums.iter_mut().zip(first).for_each(|(s, &v)| *s = u16::from(v));
        }
        for row in rows {
            sums.iter_mut().zip(row).for_each(|(s, &v)| *s += u16::from(v));
        }
        let [b0, b1, b2] = planes(out, lb, y * lb.width, sw, order.0, order.1);
        let blocks = sums.chunks_exact(3 * K).zip(b0.iter_mut().zip(b1.iter_mut().zip(b2.iter_mut())));
        for (block, (o0, (o1, o2))) in blocks {
            let mut px = [0u16; 3];
            for p in block.chunks_exact(3) {
                px = [px[0] + p[0], px[1] + p[1], px[2] + p[2]];
            }
            (*o0, *o1, *o2) = (norm_px(px[0]), norm_px(px[1]), norm_px(px[2]));
        }
    }
}

/// The `w` values at `offset` of the planes the image's R, G and B go to, in that order.
fn planes<'a>(out: &'a mut [f32], lb: &Letterbox, offset: usize, w: usize, first: usize, last: usize) -> [&'a mut [f32]; 3] {
    let at = |plane: usize| plane * lb.width * lb.height + offset..plane * lb.width * lb.height + offset + w;
    out.get_disjoint_mut([at(first), at(1), at(last)]).expect("three disjoint planes")
}

/// Fills what lies outside the top-left `w × h` content of each plane with `value`.
fn pad(out: &mut [f32], lb: &Letterbox, w: usize, h: usize, value: f32) {
    for plane in out.chunks_exact_mut(lb.width * lb.height) {
        for row in plane.chunks_exact_mut(lb.width).take(h) {
            row[w..].fill(value);
        }
        plane[h * lb.width..].fill(value);
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
    fn a_whole_reduction_is_the_mean_of_each_block() {
        // Three blocks by two of k × k pixels, in a model input of 4 × 3.
        for k in [2, 3, 6] {
            let (w, h) = (3 * k, 2 * k);
            let image = RgbImage::new(w, h, (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect()).unwrap();
            let lb = Letterbox { scale: 1.0 / k as f32, width: 4, height: 3 };
            assert_eq!(lb.whole_reduction(w, h), Some(k));
            let norm = Normalize { bgr: true, mean: 10.0, scale: 0.5 };
            let mut out = vec![f32::NAN; 3 * 12];
            fill_input(&image, &lb, &norm, &mut out);
            let mean = |bx: usize, by: usize, c: usize| {
                let mut sum = 0u32;
                for y in by * k..(by + 1) * k {
                    for x in bx * k..(bx + 1) * k {
                        sum += u32::from(image.data[(y * w + x) * 3 + c]);
                    }
                }
                sum as f32 * (1.0 / (k * k) as f32)
            };
            for (plane, c) in [(0, 2), (1, 1), (2, 0)] {
                for y in 0..3 {
                    for x in 0..4 {
                        let want = if x < 3 && y < 2 { (mean(x, y, c) - 10.0) * 0.5 } else { -5.0 };
                        assert_eq!(out[plane * 12 + y * 4 + x], want, "k {k} plane {plane} ({x}, {y})");
                    }
                }
            }
        }
        let lb = Letterbox { scale: 1.0 / 3.0, width: 4, height: 3 };
        // Not a whole factor, or a side it does not divide: not a whole reduction.
        assert_eq!(Letterbox { scale: 0.4, ..lb }.whole_reduction(10, 10), None);
        assert_eq!(Letterbox { scale: 0.2, ..lb }.whole_reduction(20, 15), None, "5 is not among the factors");
        assert_eq!(lb.whole_reduction(10, 6), None);
        assert_eq!(Letterbox { scale: 1.0, ..lb }.whole_reduction(4, 3), None);
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
