//! The files users read: `faces.jsonl`, `embeddings.npy`, `progress.json`, `manifest.json`,
//! and the people outputs ([`people`]).
//!
//! Results are streamed into hidden `.partial` files in the out dir and renamed into place only by
//! [`RunWriter::finish`]; a run that fails or is dropped removes them, so a `faces.jsonl` or
//! `embeddings.npy` that exists is always complete. State files are replaced atomically
//! (temp file, fsync, rename), never rewritten in place.

pub mod manifest;
pub mod people;

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use serde::Serialize;

use crate::identify::Identity;
use crate::run_dir::{partial_name, Status, CROPS, EMBEDDINGS, FACES, TIMINGS};
use crate::types::{FaceQuality, RgbImage, SkipReason};

/// A failed write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError { path: path.to_path_buf(), source }
}

/// One row of `faces.jsonl`. Field names are a contract: later versions add, never rename.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct FaceRecord {
    pub face_id: u64,
    pub frame_idx: u64,
    pub t: f64,
    pub bbox: [f64; 4],
    pub landmarks: [[f64; 2]; 5],
    pub det_score: f64,
    pub embedding_row: Option<u64>,
    pub skip_reason: Option<SkipReason>,
    pub track_id: u64,
    pub shot: u64,
    pub quality: FaceQuality,
    /// `None` without seeds, or for a face that was not embedded.
    pub identity: Option<Identity>,
    /// Its track's person (`people.jsonl`); `None` when the track has none.
    pub person_id: Option<u64>,
}

/// One row of `timings.jsonl`: where the time of one sampled frame went.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct TimingRecord {
    pub frame_idx: u64,
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub align_ms: f64,
    pub embed_ms: f64,
    pub faces: u64,
    /// Seconds from when this process began harvesting (its models loaded) to when the frame
    /// was written: decoded fps over the run. A resumed run's later process starts again at 0.
    #[serde(default)]
    pub elapsed_s: f64,
}

/// One row of `shots.jsonl`: a run of frames between two cuts.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ShotRecord {
    pub shot: u64,
    pub start_frame: u64,
    pub end_frame: u64,
    pub t_start: f64,
    pub t_end: f64,
}

/// One row of `tracks.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct TrackRecord {
    pub track_id: u64,
    pub shot: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub t_start: f64,
    pub t_end: f64,
    pub n_faces: u64,
    pub n_embedded: u64,
    pub best_face_id: u64,
    /// Row in `track_embeddings.npy` (the normalised mean of the track's embeddings), or `None`
    /// when none of its faces was embedded.
    pub embedding_row: Option<u64>,
    pub identity: Option<Identity>,
    /// Its person (`people.jsonl`): `None` when it has no embedded face, or is a short track that
    /// joined no one (see `[people]` in configs/default.toml).
    pub person_id: Option<u64>,
}

/// One row of `people.jsonl`: tracks grouped into one person.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PersonRecord {
    pub person_id: u64,
    pub name: Option<String>,
    pub identity: Option<Identity>,
    pub n_tracks: u64,
    pub n_faces: u64,
    pub n_embedded: u64,
    /// Seconds covered by the union of its tracks' intervals (README, "People").
    pub screen_time_s: f64,
    pub first_t: f64,
    pub last_t: f64,
    pub shots: Vec<u64>,
    pub best_face_id: u64,
    pub best_track_id: u64,
    /// Row in `people_embeddings.npy`.
    pub embedding_row: u64,
}

/// Rounds for the JSON file: sub-pixel noise beyond 1/100 px helps nobody and bloats the file.
pub fn round(x: f32, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (f64::from(x) * p).round() / p
}

/// Seconds to the microsecond, as written everywhere.
pub fn round_t(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsynced, renamed over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let tmp = partial_name(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(at(path))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), OutputError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| OutputError { path: path.to_path_buf(), source: e.into() })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// A file of a finished run that cannot be read back, naming it.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {why}")]
pub struct ReadError {
    pub path: PathBuf,
    pub why: String,
}

/// Reads a JSONL file of ours back as typed rows; a bad line is an error naming it.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReadError> {
    let text = fs::read_to_string(path).map_err(|e| ReadError { path: path.to_path_buf(), why: e.to_string() })?;
    text.lines()
        .enumerate()
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| ReadError { path: path.to_path_buf(), why: format!("line {}: {e}", n + 1) }))
        .collect()
}

/// Reads a float32 `.npy` of ours back as a `rows × cols` matrix.
pub fn read_npy(path: &Path) -> Result<ndarray::Array2<f32>, ReadError> {
    let err = |why: String| ReadError { path: path.to_path_buf(), why };
    let bytes = fs::read(path).map_err(|e| err(e.to_string()))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| err(e.to_string()))?;
    let shape = npy.shape().to_vec();
    let [rows, cols] = shape[..] else { return Err(err(format!("expected a 2-D array, found shape {shape:?}"))) };
    let data: Vec<f32> = npy.into_vec().map_err(|e| err(e.to_string()))?;
    ndarray::Array2::from_shape_vec((rows as usize, cols as usize), data).map_err(|e| err(e.to_string()))
}

/// Writes one JSON object per line, atomically.
pub fn write_jsonl_atomic<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), OutputError> {
    let mut bytes = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut bytes, row).map_err(|e| OutputError { path: path.to_path_buf(), source: e.into() })?;
        bytes.push(b'\n');
    }
    write_atomic(path, &bytes)
}

/// An `.npy` (format 1.0) holding a float32 array of shape `(0, dim)`. npyz cannot write a
/// zero-width array, which a run without an embedder needs.
fn empty_npy(dim: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (0, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// Writes an `(rows.len(), dim)` float32 `.npy`, atomically.
pub fn write_npy_atomic(path: &Path, rows: &[Vec<f32>], dim: usize) -> Result<(), OutputError> {
    if rows.is_empty() {
        return write_atomic(path, &empty_npy(dim));
    }
    let mut buf = io::Cursor::new(Vec::new());
    let mut w = npyz::WriteOptions::new().default_dtype().writer(&mut buf).begin_2d(dim as u64).map_err(at(path))?;
    for r in rows {
        w.extend(r.iter().copied()).map_err(at(path))?;
    }
    w.finish().map_err(at(path))?;
    write_atomic(path, &buf.into_inner())
}

/// Encodes `img` as a JPEG (quality 90) at `path`, atomically.
pub fn write_jpeg_atomic(path: &Path, img: &RgbImage) -> Result<(), OutputError> {
    write_atomic(path, &encode_jpeg(img, path)?)
}

/// `img` as JPEG bytes (quality 90), the encoding of every crop; `path` names it in errors.
pub fn encode_jpeg(img: &RgbImage, path: &Path) -> Result<Vec<u8>, OutputError> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode(&img.data, img.width as u32, img.height as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| OutputError { path: path.to_path_buf(), source: io::Error::other(e) })?;
    Ok(bytes)
}

/// The `crops/` folder, filled under a hidden name and swapped in by [`publish`](Self::publish).
/// The crops of a run, written into a hidden partial dir that is renamed into place at the
/// end. A failed or killed run leaves its partial dir for the run that resumes it.
pub struct CropsDir {
    partial: PathBuf,
    done: PathBuf,
}

impl CropsDir {
    pub fn create(out_dir: &Path) -> Result<Self, OutputError> {
        let done = out_dir.join(CROPS);
        let partial = partial_name(&done);
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(at(&partial))?;
        }
        fs::create_dir_all(&partial).map_err(at(&partial))?;
        Ok(Self { partial, done })
    }

    /// Continues a checkpointed run's crops: its partial dir as it is, or the published one an
    /// interrupted run left (later tracks overwrite their files).
    pub fn resume(out_dir: &Path) -> Result<Self, OutputError> {
        let done = out_dir.join(CROPS);
        let partial = partial_name(&done);
        if !partial.exists() && done.is_dir() {
            fs::rename(&done, &partial).map_err(at(&partial))?;
        }
        fs::create_dir_all(&partial).map_err(at(&partial))?;
        Ok(Self { partial, done })
    }

    /// Where a crop file goes until publication.
    pub fn path(&self, name: &str) -> PathBuf {
        self.partial.join(name)
    }

    /// Replaces any previous `crops/` with this run's.
    pub fn publish(self) -> Result<(), OutputError> {
        if self.done.exists() {
            fs::remove_dir_all(&self.done).map_err(at(&self.done))?;
        }
        fs::rename(&self.partial, &self.done).map_err(at(&self.done))
    }
}

/// Streams the results of one run into partial files; [`finish`](Self::finish) publishes them.
/// Both files only grow, so a checkpoint is two byte lengths, and a resumed run truncates to
/// them and appends ([`resume`](Self::resume)). `embeddings.npy` is written with a fixed
/// [`NPY_HEADER`]-byte header whose row count is patched in at the end.
pub struct RunWriter {
    faces_path: PathBuf,
    emb_path: PathBuf,
    timings_path: PathBuf,
    faces: Option<BufWriter<File>>,
    faces_bytes: u64,
    timings: Option<BufWriter<File>>,
    timings_bytes: u64,
    /// `None` without an embedder (dim 0): finish writes the empty array.
    embeddings: Option<BufWriter<File>>,
    rows: u64,
    dim: usize,
}

/// Appends `value` as one JSON line to the partial file of `final_path`, counting its bytes.
fn append_line<T: Serialize>(w: Option<&mut BufWriter<File>>, bytes: &mut u64, final_path: &Path, value: &T) -> Result<(), OutputError> {
    let path = partial_name(final_path);
    let w = w.ok_or_else(|| closed(&path))?;
    let mut line = serde_json::to_vec(value).map_err(|e| OutputError { path: path.clone(), source: e.into() })?;
    line.push(b'\n');
    w.write_all(&line).map_err(at(&path))?;
    *bytes += line.len() as u64;
    Ok(())
}

/// How far a [`RunWriter`]'s files go: what a checkpoint records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Position {
    pub faces_bytes: u64,
    pub embedding_rows: u64,
    pub timings_bytes: u64,
}

/// Bytes of the `embeddings.npy` header: room for any row count.
pub const NPY_HEADER: usize = 128;

/// An NPY v1.0 header for a little-endian f32 array of `rows × dim`, padded to [`NPY_HEADER`].
pub fn npy_header(rows: u64, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((NPY_HEADER - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(NPY_HEADER - 1, b' ');
    h.push(b'\n');
    h
}

impl RunWriter {
    /// Creates the partial files in `dir` for embeddings of length `dim`.
    pub fn create(dir: &Path, dim: usize) -> Result<Self, OutputError> {
        Self::open(dir, dim, None)
    }

    /// Reopens a checkpointed run's partial files (or, after an interrupted run published
    /// them, its final files), cut back to `faces_bytes` and `rows`, to append after them.
    pub fn resume(dir: &Path, dim: usize, at: Position) -> Result<Self, OutputError> {
        Self::open(dir, dim, Some(at))
    }

    fn open(dir: &Path, dim: usize, checkpoint: Option<Position>) -> Result<Self, OutputError> {
        let faces_path = dir.join(FACES);
        let emb_path = dir.join(EMBEDDINGS);
        let timings_path = dir.join(TIMINGS);
        let Position { faces_bytes, embedding_rows: rows, timings_bytes } = checkpoint.unwrap_or_default();
        let open = |final_path: &Path, len: u64| -> Result<BufWriter<File>, OutputError> {
            let tmp = partial_name(final_path);
            if checkpoint.is_some() && !tmp.exists() && final_path.exists() {
                fs::rename(final_path, &tmp).map_err(at(&tmp))?;
            }
            let mut f = File::options().create(true).write(true).truncate(checkpoint.is_none()).open(&tmp).map_err(at(&tmp))?;
            if checkpoint.is_some() {
                if f.metadata().map_err(at(&tmp))?.len() < len {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("shorter than its checkpoint ({len} bytes)"));
                    return Err(OutputError { path: tmp, source: e });
                }
                f.set_len(len).map_err(at(&tmp))?;
                f.seek(SeekFrom::End(0)).map_err(at(&tmp))?;
            }
            Ok(BufWriter::new(f))
        };
        if checkpoint.is_some() {
            unpublish_faces(&faces_path)?;
        }
        let faces = open(&faces_path, faces_bytes)?;
        let timings = open(&timings_path, timings_bytes)?;
        let embeddings = if dim == 0 {
            None
        } else {
            let mut w = open(&emb_path, NPY_HEADER as u64 + rows * dim as u64 * 4)?;
            if checkpoint.is_none() {
                w.write_all(&npy_header(0, dim)).map_err(at(&partial_name(&emb_path)))?;
            }
            Some(w)
        };
        Ok(Self { faces_path, emb_path, timings_path, faces: Some(faces), faces_bytes, timings: Some(timings), timings_bytes, embeddings, rows, dim })
    }

    /// Length of each embedding row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How far the files go now.
    pub fn position(&self) -> Position {
        Position { faces_bytes: self.faces_bytes, embedding_rows: self.rows, timings_bytes: self.timings_bytes }
    }

    /// Appends one line to `timings.jsonl`.
    pub fn push_timing(&mut self, row: &TimingRecord) -> Result<(), OutputError> {
        append_line(self.timings.as_mut(), &mut self.timings_bytes, &self.timings_path, row)
    }

    /// Every row of `timings.jsonl` so far (earlier processes' included, for the manifest).
    pub fn timing_rows(&mut self) -> Result<Vec<TimingRecord>, OutputError> {
        let path = partial_name(&self.timings_path);
        if let Some(w) = self.timings.as_mut() {
            w.flush().map_err(at(&path))?;
        }
        let text = fs::read_to_string(&path).map_err(at(&path))?;
        text.lines().map(|l| serde_json::from_str(l).map_err(|e| OutputError { path: path.clone(), source: e.into() })).collect()
    }

    /// Appends one embedding row and returns its index.
    pub fn push_embedding(&mut self, row: &[f32]) -> Result<u64, OutputError> {
        let path = partial_name(&self.emb_path);
        if row.len() != self.dim {
            let msg = format!("embedding has {} values, expected {}", row.len(), self.dim);
            return Err(OutputError { path, source: io::Error::new(io::ErrorKind::InvalidInput, msg) });
        }
        let w = self.embeddings.as_mut().ok_or_else(|| closed(&path))?;
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes).map_err(at(&path))?;
        self.rows += 1;
        Ok(self.rows - 1)
    }

    /// Appends one line to `faces.jsonl`.
    pub fn push_face(&mut self, face: &FaceRecord) -> Result<(), OutputError> {
        append_line(self.faces.as_mut(), &mut self.faces_bytes, &self.faces_path, face)
    }

    /// Flushes both files to disk, so a checkpoint's lengths are durable.
    pub fn sync(&mut self) -> Result<(), OutputError> {
        for (w, path) in [(self.faces.as_mut(), &self.faces_path), (self.embeddings.as_mut(), &self.emb_path), (self.timings.as_mut(), &self.timings_path)] {
            if let Some(w) = w {
                let tmp = partial_name(path);
                w.flush().map_err(at(&tmp))?;
                w.get_ref().sync_data().map_err(at(&tmp))?;
            }
        }
        Ok(())
    }

    /// Patches the row count, fsyncs and renames both files into place.
    pub fn finish(mut self) -> Result<(), OutputError> {
        let emb_tmp = partial_name(&self.emb_path);
        let faces_tmp = partial_name(&self.faces_path);
        match self.embeddings.take() {
            Some(w) => {
                let mut f = w.into_inner().map_err(|e| OutputError { path: emb_tmp.clone(), source: e.into_error() })?;
                f.seek(SeekFrom::Start(0)).map_err(at(&emb_tmp))?;
                f.write_all(&npy_header(self.rows, self.dim)).map_err(at(&emb_tmp))?;
                f.sync_all().map_err(at(&emb_tmp))?;
            }
            None => fs::write(&emb_tmp, empty_npy(self.dim)).map_err(at(&emb_tmp))?,
        }
        let timings_tmp = partial_name(&self.timings_path);
        for (w, tmp) in [(self.faces.take(), &faces_tmp), (self.timings.take(), &timings_tmp)] {
            if let Some(w) = w {
                let f = w.into_inner().map_err(|e| OutputError { path: tmp.clone(), source: e.into_error() })?;
                f.sync_all().map_err(at(tmp))?;
            }
        }
        fs::rename(&timings_tmp, &self.timings_path).map_err(at(&self.timings_path))?;
        fs::rename(&emb_tmp, &self.emb_path).map_err(at(&self.emb_path))?;
        fs::rename(&faces_tmp, &self.faces_path).map_err(at(&self.faces_path))
    }
}

/// Moves a published `faces.jsonl` back to its partial file as the sink streamed it, for a
/// resumed run to cut back and append to: the people step rewrote its `person_id` fields after
/// publication (changing its length), and the streamed rows all had `null` there. JSON numbers
/// read back exactly (serde_json's `float_roundtrip`), so the bytes are the streamed bytes.
fn unpublish_faces(final_path: &Path) -> Result<(), OutputError> {
    let tmp = partial_name(final_path);
    if tmp.exists() || !final_path.exists() {
        return Ok(());
    }
    let mut rows: Vec<FaceRecord> = read_jsonl(final_path).map_err(|e| OutputError { path: final_path.to_path_buf(), source: io::Error::other(e.why) })?;
    for row in &mut rows {
        row.person_id = None;
    }
    let mut bytes = Vec::new();
    for row in &rows {
        serde_json::to_writer(&mut bytes, row).map_err(|e| OutputError { path: tmp.clone(), source: e.into() })?;
        bytes.push(b'\n');
    }
    let mut f = File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(at(&tmp))?;
    fs::remove_file(final_path).map_err(at(final_path))
}

fn closed(path: &Path) -> OutputError {
    OutputError { path: path.to_path_buf(), source: io::Error::other("writer already finished") }
}

/// The live state users tail with `jq .fps progress.json`; [`Progress::read`] reads it back.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Progress {
    pub status: Status,
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub frames_total: Option<u64>,
    pub faces: u64,
    pub fps: f64,
    pub eta_s: Option<f64>,
    pub elapsed_s: f64,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Progress {
    /// The `progress.json` at `path`, typed.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        let bytes = fs::read(path).map_err(|e| ReadError { path: path.to_path_buf(), why: e.to_string() })?;
        serde_json::from_slice(&bytes).map_err(|e| ReadError { path: path.to_path_buf(), why: e.to_string() })
    }

    /// Writes the final state of a run that stopped on an error: atomically when possible,
    /// else in place (a full disk has no room for a temp file, but truncating the old
    /// `progress.json` frees the block the new one needs), so it never stays `running`.
    pub fn write_last(&self, path: &Path) -> Result<(), OutputError> {
        write_json_atomic(path, self).or_else(|_| {
            let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| OutputError { path: path.to_path_buf(), source: e.into() })?;
            bytes.push(b'\n');
            let mut f = File::create(path).map_err(at(path))?;
            f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(at(path))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{PROGRESS, TRACK_EMBEDDINGS};

    fn record(id: u64, row: Option<u64>) -> FaceRecord {
        FaceRecord {
            track_id: 3,
            shot: 1,
            quality: FaceQuality { blur: Some(120.5), face_px: 44.0, yaw: -3.2 },
            identity: None,
            face_id: id,
            frame_idx: 4 * id,
            t: 0.852,
            bbox: [1.0, 2.0, 3.0, 4.0],
            landmarks: [[1.5, 2.5]; 5],
            det_score: 0.9,
            embedding_row: row,
            skip_reason: row.is_none().then_some(SkipReason::TooSmall),
            person_id: None,
        }
    }

    #[test]
    fn npy_round_trip_and_jsonl_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RunWriter::create(dir.path(), 3).unwrap();
        assert_eq!(w.push_embedding(&[1.0, 0.0, 0.0]).unwrap(), 0);
        w.push_face(&record(0, Some(0))).unwrap();
        w.push_face(&record(1, None)).unwrap();
        assert_eq!(w.push_embedding(&[0.0, 0.6, 0.8]).unwrap(), 1);
        assert!(w.push_embedding(&[1.0]).is_err(), "wrong length is refused");
        assert!(!dir.path().join(EMBEDDINGS).exists(), "nothing published before finish");
        w.finish().unwrap();

        let bytes = fs::read(dir.path().join(EMBEDDINGS)).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 3]);
        assert_eq!(npy.into_vec::<f32>().unwrap(), vec![1.0, 0.0, 0.0, 0.0, 0.6, 0.8]);

        let text = fs::read_to_string(dir.path().join(FACES)).unwrap();
        let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["skip_reason"], "too_small");
        assert_eq!(rows[1]["embedding_row"], serde_json::Value::Null);
        assert_eq!(rows[0]["landmarks"][4][1], 2.5);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "no partial files left: {left:?}");
    }

    #[test]
    fn empty_run_is_a_valid_zero_row_array() {
        let dir = tempfile::tempdir().unwrap();
        RunWriter::create(dir.path(), 128).unwrap().finish().unwrap();
        let bytes = fs::read(dir.path().join(EMBEDDINGS)).unwrap();
        assert_eq!(npyz::NpyFile::new(&bytes[..]).unwrap().shape(), &[0, 128]);
    }

    #[test]
    fn zero_width_runs_write_a_valid_empty_array() {
        let dir = tempfile::tempdir().unwrap();
        RunWriter::create(dir.path(), 0).unwrap().finish().unwrap();
        let bytes = fs::read(dir.path().join(EMBEDDINGS)).unwrap();
        assert_eq!(bytes.len() % 64, 0);
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[0, 0]);
        write_npy_atomic(&dir.path().join("t.npy"), &[], 128).unwrap();
        let bytes = fs::read(dir.path().join("t.npy")).unwrap();
        assert_eq!(npyz::NpyFile::new(&bytes[..]).unwrap().shape(), &[0, 128]);
    }

    #[test]
    fn dropped_writer_leaves_nothing_complete_looking() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RunWriter::create(dir.path(), 2).unwrap();
        w.push_embedding(&[1.0, 0.0]).unwrap();
        drop(w);
        // Only the hidden partial files stay, for a checkpointed run to resume from.
        let names: Vec<String> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| n.starts_with('.') && n.ends_with(".partial")), "{names:?}");
    }

    #[test]
    fn a_resumed_writer_truncates_to_its_checkpoint_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RunWriter::create(dir.path(), 2).unwrap();
        w.push_embedding(&[1.0, 0.0]).unwrap();
        w.push_face(&record(0, Some(0))).unwrap();
        w.sync().unwrap();
        let at = w.position();
        w.push_embedding(&[0.0, 1.0]).unwrap();
        w.push_face(&record(1, Some(1))).unwrap();
        w.sync().unwrap();
        drop(w); // killed after the checkpoint

        let mut w = RunWriter::resume(dir.path(), 2, at).unwrap();
        assert_eq!(w.push_embedding(&[0.6, 0.8]).unwrap(), 1);
        w.push_face(&record(1, Some(1))).unwrap();
        w.finish().unwrap();
        let bytes = fs::read(dir.path().join(EMBEDDINGS)).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 2]);
        assert_eq!(npy.into_vec::<f32>().unwrap(), vec![1.0, 0.0, 0.6, 0.8]);
        assert_eq!(fs::read_to_string(dir.path().join(FACES)).unwrap().lines().count(), 2);
    }

    #[test]
    fn small_npy_and_crops_are_published_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(TRACK_EMBEDDINGS);
        write_npy_atomic(&p, &[vec![0.6, 0.8], vec![1.0, 0.0]], 2).unwrap();
        let bytes = fs::read(&p).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 2]);
        let crops = CropsDir::create(dir.path()).unwrap();
        write_jpeg_atomic(&crops.path("track_0.jpg"), &RgbImage::new(4, 2, vec![90; 24]).unwrap()).unwrap();
        assert!(!dir.path().join(CROPS).exists());
        crops.publish().unwrap();
        let jpg = fs::read(dir.path().join(CROPS).join("track_0.jpg")).unwrap();
        assert_eq!(&jpg[..2], &[0xFF, 0xD8], "a JPEG");
        drop(CropsDir::create(dir.path()).unwrap());
        assert!(dir.path().join(CROPS).exists(), "an unpublished run leaves the last crops alone");
    }

    #[test]
    fn progress_reads_back_as_written_and_its_last_write_survives_a_failed_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PROGRESS);
        let failed = Progress {
            status: Status::Failed,
            frames_decoded: 7,
            frames_sampled: 2,
            frames_total: None,
            faces: 3,
            fps: 1.5,
            eta_s: None,
            elapsed_s: 0.25,
            updated_at: "2026-12-01T00:00:00.000Z".into(),
            error: Some("No space left on device".into()),
        };
        failed.write_last(&p).unwrap();
        assert_eq!(Progress::read(&p).unwrap(), failed);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["status"], "failed");
        // No room for the temp file (a directory squats its name): written in place instead.
        fs::create_dir(partial_name(&p)).unwrap();
        let again = Progress { frames_decoded: 8, ..failed };
        again.write_last(&p).unwrap();
        assert_eq!(Progress::read(&p).unwrap().frames_decoded, 8);
    }

    #[test]
    fn atomic_json_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PROGRESS);
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
