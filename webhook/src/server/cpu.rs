//! The CPU time a review spends in its policy, for the
//! `wasmhook_policy_cpu_seconds` metric: which policy costs the server how
//! much, and what the Wasm path costs under real load rather than in a
//! benchmark loop.
//!
//! Wall time cannot say it (a review waits for a slot, and an evaluation
//! yields to other reviews at every epoch tick), and neither can the thread's
//! total (between two polls the worker runs other reviews). So the worker
//! thread's CPU clock is read around each poll of the evaluation and summed:
//! instantiation, the guest's run, the instance's teardown and the patch the
//! server computes from the verdict, wherever the polls ran.
//!
//! Reading a thread's CPU clock is a system call (~0.5 µs on the benchmark
//! machine, against ~0.02 µs for the monotonic clock), so one evaluation in
//! [`SAMPLE_EVERY`] of each policy is measured: the first, the 17th, …

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// One evaluation in this many is measured.
pub const SAMPLE_EVERY: u64 = 16;

/// Picks the evaluations of one policy to measure.
#[derive(Debug, Default)]
pub struct Sampler {
    evaluations: AtomicU64,
}

impl Sampler {
    /// Whether to measure the evaluation starting now: the first one, then
    /// one in [`SAMPLE_EVERY`].
    pub fn sample(&self) -> bool {
        self.evaluations
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SAMPLE_EVERY)
    }
}

/// The CPU time the calling thread has run so far.
fn thread_cpu_time() -> Duration {
    let time = clock_gettime(ClockId::ThreadCPUTime);
    // A thread's CPU clock is never negative.
    Duration::new(time.tv_sec.unsigned_abs(), time.tv_nsec.clamp(0, 999_999_999) as u32)
}

pin_project_lite::pin_project! {
    /// A future, and the CPU time its polls took on the threads that ran
    /// them (not the time it spent waiting).
    pub struct CpuTimed<F> {
        #[pin]
        inner: F,
        spent: Duration,
    }
}

impl<F> CpuTimed<F> {
    /// Measures `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let start = thread_cpu_time();
        let poll = this.inner.poll(cx);
        *this.spent += thread_cpu_time().saturating_sub(start);
        poll.map(|output| (output, *this.spent))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Keeps the thread busy for `length` of wall time.
    fn spin(length: Duration) {
        let start = Instant::now();
        while start.elapsed() < length {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn the_first_evaluation_and_then_one_in_sample_every_are_measured() {
        let sampler = Sampler::default();
        let measured: Vec<u64> = (0..3 * SAMPLE_EVERY).filter(|_| sampler.sample()).collect();
        assert_eq!(measured.len(), 3);
        let sampler = Sampler::default();
        let picks: Vec<bool> = (0..SAMPLE_EVERY + 1).map(|_| sampler.sample()).collect();
        assert!(picks[0] && picks[SAMPLE_EVERY as usize]);
        assert!(picks[1..SAMPLE_EVERY as usize].iter().all(|pick| !pick));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn its_polls_are_counted_and_not_what_the_thread_did_in_between() {
        // Runs on this thread while the measured future waits.
        let neighbour = tokio::spawn(async { spin(Duration::from_millis(150)) });
        let work = async {
            spin(Duration::from_millis(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
            spin(Duration::from_millis(30));
            7
        };
        let started = Instant::now();
        let (output, spent) = CpuTimed::new(work).await;
        neighbour.await.unwrap();
        assert_eq!(output, 7);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Two polls of 30 ms of spinning each (less if the thread was
        // preempted while spinning); not the neighbour's 150 ms.
        assert!(spent <= Duration::from_millis(100), "{spent:?}");
        assert!(spent >= Duration::from_millis(5), "{spent:?}");
    }
}
