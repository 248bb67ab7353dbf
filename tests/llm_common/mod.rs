//! Helpers shared by the `llm_*` integration tests: a stub OpenAI-compatible
//! server on 127.0.0.1 (wiremock), advisors pointed at it, and incidents on
//! the simulated host.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use opsguard::approval::Approver;
use opsguard::audit::{AuditEvent, AuditLog};
use opsguard::clock::{Clock, SimClock};
use opsguard::engine::Engine;
use opsguard::host::sim::{SimFault, SimHost, SimOp};
use opsguard::incident::{IncidentReport, Responder, Timeouts};
use opsguard::llm::{Advisor, LlmConfig, OpenAiAdvisor, prompt};
use opsguard::model::{Alarm, AlarmKind, ChoiceSet, ContainerName, Evidence, LlmChoice, RootCause, Timestamp};
use opsguard::rules::Rules;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const PATH: &str = "/v1/chat/completions";

/// A chat-completions body as llama.cpp sends it (with its extra `timings`).
pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "stub-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "timings": {"predicted_ms": 1.5, "prompt_n": 1},
    })
}

/// The quote every killed lab can cite: the exit-code fact OpsGuard sends.
pub const KILLED: &str = "exit code 137: killed by signal 9 (SIGKILL)";

/// A diagnosis as a model writes it.
pub fn diagnosis(quote: &str, reason: &str, category: &str) -> String {
    json!({"quote": quote, "reason": reason, "category": category}).to_string()
}

/// A 200 reply whose message content is `content`.
pub fn replying(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(completion(content))
}

/// A stub server answering every chat-completions request with `reply`.
pub async fn stub(reply: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(PATH)).respond_with(reply).mount(&server).await;
    server
}

pub fn advisor_at(uri: &str, timeout: Duration) -> OpenAiAdvisor {
    let mut config = LlmConfig::new(uri, "stub-model");
    config.timeout = timeout;
    OpenAiAdvisor::new(config).expect("valid config")
}

pub fn advisor(server: &MockServer) -> OpenAiAdvisor {
    advisor_at(&server.uri(), Duration::from_secs(5))
}

pub fn all() -> ChoiceSet {
    LlmChoice::ALL.into_iter().collect()
}

pub fn only(c: LlmChoice) -> ChoiceSet {
    ChoiceSet::EMPTY.with(c)
}

pub fn unknown_alarm(tail: &[&str]) -> Alarm {
    Alarm {
        kind: AlarmKind::DbCrash(RootCause::Unknown),
        container: ContainerName::new("db-prod"),
        evidence: Evidence {
            exit_code: Some(137),
            oom_killed: Some(false),
            log_tail: tail.iter().map(|s| s.to_string()).collect(),
            ..Evidence::default()
        },
        raised_at: Timestamp(0),
    }
}

/// The request bodies the stub received.
pub async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.body_json::<Value>().expect("the advisor sends JSON"))
        .collect()
}

/// The user message of a request body.
pub fn user_message(body: &Value) -> String {
    body["messages"][1]["content"].as_str().expect("a user message").to_string()
}

/// The parsed data block of a request body.
pub fn data_block(body: &Value) -> Value {
    prompt::parse_data_block(&user_message(body)).expect("a well-formed data block")
}

/// The default rules with the unknown cause's LLM choices replaced.
pub fn rules_allowing(choices: &[LlmChoice]) -> Rules {
    let list = choices.iter().map(|c| format!("\"{}\"", c.name())).collect::<Vec<_>>().join(", ");
    let text = opsguard::rules::DEFAULT_RULES.replace(
        r#"llm_choices = ["restart_database_risky", "clean_logs", "escalate"]"#,
        &format!("llm_choices = [{list}]"),
    );
    assert_ne!(text, opsguard::rules::DEFAULT_RULES, "the default rules' llm_choices line moved");
    Rules::from_toml_str(&text, "test.toml".as_ref()).expect("valid rules")
}

/// A lab whose database was killed (exit 137, no OOM: an unknown cause),
/// after writing `lines` to its log.
pub fn killed_lab(lines: &[&str]) -> SimHost {
    let host = SimHost::lab(SimClock::new(Timestamp(1_700_000_000_000)));
    host.write_logs("db-prod", lines);
    host.inject(SimFault::DbKilled);
    host
}

/// Runs the database alarm of `host` through a responder; returns the
/// report and the audit log.
pub async fn run_incident<A: Approver, L: Advisor>(
    host: &SimHost,
    rules: Rules,
    approver: A,
    advisor: L,
) -> (IncidentReport, AuditLog) {
    let audit = AuditLog::in_memory();
    let engine = Engine::new(Arc::new(rules));
    let mut responder = Responder::new(engine, host.clone(), approver, advisor, host.clock().clone(), audit.clone())
        .with_timeouts(Timeouts { approval: Duration::from_secs(5), advice: Duration::from_secs(150) });
    let now = host.clock().now();
    let alarm = responder
        .observer()
        .check_database(host, now)
        .await
        .expect("the sim host answers")
        .expect("a crashed database raises an alarm");
    assert_eq!(alarm.kind, AlarmKind::DbCrash(RootCause::Unknown), "DbKilled must be an unknown cause");
    let report = responder.handle(alarm).await;
    (report, audit)
}

pub fn restarts(host: &SimHost) -> usize {
    host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count()
}

/// The LLM consultations in an audit log: (choice, reason, raw).
pub fn consultations(audit: &AuditLog) -> Vec<(Option<LlmChoice>, String, Option<String>)> {
    audit
        .records()
        .into_iter()
        .filter_map(|r| match r.event {
            AuditEvent::LlmConsulted { choice, reason, raw, .. } => Some((choice, reason, raw)),
            _ => None,
        })
        .collect()
}
