//! What a service manager (systemd, `Type=notify`) is told about a running
//! watch: ready once the first sweep is done and nothing is unhealthy,
//! watchdog pings only while [`Health`] says the loop is alive (so a hung
//! agent stops pinging and systemd restarts it), a status line saying what
//! is wrong, and stopping at SIGTERM.
//!
//! [`ServiceNotices`] decides what to say from a [`HealthReport`]; the
//! sending goes through [`Notifier`] so the decisions are tested without a
//! socket. Outside systemd (no `NOTIFY_SOCKET`) nothing runs at all.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::clock::{Clock, SystemClock};
use crate::health::{Health, HealthReport};

/// Where the notices go.
pub trait Notifier: Send + 'static {
    /// Sends the states as one message.
    fn send(&mut self, states: &[NotifyState<'_>]) -> std::io::Result<()>;
}

/// The service manager's socket, `$NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct SdNotify;

impl Notifier for SdNotify {
    fn send(&mut self, states: &[NotifyState<'_>]) -> std::io::Result<()> {
        sd_notify::notify(states)
    }
}

/// The notices of one watch: what has been said, so that readiness is
/// announced once and a status line only when it changes.
#[derive(Debug)]
pub struct ServiceNotices<N: Notifier> {
    notifier: N,
    /// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
    watchdog: Option<Duration>,
    ready_sent: bool,
    status: String,
}

impl<N: Notifier> ServiceNotices<N> {
    /// Notices through `notifier`, pinging a watchdog of `watchdog` if set.
    pub fn new(notifier: N, watchdog: Option<Duration>) -> ServiceNotices<N> {
        ServiceNotices { notifier, watchdog, ready_sent: false, status: String::new() }
    }

    /// How often to look at the health: twice per watchdog interval, as
    /// sd_watchdog_enabled(3) advises, and at least every second so that
    /// readiness is announced promptly.
    pub fn period(&self) -> Duration {
        self.watchdog
            .map_or(Duration::from_secs(1), |w| (w / 2).clamp(Duration::from_millis(100), Duration::from_secs(1)))
    }

    /// One look at the health: READY=1 the first time it is ready,
    /// WATCHDOG=1 whenever it is alive, STATUS= when what is wrong changes.
    /// Returns what was sent (for tests and logs).
    pub fn observe(&mut self, report: &HealthReport) -> Vec<String> {
        let mut states = Vec::new();
        let status = if report.ready() {
            "watching".to_string()
        } else {
            report.unhealthy.iter().chain(&report.unready).cloned().collect::<Vec<_>>().join("; ")
        };
        if report.ready() && !self.ready_sent {
            states.push(NotifyState::Ready);
        }
        if report.live() && self.watchdog.is_some() {
            states.push(NotifyState::Watchdog);
        }
        let status_changed = status != self.status;
        if status_changed {
            states.push(NotifyState::Status(&status));
        }
        if states.is_empty() {
            return Vec::new();
        }
        let said: Vec<String> = states.iter().map(ToString::to_string).collect();
        match self.notifier.send(&states) {
            Ok(()) => {
                self.ready_sent |= report.ready();
                if status_changed {
                    self.status = status;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot notify the service manager"),
        }
        said
    }

    /// STOPPING=1: the watch is ending.
    pub fn stopping(&mut self) {
        if let Err(e) = self.notifier.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

/// Under systemd (`NOTIFY_SOCKET` set), reports `health` until `stop`
/// resolves, then says STOPPING=1. Elsewhere returns at once.
pub async fn notify_service_manager(health: Health, stop: impl std::future::Future<Output = ()>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut notices = ServiceNotices::new(SdNotify, sd_notify::watchdog_enabled());
    let mut tick = tokio::time::interval(notices.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                notices.observe(&health.check(SystemClock.now()));
            }
            () = &mut stop => {
                notices.stopping();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Notifier for Recorder {
        fn send(&mut self, states: &[NotifyState<'_>]) -> std::io::Result<()> {
            self.0.lock().unwrap().extend(states.iter().map(ToString::to_string));
            Ok(())
        }
    }

    struct Broken;

    impl Notifier for Broken {
        fn send(&mut self, _: &[NotifyState<'_>]) -> std::io::Result<()> {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no socket"))
        }
    }

    const T0: Timestamp = Timestamp(1_795_766_400_000);

    fn health() -> Health {
        Health::new(T0, Duration::from_secs(30))
    }

    #[test]
    fn ready_once_after_the_first_sweep_and_pings_while_alive() {
        let rec = Recorder::default();
        let mut n = ServiceNotices::new(rec.clone(), Some(Duration::from_secs(20)));
        let h = health();
        // Before readiness the loop is alive: the watchdog is fed.
        assert_eq!(n.observe(&h.check(T0.plus_millis(500))), vec!["WATCHDOG=1", "STATUS=no sweep yet"]);
        // The same status is not said again.
        assert_eq!(n.observe(&h.check(T0.plus_millis(900))), vec!["WATCHDOG=1"]);
        h.swept(T0.plus_millis(1_000));
        assert_eq!(n.observe(&h.check(T0.plus_millis(1_100))), vec!["READY=1", "WATCHDOG=1", "STATUS=watching"]);
        assert_eq!(n.observe(&h.check(T0.plus_millis(2_000))), vec!["WATCHDOG=1"]);
        let all = rec.0.lock().unwrap().clone();
        assert_eq!(all.iter().filter(|s| *s == "READY=1").count(), 1, "{all:?}");
    }

    #[test]
    fn a_stuck_loop_stops_feeding_the_watchdog_and_says_why() {
        let mut n = ServiceNotices::new(Recorder::default(), Some(Duration::from_secs(20)));
        let h = health();
        h.swept(T0.plus_millis(1_000));
        n.observe(&h.check(T0.plus_millis(1_100)));
        // Three sweep intervals without a sweep: no longer live.
        let said = n.observe(&h.check(T0.plus_millis(1_000 + 91_000)));
        assert!(!said.contains(&"WATCHDOG=1".to_string()), "{said:?}");
        assert!(said.iter().any(|s| s.starts_with("STATUS=the last sweep was 91 s ago")), "{said:?}");
        // The event stream lost: also no ping.
        h.swept(T0.plus_millis(92_000));
        h.events(false);
        let said = n.observe(&h.check(T0.plus_millis(92_100)));
        assert!(!said.contains(&"WATCHDOG=1".to_string()), "{said:?}");
        h.events(true);
        assert_eq!(n.observe(&h.check(T0.plus_millis(93_000))), vec!["WATCHDOG=1", "STATUS=watching"]);
    }

    #[test]
    fn without_a_watchdog_only_readiness_and_status_are_said() {
        let mut n = ServiceNotices::new(Recorder::default(), None);
        let h = health();
        h.swept(T0.plus_millis(10));
        assert_eq!(n.observe(&h.check(T0.plus_millis(20))), vec!["READY=1", "STATUS=watching"]);
        assert!(n.observe(&h.check(T0.plus_millis(30))).is_empty());
        assert_eq!(n.period(), Duration::from_secs(1));
    }

    #[test]
    fn a_failed_send_is_retried_at_the_next_look() {
        let mut n = ServiceNotices::new(Broken, None);
        let h = health();
        h.swept(T0.plus_millis(10));
        assert_eq!(n.observe(&h.check(T0.plus_millis(20))), vec!["READY=1", "STATUS=watching"]);
        assert_eq!(n.observe(&h.check(T0.plus_millis(30))), vec!["READY=1", "STATUS=watching"]);
    }

    #[test]
    fn the_period_is_half_the_watchdog_within_bounds() {
        let n = |w| ServiceNotices::new(Recorder::default(), w).period();
        assert_eq!(n(Some(Duration::from_secs(30))), Duration::from_secs(1));
        assert_eq!(n(Some(Duration::from_millis(600))), Duration::from_millis(300));
        assert_eq!(n(Some(Duration::from_millis(10))), Duration::from_millis(100));
    }
}
