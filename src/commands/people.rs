//! `episode-run people RUN_DIR [--config FILE] [--seeds DIR]`: re-groups a finished run's tracks
//! into people from its files, without decoding the video again, and records the settings used
//! in its manifest, so the folder then holds exactly what a harvest with those settings writes.

use super::{Error, Outcome};
use crate::cli::PeopleArgs;
use crate::config::PeopleConfig;
use crate::output::people::recluster;
use crate::run_dir::{self, ManifestHead};

pub fn run(args: &PeopleArgs) -> Result<Outcome, Error> {
    let cfg = PeopleConfig::from_args(args)?;
    let _lock = run_dir::open(&cfg.run_dir)?;
    // A run that cannot be re-grouped is refused before its names change.
    ManifestHead::read(&cfg.run_dir)?;
    if let Some(identify) = &cfg.identify {
        super::identify::rename_all(identify)?;
    }
    let s = recluster(&cfg.run_dir, &cfg.people)?;
    crate::report::refresh(&cfg.run_dir)?;
    let unassigned = s.unassigned_no_embedding + s.unassigned_short;
    eprintln!("{} tracks grouped into {} people ({} tracks in no person) in {:.2} s", s.tracks, s.people, unassigned, s.wall_s);
    Ok(Outcome::Done)
}
