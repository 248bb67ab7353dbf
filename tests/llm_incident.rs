//! Issue #4: whole incidents on the simulated host with the OpenAI-compatible
//! advisor talking to a stub server. A database killed with SIGKILL (exit
//! 137, no OOM) has an unknown cause, so the LLM is consulted; its choice
//! then goes through the same approval gate and verification as any rule's.

mod llm_common;

use llm_common::*;
use opsguard::approval::PolicyApprover;
use opsguard::audit::Resolution;
use opsguard::llm::NoAdvisor;
use opsguard::model::{Action, LlmChoice, Outcome, StopReason};
use opsguard::rules::Rules;

fn stopped(reason: StopReason) -> Resolution {
    Resolution::Stopped { reason }
}

#[tokio::test]
async fn llm_restart_still_needs_approval_and_a_denial_stops_it() {
    let server =
        stub(replying(r#"{"action":"restart_database_risky","reason":"SIGKILL with no OOM; data is intact"}"#)).await;
    let host = killed_lab(&[]);
    let (report, audit) = run_incident(&host, Rules::default_rules(), PolicyApprover::Deny, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::ApprovalRejected));
    assert_eq!(restarts(&host), 0, "a denied restart must not run");
    assert_eq!(report.steps[0].outcome, Outcome::LlmChose { choice: LlmChoice::Restart });
    assert!(matches!(report.steps[1].action, Action::RestartContainer { .. }));
    assert_eq!(report.steps[1].outcome, Outcome::ApprovalRejected);
    let c = consultations(&audit);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, Some(LlmChoice::Restart));
    assert_eq!(c[0].1, "SIGKILL with no OOM; data is intact");
    assert!(c[0].2.as_deref().unwrap_or("").contains("restart_database_risky"));
}

#[tokio::test]
async fn llm_restart_with_approval_resolves_after_verification() {
    let server = stub(replying(r#"{"action":"restart_database_risky","reason":"one-off kill"}"#)).await;
    let host = killed_lab(&[]);
    let (report, _) = run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    assert_eq!(report.resolution, Resolution::Resolved, "{:#?}", report.steps);
    assert_eq!(restarts(&host), 1);
}

#[tokio::test]
async fn llm_escalation_stops() {
    let server = stub(replying(r#"{"action":"escalate","reason":"a human stopped it?"}"#)).await;
    let host = killed_lab(&[]);
    let (report, _) = run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::LlmEscalated));
    assert_eq!(restarts(&host), 0);
}

#[tokio::test]
async fn bad_replies_escalate_as_llm_failed_and_are_audited() {
    for reply in [
        replying("not json at all"),
        replying(r#"{"action":"restart_database_risky","reason":""}"#),
        replying(r#"{"action":"restart_database_risky","reason":"x","also":"rm -rf /"}"#),
        wiremock::ResponseTemplate::new(500),
    ] {
        let server = stub(reply).await;
        let host = killed_lab(&[]);
        let (report, audit) =
            run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
        assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
        assert_eq!(restarts(&host), 0);
        let c = consultations(&audit);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, None, "no choice recorded for a refused reply");
        assert!(!c[0].1.is_empty(), "the refusal reason is audited");
    }
}

#[tokio::test]
async fn unreachable_llm_escalates() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let host = killed_lab(&[]);
    let a = advisor_at(&format!("http://127.0.0.1:{port}"), std::time::Duration::from_secs(2));
    let (report, audit) = run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, a).await;
    assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
    assert!(consultations(&audit)[0].1.contains("cannot connect"));
}

#[tokio::test]
async fn without_an_llm_unknown_escalates_without_asking() {
    let host = killed_lab(&[]);
    let (report, audit) = run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, NoAdvisor).await;
    assert_eq!(report.resolution, stopped(StopReason::UnknownCause));
    assert!(report.steps.is_empty());
    assert!(consultations(&audit).is_empty());
}
