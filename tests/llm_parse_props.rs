//! Issue #4: property tests of reply parsing. For any reply (arbitrary text,
//! or near-misses of a valid decision), parsing either yields a choice that
//! is in the allowed set with a non-blank reason, or an error: never a
//! panic, never a disallowed choice. For structured near-misses the exact
//! expected verdict is known and checked.
//!
//! Case count: 2000 by default, `PROPTEST_CASES` overrides.

use opsguard::llm::openai::{parse_content, parse_response};
use opsguard::model::{ChoiceSet, LlmChoice};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn choice_set() -> impl Strategy<Value = ChoiceSet> {
    (0u8..8).prop_map(|bits| {
        LlmChoice::ALL.into_iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, c)| c).collect()
    })
}

fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["restart_database_risky", "clean_logs", "escalate"]).prop_map(String::from),
        2 => prop::sample::select(vec![
            "Restart_database_risky", "restart_database_risky ", " escalate", "escalate\n", "ESCALATE", "restart",
            "restart_database", "clean-logs", "cleanlogs", "rm -rf /", "docker restart db-prod", "", "escalate\u{0}",
            "escalаte", // Cyrillic а
        ]).prop_map(String::from),
        1 => ".{0,30}",
    ]
}

fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z ,.]{1,60}",
        1 => prop::sample::select(vec!["", " ", "\n\t ", "\u{3000}", "\u{1}\u{1b}", " \u{85} "]).prop_map(String::from),
        1 => ".{0,80}",
    ]
}

/// A structured near-miss: the decision object, maybe with an extra field,
/// a missing field, a wrong type, a fence, or surrounding prose.
#[derive(Clone, Debug)]
struct NearMiss {
    action: String,
    reason: String,
    extra: Option<(String, String)>,
    drop_reason: bool,
    action_as_array: bool,
    fence: u8,
    prose: bool,
}

fn near_miss() -> impl Strategy<Value = NearMiss> {
    (
        action(),
        reason(),
        prop::option::weighted(0.2, ("[a-z_]{1,10}", ".{0,10}")),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
        0u8..4,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(action, reason, extra, drop_reason, action_as_array, fence, prose)| NearMiss {
            action,
            reason,
            extra,
            drop_reason,
            action_as_array,
            fence,
            prose,
        })
}

impl NearMiss {
    fn content(&self) -> String {
        let mut obj = serde_json::Map::new();
        let action = if self.action_as_array { json!([self.action]) } else { json!(self.action) };
        obj.insert("action".into(), action);
        if !self.drop_reason {
            obj.insert("reason".into(), json!(self.reason));
        }
        if let Some((k, v)) = &self.extra {
            obj.insert(k.clone(), json!(v));
        }
        let json = Value::Object(obj).to_string();
        let fenced = match self.fence {
            0 => json,
            1 => format!("```json\n{json}\n```"),
            2 => format!("```\n{json}\n```"),
            _ => format!("\n  {json}  \n"),
        };
        if self.prose { format!("Here is my answer: {fenced}") } else { fenced }
    }

    /// What a correct parser must say. An extra field named `action` or
    /// `reason` replaces that field (the object is a map).
    fn expected(&self, allowed: ChoiceSet) -> Option<LlmChoice> {
        let (mut action, mut action_is_string, mut reason) = (self.action.clone(), !self.action_as_array, None);
        if !self.drop_reason {
            reason = Some(self.reason.clone());
        }
        match &self.extra {
            Some((k, v)) if k == "action" => (action, action_is_string) = (v.clone(), true),
            Some((k, v)) if k == "reason" => reason = Some(v.clone()),
            Some(_) => return None, // unknown field
            None => {}
        }
        let choice = LlmChoice::from_name(&action)?;
        let ok = action_is_string
            && !self.prose
            && allowed.contains(choice)
            && reason.is_some_and(|r| r.chars().any(|c| !c.is_whitespace() && !c.is_control()));
        ok.then_some(choice)
    }
}

fn check_ok(result: &Result<(LlmChoice, String), String>, allowed: ChoiceSet) -> Result<(), TestCaseError> {
    if let Ok((choice, reason)) = result {
        prop_assert!(allowed.contains(*choice), "disallowed {choice:?} from {allowed:?}");
        prop_assert!(!reason.trim().is_empty());
        prop_assert!(reason.chars().count() <= opsguard::llm::prompt::MAX_REASON_CHARS + 1);
        prop_assert!(!reason.chars().any(char::is_control));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_or_yields_a_disallowed_choice(s in ".{0,200}", allowed in choice_set()) {
        check_ok(&parse_content(&s, allowed), allowed)?;
        let envelope = json!({"choices": [{"message": {"content": s}}]}).to_string();
        check_ok(&parse_response(&envelope, allowed).map(|p| (p.choice, p.reason)), allowed)?;
        // The body itself arbitrary.
        let _ = parse_response(&s, allowed);
    }

    #[test]
    fn arbitrary_bytes_as_body_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), allowed in choice_set()) {
        let s = String::from_utf8_lossy(&bytes);
        check_ok(&parse_response(&s, allowed).map(|p| (p.choice, p.reason)), allowed)?;
    }

    #[test]
    fn near_misses_get_exactly_the_expected_verdict(m in near_miss(), allowed in choice_set()) {
        let content = m.content();
        let got = parse_content(&content, allowed);
        check_ok(&got, allowed)?;
        prop_assert_eq!(got.as_ref().ok().map(|(c, _)| *c), m.expected(allowed), "content {:?} → {:?}", content, got);
        // Wrapped in a chat completion (with llama.cpp's extra fields) the
        // verdict is the same.
        let body = json!({"model": "m", "timings": {"x": 1}, "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}]}).to_string();
        let wrapped = parse_response(&body, allowed).ok().map(|p| p.choice);
        prop_assert_eq!(wrapped, m.expected(allowed));
    }
}
