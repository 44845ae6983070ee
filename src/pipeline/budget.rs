//! A counting semaphore of CPU permits: a stage holds as many permits as it runs busy threads,
//! so the stages together never exceed `--threads`, whatever their own thread settings.
//!
//! The inference stage is flexible: it has sessions for two thread counts and takes the larger
//! share only when nobody else is waiting, so decoding overlaps inference instead of queueing
//! behind it. Decoding runs in bursts; past its soft length a burst ends at the first moment the
//! flexible stage waits for the larger share, so hand-overs cost a frame, not a model call.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub struct CpuBudget {
    total: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    free: usize,
    /// Stages blocked in [`CpuBudget::run`] for a fixed number of permits.
    waiting: usize,
    /// A burst is past its soft length: the flexible stage waits for it rather than squeeze in.
    yielding: bool,
    /// The flexible stage is blocked waiting for permits.
    flexible_waiting: bool,
}

impl CpuBudget {
    pub fn new(total: usize) -> Self {
        let total = total.max(1);
        Self { total, state: Mutex::new(State { free: total, waiting: 0, yielding: false, flexible_waiting: false }), freed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` while holding `permits` (capped at the budget), waiting until they are free.
    pub fn run<T>(&self, permits: usize, work: impl FnOnce() -> T) -> T {
        let want = permits.clamp(1, self.total);
        {
            let mut state = self.lock();
            state.waiting += 1;
            while state.free < want {
                state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.waiting -= 1;
            state.free -= want;
        }
        let _release = Release { budget: self, permits: want };
        work()
    }

    /// Runs `work(n)` with `n = most` permits when that many are free and no other stage is
    /// waiting, else with `n = least` as soon as that many are free.
    pub fn run_flexible<T>(&self, most: usize, least: usize, work: impl FnOnce(usize) -> T) -> T {
        let most = most.clamp(1, self.total);
        let least = least.clamp(1, most);
        let took = {
            let mut state = self.lock();
            let took = loop {
                if state.free >= most && state.waiting == 0 {
                    break most;
                }
                if state.free >= least && !state.yielding {
                    break least;
                }
                state.flexible_waiting = true;
                state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
            };
            state.flexible_waiting = false;
            state.free -= took;
            took
        };
        let _release = Release { budget: self, permits: took };
        work(took)
    }

    /// Runs a burst of work under `permits`. `work` gets a [`Burst`] to ask, between items,
    /// whether to stop: once past its soft length, as soon as the flexible stage waits.
    pub fn run_burst<T>(&self, permits: usize, work: impl FnOnce(&Burst) -> T) -> T {
        self.run(permits, || work(&Burst { budget: self }))
    }

    /// [`run`](Self::run), also returning how long `work` itself took (the wait for permits
    /// excluded), so stage timings measure work rather than contention.
    pub fn timed<T>(&self, permits: usize, work: impl FnOnce() -> T) -> (T, Duration) {
        self.run(permits, || {
            let start = Instant::now();
            let out = work();
            (out, start.elapsed())
        })
    }
}

/// A running burst's view of the budget.
pub struct Burst<'a> {
    budget: &'a CpuBudget,
}

impl Burst<'_> {
    /// Call when the burst has done its soft length of work; from then on the flexible stage
    /// waits for this burst instead of starting a call on the smaller share.
    pub fn past_soft_length(&self) {
        self.budget.lock().yielding = true;
    }

    /// Whether the flexible stage is waiting for this burst's permits.
    pub fn someone_waits(&self) -> bool {
        self.budget.lock().flexible_waiting
    }
}

/// A burst ends (even by a panic) no longer yielding.
impl Drop for Burst<'_> {
    fn drop(&mut self) {
        self.budget.lock().yielding = false;
    }
}

/// Gives permits back even if `work` panics.
struct Release<'a> {
    budget: &'a CpuBudget,
    permits: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.budget.lock().free += self.permits;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn never_more_busy_than_the_budget() {
        let budget = Arc::new(CpuBudget::new(3));
        let busy = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (budget, busy, peak) = (budget.clone(), busy.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let n = 1 + i % 2;
                        budget.run(n, || {
                            let now = busy.fetch_add(n, Ordering::SeqCst) + n;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            busy.fetch_sub(n, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(budget.lock().free, 3, "all permits returned");
    }

    #[test]
    fn flexible_stage_takes_all_when_alone_and_gives_way_to_a_waiter() {
        let budget = Arc::new(CpuBudget::new(2));
        assert_eq!(budget.run_flexible(2, 1, |n| n), 2, "alone: the larger share");
        // Another stage holds one permit: the flexible one runs on the rest at once.
        let inside = budget.run(1, || budget.run_flexible(2, 1, |n| n));
        assert_eq!(inside, 1);
        // Another stage waits for its permit: the flexible one leaves it room.
        let waiting = {
            budget.lock().waiting += 1;
            let n = budget.run_flexible(2, 1, |n| n);
            budget.lock().waiting -= 1;
            n
        };
        assert_eq!(waiting, 1);
        assert_eq!(budget.lock().free, 2);
    }

    #[test]
    fn a_burst_past_its_soft_length_ends_when_the_flexible_stage_waits() {
        let budget = Arc::new(CpuBudget::new(2));
        let flexible = {
            let budget = budget.clone();
            move || budget.run_flexible(2, 1, |n| n)
        };
        let items = budget.run_burst(1, |burst| {
            burst.past_soft_length();
            let other = std::thread::spawn(flexible.clone());
            let mut items = 0;
            while !burst.someone_waits() {
                items += 1;
                std::thread::yield_now();
            }
            (items, other)
        });
        // The flexible stage did not squeeze in beside the yielding burst: it got both permits.
        assert_eq!(items.1.join().unwrap(), 2);
        assert!(!budget.lock().yielding);
    }

    #[test]
    fn oversized_request_is_capped() {
        assert_eq!(CpuBudget::new(2).run(16, || 7), 7);
    }
}
