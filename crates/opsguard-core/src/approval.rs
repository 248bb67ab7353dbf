//! The approval gate's data: what a human is asked (the request, bound to
//! one crash of one container) and what they answered. The gate itself is
//! the incident machine's ([`crate::incident`]); the channels that reach a
//! human are the shell's.

use serde::{Deserialize, Serialize};

use crate::classify::{printable, truncate};
use crate::model::{Action, Alarm, ContainerStatus, Evidence, LlmDiagnosis, RootCause, Timestamp};

/// What a human is asked to approve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Unique per request; the answer must name it.
    pub id: u64,
    /// The incident it belongs to.
    pub incident: u64,
    /// The exact action, with its target and reason.
    pub action: Action,
    /// The alarm and its evidence.
    pub alarm: Alarm,
    /// The one crash a restart is asked for; an approval is void for any
    /// other state of the container ([`CrashBinding::void_reason`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash: Option<CrashBinding>,
    /// When an LLM's diagnosis led to the action: its category, quote and
    /// reason, shown to the approver as model output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<LlmDiagnosis>,
}

/// One crash of one container, as inspected when the approval was asked:
/// the container (its id changes when it is recreated), that run's start and
/// end, how it ended, and the root cause it was tagged with. A restart
/// approved for it is carried out only while the container is still in
/// exactly that crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashBinding {
    /// Docker's container id.
    pub container_id: Option<String>,
    /// When the crashed run started.
    pub started_at: Option<Timestamp>,
    /// When it ended (Docker's `FinishedAt`).
    pub finished_at: Option<Timestamp>,
    /// Its exit code.
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled` for it.
    pub oom_killed: bool,
    /// The root cause the approver was shown.
    pub cause: Option<RootCause>,
}

fn show(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), Timestamp::to_rfc3339)
}

impl CrashBinding {
    /// The crash `status` shows, tagged with `cause`.
    pub fn of(status: &ContainerStatus, cause: Option<RootCause>) -> CrashBinding {
        CrashBinding {
            container_id: status.id.clone(),
            started_at: status.started_at,
            finished_at: status.finished_at,
            exit_code: status.exit_code,
            oom_killed: status.oom_killed,
            cause,
        }
    }

    /// The crash in a few words, for the approver: when it ended and which
    /// container (its short id).
    pub fn describe(&self) -> String {
        format!(
            "the crash that ended {} (container {})",
            show(self.finished_at),
            short_id(self.container_id.as_deref())
        )
    }

    /// Why the alarm's evidence is about another crash than this one, if it
    /// is: the container ran and ended again after the alarm was raised.
    pub fn differs_from(&self, e: &Evidence) -> Option<String> {
        if e.fault_at.is_some() && e.fault_at != self.finished_at {
            return Some(format!(
                "it crashed again since the alarm (ended {}, the alarm's crash {})",
                show(self.finished_at),
                show(e.fault_at)
            ));
        }
        if e.exit_code.is_some() && e.exit_code != self.exit_code || e.oom_killed.is_some_and(|o| o != self.oom_killed)
        {
            return Some("its exit code or OOM flag is not the alarm's any more".into());
        }
        None
    }

    /// Why `now` is not this crash any more, if it is not: the container is
    /// not stopped, was recreated, ran again, or ended differently. `None`
    /// only for the very same stopped run.
    pub fn void_reason(&self, now: &ContainerStatus) -> Option<String> {
        if !now.state.is_stopped() {
            return Some(format!("it is {} now", now.state.as_str()));
        }
        if now.id != self.container_id {
            return Some(format!(
                "the container was recreated (id {} → {})",
                short_id(self.container_id.as_deref()),
                short_id(now.id.as_deref())
            ));
        }
        if now.started_at != self.started_at || now.finished_at != self.finished_at {
            return Some(format!(
                "it ran again since (ended {}, approved for the crash that ended {})",
                show(now.finished_at),
                show(self.finished_at)
            ));
        }
        if now.exit_code != self.exit_code || now.oom_killed != self.oom_killed {
            return Some("its exit code or OOM flag changed".into());
        }
        None
    }
}

fn short_id(id: Option<&str>) -> String {
    // Ids come from the daemon: printable and short, whatever it sent.
    id.map_or_else(|| "-".to_string(), |s| printable(truncate(s, 12)))
}

/// Who answered a request and the digest of what they were shown, as the
/// channel that asked vouches for it: the console's authenticated identity
/// (`page, session 1a2b3c4d`, `api: alice`), `terminal`, a policy. Recorded
/// with the answer in the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signoff {
    /// Who answered.
    pub by: String,
    /// The SHA-256 (hex) of the request as it was shown (action, target,
    /// alarm and evidence), when a human was shown it.
    pub digest: Option<String>,
}

/// A human's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Yes, for the request with this id only.
    Approve {
        /// The request approved.
        request: u64,
    },
    /// No.
    Reject,
}
