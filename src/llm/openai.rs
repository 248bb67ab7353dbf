//! The [`Advisor`] for OpenAI-compatible servers (Ollama, llama.cpp's
//! server, vLLM, OpenAI): one `POST {base_url}/v1/chat/completions` per
//! consultation, and the strict parsing of its reply.
//!
//! The request asks for temperature 0 and a `json_schema` response format
//! whose `action` enum holds only the allowed choices, but nothing the
//! server promises is trusted: the reply is parsed here into a closed
//! [`Decision`] (no unknown fields), its action must be the exact name of an
//! allowed choice and its reason must not be blank. Anything else (a
//! timeout, a refused connection, an HTTP error, a body that is not the
//! expected JSON) is an [`AdviceError`], which the incident loop turns into
//! an escalation. Nothing in a reply is ever run: it only selects one of
//! OpsGuard's own [`LlmChoice`]s.

use std::fmt;
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::config::{ApiKey, LlmConfig, LlmConfigError};
use super::prompt::{self, LogBudget, MAX_REASON_CHARS};
use super::{Advice, AdviceError, AdviceRequest, Advisor};
use crate::model::{ChoiceSet, LlmChoice};

/// Most bytes of a response body read; a longer body is an error.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most bytes of a raw reply kept in errors and the audit log.
pub const MAX_RAW_BYTES: usize = 4096;

/// The answer a model must give: exactly these two fields.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// One of the allowed choices' names, exactly.
    pub action: String,
    /// Why, in a sentence.
    pub reason: String,
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
    /// The allowed choice.
    pub choice: LlmChoice,
    /// The reason, trimmed, control characters replaced, capped at
    /// [`MAX_REASON_CHARS`].
    pub reason: String,
    /// The model the server says answered, if it said.
    pub model: Option<String>,
}

/// Parses a whole chat-completions response body: the first choice's
/// message content must be a valid [`Decision`] for `allowed`.
pub fn parse_response(body: &str, allowed: ChoiceSet) -> Result<ParsedReply, String> {
    let completion: Completion =
        serde_json::from_str(body).map_err(|e| format!("response is not a chat completion: {e}"))?;
    let first = completion.choices.into_iter().next().ok_or("response has no choices")?;
    let content = first.message.ok_or("first choice has no message")?.content.ok_or("message has no content")?;
    let (choice, reason) = parse_content(&content, allowed).map_err(|e| match first.finish_reason.as_deref() {
        Some("length") => format!("reply cut off by max_tokens (finish_reason \"length\"): {e}"),
        _ => e,
    })?;
    Ok(ParsedReply { choice, reason, model: completion.model })
}

/// Parses a message's content: a JSON [`Decision`], optionally wrapped in
/// one Markdown code fence. The action must name an allowed choice exactly
/// and the reason must not be blank.
pub fn parse_content(content: &str, allowed: ChoiceSet) -> Result<(LlmChoice, String), String> {
    let json = strip_fence(content.trim());
    let d: Decision = serde_json::from_str(json).map_err(|e| format!("content is not a decision object: {e}"))?;
    let Some(choice) = LlmChoice::from_name(&d.action) else {
        return Err(format!("unknown action {:?}", cap(&d.action, 64)));
    };
    if !allowed.contains(choice) {
        return Err(format!("action {} is not allowed here", choice.name()));
    }
    let reason = clean_reason(&d.reason);
    if reason.is_empty() {
        return Err("empty reason".into());
    }
    Ok((choice, reason))
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

/// Trims, replaces control characters (a reason is shown on the approver's
/// terminal) and caps the length.
fn clean_reason(reason: &str) -> String {
    let cleaned: String = reason.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let cleaned = cleaned.trim();
    match cleaned.char_indices().nth(MAX_REASON_CHARS) {
        Some((i, _)) => format!("{}…", &cleaned[..i]),
        None => cleaned.to_string(),
    }
}

fn cap(s: &str, max: usize) -> String {
    let t = crate::classify::truncate(s, max);
    if t.len() < s.len() { format!("{t}…") } else { t.to_string() }
}

/// The request body for `request` under `config`.
pub fn request_body(config: &LlmConfig, request: &AdviceRequest) -> serde_json::Value {
    let budget = LogBudget { max_lines: config.max_log_lines, max_bytes: config.max_log_bytes };
    json!({
        "model": config.model,
        "temperature": 0,
        "max_tokens": config.max_tokens,
        "stream": false,
        "messages": [
            { "role": "system", "content": prompt::system_prompt(request.allowed) },
            { "role": "user", "content": prompt::user_prompt(&request.alarm, budget) },
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": { "name": "opsguard_decision", "schema": prompt::decision_schema(request.allowed) },
        },
    })
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

    async fn exchange(&self, body: &serde_json::Value) -> Result<String, AdviceError> {
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
        let body = request_body(&self.config, request);
        let started = Instant::now();
        let text = self.exchange(&body).await?;
        let latency_ms = started.elapsed().as_millis() as u64;
        match parse_response(&text, request.allowed) {
            Ok(p) => Ok(Advice {
                choice: p.choice,
                reason: p.reason,
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

    const NONE: ChoiceSet = ChoiceSet::EMPTY;

    fn all() -> ChoiceSet {
        LlmChoice::ALL.into_iter().collect()
    }

    fn envelope(content: &str) -> String {
        json!({"id": "x", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
               "timings": {"predicted_ms": 1.0}, "usage": {}})
        .to_string()
    }

    #[test]
    fn accepts_plain_and_fenced_content() {
        let c = r#"{"action":"escalate","reason":"looks deliberate"}"#;
        assert_eq!(parse_content(c, all()), Ok((LlmChoice::Escalate, "looks deliberate".into())));
        for fenced in [format!("```json\n{c}\n```"), format!("```\n{c}\n```"), format!("  ```{c}```  ")] {
            assert_eq!(parse_content(&fenced, all()).map(|x| x.0), Ok(LlmChoice::Escalate), "{fenced}");
        }
        let p = parse_response(&envelope(c), all()).unwrap();
        assert_eq!((p.choice, p.model.as_deref()), (LlmChoice::Escalate, Some("m")));
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            r#"{"action":"escalate","reason":"x","command":"rm -rf /"}"#,
            r#"{"action":"Escalate","reason":"x"}"#,
            r#"{"action":" escalate","reason":"x"}"#,
            r#"{"action":"rm -rf /","reason":"x"}"#,
            r#"{"action":"escalate","reason":"   "}"#,
            r#"{"action":"escalate"}"#,
            r#"{"action":"escalate","reason":"x","action":"restart_database_risky"}"#,
            r#"{"action":["escalate"],"reason":"x"}"#,
            r#"Sure! {"action":"escalate","reason":"x"}"#,
            "```json\n{\"action\":\"escalate\",\"reason\":\"x\"}",
            "",
            "null",
        ] {
            assert!(parse_content(bad, all()).is_err(), "{bad}");
        }
        assert!(parse_content(r#"{"action":"escalate","reason":"x"}"#, NONE).is_err());
        let only_escalate = ChoiceSet::EMPTY.with(LlmChoice::Escalate);
        assert!(parse_content(r#"{"action":"restart_database_risky","reason":"x"}"#, only_escalate).is_err());
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
            assert!(parse_response(bad, all()).is_err(), "{bad}");
        }
        let cut = r#"{"choices":[{"finish_reason":"length","message":{"content":"{\"action\": \"escalate\","}}]}"#;
        assert!(parse_response(cut, all()).unwrap_err().contains("cut off by max_tokens"));
    }

    #[test]
    fn reasons_are_cleaned_and_capped() {
        let long = format!(r#"{{"action":"escalate","reason":"{}\u001b[31m red"}}"#, "é".repeat(1000));
        let (_, r) = parse_content(&long, all()).unwrap();
        assert!(r.chars().count() <= MAX_REASON_CHARS + 1 && r.ends_with('…'));
        let (_, r) = parse_content(r#"{"action":"escalate","reason":"a\u001b[31mb"}"#, all()).unwrap();
        assert!(!r.contains('\u{1b}'));
    }

    #[test]
    fn request_asks_for_temperature_zero_and_the_nested_schema() {
        let config = LlmConfig::new("http://127.0.0.1:1", "m");
        let alarm = crate::model::Alarm {
            kind: crate::model::AlarmKind::DbCrash(crate::model::RootCause::Unknown),
            container: "db-prod".into(),
            evidence: Default::default(),
            raised_at: crate::model::Timestamp(0),
        };
        let allowed = ChoiceSet::EMPTY.with(LlmChoice::Restart).with(LlmChoice::Escalate);
        let b = request_body(&config, &AdviceRequest { alarm, allowed });
        assert_eq!(b["temperature"], 0);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["response_format"]["json_schema"]["name"], "opsguard_decision");
        assert_eq!(
            b["response_format"]["json_schema"]["schema"]["properties"]["action"]["enum"],
            json!(["escalate", "restart_database_risky"])
        );
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
