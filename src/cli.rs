//! Command-line flags, as close to what the user typed as possible: clap structs only.
//! [`crate::config`] turns them into a validated configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "episode-run", version, about = "Harvest faces from video: decode once, detect, align, batch-embed.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Decode INPUT once, detect faces on sampled frames, align and embed them, write faces.jsonl
    /// and embeddings.npy. INPUT is any file FFmpeg opens: a video, or a still image.
    Harvest(HarvestArgs),
    /// Re-match an existing run against cast photos from its embeddings.npy and
    /// track_embeddings.npy, without decoding the video again; rewrites the identity fields.
    Identify(IdentifyArgs),
    /// Re-group an existing run's tracks into people from its tracks.jsonl and
    /// track_embeddings.npy, without decoding the video again; rewrites people.jsonl,
    /// people_embeddings.npy, crops/person_*.jpg and the person_id fields.
    People(PeopleArgs),
    /// Render a run folder's report.html again from its files alone (any run: old, interrupted
    /// or failed ones show what their files hold).
    Report(ReportArgs),
    /// Measure the model floor of a completed run: the time ONNX Runtime alone needs for its
    /// detector on every sampled frame and its embedder on every embedded crop (best batch
    /// size). Prints JSON; used by scripts/bench.
    Floor(FloorArgs),
    /// Upload a completed run to S3 (what `harvest --upload` does after harvesting): skips
    /// objects already there with the same SHA-256 and resumes an interrupted multipart upload.
    Upload(UploadArgs),
    /// Harvest a season with a batch engine (Slurm, Kubernetes, AWS Batch): `plan` the
    /// episodes once, `run` one per task (index from --index or the engine), `merge` the cast.
    Season(SeasonArgs),
}

#[derive(Debug, Args)]
pub struct SeasonArgs {
    #[command(subcommand)]
    pub command: SeasonCommand,
}

#[derive(Debug, Subcommand)]
pub enum SeasonCommand {
    /// Write season.json (locally and to OUT/season.json): the episodes in a fixed order, the
    /// settings and the models' SHA-256 every task must use.
    Plan(SeasonPlanArgs),
    /// Harvest one episode of the plan and upload it to OUT/<episode id>/, checkpointing to S3
    /// as it goes; an episode already complete exits 0 at once.
    Run(SeasonRunArgs),
    /// Cluster the episodes' people into the season's cast: OUT/season/ (exit 4 naming the
    /// indexes when some episodes are not complete).
    Merge(SeasonMergeArgs),
}

/// What every season command shares: how to reach S3 and how to talk.
#[derive(Debug, Args, Clone, Default)]
pub struct SeasonCommon {
    #[command(flatten)]
    pub s3: S3Args,
    /// No summary lines on stderr (warnings and errors still print).
    #[arg(long, short)]
    pub quiet: bool,
    /// `text` (human lines) or `json` (one JSON object per event on stderr).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t)]
    pub log_format: crate::log::Format,
}

#[derive(Debug, Args)]
pub struct SeasonPlanArgs {
    /// A list file (one s3:// URL per line, in episode order) or an s3:// prefix whose videos,
    /// sorted by key, are the episodes.
    pub source: String,
    /// The season's prefix, s3://bucket/prefix/.
    #[arg(long, value_name = "S3_URL")]
    pub out: String,
    /// Where the local copy of the plan goes.
    #[arg(long, value_name = "FILE", default_value = "season.json")]
    pub plan_file: PathBuf,
    /// Seconds between a task's checkpoints to S3 [default: 60].
    #[arg(long, value_name = "S")]
    pub remote_checkpoint_s: Option<f64>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub common: SeasonCommon,
}

#[derive(Debug, Args)]
pub struct SeasonRunArgs {
    /// The plan: s3://…/season.json (or a local copy).
    #[arg(long, value_name = "PLAN")]
    pub plan: String,
    /// The episode [default: $JOB_COMPLETION_INDEX, $AWS_BATCH_JOB_ARRAY_INDEX or $SLURM_ARRAY_TASK_ID].
    #[arg(long, value_name = "N")]
    pub index: Option<usize>,
    /// Where the input and the run folder go [default: $XDG_CACHE_HOME/episode-run or ~/.cache/episode-run].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub common: SeasonCommon,
}

#[derive(Debug, Args)]
pub struct SeasonMergeArgs {
    /// The plan: s3://…/season.json (or a local copy).
    #[arg(long, value_name = "PLAN")]
    pub plan: String,
    /// Where the season's files are written before the upload [default: season/ in the cache dir].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub common: SeasonCommon,
}

/// How to reach S3 (shared by `harvest` and `upload`). Credentials, region and the default
/// endpoint come from the standard AWS chain: env vars, ~/.aws/config and ~/.aws/credentials,
/// AWS_PROFILE, AWS_ENDPOINT_URL, instance roles.
#[derive(Debug, Args, Clone, Default)]
pub struct S3Args {
    /// Endpoint URL of an S3-compatible server (overrides AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Path-style addressing (http://host/bucket/key), as most S3-compatible servers need.
    #[arg(long)]
    pub s3_path_style: bool,
    /// Requests in flight at once during an upload [default: 4].
    #[arg(long, value_name = "N")]
    pub s3_concurrency: Option<usize>,
    /// Part size in MiB for multipart uploads; smaller files go in one request [default: 8, min 5].
    #[arg(long, value_name = "MIB")]
    pub s3_part_mib: Option<u64>,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Out dir of a completed harvest.
    pub run_dir: PathBuf,
    /// Destination prefix, e.g. s3://bucket/runs/ep42/.
    pub dest: String,
    #[command(flatten)]
    pub s3: S3Args,
    /// No summary on stderr (errors still print).
    #[arg(long, short)]
    pub quiet: bool,
    /// `text` (human lines) or `json` (one JSON object per event on stderr).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t)]
    pub log_format: crate::log::Format,
}

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Out dir of a completed harvest.
    pub run_dir: PathBuf,
    /// Intra-op threads [default: the run's --threads].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Which faces the embedder sees (`--embed-every`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EmbedEvery {
    /// Every face that passed the quality gates (a face dataset wants each face's vector).
    #[default]
    Face,
    /// Only the faces that add to their track (README, "Embed every track").
    Track,
}

/// Where ONNX Runtime runs the models (`--provider`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// CUDA when the CUDA build of ONNX Runtime is installed (`make setup-gpu`) and a GPU takes
    /// the models, else the CPU (saying why when the CUDA build is there).
    #[default]
    Auto,
    /// The CPU alone.
    Cpu,
    /// CUDA, or an error (exit 2) when it cannot be used.
    Cuda,
}

/// The flags that shape a harvest's settings, layered over `--config` (shared by `harvest` and
/// `season plan`, which records them for every task).
#[derive(Debug, Args, Clone, Default)]
pub struct SettingsArgs {
    /// Detect on every Nth frame (frame_idx % N == 0).
    #[arg(long, value_name = "N")]
    pub stride: Option<u64>,
    /// Compute threads for the whole process [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Send all crops of a frame to one embedder call (the default).
    #[arg(long, overrides_with = "no_batch_embed")]
    pub batch_embed: bool,
    /// Embed one crop per call (rollback switch; identical results).
    #[arg(long, overrides_with = "batch_embed")]
    pub no_batch_embed: bool,
    /// Pack the crops of consecutive whole frames into calls of at most B crops [default: 1 = one call per frame].
    #[arg(long, value_name = "B")]
    pub batch_size: Option<usize>,
    /// Memory budget of one embedder call in MiB [default: auto].
    #[arg(long, value_name = "MIB")]
    pub embed_mem_mb: Option<u64>,
    /// Embed every usable face, or per track only the faces that add to it (skip_reason
    /// "redundant" for the rest) [default: face].
    #[arg(long, value_name = "WHAT", value_enum)]
    pub embed_every: Option<EmbedEvery>,
    /// Run the models on the CPU, on CUDA (an error when it cannot), or on CUDA when it can
    /// [default: auto].
    #[arg(long, value_name = "WHERE", value_enum)]
    pub provider: Option<Provider>,
    /// Detector model (YuNet ONNX).
    #[arg(long, value_name = "PATH")]
    pub det_model: Option<PathBuf>,
    /// Embedder model (SFace ONNX prepared by scripts/prepare_sface.py).
    #[arg(long, value_name = "PATH")]
    pub embed_model: Option<PathBuf>,
    /// TOML file layered over configs/default.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not embed faces whose shorter box side is below PX pixels.
    #[arg(long, value_name = "PX")]
    pub min_face: Option<f64>,
    /// Do not embed faces whose detector score is below F.
    #[arg(long, value_name = "F")]
    pub det_threshold: Option<f64>,
    /// Let FFmpeg skip non-reference frames: faster decoding, but only reference frames are
    /// sampled (the first at or after each multiple of the stride); frame_idx from timestamps.
    #[arg(long)]
    pub skip_nonref: bool,
    /// Detect, track and gate faces but embed nothing (the embedder is not even loaded).
    #[arg(long, conflicts_with = "decode_only")]
    pub detect_only: bool,
    /// Decode and sample every frame with no model at all: measures the decode floor.
    #[arg(long)]
    pub decode_only: bool,
}

#[derive(Debug, Args)]
pub struct HarvestArgs {
    /// Video or image file, or an s3://bucket/key object (downloaded once into --cache-dir).
    pub input: PathBuf,
    /// Output directory [default: runs/<input stem>/].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Cast photos: DIR/<name>.<jpg|png> or DIR/<name>/*; names faces and tracks.
    #[arg(long, value_name = "DIR")]
    pub seeds: Option<PathBuf>,
    /// Harvest even if the out dir holds this run completed, or replace a run of something else.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the unfinished run in the out dir (an error if there is none). Without this flag
    /// an unfinished run of the same input and settings is resumed anyway, with a message.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar or summary on stderr (warnings and errors still print).
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not write report.html at the end (`episode-run report` makes it later).
    #[arg(long)]
    pub no_report: bool,
    /// `text` (human lines) or `json` (one JSON object per event on stderr).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t)]
    pub log_format: crate::log::Format,
    /// After a completed harvest, upload the run's files under this prefix (s3://bucket/prefix/).
    #[arg(long, value_name = "S3_URL")]
    pub upload: Option<String>,
    /// Where s3:// inputs are downloaded [default: $XDG_CACHE_HOME/episode-run or ~/.cache/episode-run].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct IdentifyArgs {
    /// Out dir of a completed harvest.
    pub run_dir: PathBuf,
    /// Cast photos: DIR/<name>.<jpg|png> or DIR/<name>/*.
    #[arg(long, value_name = "DIR")]
    pub seeds: PathBuf,
    /// TOML file layered over configs/default.toml (for [identify] and [quality]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Compute threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Detector model for the seed photos.
    #[arg(long, value_name = "PATH")]
    pub det_model: Option<PathBuf>,
    /// Embedder model for the seed photos (must be the one the run used).
    #[arg(long, value_name = "PATH")]
    pub embed_model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PeopleArgs {
    /// Out dir of a completed harvest.
    pub run_dir: PathBuf,
    /// TOML file layered over configs/default.toml (for [people]; with --seeds, also [identify]
    /// and [quality]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Cast photos to name tracks by first (as `identify` does): DIR/<name>.<jpg|png> or
    /// DIR/<name>/*. Without it, the names the run's tracks already carry are used.
    #[arg(long, value_name = "DIR")]
    pub seeds: Option<PathBuf>,
    /// Compute threads for the seed photos [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run folder (a harvest's out dir).
    pub run_dir: PathBuf,
    /// Where to write the page [default: RUN_DIR/report.html].
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl SettingsArgs {
    /// `Some(true)`/`Some(false)` when a batch flag was given, `None` to use the config.
    pub fn batch_embed(&self) -> Option<bool> {
        match (self.batch_embed, self.no_batch_embed) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harvest(args: &[&str]) -> HarvestArgs {
        let mut argv = vec!["episode-run", "harvest", "in.mp4"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Harvest(h) => h,
            _ => unreachable!("harvest was parsed"),
        }
    }

    #[test]
    fn force() {
        assert!(harvest(&["--force"]).force);
        assert!(!harvest(&[]).force);
    }

    #[test]
    fn skip_nonref() {
        assert!(harvest(&["--skip-nonref"]).settings.skip_nonref);
        assert!(!harvest(&[]).settings.skip_nonref);
    }

    #[test]
    fn log_format() {
        assert_eq!(harvest(&[]).log_format, crate::log::Format::Text);
        assert_eq!(harvest(&["--log-format", "json"]).log_format, crate::log::Format::Json);
        assert!(Cli::try_parse_from(["episode-run", "harvest", "x", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn resume() {
        assert!(harvest(&["--resume"]).resume);
        assert!(!harvest(&[]).resume);
        assert!(Cli::try_parse_from(["episode-run", "harvest", "x", "--resume", "--force"]).is_err());
    }

    #[test]
    fn floor_takes_a_run_dir_and_optional_threads() {
        let Command::Floor(f) = Cli::try_parse_from(["episode-run", "floor", "runs/x", "--threads", "2"]).unwrap().command else {
            panic!("floor was not parsed");
        };
        assert_eq!((f.run_dir, f.threads), (PathBuf::from("runs/x"), Some(2)));
        assert!(Cli::try_parse_from(["episode-run", "floor"]).is_err());
    }

    #[test]
    fn s3_flags() {
        let h = harvest(&[
            "--upload",
            "s3://b-1/runs/",
            "--cache-dir",
            "/c",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-path-style",
            "--s3-concurrency",
            "2",
            "--s3-part-mib",
            "16",
        ]);
        assert_eq!(h.upload.as_deref(), Some("s3://b-1/runs/"));
        assert_eq!(h.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(h.s3.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(h.s3.s3_path_style);
        assert_eq!((h.s3.s3_concurrency, h.s3.s3_part_mib), (Some(2), Some(16)));
        assert!(!harvest(&[]).s3.s3_path_style);
        let Command::Upload(u) = Cli::try_parse_from(["episode-run", "upload", "runs/x", "s3://b-1/p/", "--s3-concurrency", "1"]).unwrap().command else {
            panic!("upload was not parsed");
        };
        assert_eq!((u.run_dir, u.dest.as_str(), u.s3.s3_concurrency), (PathBuf::from("runs/x"), "s3://b-1/p/", Some(1)));
        assert!(Cli::try_parse_from(["episode-run", "upload", "runs/x"]).is_err());
    }

    #[test]
    fn input_is_required() {
        assert!(Cli::try_parse_from(["episode-run", "harvest"]).is_err());
        assert_eq!(harvest(&[]).input, PathBuf::from("in.mp4"));
    }

    #[test]
    fn stride() {
        assert_eq!(harvest(&["--stride", "4"]).settings.stride, Some(4));
        assert_eq!(harvest(&[]).settings.stride, None);
        assert!(Cli::try_parse_from(["episode-run", "harvest", "x", "--stride", "-1"]).is_err());
    }

    #[test]
    fn out() {
        assert_eq!(harvest(&["--out", "o"]).out, Some(PathBuf::from("o")));
    }

    #[test]
    fn threads() {
        assert_eq!(harvest(&["--threads", "1"]).settings.threads, Some(1));
    }

    #[test]
    fn batch_flags_last_one_wins() {
        assert_eq!(harvest(&[]).settings.batch_embed(), None);
        assert_eq!(harvest(&["--no-batch-embed"]).settings.batch_embed(), Some(false));
        assert_eq!(harvest(&["--batch-embed"]).settings.batch_embed(), Some(true));
        assert_eq!(harvest(&["--batch-embed", "--no-batch-embed"]).settings.batch_embed(), Some(false));
        assert_eq!(harvest(&["--no-batch-embed", "--batch-embed"]).settings.batch_embed(), Some(true));
    }

    #[test]
    fn provider() {
        assert_eq!(harvest(&[]).settings.provider, None);
        for (flag, want) in [("auto", Provider::Auto), ("cpu", Provider::Cpu), ("cuda", Provider::Cuda)] {
            assert_eq!(harvest(&["--provider", flag]).settings.provider, Some(want));
        }
        assert!(Cli::try_parse_from(["episode-run", "harvest", "in.mp4", "--provider", "tensorrt"]).is_err());
    }

    #[test]
    fn embed_every() {
        assert_eq!(harvest(&[]).settings.embed_every, None);
        assert_eq!(harvest(&["--embed-every", "track"]).settings.embed_every, Some(EmbedEvery::Track));
        assert_eq!(harvest(&["--embed-every", "face"]).settings.embed_every, Some(EmbedEvery::Face));
        assert!(crate::cli::Cli::try_parse_from(["episode-run", "harvest", "v.mp4", "--embed-every", "shot"]).is_err());
    }

    #[test]
    fn batch_size_and_memory() {
        let h = harvest(&["--batch-size", "16", "--embed-mem-mb", "256"]);
        assert_eq!((h.settings.batch_size, h.settings.embed_mem_mb), (Some(16), Some(256)));
    }

    #[test]
    fn models() {
        let h = harvest(&["--det-model", "d.onnx", "--embed-model", "e.onnx"]);
        assert_eq!(h.settings.det_model, Some(PathBuf::from("d.onnx")));
        assert_eq!(h.settings.embed_model, Some(PathBuf::from("e.onnx")));
    }

    #[test]
    fn config() {
        assert_eq!(harvest(&["--config", "c.toml"]).settings.config, Some(PathBuf::from("c.toml")));
    }

    #[test]
    fn gates() {
        let h = harvest(&["--min-face", "32", "--det-threshold", "0.8"]);
        assert_eq!((h.settings.min_face, h.settings.det_threshold), (Some(32.0), Some(0.8)));
    }

    #[test]
    fn seeds() {
        assert_eq!(harvest(&["--seeds", "cast"]).seeds, Some(PathBuf::from("cast")));
        assert_eq!(harvest(&[]).seeds, None);
    }

    #[test]
    fn identify_takes_run_dir_and_seeds() {
        let cli = Cli::try_parse_from(["episode-run", "identify", "runs/ep42", "--seeds", "cast", "--threads", "1"]).unwrap();
        let Command::Identify(a) = cli.command else { panic!("identify expected") };
        assert_eq!((a.run_dir, a.seeds, a.threads), (PathBuf::from("runs/ep42"), PathBuf::from("cast"), Some(1)));
        assert!(Cli::try_parse_from(["episode-run", "identify", "runs/ep42"]).is_err(), "--seeds is required");
    }

    #[test]
    fn modes() {
        assert!(harvest(&["--detect-only"]).settings.detect_only);
        assert!(harvest(&["--decode-only"]).settings.decode_only);
        assert!(Cli::try_parse_from(["episode-run", "harvest", "x", "--detect-only", "--decode-only"]).is_err());
    }

    #[test]
    fn season_commands() {
        let parse = |args: &[&str]| match Cli::try_parse_from([&["episode-run", "season"], args].concat()).map(|c| c.command) {
            Ok(Command::Season(s)) => Some(s.command),
            _ => None,
        };
        let Some(SeasonCommand::Plan(p)) = parse(&["plan", "s3://b-1/in/", "--out", "s3://b-1/s/", "--stride", "4", "--remote-checkpoint-s", "5"]) else {
            panic!("season plan was not parsed")
        };
        assert_eq!((p.source.as_str(), p.out.as_str(), p.settings.stride, p.remote_checkpoint_s), ("s3://b-1/in/", "s3://b-1/s/", Some(4), Some(5.0)));
        assert_eq!(p.plan_file, PathBuf::from("season.json"));
        assert!(parse(&["plan", "s3://b-1/in/"]).is_none(), "--out is required");
        let Some(SeasonCommand::Run(r)) = parse(&["run", "--plan", "s3://b-1/s/season.json", "--index", "3", "-q"]) else {
            panic!("season run was not parsed")
        };
        assert_eq!((r.plan.as_str(), r.index, r.common.quiet), ("s3://b-1/s/season.json", Some(3), true));
        let Some(SeasonCommand::Run(r)) = parse(&["run", "--plan", "p.json"]) else { panic!("season run was not parsed") };
        assert_eq!(r.index, None);
        let Some(SeasonCommand::Merge(m)) = parse(&["merge", "--plan", "p.json", "--work-dir", "w"]) else { panic!("season merge was not parsed") };
        assert_eq!(m.work_dir, Some(PathBuf::from("w")));
        assert!(parse(&["merge"]).is_none(), "--plan is required");
    }

    #[test]
    fn quiet() {
        assert!(harvest(&["--quiet"]).quiet);
        assert!(harvest(&["-q"]).quiet);
        assert!(!harvest(&[]).quiet);
    }
}
