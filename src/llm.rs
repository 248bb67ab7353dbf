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
//! gate as any rule's action. Any failure escalates.
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

use crate::model::{Alarm, ChoiceSet, Diagnosis, LlmDiagnosis};

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
