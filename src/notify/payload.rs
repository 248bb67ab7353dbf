//! What goes on the wire for each kind of destination: the versioned JSON
//! of a webhook ([`webhook`]), a Slack-compatible message ([`slack`]) and
//! Alertmanager's alerts ([`alertmanager`]). Pure: a notification and the
//! sender's facts in, a JSON value out.
//!
//! Container names, log lines and error texts are hostile. Every format
//! makes them one printable line and caps them; Slack's also escapes its
//! mrkdwn control characters and breaks `@channel`-style mentions, so a
//! container cannot ping a whole channel or forge a link.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::AlarmKind;
use crate::redact::printable_line;

use super::config::EventKind;
use super::event::{ApprovalLink, Component, Notification, State, Transition};

/// The payload's schema name and version: a receiver checks both, and a
/// change that is not an addition gets a new version.
pub const SCHEMA: &str = "opsguard.notification";
/// See [`SCHEMA`].
pub const SCHEMA_VERSION: u32 = 1;

/// Caps, in characters, on text that came from outside.
const NAME_CAP: usize = 128;
const TEXT_CAP: usize = 512;
/// Slack's own limit is far above; a notification is a line, not a log.
const SLACK_CAP: usize = 3_000;
/// How long `notify test`'s alert stays firing in Alertmanager.
const TEST_ALERT_FOR: Duration = Duration::from_secs(300);

/// Who sends: facts the notification itself does not carry.
#[derive(Clone, Debug)]
pub struct Sender {
    /// This host, as notifications name it.
    pub host: String,
    /// The destination's name (for the test message).
    pub destination: String,
}

/// `s` as inert Slack mrkdwn text: one capped line, `&`, `<` and `>`
/// escaped (so no `<!channel>`, `<@U…>` or `<url|label>` can be formed) and
/// every `@` followed by a word joiner, so that `@channel`, `@here` and
/// `@all` (which Slack-compatible servers such as Mattermost honour in
/// plain text) mention nobody.
pub fn slack_text(s: &str, cap: usize) -> String {
    let mut out = String::new();
    for c in printable_line(s, cap).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("@\u{2060}"),
            c => out.push(c),
        }
    }
    out
}

/// The human sentence of a notification; `quote` makes each piece of
/// untrusted text safe for the receiver.
fn sentence(n: &Notification, s: &Sender, quote: &dyn Fn(&str, usize) -> String) -> String {
    let host = quote(&s.host, NAME_CAP);
    let id = n.incident.map(|i| format!("#{i}")).unwrap_or_default();
    let what = match (&n.alarm, &n.container) {
        (Some(a), Some(c)) => format!("{a} on {}", quote(c, NAME_CAP)),
        (Some(a), None) => a.to_string(),
        (None, Some(c)) => quote(c, NAME_CAP),
        (None, None) => String::new(),
    };
    let detail = n.detail.as_deref().map(|d| format!(" ({})", quote(d, TEXT_CAP))).unwrap_or_default();
    match n.event {
        EventKind::IncidentOpened => {
            let evidence = n.evidence.as_deref().map(|e| format!(": {}", quote(e, TEXT_CAP))).unwrap_or_default();
            format!("incident {id} opened on {host}: {what}{evidence}")
        }
        EventKind::ApprovalRequested => {
            let (action, at) = match &n.approval {
                Some(ApprovalLink { action, url, .. }) => {
                    (*action, url.as_deref().map(|u| format!(" at {}", quote(u, TEXT_CAP))).unwrap_or_default())
                }
                None => ("act", String::new()),
            };
            format!("incident {id} on {host} needs a human's approval to {action} ({what}); answer{at}")
        }
        EventKind::StoppedForHuman => match (n.transition.to, n.reason) {
            (State::Withheld, _) => {
                format!("incident {id} on {host} ended in shadow mode, its action not carried out: {what}")
            }
            (_, Some(reason)) => format!("incident {id} on {host} stopped for a human: {} ({what})", reason.describe()),
            (_, None) => format!("incident {id} on {host} stopped for a human ({what})"),
        },
        EventKind::Resolved => format!("incident {id} on {host} resolved: {what}"),
        EventKind::Degraded => {
            let part = match n.component {
                Some(Component::EventStream) => "Docker's event stream",
                Some(Component::AuditLog) => "the audit log",
                None => "a component",
            };
            match n.transition.to {
                State::Healthy => format!("OpsGuard on {host} recovered: {part} works again"),
                _ => format!("OpsGuard on {host} is degraded: {part} is failing{detail}"),
            }
        }
        EventKind::Test => {
            format!("test notification from OpsGuard on {host} to {}", quote(&s.destination, NAME_CAP))
        }
    }
}

/// The plain sentence (webhook `summary`, Alertmanager's annotation).
pub fn summary(n: &Notification, s: &Sender) -> String {
    sentence(n, s, &printable_line)
}

/// The root cause's key, for a database crash.
fn cause(alarm: Option<AlarmKind>) -> Option<&'static str> {
    alarm.and_then(AlarmKind::cause).map(|c| c.key())
}

#[derive(Serialize)]
struct WebhookV1<'a> {
    schema: &'static str,
    version: u32,
    event: &'static str,
    time: String,
    host: String,
    incident: Option<u64>,
    container: Option<String>,
    alarm: Option<&'static str>,
    root_cause: Option<&'static str>,
    transition: Transition,
    reason: Option<&'static str>,
    summary: String,
    evidence: Option<String>,
    approval: Option<&'a ApprovalLink>,
    component: Option<&'static str>,
    detail: Option<String>,
}

/// The generic webhook's body, schema v1: every field is always present
/// (`null` when it does not apply), so receivers need no guessing.
pub fn webhook(n: &Notification, s: &Sender) -> Value {
    let body = WebhookV1 {
        schema: SCHEMA,
        version: SCHEMA_VERSION,
        event: n.event.key(),
        time: n.time.to_rfc3339(),
        host: printable_line(&s.host, NAME_CAP),
        incident: n.incident,
        container: n.container.as_deref().map(|c| printable_line(c, NAME_CAP)),
        alarm: n.alarm.map(AlarmKind::code),
        root_cause: cause(n.alarm),
        transition: n.transition,
        reason: n.reason.map(|r| r.key()),
        summary: summary(n, s),
        evidence: n.evidence.as_deref().map(|e| printable_line(e, TEXT_CAP)),
        approval: n.approval.as_ref(),
        component: n.component.map(Component::key),
        detail: n.detail.as_deref().map(|d| printable_line(d, TEXT_CAP)),
    };
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// A Slack-compatible incoming webhook's body: one short line.
pub fn slack(n: &Notification, s: &Sender) -> Value {
    let icon = match (n.event, n.transition.to) {
        (EventKind::IncidentOpened, _) => "🔴",
        (EventKind::ApprovalRequested, _) => "🙋",
        (EventKind::StoppedForHuman, _) => "🛑",
        (EventKind::Resolved, _) | (EventKind::Degraded, State::Healthy) => "✅",
        (EventKind::Degraded, _) => "⚠️",
        (EventKind::Test, _) => "🧪",
    };
    let mut text = format!("{icon} OpsGuard: {}", sentence(n, s, &slack_text));
    if text.chars().count() > SLACK_CAP {
        text = text.chars().take(SLACK_CAP - 1).collect::<String>() + "…";
    }
    json!({ "text": text })
}

/// Alertmanager's `POST /api/v2/alerts` body: one alert, identified by its
/// labels (alertname, severity, container, host, instance), which stay the
/// same for the whole incident so each notification updates one alert.
/// While firing, `endsAt` is `expire_after` ahead (an OpsGuard that dies
/// mid-incident leaves an alert that ends by itself); a resolution or a
/// recovery ends it now.
pub fn alertmanager(n: &Notification, s: &Sender, expire_after: Duration) -> Value {
    let host = printable_line(&s.host, NAME_CAP);
    let mut labels = serde_json::Map::new();
    let (alertname, severity) = match (n.event, n.alarm) {
        (EventKind::Test, _) => ("OpsGuardTest".to_string(), "info"),
        (EventKind::Degraded, _) => ("OpsGuardDegraded".to_string(), "critical"),
        (_, Some(a @ AlarmKind::DbCrash(_))) => (a.code().to_string(), "critical"),
        (_, Some(a)) => (a.code().to_string(), "warning"),
        (_, None) => ("OpsGuardIncident".to_string(), "warning"),
    };
    labels.insert("alertname".into(), alertname.into());
    labels.insert("severity".into(), severity.into());
    if let Some(c) = n.container.as_deref().map(|c| printable_line(c, NAME_CAP)).filter(|c| !c.is_empty()) {
        labels.insert("container".into(), c.into());
    }
    if let Some(component) = n.component {
        labels.insert("component".into(), component.key().into());
    }
    labels.insert("host".into(), host.clone().into());
    labels.insert("instance".into(), host.into());
    labels.insert("source".into(), "opsguard".into());

    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), summary(n, s).into());
    let description = n.evidence.as_deref().or(n.detail.as_deref()).map(|d| printable_line(d, TEXT_CAP));
    if let Some(d) = description {
        annotations.insert("description".into(), d.into());
    }
    annotations.insert("event".into(), n.event.key().into());
    annotations.insert("state".into(), json!(n.transition.to).as_str().unwrap_or_default().into());
    if let Some(id) = n.incident {
        annotations.insert("incident".into(), id.to_string().into());
    }
    if let Some(c) = cause(n.alarm) {
        annotations.insert("root_cause".into(), c.into());
    }
    if let Some(r) = n.reason {
        annotations.insert("reason".into(), r.key().into());
    }
    if let Some(url) = n.approval.as_ref().and_then(|a| a.url.as_deref()) {
        annotations.insert("approval_url".into(), url.into());
    }

    let starts = n.opened_at.unwrap_or(n.time).min(n.time);
    let ends = match (n.event, n.ends_alert()) {
        (_, true) => n.time,
        (EventKind::Test, _) => n.time.plus_millis(TEST_ALERT_FOR.as_millis() as u64),
        _ => n.time.plus_millis(expire_after.as_millis() as u64),
    };
    json!([{
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts.to_rfc3339(),
        "endsAt": ends.to_rfc3339(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RootCause, StopReason, Timestamp};

    /// The time the notifications of these tests are about.
    const T: Timestamp = Timestamp(1_795_766_400_000);

    fn sender() -> Sender {
        Sender { host: "db-host-1".into(), destination: "ops".into() }
    }

    fn incident(event: EventKind, from: Option<State>, to: State, container: &str) -> Notification {
        let mut n = Notification::test(T.plus_millis(5_000));
        n.event = event;
        n.transition = Transition { from, to };
        n.incident = Some(7);
        n.opened_at = Some(T);
        n.container = Some(container.into());
        n.alarm = Some(AlarmKind::DbCrash(RootCause::OomKill));
        n.evidence = Some("FATAL: out of memory".into());
        n
    }

    #[test]
    fn the_webhook_payload_is_schema_v1_with_every_field() {
        let mut n = incident(EventKind::ApprovalRequested, Some(State::Open), State::AwaitingApproval, "db-prod");
        n.approval = Some(ApprovalLink {
            request: 3,
            action: "restart_database_risky",
            url: Some("http://127.0.0.1:8990/incidents/7".into()),
        });
        assert_eq!(
            webhook(&n, &sender()),
            json!({
                "schema": "opsguard.notification",
                "version": 1,
                "event": "approval_requested",
                "time": "2026-11-27T08:00:05.000Z",
                "host": "db-host-1",
                "incident": 7,
                "container": "db-prod",
                "alarm": "DB_CRASH",
                "root_cause": "oom_kill",
                "transition": { "from": "open", "to": "awaiting_approval" },
                "reason": null,
                "summary": "incident #7 on db-host-1 needs a human's approval to restart_database_risky \
                            (DB_CRASH — OOM Killer on db-prod); answer at http://127.0.0.1:8990/incidents/7",
                "evidence": "FATAL: out of memory",
                "approval": { "request": 3, "action": "restart_database_risky", "url": "http://127.0.0.1:8990/incidents/7" },
                "component": null,
                "detail": null,
            })
        );
    }

    #[test]
    fn a_degradation_webhook_names_the_component_and_no_incident() {
        let n = Notification::degraded(Component::AuditLog, T, Some("No space left on device".into()));
        let v = webhook(&n, &sender());
        assert_eq!(v["event"], "degraded");
        assert_eq!(v["incident"], Value::Null);
        assert_eq!(v["component"], "audit_log");
        assert_eq!(v["transition"], json!({ "from": "healthy", "to": "degraded" }));
        assert_eq!(
            v["summary"],
            "OpsGuard on db-host-1 is degraded: the audit log is failing (No space left on device)"
        );
    }

    const HOSTILE: &str = "db\n<!channel> @here <https://evil.example|click> & \u{1b}[31m@channel";

    #[test]
    fn slack_text_cannot_mention_link_or_break_lines() {
        let mut n = incident(EventKind::IncidentOpened, None, State::Open, HOSTILE);
        n.evidence = Some(format!("{HOSTILE}{}", "x".repeat(5_000)));
        let text = slack(&n, &sender())["text"].as_str().unwrap().to_string();
        assert!(
            text.starts_with("🔴 OpsGuard: incident #7 opened on db-host-1: DB_CRASH — OOM Killer on db"),
            "{text}"
        );
        for bad in ['<', '>', '\n', '\u{1b}'] {
            assert!(!text.contains(bad), "{bad:?} in {text:?}");
        }
        assert!(!text.contains("@here") && !text.contains("@channel"), "{text}");
        assert!(text.contains("&lt;!channel&gt; @\u{2060}here &lt;https://evil.example|click&gt; &amp;"), "{text}");
        // The evidence is capped, the whole line too.
        assert!(text.chars().count() < 2 * TEXT_CAP, "{}", text.chars().count());
        assert!(text.ends_with('…'), "{text}");
    }

    #[test]
    fn webhook_and_alertmanager_text_is_one_capped_printable_line() {
        let long = format!("{HOSTILE}{}", "y".repeat(1_000));
        let mut n = incident(EventKind::IncidentOpened, None, State::Open, &long);
        n.evidence = Some(long.clone());
        let w = webhook(&n, &sender());
        let a = alertmanager(&n, &sender(), Duration::from_secs(60));
        let texts = [
            &w["container"],
            &w["evidence"],
            &w["summary"],
            &a[0]["labels"]["container"],
            &a[0]["annotations"]["summary"],
            &a[0]["annotations"]["description"],
        ];
        for t in texts {
            let t = t.as_str().unwrap();
            assert!(!t.contains('\n') && !t.contains('\u{1b}'), "{t:?}");
        }
        assert_eq!(w["container"].as_str().unwrap().chars().count(), NAME_CAP);
        assert_eq!(w["evidence"].as_str().unwrap().chars().count(), TEXT_CAP);
    }

    #[test]
    fn an_alert_fires_with_a_horizon_and_ends_when_resolved() {
        let s = sender();
        let opened = incident(EventKind::IncidentOpened, None, State::Open, "db-prod");
        assert_eq!(
            alertmanager(&opened, &s, Duration::from_secs(3_600)),
            json!([{
                "labels": {
                    "alertname": "DB_CRASH",
                    "severity": "critical",
                    "container": "db-prod",
                    "host": "db-host-1",
                    "instance": "db-host-1",
                    "source": "opsguard",
                },
                "annotations": {
                    "summary": "incident #7 opened on db-host-1: DB_CRASH — OOM Killer on db-prod: FATAL: out of memory",
                    "description": "FATAL: out of memory",
                    "event": "incident_opened",
                    "state": "open",
                    "incident": "7",
                    "root_cause": "oom_kill",
                },
                "startsAt": "2026-11-27T08:00:00.000Z",
                "endsAt": "2026-11-27T09:00:05.000Z",
            }])
        );
        let resolved = incident(EventKind::Resolved, Some(State::Open), State::Resolved, "db-prod");
        let a = alertmanager(&resolved, &s, Duration::from_secs(3_600));
        assert_eq!(a[0]["labels"], alertmanager(&opened, &s, Duration::from_secs(1))[0]["labels"], "same alert");
        assert_eq!(
            (a[0]["startsAt"].as_str(), a[0]["endsAt"].as_str()),
            (Some("2026-11-27T08:00:00.000Z"), Some("2026-11-27T08:00:05.000Z"))
        );

        // Stopped for a human: still firing, the reason said.
        let mut stopped = incident(EventKind::StoppedForHuman, Some(State::Open), State::Stopped, "db-prod");
        stopped.reason = Some(StopReason::RestartBudgetExhausted);
        let a = alertmanager(&stopped, &s, Duration::from_secs(3_600));
        assert_eq!(a[0]["endsAt"], "2026-11-27T09:00:05.000Z");
        assert_eq!(a[0]["annotations"]["reason"], "restart_budget_exhausted");
    }

    #[test]
    fn a_degradation_is_an_alert_of_its_own_until_recovery() {
        let s = sender();
        let lost = Notification::degraded(Component::EventStream, T, Some("broken pipe".into()));
        let a = alertmanager(&lost, &s, Duration::from_secs(60));
        assert_eq!(a[0]["labels"]["alertname"], "OpsGuardDegraded");
        assert_eq!(a[0]["labels"]["component"], "event_stream");
        assert_eq!(a[0]["endsAt"], "2026-11-27T08:01:00.000Z");
        let mut back = Notification::degraded(Component::EventStream, T.plus_millis(9_000), None);
        back.opened_at = Some(T);
        let b = alertmanager(&back, &s, Duration::from_secs(60));
        assert_eq!(b[0]["labels"], a[0]["labels"]);
        assert_eq!(
            (b[0]["startsAt"].as_str(), b[0]["endsAt"].as_str()),
            (Some("2026-11-27T08:00:00.000Z"), Some("2026-11-27T08:00:09.000Z"))
        );
    }

    #[test]
    fn every_event_has_a_sentence() {
        let s = sender();
        let mut n = incident(EventKind::StoppedForHuman, Some(State::Open), State::Withheld, "db-prod");
        assert!(summary(&n, &s).contains("shadow mode"), "{}", summary(&n, &s));
        n.transition.to = State::Stopped;
        n.reason = Some(StopReason::ConfigError);
        assert!(summary(&n, &s).contains("stopped for a human: configuration error"), "{}", summary(&n, &s));
        let t = Notification::test(T);
        assert_eq!(summary(&t, &s), "test notification from OpsGuard on db-host-1 to ops");
        assert_eq!(slack(&t, &s)["text"], "🧪 OpsGuard: test notification from OpsGuard on db-host-1 to ops");
        let a = alertmanager(&t, &s, Duration::from_secs(3_600));
        assert_eq!(
            (a[0]["labels"]["alertname"].as_str(), a[0]["endsAt"].as_str()),
            (Some("OpsGuardTest"), Some("2026-11-27T08:05:00.000Z"))
        );
    }
}
