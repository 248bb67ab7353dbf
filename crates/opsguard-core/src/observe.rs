//! What one look at a host found and when to look again: a re-check of an
//! alarm's condition, and the specification's cadence (the normal
//! interval, or rapid checks for a window after a fix).

use std::time::Duration;

use crate::model::{ContainerState, Health, Timestamp};
use crate::rules::ObserverSettings;

/// One re-check of an alarm's condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Check {
    /// The service's state (`None` for a host-wide alarm such as zombies).
    pub state: Option<ContainerState>,
    /// Its health check, as Docker last ran it.
    pub health: Health,
    /// The container's own health command run by OpsGuard at once, when
    /// Docker's had not passed yet (`Health::Starting`): Docker runs it only
    /// every interval (5 s on the lab's database), so a service that
    /// answers after 0.8 s would wait for it. `None`: not run.
    pub ready: Option<bool>,
    /// When the run seen started: two checks of different runs (the
    /// container died and came back in between) are not one stable run.
    pub started_at: Option<Timestamp>,
    /// Whether the alarm's own condition (disk, zombie count) has cleared.
    pub cleared: bool,
}

impl Check {
    /// Running and ready (Docker's health check passes, or there is none,
    /// or it is still starting and its command passed when OpsGuard ran
    /// it), condition cleared. An unhealthy verdict of Docker's is never
    /// overridden.
    pub fn is_good(&self) -> bool {
        let up = match self.state {
            None => true,
            Some(s) => s == ContainerState::Running && matches!(self.health_seen(), Health::None | Health::Healthy),
        };
        up && self.cleared
    }

    /// The health this check saw: Docker's, or healthy when Docker's was
    /// still starting and OpsGuard's own run of the same command passed.
    pub fn health_seen(&self) -> Health {
        match (self.health, self.ready) {
            (Health::Starting, Some(true)) => Health::Healthy,
            (h, _) => h,
        }
    }

    /// Down in a way that waiting will not change.
    pub fn is_settled_down(&self) -> bool {
        self.state.is_some_and(ContainerState::is_settled_down)
    }
}

/// The specification's rapid-check state machine: normal interval, or the
/// rapid interval for a window after a fix.
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    settings: ObserverSettings,
    rapid_until: Option<Timestamp>,
}

impl Cadence {
    /// Starts in normal mode.
    pub fn new(settings: ObserverSettings) -> Cadence {
        Cadence { settings, rapid_until: None }
    }

    /// `trigger_rapid_check()`: rapid mode from `now` for the rapid window.
    pub fn trigger_rapid(&mut self, now: Timestamp) {
        self.rapid_until = Some(now.plus_millis(self.settings.rapid_window_secs * 1000));
    }

    /// Whether rapid mode is on at `now`.
    pub fn is_rapid(&self, now: Timestamp) -> bool {
        self.rapid_until.is_some_and(|t| now < t)
    }

    /// How long to wait before the next check.
    pub fn interval(&self, now: Timestamp) -> Duration {
        if self.is_rapid(now) {
            Duration::from_secs(self.settings.rapid_interval_secs)
        } else {
            Duration::from_secs(self.settings.interval_secs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    #[test]
    fn cadence_goes_rapid_for_the_window_then_back() {
        let mut c = Cadence::new(Rules::default_rules().observer);
        assert_eq!(c.interval(Timestamp(0)), Duration::from_secs(30));
        c.trigger_rapid(Timestamp(1_000));
        assert_eq!(c.interval(Timestamp(2_000)), Duration::from_secs(2));
        assert_eq!(c.interval(Timestamp(60_999)), Duration::from_secs(2));
        assert_eq!(c.interval(Timestamp(61_000)), Duration::from_secs(30));
    }

    fn running(health: Health, ready: Option<bool>) -> Check {
        Check { state: Some(ContainerState::Running), health, ready, started_at: Some(Timestamp(1)), cleared: true }
    }

    #[test]
    fn a_passing_readiness_run_stands_for_a_health_check_still_starting() {
        assert!(running(Health::Starting, Some(true)).is_good());
        assert!(!running(Health::Starting, Some(false)).is_good());
        assert!(!running(Health::Starting, None).is_good());
        // Docker's own unhealthy verdict is never overridden.
        assert!(!running(Health::Unhealthy, Some(true)).is_good());
        assert!(running(Health::Healthy, None).is_good());
        let stopped = Check { state: Some(ContainerState::Exited), ..running(Health::Starting, Some(true)) };
        assert!(!stopped.is_good());
        let full = Check { cleared: false, ..running(Health::Starting, Some(true)) };
        assert!(!full.is_good());
    }
}
