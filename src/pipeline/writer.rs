//! The writer stage's loop: every embedded frame into the sink in order, `progress.json` (and
//! the terminal bar) kept current, and checkpoints taken on time.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::frames::{DecodeState, Shared, Tail, TrackedFrame};
use super::progress::{bar_line, eta, RateWindow};
use super::resume::Checkpoint;
use super::sink::Sink;
use crate::config::{CheckpointHook, HarvestConfig};
use crate::log;
use crate::output::manifest::Attempt;
use crate::output::{self, OutputError, Progress};
use crate::run_dir::{self, RunIdentity, Status};

/// Writes checkpoints for the writer stage.
pub struct Keeper<'a> {
    pub out_dir: &'a std::path::Path,
    pub identity: RunIdentity,
    pub history: Vec<Attempt>,
    pub this: Attempt,
    /// Decode state after the last frame written (or the checkpoint resumed from).
    pub last: Option<DecodeState>,
    /// Told of every checkpoint saved (`season run` publishes it).
    pub hook: Option<&'a CheckpointHook>,
}

impl Keeper<'_> {
    pub fn attempt(&self) -> Attempt {
        Attempt { ended_at: log::now_rfc3339(), frames_done: self.last.as_ref().map_or(self.this.first_frame, |d| d.next_frame), ..self.this.clone() }
    }

    /// Syncs the outputs and records where the run stands; nothing to do before the first frame.
    pub fn save(&mut self, sink: &mut Sink, tail: Option<Tail>) -> Result<(), OutputError> {
        let Some(decode) = self.last.clone() else { return Ok(()) };
        let (state, position) = sink.checkpoint()?;
        let mut history = self.history.clone();
        let done = tail.as_ref().map_or(decode.next_frame, |t| t.frames_decoded);
        history.push(Attempt { frames_done: done, ..self.attempt() });
        let next_frame = decode.next_frame;
        let checkpoint = Checkpoint { identity: self.identity.clone(), decode, sink: state, position, tail, history };
        checkpoint.save(self.out_dir)?;
        sink.checkpoint_saved(&checkpoint.sink);
        log::event("checkpoint", None, serde_json::json!({"next_frame": next_frame, "position": position}));
        if let Some(hook) = self.hook {
            (hook.0)(self.out_dir, crate::interrupt::requested().is_some());
        }
        Ok(())
    }
}

pub type Written<'a> = (Sink<'a>, Progress);

/// Feeds every frame to the sink in order and keeps progress.json (and the terminal bar) current.
pub fn write_stage<'a>(
    cfg: &HarvestConfig,
    video: &crate::video::VideoInfo,
    mut sink: Sink<'a>,
    rx: crossbeam_channel::Receiver<TrackedFrame>,
    shared: &Shared,
    start: Instant,
    keeper: &mut Keeper,
) -> Result<Written<'a>, OutputError> {
    let progress_path = cfg.out_dir.join(run_dir::PROGRESS);
    let interval = Duration::from_secs_f64(cfg.settings.progress.interval_s);
    let checkpoint_every = Duration::from_secs_f64(cfg.settings.progress.checkpoint_s);
    let mut last_checkpoint = Instant::now();
    let bar = !cfg.quiet && std::io::stderr().is_terminal();
    // fps and ETA count this process's frames only (a resumed run starts past zero).
    let mut rate = RateWindow::new(Duration::from_secs(5), start, shared.decoded.load(Ordering::Relaxed));
    let mut last_write: Option<Instant> = None;
    let snapshot = |rate: &mut RateWindow, faces: u64| {
        let decoded = shared.decoded.load(Ordering::Relaxed);
        let fps = rate.push(Instant::now(), decoded);
        Progress {
            status: Status::Running,
            frames_decoded: decoded,
            frames_sampled: shared.sampled.load(Ordering::Relaxed),
            frames_total: video.frames_total,
            faces,
            fps: (fps * 10.0).round() / 10.0,
            eta_s: eta(decoded, video.frames_total, fps).map(|s| s.round()),
            elapsed_s: (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            updated_at: log::now_rfc3339(),
            error: None,
        }
    };
    loop {
        match rx.recv_timeout(interval) {
            Ok(frame) => {
                let decode = frame.frame.decode.clone();
                sink.push(frame)?;
                keeper.last = Some(decode);
                if last_checkpoint.elapsed() >= checkpoint_every {
                    keeper.save(&mut sink, None)?;
                    last_checkpoint = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_write.is_none_or(|t| t.elapsed() >= interval) {
            let p = snapshot(&mut rate, sink.faces_written());
            output::write_json_atomic(&progress_path, &p)?;
            if bar {
                eprint!("\r{}\x1b[K", bar_line(p.frames_decoded, p.frames_total, p.fps, p.faces, p.eta_s));
            }
            last_write = Some(Instant::now());
        }
    }
    if crate::interrupt::requested().is_some() {
        // Stopped by a signal: exactly where the outputs end, for the next run to go on from.
        keeper.save(&mut sink, None)?;
    }
    let p = snapshot(&mut rate, sink.faces_written());
    if bar {
        eprintln!("\r{}\x1b[K", bar_line(p.frames_decoded, p.frames_total, p.fps, p.faces, Some(0.0)));
    }
    Ok((sink, p))
}
