//! A fixed team of threads for the one-token decoding step.
//!
//! Generating one token runs ~150 small parallel products a token (each a few hundred
//! microseconds on two cores). Under rayon, a thread that runs out of work first yields and
//! then sleeps, and waking it for the next product costs more than the product's tail: on the
//! 1.5B model at two threads that was ~100 context switches a token and two-thread scaling of
//! 1.7× where llama.cpp reaches 1.9×. The team's helpers instead spin on a counter between
//! jobs (for up to [`SPIN`], then park until the next job), and the calling thread works
//! alongside them; tasks are taken from a shared counter, so the faster thread simply takes
//! more of them.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// The job of the current round: a borrowed closure, valid until every helper is done.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once a round; helpers watch it.
    round: AtomicUsize,
    job: UnsafeCell<Option<Job>>,
    tasks: AtomicUsize,
    next: AtomicUsize,
    /// Helpers still in the current round.
    busy: AtomicUsize,
    /// A helper's task panicked this round.
    panicked: AtomicBool,
    stop: AtomicBool,
    parked: Mutex<usize>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread in `Team::run` before it publishes the round
// (release) and read by helpers after they see it (acquire); it is not touched again until
// every helper has reported back, so no access races.
unsafe impl Sync for Shared {}
// SAFETY: the only non-`Send` field is the job pointer, which is meaningful only during a
// round and never dereferenced outside one (see above).
unsafe impl Send for Shared {}

/// A team of `threads - 1` helpers plus whichever thread calls [`Team::run`].
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    /// Serialises rounds: one job at a time.
    lock: Mutex<()>,
}

impl Team {
    /// A team of `threads` (the caller counts as one; `threads ≤ 1` runs everything on the
    /// caller).
    pub fn new(threads: usize) -> Team {
        let shared = Arc::new(Shared {
            round: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            parked: Mutex::new(0),
            wake: Condvar::new(),
        });
        let helpers = (1..threads.max(1))
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("team-{i}"))
                    .spawn(move || helper(&s))
                    .expect("spawning a decoding thread")
            })
            .collect();
        Team {
            shared,
            helpers,
            lock: Mutex::new(()),
        }
    }

    /// Threads that work on a round, the caller included.
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `f(0..tasks)`, each index once, on the team; returns when all are done.
    /// A panic in any task is raised here after the round ends.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.helpers.is_empty() || tasks <= 1 {
            (0..tasks).for_each(f);
            return;
        }
        let _round = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: no helper reads `job` until the round is published below, and the previous
        // round ended with every helper done (`busy == 0`).
        unsafe {
            *s.job.get() = Some(std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f));
        }
        s.tasks.store(tasks, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.busy.store(self.helpers.len(), Ordering::Relaxed);
        s.round.fetch_add(1, Ordering::Release);
        if *s.parked.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            s.wake.notify_all();
        }
        let caller = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(s, f)));
        while s.busy.load(Ordering::Acquire) > 0 {
            std::hint::spin_loop();
        }
        // SAFETY: every helper is done with the job; the borrow ends here.
        unsafe { *s.job.get() = None };
        if let Err(p) = caller {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a decoding task panicked on a helper thread");
        }
    }
}

/// Takes tasks until none is left.
fn work(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let tasks = s.tasks.load(Ordering::Relaxed);
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        f(i);
    }
}

fn helper(s: &Shared) {
    // Round 0 is "no job yet": a round published before this thread got going is still run.
    let mut seen = 0;
    loop {
        // Spin for the next round, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let now = s.round.load(Ordering::Acquire);
            if now != seen || s.stop.load(Ordering::Relaxed) {
                break;
            }
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
                let mut parked = s.parked.lock().unwrap_or_else(|e| e.into_inner());
                *parked += 1;
                while s.round.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Relaxed) {
                    parked = s.wake.wait(parked).unwrap_or_else(|e| e.into_inner());
                }
                *parked -= 1;
                break;
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = s.round.load(Ordering::Acquire);
        // SAFETY: the round was published after `job` was set, and the caller keeps the
        // closure alive until this helper decrements `busy`.
        let job = unsafe { (*s.job.get()).expect("a published round has a job") };
        let f = unsafe { &*job };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(s, f))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.busy.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        {
            let _parked = self.shared.parked.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_per_round_on_several_threads() {
        let team = Team::new(3);
        for round in 0..200 {
            let tasks = 1 + round % 37;
            let hits: Vec<AtomicU64> = (0..tasks).map(|_| AtomicU64::new(0)).collect();
            team.run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
        // Helpers that parked (no round for longer than the spin) wake for the next one.
        std::thread::sleep(SPIN * 3);
        let threads = Mutex::new(std::collections::HashSet::new());
        team.run(64, &|_| {
            threads.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(Duration::from_millis(1));
        });
        assert!(threads.into_inner().unwrap().len() > 1);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_team_goes_on() {
        let team = Team::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(16, &|i| assert!(i != 9, "task nine"));
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        team.run(16, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.into_inner(), 16);
    }
}
