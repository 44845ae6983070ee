//! `report.html`: one self-contained page that shows a run — who is in it, when, for how long,
//! and what it cost — made from the run folder's files alone, so it can be made again for any
//! run, old, interrupted or failed ones included.
//!
//! The page loads nothing: styles and the one small script are inline, charts are SVG drawn by
//! the template, crops are shrunk JPEG `data:` URIs. The template is askama's, checked at compile
//! time and HTML-escaping every value it prints; the only values printed unescaped are the
//! `data:` URIs built here from base64, whose alphabet holds nothing HTML could read as markup.

mod charts;
mod load;
pub mod season;
mod view;

use std::path::{Path, PathBuf};

use askama::Template;

pub use load::RunFiles;
use view::{Page, LANE, LANE_LABEL};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{dir} is not an episode-run run folder (no {marker} marker in it)")]
    NotARun { dir: PathBuf, marker: &'static str },
    #[error("cannot render the report of {dir}: {why}")]
    Render { dir: PathBuf, why: String },
    #[error(transparent)]
    Write(#[from] crate::output::OutputError),
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    page: &'a Page,
    lane: f64,
    lane_label: f64,
}

/// The report of the run in `dir`, as HTML.
pub fn render(dir: &Path) -> Result<String, ReportError> {
    if !crate::run_dir::is_ours(dir) {
        return Err(ReportError::NotARun { dir: dir.to_path_buf(), marker: crate::run_dir::MARKER });
    }
    let page = view::build(&RunFiles::read(dir));
    ReportPage { page: &page, lane: LANE, lane_label: LANE_LABEL }.render().map_err(|e| ReportError::Render { dir: dir.to_path_buf(), why: e.to_string() })
}

/// Renders the report of the run in `dir` and writes it atomically to `to` (the run's
/// `report.html` unless told otherwise). Returns where it went.
pub fn write(dir: &Path, to: Option<&Path>) -> Result<PathBuf, ReportError> {
    let html = render(dir)?;
    let path = to.map_or_else(|| dir.join(crate::run_dir::REPORT), Path::to_path_buf);
    crate::output::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// Renders the report of the run in `dir` again when it has one: after a command changed what
/// it shows (names, people), so the page never contradicts the files beside it.
pub fn refresh(dir: &Path) -> Result<(), ReportError> {
    if dir.join(crate::run_dir::REPORT).is_file() {
        write(dir, None)?;
    }
    Ok(())
}
