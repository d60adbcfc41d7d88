//! The epoch ticker that makes wall-clock timeouts possible.
//!
//! wasmtime interrupts a guest when the engine's epoch passes the store's
//! deadline. A coarse tick would let a 1 ms request that straddles a tick be
//! killed, and would let the real cutoff drift far past the configured one;
//! this ticker advances the epoch every millisecond while evaluations are in
//! flight (and sleeps while none are, so an idle server never wakes). The
//! deadline callback checks the real clock, so the tick only bounds how late
//! a cutoff can fire, never how early.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often the epoch advances while an evaluation runs.
pub const TICK: Duration = Duration::from_millis(1);

/// Advances an engine's epoch while evaluations are in flight.
pub struct EpochTicker {
    shared: Arc<Shared>,
}

struct Shared {
    in_flight: AtomicUsize,
    wake: Mutex<bool>,
    wakeup: Condvar,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`. The thread ends with the process
    /// (the engine lives as long as the server).
    pub fn start(engine: wasmtime::Engine) -> Self {
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
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
                while let Some(shared) = weak.upgrade() {
                    if shared.in_flight.load(Ordering::Acquire) == 0 {
                        if !wait_for_work(&shared) {
                            return;
                        }
                        next_tick = Instant::now() + TICK;
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
        if self.shared.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
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
    while !*woken && shared.in_flight.load(Ordering::Acquire) == 0 {
        // Wake periodically to notice that the engine was dropped.
        let (guard, _) = shared
            .wakeup
            .wait_timeout(woken, Duration::from_secs(1))
            .unwrap_or_else(|p| p.into_inner());
        woken = guard;
        if Arc::strong_count(shared) == 1 {
            return false;
        }
    }
    *woken = false;
    true
}

/// Keeps the ticker running while it lives.
pub struct RunningGuard<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.ticker.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
