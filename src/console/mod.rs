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
//! The parts: [`auth`] (the token, sessions, rate limits, the login and
//! logout routes), [`board`] (the incidents and the approval requests
//! waiting for a human, and how an answer is checked against them) and
//! [`html`] (every page, written with maud templates that escape every
//! value by default; log lines are hostile input and are tested as such).

pub mod api;
mod auth;
mod board;
mod html;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::time::Instant;

use crate::approval::{Answer, ApprovalError, ApprovalRequest, Approver, Signoff};
use crate::serve::Limits;

use self::auth::{Sessions, Throttle, check_token, gate, login, login_page, logout, random_hex};
pub use self::auth::{check_listen, generate_token, write_token_file};
use self::board::{AnswerForm, IncidentBoard};
pub use self::board::{OpenRequest, RequestStatus};
pub use self::html::escape;
use self::html::refuse;

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

/// Everything a console and its clones share: the board, the secrets
/// (CSRF and access tokens), the logins and the rate limits.
struct ConsoleState {
    board: Mutex<IncidentBoard>,
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
    state: Arc<ConsoleState>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("approval_timeout", &self.state.approval_timeout).finish_non_exhaustive()
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
            state: Arc::new(ConsoleState {
                board: Mutex::new(IncidentBoard::default()),
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
        &self.state.token
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.state.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.state.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn board(&self) -> MutexGuard<'_, IncidentBoard> {
        // The board is a view; a panic elsewhere cannot leave it unsafe to show.
        self.state.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The approver that puts requests on this console.
    pub fn approver(&self) -> WebApprover {
        WebApprover { console: self.clone() }
    }

    /// The CSRF token every answer form must carry.
    pub fn csrf_token(&self) -> &str {
        &self.state.csrf
    }

    /// The router: `GET /`, `GET /incidents/{id}`, `POST /answer`,
    /// `GET|POST /login`, `POST /logout`, and the JSON API ([`api`]):
    /// `GET /api/v1/approvals`, `POST /api/v1/approvals/{id}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/approvals", get(api::list).fallback(api_method_not_allowed))
            .route("/api/v1/approvals/{id}", post(api::answer).fallback(api_method_not_allowed))
            .route("/api/{*rest}", axum::routing::any(api_not_found))
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

    /// Who answered on the page or through the API, and the digest their
    /// answer carried (checked against the request's before it was passed
    /// on).
    fn signoff(&self, request: &ApprovalRequest) -> Signoff {
        let board = self.console.board();
        match board.requests.get(&request.id) {
            Some(e) if e.request == *request => Signoff {
                by: e.answered_by.clone().unwrap_or_else(|| "web console".into()),
                digest: Some(e.digest.clone()),
            },
            _ => Signoff { by: "web console".into(), digest: None },
        }
    }
}

async fn api_method_not_allowed() -> Response {
    api::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "GET lists the approvals, POST answers one")
}

async fn api_not_found() -> Response {
    api::error(StatusCode::NOT_FOUND, "not_found", "no such API endpoint: see GET /api/v1/approvals")
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

async fn answer(
    State(console): State<Console>,
    headers: axum::http::HeaderMap,
    form: Result<Form<AnswerForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return refuse(e.status(), &e.body_text()),
    };
    // Who the gate let through, as it did: the token in a header before a
    // session cookie. A session is named by the start of its key's hash,
    // which tells logins apart and opens none.
    let by = if headers.contains_key(axum::http::header::AUTHORIZATION) {
        "page, token".to_string()
    } else {
        match auth::cookie_value(&headers, SESSION_COOKIE) {
            Some(id) => format!("page, session {}", &hex::encode(auth::session_key(id))[..8]),
            None => "page".to_string(),
        }
    };
    match console.take_answer(&form, by) {
        Ok(()) => Redirect::to(&format!("/#incident-{}", form.incident)).into_response(),
        Err((status, why)) => refuse(status, &why),
    }
}

impl Console {
    /// The HTML served at `/` (every incident) or at `/incident/{id}`, as a
    /// browser gets it; for tests of what the page can show.
    pub fn page(&self, incident: Option<u64>) -> String {
        self.render(incident)
    }
}
