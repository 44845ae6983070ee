//! How a stored frame becomes the picture a viewer sees: non-square pixels stretched to square
//! (as `scale=iw*sar:ih` does) and then the container's display matrix (right-angle rotations
//! and mirror flips) applied. Every box and landmark a harvest writes is in that displayed,
//! square-pixel space. Pure, so every orientation is tested on its own.

use crate::types::RgbImage;

/// A right-angle orientation: the display matrix's top-left 2×2 reduced to -1, 0 or 1.
/// A stored pixel at `(p, q)` lands at `(a·p + c·q, b·p + d·q)` plus the shift that keeps the
/// picture at the origin (FFmpeg's `libavutil/display.h` convention, y pointing down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orientation {
    a: i8,
    b: i8,
    c: i8,
    d: i8,
}

impl Orientation {
    pub const UPRIGHT: Self = Self { a: 1, b: 0, c: 0, d: 1 };

    /// The orientation a display matrix (nine 16.16/2.30 fixed-point values, as FFmpeg stores
    /// it) asks for, and its clockwise rotation in degrees when that is not a right angle (then the nearest
    /// right angle is used).
    pub fn from_display_matrix(m: &[i32; 9]) -> (Self, Option<f64>) {
        let (a, b, c, d) = (f64::from(m[0]), f64::from(m[1]), f64::from(m[3]), f64::from(m[4]));
        let (sx, sy) = (a.hypot(c), b.hypot(d));
        if sx == 0.0 || sy == 0.0 {
            return (Self::UPRIGHT, None); // degenerate: nothing a player would show either
        }
        // The angle the matrix turns the x axis by; a flip only changes the sign of the other column.
        let angle = b.atan2(a).to_degrees();
        let quarter = (angle / 90.0).round();
        let off = (angle - quarter * 90.0).abs() > 1.0;
        let (cos, sin) = match quarter.rem_euclid(4.0) as i32 {
            0 => (1, 0),
            1 => (0, 1),
            2 => (-1, 0),
            _ => (0, -1),
        };
        // The second column is the first turned by +90° (a rotation) or −90° (with a mirror).
        let mirrored = a * d - b * c < 0.0;
        let (c, d) = if mirrored { (sin, -cos) } else { (-sin, cos) };
        (Self { a: cos, b: sin, c, d }, off.then_some(angle))
    }

    /// Clockwise rotation in degrees (0, 90, 180 or 270) applied after any mirror.
    pub fn rotation(&self) -> u32 {
        // Undo the mirror (which negates x before turning) to read the pure turn.
        let (a, b) = if self.mirrored() { (-self.a, -self.b) } else { (self.a, self.b) };
        match (a, b) {
            (1, 0) => 0,
            (0, 1) => 90,
            (-1, 0) => 180,
            _ => 270,
        }
    }

    /// The picture is mirrored left to right before the rotation.
    pub fn mirrored(&self) -> bool {
        self.a * self.d - self.b * self.c < 0
    }

    /// Width and height swap (a quarter turn).
    pub fn swaps(&self) -> bool {
        self.a == 0
    }

    /// The displayed size of a `w × h` picture.
    pub fn display_size(&self, w: usize, h: usize) -> (usize, usize) {
        if self.swaps() {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// `image` as displayed. The upright orientation returns it unchanged.
    pub fn apply(&self, image: RgbImage) -> RgbImage {
        if *self == Self::UPRIGHT {
            return image;
        }
        let (w, h) = (image.width, image.height);
        let (ow, oh) = self.display_size(w, h);
        let mut out = vec![0u8; w * h * 3];
        self.apply_plane(&image.data, w * 3, (w, h), 3, &mut out, ow * 3);
        RgbImage { width: ow, height: oh, data: out }
    }

    /// Writes the `w × h` plane of `elem`-byte samples in `src` (rows `src_stride` bytes apart)
    /// into `dst` as displayed: `display_size(w, h)` samples, rows `dst_stride` bytes apart.
    pub fn apply_plane(&self, src: &[u8], src_stride: usize, (w, h): (usize, usize), elem: usize, dst: &mut [u8], dst_stride: usize) {
        let (a, b, c, d) = (isize::from(self.a), isize::from(self.b), isize::from(self.c), isize::from(self.d));
        // Where stored (0, 0) lands, and the step in `dst` for one step along a row and down a column.
        let corner = |v: isize, n: usize| if v < 0 { n as isize - 1 } else { 0 };
        let (x0, y0) = (corner(a, w) + corner(c, h), corner(b, w) + corner(d, h));
        let (e, ds) = (elem as isize, dst_stride as isize);
        let (step_p, step_q) = (e * a + ds * b, e * c + ds * d);
        for q in 0..h {
            let mut o = x0 * e + y0 * ds + step_q * q as isize;
            for sample in src[q * src_stride..][..w * elem].chunks_exact(elem) {
                // In range for every sample of the plane; only the step past a row's end is not.
                let at = o as usize;
                dst[at..at + elem].copy_from_slice(sample);
                o += step_p;
            }
        }
    }
}

/// The stored frame's pixel shape and orientation: everything needed to show it as a viewer sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// Sample (pixel) aspect ratio, width : height of one stored pixel; 1:1 when unknown.
    pub sar: (u32, u32),
    pub orientation: Orientation,
}

impl Geometry {
    /// Square-pixel size of a stored `w × h` frame before orientation: the width stretched by the
    /// SAR, the height kept, as `scale=iw*sar:ih` does.
    pub fn square_size(&self, w: u32, h: u32) -> (u32, u32) {
        let (n, d) = (u64::from(self.sar.0), u64::from(self.sar.1));
        if n == d || d == 0 {
            return (w, h);
        }
        let sw = ((u64::from(w) * n + d / 2) / d).max(1);
        (u32::try_from(sw).unwrap_or(u32::MAX), h)
    }

    /// The displayed size of a stored `w × h` frame.
    pub fn display_size(&self, w: u32, h: u32) -> (u32, u32) {
        let (sw, sh) = self.square_size(w, h);
        if self.orientation.swaps() {
            (sh, sw)
        } else {
            (sw, sh)
        }
    }

    /// The size to scale a stored frame to so that, once oriented, it is `w × h`.
    pub fn unoriented(&self, w: u32, h: u32) -> (u32, u32) {
        if self.orientation.swaps() {
            (h, w)
        } else {
            (w, h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i32 = 1 << 16;

    /// A 3 × 2 picture whose pixels are numbered 0..6 in reading order.
    fn numbered() -> RgbImage {
        RgbImage::new(3, 2, (0..6u8).flat_map(|v| [v, v, v]).collect()).unwrap()
    }

    fn grid(img: &RgbImage) -> Vec<Vec<u8>> {
        (0..img.height).map(|y| (0..img.width).map(|x| img.data[(y * img.width + x) * 3]).collect()).collect()
    }

    /// FFmpeg's `av_display_rotation_set(angle)` (counter-clockwise degrees) with optional flips,
    /// as `av_display_matrix_flip` makes them.
    fn matrix(ccw: f64, hflip: bool, vflip: bool) -> [i32; 9] {
        let r = ccw.to_radians();
        let (c, s) = ((r.cos() * f64::from(ONE)).round() as i32, (r.sin() * f64::from(ONE)).round() as i32);
        let mut m = [c, -s, 0, s, c, 0, 0, 0, 1 << 30];
        let (fx, fy) = (if hflip { -1 } else { 1 }, if vflip { -1 } else { 1 });
        for i in 0..3 {
            m[i * 3] *= fx;
            m[i * 3 + 1] *= fy;
        }
        m
    }

    fn oriented(m: [i32; 9]) -> Vec<Vec<u8>> {
        let (o, off) = Orientation::from_display_matrix(&m);
        assert_eq!(off, None);
        grid(&o.apply(numbered()))
    }

    #[test]
    fn each_right_angle_turns_the_picture_as_a_player_shows_it() {
        // 0 1 2
        // 3 4 5
        assert_eq!(oriented(matrix(0.0, false, false)), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        // FFmpeg's `rotate=90` tag is −90° counter-clockwise: shown turned clockwise.
        assert_eq!(oriented(matrix(-90.0, false, false)), vec![vec![3, 0], vec![4, 1], vec![5, 2]]);
        assert_eq!(oriented(matrix(180.0, false, false)), vec![vec![5, 4, 3], vec![2, 1, 0]]);
        assert_eq!(oriented(matrix(90.0, false, false)), vec![vec![2, 5], vec![1, 4], vec![0, 3]]);
    }

    #[test]
    fn flips_mirror_the_picture() {
        assert_eq!(oriented(matrix(0.0, true, false)), vec![vec![2, 1, 0], vec![5, 4, 3]]);
        assert_eq!(oriented(matrix(0.0, false, true)), vec![vec![3, 4, 5], vec![0, 1, 2]]);
        assert_eq!(oriented(matrix(0.0, true, true)), vec![vec![5, 4, 3], vec![2, 1, 0]]);
        // The transpose: mirrored, then turned three quarters clockwise.
        let (o, _) = Orientation::from_display_matrix(&matrix(-90.0, true, false));
        assert!(o.mirrored() && o.rotation() == 270);
        assert_eq!(grid(&o.apply(numbered())), vec![vec![0, 3], vec![1, 4], vec![2, 5]]);
    }

    #[test]
    fn rotation_and_mirror_are_reported_as_a_viewer_reads_them() {
        for (ccw, cw) in [(0.0, 0), (-90.0, 90), (180.0, 180), (90.0, 270), (270.0, 90)] {
            let (o, _) = Orientation::from_display_matrix(&matrix(ccw, false, false));
            assert_eq!((o.rotation(), o.mirrored()), (cw, false), "ccw {ccw}");
        }
        let (o, _) = Orientation::from_display_matrix(&matrix(0.0, true, false));
        assert_eq!((o.rotation(), o.mirrored()), (0, true));
        // A vertical flip is a mirror turned half way.
        let (o, _) = Orientation::from_display_matrix(&matrix(0.0, false, true));
        assert_eq!((o.rotation(), o.mirrored()), (180, true));
    }

    #[test]
    fn a_plane_with_padded_rows_and_two_byte_samples_turns_like_a_picture() {
        // 3 × 2 samples of 2 bytes, rows padded to 8 bytes; output rows padded to 6.
        let src: Vec<u8> = [0u8, 1, 2, 9, 3, 4, 5, 9].iter().flat_map(|&v| [v, 100 + v]).collect();
        let (o, _) = Orientation::from_display_matrix(&matrix(-90.0, false, false));
        let mut dst = vec![0u8; 6 * 3];
        o.apply_plane(&src, 8, (3, 2), 2, &mut dst, 6);
        let rows: Vec<Vec<u8>> = dst.chunks(6).map(|r| r[..4].iter().step_by(2).copied().collect()).collect();
        assert_eq!(rows, vec![vec![3, 0], vec![4, 1], vec![5, 2]]);
        assert_eq!(dst[1], 103, "both bytes of a sample move together");
    }

    #[test]
    fn all_eight_orientations_keep_every_pixel() {
        for ccw in [0.0, 90.0, 180.0, 270.0] {
            for hflip in [false, true] {
                let (o, _) = Orientation::from_display_matrix(&matrix(ccw, hflip, false));
                let out = o.apply(numbered());
                let mut seen: Vec<u8> = out.data.iter().step_by(3).copied().collect();
                seen.sort();
                assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
                assert_eq!((out.width, out.height), o.display_size(3, 2));
            }
        }
    }

    #[test]
    fn an_odd_angle_is_reported_and_the_nearest_right_angle_used() {
        let (o, off) = Orientation::from_display_matrix(&matrix(-80.0, false, false));
        assert_eq!(o.rotation(), 90);
        assert!((off.unwrap() - 80.0).abs() < 0.1, "clockwise degrees: {off:?}");
        let (o, off) = Orientation::from_display_matrix(&[0; 9]);
        assert_eq!((o, off), (Orientation::UPRIGHT, None));
    }

    #[test]
    fn non_square_pixels_stretch_the_width_like_ffmpeg_scale() {
        let g = Geometry { sar: (16, 11), orientation: Orientation::UPRIGHT };
        assert_eq!(g.square_size(704, 576), (1024, 576));
        assert_eq!(Geometry { sar: (8, 9), ..g }.square_size(720, 480), (640, 480));
        assert_eq!(Geometry { sar: (1, 1), ..g }.square_size(640, 360), (640, 360));
        let turned = Geometry { orientation: Orientation::from_display_matrix(&matrix(-90.0, false, false)).0, ..g };
        assert_eq!(turned.display_size(704, 576), (576, 1024));
        assert_eq!(turned.unoriented(576, 1024), (1024, 576));
    }
}
