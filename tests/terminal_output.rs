//! What reaches an operator's terminal cannot be steered by a container or
//! the daemon (issue 8, item 16): a host error (a `find` or `df` failing
//! inside a container), a daemon message or a container name holding line
//! breaks, carriage returns and escape sequences shows as one line with no
//! control character, so it can neither fake an "approved" line nor drive
//! the terminal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsguard::approval::{ApprovalRequest, PolicyApprover, render_request};
use opsguard::audit::{AuditEvent, AuditLog};
use opsguard::clock::{Clock, SimClock};
use opsguard::engine::Engine;
use opsguard::host::sim::{SimFault, SimHost, WEB};
use opsguard::host::{
    CleanReport, ContainerStatus, ContainerSummary, DiskUsage, Host, HostError, HostErrorKind, LogLine,
};
use opsguard::incident::Responder;
use opsguard::llm::NoAdvisor;
use opsguard::model::{
    Action, Alarm, AlarmKind, ContainerName, Evidence, Outcome, RestartReason, RootCause, Timestamp,
};
use opsguard::progress::Progress;
use opsguard::rules::Rules;

/// A line break, a carriage return over the line, a fake timeline entry,
/// a screen clear, a window-title OSC, an 8-bit CSI, a Unicode line
/// separator and a bidi override.
const HOSTILE: &str = "find: '/var/log/x': Permission denied\r\n[10:00:00.000] #1 👤 ✅ approved by web\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1A\u{2028}\u{202e}evil";

fn unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` is `lines` lines and holds no control character beyond their breaks.
fn assert_inert(text: &str, lines: usize) {
    assert_eq!(text.split('\n').count(), lines, "{text:?}");
    assert!(!text.split('\n').any(|l| l.chars().any(unprintable)), "{text:?}");
}

/// The simulated lab, except that `find` inside a container fails with a
/// hostile message, as a compromised container can arrange.
#[derive(Clone)]
struct HostileFind(SimHost);

impl Host for HostileFind {
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, HostError> {
        self.0.list_containers().await
    }
    async fn inspect(&self, container: &str) -> Result<ContainerStatus, HostError> {
        self.0.inspect(container).await
    }
    async fn recent_logs(&self, c: &str, since: Timestamp, max: usize) -> Result<Vec<LogLine>, HostError> {
        self.0.recent_logs(c, since, max).await
    }
    async fn disk_usage(&self, container: &str, path: &str) -> Result<DiskUsage, HostError> {
        self.0.disk_usage(container, path).await
    }
    async fn clean_logs(&self, container: &str, _: &[String]) -> Result<CleanReport, HostError> {
        Err(HostError::new(HostErrorKind::Other, format!("clean_logs {container}"), HOSTILE))
    }
    async fn restart(&self, container: &str) -> Result<(), HostError> {
        self.0.restart(container).await
    }
    async fn prune_exited(&self, label: &str, protect: &[ContainerName]) -> Result<Vec<ContainerName>, HostError> {
        self.0.prune_exited(label, protect).await
    }
}

#[tokio::test]
async fn a_hostile_host_error_shows_as_one_line_in_the_timeline() {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    let shown = Arc::new(Mutex::new(Vec::new()));
    let tap = shown.clone();
    let audit = AuditLog::in_memory().with_tap(move |r| tap.lock().unwrap().push(r.event.render()));
    let mut responder = Responder::new(
        Engine::new(Arc::new(Rules::default_rules())),
        HostileFind(sim.clone()),
        PolicyApprover::Deny,
        NoAdvisor,
        clock.clone(),
        audit.clone(),
    );
    sim.inject(SimFault::WebDiskFill);
    let sweep = responder.observer().sweep(responder.host(), clock.now()).await;
    let alarm = sweep.alarms.into_iter().find(|a| a.container.as_str() == WEB).expect("a web alarm");
    responder.handle(alarm).await;
    let failed = audit
        .records()
        .iter()
        .position(|r| matches!(r.event, AuditEvent::Executed { outcome: Outcome::Failed { .. }, .. }))
        .expect("the clean failed");
    let shown = shown.lock().unwrap();
    assert!(shown[failed].contains("Permission denied"), "{}", shown[failed]);
    for line in shown.iter() {
        assert_inert(line, 1);
    }
}

#[test]
fn host_errors_display_as_one_line() {
    let e = HostError::new(HostErrorKind::BadResponse, format!("inspect {HOSTILE}"), HOSTILE);
    assert_inert(&e.to_string(), 1);
}

fn hostile_alarm() -> Alarm {
    Alarm {
        kind: AlarmKind::DbCrash(RootCause::Unknown),
        container: ContainerName::new(HOSTILE),
        evidence: Evidence {
            exit_code: Some(1),
            matched_signature: Some(HOSTILE.into()),
            log_lines: vec![HOSTILE.into(), HOSTILE.into()],
            log_tail: vec![HOSTILE.into()],
            ..Evidence::default()
        },
        raised_at: Timestamp(0),
    }
}

#[test]
fn every_timeline_event_renders_as_inert_lines() {
    let alarm = hostile_alarm();
    let target = alarm.container.clone();
    let restart = Action::Restart { target: target.clone(), reason: RestartReason::LlmSuggested };
    let events = [
        AuditEvent::Decided { action: Action::CleanLogs { target: target.clone() } },
        AuditEvent::ApprovalRequested { request: 1, action: restart.clone(), approver: HOSTILE.into() },
        AuditEvent::ApprovalAnswered {
            request: 1,
            approved: true,
            approver: HOSTILE.into(),
            detail: HOSTILE.into(),
            answered_by: Some(format!("api: {HOSTILE}")),
            evidence_digest: Some(HOSTILE.into()),
        },
        AuditEvent::ApprovalAnswered {
            request: 1,
            approved: false,
            approver: HOSTILE.into(),
            detail: HOSTILE.into(),
            answered_by: Some(HOSTILE.into()),
            evidence_digest: None,
        },
        AuditEvent::LlmConsulted {
            model: Some(HOSTILE.into()),
            latency_ms: None,
            choice: Some(opsguard::model::LlmChoice::Restart),
            reason: HOSTILE.into(),
            raw: Some(HOSTILE.into()),
            diagnosis: Some(opsguard::model::LlmDiagnosis {
                category: opsguard::model::Diagnosis::KilledOnce,
                quote: HOSTILE.into(),
                reason: HOSTILE.into(),
            }),
        },
        AuditEvent::LlmConsulted {
            model: None,
            latency_ms: None,
            choice: None,
            reason: HOSTILE.into(),
            raw: None,
            diagnosis: None,
        },
        AuditEvent::Executed { action: restart.clone(), outcome: Outcome::Failed { error: HOSTILE.into() } },
        AuditEvent::WouldExecute { action: restart },
        AuditEvent::Checked { state: None, health: None, cleared: None, error: Some(HOSTILE.into()) },
    ];
    for e in &events {
        assert_inert(&e.render(), 1);
    }
    // The opening shows its first evidence line on a second line of its own.
    assert_inert(&AuditEvent::IncidentOpened { alarm }.render(), 2);
}

#[test]
fn the_status_line_stays_one_line() {
    let alarm = hostile_alarm();
    let mut p = Progress::new(Duration::from_secs(60));
    let rec = |event| opsguard::audit::AuditRecord { ts: Timestamp(0), time: String::new(), incident: 1, event };
    p.observe(&rec(AuditEvent::IncidentOpened { alarm: alarm.clone() }));
    p.observe(&rec(AuditEvent::ApprovalRequested {
        request: 1,
        action: Action::Restart { target: alarm.container.clone(), reason: RestartReason::OomKill },
        approver: HOSTILE.into(),
    }));
    assert_inert(&p.line(Timestamp(1000)), 1);
}

#[test]
fn the_terminal_approval_prompt_cannot_be_forged() {
    let alarm = hostile_alarm();
    let request = ApprovalRequest {
        id: 7,
        incident: 1,
        action: Action::Restart { target: alarm.container.clone(), reason: RestartReason::LlmSuggested },
        alarm,
        crash: None,
        diagnosis: None,
    };
    let prompt = render_request(&request);
    // The prompt's own lines: the action, the alarm, exit code, signature,
    // the heading of the log lines and the two log lines; nothing else.
    assert_inert(prompt.trim_end_matches('\n'), 7);
    assert!(prompt.starts_with("I want to run"));
    assert!(prompt.lines().skip(1).all(|l| l.starts_with("  ")), "{prompt}");
}
