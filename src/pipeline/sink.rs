//! The writer stage's state: turns each tracked frame into `faces.jsonl` rows, adds its faces to
//! their tracks' totals, names them against the seed gallery, and at the end writes the
//! per-track files.
//! Runs on the calling thread of the pipeline; it owns no threads or channels itself.

use std::collections::HashMap;
use std::time::Instant;

use ndarray::Array2;

use super::frames::Tail;
use super::frames::{FaceOut, TrackedFrame};
use super::spill::{BestRef, ClosedTrack, Restored, Spill, SpillLengths};
use crate::identify::{Gallery, MatchParams};
use crate::output::manifest::{Counts, Timings};
use crate::output::{self, CropsDir, FaceRecord, OutputError, Position, RunWriter, ShotRecord, TimingRecord, TrackRecord};
use crate::run_dir;
use crate::track::summary::{side_by_side, BestFace, FaceInTrack, TrackSummary};
use crate::track::Tracker;
use crate::types::SkipReason;
use crate::video::DecodeIssue;

pub struct Sink<'a> {
    writer: &'a mut RunWriter,
    crops: &'a CropsDir,
    spill: Spill,
    gallery: Option<&'a Gallery>,
    matching: MatchParams,
    /// The tracker as it was after the last frame written.
    tracker: Tracker,
    open: HashMap<u64, TrackSummary>,
    closed: Vec<ClosedTrack>,
    pub counts: Counts,
    next_face: u64,
    /// Shots closed before the last frame pushed, and decode problems met so far.
    shots: Vec<ShotRecord>,
    issues: Vec<DecodeIssue>,
    /// When this process began harvesting: each timing row's `elapsed_s`.
    started: Instant,
}

impl SinkState {
    pub fn faces(&self) -> u64 {
        self.next_face
    }

    /// How far the spill files went at this checkpoint.
    pub fn spill(&self) -> SpillLengths {
        self.spill
    }

    /// The tracker to continue from.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }
}

/// Everything a [`Sink`] carries from frame to frame, for a checkpoint: small and bounded by
/// the open tracks. What grows with the video (closed tracks, shots) is in the spill files,
/// which this records the lengths of, and the open tracks' best crops are saved beside it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SinkState {
    tracker: Tracker,
    /// Open tracks by id (a map's order is not stable, so a list).
    open: Vec<OpenTrack>,
    counts: Counts,
    next_face: u64,
    issues: Vec<DecodeIssue>,
    spill: SpillLengths,
}

/// An open track in a checkpoint: its totals, and its best face by reference.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OpenTrack {
    summary: TrackSummary,
    best: Option<BestRef>,
}

impl<'a> Sink<'a> {
    /// A sink for a new run, or one continuing from `resume` (a checkpoint's state and what its
    /// spill files hold).
    pub fn new(
        writer: &'a mut RunWriter,
        crops: &'a CropsDir,
        spill: Spill,
        gallery: Option<&'a Gallery>,
        matching: MatchParams,
        tracker: Tracker,
        resume: Option<(SinkState, Restored)>,
    ) -> Result<Self, OutputError> {
        let mut sink = Self {
            writer,
            crops,
            spill,
            gallery,
            matching,
            tracker,
            open: HashMap::new(),
            closed: Vec::new(),
            counts: Counts::default(),
            next_face: 0,
            shots: Vec::new(),
            issues: Vec::new(),
            started: Instant::now(),
        };
        if let Some((state, restored)) = resume {
            for OpenTrack { mut summary, best } in state.open {
                // Its crop is saved: the images are not needed again.
                summary.best = best.map(|b| BestFace { rank: b.rank, face_id: b.face_id, images: None });
                sink.open.insert(summary.track_id, summary);
            }
            sink.tracker = state.tracker;
            sink.closed = restored.closed;
            sink.shots = restored.shots;
            sink.counts = state.counts;
            sink.next_face = state.next_face;
            sink.issues = state.issues;
        }
        Ok(sink)
    }

    /// The state to continue from, with the outputs and the spill files synced to disk first
    /// and the best faces of open tracks saved beside it.
    pub fn checkpoint(&mut self) -> Result<(SinkState, Position), OutputError> {
        self.writer.sync()?;
        let spill = self.spill.save(&self.closed, &self.shots)?;
        let mut ids: Vec<u64> = self.open.keys().copied().collect();
        ids.sort_unstable();
        let mut open = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(s) = self.open.get_mut(&id) else { continue };
            if let Some(b) = s.best.as_mut() {
                // Saved as the crop it will be; from now on the track needs only that file.
                if let Some((aligned, context)) = b.images.take() {
                    let jpeg = output::encode_jpeg(&side_by_side(aligned.as_ref(), &context), &self.crops.path(&run_dir::track_crop(id)))?;
                    self.spill.save_best(b.face_id, &jpeg)?;
                }
            }
            open.push(OpenTrack { summary: s.without_best(), best: s.best.as_ref().map(|b| BestRef { rank: b.rank, face_id: b.face_id }) });
        }
        let state =
            SinkState { tracker: self.tracker.clone(), open, counts: self.counts.clone(), next_face: self.next_face, issues: self.issues.clone(), spill };
        Ok((state, self.writer.position()))
    }

    /// Once `state` is on disk: the best-face files no checkpoint refers to any more go.
    pub fn checkpoint_saved(&self, state: &SinkState) {
        let keep = state.open.iter().filter_map(|o| o.best.as_ref().map(|b| b.face_id)).collect();
        self.spill.prune_best(&keep);
    }

    pub fn faces_written(&self) -> u64 {
        self.next_face
    }

    pub fn push(&mut self, tracked: TrackedFrame) -> Result<(), OutputError> {
        let TrackedFrame { mut frame, tracks: track_ids, ended, tracker } = tracked;
        frame.issues.iter().for_each(log_issue);
        self.shots.append(&mut frame.closed_shots);
        self.issues.append(&mut frame.issues);
        let r = |ms: f64| (ms * 1e3).round() / 1e3;
        let t = &frame.timing;
        self.writer.push_timing(&TimingRecord {
            frame_idx: frame.idx,
            decode_ms: r(t.decode_ms),
            detect_ms: r(t.detect_ms),
            align_ms: r(t.align_ms),
            embed_ms: r(t.embed_ms),
            faces: frame.faces.len() as u64,
            elapsed_s: output::round_t(self.started.elapsed().as_secs_f64()),
        })?;
        for &crops in &frame.embed_calls {
            self.counts.embed_calls += 1;
            *self.counts.embed_call_crops.entry(crops).or_default() += 1;
        }

        self.tracker = tracker;
        self.close(&ended)?;
        let identities = self.identify_faces(&frame.faces);

        for ((face, track_id), identity) in frame.faces.into_iter().zip(track_ids).zip(identities) {
            let FaceOut { det, quality, skip, embedding, aligned, context } = face;
            let embedding_row = match &embedding {
                Some(v) => Some(self.writer.push_embedding(v)?),
                None => None,
            };
            self.counts.faces_detected += 1;
            match skip {
                Some(reason) => *self.counts.faces_skipped.entry(reason).or_default() += 1,
                None if embedding_row.is_some() => self.counts.faces_embedded += 1,
                None => {}
            }
            let face_id = self.next_face;
            self.next_face += 1;
            let summary = self.open.entry(track_id).or_insert_with(|| TrackSummary::new(track_id, frame.shot, frame.idx, frame.t));
            let in_track = FaceInTrack {
                face_id,
                frame: frame.idx,
                t: frame.t,
                embedding: embedding.as_deref(),
                usable: SkipReason::usable(skip),
                rank: quality.rank(det.score),
            };
            summary.add(&in_track, || (aligned, context.image()));
            self.writer.push_face(&FaceRecord {
                face_id,
                frame_idx: frame.idx,
                t: output::round_t(frame.t),
                bbox: det.bbox.map(|v| output::round(v, 2)),
                landmarks: det.landmarks.map(|p| p.map(|v| output::round(v, 2))),
                det_score: output::round(det.score, 4),
                embedding_row,
                skip_reason: skip,
                track_id,
                shot: frame.shot,
                quality: crate::types::FaceQuality {
                    blur: quality.blur.map(|b| (b * 10.0).round() / 10.0),
                    face_px: (quality.face_px * 100.0).round() / 100.0,
                    yaw: (quality.yaw * 10.0).round() / 10.0,
                },
                identity,
                person_id: None,
            })?;
        }
        Ok(())
    }

    /// Identities of a frame's embedded faces in one matrix product; `None` for the rest.
    fn identify_faces(&self, faces: &[FaceOut]) -> Vec<Option<crate::identify::Identity>> {
        let Some(gallery) = self.gallery else { return vec![None; faces.len()] };
        let rows: Vec<&Vec<f32>> = faces.iter().filter_map(|f| f.embedding.as_ref()).collect();
        if rows.is_empty() {
            return vec![None; faces.len()];
        }
        let dim = rows[0].len();
        let matrix = Array2::from_shape_fn((rows.len(), dim), |(i, j)| rows[i][j]);
        let mut matched = gallery.match_rows(matrix.view(), &self.matching).into_iter();
        faces.iter().map(|f| f.embedding.as_ref().and_then(|_| matched.next())).collect()
    }

    /// Saves the best-face crops of ended tracks and keeps their totals.
    fn close(&mut self, ids: &[u64]) -> Result<(), OutputError> {
        for id in ids {
            let Some(mut summary) = self.open.remove(id) else { continue };
            // A track exists only once a face was added, so it always has a best face.
            let Some(best) = summary.best.take() else { continue };
            let path = self.crops.path(&run_dir::track_crop(*id));
            match &best.images {
                Some((aligned, context)) => output::write_jpeg_atomic(&path, &side_by_side(aligned.as_ref(), context))?,
                None => self.spill.place_best(&BestRef { rank: best.rank, face_id: best.face_id }, &path)?,
            }
            let record = TrackRecord {
                track_id: summary.track_id,
                shot: summary.shot,
                first_frame: summary.first_frame,
                last_frame: summary.last_frame,
                t_start: output::round_t(summary.t_start),
                t_end: output::round_t(summary.t_end),
                n_faces: summary.n_faces,
                n_embedded: summary.n_embedded,
                best_face_id: best.face_id,
                embedding_row: None,
                identity: None,
                person_id: None,
            };
            self.closed.push(ClosedTrack { record, mean: summary.mean_embedding() });
        }
        Ok(())
    }

    /// Closes every track and returns the totals with the per-track rows.
    /// Closes every track; `tail` is what the decoder met after the last frame pushed.
    pub fn finish(mut self, tail: &Tail) -> Result<Finished, OutputError> {
        self.shots.extend(tail.shots.iter().cloned());
        tail.issues.iter().for_each(log_issue);
        self.issues.extend(tail.issues.iter().cloned());
        let ended = self.tracker.end_all();
        self.close(&ended)?;
        self.closed.sort_by_key(|c| c.record.track_id);
        let mut rows = Vec::new();
        let mut records = Vec::with_capacity(self.closed.len());
        for ClosedTrack { mut record, mean } in std::mem::take(&mut self.closed) {
            record.embedding_row = mean.map(|m| {
                rows.push(m);
                rows.len() as u64 - 1
            });
            records.push(record);
        }
        if let (Some(gallery), false) = (self.gallery, rows.is_empty()) {
            let matrix = Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
            let mut matched = gallery.match_rows(matrix.view(), &self.matching).into_iter();
            for r in records.iter_mut().filter(|r| r.embedding_row.is_some()) {
                r.identity = matched.next();
            }
        }
        self.counts.tracks = records.len() as u64;
        self.counts.id_switches_prevented = self.tracker.id_switches_prevented();
        self.counts.track_splits = self.tracker.splits();
        let timings = Timings::from_rows(&self.writer.timing_rows()?);
        Ok(Finished { counts: self.counts, tracks: records, track_rows: rows, shots: self.shots, issues: self.issues, timings })
    }
}

/// What the sink adds up to: counts, `tracks.jsonl` rows, `track_embeddings.npy` rows.
pub struct Finished {
    pub counts: Counts,
    pub tracks: Vec<TrackRecord>,
    pub track_rows: Vec<Vec<f32>>,
    pub shots: Vec<ShotRecord>,
    pub issues: Vec<DecodeIssue>,
    pub timings: Timings,
}

/// A decode problem as a structured event (JSON logs only; text gets one summary line).
fn log_issue(issue: &DecodeIssue) {
    let (kind, after_frame, reason) = match issue {
        DecodeIssue::BadPacket { after_frame, reason } => ("bad_packet", after_frame, reason),
        DecodeIssue::EndedEarly { after_frame, reason } => ("ended_early", after_frame, reason),
    };
    crate::log::event("decode_error", None, serde_json::json!({"kind": kind, "after_frame": after_frame, "reason": reason}));
}
