//! Progress bookkeeping for the writer thread: decoded-frames-per-second over a recent window,
//! the ETA that follows from it, and a one-line bar for terminals.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Decoded frames per second over the last `window` of samples.
pub struct RateWindow {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Starts counting at `start` from `frames` already decoded.
    pub fn new(window: Duration, start: Instant, frames: u64) -> Self {
        Self { window, samples: VecDeque::from([(start, frames)]) }
    }

    /// Records that `frames` had been decoded at `now` and returns the rate over the window.
    pub fn push(&mut self, now: Instant, frames: u64) -> f64 {
        self.samples.push_back((now, frames));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (t0, f0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            0.0
        } else {
            frames.saturating_sub(f0) as f64 / dt
        }
    }
}

/// Seconds left at `fps`, when the total is known and the rate is positive.
pub fn eta(done: u64, total: Option<u64>, fps: f64) -> Option<f64> {
    let total = total?;
    (fps > 0.0).then(|| total.saturating_sub(done) as f64 / fps)
}

/// `[#####.....]  123/275 frames   45.2 fps   12 faces  eta 3s` (no bar when the total is unknown).
pub fn bar_line(done: u64, total: Option<u64>, fps: f64, faces: u64, eta_s: Option<f64>) -> String {
    const WIDTH: usize = 24;
    let bar = match total {
        Some(t) if t > 0 => {
            let filled = ((done.min(t) as f64 / t as f64) * WIDTH as f64).round() as usize;
            format!("[{}{}] {done}/{t}", "#".repeat(filled), ".".repeat(WIDTH - filled))
        }
        _ => format!("{done}"),
    };
    let eta = eta_s.map(|s| format!("  eta {}s", s.round() as u64)).unwrap_or_default();
    format!("{bar} frames  {fps:.1} fps  {faces} faces{eta}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_measured_over_the_recent_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(2), t0, 0);
        // 100 fps for 4 s, then 10 fps for 4 s: the window forgets the fast start.
        let mut frames = 0;
        for i in 1..=8u64 {
            frames += if i <= 4 { 100 } else { 10 };
            let r = w.push(t0 + Duration::from_secs(i), frames);
            if i == 4 {
                assert!((r - 100.0).abs() < 1e-9);
            }
            if i == 8 {
                assert!((r - 10.0).abs() < 1e-9, "{r}");
            }
        }
    }

    #[test]
    fn a_resumed_run_counts_only_its_own_frames() {
        let t0 = Instant::now();
        // 1,000 frames were done by an earlier process; this one decodes 50 a second.
        let mut w = RateWindow::new(Duration::from_secs(5), t0, 1000);
        let fps = w.push(t0 + Duration::from_secs(2), 1100);
        assert!((fps - 50.0).abs() < 1e-9, "{fps}");
        assert_eq!(eta(1100, Some(1600), fps), Some(10.0));
    }

    #[test]
    fn eta_needs_total_and_rate() {
        assert_eq!(eta(50, Some(150), 10.0), Some(10.0));
        assert_eq!(eta(50, None, 10.0), None);
        assert_eq!(eta(50, Some(150), 0.0), None);
    }

    #[test]
    fn bar_shows_fraction() {
        let line = bar_line(12, Some(24), 3.0, 5, Some(4.0));
        assert!(line.starts_with("[############............] 12/24 frames"), "{line}");
        assert!(line.ends_with("eta 4s"));
        assert_eq!(bar_line(7, None, 1.0, 0, None), "7 frames  1.0 fps  0 faces");
    }
}
