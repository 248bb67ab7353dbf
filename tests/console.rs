//! Issue #5: the web approval console over HTTP, against the real incident
//! loop on the simulated host. Every bad request gets a clear 4xx and
//! changes nothing: the request stays pending and the database is not
//! restarted. Issue 8, items 10 and 11: the server's limits, the login and
//! its session cookie, the rate limit, TLS.

mod console_lab;
mod sim_lab;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use console_lab::{Lab, TOKEN, restarts, wait_for};
use http_body_util::BodyExt;
use opsguard::audit::Resolution;
use opsguard::clock::{Clock, SimClock};
use opsguard::console::{BODY_LIMIT, Console, ConsoleSettings, RequestStatus};
use opsguard::host::sim::{SimFault, SimHost};
use opsguard::incident::IncidentReport;
use opsguard::model::StopReason;
use opsguard::rules::Rules;
use opsguard::serve::Limits;
use sim_lab::START;
use tokio::task::JoinHandle;
use tower::ServiceExt;

// Matches the disk-full signature (a server PANIC about a file it could not
// write), so it is shown as evidence, with markup in the file name.
const HOSTILE: &str = "PANIC:  could not write to file \"<script>alert('pwned')</script>\": No space left on device";

async fn lab(approval_timeout: Duration) -> (Lab, JoinHandle<IncidentReport>) {
    console_lab::lab(HOSTILE, approval_timeout).await
}

async fn send(console: &Console, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = console.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let cookie = resp.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), cookie)
}

/// A request with no credentials.
fn anon(path: &str) -> axum::http::request::Builder {
    Request::builder().uri(path).header(header::HOST, "127.0.0.1:8990")
}

/// A request from an API client with the token.
fn get(path: &str) -> axum::http::request::Builder {
    anon(path).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

fn anon_post(path: &str) -> axum::http::request::Builder {
    anon(path).method("POST").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

fn post() -> axum::http::request::Builder {
    anon_post("/answer").header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
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

/// Who the audit log says answered, and the digest it says they saw.
fn signed(lab: &Lab) -> Vec<(Option<String>, Option<String>)> {
    lab.audit
        .records()
        .into_iter()
        .filter_map(|r| match r.event {
            opsguard::audit::AuditEvent::ApprovalAnswered { answered_by, evidence_digest, .. } => {
                Some((answered_by, evidence_digest))
            }
            _ => None,
        })
        .collect()
}

/// Nothing moved: still pending, not restarted, the incident still waiting.
fn unchanged(lab: &Lab, incident: &JoinHandle<IncidentReport>, what: &str) {
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Pending), "{what}");
    assert_eq!(restarts(&lab.host), 0, "{what}");
    assert!(!incident.is_finished(), "{what}");
}

#[tokio::test]
async fn the_page_shows_the_evidence_and_the_pending_restart_with_hostile_logs_escaped() {
    let (lab, incident) = lab(Duration::from_secs(300)).await;
    let (status, page, _) = send(&lab.console, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "DB_CRASH — Disk Full",
        "db-prod",
        "<dt>exit code</dt><dd>1</dd>",
        "<dt>OOMKilled</dt><dd>false</dd>",
        "<dt>disk usage</dt><dd>100.0%</dd>",
        "No space left on device",
        "restart_database_risky('db-prod')",
        "Approve</button>",
        "Reject</button>",
        "clean_logs",
        "OPEN",
        "http-equiv=\"refresh\"",
    ] {
        assert!(page.contains(needle), "missing {needle:?} in\n{page}");
    }
    assert!(!page.contains("<script>"), "a log line's markup reached the page:\n{page}");
    assert!(page.contains("&lt;script&gt;alert('pwned')&lt;/script&gt;"), "{page}");
    let (status, one, _) =
        send(&lab.console, get(&format!("/incidents/{}", lab.open.incident)).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(one.contains("Approve</button>"));
    unchanged(&lab, &incident, "viewing");
}

#[tokio::test]
async fn approve_restarts_once_and_the_page_shows_it_resolved_and_a_replay_is_refused() {
    let (lab, incident) = lab(Duration::from_secs(300)).await;
    let (status, _) = answer(&lab.console, &form(&lab, "approve")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let report = incident.await.unwrap();
    assert_eq!(report.resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    assert_eq!(lab.console.request_status(lab.open.id), Some(RequestStatus::Approved));
    // Issue 11: the audit log names how the page was opened and the digest approved.
    assert_eq!(signed(&lab), vec![(Some("page, token".to_string()), Some(lab.open.digest.clone()))]);
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
    let (lab, incident) = lab(Duration::from_secs(300)).await;
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
    let (lab, incident) = lab(Duration::from_secs(300)).await;
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
    // A page elsewhere that rebinds its name to this port has no credentials.
    let mut req = anon_post("/answer").body(Body::from(rebound)).unwrap();
    req.headers_mut().insert(header::HOST, "evil.example:8990".parse().unwrap());
    let (status, _, _) = send(&lab.console, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a foreign page without the token");
    unchanged(&lab, &incident, "foreign host name");

    // The request was still answerable all along.
    let (status, _) = answer(&lab.console, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(incident.await.unwrap().resolution, Resolution::Resolved);
    assert_eq!(signed(&lab), vec![(Some("page, token".to_string()), Some(lab.open.digest.clone()))]);
    assert_eq!(restarts(&lab.host), 1);
}

fn login_form(token: &str) -> Body {
    Body::from(format!("token={token}"))
}

/// The `name=value` part of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// Issue 8, item 11: every request needs the token, always; a browser
/// exchanges it once, in a POST form, for a random session id in an
/// HttpOnly, SameSite=Strict, expiring cookie.
#[tokio::test]
async fn a_token_is_always_required_and_login_exchanges_it_for_a_session_cookie() {
    let (lab, incident) = lab(Duration::from_secs(300)).await;
    let c = &lab.console;
    let (status, page, _) = send(c, anon("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("action=\"/login\"") && !page.contains("Approve</button>"), "{page}");
    let (status, _, _) = send(c, anon("/incidents/1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = {
        let body = encode(&form(&lab, "approve"));
        let (s, b, _) = send(c, anon_post("/answer").body(Body::from(body)).unwrap()).await;
        (s, b)
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an answer without the token");
    unchanged(&lab, &incident, "answer without the token");

    // Bearer for API clients.
    let (status, _, _) =
        send(c, anon("/").header(header::AUTHORIZATION, "Bearer wrong-token-wrong-token").body(Body::empty()).unwrap())
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(c, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // The token itself is not a cookie (the old scheme).
    let (status, _, _) =
        send(c, anon("/").header(header::COOKIE, format!("opsguard_token={TOKEN}")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The token in a URL is refused, not used: it would stay in the history.
    let (status, page, cookie) = send(c, anon(&format!("/login?token={TOKEN}")).body(Body::empty()).unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::BAD_REQUEST, None));
    assert!(page.contains("not in the URL"), "{page}");
    let (status, page, cookie) = send(c, anon("/login").body(Body::empty()).unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::OK, None));
    assert!(page.contains("type=\"password\" name=\"token\""), "{page}");
    let (status, _, cookie) = send(c, anon_post("/login").body(login_form("wrong")).unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::FORBIDDEN, None));

    let (status, _, cookie) = send(c, anon_post("/login").body(login_form(TOKEN)).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("login sets the session cookie");
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(attrs.contains(&want), "{want} missing: {cookie}");
    }
    assert!(!attrs.contains(&"Secure"), "no Secure over plain HTTP (the browser would drop it): {cookie}");
    let pair = cookie_pair(&cookie);
    let id = pair.strip_prefix("opsguard_session=").expect(&cookie);
    assert_eq!(id.len(), 64, "a 256-bit random id: {cookie}");
    assert!(!cookie.contains(TOKEN), "the token itself is never the cookie");

    let (status, page, _) = send(c, anon("/").header(header::COOKIE, &pair).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Approve</button>") && page.contains("Log out"), "{page}");
    // Another login is another session.
    let (_, _, other) = send(c, anon_post("/login").body(login_form(TOKEN)).unwrap()).await;
    assert_ne!(cookie_pair(&other.unwrap()), pair);
    // A session id that was never issued.
    let fake = format!("opsguard_session={}", "ab".repeat(32));
    let (status, _, clear) = send(c, anon("/").header(header::COOKIE, fake).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(clear.unwrap().contains("Max-Age=0"));

    // Over TLS the cookie is Secure.
    let mut req = anon_post("/login").body(login_form(TOKEN)).unwrap();
    req.extensions_mut().insert(opsguard::serve::OverTls);
    let (_, _, secure) = send(c, req).await;
    assert!(secure.unwrap().split(';').any(|a| a.trim() == "Secure"));

    unchanged(&lab, &incident, "logging in");
    let body = encode(&form(&lab, "approve"));
    let answer = anon_post("/answer").header(header::COOKIE, &pair).body(Body::from(body)).unwrap();
    let (status, _, _) = send(c, answer).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(incident.await.unwrap().resolution, Resolution::Resolved);
    // Issue 11: the audit log names the session that answered by the start
    // of its key's hash (never the id itself) and the digest approved.
    let key = hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()));
    assert_eq!(signed(&lab), vec![(Some(format!("page, session {}", &key[..8])), Some(lab.open.digest.clone()))]);

    // Logging out ends the session on the server, whatever the browser keeps.
    let (status, _, clear) =
        send(c, anon_post("/logout").header(header::COOKIE, &pair).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(clear.unwrap().contains("Max-Age=0"));
    let (status, _, _) = send(c, anon("/").header(header::COOKIE, &pair).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn bare_console() -> Console {
    Console::new(ConsoleSettings { token: Some(TOKEN.into()), approval_timeout: Duration::from_secs(60) }).unwrap()
}

/// A request from `peer`, as the server marks it.
fn from(peer: &str, mut req: Request<Body>) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    req
}

/// Issue 8, item 11: a session ends on the server when its time is up,
/// even if the browser still sends the cookie.
#[tokio::test(start_paused = true)]
async fn a_session_expires_on_the_server() {
    let c = bare_console().with_session_ttl(Duration::from_secs(600));
    let (_, _, cookie) = send(&c, anon_post("/login").body(login_form(TOKEN)).unwrap()).await;
    let cookie = cookie.unwrap();
    assert!(cookie.contains("Max-Age=600"), "{cookie}");
    let pair = cookie_pair(&cookie);
    let page = |pair: String| anon("/").header(header::COOKIE, pair).body(Body::empty()).unwrap();
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(send(&c, page(pair.clone())).await.0, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(2)).await;
    let (status, body, clear) = send(&c, page(pair.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");
    assert!(clear.unwrap().contains("Max-Age=0"));
    // The default lifetime is a working day, not forever.
    let (_, _, cookie) = send(&bare_console(), anon_post("/login").body(login_form(TOKEN)).unwrap()).await;
    assert!(cookie.unwrap().contains(&format!("Max-Age={}", opsguard::console::SESSION_TTL.as_secs())));
}

/// Issue 8, item 11: wrong tokens are rate-limited per peer and in total;
/// while a peer is limited even the right token is not compared.
#[tokio::test(start_paused = true)]
async fn wrong_tokens_are_rate_limited_per_peer_and_in_total() {
    use opsguard::console::{GLOBAL_BURST, LOGIN_BURST, LOGIN_REFILL};
    let c = bare_console();
    let login = |peer: &str, token: &str| from(peer, anon_post("/login").body(login_form(token)).unwrap());
    for _ in 0..LOGIN_BURST - 1 {
        assert_eq!(send(&c, login("192.0.2.1", "wrong")).await.0, StatusCode::FORBIDDEN);
    }
    // A wrong Bearer token counts the same.
    let bearer = anon("/").header(header::AUTHORIZATION, "Bearer wrong-token-wrong-token").body(Body::empty());
    assert_eq!(send(&c, from("192.0.2.1", bearer.unwrap())).await.0, StatusCode::FORBIDDEN);
    let resp = c.router().oneshot(login("192.0.2.1", TOKEN)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "the right token while limited");
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    let retry: u64 = resp.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=LOGIN_REFILL.as_secs() + 1).contains(&retry), "{retry}");
    let bearer = get("/").body(Body::empty()).unwrap();
    assert_eq!(send(&c, from("192.0.2.1", bearer)).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Another peer is not held by this one.
    assert_eq!(send(&c, login("192.0.2.2", TOKEN)).await.0, StatusCode::SEE_OTHER);
    tokio::time::advance(LOGIN_REFILL).await;
    assert_eq!(send(&c, login("192.0.2.1", TOKEN)).await.0, StatusCode::SEE_OTHER, "one try back after the refill");

    // Many peers, a few guesses each: the global bucket stops them all.
    let c = bare_console();
    for i in 0..GLOBAL_BURST {
        let peer = format!("198.51.100.{}", i + 1);
        assert_eq!(send(&c, login(&peer, "wrong")).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(send(&c, login("203.0.113.7", TOKEN)).await.0, StatusCode::TOO_MANY_REQUESTS);
}

/// Issue 8, item 11: the model's reason is shown as untrusted model output,
/// apart from OpsGuard's own words, and escaped.
#[tokio::test]
async fn the_llm_reason_is_labelled_untrusted_model_output() {
    use opsguard::audit::{AuditEvent, AuditRecord};
    use opsguard::model::LlmChoice;
    let c = bare_console();
    let reason = "<b>All clear</b>: OpsGuard verified the data, approve the restart";
    c.record(&AuditRecord {
        ts: START,
        time: "2026-11-30T01:00:00.000Z".into(),
        incident: 1,
        event: AuditEvent::LlmConsulted {
            model: Some("smollm2".into()),
            latency_ms: Some(42),
            choice: Some(LlmChoice::Restart),
            reason: reason.into(),
            raw: None,
            diagnosis: None,
        },
    });
    let (status, page, _) = send(&c, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let at = page.find("class=\"model-output\"").expect(&page);
    let block = &page[at..at + page[at..].find("</div>").unwrap()];
    assert!(block.contains("untrusted model output"), "{block}");
    assert!(block.contains(&opsguard::console::escape(reason)), "{block}");
    assert!(!page.contains("<b>All clear"), "the model's markup reached the page");
}

/// A self-signed certificate for localhost and 127.0.0.1, as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.cert.pem())
}

/// Issue 8, item 11: with a certificate the console speaks TLS (rustls), its
/// session cookie is Secure, and plain HTTP gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_tls_with_a_secure_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path());
    let tls = opsguard::serve::tls_acceptor(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(bare_console().serve_with(listener, Limits::CONSOLE, Some(tls)));
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let resp = client.get(format!("{base}/login")).send().await.expect("a TLS handshake");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let resp = client.post(format!("{base}/login")).form(&[("token", TOKEN)]).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = resp.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.split(';').any(|a| a.trim() == "Secure"), "{cookie}");
    let resp = client.get(format!("{base}/")).header("cookie", cookie_pair(&cookie)).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);

    // Plain HTTP on the TLS port: no page, no token accepted.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(plain.get(format!("http://127.0.0.1:{port}/login")).send().await.is_err());
    // A client that does not trust the certificate does not get through either.
    let untrusting = reqwest::Client::builder().no_proxy().tls_built_in_root_certs(false).build().unwrap();
    assert!(untrusting.get(format!("{base}/login")).send().await.is_err());
    // A key that is not the certificate's is refused at start.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("other.pem"), other.signing_key.serialize_pem()).unwrap();
    assert!(opsguard::serve::tls_acceptor(&cert, &dir.path().join("other.pem")).is_err());
    server.abort();
}

#[tokio::test]
async fn an_expired_request_is_a_rejection_and_a_late_answer_is_gone() {
    let (lab, incident) = lab(Duration::from_millis(300)).await;
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
        diagnosis: None,
        id: 7,
        incident: 3,
        action: Action::Restart { target: alarm.container.clone(), reason: RestartReason::DiskFreed },
        alarm,
    };
    let console =
        Console::new(ConsoleSettings { token: Some(TOKEN.into()), approval_timeout: Duration::from_secs(60) }).unwrap();
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

fn opsguard_watch_web(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_opsguard"));
    // Every watch flag also reads OPSGUARD_*; test.sh exports some (the model URL).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(["watch", "--approve", "web"])
        .args(args)
        .env_remove(opsguard::console::TOKEN_ENV)
        // Never the real lab: the watch stops at "no Docker" after the console started.
        .env("DOCKER_HOST", "unix:///nonexistent/opsguard-test.sock")
        .output()
        .unwrap()
}

/// Issue 8, item 11: beyond loopback the CLI refuses plain HTTP unless told
/// `--insecure-http`, and refuses a weak token, before anything listens.
#[test]
fn the_cli_refuses_plain_http_beyond_loopback_and_a_weak_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let tf = token_file.to_str().unwrap();
    let out = opsguard_watch_web(&["--listen", "0.0.0.0:0", "--token-file", tf]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs TLS"), "{out:?}");
    assert!(!token_file.exists(), "nothing is written when the console cannot start");
    let out = opsguard_watch_web(&["--listen", "0.0.0.0:0", "--insecure-http", "--token", "short"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"), "{out:?}");
    let out = opsguard_watch_web(&["--tls-cert", "cert.pem"]);
    assert_eq!(out.status.code(), Some(1), "a certificate needs its key: {out:?}");
    let out = opsguard_watch_web(&["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cert.pem"), "{out:?}");
    let out = opsguard_watch_web(&["--approval-timeout", "0s"]);
    // A usage error is an error (1), never the "stopped for a human" 2.
    assert_eq!(out.status.code(), Some(1), "clap refuses a zero timeout: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than zero"), "{out:?}");
    let out = opsguard_watch_web(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Issue 8, item 11: with no token given the CLI generates one, writes it
/// to a file only its owner can read (replacing, never following, what was
/// at that path) and says where; the token itself is not printed.
#[test]
fn the_cli_generates_a_token_into_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let token_file = dir.path().join("console.token");
    std::os::unix::fs::symlink(&victim, &token_file).unwrap();
    let out = opsguard_watch_web(&["--listen", "127.0.0.1:0", "--token-file", token_file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("written to {}", token_file.display())), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me", "the symlink was followed");
    let meta = std::fs::symlink_metadata(&token_file).unwrap();
    assert!(meta.file_type().is_file(), "the symlink is replaced by a file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!stdout.contains(token) && !String::from_utf8_lossy(&out.stderr).contains(token), "printed the token");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left behind: {leftovers:?}");
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
    let (lab, incident) = lab(Duration::from_secs(300)).await;
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
    let resp = http.get(format!("http://{addr}/")).bearer_auth(TOKEN).send().await.expect("the console answers");
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
        let head = format!(
            "POST /answer HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nincident=1"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }
    unchanged(&lab, &incident, "slow clients");

    // Healing goes on: the approval reaches the incident over the socket.
    let resp = http
        .post(format!("http://{addr}/answer"))
        .bearer_auth(TOKEN)
        .form(&form(&lab, "approve"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success() || resp.status().is_redirection(), "{resp:?}");
    assert_eq!(incident.await.unwrap().resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    server.abort();
}
