//! Built without S3 (no cargo feature "s3"): the config refuses `s3://`, so there is nothing to do.

use std::path::Path;

use super::{Error, Outcome};
use crate::config::{HarvestConfig, RemoteCfg};

pub struct Upload;

pub fn before_harvest(_: &mut HarvestConfig) -> Result<Result<Option<Upload>, Outcome>, Error> {
    Ok(Ok(None))
}

pub fn after_harvest(_: Option<Upload>, _: &Path, _: bool) -> Result<Outcome, Error> {
    Ok(Outcome::Done)
}

pub fn upload(_: &Path, _: &str, _: &RemoteCfg, _: bool) -> Result<Outcome, Error> {
    Ok(Outcome::S3Failed)
}
