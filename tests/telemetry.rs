//! What an incident leaves behind for monitoring: the Prometheus metrics,
//! read the way a scraper reads them (over HTTP from `/metrics`), and the
//! structured log lines, read the way a log shipper reads them (JSON).

mod sim_lab;

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use opsguard::approval::PolicyApprover;
use opsguard::audit::Resolution;
use opsguard::clock::Clock;
use opsguard::host::sim::SimFault;
use opsguard::llm::NoAdvisor;
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
    let app = telemetry::metrics_router(move || handle.render());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
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

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_incident_step_is_a_json_log_line_with_its_fields() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let resolution =
        tracing::subscriber::with_default(subscriber, || chain_reaction(&recorder(), PolicyApprover::ApproveAll));
    assert_eq!(resolution, Resolution::Resolved);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let opened = lines.iter().find(|l| l["alarm"] == "DB_CRASH").expect("the incident's opening line");
    assert_eq!(opened["root_cause"], "disk_full");
    assert_eq!(opened["container"], "db-prod");
    assert_eq!(opened["level"], "INFO");
    assert!(opened["incident"].is_u64());
    let actions: Vec<&str> =
        lines.iter().filter(|l| l.get("result").is_some()).filter_map(|l| l["action"].as_str()).collect();
    assert_eq!(actions.first(), Some(&"clean_logs"), "{actions:?}");
    assert!(actions.contains(&"restart_database_risky"), "{actions:?}");
    assert!(lines.iter().any(|l| l["answer"] == "approved"), "{text}");
    let last = lines.last().unwrap();
    assert_eq!(last["outcome"], "resolved", "{text}");
}
