//! Validation: from the raw file ([`super::schema`]) to compiled [`Rules`],
//! refusing anything out of range, unknown, or against a safety rule
//! ([`crate::safety`]) with an error that names the line and the field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use regex::Regex;
use serde::Deserialize as _;
use toml::Spanned;

use super::error::{RulesError, RulesErrorKind};
use super::merge::{self, Layers, Merged};
use super::schema::{RawPlan, RawRules, RawSignature, RawTarget};
use super::{
    DEFAULT_DISK_WATCH_MS, DEFAULT_FILL_HORIZON_SECS, DEFAULT_FILL_WINDOW_SECS, DEFAULT_RULES,
    DEFAULT_VERIFY_INTERVAL_MS, DiagnosisActions, LogPattern, MAX_PLAN_STEPS, ObserverSettings, Plan, PlanStep, Plans,
    RestartBudget, Rules, SERVER_SEVERITIES, Signature, StatelessSettings, Target, Thresholds, build_regex,
};
use crate::model::{AlarmKind, ChoiceSet, ContainerName, Diagnosis, LlmChoice, RootCause};
use crate::safety::{self, RestartRefusal};

/// Parses `text` laid over the built-in defaults ([`super::merge`]) and
/// validates the result; `file` names `text` in errors.
pub(super) fn parse(text: &str, file: &Path) -> Result<Compiled, RulesError> {
    let layers = Layers { user: text };
    let source = Source { text, file, layers };
    let merged = merge::merge(text, DEFAULT_RULES).map_err(|e| source.toml_error(&e))?;
    let Merged { doc, named } = merged;
    let raw = RawRules::deserialize(toml::de::Deserializer::from(doc.clone())).map_err(|e| source.toml_error(&e))?;
    let effective = toml::Table::deserialize(toml::de::Deserializer::from(doc)).map_err(|e| source.toml_error(&e))?;
    Ok(Compiled { rules: source.compile(raw)?, effective, named })
}

/// Rules compiled from a file, with the document they came from.
pub(super) struct Compiled {
    pub(super) rules: Rules,
    /// The effective document: the file over the defaults.
    pub(super) effective: toml::Table,
    /// The settings the file names, dotted.
    pub(super) named: Vec<String>,
}

fn field_from_message(msg: &str) -> Option<String> {
    // serde says "unknown field `x`" / "missing field `x`"; surface the name.
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// The text being compiled and its file's name, for errors that point into it.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
    layers: Layers<'a>,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let col = offset - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        (line, col)
    }

    /// A TOML error (syntax, unknown or missing key, wrong type) as a
    /// rules error, at its place in the user's file.
    fn toml_error(&self, e: &toml::de::Error) -> RulesError {
        let at = e.span().and_then(|s| self.layers.in_user(&s));
        let (line, column) = at.as_ref().map(|s| self.line_col(s.start)).unzip();
        let field = field_from_message(e.message()).or_else(|| at.and_then(|s| self.key_at(s.start)));
        RulesError {
            kind: RulesErrorKind::Syntax,
            file: self.file.to_path_buf(),
            line,
            column,
            field,
            message: e.message().trim().to_string(),
        }
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

    /// An error at `span`. A span outside the user's file is a built-in
    /// default the file left alone (a check across two settings, one of
    /// them the file's): the error names the file and the field, without a
    /// line, and says so.
    fn err(&self, kind: RulesErrorKind, span: Range<usize>, field: &str, message: String) -> RulesError {
        let (line, column, message) = match self.layers.in_user(&span) {
            Some(s) => {
                let (line, column) = self.line_col(s.start);
                (Some(line), Some(column), message)
            }
            None => (None, None, format!("{message} (`{field}` is a built-in default this file does not set)")),
        };
        RulesError { kind, file: self.file.to_path_buf(), line, column, field: Some(field.to_string()), message }
    }

    /// Of two settings checked against each other, the one the user's file
    /// sets (the first when it sets both or neither), for the error to
    /// point at.
    fn users<'s>(&self, a: (&'s str, Range<usize>), b: (&'s str, Range<usize>)) -> (&'s str, Range<usize>) {
        if self.layers.in_user(&a.1).is_none() && self.layers.in_user(&b.1).is_some() { b } else { a }
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
            if let Err(why) = safety::check_log_path(p) {
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
        if let Some((p, d)) = safety::log_path_holding_data(raw.log_paths.get_ref(), data) {
            let disk_field = format!("{section}.disk_path");
            let (field, span) =
                self.users((field.as_str(), raw.log_paths.span()), (disk_field.as_str(), raw.disk_path.span()));
            return Err(self.err(
                RulesErrorKind::Invalid,
                span,
                field,
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
            web_disk_fill_horizon_secs: match &t.web_disk_fill_horizon_secs {
                Some(v) => self.int(v, "thresholds.web_disk_fill_horizon_secs", 0, 86_400)? as u64,
                None => DEFAULT_FILL_HORIZON_SECS,
            },
            web_disk_fill_window_secs: match &t.web_disk_fill_window_secs {
                Some(v) => self.int(v, "thresholds.web_disk_fill_window_secs", 10, 3_600)? as u64,
                None => DEFAULT_FILL_WINDOW_SECS,
            },
        };
        if thresholds.clean_success_pct > thresholds.web_disk_pct {
            let (field, span) = self.users(
                ("thresholds.clean_success_pct", t.clean_success_pct.span()),
                ("thresholds.web_disk_pct", t.web_disk_pct.span()),
            );
            return Err(self.err(
                RulesErrorKind::Invalid,
                span,
                field,
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
            disk_watch_ms: match &o.disk_watch_ms {
                Some(v) => self.int(v, "observer.disk_watch_ms", 0, 60_000)? as u64,
                None => DEFAULT_DISK_WATCH_MS,
            },
            verify_interval_ms: match &o.verify_interval_ms {
                Some(v) => self.int(v, "observer.verify_interval_ms", 50, 60_000)? as u64,
                None => DEFAULT_VERIFY_INTERVAL_MS,
            },
        };
        if observer.rapid_interval_secs > observer.rapid_window_secs {
            let (field, span) = self.users(
                ("observer.rapid_interval_secs", o.rapid_interval_secs.span()),
                ("observer.rapid_window_secs", o.rapid_window_secs.span()),
            );
            return Err(self.err(
                RulesErrorKind::Invalid,
                span,
                field,
                "rapid interval is longer than the rapid window".into(),
            ));
        }
        let restart_budget = RestartBudget {
            max_restarts: self.int(&raw.restart_budget.max_restarts, "restart_budget.max_restarts", 0, 1000)? as u32,
            window_secs: self.int(&raw.restart_budget.window_secs, "restart_budget.window_secs", 1, 30 * day)? as u64,
        };
        let max_steps = self.int(&raw.limits.max_steps, "limits.max_steps", 1, 64)? as u32;
        let st = &raw.stateless;
        let stateless = StatelessSettings {
            watch_all: st.watch_all,
            backoff_initial_secs: self.int(&st.backoff_initial_secs, "stateless.backoff_initial_secs", 1, day)? as u64,
            backoff_max_secs: self.int(&st.backoff_max_secs, "stateless.backoff_max_secs", 1, day)? as u64,
            max_restarts: self.int(&st.max_restarts, "stateless.max_restarts", 0, 1000)? as u32,
            window_secs: self.int(&st.window_secs, "stateless.window_secs", 1, 30 * day)? as u64,
        };
        if stateless.backoff_max_secs < stateless.backoff_initial_secs {
            let (field, span) = self.users(
                ("stateless.backoff_max_secs", st.backoff_max_secs.span()),
                ("stateless.backoff_initial_secs", st.backoff_initial_secs.span()),
            );
            return Err(self.err(
                RulesErrorKind::Invalid,
                span,
                field,
                "the longest backoff is shorter than the first".into(),
            ));
        }
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
        let names = (raw.database.container.span(), raw.web.container.span());
        let web = self.target(raw.web, "web")?;
        let database = self.target(raw.database, "database")?;
        if web.container == database.container {
            let (field, span) = self.users(("database.container", names.0), ("web.container", names.1));
            return Err(self.err(
                RulesErrorKind::Invalid,
                span,
                field,
                "web and database name the same container".into(),
            ));
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

        let mut plans = Plans::default();
        for (i, p) in raw.plan.iter().enumerate() {
            let (kind, plan) = self.plan(p, i)?;
            if !plans.set(kind, plan) {
                return Err(self.err(
                    RulesErrorKind::Invalid,
                    p.span(),
                    &format!("plan[{i}]"),
                    format!("a second plan for {kind}"),
                ));
            }
        }
        let consults = plans.iter().any(|p| p.steps.contains(&PlanStep::ConsultLlm));
        let llm_diagnosis = self.llm_diagnosis(raw.llm_diagnosis.as_ref(), consults)?;

        Ok(Rules {
            thresholds,
            observer,
            restart_budget,
            max_steps,
            scope_label,
            stateless,
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
        let re = build_regex(p.get_ref())
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
            Some(p) => Some(LogPattern::from_built(self.regex(p, &format!("signature[{i}].log_pattern"))?)),
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
        let code = r.alarm.get_ref().as_str();
        let invalid = |message: String| self.err(RulesErrorKind::Invalid, r.alarm.span(), &at("cause"), message);
        let Some(kind) = AlarmKind::from_code(code, cause) else {
            return Err(match AlarmKind::code_takes_cause(code) {
                Some(true) => invalid(format!("{code} plans need a cause")),
                Some(false) => {
                    let with_cause: Vec<_> = AlarmKind::codes()
                        .into_iter()
                        .filter(|c| AlarmKind::code_takes_cause(c) == Some(true))
                        .collect();
                    invalid(format!("only {} plans take a cause", or_list(&with_cause)))
                }
                None => self.err(
                    RulesErrorKind::UnknownName,
                    r.alarm.span(),
                    &at("alarm"),
                    format!("unknown alarm {code:?} (expected {})", or_list(&AlarmKind::codes())),
                ),
            });
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
                // In a plan, "the disk was freed" can only mean an earlier
                // clean_logs step: the engine checks that step's outcome again.
                PlanStep::Restart => match safety::restart_refusal(kind, cleaned) {
                    None => {}
                    Some(RestartRefusal::NotADatabaseCrash) => {
                        return bad("restart_database_risky is only for DB_CRASH");
                    }
                    Some(RestartRefusal::CauseForbids(_)) => {
                        return bad("restarting on config error or data corruption is forbidden");
                    }
                    Some(RestartRefusal::DiskNotFreed) => {
                        return bad("on a full disk, clean_logs must come before restart_database_risky");
                    }
                },
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

/// `a, b or c`, for the names an error message says were expected.
fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
