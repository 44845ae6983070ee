//! `episode-run report RUN_DIR [-o FILE]`: renders a run folder's `report.html` again from its
//! files alone, for any run (an old one, an interrupted or failed one shows what it holds).

use super::{Error, Outcome};
use crate::cli::ReportArgs;
use crate::run_dir;

pub fn run(args: &ReportArgs) -> Result<Outcome, Error> {
    let path = match &args.output {
        Some(to) => crate::report::write(&args.run_dir, Some(to))?,
        None => {
            // Into the run folder, as one of the processes that change it.
            let _lock = run_dir::open(&args.run_dir)?;
            crate::report::write(&args.run_dir, None)?
        }
    };
    println!("{}", path.display());
    Ok(Outcome::Done)
}
