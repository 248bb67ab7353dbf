//! Issue 11, item 11: approving without a browser. The console's JSON API
//! (`GET /api/v1/approvals`, `POST /api/v1/approvals/{id}`) against the
//! real incident loop on the simulated host: only the Bearer token opens
//! it (a session cookie does not), wrong tokens are throttled as the
//! page's, an answer must name the digest of what is pending, and every
//! refusal is JSON and changes nothing. `opsguard approvals` is run as a
//! binary against a console served on 127.0.0.1:0.

mod console_lab;
mod sim_lab;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use console_lab::{Lab, TOKEN, restarts};
use http_body_util::BodyExt;
use opsguard::audit::{AuditEvent, Resolution};
use opsguard::console::api::{ApprovalList, PendingApproval};
use opsguard::console::{Console, ConsoleSettings, RequestStatus};
use opsguard::incident::IncidentReport;
use opsguard::model::StopReason;
use serde_json::Value;
use tokio::task::JoinHandle;
use tower::ServiceExt;

const HOSTILE: &str = "PANIC:  could not write to file \"<b>\u{1b}[2Jx</b>\": No space left on device";

async fn lab() -> (Lab, JoinHandle<IncidentReport>) {
    console_lab::lab(HOSTILE, Duration::from_secs(300)).await
}

/// The status and the body, which must be JSON.
async fn send(console: &Console, req: Request<Body>) -> (StatusCode, Value) {
    let resp = console.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    assert_eq!(ctype.as_deref(), Some("application/json"), "{status} {json}");
    (status, json)
}

fn anon(path: &str) -> axum::http::request::Builder {
    Request::builder().uri(path).header(header::HOST, "127.0.0.1:8990")
}

fn bearer(path: &str, token: &str) -> axum::http::request::Builder {
    anon(path).header(header::AUTHORIZATION, format!("Bearer {token}"))
}

fn list_req() -> Request<Body> {
    bearer("/api/v1/approvals", TOKEN).body(Body::empty()).unwrap()
}

fn answer_req(id: u64, body: &str) -> Request<Body> {
    bearer(&format!("/api/v1/approvals/{id}"), TOKEN)
        .method("POST")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn answer_body(answer: &str, digest: &str) -> String {
    serde_json::json!({ "answer": answer, "digest": digest, "approver": "alice" }).to_string()
}

/// Nothing moved: still pending, not restarted, the incident still waiting.
fn unchanged(lab: &Lab, incident: &JoinHandle<IncidentReport>, what: &str) {
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Pending), "{what}");
    assert_eq!(restarts(&lab.host), 0, "{what}");
    assert!(!incident.is_finished(), "{what}");
}

#[tokio::test]
async fn the_list_shows_what_the_page_shows_with_the_digest_to_answer() {
    let (lab, incident) = lab().await;
    let (status, json) = send(&lab.console, list_req()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let list: ApprovalList = serde_json::from_value(json).unwrap();
    let [p]: [PendingApproval; 1] = list.approvals.try_into().unwrap();
    assert_eq!((p.id, p.incident), (lab.open.id, lab.open.incident));
    assert_eq!(p.digest, lab.open.digest);
    assert_eq!(p.container, "db-prod");
    assert_eq!(p.alarm, "DB_CRASH");
    assert_eq!(p.root_cause.as_deref(), Some("Disk Full"));
    assert!(p.action.starts_with("restart_database_risky('db-prod') — "), "{}", p.action);
    assert!(p.evidence.contains(&("exit code".to_string(), "1".to_string())), "{:?}", p.evidence);
    assert!(p.bound_to.is_some());
    assert!(p.expires_in_secs > 0 && p.expires_in_secs <= 300);
    assert!(p.deadline > p.requested_at, "{} {}", p.deadline, p.requested_at);
    // The hostile log line is there, as one inert line.
    let line = p.log_lines.iter().find(|l| l.contains("No space left on device")).expect("the PANIC line");
    assert!(!line.contains('\u{1b}'), "{line:?}");
    unchanged(&lab, &incident, "listing");
}

#[tokio::test]
async fn only_the_bearer_token_opens_the_api() {
    let (lab, incident) = lab().await;
    let c = &lab.console;
    let (status, json) = send(c, anon("/api/v1/approvals").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "unauthorized");
    let wrong = bearer("/api/v1/approvals", "wrong-token-wrong-token").body(Body::empty()).unwrap();
    assert_eq!(send(c, wrong).await.0, StatusCode::UNAUTHORIZED);
    let basic = anon("/api/v1/approvals").header(header::AUTHORIZATION, format!("Basic {TOKEN}"));
    assert_eq!(send(c, basic.body(Body::empty()).unwrap()).await.0, StatusCode::UNAUTHORIZED);

    // A live session cookie opens the page but not the API: a browser sends
    // a cookie with any request it is tricked into making.
    let login = anon("/login")
        .method("POST")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let resp = c.router().oneshot(login).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = c.router().oneshot(anon("/").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await;
    assert_eq!(page.unwrap().status(), StatusCode::OK, "the cookie is live");
    let (status, json) =
        send(c, anon("/api/v1/approvals").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert!(json["message"].as_str().unwrap().contains("not a session cookie"), "{json}");
    let post = anon(&format!("/api/v1/approvals/{}", lab.open.id))
        .method("POST")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(answer_body("approve", &lab.open.digest)))
        .unwrap();
    assert_eq!(send(c, post).await.0, StatusCode::UNAUTHORIZED);
    unchanged(&lab, &incident, "cookie-only requests");
}

#[tokio::test]
async fn approve_with_the_listed_digest_restarts_once_through_the_same_path_as_the_page() {
    let (lab, incident) = lab().await;
    let (status, json) = send(&lab.console, answer_req(lab.open.id, &answer_body("approve", &lab.open.digest))).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["status"], "approved");
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Approved));
    // The audit log records the answer as it records the page's.
    let answered: Vec<_> = lab
        .audit
        .records()
        .into_iter()
        .filter_map(|r| match r.event {
            AuditEvent::ApprovalAnswered { request, approved, approver, detail, answered_by, evidence_digest } => {
                Some((request, approved, approver, detail, answered_by, evidence_digest))
            }
            _ => None,
        })
        .collect();
    // ... naming who answered through the API and the digest they approved.
    assert_eq!(
        answered,
        vec![(
            lab.open.id,
            true,
            "web console".to_string(),
            "approved".to_string(),
            Some("api: alice".to_string()),
            Some(lab.open.digest.clone())
        )]
    );
    // The page shows who answered.
    let page = lab.console.page(None);
    assert!(page.contains("api: alice"), "{page}");

    // Answered: a second answer is a conflict, and changes nothing.
    for answer in ["approve", "reject"] {
        let (status, json) = send(&lab.console, answer_req(lab.open.id, &answer_body(answer, &lab.open.digest))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{json}");
        assert_eq!(json["error"], "already_answered");
    }
    assert_eq!(restarts(&lab.host), 1);
    let (_, json) = send(&lab.console, list_req()).await;
    assert_eq!(json["approvals"], serde_json::json!([]));
}

#[tokio::test]
async fn reject_stops_the_incident_without_a_restart() {
    let (lab, incident) = lab().await;
    let (status, json) = send(&lab.console, answer_req(lab.open.id, &answer_body("reject", &lab.open.digest))).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["status"], "rejected");
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Stopped { reason: StopReason::ApprovalRejected });
    assert_eq!(restarts(&lab.host), 0);
}

#[tokio::test]
async fn bad_answers_get_a_json_4xx_and_change_nothing() {
    let (lab, incident) = lab().await;
    let id = lab.open.id;
    let digest = lab.open.digest.clone();
    let stale = format!("{:064x}", 7);
    let long = "x".repeat(65);
    let cases: Vec<(u64, String, StatusCode, &str)> = vec![
        (id, answer_body("approve", &stale), StatusCode::CONFLICT, "stale_digest"),
        (id, answer_body("approve", ""), StatusCode::CONFLICT, "stale_digest"),
        (id + 100, answer_body("approve", &digest), StatusCode::NOT_FOUND, "not_found"),
        (id, answer_body("yes", &digest), StatusCode::BAD_REQUEST, "bad_request"),
        (id, "not json".into(), StatusCode::BAD_REQUEST, "bad_request"),
        (id, String::new(), StatusCode::BAD_REQUEST, "bad_request"),
        (
            id,
            serde_json::json!({ "answer": "approve", "digest": digest }).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            id,
            serde_json::json!({ "answer": "approve", "digest": digest, "approver": "a", "csrf": "x" }).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            id,
            serde_json::json!({ "answer": "approve", "digest": digest, "approver": " " }).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            id,
            serde_json::json!({ "answer": "approve", "digest": digest, "approver": "a\nb" }).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            id,
            serde_json::json!({ "answer": "approve", "digest": digest, "approver": long }).to_string(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (target, body, want, code) in cases {
        let (status, json) = send(&lab.console, answer_req(target, &body)).await;
        assert_eq!((status, json["error"].as_str()), (want, Some(code)), "{body}: {json}");
        assert!(!json["message"].as_str().unwrap().is_empty());
        unchanged(&lab, &incident, &body);
    }
    let (status, json) = send(&lab.console, answer_req(id, &answer_body("approve", &stale))).await;
    assert!(json["message"].as_str().unwrap().contains("changed"), "{status} {json}");
    // Not a number, another method, another path: JSON too.
    let odd = bearer("/api/v1/approvals/abc", TOKEN).method("POST").body(Body::from(answer_body("approve", &digest)));
    assert_eq!(send(&lab.console, odd.unwrap()).await.0, StatusCode::NOT_FOUND);
    let get_one = bearer(&format!("/api/v1/approvals/{id}"), TOKEN).body(Body::empty()).unwrap();
    assert_eq!(send(&lab.console, get_one).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let nowhere = bearer("/api/v2/nothing", TOKEN).body(Body::empty()).unwrap();
    assert_eq!(send(&lab.console, nowhere).await.0, StatusCode::NOT_FOUND);
    let huge = answer_req(id, &"x".repeat(opsguard::console::BODY_LIMIT + 1));
    assert_eq!(send(&lab.console, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    unchanged(&lab, &incident, "odd requests");
}

/// A request from `peer`, as the server marks it.
fn from(peer: &str, mut req: Request<Body>) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test(start_paused = true)]
async fn wrong_tokens_on_the_api_are_throttled_as_the_pages() {
    use opsguard::console::{LOGIN_BURST, LOGIN_REFILL};
    let c =
        Console::new(ConsoleSettings { token: Some(TOKEN.into()), approval_timeout: Duration::from_secs(60) }).unwrap();
    let wrong =
        || from("192.0.2.1", bearer("/api/v1/approvals", "wrong-token-wrong-token").body(Body::empty()).unwrap());
    for _ in 0..LOGIN_BURST {
        assert_eq!(send(&c, wrong()).await.0, StatusCode::UNAUTHORIZED);
    }
    let resp = c.router().oneshot(from("192.0.2.1", list_req())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "the right token while limited");
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    // The page's login shares the limit.
    let login = anon("/login")
        .method("POST")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    assert_eq!(c.router().oneshot(from("192.0.2.1", login)).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    let (status, json) = send(&c, from("192.0.2.2", list_req())).await;
    assert_eq!(status, StatusCode::OK, "another peer is not held: {json}");
    tokio::time::advance(LOGIN_REFILL).await;
    assert_eq!(send(&c, from("192.0.2.1", list_req())).await.0, StatusCode::OK, "one try back after the refill");
}

#[tokio::test]
async fn the_pending_gauges_follow_the_board() {
    use metrics_exporter_prometheus::PrometheusBuilder;
    let (lab, incident) = lab().await;
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || lab.console.publish_metrics());
    let text = handle.render();
    assert!(text.contains("opsguard_approvals_pending 1"), "{text}");
    assert!(text.contains("opsguard_approval_oldest_pending_seconds"), "{text}");
    let (status, _) = send(&lab.console, answer_req(lab.open.id, &answer_body("reject", &lab.open.digest))).await;
    assert_eq!(status, StatusCode::OK);
    incident.await.unwrap();
    metrics::with_local_recorder(&recorder, || lab.console.publish_metrics());
    let text = handle.render();
    assert!(text.contains("opsguard_approvals_pending 0"), "{text}");
    assert!(text.contains("opsguard_approval_oldest_pending_seconds 0"), "{text}");
}

/// `opsguard approvals ARGS` with none of the caller's `OPSGUARD_*`
/// variables and no token file where it runs.
async fn cli(args: Vec<String>, dir: std::path::PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OPSGUARD_") {
                cmd.env_remove(&key);
            }
        }
        cmd.arg("approvals").args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap()
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_approves_through_a_served_console() {
    let (lab, incident) = lab().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(lab.console.clone().serve(listener));
    let dir = tempfile::tempdir().unwrap();
    let with = |rest: &[&str], token: &str| {
        let mut a: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        a.extend(["--url".into(), url.clone(), "--token".into(), token.into()]);
        a
    };

    let out = cli(with(&["list"], TOKEN), dir.path().into()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for needle in ["ID", "INCIDENT", "db-prod", "DB_CRASH", "restart_database_risky", "No space left on device"] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    assert!(stdout.contains(&lab.open.digest), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "a log line's escape reached the terminal:\n{stdout}");

    // Wrong token, stale digest, unknown request: a clear error, exit 1, nothing changed.
    let out = cli(with(&["list"], "wrong-token-wrong-token"), dir.path().into()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401") && stderr.contains("wrong token"), "{stderr}");
    let id = lab.open.id.to_string();
    let stale = format!("{:064x}", 7);
    let out = cli(with(&["approve", &id, "--digest", &stale, "--approver", "bob"], TOKEN), dir.path().into()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stale_digest") && stderr.contains("approvals list"), "{stderr}");
    let out = cli(with(&["approve", "999"], TOKEN), dir.path().into()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no approval request 999 is waiting"), "{stderr}");
    unchanged(&lab, &incident, "refused CLI answers");

    // No token at all: said so before anything is sent.
    let out = cli(vec!["list".into(), "--url".into(), url.clone()], dir.path().into()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no console token"), "{}", text(&out).1);

    // The token from the environment; the digest fetched first.
    let out = tokio::task::spawn_blocking({
        let (url, dir, id) = (url.clone(), dir.path().to_path_buf(), id.clone());
        move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("OPSGUARD_") {
                    cmd.env_remove(&key);
                }
            }
            cmd.args(["approvals", "approve", &id, "--approver", "carol"])
                .env("OPSGUARD_CONSOLE_URL", url)
                .env("OPSGUARD_CONSOLE_TOKEN", TOKEN)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("approved") && stdout.contains("db-prod"), "{stdout}");
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    assert!(lab.console.page(None).contains("api: carol"));

    let out = cli(with(&["list"], TOKEN), dir.path().into()).await;
    assert_eq!(text(&out).0, "No approval request is waiting.\n");
    server.abort();
}

#[test]
fn the_cli_refuses_to_send_the_token_in_the_clear_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 192.0.2.0/24 is TEST-NET-1: nothing is sent, the check comes first.
    let args = ["list", "--url", "http://192.0.2.10:8990", "--token", TOKEN].map(String::from).to_vec();
    let out = rt.block_on(cli(args, dir.path().into()));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("in the clear"), "{}", text(&out).1);
}

/// Over TLS the CLI trusts the console's self-signed certificate only when
/// told to (`--cacert`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_tls_console_that_it_was_told_to_trust() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = opsguard::serve::tls_acceptor(&cert_path, &key_path).unwrap();
    let console =
        Console::new(ConsoleSettings { token: Some(TOKEN.into()), approval_timeout: Duration::from_secs(60) }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = tokio::spawn(console.serve_with(listener, opsguard::serve::Limits::CONSOLE, Some(tls)));
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["list", "--url", &url, "--token", TOKEN].map(String::from).to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = cli(args(&[]), dir.path().into()).await;
    assert_eq!(out.status.code(), Some(1), "an unknown certificate is not trusted: {out:?}");
    assert!(text(&out).1.contains("cannot reach the console"), "{}", text(&out).1);
    let out = cli(args(&["--cacert", cert_path.to_str().unwrap()]), dir.path().into()).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out).0, "No approval request is waiting.\n");
    server.abort();
}
