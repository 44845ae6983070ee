//! A counting semaphore of CPU permits: a stage holds as many permits as it runs busy threads,
//! so the stages together never exceed `--threads`, whatever their own thread settings.
//!
//! Decoding asks first ([`CpuBudget::run_first`]): while it waits, permits freed by model
//! workers go to it, so the frames the workers will need next are never starved by workers
//! taking turn after turn.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::output::manifest::ThreadSplit;

pub struct CpuBudget {
    total: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    free: usize,
    /// Stages blocked in [`CpuBudget::run_first`].
    first_waiting: usize,
}

impl CpuBudget {
    pub fn new(total: usize) -> Self {
        let total = total.max(1);
        Self { total, state: Mutex::new(State { free: total, first_waiting: 0 }), freed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` while holding `permits` (capped at the budget), waiting until they are free
    /// and no [`run_first`](Self::run_first) caller is waiting.
    pub fn run<T>(&self, permits: usize, work: impl FnOnce() -> T) -> T {
        self.acquire(permits, false, work)
    }

    /// [`run`](Self::run), ahead of every plain `run` waiting.
    pub fn run_first<T>(&self, permits: usize, work: impl FnOnce() -> T) -> T {
        self.acquire(permits, true, work)
    }

    fn acquire<T>(&self, permits: usize, first: bool, work: impl FnOnce() -> T) -> T {
        let want = permits.clamp(1, self.total);
        {
            let mut state = self.lock();
            if first {
                state.first_waiting += 1;
            }
            while state.free < want || (!first && state.first_waiting > 0) {
                state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if first {
                state.first_waiting -= 1;
            }
            state.free -= want;
        }
        let _release = Release { budget: self, permits: want };
        work()
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

/// Model workers at most: past this, workers get more intra-op threads instead (each worker
/// holds its own sessions, so memory grows with their number).
const MAX_WORKERS: usize = 4;

impl ThreadSplit {
    /// One-thread workers, one per permit, up to [`MAX_WORKERS`]; decoding takes a quarter of
    /// the budget (at least one thread), or all of it when no model runs.
    pub fn plan(budget: usize, models: bool) -> Self {
        let budget = budget.max(1);
        if !models {
            return Self { budget, decode: budget, workers: 0, worker_threads: 0 };
        }
        let worker_threads = budget.div_ceil(MAX_WORKERS);
        Self { budget, decode: (budget / 4).max(1), workers: budget / worker_threads, worker_threads }
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
    fn a_first_caller_gets_the_next_free_permit() {
        let budget = Arc::new(CpuBudget::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (plain, first) = budget.run(1, || {
            let spawn = |name: &'static str, first: bool| {
                let (budget, order) = (budget.clone(), order.clone());
                std::thread::spawn(move || {
                    let push = || order.lock().unwrap().push(name);
                    if first {
                        budget.run_first(1, push)
                    } else {
                        budget.run(1, push)
                    }
                })
            };
            let plain = spawn("plain", false);
            // The plain caller is surely waiting before the first one starts to.
            std::thread::sleep(std::time::Duration::from_millis(50));
            let first = spawn("first", true);
            while budget.lock().first_waiting == 0 {
                std::thread::yield_now();
            }
            (plain, first)
        });
        plain.join().unwrap();
        first.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "plain"]);
        assert_eq!(budget.lock().free, 1);
    }

    #[test]
    fn oversized_request_is_capped() {
        assert_eq!(CpuBudget::new(2).run(16, || 7), 7);
    }
}

#[cfg(test)]
mod split_tests {
    use crate::output::manifest::ThreadSplit;

    #[test]
    fn split_never_exceeds_the_budget() {
        for budget in 1..=32 {
            let s = ThreadSplit::plan(budget, true);
            assert!(s.decode >= 1 && s.decode <= budget, "{s:?}");
            assert!(s.workers >= 1 && s.workers <= 4 && s.workers * s.worker_threads <= budget, "{s:?}");
            // Few permits left idle by the workers.
            assert!(budget - s.workers * s.worker_threads < s.worker_threads, "{s:?}");
            assert_eq!(ThreadSplit::plan(budget, false).decode, budget);
        }
        assert_eq!(ThreadSplit::plan(1, true), ThreadSplit { budget: 1, decode: 1, workers: 1, worker_threads: 1 });
        assert_eq!(ThreadSplit::plan(2, true), ThreadSplit { budget: 2, decode: 1, workers: 2, worker_threads: 1 });
        assert_eq!(ThreadSplit::plan(16, true), ThreadSplit { budget: 16, decode: 4, workers: 4, worker_threads: 4 });
    }
}
