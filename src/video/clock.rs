//! Frame numbering, sampling and time, apart from FFmpeg: what gives each decoded frame its
//! `frame_idx`, whether it is sampled, and its `t`. Pure, so it is tested on its own.

/// The numbering state of one decode.
#[derive(Clone, Debug)]
pub struct Clock {
    pub stride: u64,
    /// Every frame's presentation timestamp, sorted, for when FFmpeg skips frames: a frame's
    /// index is then its timestamp's rank, which is exact at any frame rate, variable included.
    pub all_pts: Option<Vec<i64>>,
    /// Seconds per timestamp unit.
    pub time_base: f64,
    pub frame_rate: Option<f64>,
    /// The index the next decoded frame gets (at least).
    pub next_idx: u64,
    /// `idx / stride` of the last sampled frame (with `all_pts`).
    pub last_sampled_slot: Option<u64>,
    pub last_t: Option<f64>,
}

impl Clock {
    pub fn new(stride: u64, time_base: f64, frame_rate: Option<f64>) -> Self {
        Self { stride: stride.max(1), all_pts: None, time_base, frame_rate, next_idx: 0, last_sampled_slot: None, last_t: None }
    }

    /// The index, whether it is sampled, and the time in seconds of the next decoded frame,
    /// whose presentation timestamp is `pts`. Every `stride`-th index is sampled; with
    /// `all_pts`, the first frame decoded at or after each multiple of the stride is. A frame
    /// without a timestamp is one frame period after the previous one.
    pub fn tick(&mut self, pts: Option<i64>) -> (u64, bool, f64) {
        let mut idx = self.next_idx;
        let mut sampled = idx.is_multiple_of(self.stride);
        if let Some(all) = &self.all_pts {
            if let Some(pts) = pts {
                idx = (all.partition_point(|&p| p < pts) as u64).max(idx);
            }
            sampled = idx / self.stride != self.last_sampled_slot.unwrap_or(u64::MAX);
            if sampled {
                self.last_sampled_slot = Some(idx / self.stride);
            }
        }
        self.next_idx = idx + 1;
        let t = match pts {
            Some(ts) => ts as f64 * self.time_base,
            None => match (self.last_t, self.frame_rate) {
                (Some(prev), Some(fps)) => prev + 1.0 / fps,
                (Some(prev), None) => prev,
                (None, _) => 0.0,
            },
        };
        self.last_t = Some(t);
        (idx, sampled, t)
    }

    /// Goes on after a checkpoint taken right after the sampled frame `next_idx - 1`, at time
    /// `last_t`: that frame's stride slot is taken.
    pub fn resume(&mut self, next_idx: u64, last_t: f64) {
        self.last_t = Some(last_t);
        if next_idx > 0 {
            self.last_sampled_slot = Some((next_idx - 1) / self.stride);
        }
        self.next_idx = next_idx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 25 fps in a 1/12800 time base, starting at 0.852 s like the Hamilton clip.
    fn clock(stride: u64) -> Clock {
        Clock::new(stride, 1.0 / 12_800.0, Some(25.0))
    }

    const TICK: i64 = 512; // one frame at 25 fps

    #[test]
    fn every_stride_th_frame_is_sampled_and_times_come_from_timestamps() {
        let mut c = clock(4);
        let got: Vec<(u64, bool)> = (0..9).map(|i| c.tick(Some(10_906 + i * TICK))).map(|(i, s, _)| (i, s)).collect();
        assert_eq!(got, (0..9).map(|i| (i, i % 4 == 0)).collect::<Vec<_>>());
        let (_, _, t) = clock(1).tick(Some(10_906));
        assert!((t - 0.852).abs() < 1e-3, "{t}");
        assert_eq!(clock(0).stride, 1, "a zero stride samples every frame");
    }

    #[test]
    fn a_frame_without_a_timestamp_is_one_period_after_the_last() {
        let mut c = clock(1);
        let (_, _, t0) = c.tick(Some(12_800));
        let (_, _, t1) = c.tick(None);
        assert_eq!(t0, 1.0);
        assert!((t1 - 1.04).abs() < 1e-9, "{t1}");
        let mut no_rate = Clock::new(1, 0.001, None);
        assert_eq!(no_rate.tick(None).2, 0.0);
        assert_eq!(no_rate.tick(None).2, 0.0);
    }

    #[test]
    fn with_skipped_frames_indices_follow_timestamps_and_each_stride_slot_is_sampled_once() {
        let mut c = clock(4);
        c.all_pts = Some((0..16).map(|n| 10_906 + n * TICK).collect());
        // Frames 0, 2, 3, 6, 7, 9, 13 decoded (the others skipped by FFmpeg).
        let got: Vec<(u64, bool)> = [0, 2, 3, 6, 7, 9, 13].iter().map(|&n| c.tick(Some(10_906 + n * TICK))).map(|(i, s, _)| (i, s)).collect();
        assert_eq!(got, [(0, true), (2, false), (3, false), (6, true), (7, false), (9, true), (13, true)]);
    }

    #[test]
    fn with_a_variable_frame_rate_indices_are_timestamp_ranks() {
        // Frame periods of 1, 1, 3, 1, 2 ticks (dropped frames): a frame-rate formula would
        // number the fourth frame 5, its rank is 3.
        let pts = [0, 512, 1024, 2560, 3072, 4096];
        let mut c = clock(2);
        c.all_pts = Some(pts.iter().map(|p| 10_906 + p).collect());
        let got: Vec<(u64, bool)> = [0, 1024, 2560, 4096].iter().map(|&p| c.tick(Some(10_906 + p))).map(|(i, s, _)| (i, s)).collect();
        assert_eq!(got, [(0, true), (2, true), (3, false), (5, true)]);
    }

    #[test]
    fn a_resumed_clock_numbers_and_samples_as_if_never_stopped() {
        let mut straight = clock(3);
        let all: Vec<_> = (0..10).map(|i| straight.tick(Some(10_906 + i * TICK))).collect();
        let mut resumed = clock(3);
        resumed.resume(7, all[6].2);
        let rest: Vec<_> = (7..10).map(|i| resumed.tick(Some(10_906 + i * TICK))).collect();
        assert_eq!(rest, all[7..]);
    }
}
