//! `episode-run identify RUN_DIR --seeds DIR`: re-names a finished run against cast photos from
//! its saved embeddings, without decoding the video again, with the same matching as a harvest,
//! then re-groups its people with the run's own `[people]` settings (names constrain people, so
//! people names stay those of their tracks).

use std::path::Path;

use super::{Error, Outcome};
use crate::cli::IdentifyArgs;
use crate::config::IdentifyConfig;
use crate::detect;
use crate::embed::sface::SfaceEmbedder;
use crate::identify::{Gallery, Identity, MatchParams};
use crate::onnx;
use crate::output::{self, FaceRecord, TrackRecord};
use crate::pipeline::build_gallery;
use crate::run_dir::{self, EMBEDDINGS, FACES, TRACKS, TRACK_EMBEDDINGS};

/// What `identify` changed.
#[derive(Debug)]
pub struct IdentifySummary {
    pub faces_named: u64,
    pub tracks_named: u64,
    pub people: Vec<String>,
}

pub fn run(args: &IdentifyArgs) -> Result<Outcome, Error> {
    let cfg = IdentifyConfig::from_args(args)?;
    let s = identify(&cfg)?;
    eprintln!("matched against {} people: {} faces and {} tracks named", s.people.len(), s.faces_named, s.tracks_named);
    Ok(Outcome::Done)
}

/// Re-matches the run in `cfg.run_dir` against `cfg.seeds`, rewrites the `identity` fields of
/// `faces.jsonl` and `tracks.jsonl` atomically, and re-groups the people.
pub fn identify(cfg: &IdentifyConfig) -> Result<IdentifySummary, Error> {
    let _lock = run_dir::open(&cfg.run_dir)?;
    let recorded = output::people::recorded_params(&cfg.run_dir)?;
    let summary = rename_all(cfg)?;
    output::people::recluster(&cfg.run_dir, &recorded)?;
    crate::report::refresh(&cfg.run_dir)?;
    Ok(summary)
}

/// Names the faces and tracks of the run in `cfg.run_dir` after `cfg.seeds` (the caller holds
/// the run folder's lock).
pub fn rename_all(cfg: &IdentifyConfig) -> Result<IdentifySummary, Error> {
    onnx::init_runtime(&cfg.ort_lib, cfg.settings.runtime.provider)?;
    let detect = &cfg.settings.detect;
    let mut detector = detect::load(&cfg.detector, cfg.threads, detect.clone(), detect.family)?;
    let mut embedder = SfaceEmbedder::load(&cfg.embedder, cfg.threads)?;
    let gallery = build_gallery(&cfg.seeds, detector.as_mut(), &mut embedder, &cfg.settings.quality)?;
    let params = &cfg.settings.identify;
    let faces_named = rename::<FaceRecord>(&cfg.run_dir.join(FACES), &cfg.run_dir.join(EMBEDDINGS), &gallery, params)?;
    let tracks_named = rename::<TrackRecord>(&cfg.run_dir.join(TRACKS), &cfg.run_dir.join(TRACK_EMBEDDINGS), &gallery, params)?;
    Ok(IdentifySummary { faces_named, tracks_named, people: gallery.names().to_vec() })
}

/// A row that can be named: a face or a track.
trait Named: serde::Serialize + serde::de::DeserializeOwned {
    fn embedding_row(&self) -> Option<u64>;
    fn set_identity(&mut self, identity: Option<Identity>);
}

impl Named for FaceRecord {
    fn embedding_row(&self) -> Option<u64> {
        self.embedding_row
    }
    fn set_identity(&mut self, identity: Option<Identity>) {
        self.identity = identity;
    }
}

impl Named for TrackRecord {
    fn embedding_row(&self) -> Option<u64> {
        self.embedding_row
    }
    fn set_identity(&mut self, identity: Option<Identity>) {
        self.identity = identity;
    }
}

/// Sets `identity` on every row of the JSONL file at `rows_path` from its `embedding_row` in the
/// `.npy` at `npy_path` (one matrix product for all rows); returns how many got a name.
fn rename<R: Named>(rows_path: &Path, npy_path: &Path, gallery: &Gallery, params: &MatchParams) -> Result<u64, Error> {
    let matrix = output::read_npy(npy_path)?;
    let mut rows: Vec<R> = output::read_jsonl(rows_path)?;
    let identities = gallery.match_rows(matrix.view(), params);
    let mut named = 0;
    for row in &mut rows {
        let identity = match row.embedding_row() {
            Some(r) => {
                let id = identities.get(r as usize).ok_or_else(|| output::ReadError { path: npy_path.to_path_buf(), why: format!("has no row {r}") })?;
                named += u64::from(id.name.is_some());
                Some(id.clone())
            }
            None => None,
        };
        row.set_identity(identity);
    }
    output::write_jsonl_atomic(rows_path, &rows)?;
    Ok(named)
}
