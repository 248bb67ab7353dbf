//! Every page the console serves, as maud templates: each value is escaped
//! by default, so container text (log lines, names, an LLM's reason) can
//! only ever be text on the page. No JavaScript.

use axum::http::header;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tokio::time::Instant;

use super::board::{IncidentView, PostedRequest, RequestStatus};
use super::{Console, REFRESH_SECS};
use crate::approval::{evidence_facts, evidence_lines};
use crate::audit::{AuditEvent, Resolution};
use crate::classify::printable;
use crate::model::Alarm;

/// A refused request's page.
pub(super) fn refuse(status: StatusCode, why: &str) -> Response {
    let code = status.to_string();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (code) " · OpsGuard" } }
            body { h1 { (code) } p { (why) } p { a href="/" { "Back to the console" } } }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// A page for a refused request that offers the login form.
pub(super) fn refuse_login(status: StatusCode, why: &str) -> Response {
    let mut resp = (status, Html(login_html(why))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

pub(super) fn login_html(note: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · OpsGuard" }
                meta name="viewport" content="width=device-width, initial-scale=1";
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { h1 { "OpsGuard approval console" } }
                main {
                    p class="note" { (note) }
                    form method="post" action="/login" class="login" {
                        label for="token" { "Console token" }
                        " "
                        input type="password" name="token" id="token" autocomplete="current-password" required;
                        " "
                        button type="submit" id="login" { "Log in" }
                    }
                    p class="quiet" {
                        "The token is the one given with --token or OPSGUARD_CONSOLE_TOKEN, \
                         or the one OpsGuard wrote to its token file at start."
                    }
                }
            }
        }
    }
    .into_string()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Console {
    pub(super) fn render(&self, only: Option<u64>) -> String {
        let board = self.board();
        let now = Instant::now();
        let open = board.incidents.values().filter(|v| v.resolution.is_none()).count();
        let pending = board.requests.values().filter(|e| e.status == RequestStatus::Pending).count();
        let ids: Vec<u64> = match only {
            Some(id) => vec![id],
            None => board.incidents.keys().rev().copied().collect(),
        };
        let csrf = &self.state.csrf;
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta http-equiv="refresh" content=(REFRESH_SECS);
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "OpsGuard console" @if pending > 0 { " — approval needed" } }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        form method="post" action="/logout" class="logout" {
                            button type="submit" id="logout" { "Log out" }
                        }
                        h1 { "OpsGuard approval console" }
                        p class="summary" {
                            (open) " open incident" (plural(open)) ", " (pending) " pending approval" (plural(pending))
                            " · this page reloads every " (REFRESH_SECS) " s"
                        }
                    }
                    main {
                        @if ids.is_empty() {
                            p class="quiet" { "No incidents yet. OpsGuard is watching." }
                        }
                        @for id in ids {
                            @if let Some(view) = board.incidents.get(&id) {
                                @let requests: Vec<&PostedRequest> =
                                    board.requests.values().filter(|e| e.request.incident == id).collect();
                                (incident(id, view, &requests, csrf, now))
                            }
                        }
                    }
                }
            }
        };
        page.into_string() + "\n"
    }
}

fn incident(id: u64, view: &IncidentView, requests: &[&PostedRequest], csrf: &str, now: Instant) -> Markup {
    let (class, badge) = match view.resolution {
        None => ("open", "OPEN"),
        Some(Resolution::Resolved) => ("resolved", "RESOLVED"),
        Some(Resolution::Stopped { .. }) => ("stopped", "STOPPED"),
        Some(Resolution::Withheld) => ("shadow", "SHADOW"),
    };
    html! {
        section class={ "incident " (class) } id={ "incident-" (id) } {
            h2 {
                a href={ "/incidents/" (id) } { "Incident #" (id) }
                " "
                @if let Some(alarm) = &view.alarm {
                    span class="alarm" { (alarm.kind) } " on " span class="container" { (alarm.container.as_str()) } " "
                }
                span class={ "badge " (class) } id={ "status-" (id) } { (badge) }
            }
            @if let Some(Resolution::Stopped { reason }) = view.resolution {
                p class="reason" { "Stopped for a human: " (reason.describe()) "." }
            }
            @if let Some(alarm) = &view.alarm {
                (evidence(alarm))
            }
            @for e in requests {
                (request(e, csrf, now))
            }
            h3 { "Timeline" }
            ol class="timeline" {
                @for rec in &view.timeline {
                    li {
                        time datetime=(rec.time) { (rec.time.get(11..19).unwrap_or(&rec.time)) }
                        " "
                        @match &rec.event {
                            // The model's words are shown apart from OpsGuard's and
                            // labelled: a prompt-injected log can make them say anything.
                            AuditEvent::LlmConsulted { model, choice: Some(choice), reason, latency_ms, diagnosis, .. } => {
                                span {
                                    "🤖 LLM " (printable(model.as_deref().unwrap_or("?"))) " "
                                    @if let Some(d) = diagnosis {
                                        "diagnosed " (d.category) ", which the rules turn into " (choice.name())
                                    } @else {
                                        "chose " (choice.name())
                                    }
                                    " in " (latency_ms.unwrap_or(0)) " ms (allowed by the rules for this alarm)"
                                }
                                div class="model-output" {
                                    span class="untrusted" {
                                        "untrusted model output, not checked by OpsGuard"
                                        @if diagnosis.is_some() { " beyond finding its quote in the evidence" }
                                        ":"
                                    }
                                    @if let Some(d) = diagnosis {
                                        " quote " q { (printable(&d.quote)) } "; reason"
                                    }
                                    " "
                                    q { (printable(reason)) }
                                }
                            }
                            event => { span { (timeline_text(event)) } }
                        }
                    }
                }
            }
        }
    }
}

/// An event as the terminal shows it, its own line breaks kept and any
/// control character from a log replaced.
fn timeline_text(event: &AuditEvent) -> String {
    event.render().split('\n').map(printable).collect::<Vec<_>>().join("\n")
}

fn evidence(alarm: &Alarm) -> Markup {
    let lines = evidence_lines(&alarm.evidence);
    html! {
        h3 { "Root cause and evidence" }
        dl class="evidence" {
            @if let Some(cause) = alarm.kind.cause() {
                dt { "root cause" } dd { (cause.label()) }
            }
            @for (label, value) in evidence_facts(&alarm.evidence) {
                dt { (label) } dd { (value) }
            }
        }
        @if !lines.is_empty() {
            p class="label" { "matching log lines" }
            pre class="log" {
                @for l in &lines { (l) "\n" }
            }
        }
    }
}

fn request(e: &PostedRequest, csrf: &str, now: Instant) -> Markup {
    let r = &e.request;
    let status = match e.status {
        RequestStatus::Pending if now >= e.expires_at => RequestStatus::Expired,
        s => s,
    };
    let pending = status == RequestStatus::Pending;
    let left = e.expires_at.saturating_duration_since(now).as_secs();
    html! {
        div class={ "approval " (status.as_str()) } id={ "request-" (r.id) } {
            p {
                strong { @if pending { "⚠ Approval needed:" } @else { "Approval request:" } }
                " "
                code { (r.action) }
            }
            @if let Some(d) = &r.diagnosis {
                // The model's words, apart from OpsGuard's and labelled: a
                // prompt-injected log can make them say anything.
                div class="model-output" {
                    p {
                        "🤖 LLM diagnosis: " strong { (d.category.name()) } " "
                        span class="untrusted" {
                            "(untrusted model output; OpsGuard only checked that the quote is in the evidence)"
                        }
                    }
                    p { "quote: " q { (printable(&d.quote)) } }
                    p { "reason: " q { (printable(&d.reason)) } }
                }
            }
            @if !pending {
                p class="answer" {
                    (status.as_str().to_uppercase())
                    @if let Some(by) = &e.answered_by { " (" (by) ")" }
                }
            } @else {
                p class="expiry" {
                    "Expires in " (left / 60) "m " (format!("{:02}", left % 60)) "s; no answer by then is a rejection."
                }
                form method="post" action="/answer" {
                    input type="hidden" name="incident" value=(r.incident);
                    input type="hidden" name="request" value=(r.id);
                    input type="hidden" name="nonce" value=(e.nonce);
                    input type="hidden" name="digest" value=(e.digest);
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" name="decision" value="approve" class="approve" id={ "approve-" (r.id) } {
                        "Approve"
                    }
                    " "
                    button type="submit" name="decision" value="reject" class="reject" id={ "reject-" (r.id) } {
                        "Reject"
                    }
                }
            }
        }
    }
}

/// `s` safe to place in HTML text or a double-quoted attribute: the
/// templates' own escaping (`&`, `<`, `>`, `"`), for text placed outside
/// them and for tests of what a page shows.
pub fn escape(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    // Writing to a String cannot fail.
    let _ = maud::Escaper::new(&mut out).write_str(s);
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
            "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
