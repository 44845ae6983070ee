//! A counting semaphore of CPU permits: a stage holds as many permits as it runs busy threads,
//! so the stages together never exceed `--threads`, whatever their own thread settings.
//!
//! Decoding asks first ([`CpuBudget::run_first`]): while it waits, permits freed by model
//! workers go to it, so the frames the workers will need next are never starved by workers
//! taking turn after turn.
//!
//! When the budget is every core the process may run on, each permit is one of those cores
//! ([`CpuBudget::pinned`]): a thread that takes permits runs on their cores. Left to itself, the
//! kernel often wakes the thread that gets a freed permit onto the core that is still busy, and
//! two permit holders then time-share one core beside an idle one for a scheduler tick or more
//! (`perf sched`, README "Where the idle cores went").

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::output::manifest::ThreadSplit;

pub struct CpuBudget {
    state: Mutex<State>,
    freed: Condvar,
    /// The core of each permit, when permits are pinned.
    cores: Option<Vec<usize>>,
}

struct State {
    /// Whether each permit is free.
    free: Vec<bool>,
    /// Stages blocked in [`CpuBudget::run_first`].
    first_waiting: usize,
}

impl State {
    fn free_count(&self) -> usize {
        self.free.iter().filter(|&&f| f).count()
    }
}

impl CpuBudget {
    pub fn new(total: usize) -> Self {
        Self { state: Mutex::new(State { free: vec![true; total.max(1)], first_waiting: 0 }), freed: Condvar::new(), cores: None }
    }

    /// A budget of `total` permits, each pinned to a core when `total` is exactly the cores this
    /// process may run on (fewer permits than cores leave the kernel room to place threads well,
    /// and so does a machine where affinity cannot be read or set). Only for work that starts no
    /// threads of its own: a thread started by a pinned one inherits its core.
    pub fn pinned(total: usize) -> Self {
        let cores = affinity::allowed().filter(|cores| cores.len() == total && cores.len() > 1);
        Self { cores, ..Self::new(total) }
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
        let held: Vec<usize> = {
            let mut state = self.lock();
            let want = permits.clamp(1, state.free.len());
            if first {
                state.first_waiting += 1;
            }
            while state.free_count() < want || (!first && state.first_waiting > 0) {
                state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if first {
                state.first_waiting -= 1;
            }
            let held: Vec<usize> = state.free.iter().enumerate().filter(|(_, &f)| f).map(|(i, _)| i).take(want).collect();
            for &i in &held {
                state.free[i] = false;
            }
            held
        };
        if let Some(cores) = &self.cores {
            // Best effort: a thread that cannot be moved runs where the kernel puts it.
            let _ = affinity::run_on(held.iter().map(|&i| cores[i]));
        }
        let _release = Release { budget: self, held };
        work()
    }
}

/// Gives permits back even if `work` panics.
struct Release<'a> {
    budget: &'a CpuBudget,
    held: Vec<usize>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        for &i in &self.held {
            state.free[i] = true;
        }
        drop(state);
        self.budget.freed.notify_all();
    }
}

/// The calling thread's cores, through Linux's scheduler affinity.
#[cfg(target_os = "linux")]
mod affinity {
    /// The cores this process may run on (its main thread's, as it was started), in order;
    /// `None` when they cannot be read.
    pub fn allowed() -> Option<Vec<usize>> {
        of(unsafe { libc::getpid() })
    }

    /// The cores thread `tid` may run on (0: the calling thread).
    pub fn of(tid: libc::pid_t) -> Option<Vec<usize>> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set, and the call writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
            return None;
        }
        Some((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
    }

    /// Moves the calling thread onto `cores`.
    pub fn run_on(cores: impl Iterator<Item = usize>) -> std::io::Result<()> {
        // SAFETY: as above; CPU_SET only writes inside the set for cores below CPU_SETSIZE,
        // which every core `allowed` returned is.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for c in cores {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        match unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

/// Elsewhere permits are not pinned.
#[cfg(not(target_os = "linux"))]
mod affinity {
    pub fn allowed() -> Option<Vec<usize>> {
        None
    }

    pub fn run_on(_: impl Iterator<Item = usize>) -> std::io::Result<()> {
        Ok(())
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
        assert_eq!(budget.lock().free_count(), 3, "all permits returned");
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
        assert_eq!(budget.lock().free_count(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_permit_runs_its_holder_on_its_core() {
        let allowed = affinity::allowed().expect("affinity readable");
        let (a, b) = (allowed[0], *allowed.last().unwrap());
        let budget = CpuBudget { cores: Some(vec![a, b]), ..CpuBudget::new(2) };
        let on = || affinity::of(0).unwrap();
        std::thread::scope(|s| {
            budget.run(1, || {
                assert_eq!(on(), [a], "the first free permit is the first core");
                s.spawn(|| budget.run(1, || assert_eq!(on(), [b], "the second permit is the second core"))).join().unwrap();
            });
            s.spawn(|| budget.run(2, || assert_eq!(on(), if a == b { vec![a] } else { vec![a, b] }, "two permits, both cores"))).join().unwrap();
        });
        // A budget smaller than the cores (or of one) is not pinned.
        assert!(CpuBudget::pinned(1).cores.is_none());
        if allowed.len() > 1 {
            assert_eq!(CpuBudget::pinned(allowed.len()).cores, Some(allowed.clone()));
            assert!(CpuBudget::pinned(allowed.len() - 1).cores.is_none());
        }
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
