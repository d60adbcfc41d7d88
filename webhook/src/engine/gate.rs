//! Back-pressure for evaluations: a counting semaphore with a deadline.
//!
//! The pooling allocator has a fixed number of instance slots and fails at
//! once when they are all taken, so the engine never lets more evaluations
//! run than there are slots. A caller waits for a slot at most until its own
//! deadline, then gets a typed overload failure instead of hanging. Waiting
//! is asynchronous: a review waiting for a slot never blocks a worker thread
//! the reviews holding the slots need.

use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};

/// A counting semaphore whose `acquire` gives up at a deadline.
pub struct Gate {
    slots: Semaphore,
    capacity: usize,
}

/// A held slot, released on drop.
pub type Permit<'a> = SemaphorePermit<'a>;

impl Gate {
    /// A gate that lets `capacity` holders through at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: Semaphore::new(capacity),
            capacity,
        }
    }

    /// How many holders may pass at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Waits for a slot until `deadline`; `None` if none freed up in time.
    /// Needs a Tokio timer only when it has to wait.
    pub async fn acquire(&self, deadline: Instant) -> Option<Permit<'_>> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Some(permit);
        }
        tokio::time::timeout_at(deadline.into(), self.slots.acquire())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn acquire_gives_up_at_the_deadline_and_release_frees_a_slot() {
        let gate = Gate::new(1);
        let first = gate.acquire(Instant::now()).await.expect("a free slot");
        let started = Instant::now();
        assert!(gate.acquire(Instant::now() + Duration::from_millis(20)).await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(20));
        drop(first);
        assert!(gate.acquire(Instant::now()).await.is_some());
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_a_release() {
        let gate = std::sync::Arc::new(Gate::new(1));
        let held = gate.acquire(Instant::now()).await.unwrap();
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire(Instant::now() + Duration::from_secs(10)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
