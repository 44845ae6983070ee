//! What a track adds up to while it is open: span, counts, the sum of its embeddings, and its
//! best face (with the crops to show for it). Pure bookkeeping, fed one face at a time.

use crate::embed::l2_normalize;
use crate::types::RgbImage;

/// The best face so far and the images to save for it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BestFace {
    pub rank: f64,
    pub face_id: u64,
    /// The aligned crop (when it aligned) and the context image; `None` once a checkpoint has
    /// saved the face's crop (the images are then not needed again).
    pub images: Option<(Option<RgbImage>, RgbImage)>,
}

/// One open track's running totals.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrackSummary {
    pub track_id: u64,
    pub shot: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub t_start: f64,
    pub t_end: f64,
    pub n_faces: u64,
    pub n_embedded: u64,
    embedding_sum: Option<Vec<f32>>,
    pub best: Option<BestFace>,
}

/// One face as a track sees it.
pub struct FaceInTrack<'a> {
    pub face_id: u64,
    pub frame: u64,
    pub t: f64,
    pub embedding: Option<&'a [f32]>,
    /// Passed the quality gates; such faces always outrank gated ones for "best".
    pub usable: bool,
    pub rank: f64,
}

impl TrackSummary {
    pub fn new(track_id: u64, shot: u64, frame: u64, t: f64) -> Self {
        Self { track_id, shot, first_frame: frame, last_frame: frame, t_start: t, t_end: t, n_faces: 0, n_embedded: 0, embedding_sum: None, best: None }
    }

    /// Adds a face; `crops` builds its (aligned, context) images only when it becomes the best.
    pub fn add(&mut self, face: &FaceInTrack, crops: impl FnOnce() -> (Option<RgbImage>, RgbImage)) {
        self.n_faces += 1;
        self.last_frame = self.last_frame.max(face.frame);
        self.t_end = self.t_end.max(face.t);
        if let Some(e) = face.embedding {
            self.n_embedded += 1;
            match &mut self.embedding_sum {
                Some(sum) => sum.iter_mut().zip(e).for_each(|(s, x)| *s += x),
                None => self.embedding_sum = Some(e.to_vec()),
            }
        }
        // Usable faces get +1 so any of them beats every gated face (ranks are within 0..1).
        let rank = face.rank + if face.usable { 1.0 } else { 0.0 };
        if self.best.as_ref().is_none_or(|b| rank > b.rank) {
            let (aligned, context) = crops();
            self.best = Some(BestFace { rank, face_id: face.face_id, images: Some((aligned, context)) });
        }
    }

    /// The totals without the best face's images (a checkpoint keeps those in a file).
    pub fn without_best(&self) -> Self {
        Self {
            track_id: self.track_id,
            shot: self.shot,
            first_frame: self.first_frame,
            last_frame: self.last_frame,
            t_start: self.t_start,
            t_end: self.t_end,
            n_faces: self.n_faces,
            n_embedded: self.n_embedded,
            embedding_sum: self.embedding_sum.clone(),
            best: None,
        }
    }

    /// The normalised mean of the track's embeddings, if it has any.
    pub fn mean_embedding(&self) -> Option<Vec<f32>> {
        self.embedding_sum.clone().map(|mut v| {
            l2_normalize(&mut v);
            v
        })
    }
}

/// The aligned crop and the context crop side by side (aligned on the left), for `crops/`.
pub fn side_by_side(left: Option<&RgbImage>, right: &RgbImage) -> RgbImage {
    let h = right.height;
    let lw = left.map_or(h, |l| l.width);
    let w = lw + right.width;
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        if let Some(l) = left.filter(|l| y < l.height) {
            data[y * w * 3..(y * w + l.width) * 3].copy_from_slice(&l.data[y * l.width * 3..(y + 1) * l.width * 3]);
        }
        data[(y * w + lw) * 3..(y + 1) * w * 3].copy_from_slice(&right.data[y * right.width * 3..(y + 1) * right.width * 3]);
    }
    RgbImage { width: w, height: h, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(v: u8) -> RgbImage {
        RgbImage::new(2, 2, vec![v; 12]).unwrap()
    }

    fn face(id: u64, frame: u64, e: Option<&[f32]>, usable: bool, rank: f64) -> FaceInTrack<'_> {
        FaceInTrack { face_id: id, frame, t: frame as f64 / 10.0, embedding: e, usable, rank }
    }

    #[test]
    fn totals_span_and_mean() {
        let mut s = TrackSummary::new(7, 2, 10, 1.0);
        s.add(&face(0, 10, Some(&[1.0, 0.0]), true, 0.5), || (Some(img(1)), img(1)));
        s.add(&face(1, 14, None, false, 0.9), || (None, img(2)));
        s.add(&face(2, 18, Some(&[0.0, 1.0]), true, 0.7), || (Some(img(3)), img(3)));
        assert_eq!((s.n_faces, s.n_embedded, s.first_frame, s.last_frame), (3, 2, 10, 18));
        assert!((s.t_end - 1.8).abs() < 1e-9);
        let m = s.mean_embedding().unwrap();
        assert!((m[0] - m[1]).abs() < 1e-6 && (m[0] * m[0] + m[1] * m[1] - 1.0).abs() < 1e-6);
        let best = s.best.unwrap();
        assert_eq!(best.face_id, 2, "a usable face beats a gated one of higher rank");
        assert_eq!(best.images.unwrap().1.data[0], 3);
    }

    #[test]
    fn no_embeddings_no_mean() {
        let mut s = TrackSummary::new(0, 0, 0, 0.0);
        s.add(&face(0, 0, None, false, 0.1), || (None, img(0)));
        assert!(s.mean_embedding().is_none());
    }

    #[test]
    fn side_by_side_puts_aligned_left() {
        let out = side_by_side(Some(&img(10)), &img(20));
        assert_eq!((out.width, out.height), (4, 2));
        assert_eq!(out.data[0], 10);
        assert_eq!(out.data[2 * 3], 20);
        let blank = side_by_side(None, &img(20));
        assert_eq!((blank.width, blank.data[0], blank.data[2 * 3]), (4, 0, 20));
    }
}
