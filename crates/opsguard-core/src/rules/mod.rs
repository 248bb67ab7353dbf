//! Rules as data: loading, validating and compiling `rules/*.toml`.
//!
//! Thresholds, root-cause signatures and the decision table are data so an
//! operator can read and change them; validation happens once, at load time,
//! and every error names the file, the line and the field. What validation
//! accepts can still never make the engine unsafe: the safety rules
//! ([`crate::safety`]: no restart on config error or data corruption, clean
//! before restart on a full disk, narrow log paths) are checked here and
//! again in [`crate::engine`] by the same functions, whatever the rules say.
//!
//! A rules file is partial: it names what it changes and the built-in
//! defaults ([`DEFAULT_RULES`]) give the rest (`merge`: tables merge key by
//! key, arrays replace as a whole). A complete file is a partial file that
//! names everything.
//!
//! `schema` is the file as written, `merge` lays it over the defaults,
//! `compile` turns the result into [`Rules`], and `error` says what was
//! wrong and where; this module holds the compiled types the engine reads.

mod compile;
mod error;
mod merge;
mod schema;

use std::fmt::Write as _;
use std::path::Path;

use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

pub use self::error::{RulesError, RulesErrorKind};
use crate::model::{AlarmKind, ChoiceSet, ContainerName, Diagnosis, Evidence, LlmChoice, RootCause};
pub use crate::stateless::StatelessSettings;

/// The default rules, compiled into the binary: the specification's
/// decision tree.
pub const DEFAULT_RULES: &str = include_str!("../../../../rules/default.toml");

/// `observer.disk_watch_ms` when the rules leave it out: the web log
/// disk read twice a second (issue #12: saturation seen within 2 s).
pub const DEFAULT_DISK_WATCH_MS: u64 = 500;
/// `observer.verify_interval_ms` when the rules leave it out: a fix is
/// re-checked four times a second until it is confirmed (issue #12).
pub const DEFAULT_VERIFY_INTERVAL_MS: u64 = 250;
/// `thresholds.web_disk_fill_horizon_secs` when left out: ten minutes.
pub const DEFAULT_FILL_HORIZON_SECS: u64 = 600;
/// `thresholds.web_disk_fill_window_secs` when left out: a minute.
pub const DEFAULT_FILL_WINDOW_SECS: u64 = 60;

/// Longest plan accepted; keeps every incident bounded.
pub const MAX_PLAN_STEPS: usize = 16;

/// Thresholds from the specification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Web log disk usage that raises `WEB_LOG_SATURATION`, percent.
    pub web_disk_pct: f64,
    /// Disk usage below which `clean_logs` counts as a success, percent.
    pub clean_success_pct: f64,
    /// More exited containers than this raise `ZOMBIE_OUTBREAK`.
    pub zombie_max: u32,
    /// `WEB_LOG_DISK_FILLING` when the web log disk, at its measured fill
    /// rate, crosses `web_disk_pct` within this many seconds; 0: never.
    pub web_disk_fill_horizon_secs: u64,
    /// The fill rate is fitted to the readings of this many seconds.
    pub web_disk_fill_window_secs: u64,
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
    /// How often the web log disk is read between sweeps, where the host
    /// can read it without starting anything (a `statvfs` of the volume's
    /// host path), in milliseconds; 0 leaves it to the sweeps.
    pub disk_watch_ms: u64,
    /// How soon a fix under verification is checked again, in
    /// milliseconds (the rapid sweeps keep `rapid_interval_secs`). A
    /// confirmation still takes `stable_checks` good checks in a row of
    /// the same run, within the rapid window.
    pub verify_interval_ms: u64,
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
    pub log_pattern: Option<LogPattern>,
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

/// A signature's regex, with the literals every match of it starts with.
///
/// Most log lines are nothing a signature looks for, and finding a line's
/// message ([`Rules::server_line`]) costs a regex search over the whole
/// line; a search for these literals is several times cheaper and rules most
/// lines out. The two are built together from one pattern text with the
/// regex crate's default syntax, so the literals cannot disagree with the
/// regex (a `Regex` built elsewhere, say with case-insensitivity turned on
/// in its builder, would not show that in its text).
#[derive(Clone, Debug)]
pub struct LogPattern {
    regex: Regex,
    /// `None` when some match may start with any text (the literals would
    /// rule nothing out).
    starts: Option<regex::bytes::Regex>,
}

impl LogPattern {
    /// Compiles `pattern` as the rules do.
    pub fn new(pattern: &str) -> Result<LogPattern, regex::Error> {
        build_regex(pattern).map(LogPattern::from_built)
    }

    /// `regex` must come from [`build_regex`] (the default syntax).
    pub(super) fn from_built(regex: Regex) -> LogPattern {
        LogPattern { starts: match_starts(regex.as_str()), regex }
    }

    /// The regex.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the regex matches `message`.
    pub fn is_match(&self, message: &str) -> bool {
        self.regex.is_match(message)
    }

    /// False only when no part of `text` can match: `text` holds none of
    /// the literals a match starts with.
    pub fn may_match_within(&self, text: &str) -> bool {
        self.starts.as_ref().is_none_or(|starts| starts.is_match(text.as_bytes()))
    }
}

/// Every regex of the rules is built here: the default syntax, with a cap
/// on its compiled size.
pub(super) fn build_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build()
}

/// A search for the literals every match of `pattern` starts with
/// (regex-syntax's prefix extraction, the one the regex crate's own
/// prefilters use); `None` when there is no such finite set of non-empty
/// literals. The literals go back into a regex of their own, an alternation
/// the regex crate searches with its SIMD multi-literal searcher; they are
/// written byte by byte since one cut at the extractor's length limit may
/// end inside a character.
fn match_starts(pattern: &str) -> Option<regex::bytes::Regex> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    let mut alternation = String::from("(?-u:");
    for (i, l) in literals.iter().enumerate() {
        if i > 0 {
            alternation.push('|');
        }
        for b in l.as_bytes() {
            let _ = write!(alternation, "\\x{b:02x}");
        }
    }
    alternation.push(')');
    regex::bytes::RegexBuilder::new(&alternation).size_limit(1 << 20).build().ok()
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
    /// Label (`key=value`) that scopes every change; a prune also needs
    /// `opsguard.prune=true` on the container.
    pub scope_label: String,
    /// Stateless services found by their labels, and how they are healed.
    pub stateless: StatelessSettings,
    /// The web service.
    pub web: Target,
    /// The database.
    pub database: Target,
    /// What a line the server wrote about itself looks like; its
    /// `severity` and `message` groups are what signatures read.
    pub server_line: Regex,
    /// Root-cause signatures, in order.
    pub signatures: Vec<Signature>,
    plans: Plans,
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

    /// The action for `diagnosis`.
    pub fn action(&self, diagnosis: Diagnosis) -> LlmChoice {
        self.0[diagnosis.index()]
    }

    /// The table with `diagnosis` leading to `choice`; `unclear` always
    /// escalates, whatever is asked.
    pub fn with(mut self, diagnosis: Diagnosis, choice: LlmChoice) -> DiagnosisActions {
        if diagnosis != Diagnosis::Unclear {
            self.0[diagnosis.index()] = choice;
        }
        self
    }
}

impl Default for DiagnosisActions {
    fn default() -> Self {
        DiagnosisActions::ESCALATE_ALL
    }
}

/// Rules from a file laid over the built-in defaults, with the document
/// they came from: what `opsguard rules check` and `rules show` report.
#[derive(Clone, Debug)]
pub struct EffectiveRules {
    /// The compiled rules.
    pub rules: Rules,
    /// The settings the file names, dotted (`thresholds.zombie_max`); an
    /// array such as `plan` is one setting.
    pub from_file: Vec<String>,
    document: toml::Table,
}

/// The top-level sections, in the order the defaults write them.
const SECTIONS: [&str; 12] = [
    "thresholds",
    "observer",
    "restart_budget",
    "limits",
    "scope",
    "stateless",
    "web",
    "database",
    "server_log",
    "signature",
    "plan",
    "llm_diagnosis",
];

impl EffectiveRules {
    /// Lays `text` over the built-in defaults and validates the result, as
    /// [`Rules::from_toml_str`] does.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<EffectiveRules, RulesError> {
        let c = compile::parse(text, file)?;
        Ok(EffectiveRules { rules: c.rules, from_file: c.named, document: c.effective })
    }

    /// The effective rules as a complete rules file, sections in the
    /// defaults' order (keys within a section sorted); loaded again it gives
    /// the same rules.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let known = SECTIONS.iter().filter_map(|k| self.document.get_key_value(*k));
        let others = self.document.iter().filter(|(k, _)| !SECTIONS.contains(&k.as_str()));
        let mut out = String::new();
        for (key, value) in known.chain(others) {
            let mut one = toml::Table::new();
            one.insert(key.clone(), value.clone());
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&toml::to_string(&one)?);
        }
        Ok(out)
    }
}

/// The plans, one place per alarm kind, at its [`AlarmKind::index`] in an
/// array sized by [`AlarmKind::ALL`] (a database crash once per cause): a
/// new alarm kind has its place without a slot written by hand.
#[derive(Clone, Debug, Default)]
struct Plans([Option<Plan>; AlarmKind::ALL.len()]);

impl Plans {
    fn slot(&self, kind: AlarmKind) -> Option<&Plan> {
        self.0.get(kind.index()).and_then(Option::as_ref)
    }

    /// Sets `kind`'s plan; `false` when it already had one.
    fn set(&mut self, kind: AlarmKind, plan: Plan) -> bool {
        match self.0.get_mut(kind.index()) {
            Some(slot @ None) => {
                *slot = Some(plan);
                true
            }
            _ => false,
        }
    }

    /// Every plan the rules have.
    fn iter(&self) -> impl Iterator<Item = &Plan> {
        self.0.iter().flatten()
    }
}

impl Rules {
    /// The built-in rules ([`DEFAULT_RULES`]).
    pub fn default_rules() -> Rules {
        // The default rules are covered by tests; failing here is a build bug.
        Rules::from_toml_str(DEFAULT_RULES, Path::new("<default rules>")).expect("the built-in default rules are valid")
    }

    /// Parses rules text, lays it over the built-in defaults and validates
    /// the result; `file` names the text in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Rules, RulesError> {
        compile::parse(text, file).map(|c| c.rules)
    }

    /// The plan for an alarm, if the rules have one.
    pub fn plan(&self, kind: AlarmKind) -> Option<&Plan> {
        self.plans.slot(kind)
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
    /// from outside (exit 137 or 255), no OOM kill, the disk below that
    /// level, and no ERROR, FATAL or PANIC line from the server. Other categories are taken as they come: they
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
                // A kill with a full disk, or after the server reported
                // errors, may have a cause a restart brings back: a human
                // looks. A safe miss (escalate) rather than a blind restart.
                if let Some(p) = evidence.disk_used_pct.filter(|p| p.is_finite() && *p >= self.thresholds.web_disk_pct)
                {
                    return Err(format!(
                        "killed-once with the disk at {p:.0} %, at or above {:.0} %",
                        self.thresholds.web_disk_pct
                    ));
                }
                let severe = |l: &String| l.contains("PANIC:  ") || l.contains("FATAL:  ") || l.contains("ERROR:  ");
                if evidence.log_tail.iter().chain(&evidence.log_lines).any(severe) {
                    return Err("killed-once but the server logged an ERROR, FATAL or PANIC".into());
                }
            }
            _ => {}
        }
        Ok(self.llm_diagnosis.action(diagnosis))
    }
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

    // Issue 10, item 5: a file without a section takes the defaults' one.
    #[test]
    fn a_missing_section_comes_from_the_defaults() {
        let text = DEFAULT_RULES.replace("[limits]\nmax_steps = 12", "");
        assert_eq!(load(&text).unwrap().max_steps, 12);
    }

    fn effective(text: &str) -> EffectiveRules {
        EffectiveRules::from_toml_str(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The defaults as `rules show` prints them, with the setting at `path`
    /// (dotted through tables) replaced by its value in `file`.
    fn defaults_with(file: &str, path: &[&str]) -> String {
        let file: toml::Table = toml::from_str(file).unwrap();
        let mut document = effective(DEFAULT_RULES).document;
        let (last, tables) = path.split_last().unwrap();
        let (mut from, mut to) = (&file, &mut document);
        for k in tables {
            from = from[*k].as_table().unwrap();
            to = to.get_mut(*k).unwrap().as_table_mut().unwrap();
        }
        to.insert(last.to_string(), from[*last].clone());
        EffectiveRules { rules: Rules::default_rules(), from_file: Vec::new(), document }.to_toml().unwrap()
    }

    // Issue 10, item 5: a user file overrides only what it names.
    #[test]
    fn a_partial_file_changes_one_threshold_and_nothing_else() {
        let text = "# only this\n[thresholds]\nzombie_max = 9\n";
        let e = effective(text);
        let d = Rules::default_rules();
        assert_eq!(e.rules.thresholds, Thresholds { zombie_max: 9, ..d.thresholds });
        assert_eq!(e.from_file, ["thresholds.zombie_max"]);
        assert_eq!(e.to_toml().unwrap(), defaults_with(text, &["thresholds", "zombie_max"]));
        assert_eq!((e.rules.observer, e.rules.restart_budget, e.rules.max_steps), (d.observer, d.restart_budget, 12));
        assert_eq!((&e.rules.scope_label, &e.rules.web, &e.rules.database), (&d.scope_label, &d.web, &d.database));
        assert_eq!(e.rules.server_line.as_str(), d.server_line.as_str());
        let described = |r: &Rules| r.signatures.iter().map(|s| (s.cause, s.describe())).collect::<Vec<_>>();
        assert_eq!(described(&e.rules), described(&d));
        for kind in AlarmKind::ALL {
            assert_eq!(e.rules.plan(kind), d.plan(kind), "{kind}");
        }
        assert_eq!(e.rules.llm_diagnosis, d.llm_diagnosis);
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let defaults = effective(DEFAULT_RULES).to_toml().unwrap();
        for empty in ["", "\n\n", "# nothing to change\n"] {
            let e = effective(empty);
            assert!(e.from_file.is_empty(), "{:?}", e.from_file);
            assert_eq!(e.to_toml().unwrap(), defaults);
        }
    }

    #[test]
    fn an_unknown_key_in_a_partial_file_names_its_line() {
        let text = "# mine\n[observer]\ninterval_secs = 10\nrapid_intervall_secs = 1\n";
        let e = load(text).unwrap_err();
        assert_eq!(
            (&e.kind, e.line, e.field.as_deref()),
            (&RulesErrorKind::Syntax, Some(4), Some("rapid_intervall_secs"))
        );
        assert!(e.to_string().starts_with("test.toml:4:1: "), "{e}");
        let e = load("\n[thresholdz]\nzombie_max = 1\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("thresholdz")), "{e}");
        let e = load("[[plan]]\nalarm = \"ZOMBIE_OUTBREAK\"\nsteps = [\"prune_containers\", \"verify\"]\nstep = 1\n")
            .unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(4), Some("step")), "{e}");
    }

    #[test]
    fn a_type_error_in_a_partial_file_names_its_line() {
        let e = load("[restart_budget]\n\nmax_restarts = \"three\"\n").unwrap_err();
        assert_eq!((&e.kind, e.line), (&RulesErrorKind::Syntax, Some(3)), "{e}");
        assert_eq!(e.field.as_deref(), Some("restart_budget.max_restarts"));
        let e = load("\nthresholds = 5\n").unwrap_err();
        assert_eq!((&e.kind, e.line), (&RulesErrorKind::Syntax, Some(2)), "{e}");
        let e = load("[web]\nlog_paths = \"/var/log/nginx\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn a_check_across_settings_points_at_the_files_one() {
        let e = load("[thresholds]\nweb_disk_pct = 70.0\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("thresholds.web_disk_pct")), "{e}");
        let e = load("[web]\ncontainer = \"db-prod\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("web.container")), "{e}");
        let e = load("[database]\ndisk_path = \"/var/log/pg\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("database.disk_path")), "{e}");
        assert!(e.message.contains("data directory"), "{e}");
    }

    #[test]
    fn arrays_replace_as_a_whole() {
        let e = effective("[[signature]]\ncause = \"oom_kill\"\nexit_code = 137\noom_killed = true\n");
        assert_eq!(e.rules.signatures.iter().map(|s| s.cause).collect::<Vec<_>>(), [RootCause::OomKill]);
        assert_eq!(e.from_file, ["signature"]);
        // Plans that consult no LLM: the defaults' [llm_diagnosis] stays out,
        // and one the file writes itself is still refused.
        let plans = "[[plan]]\nalarm = \"ZOMBIE_OUTBREAK\"\nsteps = [\"prune_containers\", \"verify\"]\n";
        let e = effective(plans);
        assert!(e.rules.plan(AlarmKind::WebLogSaturation).is_none());
        assert_eq!(e.rules.llm_diagnosis, DiagnosisActions::ESCALATE_ALL);
        assert!(!e.to_toml().unwrap().contains("llm_diagnosis"));
        let e = load(&format!("{plans}[llm_diagnosis]\nunclear = \"escalate\"\n")).unwrap_err();
        assert!(e.message.contains("without a plan that consults"), "{e}");
    }

    /// Every top-level section: as the defaults write it, alone in a file,
    /// it changes nothing; with one setting changed, it changes exactly
    /// that setting.
    #[test]
    fn each_section_alone_overrides_only_itself() {
        let cases: [(&str, &[&str]); 12] = [
            ("[thresholds]\nzombie_max = 9\n", &["thresholds", "zombie_max"]),
            ("[observer]\ninterval_secs = 10\n", &["observer", "interval_secs"]),
            ("[restart_budget]\nmax_restarts = 1\n", &["restart_budget", "max_restarts"]),
            ("[limits]\nmax_steps = 20\n", &["limits", "max_steps"]),
            ("[scope]\nlabel = \"team=ops\"\n", &["scope", "label"]),
            ("[stateless]\nmax_restarts = 2\n", &["stateless", "max_restarts"]),
            ("[web]\ncontainer = \"nginx-1\"\n", &["web", "container"]),
            ("[database]\nlog_paths = [\"/var/log/postgresql\"]\n", &["database", "log_paths"]),
            ("[server_log]\nline = '^(?P<severity>[A-Z]+):  (?P<message>.*)$'\n", &["server_log", "line"]),
            ("[[signature]]\ncause = \"oom_kill\"\nexit_code = 137\noom_killed = true\n", &["signature"]),
            (
                "[[plan]]\nalarm = \"DB_CRASH\"\ncause = \"unknown\"\nsteps = [\"consult_llm\"]\nllm_choices = [\"escalate\"]\n",
                &["plan"],
            ),
            ("[llm_diagnosis]\nkilled-once = \"escalate\"\n", &["llm_diagnosis", "killed-once"]),
        ];
        let defaults = effective(DEFAULT_RULES);
        let shown = defaults.to_toml().unwrap();
        let mut sections: Vec<&str> = defaults.document.keys().map(String::as_str).collect();
        let mut covered: Vec<&str> = cases.iter().map(|(_, path)| path[0]).collect();
        assert_eq!(covered, SECTIONS);
        sections.sort_unstable();
        covered.sort_unstable();
        assert_eq!(sections, covered, "a section of the defaults without a case here");
        for (file, path) in cases {
            let section = path[0];
            let mut alone = toml::Table::new();
            alone.insert(section.to_string(), defaults.document[section].clone());
            let alone = toml::to_string(&alone).unwrap();
            assert_eq!(effective(&alone).to_toml().unwrap(), shown, "{section} as the defaults write it");
            let e = effective(file);
            assert_eq!(e.to_toml().unwrap(), defaults_with(file, path), "{file}");
            assert_eq!(e.from_file, [path.join(".")]);
        }
    }

    #[test]
    fn the_effective_rules_load_back_as_themselves() {
        for text in ["", DEFAULT_RULES, "[thresholds]\nzombie_max = 9\n", "[web]\nlog_paths = ['/srv/log']\n"] {
            let shown = effective(text).to_toml().unwrap();
            let again = effective(&shown);
            assert_eq!(again.to_toml().unwrap(), shown, "{text}");
            assert_eq!(again.rules.web, effective(text).rules.web);
        }
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
        // A full disk or a server error is a cause a restart may bring back.
        assert!(rules.llm_action(Diagnosis::KilledOnce, &full).is_err(), "disk at 96 %");
        let at_threshold = Evidence { disk_used_pct: Some(85.0), ..killed.clone() };
        assert!(rules.llm_action(Diagnosis::KilledOnce, &at_threshold).is_err(), "disk at 85 %");
        let errored = Evidence { log_lines: vec!["ERROR:  out of memory".into()], ..killed.clone() };
        assert!(rules.llm_action(Diagnosis::KilledOnce, &errored).is_err());
        let routine =
            Evidence { log_tail: vec!["LOG:  checkpoint complete: wrote 3 buffers".into()], ..killed.clone() };
        assert_eq!(rules.llm_action(Diagnosis::KilledOnce, &routine), Ok(LlmChoice::Restart));
        assert_eq!(rules.llm_action(Diagnosis::DeliberateStop, &full), Ok(LlmChoice::Escalate));
        assert_eq!(rules.llm_action(Diagnosis::Unclear, &full), Ok(LlmChoice::Escalate));
    }

    // Issue 12, item 5: the literals rule out the lines the default
    // signatures cannot match, and only where a match could not start there.
    #[test]
    fn log_patterns_rule_out_lines_without_their_literals() {
        let noise = "2026-11-27 08:00:00.000 UTC [1000] LOG:  duration: 0.042 ms  statement: SELECT 1";
        let rules = Rules::default_rules();
        for p in rules.signatures.iter().filter_map(|s| s.log_pattern.as_ref()) {
            assert!(!p.may_match_within(noise), "{}", p.as_str());
        }
        let corruption = rules.signatures[3].log_pattern.as_ref().unwrap();
        assert!(corruption.may_match_within("x ERROR:  could not access status of transaction 7"));
        assert!(corruption.may_match_within("PANIC:  invalid secondary checkpoint record"));
        // Case-insensitive: every folding of the literal.
        let folded = LogPattern::new("(?i)no space").unwrap();
        assert!(folded.may_match_within("FATAL:  NO SPACE") && !folded.may_match_within("FATAL:  no room"));
        // A match may start with any text: nothing is ruled out.
        for anywhere in [r"^\w+ failed", r"^.{3}ld not", r"x*\b"] {
            assert!(LogPattern::new(anywhere).unwrap().may_match_within(noise), "{anywhere}");
        }
    }
}
