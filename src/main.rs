//! Thin entry point: parse flags, run the command, map its outcome to an exit code, here and
//! nowhere else — 0 done (or already harvested), 1 done but some input could not be decoded,
//! 2 fatal (one line on stderr), 3 the harvest is done but its S3 upload failed (the local run is
//! intact; for `season run`, any S3 failure: retry), 4 `season merge` found episodes not complete,
//! 75 `season run` found another task holding its episode, 130 stopped by Ctrl-C/SIGTERM after
//! publishing what it had.

use std::process::ExitCode;

use clap::Parser;
use episode_run::cli::{Cli, Command};
use episode_run::commands::{self, Outcome};
use episode_run::log;

fn main() -> ExitCode {
    let result = match &Cli::parse().command {
        Command::Harvest(args) => commands::harvest::run(args),
        Command::Identify(args) => commands::identify::run(args),
        Command::People(args) => commands::people::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Upload(args) => commands::upload::run(args),
        Command::Floor(args) => commands::floor::run(args),
        #[cfg(feature = "s3")]
        Command::Season(args) => commands::season::run(args),
        #[cfg(not(feature = "s3"))]
        Command::Season(_) => {
            eprintln!("error: this episode-run was built without S3 support (cargo feature \"s3\"), which a season needs");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::DoneWithLoss) => ExitCode::from(1),
        Ok(Outcome::S3Failed) => ExitCode::from(3),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Ok(Outcome::Incomplete) => ExitCode::from(4),
        Ok(Outcome::Superseded) => ExitCode::from(75),
        Err(e) => {
            // Our errors already carry their cause in their message: one line, no chain.
            let message = printable(&e.to_string());
            log::event("error", Some(&format!("error: {message}")), serde_json::json!({}));
            ExitCode::from(2)
        }
    }
}

/// `text` as one printable line: newlines become spaces, other control characters (a key or a
/// path may hold any) their escapes, so nothing reaches the terminal as a control sequence.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_debug()),
            c => out.push(c),
        }
    }
    out
}
