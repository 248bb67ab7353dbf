//! Issue 11, items 7-10: notifications reach real HTTP receivers on
//! loopback: the versioned webhook payload per incident transition, a
//! Slack-compatible message that a hostile container name cannot turn
//! into a mention, retries with backoff, a full queue that drops instead
//! of waiting, `opsguard notify test`, and a broken notify file refused
//! before `watch` starts. The receiver is a small axum app on 127.0.0.1:0
//! whose answers and pace each test sets.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::Semaphore;

use opsguard::audit::{AuditEvent, AuditLog, Resolution};
use opsguard::model::{
    Action, Alarm, AlarmKind, ContainerName, Evidence, RestartReason, RootCause, StopReason, Timestamp,
};
use opsguard::notify::config::{self, NotifyConfig};
use opsguard::notify::{Counts, Notifier};

/// A request as the receiver saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The statuses of the next answers, in order; 200 once empty.
    statuses: Arc<Mutex<VecDeque<u16>>>,
    /// Each answer takes a permit: none, and requests hang (a slow receiver).
    gate: Arc<Semaphore>,
    url: String,
}

impl Receiver {
    async fn start(statuses: &[u16], open: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver {
            seen: Arc::default(),
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            gate: Arc::new(Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 })),
            url,
        };
        // Every path: an Alertmanager destination posts to /hook/api/v2/alerts.
        let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

async fn receive(State(r): State<Receiver>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    r.seen.lock().unwrap().push(Seen { path: uri.path().to_string(), headers, body });
    let _permit = r.gate.acquire().await.unwrap();
    let status = r.statuses.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// Waits (generously: the machine may be busy) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse(text: &str) -> NotifyConfig {
    config::parse(text, Path::new("notify.toml"), |_| None).unwrap()
}

/// The Prometheus text of this test binary's metrics (a global recorder,
/// installed by the first test that asks; destination names are unique
/// per test, so tests running side by side do not mix their counts).
fn metrics() -> String {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("no other recorder in this test binary");
            handle
        })
        .render()
}

fn counts(n: &Notifier, name: &str) -> Counts {
    n.counts().into_iter().find(|(d, _)| d == name).unwrap().1
}

fn alarm(container: &str, cause: RootCause, evidence: &str) -> Alarm {
    Alarm {
        kind: AlarmKind::DbCrash(cause),
        container: ContainerName::new(container),
        evidence: Evidence { exit_code: Some(137), log_lines: vec![evidence.to_string()], ..Evidence::default() },
        raised_at: Timestamp(1_795_766_400_000),
    }
}

const T0: u64 = 1_795_766_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_webhook_as_one_versioned_payload() {
    let hook = Receiver::start(&[], true).await;
    let chat = Receiver::start(&[], true).await;
    let config = parse(&format!(
        r#"
host = "db-host-1"
[[notify]]
name = "hook"
kind = "webhook"
url = "{}"
headers = {{ Authorization = "Bearer s3cret" }}

[[notify]]
name = "chat"
kind = "slack"
url = "{}"
events = ["incident_opened", "stopped_for_human"]
"#,
        hook.url, chat.url
    ));
    let notifier = Notifier::start(&config, Some("http://127.0.0.1:8990".into()));
    let audit = AuditLog::in_memory().with_tap(notifier.audit_tap());
    let restart = Action::Restart { target: ContainerName::new("db-prod"), reason: RestartReason::OomKill };
    let hostile = "db-prod\n<!channel> @here";
    audit
        .record(1, Timestamp(T0), AuditEvent::IncidentOpened { alarm: alarm("db-prod", RootCause::OomKill, "killed") })
        .unwrap();
    audit.record(1, Timestamp(T0 + 1), AuditEvent::Decided { action: restart.clone() }).unwrap();
    let asked = AuditEvent::ApprovalRequested { request: 1, action: restart.clone(), approver: "web".into() };
    audit.record(1, Timestamp(T0 + 2), asked).unwrap();
    let answered = AuditEvent::unsigned_answer(1, true, "web", "approved");
    audit.record(1, Timestamp(T0 + 3), answered).unwrap();
    audit
        .record(1, Timestamp(T0 + 4), AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 5 })
        .unwrap();
    // A second incident, on a container with a hostile name, stops for a human.
    let opened =
        AuditEvent::IncidentOpened { alarm: alarm(hostile, RootCause::ConfigError, "FATAL: <@U123> & @channel") };
    audit.record(2, Timestamp(T0 + 5), opened).unwrap();
    let stop = Resolution::Stopped { reason: StopReason::ConfigError };
    audit.record(2, Timestamp(T0 + 6), AuditEvent::IncidentClosed { resolution: stop, steps: 2 }).unwrap();

    until("five webhook payloads", || hook.seen().len() == 5).await;
    until("three chat messages", || chat.seen().len() == 3).await;
    assert!(notifier.flush(Duration::from_secs(60)).await);

    let payloads: Vec<Value> = hook.seen().into_iter().map(|s| s.body).collect();
    let events: Vec<(&str, Option<u64>, &Value)> = payloads
        .iter()
        .map(|p| (p["event"].as_str().unwrap(), p["incident"].as_u64(), &p["transition"]["to"]))
        .collect();
    assert_eq!(
        events,
        [
            ("incident_opened", Some(1), &Value::from("open")),
            ("approval_requested", Some(1), &Value::from("awaiting_approval")),
            ("resolved", Some(1), &Value::from("resolved")),
            ("incident_opened", Some(2), &Value::from("open")),
            ("stopped_for_human", Some(2), &Value::from("stopped")),
        ]
    );
    for p in &payloads {
        assert_eq!((p["schema"].as_str(), p["version"].as_u64()), (Some("opsguard.notification"), Some(1)), "{p}");
        assert_eq!(p["host"], "db-host-1");
        assert_eq!(p["alarm"], "DB_CRASH");
    }
    assert_eq!(payloads[1]["approval"]["url"], "http://127.0.0.1:8990/incidents/1");
    assert_eq!(payloads[2]["transition"]["from"], "open");
    assert_eq!(payloads[4]["reason"], "config_error");
    assert_eq!(payloads[4]["root_cause"], "config_error");
    assert_eq!(payloads[3]["container"], "db-prod\u{fffd}<!channel> @here", "JSON carries it, made one line");
    assert!(hook.seen().iter().all(|s| s.headers["authorization"] == "Bearer s3cret" && s.path == "/hook"));

    let texts: Vec<String> = chat.seen().into_iter().map(|s| s.body["text"].as_str().unwrap().to_string()).collect();
    assert!(texts[0].contains("incident #1 opened on db-host-1"), "{texts:?}");
    assert!(texts[1].contains("incident #2 opened on db-host-1"), "{texts:?}");
    assert!(texts[2].contains("stopped for a human: configuration error"), "{texts:?}");
    for t in &texts {
        assert!(!t.contains('<') && !t.contains('\n') && !t.contains("@here") && !t.contains("@channel"), "{t:?}");
    }
    assert_eq!(counts(&notifier, "hook"), Counts { sent: 5, failed: 0, dropped: 0 });
    assert_eq!(counts(&notifier, "chat"), Counts { sent: 3, failed: 0, dropped: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_with_backoff_until_the_tries_run_out() {
    metrics();
    // Two server errors, then success: three tries, one notification sent.
    let flaky = Receiver::start(&[500, 503], true).await;
    // Always failing: given up after `attempts`.
    let down = Receiver::start(&[500; 10], true).await;
    // A client error will not pass by trying again.
    let refusing = Receiver::start(&[400; 10], true).await;
    let config = parse(&format!(
        r#"
[[notify]]
name = "flaky"
kind = "webhook"
url = "{}"
attempts = 3
backoff = "10ms"
[[notify]]
name = "down"
kind = "alertmanager"
url = "{}"
attempts = 2
backoff = "10ms"
[[notify]]
name = "refusing"
kind = "slack"
url = "{}"
attempts = 5
backoff = "10ms"
"#,
        flaky.url, down.url, refusing.url
    ));
    let notifier = Notifier::start(&config, None);
    let lost = opsguard::notify::event::Notification::degraded(
        opsguard::notify::event::Component::EventStream,
        Timestamp(T0),
        Some("connection reset".into()),
    );
    notifier.notify(lost);
    assert!(notifier.flush(Duration::from_secs(60)).await, "every try ends");
    assert_eq!(counts(&notifier, "flaky"), Counts { sent: 1, failed: 0, dropped: 0 });
    assert_eq!(flaky.seen().len(), 3);
    assert!(flaky.seen().iter().all(|s| s.body == flaky.seen()[0].body), "the same payload each try");
    assert_eq!(counts(&notifier, "down"), Counts { sent: 0, failed: 1, dropped: 0 });
    assert_eq!(down.seen().len(), 2);
    assert_eq!(down.seen()[0].path, "/hook/api/v2/alerts");
    assert_eq!(down.seen()[0].body[0]["labels"]["alertname"], "OpsGuardDegraded");
    assert_eq!(counts(&notifier, "refusing"), Counts { sent: 0, failed: 1, dropped: 0 });
    assert_eq!(refusing.seen().len(), 1, "a 400 is not retried");
    let text = metrics();
    for line in [
        r#"opsguard_notifications_total{destination="flaky",result="sent"} 1"#,
        r#"opsguard_notifications_total{destination="down",result="failed"} 1"#,
        r#"opsguard_notifications_total{destination="refusing",result="failed"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_fills_only_its_own_queue_and_never_holds_up_the_caller() {
    metrics();
    let hanging = Receiver::start(&[], false).await;
    let fine = Receiver::start(&[], true).await;
    let config = parse(&format!(
        r#"
[[notify]]
name = "hanging"
kind = "webhook"
url = "{}"
queue = 2
timeout = "10m"
[[notify]]
name = "fine"
kind = "webhook"
url = "{}"
queue = 100
"#,
        hanging.url, fine.url
    ));
    let notifier = Notifier::start(&config, None);
    let audit = AuditLog::in_memory().with_tap(notifier.audit_tap());
    let open = |id: u64| AuditEvent::IncidentOpened { alarm: alarm(&format!("db-{id}"), RootCause::OomKill, "x") };
    audit.record(1, Timestamp(T0), open(1)).unwrap();
    // The first is in flight, held by the receiver.
    until("the first request", || hanging.seen().len() == 1).await;
    // Ten more while it hangs: two wait in the queue, eight are dropped,
    // and recording (the incident's side) never waited.
    for id in 2..=11 {
        audit.record(id, Timestamp(T0 + id), open(id)).unwrap();
    }
    assert_eq!(counts(&notifier, "hanging"), Counts { sent: 0, failed: 0, dropped: 8 });
    until("the other destination's eleven", || fine.seen().len() == 11).await;
    assert_eq!(counts(&notifier, "fine").dropped, 0);
    // The receiver comes back: what was queued goes out, in order.
    hanging.open();
    assert!(notifier.flush(Duration::from_secs(60)).await);
    assert_eq!(counts(&notifier, "hanging"), Counts { sent: 3, failed: 0, dropped: 8 });
    let ids: Vec<u64> = hanging.seen().iter().map(|s| s.body["incident"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    let text = metrics();
    for line in [
        r#"opsguard_notifications_dropped_total{destination="hanging"} 8"#,
        r#"opsguard_notifications_total{destination="hanging",result="sent"} 3"#,
        r#"opsguard_notifications_total{destination="fine",result="sent"} 11"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degradation_is_told_once_and_its_recovery_once() {
    let hook = Receiver::start(&[], true).await;
    let config = parse(&format!("[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"degraded\"]\n", hook.url));
    let notifier = Notifier::start(&config, None);
    use opsguard::notify::event::Component;
    notifier.component(Component::EventStream, Timestamp(T0), Ok(()));
    notifier.component(Component::EventStream, Timestamp(T0 + 1), Err("broken pipe".into()));
    notifier.component(Component::EventStream, Timestamp(T0 + 2), Err("connection refused".into()));
    notifier.component(Component::AuditLog, Timestamp(T0 + 3), Err("No space left on device".into()));
    notifier.component(Component::EventStream, Timestamp(T0 + 4), Ok(()));
    notifier.component(Component::EventStream, Timestamp(T0 + 5), Ok(()));
    // An incident is filtered out here.
    let audit = AuditLog::in_memory().with_tap(notifier.audit_tap());
    audit
        .record(1, Timestamp(T0 + 6), AuditEvent::IncidentOpened { alarm: alarm("db", RootCause::OomKill, "x") })
        .unwrap();
    assert!(notifier.flush(Duration::from_secs(60)).await);
    let got: Vec<(String, String, String)> = hook
        .seen()
        .iter()
        .map(|s| {
            let b = &s.body;
            (
                b["component"].as_str().unwrap().into(),
                b["transition"]["to"].as_str().unwrap().into(),
                b["detail"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("event_stream".into(), "degraded".into(), "\"broken pipe\"".into()),
            ("audit_log".into(), "degraded".into(), "\"No space left on device\"".into()),
            ("event_stream".into(), "healthy".into(), "null".into()),
        ]
    );
}

/// `opsguard ARGS` with none of the caller's `OPSGUARD_*` variables.
fn opsguard(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(args).env("DOCKER_HOST", "tcp://127.0.0.1:9").stdin(Stdio::null()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reports_each_destination_and_fails_if_any_did() {
    let ok = Receiver::start(&[], true).await;
    let broken = Receiver::start(&[503], true).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notify.toml");
    // Event filters do not stop a test.
    let text = format!(
        "host = \"db-host-1\"\n[[notify]]\nname = \"ok\"\nkind = \"slack\"\nurl = \"{}\"\nevents = [\"resolved\"]\n\
         [[notify]]\nname = \"broken\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        ok.url, broken.url
    );
    std::fs::write(&file, text).unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || opsguard(&["notify", "test", "--notify", &file_arg])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("✅ ok (slack): sent"), "{stdout}");
    assert!(stdout.contains("❌ broken (webhook): HTTP 503"), "{stdout}");
    assert_eq!(ok.seen()[0].body["text"], "🧪 OpsGuard: test notification from OpsGuard on db-host-1 to ok");
    assert_eq!(broken.seen()[0].body["event"], "test");
    assert_eq!(broken.seen().len(), 1, "one try");

    // Nothing listens: the error says why, and never the URL (a secret for Slack).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::write(
        &file,
        format!("[[notify]]\nname = \"gone\"\nkind = \"slack\"\nurl = \"http://127.0.0.1:{port}/T0/SECRET\"\n"),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || opsguard(&["notify", "test", "--notify", &file_arg])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("❌ gone (slack): error sending request") && stdout.contains("refused"), "{stdout}");
    assert!(!stdout.contains("SECRET"), "{stdout}");

    // Every destination answers: exit 0.
    std::fs::write(&file, format!("[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n", ok.url)).unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || opsguard(&["notify", "test", "--notify", &file_arg])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn watch_refuses_a_broken_notify_file_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notify.toml");
    std::fs::write(&file, "[[notify]]\nkind = \"webhook\"\nurl = \"file:///etc/shadow\"\n").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = opsguard(&[
        "watch",
        "--approve",
        "deny",
        "--notify",
        file.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("notify.toml:3: [[notify]] \"webhook-1\": url: only http and https"), "{stderr}");
    assert!(!audit.exists(), "refused before anything started");

    // The same from the environment.
    std::fs::write(&file, "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nevents = [\"everything\"]\n")
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .args(["watch", "--approve", "deny", "--audit", audit.to_str().unwrap()])
        .env("OPSGUARD_NOTIFY", &file)
        .env("DOCKER_HOST", "tcp://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("notify.toml:4: unknown variant `everything`"), "{stderr}");
}

/// The whole incident loop on the simulated host, with the notifier as
/// `watch` wires it (a tap on the audit log): a receiver that never
/// answers holds up no incident, and the other receiver gets one payload
/// per transition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_on_the_simulated_host_ends_while_a_receiver_hangs() {
    use opsguard::approval::PolicyApprover;
    use opsguard::clock::SimClock;
    use opsguard::engine::Engine;
    use opsguard::host::sim::{SimFault, SimHost};
    use opsguard::incident::{Agent, Responder, WatchLimit};
    use opsguard::llm::NoAdvisor;
    use opsguard::rules::Rules;

    let stuck = Receiver::start(&[], false).await;
    let hook = Receiver::start(&[], true).await;
    let config = parse(&format!(
        "[[notify]]\nname = \"stuck\"\nkind = \"webhook\"\nurl = \"{}\"\nqueue = 2\ntimeout = \"10m\"\n\
         [[notify]]\nname = \"sim-hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        stuck.url, hook.url
    ));
    let notifier = Notifier::start(&config, None);
    let clock = SimClock::new(Timestamp(T0));
    let sim = SimHost::lab(clock.clone());
    sim.inject(SimFault::DbOomKill);
    let audit = AuditLog::in_memory().with_tap(notifier.audit_tap());
    let rules = Arc::new(Rules::default_rules());
    let responder = Responder::new(Engine::new(rules), sim, PolicyApprover::ApproveAll, NoAdvisor, clock, audit);
    let reports = Agent::new(responder).run(None, WatchLimit { incidents: Some(1), deadline: None }).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].resolution, Resolution::Resolved, "{:?}", reports[0].steps);
    until("the opening and the resolution", || hook.seen().len() == 2).await;
    let told: Vec<Value> = hook.seen().iter().map(|s| s.body["event"].clone()).collect();
    assert_eq!(told, ["incident_opened", "resolved"], "a policy approval is not told");
    assert_eq!(hook.seen()[1].body["root_cause"], "oom_kill");
    // The stuck receiver holds the opening; the resolution waits in its
    // queue (room for both, whenever the worker takes the first).
    until("the stuck receiver's one request", || stuck.seen().len() == 1).await;
    assert_eq!(counts(&notifier, "stuck"), Counts { sent: 0, failed: 0, dropped: 0 });
    assert!(!notifier.flush(Duration::from_millis(50)).await, "still pending: the flush gives up at its grace");
}
