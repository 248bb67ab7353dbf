//! What a human is told, before any format: a [`Notification`] per incident
//! transition or change in OpsGuard's own health, derived from the audit
//! records by [`Transitions`] (the incident driver knows nothing of it),
//! and from the event stream's and audit file's reports.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::{AuditEvent, AuditRecord, Resolution};
use crate::model::{AlarmKind, StopReason, Timestamp};
use crate::stateless::{StatelessStep, Trouble};

use super::config::EventKind;

/// Where an incident (or OpsGuard itself) stands, for the payload's
/// transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// An incident under way.
    Open,
    /// An incident waiting for a human's answer.
    AwaitingApproval,
    /// Ended verified running.
    Resolved,
    /// Ended for a human to take over.
    Stopped,
    /// Ended in shadow mode, its action withheld.
    Withheld,
    /// OpsGuard works as it should.
    Healthy,
    /// OpsGuard is degraded.
    Degraded,
    /// `opsguard notify test`.
    Test,
}

/// A move from one state to the next; `from` is absent for a beginning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Before.
    pub from: Option<State>,
    /// After.
    pub to: State,
}

/// The part of OpsGuard that is degraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Docker's event stream (crashes are then seen only by the sweep).
    EventStream,
    /// The audit file (healing goes on unrecorded).
    AuditLog,
}

impl Component {
    /// Its name in payloads and labels.
    pub fn key(self) -> &'static str {
        match self {
            Component::EventStream => "event_stream",
            Component::AuditLog => "audit_log",
        }
    }
}

/// A pending approval, for the human who can give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalLink {
    /// The request id.
    pub request: u64,
    /// The action's tool name (`restart_database_risky`).
    pub action: &'static str,
    /// The console page of the incident, when the console is on.
    pub url: Option<String>,
}

/// One thing to tell. Text from containers (`container`, `evidence`,
/// `detail`) is untrusted: each format neutralises it for its receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// What happened.
    pub event: EventKind,
    /// When (the audit record's time).
    pub time: Timestamp,
    /// The incident, if this is about one.
    pub incident: Option<u64>,
    /// When the incident opened (Alertmanager's `startsAt`).
    pub opened_at: Option<Timestamp>,
    /// The container concerned.
    pub container: Option<String>,
    /// The alarm.
    pub alarm: Option<AlarmKind>,
    /// The move this reports.
    pub transition: Transition,
    /// Why an incident stopped.
    pub reason: Option<StopReason>,
    /// The approval waiting for a human.
    pub approval: Option<ApprovalLink>,
    /// The first line of evidence (already redacted where it was read).
    pub evidence: Option<String>,
    /// The degraded component.
    pub component: Option<Component>,
    /// What went wrong with it (an error text).
    pub detail: Option<String>,
}

impl Notification {
    fn bare(event: EventKind, time: Timestamp, transition: Transition) -> Notification {
        Notification {
            event,
            time,
            incident: None,
            opened_at: None,
            container: None,
            alarm: None,
            transition,
            reason: None,
            approval: None,
            evidence: None,
            component: None,
            detail: None,
        }
    }

    /// `component` became degraded (`detail`: why), or recovered
    /// (`detail`: `None`).
    pub fn degraded(component: Component, time: Timestamp, detail: Option<String>) -> Notification {
        let transition = match detail {
            Some(_) => Transition { from: Some(State::Healthy), to: State::Degraded },
            None => Transition { from: Some(State::Degraded), to: State::Healthy },
        };
        Notification { component: Some(component), detail, ..Notification::bare(EventKind::Degraded, time, transition) }
    }

    /// What `opsguard notify test` sends.
    pub fn test(time: Timestamp) -> Notification {
        Notification::bare(EventKind::Test, time, Transition { from: None, to: State::Test })
    }

    /// Whether this ends what an earlier notification began (an incident's
    /// end, a recovery): Alertmanager's alert then ends now.
    pub fn ends_alert(&self) -> bool {
        matches!(self.transition.to, State::Resolved | State::Healthy)
    }
}

struct Open {
    opened_at: Timestamp,
    container: String,
    /// None for a stateless service's episode: no alarm of the
    /// specification's, its trouble is the evidence.
    alarm: Option<AlarmKind>,
    evidence: Option<String>,
    state: State,
}

/// Follows the audit records of every open incident and says which are
/// transitions a human is told about. Deterministic: the records decide.
pub struct Transitions {
    open: BTreeMap<u64, Open>,
    /// The console's base URL, when the console is on.
    console: Option<String>,
}

impl Transitions {
    /// Approval links point under `console` (e.g. `http://127.0.0.1:8990`).
    pub fn new(console: Option<String>) -> Transitions {
        Transitions { open: BTreeMap::new(), console: console.map(|c| c.trim_end_matches('/').to_string()) }
    }

    /// The notification `record` makes, if any.
    pub fn observe(&mut self, record: &AuditRecord) -> Option<Notification> {
        let id = record.incident;
        match &record.event {
            AuditEvent::IncidentOpened { alarm } => {
                let evidence = alarm.evidence.log_lines.first().or(alarm.evidence.log_tail.last()).cloned();
                let open = Open {
                    opened_at: record.ts,
                    container: alarm.container.as_str().to_string(),
                    alarm: Some(alarm.kind),
                    evidence,
                    state: State::Open,
                };
                self.open.insert(id, open);
                Some(self.about(id, EventKind::IncidentOpened, record.ts, None, State::Open))
            }
            // Re-assessed from fresh facts: the same incident, its cause may differ.
            AuditEvent::Reassessed { alarm } => {
                if let Some(o) = self.open.get_mut(&id) {
                    o.alarm = Some(alarm.kind);
                }
                None
            }
            // A policy approver answers at once: no human to tell.
            AuditEvent::ApprovalRequested { approver, .. } if approver.starts_with("policy:") => None,
            AuditEvent::ApprovalRequested { request, action, .. } => {
                let from = self.open.get(&id)?.state;
                let url = self.console.as_ref().map(|c| format!("{c}/incidents/{id}"));
                let mut n =
                    self.about(id, EventKind::ApprovalRequested, record.ts, Some(from), State::AwaitingApproval);
                n.approval = Some(ApprovalLink { request: *request, action: action.tool_name(), url });
                if let Some(o) = self.open.get_mut(&id) {
                    o.state = State::AwaitingApproval;
                }
                Some(n)
            }
            AuditEvent::ApprovalAnswered { .. } => {
                if let Some(o) = self.open.get_mut(&id) {
                    o.state = State::Open;
                }
                None
            }
            AuditEvent::IncidentClosed { resolution, .. } => {
                // A closing without its opening (a log tapped mid-incident)
                // has nothing to name; it is not made up.
                let from = self.open.get(&id)?.state;
                let (event, to, reason) = match resolution {
                    Resolution::Resolved => (EventKind::Resolved, State::Resolved, None),
                    Resolution::Stopped { reason } => (EventKind::StoppedForHuman, State::Stopped, Some(*reason)),
                    Resolution::Withheld => (EventKind::StoppedForHuman, State::Withheld, None),
                };
                Some(self.close(id, event, record.ts, Some(from), to, reason))
            }
            AuditEvent::Stateless { container, trouble, step } => {
                self.stateless(record, container.as_str(), trouble.as_ref(), step)
            }
            // Nothing was done: the dependency's own incident speaks.
            AuditEvent::AlarmHeld { .. }
            | AuditEvent::Decided { .. }
            | AuditEvent::LlmConsulted { .. }
            | AuditEvent::Executed { .. }
            | AuditEvent::WouldExecute { .. }
            | AuditEvent::Checked { .. } => None,
        }
    }

    /// A stateless service's episode as an incident: its first restart
    /// opens it (the trouble as evidence), later restarts say nothing, and
    /// it ends resolved, or stopped for a human once the budget is spent.
    fn stateless(
        &mut self,
        record: &AuditRecord,
        container: &str,
        trouble: Option<&Trouble>,
        step: &StatelessStep,
    ) -> Option<Notification> {
        let id = record.incident;
        let opening = |evidence: Option<String>| Open {
            opened_at: record.ts,
            container: container.to_string(),
            alarm: None,
            evidence,
            state: State::Open,
        };
        let trouble_text = trouble.map(Trouble::describe);
        match step {
            StatelessStep::Restarted { .. } if self.open.contains_key(&id) => None,
            StatelessStep::Restarted { .. } => {
                self.open.insert(id, opening(trouble_text));
                Some(self.about(id, EventKind::IncidentOpened, record.ts, None, State::Open))
            }
            // A hold changes nothing yet: the dependency's own incident is told.
            StatelessStep::Held { .. } => None,
            StatelessStep::Resolved => {
                let from = self.open.get(&id)?.state;
                Some(self.close(id, EventKind::Resolved, record.ts, Some(from), State::Resolved, None))
            }
            StatelessStep::Escalated { log_tail, .. } => {
                // The service's own last words say more than "crashed".
                let evidence = log_tail.last().cloned().or(trouble_text);
                let from = match self.open.get_mut(&id) {
                    Some(o) => {
                        o.evidence = evidence.or(o.evidence.take());
                        Some(o.state)
                    }
                    None => {
                        self.open.insert(id, opening(evidence));
                        None
                    }
                };
                let reason = Some(StopReason::RestartBudgetExhausted);
                Some(self.close(id, EventKind::StoppedForHuman, record.ts, from, State::Stopped, reason))
            }
        }
    }

    /// The incident's last notification; it is no longer followed.
    fn close(
        &mut self,
        id: u64,
        event: EventKind,
        time: Timestamp,
        from: Option<State>,
        to: State,
        reason: Option<StopReason>,
    ) -> Notification {
        let mut n = self.about(id, event, time, from, to);
        n.reason = reason;
        self.open.remove(&id);
        n
    }

    fn about(&self, id: u64, event: EventKind, time: Timestamp, from: Option<State>, to: State) -> Notification {
        let mut n = Notification::bare(event, time, Transition { from, to });
        n.incident = Some(id);
        if let Some(o) = self.open.get(&id) {
            n.opened_at = Some(o.opened_at);
            n.container = Some(o.container.clone());
            n.alarm = o.alarm;
            n.evidence = o.evidence.clone();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Alarm, ContainerName, Evidence, RestartReason, RootCause};

    fn rec(incident: u64, ts: u64, event: AuditEvent) -> AuditRecord {
        AuditRecord { ts: Timestamp(ts), time: Timestamp(ts).to_rfc3339(), incident, event }
    }

    fn opened(incident: u64, ts: u64, cause: RootCause) -> AuditRecord {
        let alarm = Alarm {
            kind: AlarmKind::DbCrash(cause),
            container: ContainerName::new("db-prod"),
            evidence: Evidence { log_lines: vec!["PANIC: No space left on device".into()], ..Evidence::default() },
            raised_at: Timestamp(ts),
        };
        rec(incident, ts, AuditEvent::IncidentOpened { alarm })
    }

    fn restart() -> Action {
        Action::Restart { target: ContainerName::new("db-prod"), reason: RestartReason::OomKill }
    }

    #[test]
    fn an_incident_with_an_approval_makes_three_notifications_in_order() {
        let mut t = Transitions::new(Some("http://127.0.0.1:8990/".into()));
        let records = [
            opened(7, 1_000, RootCause::OomKill),
            rec(7, 1_001, AuditEvent::Decided { action: restart() }),
            rec(7, 1_002, AuditEvent::ApprovalRequested { request: 3, action: restart(), approver: "web".into() }),
            rec(7, 1_003, AuditEvent::unsigned_answer(3, true, "web", "ok")),
            rec(7, 1_004, AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 4 }),
        ];
        let got: Vec<Notification> = records.iter().filter_map(|r| t.observe(r)).collect();
        let events: Vec<_> = got.iter().map(|n| (n.event, n.transition)).collect();
        assert_eq!(
            events,
            [
                (EventKind::IncidentOpened, Transition { from: None, to: State::Open }),
                (EventKind::ApprovalRequested, Transition { from: Some(State::Open), to: State::AwaitingApproval }),
                (EventKind::Resolved, Transition { from: Some(State::Open), to: State::Resolved }),
            ]
        );
        let approval = got[1].approval.as_ref().unwrap();
        assert_eq!(approval.url.as_deref(), Some("http://127.0.0.1:8990/incidents/7"));
        assert_eq!((approval.request, approval.action), (3, "restart_database_risky"));
        for n in &got {
            assert_eq!((n.incident, n.opened_at), (Some(7), Some(Timestamp(1_000))));
            assert_eq!(n.container.as_deref(), Some("db-prod"));
            assert_eq!(n.evidence.as_deref(), Some("PANIC: No space left on device"));
        }
        assert!(got[2].ends_alert() && !got[0].ends_alert());
    }

    #[test]
    fn stops_withheld_actions_and_policy_approvals() {
        let mut t = Transitions::new(None);
        t.observe(&opened(1, 10, RootCause::OomKill));
        let asked = AuditEvent::ApprovalRequested { request: 1, action: restart(), approver: "policy:deny".into() };
        assert_eq!(t.observe(&rec(1, 11, asked)), None);
        let stop = AuditEvent::IncidentClosed {
            resolution: Resolution::Stopped { reason: StopReason::ApprovalRejected },
            steps: 3,
        };
        let n = t.observe(&rec(1, 12, stop.clone())).unwrap();
        assert_eq!(
            (n.event, n.reason, n.transition.to),
            (EventKind::StoppedForHuman, Some(StopReason::ApprovalRejected), State::Stopped)
        );
        assert!(!n.ends_alert(), "a human still has to act");
        // Closed: a second closing (or one with no opening) says nothing.
        assert_eq!(t.observe(&rec(1, 13, stop.clone())), None);
        assert_eq!(t.observe(&rec(9, 13, stop)), None);

        t.observe(&opened(2, 20, RootCause::DiskFull));
        let shadow = AuditEvent::IncidentClosed { resolution: Resolution::Withheld, steps: 2 };
        let n = t.observe(&rec(2, 21, shadow)).unwrap();
        assert_eq!((n.event, n.transition.to), (EventKind::StoppedForHuman, State::Withheld));
    }

    #[test]
    fn a_reassessed_cause_is_the_one_told_next() {
        let mut t = Transitions::new(None);
        t.observe(&opened(4, 10, RootCause::OomKill));
        let alarm = Alarm {
            kind: AlarmKind::DbCrash(RootCause::ConfigError),
            container: ContainerName::new("db-prod"),
            evidence: Evidence::default(),
            raised_at: Timestamp(11),
        };
        assert_eq!(t.observe(&rec(4, 11, AuditEvent::Reassessed { alarm })), None);
        let stop = Resolution::Stopped { reason: StopReason::ConfigError };
        let n = t.observe(&rec(4, 12, AuditEvent::IncidentClosed { resolution: stop, steps: 5 })).unwrap();
        assert_eq!(n.alarm, Some(AlarmKind::DbCrash(RootCause::ConfigError)));
    }

    #[test]
    fn degradation_and_recovery_are_transitions_of_opsguard_itself() {
        let lost = Notification::degraded(Component::EventStream, Timestamp(5), Some("connection reset".into()));
        assert_eq!(lost.transition, Transition { from: Some(State::Healthy), to: State::Degraded });
        assert!(!lost.ends_alert());
        let back = Notification::degraded(Component::EventStream, Timestamp(6), None);
        assert_eq!(back.transition, Transition { from: Some(State::Degraded), to: State::Healthy });
        assert!(back.ends_alert());
    }

    #[test]
    fn a_stateless_episode_opens_once_and_ends_resolved_or_stopped_for_a_human() {
        let api = ContainerName::new("shop-api");
        let step = |incident, ts, trouble, step| {
            rec(incident, ts, AuditEvent::Stateless { container: api.clone(), trouble, step })
        };
        let restarted = |attempt| StatelessStep::Restarted { attempt, delay_ms: 0, error: None };
        let crashed = |exit_code| Some(Trouble::Crashed { exit_code, finished_at: None });
        let mut t = Transitions::new(None);

        // A crash, one restart, back.
        let opened = t.observe(&step(1, 10, crashed(137), restarted(1))).unwrap();
        assert_eq!((opened.event, opened.transition.to), (EventKind::IncidentOpened, State::Open));
        assert_eq!((opened.container.as_deref(), opened.alarm), (Some("shop-api"), None));
        assert_eq!(opened.evidence.as_deref(), Some("crashed (exit code 137)"));
        let resolved = t.observe(&step(1, 12, None, StatelessStep::Resolved)).unwrap();
        assert_eq!((resolved.event, resolved.opened_at), (EventKind::Resolved, Some(Timestamp(10))));
        assert!(resolved.ends_alert());

        // A crash loop: told once when it starts, then when the budget is spent.
        assert!(t.observe(&step(2, 20, Some(Trouble::Unhealthy), restarted(1))).is_some());
        assert_eq!(t.observe(&step(2, 21, crashed(3), restarted(2))), None);
        assert_eq!(t.observe(&step(2, 23, crashed(3), restarted(3))), None);
        let spent = StatelessStep::Escalated {
            restarts: 3,
            window_secs: 600,
            exit_codes: vec![137, 3, 3],
            log_tail: vec!["starting".into(), "FATAL: bad config".into()],
        };
        let stopped = t.observe(&step(2, 24, crashed(3), spent.clone())).unwrap();
        assert_eq!(stopped.event, EventKind::StoppedForHuman);
        assert_eq!(stopped.transition, Transition { from: Some(State::Open), to: State::Stopped });
        assert_eq!(stopped.reason, Some(StopReason::RestartBudgetExhausted));
        assert_eq!(stopped.evidence.as_deref(), Some("FATAL: bad config"));
        assert!(!stopped.ends_alert());
        // Nothing of it stays open; a resolution without an opening says nothing.
        assert_eq!(t.observe(&step(2, 25, None, StatelessStep::Resolved)), None);
        // Escalated with no restart before (the budget spent by an earlier
        // episode): still told, from nothing.
        let cold = t.observe(&step(3, 30, crashed(3), spent)).unwrap();
        assert_eq!(cold.transition, Transition { from: None, to: State::Stopped });

        // Held for a dependency: nothing to tell until it is restarted; a
        // hold that ends with the service back by itself tells nothing.
        let held = || StatelessStep::Held { dependency: "shop-db".into(), state: "shop-db exited".into() };
        assert_eq!(t.observe(&step(4, 40, crashed(1), held())), None);
        assert_eq!(t.observe(&step(4, 41, None, StatelessStep::Resolved)), None);
        assert_eq!(t.observe(&step(5, 50, crashed(1), held())), None);
        let opened = t.observe(&step(5, 52, crashed(1), restarted(1))).unwrap();
        assert_eq!((opened.event, opened.opened_at), (EventKind::IncidentOpened, Some(Timestamp(52))));
    }
}
