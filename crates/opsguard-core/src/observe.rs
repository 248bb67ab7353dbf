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
    /// Its health check.
    pub health: Health,
    /// Whether the alarm's own condition (disk, zombie count) has cleared.
    pub cleared: bool,
}

impl Check {
    /// Running and healthy (or without a health check), condition cleared.
    pub fn is_good(&self) -> bool {
        let up = match self.state {
            None => true,
            Some(s) => s == ContainerState::Running && matches!(self.health, Health::None | Health::Healthy),
        };
        up && self.cleared
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
}
