//! The parts of the writer's state that grow with the video — closed tracks, their mean
//! embeddings, closed shots — and the pixels of open tracks' best faces, kept in hidden files
//! beside `checkpoint.json` instead of inside it, so a checkpoint stays a few KB however long
//! the video and each byte is written once.
//!
//! At every checkpoint the closed tracks and shots added since the previous one are appended
//! (tracks as JSON lines, their means as raw little-endian f32 rows) and synced, and the
//! checkpoint records the three byte lengths ([`SpillLengths`]). A resumed run truncates the files
//! to those lengths and reads them back, as [`crate::output::RunWriter`] does with `faces.jsonl`.
//! An open track's best face is saved as the JPEG its track crop will be (`<face_id>.jpg`),
//! written once when a checkpoint first needs it, linked into `crops/` when the track closes,
//! and removed when no checkpoint refers to it any more.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::{self, OutputError, ShotRecord, TrackRecord};
use crate::run_dir::{BEST_FACES, CLOSED_TRACKS, SHOTS_SO_FAR, TRACK_MEANS};

/// A closed track: its crop already saved and its images dropped, so it costs a few hundred bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedTrack {
    /// Its `tracks.jsonl` row as far as closing knows it (`embedding_row` and `identity` are
    /// set when the run ends).
    pub record: TrackRecord,
    /// The normalised mean embedding (kept in the means file, not the JSON line).
    pub mean: Option<Vec<f32>>,
}

/// A closed track as its line in the spill file: which row of the means file holds its mean.
#[derive(Serialize, Deserialize)]
struct ClosedLine {
    #[serde(flatten)]
    record: TrackRecord,
    mean_row: Option<u64>,
}

/// How far the spill files go: what a checkpoint records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpillLengths {
    pub closed_tracks: u64,
    pub track_means: u64,
    pub shots: u64,
}

/// An open track's best face as a checkpoint refers to it; its crop is in `<face_id>.jpg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestRef {
    pub rank: f64,
    pub face_id: u64,
}

/// One append-only file of the spill.
struct Appender {
    path: PathBuf,
    file: BufWriter<File>,
    len: u64,
}

impl Appender {
    /// Creates the file empty, or (resuming) cuts it back to `len` to append after.
    fn open(path: PathBuf, resume_at: Option<u64>) -> Result<Self, OutputError> {
        let at = |source| OutputError { path: path.clone(), source };
        let mut file = File::options().create(true).read(true).write(true).truncate(resume_at.is_none()).open(&path).map_err(at)?;
        let len = resume_at.unwrap_or(0);
        if file.metadata().map_err(at)?.len() < len {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("shorter than its checkpoint ({len} bytes)"));
            return Err(OutputError { path, source: e });
        }
        file.set_len(len).map_err(at)?;
        file.seek(SeekFrom::End(0)).map_err(at)?;
        Ok(Self { path, file: BufWriter::new(file), len })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        self.file.write_all(bytes).map_err(|source| OutputError { path: self.path.clone(), source })?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), OutputError> {
        let at = |source| OutputError { path: self.path.clone(), source };
        self.file.flush().map_err(at)?;
        self.file.get_ref().sync_data().map_err(at)
    }

    /// The whole file as it stands (after a resume's truncation).
    fn read_all(&mut self) -> Result<Vec<u8>, OutputError> {
        let at = |source| OutputError { path: self.path.clone(), source };
        let f = self.file.get_mut();
        let mut bytes = Vec::with_capacity(self.len as usize);
        f.seek(SeekFrom::Start(0)).map_err(at)?;
        f.read_to_end(&mut bytes).map_err(at)?;
        Ok(bytes)
    }
}

/// The spill files of one run.
pub struct Spill {
    best_dir: PathBuf,
    /// Bytes of one mean row (embedding length × 4; 0 without an embedder).
    mean_bytes: usize,
    closed: Appender,
    means: Appender,
    shots: Appender,
    /// Closed tracks and shots already in the files.
    closed_saved: usize,
    shots_saved: usize,
}

/// What a resumed spill holds: the closed tracks (with their means) and shots of the checkpoint.
pub struct Restored {
    pub closed: Vec<ClosedTrack>,
    pub shots: Vec<ShotRecord>,
}

impl Spill {
    /// Fresh spill files in `dir` for embeddings of length `dim`.
    pub fn create(dir: &Path, dim: usize) -> Result<Self, OutputError> {
        let best_dir = dir.join(BEST_FACES);
        if best_dir.exists() {
            fs::remove_dir_all(&best_dir).map_err(|source| OutputError { path: best_dir.clone(), source })?;
        }
        Self::open(dir, dim, None).map(|(spill, _)| spill)
    }

    /// The spill files of a checkpointed run, cut back to `at`, and what they hold.
    pub fn resume(dir: &Path, dim: usize, at: SpillLengths) -> Result<(Self, Restored), OutputError> {
        Self::open(dir, dim, Some(at))
    }

    /// Opens the files fresh (`at` is `None`) or cut back to `at`, with what they then hold.
    fn open(dir: &Path, dim: usize, at: Option<SpillLengths>) -> Result<(Self, Restored), OutputError> {
        let mean_bytes = dim * 4;
        let best_dir = dir.join(BEST_FACES);
        fs::create_dir_all(&best_dir).map_err(|source| OutputError { path: best_dir.clone(), source })?;
        let mut closed = Appender::open(dir.join(CLOSED_TRACKS), at.map(|a| a.closed_tracks))?;
        let mut means = Appender::open(dir.join(TRACK_MEANS), at.map(|a| a.track_means))?;
        let mut shots = Appender::open(dir.join(SHOTS_SO_FAR), at.map(|a| a.shots))?;
        let mean_rows = means.read_all()?;
        let bad = |path: &Path, e: String| OutputError { path: path.to_path_buf(), source: io::Error::new(io::ErrorKind::InvalidData, e) };
        let mut tracks = Vec::new();
        for line in read_lines(&mut closed)? {
            let ClosedLine { record, mean_row } = serde_json::from_str(&line).map_err(|e| bad(&closed.path, e.to_string()))?;
            let mean = match mean_row {
                Some(row) => {
                    let bytes = mean_rows.get(row as usize * mean_bytes..(row as usize + 1) * mean_bytes).filter(|c| !c.is_empty());
                    let bytes = bytes.ok_or_else(|| bad(&means.path, format!("has no row {row}")))?;
                    Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
                }
                None => None,
            };
            tracks.push(ClosedTrack { record, mean });
        }
        let shot_rows: Vec<ShotRecord> =
            read_lines(&mut shots)?.iter().map(|l| serde_json::from_str(l).map_err(|e| bad(&shots.path, e.to_string()))).collect::<Result<_, _>>()?;
        let restored = Restored { closed: tracks, shots: shot_rows };
        let (closed_saved, shots_saved) = (restored.closed.len(), restored.shots.len());
        Ok((Self { best_dir, mean_bytes, closed, means, shots, closed_saved, shots_saved }, restored))
    }

    /// Appends the closed tracks and shots added since the last save, syncs, and returns the
    /// lengths for the checkpoint. `closed` and `shots` only ever grow between saves.
    pub fn save(&mut self, closed: &[ClosedTrack], shots: &[ShotRecord]) -> Result<SpillLengths, OutputError> {
        for track in &closed[self.closed_saved.min(closed.len())..] {
            let mean_row = match &track.mean {
                Some(m) => {
                    let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
                    if bytes.len() != self.mean_bytes {
                        let e = io::Error::new(io::ErrorKind::InvalidInput, format!("a mean of {} values, expected {}", m.len(), self.mean_bytes / 4));
                        return Err(OutputError { path: self.means.path.clone(), source: e });
                    }
                    let row = self.means.len / self.mean_bytes as u64;
                    self.means.append(&bytes)?;
                    Some(row)
                }
                None => None,
            };
            let line = ClosedLine { record: track.record.clone(), mean_row };
            self.closed.append(&json_line(&line, &self.closed.path)?)?;
        }
        self.closed_saved = closed.len();
        for shot in &shots[self.shots_saved.min(shots.len())..] {
            let bytes = json_line(shot, &self.shots.path)?;
            self.shots.append(&bytes)?;
        }
        self.shots_saved = shots.len();
        for a in [&mut self.closed, &mut self.means, &mut self.shots] {
            a.sync()?;
        }
        Ok(SpillLengths { closed_tracks: self.closed.len, track_means: self.means.len, shots: self.shots.len })
    }

    fn best_path(&self, face_id: u64) -> PathBuf {
        self.best_dir.join(format!("{face_id}.jpg"))
    }

    /// Saves the crop of an open track's best face (`jpeg`, exactly the bytes its track crop
    /// will have) unless it is already saved: a face id is never reused, so its file never changes.
    pub fn save_best(&self, face_id: u64, jpeg: &[u8]) -> Result<(), OutputError> {
        let path = self.best_path(face_id);
        if path.is_file() {
            return Ok(());
        }
        output::write_atomic(&path, jpeg)
    }

    /// Puts the saved crop of face `r` at `dest` (a hard link: no byte is written again, and
    /// the saved file stays for a checkpoint that still refers to it).
    pub fn place_best(&self, r: &BestRef, dest: &Path) -> Result<(), OutputError> {
        let src = self.best_path(r.face_id);
        let at = |source| OutputError { path: dest.to_path_buf(), source };
        match fs::remove_file(dest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(e)),
            _ => {}
        }
        fs::hard_link(&src, dest).or_else(|_| fs::copy(&src, dest).map(|_| ())).map_err(at)
    }

    /// Removes the best-face files no checkpoint refers to any more (those of `keep` stay).
    pub fn prune_best(&self, keep: &HashSet<u64>) {
        let Ok(entries) = fs::read_dir(&self.best_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".jpg").and_then(|n| n.parse::<u64>().ok());
            if id.is_none_or(|id| !keep.contains(&id)) {
                // Best effort: a file left over is only disk space, removed with the checkpoint.
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn json_line<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, OutputError> {
    let mut line = serde_json::to_vec(value).map_err(|e| OutputError { path: path.to_path_buf(), source: e.into() })?;
    line.push(b'\n');
    Ok(line)
}

fn read_lines(a: &mut Appender) -> Result<Vec<String>, OutputError> {
    let bytes = a.read_all()?;
    let text = String::from_utf8(bytes).map_err(|e| OutputError { path: a.path.clone(), source: io::Error::new(io::ErrorKind::InvalidData, e) })?;
    Ok(text.lines().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIM: usize = 128;

    fn track(id: u64, mean: Option<Vec<f32>>) -> ClosedTrack {
        let record = TrackRecord {
            track_id: id,
            shot: 1,
            first_frame: 4,
            last_frame: 8,
            t_start: 0.1 + 0.2,
            t_end: 1.0 / 3.0,
            n_faces: 2,
            n_embedded: 1,
            best_face_id: 9,
            embedding_row: None,
            identity: None,
            person_id: None,
        };
        ClosedTrack { record, mean }
    }

    fn shot(n: u64) -> ShotRecord {
        ShotRecord { shot: n, start_frame: n * 10, end_frame: n * 10 + 9, t_start: n as f64 / 3.0, t_end: 0.7 }
    }

    #[test]
    fn a_resumed_spill_holds_exactly_what_its_checkpoint_saw() {
        let dir = tempfile::tempdir().unwrap();
        let mean: Vec<f32> = (0..DIM).map(|i| (i as f32 * 0.37).sin() / 7.0).collect();
        let mut spill = Spill::create(dir.path(), DIM).unwrap();
        let mut closed = vec![track(0, Some(mean.clone())), track(1, None)];
        let mut shots = vec![shot(0)];
        let at = spill.save(&closed, &shots).unwrap();
        // More after the checkpoint, then killed: the resume sees only the checkpoint's part.
        closed.push(track(2, Some(mean.clone())));
        shots.push(shot(1));
        spill.save(&closed, &shots).unwrap();
        drop(spill);

        let (mut spill, restored) = Spill::resume(dir.path(), DIM, at).unwrap();
        assert_eq!(restored.closed, closed[..2]);
        assert_eq!(restored.closed[0].mean.as_ref().unwrap(), &mean, "means round-trip bit for bit");
        assert_eq!(restored.shots, shots[..1]);
        let mut again = restored.closed;
        again.push(track(3, Some(mean.clone())));
        let end = spill.save(&again, &shots).unwrap();
        assert_eq!(end.track_means, 2 * DIM as u64 * 4, "the row after the checkpoint was cut and rewritten");
        let (_, restored) = Spill::resume(dir.path(), DIM, end).unwrap();
        assert_eq!(restored.closed.iter().map(|t| t.record.track_id).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(restored.closed[2].mean.as_ref().unwrap(), &mean);
        assert_eq!(restored.shots.len(), 2);
    }

    #[test]
    fn best_faces_are_saved_once_placed_by_link_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::create(dir.path(), DIM).unwrap();
        spill.save_best(42, b"jpeg of 42").unwrap();
        spill.save_best(42, b"never rewritten").unwrap();
        spill.save_best(43, b"jpeg of 43").unwrap();
        let dest = dir.path().join("track_7.jpg");
        std::fs::write(&dest, b"an older best").unwrap();
        spill.place_best(&BestRef { rank: 1.5, face_id: 42 }, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"jpeg of 42");
        spill.prune_best(&HashSet::from([43]));
        assert_eq!(std::fs::read(&dest).unwrap(), b"jpeg of 42", "a placed crop outlives its saved file");
        assert!(spill.place_best(&BestRef { rank: 1.5, face_id: 42 }, &dir.path().join("x.jpg")).is_err());
        spill.place_best(&BestRef { rank: 1.0, face_id: 43 }, &dir.path().join("y.jpg")).unwrap();
    }
}
