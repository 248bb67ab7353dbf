//! Issues #4 and #13: whole incidents on the simulated host with the
//! OpenAI-compatible advisor talking to a stub server. A database killed
//! with SIGKILL (exit 137, no OOM) has an unknown cause, so the LLM is
//! consulted; the rules turn its diagnosis into a choice, which then goes
//! through the same approval gate and verification as any rule's.

mod llm_common;

use llm_common::*;
use opsguard::approval::PolicyApprover;
use opsguard::approval::{ChannelApprover, render_request};
use opsguard::audit::Resolution;
use opsguard::host::sim::SimOp;
use opsguard::llm::NoAdvisor;
use opsguard::model::{Action, Diagnosis, LlmChoice, LlmDiagnosis, Outcome, StopReason};
use opsguard::rules::Rules;

fn stopped(reason: StopReason) -> Resolution {
    Resolution::Stopped { reason }
}

#[tokio::test]
async fn killed_once_leads_to_a_restart_that_still_needs_approval() {
    let server = stub(replying(&diagnosis(KILLED, "SIGKILL with no OOM; data is intact", "killed-once"))).await;
    let host = killed_lab(&[]);
    let (report, audit) = run_incident(&host, Rules::default_rules(), PolicyApprover::Deny, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::ApprovalRejected));
    assert_eq!(restarts(&host), 0, "a denied restart must not run");
    let expected = LlmDiagnosis {
        category: Diagnosis::KilledOnce,
        quote: KILLED.into(),
        reason: "SIGKILL with no OOM; data is intact".into(),
    };
    assert_eq!(report.steps[0].outcome, Outcome::LlmChose { choice: LlmChoice::Restart, diagnosis: Some(expected) });
    assert!(matches!(report.steps[1].action, Action::Restart { .. }));
    assert_eq!(report.steps[1].outcome, Outcome::ApprovalRejected);
    let c = consultations(&audit);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, Some(LlmChoice::Restart));
    assert_eq!(c[0].1, "SIGKILL with no OOM; data is intact");
    assert!(c[0].2.as_deref().unwrap_or("").contains("killed-once"));
}

#[tokio::test]
async fn the_approver_sees_category_quote_and_reason_as_model_output() {
    let server = stub(replying(&diagnosis(KILLED, "one-off kill", "killed-once"))).await;
    let host = killed_lab(&["LOG:  checkpoint starting: time"]);
    let (approver, mut requests) = ChannelApprover::new(1);
    let seen = tokio::spawn(async move {
        let pending = requests.recv().await.expect("a restart is asked for");
        let shown = render_request(&pending.request);
        drop(pending); // unanswered: a rejection
        shown
    });
    let (report, _) = run_incident(&host, Rules::default_rules(), approver, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::ApprovalRejected));
    let shown = seen.await.unwrap();
    assert!(shown.contains("LLM diagnosis: killed-once (model output"), "{shown}");
    assert!(shown.contains(&format!("quote: {KILLED}")), "{shown}");
    assert!(shown.contains("reason: one-off kill"), "{shown}");
}

#[tokio::test]
async fn killed_once_with_approval_resolves_after_verification() {
    let server = stub(replying(&diagnosis(KILLED, "one-off kill", "killed-once"))).await;
    let host = killed_lab(&[]);
    let (report, _) = run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    assert_eq!(report.resolution, Resolution::Resolved, "{:#?}", report.steps);
    assert_eq!(restarts(&host), 1);
}

#[tokio::test]
async fn categories_the_rules_map_to_escalate_stop() {
    for category in ["deliberate-stop", "misconfiguration", "resource-exhaustion", "data-problem", "unclear"] {
        let server = stub(replying(&diagnosis(KILLED, "a human should look", category))).await;
        let host = killed_lab(&[]);
        let (report, _) =
            run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
        assert_eq!(report.resolution, stopped(StopReason::LlmEscalated), "{category}");
        assert_eq!(restarts(&host), 0);
        assert!(host.ops().is_empty(), "{category}: {:?}", host.ops());
    }
}

#[tokio::test]
async fn a_made_up_quote_escalates() {
    let server =
        stub(replying(&diagnosis("LOG:  restart requested by the DBA", "the DBA asked for it", "killed-once"))).await;
    let host = killed_lab(&["LOG:  checkpoint starting: time"]);
    let (report, audit) =
        run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
    assert_eq!(restarts(&host), 0);
    let c = consultations(&audit);
    assert_eq!(c[0].0, None);
    assert!(c[0].1.starts_with("quote not found"), "{}", c[0].1);
}

#[tokio::test]
async fn bad_replies_escalate_as_llm_failed_and_are_audited() {
    for reply in [
        replying("not json at all"),
        replying(&diagnosis(KILLED, "", "killed-once")),
        replying(r#"{"quote":"exit code 137","reason":"x","category":"killed-once","also":"rm -rf /"}"#),
        replying(r#"{"action":"restart_database_risky","reason":"the old format"}"#),
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

#[tokio::test]
async fn the_model_is_told_the_facts_first() {
    let server = stub(replying(&diagnosis(KILLED, "one-off kill", "killed-once"))).await;
    let host = killed_lab(&["LOG:  checkpoint starting: time"]);
    run_incident(&host, Rules::default_rules(), PolicyApprover::Deny, advisor(&server)).await;
    let body = &bodies(&server).await[0];
    let user = user_message(body);
    assert!(user.find("\"facts\"").unwrap() < user.find("\"log_tail\"").unwrap(), "{user}");
    let data = data_block(body);
    let facts: Vec<&str> = data["facts"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(facts[0].starts_with(KILLED), "{facts:?}");
    assert!(facts.contains(&"OOM killer: not involved"), "{facts:?}");
    assert!(
        facts.iter().any(|f| f.starts_with("restarts by OpsGuard recently: 0 (at most 3 allowed in 60 min)")),
        "{facts:?}"
    );
    assert!(facts.iter().any(|f| f.starts_with("disk holding the data and the logs:")), "{facts:?}");
}

#[tokio::test]
async fn a_diagnosis_the_facts_contradict_escalates() {
    // The lab's disk is far from full: no log flood, whatever the model says.
    let server = stub(replying(&diagnosis(KILLED, "the disk is full of logs", "log-flood"))).await;
    let host = killed_lab(&["LOG:  checkpoint starting: time"]);
    let (report, audit) =
        run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
    assert!(host.ops().is_empty(), "{:?}", host.ops());
    assert!(consultations(&audit)[0].1.contains("facts contradict"), "{:?}", consultations(&audit));
    // A kill from outside does not leave the server's own FATAL behind.
    let server = stub(replying(&diagnosis(KILLED, "killed once", "killed-once"))).await;
    let host = killed_lab(&["FATAL:  could not open file \"global/pg_filenode.map\": Permission denied"]);
    let (report, _) = run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
    assert_eq!(restarts(&host), 0);
}

/// The repeated statement the flood tests log, and the disk fact the lab's
/// full log disk makes OpsGuard send.
const FLOOD: &str = "LOG:  statement: SELECT 1";
const FULL_DISK: &str = "disk holding the data and the logs: 87 % used (filling up)";

/// A killed lab whose log disk is 87 % full of the server's own log.
fn flooded_lab() -> opsguard::host::sim::SimHost {
    let host = killed_lab(&[FLOOD, FLOOD, FLOOD, FLOOD]);
    host.fill_logs("db-prod", "/var/log");
    host
}

/// A stub that answers the first question with `first` and any question
/// that rules a category out with `second`.
async fn two_answers(first: &str, second: &str) -> wiremock::MockServer {
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(body_string_contains("facts rule out"))
        .respond_with(replying(second))
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path(PATH)).respond_with(replying(first)).mount(&server).await;
    server
}

/// An incident on `host` whose model first says `killed-once` (quoting the
/// exit code) and answers the second question with `second`; the stub, the
/// report and the audit log.
async fn after_a_refused_kill(
    host: &opsguard::host::sim::SimHost,
    second: &str,
) -> (wiremock::MockServer, opsguard::incident::IncidentReport, opsguard::audit::AuditLog) {
    let server = two_answers(&diagnosis(KILLED, "killed from outside", "killed-once"), second).await;
    let (report, audit) =
        run_incident(host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
    (server, report, audit)
}

#[tokio::test]
async fn a_second_look_after_the_facts_refuse_the_first_diagnosis() {
    let host = flooded_lab();
    let (server, report, audit) =
        after_a_refused_kill(&host, &diagnosis(FLOOD, "the statement log filled the disk", "log-flood")).await;
    // The second answer decided: the logs were cleaned first, as the rules
    // map a log flood (a restart, approved, may follow the clean).
    assert!(matches!(host.ops().first(), Some(SimOp::Clean { .. })), "{:?}", host.ops());
    assert_eq!(report.resolution, Resolution::Resolved, "{:?}", report);
    let asked = bodies(&server).await;
    assert_eq!(asked.len(), 2);
    // The first question offers every category; the second leaves out the
    // refused one, in the schema and in the words, outside the data block.
    let names = |b: &serde_json::Value| -> Vec<String> {
        b["response_format"]["json_schema"]["schema"]["properties"]["category"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&asked[0]).contains(&"killed-once".to_string()));
    assert!(!names(&asked[1]).contains(&"killed-once".to_string()), "{:?}", names(&asked[1]));
    assert_eq!(names(&asked[1]).len(), Diagnosis::ALL.len() - 1);
    let note = user_message(&asked[1]);
    let after_block = &note[note.find(opsguard::llm::prompt::DATA_CLOSE).unwrap()..];
    assert!(after_block.contains("facts rule out killed-once: killed-once with the disk at 87 %"), "{note}");
    assert_eq!(data_block(&asked[0]), data_block(&asked[1]), "the evidence is the same both times");
    // Both answers are audited, the refused one saying what happened next.
    let c = consultations(&audit);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0].0, None);
    assert!(c[0].1.contains("facts contradict") && c[0].1.contains("asked again with killed-once ruled out"), "{c:?}");
    assert_eq!(c[1].0, Some(LlmChoice::CleanLogs));
}

#[tokio::test]
async fn a_second_look_is_checked_like_the_first_and_there_is_no_third() {
    // The same refused category again, then another the facts refuse:
    // both escalate after exactly two questions.
    let checkpoint = "LOG:  checkpoint starting: time";
    for second in
        [diagnosis(checkpoint, "killed from outside", "killed-once"), diagnosis(checkpoint, "restart it", "log-flood")]
    {
        let host = killed_lab(&["ERROR:  out of memory", checkpoint]);
        let (server, report, audit) = after_a_refused_kill(&host, &second).await;
        assert_eq!(report.resolution, stopped(StopReason::LlmFailed), "{second}");
        assert!(host.ops().is_empty(), "{:?}", host.ops());
        assert_eq!(bodies(&server).await.len(), 2, "{second}");
        let c = consultations(&audit);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[1].1.contains("facts contradict") && !c[1].1.contains("asked again"), "{c:?}");
    }
}

#[tokio::test]
async fn a_second_look_must_quote_a_log_line() {
    // The facts were read wrong once: a second answer that cites one of
    // them again, not the lines, is refused even where the facts allow it.
    let host = flooded_lab();
    let (_, report, audit) = after_a_refused_kill(&host, &diagnosis(FULL_DISK, "the disk is full", "log-flood")).await;
    assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
    assert!(host.ops().is_empty(), "{:?}", host.ops());
    let c = consultations(&audit);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c[1].1.contains("must quote a log line"), "{c:?}");
}

#[tokio::test]
async fn only_a_contradiction_earns_a_second_look() {
    // A made-up quote and a reply cut short are refusals of the model, not
    // of a category: no second question.
    for reply in [diagnosis("LOG:  not in the evidence at all", "made up", "killed-once"), "{\"quote\": \"x".into()] {
        let server = stub(replying(&reply)).await;
        let host = flooded_lab();
        let (report, audit) =
            run_incident(&host, Rules::default_rules(), PolicyApprover::ApproveAll, advisor(&server)).await;
        assert_eq!(report.resolution, stopped(StopReason::LlmFailed));
        assert_eq!(bodies(&server).await.len(), 1, "{reply}");
        assert_eq!(consultations(&audit).len(), 1);
    }
}
