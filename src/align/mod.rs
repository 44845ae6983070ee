//! Face alignment: a least-squares similarity transform (rotation, uniform scale, translation)
//! of the 5 detected landmarks onto the ArcFace template, then a bilinear warp to 112×112 —
//! the same geometry as InsightFace's `norm_crop`, which the embedders were trained on.

pub mod quality;

use crate::types::{floor32, RgbImage};

/// Side of an aligned crop.
pub const CROP: usize = 112;

/// The ArcFace 112×112 template: left eye, right eye, nose, left and right mouth corner.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// `x' = a·x − b·y + tx`, `y' = b·x + a·y + ty`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

/// Why a face could not be aligned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlignError {
    #[error("landmarks are degenerate (all at one point or not finite)")]
    Degenerate,
}

impl Similarity {
    /// Least-squares fit mapping `src` onto `dst` (Umeyama's method, which for 2-D similarities
    /// without reflection has this closed form). Computed in f64: landmarks of a 4K frame squared
    /// lose precision in f32.
    pub fn estimate(src: &[[f32; 2]; 5], dst: &[[f32; 2]; 5]) -> Result<Self, AlignError> {
        let n = src.len() as f64;
        let mean = |p: &[[f32; 2]; 5]| {
            let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + f64::from(q[0]), y + f64::from(q[1])));
            (sx / n, sy / n)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut num_a, mut num_b, mut den) = (0.0f64, 0.0f64, 0.0f64);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (f64::from(s[0]) - msx, f64::from(s[1]) - msy);
            let (dx, dy) = (f64::from(d[0]) - mdx, f64::from(d[1]) - mdy);
            num_a += sx * dx + sy * dy;
            num_b += sx * dy - sy * dx;
            den += sx * sx + sy * sy;
        }
        if !(den.is_finite() && den > 1e-9 && num_a.is_finite() && num_b.is_finite()) {
            return Err(AlignError::Degenerate);
        }
        let (a, b) = (num_a / den, num_b / den);
        let tx = mdx - (a * msx - b * msy);
        let ty = mdy - (b * msx + a * msy);
        Ok(Similarity { a: a as f32, b: b as f32, tx: tx as f32, ty: ty as f32 })
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [self.a * p[0] - self.b * p[1] + self.tx, self.b * p[0] + self.a * p[1] + self.ty]
    }

    /// The inverse map, or `None` when the scale is zero.
    pub fn inverse(&self) -> Option<Self> {
        let det = self.a * self.a + self.b * self.b;
        if det <= f32::EPSILON || !det.is_finite() {
            return None;
        }
        let (ia, ib) = (self.a / det, -self.b / det);
        Some(Similarity { a: ia, b: ib, tx: -(ia * self.tx - ib * self.ty), ty: -(ib * self.tx + ia * self.ty) })
    }
}

/// Cuts the 112×112 aligned crop of the face with `landmarks` out of `image`.
pub fn align_face(image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Result<RgbImage, AlignError> {
    let m = Similarity::estimate(landmarks, &ARCFACE_TEMPLATE)?;
    Ok(warp(image, &m.inverse().ok_or(AlignError::Degenerate)?, CROP))
}

/// A `size × size` view of the square of side `side` centred on `center`: the face in context,
/// for people looking at a track's best face. Only that face's view is wanted, and which face
/// that is becomes known only after tracking, so the view is made later, by
/// [`SquareCrop::image`]; until then it keeps the pixels it reads.
pub fn square_crop(image: &RgbImage, center: [f32; 2], side: f32, size: usize) -> SquareCrop {
    SquareCrop::new(image, square_map(center, side, size), size)
}

/// The map from a `size × size` view to the square of side `side` centred on `center`.
fn square_map(center: [f32; 2], side: f32, size: usize) -> Similarity {
    let scale = side.max(1.0) / size as f32;
    Similarity { a: scale, b: 0.0, tx: center[0] - side / 2.0, ty: center[1] - side / 2.0 }
}

/// A square view to be made: the window of the frame it reads, or, where that window would be
/// large (a close-up's context square shrinks many pixels into each of the view's), the view
/// itself. [`image`](Self::image) gives what [`warp`] of the whole frame gives, bit for bit.
#[derive(Debug)]
pub struct SquareCrop(Pending);

#[derive(Debug)]
enum Pending {
    Made(RgbImage),
    Window { pixels: RgbImage, origin: [isize; 2], frame: [isize; 2], inv: Similarity, size: usize },
}

impl SquareCrop {
    /// A window of more pixels than this many views is not kept: the view is made at once.
    const MAX_WINDOW: usize = 16;

    /// `inv` does not rotate (`b` is 0), so a source column depends only on the output column
    /// and a source row only on the output row: the first output row and column give the whole
    /// part of every source point, as [`warp`] computes it. The window spans those and their
    /// next neighbours, within the frame: every frame pixel the warp reads.
    fn new(image: &RgbImage, inv: Similarity, size: usize) -> Self {
        // The first index and the length of the frame pixels, along one axis of `len`, that
        // source points at `points` read.
        fn span(points: impl Iterator<Item = f32>, len: usize) -> (usize, usize) {
            let (lo, hi) = points.map(|v| i64::from(floor32(v))).fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let (lo, hi) = (lo.max(0), hi.saturating_add(1).min(len as i64 - 1));
            if lo <= hi {
                (lo as usize, (hi - lo + 1) as usize)
            } else {
                (0, 0)
            }
        }
        let (x, w) = span((0..size).map(|x| inv.apply([x as f32, 0.0])[0]), image.width);
        let (y, h) = span((0..size).map(|y| inv.apply([0.0, y as f32])[1]), image.height);
        if w * h > Self::MAX_WINDOW * size * size {
            return Self(Pending::Made(warp(image, &inv, size)));
        }
        let row = image.width * 3;
        let mut data = Vec::with_capacity(w * h * 3);
        for r in y..y + h {
            data.extend_from_slice(&image.data[r * row + x * 3..][..w * 3]);
        }
        let pixels = RgbImage { width: w, height: h, data };
        Self(Pending::Window { pixels, origin: [x as isize, y as isize], frame: [image.width as isize, image.height as isize], inv, size })
    }

    /// The view.
    pub fn image(self) -> RgbImage {
        match self.0 {
            Pending::Made(image) => image,
            Pending::Window { pixels, origin, frame, inv, size } => {
                warp_region(&Region { data: &pixels.data, row: pixels.width * 3, origin, frame }, &inv, size)
            }
        }
    }
}

/// The pixels a warp reads: a whole frame, or a window of one holding every frame pixel the
/// warp reads, its first pixel at `origin` in the frame.
struct Region<'a> {
    data: &'a [u8],
    /// Bytes from one row of `data` to the next.
    row: usize,
    origin: [isize; 2],
    /// The frame's width and height: outside it, pixels read as black.
    frame: [isize; 2],
}

impl<'a> Region<'a> {
    fn whole(image: &'a RgbImage) -> Self {
        Region { data: &image.data, row: image.width * 3, origin: [0, 0], frame: [image.width as isize, image.height as isize] }
    }

    /// Where frame pixel `(x, y)` starts in `data`.
    #[inline]
    fn at(&self, x: isize, y: isize) -> usize {
        (y - self.origin[1]) as usize * self.row + (x - self.origin[0]) as usize * 3
    }

    /// Bilinear sample at real coordinates; pixels outside the frame read as 0, like OpenCV's
    /// constant border, which InsightFace's `norm_crop` relies on.
    fn sample(&self, x: f32, y: f32, out: &mut [f32; 3]) {
        let (x0, y0) = (floor32(x) as isize, floor32(y) as isize);
        let fx = x - x0 as f32;
        let fy = y - y0 as f32;
        *out = [0.0; 3];
        // `floor32` saturates at 2³¹, so the neighbours' `+ 1` cannot overflow.
        let weights = [(x0, y0, (1.0 - fx) * (1.0 - fy)), (x0 + 1, y0, fx * (1.0 - fy)), (x0, y0 + 1, (1.0 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)];
        for (px, py, w) in weights {
            if w == 0.0 || px < 0 || py < 0 || px >= self.frame[0] || py >= self.frame[1] {
                continue;
            }
            let i = self.at(px, py);
            out[0] += w * f32::from(self.data[i]);
            out[1] += w * f32::from(self.data[i + 1]);
            out[2] += w * f32::from(self.data[i + 2]);
        }
    }
}

/// Fills a `size × size` image by sampling `image` at `inv(x, y)` for every output pixel, with
/// bilinear interpolation and black outside (as `cv2.warpAffine` with a constant border).
///
/// Where all four neighbours are inside the image (nearly every pixel of a face) the sample is
/// summed here without the per-tap border checks of [`Region::sample`], in the same
/// order and with the same weights, so the result is the same bit for bit: a tap of weight 0,
/// which the general sample skips, adds +0 here. This runs for every pixel of every face's
/// aligned crop, and of the context view of each face that becomes its track's best.
pub fn warp(image: &RgbImage, inv: &Similarity, size: usize) -> RgbImage {
    warp_region(&Region::whole(image), inv, size)
}

/// [`warp`] reading from a region: a whole frame, or a window that holds every pixel it reads.
fn warp_region(image: &Region, inv: &Similarity, size: usize) -> RgbImage {
    let mut data = vec![0u8; size * size * 3];
    let [w, h] = image.frame;
    // `floor(v) ≥ 0` and `floor(v) + 1 < n` hold together exactly when `0 ≤ v < n − 1`: the fast
    // path's test, made on the source point itself. There the floor is the truncation.
    let end = |n: isize| n.clamp(0, TRUNC_MAX as isize) as f32 - 1.0;
    let (x_end, y_end) = (end(w), end(h));
    let whole = |v: f32, end: f32| if v >= 0.0 && v < end { trunc_within(v, 0.0, end) } else { -1 };
    let row = image.row;
    let cols: Vec<f32> = (0..size).map(|x| x as f32).collect();
    // Per row: each pixel's source point as `Similarity::apply` computes it, its whole parts
    // (−1 off the fast path) and its four weights; then the samples; then the bytes (loops the
    // compiler runs on several pixels at once, all but the samples).
    let (mut sx, mut sy) = (vec![0.0f32; size], vec![0.0f32; size]);
    let (mut x0, mut y0) = (vec![0i32; size], vec![0i32; size]);
    let mut weights = vec![[0.0f32; 4]; size];
    let mut samples = vec![[0.0f32; 3]; size];
    for (y, out_row) in data.chunks_exact_mut(size * 3).enumerate() {
        let yf = y as f32;
        for ((sx, sy), &xf) in sx.iter_mut().zip(sy.iter_mut()).zip(&cols) {
            [*sx, *sy] = inv.apply([xf, yf]);
        }
        for (i, &v) in x0.iter_mut().zip(&sx) {
            *i = whole(v, x_end);
        }
        for (i, &v) in y0.iter_mut().zip(&sy) {
            *i = whole(v, y_end);
        }
        for ((((wt, &sx), &sy), &x0), &y0) in weights.iter_mut().zip(&sx).zip(&sy).zip(&x0).zip(&y0) {
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            *wt = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
        }
        for (((px, (&sx, &sy)), (&x0, &y0)), wt) in samples.iter_mut().zip(sx.iter().zip(&sy)).zip(x0.iter().zip(&y0)).zip(&weights) {
            if x0 >= 0 && y0 >= 0 {
                let i = image.at(x0 as isize, y0 as isize);
                let (top, bottom) = (&image.data[i..i + 6], &image.data[i + row..i + row + 6]);
                for c in 0..3 {
                    px[c] = wt[0] * f32::from(top[c]) + wt[1] * f32::from(top[c + 3]) + wt[2] * f32::from(bottom[c]) + wt[3] * f32::from(bottom[c + 3]);
                }
            } else {
                image.sample(sx, sy, px);
            }
        }
        for (out, &v) in out_row.iter_mut().zip(samples.as_flattened()) {
            // Round half away from zero, as `round` does for these non-negative values. (A NaN,
            // which `clamp` would keep and the cast turn into 0, is 0 here too.)
            *out = trunc_within(v + 0.5, 0.0, 255.0) as u8;
        }
    }
    RgbImage { width: size, height: size, data }
}

/// The largest bound [`trunc_within`] takes: every integer up to it is an `f32`.
const TRUNC_MAX: i32 = 1 << 24;

/// `v` clamped to `lo..=hi` (a NaN to `lo`) and truncated toward zero: the conversion the
/// processor does on several values at once, which Rust's `as` (saturating, NaN to 0) is not.
/// The bounds must lie within ±[`TRUNC_MAX`].
#[inline]
fn trunc_within(v: f32, lo: f32, hi: f32) -> i32 {
    let bound = TRUNC_MAX as f32;
    let c = v.max(lo.max(-bound)).min(hi.min(bound));
    // SAFETY: `f32::max` and `f32::min` return the other operand where one is NaN, so both
    // bounds are numbers within ±2²⁴ and so is `c`: its conversion to `i32` is defined.
    unsafe { c.to_int_unchecked::<i32>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        let truth = Similarity { a: 0.8 * 0.3f32.cos(), b: 0.8 * 0.3f32.sin(), tx: 12.5, ty: -7.25 };
        let src = [[100.0, 120.0], [160.0, 118.0], [131.0, 150.0], [108.0, 182.0], [155.0, 181.0]];
        let dst = src.map(|p| truth.apply(p));
        let m = Similarity::estimate(&src, &dst).unwrap();
        for (got, want) in [m.a, m.b, m.tx, m.ty].iter().zip([truth.a, truth.b, truth.tx, truth.ty]) {
            assert!((got - want).abs() < 1e-3, "{m:?} vs {truth:?}");
        }
    }

    #[test]
    fn template_maps_onto_itself() {
        let m = Similarity::estimate(&ARCFACE_TEMPLATE, &ARCFACE_TEMPLATE).unwrap();
        assert!((m.a - 1.0).abs() < 1e-5 && m.b.abs() < 1e-5 && m.tx.abs() < 1e-3 && m.ty.abs() < 1e-3);
    }

    #[test]
    fn inverse_undoes_the_transform() {
        let m = Similarity { a: 1.5, b: -0.4, tx: 3.0, ty: 9.0 };
        let inv = m.inverse().unwrap();
        let p = [17.0, -4.0];
        let back = inv.apply(m.apply(p));
        assert!((back[0] - p[0]).abs() < 1e-4 && (back[1] - p[1]).abs() < 1e-4);
    }

    #[test]
    fn square_crop_centres_the_point() {
        let mut data = vec![0u8; 100 * 100 * 3];
        let i = (50 * 100 + 60) * 3;
        data[i..i + 3].copy_from_slice(&[200, 200, 200]);
        let crop = square_crop(&RgbImage::new(100, 100, data).unwrap(), [60.0, 50.0], 20.0, 20).image();
        assert_eq!(crop.data[(10 * 20 + 10) * 3], 200);
        assert_eq!(crop.data[0], 0);
    }

    #[test]
    fn degenerate_landmarks_are_an_error() {
        assert_eq!(Similarity::estimate(&[[5.0, 5.0]; 5], &ARCFACE_TEMPLATE), Err(AlignError::Degenerate));
        let mut nan = ARCFACE_TEMPLATE;
        nan[2][0] = f32::NAN;
        assert!(Similarity::estimate(&nan, &ARCFACE_TEMPLATE).is_err());
    }

    #[test]
    fn aligned_crop_puts_a_marked_eye_on_the_template() {
        // A 400×300 black frame with a white 3×3 dot at the (scaled, shifted) left-eye position.
        let (w, h) = (400usize, 300usize);
        let mut data = vec![0u8; w * h * 3];
        let lm = ARCFACE_TEMPLATE.map(|p| [p[0] * 2.0 + 100.0, p[1] * 2.0 + 50.0]);
        let (ex, ey) = (lm[0][0].round() as usize, lm[0][1].round() as usize);
        for y in ey - 1..=ey + 1 {
            for x in ex - 1..=ex + 1 {
                data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let crop = align_face(&RgbImage::new(w, h, data).unwrap(), &lm).unwrap();
        assert_eq!((crop.width, crop.height), (CROP, CROP));
        let (cx, cy) = (ARCFACE_TEMPLATE[0][0].round() as usize, ARCFACE_TEMPLATE[0][1].round() as usize);
        assert!(crop.data[(cy * CROP + cx) * 3] > 100, "eye dot should land on the template eye");
        assert_eq!(crop.data[(10 * CROP + 10) * 3], 0);
    }

    /// The general per-tap sample at every pixel: what `warp` computed before its fast path.
    fn warp_by_taps(image: &RgbImage, inv: &Similarity, size: usize) -> Vec<u8> {
        let mut px = [0.0f32; 3];
        let mut data = Vec::with_capacity(size * size * 3);
        let region = Region::whole(image);
        for y in 0..size {
            for x in 0..size {
                let [sx, sy] = inv.apply([x as f32, y as f32]);
                region.sample(sx, sy, &mut px);
                data.extend(px.map(|v| (v.clamp(0.0, 255.0) + 0.5) as u8));
            }
        }
        data
    }

    /// A repeatable stream of pseudo-random numbers (xorshift64).
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// A `w × h` image of values from `next`.
    fn noise(w: usize, h: usize, next: &mut impl FnMut() -> u64) -> RgbImage {
        RgbImage::new(w, h, (0..w * h * 3).map(|_| next() as u8).collect()).unwrap()
    }

    /// A value in `0..1` from a random number.
    fn unit(n: u64) -> f32 {
        (n % 10_000) as f32 / 10_000.0
    }

    #[test]
    fn the_fast_path_samples_bit_for_bit_like_the_general_one() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let image = noise(97, 61, &mut next);
        // Rotated, scaled and shifted maps, many reaching past an edge; whole-pixel ones (taps of
        // weight 0); and a map that is not finite.
        let mut maps: Vec<Similarity> = (0..300)
            .map(|_| {
                let (scale, angle) = (0.2 + 2.0 * unit(next()), 6.3 * unit(next()));
                Similarity { a: scale * angle.cos(), b: scale * angle.sin(), tx: 140.0 * unit(next()) - 30.0, ty: 100.0 * unit(next()) - 20.0 }
            })
            .collect();
        maps.push(Similarity { a: 1.0, b: 0.0, tx: 3.0, ty: 2.0 });
        maps.push(Similarity { a: 0.5, b: 0.0, tx: 60.0, ty: 30.0 });
        maps.push(Similarity { a: f32::NAN, b: 0.0, tx: 0.0, ty: 0.0 });
        // Points past the range of 32- and 64-bit integers.
        maps.push(Similarity { a: 1.0, b: 0.0, tx: -3e9, ty: 5e9 });
        maps.push(Similarity { a: 1.0, b: 0.0, tx: 1e20, ty: -1e20 });
        for inv in &maps {
            assert_eq!(warp(&image, inv, 40).data, warp_by_taps(&image, inv, 40), "{inv:?}");
        }
    }

    #[test]
    fn trunc_within_clamps_then_truncates_and_takes_a_nan_to_the_low_bound() {
        assert_eq!(trunc_within(3.99, 0.0, 255.0), 3);
        assert_eq!(trunc_within(-1.5, -2.0, 5.0), -1, "toward zero");
        assert_eq!(trunc_within(300.0, 0.0, 255.0), 255);
        assert_eq!(trunc_within(-7.0, 0.0, 255.0), 0);
        assert_eq!(trunc_within(f32::NAN, 0.0, 255.0), 0);
        assert_eq!(trunc_within(f32::INFINITY, -1.0, 1e30), TRUNC_MAX, "bounds beyond 2²⁴ are held to it");
        assert_eq!(trunc_within(f32::NEG_INFINITY, f32::NAN, 0.0), -TRUNC_MAX, "a NaN bound is the widest");
    }

    #[test]
    fn a_square_crop_from_its_window_is_the_warp_of_the_frame() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        let image = noise(160, 90, &mut next);
        // Squares inside the frame, across its edges, beyond it, smaller than the view, wide
        // enough to be made at once, and not finite.
        let mut squares: Vec<([f32; 2], f32)> =
            (0..400).map(|_| ([220.0 * unit(next()) - 30.0, 130.0 * unit(next()) - 20.0], 0.5 + 150.0 * unit(next()))).collect();
        squares.extend([
            ([80.0, 45.0], 20.0),
            ([0.0, 0.0], 7.0),
            ([159.5, 89.5], 3.0),
            ([-500.0, 40.0], 60.0),
            ([80.0, 45.0], 1e6),
            ([f32::NAN, 10.0], 30.0),
            ([10.0, 10.0], f32::INFINITY),
        ]);
        let mut windows = 0;
        for (center, side) in squares {
            let crop = square_crop(&image, center, side, 24);
            windows += usize::from(matches!(crop.0, Pending::Window { .. }));
            assert_eq!(crop.image().data, warp(&image, &square_map(center, side, 24), 24).data, "{center:?} {side}");
        }
        assert!(windows > 250 && windows < 400, "most squares keep a window, some are made at once ({windows})");
    }
}
