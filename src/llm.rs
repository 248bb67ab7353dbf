//! The LLM fallback's contract: an [`Advisor`] is asked only about unknown
//! root causes, and answers with a diagnosis, not an action: a cause
//! category from a closed list ([`Diagnosis`]), the evidence line that shows
//! it, quoted verbatim, and a one-sentence reason.
//!
//! A quote that does not occur in the evidence the model was shown is a
//! made-up citation, and the answer is refused. The rules
//! ([`crate::rules::DiagnosisActions`]) map the category to an action; the
//! incident loop checks it against the choices the rules allow for the
//! alarm, and the engine puts it through the same safety rules and approval
//! gate as any rule's action. Any failure escalates. [`consult`] is that
//! whole check, with one second look when the facts refuse a diagnosis.
//!
//! Submodules: [`config`] (where the LLM is, [`LlmConfig`]), [`prompt`]
//! (what is sent: the deterministic facts, then redacted, capped, quoted
//! logs, worked examples and the answer schema; and the quote check) and
//! [`openai`] ([`OpenAiAdvisor`], the client for OpenAI-compatible servers,
//! and the strict parsing of replies).

pub mod config;
pub mod openai;
pub mod prompt;

pub use config::{ApiKey, LlmConfig, LlmConfigError};
pub use openai::OpenAiAdvisor;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::model::{Alarm, ChoiceSet, Diagnosis, LlmChoice, LlmDiagnosis};
use crate::rules::Rules;

/// What the advisor is asked.
#[derive(Clone, Debug, PartialEq)]
pub struct AdviceRequest {
    /// The alarm, with its (untrusted) log lines.
    pub alarm: Alarm,
    /// The actions the rules allow for it; an advisor refuses to answer
    /// when there are none.
    pub allowed: ChoiceSet,
    /// What OpsGuard knows about the crash beyond the alarm's evidence.
    pub facts: CrashFacts,
    /// Categories OpsGuard's own facts refused on an earlier answer: left
    /// out of the choices this time, with why.
    pub ruled_out: Vec<RuledOut>,
}

impl AdviceRequest {
    /// A first question: nothing ruled out yet.
    pub fn new(alarm: Alarm, allowed: ChoiceSet, facts: CrashFacts) -> AdviceRequest {
        AdviceRequest { alarm, allowed, facts, ruled_out: Vec::new() }
    }
}

/// A category the facts contradicted (see [`Rules::llm_action`]), and
/// OpsGuard's reason, in its own words: numbers and category names, never
/// text from the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuledOut {
    /// The refused category.
    pub category: Diagnosis,
    /// Why the facts rule it out.
    pub why: String,
}

/// Facts about a crash that OpsGuard measured itself (not read from logs),
/// given to the model before the log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashFacts {
    /// How long the crashed run lasted, in seconds, if the host said.
    pub uptime_secs: Option<u64>,
    /// OpsGuard's restarts of this container within the budget window.
    pub restarts_in_window: Option<u32>,
    /// The restart budget: at most this many restarts ...
    pub max_restarts: Option<u32>,
    /// ... within this many seconds.
    pub window_secs: Option<u64>,
}

/// A validated answer: the quote was found in the evidence shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// The diagnosis: category, quote and reason (the last two are model
    /// output, for the audit log and the approver).
    pub diagnosis: LlmDiagnosis,
    /// Which model answered.
    pub model: String,
    /// How long it took.
    pub latency_ms: u64,
    /// The raw reply, for the audit log.
    pub raw: String,
}

/// Why no valid advice came back; always an escalation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("LLM advice failed: {reason}")]
pub struct AdviceError {
    /// What went wrong.
    pub reason: String,
    /// The raw reply, if one came.
    pub raw: Option<String>,
}

/// Something that can be consulted about an unknown root cause.
#[trait_variant::make(Send)]
pub trait Advisor: Sync {
    /// Whether an LLM is configured at all; when not, unknown causes
    /// escalate without asking.
    fn is_configured(&self) -> bool;
    /// Asks for a diagnosis of `request.alarm`.
    async fn advise(&self, request: &AdviceRequest) -> Result<Advice, AdviceError>;
}

/// An [`Advisor`] chosen at run time (none, or a configured LLM), as a
/// trait object: [`Advisor`]'s futures are not object-safe, so these are
/// boxed. A `Box<dyn DynAdvisor>` is an [`Advisor`] again; the method names
/// differ so that having both traits in scope leaves no call ambiguous.
pub trait DynAdvisor: Send + Sync {
    /// [`Advisor::is_configured`].
    fn is_configured_dyn(&self) -> bool;
    /// [`Advisor::advise`], boxed.
    fn advise_dyn<'a>(&'a self, request: &'a AdviceRequest) -> BoxFuture<'a, Result<Advice, AdviceError>>;
}

impl<T: Advisor + Send> DynAdvisor for T {
    fn is_configured_dyn(&self) -> bool {
        Advisor::is_configured(self)
    }

    fn advise_dyn<'a>(&'a self, request: &'a AdviceRequest) -> BoxFuture<'a, Result<Advice, AdviceError>> {
        Box::pin(Advisor::advise(self, request))
    }
}

impl Advisor for Box<dyn DynAdvisor + '_> {
    fn is_configured(&self) -> bool {
        (**self).is_configured_dyn()
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Advice, AdviceError> {
        (**self).advise_dyn(request).await
    }
}

/// No LLM: unknown causes go straight to a human.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAdvisor;

impl Advisor for NoAdvisor {
    fn is_configured(&self) -> bool {
        false
    }

    async fn advise(&self, _: &AdviceRequest) -> Result<Advice, AdviceError> {
        Err(AdviceError { reason: "no LLM configured".into(), raw: None })
    }
}

/// A scripted advisor for tests and simulations: always diagnoses
/// `category`, quoting the last log line (which the loop still checks).
#[derive(Clone, Debug)]
pub struct FixedAdvisor {
    /// The answer, or `None` to fail.
    pub category: Option<Diagnosis>,
}

impl Advisor for FixedAdvisor {
    fn is_configured(&self) -> bool {
        true
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Advice, AdviceError> {
        let Some(category) = self.category else {
            return Err(AdviceError { reason: "scripted failure".into(), raw: None });
        };
        let quote = prompt::shown_evidence(&request.alarm, &request.facts, prompt::LogBudget::DEFAULT)
            .pop()
            .unwrap_or_default();
        let raw = serde_json::json!({"quote": quote, "reason": "scripted", "category": category.name()}).to_string();
        Ok(Advice {
            diagnosis: LlmDiagnosis { category, quote, reason: "scripted".into() },
            model: "fixed".into(),
            latency_ms: 0,
            raw,
        })
    }
}

/// At most this many questions a consultation: the first, and one more
/// when the facts contradict the first diagnosis.
pub const MAX_ASKS: usize = 2;

/// Why an answer did not become a choice. Every refusal escalates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No usable reply: the advisor failed, the reply was malformed or cut
    /// off, or it quoted nothing it was shown.
    Failed(String),
    /// The diagnosis has no reason, or its quote is not in the evidence
    /// (checked here too, whatever advisor answered).
    Unquoted(Diagnosis),
    /// A second look quoted one of OpsGuard's facts rather than a log
    /// line: the facts alone were read wrong once already.
    NoLogLine(Diagnosis),
    /// OpsGuard's own facts contradict the diagnosis.
    Contradicted {
        /// The diagnosis.
        category: Diagnosis,
        /// Why, from [`Rules::llm_action`].
        why: String,
    },
    /// The rules turn the diagnosis into a choice the alarm's plan does
    /// not allow.
    NotAllowed {
        /// The diagnosis.
        category: Diagnosis,
        /// What the rules turn it into.
        choice: LlmChoice,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Failed(reason) => f.write_str(reason),
            Refusal::Unquoted(category) => {
                write!(f, "refused: the {category} diagnosis has no reason or quotes nothing shown")
            }
            Refusal::NoLogLine(category) => {
                write!(f, "refused: a second look must quote a log line, and the {category} diagnosis quotes none")
            }
            Refusal::Contradicted { why, .. } => write!(f, "refused: the facts contradict the diagnosis: {why}"),
            Refusal::NotAllowed { category, choice } => {
                write!(f, "refused: the rules turn {category} into {}, which is not allowed here", choice.name())
            }
        }
    }
}

/// One answer of a consultation, and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Which model answered, if one did.
    pub model: Option<String>,
    /// How long it took, if an answer came.
    pub latency_ms: Option<u64>,
    /// The raw reply, for the audit log.
    pub raw: Option<String>,
    /// The choice and the diagnosis behind it, or why there is none.
    pub verdict: Result<(LlmChoice, LlmDiagnosis), Refusal>,
}

/// Asks `advisor` about `request` and checks the answer: its quote must be
/// in the evidence, OpsGuard's facts must not contradict its category, and
/// the rules' action for it must be one the alarm allows.
///
/// When the facts contradict the category, the model is asked once more
/// with that category ruled out and the reason stated (and left out of the
/// schema), and told to read the log lines again: a small model reads
/// "exit code 137" as a one-off kill whatever the disk says, and on a
/// second look names the flood it had missed. The second answer must
/// quote a log line, not a fact, and goes through every check again, so a
/// rule the facts enforce cannot be talked round; any refusal escalates.
///
/// Returns every answer, in order; the last one decides.
pub async fn consult<A: Advisor>(advisor: &A, rules: &Rules, mut request: AdviceRequest) -> Vec<Answer> {
    let mut answers: Vec<Answer> = Vec::with_capacity(MAX_ASKS);
    loop {
        let answer = ask(advisor, rules, &request).await;
        let again = match &answer.verdict {
            Err(Refusal::Contradicted { category, why }) if answers.len() + 1 < MAX_ASKS => {
                Some(RuledOut { category: *category, why: why.clone() })
            }
            _ => None,
        };
        answers.push(answer);
        match again {
            Some(ruled_out) => request.ruled_out.push(ruled_out),
            None => return answers,
        }
    }
}

async fn ask<A: Advisor>(advisor: &A, rules: &Rules, request: &AdviceRequest) -> Answer {
    let advice = match advisor.advise(request).await {
        Ok(a) => a,
        Err(e) => return Answer { model: None, latency_ms: None, raw: e.raw, verdict: Err(Refusal::Failed(e.reason)) },
    };
    let d = &advice.diagnosis;
    // Whatever advisor answered, its quote must be in the evidence any
    // budget could have shown it.
    let shown = prompt::shown_evidence(&request.alarm, &request.facts, prompt::LogBudget::MAX);
    let verdict = if d.reason.trim().is_empty() || !prompt::quote_found(&d.quote, &shown) {
        Err(Refusal::Unquoted(d.category))
    } else if !request.ruled_out.is_empty()
        && !prompt::quote_found(
            &d.quote,
            &prompt::shown_log_lines(&request.alarm, &request.facts, prompt::LogBudget::MAX),
        )
    {
        Err(Refusal::NoLogLine(d.category))
    } else {
        match rules.llm_action(d.category, &request.alarm.evidence) {
            Err(why) => Err(Refusal::Contradicted { category: d.category, why }),
            Ok(choice) if !request.allowed.contains(choice) => {
                Err(Refusal::NotAllowed { category: d.category, choice })
            }
            Ok(choice) => Ok((choice, advice.diagnosis.clone())),
        }
    };
    Answer { model: Some(advice.model), latency_ms: Some(advice.latency_ms), raw: Some(advice.raw), verdict }
}
