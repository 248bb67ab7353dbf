//! The domain vocabulary shared by every other module: alarms and their
//! evidence, root causes, the closed set of actions, and the per-incident
//! history that `decide` reads.
//!
//! The names printed and written to the audit log are the specification's
//! (`WEB_LOG_SATURATION`, `DB_CRASH — Disk Full`, `clean_logs`,
//! `restart_database_risky`, …) so that a reader of the specification
//! recognises them.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Declares a fieldless enum together with `ALL`, every variant in
/// declaration order, and `index`, a variant's place in `ALL`. Both come
/// from the one list of variants, so a variant cannot be added and left out
/// of `ALL`: a table sized `ALL.len()` and indexed by `index()` (the rules'
/// plans, the LLM diagnosis actions) has a place for every variant without a
/// number written by hand, and indexing it cannot go out of bounds.
macro_rules! enum_with_all {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident, )+
        }
        $(#[$all_meta:meta])*
        const ALL;
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            $(#[$all_meta])*
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// This variant's place in [`Self::ALL`]: its declaration order,
            /// which is the order of `ALL`.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use enum_with_all;

/// Milliseconds since the Unix epoch.
///
/// The engine never reads a clock: the caller passes the current time in, so
/// tests drive a simulated clock and `decide` stays deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The time `ms` milliseconds later, saturating instead of overflowing.
    pub fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`; zero when `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time as RFC 3339 text with millisecond precision, for humans and
    /// the audit log.
    pub fn to_rfc3339(self) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0);
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// A container's name, cheap to clone so that actions can carry their target
/// without allocating on the engine's hot path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerName(Arc<str>);

impl ContainerName {
    /// Wraps a name.
    pub fn new(name: &str) -> Self {
        ContainerName(Arc::from(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ContainerName {
    fn from(s: &str) -> Self {
        ContainerName::new(s)
    }
}

impl fmt::Debug for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names can come from the daemon: shown anywhere, a name stays one
        // inert line (Docker's own names are unchanged by this).
        f.write_str(&crate::redact::printable(&self.0))
    }
}

enum_with_all! {
    /// Why a crashed database went down, as tagged by the classifier.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum RootCause {
        /// `No space left on device`: the disk the database writes to is full.
        DiskFull,
        /// The server refused its configuration file.
        ConfigError,
        /// The kernel's OOM killer ended the container (`OOMKilled` is true).
        OomKill,
        /// Checksum failures, invalid pages, a PANIC that is not a full disk.
        DataCorruption,
        /// None of the signatures matched.
        Unknown,
    }
    /// Every root cause, in the specification's classification order.
    const ALL;
}

impl RootCause {
    /// The specification's label (`Disk Full`, `OOM Killer`, …).
    pub fn label(self) -> &'static str {
        match self {
            RootCause::DiskFull => "Disk Full",
            RootCause::ConfigError => "Config Error",
            RootCause::OomKill => "OOM Killer",
            RootCause::DataCorruption => "DATA CORRUPTION",
            RootCause::Unknown => "Unknown",
        }
    }

    /// The key used for this cause in rules files (`disk_full`, …).
    pub fn key(self) -> &'static str {
        match self {
            RootCause::DiskFull => "disk_full",
            RootCause::ConfigError => "config_error",
            RootCause::OomKill => "oom_kill",
            RootCause::DataCorruption => "data_corruption",
            RootCause::Unknown => "unknown",
        }
    }

    /// Parses a rules-file key.
    pub fn from_key(key: &str) -> Option<RootCause> {
        RootCause::ALL.into_iter().find(|c| c.key() == key)
    }

    /// Causes that a restart can only make worse: the engine refuses to
    /// restart for them whatever the rules, the history or an LLM say.
    pub fn forbids_restart(self) -> bool {
        matches!(self, RootCause::ConfigError | RootCause::DataCorruption)
    }
}

impl fmt::Display for RootCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What kind of trouble an alarm reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "code", content = "cause")]
pub enum AlarmKind {
    /// `WEB_LOG_SATURATION`: the web server's log disk is above threshold.
    #[serde(rename = "WEB_LOG_SATURATION")]
    WebLogSaturation,
    /// `ZOMBIE_OUTBREAK`: too many exited containers.
    #[serde(rename = "ZOMBIE_OUTBREAK")]
    ZombieOutbreak,
    /// `DB_CRASH`: the database is not running, with its tagged root cause.
    #[serde(rename = "DB_CRASH")]
    DbCrash(RootCause),
    /// `WEB_LOG_DISK_FILLING`: the web server's log disk, below its
    /// threshold, fills at a rate that crosses it within the horizon.
    #[serde(rename = "WEB_LOG_DISK_FILLING")]
    WebLogDiskFilling,
    /// `DB_UNHEALTHY`: a database runs but its health check fails
    /// (issue #10). Not a crash: nothing tells a restart would help.
    #[serde(rename = "DB_UNHEALTHY")]
    DbUnhealthy,
}

enum_with_all! {
    /// The specification's alarm codes, one for each [`AlarmKind`] variant;
    /// a database crash is one code told apart by its cause.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum AlarmCode {
        /// `WEB_LOG_SATURATION`.
        WebLogSaturation,
        /// `ZOMBIE_OUTBREAK`.
        ZombieOutbreak,
        /// `DB_CRASH`, with a root cause.
        DbCrash,
        /// `WEB_LOG_DISK_FILLING`.
        WebLogDiskFilling,
        /// `DB_UNHEALTHY`.
        DbUnhealthy,
    }
    /// Every code, in the order of [`AlarmKind::ALL`].
    const ALL;
}

impl AlarmCode {
    /// The code as the specification, the rules and the audit log write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlarmCode::WebLogSaturation => "WEB_LOG_SATURATION",
            AlarmCode::ZombieOutbreak => "ZOMBIE_OUTBREAK",
            AlarmCode::DbCrash => "DB_CRASH",
            AlarmCode::WebLogDiskFilling => "WEB_LOG_DISK_FILLING",
            AlarmCode::DbUnhealthy => "DB_UNHEALTHY",
        }
    }

    /// The code written `code`.
    pub fn parse(code: &str) -> Option<AlarmCode> {
        AlarmCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// Whether alarms with this code are told apart by a root cause.
    pub const fn takes_cause(self) -> bool {
        match self {
            AlarmCode::DbCrash => true,
            AlarmCode::WebLogSaturation
            | AlarmCode::ZombieOutbreak
            | AlarmCode::WebLogDiskFilling
            | AlarmCode::DbUnhealthy => false,
        }
    }

    /// The kind with this code and, for a code that takes one, `cause`.
    const fn kind(self, cause: RootCause) -> AlarmKind {
        match self {
            AlarmCode::WebLogSaturation => AlarmKind::WebLogSaturation,
            AlarmCode::ZombieOutbreak => AlarmKind::ZombieOutbreak,
            AlarmCode::DbCrash => AlarmKind::DbCrash(cause),
            AlarmCode::WebLogDiskFilling => AlarmKind::WebLogDiskFilling,
            AlarmCode::DbUnhealthy => AlarmKind::DbUnhealthy,
        }
    }

    /// How many alarm kinds there are: the length of [`AlarmKind::ALL`].
    const KINDS: usize = {
        let mut i = 0;
        let mut n = 0;
        while i < AlarmCode::ALL.len() {
            n += AlarmCode::ALL[i].width();
            i += 1;
        }
        n
    };

    /// How many kinds have this code.
    const fn width(self) -> usize {
        if self.takes_cause() { RootCause::ALL.len() } else { 1 }
    }

    /// Where this code's kinds start in [`AlarmKind::ALL`].
    const fn first_index(self) -> usize {
        let mut i = 0;
        let mut at = 0;
        while i < self.index() {
            at += AlarmCode::ALL[i].width();
            i += 1;
        }
        at
    }
}

impl AlarmKind {
    /// Every alarm kind, a database crash once for each root cause, in
    /// [`AlarmKind::index`] order, built from [`AlarmCode::ALL`]. A new
    /// variant cannot be left out: [`AlarmKind::alarm_code`] must give it a
    /// code, and [`AlarmCode`]'s matches must then construct it. The rules
    /// read alarm codes from here and size their table of plans by it, so a
    /// new kind needs no slot or parser of its own.
    pub const ALL: [AlarmKind; AlarmCode::KINDS] = {
        let mut all = [AlarmKind::WebLogSaturation; AlarmCode::KINDS];
        let mut n = 0;
        let mut c = 0;
        while c < AlarmCode::ALL.len() {
            let code = AlarmCode::ALL[c];
            let mut j = 0;
            while j < code.width() {
                all[n] = code.kind(RootCause::ALL[j]);
                n += 1;
                j += 1;
            }
            c += 1;
        }
        all
    };

    /// This kind's place in [`AlarmKind::ALL`].
    pub const fn index(self) -> usize {
        let within = match self {
            AlarmKind::DbCrash(cause) => cause.index(),
            AlarmKind::WebLogSaturation
            | AlarmKind::ZombieOutbreak
            | AlarmKind::WebLogDiskFilling
            | AlarmKind::DbUnhealthy => 0,
        };
        self.alarm_code().first_index() + within
    }

    /// This kind's code.
    pub const fn alarm_code(self) -> AlarmCode {
        match self {
            AlarmKind::WebLogSaturation => AlarmCode::WebLogSaturation,
            AlarmKind::ZombieOutbreak => AlarmCode::ZombieOutbreak,
            AlarmKind::DbCrash(_) => AlarmCode::DbCrash,
            AlarmKind::WebLogDiskFilling => AlarmCode::WebLogDiskFilling,
            AlarmKind::DbUnhealthy => AlarmCode::DbUnhealthy,
        }
    }

    /// The kind a rules file names by its code and, for the codes that
    /// take one, its cause.
    pub fn from_code(code: &str, cause: Option<RootCause>) -> Option<AlarmKind> {
        AlarmKind::ALL.into_iter().find(|k| k.code() == code && k.cause() == cause)
    }

    /// Whether alarms with this code are told apart by a root cause
    /// (`None`: no kind has this code).
    pub fn code_takes_cause(code: &str) -> Option<bool> {
        AlarmCode::parse(code).map(AlarmCode::takes_cause)
    }

    /// Every alarm code, for error messages.
    pub fn codes() -> Vec<&'static str> {
        AlarmCode::ALL.iter().map(|c| c.as_str()).collect()
    }

    /// What is wrong when this alarm is raised, in a post-mortem's words.
    pub fn condition(self) -> &'static str {
        match self {
            AlarmKind::WebLogSaturation => "the web server's log disk is above its threshold",
            AlarmKind::ZombieOutbreak => "too many exited containers in scope",
            AlarmKind::DbCrash(_) => "the database is not running",
            AlarmKind::WebLogDiskFilling => "the web server's log disk fills toward its threshold",
            AlarmKind::DbUnhealthy => "the database runs but its health check fails",
        }
    }

    /// What keeps this alarm from coming back once the service is restored,
    /// for the post-mortem; `c` is the alarmed container (shown printable).
    pub fn prevention(self, c: &ContainerName) -> String {
        match self {
            AlarmKind::DbCrash(RootCause::DiskFull) => format!(
                "Find what wrote so much log to {c}'s disk \
                 and add log rotation or a size limit; a database and its logs on one disk will fill again."
            ),
            AlarmKind::DbCrash(RootCause::OomKill) => format!(
                "{c} was killed for lack of memory: review its memory limit and what used the memory \
                 before the kill; the restart only buys time."
            ),
            AlarmKind::DbCrash(_) => format!("Read {c}'s logs around the crash to confirm the cause."),
            AlarmKind::WebLogSaturation => {
                format!("Set up log rotation for {c}; find what produced the burst of log lines.")
            }
            AlarmKind::WebLogDiskFilling => format!(
                "Find what writes {c}'s logs at this rate and set up log rotation; \
                 early cleaning only moves the crossing later."
            ),
            AlarmKind::DbUnhealthy => format!(
                "Read {c}'s health check output and its recent lines: a server that runs but does not \
                 answer may be recovering, out of connections or stuck on a lock."
            ),
            AlarmKind::ZombieOutbreak => "Find what keeps creating containers that exit and are never removed \
                 (a cron job, a CI runner, `docker run` without `--rm`)."
                .to_string(),
        }
    }

    /// The specification's alarm code.
    pub fn code(self) -> &'static str {
        self.alarm_code().as_str()
    }

    /// The root cause, for a database crash.
    pub fn cause(self) -> Option<RootCause> {
        match self {
            AlarmKind::DbCrash(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlarmKind::DbCrash(c) => write!(f, "DB_CRASH — {c}"),
            other => f.write_str(other.code()),
        }
    }
}

/// A container's lifecycle state, as Docker reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running (see [`Health`] for its health check).
    Running,
    /// Paused.
    Paused,
    /// Being restarted by Docker's restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Dead (removal failed).
    Dead,
}

impl ContainerState {
    /// Docker's own spelling (`running`, `exited`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
        }
    }

    /// A run that has ended (exited or dead): what a crash alarm and a
    /// restart approval are about. A container in any other state is
    /// never restarted on such an approval.
    pub fn is_stopped(self) -> bool {
        matches!(self, ContainerState::Exited | ContainerState::Dead)
    }

    /// States the container does not leave by itself: waiting longer will
    /// not bring it back.
    pub fn is_settled_down(self) -> bool {
        matches!(self, ContainerState::Exited | ContainerState::Dead | ContainerState::Created)
    }
}

/// The result of a container's health check, when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No health check is configured.
    None,
    /// The check has not passed yet.
    Starting,
    /// The check passes.
    Healthy,
    /// The check fails.
    Unhealthy,
}

/// The facts behind an alarm, kept for the approver, the LLM and the audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The container's state when the alarm was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    /// When the trouble began, where the host tells: a crashed container's
    /// exit time. Time to detect is measured from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_at: Option<Timestamp>,
    /// Exit code of a stopped container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled` flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
    /// Disk usage of the watched path, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_used_pct: Option<f64>,
    /// Number of exited containers in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_containers: Option<u32>,
    /// How fast the disk fills, in percentage points a minute (the fitted
    /// line of recent readings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_rate_pct_per_min: Option<f64>,
    /// When, at that rate, the disk crosses its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_crossing_at: Option<Timestamp>,
    /// Which signature decided the root cause (e.g. `log matches "No space left on device"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_signature: Option<String>,
    /// The log lines that matched, capped in number and length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_lines: Vec<String>,
    /// Every signature the crash met at least in part, in rules order, the
    /// deciding one included: the approver sees everything that matched, not
    /// just the winner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureMatch>,
    /// The last log lines before the crash, for a human or an LLM to read
    /// when no signature matched. Untrusted text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// How one root-cause signature fared against a crash, for the evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignatureMatch {
    /// The cause the signature tags.
    pub cause: RootCause,
    /// The signature, described for humans.
    pub signature: String,
    /// Whether this signature decided the root cause.
    #[serde(default)]
    pub decided: bool,
    /// Its conditions that did not hold, described; empty when it matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmet: Vec<String>,
    /// The server's log lines it matched, capped in number and length.
    /// Untrusted text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

impl SignatureMatch {
    /// Whether every condition held.
    pub fn matched(&self) -> bool {
        self.unmet.is_empty()
    }
}

/// Something is wrong on the host: what, where, why and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// What kind of trouble.
    pub kind: AlarmKind,
    /// The container concerned (for a zombie outbreak, the host's scope name).
    pub container: ContainerName,
    /// The facts that raised it.
    pub evidence: Evidence,
    /// When the observer raised it.
    pub raised_at: Timestamp,
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.kind, self.container)
    }
}

/// How dangerous an action is: risky ones need a human's explicit yes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Cannot lose data or take a service down (`safe.py`).
    Safe,
    /// Needs approval (`risky.py`).
    Risky,
}

/// Why a restart is proposed: what the approver is asked to accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// The OOM killer stopped it; a restart is the documented fix.
    OomKill,
    /// Log cleaning freed the disk, but the service is still down.
    DiskFreed,
    /// The LLM picked a restart for an unknown cause.
    LlmSuggested,
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartReason::OomKill => "killed by the OOM killer",
            RestartReason::DiskFreed => "disk freed by cleaning logs, service still down",
            RestartReason::LlmSuggested => "suggested by the LLM for an unknown cause",
        })
    }
}

enum_with_all! {
    /// Why an incident stopped and went to a human.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum StopReason {
        /// Config error: manual intervention needed.
        ConfigError,
        /// Data corruption: manual intervention needed.
        DataCorruption,
        /// Cleaning logs left the disk above the success threshold: non-log data
        /// is blocking the disk.
        CleanDidNotFreeDisk,
        /// The human rejected (or did not answer) the approval request.
        ApprovalRejected,
        /// The container was restarted too often recently.
        RestartBudgetExhausted,
        /// After the last fix the service never came back as Running.
        VerificationFailed,
        /// An action failed on the host.
        ActionFailed,
        /// Unknown root cause and no LLM configured.
        UnknownCause,
        /// The LLM could not be consulted or gave an invalid answer.
        LlmFailed,
        /// The LLM itself chose to escalate.
        LlmEscalated,
        /// The LLM chose an action the rules do not allow here.
        LlmChoiceRefused,
        /// A safety rule refused the action the plan asked for.
        SafetyRule,
        /// The incident used up its step budget.
        StepLimit,
        /// The rules have no plan for this alarm.
        NoPlan,
        /// OpsGuard was stopped (SIGTERM, ^C) before the incident ended.
        Interrupted,
        /// A database runs but its health check fails: a human looks.
        Unhealthy,
    }
    /// Every reason, for metrics and tests.
    const ALL;
}

impl StopReason {
    /// Its name in the audit log and in metric labels (`config_error`, …).
    pub fn key(self) -> &'static str {
        match self {
            StopReason::ConfigError => "config_error",
            StopReason::DataCorruption => "data_corruption",
            StopReason::CleanDidNotFreeDisk => "clean_did_not_free_disk",
            StopReason::ApprovalRejected => "approval_rejected",
            StopReason::RestartBudgetExhausted => "restart_budget_exhausted",
            StopReason::VerificationFailed => "verification_failed",
            StopReason::ActionFailed => "action_failed",
            StopReason::UnknownCause => "unknown_cause",
            StopReason::LlmFailed => "llm_failed",
            StopReason::LlmEscalated => "llm_escalated",
            StopReason::LlmChoiceRefused => "llm_choice_refused",
            StopReason::SafetyRule => "safety_rule",
            StopReason::StepLimit => "step_limit",
            StopReason::NoPlan => "no_plan",
            StopReason::Interrupted => "interrupted",
            StopReason::Unhealthy => "unhealthy",
        }
    }

    /// A sentence for the human taking over.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::ConfigError => "configuration error: manual intervention needed",
            StopReason::DataCorruption => "data corruption: manual intervention needed",
            StopReason::CleanDidNotFreeDisk => "cleaning logs did not free the disk: non-log data is blocking it",
            StopReason::ApprovalRejected => "operation cancelled: restart not approved",
            StopReason::RestartBudgetExhausted => "restart budget exhausted: the container keeps dying",
            StopReason::VerificationFailed => "the service did not come back as Running",
            StopReason::ActionFailed => "an action failed on the host",
            StopReason::UnknownCause => "unknown root cause and no LLM configured",
            StopReason::LlmFailed => "the LLM gave no usable answer",
            StopReason::LlmEscalated => "the LLM advised a human should look",
            StopReason::LlmChoiceRefused => "the LLM chose an action the rules forbid here",
            StopReason::SafetyRule => "a safety rule refused the planned action",
            StopReason::StepLimit => "the incident ran out of steps",
            StopReason::NoPlan => "no rule covers this alarm",
            StopReason::Interrupted => "OpsGuard was stopped before the incident ended",
            StopReason::Unhealthy => "the database runs but its health check fails",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The closed set of things OpsGuard can do. No variant carries a command,
/// a path or anything an LLM could smuggle in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[must_use]
pub enum Action {
    /// `clean_logs(container)`: truncate log files under the container's
    /// configured log paths.
    CleanLogs {
        /// The container whose logs to clean.
        target: ContainerName,
    },
    /// `prune_containers(reason)`: remove exited containers in scope.
    PruneContainers,
    /// `restart_database_risky(reason)`: needs approval. One name in Rust
    /// (`Restart` here, in [`PlanStep`](crate::rules::PlanStep) and in
    /// [`LlmChoice`]) and one on the wire, the specification's tool name, in
    /// rules, audit log and LLM answers alike; audit logs written before
    /// it was renamed say `restart_container` and still replay.
    #[serde(rename = "restart_database_risky", alias = "restart_container")]
    Restart {
        /// The container to restart.
        target: ContainerName,
        /// What the approver is asked to accept.
        reason: RestartReason,
    },
    /// Rapid re-checks until the alarm's condition has cleared and the
    /// service is Running, or the rapid window ends.
    Verify {
        /// The container to watch.
        target: ContainerName,
    },
    /// Ask the LLM to pick among the actions the rules allow.
    ConsultLlm,
    /// Stop and hand over to a human.
    Stop {
        /// Why.
        reason: StopReason,
    },
    /// Verified: the incident is over.
    Resolved,
}

impl Action {
    /// The specification's tool name, or a short verb for the non-tools.
    pub fn tool_name(&self) -> &'static str {
        match self {
            Action::CleanLogs { .. } => "clean_logs",
            Action::PruneContainers => "prune_containers",
            Action::Restart { .. } => "restart_database_risky",
            Action::Verify { .. } => "verify",
            Action::ConsultLlm => "consult_llm",
            Action::Stop { .. } => "stop",
            Action::Resolved => "resolved",
        }
    }

    /// Whether a human must approve it first.
    /// Every variant is named: a new action is a compile error here until
    /// someone decides whether it needs a human, and the incident machine
    /// gates on this, not on the variant.
    pub fn risk(&self) -> Risk {
        match self {
            Action::Restart { .. } => Risk::Risky,
            Action::CleanLogs { .. }
            | Action::PruneContainers
            | Action::Verify { .. }
            | Action::ConsultLlm
            | Action::Stop { .. }
            | Action::Resolved => Risk::Safe,
        }
    }

    /// The one container it acts on or watches, if it has one.
    pub fn target(&self) -> Option<&ContainerName> {
        match self {
            Action::CleanLogs { target } | Action::Restart { target, .. } | Action::Verify { target } => Some(target),
            Action::PruneContainers | Action::ConsultLlm | Action::Stop { .. } | Action::Resolved => None,
        }
    }

    /// Whether carrying it out changes the host (cleans, prunes, restarts),
    /// as opposed to looking (verify) or asking (the LLM): what shadow mode
    /// records instead of doing.
    pub fn changes_host(&self) -> bool {
        matches!(self, Action::CleanLogs { .. } | Action::PruneContainers | Action::Restart { .. })
    }

    /// Whether the incident ends with this action.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Action::Stop { .. } | Action::Resolved)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CleanLogs { target } => write!(f, "clean_logs('{target}')"),
            Action::PruneContainers => f.write_str("prune_containers()"),
            Action::Restart { target, reason } => {
                write!(f, "restart_database_risky('{target}') — {reason}")
            }
            Action::Verify { target } => write!(f, "verify('{target}')"),
            Action::ConsultLlm => f.write_str("consult_llm()"),
            Action::Stop { reason } => write!(f, "STOP — {reason}"),
            Action::Resolved => f.write_str("resolved"),
        }
    }
}

/// The actions an LLM may choose among: a closed set, narrowed per alarm by
/// the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmChoice {
    /// `restart_database_risky`.
    #[serde(rename = "restart_database_risky")]
    Restart,
    /// `clean_logs`.
    CleanLogs,
    /// Hand over to a human.
    Escalate,
}

impl LlmChoice {
    /// Every choice.
    pub const ALL: [LlmChoice; 3] = [LlmChoice::Restart, LlmChoice::CleanLogs, LlmChoice::Escalate];

    /// The name used in prompts, JSON schemas and rules files.
    pub fn name(self) -> &'static str {
        match self {
            LlmChoice::Restart => "restart_database_risky",
            LlmChoice::CleanLogs => "clean_logs",
            LlmChoice::Escalate => "escalate",
        }
    }

    /// Parses a name exactly as [`LlmChoice::name`] spells it.
    pub fn from_name(name: &str) -> Option<LlmChoice> {
        LlmChoice::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A small set of [`LlmChoice`]s, stored as bits so it is `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChoiceSet(u8);

impl ChoiceSet {
    /// The empty set.
    pub const EMPTY: ChoiceSet = ChoiceSet(0);

    fn bit(c: LlmChoice) -> u8 {
        match c {
            LlmChoice::Restart => 1,
            LlmChoice::CleanLogs => 2,
            LlmChoice::Escalate => 4,
        }
    }

    /// This set with `c` added.
    pub fn with(self, c: LlmChoice) -> ChoiceSet {
        ChoiceSet(self.0 | Self::bit(c))
    }

    /// Whether `c` is in the set.
    pub fn contains(self, c: LlmChoice) -> bool {
        self.0 & Self::bit(c) != 0
    }

    /// The members, in [`LlmChoice::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = LlmChoice> {
        LlmChoice::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<LlmChoice> for ChoiceSet {
    fn from_iter<I: IntoIterator<Item = LlmChoice>>(iter: I) -> Self {
        iter.into_iter().fold(ChoiceSet::EMPTY, ChoiceSet::with)
    }
}

enum_with_all! {
    /// The cause categories an LLM may diagnose for a crash the rules could
    /// not tag: a closed list. The model names one; the rules, not the model,
    /// say which action each leads to.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Diagnosis {
        /// The evidence does not say.
        Unclear,
        /// Killed once from outside (SIGKILL, a daemon restart) with nothing
        /// wrong in the logs: a restart is likely to fix it.
        KilledOnce,
        /// The disk is filling up with the server's own log output.
        LogFlood,
        /// Someone stopped it on purpose (a shutdown request).
        DeliberateStop,
        /// A setting, file, permission or image problem that a restart repeats.
        Misconfiguration,
        /// Out of a resource (memory, connections, file descriptors, disk for
        /// data or WAL) for a reason a restart does not remove.
        ResourceExhaustion,
        /// Damaged or incompatible data files.
        DataProblem,
    }
    /// Every category, in the order prompts and schemas list them.
    const ALL;
}

impl Diagnosis {
    /// The name used in prompts, schemas and rules files.
    pub fn name(self) -> &'static str {
        match self {
            Diagnosis::KilledOnce => "killed-once",
            Diagnosis::LogFlood => "log-flood",
            Diagnosis::DeliberateStop => "deliberate-stop",
            Diagnosis::Misconfiguration => "misconfiguration",
            Diagnosis::ResourceExhaustion => "resource-exhaustion",
            Diagnosis::DataProblem => "data-problem",
            Diagnosis::Unclear => "unclear",
        }
    }

    /// Parses a name exactly as [`Diagnosis::name`] spells it.
    pub fn from_name(name: &str) -> Option<Diagnosis> {
        Diagnosis::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a model said about a crash, after OpsGuard checked its form and
/// that its quote occurs in the evidence it was shown. The quote and the
/// reason are still untrusted model output: shown to humans as such.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmDiagnosis {
    /// The cause category.
    pub category: Diagnosis,
    /// The evidence line (or part of one) the model cites.
    pub quote: String,
    /// The model's reason, one sentence.
    pub reason: String,
}

/// What verification saw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verification {
    /// The service is Running (stably, and healthy if it has a health
    /// check) and the alarm's condition has cleared.
    Confirmed,
    /// The service is down, or the condition persists, and waiting will
    /// not change it (or the rapid window ran out).
    NotConfirmed {
        /// The last state seen, if the container could be inspected.
        last_state: Option<ContainerState>,
    },
}

/// What happened when an action was carried out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Logs were cleaned; the disk usage afterwards.
    Cleaned {
        /// Disk usage after cleaning, in percent.
        disk_used_pct: f64,
        /// Bytes freed.
        freed_bytes: u64,
    },
    /// Exited containers were removed.
    Pruned {
        /// How many.
        removed: u32,
    },
    /// The approver said no, did not answer in time, or failed.
    ApprovalRejected,
    /// The container was restarted.
    Restarted,
    /// The restart was approved, but a re-check just before it found the
    /// container back on its own (Running, condition cleared): not restarted.
    RestartNotNeeded,
    /// The restart was approved for one crash, and the container is no
    /// longer in it (it ran again, crashed again, or was recreated): the
    /// approval is void, nothing was done, and the incident is decided
    /// again from fresh facts.
    ApprovalVoided {
        /// What changed, for humans.
        reason: String,
    },
    /// Verification finished.
    Verified(Verification),
    /// The LLM answered with a valid diagnosis, which the rules turned
    /// into this choice.
    LlmChose {
        /// The choice.
        choice: LlmChoice,
        /// The diagnosis it came from (absent in records written before
        /// diagnoses).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diagnosis: Option<LlmDiagnosis>,
    },
    /// The LLM could not be consulted or its answer was invalid.
    LlmFailed,
    /// The host failed to carry out the action.
    Failed {
        /// What went wrong, for humans.
        error: String,
    },
}

impl Outcome {
    /// The one wording of this outcome, for the audit line, the post-mortem
    /// and anything else that shows it to a human. Text that came from a
    /// container, the host or a model is made printable.
    pub fn describe(&self) -> String {
        use crate::redact::printable;
        match self {
            Outcome::Cleaned { disk_used_pct, freed_bytes } => {
                format!("disk at {disk_used_pct:.1} % after cleaning, {} MiB freed", freed_bytes / (1024 * 1024))
            }
            Outcome::Pruned { removed } => format!("{removed} containers removed"),
            Outcome::ApprovalRejected => "not approved: not run".to_string(),
            Outcome::Restarted => "restarted".to_string(),
            Outcome::RestartNotNeeded => "not restarted: it came back on its own".to_string(),
            Outcome::ApprovalVoided { reason } => format!("not restarted: approval void, {}", printable(reason)),
            Outcome::Verified(Verification::Confirmed) => "confirmed Running".to_string(),
            Outcome::Verified(Verification::NotConfirmed { last_state }) => {
                format!("not confirmed (last seen {})", last_state.map_or("unreachable", ContainerState::as_str))
            }
            Outcome::LlmChose { choice, diagnosis: Some(d) } => {
                format!("the LLM diagnosed {} (rules: {})", d.category, choice.name())
            }
            Outcome::LlmChose { choice, diagnosis: None } => format!("the LLM chose {}", choice.name()),
            Outcome::LlmFailed => "the LLM gave no usable answer".to_string(),
            Outcome::Failed { error } => format!("failed: {}", printable(error)),
        }
    }
}

/// One executed action and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What was done.
    pub action: Action,
    /// What came of it.
    pub outcome: Outcome,
    /// When it finished.
    pub at: Timestamp,
}

/// Everything `decide` knows about an incident beyond its alarm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The steps taken in this incident, oldest first.
    pub steps: Vec<Step>,
    /// When the alarm's container was restarted recently, across incidents,
    /// so a container that keeps dying runs out of restart budget.
    pub restarts: Vec<Timestamp>,
}

impl History {
    /// An empty history with the container's recent restarts.
    pub fn with_restarts(restarts: Vec<Timestamp>) -> Self {
        History { steps: Vec::new(), restarts }
    }
}

/// A container as inspected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Name.
    pub name: ContainerName,
    /// Docker's container id: a new one when the container is recreated
    /// under the same name, so an approval for one cannot act on another.
    #[serde(default)]
    pub id: Option<String>,
    /// State.
    pub state: ContainerState,
    /// Health check result.
    pub health: Health,
    /// Exit code of the last run (0 while running).
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled`.
    pub oom_killed: bool,
    /// When the last run started.
    pub started_at: Option<Timestamp>,
    /// When the last run ended.
    pub finished_at: Option<Timestamp>,
    /// Docker's restart policy (`HostConfig.RestartPolicy`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<crate::stateless::RestartPolicy>,
    /// How many times Docker's policy restarted it (`RestartCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i64>,
    /// What its last health checks said, oldest first (Docker keeps five):
    /// raw, as the container wrote it, bounded by the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_log: Vec<String>,
}

/// Most health check results kept from Docker's health log.
pub const HEALTH_LOG_ENTRIES: usize = 5;
/// Longest health check output kept, in bytes: the rest is the writer's.
pub const HEALTH_OUTPUT_BYTES: usize = 512;

/// One health check result as evidence: its exit code and what it wrote,
/// cut to [`HEALTH_OUTPUT_BYTES`] on a character boundary.
pub fn health_entry(exit_code: Option<i64>, output: &str) -> String {
    let mut end = output.len().min(HEALTH_OUTPUT_BYTES);
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    let code = exit_code.map_or("?".to_string(), |c| c.to_string());
    format!("health check (exit {code}): {}", output[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `index` is a variant's place in `ALL`, so tables sized `ALL.len()`
    /// (the rules' plans, the diagnosis actions) hold every variant once.
    #[test]
    fn every_variant_sits_at_its_index_in_all() {
        for (i, cause) in RootCause::ALL.into_iter().enumerate() {
            assert_eq!(cause.index(), i, "{cause:?}");
            assert_eq!(RootCause::from_key(cause.key()), Some(cause));
        }
        for (i, diagnosis) in Diagnosis::ALL.into_iter().enumerate() {
            assert_eq!(diagnosis.index(), i, "{diagnosis:?}");
            assert_eq!(Diagnosis::from_name(diagnosis.name()), Some(diagnosis));
        }
        // The order the prompts and schemas have always listed.
        assert_eq!(Diagnosis::ALL[0], Diagnosis::Unclear);
        assert_eq!(RootCause::ALL[0], RootCause::DiskFull, "the specification's classification order");
    }

    /// The same for alarm kinds, whose `ALL` is built from the codes'.
    #[test]
    fn alarm_kinds_are_listed_in_index_order() {
        for (i, kind) in AlarmKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
            assert_eq!(AlarmKind::from_code(kind.code(), kind.cause()), Some(kind));
            assert_eq!(AlarmKind::code_takes_cause(kind.code()), Some(kind.cause().is_some()));
        }
        assert_eq!(
            AlarmKind::codes(),
            ["WEB_LOG_SATURATION", "ZOMBIE_OUTBREAK", "DB_CRASH", "WEB_LOG_DISK_FILLING", "DB_UNHEALTHY"]
        );
        assert_eq!(AlarmKind::from_code("DB_CRASH", None), None, "a database crash always has a cause");
        assert_eq!(AlarmKind::from_code("ZOMBIE_OUTBREAK", Some(RootCause::OomKill)), None);
        assert_eq!(AlarmKind::code_takes_cause("NOPE"), None);
    }
}
