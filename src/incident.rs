//! The driver of incidents, the IO shell around the pure incident machine
//! ([`Incident`]: alarm → decide → approval gate for risky actions →
//! execute → verify → … until resolved or stopped): [`Responder`] carries
//! out what a machine asks on the host, the approver and the LLM, and feeds
//! back results and the clock's time; [`Agent`] is the watch loop that
//! feeds it alarms from the observer, one incident per container.
//!
//! The rules can be replaced while the agent runs ([`RulesHandle`], on
//! SIGHUP): new incidents and the observer use the new ones, an incident
//! already open finishes under the rules it opened with.
//!
//! Every step is audited. Every failure (a host error, a silent approver, a
//! garbled LLM answer) becomes an input that the machine turns into an
//! escalation; nothing here decides what to do next.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use tokio::sync::{mpsc, watch};

use crate::approval::Approver;
use crate::audit::{AuditEvent, AuditLog, Resolution};
use crate::clock::Clock;
use crate::engine::Engine;
use crate::health::Health;
use crate::host::{ContainerEvent, ContainerEventKind, Host};
use crate::llm::{self, AdviceRequest, Advisor, CrashFacts};
use crate::model::{Action, Alarm, ChoiceSet, ContainerName, Outcome, Timestamp};
use crate::observer::{DiskWatch, Observer, Role};
use crate::rules::Rules;
use crate::stateless::{Ctx as StatelessCtx, StatelessWatch, run_job};
use opsguard_core::schedule::{self, AlarmKey, Reread, Scheduler};
use opsguard_core::trend::FillTrend;

pub use opsguard_core::incident::{
    Incident, IncidentReport, Input, MAX_REASSESSMENTS, Opening, Output, RequestIds, Ticket, Timeouts,
};

/// An operation under way for an incident machine, as the input its result
/// becomes. Dropping it abandons the operation (an approval withdrawn, an
/// LLM past its deadline).
type Pending<'a> = Pin<Box<dyn Future<Output = Input> + Send + 'a>>;

/// Tells a running [`Agent`] (and its [`Responder`]) to stop: every open
/// incident closes at once for a human ([`Input::Shutdown`]: a pending
/// approval withdrawn and recorded as unanswered, nothing started after
/// it), no new incident opens, and [`Agent::run`] returns once they have
/// closed. Clones stop the same agent.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    fn new() -> ShutdownHandle {
        ShutdownHandle(Arc::new(watch::Sender::new(false)))
    }

    /// Stops the agent; later calls change nothing.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`ShutdownHandle::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the agent is told to stop.
    async fn requested(mut rx: watch::Receiver<bool>) {
        // The sender lives as long as the responder that awaits this.
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// The rules a new incident opens with, as the engine that decides by them
/// and the observer that looks for their alarms.
#[derive(Debug)]
struct InForce {
    engine: Engine,
    observer: Observer,
}

impl InForce {
    fn new(engine: Engine) -> Arc<InForce> {
        let observer = Observer::new(engine.shared_rules());
        Arc::new(InForce { engine, observer })
    }
}

/// Replaces the rules of a running [`Agent`] (and its [`Responder`]),
/// e.g. on SIGHUP. Incidents opened after it, and the observer's sweeps and
/// checks, use the new rules; an incident already open keeps the rules it
/// opened with to its end (its plan, budget and targets do not change under
/// it). The sweep cadence stays as the watch started with it: the
/// scheduler's `[observer]` interval_secs, rapid_interval_secs and
/// rapid_window_secs take effect at the next watch (log_window_secs, read by
/// the observer, and stable_checks, by new incidents, take effect at once).
/// Clones replace the same rules.
#[derive(Clone, Debug)]
pub struct RulesHandle {
    // Read once per incident and per sweep, written on SIGHUP: a guard
    // is held only to clone the Arc, never across an await.
    current: Arc<RwLock<Arc<InForce>>>,
    /// Whether the engine may consult an LLM (the advisor is configured).
    llm: bool,
}

/// Why a reload kept the rules in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadError {
    /// The rules file does not load or is not valid (its file and line
    /// are in the error).
    Invalid(crate::rules::RulesError),
    /// The new rules watch another scope: the host's checks and the event
    /// stream are bound to the scope the watch started with.
    ScopeChanged {
        /// The scope label in force.
        from: String,
        /// The scope label of the refused rules.
        to: String,
    },
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(e) => e.fmt(f),
            ReloadError::ScopeChanged { from, to } => write!(
                f,
                "the scope label changed from {from:?} to {to:?}; a running watch keeps its scope (restart it to change scope)"
            ),
        }
    }
}

impl std::error::Error for ReloadError {}

impl RulesHandle {
    fn new(rules: Arc<Rules>, llm: bool) -> RulesHandle {
        let engine = Engine::new(rules).with_llm(llm);
        RulesHandle { current: Arc::new(RwLock::new(InForce::new(engine))), llm }
    }

    fn current(&self) -> Arc<InForce> {
        // A panic elsewhere cannot leave an Arc half-written.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<Rules> {
        self.current().engine.shared_rules()
    }

    /// Loads and validates the rules file at `path` ([`crate::rules::load`],
    /// as `watch` does at start; `scope_label`: the `--scope-label` that
    /// overrides the file's) and puts it in force ([`RulesHandle::replace`]).
    /// On error the rules in force stay.
    pub fn reload(&self, path: &std::path::Path, scope_label: Option<&str>) -> Result<Arc<Rules>, ReloadError> {
        let mut rules = crate::rules::load(path).map_err(ReloadError::Invalid)?;
        if let Some(label) = scope_label {
            rules.scope_label = label.to_string();
        }
        let rules = Arc::new(rules);
        self.replace(rules.clone())?;
        Ok(rules)
    }

    /// Puts `rules` (validated: they come from [`crate::rules::load`] or
    /// [`Rules::from_toml_str`]) in force for new incidents and the
    /// observer; the engine keeps consulting the LLM or not as before.
    /// Refused, with the old rules kept, if they would change the scope
    /// label.
    pub fn replace(&self, rules: Arc<Rules>) -> Result<(), ReloadError> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let old = current.engine.rules();
        if old.scope_label != rules.scope_label {
            return Err(ReloadError::ScopeChanged { from: old.scope_label.clone(), to: rules.scope_label.clone() });
        }
        let engine = Engine::new(rules).with_llm(self.llm);
        *current = InForce::new(engine);
        Ok(())
    }
}

/// Runs incidents to their end against one host.
pub struct Responder<H, A, L, C> {
    host: H,
    approver: A,
    advisor: L,
    clock: C,
    rules: RulesHandle,
    audit: AuditLog,
    timeouts: Timeouts,
    /// Shadow mode: decide for real, change nothing on the host.
    shadow: bool,
    /// Restart times per container, across incidents, for the restart
    /// budget; shared by incidents running side by side. Never held across
    /// an await.
    restarts: Mutex<BTreeMap<ContainerName, Vec<Timestamp>>>,
    next_incident: AtomicU64,
    requests: RequestIds,
    shutdown: ShutdownHandle,
}

impl<H: Host, A: Approver, L: Advisor, C: Clock> Responder<H, A, L, C> {
    /// A responder; the engine consults the LLM only if `advisor` is configured.
    pub fn new(engine: Engine, host: H, approver: A, advisor: L, clock: C, audit: AuditLog) -> Self {
        let rules = RulesHandle::new(engine.shared_rules(), advisor.is_configured());
        Responder {
            host,
            approver,
            advisor,
            clock,
            rules,
            audit,
            timeouts: Timeouts::default(),
            shadow: false,
            restarts: Mutex::new(BTreeMap::new()),
            next_incident: AtomicU64::new(1),
            requests: RequestIds::default(),
            shutdown: ShutdownHandle::new(),
        }
    }

    /// What stops this responder's incidents (and the agent around it).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// What replaces this responder's rules while it runs.
    pub fn rules_handle(&self) -> RulesHandle {
        self.rules.clone()
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
    /// [`Resolution::Withheld`]; no approval is asked. Verification and a
    /// configured LLM still run: they look and advise, and touch nothing.
    pub fn with_shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The observer, applying the rules in force.
    pub fn observer(&self) -> Observer {
        self.rules.current().observer.clone()
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

    /// Handles one alarm until the incident is resolved or stopped.
    pub async fn handle(&mut self, opening: Alarm) -> IncidentReport {
        self.respond(opening).await
    }

    /// [`Responder::handle`] through a shared reference: incidents on
    /// different containers run side by side, so an approval pending for
    /// one holds up no other. Two at once on the same container would
    /// each act on it: the caller keeps to one per container, as
    /// [`Agent`] does.
    ///
    /// The incident itself is an [`Incident`] machine; this is its driver:
    /// it carries out what the machine asks, one operation at a time, and
    /// feeds back the result and the time.
    pub async fn respond(&self, opening: Alarm) -> IncidentReport {
        self.respond_as(None, opening).await
    }

    /// [`Responder::respond`] under the incident number `id` when one was
    /// set aside for this alarm (by its hold), else the next one.
    async fn respond_as(&self, id: Option<u64>, opening: Alarm) -> IncidentReport {
        let id = id.unwrap_or_else(|| self.next_incident.fetch_add(1, Ordering::SeqCst));
        // The incident keeps these rules to its end, whatever a reload does.
        let rules = self.rules.current();
        let mut incident = Incident::open(
            rules.engine.clone(),
            Opening {
                id,
                alarm: opening.clone(),
                at: self.clock.now(),
                restarts: self.restarts_of(&opening.container),
                approver: self.approver.name().to_string(),
                shadow: self.shadow,
                timeouts: self.timeouts,
            },
            self.requests.clone(),
        );
        let mut pending: Option<Pending<'_>> = None;
        let mut wake: Option<Timestamp> = None;
        let stop = self.shutdown.subscribe();
        let stopping = ShutdownHandle::requested(stop);
        tokio::pin!(stopping);
        loop {
            while let Some(output) = incident.poll() {
                match output {
                    Output::Audit(event) => self.log(id, event),
                    Output::WakeAt(at) => wake = Some(at),
                    Output::Withdraw { request } => {
                        tracing::debug!(incident = id, request, "approval withdrawn");
                        pending = None;
                    }
                    Output::Closed(report) => return report,
                    op => pending = self.start(id, &rules, op),
                }
            }
            let input = match pending.take() {
                Some(mut op) => {
                    // Someone else is acting: give them the time.
                    let timer = self.until(wake, true);
                    tokio::select! {
                        biased;
                        // Before the operation: nothing new starts after the
                        // signal, and one under way is abandoned.
                        () = &mut stopping => Input::Shutdown { at: self.clock.now() },
                        input = &mut op => input,
                        now = timer => {
                            // The operation stays under way unless the
                            // machine, told the time, asks for another.
                            pending = Some(op);
                            wake = None;
                            Input::Tick(now)
                        }
                    }
                }
                None => tokio::select! {
                    biased;
                    () = &mut stopping => Input::Shutdown { at: self.clock.now() },
                    now = self.until(wake.take(), false) => Input::Tick(now),
                },
            };
            incident.handle(input);
        }
    }

    /// The time, once `wake` has come (never, without one); `others`: while
    /// an operation is under way (see [`Clock::idle`]).
    async fn until(&self, wake: Option<Timestamp>, others: bool) -> Timestamp {
        match wake {
            Some(at) => {
                let now = self.clock.now();
                if at > now {
                    let d = Duration::from_millis(at.millis_since(now));
                    if others { self.clock.idle(d).await } else { self.clock.sleep(d).await }
                }
                self.clock.now()
            }
            None => std::future::pending().await,
        }
    }

    /// Starts the operation `op` asks for, as the input its result becomes.
    fn start<'a>(&'a self, id: u64, rules: &'a InForce, op: Output) -> Option<Pending<'a>> {
        let err = |e: crate::host::HostError| e.to_string();
        Some(match op {
            Output::Inspect { ticket, container } => Box::pin(async move {
                let status = self.host.inspect(container.as_str()).await.map_err(err);
                Input::Inspected { ticket, at: self.clock.now(), status }
            }),
            Output::AskApproval(request) => Box::pin(async move {
                let answer = self.approver.review(&request).await.map_err(|e| e.to_string());
                // Nobody answered a channel that failed.
                let signoff = answer.is_ok().then(|| self.approver.signoff(&request));
                Input::Answered { request: request.id, at: self.clock.now(), answer, signoff }
            }),
            Output::Execute { ticket, action } => Box::pin(async move {
                let outcome = self.execute(rules, &action).await;
                Input::Executed { ticket, at: self.clock.now(), outcome }
            }),
            Output::Consult { ticket, alarm, allowed } => Box::pin(async move {
                let outcome = self.consult(rules, id, &alarm, allowed).await;
                Input::Executed { ticket, at: self.clock.now(), outcome }
            }),
            Output::Check { ticket, alarm } => Box::pin(async move {
                let check = rules.observer.recheck(&self.host, &alarm).await.map_err(err);
                Input::Checked { ticket, at: self.clock.now(), check }
            }),
            Output::Reassess { ticket, alarm } => Box::pin(async move {
                let alarm = self.reassess(rules, &alarm).await.map_err(err);
                Input::Reassessed { ticket, at: self.clock.now(), alarm }
            }),
            Output::Audit(_) | Output::WakeAt(_) | Output::Withdraw { .. } | Output::Closed(_) => return None,
        })
    }

    /// After a voided approval: the alarm as the host shows it now, if the
    /// container is down again (`None` when it is up: verification follows).
    async fn reassess(&self, rules: &InForce, alarm: &Alarm) -> Result<Option<Alarm>, crate::host::HostError> {
        let Some(db) = rules.observer.roster().target_of(alarm.container.as_str(), Role::Database).cloned() else {
            return Ok(None);
        };
        rules.observer.check_database_at(&self.host, &db, self.clock.now()).await
    }

    /// What holds `alarm` back, if anything: a dependency of its service
    /// that has an incident of its own under way (in `healing`), or that is
    /// down or not yet healthy. As (dependency, how it was found). A
    /// dependency whose own alarm is held (in `holding`) holds nothing:
    /// two services that name each other would otherwise wait forever.
    async fn held_by(
        &self,
        alarm: &Alarm,
        healing: &BTreeSet<ContainerName>,
        holding: &BTreeSet<ContainerName>,
    ) -> Option<(String, String)> {
        let roster = self.observer().roster();
        let service = roster.get(alarm.container.as_str())?;
        for (dependency, containers) in &service.depends_on {
            if let Some(c) = containers.iter().find(|c| healing.contains(*c) && !holding.contains(*c)) {
                return Some((
                    dependency.to_string(),
                    format!("{} being healed", crate::redact::printable(c.as_str())),
                ));
            }
        }
        crate::stateless::blocking_dependency(&self.host, &service.depends_on, holding).await
    }

    /// Writes that `alarm` was held, under the incident number it keeps.
    fn record_held(&self, id: u64, alarm: &Alarm, (dependency, state): (String, String)) {
        self.log(id, AuditEvent::AlarmHeld { alarm: alarm.clone(), dependency, state });
    }

    /// What the stateless services' shell acts through, under `rules`.
    fn stateless_ctx<'a>(&'a self, rules: &'a Rules) -> StatelessCtx<'a, H, C> {
        StatelessCtx { host: &self.host, rules, clock: &self.clock, audit: &self.audit, ids: &self.next_incident }
    }

    fn restarts(&self) -> std::sync::MutexGuard<'_, BTreeMap<ContainerName, Vec<Timestamp>>> {
        // A panic elsewhere cannot leave a list of times half-written.
        self.restarts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restarts_of(&self, container: &ContainerName) -> Vec<Timestamp> {
        self.restarts().get(container).cloned().unwrap_or_default()
    }

    /// Carries out an action the machine let through: a restart only
    /// after its approval and the re-check of the crash approved.
    async fn execute(&self, rules: &InForce, action: &Action) -> Outcome {
        let failed = |e: crate::host::HostError| Outcome::Failed { error: e.to_string() };
        match action {
            Action::CleanLogs { target } => {
                let Some(t) = rules.observer.target(target.as_str()) else {
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
                let protect = rules.observer.protected();
                match self.host.prune_exited(&rules.engine.rules().scope_label, &protect).await {
                    Ok(removed) => Outcome::Pruned { removed: removed.len() as u32 },
                    Err(e) => failed(e),
                }
            }
            Action::Restart { target, .. } => {
                let result = self.host.restart(target.as_str()).await;
                // Counted whatever the answer, as the machine counts it: a
                // restart that timed out may still have happened.
                self.restarts().entry(target.clone()).or_default().push(self.clock.now());
                match result {
                    Ok(()) => Outcome::Restarted,
                    Err(e) => failed(e),
                }
            }
            // The machine asks for these in their own words (Consult, Check)
            // and closes on the terminal ones itself.
            Action::ConsultLlm | Action::Verify { .. } | Action::Stop { .. } | Action::Resolved => {
                Outcome::Failed { error: "not an executable action".into() }
            }
        }
    }

    /// Asks the LLM to diagnose the crash, and turns its diagnosis into a
    /// choice among `allowed` by the rules; the machine applies the deadline
    /// (a late answer is dropped with this future).
    async fn consult(&self, rules: &InForce, id: u64, alarm: &Alarm, allowed: ChoiceSet) -> Outcome {
        let facts = self.crash_facts(rules.engine.rules(), alarm).await;
        let rules = rules.engine.rules();
        let request = AdviceRequest::new(alarm.clone(), allowed, facts);
        let answers = llm::consult(&self.advisor, rules, request).await;
        let asked = answers.len();
        let mut outcome = Outcome::LlmFailed;
        for (i, answer) in answers.into_iter().enumerate() {
            let (choice, reason, diagnosis) = match answer.verdict {
                Ok((choice, diagnosis)) => {
                    outcome = Outcome::LlmChose { choice, diagnosis: Some(diagnosis.clone()) };
                    (Some(choice), diagnosis.reason.clone(), Some(diagnosis))
                }
                Err(refusal @ llm::Refusal::Contradicted { category, .. }) if i + 1 < asked => {
                    (None, format!("{refusal}; asked again with {category} ruled out"), None)
                }
                Err(refusal) => (None, refusal.to_string(), None),
            };
            let event = AuditEvent::LlmConsulted {
                model: answer.model,
                latency_ms: answer.latency_ms,
                choice,
                reason,
                raw: answer.raw,
                diagnosis,
            };
            self.log(id, event);
        }
        outcome
    }

    /// What OpsGuard measured about the crash, for the model: how long the
    /// run lasted (if the host says) and the restart budget spent.
    async fn crash_facts(&self, rules: &Rules, alarm: &Alarm) -> CrashFacts {
        let budget = rules.restart_budget;
        let now = self.clock.now();
        let window_ms = budget.window_secs.saturating_mul(1000);
        let recent = self.restarts_of(&alarm.container).iter().filter(|t| now.millis_since(**t) < window_ms).count();
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
}

pub use opsguard_core::schedule::{Delays, WatchLimit};

/// `app.py`: the observer and the responder together, polling at the
/// observer's cadence and reacting to container events in between.
///
/// The driver of a [`Scheduler`], which decides when to sweep, which
/// alarms become incidents (at most one per container, the zombie scope
/// counting as one; none for an alarm already with a human), how long a
/// death or an outbreak settles first, and when the watch ends. Incidents
/// on different containers run side by side: a database restart waiting
/// for a human holds up neither a zombie outbreak nor a full web disk. They
/// share the responder's restart budget, incident and request numbering
/// and audit log.
pub struct Agent<H, A, L, C> {
    responder: Responder<H, A, L, C>,
    delays: Delays,
    health: Health,
}

impl<H: Host, A: Approver, L: Advisor, C: Clock> Agent<H, A, L, C> {
    /// An agent around `responder`, with the default settle delays.
    pub fn new(responder: Responder<H, A, L, C>) -> Self {
        let interval = Duration::from_secs(responder.rules.rules().observer.interval_secs);
        let health = Health::new(responder.clock.now(), interval);
        Agent { responder, delays: Delays::default(), health }
    }

    /// Reports into `health` (its sweeps, its stop) instead of a health of
    /// its own.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// What this agent reports its health into (`/healthz`, `/readyz`).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Changes how long deaths and outbreaks settle.
    pub fn with_delays(mut self, delays: Delays) -> Self {
        self.delays = delays;
        self
    }

    /// The responder.
    pub fn responder(&self) -> &Responder<H, A, L, C> {
        &self.responder
    }

    /// What replaces the rules while [`Agent::run`] runs: see [`RulesHandle`].
    pub fn rules_handle(&self) -> RulesHandle {
        self.responder.rules_handle()
    }

    /// What stops [`Agent::run`]: see [`ShutdownHandle`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.responder.shutdown_handle()
    }

    /// Watches until `until`; returns every finished incident, in the order
    /// they ended. `events` (e.g. Docker's event stream, as it comes: the
    /// scheduler debounces deaths) triggers checks between sweeps.
    pub async fn run(
        &mut self,
        mut events: Option<mpsc::Receiver<ContainerEvent>>,
        until: WatchLimit,
    ) -> Vec<IncidentReport> {
        let r = &self.responder;
        // The cadence stays as the watch started (see RulesHandle).
        let settings = r.rules.rules().observer;
        let mut scheduler = Scheduler::new(settings, self.delays, until, r.clock.now())
            .with_disk_watch(Duration::from_millis(settings.disk_watch_ms));
        // Warned once per failing spell: the watch reads twice a second.
        let mut watch_failing = false;
        // Each web log disk's fill trend, fed by the watch (the settings
        // as the watch started: see RulesHandle).
        let mut trends: BTreeMap<ContainerName, Option<FillTrend>> = BTreeMap::new();
        let mut reports = Vec::new();
        // One future per open incident, polled together in this task.
        let mut running = FuturesUnordered::new();
        // The incidents hear it too, from the same handle, and close.
        let mut draining = false;
        let stopping = ShutdownHandle::requested(r.shutdown.subscribe());
        tokio::pin!(stopping);
        scheduler.handle(schedule::Input::Tick(r.clock.now()));
        let health = self.health.clone();
        // Stateless services (issue #10) are healed beside the incidents,
        // without approval; shadow mode changes nothing, so it leaves them
        // to Docker.
        let mut stateless = (!r.shadow).then(StatelessWatch::new);
        // Their restarts, run beside the incidents, a few at a time.
        let mut restarts = FuturesUnordered::new();
        // The containers with an incident under way, and the alarms held
        // for a dependency with the incident number each keeps.
        let mut healing: BTreeSet<ContainerName> = BTreeSet::new();
        let mut held: BTreeMap<AlarmKey, u64> = BTreeMap::new();
        if r.shutdown.is_shut_down() {
            scheduler.handle(schedule::Input::Drain);
            health.stopping();
            draining = true;
        }
        loop {
            while let Some(output) = scheduler.poll() {
                let input = match output {
                    schedule::Output::Sweep => {
                        let sweep = r.observer().sweep(&r.host, r.clock.now()).await;
                        // From the sweep's own listing; without one (the
                        // daemon did not answer) the services wait for the next.
                        if let (Some(s), Some(list)) = (stateless.as_mut(), sweep.listing.as_deref()) {
                            s.sweep(&r.stateless_ctx(&r.rules.rules()), list).await;
                        }
                        health.swept(r.clock.now());
                        // A hold ends with its alarm: one no sweep raises
                        // is forgotten (raised again, it is a new hold).
                        held.retain(|k, _| sweep.alarms.iter().any(|a| AlarmKey::of(a) == *k));
                        for e in &sweep.errors {
                            tracing::warn!(error = %e, "check failed");
                        }
                        schedule::Input::Swept { at: r.clock.now(), alarms: sweep.alarms }
                    }
                    schedule::Output::CheckDeath(container) => {
                        let died = ContainerEvent { container, kind: ContainerEventKind::Die, at: r.clock.now() };
                        match r.observer().check_event(&r.host, &died, r.clock.now()).await {
                            Ok(Some(alarm)) => schedule::Input::Raised { at: r.clock.now(), alarm },
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::warn!(error = %e, "check failed");
                                continue;
                            }
                        }
                    }
                    schedule::Output::WatchDisk => {
                        let now = r.clock.now();
                        let observer = r.observer();
                        let roster = observer.roster();
                        // A trend per web server watched; one no longer
                        // watched is forgotten.
                        trends.retain(|name, _| roster.target_of(name.as_str(), Role::Web).is_some());
                        let (mut alarms, mut read, mut failed) = (Vec::new(), Vec::new(), None);
                        for web in roster.of_role(Role::Web) {
                            match observer.watch_web(&r.host, web, now).await {
                                Ok(DiskWatch::Read { usage, alarm }) => {
                                    // Fed every reading, full or not: the
                                    // trend needs them all.
                                    let trend = match trends.entry(web.container.clone()) {
                                        Entry::Occupied(t) => t.into_mut(),
                                        Entry::Vacant(v) => v.insert(observer.fill_trend()),
                                    };
                                    let foreseen =
                                        trend.as_mut().and_then(|t| observer.foresee_web(t, web, usage, now));
                                    alarms.extend(alarm.or(foreseen));
                                    read.push(web.container.clone());
                                }
                                Ok(DiskWatch::Unavailable) => {}
                                Err(e) => failed = Some(e),
                            }
                        }
                        match failed {
                            Some(e) if !std::mem::replace(&mut watch_failing, true) => {
                                tracing::warn!(error = %e, "disk watch failed; the sweeps still read the disk");
                            }
                            Some(_) => {}
                            None => watch_failing = false,
                        }
                        schedule::Input::DiskWatched { at: r.clock.now(), alarms, read }
                    }
                    schedule::Output::RereadZombies => {
                        let reread = match r.observer().check_zombies(&r.host, r.clock.now()).await {
                            Ok(Some(alarm)) => Reread::Raised(alarm),
                            Ok(None) => Reread::Cleared,
                            Err(_) => Reread::Failed,
                        };
                        schedule::Input::Reread { at: r.clock.now(), reread }
                    }
                    schedule::Output::Open(alarm) => {
                        let key = AlarmKey::of(&alarm);
                        // Held while what its service needs is down or
                        // being healed: written once, looked at again at
                        // the next sweep that raises it.
                        let holding: BTreeSet<ContainerName> =
                            held.keys().map(|k| k.container.clone()).filter(|c| *c != key.container).collect();
                        if let Some(why) = r.held_by(&alarm, &healing, &holding).await {
                            if let Entry::Vacant(v) = held.entry(key.clone()) {
                                let id = *v.insert(r.next_incident.fetch_add(1, Ordering::SeqCst));
                                r.record_held(id, &alarm, why);
                            }
                            schedule::Input::Held { at: r.clock.now(), key }
                        } else {
                            // A hold's record and its incident share a number.
                            let id = held.remove(&key);
                            healing.insert(key.container.clone());
                            running.push(async move { (key, r.respond_as(id, alarm).await) });
                            continue;
                        }
                    }
                };
                scheduler.handle(input);
            }
            if scheduler.is_finished() {
                // A restart sent is audited, whatever else ends.
                while let Some((job, error)) = restarts.next().await {
                    if let Some(s) = stateless.as_mut() {
                        s.restarted(&r.stateless_ctx(&r.rules.rules()), job, error);
                    }
                }
                return reports;
            }
            // Nothing new is started once a stop was asked for.
            while !draining && restarts.len() < MAX_STATELESS_RESTARTS_AT_ONCE {
                let Some(job) = stateless.as_mut().and_then(StatelessWatch::next_job) else { break };
                restarts.push(run_job(&r.host, job));
            }
            let wake = scheduler.next_wake();
            let wake = match (wake, stateless.as_ref().and_then(StatelessWatch::next_wake)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(at) => r.clock.sleep(Duration::from_millis(at.millis_since(r.clock.now()))).await,
                    None => std::future::pending().await,
                }
            };
            // In this order: work that is ready is done before the time
            // moves on (a simulated clock moves as the sleep is polled).
            tokio::select! {
                biased;
                () = &mut stopping, if !draining => {
                    draining = true;
                    health.stopping();
                    scheduler.handle(schedule::Input::Drain);
                }
                Some((job, error)) = restarts.next(), if !restarts.is_empty() => {
                    if let Some(s) = stateless.as_mut() {
                        s.restarted(&r.stateless_ctx(&r.rules.rules()), job, error);
                    }
                }
                Some((key, report)) = running.next(), if !running.is_empty() => {
                    healing.remove(&key.container);
                    scheduler.handle(schedule::Input::Finished {
                        at: r.clock.now(),
                        key,
                        // A shadow incident is suppressed like an escalated
                        // one: nothing was done, so the condition persists
                        // and would be re-logged every sweep.
                        resolved: report.resolution == Resolution::Resolved,
                        acted: !report.steps.is_empty(),
                    });
                    reports.push(report);
                }
                ev = next_event(&mut events) => {
                    if let (Some(s), Some(ev)) = (stateless.as_mut(), ev.as_ref().filter(|e| stateless_event(e))) {
                        s.on_event(&r.stateless_ctx(&r.rules.rules()), &ev.container).await;
                    }
                    match ev {
                    Some(ev) if ev.kind == ContainerEventKind::Die => {
                        scheduler.handle(schedule::Input::Died { at: r.clock.now(), container: ev.container });
                    }
                    Some(ev) => match r.observer().check_event(&r.host, &ev, r.clock.now()).await {
                        Ok(Some(alarm)) => scheduler.handle(schedule::Input::Raised { at: r.clock.now(), alarm }),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "check failed"),
                    },
                    None => events = None,
                    }
                }
                _ = sleep => {
                    if let Some(s) = stateless.as_mut() {
                        s.tick(&r.stateless_ctx(&r.rules.rules())).await;
                    }
                    scheduler.handle(schedule::Input::Tick(r.clock.now()));
                }
            }
        }
    }
}

/// Stateless restarts under way at once: enough that a burst of deaths is
/// healed in seconds, few enough not to swamp the Docker daemon.
const MAX_STATELESS_RESTARTS_AT_ONCE: usize = 8;

/// Whether an event may concern a stateless service: a death, a health
/// change. A web or database one goes on to the observer as before.
fn stateless_event(ev: &ContainerEvent) -> bool {
    matches!(ev.kind, ContainerEventKind::Die | ContainerEventKind::HealthStatus(_))
}

/// The next container event, or never once there is no stream.
async fn next_event(events: &mut Option<mpsc::Receiver<ContainerEvent>>) -> Option<ContainerEvent> {
    match events.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
