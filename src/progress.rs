//! The one-line status a terminal shows while `watch` runs: incidents open,
//! the last action and its result, what OpsGuard is waiting for (a human's
//! answer, the rapid-check window) and how the finished incidents ended.
//!
//! It is built from the audit records alone, so it shows exactly what the
//! audit log will say; drawing it is the CLI's business.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::audit::{AuditEvent, AuditRecord, Resolution};
use crate::model::{Action, Alarm, Timestamp};

/// What is known of the incidents so far.
#[derive(Clone, Debug)]
pub struct Progress {
    rapid_window: Duration,
    open: BTreeMap<u64, Open>,
    resolved: u32,
    stopped: u32,
    last: Option<String>,
}

#[derive(Clone, Debug)]
struct Open {
    alarm: Alarm,
    waiting: Waiting,
}

#[derive(Clone, Debug)]
enum Waiting {
    Nothing,
    Approval { action: Action, since: Timestamp },
    Verification { since: Timestamp, checks: u32 },
}

impl Progress {
    /// Nothing seen yet; verification lasts at most `rapid_window`.
    pub fn new(rapid_window: Duration) -> Self {
        Progress { rapid_window, open: BTreeMap::new(), resolved: 0, stopped: 0, last: None }
    }

    /// Takes one audit record into account.
    pub fn observe(&mut self, r: &AuditRecord) {
        match &r.event {
            AuditEvent::IncidentOpened { alarm } => {
                self.open.insert(r.incident, Open { alarm: alarm.clone(), waiting: Waiting::Nothing });
            }
            AuditEvent::Decided { action: Action::Verify { .. } } => {
                self.set_waiting(r.incident, Waiting::Verification { since: r.ts, checks: 0 })
            }
            AuditEvent::ApprovalRequested { action, .. } => {
                self.set_waiting(r.incident, Waiting::Approval { action: action.clone(), since: r.ts })
            }
            AuditEvent::ApprovalAnswered { approved, .. } => {
                self.set_waiting(r.incident, Waiting::Nothing);
                self.last = Some(format!("#{} {}", r.incident, if *approved { "approved" } else { "not approved" }));
            }
            AuditEvent::Checked { .. } => {
                if let Some(Open { waiting: Waiting::Verification { checks, .. }, .. }) = self.open.get_mut(&r.incident)
                {
                    *checks += 1;
                }
            }
            AuditEvent::Executed { action, outcome } => {
                self.set_waiting(r.incident, Waiting::Nothing);
                let result = crate::telemetry::result_label(outcome);
                self.last = Some(format!("#{} {} → {result}", r.incident, action.tool_name()));
            }
            AuditEvent::IncidentClosed { resolution, .. } => {
                self.open.remove(&r.incident);
                match resolution {
                    Resolution::Resolved => self.resolved += 1,
                    Resolution::Stopped { .. } => self.stopped += 1,
                    // Shadow mode did nothing: neither resolved nor stopped.
                    Resolution::Withheld => {}
                }
                self.last = Some(match resolution {
                    Resolution::Resolved => format!("#{} resolved", r.incident),
                    Resolution::Stopped { reason } => format!("#{} STOPPED: {}", r.incident, reason.key()),
                    Resolution::Withheld => format!("#{} shadow: nothing done", r.incident),
                });
            }
            _ => {}
        }
    }

    /// Whether some incident waits for a human's answer.
    pub fn awaiting_approval(&self) -> bool {
        self.open.values().any(|o| matches!(o.waiting, Waiting::Approval { .. }))
    }

    fn set_waiting(&mut self, incident: u64, waiting: Waiting) {
        if let Some(open) = self.open.get_mut(&incident) {
            open.waiting = waiting;
        }
    }

    /// The status line at `now`, without a line break.
    pub fn line(&self, now: Timestamp) -> String {
        let mut s = String::new();
        match self.open.len() {
            0 => s.push_str("👁  watching, no incident open"),
            n => {
                let _ = write!(s, "🔥 {n} open:");
                for (id, o) in &self.open {
                    let _ = write!(s, " #{id} {} on {}", o.alarm.kind, o.alarm.container);
                    match &o.waiting {
                        Waiting::Nothing => {}
                        Waiting::Approval { action, since } => {
                            let _ =
                                write!(s, " ⏳ awaiting approval of {} ({}s)", action.tool_name(), secs(now, *since));
                        }
                        Waiting::Verification { since, checks } => {
                            let left = (self.rapid_window.as_secs()).saturating_sub(secs(now, *since));
                            let _ = write!(s, " 🔁 rapid check {checks}, {left}s left");
                        }
                    }
                    s.push(';');
                }
                s.pop();
            }
        }
        if let Some(last) = &self.last {
            let _ = write!(s, " · last: {last}");
        }
        if self.resolved + self.stopped > 0 {
            let _ = write!(s, " · {} resolved, {} stopped", self.resolved, self.stopped);
        }
        s
    }
}

fn secs(now: Timestamp, since: Timestamp) -> u64 {
    now.millis_since(since) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AlarmKind, ContainerName, Evidence, Outcome, RestartReason, RootCause, StopReason, Verification,
    };

    fn rec(incident: u64, ms: u64, event: AuditEvent) -> AuditRecord {
        AuditRecord { ts: Timestamp(ms), time: String::new(), incident, event }
    }

    #[test]
    fn the_line_follows_an_incident_from_alarm_to_resolution() {
        let db = ContainerName::new("db-prod");
        let alarm = Alarm {
            kind: AlarmKind::DbCrash(RootCause::DiskFull),
            container: db.clone(),
            evidence: Evidence::default(),
            raised_at: Timestamp(0),
        };
        let mut p = Progress::new(Duration::from_secs(60));
        assert_eq!(p.line(Timestamp(0)), "👁  watching, no incident open");
        p.observe(&rec(1, 0, AuditEvent::IncidentOpened { alarm }));
        assert_eq!(p.line(Timestamp(0)), "🔥 1 open: #1 DB_CRASH — Disk Full on db-prod");
        let restart = Action::Restart { target: db.clone(), reason: RestartReason::DiskFreed };
        p.observe(&rec(
            1,
            1_000,
            AuditEvent::ApprovalRequested { request: 7, action: restart.clone(), approver: "web".into() },
        ));
        assert_eq!(
            p.line(Timestamp(13_500)),
            "🔥 1 open: #1 DB_CRASH — Disk Full on db-prod ⏳ awaiting approval of restart_database_risky (12s)"
        );
        assert!(p.awaiting_approval());
        p.observe(&rec(1, 14_000, AuditEvent::unsigned_answer(7, true, "web", "approved")));
        p.observe(&rec(1, 15_000, AuditEvent::Executed { action: restart, outcome: Outcome::Restarted }));
        assert!(!p.awaiting_approval());
        p.observe(&rec(1, 15_000, AuditEvent::Decided { action: Action::Verify { target: db.clone() } }));
        for t in [15_000, 17_000, 19_000] {
            p.observe(&rec(1, t, AuditEvent::Checked { state: None, health: None, cleared: Some(false), error: None }));
        }
        assert_eq!(
            p.line(Timestamp(20_000)),
            "🔥 1 open: #1 DB_CRASH — Disk Full on db-prod 🔁 rapid check 3, 55s left · last: #1 restart_database_risky → ok"
        );
        p.observe(&rec(
            1,
            21_000,
            AuditEvent::Executed {
                action: Action::Verify { target: db },
                outcome: Outcome::Verified(Verification::Confirmed),
            },
        ));
        p.observe(&rec(1, 21_000, AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 4 }));
        assert_eq!(
            p.line(Timestamp(22_000)),
            "👁  watching, no incident open · last: #1 resolved · 1 resolved, 0 stopped"
        );
        p.observe(&rec(
            2,
            30_000,
            AuditEvent::IncidentClosed {
                resolution: Resolution::Stopped { reason: StopReason::ConfigError },
                steps: 0,
            },
        ));
        assert_eq!(
            p.line(Timestamp(30_000)),
            "👁  watching, no incident open · last: #2 STOPPED: config_error · 1 resolved, 1 stopped"
        );
    }
}
