//! The web approval console (`opsguard watch --approve web`): owns the live
//! view of incidents (fed by the audit log's tap), the approval requests
//! waiting for a human, the [`WebApprover`] that publishes them, and the
//! axum router that shows them as server-rendered HTML and takes the
//! answers. No JavaScript: a page, two buttons per request, a refresh.
//!
//! An answer is bound to what was shown: the form carries the request id, a
//! random nonce issued for that request, a SHA-256 digest of the request
//! (action, target, alarm and evidence) and the console's CSRF token. Only a
//! form matching a request that is still pending and not yet expired is
//! passed on, once; everything else gets a 4xx and changes nothing. The
//! incident loop still binds the answer to the request id and applies the
//! same timeout ([`crate::approval::ask`]), so a console bug cannot approve
//! more than a human did.
//!
//! Access: on loopback only a request naming a loopback host is served (a
//! web page elsewhere cannot rebind its name to this port); on any other
//! address a token is required, presented as `Authorization: Bearer TOKEN`
//! or as the cookie that `GET /login?token=TOKEN` sets.
//!
//! The HTML is written by hand with [`escape`] applied to every string that
//! is not a literal of this module: the page is small, and a template crate
//! would add a proc-macro build for a dozen elements. Log lines are hostile
//! input and are tested as such.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::approval::{Answer, ApprovalError, ApprovalRequest, Approver, evidence_facts, evidence_lines};
use crate::audit::{AuditEvent, AuditRecord, Resolution};
use crate::model::Alarm;

/// The largest request body the console reads; an answer form is far smaller.
pub const BODY_LIMIT: usize = 8 * 1024;
/// The environment variable that may hold the console's token.
pub const TOKEN_ENV: &str = "OPSGUARD_CONSOLE_TOKEN";
/// Where the console listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8990";
/// Seconds between the page's own reloads.
pub const REFRESH_SECS: u32 = 2;

const COOKIE: &str = "opsguard_token";
const MIN_TOKEN_LEN: usize = 16;
// Bounds the memory a long-running watch spends on history nobody scrolls to.
const MAX_INCIDENTS: usize = 50;
const MAX_TIMELINE: usize = 300;

/// Why the console cannot start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("web console: {0}")]
pub struct ConsoleError(pub String);

/// Where a request stands, as the console shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for a human.
    Pending,
    /// Approved here.
    Approved,
    /// Rejected here.
    Rejected,
    /// Not answered in time, or withdrawn by the incident loop: a rejection.
    Expired,
}

impl RequestStatus {
    fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Expired => "expired",
        }
    }
}

/// A request still open, with what a form must carry to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// The request id.
    pub id: u64,
    /// Its incident.
    pub incident: u64,
    /// The nonce issued for it.
    pub nonce: String,
    /// The digest of what was shown.
    pub digest: String,
}

struct Entry {
    request: ApprovalRequest,
    nonce: String,
    digest: String,
    expires_at: Instant,
    status: RequestStatus,
    reply: Option<oneshot::Sender<Answer>>,
}

#[derive(Default)]
struct IncidentView {
    alarm: Option<Alarm>,
    timeline: Vec<AuditRecord>,
    resolution: Option<Resolution>,
}

#[derive(Default)]
struct Board {
    incidents: BTreeMap<u64, IncidentView>,
    requests: BTreeMap<u64, Entry>,
}

struct Shared {
    board: Mutex<Board>,
    csrf: String,
    token: Option<String>,
    approval_timeout: Duration,
}

/// How to run the console.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// Required from every client when set (and required to listen beyond loopback).
    pub token: Option<String>,
    /// How long a request stays answerable: the incident loop's approval
    /// timeout, after which silence is a rejection.
    pub approval_timeout: Duration,
}

/// The console's state; clones share it.
#[derive(Clone)]
pub struct Console {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("approval_timeout", &self.shared.approval_timeout).finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> Result<String, ConsoleError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| ConsoleError("the operating system gave no random numbers".into()))?;
    Ok(hex::encode(buf))
}

/// SHA-256 over what the human is shown, so an answer names the evidence it rests on.
fn digest(r: &ApprovalRequest) -> Result<String, ConsoleError> {
    let bytes = serde_json::to_vec(&(r.id, r.incident, &r.action, &r.alarm))
        .map_err(|e| ConsoleError(format!("cannot encode request {}: {e}", r.id)))?;
    Ok(hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)))
}

fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Refuses a token that is short or that a cookie or header cannot carry as is.
fn check_token(token: &str) -> Result<(), ConsoleError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConsoleError(format!("the token must be at least {MIN_TOKEN_LEN} characters")));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
        return Err(ConsoleError("the token may only hold letters, digits and - . _ ~".into()));
    }
    Ok(())
}

/// Refuses to listen beyond loopback without a token.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<(), ConsoleError> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ConsoleError(format!("listening on {addr} (not loopback) needs a token: --token or {TOKEN_ENV}")));
    }
    Ok(())
}

impl Console {
    /// A console with a fresh CSRF token.
    pub fn new(settings: ConsoleSettings) -> Result<Console, ConsoleError> {
        if let Some(t) = &settings.token {
            check_token(t)?;
        }
        Ok(Console {
            shared: Arc::new(Shared {
                board: Mutex::new(Board::default()),
                csrf: random_hex(32)?,
                token: settings.token,
                approval_timeout: settings.approval_timeout,
            }),
        })
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        // The board is a view; a panic elsewhere cannot leave it unsafe to show.
        self.shared.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The approver that puts requests on this console.
    pub fn approver(&self) -> WebApprover {
        WebApprover { console: self.clone() }
    }

    /// The CSRF token every answer form must carry.
    pub fn csrf_token(&self) -> &str {
        &self.shared.csrf
    }

    /// Takes one audit record into the incidents' timelines: pass it to
    /// [`crate::audit::AuditLog::with_tap`].
    pub fn record(&self, rec: &AuditRecord) {
        let mut board = self.board();
        let view = board.incidents.entry(rec.incident).or_default();
        match &rec.event {
            AuditEvent::IncidentOpened { alarm } => view.alarm = Some(alarm.clone()),
            AuditEvent::IncidentClosed { resolution, .. } => view.resolution = Some(*resolution),
            _ => {}
        }
        if view.timeline.len() >= MAX_TIMELINE {
            view.timeline.remove(0);
        }
        view.timeline.push(rec.clone());
        while board.incidents.len() > MAX_INCIDENTS {
            let Some(oldest) = board.incidents.keys().next().copied() else { break };
            board.incidents.remove(&oldest);
            board.requests.retain(|_, e| e.request.incident != oldest || e.status == RequestStatus::Pending);
        }
    }

    /// A request's status, if the console knows it.
    pub fn request_status(&self, id: u64) -> Option<RequestStatus> {
        self.board().requests.get(&id).map(|e| e.status)
    }

    /// The requests waiting for a human.
    pub fn open_requests(&self) -> Vec<OpenRequest> {
        self.board()
            .requests
            .values()
            .filter(|e| e.status == RequestStatus::Pending)
            .map(|e| OpenRequest {
                id: e.request.id,
                incident: e.request.incident,
                nonce: e.nonce.clone(),
                digest: e.digest.clone(),
            })
            .collect()
    }

    /// The router: `GET /`, `GET /incidents/{id}`, `POST /answer`, `GET /login`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/incidents/{id}", get(incident_page))
            .route("/answer", post(answer))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(middleware::from_fn_with_state(self.clone(), gate))
            .with_state(self.clone())
    }

    /// Serves the console on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    fn publish(&self, request: &ApprovalRequest) -> Result<oneshot::Receiver<Answer>, ApprovalError> {
        let err = |e: ConsoleError| ApprovalError(e.to_string());
        let nonce = random_hex(16).map_err(err)?;
        let digest = digest(request).map_err(err)?;
        let (tx, rx) = oneshot::channel();
        let mut board = self.board();
        if board.requests.contains_key(&request.id) {
            return Err(ApprovalError(format!("request {} was already put to the console", request.id)));
        }
        board.incidents.entry(request.incident).or_default().alarm.get_or_insert_with(|| request.alarm.clone());
        board.requests.insert(
            request.id,
            Entry {
                request: request.clone(),
                nonce,
                digest,
                expires_at: Instant::now() + self.shared.approval_timeout,
                status: RequestStatus::Pending,
                reply: Some(tx),
            },
        );
        Ok(rx)
    }

    fn withdraw(&self, id: u64) {
        if let Some(e) = self.board().requests.get_mut(&id)
            && e.status == RequestStatus::Pending
        {
            e.status = RequestStatus::Expired;
            e.reply = None;
        }
    }
}

/// Puts each request on the console and waits for a human's button.
#[derive(Clone, Debug)]
pub struct WebApprover {
    console: Console,
}

/// Marks a request expired when the incident loop stops waiting for it
/// (its timeout dropped the review), so the page stops offering buttons.
struct Withdraw<'a> {
    console: &'a Console,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.console.withdraw(self.id);
    }
}

impl Approver for WebApprover {
    fn name(&self) -> &str {
        "web console"
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        let rx = self.console.publish(request)?;
        let _withdraw = Withdraw { console: &self.console, id: request.id };
        rx.await.map_err(|_| ApprovalError("the request expired on the web console".into()))
    }
}

// ------------------------------------------------------------------ HTTP

fn refuse(status: StatusCode, why: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} · OpsGuard</title></head>\
         <body><h1>{code}</h1><p>{why}</p><p><a href=\"/\">Back to the console</a></p></body></html>",
        code = escape(&status.to_string()),
        why = escape(why)
    );
    (status, Html(body)).into_response()
}

fn host_is_loopback(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.host());
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return Some(v.strip_prefix("Bearer ").unwrap_or("").trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

#[derive(Deserialize)]
struct Login {
    token: Option<String>,
}

/// Authentication, and headers that keep the page out of frames and caches.
async fn gate(State(console): State<Console>, req: Request, next: Next) -> Response {
    let mut resp = match &console.shared.token {
        None if !host_is_loopback(req.headers(), req.uri()) => {
            refuse(StatusCode::FORBIDDEN, "this console answers only to a loopback host name")
        }
        None if req.uri().path() == "/login" => Redirect::to("/").into_response(),
        None => next.run(req).await,
        Some(token) if req.uri().path() == "/login" => {
            let given = Query::<Login>::try_from_uri(req.uri()).ok().and_then(|q| q.0.token);
            match given {
                None => refuse(StatusCode::UNAUTHORIZED, "the login link carries no token"),
                Some(g) if same_secret(&g, token) => {
                    let mut resp = Redirect::to("/").into_response();
                    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
                    if let Ok(v) = HeaderValue::from_str(&cookie) {
                        resp.headers_mut().insert(header::SET_COOKIE, v);
                    }
                    resp
                }
                Some(_) => refuse(StatusCode::FORBIDDEN, "wrong token"),
            }
        }
        Some(token) => match presented_token(req.headers()) {
            None => {
                let mut resp = refuse(StatusCode::UNAUTHORIZED, "a token is required (open the login link)");
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
            Some(g) if same_secret(g, token) => next.run(req).await,
            Some(_) => refuse(StatusCode::FORBIDDEN, "wrong token"),
        },
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "no such page")
}

async fn index(State(console): State<Console>) -> Response {
    Html(console.render(None)).into_response()
}

async fn incident_page(State(console): State<Console>, Path(id): Path<u64>) -> Response {
    if !console.board().incidents.contains_key(&id) {
        return refuse(StatusCode::NOT_FOUND, &format!("no incident #{id}"));
    }
    Html(console.render(Some(id))).into_response()
}

#[derive(Deserialize)]
struct AnswerForm {
    incident: u64,
    request: u64,
    nonce: String,
    digest: String,
    csrf: String,
    decision: String,
}

async fn answer(State(console): State<Console>, form: Result<Form<AnswerForm>, FormRejection>) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return refuse(e.status(), &e.body_text()),
    };
    match console.take_answer(&form) {
        Ok(()) => Redirect::to(&format!("/#incident-{}", form.incident)).into_response(),
        Err((status, why)) => refuse(status, &why),
    }
}

impl Console {
    /// Checks a form against the request it names and, when everything
    /// matches, hands the answer to the waiting incident loop.
    fn take_answer(&self, form: &AnswerForm) -> Result<(), (StatusCode, String)> {
        if !same_secret(&form.csrf, &self.shared.csrf) {
            return Err((StatusCode::FORBIDDEN, "the form's CSRF token is wrong: reload the console".into()));
        }
        let approve = match form.decision.as_str() {
            "approve" => true,
            "reject" => false,
            _ => return Err((StatusCode::BAD_REQUEST, "the decision must be approve or reject".into())),
        };
        let mut board = self.board();
        if !board.incidents.contains_key(&form.incident) {
            return Err((StatusCode::NOT_FOUND, format!("no incident #{}", form.incident)));
        }
        let entry = match board.requests.get_mut(&form.request) {
            Some(e) if e.request.incident == form.incident => e,
            _ => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("incident #{} has no approval request {}", form.incident, form.request),
                ));
            }
        };
        if !same_secret(&form.nonce, &entry.nonce) {
            return Err((StatusCode::FORBIDDEN, "this form was not issued for that request".into()));
        }
        if !same_secret(&form.digest, &entry.digest) {
            return Err((StatusCode::CONFLICT, "the action or its evidence changed since the page was shown".into()));
        }
        match entry.status {
            RequestStatus::Pending => {}
            RequestStatus::Approved | RequestStatus::Rejected => {
                return Err((
                    StatusCode::CONFLICT,
                    format!("request {} was already {}", form.request, entry.status.as_str()),
                ));
            }
            RequestStatus::Expired => {
                return Err((StatusCode::GONE, format!("request {} expired: it counts as rejected", form.request)));
            }
        }
        if Instant::now() >= entry.expires_at {
            entry.status = RequestStatus::Expired;
            entry.reply = None;
            return Err((StatusCode::GONE, format!("request {} expired: it counts as rejected", form.request)));
        }
        let answer = if approve { Answer::Approve { request: entry.request.id } } else { Answer::Reject };
        match entry.reply.take().map(|tx| tx.send(answer)) {
            Some(Ok(())) => {
                entry.status = if approve { RequestStatus::Approved } else { RequestStatus::Rejected };
                Ok(())
            }
            // The loop stopped waiting between the checks above and now.
            _ => {
                entry.status = RequestStatus::Expired;
                Err((StatusCode::GONE, format!("request {} expired: it counts as rejected", form.request)))
            }
        }
    }

    /// The HTML served at `/` (every incident) or at `/incident/{id}`, as a
    /// browser gets it; for tests of what the page can show.
    pub fn page(&self, incident: Option<u64>) -> String {
        self.render(incident)
    }

    fn render(&self, only: Option<u64>) -> String {
        let board = self.board();
        let now = Instant::now();
        let open = board.incidents.values().filter(|v| v.resolution.is_none()).count();
        let pending = board.requests.values().filter(|e| e.status == RequestStatus::Pending).count();
        let mut h = String::with_capacity(16 * 1024);
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>OpsGuard console{}</title><style>{STYLE}</style></head><body>\
             <header><h1>OpsGuard approval console</h1><p class=\"summary\">{open} open incident{}, \
             {pending} pending approval{} · this page reloads every {REFRESH_SECS} s</p></header><main>",
            if pending > 0 { " — approval needed" } else { "" },
            if open == 1 { "" } else { "s" },
            if pending == 1 { "" } else { "s" },
        );
        let ids: Vec<u64> = match only {
            Some(id) => vec![id],
            None => board.incidents.keys().rev().copied().collect(),
        };
        if ids.is_empty() {
            h += "<p class=\"quiet\">No incidents yet. OpsGuard is watching.</p>";
        }
        for id in ids {
            let Some(view) = board.incidents.get(&id) else { continue };
            let requests: Vec<&Entry> = board.requests.values().filter(|e| e.request.incident == id).collect();
            render_incident(&mut h, id, view, &requests, &self.shared.csrf, now);
        }
        h += "</main></body></html>\n";
        h
    }
}

fn render_incident(h: &mut String, id: u64, view: &IncidentView, requests: &[&Entry], csrf: &str, now: Instant) {
    let (class, badge) = match view.resolution {
        None => ("open", "OPEN".to_string()),
        Some(Resolution::Resolved) => ("resolved", "RESOLVED".to_string()),
        Some(Resolution::Stopped { .. }) => ("stopped", "STOPPED".to_string()),
        Some(Resolution::Shadow) => ("shadow", "SHADOW".to_string()),
    };
    let _ = write!(
        h,
        "<section class=\"incident {class}\" id=\"incident-{id}\"><h2><a href=\"/incidents/{id}\">Incident #{id}</a> "
    );
    if let Some(alarm) = &view.alarm {
        let _ = write!(
            h,
            "<span class=\"alarm\">{}</span> on <span class=\"container\">{}</span> ",
            escape(&alarm.kind.to_string()),
            escape(alarm.container.as_str())
        );
    }
    let _ = write!(h, "<span class=\"badge {class}\" id=\"status-{id}\">{badge}</span></h2>");
    if let Some(Resolution::Stopped { reason }) = view.resolution {
        let _ = write!(h, "<p class=\"reason\">Stopped for a human: {}.</p>", escape(reason.describe()));
    }
    if let Some(alarm) = &view.alarm {
        render_evidence(h, alarm);
    }
    for e in requests {
        render_request(h, e, csrf, now);
    }
    h.push_str("<h3>Timeline</h3><ol class=\"timeline\">");
    for rec in &view.timeline {
        let clock = rec.time.get(11..19).unwrap_or(&rec.time);
        let _ = write!(
            h,
            "<li><time datetime=\"{}\">{}</time> <span>{}</span></li>",
            escape(&rec.time),
            escape(clock),
            escape(&timeline_text(&rec.event))
        );
    }
    h.push_str("</ol></section>");
}

/// An event as the terminal shows it, its own line breaks kept and any
/// control character from a log replaced.
fn timeline_text(event: &AuditEvent) -> String {
    event.render().split('\n').map(crate::classify::printable).collect::<Vec<_>>().join("\n")
}

fn render_evidence(h: &mut String, alarm: &Alarm) {
    h.push_str("<h3>Root cause and evidence</h3><dl class=\"evidence\">");
    if let Some(cause) = alarm.kind.cause() {
        let _ = write!(h, "<dt>root cause</dt><dd>{}</dd>", escape(cause.label()));
    }
    for (label, value) in evidence_facts(&alarm.evidence) {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(&value));
    }
    h.push_str("</dl>");
    let lines = evidence_lines(&alarm.evidence);
    if !lines.is_empty() {
        h.push_str("<p class=\"label\">matching log lines</p><pre class=\"log\">");
        for l in lines {
            h.push_str(&escape(&l));
            h.push('\n');
        }
        h.push_str("</pre>");
    }
}

fn render_request(h: &mut String, e: &Entry, csrf: &str, now: Instant) {
    let r = &e.request;
    let status = match e.status {
        RequestStatus::Pending if now >= e.expires_at => RequestStatus::Expired,
        s => s,
    };
    let _ = write!(
        h,
        "<div class=\"approval {}\" id=\"request-{}\"><p><strong>{}</strong> <code>{}</code></p>",
        status.as_str(),
        r.id,
        if status == RequestStatus::Pending { "⚠ Approval needed:" } else { "Approval request:" },
        escape(&r.action.to_string())
    );
    if status != RequestStatus::Pending {
        let _ = write!(h, "<p class=\"answer\">{}</p></div>", status.as_str().to_uppercase());
        return;
    }
    let left = e.expires_at.saturating_duration_since(now).as_secs();
    let _ = write!(
        h,
        "<p class=\"expiry\">Expires in {}m {:02}s; no answer by then is a rejection.</p>\
         <form method=\"post\" action=\"/answer\">\
         <input type=\"hidden\" name=\"incident\" value=\"{}\">\
         <input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"nonce\" value=\"{}\">\
         <input type=\"hidden\" name=\"digest\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\" class=\"approve\" id=\"approve-{id}\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"reject\" class=\"reject\" id=\"reject-{id}\">Reject</button>\
         </form></div>",
        left / 60,
        left % 60,
        r.incident,
        r.id,
        escape(&e.nonce),
        escape(&e.digest),
        escape(csrf),
        id = r.id,
    );
}

/// `s` safe to place in HTML text or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}\
.summary{margin:4px 0 0;color:#c5cad6}main{padding:16px 24px;max-width:1100px}\
.incident{background:#fff;border-radius:8px;padding:14px 20px;margin-bottom:16px;border-left:6px solid #d97706}\
.incident.resolved{border-color:#16a34a}.incident.stopped{border-color:#dc2626}\
h2{font-size:18px;margin:4px 0 10px}h2 a{color:inherit}h3{font-size:14px;margin:14px 0 6px;color:#4b5563}\
.badge{font-size:12px;padding:2px 8px;border-radius:10px;color:#fff;background:#d97706;vertical-align:middle}\
.badge.resolved{background:#16a34a}.badge.stopped{background:#dc2626}\
.evidence{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}\
.evidence dt{color:#6b7280}.evidence dd{margin:0;font-family:ui-monospace,monospace}\
.label{color:#6b7280;margin:8px 0 2px}\
pre.log{background:#111827;color:#e5e7eb;padding:8px 10px;border-radius:6px;white-space:pre-wrap;word-break:break-all;margin:0}\
.approval{border:2px solid #d97706;background:#fffbeb;border-radius:8px;padding:8px 14px;margin:12px 0}\
.approval.approved{border-color:#16a34a;background:#f0fdf4}.approval.rejected,.approval.expired{border-color:#9ca3af;background:#f9fafb}\
.approval p{margin:4px 0}.expiry{color:#92400e}\
button{font-size:15px;padding:6px 18px;border-radius:6px;border:0;color:#fff;cursor:pointer;margin:6px 8px 4px 0}\
button.approve{background:#16a34a}button.reject{background:#dc2626}\
.timeline{font-family:ui-monospace,monospace;font-size:13px;padding-left:20px;margin:0;white-space:pre-wrap}\
.timeline time{color:#6b7280}.reason{color:#991b1b;font-weight:600}.quiet{color:#6b7280}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        assert!(check_listen("127.0.0.1:8990".parse().unwrap(), None).is_ok());
        assert!(check_listen("[::1]:8990".parse().unwrap(), None).is_ok());
        assert!(check_listen("0.0.0.0:8990".parse().unwrap(), None).is_err());
        assert!(check_listen("0.0.0.0:8990".parse().unwrap(), Some("0123456789abcdef")).is_ok());
    }

    #[test]
    fn weak_or_unsendable_tokens_are_refused() {
        let settings = |t: &str| ConsoleSettings { token: Some(t.into()), approval_timeout: Duration::from_secs(1) };
        assert!(Console::new(settings("short")).is_err());
        assert!(Console::new(settings("0123456789abcdef; x=y")).is_err());
        assert!(Console::new(settings("0123456789abcdef")).is_ok());
    }

    #[test]
    fn loopback_host_names() {
        let uri: axum::http::Uri = "/".parse().unwrap();
        let with = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            host_is_loopback(&h, &uri)
        };
        assert!(with("127.0.0.1:8990"));
        assert!(with("localhost:8990"));
        assert!(with("[::1]:8990"));
        assert!(!with("evil.example:8990"));
        assert!(!with("127.0.0.1.evil.example"));
        assert!(!host_is_loopback(&HeaderMap::new(), &uri));
    }
}
