//! What OpsGuard counts and logs while it works: the metric names and
//! labels, and the structured log events, for every incident step.
//!
//! Incident steps are logged at `info` (the terminal timeline already shows
//! them to a human); trouble with OpsGuard itself (a failed check, an audit
//! write that failed) at `warn` and above, where it is logged.
//!
//! Incidents reach it only through the audit log: [`audit_tap`] is a tap
//! like the console and the terminal timeline, so whatever an incident
//! records is counted, and the incident driver has no telemetry calls.
//!
//! The library only talks to the `metrics` and `tracing` facades; the CLI
//! (or an embedding program) picks the exporter and the log format. With no
//! recorder or subscriber installed every call here is a no-op.

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::audit::{AuditEvent, AuditRecord, Resolution};
use crate::model::{Action, Alarm, AlarmKind, ContainerName, Outcome, Timestamp, Verification};
use crate::stateless::{StatelessStep, Trouble};

/// `opsguard_alarms_total{kind}`: alarms that opened an incident.
pub const ALARMS: &str = "opsguard_alarms_total";
/// `opsguard_alarms_held_total{kind}`: alarms held, not acted on, while a
/// dependency of their service was down or being healed.
pub const ALARMS_HELD: &str = "opsguard_alarms_held_total";
/// `opsguard_incidents_total{outcome, root_cause, kind}`: incidents ended.
pub const INCIDENTS: &str = "opsguard_incidents_total";
/// `opsguard_incidents_open`: incidents under way.
pub const INCIDENTS_OPEN: &str = "opsguard_incidents_open";
/// `opsguard_actions_total{action, result}`: actions carried out.
pub const ACTIONS: &str = "opsguard_actions_total";
/// `opsguard_approvals_total{answer}`: answers to approval requests.
pub const APPROVALS: &str = "opsguard_approvals_total";
/// `opsguard_approvals_pending`: approval requests waiting for a human on
/// the web console.
pub const APPROVALS_PENDING: &str = "opsguard_approvals_pending";
/// `opsguard_approval_oldest_pending_seconds`: how long the oldest of
/// them has waited (0 when none waits).
pub const APPROVAL_OLDEST_PENDING: &str = "opsguard_approval_oldest_pending_seconds";
/// `opsguard_time_to_detect_seconds{kind}`: from the fault (a crashed
/// container's exit) to its alarm; only where the host tells the fault time.
pub const TIME_TO_DETECT: &str = "opsguard_time_to_detect_seconds";
/// `opsguard_time_to_resolve_seconds{kind}`: from the fault (or the alarm,
/// when the fault time is unknown) to the verified resolution.
pub const TIME_TO_RESOLVE: &str = "opsguard_time_to_resolve_seconds";

/// `opsguard_stateless_restarts_total{trouble, result}`: restarts of
/// stateless services (`crashed` or `unhealthy`; `ok` or `failed`).
pub const STATELESS_RESTARTS: &str = "opsguard_stateless_restarts_total";
/// `opsguard_stateless_escalations_total`: stateless services left down
/// for a human, their restart budget spent.
pub const STATELESS_ESCALATIONS: &str = "opsguard_stateless_escalations_total";
/// Stateless services held, not restarted, while a dependency was down.
pub const STATELESS_HELD: &str = "opsguard_stateless_held_total";

/// `opsguard_audit_write_failures_total`: audit records the audit file
/// missed (a full disk, an I/O error); healing went on without them.
pub const AUDIT_WRITE_FAILURES: &str = "opsguard_audit_write_failures_total";
/// `opsguard_audit_failing`: 1 while audit writes are failing, else 0.
pub const AUDIT_FAILING: &str = "opsguard_audit_failing";

/// `opsguard_notifications_total{destination, result}`: notifications a
/// destination accepted (`sent`) or that were given up on after every try
/// (`failed`).
pub const NOTIFICATIONS: &str = "opsguard_notifications_total";
/// `opsguard_notifications_dropped_total{destination}`: notifications
/// dropped because the destination's queue was full.
pub const NOTIFICATIONS_DROPPED: &str = "opsguard_notifications_dropped_total";

/// Histogram buckets, in seconds, for the two time histograms: detection
/// is sub-second to a sweep (30 s); resolution spans a prune (seconds) to
/// a restart waiting for a human (minutes).
pub const TIME_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Describes every metric to the installed recorder (units and help text)
/// and starts the open-incidents gauge at zero, so a scrape before the
/// first incident already shows OpsGuard is there.
pub fn describe() {
    gauge!(INCIDENTS_OPEN).set(0.0);
    gauge!(AUDIT_FAILING).set(0.0);
    approvals_pending(0, 0.0);
    describe_counter!(ALARMS, "Alarms that opened an incident, by alarm code.");
    describe_counter!(
        ALARMS_HELD,
        "Alarms held, not acted on, while their service's dependency was down or being healed."
    );
    describe_counter!(INCIDENTS, "Incidents ended, by outcome (resolved or the stop reason) and root cause.");
    describe_gauge!(INCIDENTS_OPEN, "Incidents under way.");
    describe_counter!(ACTIONS, "Actions carried out, by tool name and result.");
    describe_counter!(APPROVALS, "Answers to approval requests: approved, rejected or no_answer.");
    describe_counter!(STATELESS_RESTARTS, "Restarts of stateless services, by trouble and result.");
    describe_counter!(STATELESS_ESCALATIONS, "Stateless services left down for a human, their restart budget spent.");
    describe_counter!(
        STATELESS_HELD,
        "Stateless services held, not restarted, while a dependency was down or not yet healthy."
    );
    describe_counter!(AUDIT_WRITE_FAILURES, "Audit records the audit file missed; healing went on without them.");
    describe_gauge!(APPROVALS_PENDING, "Approval requests waiting for a human on the web console.");
    describe_gauge!(
        APPROVAL_OLDEST_PENDING,
        Unit::Seconds,
        "How long the oldest approval request still pending has waited (0 when none)."
    );
    describe_gauge!(AUDIT_FAILING, "1 while writes to the audit log are failing.");
    describe_counter!(NOTIFICATIONS, "Notifications by destination and result: sent, or failed after every try.");
    describe_counter!(NOTIFICATIONS_DROPPED, "Notifications dropped because the destination's queue was full.");
    describe_histogram!(TIME_TO_DETECT, Unit::Seconds, "Time from a container's crash to its alarm.");
    describe_histogram!(TIME_TO_RESOLVE, Unit::Seconds, "Time from the fault (or alarm) to verified resolution.");
}

/// The alarm code without its cause (`DB_CRASH`), a bounded label set.
fn kind_label(kind: AlarmKind) -> &'static str {
    kind.code()
}

/// The root cause label: the database's cause, `none` for other alarms.
fn cause_label(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::DbCrash(c) => c.key(),
        _ => "none",
    }
}

/// The metrics and log lines of every incident step, as a tap on the audit
/// log ([`crate::audit::AuditLog::with_tap`]). It remembers each open
/// incident's alarm until the incident closes, for the closing's labels
/// and its time to resolve.
pub fn audit_tap() -> impl Fn(&AuditRecord) + Send + Sync + 'static {
    let opened: Mutex<BTreeMap<u64, Alarm>> = Mutex::new(BTreeMap::new());
    move |record| {
        let id = record.incident;
        match &record.event {
            AuditEvent::IncidentOpened { alarm } => {
                opened.lock().unwrap_or_else(|e| e.into_inner()).insert(id, alarm.clone());
                incident_opened(id, alarm)
            }
            AuditEvent::Decided { action } => decided(id, action),
            AuditEvent::Executed { action, outcome } => executed(id, action, outcome),
            AuditEvent::ApprovalAnswered { request, approved, approver, detail, .. } => {
                approval_answered(id, *request, *approved, approver, detail)
            }
            AuditEvent::IncidentClosed { resolution, .. } => {
                let alarm = opened.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                // A closing without its opening (a log tapped mid-incident)
                // cannot be labelled or timed; it is not made up.
                if let Some(alarm) = alarm {
                    incident_closed(id, &alarm, *resolution, record.ts)
                }
            }
            AuditEvent::AlarmHeld { alarm, .. } => alarm_held(alarm.kind),
            AuditEvent::Reassessed { .. }
            | AuditEvent::ApprovalRequested { .. }
            | AuditEvent::LlmConsulted { .. }
            | AuditEvent::WouldExecute { .. }
            | AuditEvent::Checked { .. } => {}
            AuditEvent::Stateless { container, trouble, step } => stateless_step(id, container, trouble.as_ref(), step),
        }
    }
}

/// An alarm held for a dependency (issue #10).
fn alarm_held(kind: AlarmKind) {
    counter!(ALARMS_HELD, "kind" => kind.code()).increment(1);
}

/// `count` approval requests are waiting, the oldest for `oldest_secs`.
pub fn approvals_pending(count: usize, oldest_secs: f64) {
    gauge!(APPROVALS_PENDING).set(count as f64);
    gauge!(APPROVAL_OLDEST_PENDING).set(oldest_secs);
}

/// An incident opened for `alarm`.
pub fn incident_opened(id: u64, alarm: &Alarm) {
    counter!(ALARMS, "kind" => kind_label(alarm.kind)).increment(1);
    gauge!(INCIDENTS_OPEN).increment(1.0);
    if let Some(fault) = alarm.evidence.fault_at {
        let secs = alarm.raised_at.millis_since(fault) as f64 / 1000.0;
        histogram!(TIME_TO_DETECT, "kind" => kind_label(alarm.kind)).record(secs);
    }
    tracing::info!(
        incident = id,
        alarm = alarm.kind.code(),
        root_cause = cause_label(alarm.kind),
        container = alarm.container.as_str(),
        exit_code = alarm.evidence.exit_code,
        oom_killed = alarm.evidence.oom_killed,
        disk_used_pct = alarm.evidence.disk_used_pct,
        exited_containers = alarm.evidence.exited_containers,
        signature = alarm.evidence.matched_signature.as_deref(),
        "incident opened: {} on {}",
        alarm.kind,
        alarm.container
    );
}

/// The engine chose `action`.
pub fn decided(id: u64, action: &Action) {
    tracing::info!(incident = id, action = action.tool_name(), "decide → {action}");
}

/// What an outcome counts as, a bounded label set.
pub fn result_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Cleaned { .. } | Outcome::Pruned { .. } | Outcome::Restarted | Outcome::LlmChose { .. } => "ok",
        Outcome::Verified(Verification::Confirmed) => "confirmed",
        Outcome::Verified(Verification::NotConfirmed { .. }) => "not_confirmed",
        Outcome::ApprovalRejected => "rejected",
        Outcome::RestartNotNeeded => "not_needed",
        Outcome::ApprovalVoided { .. } => "voided",
        Outcome::LlmFailed | Outcome::Failed { .. } => "failed",
    }
}

/// `action` was carried out with `outcome`.
pub fn executed(id: u64, action: &Action, outcome: &Outcome) {
    let result = result_label(outcome);
    counter!(ACTIONS, "action" => action.tool_name(), "result" => result).increment(1);
    tracing::info!(incident = id, action = action.tool_name(), result, outcome = ?outcome, "{action} → {result}");
}

/// A human (or policy) answered an approval request, or did not.
pub fn approval_answered(id: u64, request: u64, approved: bool, approver: &str, detail: &str) {
    // `ask` words a timeout as "no answer within …"; every other refusal is
    // a rejection.
    let answer = match (approved, detail.starts_with("no answer")) {
        (true, _) => "approved",
        (false, true) => "no_answer",
        (false, false) => "rejected",
    };
    counter!(APPROVALS, "answer" => answer).increment(1);
    tracing::info!(incident = id, request, approver, answer, detail, "approval {answer}");
}

/// The incident ended.
pub fn incident_closed(id: u64, alarm: &Alarm, resolution: Resolution, closed_at: Timestamp) {
    let outcome = match resolution {
        Resolution::Resolved => "resolved",
        Resolution::Stopped { reason } => reason.key(),
        Resolution::Withheld => "shadow",
    };
    counter!(INCIDENTS, "outcome" => outcome, "root_cause" => cause_label(alarm.kind), "kind" => kind_label(alarm.kind))
        .increment(1);
    gauge!(INCIDENTS_OPEN).decrement(1.0);
    let from = alarm.evidence.fault_at.unwrap_or(alarm.raised_at);
    let secs = closed_at.millis_since(from) as f64 / 1000.0;
    match resolution {
        Resolution::Resolved => {
            histogram!(TIME_TO_RESOLVE, "kind" => kind_label(alarm.kind)).record(secs);
            tracing::info!(incident = id, outcome, seconds = secs, "incident resolved");
        }
        Resolution::Stopped { reason } => {
            tracing::info!(incident = id, outcome, seconds = secs, "incident stopped for a human: {reason}")
        }
        Resolution::Withheld => tracing::info!(incident = id, outcome, seconds = secs, "incident ended in shadow mode"),
    }
}

/// A stateless service was restarted, came back, or was left for a human.
/// Counted without the container's name: names are the containers' own
/// text, and a label per name would let them grow the metric without end.
pub fn stateless_step(id: u64, container: &ContainerName, trouble: Option<&Trouble>, step: &StatelessStep) {
    let trouble = trouble.map_or("none", Trouble::key);
    // Text logs do not escape fields: the name is the container's own.
    let container = crate::redact::printable(container.as_str());
    let container = container.as_str();
    match step {
        StatelessStep::Restarted { attempt, error, .. } => {
            let result = if error.is_some() { "failed" } else { "ok" };
            counter!(STATELESS_RESTARTS, "trouble" => trouble, "result" => result).increment(1);
            tracing::info!(incident = id, container, trouble, attempt, result, "stateless service restarted");
        }
        StatelessStep::Held { dependency, state } => {
            counter!(STATELESS_HELD, "trouble" => trouble).increment(1);
            let (dependency, state) = (crate::redact::printable(dependency), crate::redact::printable(state));
            tracing::info!(
                incident = id,
                container,
                trouble,
                dependency,
                state,
                "stateless service held for a dependency"
            );
        }
        StatelessStep::Resolved => {
            tracing::info!(incident = id, container, "stateless service running and healthy again")
        }
        StatelessStep::Escalated { restarts, exit_codes, .. } => {
            counter!(STATELESS_ESCALATIONS).increment(1);
            tracing::warn!(
                incident = id,
                container,
                trouble,
                restarts,
                exit_codes = ?exit_codes,
                "stateless service left for a human: restart budget spent"
            );
        }
    }
}

/// A write to the audit log failed. The first failure of a streak is said
/// on stderr whatever the log format, since the audit trail is what a
/// human relies on afterwards; the following ones only count.
pub fn audit_write_failed(path: &std::path::Path, error: &std::io::Error, first: bool) {
    counter!(AUDIT_WRITE_FAILURES).increment(1);
    gauge!(AUDIT_FAILING).set(1.0);
    if first {
        eprintln!(
            "opsguard: ⚠ AUDIT LOG WRITE FAILED ({}: {}). Healing goes on, but its steps are NOT being recorded \
             until the audit log can be written again.",
            crate::classify::printable(&path.display().to_string()),
            crate::classify::printable(&error.to_string())
        );
        tracing::error!(path = %path.display(), %error, "audit log write failed; healing goes on unaudited");
    }
}

/// The audit log could be written again after `lost` records were missed.
pub fn audit_write_recovered(path: &std::path::Path, lost: u64) {
    gauge!(AUDIT_FAILING).set(0.0);
    eprintln!(
        "opsguard: audit log writable again ({}); {lost} record(s) were not recorded",
        crate::classify::printable(&path.display().to_string())
    );
    tracing::warn!(path = %path.display(), lost, "audit log writable again");
}

/// An HTTP router answering `GET /metrics` with `render()`'s text in the
/// Prometheus exposition format. The caller owns the exporter (the CLI uses
/// `metrics-exporter-prometheus`); this only serves what it renders, so the
/// web console can mount the same route.
pub fn metrics_router<F>(render: F) -> axum::Router
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render()) }
        }),
    )
}

/// Serves [`metrics_router`] on `listener` within `limits` (header-read and
/// request timeouts, a connection limit: see [`crate::serve`]) until the
/// task is dropped. The exporter's own HTTP listener is not used, so that a
/// scraper endpoint open to the network has the same bounds as the console.
pub async fn serve_metrics<F>(
    listener: tokio::net::TcpListener,
    render: F,
    limits: crate::serve::Limits,
) -> std::io::Result<()>
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    crate::serve::serve(listener, metrics_router(render), limits, None).await
}

#[cfg(test)]
mod tests {
    use crate::model::StopReason;

    #[test]
    fn stop_reason_keys_are_their_audit_names() {
        for r in StopReason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.key()));
        }
    }
}
