//! Whether a running watch is healthy and ready, for `/healthz` and
//! `/readyz` beside `/metrics`: what an orchestrator (Docker's HEALTHCHECK,
//! systemd, a Swarm service) asks before trusting or restarting it.
//!
//! The watch loop and the event stream report into a [`Health`] (shared,
//! lock-free); [`Health::check`] judges it at a time the caller gives, so
//! the judgement is testable without a clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use crate::clock::{Clock, SystemClock};
use crate::model::Timestamp;

/// How many sweep intervals may pass without a sweep before the loop counts
/// as stuck: a sweep waits for Docker (timeouts of its own), and rapid mode
/// only sweeps more often.
const STALE_INTERVALS: u64 = 3;

/// The event stream, as last reported.
const EVENTS_UNUSED: u8 = 0;
const EVENTS_CONNECTED: u8 = 1;
const EVENTS_LOST: u8 = 2;

/// The health a watch reports. Clones share it.
#[derive(Clone, Debug)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    started_at: Timestamp,
    sweep_interval: Duration,
    /// Milliseconds of the last finished sweep; 0 before the first.
    last_sweep: AtomicU64,
    events: AtomicU8,
    stopping: AtomicBool,
}

/// [`Health::check`]'s verdict: what is wrong, one line each, split by
/// which endpoint it fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// What fails `/healthz` (and `/readyz`): the loop no longer sweeps on
    /// time, or the event stream (if any) is lost.
    pub unhealthy: Vec<String>,
    /// What fails `/readyz` only: no first sweep yet, or a stop begun.
    pub unready: Vec<String>,
}

impl HealthReport {
    /// `/healthz`: nothing unhealthy.
    pub fn live(&self) -> bool {
        self.unhealthy.is_empty()
    }

    /// `/readyz`: live, and nothing else in the way.
    pub fn ready(&self) -> bool {
        self.live() && self.unready.is_empty()
    }
}

impl Health {
    /// A watch that started at `started_at` and sweeps every `sweep_interval`.
    pub fn new(started_at: Timestamp, sweep_interval: Duration) -> Health {
        Health(Arc::new(Inner {
            started_at,
            sweep_interval,
            last_sweep: AtomicU64::new(0),
            events: AtomicU8::new(EVENTS_UNUSED),
            stopping: AtomicBool::new(false),
        }))
    }

    /// A sweep finished at `at`.
    pub fn swept(&self, at: Timestamp) {
        self.0.last_sweep.fetch_max(at.0, Ordering::Relaxed);
    }

    /// The event stream connected (`true`) or broke (`false`).
    pub fn events(&self, connected: bool) {
        self.0.events.store(if connected { EVENTS_CONNECTED } else { EVENTS_LOST }, Ordering::Relaxed);
    }

    /// The watch is stopping (SIGTERM): no longer ready.
    pub fn stopping(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }

    /// The verdict at `now`.
    pub fn check(&self, now: Timestamp) -> HealthReport {
        let i = &self.0;
        let mut report = HealthReport { unhealthy: Vec::new(), unready: Vec::new() };
        let allowed = (i.sweep_interval.as_millis() as u64).saturating_mul(STALE_INTERVALS).max(1_000);
        let last = i.last_sweep.load(Ordering::Relaxed);
        let swept_once = last != 0;
        // Before the first sweep the start is the reference: a watch that
        // never manages one is as stuck as one that stopped sweeping.
        let since = now.millis_since(if swept_once { Timestamp(last) } else { i.started_at });
        if since > allowed {
            report.unhealthy.push(match swept_once {
                true => format!("the last sweep was {} s ago (allowed {} s)", since / 1000, allowed / 1000),
                false => format!("no sweep in the {} s since the start (allowed {} s)", since / 1000, allowed / 1000),
            });
        }
        if i.events.load(Ordering::Relaxed) == EVENTS_LOST {
            report.unhealthy.push("the Docker event stream is lost (reconnecting)".to_string());
        }
        // A stuck start already says there was no sweep.
        if !swept_once && report.unhealthy.is_empty() {
            report.unready.push("no sweep yet".to_string());
        }
        if i.stopping.load(Ordering::Relaxed) {
            report.unready.push("stopping".to_string());
        }
        report
    }
}

/// `/healthz` and `/readyz` for `health`, judged at the system clock's now:
/// 200 `ok`, or 503 with one line per problem.
pub fn router(health: Health) -> axum::Router {
    let answer = |problems: Vec<String>| {
        let (status, body) = match problems.is_empty() {
            true => (StatusCode::OK, "ok\n".to_string()),
            false => (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n"),
        };
        (status, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
    };
    let live = health.clone();
    axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let problems = live.check(SystemClock.now()).unhealthy;
                async move { answer(problems) }
            }),
        )
        .route(
            "/readyz",
            axum::routing::get(move || {
                let HealthReport { mut unhealthy, unready } = health.check(SystemClock.now());
                unhealthy.extend(unready);
                async move { answer(unhealthy) }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_795_766_400_000);

    fn health() -> Health {
        Health::new(T0, Duration::from_secs(30))
    }

    #[test]
    fn ready_after_the_first_sweep_and_live_while_sweeps_stay_recent() {
        let h = health();
        let r = h.check(T0.plus_millis(1_000));
        assert!(r.live() && !r.ready(), "{r:?}");
        assert!(r.unhealthy.is_empty() && r.unready == ["no sweep yet"], "{r:?}");
        h.swept(T0.plus_millis(2_000));
        let r = h.check(T0.plus_millis(3_000));
        assert!(r.live() && r.ready() && r.unhealthy.is_empty() && r.unready.is_empty(), "{r:?}");
        // Three intervals without a sweep: stuck.
        let r = h.check(T0.plus_millis(2_000 + 90_000));
        assert!(r.live(), "{r:?}");
        let r = h.check(T0.plus_millis(2_000 + 90_001));
        assert!(!r.live() && !r.ready(), "{r:?}");
        assert!(r.unhealthy[0].starts_with("the last sweep was 90 s ago"), "{r:?}");
    }

    #[test]
    fn a_watch_that_never_sweeps_is_not_live() {
        let r = health().check(T0.plus_millis(91_000));
        assert!(!r.live() && !r.ready(), "{r:?}");
        assert!(r.unhealthy[0].starts_with("no sweep in the 91 s since the start"), "{r:?}");
    }

    #[test]
    fn a_lost_event_stream_is_unhealthy_until_it_reconnects() {
        let h = health();
        h.swept(T0);
        h.events(true);
        assert!(h.check(T0).ready());
        h.events(false);
        let r = h.check(T0);
        assert!(!r.live() && !r.ready(), "{r:?}");
        assert_eq!(r.unhealthy, ["the Docker event stream is lost (reconnecting)"]);
        assert!(r.unready.is_empty(), "{r:?}");
        h.events(true);
        assert!(h.check(T0).ready());
    }

    #[test]
    fn stopping_is_live_but_not_ready() {
        let h = health();
        h.swept(T0);
        h.stopping();
        let r = h.check(T0);
        assert!(r.live() && !r.ready(), "{r:?}");
        assert!(r.unhealthy.is_empty() && r.unready == ["stopping"], "{r:?}");
    }

    #[test]
    fn a_clock_that_went_back_is_not_an_old_sweep() {
        let h = health();
        h.swept(T0.plus_millis(10_000));
        h.swept(T0.plus_millis(5_000));
        assert!(h.check(T0.plus_millis(9_000)).ready());
    }
}
