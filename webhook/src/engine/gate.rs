//! Back-pressure for evaluations: a counting semaphore with a deadline.
//!
//! The pooling allocator has a fixed number of instance slots and fails at
//! once when they are all taken, so the engine never lets more evaluations
//! run than there are slots. A caller waits for a slot at most until its own
//! deadline, then gets a typed overload failure instead of hanging.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// A counting semaphore whose `acquire` gives up at a deadline.
pub struct Gate {
    free: Mutex<usize>,
    released: Condvar,
    capacity: usize,
}

impl Gate {
    /// A gate that lets `capacity` holders through at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            free: Mutex::new(capacity),
            released: Condvar::new(),
            capacity,
        }
    }

    /// How many holders may pass at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Waits for a slot until `deadline`; `None` if none freed up in time.
    pub fn acquire(&self, deadline: Instant) -> Option<Permit<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            free = self
                .released
                .wait_timeout(free, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= 1;
        Some(Permit { gate: self })
    }
}

/// A held slot, released on drop.
pub struct Permit<'a> {
    gate: &'a Gate,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.gate.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.gate.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn acquire_gives_up_at_the_deadline_and_release_frees_a_slot() {
        let gate = Gate::new(1);
        let first = gate.acquire(Instant::now()).expect("a free slot");
        let started = Instant::now();
        assert!(gate.acquire(Instant::now() + Duration::from_millis(20)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(20));
        drop(first);
        assert!(gate.acquire(Instant::now()).is_some());
    }

    #[test]
    fn a_waiter_is_woken_by_a_release() {
        let gate = Gate::new(1);
        let held = gate.acquire(Instant::now()).unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| gate.acquire(Instant::now() + Duration::from_secs(10)).is_some());
            std::thread::sleep(Duration::from_millis(10));
            drop(held);
            assert!(waiter.join().unwrap());
        });
    }
}
