//! Post-mortems: one incident's audit records turned into a Markdown report
//! (summary, timeline, root cause and evidence, actions and who approved
//! them, verification, time to detect and to resolve, and what a human must
//! still do).
//!
//! Pure over the parsed records: no host, no clock. Every time in the report
//! is a record's own timestamp, so the report can be checked against the log
//! it came from. The fault's start is the container's exit time (Docker's
//! `FinishedAt`) that the observer records in a crash alarm's evidence; alarms
//! without it (a full web disk, zombies: no event says when they began) get a
//! time to resolve measured from detection and no time to detect.

use std::fmt::Write as _;

use crate::audit::{AuditEvent, AuditRecord, IncidentTrail, Resolution};
use crate::classify::printable;
use crate::model::{Action, Alarm, Health, Outcome, StopReason, Timestamp};

/// Why no report could be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PostmortemError(pub String);

/// An incident's times, all taken from its audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// When the fault took the service down (the container's exit time), if
    /// the alarm recorded it.
    pub fault_at: Option<Timestamp>,
    /// When the alarm opened the incident (its `incident_opened` record).
    pub detected_at: Timestamp,
    /// When the incident ended (its `incident_closed` record), if it did.
    pub closed_at: Option<Timestamp>,
}

impl Timing {
    /// Time to detect: fault → alarm, when the fault time is known.
    pub fn ttd_ms(&self) -> Option<u64> {
        self.fault_at.map(|f| self.detected_at.millis_since(f))
    }

    /// Time to resolve (or to stop): from the fault when known, else from
    /// detection, to the end of the incident.
    pub fn ttr_ms(&self) -> Option<u64> {
        self.closed_at.map(|c| c.millis_since(self.fault_at.unwrap_or(self.detected_at)))
    }
}

/// What the report is made from: one incident's trail, analysed.
#[derive(Clone, Debug)]
pub struct Postmortem<'a> {
    trail: &'a IncidentTrail,
    alarm: &'a Alarm,
    /// The incident's times.
    pub timing: Timing,
    /// How it ended; `None` when the log stops before it closed.
    pub resolution: Option<Resolution>,
}

/// The trail of incident `id`: the `occurrence`-th (1-based) of that id in
/// the log, or the last one; an error names the ids the log does hold.
pub fn select(trails: &[IncidentTrail], id: u64, occurrence: Option<usize>) -> Result<Postmortem<'_>, PostmortemError> {
    let same: Vec<&IncidentTrail> = trails.iter().filter(|t| t.incident == id).collect();
    if same.is_empty() {
        let mut ids: Vec<u64> = trails.iter().map(|t| t.incident).collect();
        ids.sort_unstable();
        ids.dedup();
        let known = if ids.is_empty() {
            "it holds no incidents".to_string()
        } else {
            let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
            format!("incidents in it: {}", ids.join(", "))
        };
        return Err(PostmortemError(format!("no incident #{id} in the audit log ({known})")));
    }
    let trail = match occurrence {
        None => same[same.len() - 1],
        Some(n) => *same.get(n.wrapping_sub(1)).ok_or_else(|| {
            PostmortemError(format!("incident #{id} appears {} time(s) in the audit log, not {n}", same.len()))
        })?,
    };
    Postmortem::new(trail)
}

/// Milliseconds as seconds with three decimals (`13.731 s`), exactly.
pub fn format_ms(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

impl<'a> Postmortem<'a> {
    /// Analyses a trail; fails when the log lacks the incident's opening.
    pub fn new(trail: &'a IncidentTrail) -> Result<Postmortem<'a>, PostmortemError> {
        let (opened, alarm) = trail.alarm().ok_or_else(|| {
            PostmortemError(format!(
                "incident #{}: the audit log has no opening record for it (was the log cut?)",
                trail.incident
            ))
        })?;
        let closed = trail.closed();
        let timing =
            Timing { fault_at: alarm.evidence.fault_at, detected_at: opened.ts, closed_at: closed.map(|(r, _)| r.ts) };
        Ok(Postmortem { trail, alarm, timing, resolution: closed.map(|(_, res)| res) })
    }

    /// The report, in Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Post-mortem: incident #{}: {}\n", self.trail.incident, inline(&self.alarm.to_string()));
        let _ = writeln!(md, "*Written by `opsguard postmortem` from the audit log; times are UTC.*\n");
        self.summary(&mut md);
        self.timeline(&mut md);
        self.root_cause(&mut md);
        self.actions(&mut md);
        self.verification(&mut md);
        self.times(&mut md);
        self.human(&mut md);
        md
    }

    fn records(&self) -> impl DoubleEndedIterator<Item = &'a AuditRecord> {
        self.trail.records.iter()
    }

    fn executed(&self) -> impl Iterator<Item = (&'a AuditRecord, &'a Action, &'a Outcome)> {
        self.records().filter_map(|r| match &r.event {
            AuditEvent::Executed { action, outcome } => Some((r, action, outcome)),
            _ => None,
        })
    }

    fn outcome_line(&self) -> String {
        match self.resolution {
            Some(Resolution::Resolved) => "✅ resolved: verified Running".to_string(),
            Some(Resolution::Stopped { reason }) => format!("🛑 stopped for a human: {reason}"),
            Some(Resolution::Withheld) => {
                let would = self.would_execute().map_or("nothing".to_string(), |a| a.to_string());
                format!("👻 shadow mode: nothing was changed; a real run would have run {}", inline(&would))
            }
            None => "⚠ unfinished: the audit log ends before the incident closed".to_string(),
        }
    }

    fn would_execute(&self) -> Option<&'a Action> {
        self.records().find_map(|r| match &r.event {
            AuditEvent::WouldExecute { action } => Some(action),
            _ => None,
        })
    }

    fn summary(&self, md: &mut String) {
        let t = &self.timing;
        let _ = writeln!(md, "## Summary\n");
        let _ = writeln!(md, "- **Alarm:** {} on `{}`", inline(&self.alarm.kind.to_string()), self.alarm.container);
        let _ = writeln!(md, "- **Outcome:** {}", self.outcome_line());
        let done: Vec<String> = self
            .executed()
            .filter(|(_, a, _)| !matches!(a, Action::Verify { .. }))
            .map(|(_, a, o)| format!("`{}` ({})", a.tool_name(), o.describe()))
            .collect();
        let _ = writeln!(
            md,
            "- **Actions:** {}",
            if done.is_empty() { "none changed the host".to_string() } else { inline(&done.join(", ")) }
        );
        if let Some(f) = t.fault_at {
            let _ = writeln!(md, "- **Fault:** {} ({} stopped)", f.to_rfc3339(), self.alarm.container);
        }
        let _ = writeln!(md, "- **Detected:** {}", t.detected_at.to_rfc3339());
        if let Some(c) = t.closed_at {
            let _ = writeln!(md, "- **Ended:** {}", c.to_rfc3339());
        }
        if let Some(ttd) = t.ttd_ms() {
            let _ = writeln!(md, "- **Time to detect:** {}", format_ms(ttd));
        }
        if let Some(ttr) = t.ttr_ms() {
            let _ = writeln!(md, "- **{}:** {}", capitalised(self.ttr_label()), format_ms(ttr));
        }
        md.push('\n');
    }

    fn timeline(&self, md: &mut String) {
        let t0 = self.timing.detected_at;
        let _ = writeln!(md, "## Timeline\n");
        let _ = writeln!(md, "| time (UTC) | since the alarm | event |");
        let _ = writeln!(md, "|---|---|---|");
        if let Some(f) = self.timing.fault_at {
            let mut what = format!("💥 the fault: {} stopped", self.alarm.container);
            if let Some(code) = self.alarm.evidence.exit_code {
                let _ = write!(what, " (exit code {code})");
            }
            let _ = writeln!(md, "| {} | -{} | {what} |", f.to_rfc3339(), format_ms(t0.millis_since(f)));
        }
        for r in self.records() {
            let since = if r.ts >= t0 { format!("+{}", format_ms(r.ts.millis_since(t0))) } else { "-".into() };
            let _ = writeln!(md, "| {} | {} | {} |", r.time, since, cell(&r.event.render()));
        }
        md.push('\n');
    }

    fn root_cause(&self, md: &mut String) {
        let e = &self.alarm.evidence;
        let _ = writeln!(md, "## Root cause and evidence\n");
        match self.alarm.kind.cause() {
            Some(cause) => {
                let _ = writeln!(md, "- **Root cause:** {}", inline(cause.label()));
                match &e.matched_signature {
                    Some(sig) => {
                        let _ = writeln!(md, "- **Decided by the signature:** {}", inline(sig));
                    }
                    None => {
                        let _ = writeln!(md, "- **Decided by:** no signature matched");
                    }
                }
            }
            None => {
                let _ = writeln!(md, "- **Cause:** {}", self.alarm.kind.condition());
            }
        }
        if let Some(s) = e.state {
            let _ = writeln!(md, "- **State at the alarm:** {}", s.as_str());
        }
        if let Some(code) = e.exit_code {
            let _ = writeln!(md, "- **Exit code:** {code}");
        }
        if let Some(oom) = e.oom_killed {
            let _ = writeln!(md, "- **OOMKilled:** {oom}");
        }
        if let Some(pct) = e.disk_used_pct {
            let _ = writeln!(md, "- **Disk used at the alarm:** {pct:.1} %");
        }
        if let Some(n) = e.exited_containers {
            let _ = writeln!(md, "- **Exited containers in scope:** {n}");
        }
        if !e.log_lines.is_empty() {
            let _ = writeln!(md, "\nLog lines that matched:\n");
            code_block(md, &e.log_lines);
        } else if !e.log_tail.is_empty() {
            let _ = writeln!(md, "\nLast log lines before the crash:\n");
            code_block(md, &e.log_tail);
        }
        md.push('\n');
    }

    fn actions(&self, md: &mut String) {
        let _ = writeln!(md, "## Actions\n");
        let _ = writeln!(md, "| # | decided (UTC) | done (UTC) | action | approval | outcome |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        let mut decided: Option<&AuditRecord> = None;
        let mut approval = String::new();
        let mut n = 0;
        for r in self.records() {
            match &r.event {
                AuditEvent::Decided { .. } => decided = Some(r),
                AuditEvent::ApprovalRequested { approver, .. } => {
                    approval = format!("asked {approver} at {}, no answer recorded", r.time);
                }
                AuditEvent::ApprovalAnswered { approved, approver, detail, answered_by, evidence_digest, .. } => {
                    let verdict = if *approved { "✅ approved" } else { "❌ not approved" };
                    let who = crate::audit::answerer(approver, answered_by, evidence_digest);
                    approval = format!("{verdict} by {who} at {} ({detail})", r.time);
                }
                AuditEvent::Executed { action, outcome } => {
                    n += 1;
                    let approval = match std::mem::take(&mut approval) {
                        a if !a.is_empty() => a,
                        _ if action.risk() == crate::model::Risk::Risky => "none recorded".to_string(),
                        _ => "not needed (safe)".to_string(),
                    };
                    let _ = writeln!(
                        md,
                        "| {n} | {} | {} | {} | {} | {} |",
                        decided.map_or("-", |d| d.time.as_str()),
                        r.time,
                        cell(&action.to_string()),
                        cell(&approval),
                        cell(&outcome.describe()),
                    );
                }
                AuditEvent::WouldExecute { action } => {
                    n += 1;
                    let _ = writeln!(
                        md,
                        "| {n} | {} | - | {} | not asked (shadow) | 👻 not executed (shadow mode) |",
                        decided.map_or("-", |d| d.time.as_str()),
                        cell(&action.to_string()),
                    );
                }
                AuditEvent::LlmConsulted { .. } => {
                    approval.clear();
                }
                _ => {}
            }
        }
        if n == 0 {
            let _ = writeln!(md, "| - | - | - | none | - | - |");
        }
        for r in self.records() {
            if let AuditEvent::LlmConsulted { model, choice, reason, diagnosis, .. } = &r.event {
                let _ = writeln!(
                    md,
                    "\nThe LLM ({}) was consulted at {}: {} — {}",
                    inline(model.as_deref().unwrap_or("unknown model")),
                    r.time,
                    choice.map_or("no usable answer", |c| c.name()),
                    inline(&printable(reason)),
                );
                if let Some(d) = diagnosis {
                    let _ = writeln!(
                        md,
                        "Its diagnosis (model output, unverified beyond the quote being in the evidence): {}, citing {}",
                        d.category,
                        inline(&printable(&d.quote)),
                    );
                }
            }
        }
        md.push('\n');
    }

    fn verification(&self, md: &mut String) {
        let _ = writeln!(md, "## Verification\n");
        let mut checks: Vec<&AuditRecord> = Vec::new();
        let mut any = false;
        for r in self.records() {
            match &r.event {
                AuditEvent::Checked { .. } => checks.push(r),
                AuditEvent::Executed { action: Action::Verify { target }, outcome } => {
                    any = true;
                    let _ = writeln!(md, "`verify('{target}')`, ended {}: **{}**\n", r.time, outcome.describe());
                    for c in checks.drain(..) {
                        let _ = writeln!(md, "- {} {}", c.time, inline(&check_text(&c.event)));
                    }
                    md.push('\n');
                }
                AuditEvent::Executed { .. } => checks.clear(),
                _ => {}
            }
        }
        if !any {
            let _ = writeln!(md, "No verification ran.\n");
        }
    }

    fn times(&self, md: &mut String) {
        let t = &self.timing;
        let _ = writeln!(md, "## Time to detect and time to resolve\n");
        let _ = writeln!(md, "| measure | value | from | to |");
        let _ = writeln!(md, "|---|---|---|---|");
        let fault = t.fault_at.map(Timestamp::to_rfc3339);
        match (t.ttd_ms(), &fault) {
            (Some(ms), Some(f)) => {
                let _ = writeln!(
                    md,
                    "| time to detect | {} | {f} (fault) | {} (alarm) |",
                    format_ms(ms),
                    t.detected_at.to_rfc3339()
                );
            }
            _ => {
                let _ = writeln!(md, "| time to detect | not known | - | {} (alarm) |", t.detected_at.to_rfc3339());
            }
        }
        let end = match self.resolution {
            Some(Resolution::Resolved) => "resolved",
            Some(Resolution::Stopped { .. }) => "stopped",
            Some(Resolution::Withheld) => "shadow end",
            None => "",
        };
        match (t.ttr_ms(), t.closed_at) {
            (Some(ms), Some(c)) => {
                let from = match &fault {
                    Some(f) => format!("{f} (fault)"),
                    None => format!("{} (alarm)", t.detected_at.to_rfc3339()),
                };
                let label = self.ttr_label();
                let _ = writeln!(md, "| {label} | {} | {from} | {} ({end}) |", format_ms(ms), c.to_rfc3339());
                if fault.is_some() {
                    let _ = writeln!(
                        md,
                        "| alarm to end | {} | {} (alarm) | {} ({end}) |",
                        format_ms(c.millis_since(t.detected_at)),
                        t.detected_at.to_rfc3339(),
                        c.to_rfc3339()
                    );
                }
            }
            _ => {
                let _ = writeln!(md, "| time to resolve | not known: the incident did not close | - | - |");
            }
        }
        let source = match fault {
            Some(_) => format!(
                "The fault's start is {}'s exit time (Docker's `FinishedAt`), recorded in the alarm's evidence.",
                self.alarm.container
            ),
            None => "No fault time is recorded for this alarm (nothing reports when a disk started to fill or \
                     containers started to pile up), so the time to resolve is measured from the alarm."
                .to_string(),
        };
        let _ = writeln!(md, "\n{source}\n");
    }

    /// What the time to the end of the incident measures: only a resolved
    /// incident was resolved.
    fn ttr_label(&self) -> &'static str {
        match self.resolution {
            Some(Resolution::Stopped { .. }) => "time to hand over (stopped, not fixed)",
            Some(Resolution::Withheld) => "time to decide (shadow, nothing fixed)",
            _ => "time to resolve",
        }
    }

    fn human(&self, md: &mut String) {
        let c = &self.alarm.container;
        match self.resolution {
            Some(Resolution::Resolved) => {
                let _ = writeln!(md, "## What a human should still do\n");
                let _ =
                    writeln!(md, "The service is back; nothing is needed to restore it. To keep it from recurring:\n");
                let _ = writeln!(md, "- {}", self.alarm.kind.prevention(c));
            }
            Some(Resolution::Stopped { reason }) => {
                let _ = writeln!(md, "## What a human must do now\n");
                let _ = writeln!(md, "{}", self.stop_advice(reason));
            }
            Some(Resolution::Withheld) => {
                let _ = writeln!(md, "## What a human must do now\n");
                let would = self.would_execute().map_or("nothing".to_string(), |a| a.to_string());
                let _ = writeln!(
                    md,
                    "OpsGuard ran in shadow mode: it changed nothing, and the alarm's condition is still there. \
                     A real run would have started with `{}`. Either do that by hand (and check the service \
                     afterwards), or, once you trust these decisions, let OpsGuard act by running `watch` without \
                     `--shadow`.",
                    inline(&would)
                );
            }
            None => {
                let _ = writeln!(md, "## What a human must do now\n");
                let _ = writeln!(
                    md,
                    "The audit log ends before this incident closed: OpsGuard stopped or crashed in the middle of \
                     it. Check {c} now (`docker ps -a`, `docker logs {c}`); the last record above is the last thing \
                     OpsGuard did."
                );
            }
        }
        md.push('\n');
    }

    fn stop_advice(&self, reason: StopReason) -> String {
        let c = &self.alarm.container;
        let e = &self.alarm.evidence;
        match reason {
            StopReason::ConfigError => {
                let file = config_file(&e.log_lines).map_or(
                    "the configuration file named in the log lines above".to_string(),
                    |(f, line)| match line {
                        Some(l) => format!("`{f}` (line {l})"),
                        None => format!("`{f}`"),
                    },
                );
                format!(
                    "{c} is down and OpsGuard will not restart it: with a broken configuration every start fails.\n\n\
                     1. Fix {file}; compare it with the last known good version (what changed it: a deploy, a \
                     hand edit?).\n\
                     2. Start {c} (`docker start {c}`) and watch its logs until it accepts connections."
                )
            }
            StopReason::Unhealthy => format!(
                "{c} runs but its health check fails, and OpsGuard does not restart a database that is \
                 still running: a restart interrupts a recovery or a long query and drops every connection.\n\n\
                 1. Read the health check output and the last lines above; `docker exec {c} pg_isready` and \
                 `pg_stat_activity` tell a server out of connections or stuck on a lock from one recovering.\n\
                 2. Restart it yourself (`docker restart {c}`) only once you know why it does not answer."
            ),
            StopReason::DataCorruption => format!(
                "{c} is down because its data is corrupt. **Do not restart it**: starting a database on corrupt \
                 files can make the damage permanent.\n\n\
                 1. Leave the container and its volume as they are; copy the data directory aside for analysis.\n\
                 2. Restore the data from the latest backup (or fail over to a replica) and check the recovery \
                 point: what was written after the backup is lost unless the WAL archive has it.\n\
                 3. Check the disk and the host for the cause (hardware errors in `dmesg`, an unclean shutdown)."
            ),
            StopReason::CleanDidNotFreeDisk => {
                let after = self.executed().find_map(|(_, _, o)| match o {
                    Outcome::Cleaned { disk_used_pct, .. } => Some(*disk_used_pct),
                    _ => None,
                });
                let after = after.map_or(String::new(), |p| format!(" (still {p:.1} % used after cleaning)"));
                format!(
                    "Cleaning {c}'s logs did not free its disk{after}: something other than log files fills it.\n\n\
                     1. Find what (`du -xh --max-depth=3` on the volume, largest first). Never delete from the \
                     database's data directory.\n\
                     2. Remove or move what is safe to remove, then start {c} (`docker start {c}`) if it is down."
                )
            }
            StopReason::ApprovalRejected => {
                let who = self.records().rev().find_map(|r| match &r.event {
                    AuditEvent::ApprovalAnswered { approver, detail, answered_by, .. } => {
                        Some(format!("{}: {detail}", crate::audit::answerer(approver, answered_by, &None)))
                    }
                    _ => None,
                });
                format!(
                    "The restart of {c} was not approved ({}), so {c} is still down.\n\n\
                     1. If the answer was a no: whoever said no owns the next step, diagnosing before restarting.\n\
                     2. If nobody answered in time: check that approval requests reach someone, then start {c} \
                     yourself (`docker start {c}`) once the cause above is understood.",
                    who.as_deref().map_or("no answer recorded".to_string(), cell)
                )
            }
            StopReason::VerificationFailed => format!(
                "The fix ran but {c} did not come back as Running (see Verification). OpsGuard will not try \
                 again.\n\n\
                 1. Read {c}'s logs since the last action (`docker logs --since 10m {c}`): a new error means a new \
                 cause.\n\
                 2. Fix that cause, start {c}, and check it stays up."
            ),
            StopReason::RestartBudgetExhausted => format!(
                "{c} was restarted too often recently and keeps dying; another restart would only hide it. Find \
                 why it dies (its logs, memory, disk) before starting it again."
            ),
            StopReason::ActionFailed => {
                let error = self.executed().find_map(|(_, _, o)| match o {
                    Outcome::Failed { error } => Some(error.clone()),
                    _ => None,
                });
                format!(
                    "An action failed on the host ({}). Check that the Docker daemon is up and {c} exists, then \
                     finish the fix by hand: the planned actions are in the Actions table.",
                    inline(error.as_deref().unwrap_or("no error recorded"))
                )
            }
            StopReason::UnknownCause
            | StopReason::LlmFailed
            | StopReason::LlmEscalated
            | StopReason::LlmChoiceRefused => format!(
                "No rule knows this cause ({reason}). Read the log lines above and {c}'s full logs, decide what \
                 to do, and if the cause can recur, add a signature for it to the rules file so that OpsGuard \
                 recognises it next time (`opsguard explain` shows what a rules file decides)."
            ),
            StopReason::Interrupted => format!(
                "OpsGuard was stopped (SIGTERM or ^C) before this incident ended: what it had started is in the \
                 Actions table, an approval it was waiting for was withdrawn, and nothing was started after \
                 the signal. Check {c}'s state (`docker ps -a`) and its logs: if it is still down, the next \
                 OpsGuard to start opens a new incident for it; a restart under way may have happened and \
                 counts against the budget."
            ),
            StopReason::SafetyRule | StopReason::StepLimit | StopReason::NoPlan => format!(
                "OpsGuard stopped ({reason}) without fixing {c}. Check its state (`docker ps -a`) and its logs, \
                 and finish by hand; then check the rules file's plan for this alarm."
            ),
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// The file (and line) a configuration error names, from lines such as
/// `syntax error in file "/srv/pg/postgresql.conf" line 816` or
/// `configuration file "/srv/pg/postgresql.conf" contains errors`.
fn config_file(lines: &[String]) -> Option<(String, Option<u64>)> {
    static RE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"file "([^"]+)"(?: line (\d+))?"#).expect("a valid regex"));
    let mut found: Option<(String, Option<u64>)> = None;
    for l in lines {
        if let Some(c) = RE.captures(l) {
            let line = c.get(2).and_then(|m| m.as_str().parse().ok());
            // Prefer a match that names the line.
            if found.is_none() || (line.is_some() && found.as_ref().is_some_and(|f| f.1.is_none())) {
                found = Some((printable(&c[1]), line));
            }
        }
    }
    found
}

fn check_text(e: &AuditEvent) -> String {
    match e {
        AuditEvent::Checked { error: Some(err), .. } => format!("check failed: {}", printable(err)),
        AuditEvent::Checked { state, health, cleared, .. } => {
            let mut s = state.map_or("-".to_string(), |s| s.as_str().to_string());
            match health {
                Some(Health::Healthy) => s += " (healthy)",
                Some(Health::Unhealthy) => s += " (unhealthy)",
                Some(Health::Starting) => s += " (health: starting)",
                _ => {}
            }
            s += match cleared {
                Some(true) => ", condition cleared",
                Some(false) => ", condition persists",
                None => "",
            };
            s
        }
        other => other.render(),
    }
}

/// Text made safe for one Markdown table cell: no line breaks, no pipes, no
/// HTML, no terminal escapes (log lines are untrusted).
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("<br>"),
            c if c.is_control() => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    out
}

/// Text made safe for running Markdown outside a table: one line, no HTML,
/// no terminal escapes. Pipes stay as they are (only tables split on them).
fn inline(s: &str) -> String {
    cell(s).replace("\\|", "|").replace("<br>", " ")
}

/// Untrusted lines in a fenced block that no line can close.
fn code_block(md: &mut String, lines: &[String]) {
    let longest = lines.iter().map(|l| longest_run(l, '`')).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let _ = writeln!(md, "{fence}text");
    for l in lines {
        let _ = writeln!(md, "{}", printable(l));
    }
    let _ = writeln!(md, "{fence}");
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        cur = if ch == c { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlarmKind;

    #[test]
    fn unfinished_and_headless_trails() {
        let alarm = Alarm {
            kind: AlarmKind::WebLogSaturation,
            container: "web-prod".into(),
            evidence: Default::default(),
            raised_at: Timestamp(10),
        };
        let rec = |ts, event| AuditRecord { ts: Timestamp(ts), time: Timestamp(ts).to_rfc3339(), incident: 4, event };
        let trail = IncidentTrail { incident: 4, records: vec![rec(10, AuditEvent::IncidentOpened { alarm })] };
        let pm = Postmortem::new(&trail).unwrap();
        assert_eq!(pm.timing.ttd_ms(), None);
        assert_eq!(pm.timing.ttr_ms(), None);
        assert!(pm.to_markdown().contains("ends before this incident closed"));
        let headless =
            IncidentTrail { incident: 4, records: vec![rec(20, AuditEvent::Decided { action: Action::Resolved })] };
        assert!(Postmortem::new(&headless).unwrap_err().0.contains("no opening record"));
    }

    #[test]
    fn hostile_log_lines_cannot_break_the_markdown() {
        let mut md = String::new();
        code_block(&mut md, &["````` end\u{1b}[2J".to_string()]);
        assert!(md.starts_with("``````text\n"), "{md}");
        assert!(!md.contains('\u{1b}'));
        assert_eq!(cell("a|b\n<script>"), "a\\|b<br>&lt;script&gt;");
        assert_eq!(inline("a|b\n<script>"), "a|b &lt;script&gt;");
    }
}
