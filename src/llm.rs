//! The LLM fallback's contract: an [`Advisor`] is asked only about unknown
//! root causes and may only pick among the choices the rules allow.
//!
//! The incident loop validates every answer against the allowed set, and the
//! engine then puts the choice through the same safety rules and approval
//! gate as any rule's action; any failure escalates.
//!
//! Submodules: [`config`] (where the LLM is, [`LlmConfig`]), [`prompt`]
//! (what is sent: redacted, capped, quoted logs and the answer schema) and
//! [`openai`] ([`OpenAiAdvisor`], the client for OpenAI-compatible servers,
//! and the strict parsing of replies).

pub mod config;
pub mod openai;
pub mod prompt;

pub use config::{ApiKey, LlmConfig, LlmConfigError};
pub use openai::OpenAiAdvisor;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::model::{Alarm, ChoiceSet, LlmChoice};

/// What the advisor is asked.
#[derive(Clone, Debug, PartialEq)]
pub struct AdviceRequest {
    /// The alarm, with its (untrusted) log lines.
    pub alarm: Alarm,
    /// What it may choose.
    pub allowed: ChoiceSet,
}

/// A validated answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// The choice.
    pub choice: LlmChoice,
    /// The model's reason, for the audit log and the approver.
    pub reason: String,
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
    /// Asks for a choice among `request.allowed`.
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

/// A scripted advisor for tests and simulations: always answers `choice`
/// (which the loop still validates).
#[derive(Clone, Debug)]
pub struct FixedAdvisor {
    /// The answer, or `None` to fail.
    pub choice: Option<LlmChoice>,
}

impl Advisor for FixedAdvisor {
    fn is_configured(&self) -> bool {
        true
    }

    async fn advise(&self, _: &AdviceRequest) -> Result<Advice, AdviceError> {
        match self.choice {
            Some(choice) => Ok(Advice {
                choice,
                reason: "scripted".into(),
                model: "fixed".into(),
                latency_ms: 0,
                raw: format!("{{\"action\":\"{}\",\"reason\":\"scripted\"}}", choice.name()),
            }),
            None => Err(AdviceError { reason: "scripted failure".into(), raw: None }),
        }
    }
}
