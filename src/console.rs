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
//! incident machine still binds the answer to the request id and applies
//! its own deadline ([`crate::incident::Incident`]), so a console bug cannot
//! approve more than a human did.
//!
//! Access always needs the console's token (the operator's, or one
//! generated at start and written to a file only its owner can read). A
//! browser presents it once, in the form at `/login` (a POST, so the token
//! stays out of the URL, the history and any proxy's log), and gets a random
//! session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over
//! TLS) that expires after [`SESSION_TTL`] on both sides; an API client
//! sends `Authorization: Bearer TOKEN`. Wrong tokens are rate-limited per
//! peer and in total ([`LOGIN_BURST`]): while a peer is limited its guesses
//! are not even compared. The console is served over TLS (rustls) when
//! given a certificate; [`check_listen`] refuses plain HTTP beyond loopback
//! unless the operator says so explicitly.
//!
//! What an LLM wrote (its reason for a choice) is shown labelled as
//! untrusted model output: it is text from outside, not a finding.
//!
//! The HTML is written by hand with [`escape`] applied to every string that
//! is not a literal of this module: the page is small, and a template crate
//! would add a proc-macro build for a dozen elements. Log lines are hostile
//! input and are tested as such.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
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
use crate::serve::{Limits, OverTls};

/// The largest request body the console reads; an answer form is far smaller.
pub const BODY_LIMIT: usize = 8 * 1024;
/// The environment variable that may hold the console's token.
pub const TOKEN_ENV: &str = "OPSGUARD_CONSOLE_TOKEN";
/// Where the console listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8990";
/// Seconds between the page's own reloads.
pub const REFRESH_SECS: u32 = 2;

/// How long a login lasts, in the cookie and on the server.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Wrong tokens a peer may try in a row; then one more every
/// [`LOGIN_REFILL`]. Every peer together gets [`GLOBAL_BURST`].
pub const LOGIN_BURST: u32 = 5;
/// How often a limited peer gets one more try.
pub const LOGIN_REFILL: Duration = Duration::from_secs(12);
/// Wrong tokens all peers together may try in a row.
pub const GLOBAL_BURST: u32 = 20;
const GLOBAL_REFILL: Duration = Duration::from_secs(3);
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "opsguard_session";
const MIN_TOKEN_LEN: usize = 16;
// Bounds what a flood of logins or of peers can make the console remember.
const MAX_SESSIONS: usize = 64;
const MAX_PEERS: usize = 4096;
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
    token: String,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    approval_timeout: Duration,
}

/// How to run the console.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// The token every client must present; `None`: a random one is
    /// generated (read it with [`Console::token`]).
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

/// Refuses plain HTTP beyond loopback (the token and the session cookie
/// would cross the network in the clear) unless `insecure_http` says the
/// operator chose it.
pub fn check_listen(addr: SocketAddr, tls: bool, insecure_http: bool) -> Result<(), ConsoleError> {
    if !addr.ip().is_loopback() && !tls && !insecure_http {
        return Err(ConsoleError(format!(
            "listening on {addr} (not loopback) needs TLS: --tls-cert and --tls-key \
             (or --insecure-http to send the token in the clear)"
        )));
    }
    Ok(())
}

/// A fresh random token (256 bits, hex).
pub fn generate_token() -> Result<String, ConsoleError> {
    random_hex(32)
}

/// Writes `token` to `path` readable by its owner only (mode 0600): into a
/// new file with a random name beside it (created exclusively, so nothing
/// there is followed or reused), then renamed over `path` (which replaces a
/// symlink at `path` rather than writing through it). Returns the absolute
/// path.
pub fn write_token_file(path: &FsPath, token: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::path::absolute(path)?;
    let dir = path.parent().unwrap_or(FsPath::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = random_hex(8).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

/// The login sessions, by the SHA-256 of their id (a lookup then says
/// nothing about a guessed id's bytes).
struct Sessions {
    ttl: Duration,
    live: HashMap<[u8; 32], Instant>,
}

enum SessionState {
    Live,
    Expired,
    Unknown,
}

fn session_key(id: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

impl Sessions {
    fn create(&mut self, now: Instant) -> Result<String, ConsoleError> {
        let id = random_hex(32)?;
        self.live.retain(|_, until| *until > now);
        while self.live.len() >= MAX_SESSIONS {
            let Some(oldest) = self.live.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k) else { break };
            self.live.remove(&oldest);
        }
        self.live.insert(session_key(&id), now + self.ttl);
        Ok(id)
    }

    fn check(&mut self, id: &str, now: Instant) -> SessionState {
        let key = session_key(id);
        match self.live.get(&key) {
            Some(until) if *until > now => SessionState::Live,
            Some(_) => {
                self.live.remove(&key);
                SessionState::Expired
            }
            None => SessionState::Unknown,
        }
    }

    fn remove(&mut self, id: &str) {
        self.live.remove(&session_key(id));
    }
}

/// A token bucket of wrong guesses.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(burst), at: now }
    }

    fn refill(&mut self, burst: u32, every: Duration, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(f64::from(burst));
        self.at = now;
    }

    /// How long until one more try, if none is left.
    fn wait(&self, every: Duration) -> Option<Duration> {
        (self.tokens < 1.0).then(|| every.mul_f64(1.0 - self.tokens))
    }
}

/// Rate limits on wrong tokens, per peer and for all peers together.
struct Throttle {
    peers: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

/// A peer's key: its address, or its /64 for IPv6 (one host holds many).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    }
}

impl Throttle {
    fn new(now: Instant) -> Throttle {
        Throttle { peers: HashMap::new(), global: Bucket::full(GLOBAL_BURST, now) }
    }

    /// `Err(retry_after)` while `peer` (or everyone) has no try left.
    fn allow(&mut self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        self.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
        let mut wait = self.global.wait(GLOBAL_REFILL);
        if let Some(b) = self.peers.get_mut(&peer_key(peer)) {
            b.refill(LOGIN_BURST, LOGIN_REFILL, now);
            wait = wait.max(b.wait(LOGIN_REFILL));
        }
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Counts a wrong token from `peer`.
    fn failed(&mut self, peer: IpAddr, now: Instant) {
        self.global.tokens -= 1.0;
        let key = peer_key(peer);
        if !self.peers.contains_key(&key) && self.peers.len() >= MAX_PEERS {
            for b in self.peers.values_mut() {
                b.refill(LOGIN_BURST, LOGIN_REFILL, now);
            }
            self.peers.retain(|_, b| b.tokens < f64::from(LOGIN_BURST));
            if self.peers.len() >= MAX_PEERS {
                // Still full: this peer is only held by the global bucket.
                return;
            }
        }
        let b = self.peers.entry(key).or_insert_with(|| Bucket::full(LOGIN_BURST, now));
        b.refill(LOGIN_BURST, LOGIN_REFILL, now);
        b.tokens -= 1.0;
    }
}

impl Console {
    /// A console with a fresh CSRF token, and a fresh access token unless
    /// `settings` gives one.
    pub fn new(settings: ConsoleSettings) -> Result<Console, ConsoleError> {
        let token = match settings.token {
            Some(t) => {
                check_token(&t)?;
                t
            }
            None => generate_token()?,
        };
        let now = Instant::now();
        Ok(Console {
            shared: Arc::new(Shared {
                board: Mutex::new(Board::default()),
                csrf: random_hex(32)?,
                token,
                sessions: Mutex::new(Sessions { ttl: SESSION_TTL, live: HashMap::new() }),
                throttle: Mutex::new(Throttle::new(now)),
                approval_timeout: settings.approval_timeout,
            }),
        })
    }

    /// Sessions from now on last `ttl` instead of [`SESSION_TTL`].
    pub fn with_session_ttl(self, ttl: Duration) -> Console {
        self.sessions().ttl = ttl;
        self
    }

    /// The token clients must present.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.shared.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.shared.throttle.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The router: `GET /`, `GET /incidents/{id}`, `POST /answer`,
    /// `GET|POST /login`, `POST /logout`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/incidents/{id}", get(incident_page))
            .route("/answer", post(answer))
            .route("/login", get(login_page).post(login))
            .route("/logout", post(logout))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(middleware::from_fn_with_state(self.clone(), gate))
            .with_state(self.clone())
    }

    /// Serves the console on `listener` within [`Limits::CONSOLE`], over
    /// plain HTTP, until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.serve_with(listener, Limits::CONSOLE, None).await
    }

    /// Serves the console on `listener` within `limits`, over TLS when
    /// `tls` is given, until the task is dropped.
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        limits: Limits,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<()> {
        crate::serve::serve(listener, self.router(), limits, tls).await
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

/// A page for a refused request that offers the login form.
fn refuse_login(status: StatusCode, why: &str) -> Response {
    let mut resp = (status, Html(login_html(why))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn login_html(note: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · OpsGuard</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head><body>\
         <header><h1>OpsGuard approval console</h1></header><main>\
         <p class=\"note\">{}</p>\
         <form method=\"post\" action=\"/login\" class=\"login\">\
         <label for=\"token\">Console token</label> \
         <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required> \
         <button type=\"submit\" id=\"login\">Log in</button></form>\
         <p class=\"quiet\">The token is the one given with --token or OPSGUARD_CONSOLE_TOKEN, \
         or the one OpsGuard wrote to its token file at start.</p></main></body></html>",
        escape(note)
    )
}

/// The peer's address, as the server put it in the request.
fn peer_ip(ext: &Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_cookie(value: &str, max_age: Duration, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .ok()
}

fn clear_cookie(resp: &mut Response, secure: bool) {
    if let Some(v) = session_cookie("", Duration::ZERO, secure) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn too_many(retry: Duration) -> Response {
    let mut resp = refuse_login(StatusCode::TOO_MANY_REQUESTS, "too many wrong tokens: wait and try again");
    let secs = retry.as_secs() + 1;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// How a request proved (or failed to prove) it may see the console.
enum Access {
    Granted,
    Refused(Response),
}

impl Console {
    fn access(&self, req: &Request) -> Access {
        let now = Instant::now();
        let secure = req.extensions().get::<OverTls>().is_some();
        if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
            let Some(given) = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
                return Access::Refused(refuse_login(StatusCode::UNAUTHORIZED, "only Bearer tokens are accepted"));
            };
            let peer = peer_ip(req.extensions());
            // While the peer is limited its guess is not even compared.
            if let Err(retry) = self.throttle().allow(peer, now) {
                return Access::Refused(too_many(retry));
            }
            if same_secret(given, &self.shared.token) {
                return Access::Granted;
            }
            self.throttle().failed(peer, now);
            return Access::Refused(refuse(StatusCode::FORBIDDEN, "wrong token"));
        }
        let Some(id) = cookie_value(req.headers(), SESSION_COOKIE) else {
            return Access::Refused(refuse_login(StatusCode::UNAUTHORIZED, "log in with the console's token"));
        };
        let why = match self.sessions().check(id, now) {
            SessionState::Live => return Access::Granted,
            SessionState::Expired => "your session expired: log in again",
            SessionState::Unknown => "your session is not known here (OpsGuard restarted, or you logged out): log in",
        };
        let mut resp = refuse_login(StatusCode::UNAUTHORIZED, why);
        clear_cookie(&mut resp, secure);
        Access::Refused(resp)
    }
}

/// Authentication (but for the login page), and headers that keep every
/// page out of frames and caches.
async fn gate(State(console): State<Console>, req: Request, next: Next) -> Response {
    let mut resp = if req.uri().path() == "/login" {
        next.run(req).await
    } else {
        match console.access(&req) {
            Access::Granted => next.run(req).await,
            Access::Refused(resp) => resp,
        }
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

/// The login form. A token in the URL (`/login?token=…`) is refused, not
/// used: a URL stays in the browser's history and in proxies' logs.
async fn login_page(method: Method, uri: axum::http::Uri) -> Response {
    let in_url = uri.query().is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("token")));
    match (method, in_url) {
        (_, true) => refuse_login(
            StatusCode::BAD_REQUEST,
            "the token goes in this form, not in the URL (a URL is kept in the browser's history)",
        ),
        _ => Html(login_html("Log in to approve or reject OpsGuard's risky actions.")).into_response(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Exchanges the token for a session cookie.
async fn login(
    State(console): State<Console>,
    ext: Extensions,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let now = Instant::now();
    let peer = peer_ip(&ext);
    if let Err(retry) = console.throttle().allow(peer, now) {
        return too_many(retry);
    }
    let given = match form {
        Ok(Form(f)) => f.token,
        Err(e) => return refuse_login(e.status(), &e.body_text()),
    };
    if !same_secret(given.trim(), &console.shared.token) {
        console.throttle().failed(peer, now);
        return refuse_login(StatusCode::FORBIDDEN, "wrong token");
    }
    let (id, ttl) = {
        let mut sessions = console.sessions();
        match sessions.create(now) {
            Ok(id) => (id, sessions.ttl),
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    };
    let mut resp = Redirect::to("/").into_response();
    if let Some(v) = session_cookie(&id, ttl, ext.get::<OverTls>().is_some()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Ends the session on the server and in the browser.
async fn logout(State(console): State<Console>, ext: Extensions, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers, SESSION_COOKIE) {
        console.sessions().remove(id);
    }
    let mut resp = Redirect::to("/login").into_response();
    clear_cookie(&mut resp, ext.get::<OverTls>().is_some());
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
             <header><form method=\"post\" action=\"/logout\" class=\"logout\">\
             <button type=\"submit\" id=\"logout\">Log out</button></form>\
             <h1>OpsGuard approval console</h1><p class=\"summary\">{open} open incident{}, \
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
        let _ = write!(h, "<li><time datetime=\"{}\">{}</time> ", escape(&rec.time), escape(clock));
        match &rec.event {
            // The model's words are shown apart from OpsGuard's and labelled:
            // a prompt-injected log can make them say anything.
            AuditEvent::LlmConsulted { model, choice: Some(choice), reason, latency_ms, diagnosis, .. } => {
                let said = match diagnosis {
                    Some(d) => format!("diagnosed {}, which the rules turn into {}", d.category, choice.name()),
                    None => format!("chose {}", choice.name()),
                };
                let _ = write!(
                    h,
                    "<span>🤖 LLM {} {} in {} ms (allowed by the rules for this alarm)</span>\
                     <div class=\"model-output\"><span class=\"untrusted\">untrusted model output, \
                     not checked by OpsGuard{}:</span>",
                    escape(&crate::classify::printable(model.as_deref().unwrap_or("?"))),
                    escape(&said),
                    latency_ms.unwrap_or(0),
                    if diagnosis.is_some() { " beyond finding its quote in the evidence" } else { "" },
                );
                if let Some(d) = diagnosis {
                    let _ = write!(h, " quote <q>{}</q>; reason", escape(&crate::classify::printable(&d.quote)));
                }
                let _ = write!(h, " <q>{}</q></div></li>", escape(&crate::classify::printable(reason)));
            }
            event => {
                let _ = write!(h, "<span>{}</span></li>", escape(&timeline_text(event)));
            }
        }
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
    if let Some(d) = &r.diagnosis {
        // The model's words, apart from OpsGuard's and labelled: a
        // prompt-injected log can make them say anything.
        let _ = write!(
            h,
            "<div class=\"model-output\"><p>🤖 LLM diagnosis: <strong>{}</strong> \
             <span class=\"untrusted\">(untrusted model output; OpsGuard only checked that the quote is in the evidence)</span></p>\
             <p>quote: <q>{}</q></p><p>reason: <q>{}</q></p></div>",
            escape(d.category.name()),
            escape(&crate::classify::printable(&d.quote)),
            escape(&crate::classify::printable(&d.reason)),
        );
    }
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
.timeline time{color:#6b7280}\
.model-output{margin:2px 0 4px 20px;padding:4px 8px;border-left:3px solid #9ca3af;background:#f3f4f6}\
.untrusted{color:#92400e;font-weight:600}.logout{float:right}.logout button{background:#4b5563;margin:0}\
.login input{font-size:15px;padding:6px;width:22em}.login button{background:#1d2330}.note{font-weight:600}.reason{color:#991b1b;font-weight:600}.quiet{color:#6b7280}";

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
    fn listening_beyond_loopback_needs_tls_or_the_explicit_insecure_flag() {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert!(check_listen(addr("127.0.0.1:8990"), false, false).is_ok());
        assert!(check_listen(addr("[::1]:8990"), false, false).is_ok());
        let e = check_listen(addr("0.0.0.0:8990"), false, false).unwrap_err();
        assert!(e.0.contains("needs TLS"), "{e}");
        assert!(check_listen(addr("192.168.1.5:8990"), false, false).is_err());
        assert!(check_listen(addr("0.0.0.0:8990"), true, false).is_ok());
        assert!(check_listen(addr("0.0.0.0:8990"), false, true).is_ok());
    }

    #[test]
    fn weak_or_unsendable_tokens_are_refused() {
        let settings = |t: &str| ConsoleSettings { token: Some(t.into()), approval_timeout: Duration::from_secs(1) };
        assert!(Console::new(settings("short")).is_err());
        assert!(Console::new(settings("0123456789abcdef; x=y")).is_err());
        assert!(Console::new(settings("0123456789abcdef")).is_ok());
    }

    #[test]
    fn a_generated_token_is_long_random_and_accepted() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        check_token(&a).unwrap();
        let console = Console::new(ConsoleSettings { token: None, approval_timeout: Duration::from_secs(1) }).unwrap();
        assert_eq!(console.token().len(), 64);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions { ttl: Duration::from_secs(60), live: HashMap::new() };
        let id = s.create(t0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(matches!(s.check(&id, t0 + Duration::from_secs(59)), SessionState::Live));
        assert!(matches!(s.check(&id, t0 + Duration::from_secs(60)), SessionState::Expired));
        assert!(matches!(s.check(&id, t0), SessionState::Unknown), "an expired session is forgotten");
        assert!(matches!(s.check("0123", t0), SessionState::Unknown));
        for _ in 0..3 * MAX_SESSIONS {
            s.create(t0).unwrap();
        }
        assert!(s.live.len() <= MAX_SESSIONS);
    }

    #[test]
    fn wrong_tokens_are_limited_per_peer_and_in_total() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..LOGIN_BURST {
            assert!(t.allow(a, t0).is_ok());
            t.failed(a, t0);
        }
        let wait = t.allow(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= LOGIN_REFILL, "{wait:?}");
        assert!(t.allow("10.0.0.2".parse().unwrap(), t0).is_ok(), "another peer is not held");
        assert!(t.allow(a, t0 + LOGIN_REFILL).is_ok(), "one more try after the refill");
        // One IPv6 host is one peer, whatever its address in its /64.
        let mut t = Throttle::new(t0);
        for i in 0..LOGIN_BURST {
            t.failed(format!("2001:db8::{i:x}").parse().unwrap(), t0);
        }
        assert!(t.allow("2001:db8::ffff".parse().unwrap(), t0).is_err());
        // Many peers: the global bucket holds them all.
        let mut t = Throttle::new(t0);
        for i in 0..GLOBAL_BURST {
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0100 + i)), t0);
        }
        assert!(t.allow("10.9.9.9".parse().unwrap(), t0).is_err());
        // And the peer table stays bounded.
        let mut t = Throttle::new(t0);
        for i in 0..(MAX_PEERS as u32 + 100) {
            t.global.tokens = 1e9;
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), t0);
        }
        assert!(t.peers.len() <= MAX_PEERS);
    }
}
