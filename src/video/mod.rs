//! FFmpeg decoding and frame sampling: every frame of the input is decoded exactly once, in order,
//! and only the sampled ones (`frame_idx % stride == 0`) pay for the conversion to RGB, made as
//! a viewer sees the frame (square pixels, display matrix applied; see [`geometry`]).
//!
//! All ffmpeg-next types stay inside this module; the rest of the crate sees [`VideoInfo`],
//! [`DecodedFrame`] and [`VideoError`].

mod clock;
mod geometry;
mod hashing;

use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use crate::types::RgbImage;
use clock::Clock;
use geometry::{Geometry, Orientation};

/// Why a video could not be opened or read. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("input not found: {path}")]
    NotFound { path: PathBuf },
    #[error("input is a directory, not a video or image file: {path}")]
    IsDirectory { path: PathBuf },
    #[error("input {path} is not a regular file (a device, FIFO or socket cannot be re-read to resume or verify a run)")]
    NotAFile { path: PathBuf },
    #[error("input is an empty file: {path}")]
    Empty { path: PathBuf },
    #[error("cannot open {path} as video or image: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("no video stream in {path}")]
    NoVideoStream { path: PathBuf },
    #[error("cannot start a decoder for {path}: {reason}")]
    Decoder { path: PathBuf, reason: String },
    #[error("cannot convert frame {frame} of {path} to RGB: {reason}")]
    Convert { path: PathBuf, frame: u64, reason: String },
    #[error("--skip-nonref cannot number the frames of {path} exactly: {reason}; run without --skip-nonref")]
    SkipNonref { path: PathBuf, reason: String },
}

/// The widest sample aspect ratio taken as real (either way); beyond it the stream's SAR is
/// taken for damage and pixels are left square.
const MAX_SAR: f64 = 8.0;

/// What the container says about the video stream, for progress and the manifest.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VideoInfo {
    /// The frame as displayed: square pixels, display matrix applied. Every box and landmark
    /// of a harvest is in this space.
    pub width: u32,
    pub height: u32,
    /// The frame as stored in the stream, before the two steps below.
    pub stored_width: u32,
    pub stored_height: u32,
    /// Width : height of one stored pixel ("16:11"); stored frames are stretched to square
    /// pixels by it (the width scaled, the height kept). "1:1" when the stream gives none.
    pub sample_aspect_ratio: String,
    /// Then the picture is mirrored left to right, when the display matrix says so, ...
    pub mirrored: bool,
    /// ... and turned this many degrees clockwise (0, 90, 180 or 270).
    pub rotation: u32,
    pub codec: String,
    pub pixel_format: String,
    /// Frame count from the container, when it records one.
    pub frames_total: Option<u64>,
    pub frame_rate: Option<f64>,
    pub time_base: f64,
}

/// Maps a frame's `(width, height)` to the size of its scaled copy, or `None` for no copy.
pub type ScaledSize = Box<dyn Fn(u32, u32) -> Option<(u32, u32)> + Send>;

/// Side of the square thumbnail made of every frame, for shot-cut detection.
pub const THUMB: u32 = 64;

/// One decoded frame. `image` is present only for sampled frames, unless images are off.
#[derive(Debug)]
pub struct DecodedFrame {
    pub idx: u64,
    /// `idx % stride == 0`.
    pub sampled: bool,
    /// Presentation time in seconds (pts × time base), as players show it.
    pub t: f64,
    /// The raw presentation timestamp, which a resumed run seeks by.
    pub pts: Option<i64>,
    pub image: Option<RgbImage>,
    /// The sampled frame scaled as [`VideoDecoder::with_scaled`] asked (for a detector), when
    /// it asked for a copy.
    pub scaled: Option<RgbImage>,
    /// A `THUMB × THUMB` RGB thumbnail of every frame (aspect not kept).
    pub thumb: RgbImage,
}

/// Something that went wrong with part of the stream while decoding went on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DecodeIssue {
    /// The decoder rejected a packet; the frame(s) in it are lost.
    BadPacket { after_frame: u64, reason: String },
    /// Reading the input stopped with an error before its end (truncated or unreadable file).
    EndedEarly { after_frame: u64, reason: String },
}

fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // ffmpeg::init only registers devices/network on old FFmpeg; it cannot fail on 5.x.
        let _ = ffmpeg::init();
        // FFmpeg's own log would interleave with ours; failures are reported by this module.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Decodes one video stream frame by frame.
pub struct VideoDecoder {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    hash: hashing::InputHash,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    info: VideoInfo,
    /// Frame numbering, sampling and time.
    clock: Clock,
    /// How a stored frame becomes the displayed one.
    geometry: Geometry,
    /// Convert sampled frames to RGB (off when no model will look at them).
    images: bool,
    /// The size of the scaled copy of each sampled frame, from the frame's size.
    scaled_size: Option<ScaledSize>,
    scaled_scaler: Option<scaling::Context>,
    scaled_rgb: ffmpeg::frame::Video,
    scaler: Option<scaling::Context>,
    /// The sampled frame's planes turned as displayed (see [`orient_planes`]).
    turned: ffmpeg::frame::Video,
    thumb_scaler: Option<scaling::Context>,
    frame: ffmpeg::frame::Video,
    rgb: ffmpeg::frame::Video,
    thumb_rgb: ffmpeg::frame::Video,
    eof_sent: bool,
    ended: bool,
    /// `frame` holds a decoded frame not yet emitted (the first one after a resume).
    held: bool,
    /// Where the latest issue happened: one mid-stream explains a short frame count; one at the
    /// very end is what a cut-off file looks like.
    last_issue_at: Option<u64>,
    issues: Vec<DecodeIssue>,
}

// The decoder is moved once into the decode thread and used only there.
unsafe impl Send for VideoDecoder {}

impl VideoDecoder {
    /// Opens `path`, picks its best video stream and starts a decoder with `threads` frame threads.
    pub fn open(path: &Path, threads: usize, stride: u64) -> Result<Self, VideoError> {
        check_input_file(path)?;
        init_ffmpeg();
        let open_err = |e: ffmpeg::Error| VideoError::Open { path: path.to_path_buf(), reason: e.to_string() };
        let io_err = |e: std::io::Error| VideoError::Open { path: path.to_path_buf(), reason: e.to_string() };
        let (reader, hash) = hashing::HashingReader::open(path).map_err(io_err)?;
        let io = ffmpeg::format::context::StreamIo::from_read_seek(reader).map_err(open_err)?;
        // The file name lets FFmpeg guess the format from the extension, as with a path.
        let input = ffmpeg::format::input_from_stream(io, path.to_str(), None).map_err(open_err)?;
        let stream = input.streams().best(ffmpeg::media::Type::Video).ok_or_else(|| VideoError::NoVideoStream { path: path.to_path_buf() })?;
        let stream_index = stream.index();
        let matrix = stream.side_data().find(|d| d.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix).and_then(|d| display_matrix(d.data()));
        // SAFETY: `stream` borrows `input`, which outlives this read of a plain field.
        let stream_sar = ffmpeg::Rational::from(unsafe { (*stream.as_ptr()).sample_aspect_ratio });
        let time_base = f64::from(stream.time_base());
        let frames_total = u64::try_from(stream.frames()).ok().filter(|&n| n > 0);
        let rate = stream.avg_frame_rate();
        let frame_rate = (rate.numerator() > 0 && rate.denominator() > 0).then(|| f64::from(rate));
        let dec_err = |e: ffmpeg::Error| {
            let reason = match e {
                // Opening a decoder starts its frame threads.
                ffmpeg::Error::Other { errno } if errno == ffmpeg::util::error::EAGAIN => {
                    format!("{e}: its threads could not start; {}", crate::onnx::THREAD_LIMIT_HINT)
                }
                _ => e.to_string(),
            };
            VideoError::Decoder { path: path.to_path_buf(), reason }
        };
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(dec_err)?;
        ctx.set_threading(threading::Config { kind: threading::Type::Frame, count: threads.max(1), ..Default::default() });
        let decoder = ctx.decoder().video().map_err(dec_err)?;
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(VideoError::Decoder { path: path.to_path_buf(), reason: "the stream has no frame size".into() });
        }
        let (geometry, notes) = geometry_of(matrix, [stream_sar, decoder.aspect_ratio()]);
        for note in notes {
            crate::log::event("warning", Some(&format!("warning: {}: {note}", path.display())), serde_json::json!({"input": path}));
        }
        let (width, height) = geometry.display_size(decoder.width(), decoder.height());
        let info = VideoInfo {
            width,
            height,
            stored_width: decoder.width(),
            stored_height: decoder.height(),
            sample_aspect_ratio: format!("{}:{}", geometry.sar.0, geometry.sar.1),
            mirrored: geometry.orientation.mirrored(),
            rotation: geometry.orientation.rotation(),
            codec: decoder.codec().map(|c| c.name().to_string()).unwrap_or_else(|| "unknown".into()),
            pixel_format: format!("{:?}", decoder.format()).to_lowercase(),
            frames_total,
            frame_rate,
            time_base,
        };
        Ok(Self {
            path: path.to_path_buf(),
            input,
            hash,
            decoder,
            stream_index,
            clock: Clock::new(stride, time_base, frame_rate),
            geometry,
            info,
            images: true,
            scaled_size: None,
            scaled_scaler: None,
            scaled_rgb: ffmpeg::frame::Video::empty(),
            scaler: None,
            turned: ffmpeg::frame::Video::empty(),
            thumb_scaler: None,
            frame: ffmpeg::frame::Video::empty(),
            rgb: ffmpeg::frame::Video::empty(),
            thumb_rgb: ffmpeg::frame::Video::empty(),
            eof_sent: false,
            ended: false,
            held: false,
            last_issue_at: None,
            issues: Vec::new(),
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Also gives each sampled frame scaled to `size(width, height)` where that is a size, made
    /// by FFmpeg's scaler straight from the decoded planes.
    pub fn with_scaled(mut self, size: ScaledSize) -> Self {
        self.scaled_size = Some(size);
        self
    }

    /// BLAKE3 of the input file (hex), from the bytes read for decoding plus any FFmpeg skipped.
    /// Call after the last frame.
    pub fn input_blake3(&self) -> Result<String, VideoError> {
        self.hash.finish(&self.path).map_err(|e| VideoError::Open { path: self.path.clone(), reason: e.to_string() })
    }

    /// Lets FFmpeg skip non-reference frames. A frame's index is then the rank of its timestamp
    /// among all the stream's packets, read once up front without decoding (exact at any frame
    /// rate, variable included), and a frame is sampled when it is the first decoded at or after
    /// each multiple of the stride. Refused for a stream whose packets lack timestamps or repeat
    /// one, where no rank could be trusted.
    pub fn skipping_nonref(mut self) -> Result<Self, VideoError> {
        let refuse = |reason: String| VideoError::SkipNonref { path: self.path.clone(), reason };
        let mut all = Vec::new();
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream_index => match packet.pts() {
                    Some(pts) => all.push(pts),
                    None => return Err(refuse(format!("packet {} has no timestamp", all.len()))),
                },
                Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(refuse(format!("the container could not be read through: {e}"))),
            }
        }
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(refuse(format!("two packets share the timestamp {}", w[0])));
        }
        self.input.seek(0, ..1).map_err(|e| refuse(format!("cannot rewind after reading the timestamps: {e}")))?;
        self.decoder.flush();
        self.decoder.skip_frame(ffmpeg::Discard::NonReference);
        self.clock.all_pts = Some(all);
        Ok(self)
    }

    /// Stops converting sampled frames to RGB: decoding and sampling only, for measuring them.
    pub fn without_images(mut self) -> Self {
        self.images = false;
        self
    }

    /// Problems met since the last call; decoding has gone on past each of them.
    pub fn take_issues(&mut self) -> Vec<DecodeIssue> {
        std::mem::take(&mut self.issues)
    }

    /// The next frame in decode order, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<DecodedFrame>, VideoError> {
        if std::mem::take(&mut self.held) || self.pull()? {
            return self.emit().map(Some);
        }
        Ok(None)
    }

    /// Continues a checkpointed run after frame `next_idx - 1`, whose presentation timestamp
    /// was `last_pts` and time `last_t`: seeks to the keyframe before it and decodes, without
    /// converting, past it. Without timestamps, or when the seek lands beyond that frame, it
    /// decodes from the start and counts frames instead.
    pub fn resume_after(&mut self, next_idx: u64, last_pts: Option<i64>, last_t: f64) -> Result<(), VideoError> {
        self.clock.resume(next_idx, last_t);
        if next_idx == 0 {
            return Ok(());
        }
        if let Some(target) = last_pts {
            let us = (target as f64 * self.info.time_base * 1e6).floor() as i64;
            if self.input.seek(us, ..us + 1).is_ok() {
                self.decoder.flush();
                self.eof_sent = false;
                let mut first = true;
                while self.pull()? {
                    match self.frame.timestamp() {
                        Some(pts) if first && pts > target => break, // landed past it
                        Some(pts) if pts > target => {
                            self.clock.next_idx = next_idx;
                            self.held = true;
                            return Ok(());
                        }
                        Some(_) => first = false,
                        None => break,
                    }
                }
            }
        }
        // The sure way: from the start, past that timestamp (or, without one, counting).
        self.input.seek(0, ..1).map_err(|e| VideoError::Decoder { path: self.path.clone(), reason: format!("cannot rewind to resume: {e}") })?;
        self.decoder.flush();
        (self.eof_sent, self.ended) = (false, false);
        self.clock.next_idx = 0;
        while self.clock.next_idx < next_idx && self.pull()? {
            if let (Some(target), Some(pts)) = (last_pts, self.frame.timestamp()) {
                if pts > target {
                    self.held = true;
                    break;
                }
            }
            self.clock.next_idx += 1;
        }
        self.clock.next_idx = next_idx;
        Ok(())
    }

    /// Decodes the next frame into `self.frame`; false at the end of the stream.
    fn pull(&mut self) -> Result<bool, VideoError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => return Ok(true),
                Err(ffmpeg::Error::Eof) => return Ok(self.end()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => {
                    // A broken frame inside the decoder: note it and keep pulling.
                    self.issue(DecodeIssue::BadPacket { after_frame: self.clock.next_idx, reason: e.to_string() });
                    if self.eof_sent {
                        return Ok(self.end());
                    }
                }
            }
            if self.eof_sent {
                return Ok(self.end());
            }
            self.feed()?;
        }
    }

    fn issue(&mut self, issue: DecodeIssue) {
        self.last_issue_at = Some(self.clock.next_idx);
        self.issues.push(issue);
    }

    /// The end of the stream. A stream that stops short of the frame count its container lists,
    /// with no damage before its last frame, was cut off: a truncated file whose index survived
    /// (moov first) reads to EOF with at most a broken last packet, so this is the clear sign.
    fn end(&mut self) -> bool {
        let at_the_end = self.last_issue_at.is_none_or(|at| at == self.clock.next_idx);
        if !std::mem::replace(&mut self.ended, true) && at_the_end {
            if let Some(total) = self.info.frames_total.filter(|&t| self.clock.next_idx < t) {
                let reason = format!("the container lists {total} frames, the data holds {}", self.clock.next_idx);
                self.issues.push(DecodeIssue::EndedEarly { after_frame: self.clock.next_idx, reason });
            }
        }
        false
    }

    /// Reads packets until one of our stream is accepted by the decoder, or signals the end.
    fn feed(&mut self) -> Result<(), VideoError> {
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    match self.decoder.send_packet(&packet) {
                        Ok(()) => return Ok(()),
                        Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => return Ok(()),
                        Err(e) => self.issue(DecodeIssue::BadPacket { after_frame: self.clock.next_idx, reason: e.to_string() }),
                    }
                }
                // The demuxer resyncs past a corrupt packet.
                Err(ffmpeg::Error::InvalidData) => {
                    self.issue(DecodeIssue::BadPacket { after_frame: self.clock.next_idx, reason: "invalid data in the container".into() })
                }
                Err(e) => {
                    if e != ffmpeg::Error::Eof {
                        self.issue(DecodeIssue::EndedEarly { after_frame: self.clock.next_idx, reason: e.to_string() });
                    }
                    self.eof_sent = true;
                    // Flushing an open decoder cannot fail in a way we could act on.
                    let _ = self.decoder.send_eof();
                    return Ok(());
                }
            }
        }
    }

    fn emit(&mut self) -> Result<DecodedFrame, VideoError> {
        let (idx, sampled, t) = self.clock.tick(self.frame.timestamp());
        let err = |reason: String| VideoError::Convert { path: self.path.clone(), frame: idx, reason };
        // Point sampling: a histogram of 4096 samples needs no filtering, and a filtered 20× reduction
        // of every frame would cost a third of the decoding itself.
        // Each copy is made at its square-pixel size straight from the decoded planes. A sampled
        // frame's planes are turned as displayed first where the format allows, so its copies
        // are scaled exactly as an upright frame's are (FFmpeg resamples rows and columns with
        // different rounding); otherwise, and for every thumbnail, the RGB copy is turned.
        let mut turn = self.geometry.orientation;
        let thumb = turn.apply(convert(&self.frame, &mut self.thumb_scaler, &mut self.thumb_rgb, THUMB, THUMB, scaling::Flags::POINT).map_err(err)?);
        let wants_image = sampled && self.images;
        // A stretch for non-square pixels runs along the stored width: not on turned planes.
        let plain_pixels = !turn.swaps() || self.geometry.sar.0 == self.geometry.sar.1;
        let mut geometry = self.geometry;
        let source = if wants_image && turn != Orientation::UPRIGHT && plain_pixels && orient_planes(&self.frame, turn, &mut self.turned) {
            (turn, geometry.orientation) = (Orientation::UPRIGHT, Orientation::UPRIGHT);
            &self.turned
        } else {
            &self.frame
        };
        let (w, h) = (source.width(), source.height());
        let image = if wants_image {
            let (sw, sh) = geometry.square_size(w, h);
            // Stretched pixels are resampled as FFmpeg's `scale` filter does by default.
            let flags = if (sw, sh) == (w, h) { scaling::Flags::BILINEAR } else { scaling::Flags::BICUBIC };
            Some(turn.apply(convert(source, &mut self.scaler, &mut self.rgb, sw, sh, flags).map_err(err)?))
        } else {
            None
        };
        let copy = self.scaled_size.as_ref().filter(|_| image.is_some()).and_then(|size| {
            let (dw, dh) = geometry.display_size(w, h);
            size(dw, dh)
        });
        let scaled = match copy {
            Some((sw, sh)) => {
                let (sw, sh) = geometry.unoriented(sw.max(1), sh.max(1));
                Some(turn.apply(convert(source, &mut self.scaled_scaler, &mut self.scaled_rgb, sw, sh, scaling::Flags::BILINEAR).map_err(err)?))
            }
            None => None,
        };
        Ok(DecodedFrame { idx, sampled, t, pts: self.frame.timestamp(), image, scaled, thumb })
    }
}

/// Converts `frame` to packed RGB of `w × h` with the cached `scaler` and output frame, both
/// remade when the frame's format or size changes mid-stream.
///
/// Where the rows can be packed back to back and stay 16-byte aligned (a width that is a multiple
/// of 16: 640, 1280, 1920, 3840), FFmpeg writes straight into the image's buffer; any other width
/// goes through the output frame, whose padded rows are copied out. The copy of a 720p frame was
/// 0.6 % of a harvest's CPU time.
fn convert(
    frame: &ffmpeg::frame::Video,
    scaler: &mut Option<scaling::Context>,
    out: &mut ffmpeg::frame::Video,
    w: u32,
    h: u32,
    flags: scaling::Flags,
) -> Result<RgbImage, String> {
    let (fmt, fw, fh) = (frame.format(), frame.width(), frame.height());
    let stale = scaler.as_ref().is_none_or(|s| {
        let i = s.input();
        i.format != fmt || i.width != fw || i.height != fh || s.output().width != w || s.output().height != h
    });
    if stale {
        *out = ffmpeg::frame::Video::empty();
        *scaler = Some(scaling::Context::get(fmt, fw, fh, Pixel::RGB24, w, h, flags).map_err(|e| format!("{fmt:?} {fw}x{fh}: {e}"))?);
    }
    let scaler = scaler.as_mut().ok_or("no scaler")?;
    let (w, h) = (w as usize, h as usize);
    if w % 16 == 0 {
        return scale_into_vec(frame, scaler, w, h);
    }
    scaler.run(frame, out).map_err(|e| e.to_string())?;
    let stride = out.stride(0);
    let src = out.data(0);
    let mut data = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        data.extend_from_slice(&src[row * stride..row * stride + w * 3]);
    }
    RgbImage::new(w, h, data).ok_or_else(|| "RGB buffer has the wrong size".to_string())
}

/// Room past the last row, in case FFmpeg's vector code writes a whole block of pixels past a
/// row's end.
const SCALE_SLACK: usize = 256;

/// Runs `scaler` (made for `frame`'s format and size, to RGB24 of `w × h`) with a new buffer as
/// its destination, rows `3w` bytes apart.
fn scale_into_vec(frame: &ffmpeg::frame::Video, scaler: &mut scaling::Context, w: usize, h: usize) -> Result<RgbImage, String> {
    let (len, stride) = (w * h * 3, i32::try_from(w * 3).map_err(|_| "frame too wide")?);
    let rows = i32::try_from(frame.height()).map_err(|_| "frame too tall")?;
    let mut data = Vec::<u8>::with_capacity(len + SCALE_SLACK);
    let dst = [data.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut()];
    let dst_stride = [stride, 0, 0, 0];
    // SAFETY: the scaler was made for this frame's format and size (`convert` remakes it
    // otherwise), so it reads only the frame's planes; it writes `h` rows of `3w` bytes, `3w`
    // apart, into the buffer's capacity, which has room for them and the slack past the end.
    let written = unsafe {
        let src = frame.as_ptr();
        ffmpeg::ffi::sws_scale(
            scaler.as_mut_ptr(),
            (*src).data.as_ptr() as *const *const u8,
            (*src).linesize.as_ptr(),
            0,
            rows,
            dst.as_ptr(),
            dst_stride.as_ptr(),
        )
    };
    if usize::try_from(written).ok() != Some(h) {
        return Err(format!("the scaler wrote {written} of {h} rows"));
    }
    // SAFETY: every one of the `len` bytes was written above (`h` whole rows of packed RGB).
    unsafe { data.set_len(len) };
    Ok(RgbImage { width: w, height: h, data })
}

/// Turns `src`'s planes as `turn` says into `out` (reallocated when its shape is wrong), for the
/// planar formats whose chroma is subsampled alike both ways (so a quarter turn keeps the
/// format); false, with nothing done, for any other format.
fn orient_planes(src: &ffmpeg::frame::Video, turn: Orientation, out: &mut ffmpeg::frame::Video) -> bool {
    let elem = match src.format() {
        Pixel::YUV420P | Pixel::YUVJ420P | Pixel::YUV444P | Pixel::YUVJ444P | Pixel::GRAY8 => 1,
        Pixel::YUV420P10LE | Pixel::YUV444P10LE | Pixel::YUV420P12LE | Pixel::YUV444P12LE | Pixel::GRAY10LE | Pixel::GRAY12LE => 2,
        _ => return false,
    };
    let (w, h) = turn.display_size(src.width() as usize, src.height() as usize);
    if out.format() != src.format() || out.width() as usize != w || out.height() as usize != h {
        *out = ffmpeg::frame::Video::new(src.format(), w as u32, h as u32);
    }
    for i in 0..src.planes() {
        let (pw, ph) = (src.plane_width(i) as usize, src.plane_height(i) as usize);
        let stride = out.stride(i);
        turn.apply_plane(src.data(i), src.stride(i), (pw, ph), elem, out.data_mut(i), stride);
    }
    true
}

/// FFmpeg's display matrix side data: nine native-endian 32-bit integers.
fn display_matrix(bytes: &[u8]) -> Option<[i32; 9]> {
    let mut m = [0i32; 9];
    for (slot, word) in m.iter_mut().zip(bytes.get(..36)?.chunks_exact(4)) {
        *slot = i32::from_ne_bytes(word.try_into().ok()?);
    }
    Some(m)
}

/// The geometry a stream asks for, from its display matrix and its sample aspect ratios (the
/// container's first, then the codec's, as FFmpeg's `av_guess_sample_aspect_ratio` picks), with
/// a note for each part that had to be set aside.
fn geometry_of(matrix: Option<[i32; 9]>, sars: [ffmpeg::Rational; 2]) -> (Geometry, Vec<String>) {
    let mut notes = Vec::new();
    let orientation = match matrix.map(|m| Orientation::from_display_matrix(&m)) {
        Some((o, Some(angle))) => {
            notes.push(format!("the display matrix turns the picture {angle:.1}° clockwise, not a right angle; frames are analysed turned {}°", o.rotation()));
            o
        }
        Some((o, None)) => o,
        None => Orientation::UPRIGHT,
    };
    let sar = sars.into_iter().find(|r| r.numerator() > 0 && r.denominator() > 0).map(|r| r.reduce());
    let sar = match sar.map(|r| (r.numerator() as u32, r.denominator() as u32)) {
        Some((n, d)) if (1.0 / MAX_SAR..=MAX_SAR).contains(&(f64::from(n) / f64::from(d))) => (n, d),
        Some((n, d)) => {
            notes.push(format!("the sample aspect ratio {n}:{d} is beyond 1:{MAX_SAR} to {MAX_SAR}:1 and taken for damage; pixels are left square"));
            (1, 1)
        }
        None => (1, 1),
    };
    (Geometry { sar, orientation }, notes)
}

/// The checks FFmpeg would report vaguely ("Invalid data found"), made first so the message is exact.
fn check_input_file(path: &Path) -> Result<(), VideoError> {
    let meta = std::fs::metadata(path).map_err(|_| VideoError::NotFound { path: path.to_path_buf() })?;
    if meta.is_dir() {
        return Err(VideoError::IsDirectory { path: path.to_path_buf() });
    }
    if !meta.is_file() {
        // A device, FIFO or socket: it cannot be hashed, resumed or re-read.
        return Err(VideoError::NotAFile { path: path.to_path_buf() });
    }
    if meta.len() == 0 {
        return Err(VideoError::Empty { path: path.to_path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i32 = 1 << 16;

    #[test]
    fn the_container_sar_wins_over_the_codec_one_and_a_wild_one_is_set_aside() {
        let r = ffmpeg::Rational::new;
        let (g, notes) = geometry_of(None, [r(32, 22), r(1, 1)]);
        assert_eq!((g.sar, notes.len()), ((16, 11), 0), "reduced, from the container");
        let (g, _) = geometry_of(None, [r(0, 1), r(8, 9)]);
        assert_eq!(g.sar, (8, 9), "the codec's when the container gives none");
        let (g, notes) = geometry_of(None, [r(100, 1), r(1, 1)]);
        assert_eq!(g.sar, (1, 1));
        assert!(notes[0].contains("100:1"), "{notes:?}");
        assert_eq!(geometry_of(None, [r(0, 0), r(0, 1)]).0, Geometry { sar: (1, 1), orientation: Orientation::UPRIGHT });
    }

    #[test]
    fn a_display_matrix_is_read_from_its_side_data_bytes() {
        let m = [0, ONE, 0, -ONE, 0, 0, 0, 0, 1 << 30];
        let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(display_matrix(&bytes), Some(m));
        assert_eq!(display_matrix(&bytes[..35]), None, "short side data is ignored");
        let (g, notes) = geometry_of(display_matrix(&bytes), [ffmpeg::Rational::new(1, 1); 2]);
        assert_eq!((g.orientation.rotation(), g.orientation.mirrored(), notes.len()), (90, false, 0));
        // 30° off a right angle: the nearest one, and a note saying so.
        let (c, s) = ((60f64.to_radians().cos() * 65536.0) as i32, (60f64.to_radians().sin() * 65536.0) as i32);
        let (g, notes) = geometry_of(Some([c, s, 0, -s, c, 0, 0, 0, 1 << 30]), [ffmpeg::Rational::new(1, 1); 2]);
        assert_eq!(g.orientation.rotation(), 90);
        assert!(notes[0].contains("60.0°"), "{notes:?}");
    }
}
