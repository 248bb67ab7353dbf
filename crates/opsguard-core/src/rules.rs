//! Rules as data: loading, validating and compiling `rules/*.toml`.
//!
//! Thresholds, root-cause signatures and the decision table are data so an
//! operator can read and change them; validation happens once, at load time,
//! and every error names the file, the line and the field. What validation
//! accepts can still never make the engine unsafe: the safety rules
//! (no restart on config error or data corruption, clean before restart on a
//! full disk, approval for risky actions) are enforced again in
//! [`crate::engine`], whatever the rules say.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::model::{AlarmKind, ChoiceSet, ContainerName, Diagnosis, Evidence, LlmChoice, RootCause};

/// The default rules, compiled into the binary: the specification's
/// decision tree.
pub const DEFAULT_RULES: &str = include_str!("../../../rules/default.toml");

/// Longest plan accepted; keeps every incident bounded.
pub const MAX_PLAN_STEPS: usize = 16;

/// What went wrong while loading rules.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RulesErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML, an unknown field, a missing field or a wrong type.
    Syntax,
    /// A regex that does not compile.
    BadRegex,
    /// A number outside its allowed range.
    OutOfRange,
    /// A name (alarm, cause, action) that OpsGuard does not know.
    UnknownName,
    /// A rule that would break a safety invariant or is otherwise inconsistent.
    Invalid,
}

/// A rules file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesError {
    /// The category.
    pub kind: RulesErrorKind,
    /// The file (or `<default rules>`).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The offending field, dotted (`thresholds.web_disk_pct`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RulesError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    thresholds: RawThresholds,
    observer: RawObserver,
    restart_budget: RawBudget,
    limits: RawLimits,
    scope: RawScope,
    web: RawTarget,
    database: RawTarget,
    server_log: RawServerLog,
    #[serde(default)]
    signature: Vec<Spanned<RawSignature>>,
    #[serde(default)]
    plan: Vec<Spanned<RawPlan>>,
    #[serde(default)]
    llm_diagnosis: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    web_disk_pct: Spanned<f64>,
    clean_success_pct: Spanned<f64>,
    zombie_max: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserver {
    interval_secs: Spanned<i64>,
    rapid_interval_secs: Spanned<i64>,
    rapid_window_secs: Spanned<i64>,
    log_window_secs: Spanned<i64>,
    stable_checks: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    max_restarts: Spanned<i64>,
    window_secs: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_steps: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    label: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    container: Spanned<String>,
    log_paths: Spanned<Vec<String>>,
    disk_path: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerLog {
    line: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    cause: Spanned<String>,
    #[serde(default)]
    exit_code: Option<Spanned<i64>>,
    #[serde(default)]
    oom_killed: Option<bool>,
    #[serde(default)]
    min_disk_used_pct: Option<Spanned<f64>>,
    #[serde(default)]
    log_pattern: Option<Spanned<String>>,
    #[serde(default)]
    severities: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    alarm: Spanned<String>,
    #[serde(default)]
    cause: Option<Spanned<String>>,
    steps: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    llm_choices: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Thresholds from the specification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Web log disk usage that raises `WEB_LOG_SATURATION`, percent.
    pub web_disk_pct: f64,
    /// Disk usage below which `clean_logs` counts as a success, percent.
    pub clean_success_pct: f64,
    /// More exited containers than this raise `ZOMBIE_OUTBREAK`.
    pub zombie_max: u32,
}

/// Observer cadence, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObserverSettings {
    /// Normal polling interval.
    pub interval_secs: u64,
    /// Rapid-mode interval after a fix.
    pub rapid_interval_secs: u64,
    /// How long rapid mode lasts.
    pub rapid_window_secs: u64,
    /// How much log history before a crash the classifier reads.
    pub log_window_secs: u64,
    /// Consecutive Running checks that confirm a fix.
    pub stable_checks: u32,
}

/// How many restarts a container may have in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartBudget {
    /// Restarts allowed in the window.
    pub max_restarts: u32,
    /// The window, in seconds.
    pub window_secs: u64,
}

/// A watched service: its container and where its logs live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The container.
    pub container: ContainerName,
    /// Directories whose files `clean_logs` may truncate; nothing else is
    /// ever touched.
    pub log_paths: Vec<String>,
    /// A path on the disk whose usage is watched.
    pub disk_path: String,
}

/// The severities PostgreSQL writes before a message it reports itself.
/// `DETAIL`, `HINT`, `CONTEXT`, `STATEMENT`, `QUERY` and `LOCATION` lines are
/// deliberately absent: they quote client text (SQL, names) or context.
pub const SERVER_SEVERITIES: [&str; 13] = [
    "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL",
    "PANIC",
];

/// One root-cause signature: every condition given must hold.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The cause it tags.
    pub cause: RootCause,
    /// Required exit code.
    pub exit_code: Option<i64>,
    /// Required `OOMKilled` flag.
    pub oom_killed: Option<bool>,
    /// Required usage of the database's disk, at or above this percentage:
    /// the disk's own evidence, which a log line cannot fake.
    pub min_disk_used_pct: Option<f64>,
    /// A regex that the message of some line the server wrote about itself
    /// ([`Rules::server_line`]), at one of [`Signature::severities`], must
    /// match.
    pub log_pattern: Option<Regex>,
    /// The severities a line must carry for [`Signature::log_pattern`] to be
    /// tried on it (empty without a pattern).
    pub severities: Vec<&'static str>,
}

impl Signature {
    /// A short human description of what this signature looks for.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(code) = self.exit_code {
            parts.push(format!("exit code {code}"));
        }
        if let Some(oom) = self.oom_killed {
            parts.push(format!("OOMKilled={oom}"));
        }
        if let Some(re) = &self.log_pattern {
            parts.push(format!("a server {} line matches /{}/", self.severities.join("/"), re.as_str()));
        }
        if let Some(pct) = self.min_disk_used_pct {
            parts.push(format!("disk usage at least {pct:.1}%"));
        }
        parts.join(" and ")
    }

    /// Whether a line of this severity is one the pattern is tried on.
    pub fn wants_severity(&self, severity: &str) -> bool {
        self.severities.contains(&severity)
    }
}

/// One step of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanStep {
    /// `clean_logs`.
    CleanLogs,
    /// `prune_containers`.
    PruneContainers,
    /// `restart_database_risky`.
    Restart,
    /// `verify`.
    Verify,
    /// `consult_llm` (unknown causes only; last step).
    ConsultLlm,
    /// `stop` (last step).
    Stop,
}

impl PlanStep {
    const NAMES: [(&'static str, PlanStep); 6] = [
        ("clean_logs", PlanStep::CleanLogs),
        ("prune_containers", PlanStep::PruneContainers),
        ("restart_database_risky", PlanStep::Restart),
        ("verify", PlanStep::Verify),
        ("consult_llm", PlanStep::ConsultLlm),
        ("stop", PlanStep::Stop),
    ];

    fn from_name(name: &str) -> Option<PlanStep> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The name used in rules files.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, s)| *s == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// The steps for one alarm, and what an LLM may choose when consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Steps in order.
    pub steps: Vec<PlanStep>,
    /// The LLM's allowed choices (empty unless the plan consults it).
    pub llm_choices: ChoiceSet,
}

/// Validated, compiled rules.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Observer cadence.
    pub observer: ObserverSettings,
    /// Restart budget.
    pub restart_budget: RestartBudget,
    /// Step budget per incident.
    pub max_steps: u32,
    /// Label (`key=value`) that scopes prunes.
    pub scope_label: String,
    /// The web service.
    pub web: Target,
    /// The database.
    pub database: Target,
    /// What a line the server wrote about itself looks like; its
    /// `severity` and `message` groups are what signatures read.
    pub server_line: Regex,
    /// Root-cause signatures, in order.
    pub signatures: Vec<Signature>,
    plans: [Option<Plan>; PLAN_SLOTS],
    /// What each LLM diagnosis leads to; escalate for all when the rules
    /// consult no LLM.
    pub llm_diagnosis: DiagnosisActions,
}

/// The action each cause category an LLM may diagnose leads to
/// (`[llm_diagnosis]` in a rules file). The model names a category; this
/// table, not the model, picks the action, which then goes through the
/// plan's `llm_choices` and every safety rule like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagnosisActions([LlmChoice; Diagnosis::ALL.len()]);

impl DiagnosisActions {
    /// Every category escalates.
    pub const ESCALATE_ALL: DiagnosisActions = DiagnosisActions([LlmChoice::Escalate; Diagnosis::ALL.len()]);

    fn slot(d: Diagnosis) -> usize {
        Diagnosis::ALL.iter().position(|x| *x == d).unwrap_or(0)
    }

    /// The action for `diagnosis`.
    pub fn action(&self, diagnosis: Diagnosis) -> LlmChoice {
        self.0[Self::slot(diagnosis)]
    }

    /// The table with `diagnosis` leading to `choice`; `unclear` always
    /// escalates, whatever is asked.
    pub fn with(mut self, diagnosis: Diagnosis, choice: LlmChoice) -> DiagnosisActions {
        if diagnosis != Diagnosis::Unclear {
            self.0[Self::slot(diagnosis)] = choice;
        }
        self
    }
}

impl Default for DiagnosisActions {
    fn default() -> Self {
        DiagnosisActions::ESCALATE_ALL
    }
}

const PLAN_SLOTS: usize = 7;

fn plan_slot(kind: AlarmKind) -> usize {
    match kind {
        AlarmKind::WebLogSaturation => 0,
        AlarmKind::ZombieOutbreak => 1,
        AlarmKind::DbCrash(RootCause::DiskFull) => 2,
        AlarmKind::DbCrash(RootCause::ConfigError) => 3,
        AlarmKind::DbCrash(RootCause::OomKill) => 4,
        AlarmKind::DbCrash(RootCause::DataCorruption) => 5,
        AlarmKind::DbCrash(RootCause::Unknown) => 6,
    }
}

impl Rules {
    /// The built-in rules ([`DEFAULT_RULES`]).
    pub fn default_rules() -> Rules {
        // The default rules are covered by tests; failing here is a build bug.
        Rules::from_toml_str(DEFAULT_RULES, Path::new("<default rules>")).expect("the built-in default rules are valid")
    }

    /// Parses and validates rules text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Rules, RulesError> {
        let cx = Cx { text, file };
        let raw: RawRules = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| cx.line_col(s.start)).unzip();
            let field = field_from_message(e.message()).or_else(|| e.span().and_then(|s| cx.key_at(s.start)));
            RulesError {
                kind: RulesErrorKind::Syntax,
                file: file.to_path_buf(),
                line,
                column,
                field,
                message: e.message().trim().to_string(),
            }
        })?;
        cx.compile(raw)
    }

    /// The plan for an alarm, if the rules have one.
    pub fn plan(&self, kind: AlarmKind) -> Option<&Plan> {
        self.plans[plan_slot(kind)].as_ref()
    }

    /// The watched service whose container is `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        [&self.web, &self.database].into_iter().find(|t| t.container.as_str() == name)
    }

    /// The action an LLM's diagnosis of a crash leads to
    /// ([`Rules::llm_diagnosis`]), unless OpsGuard's own facts contradict
    /// the diagnosis: then why, and the incident escalates. A `log-flood`
    /// needs the disk at or above `thresholds.web_disk_pct` (the level at
    /// which a log disk counts as saturated); a `killed-once` needs a kill
    /// from outside (exit 137 or 255), no OOM kill, and no PANIC or FATAL
    /// line from the server. Other categories are taken as they come: they
    /// lead to escalate by default.
    pub fn llm_action(&self, diagnosis: Diagnosis, evidence: &Evidence) -> Result<LlmChoice, String> {
        match diagnosis {
            Diagnosis::LogFlood => match evidence.disk_used_pct.filter(|p| p.is_finite()) {
                Some(p) if p >= self.thresholds.web_disk_pct => {}
                Some(p) => {
                    return Err(format!(
                        "log-flood with the disk at {p:.0} %, below {:.0} %",
                        self.thresholds.web_disk_pct
                    ));
                }
                None => return Err("log-flood without a disk measurement".into()),
            },
            Diagnosis::KilledOnce => {
                if !matches!(evidence.exit_code, Some(137 | 255)) {
                    return Err(format!(
                        "killed-once with exit code {}, not a kill from outside (137 or 255)",
                        evidence.exit_code.map_or("unknown".to_string(), |c| c.to_string())
                    ));
                }
                if evidence.oom_killed != Some(false) {
                    return Err("killed-once but the OOM flag is set or unknown".into());
                }
                let severe = |l: &String| l.contains("PANIC:  ") || l.contains("FATAL:  ");
                if evidence.log_tail.iter().chain(&evidence.log_lines).any(severe) {
                    return Err("killed-once but the server logged a PANIC or FATAL".into());
                }
            }
            _ => {}
        }
        Ok(self.llm_diagnosis.action(diagnosis))
    }
}

fn field_from_message(msg: &str) -> Option<String> {
    // serde says "unknown field `x`" / "missing field `x`"; surface the name.
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Cx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let col = offset - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        (line, col)
    }

    /// The dotted key (`section.key`) written on the line holding `offset`,
    /// for errors (a wrong type, say) whose message does not name it.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map_or(0, |p| p + 1);
        let line = self.text[start..].lines().next().unwrap_or("");
        let key = line.split_once('=')?.0.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return None;
        }
        let section = self.text[..start].lines().rev().find_map(|l| {
            let l = l.trim();
            l.strip_prefix("[[")
                .and_then(|r| r.strip_suffix("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        });
        Some(match section {
            Some(sec) => format!("{}.{key}", sec.trim()),
            None => key.to_string(),
        })
    }

    fn err(&self, kind: RulesErrorKind, span: Range<usize>, field: &str, message: String) -> RulesError {
        let (line, column) = self.line_col(span.start);
        RulesError {
            kind,
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field: Some(field.to_string()),
            message,
        }
    }

    fn pct(&self, v: &Spanned<f64>, field: &str) -> Result<f64, RulesError> {
        let x = *v.get_ref();
        if x.is_finite() && x > 0.0 && x <= 100.0 {
            Ok(x)
        } else {
            Err(self.err(RulesErrorKind::OutOfRange, v.span(), field, format!("{x} is not a percentage in (0, 100]")))
        }
    }

    fn int(&self, v: &Spanned<i64>, field: &str, min: i64, max: i64) -> Result<i64, RulesError> {
        let x = *v.get_ref();
        if (min..=max).contains(&x) {
            Ok(x)
        } else {
            Err(self.err(RulesErrorKind::OutOfRange, v.span(), field, format!("{x} is outside {min}..={max}")))
        }
    }

    fn target(&self, raw: RawTarget, section: &str) -> Result<Target, RulesError> {
        let name = raw.container.get_ref();
        if !valid_container_name(name) {
            return Err(self.err(
                RulesErrorKind::Invalid,
                raw.container.span(),
                &format!("{section}.container"),
                format!("{name:?} is not a valid container name"),
            ));
        }
        let field = format!("{section}.log_paths");
        if raw.log_paths.get_ref().is_empty() {
            return Err(self.err(
                RulesErrorKind::Invalid,
                raw.log_paths.span(),
                &field,
                "at least one log path is needed".into(),
            ));
        }
        for p in raw.log_paths.get_ref() {
            if let Err(why) = check_log_path(p) {
                return Err(self.err(RulesErrorKind::Invalid, raw.log_paths.span(), &field, format!("{p:?}: {why}")));
            }
        }
        let disk = raw.disk_path.get_ref();
        if !disk.starts_with('/') {
            return Err(self.err(
                RulesErrorKind::Invalid,
                raw.disk_path.span(),
                &format!("{section}.disk_path"),
                format!("{disk:?} must be an absolute path"),
            ));
        }
        // The database's disk path is its data directory: cleaning a log path
        // that holds it (or PostgreSQL's default data root) could destroy data.
        let data: &[&str] = if section == "database" { &[disk.as_str()] } else { &[] };
        if let Some((p, d)) = log_path_holding_data(raw.log_paths.get_ref(), data) {
            return Err(self.err(
                RulesErrorKind::Invalid,
                raw.log_paths.span(),
                &field,
                format!("{p:?} holds the database's data directory {d}: cleaning there could destroy data"),
            ));
        }
        Ok(Target {
            container: ContainerName::new(name),
            log_paths: raw.log_paths.into_inner(),
            disk_path: raw.disk_path.into_inner(),
        })
    }

    fn compile(&self, raw: RawRules) -> Result<Rules, RulesError> {
        let t = &raw.thresholds;
        let thresholds = Thresholds {
            web_disk_pct: self.pct(&t.web_disk_pct, "thresholds.web_disk_pct")?,
            clean_success_pct: self.pct(&t.clean_success_pct, "thresholds.clean_success_pct")?,
            zombie_max: self.int(&t.zombie_max, "thresholds.zombie_max", 0, 100_000)? as u32,
        };
        if thresholds.clean_success_pct > thresholds.web_disk_pct {
            return Err(self.err(
                RulesErrorKind::Invalid,
                t.clean_success_pct.span(),
                "thresholds.clean_success_pct",
                format!(
                    "{} is above web_disk_pct {}: a successful clean would leave the alarm raised",
                    thresholds.clean_success_pct, thresholds.web_disk_pct
                ),
            ));
        }
        let o = &raw.observer;
        let day = 86_400;
        let observer = ObserverSettings {
            interval_secs: self.int(&o.interval_secs, "observer.interval_secs", 1, day)? as u64,
            rapid_interval_secs: self.int(&o.rapid_interval_secs, "observer.rapid_interval_secs", 1, day)? as u64,
            rapid_window_secs: self.int(&o.rapid_window_secs, "observer.rapid_window_secs", 1, day)? as u64,
            log_window_secs: self.int(&o.log_window_secs, "observer.log_window_secs", 1, day)? as u64,
            stable_checks: self.int(&o.stable_checks, "observer.stable_checks", 1, 100)? as u32,
        };
        if observer.rapid_interval_secs > observer.rapid_window_secs {
            return Err(self.err(
                RulesErrorKind::Invalid,
                o.rapid_interval_secs.span(),
                "observer.rapid_interval_secs",
                "rapid interval is longer than the rapid window".into(),
            ));
        }
        let restart_budget = RestartBudget {
            max_restarts: self.int(&raw.restart_budget.max_restarts, "restart_budget.max_restarts", 0, 1000)? as u32,
            window_secs: self.int(&raw.restart_budget.window_secs, "restart_budget.window_secs", 1, 30 * day)? as u64,
        };
        let max_steps = self.int(&raw.limits.max_steps, "limits.max_steps", 1, 64)? as u32;
        let label = raw.scope.label.get_ref();
        if !valid_label(label) {
            return Err(self.err(
                RulesErrorKind::Invalid,
                raw.scope.label.span(),
                "scope.label",
                format!("{label:?} is not a `key=value` label"),
            ));
        }
        let scope_label = label.clone();
        let web = self.target(raw.web, "web")?;
        let database = self.target(raw.database, "database")?;
        if web.container == database.container {
            return Err(RulesError {
                kind: RulesErrorKind::Invalid,
                file: self.file.to_path_buf(),
                line: None,
                column: None,
                field: Some("database.container".into()),
                message: "web and database name the same container".into(),
            });
        }

        let server_line = self.server_line(&raw.server_log.line)?;
        let mut signatures = Vec::with_capacity(raw.signature.len());
        for (i, s) in raw.signature.iter().enumerate() {
            signatures.push(self.signature(s, i)?);
        }
        if signatures.is_empty() {
            return Err(RulesError {
                kind: RulesErrorKind::Invalid,
                file: self.file.to_path_buf(),
                line: None,
                column: None,
                field: Some("signature".into()),
                message: "no root-cause signatures: every crash would be Unknown".into(),
            });
        }

        let mut plans: [Option<Plan>; PLAN_SLOTS] = Default::default();
        for (i, p) in raw.plan.iter().enumerate() {
            let (kind, plan) = self.plan(p, i)?;
            let slot = &mut plans[plan_slot(kind)];
            if slot.is_some() {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    p.span(),
                    &format!("plan[{i}]"),
                    format!("a second plan for {kind}"),
                ));
            }
            *slot = Some(plan);
        }
        let consults = plans.iter().flatten().any(|p| p.steps.contains(&PlanStep::ConsultLlm));
        let llm_diagnosis = self.llm_diagnosis(raw.llm_diagnosis.as_ref(), consults)?;

        Ok(Rules {
            thresholds,
            observer,
            restart_budget,
            max_steps,
            scope_label,
            web,
            database,
            server_line,
            signatures,
            plans,
            llm_diagnosis,
        })
    }

    /// `[llm_diagnosis]`: every category named exactly once, each mapped to
    /// an action name, `unclear` to `escalate`. Required when a plan
    /// consults the LLM, refused otherwise.
    fn llm_diagnosis(
        &self,
        raw: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
        consults: bool,
    ) -> Result<DiagnosisActions, RulesError> {
        let field = "llm_diagnosis";
        let Some(table) = raw else {
            if consults {
                return Err(RulesError {
                    kind: RulesErrorKind::Invalid,
                    file: self.file.to_path_buf(),
                    line: None,
                    column: None,
                    field: Some(field.into()),
                    message: "consult_llm needs an [llm_diagnosis] table: the action for each cause category".into(),
                });
            }
            return Ok(DiagnosisActions::ESCALATE_ALL);
        };
        if !consults {
            return Err(self.err(
                RulesErrorKind::Invalid,
                table.span(),
                field,
                "[llm_diagnosis] without a plan that consults the LLM".into(),
            ));
        }
        let mut actions = DiagnosisActions::ESCALATE_ALL;
        for (name, choice) in table.get_ref() {
            let at = format!("{field}.{name}");
            let diagnosis = Diagnosis::from_name(name).ok_or_else(|| {
                self.err(
                    RulesErrorKind::UnknownName,
                    choice.span(),
                    &at,
                    format!(
                        "unknown cause category {name:?} (expected one of {})",
                        Diagnosis::ALL.map(Diagnosis::name).join(", ")
                    ),
                )
            })?;
            let action = LlmChoice::from_name(choice.get_ref()).ok_or_else(|| {
                self.err(
                    RulesErrorKind::UnknownName,
                    choice.span(),
                    &at,
                    format!(
                        "unknown choice {:?} (expected restart_database_risky, clean_logs or escalate)",
                        choice.get_ref()
                    ),
                )
            })?;
            if diagnosis == Diagnosis::Unclear && action != LlmChoice::Escalate {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    choice.span(),
                    &at,
                    "an unclear diagnosis can only escalate".into(),
                ));
            }
            actions = actions.with(diagnosis, action);
        }
        if let Some(missing) = Diagnosis::ALL.into_iter().find(|d| !table.get_ref().contains_key(d.name())) {
            return Err(self.err(
                RulesErrorKind::Invalid,
                table.span(),
                field,
                format!("no action for the cause category {:?}", missing.name()),
            ));
        }
        Ok(actions)
    }

    fn regex(&self, p: &Spanned<String>, field: &str) -> Result<Regex, RulesError> {
        if p.get_ref().is_empty() {
            return Err(self.err(RulesErrorKind::BadRegex, p.span(), field, "empty pattern matches every line".into()));
        }
        let re = regex::RegexBuilder::new(p.get_ref())
            .size_limit(1 << 20)
            .build()
            .map_err(|e| self.err(RulesErrorKind::BadRegex, p.span(), field, regex_error(&e)))?;
        if re.is_match("") {
            return Err(self.err(
                RulesErrorKind::BadRegex,
                p.span(),
                field,
                "pattern matches the empty line, so every crash would match".into(),
            ));
        }
        Ok(re)
    }

    fn server_line(&self, p: &Spanned<String>) -> Result<Regex, RulesError> {
        let field = "server_log.line";
        let re = self.regex(p, field)?;
        let names: Vec<&str> = re.capture_names().flatten().collect();
        for group in ["severity", "message"] {
            if !names.contains(&group) {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    p.span(),
                    field,
                    format!("needs a named group `(?P<{group}>...)`"),
                ));
            }
        }
        if !p.get_ref().starts_with('^') {
            // Unanchored, a client's text inside a message (a user name, SQL)
            // could pose as a whole server line.
            return Err(self.err(
                RulesErrorKind::Invalid,
                p.span(),
                field,
                "must be anchored at the line start with `^`".into(),
            ));
        }
        Ok(re)
    }

    fn signature(&self, s: &Spanned<RawSignature>, i: usize) -> Result<Signature, RulesError> {
        let r = s.get_ref();
        let cause = RootCause::from_key(r.cause.get_ref()).filter(|c| *c != RootCause::Unknown).ok_or_else(|| {
            self.err(
                RulesErrorKind::UnknownName,
                r.cause.span(),
                &format!("signature[{i}].cause"),
                format!(
                    "unknown root cause {:?} (expected disk_full, config_error, oom_kill or data_corruption)",
                    r.cause.get_ref()
                ),
            )
        })?;
        let log_pattern = match &r.log_pattern {
            None => None,
            Some(p) => Some(self.regex(p, &format!("signature[{i}].log_pattern"))?),
        };
        let severities = match (&r.severities, &log_pattern) {
            (None, None) => Vec::new(),
            (None, Some(_)) => {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    s.span(),
                    &format!("signature[{i}].severities"),
                    "a log_pattern needs severities: the server's own lines it is tried on (e.g. [\"PANIC\", \"FATAL\"])"
                        .into(),
                ));
            }
            (Some(list), None) => {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    list.span(),
                    &format!("signature[{i}].severities"),
                    "severities without a log_pattern".into(),
                ));
            }
            (Some(list), Some(_)) => {
                let field = format!("signature[{i}].severities");
                if list.get_ref().is_empty() {
                    return Err(self.err(RulesErrorKind::Invalid, list.span(), &field, "no severities".into()));
                }
                let mut out = Vec::new();
                for sev in list.get_ref() {
                    let known = SERVER_SEVERITIES.iter().find(|k| **k == sev.get_ref().as_str()).ok_or_else(|| {
                        self.err(
                            RulesErrorKind::UnknownName,
                            sev.span(),
                            &field,
                            format!(
                                "{:?} is not a severity the server reports its own state with (expected one of {}; DETAIL, HINT, CONTEXT and STATEMENT lines quote client text)",
                                sev.get_ref(),
                                SERVER_SEVERITIES.join(", ")
                            ),
                        )
                    })?;
                    out.push(*known);
                }
                out
            }
        };
        let min_disk_used_pct = match &r.min_disk_used_pct {
            None => None,
            Some(p) => Some(self.pct(p, &format!("signature[{i}].min_disk_used_pct"))?),
        };
        if cause == RootCause::DiskFull && min_disk_used_pct.is_none() {
            // A log line is text anyone may have caused the server to write;
            // only the disk itself says it is full.
            return Err(self.err(
                RulesErrorKind::Invalid,
                s.span(),
                &format!("signature[{i}].min_disk_used_pct"),
                "a disk_full signature needs the disk's own evidence: min_disk_used_pct".into(),
            ));
        }
        let exit_code = match &r.exit_code {
            None => None,
            Some(c) => Some(self.int(c, &format!("signature[{i}].exit_code"), 0, 255)?),
        };
        if exit_code.is_none() && r.oom_killed.is_none() && log_pattern.is_none() && min_disk_used_pct.is_none() {
            return Err(self.err(
                RulesErrorKind::Invalid,
                s.span(),
                &format!("signature[{i}]"),
                "a signature needs at least one of exit_code, oom_killed, log_pattern, min_disk_used_pct".into(),
            ));
        }
        Ok(Signature { cause, exit_code, oom_killed: r.oom_killed, min_disk_used_pct, log_pattern, severities })
    }

    fn plan(&self, p: &Spanned<RawPlan>, i: usize) -> Result<(AlarmKind, Plan), RulesError> {
        let r = p.get_ref();
        let at = |field: &str| format!("plan[{i}].{field}");
        let cause = match &r.cause {
            None => None,
            Some(c) => Some(RootCause::from_key(c.get_ref()).ok_or_else(|| {
                self.err(
                    RulesErrorKind::UnknownName,
                    c.span(),
                    &at("cause"),
                    format!("unknown root cause {:?}", c.get_ref()),
                )
            })?),
        };
        let kind = match (r.alarm.get_ref().as_str(), cause) {
            ("WEB_LOG_SATURATION", None) => AlarmKind::WebLogSaturation,
            ("ZOMBIE_OUTBREAK", None) => AlarmKind::ZombieOutbreak,
            ("DB_CRASH", Some(c)) => AlarmKind::DbCrash(c),
            ("DB_CRASH", None) => {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    r.alarm.span(),
                    &at("cause"),
                    "DB_CRASH plans need a cause".into(),
                ));
            }
            ("WEB_LOG_SATURATION" | "ZOMBIE_OUTBREAK", Some(_)) => {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    r.alarm.span(),
                    &at("cause"),
                    "only DB_CRASH plans take a cause".into(),
                ));
            }
            (other, _) => {
                return Err(self.err(
                    RulesErrorKind::UnknownName,
                    r.alarm.span(),
                    &at("alarm"),
                    format!("unknown alarm {other:?} (expected WEB_LOG_SATURATION, ZOMBIE_OUTBREAK or DB_CRASH)"),
                ));
            }
        };
        let raw_steps = r.steps.get_ref();
        if raw_steps.is_empty() || raw_steps.len() > MAX_PLAN_STEPS {
            return Err(self.err(
                RulesErrorKind::Invalid,
                r.steps.span(),
                &at("steps"),
                format!("a plan has 1 to {MAX_PLAN_STEPS} steps, not {}", raw_steps.len()),
            ));
        }
        let mut steps = Vec::with_capacity(raw_steps.len());
        for s in raw_steps {
            let step = PlanStep::from_name(s.get_ref()).ok_or_else(|| {
                self.err(
                    RulesErrorKind::UnknownName,
                    s.span(),
                    &at("steps"),
                    format!(
                        "unknown action {:?} (expected one of clean_logs, prune_containers, restart_database_risky, verify, consult_llm, stop)",
                        s.get_ref()
                    ),
                )
            })?;
            steps.push((step, s.span()));
        }
        let last = steps.len() - 1;
        let mut cleaned = false;
        for (n, (step, span)) in steps.iter().enumerate() {
            let bad = |msg: &str| Err(self.err(RulesErrorKind::Invalid, span.clone(), &at("steps"), msg.to_string()));
            match step {
                PlanStep::Restart => {
                    if !matches!(kind, AlarmKind::DbCrash(_)) {
                        return bad("restart_database_risky is only for DB_CRASH");
                    }
                    if kind.cause().is_some_and(RootCause::forbids_restart) {
                        return bad("restarting on config error or data corruption is forbidden");
                    }
                    if kind == AlarmKind::DbCrash(RootCause::DiskFull) && !cleaned {
                        return bad("on a full disk, clean_logs must come before restart_database_risky");
                    }
                }
                PlanStep::CleanLogs => cleaned = true,
                PlanStep::PruneContainers if kind != AlarmKind::ZombieOutbreak => {
                    return bad("prune_containers is only for ZOMBIE_OUTBREAK");
                }
                PlanStep::ConsultLlm => {
                    if kind != AlarmKind::DbCrash(RootCause::Unknown) {
                        return bad("consult_llm is only for DB_CRASH with an unknown cause");
                    }
                    if n != last {
                        return bad("consult_llm must be the last step");
                    }
                }
                PlanStep::Stop if n != last => return bad("stop must be the last step"),
                _ => {}
            }
        }
        if !matches!(steps[last].0, PlanStep::Verify | PlanStep::Stop | PlanStep::ConsultLlm) {
            return Err(self.err(
                RulesErrorKind::Invalid,
                steps[last].1.clone(),
                &at("steps"),
                "a plan ends with verify, stop or consult_llm: nothing is resolved unverified".into(),
            ));
        }
        let consults = steps[last].0 == PlanStep::ConsultLlm;
        let llm_choices = match &r.llm_choices {
            None if consults => {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    p.span(),
                    &at("llm_choices"),
                    "consult_llm needs llm_choices".into(),
                ));
            }
            None => ChoiceSet::EMPTY,
            Some(_) if !consults => {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    p.span(),
                    &at("llm_choices"),
                    "llm_choices without consult_llm".into(),
                ));
            }
            Some(list) => {
                let mut set = ChoiceSet::EMPTY;
                for c in list.get_ref() {
                    let choice = LlmChoice::from_name(c.get_ref()).ok_or_else(|| {
                        self.err(
                            RulesErrorKind::UnknownName,
                            c.span(),
                            &at("llm_choices"),
                            format!(
                                "unknown choice {:?} (expected restart_database_risky, clean_logs or escalate)",
                                c.get_ref()
                            ),
                        )
                    })?;
                    set = set.with(choice);
                }
                if set == ChoiceSet::EMPTY {
                    return Err(self.err(
                        RulesErrorKind::Invalid,
                        list.span(),
                        &at("llm_choices"),
                        "no choices".into(),
                    ));
                }
                set
            }
        };
        Ok((kind, Plan { steps: steps.into_iter().map(|(s, _)| s).collect(), llm_choices }))
    }
}

/// The regex crate's error on one line: its last line says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let what = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid regex").trim();
    format!("invalid regex: {}", what.trim_start_matches("error: "))
}

fn valid_container_name(name: &str) -> bool {
    // Docker's own rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

fn valid_label(label: &str) -> bool {
    match label.split_once('=') {
        Some((k, v)) => !k.is_empty() && !v.is_empty() && !label.chars().any(char::is_whitespace),
        None => false,
    }
}

/// Paths `clean_logs` may touch must be narrow: absolute, normalised, and
/// never the root or a system directory.
fn check_log_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must be an absolute path");
    }
    if p.split('/').any(|c| c == ".." || c == ".") || p.contains("//") {
        return Err("must be normalised (no `.`, `..` or `//`)");
    }
    let trimmed = p.trim_end_matches('/');
    const TOO_WIDE: [&str; 9] =
        ["", "/var", "/var/lib", "/etc", "/usr", "/bin", "/root", "/home", "/var/lib/postgresql"];
    if TOO_WIDE.contains(&trimmed) {
        return Err("too wide: cleaning there could destroy data");
    }
    Ok(())
}

/// Whether `path` lies strictly below the directory `dir` (a trailing `/`
/// on `dir` is ignored); `dir` itself is not below itself.
pub fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Where PostgreSQL keeps its data when nobody says otherwise (Debian's
/// clusters and the official image's `PGDATA` both live below it).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/postgresql";

/// Whether the directory `outer` is `inner` or one of its parents.
pub fn holds(outer: &str, inner: &str) -> bool {
    let outer = outer.trim_end_matches('/');
    inner.trim_end_matches('/') == outer || is_under(inner, outer)
}

/// The first log path that holds a database's data directory (one of
/// `data_dirs`, or [`DEFAULT_DATA_ROOT`]), with that directory: cleaning
/// there could destroy data, so it is refused.
pub fn log_path_holding_data<'a>(log_paths: &'a [String], data_dirs: &[&str]) -> Option<(&'a str, String)> {
    let dirs: Vec<&str> = data_dirs.iter().copied().filter(|d| d.starts_with('/')).chain([DEFAULT_DATA_ROOT]).collect();
    log_paths.iter().find_map(|p| dirs.iter().find(|d| holds(p, d)).map(|d| (p.as_str(), d.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Rules, RulesError> {
        Rules::from_toml_str(text, Path::new("test.toml"))
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(DEFAULT_RULES.contains(replace), "test fixture out of date: {replace}");
        DEFAULT_RULES.replacen(replace, by, 1)
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn default_rules_load_and_cover_every_alarm() {
        let rules = Rules::default_rules();
        assert_eq!(rules.thresholds.web_disk_pct, 85.0);
        assert_eq!(rules.thresholds.clean_success_pct, 80.0);
        assert_eq!(rules.thresholds.zombie_max, 5);
        for cause in RootCause::ALL {
            assert!(rules.plan(AlarmKind::DbCrash(cause)).is_some(), "{cause:?}");
        }
        assert!(rules.plan(AlarmKind::WebLogSaturation).is_some());
        assert!(rules.plan(AlarmKind::ZombieOutbreak).is_some());
        let order: Vec<_> = rules.signatures.iter().map(|s| s.cause).collect();
        assert_eq!(order, [RootCause::DiskFull, RootCause::ConfigError, RootCause::OomKill, RootCause::DataCorruption]);
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let text = with("zombie_max = 5", "zombie_max = 5\nzombie_maximum = 7");
        let e = load(&text).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::Syntax);
        assert_eq!(e.field.as_deref(), Some("zombie_maximum"));
        assert_eq!(e.line, Some(line_of(&text, "zombie_maximum")));
        assert!(e.to_string().starts_with("test.toml:"), "{e}");
    }

    #[test]
    fn bad_regex_names_line_and_field() {
        let text = with("log_pattern = '^could not [a-z ]+ ", "log_pattern = 'No space (left");
        let e = load(&text).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::BadRegex);
        assert_eq!(e.field.as_deref(), Some("signature[0].log_pattern"));
        assert_eq!(e.line, Some(line_of(&text, "No space (left")));
    }

    // Issue #8, item 1: signatures say which of the server's own lines they
    // read, and a full disk needs the disk's evidence.
    #[test]
    fn a_log_pattern_needs_server_severities() {
        let text = with("severities = [\"PANIC\", \"FATAL\"]\nmin_disk", "min_disk");
        let e = load(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("signature[0].severities"));
        let text =
            with("severities = [\"PANIC\", \"FATAL\"]\nmin_disk", "severities = [\"PANIC\", \"STATEMENT\"]\nmin_disk");
        let e = load(&text).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::UnknownName);
        assert!(e.message.contains("client text"), "{e}");
        assert_eq!(e.line, Some(line_of(&text, "\"STATEMENT\"]")));
    }

    #[test]
    fn disk_full_needs_the_disk_usage_condition() {
        let text = with("min_disk_used_pct = 85.0\n", "");
        let e = load(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("signature[0].min_disk_used_pct"));
        let text = with("min_disk_used_pct = 85.0", "min_disk_used_pct = 0.0");
        assert_eq!(load(&text).unwrap_err().kind, RulesErrorKind::OutOfRange);
    }

    #[test]
    fn server_line_needs_its_groups_and_an_anchor() {
        let line = Rules::default_rules().server_line.as_str().to_string();
        let text = with(&line, &line.replace("?P<message>", ""));
        assert!(load(&text).unwrap_err().message.contains("(?P<message>"));
        let text = with(&line, &line[1..]);
        assert!(load(&text).unwrap_err().message.contains("anchored"));
    }

    #[test]
    fn threshold_out_of_range_names_line_and_field() {
        let text = with("web_disk_pct = 85.0", "web_disk_pct = 185.0");
        let e = load(&text).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::OutOfRange);
        assert_eq!(e.field.as_deref(), Some("thresholds.web_disk_pct"));
        assert_eq!(e.line, Some(line_of(&text, "web_disk_pct")));
    }

    #[test]
    fn unknown_action_names_line_and_field() {
        let text = with(r#"steps = ["prune_containers", "verify"]"#, r#"steps = ["prune_containers", "rm_rf"]"#);
        let e = load(&text).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::UnknownName);
        assert_eq!(e.field.as_deref(), Some("plan[1].steps"));
        assert_eq!(e.line, Some(line_of(&text, "rm_rf")));
        assert!(e.message.contains("rm_rf"));
    }

    #[test]
    fn restart_on_config_error_is_rejected() {
        let text = with(
            "cause = \"config_error\"\nsteps = [\"stop\"]",
            "cause = \"config_error\"\nsteps = [\"restart_database_risky\", \"verify\"]",
        );
        let e = load(&text).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::Invalid);
        assert!(e.message.contains("forbidden"), "{e}");
    }

    #[test]
    fn restart_before_clean_on_disk_full_is_rejected() {
        let text = with(
            r#"steps = ["clean_logs", "verify", "restart_database_risky", "verify"]"#,
            r#"steps = ["restart_database_risky", "clean_logs", "verify"]"#,
        );
        let e = load(&text).unwrap_err();
        assert!(e.message.contains("clean_logs must come before"), "{e}");
    }

    #[test]
    fn plan_must_end_verified() {
        let text = with(r#"steps = ["prune_containers", "verify"]"#, r#"steps = ["prune_containers"]"#);
        assert!(load(&text).unwrap_err().message.contains("ends with verify"));
    }

    #[test]
    fn too_wide_log_path_is_rejected() {
        let text = with(r#"log_paths = ["/var/log"]"#, r#"log_paths = ["/var/lib/postgresql"]"#);
        let e = load(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("database.log_paths"));
        let text = with(r#"log_paths = ["/var/log/nginx"]"#, r#"log_paths = ["/var/log/../lib"]"#);
        assert!(load(&text).is_err());
    }

    /// Issue 8 item 12: a log path holding the database's data directory is
    /// refused at load; the lab's `/var/log` beside `/var/lib/postgresql/data`
    /// stays valid.
    #[test]
    fn log_path_holding_the_data_directory_is_rejected() {
        assert!(load(DEFAULT_RULES).is_ok());
        let moved = with(r#"disk_path = "/var/lib/postgresql/data""#, r#"disk_path = "/srv/pg/data""#);
        assert!(load(&moved).is_ok());
        for bad in ["/srv/pg", "/srv/pg/data", "/srv"] {
            let text =
                moved.replacen(r#"log_paths = ["/var/log"]"#, &format!(r#"log_paths = ["/var/log", "{bad}"]"#), 1);
            let e = load(&text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("database.log_paths"), "{bad}: {e}");
            assert!(e.message.contains("data directory"), "{bad}: {e}");
        }
        let text = with(r#"log_paths = ["/var/log"]"#, r#"log_paths = ["/var/lib/postgresql/data"]"#);
        assert!(load(&text).unwrap_err().message.contains("data directory"));
        // A log directory inside the data directory holds only logs.
        let text = moved.replacen(r#"log_paths = ["/var/log"]"#, r#"log_paths = ["/srv/pg/data/log"]"#, 1);
        assert!(load(&text).is_ok());
    }

    #[test]
    fn missing_section_is_a_syntax_error() {
        let text = DEFAULT_RULES.replace("[limits]\nmax_steps = 12", "");
        let e = load(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits"));
    }

    #[test]
    fn not_toml_is_a_clear_error() {
        let e = load("[thresholds\nweb = ").unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::Syntax);
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn llm_diagnoses_the_facts_contradict_escalate() {
        let rules = Rules::default_rules();
        let killed = Evidence {
            exit_code: Some(137),
            oom_killed: Some(false),
            disk_used_pct: Some(40.0),
            ..Evidence::default()
        };
        assert_eq!(rules.llm_action(Diagnosis::KilledOnce, &killed), Ok(LlmChoice::Restart));
        assert!(rules.llm_action(Diagnosis::LogFlood, &killed).is_err(), "disk at 40 %");
        let full = Evidence { disk_used_pct: Some(96.0), ..killed.clone() };
        assert_eq!(rules.llm_action(Diagnosis::LogFlood, &full), Ok(LlmChoice::CleanLogs));
        let exit1 = Evidence { exit_code: Some(1), ..killed.clone() };
        assert!(rules.llm_action(Diagnosis::KilledOnce, &exit1).is_err());
        let panicked = Evidence { log_tail: vec!["PANIC:  could not fsync file".into()], ..killed.clone() };
        assert!(rules.llm_action(Diagnosis::KilledOnce, &panicked).is_err());
        let oom = Evidence { oom_killed: Some(true), ..killed.clone() };
        assert!(rules.llm_action(Diagnosis::KilledOnce, &oom).is_err());
        assert_eq!(rules.llm_action(Diagnosis::DeliberateStop, &full), Ok(LlmChoice::Escalate));
        assert_eq!(rules.llm_action(Diagnosis::Unclear, &full), Ok(LlmChoice::Escalate));
    }
}
