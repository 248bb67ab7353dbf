//! Time for the IO shell: the wall clock in production, a simulated clock
//! that jumps instead of sleeping in tests, the example and benchmarks.
//!
//! The engine never uses this; its callers read the time and pass it in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::Timestamp;

/// A source of time that the incident loop and observer can also wait on.
#[trait_variant::make(Send)]
pub trait Clock: Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Waits for `d`.
    async fn sleep(&self, d: Duration);
    /// Waits up to `d` for someone else (a human, an LLM) to act: a
    /// simulated clock may skip ahead through a [`Clock::sleep`], but not
    /// through the time others are given.
    async fn idle(&self, d: Duration);
}

/// The system's wall clock and tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Timestamp(ms)
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }

    async fn idle(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// A simulated clock: `sleep` advances it at once, so a 60 s rapid-check
/// window takes no real time. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> SimClock {
        SimClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }

    async fn sleep(&self, d: Duration) {
        self.advance(d);
        // Let other tasks (an approver, a test driver) run as a real sleep would.
        tokio::task::yield_now().await
    }

    /// On tokio's timer (paused in tests, so it passes as soon as nothing
    /// else can run), then the simulated time moves on by as much.
    async fn idle(&self, d: Duration) {
        tokio::time::sleep(d).await;
        self.advance(d);
    }
}
