//! Plain data that crosses stage boundaries: an RGB image, a detected face, an aligned crop.
//! Kept free of ffmpeg/ort types so every stage can be tested with hand-made values.

/// A packed 8-bit RGB image (row stride = 3 × width). Decoded frames and aligned crops both use it,
/// so the detector, the aligner and the embedder agree on one pixel layout.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wraps `data`; `None` when its length is not `3 × width × height`, so a malformed buffer
    /// is caught where it is made rather than as an out-of-bounds read in a pixel loop.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Option<Self> {
        (data.len() == width * height * 3).then_some(Self { width, height, data })
    }
}

/// `floor` without a libm call (for a warp's points off its fast path, and a window's span):
/// exact within 2³¹ of the origin and saturating beyond, far outside any image. A NaN gives 0
/// (and a NaN weight: a black pixel).
#[inline]
pub fn floor32(v: f32) -> i32 {
    let i = v as i32;
    if (i as f32) > v {
        i.saturating_sub(1)
    } else {
        i
    }
}

/// One face as the detector reports it, in pixels of the original frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose, left mouth corner, right mouth corner, as seen in the image.
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
}

impl Detection {
    /// Shorter side of the box: the size users filter on (`--min-face`).
    pub fn min_side(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]).min(self.bbox[3] - self.bbox[1])
    }
}

/// Why a detected face was not embedded; written as snake_case in `faces.jsonl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Shorter box side below `--min-face`.
    TooSmall,
    /// Detector score below `--det-threshold`.
    LowScore,
    /// A landmark lies outside the frame: the face is cut off.
    OutOfFrame,
    /// Yaw beyond `quality.max_yaw`: a profile the embedder handles poorly.
    Profile,
    /// The landmarks gave no usable transform.
    AlignFailed,
    /// Variance of the Laplacian of the aligned crop below `quality.min_blur`.
    Blurry,
    /// Passed every gate, but with `--embed-every track` its track had already embedded a face
    /// like it, with a certain match: not embedded.
    Redundant,
}

impl SkipReason {
    /// Whether a face with this outcome passed the quality gates (embedded, or redundant).
    pub fn usable(skip: Option<SkipReason>) -> bool {
        matches!(skip, None | Some(SkipReason::Redundant))
    }
}

/// What was measured of a face, recorded in `faces.jsonl` whether or not it passed the gates.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaceQuality {
    /// Variance of the Laplacian of the aligned grey crop (`None` when it could not be aligned).
    pub blur: Option<f64>,
    /// Shorter side of the box in pixels.
    pub face_px: f64,
    /// Estimated yaw in degrees (0 frontal).
    pub yaw: f64,
}

impl FaceQuality {
    /// One number to pick a track's best face by: large, confident, frontal, sharp.
    pub fn rank(&self, det_score: f32) -> f64 {
        let size = (self.face_px / 112.0).min(1.0);
        let sharp = self.blur.map_or(0.0, |b| (b / 500.0).min(1.0));
        size * f64::from(det_score) * self.yaw.to_radians().cos().max(0.0) * (0.5 + 0.5 * sharp)
    }
}
