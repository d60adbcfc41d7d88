//! CPU fairness between quick and long-running evaluations.
//!
//! Evaluations are futures on the server's async workers and yield to the
//! executor every epoch tick. Without a bound, evaluations that loop until
//! their timeout share the workers round-robin with everything else and take
//! CPU in proportion to their number: measured, 16 looping evaluations left a
//! healthy policy on the same server 5 % of its throughput.
//!
//! So an evaluation still running after a short grace must hold one of a few
//! *long-running permits* (by default half the async workers) to go on.
//! Without one it waits, using no CPU, until a permit frees up or its deadline
//! passes (then it is interrupted as a timeout). Long-running evaluations
//! take turns: each gives its permit back at every tick, and the semaphore
//! hands it to the one that has waited longest, so a slow but legitimate
//! policy still progresses beside policies that loop until their timeout.
//! Long-running evaluations together can therefore never use more than that
//! many cores, and quick ones — nearly every admission review, which ends in
//! microseconds — never reach the grace and never wait.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

/// Epoch ticks an evaluation runs before it needs a long-running permit: with
/// a 1 ms tick, 2–3 ms of wall-clock time.
pub const GRACE_TICKS: u32 = 3;

/// The long-running permits of one engine.
pub struct LongRunning {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl LongRunning {
    /// `capacity` long-running evaluations may run at once (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// How many long-running evaluations may run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The pacing of one evaluation that must stop at `deadline`.
    pub fn pacer(&self, deadline: Instant) -> Pacer {
        Pacer {
            permits: self.permits.clone(),
            held: Arc::new(Mutex::new(None)),
            deadline,
            ticks: 0,
        }
    }
}

/// Decides, at each epoch tick of one evaluation, whether it stops, goes on,
/// or first waits for its turn with a long-running permit. A permit is held
/// for one tick at a time, or until the pacer (owned by the evaluation's
/// store) is dropped.
pub struct Pacer {
    permits: Arc<Semaphore>,
    /// Filled by the waiting future, which must be `'static`: hence shared.
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    deadline: Instant,
    ticks: u32,
}

impl Pacer {
    /// What the evaluation does at this tick (the store's epoch deadline callback).
    pub fn on_tick(&mut self) -> UpdateDeadline {
        if Instant::now() >= self.deadline {
            return UpdateDeadline::Interrupt;
        }
        self.ticks = self.ticks.saturating_add(1);
        if self.ticks < GRACE_TICKS {
            return UpdateDeadline::Yield(1);
        }
        // Give the permit back: tokio's semaphore is fair, so it goes to the
        // longest waiter if there is one, and this evaluation queues behind.
        drop(self.slot().take());
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            *self.slot() = Some(permit);
            return UpdateDeadline::Yield(1);
        }
        let permits = self.permits.clone();
        let held = self.held.clone();
        let deadline = self.deadline;
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                // At the deadline the wait ends without a permit; the next
                // tick then interrupts the evaluation.
                if let Ok(Ok(permit)) = tokio::time::timeout_at(deadline.into(), permits.acquire_owned()).await {
                    *held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(permit);
                }
            }),
        )
    }

    /// Whether this evaluation holds a long-running permit.
    #[cfg(test)]
    fn holds_permit(&self) -> bool {
        self.slot().is_some()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Ticks a pacer through its grace period.
    fn past_grace(pacer: &mut Pacer) {
        for _ in 1..GRACE_TICKS {
            assert!(matches!(pacer.on_tick(), UpdateDeadline::Yield(1)));
            assert!(!pacer.holds_permit(), "no permit is needed within the grace");
        }
    }

    #[test]
    fn a_quick_evaluation_never_takes_a_permit() {
        let lanes = LongRunning::new(1);
        let mut pacer = lanes.pacer(far());
        past_grace(&mut pacer);
        assert_eq!(lanes.permits.available_permits(), 1);
    }

    #[test]
    fn past_the_grace_an_evaluation_takes_a_free_permit_and_releases_it_when_dropped() {
        let lanes = LongRunning::new(1);
        let mut pacer = lanes.pacer(far());
        past_grace(&mut pacer);
        assert!(matches!(pacer.on_tick(), UpdateDeadline::Yield(1)));
        assert!(pacer.holds_permit());
        assert!(
            matches!(pacer.on_tick(), UpdateDeadline::Yield(1)),
            "with nobody waiting, it gets its permit straight back"
        );
        assert_eq!(lanes.permits.available_permits(), 0);
        drop(pacer);
        assert_eq!(lanes.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn long_running_evaluations_take_turns() {
        let lanes = LongRunning::new(1);
        let mut first = lanes.pacer(far());
        past_grace(&mut first);
        first.on_tick();
        assert!(first.holds_permit());

        let mut second = lanes.pacer(far());
        past_grace(&mut second);
        let UpdateDeadline::YieldCustom(1, wait) = second.on_tick() else {
            panic!("the second long-running evaluation must wait");
        };
        let waiting = tokio::spawn(wait);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "it waits while the permit is held");

        // The first one's next tick hands the permit over and queues it.
        let UpdateDeadline::YieldCustom(1, first_waits) = first.on_tick() else {
            panic!("the first must wait for its next turn");
        };
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the handed-over permit ends the wait")
            .unwrap();
        assert!(second.holds_permit());
        assert!(!first.holds_permit());

        let first_waiting = tokio::spawn(first_waits);
        tokio::time::sleep(Duration::from_millis(20)).await; // it queues for the permit
        let UpdateDeadline::YieldCustom(1, _second_waits) = second.on_tick() else {
            panic!("and then it is the first one's turn again");
        };
        tokio::time::timeout(Duration::from_secs(5), first_waiting)
            .await
            .expect("the first gets its turn back")
            .unwrap();
        assert!(first.holds_permit());
    }

    #[tokio::test]
    async fn a_wait_ends_at_the_deadline_and_the_next_tick_interrupts() {
        let lanes = LongRunning::new(1);
        let mut holder = lanes.pacer(far());
        past_grace(&mut holder);
        holder.on_tick();

        let deadline = Instant::now() + Duration::from_millis(30);
        let mut late = lanes.pacer(deadline);
        past_grace(&mut late);
        let UpdateDeadline::YieldCustom(_, wait) = late.on_tick() else {
            panic!("no permit is free");
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the wait ends at the deadline");
        assert!(Instant::now() >= deadline);
        assert!(!late.holds_permit());
        assert!(matches!(late.on_tick(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn capacity_is_at_least_one() {
        assert_eq!(LongRunning::new(0).capacity(), 1);
        assert_eq!(LongRunning::new(3).capacity(), 3);
    }
}
