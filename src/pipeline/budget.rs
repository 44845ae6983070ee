//! A counting semaphore of CPU permits: a stage holds as many permits as it runs busy threads,
//! so the stages together never exceed `--threads`, whatever their own thread settings.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct CpuBudget {
    total: usize,
    free: Mutex<usize>,
    freed: Condvar,
}

impl CpuBudget {
    pub fn new(total: usize) -> Self {
        let total = total.max(1);
        Self { total, free: Mutex::new(total), freed: Condvar::new() }
    }

    /// Runs `work` while holding `permits` (capped at the budget), waiting until they are free.
    pub fn run<T>(&self, permits: usize, work: impl FnOnce() -> T) -> T {
        let want = permits.clamp(1, self.total);
        {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            while *free < want {
                free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
            }
            *free -= want;
        }
        let _release = Release { budget: self, permits: want };
        work()
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

/// Gives permits back even if `work` panics.
struct Release<'a> {
    budget: &'a CpuBudget,
    permits: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        *self.budget.free.lock().unwrap_or_else(PoisonError::into_inner) += self.permits;
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
        assert_eq!(*budget.free.lock().unwrap(), 3, "all permits returned");
    }

    #[test]
    fn oversized_request_is_capped() {
        assert_eq!(CpuBudget::new(2).run(16, || 7), 7);
    }
}
