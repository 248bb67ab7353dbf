//! The console's JSON API, for approving without a browser
//! (`opsguard approvals`): `GET /api/v1/approvals` lists the requests
//! waiting for a human with what the page shows of each, and
//! `POST /api/v1/approvals/{id}` answers one. An answer names the digest of
//! what its sender was shown, so evidence that changed since is refused, and
//! goes through the page's own path ([`super::board::settle`]) to the
//! waiting incident.
//!
//! Only `Authorization: Bearer TOKEN` opens the API (the gate refuses a
//! session cookie there): a cookie rides along with any request a browser
//! is tricked into sending, a header does not, so the API needs no CSRF
//! token. Every answer is JSON, errors too (`{"error": code, "message"}`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Console;
use super::auth::same_secret;
use super::board::{PostedRequest, Refusal, RequestStatus, settle};
use crate::approval::{evidence_facts, evidence_lines};
use crate::classify::printable;

/// The longest approver name an answer may give.
pub const MAX_APPROVER_LEN: usize = 64;

/// `GET /api/v1/approvals`: the requests waiting for a human.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApprovalList {
    /// Oldest first.
    pub approvals: Vec<PendingApproval>,
}

/// One request waiting for a human, with what the page shows of it. Every
/// text from a container (its name, log lines, the model's words) is one
/// inert line ([`printable`]); it is still untrusted text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The request id, to answer it.
    pub id: u64,
    /// Its incident.
    pub incident: u64,
    /// The container the alarm is about.
    pub container: String,
    /// The alarm's code (`DB_CRASH`, …).
    pub alarm: String,
    /// The root cause, when the alarm has one.
    pub root_cause: Option<String>,
    /// The action to approve, as the page words it.
    pub action: String,
    /// The crash the approval is bound to (void if it runs or crashes again).
    pub bound_to: Option<String>,
    /// The SHA-256 of what is shown, to send back with the answer.
    pub digest: String,
    /// When it was asked (RFC 3339, UTC).
    pub requested_at: String,
    /// When silence becomes a rejection (RFC 3339, UTC).
    pub deadline: String,
    /// Seconds left until then.
    pub expires_in_secs: u64,
    /// The evidence facts, as the page lists them (label, value).
    pub evidence: Vec<(String, String)>,
    /// The matching log lines.
    pub log_lines: Vec<String>,
    /// An LLM's diagnosis behind the action: untrusted model output.
    pub diagnosis: Option<ModelDiagnosis>,
}

/// What a model said, labelled as such: a prompt-injected log can make it
/// say anything.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelDiagnosis {
    /// The cause category it chose.
    pub category: String,
    /// The log line it quoted (checked to be in the evidence).
    pub quote: String,
    /// Its reason (not checked).
    pub reason: String,
}

/// `POST /api/v1/approvals/{id}`'s body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    /// `approve` or `reject`.
    pub answer: String,
    /// The digest of the request as listed.
    pub digest: String,
    /// Who answers (logged with the answer).
    pub approver: String,
}

/// `POST /api/v1/approvals/{id}`'s answer on success.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answered {
    /// The request.
    pub id: u64,
    /// `approved` or `rejected`.
    pub status: String,
}

/// An API error's body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code (`unauthorized`, `stale_digest`, `not_found`, …).
    pub error: String,
    /// A sentence for a human.
    pub message: String,
}

/// A JSON response with `status`.
pub(super) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = (status, bytes).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the answer").into_response(),
    }
}

/// An API error: `{"error": code, "message": message}` with `status`.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp = json(status, &ApiError { error: code.into(), message: message.into() });
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn view(e: &PostedRequest, now: Instant) -> PendingApproval {
    let r = &e.request;
    let left = e.expires_at.saturating_duration_since(now);
    PendingApproval {
        id: r.id,
        incident: r.incident,
        container: printable(r.alarm.container.as_str()),
        alarm: r.alarm.kind.code().to_string(),
        root_cause: r.alarm.kind.cause().map(|c| c.label().to_string()),
        action: printable(&r.action.to_string()),
        bound_to: r.crash.as_ref().map(|c| printable(&c.describe())),
        digest: e.digest.clone(),
        requested_at: rfc3339(e.requested_at),
        deadline: rfc3339(e.requested_at + e.expires_at.saturating_duration_since(e.posted)),
        expires_in_secs: left.as_secs(),
        evidence: evidence_facts(&r.alarm.evidence).into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        log_lines: evidence_lines(&r.alarm.evidence),
        diagnosis: r.diagnosis.as_ref().map(|d| ModelDiagnosis {
            category: d.category.name().to_string(),
            quote: printable(&d.quote),
            reason: printable(&d.reason),
        }),
    }
}

pub(super) async fn list(State(console): State<Console>) -> Response {
    let now = Instant::now();
    let board = console.board();
    let approvals = board
        .requests
        .values()
        .filter(|e| e.status == RequestStatus::Pending && now < e.expires_at)
        .map(|e| view(e, now))
        .collect();
    json(StatusCode::OK, &ApprovalList { approvals })
}

pub(super) async fn answer(
    State(console): State<Console>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let refuse = |r: Refusal| error(r.status, r.code, &r.message);
    let Ok(Path(id)) = id else {
        return error(StatusCode::NOT_FOUND, "not_found", "an approval request id is a number");
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), "bad_request", &e.body_text()),
    };
    let given: ApprovalAnswer = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            let why = format!(
                "the body must be JSON {{\"answer\": \"approve\"|\"reject\", \"digest\": \"…\", \"approver\": \"…\"}}: {e}"
            );
            return error(StatusCode::BAD_REQUEST, "bad_request", &why);
        }
    };
    let approve = match given.answer.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return error(StatusCode::BAD_REQUEST, "bad_request", "the answer must be approve or reject"),
    };
    let approver = given.approver.trim();
    if approver.is_empty() || approver.chars().count() > MAX_APPROVER_LEN || approver.chars().any(char::is_control) {
        let why = format!("the approver must be a name of 1 to {MAX_APPROVER_LEN} characters on one line");
        return error(StatusCode::BAD_REQUEST, "bad_request", &why);
    }
    let mut board = console.board();
    let Some(entry) = board.requests.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found", &format!("no approval request {id}"));
    };
    // An answer to a request already settled says so, whatever digest it
    // carries; a pending one must name exactly what is shown now.
    let settled = if entry.status == RequestStatus::Pending && !same_secret(&given.digest, &entry.digest) {
        Err(Refusal::new(
            StatusCode::CONFLICT,
            "stale_digest",
            format!("the action or its evidence changed since request {id} was listed: list it again"),
        ))
    } else {
        settle(entry, approve, format!("api: {approver}"))
    };
    board.publish_metrics(Instant::now());
    match settled {
        Ok(()) => {
            let status = if approve { "approved" } else { "rejected" };
            json(StatusCode::OK, &Answered { id, status: status.into() })
        }
        Err(r) => refuse(r),
    }
}
