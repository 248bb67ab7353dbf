//! The board: the incidents as the audit log's tap reports them and the
//! approval requests put to the console, each with the nonce and the digest
//! a form must carry to answer it. An answer is checked here against the
//! request it names and handed to the waiting incident loop at most once.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::auth::{random_hex, same_secret};
use super::{Console, ConsoleError, MAX_INCIDENTS, MAX_TIMELINE};
use crate::approval::{Answer, ApprovalError, ApprovalRequest};
use crate::audit::{AuditEvent, AuditRecord, Resolution};
use crate::model::Alarm;

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
    pub(super) fn as_str(self) -> &'static str {
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

/// An approval request as the console posted it: what answering it needs
/// (the nonce and digest a form must carry, the expiry), where it stands,
/// and the channel to the incident waiting for the answer.
pub(super) struct PostedRequest {
    pub(super) request: ApprovalRequest,
    pub(super) nonce: String,
    pub(super) digest: String,
    pub(super) expires_at: Instant,
    /// When it was posted, on the wall clock (for API clients).
    pub(super) requested_at: std::time::SystemTime,
    /// When it was posted, for its age in the metrics.
    pub(super) posted: Instant,
    /// Who answered it, and how (`page`, or the API client's approver).
    pub(super) answered_by: Option<String>,
    pub(super) status: RequestStatus,
    pub(super) reply: Option<oneshot::Sender<Answer>>,
}

/// One incident as the audit log's tap reported it.
#[derive(Default)]
pub(super) struct IncidentView {
    pub(super) alarm: Option<Alarm>,
    pub(super) timeline: Vec<AuditRecord>,
    pub(super) resolution: Option<Resolution>,
}

/// What the console shows: the incidents and the approval requests posted
/// to it, each by its id.
#[derive(Default)]
pub(super) struct IncidentBoard {
    pub(super) incidents: BTreeMap<u64, IncidentView>,
    pub(super) requests: BTreeMap<u64, PostedRequest>,
}

/// SHA-256 over what the human is shown, so an answer names the evidence it rests on.
pub(super) fn digest(r: &ApprovalRequest) -> Result<String, ConsoleError> {
    crate::approval::evidence_digest(r).map_err(|e| ConsoleError(e.0))
}

#[derive(Deserialize)]
pub(super) struct AnswerForm {
    pub(super) incident: u64,
    pub(super) request: u64,
    pub(super) nonce: String,
    pub(super) digest: String,
    pub(super) csrf: String,
    pub(super) decision: String,
}

impl Console {
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

    pub(super) fn publish(&self, request: &ApprovalRequest) -> Result<oneshot::Receiver<Answer>, ApprovalError> {
        let err = |e: ConsoleError| ApprovalError(e.to_string());
        let nonce = random_hex(16).map_err(err)?;
        let digest = digest(request).map_err(err)?;
        let (tx, rx) = oneshot::channel();
        let mut board = self.board();
        if board.requests.contains_key(&request.id) {
            return Err(ApprovalError(format!("request {} was already put to the console", request.id)));
        }
        board.incidents.entry(request.incident).or_default().alarm.get_or_insert_with(|| request.alarm.clone());
        let now = Instant::now();
        board.requests.insert(
            request.id,
            PostedRequest {
                request: request.clone(),
                nonce,
                digest,
                expires_at: now + self.state.approval_timeout,
                requested_at: std::time::SystemTime::now(),
                posted: now,
                answered_by: None,
                status: RequestStatus::Pending,
                reply: Some(tx),
            },
        );
        board.publish_metrics(now);
        Ok(rx)
    }

    pub(super) fn withdraw(&self, id: u64) {
        let mut board = self.board();
        if let Some(e) = board.requests.get_mut(&id)
            && e.status == RequestStatus::Pending
        {
            e.status = RequestStatus::Expired;
            e.reply = None;
        }
        board.publish_metrics(Instant::now());
    }

    /// Sets the pending-approvals gauges from the board: call it now and
    /// then, so the oldest request's age keeps growing between changes.
    pub fn publish_metrics(&self) {
        self.board().publish_metrics(Instant::now());
    }

    /// Checks a form against the request it names and, when everything
    /// matches, hands the answer to the waiting incident loop.
    pub(super) fn take_answer(&self, form: &AnswerForm, by: String) -> Result<(), (StatusCode, String)> {
        if !same_secret(&form.csrf, &self.state.csrf) {
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
        let settled = settle(entry, approve, by);
        board.publish_metrics(Instant::now());
        settled.map_err(|r| (r.status, r.message))
    }
}

/// Why an answer was not passed on: the HTTP status, a stable code for API
/// clients and a sentence for humans.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, code, message: message.into() }
    }
}

/// Hands `approve` (or a rejection) to the incident waiting on `entry`, if
/// it is still pending and unexpired: the one way an answer leaves the
/// console, whether it came from the page or the API. The caller has
/// checked the digest (and, for the page, the nonce and CSRF token).
pub(super) fn settle(entry: &mut PostedRequest, approve: bool, by: String) -> Result<(), Refusal> {
    let id = entry.request.id;
    let expired = || Refusal::new(StatusCode::GONE, "expired", format!("request {id} expired: it counts as rejected"));
    match entry.status {
        RequestStatus::Pending => {}
        RequestStatus::Approved | RequestStatus::Rejected => {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "already_answered",
                format!("request {id} was already {}", entry.status.as_str()),
            ));
        }
        RequestStatus::Expired => return Err(expired()),
    }
    if Instant::now() >= entry.expires_at {
        entry.status = RequestStatus::Expired;
        entry.reply = None;
        return Err(expired());
    }
    let answer = if approve { Answer::Approve { request: id } } else { Answer::Reject };
    match entry.reply.take().map(|tx| tx.send(answer)) {
        Some(Ok(())) => {
            entry.status = if approve { RequestStatus::Approved } else { RequestStatus::Rejected };
            tracing::info!(
                incident = entry.request.incident,
                request = id,
                approved = approve,
                by = by.as_str(),
                digest = entry.digest.as_str(),
                "approval answered on the console"
            );
            entry.answered_by = Some(by);
            Ok(())
        }
        // The loop stopped waiting between the checks above and now.
        _ => {
            entry.status = RequestStatus::Expired;
            Err(expired())
        }
    }
}

impl IncidentBoard {
    /// The pending requests' count and the oldest one's age, as gauges.
    pub(super) fn publish_metrics(&self, now: Instant) {
        let pending = self.requests.values().filter(|e| e.status == RequestStatus::Pending && now < e.expires_at);
        let (count, oldest) = pending.fold((0usize, None::<Instant>), |(n, oldest), e| {
            (n + 1, Some(oldest.map_or(e.posted, |o| o.min(e.posted))))
        });
        let age = oldest.map_or(0.0, |o| now.saturating_duration_since(o).as_secs_f64());
        crate::telemetry::approvals_pending(count, age);
    }
}
