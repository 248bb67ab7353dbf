//! The [`Advisor`] for OpenAI-compatible servers (Ollama, llama.cpp's
//! server, vLLM, OpenAI): one `POST {base_url}/v1/chat/completions` per
//! consultation, and the strict parsing of its reply.
//!
//! The request asks for temperature 0 and a `json_schema` response format
//! (a grammar, in llama.cpp) for a diagnosis: a quote, a reason and a
//! category from the closed list. Nothing the server promises is trusted:
//! the reply is parsed here into a closed [`Decision`] (no unknown fields),
//! its category must be the exact name of a [`Diagnosis`], its reason must
//! not be blank, and its quote must occur in the evidence the model was
//! shown ([`prompt::quote_found`]): a made-up citation is a rejection.
//! Anything else (a timeout, a refused connection, an HTTP error, a body
//! that is not the expected JSON) is an [`AdviceError`], which the incident
//! loop turns into an escalation. Nothing in a reply is ever run: the rules
//! map its category to one of OpsGuard's own [`crate::model::LlmChoice`]s.

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::{ApiKey, LlmConfig, LlmConfigError};
use super::prompt::{self, LogBudget, MAX_REASON_CHARS};
use super::{Advice, AdviceError, AdviceRequest, Advisor};
use crate::model::{ChoiceSet, Diagnosis, LlmDiagnosis};

/// Most bytes of a response body read; a longer body is an error.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most bytes of a raw reply kept in errors and the audit log.
pub const MAX_RAW_BYTES: usize = 4096;

/// The answer a model must give: exactly these three fields.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// A fact or log line from the data block, copied.
    pub quote: String,
    /// Why, in a sentence.
    pub reason: String,
    /// One of the categories' names, exactly.
    pub category: String,
}

/// A chat-completions response; unknown fields (`timings`, `usage`, …) are
/// ignored.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<CompletionChoice>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: Option<CompletionMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CompletionMessage {
    #[serde(default)]
    content: Option<String>,
}

/// A validated reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedReply {
    /// The diagnosis; its reason and quote trimmed, control characters
    /// replaced, the reason capped at [`MAX_REASON_CHARS`].
    pub diagnosis: LlmDiagnosis,
    /// The model the server says answered, if it said.
    pub model: Option<String>,
}

/// Parses a whole chat-completions response body: the first choice's
/// message content must be a valid [`Decision`] quoting one of `shown`.
pub fn parse_response<S: AsRef<str>>(body: &str, shown: &[S]) -> Result<ParsedReply, String> {
    let completion: Completion =
        serde_json::from_str(body).map_err(|e| format!("response is not a chat completion: {e}"))?;
    let first = completion.choices.into_iter().next().ok_or("response has no choices")?;
    let content = first.message.ok_or("first choice has no message")?.content.ok_or("message has no content")?;
    let diagnosis = parse_content(&content, shown).map_err(|e| match first.finish_reason.as_deref() {
        Some("length") => format!("reply cut off by max_tokens (finish_reason \"length\"): {e}"),
        _ => e,
    })?;
    Ok(ParsedReply { diagnosis, model: completion.model })
}

/// Parses a message's content: a JSON [`Decision`], optionally wrapped in
/// one Markdown code fence. The category must name a [`Diagnosis`]
/// exactly, the reason must not be blank, and the quote must occur in one
/// of the `shown` lines ([`prompt::quote_found`]).
pub fn parse_content<S: AsRef<str>>(content: &str, shown: &[S]) -> Result<LlmDiagnosis, String> {
    let json = strip_fence(content.trim());
    let d: Decision = serde_json::from_str(json).map_err(|e| format!("content is not a diagnosis object: {e}"))?;
    let Some(category) = Diagnosis::from_name(&d.category) else {
        return Err(format!("unknown category {:?}", cap(&d.category, 64)));
    };
    let reason = clean_text(&d.reason, MAX_REASON_CHARS);
    if reason.is_empty() {
        return Err("empty reason".into());
    }
    if !prompt::quote_found(&d.quote, shown) {
        return Err(format!("quote not found in the evidence shown: {:?}", cap(&d.quote, 120)));
    }
    Ok(LlmDiagnosis { category, quote: clean_text(&d.quote, prompt::MAX_QUOTE_CHARS), reason })
}

/// The content inside one ```` ``` ```` / ```` ```json ```` fence, or the
/// text itself when it is not fenced.
fn strip_fence(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("```") else {
        return s;
    };
    let Some(inner) = rest.strip_suffix("```") else {
        return s;
    };
    // Drop the info string (`json`) on the opening line.
    match inner.split_once('\n') {
        Some((info, body)) if info.trim().chars().all(|c| c.is_ascii_alphanumeric()) => body.trim(),
        _ => inner.trim(),
    }
}

/// Trims, replaces control characters (model text is shown on the
/// approver's terminal) and caps the length.
fn clean_text(text: &str, max_chars: usize) -> String {
    let cleaned: String = text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let cleaned = cleaned.trim();
    match cleaned.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &cleaned[..i]),
        None => cleaned.to_string(),
    }
}

fn cap(s: &str, max: usize) -> String {
    let t = crate::classify::truncate(s, max);
    if t.len() < s.len() { format!("{t}…") } else { t.to_string() }
}

/// One chat message.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    role: &'static str,
    content: String,
}

/// The OpenAI form of a structured-output request (the one llama.cpp
/// honours; see llm/README.md).
#[derive(Clone, Debug, Serialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: NamedSchema,
}

/// A named JSON schema.
#[derive(Clone, Debug, Serialize)]
pub struct NamedSchema {
    name: &'static str,
    schema: prompt::DiagnosisSchema,
}

/// A chat-completions request. A struct, not a JSON map, so that the
/// schema's properties keep their order on the wire.
#[derive(Clone, Debug, Serialize)]
pub struct ChatRequest {
    model: String,
    temperature: f64,
    max_tokens: u32,
    stream: bool,
    messages: [Message; 2],
    response_format: ResponseFormat,
}

/// The request for `request` under `config`, and the evidence lines the
/// model is shown (what its quote must come from).
pub fn chat_request(config: &LlmConfig, request: &AdviceRequest) -> (ChatRequest, Vec<String>) {
    let budget = LogBudget { max_lines: config.max_log_lines, max_bytes: config.max_log_bytes };
    let body = ChatRequest {
        model: config.model.clone(),
        temperature: 0.0,
        max_tokens: config.max_tokens,
        stream: false,
        messages: [
            Message { role: "system", content: prompt::system_prompt() },
            Message {
                role: "user",
                content: prompt::user_prompt(&request.alarm, &request.facts, budget, &request.ruled_out),
            },
        ],
        response_format: ResponseFormat {
            kind: "json_schema",
            json_schema: NamedSchema {
                name: "opsguard_diagnosis",
                schema: prompt::diagnosis_schema(&request.ruled_out),
            },
        },
    };
    (body, prompt::shown_evidence(&request.alarm, &request.facts, budget))
}

/// The request body for `request` under `config`, as a JSON value (for
/// inspection; the wire form keeps the schema's property order).
pub fn request_body(config: &LlmConfig, request: &AdviceRequest) -> serde_json::Value {
    serde_json::to_value(chat_request(config, request).0).unwrap_or_default()
}

/// Consults an OpenAI-compatible chat-completions endpoint.
pub struct OpenAiAdvisor {
    config: LlmConfig,
    endpoint: String,
    client: reqwest::Client,
    api_key: Option<ApiKey>,
}

impl fmt::Debug for OpenAiAdvisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiAdvisor")
            .field("endpoint", &self.endpoint)
            .field("model", &self.config.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl OpenAiAdvisor {
    /// An advisor for `config`, reading the API key from the variable named
    /// by `config.api_key_env` (an error if it is named but unset).
    pub fn new(config: LlmConfig) -> Result<OpenAiAdvisor, LlmConfigError> {
        let key = config.api_key_env.as_deref().map(ApiKey::from_env).transpose()?;
        OpenAiAdvisor::with_api_key(config, key)
    }

    /// An advisor with an explicit key (or none).
    pub fn with_api_key(config: LlmConfig, api_key: Option<ApiKey>) -> Result<OpenAiAdvisor, LlmConfigError> {
        config.validate()?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(10)))
            // A redirect could carry the key elsewhere; an API does not need one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("opsguard/", env!("CARGO_PKG_VERSION")));
        if config.is_loopback() {
            // A local model must not be reached through an HTTP proxy.
            builder = builder.no_proxy();
        }
        if let Some(addrs) = config.pinned_localhost() {
            // `localhost` passed the transport policy as loopback: make it
            // so, whatever /etc/hosts or the resolver would say.
            builder = builder.resolve_to_addrs("localhost", &addrs);
        }
        if config.base_url.starts_with("https://") && !config.allow_http {
            builder = builder.https_only(true);
        }
        let client = builder.build().map_err(|e| LlmConfigError {
            file: None,
            line: None,
            field: None,
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(OpenAiAdvisor { endpoint: config.endpoint(), config, client, api_key })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    async fn exchange(&self, body: &ChatRequest) -> Result<String, AdviceError> {
        let fail = |reason: String, raw: Option<String>| AdviceError { reason, raw };
        let mut req = self.client.post(&self.endpoint).json(body);
        if let Some(key) = &self.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| fail("the API key is not a valid header value".into(), None))?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        let mut resp = req.send().await.map_err(|e| fail(describe(&e, &self.config), None))?;
        let status = resp.status();
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(fail(format!("response larger than {MAX_BODY_BYTES} bytes"), Some(raw(&bytes))));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(fail(describe(&e, &self.config), Some(raw(&bytes)))),
            }
        }
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}"), Some(raw(&bytes))));
        }
        String::from_utf8(bytes).map_err(|e| fail("response is not UTF-8".into(), Some(raw(e.as_bytes()))))
    }
}

fn raw(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    cap(&s, MAX_RAW_BYTES)
}

fn describe(e: &reqwest::Error, config: &LlmConfig) -> String {
    // reqwest's messages name the URL, never headers: the key stays out.
    if e.is_timeout() {
        format!("no answer within {}s", config.timeout.as_secs_f64())
    } else if e.is_connect() {
        format!("cannot connect to {}: {}", config.base_url, source_chain(e))
    } else {
        format!("request failed: {}", source_chain(e))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

impl Advisor for OpenAiAdvisor {
    fn is_configured(&self) -> bool {
        true
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Advice, AdviceError> {
        if request.allowed == ChoiceSet::EMPTY {
            return Err(AdviceError { reason: "no choice is allowed for this alarm".into(), raw: None });
        }
        let (body, shown) = chat_request(&self.config, request);
        let started = Instant::now();
        let text = self.exchange(&body).await?;
        let latency_ms = started.elapsed().as_millis() as u64;
        match parse_response(&text, &shown) {
            Ok(p) => Ok(Advice {
                diagnosis: p.diagnosis,
                model: p.model.unwrap_or_else(|| self.config.model.clone()),
                latency_ms,
                raw: cap(&text, MAX_RAW_BYTES),
            }),
            Err(reason) => Err(AdviceError { reason, raw: Some(cap(&text, MAX_RAW_BYTES)) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LlmChoice;

    const SHOWN: [&str; 2] = ["exit code 0: the server shut down normally", "LOG:  received fast shutdown request"];

    fn envelope(content: &str) -> String {
        serde_json::json!({"id": "x", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
               "timings": {"predicted_ms": 1.0}, "usage": {}})
        .to_string()
    }

    const GOOD: &str =
        r#"{"quote":"LOG:  received fast shutdown request","reason":"looks deliberate","category":"deliberate-stop"}"#;

    #[test]
    fn accepts_plain_and_fenced_content() {
        let d = parse_content(GOOD, &SHOWN).unwrap();
        assert_eq!(d.category, Diagnosis::DeliberateStop);
        assert_eq!(d.reason, "looks deliberate");
        assert_eq!(d.quote, "LOG:  received fast shutdown request");
        for fenced in [format!("```json\n{GOOD}\n```"), format!("```\n{GOOD}\n```"), format!("  ```{GOOD}```  ")] {
            assert_eq!(parse_content(&fenced, &SHOWN).map(|x| x.category), Ok(Diagnosis::DeliberateStop), "{fenced}");
        }
        let p = parse_response(&envelope(GOOD), &SHOWN).unwrap();
        assert_eq!((p.diagnosis.category, p.model.as_deref()), (Diagnosis::DeliberateStop, Some("m")));
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            r#"{"quote":"LOG:  received fast shutdown request","reason":"x","category":"deliberate-stop","action":"restart_database_risky"}"#,
            r#"{"quote":"LOG:  received fast shutdown request","reason":"x","category":"Deliberate-stop"}"#,
            r#"{"quote":"LOG:  received fast shutdown request","reason":"x","category":"deliberate_stop"}"#,
            r#"{"quote":"LOG:  received fast shutdown request","reason":"x","category":"restart_database_risky"}"#,
            r#"{"quote":"LOG:  received fast shutdown request","reason":"   ","category":"deliberate-stop"}"#,
            r#"{"quote":"LOG:  received fast shutdown request","category":"deliberate-stop"}"#,
            r#"{"reason":"x","category":"deliberate-stop"}"#,
            r#"{"quote":"LOG:  received smart shutdown request","reason":"x","category":"deliberate-stop"}"#,
            r#"{"quote":"","reason":"x","category":"unclear"}"#,
            r#"{"quote":["LOG:  received fast shutdown request"],"reason":"x","category":"deliberate-stop"}"#,
            r#"{"action":"escalate","reason":"x"}"#,
            r#"Sure! {"quote":"LOG:  received fast shutdown request","reason":"x","category":"deliberate-stop"}"#,
            "```json\n{\"quote\":\"exit code 0\",\"reason\":\"x\",\"category\":\"unclear\"}",
            "",
            "null",
        ] {
            assert!(parse_content(bad, &SHOWN).is_err(), "{bad}");
        }
        let e = parse_content(r#"{"quote":"FATAL:  made up","reason":"x","category":"misconfiguration"}"#, &SHOWN);
        assert!(e.unwrap_err().starts_with("quote not found"));
        let none: [&str; 0] = [];
        assert!(parse_content(GOOD, &none).is_err(), "nothing shown, nothing to quote");
    }

    #[test]
    fn rejects_bad_envelopes() {
        for bad in [
            "not json",
            r#"{"choices":[]}"#,
            r#"{"choices":[{"message":{"content":null}}]}"#,
            r#"{"choices":[{}]}"#,
            r#"{"error":{"message":"model not found"}}"#,
        ] {
            assert!(parse_response(bad, &SHOWN).is_err(), "{bad}");
        }
        let cut = r#"{"choices":[{"finish_reason":"length","message":{"content":"{\"quote\": \"exit code 0\","}}]}"#;
        assert!(parse_response(cut, &SHOWN).unwrap_err().contains("cut off by max_tokens"));
    }

    #[test]
    fn reasons_are_cleaned_and_capped() {
        let long = format!(
            r#"{{"quote":"received fast shutdown","reason":"{}\u001b[31m red","category":"unclear"}}"#,
            "é".repeat(1000)
        );
        let d = parse_content(&long, &SHOWN).unwrap();
        assert!(d.reason.chars().count() <= MAX_REASON_CHARS + 1 && d.reason.ends_with('…'));
        let d =
            parse_content(r#"{"quote":"received fast shutdown","reason":"a\u001b[31mb","category":"unclear"}"#, &SHOWN)
                .unwrap();
        assert!(!d.reason.contains('\u{1b}'));
    }

    #[test]
    fn request_asks_for_temperature_zero_and_the_nested_schema() {
        let config = LlmConfig::new("http://127.0.0.1:1", "m");
        let alarm = crate::model::Alarm {
            kind: crate::model::AlarmKind::DbCrash(crate::model::RootCause::Unknown),
            container: "db-prod".into(),
            evidence: crate::model::Evidence { exit_code: Some(137), ..Default::default() },
            raised_at: crate::model::Timestamp(0),
        };
        let allowed = ChoiceSet::EMPTY.with(LlmChoice::Restart).with(LlmChoice::Escalate);
        let request = AdviceRequest::new(alarm, allowed, Default::default());
        let b = request_body(&config, &request);
        assert_eq!(b["temperature"], 0.0);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["response_format"]["json_schema"]["name"], "opsguard_diagnosis");
        assert_eq!(
            b["response_format"]["json_schema"]["schema"]["required"],
            serde_json::json!(["quote", "reason", "category"])
        );
        let (wire, shown) = chat_request(&config, &request);
        let wire = serde_json::to_string(&wire).unwrap();
        assert!(wire.find("\"quote\":{").unwrap() < wire.find("\"category\":{").unwrap(), "{wire}");
        assert!(shown[0].starts_with("exit code 137"), "{shown:?}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let a = OpenAiAdvisor::with_api_key(
            LlmConfig::new("https://llm.invalid", "m"),
            Some(ApiKey::new("sk-live-do-not-print".into())),
        )
        .unwrap();
        let d = format!("{a:?}");
        assert!(!d.contains("sk-live") && d.contains("[REDACTED]"), "{d}");
    }
}
