//! The Prometheus metrics an incident leaves behind, read the way a scraper
//! reads them: over HTTP from `/metrics`. (The JSON log lines are checked in
//! `json_logs.rs`.)

mod sim_lab;

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use opsguard::approval::PolicyApprover;
use opsguard::audit::Resolution;
use opsguard::clock::Clock;
use opsguard::host::sim::SimFault;
use opsguard::llm::NoAdvisor;
use opsguard::serve::Limits;
use opsguard::telemetry;
use sim_lab::sim_lab;

fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), telemetry::TIME_BUCKETS)
        .unwrap()
        .build_recorder()
}

/// Runs one simulated chain reaction (disk full, database down) with the
/// given approver, recording into `recorder`.
fn chain_reaction(recorder: &PrometheusRecorder, approver: PolicyApprover) -> Resolution {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(recorder, || {
        telemetry::describe();
        rt.block_on(async {
            let mut lab = sim_lab(approver, NoAdvisor);
            lab.host.inject(SimFault::ChainReaction);
            lab.clock.sleep(Duration::from_millis(1500)).await;
            let alarm = lab.db_alarm().await;
            lab.responder.handle(alarm).await.resolution
        })
    })
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(recorder: &PrometheusRecorder) -> (String, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(scrape_over_http(recorder))
}

async fn scrape_over_http(recorder: &PrometheusRecorder) -> (String, String) {
    let handle = recorder.handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(telemetry::serve_metrics(listener, move || handle.render(), Limits::METRICS));
    let resp = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp.text().await.unwrap();
    server.abort();
    (ctype, body)
}

#[test]
fn a_resolved_chain_reaction_is_counted_and_timed() {
    let recorder = recorder();
    assert_eq!(chain_reaction(&recorder, PolicyApprover::ApproveAll), Resolution::Resolved);
    let (ctype, text) = scrape(&recorder);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert_eq!(sample(&text, r#"opsguard_alarms_total{kind="DB_CRASH"}"#), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"opsguard_incidents_total{outcome="resolved",root_cause="disk_full",kind="DB_CRASH"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "opsguard_incidents_open"), Some(0.0), "{text}");
    assert_eq!(sample(&text, r#"opsguard_actions_total{action="clean_logs",result="ok"}"#), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"opsguard_actions_total{action="restart_database_risky",result="ok"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, r#"opsguard_actions_total{action="verify",result="confirmed"}"#).is_some(), "{text}");
    assert_eq!(sample(&text, r#"opsguard_approvals_total{answer="approved"}"#), Some(1.0), "{text}");
    // The fault happened 1.5 s before the sweep saw it: one detection in
    // the 2.5 s bucket, none in the 1 s one.
    assert_eq!(sample(&text, r#"opsguard_time_to_detect_seconds_bucket{kind="DB_CRASH",le="1"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"opsguard_time_to_detect_seconds_bucket{kind="DB_CRASH",le="2.5"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"opsguard_time_to_detect_seconds_count{kind="DB_CRASH"}"#), Some(1.0));
    let ttr = sample(&text, r#"opsguard_time_to_resolve_seconds_sum{kind="DB_CRASH"}"#).unwrap();
    assert!(ttr > 1.5, "resolution is timed from the fault: {ttr}");
    assert!(text.contains("# TYPE opsguard_time_to_resolve_seconds histogram"), "{text}");
    assert!(text.contains("# HELP opsguard_incidents_total"), "{text}");
}

#[test]
fn a_rejected_restart_is_counted_as_a_stop_and_never_as_resolved() {
    let recorder = recorder();
    let resolution = chain_reaction(&recorder, PolicyApprover::Deny);
    assert!(matches!(resolution, Resolution::Stopped { .. }));
    let (_, text) = scrape(&recorder);
    assert_eq!(sample(&text, r#"opsguard_approvals_total{answer="rejected"}"#), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"opsguard_incidents_total{outcome="approval_rejected",root_cause="disk_full",kind="DB_CRASH"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(r#"outcome="resolved""#), "{text}");
    assert!(!text.contains("opsguard_time_to_resolve_seconds_count"), "{text}");
    assert_eq!(sample(&text, "opsguard_incidents_open"), Some(0.0), "{text}");
}

/// Issue 10: a stateless service's restarts and its escalation are
/// counted, by trouble and result, never by the container's own name.
#[test]
fn stateless_restarts_and_escalations_are_counted_without_the_name() {
    use opsguard::audit::{AuditEvent, AuditLog};
    use opsguard::model::{ContainerName, Timestamp};
    use opsguard::stateless::{StatelessStep, Trouble};
    let recorder = recorder();
    metrics::with_local_recorder(&recorder, || {
        telemetry::describe();
        let audit = AuditLog::in_memory().with_tap(telemetry::audit_tap());
        let api = ContainerName::new("shop-api\n{evil=\"1\"}");
        let crashed = Some(Trouble::Crashed { exit_code: 3, finished_at: None });
        let steps = [
            (crashed, StatelessStep::Restarted { attempt: 1, delay_ms: 0, error: None }),
            (crashed, StatelessStep::Restarted { attempt: 2, delay_ms: 1_000, error: Some("daemon gone".into()) }),
            (Some(Trouble::Unhealthy), StatelessStep::Restarted { attempt: 3, delay_ms: 2_000, error: None }),
            (
                crashed,
                StatelessStep::Escalated { restarts: 3, window_secs: 600, exit_codes: vec![3, 3, 3], log_tail: vec![] },
            ),
        ];
        for (i, (trouble, step)) in steps.into_iter().enumerate() {
            let event = AuditEvent::Stateless { container: api.clone(), trouble, step };
            audit.record(1, Timestamp(1_000 + i as u64), event).unwrap();
        }
    });
    let (_, text) = scrape(&recorder);
    let restarts = |trouble: &str, result: &str| {
        sample(&text, &format!(r#"opsguard_stateless_restarts_total{{trouble="{trouble}",result="{result}"}}"#))
    };
    assert_eq!(restarts("crashed", "ok"), Some(1.0), "{text}");
    assert_eq!(restarts("crashed", "failed"), Some(1.0), "{text}");
    assert_eq!(restarts("unhealthy", "ok"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "opsguard_stateless_escalations_total"), Some(1.0), "{text}");
    assert!(!text.contains("shop-api") && !text.contains("evil"), "{text}");
}

/// Issue 8, item 10: the metrics endpoint has the console's bounds. A
/// client that never finishes its request head is dropped after the
/// header-read timeout, and one past the connection limit does not keep a
/// scraper out.
#[test]
fn a_slow_client_is_dropped_and_a_scrape_still_works() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits {
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        max_connections: 4,
        max_connection_age: Duration::from_secs(60),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let recorder = recorder();
        let handle = recorder.handle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(telemetry::serve_metrics(listener, move || handle.render(), limits));
        let mut slow = Vec::new();
        for _ in 0..8 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
            slow.push((std::time::Instant::now(), s));
        }
        let resp = reqwest::Client::builder().no_proxy().build().unwrap().get(format!("http://{addr}/metrics"));
        let resp = tokio::time::timeout(Duration::from_millis(800), resp.send()).await;
        assert!(resp.expect("answered before any header timeout").unwrap().status().is_success());
        for (started, mut s) in slow {
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            assert!(read.is_ok(), "a slow client was still connected after 5 s");
            assert!(started.elapsed() < Duration::from_millis(2500), "held {:?}", started.elapsed());
        }
        server.abort();
    });
}
