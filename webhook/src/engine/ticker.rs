//! The epoch ticker that makes wall-clock timeouts possible.
//!
//! wasmtime interrupts a guest when the engine's epoch passes the store's
//! deadline. A coarse tick would let a 1 ms request that straddles a tick be
//! killed, and would let the real cutoff drift far past the configured one;
//! this ticker advances the epoch every millisecond while evaluations are in
//! flight, and for a short grace after the last one ended; then it parks, so
//! an idle server never wakes. Under load, evaluations start and end many
//! times per tick: starting one is two atomic operations, and only the start
//! that finds the ticker parked wakes it (a futex call and a context switch
//! per review, measured before the grace, is what this avoids). The deadline
//! callback checks the real clock, so the tick only bounds how late a cutoff
//! can fire, never how early.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often the epoch advances while an evaluation runs.
pub const TICK: Duration = Duration::from_millis(1);

/// How long the ticker goes on ticking after the last evaluation ended
/// before it parks.
const IDLE_GRACE: Duration = Duration::from_millis(100);

/// Advances an engine's epoch while evaluations are in flight.
pub struct EpochTicker {
    shared: Arc<Shared>,
}

struct Shared {
    in_flight: AtomicUsize,
    /// Set (under `wake`) while the ticker waits on `wakeup`.
    parked: AtomicBool,
    wake: Mutex<bool>,
    wakeup: Condvar,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`. The thread ends with the process
    /// (the engine lives as long as the server).
    pub fn start(engine: wasmtime::Engine) -> Self {
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            wake: Mutex::new(false),
            wakeup: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("wasmhook-epoch".into())
            .spawn(move || {
                // Ticks follow the clock, not the sleeps: a 1 ms sleep lasts
                // ~1.05–1.1 ms, and over a 1 s timeout that drift would add
                // up to a late cutoff.
                let mut next_tick = Instant::now() + TICK;
                let mut last_busy = Instant::now();
                while let Some(shared) = weak.upgrade() {
                    if shared.in_flight.load(Ordering::SeqCst) > 0 {
                        last_busy = Instant::now();
                    } else if last_busy.elapsed() >= IDLE_GRACE {
                        if !wait_for_work(&shared) {
                            return;
                        }
                        last_busy = Instant::now();
                        next_tick = last_busy + TICK;
                    }
                    drop(shared);
                    let now = Instant::now();
                    if next_tick > now {
                        thread::sleep(next_tick - now);
                    }
                    let now = Instant::now();
                    while next_tick <= now {
                        engine.increment_epoch();
                        next_tick += TICK;
                    }
                }
            })
            .expect("cannot start the epoch ticker thread");
        Self { shared }
    }

    /// Marks an evaluation as running until the guard is dropped.
    pub fn running(&self) -> RunningGuard<'_> {
        // SeqCst here and in `wait_for_work`: either the ticker sees this
        // evaluation before it waits, or this sees it parked and wakes it.
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            let mut woken = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            *woken = true;
            self.shared.wakeup.notify_one();
        }
        RunningGuard { ticker: self }
    }
}

/// Sleeps until an evaluation starts; `false` when the ticker was dropped.
fn wait_for_work(shared: &Arc<Shared>) -> bool {
    let mut woken = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
    shared.parked.store(true, Ordering::SeqCst);
    while !*woken && shared.in_flight.load(Ordering::SeqCst) == 0 {
        // Wake periodically to notice that the engine was dropped.
        let (guard, _) = shared
            .wakeup
            .wait_timeout(woken, Duration::from_secs(1))
            .unwrap_or_else(|p| p.into_inner());
        woken = guard;
        if Arc::strong_count(shared) == 1 {
            shared.parked.store(false, Ordering::SeqCst);
            return false;
        }
    }
    shared.parked.store(false, Ordering::SeqCst);
    *woken = false;
    true
}

/// Keeps the ticker running while it lives.
pub struct RunningGuard<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.ticker.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to a second for `condition`.
    fn eventually(condition: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            thread::sleep(Duration::from_millis(2));
        }
        condition()
    }

    #[test]
    fn the_ticker_parks_after_the_grace_and_the_next_evaluation_wakes_it() {
        let ticker = EpochTicker::start(wasmtime::Engine::default());
        let parked = || ticker.shared.parked.load(Ordering::SeqCst);
        assert!(eventually(parked), "an idle ticker parks");

        let running = ticker.running();
        assert!(eventually(|| !parked()), "an evaluation wakes it");
        // While an evaluation runs it never parks, however long it takes.
        thread::sleep(IDLE_GRACE * 2);
        assert!(!parked());
        drop(running);

        // An ended evaluation keeps it ticking for the grace (counted from
        // the last tick that saw it, so allow for a late tick), then it parks.
        let ended = Instant::now();
        assert!(eventually(parked));
        assert!(ended.elapsed() >= IDLE_GRACE / 4, "parked after {:?}", ended.elapsed());
    }
}
