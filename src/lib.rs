//! episode-run: harvest faces from video.
//!
//! The crate is organised as stages that know nothing of each other — [`video`] decodes,
//! [`detect`] finds faces, [`align`] cuts 112×112 crops, [`embed`] turns crops into unit
//! vectors, [`output`] writes the files users read — plus [`pipeline`], the only module that
//! spawns threads and owns channels, [`people`], which groups a finished run's tracks into
//! people, and [`config`], which turns flags and TOML into one
//! validated [`config::HarvestConfig`] before any work starts.

pub mod align;
pub mod cli;
pub mod commands;
pub mod config;
pub mod detect;
pub mod digest;
pub mod embed;
pub mod host;
pub mod identify;
pub mod interrupt;
pub mod log;
pub mod names;
pub mod onnx;
pub mod output;
pub mod people;
pub mod pipeline;
pub mod report;
pub mod run_dir;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "s3")]
pub mod season;
pub mod track;
pub mod types;
pub mod video;

pub use pipeline::{harvest, HarvestError, HarvestSummary};
