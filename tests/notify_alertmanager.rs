//! Issue 11, item 10: notifications against a real Prometheus Alertmanager
//! (Debian's `prometheus-alertmanager`, 0.25 here), started on loopback by
//! `scripts/alertmanager.sh start`, which prints the URL to put in
//! `OPSGUARD_ALERTMANAGER_URL`. An incident's opening is seen firing through
//! Alertmanager's own `GET /api/v2/alerts`, and its resolution (`endsAt`)
//! takes it out of the active alerts.
//!
//! `#[ignore]`d for a plain `cargo test`; scripts/test.sh runs it with the
//! variable set. Run without the variable, it fails: it never reads as
//! passed when it did not run.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use opsguard::audit::{AuditEvent, AuditLog, Resolution};
use opsguard::clock::{Clock, SystemClock};
use opsguard::model::{Action, Alarm, AlarmKind, ContainerName, Evidence, RestartReason, RootCause};
use opsguard::notify::Notifier;
use opsguard::notify::config;

const GATE: &str = "OPSGUARD_ALERTMANAGER_URL";

fn alertmanager_url() -> String {
    match std::env::var(GATE) {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
        _ => panic!("{GATE} is not set: start Alertmanager with `scripts/alertmanager.sh start` and export its URL"),
    }
}

/// The alerts Alertmanager holds as active for `container`.
async fn active_alerts(base: &str, container: &str) -> Vec<Value> {
    let url = format!("{base}/api/v2/alerts");
    let filter = format!("container=\"{container}\"");
    let response = reqwest::Client::new()
        .get(url)
        .query(&[("filter", filter.as_str()), ("active", "true")])
        .send()
        .await
        .expect("Alertmanager answers");
    assert!(response.status().is_success(), "GET /api/v2/alerts: {}", response.status());
    response.json::<Vec<Value>>().await.unwrap()
}

/// Waits, generously, until `container`'s active alerts satisfy `cond`.
async fn until_alerts(base: &str, container: &str, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let alerts = active_alerts(base, container).await;
        if cond(&alerts) {
            return alerts;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last seen: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Alertmanager: OPSGUARD_ALERTMANAGER_URL (scripts/alertmanager.sh start)"]
async fn an_incident_fires_in_alertmanager_and_its_resolution_ends_the_alert() {
    let base = alertmanager_url();
    // A name of its own per run: Alertmanager keeps what earlier runs sent.
    let container = format!("db-notify-{}-{}", std::process::id(), SystemClock.now().0);
    let file = format!(
        "host = \"am-test-host\"\n[[notify]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{base}\"\nbackoff = \"200ms\"\n"
    );
    let config = config::parse(&file, Path::new("notify.toml"), |_| None).unwrap();
    let notifier = Notifier::start(&config, Some("http://127.0.0.1:8990".into()));
    let audit = AuditLog::in_memory().with_tap(notifier.audit_tap());
    let alarm = Alarm {
        kind: AlarmKind::DbCrash(RootCause::OomKill),
        container: ContainerName::new(&container),
        evidence: Evidence { exit_code: Some(137), oom_killed: Some(true), ..Evidence::default() },
        raised_at: SystemClock.now(),
    };
    audit.record(1, SystemClock.now(), AuditEvent::IncidentOpened { alarm }).unwrap();
    let restart = Action::Restart { target: ContainerName::new(&container), reason: RestartReason::OomKill };
    let asked = AuditEvent::ApprovalRequested { request: 1, action: restart, approver: "web".into() };
    audit.record(1, SystemClock.now(), asked).unwrap();

    let firing = until_alerts(&base, &container, "the alert to fire with the approval link", |a| {
        a.len() == 1 && a[0]["annotations"]["approval_url"].is_string()
    })
    .await;
    let alert = &firing[0];
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "DB_CRASH", "{alert}");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["host"], "am-test-host");
    assert_eq!(labels["instance"], "am-test-host");
    assert_eq!(labels["container"], container.as_str());
    assert_eq!(alert["annotations"]["root_cause"], "oom_kill");
    assert_eq!(alert["annotations"]["approval_url"], "http://127.0.0.1:8990/incidents/1");
    assert_eq!(alert["annotations"]["state"], "awaiting_approval");

    let answered = AuditEvent::unsigned_answer(1, true, "web", "approved");
    audit.record(1, SystemClock.now(), answered).unwrap();
    audit
        .record(1, SystemClock.now(), AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 4 })
        .unwrap();
    until_alerts(&base, &container, "the alert to be resolved", |a| a.is_empty()).await;
    assert!(notifier.flush(Duration::from_secs(60)).await);
    let counts = notifier.counts();
    assert_eq!((counts[0].1.sent, counts[0].1.failed, counts[0].1.dropped), (3, 0, 0), "{counts:?}");
}
