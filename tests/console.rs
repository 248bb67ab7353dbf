//! Issue #5: the web approval console over HTTP, against the real incident
//! loop on the simulated host. Every bad request gets a clear 4xx and
//! changes nothing: the request stays pending and the database is not
//! restarted.

mod sim_lab;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use opsguard::audit::{AuditLog, Resolution};
use opsguard::clock::{Clock, SimClock};
use opsguard::console::{BODY_LIMIT, Console, ConsoleSettings, OpenRequest, RequestStatus};
use opsguard::host::sim::{DB, SimFault, SimHost, SimOp};
use opsguard::incident::{IncidentReport, Timeouts};
use opsguard::llm::NoAdvisor;
use opsguard::model::StopReason;
use opsguard::rules::Rules;
use opsguard::serve::Limits;
use sim_lab::{START, SimLab, sim_lab_with_audit};
use tokio::task::JoinHandle;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token-for-tests";
// Matches the disk-full signature (a server PANIC about a file it could not
// write), so it is shown as evidence, with markup in the file name.
const HOSTILE: &str = "PANIC:  could not write to file \"<script>alert('pwned')</script>\": No space left on device";

struct Lab {
    console: Console,
    host: SimHost,
    open: OpenRequest,
}

/// A chain-reaction incident waiting on the console for the restart's approval.
async fn lab(token: Option<&str>, approval_timeout: Duration) -> (Lab, JoinHandle<IncidentReport>) {
    let console = Console::new(ConsoleSettings { token: token.map(str::to_string), approval_timeout }).unwrap();
    let tap = console.clone();
    let audit = AuditLog::in_memory().with_tap(move |r| tap.record(r));
    let SimLab { clock, host, responder, .. } = sim_lab_with_audit(console.approver(), NoAdvisor, audit);
    let mut responder = responder.with_timeouts(Timeouts { approval: approval_timeout, ..Default::default() });
    host.write_logs(DB, &[HOSTILE]);
    host.inject(SimFault::ChainReaction);
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    let incident = tokio::spawn(async move { responder.handle(alarm).await });
    let open = wait_for(|| console.open_requests().into_iter().next()).await;
    (Lab { console, host, open }, incident)
}

async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting");
}

fn restarts(host: &SimHost) -> usize {
    host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count()
}

async fn send(console: &Console, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = console.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let cookie = resp.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), cookie)
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::builder().uri(path).header(header::HOST, "127.0.0.1:8990")
}

fn post() -> axum::http::request::Builder {
    Request::builder()
        .method("POST")
        .uri("/answer")
        .header(header::HOST, "127.0.0.1:8990")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

type Fields = Vec<(&'static str, String)>;

fn form(lab: &Lab, decision: &str) -> Fields {
    vec![
        ("incident", lab.open.incident.to_string()),
        ("request", lab.open.id.to_string()),
        ("nonce", lab.open.nonce.clone()),
        ("digest", lab.open.digest.clone()),
        ("csrf", lab.console.csrf_token().to_string()),
        ("decision", decision.to_string()),
    ]
}

fn encode(fields: &[(&str, String)]) -> String {
    fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn with(mut fields: Fields, key: &str, value: &str) -> Fields {
    for f in fields.iter_mut().filter(|f| f.0 == key) {
        f.1 = value.to_string();
    }
    fields
}

async fn answer(console: &Console, fields: &[(&str, String)]) -> (StatusCode, String) {
    let body = encode(fields);
    let (s, b, _) = send(console, post().body(Body::from(body)).unwrap()).await;
    (s, b)
}

/// Nothing moved: still pending, not restarted, the incident still waiting.
fn unchanged(lab: &Lab, incident: &JoinHandle<IncidentReport>, what: &str) {
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Pending), "{what}");
    assert_eq!(restarts(&lab.host), 0, "{what}");
    assert!(!incident.is_finished(), "{what}");
}

#[tokio::test]
async fn the_page_shows_the_evidence_and_the_pending_restart_with_hostile_logs_escaped() {
    let (lab, incident) = lab(None, Duration::from_secs(300)).await;
    let (status, page, _) = send(&lab.console, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "DB_CRASH — Disk Full",
        "db-prod",
        "<dt>exit code</dt><dd>1</dd>",
        "<dt>OOMKilled</dt><dd>false</dd>",
        "<dt>disk usage</dt><dd>100.0%</dd>",
        "No space left on device",
        "restart_database_risky(&#39;db-prod&#39;)",
        "Approve</button>",
        "Reject</button>",
        "clean_logs",
        "OPEN",
        "http-equiv=\"refresh\"",
    ] {
        assert!(page.contains(needle), "missing {needle:?} in\n{page}");
    }
    assert!(!page.contains("<script>"), "a log line's markup reached the page:\n{page}");
    assert!(page.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"), "{page}");
    let (status, one, _) =
        send(&lab.console, get(&format!("/incidents/{}", lab.open.incident)).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(one.contains("Approve</button>"));
    unchanged(&lab, &incident, "viewing");
}

#[tokio::test]
async fn approve_restarts_once_and_the_page_shows_it_resolved_and_a_replay_is_refused() {
    let (lab, incident) = lab(None, Duration::from_secs(300)).await;
    let (status, _) = answer(&lab.console, &form(&lab, "approve")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Approved));
    let (_, page, _) = send(&lab.console, get("/").body(Body::empty()).unwrap()).await;
    assert!(page.contains("RESOLVED"), "{page}");
    assert!(page.contains("APPROVED"), "{page}");
    assert!(!page.contains("Approve</button>"), "{page}");

    // A second answer, approve or reject, is refused and changes nothing.
    for decision in ["approve", "reject"] {
        let (status, body) = answer(&lab.console, &form(&lab, decision)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("already approved"), "{body}");
    }
    assert_eq!(restarts(&lab.host), 1);
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Approved));
}

#[tokio::test]
async fn reject_stops_the_incident_without_a_restart() {
    let (lab, incident) = lab(None, Duration::from_secs(300)).await;
    let (status, _) = answer(&lab.console, &form(&lab, "reject")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Stopped { reason: StopReason::ApprovalRejected });
    assert_eq!(restarts(&lab.host), 0);
    let (_, page, _) = send(&lab.console, get("/").body(Body::empty()).unwrap()).await;
    assert!(page.contains("STOPPED") && page.contains("restart not approved"), "{page}");
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let (lab, incident) = lab(None, Duration::from_secs(300)).await;
    let good = form(&lab, "approve");
    type Case = (&'static str, Fields, StatusCode, &'static str);
    let cases: Vec<Case> = vec![
        ("wrong CSRF token", with(good.clone(), "csrf", "00ff"), StatusCode::FORBIDDEN, "CSRF"),
        ("unknown incident", with(good.clone(), "incident", "999"), StatusCode::NOT_FOUND, "no incident #999"),
        ("unknown request", with(good.clone(), "request", "999"), StatusCode::NOT_FOUND, "no approval request 999"),
        ("wrong nonce", with(good.clone(), "nonce", "abcd"), StatusCode::FORBIDDEN, "not issued"),
        ("other evidence", with(good.clone(), "digest", "abcd"), StatusCode::CONFLICT, "evidence changed"),
        ("odd decision", with(good.clone(), "decision", "maybe"), StatusCode::BAD_REQUEST, "approve or reject"),
        ("not a number", with(good.clone(), "request", "one"), StatusCode::UNPROCESSABLE_ENTITY, "request"),
        (
            "missing CSRF token",
            good.iter().filter(|f| f.0 != "csrf").cloned().collect(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "csrf",
        ),
    ];
    for (what, fields, want, says) in cases {
        let (status, body) = answer(&lab.console, &fields).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body.contains(says), "{what}: {body}");
        unchanged(&lab, &incident, what);
    }

    let mut big = encode(&good);
    big += &format!("&pad={}", "x".repeat(BODY_LIMIT));
    let (status, body, _) = send(&lab.console, post().body(Body::from(big)).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    unchanged(&lab, &incident, "oversized body");

    let (status, _, _) = send(&lab.console, get("/incidents/999").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let rebound = encode(&good);
    let mut req = post().body(Body::from(rebound)).unwrap();
    req.headers_mut().insert(header::HOST, "evil.example:8990".parse().unwrap());
    let (status, _, _) = send(&lab.console, req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a foreign host name on loopback");
    unchanged(&lab, &incident, "foreign host name");

    // The request was still answerable all along.
    let (status, _) = answer(&lab.console, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(incident.await.unwrap().resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
}

#[tokio::test]
async fn a_token_is_required_from_every_request_when_set() {
    let (lab, incident) = lab(Some(TOKEN), Duration::from_secs(300)).await;
    let (status, _, _) = send(&lab.console, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &lab.console,
        get("/").header(header::AUTHORIZATION, "Bearer wrong-token-wrong-token").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) =
        send(&lab.console, get("/").header(header::COOKIE, "opsguard_token=nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = answer(&lab.console, &form(&lab, "approve")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an answer without the token");
    unchanged(&lab, &incident, "answer without the token");
    let (status, _, cookie) = send(&lab.console, get("/login?token=wrong").body(Body::empty()).unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::FORBIDDEN, None));

    let (status, _, cookie) =
        send(&lab.console, get(&format!("/login?token={TOKEN}")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("login sets the cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let (status, page, _) =
        send(&lab.console, get("/").header(header::COOKIE, &pair).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Approve</button>"));
    // With a token the host name is not restricted: the console may listen beyond loopback.
    let (status, _, _) = send(
        &lab.console,
        Request::builder()
            .uri("/")
            .header(header::HOST, "opsguard.example:8990")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    unchanged(&lab, &incident, "viewing with the token");

    let body = encode(&form(&lab, "approve"));
    let (status, _, _) = send(&lab.console, post().header(header::COOKIE, &pair).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(incident.await.unwrap().resolution, Resolution::Resolved);
}

#[tokio::test]
async fn an_expired_request_is_a_rejection_and_a_late_answer_is_gone() {
    let (lab, incident) = lab(None, Duration::from_millis(300)).await;
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Stopped { reason: StopReason::ApprovalRejected });
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Expired));
    let (status, body) = answer(&lab.console, &form(&lab, "approve")).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(restarts(&lab.host), 0);
    let (_, page, _) = send(&lab.console, get("/").body(Body::empty()).unwrap()).await;
    assert!(page.contains("EXPIRED") && page.contains("STOPPED"), "{page}");
    assert!(!page.contains("Approve</button>"), "{page}");
}

#[tokio::test]
async fn the_terminal_prompt_and_the_page_show_the_same_evidence() {
    use opsguard::approval::{ApprovalRequest, Approver, evidence_facts, evidence_lines, render_request};
    use opsguard::model::{Action, RestartReason};
    let clock = SimClock::new(START);
    let host = SimHost::lab(clock.clone());
    host.inject(SimFault::ChainReaction);
    let observer = opsguard::observer::Observer::new(Arc::new(Rules::default_rules()));
    let alarm = observer.sweep(&host, clock.now()).await.alarms.into_iter().next().unwrap();
    let request = ApprovalRequest {
        crash: None,
        id: 7,
        incident: 3,
        action: Action::RestartContainer { target: alarm.container.clone(), reason: RestartReason::DiskFreed },
        alarm,
    };
    let console = Console::new(ConsoleSettings { token: None, approval_timeout: Duration::from_secs(60) }).unwrap();
    let approver = console.approver();
    let asked = request.clone();
    let waiting = tokio::spawn(async move { approver.review(&asked).await });
    wait_for(|| console.open_requests().into_iter().next()).await;
    let (_, page, _) = send(&console, get("/").body(Body::empty()).unwrap()).await;
    let prompt = render_request(&request);

    let facts = evidence_facts(&request.alarm.evidence);
    let labels: Vec<&str> = facts.iter().map(|f| f.0).collect();
    for want in ["exit code", "OOMKilled", "disk usage"] {
        assert!(labels.contains(&want), "{want} missing from {labels:?}");
    }
    for (label, value) in &facts {
        assert!(prompt.contains(&format!("{label}: {value}")), "terminal lacks {label}: {value}\n{prompt}");
        let value = opsguard::console::escape(value);
        assert!(page.contains(&format!("<dt>{label}</dt><dd>{value}</dd>")), "page lacks {label}: {value}");
    }
    let lines = evidence_lines(&request.alarm.evidence);
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(prompt.contains(l.as_str()), "terminal lacks {l}");
        assert!(page.contains(&opsguard::console::escape(l)), "page lacks {l}");
    }
    waiting.abort();
}

#[test]
fn the_cli_refuses_to_listen_beyond_loopback_without_a_token_or_with_a_weak_one() {
    // Both are refused before OpsGuard connects to Docker.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_opsguard"))
            .args(["watch", "--approve", "web"])
            .args(args)
            .env_remove(opsguard::console::TOKEN_ENV)
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a token"), "{out:?}");
    let out = run(&["--listen", "0.0.0.0:0", "--token", "short"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"), "{out:?}");
    let out = run(&["--approval-timeout", "0s"]);
    // A usage error is an error (1), never the "stopped for a human" 2.
    assert_eq!(out.status.code(), Some(1), "clap refuses a zero timeout: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than zero"), "{out:?}");
    let out = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

// ------------------------------------------------- issue 8, item 10: limits

/// Limits small enough for a test to reach: 32 connections, 1 s to send a
/// request head, 2 s for a request.
const TEST_LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(1),
    request_timeout: Duration::from_secs(2),
    max_connections: 32,
    max_connection_age: Duration::from_secs(60),
};

/// A client that sends a request head one byte every 100 ms and never
/// finishes it; returns how long the server kept the connection open.
async fn slow_client(addr: std::net::SocketAddr, give_up: Duration) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return started.elapsed() };
    let (mut rd, mut wr) = stream.into_split();
    let head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter().copied().chain(std::iter::repeat(b'a'));
    let writer = async move {
        for b in head {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut buf = [0u8; 512];
    let closed = async move {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = closed => {}
        () = writer => {}
        () = tokio::time::sleep(give_up) => {}
    }
    started.elapsed()
}

/// Issue 8, item 10: 200 slow clients on loopback. Each is dropped within
/// the header-read timeout (or sooner, when a newer client needs its
/// slot); meanwhile a normal client is answered at once and the operator's
/// approval over the same socket still heals the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_the_console_keeps_answering() {
    let (lab, incident) = lab(None, Duration::from_secs(300)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(lab.console.clone().serve_with(listener, TEST_LIMITS, None));

    let give_up = Duration::from_secs(10);
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..200 {
        slow.spawn(slow_client(addr, give_up));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Every slot is now held by a slow client.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = std::time::Instant::now();
    let resp = http.get(format!("http://{addr}/")).send().await.expect("the console answers");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Approve</button>"));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(800), "a normal request waited {took:?} behind slow clients");

    let mut longest = Duration::ZERO;
    while let Some(held) = slow.join_next().await {
        longest = longest.max(held.unwrap());
    }
    let bound = TEST_LIMITS.header_read_timeout + Duration::from_millis(1500);
    assert!(longest < bound, "a slow client held its connection for {longest:?} (header timeout 1 s)");

    // A request whose body never comes gets 408 when its time is up.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nincident=1",
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }
    unchanged(&lab, &incident, "slow clients");

    // Healing goes on: the approval reaches the incident over the socket.
    let resp = http.post(format!("http://{addr}/answer")).form(&form(&lab, "approve")).send().await.unwrap();
    assert!(resp.status().is_success() || resp.status().is_redirection(), "{resp:?}");
    assert_eq!(incident.await.unwrap().resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    server.abort();
}
