//! The incident loop, the IO shell around the engine: alarm → decide →
//! approval gate for risky actions → execute on the host → outcome into the
//! history → verify → … until resolved or stopped; and the watch loop
//! ([`Agent`]) that feeds it alarms from the observer.
//!
//! Every step is audited. Every failure (a host error, a silent approver, a
//! garbled LLM answer) becomes an outcome that the engine turns into an
//! escalation; nothing here decides what to do next.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::approval::{self, ApprovalRequest, Approver, CrashBinding};
use crate::audit::{AuditEvent, AuditLog, Resolution};
use crate::clock::Clock;
use crate::engine::Engine;
use crate::host::ContainerEvent;
use crate::host::{ContainerStatus, Host};
use crate::llm::{AdviceRequest, Advisor, CrashFacts, prompt};
use crate::model::{
    Action, Alarm, AlarmKind, ContainerName, History, LlmChoice, Outcome, Step, Timestamp, Verification,
};
use crate::observer::{Cadence, Check, Observer};
use crate::telemetry;

/// A finished incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentReport {
    /// Its id.
    pub id: u64,
    /// The alarm that opened it.
    pub alarm: Alarm,
    /// What was done, in order.
    pub steps: Vec<Step>,
    /// How it ended.
    pub resolution: Resolution,
    /// When it opened and closed.
    pub opened_at: Timestamp,
    /// When it closed.
    pub closed_at: Timestamp,
}

/// Timeouts for the things the loop waits on.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// How long a human has to answer; silence is a no.
    pub approval: Duration,
    /// How long the LLM has to answer.
    pub advice: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { approval: Duration::from_secs(300), advice: Duration::from_secs(60) }
    }
}

/// How many times one incident may be decided again after an approval
/// was voided by a new crash.
const MAX_REASSESSMENTS: u32 = 3;

/// Runs incidents to their end against one host.
pub struct Responder<H, A, L, C> {
    host: H,
    approver: A,
    advisor: L,
    clock: C,
    engine: Engine,
    observer: Observer,
    audit: AuditLog,
    timeouts: Timeouts,
    /// Shadow mode: decide for real, change nothing on the host.
    shadow: bool,
    /// Restart times per container, across incidents, for the restart
    /// budget; shared by incidents running side by side. Never held across
    /// an await.
    restarts: Mutex<BTreeMap<ContainerName, Vec<Timestamp>>>,
    next_incident: AtomicU64,
    next_request: AtomicU64,
}

impl<H: Host, A: Approver, L: Advisor, C: Clock> Responder<H, A, L, C> {
    /// A responder; the engine consults the LLM only if `advisor` is configured.
    pub fn new(engine: Engine, host: H, approver: A, advisor: L, clock: C, audit: AuditLog) -> Self {
        let engine = engine.with_llm(advisor.is_configured());
        let observer = Observer::new(engine.shared_rules());
        Responder {
            host,
            approver,
            advisor,
            clock,
            engine,
            observer,
            audit,
            timeouts: Timeouts::default(),
            shadow: false,
            restarts: Mutex::new(BTreeMap::new()),
            next_incident: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
        }
    }

    /// Changes the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Picks up where an earlier run left its audit log: incidents are
    /// numbered after the ones already there, and its restarts count
    /// against the restart budget.
    pub fn resuming(mut self, resume: crate::audit::Resume) -> Self {
        *self.next_incident.get_mut() = resume.next_incident.max(1);
        let restarts = self.restarts.get_mut().unwrap_or_else(|e| e.into_inner());
        for (container, times) in resume.restarts {
            restarts.entry(container).or_default().extend(times);
        }
        self
    }

    /// Shadow mode: the observer and the engine run for real, but an action
    /// that would change the host (clean, prune, restart) is only recorded
    /// as [`AuditEvent::WouldExecute`] and the incident ends there as
    /// [`Resolution::Shadow`]; no approval is asked. Verification and a
    /// configured LLM still run: they look and advise, and touch nothing.
    pub fn with_shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The observer, built from the same rules.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    fn log(&self, incident: u64, event: AuditEvent) {
        if let Err(e) = self.audit.record(incident, self.clock.now(), event) {
            // The incident goes on: refusing to act because the audit disk is
            // full would turn one outage into two. The operator is told by
            // the audit log itself, once per failure streak.
            tracing::debug!(incident, error = %e, "audit log write failed");
        }
    }

    /// Records one re-check of the alarm's condition.
    fn log_check(&self, incident: u64, check: &Check) {
        self.log(
            incident,
            AuditEvent::Checked {
                state: check.state,
                health: Some(check.health),
                cleared: Some(check.cleared),
                error: None,
            },
        );
    }

    /// A container that is not stopped (running, even if still starting;
    /// restarting under Docker's policy) is never restarted on an approval
    /// given for a stopped one: the outcome that says so, after recording
    /// what was seen.
    fn not_stopped(&self, id: u64, status: &ContainerStatus) -> Option<Outcome> {
        self.log(
            id,
            AuditEvent::Checked { state: Some(status.state), health: Some(status.health), cleared: None, error: None },
        );
        (!status.state.is_stopped()).then_some(Outcome::RestartNotNeeded)
    }

    /// After a voided approval: the alarm as the host shows it now, if the
    /// container is down again (`None` when it is up: verification follows).
    async fn reassess(&self, id: u64, alarm: &Alarm) -> Option<Alarm> {
        if alarm.container != self.engine.rules().database.container {
            return None;
        }
        match self.observer.check_database(&self.host, self.clock.now()).await {
            Ok(fresh) => fresh,
            Err(e) => {
                self.log(
                    id,
                    AuditEvent::Checked { state: None, health: None, cleared: None, error: Some(e.to_string()) },
                );
                None
            }
        }
    }

    /// Handles one alarm until the incident is resolved or stopped.
    pub async fn handle(&mut self, opening: Alarm) -> IncidentReport {
        self.respond(opening).await
    }

    /// [`Responder::handle`] through a shared reference: incidents on
    /// different containers run side by side, so an approval pending for
    /// one holds up no other. Two at once on the same container would
    /// each act on it: the caller keeps to one per container, as
    /// [`Agent`] does.
    pub async fn respond(&self, opening: Alarm) -> IncidentReport {
        let id = self.next_incident.fetch_add(1, Ordering::SeqCst);
        let opened_at = self.clock.now();
        telemetry::incident_opened(id, &opening);
        self.log(id, AuditEvent::IncidentOpened { alarm: opening.clone() });
        let mut alarm = opening.clone();
        let mut history = History::with_restarts(self.restarts_of(&alarm.container));
        // Steps taken for alarms the incident has since reassessed.
        let mut earlier_steps = Vec::new();
        let mut reassessments = 0;
        loop {
            let action = self.engine.decide(&alarm, &history, self.clock.now());
            telemetry::decided(id, &action);
            self.log(id, AuditEvent::Decided { action: action.clone() });
            let resolution = match action {
                Action::Resolved => Resolution::Resolved,
                Action::Stop { reason } => Resolution::Stopped { reason },
                action if self.shadow && action.changes_host() => {
                    self.log(id, AuditEvent::WouldExecute { action });
                    Resolution::Shadow
                }
                action => {
                    let outcome = self.execute(id, &alarm, &action, &mut history).await;
                    telemetry::executed(id, &action, &outcome);
                    self.log(id, AuditEvent::Executed { action: action.clone(), outcome: outcome.clone() });
                    let voided = matches!(outcome, Outcome::ApprovalVoided { .. });
                    history.steps.push(Step { action, outcome, at: self.clock.now() });
                    // A new crash is a new decision, from its own facts (a
                    // config error now forbids the restart approved for an
                    // OOM kill). Bounded: a container that keeps changing
                    // under the approver ends in verification instead.
                    if voided
                        && reassessments < MAX_REASSESSMENTS
                        && let Some(fresh) = self.reassess(id, &alarm).await
                    {
                        reassessments += 1;
                        self.log(id, AuditEvent::Reassessed { alarm: fresh.clone() });
                        alarm = fresh;
                        earlier_steps.append(&mut history.steps);
                    }
                    continue;
                }
            };
            let closed_at = self.clock.now();
            telemetry::incident_closed(id, &opening, resolution, closed_at);
            earlier_steps.append(&mut history.steps);
            self.log(id, AuditEvent::IncidentClosed { resolution, steps: earlier_steps.len() });
            return IncidentReport { id, alarm: opening, steps: earlier_steps, resolution, opened_at, closed_at };
        }
    }

    fn restarts(&self) -> std::sync::MutexGuard<'_, BTreeMap<ContainerName, Vec<Timestamp>>> {
        // A panic elsewhere cannot leave a list of times half-written.
        self.restarts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restarts_of(&self, container: &ContainerName) -> Vec<Timestamp> {
        self.restarts().get(container).cloned().unwrap_or_default()
    }

    async fn execute(&self, id: u64, alarm: &Alarm, action: &Action, history: &mut History) -> Outcome {
        let failed = |e: crate::host::HostError| Outcome::Failed { error: e.to_string() };
        match action {
            Action::CleanLogs { target } => {
                let Some(t) = self.engine.rules().target(target.as_str()).cloned() else {
                    return Outcome::Failed { error: format!("{target} is not a watched service") };
                };
                let report = match self.host.clean_logs(target.as_str(), &t.log_paths).await {
                    Ok(r) => r,
                    Err(e) => return failed(e),
                };
                match self.host.disk_usage(target.as_str(), &t.disk_path).await {
                    Ok(u) => Outcome::Cleaned { disk_used_pct: u.used_pct(), freed_bytes: report.freed_bytes },
                    Err(e) => failed(e),
                }
            }
            Action::PruneContainers => {
                let protect = self.observer.protected();
                match self.host.prune_exited(&self.engine.rules().scope_label, &protect).await {
                    Ok(removed) => Outcome::Pruned { removed: removed.len() as u32 },
                    Err(e) => failed(e),
                }
            }
            Action::RestartContainer { target, .. } => {
                // The approval is asked for the crash the alarm saw, as the
                // host shows it now, and is worth nothing for any other.
                let before = match self.host.inspect(target.as_str()).await {
                    Ok(s) => s,
                    Err(e) => return Outcome::Failed { error: format!("inspect before asking: {e}") },
                };
                if let Some(outcome) = self.not_stopped(id, &before) {
                    return outcome;
                }
                let crash = CrashBinding::of(&before, alarm.kind.cause());
                if let Some(reason) = crash.differs_from(&alarm.evidence) {
                    return Outcome::ApprovalVoided { reason };
                }
                let request = ApprovalRequest {
                    id: self.next_request.fetch_add(1, Ordering::SeqCst),
                    incident: id,
                    action: action.clone(),
                    alarm: alarm.clone(),
                    crash: Some(crash.clone()),
                    // The diagnosis behind an LLM's restart, for the approver.
                    diagnosis: history.steps.iter().rev().find_map(|s| match &s.outcome {
                        Outcome::LlmChose { diagnosis, .. } => diagnosis.clone(),
                        _ => None,
                    }),
                };
                let approver = self.approver.name().to_string();
                self.log(
                    id,
                    AuditEvent::ApprovalRequested {
                        request: request.id,
                        action: action.clone(),
                        approver: approver.clone(),
                    },
                );
                let (approved, detail) = approval::ask(&self.approver, &request, self.timeouts.approval).await;
                telemetry::approval_answered(id, request.id, approved, &approver, &detail);
                self.log(id, AuditEvent::ApprovalAnswered { request: request.id, approved, approver, detail });
                if !approved {
                    return Outcome::ApprovalRejected;
                }
                // The human answered what they saw, maybe minutes ago: restart
                // only the very crash they approved, still stopped.
                let now = match self.host.inspect(target.as_str()).await {
                    Ok(s) => s,
                    // Restarting blind is what the approval gate is for avoiding.
                    Err(e) => return Outcome::Failed { error: format!("re-check before restarting: {e}") },
                };
                if let Some(outcome) = self.not_stopped(id, &now) {
                    return outcome;
                }
                if let Some(reason) = crash.void_reason(&now) {
                    return Outcome::ApprovalVoided { reason };
                }
                let result = self.host.restart(target.as_str()).await;
                // Counted whatever the answer: a restart that timed out or
                // lost its connection may still have happened, and a budget
                // that skipped it would let a crash loop run on (issue 8).
                let now = self.clock.now();
                self.restarts().entry(target.clone()).or_default().push(now);
                history.restarts.push(now);
                match result {
                    Ok(()) => Outcome::Restarted,
                    Err(e) => failed(e),
                }
            }
            Action::Verify { .. } => Outcome::Verified(self.verify(id, alarm).await),
            Action::ConsultLlm => {
                let rules = self.engine.rules();
                let allowed = rules.plan(alarm.kind).map(|p| p.llm_choices).unwrap_or_default();
                let facts = self.crash_facts(alarm, history).await;
                let request = AdviceRequest { alarm: alarm.clone(), allowed, facts };
                let answer = tokio::time::timeout(self.timeouts.advice, self.advisor.advise(&request)).await;
                let refused = |reason: String, model, latency_ms, raw| {
                    (
                        Outcome::LlmFailed,
                        AuditEvent::LlmConsulted { model, latency_ms, choice: None, reason, raw, diagnosis: None },
                    )
                };
                let (outcome, event) = match answer {
                    Ok(Ok(advice)) => {
                        let d = &advice.diagnosis;
                        let mapped = rules.llm_action(d.category, &alarm.evidence);
                        // Whatever advisor answered, its quote must be in the
                        // evidence any budget could have shown it.
                        let shown = prompt::shown_evidence(alarm, &facts, prompt::LogBudget::MAX);
                        if d.reason.trim().is_empty() || !prompt::quote_found(&d.quote, &shown) {
                            refused(
                                format!("refused: the {} diagnosis has no reason or quotes nothing shown", d.category),
                                Some(advice.model),
                                Some(advice.latency_ms),
                                Some(advice.raw),
                            )
                        } else if let Err(why) = &mapped {
                            refused(
                                format!("refused: the facts contradict the diagnosis: {why}"),
                                Some(advice.model),
                                Some(advice.latency_ms),
                                Some(advice.raw),
                            )
                        } else if let Some(choice) = mapped.as_ref().ok().copied().filter(|c| !allowed.contains(*c)) {
                            refused(
                                format!(
                                    "refused: the rules turn {} into {}, which is not allowed here",
                                    d.category,
                                    choice.name()
                                ),
                                Some(advice.model),
                                Some(advice.latency_ms),
                                Some(advice.raw),
                            )
                        } else {
                            let choice = mapped.unwrap_or(LlmChoice::Escalate);
                            (
                                Outcome::LlmChose { choice, diagnosis: Some(advice.diagnosis.clone()) },
                                AuditEvent::LlmConsulted {
                                    model: Some(advice.model),
                                    latency_ms: Some(advice.latency_ms),
                                    choice: Some(choice),
                                    reason: advice.diagnosis.reason.clone(),
                                    raw: Some(advice.raw),
                                    diagnosis: Some(advice.diagnosis),
                                },
                            )
                        }
                    }
                    Ok(Err(e)) => refused(e.reason, None, None, e.raw),
                    Err(_) => {
                        refused(format!("no answer within {}s", self.timeouts.advice.as_secs()), None, None, None)
                    }
                };
                self.log(id, event);
                outcome
            }
            // The engine hands terminal actions back to `handle`.
            Action::Stop { .. } | Action::Resolved => Outcome::Failed { error: "not an executable action".into() },
        }
    }

    /// What OpsGuard measured about the crash, for the model: how long the
    /// run lasted (if the host says) and the restart budget spent.
    async fn crash_facts(&self, alarm: &Alarm, history: &History) -> CrashFacts {
        let budget = self.engine.rules().restart_budget;
        let now = self.clock.now();
        let window_ms = budget.window_secs.saturating_mul(1000);
        let recent = history.restarts.iter().filter(|t| now.millis_since(**t) < window_ms).count();
        let uptime_secs = match self.host.inspect(alarm.container.as_str()).await {
            Ok(s) => match (s.started_at, s.finished_at) {
                (Some(start), Some(end)) if end > start => Some(end.millis_since(start) / 1000),
                _ => None,
            },
            // A fact the model can do without; the consultation goes on.
            Err(_) => None,
        };
        CrashFacts {
            uptime_secs,
            restarts_in_window: Some(u32::try_from(recent).unwrap_or(u32::MAX)),
            max_restarts: Some(budget.max_restarts),
            window_secs: Some(budget.window_secs),
        }
    }

    /// Rapid checks until the service is confirmed (Running and healthy for
    /// `stable_checks` checks in a row, its alarm cleared), it is down for
    /// good, or the rapid window ends.
    async fn verify(&self, id: u64, alarm: &Alarm) -> Verification {
        let settings = self.engine.rules().observer;
        let mut cadence = Cadence::new(settings);
        cadence.trigger_rapid(self.clock.now());
        let mut stable = 0;
        let mut last_state = None;
        loop {
            match self.observer.recheck(&self.host, alarm).await {
                Ok(check) => {
                    self.log_check(id, &check);
                    last_state = check.state;
                    if check.is_good() {
                        stable += 1;
                        if stable >= settings.stable_checks {
                            return Verification::Confirmed;
                        }
                    } else {
                        stable = 0;
                        if check.is_settled_down() {
                            return Verification::NotConfirmed { last_state };
                        }
                    }
                }
                Err(e) => {
                    // A daemon that blinks may come back within the window.
                    stable = 0;
                    self.log(
                        id,
                        AuditEvent::Checked { state: None, health: None, cleared: None, error: Some(e.to_string()) },
                    );
                }
            }
            let now = self.clock.now();
            if !cadence.is_rapid(now) {
                return Verification::NotConfirmed { last_state };
            }
            self.clock.sleep(cadence.interval(now)).await;
        }
    }
}

/// When the watch loop ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct Until {
    /// After this many incidents have ended.
    pub incidents: Option<usize>,
    /// At this time.
    pub deadline: Option<Timestamp>,
}

/// `app.py`: the observer and the responder together, polling at the
/// observer's cadence and reacting to container events in between.
///
/// Incidents on different containers run side by side (at most one per
/// container, the zombie scope counting as one): a database restart waiting
/// for a human holds up neither a zombie outbreak nor a full web disk. They
/// share the responder's restart budget, incident and request numbering
/// and audit log. When the watch is to end, no new incident starts and the
/// ones under way finish; none is abandoned half-done.
pub struct Agent<H, A, L, C> {
    responder: Responder<H, A, L, C>,
    cadence: Cadence,
    /// Alarms already escalated to a human and not yet cleared: they are not
    /// opened again on every sweep.
    escalated: BTreeSet<(String, ContainerName)>,
}

/// How long a zombie count must hold still before the outbreak is acted on.
const ZOMBIE_SETTLE: Duration = Duration::from_secs(1);
/// At most this many settle periods, so a host where containers keep dying
/// still gets its clean-up.
const ZOMBIE_SETTLE_ROUNDS: u32 = 10;

fn alarm_key(a: &Alarm) -> (String, ContainerName) {
    // A database crash by code, not cause: the same outage re-read after a
    // clean (the disk no longer full) is no new incident while a human has it.
    (a.kind.code().to_string(), a.container.clone())
}

/// An incident that ran (or whose alarm cleared while it settled), with the
/// container it held.
struct Finished {
    container: ContainerName,
    key: (String, ContainerName),
    report: Option<IncidentReport>,
}

impl<H: Host, A: Approver, L: Advisor, C: Clock> Agent<H, A, L, C> {
    /// An agent around `responder`.
    pub fn new(responder: Responder<H, A, L, C>) -> Self {
        let cadence = Cadence::new(responder.engine.rules().observer);
        Agent { responder, cadence, escalated: BTreeSet::new() }
    }

    /// The responder.
    pub fn responder(&self) -> &Responder<H, A, L, C> {
        &self.responder
    }

    /// Watches until `until`; returns every finished incident, in the order
    /// they ended. `events` (e.g. Docker's event stream) triggers checks
    /// between sweeps.
    pub async fn run(
        &mut self,
        mut events: Option<mpsc::Receiver<ContainerEvent>>,
        until: Until,
    ) -> Vec<IncidentReport> {
        let Agent { responder, cadence, escalated } = self;
        let r: &Responder<H, A, L, C> = responder;
        let mut reports = Vec::new();
        // One future per container in trouble, polled together in this task;
        // issue 9's driver makes each of them an incident machine.
        let mut running = FuturesUnordered::new();
        let mut busy: BTreeSet<ContainerName> = BTreeSet::new();
        let mut next_sweep = r.clock.now();
        loop {
            if done(r, &reports, until) {
                // Nothing new starts; what is under way finishes.
                match running.next().await {
                    Some(f) => finish(r, cadence, escalated, &mut busy, &mut reports, f),
                    None => return reports,
                }
                continue;
            }
            let now = r.clock.now();
            if now >= next_sweep {
                let sweep = r.observer.sweep(&r.host, now).await;
                for e in &sweep.errors {
                    tracing::warn!(error = %e, "check failed");
                }
                let raised: BTreeSet<_> = sweep.alarms.iter().map(alarm_key).collect();
                // A condition that cleared may be escalated again if it returns.
                escalated.retain(|k| raised.contains(k));
                for alarm in sweep.alarms {
                    if let Some(f) = start(r, escalated, &mut busy, alarm) {
                        running.push(f);
                    }
                }
                let now = r.clock.now();
                next_sweep = now.plus_millis(cadence.interval(now).as_millis() as u64);
                continue;
            }
            let mut wait = Duration::from_millis(next_sweep.millis_since(now));
            // `--timeout 3` must not wait out a 30 s sweep interval.
            if let Some(d) = until.deadline {
                wait = wait.min(Duration::from_millis(d.millis_since(now)));
            }
            tokio::select! {
                _ = r.clock.sleep(wait) => {}
                Some(f) = running.next(), if !running.is_empty() => {
                    let had_steps = f.report.as_ref().is_some_and(|rep| !rep.steps.is_empty());
                    finish(r, cadence, escalated, &mut busy, &mut reports, f);
                    if had_steps {
                        // Rapid mode: look again soon after a fix.
                        let now = r.clock.now();
                        next_sweep = next_sweep.min(now.plus_millis(cadence.interval(now).as_millis() as u64));
                    }
                }
                ev = next_event(&mut events) => match ev {
                    Some(ev) => {
                        let now = r.clock.now();
                        if let Ok(Some(alarm)) = r.observer.check_event(&r.host, &ev, now).await
                            && let Some(f) = start(r, escalated, &mut busy, alarm)
                        {
                            running.push(f);
                        }
                    }
                    None => events = None,
                }
            }
        }
    }
}

/// The next container event, or never once there is no stream.
async fn next_event(events: &mut Option<mpsc::Receiver<ContainerEvent>>) -> Option<ContainerEvent> {
    match events.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The incident for `alarm`, unless it is already with a human or its
/// container already has one under way.
fn start<'r, H: Host, A: Approver, L: Advisor, C: Clock>(
    r: &'r Responder<H, A, L, C>,
    escalated: &BTreeSet<(String, ContainerName)>,
    busy: &mut BTreeSet<ContainerName>,
    alarm: Alarm,
) -> Option<impl Future<Output = Finished> + 'r> {
    let key = alarm_key(&alarm);
    if escalated.contains(&key) || !busy.insert(alarm.container.clone()) {
        return None;
    }
    Some(async move {
        let container = alarm.container.clone();
        let report = match settle(r, alarm).await {
            Some(alarm) => Some(r.respond(alarm).await),
            None => None,
        };
        Finished { container, key, report }
    })
}

/// Books a finished incident: its container is free again, an unresolved
/// one is not reopened until its condition clears, and after a fix the
/// cadence goes rapid.
fn finish<H: Host, A: Approver, L: Advisor, C: Clock>(
    r: &Responder<H, A, L, C>,
    cadence: &mut Cadence,
    escalated: &mut BTreeSet<(String, ContainerName)>,
    busy: &mut BTreeSet<ContainerName>,
    reports: &mut Vec<IncidentReport>,
    f: Finished,
) {
    busy.remove(&f.container);
    let Some(report) = f.report else { return };
    // A shadow incident is suppressed like an escalated one: nothing was
    // done, so the condition persists and would be re-logged every sweep.
    if report.resolution != Resolution::Resolved {
        escalated.insert(f.key);
    }
    if !report.steps.is_empty() {
        cadence.trigger_rapid(r.clock.now());
    }
    reports.push(report);
}

/// Waits for a zombie outbreak to stop growing before acting on it: a
/// batch of containers exits over a second or more on a loaded host, and
/// pruning half of them leaves the rest above the threshold, so the
/// verification fails and a routine clean-up is escalated (seen in CI).
/// Other alarms pass at once. `None` when the condition cleared meanwhile.
async fn settle<H: Host, A: Approver, L: Advisor, C: Clock>(r: &Responder<H, A, L, C>, alarm: Alarm) -> Option<Alarm> {
    if alarm.kind != AlarmKind::ZombieOutbreak {
        return Some(alarm);
    }
    let mut current = alarm;
    for _ in 0..ZOMBIE_SETTLE_ROUNDS {
        r.clock.sleep(ZOMBIE_SETTLE).await;
        let next = match r.observer.check_zombies(&r.host, r.clock.now()).await {
            Ok(next) => next?,
            // The host did not answer: act on what was seen.
            Err(_) => return Some(current),
        };
        let grew = next.evidence.exited_containers != current.evidence.exited_containers;
        current = next;
        if !grew {
            break;
        }
    }
    Some(current)
}

fn done<H: Host, A: Approver, L: Advisor, C: Clock>(
    r: &Responder<H, A, L, C>,
    reports: &[IncidentReport],
    until: Until,
) -> bool {
    until.incidents.is_some_and(|n| reports.len() >= n) || until.deadline.is_some_and(|d| r.clock.now() >= d)
}
