//! Issues #4 and #13: the OpenAI-compatible advisor against a stub server
//! on 127.0.0.1. Every bad reply (garbled, an unknown category, a quote
//! that is not in the evidence shown) is an `AdviceError` (an escalation),
//! never a panic.

mod llm_common;

use std::time::{Duration, Instant};

use llm_common::*;
use opsguard::llm::{AdviceRequest, Advisor, ApiKey, LlmConfig, OpenAiAdvisor};
use opsguard::model::{Diagnosis, LlmChoice};
use wiremock::ResponseTemplate;

fn request(allowed: opsguard::model::ChoiceSet) -> AdviceRequest {
    AdviceRequest::new(unknown_alarm(&["LOG:  received SIGKILL"]), allowed, Default::default())
}

async fn ask(
    reply: ResponseTemplate,
    allowed: opsguard::model::ChoiceSet,
) -> Result<opsguard::llm::Advice, opsguard::llm::AdviceError> {
    let server = stub(reply).await;
    advisor(&server).advise(&request(allowed)).await
}

#[tokio::test]
async fn valid_reply_is_accepted_with_model_latency_and_raw() {
    let advice =
        ask(replying(&diagnosis("LOG:  received SIGKILL", "killed by SIGKILL, data intact", "killed-once")), all())
            .await
            .unwrap();
    assert_eq!(advice.diagnosis.category, Diagnosis::KilledOnce);
    assert_eq!(advice.diagnosis.quote, "LOG:  received SIGKILL");
    assert_eq!(advice.diagnosis.reason, "killed by SIGKILL, data intact");
    assert_eq!(advice.model, "stub-model");
    assert!(advice.raw.contains("timings"), "raw reply kept for the audit: {}", advice.raw);
}

#[tokio::test]
async fn fenced_reply_is_accepted() {
    let fenced = format!("```json\n{}\n```", diagnosis("received SIGKILL", "log disk filling", "log-flood"));
    assert_eq!(ask(replying(&fenced), all()).await.unwrap().diagnosis.category, Diagnosis::LogFlood);
}

#[tokio::test]
async fn request_carries_temperature_zero_schema_and_no_key_by_default() {
    let server = stub(replying(&diagnosis(KILLED, "unsure", "unclear"))).await;
    let allowed = only(LlmChoice::Escalate).with(LlmChoice::CleanLogs);
    advisor(&server).advise(&request(allowed)).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].headers.get("authorization").is_none());
    let body = &bodies(&server).await[0];
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["model"], "stub-model");
    let rf = &body["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], "opsguard_diagnosis");
    let schema = &rf["json_schema"]["schema"];
    let names: Vec<&str> = Diagnosis::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(schema["properties"]["category"]["enum"], serde_json::json!(names));
    assert_eq!(schema["required"], serde_json::json!(["quote", "reason", "category"]));
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["reason"]["minLength"], 1);
    assert_eq!(schema["properties"]["quote"]["minLength"], 1);
    // On the wire the model writes the quote first and the category last.
    let wire = String::from_utf8_lossy(&reqs[0].body).to_string();
    let (q, c) = (wire.find("\"quote\":{").unwrap(), wire.find("\"category\":{").unwrap());
    assert!(q < c, "{wire}");
}

#[tokio::test]
async fn api_key_goes_in_the_header_only() {
    let server = stub(replying(&diagnosis(KILLED, "unsure", "unclear"))).await;
    let a = OpenAiAdvisor::with_api_key(
        LlmConfig::new(&server.uri(), "m"),
        Some(ApiKey::new("sk-test-0123456789abcdef".into())),
    )
    .unwrap();
    a.advise(&request(all())).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs[0].headers.get("authorization").unwrap(), "Bearer sk-test-0123456789abcdef");
    assert!(!String::from_utf8_lossy(&reqs[0].body).contains("sk-test"));
    assert!(!format!("{a:?}").contains("sk-test"));
}

#[tokio::test]
async fn bad_json_is_an_error() {
    let e = ask(ResponseTemplate::new(200).set_body_string("<html>oops</html>"), all()).await.unwrap_err();
    assert!(e.reason.contains("not a chat completion"), "{e:?}");
    assert_eq!(e.raw.as_deref(), Some("<html>oops</html>"));
    let e = ask(replying("I think you should restart the database."), all()).await.unwrap_err();
    assert!(e.reason.contains("not a diagnosis"), "{e:?}");
}

#[tokio::test]
async fn extra_fields_are_an_error() {
    let content =
        r#"{"quote":"LOG:  received SIGKILL","reason":"x","category":"unclear","command":"docker rm -f db-prod"}"#;
    let e = ask(replying(content), all()).await.unwrap_err();
    assert!(e.reason.contains("unknown field"), "{e:?}");
}

#[tokio::test]
async fn the_old_action_format_is_an_error() {
    let e = ask(replying(r#"{"action":"restart_database_risky","reason":"restart it"}"#), all()).await.unwrap_err();
    assert!(e.reason.contains("not a diagnosis"), "{e:?}");
}

#[tokio::test]
async fn category_outside_the_list_is_an_error() {
    for category in ["rm -rf /", "restart_database_risky", "Killed-once", "killed_once", "killed-once; rm -rf /", ""] {
        let e = ask(replying(&diagnosis("LOG:  received SIGKILL", "because", category)), all()).await.unwrap_err();
        assert!(e.reason.contains("unknown category"), "{category}: {e:?}");
    }
}

#[tokio::test]
async fn a_quote_not_in_the_evidence_is_an_error() {
    for quote in ["LOG:  received SIGTERM", "FATAL:  the DBA says restart", "SIGKILL", "exit code 1", "eceived SIGKIL"]
    {
        let e = ask(replying(&diagnosis(quote, "because", "killed-once")), all()).await.unwrap_err();
        assert!(e.reason.starts_with("quote not found"), "{quote}: {e:?}");
    }
}

#[tokio::test]
async fn empty_reason_is_an_error() {
    for reason in ["", "   ", "\n\t"] {
        let e = ask(replying(&diagnosis(KILLED, reason, "unclear")), all()).await.unwrap_err();
        assert_eq!(e.reason, "empty reason");
    }
}

#[tokio::test]
async fn missing_choices_is_an_error() {
    let e = ask(ResponseTemplate::new(200).set_body_json(serde_json::json!({"choices": []})), all()).await.unwrap_err();
    assert!(e.reason.contains("no choices"), "{e:?}");
    let e = ask(ResponseTemplate::new(200).set_body_json(serde_json::json!({"object": "chat.completion"})), all())
        .await
        .unwrap_err();
    assert!(e.reason.contains("no choices"), "{e:?}");
}

#[tokio::test]
async fn http_500_is_an_error_with_the_body() {
    let e = ask(ResponseTemplate::new(500).set_body_string(r#"{"error":"model crashed"}"#), all()).await.unwrap_err();
    assert!(e.reason.contains("HTTP 500"), "{e:?}");
    assert!(e.raw.unwrap().contains("model crashed"));
}

#[tokio::test]
async fn slow_reply_times_out() {
    let server = stub(replying(&diagnosis(KILLED, "late", "unclear")).set_delay(Duration::from_secs(3))).await;
    let a = advisor_at(&server.uri(), Duration::from_secs(1));
    let t = Instant::now();
    let e = a.advise(&request(all())).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(2900), "took {:?}", t.elapsed());
    assert!(e.reason.contains("no answer within 1s"), "{e:?}");
}

#[tokio::test]
async fn connection_refused_is_an_error() {
    // A port that was free a moment ago and has nothing listening now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = advisor_at(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let e = a.advise(&request(all())).await.unwrap_err();
    assert!(e.reason.starts_with("cannot connect"), "{e:?}");
    assert_eq!(e.raw, None);
}

#[tokio::test]
async fn oversized_reply_is_an_error() {
    let huge = "x".repeat(opsguard::llm::openai::MAX_BODY_BYTES + 10);
    let e = ask(ResponseTemplate::new(200).set_body_string(huge), all()).await.unwrap_err();
    assert!(e.reason.contains("larger than"), "{e:?}");
}
