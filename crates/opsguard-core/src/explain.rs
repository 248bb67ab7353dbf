//! `opsguard explain` and `opsguard replay`: what the rules decide, and why,
//! without touching any host.
//!
//! [`explain`] takes an alarm's facts (from flags, or an alarm recorded in
//! the audit log) and shows which threshold raised it, which signature
//! tagged the root cause and from which log line, the alarm's plan and the
//! engine's next action. [`replay`] runs recorded incidents through today's
//! rules: it re-classifies each recorded alarm from its recorded evidence,
//! then asks the engine at every recorded decision what it would decide
//! given the same history, and reports each step as the same or different.
//!
//! Pure: rules, classifier and engine only; no host, no tokio, no clock (the
//! time of each decision is the record's). The recorded evidence holds the
//! matching lines and the last lines of the logs, not the whole window the
//! observer read, so a new signature that matches a line only the observer
//! saw is not found by a replay.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::alarm;
use crate::audit::{AuditEvent, IncidentTrail};
use crate::classify::{self, ConditionCheck, printable};
use crate::engine::Engine;
use crate::model::{Action, Alarm, ContainerName, History, Outcome, Risk, RootCause, Step, Timestamp};
use crate::rules::Rules;

pub use crate::alarm::{AlarmFacts, AlarmSource};

/// Why an alarm is raised (or not) and what follows.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The alarm today's rules raise; `None` when they raise none.
    pub alarm: Option<Alarm>,
    /// Why it is raised or not (the threshold, or the crash).
    pub trigger: String,
    /// The classifier's reasons, for a database crash.
    pub classification: Option<classify::CauseAnalysis>,
    /// The alarm's plan, by step name.
    pub plan: Vec<&'static str>,
    /// The engine's first action for the alarm (an empty history).
    pub next: Option<Action>,
}

/// Raises and classifies an alarm from `facts` with `engine`'s rules, and asks
/// the engine for its first action at `now`.
pub fn explain(engine: &Engine, facts: &AlarmFacts, now: Timestamp) -> Explanation {
    let rules = engine.rules();
    let (observed, classification) = match facts.observe(rules) {
        Ok((observed, analysis)) => (Ok(observed), analysis),
        Err(missing) => (Err(missing), None),
    };
    let (alarm, trigger) = match observed {
        Ok(observed) => {
            let a = alarm::assess(rules, observed, now);
            (a.alarm, a.because)
        }
        Err(missing) => (None, missing.to_string()),
    };
    let plan = alarm
        .as_ref()
        .and_then(|a| rules.plan(a.kind))
        .map(|p| p.steps.iter().map(|s| s.name()).collect())
        .unwrap_or_default();
    let next = alarm.as_ref().map(|a| engine.decide(a, &History::default(), now));
    Explanation { alarm, trigger, classification, plan, next }
}

impl Explanation {
    /// The explanation as a human reads it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        match &self.alarm {
            Some(a) => {
                let _ = writeln!(s, "alarm:       {a}");
                let _ = writeln!(s, "raised by:   {}", self.trigger);
            }
            None => {
                let _ = writeln!(s, "alarm:       none");
                let _ = writeln!(s, "because:     {}", self.trigger);
                return s;
            }
        }
        if let Some(c) = &self.classification {
            let _ = writeln!(
                s,
                "root cause:  every signature is checked; a config_error or data_corruption match decides whatever else matched, otherwise the first match in order"
            );
            for check in &c.checks {
                let verdict = if check.matched() { "MATCH" } else { "no" };
                let _ = writeln!(s, "  #{} {}: {verdict}", check.index + 1, check.cause.key());
                for cond in &check.conditions {
                    let mark = if cond.holds() { "✓" } else { "✗" };
                    let _ = match cond {
                        ConditionCheck::ExitCode { wanted, seen } => writeln!(
                            s,
                            "      {mark} exit code {wanted} (seen {})",
                            seen.map_or("none".to_string(), |c| c.to_string())
                        ),
                        ConditionCheck::OomKilled { wanted, seen } => {
                            writeln!(s, "      {mark} OOMKilled={wanted} (seen {seen})")
                        }
                        ConditionCheck::LogPattern { pattern, severities, hits } if hits.is_empty() => {
                            writeln!(s, "      {mark} a server {severities} line matches /{pattern}/: none does")
                        }
                        ConditionCheck::LogPattern { pattern, severities, hits } => {
                            let _ = writeln!(s, "      {mark} a server {severities} line matches /{pattern}/:");
                            for (i, line) in hits {
                                let _ = writeln!(s, "          line {}: {}", i + 1, printable(line));
                            }
                            Ok(())
                        }
                        ConditionCheck::DiskUsage { .. } => writeln!(s, "      {mark} {}", cond.describe()),
                    };
                }
            }
            let _ = match &c.classification.signature {
                Some(sig) => writeln!(
                    s,
                    "decided by:  signature #{} ({}): {sig}",
                    c.decided.map_or(0, |i| i + 1),
                    c.classification.cause.key(),
                ),
                None => writeln!(s, "decided by:  no signature matched: {}", RootCause::Unknown.label()),
            };
        }
        if self.plan.is_empty() {
            let _ = writeln!(s, "plan:        none (the rules have no plan for this alarm)");
        } else {
            let _ = writeln!(s, "plan:        {}", self.plan.join(" → "));
        }
        if let Some(next) = &self.next {
            let risk = match next.risk() {
                Risk::Risky => " (risky: a human must approve it)",
                Risk::Safe if next.is_terminal() => "",
                Risk::Safe => " (safe)",
            };
            let _ = writeln!(s, "next action: {next}{risk}");
        }
        s
    }
}

/// One recorded decision, replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayStep {
    /// 1-based position among the incident's decisions.
    pub number: usize,
    /// When it was decided.
    pub at: Timestamp,
    /// What was decided then.
    pub recorded: Action,
    /// What today's rules decide with the same alarm facts and history.
    pub today: Action,
}

impl ReplayStep {
    /// Whether today's rules agree.
    pub fn same(&self) -> bool {
        self.recorded == self.today
    }
}

/// One recorded incident, replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentReplay {
    /// The incident id.
    pub incident: u64,
    /// When it opened.
    pub opened_at: Timestamp,
    /// The recorded alarm.
    pub recorded: Alarm,
    /// The alarm today's rules raise from the recorded evidence (`None`:
    /// none; its steps are then not replayed).
    pub today: Option<Alarm>,
    /// Each recorded decision, replayed.
    pub steps: Vec<ReplayStep>,
}

impl IncidentReplay {
    /// Whether today's rules raise the same alarm.
    pub fn same_alarm(&self) -> bool {
        self.today.as_ref().is_some_and(|a| a.kind == self.recorded.kind)
    }

    /// Whether anything would be decided differently.
    pub fn differs(&self) -> bool {
        !self.same_alarm() || self.steps.iter().any(|s| !s.same())
    }

    /// The first decision today's rules make differently.
    pub fn first_difference(&self) -> Option<&ReplayStep> {
        self.steps.iter().find(|s| !s.same())
    }

    /// The replay as a human reads it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "incident #{} opened {}: {}", self.incident, self.opened_at.to_rfc3339(), self.recorded);
        match &self.today {
            None => {
                let _ = writeln!(s, "  alarm      DIFFERENT: today's rules raise no alarm from this evidence");
            }
            Some(a) if a.kind == self.recorded.kind => {
                let _ = writeln!(s, "  alarm      same       {}", a.kind);
            }
            Some(a) => {
                let _ = writeln!(s, "  alarm      DIFFERENT  recorded {}, today {}", self.recorded.kind, a.kind);
            }
        }
        for step in &self.steps {
            if step.same() {
                let _ = writeln!(s, "  step {:>2}    same       {}", step.number, step.recorded);
            } else {
                let _ = writeln!(
                    s,
                    "  step {:>2}    DIFFERENT  recorded {}, today {}",
                    step.number, step.recorded, step.today
                );
            }
        }
        let _ = match (self.differs(), self.first_difference()) {
            (false, _) => writeln!(s, "  → today's rules decide every step the same"),
            (true, Some(d)) => writeln!(s, "  → today's rules decide differently, first at step {}", d.number),
            (true, None) => writeln!(s, "  → today's rules raise a different alarm"),
        };
        s
    }
}

/// Replays recorded incidents through `rules`.
///
/// The history at each decision is the recorded one: the steps executed
/// before it, and the restarts of the same container in earlier incidents
/// of the same `watch` run (ids restart at 1 with each run, so a smaller id
/// starts a new run, as a new process forgets its restarts). An LLM counts
/// as configured for an incident that consulted one.
pub fn replay(rules: Arc<Rules>, trails: &[IncidentTrail]) -> Vec<IncidentReplay> {
    let mut out = Vec::new();
    let mut restarts: BTreeMap<ContainerName, Vec<Timestamp>> = BTreeMap::new();
    let mut last_id = 0;
    for trail in trails {
        let Some((opened, recorded)) = trail.alarm() else { continue };
        if trail.incident <= last_id {
            restarts.clear();
        }
        last_id = trail.incident;
        let llm = trail.records.iter().any(|r| {
            matches!(r.event, AuditEvent::LlmConsulted { .. } | AuditEvent::Decided { action: Action::ConsultLlm })
        });
        let engine = Engine::new(Arc::clone(&rules)).with_llm(llm);
        // Same container, evidence and time as recorded; only what the rules decide may differ.
        let today = explain(&engine, &AlarmFacts::from_alarm(recorded), recorded.raised_at)
            .alarm
            .map(|a| Alarm { kind: a.kind, ..recorded.clone() });
        let mut history = History::with_restarts(restarts.get(&recorded.container).cloned().unwrap_or_default());
        let mut steps = Vec::new();
        for r in &trail.records {
            match &r.event {
                AuditEvent::Decided { action } => {
                    if let Some(alarm) = &today {
                        steps.push(ReplayStep {
                            number: steps.len() + 1,
                            at: r.ts,
                            recorded: action.clone(),
                            today: engine.decide(alarm, &history, r.ts),
                        });
                    }
                }
                AuditEvent::Executed { action, outcome } => {
                    if *outcome == Outcome::Restarted {
                        history.restarts.push(r.ts);
                        restarts.entry(recorded.container.clone()).or_default().push(r.ts);
                    }
                    history.steps.push(Step { action: action.clone(), outcome: outcome.clone(), at: r.ts });
                }
                _ => {}
            }
        }
        out.push(IncidentReplay {
            incident: trail.incident,
            opened_at: opened.ts,
            recorded: recorded.clone(),
            today,
            steps,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlarmKind;

    #[test]
    fn explain_names_the_signature_the_line_and_the_next_action() {
        let engine = Engine::new(Arc::new(Rules::default_rules()));
        let facts = AlarmFacts {
            source: AlarmSource::DbCrash,
            exit_code: Some(1),
            oom_killed: false,
            logs: vec![
                "LOG:  checkpoint starting".into(),
                "PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device".into(),
            ],
            disk_used_pct: Some(97.0),
            exited_containers: None,
            fill_rate_pct_per_min: None,
        };
        let e = explain(&engine, &facts, Timestamp(0));
        assert_eq!(e.alarm.as_ref().unwrap().kind, AlarmKind::DbCrash(RootCause::DiskFull));
        assert_eq!(e.next, Some(Action::CleanLogs { target: "db-prod".into() }));
        let text = e.render();
        for want in [
            "alarm:       DB_CRASH — Disk Full on db-prod",
            "#1 disk_full: MATCH",
            "line 2: PANIC",
            "plan:        clean_logs → verify → restart_database_risky → verify",
            "next action: clean_logs('db-prod') (safe)",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let oom = AlarmFacts { exit_code: Some(137), oom_killed: true, logs: vec![], ..facts.clone() };
        let text = explain(&engine, &oom, Timestamp(0)).render();
        assert!(text.contains("next action: restart_database_risky('db-prod')"), "{text}");
        assert!(text.contains("a human must approve"), "{text}");
        let web = AlarmFacts { source: AlarmSource::WebDisk, disk_used_pct: Some(80.0), ..facts };
        let e = explain(&engine, &web, Timestamp(0));
        assert!(e.alarm.is_none());
        assert!(e.render().contains("not above thresholds.web_disk_pct 85.0 %"), "{}", e.render());
    }
}
