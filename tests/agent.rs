//! The watch loop against hosts whose trouble is still unfolding when it is
//! first seen.

mod sim_lab;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditLog, Resolution};
use opsguard::clock::SimClock;
use opsguard::engine::Engine;
use opsguard::host::sim::{SimFault, SimHost};
use opsguard::host::{CleanReport, ContainerStatus, ContainerSummary, DiskUsage, Host, HostError, LogLine};
use opsguard::incident::{Agent, Responder, WatchLimit};
use opsguard::llm::NoAdvisor;
use opsguard::model::{AlarmKind, ContainerName, Outcome, Timestamp};
use opsguard::rules::Rules;
use sim_lab::sim_lab;

/// A simulated host where a batch of containers keeps exiting: each listing
/// finds `per_listing` more zombies, `listings` times, as when a batch job's
/// containers die over a few seconds on a loaded host.
struct TricklingZombies {
    sim: SimHost,
    listings: AtomicU32,
    per_listing: u32,
}

impl Host for TricklingZombies {
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, HostError> {
        if self.listings.fetch_sub(1, Ordering::SeqCst) as i32 > 0 {
            self.sim.inject(SimFault::Zombies(self.per_listing));
        }
        self.sim.list_containers().await
    }
    async fn inspect(&self, container: &str) -> Result<ContainerStatus, HostError> {
        self.sim.inspect(container).await
    }
    async fn recent_logs(&self, container: &str, since: Timestamp, max: usize) -> Result<Vec<LogLine>, HostError> {
        self.sim.recent_logs(container, since, max).await
    }
    async fn disk_usage(&self, container: &str, path: &str) -> Result<DiskUsage, HostError> {
        self.sim.disk_usage(container, path).await
    }
    async fn clean_logs(&self, container: &str, log_paths: &[String]) -> Result<CleanReport, HostError> {
        self.sim.clean_logs(container, log_paths).await
    }
    async fn restart(&self, container: &str) -> Result<(), HostError> {
        self.sim.restart(container).await
    }
    async fn prune_exited(&self, label: &str, protect: &[ContainerName]) -> Result<Vec<ContainerName>, HostError> {
        self.sim.prune_exited(label, protect).await
    }
}

#[tokio::test]
async fn a_growing_zombie_outbreak_is_pruned_once_it_stops_growing() {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    // Seven listings each find three more: 21 zombies in all, more than the
    // threshold after the second listing, still growing for five more.
    let host = TricklingZombies { sim: sim.clone(), listings: AtomicU32::new(7), per_listing: 3 };
    let rules = Arc::new(Rules::default_rules());
    let responder =
        Responder::new(Engine::new(rules), host, PolicyApprover::Deny, NoAdvisor, clock.clone(), AuditLog::in_memory());
    let mut agent = Agent::new(responder);
    let reports = agent.run(None, WatchLimit { incidents: Some(1), deadline: None }).await;
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.alarm.kind, AlarmKind::ZombieOutbreak);
    assert_eq!(r.alarm.evidence.exited_containers, Some(21), "acted before the outbreak stopped growing");
    assert!(
        r.steps.iter().any(|s| s.outcome == Outcome::Pruned { removed: 21 }),
        "one prune removes them all: {:?}",
        r.steps
    );
    assert_eq!(r.resolution, Resolution::Resolved);
}

#[tokio::test]
async fn a_deadline_ends_the_watch_without_waiting_out_the_sweep_interval() {
    use opsguard::clock::Clock;
    // A quiet host: nothing to do, so only the deadline can end the watch.
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    let rules = Arc::new(Rules::default_rules());
    assert!(rules.observer.interval_secs >= 30);
    let responder =
        Responder::new(Engine::new(rules), sim, PolicyApprover::Deny, NoAdvisor, clock.clone(), AuditLog::in_memory());
    let mut agent = Agent::new(responder);
    let start = clock.now();
    let reports = agent.run(None, WatchLimit { incidents: None, deadline: Some(start.plus_millis(3_000)) }).await;
    assert!(reports.is_empty());
    assert_eq!(clock.now().millis_since(start), 3_000, "the watch outlived its deadline");
}

#[tokio::test]
async fn a_resumed_watch_numbers_on_and_remembers_the_restart_budget() {
    use opsguard::audit::Resume;
    use opsguard::clock::Clock;
    use opsguard::host::sim::{DB, SimOp};
    use opsguard::model::StopReason;
    use std::collections::BTreeMap;

    let mut lab = sim_lab(PolicyApprover::ApproveAll, NoAdvisor);
    let max = Rules::default_rules().restart_budget.max_restarts as u64;
    // An earlier run restarted db-prod as often as the budget allows, minutes ago.
    let earlier: Vec<Timestamp> = (0..max).map(|i| Timestamp(lab.clock.now().0 - 600_000 + i * 60_000)).collect();
    let resume = Resume { next_incident: 42, restarts: BTreeMap::from([(ContainerName::new(DB), earlier)]) };
    lab.responder = lab.responder.resuming(resume);
    let sim = lab.host.clone();
    sim.inject(SimFault::DbOomKill);
    lab.clock.sleep(std::time::Duration::from_secs(1)).await;
    let alarm = lab.db_alarm().await;
    let report = lab.responder.handle(alarm).await;
    assert_eq!(report.id, 42);
    assert_eq!(report.resolution, Resolution::Stopped { reason: StopReason::RestartBudgetExhausted });
    assert!(!sim.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", sim.ops());
}

// Issue 8, item 9: a restart that returned an error (a timeout) may still
// have happened on the daemon: it counts against the restart budget, in
// this run and in the next one that resumes from the audit log.
#[tokio::test]
async fn a_restart_that_failed_still_counts_against_the_budget() {
    use opsguard::audit::{AuditLog, Resume};
    use opsguard::clock::Clock;
    use opsguard::host::sim::{DB, SimKnobs, SimOp};
    use opsguard::model::StopReason;
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = AuditLog::to_file(&path).unwrap();
    let mut lab = sim_lab::sim_lab_with_audit(PolicyApprover::ApproveAll, NoAdvisor, audit);
    let max = Rules::default_rules().restart_budget.max_restarts as u64;
    // One restart short of the budget, minutes ago.
    let earlier: Vec<Timestamp> = (0..max - 1).map(|i| Timestamp(lab.clock.now().0 - 600_000 + i * 60_000)).collect();
    let resume = Resume { next_incident: 1, restarts: BTreeMap::from([(ContainerName::new(DB), earlier)]) };
    lab.responder = lab.responder.resuming(resume);
    let sim = lab.host.clone();

    // The daemon times out on the restart.
    sim.set_knobs(SimKnobs { restart_fails: true, ..Default::default() });
    sim.inject(SimFault::DbOomKill);
    lab.clock.sleep(std::time::Duration::from_secs(1)).await;
    let first = lab.responder.handle(lab.db_alarm().await).await;
    assert_eq!(first.resolution, Resolution::Stopped { reason: StopReason::ActionFailed });

    // The next crash finds the budget spent: no further restart is tried.
    sim.set_knobs(SimKnobs::default());
    lab.clock.sleep(std::time::Duration::from_secs(5)).await;
    let second = lab.responder.handle(lab.db_alarm().await).await;
    assert_eq!(second.resolution, Resolution::Stopped { reason: StopReason::RestartBudgetExhausted });
    assert!(!sim.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", sim.ops());

    // A new watch resuming from the audit log counts it too.
    let resumed = opsguard::audit::resume(&path).unwrap();
    assert_eq!(resumed.restarts.get(&ContainerName::new(DB)).map(Vec::len), Some(1), "{resumed:?}");
}

/// The tokio timer as the agent's clock, so that under paused time the
/// approval timeout, the agent's sleeps and the incidents' sleeps share one
/// timeline (a `SimClock` jumps for each sleeper separately). It keeps the
/// simulated host's clock in step.
#[derive(Clone)]
struct TokioClock {
    base: tokio::time::Instant,
    start: Timestamp,
    sim: SimClock,
}

impl opsguard::clock::Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let now = self.start.plus_millis(self.base.elapsed().as_millis() as u64);
        let sim = self.sim.now();
        if now > sim {
            self.sim.advance(std::time::Duration::from_millis(now.millis_since(sim)));
        }
        now
    }

    async fn sleep(&self, d: std::time::Duration) {
        tokio::time::sleep(d).await
    }

    async fn idle(&self, d: std::time::Duration) {
        tokio::time::sleep(d).await
    }
}

// Issue 8, item 7: a database restart waiting for a human who never answers
// holds up neither a zombie outbreak nor a web disk that fills meanwhile.
#[tokio::test(start_paused = true)]
async fn other_containers_are_healed_while_a_database_approval_waits() {
    use opsguard::approval::ChannelApprover;
    use opsguard::audit::AuditEvent;
    use opsguard::clock::Clock as _;
    use opsguard::model::{RootCause, StopReason};

    let sim_clock = SimClock::new(sim_lab::START);
    let clock = TokioClock { base: tokio::time::Instant::now(), start: sim_lab::START, sim: sim_clock.clone() };
    let sim = SimHost::lab(sim_clock);
    // Kept, never answered: the request waits out its whole timeout.
    let (approver, mut requests) = ChannelApprover::new(4);
    let audit = AuditLog::in_memory();
    let responder = Responder::new(
        Engine::new(Arc::new(Rules::default_rules())),
        sim.clone(),
        approver,
        NoAdvisor,
        clock.clone(),
        audit.clone(),
    );
    let approval_timeout = std::time::Duration::from_secs(300);
    let responder =
        responder.with_timeouts(opsguard::incident::Timeouts { approval: approval_timeout, ..Default::default() });
    sim.inject(SimFault::DbOomKill);
    sim.inject(SimFault::Zombies(12));
    let start = clock.now();
    let later = sim.clone();
    let fill = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(40)).await;
        later.inject(SimFault::WebDiskFill);
    });
    let mut agent = Agent::new(responder);
    let run = agent.run(None, WatchLimit { incidents: Some(3), deadline: Some(start.plus_millis(3_600_000)) });
    let (reports, pending) = tokio::join!(run, requests.recv());
    fill.await.unwrap();
    let pending = pending.expect("the database restart was put to a human");
    assert_eq!(pending.request.alarm.kind, AlarmKind::DbCrash(RootCause::OomKill));

    let by_kind = |k: AlarmKind| reports.iter().find(|r| r.alarm.kind == k).unwrap_or_else(|| panic!("{reports:#?}"));
    let db = by_kind(AlarmKind::DbCrash(RootCause::OomKill));
    let zombies = by_kind(AlarmKind::ZombieOutbreak);
    let web = by_kind(AlarmKind::WebLogSaturation);
    assert_eq!(db.resolution, Resolution::Stopped { reason: StopReason::ApprovalRejected });
    assert_eq!(zombies.resolution, Resolution::Resolved);
    assert_eq!(web.resolution, Resolution::Resolved);
    // Both were done while the request was still waiting.
    let answered = audit
        .records()
        .into_iter()
        .find(|r| matches!(r.event, AuditEvent::ApprovalAnswered { .. }))
        .expect("the request timed out")
        .ts;
    assert!(answered.millis_since(start) >= approval_timeout.as_millis() as u64);
    for r in [zombies, web] {
        assert!(r.closed_at < answered, "{} waited for the database's approval: {r:#?}", r.alarm);
    }
}

/// An approver that tells the agent to stop (the SIGTERM of `docker stop`)
/// when it is asked, and never answers.
struct StopsWhileAsked(Arc<std::sync::OnceLock<opsguard::incident::ShutdownHandle>>);

impl opsguard::approval::Approver for StopsWhileAsked {
    fn name(&self) -> &str {
        "test:stops-while-asked"
    }
    async fn review(
        &self,
        _: &opsguard::approval::ApprovalRequest,
    ) -> Result<opsguard::approval::Answer, opsguard::approval::ApprovalError> {
        if let Some(stop) = self.0.get() {
            stop.shutdown();
        }
        std::future::pending().await
    }
}

// Issue 11, item 4: a stop while a human is asked withdraws the request,
// records it as unanswered, restarts nothing and ends the watch.
#[tokio::test]
async fn a_stop_while_an_approval_is_pending_closes_the_incident_and_restarts_nothing() {
    use opsguard::audit::AuditEvent;
    use opsguard::host::sim::SimOp;
    use opsguard::model::StopReason;

    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    sim.inject(SimFault::DbOomKill);
    let handle = Arc::new(std::sync::OnceLock::new());
    let rules = Arc::new(Rules::default_rules());
    let responder = Responder::new(
        Engine::new(rules),
        sim.clone(),
        StopsWhileAsked(handle.clone()),
        NoAdvisor,
        clock.clone(),
        AuditLog::in_memory(),
    );
    let mut agent = Agent::new(responder);
    handle.set(agent.shutdown_handle()).unwrap();
    // No limit: only the stop can end this watch (the guard below keeps a
    // broken stop from hanging the suite).
    let run = agent.run(None, WatchLimit { incidents: None, deadline: None });
    let reports =
        tokio::time::timeout(std::time::Duration::from_secs(120), run).await.expect("the stop ended the watch");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].resolution, Resolution::Stopped { reason: StopReason::Interrupted });
    assert!(!sim.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", sim.ops());
    let records = agent.responder().audit().records();
    let unanswered = records.iter().any(|r| {
        matches!(&r.event, AuditEvent::ApprovalAnswered { approved: false, detail, .. } if detail.contains("unanswered"))
    });
    assert!(unanswered, "{records:#?}");
    let closed_for_a_human = records.iter().any(|r| {
        matches!(
            r.event,
            AuditEvent::IncidentClosed { resolution: Resolution::Stopped { reason: StopReason::Interrupted }, .. }
        )
    });
    assert!(closed_for_a_human, "{records:#?}");
}

#[tokio::test]
async fn a_watch_told_to_stop_before_it_starts_opens_nothing() {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    sim.inject(SimFault::DbOomKill);
    let rules = Arc::new(Rules::default_rules());
    let responder = Responder::new(
        Engine::new(rules),
        sim.clone(),
        PolicyApprover::ApproveAll,
        NoAdvisor,
        clock.clone(),
        AuditLog::in_memory(),
    );
    let mut agent = Agent::new(responder);
    agent.shutdown_handle().shutdown();
    let run = agent.run(None, WatchLimit { incidents: None, deadline: None });
    let reports =
        tokio::time::timeout(std::time::Duration::from_secs(120), run).await.expect("the stop ended the watch");
    assert!(reports.is_empty(), "{reports:?}");
    assert!(sim.ops().iter().all(|op| !matches!(op, opsguard::host::sim::SimOp::Restart { .. })));
}

/// The built-in rules with `from` replaced by `to` (checked to be there).
fn rules_text_with(from: &str, to: &str) -> String {
    let text = opsguard::rules::DEFAULT_RULES;
    assert!(text.contains(from), "the default rules no longer contain {from:?}");
    text.replacen(from, to, 1)
}

const OOM_PLAN: &str = "cause = \"oom_kill\"\nsteps = [\"restart_database_risky\", \"verify\"]";

// Issue 11, item 4: SIGHUP reloads the rules. A rules file that does not
// load changes nothing (the error names its line); a valid one decides
// the next incident; one that changes the scope is refused.
#[tokio::test]
async fn reloaded_rules_decide_the_next_incident_and_bad_ones_change_nothing() {
    use opsguard::host::sim::SimOp;
    use opsguard::incident::ReloadError;
    use opsguard::model::{RootCause, StopReason};

    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    let responder = Responder::new(
        Engine::new(Arc::new(Rules::default_rules())),
        sim.clone(),
        PolicyApprover::ApproveAll,
        NoAdvisor,
        clock.clone(),
        AuditLog::in_memory(),
    );
    let mut agent = Agent::new(responder);
    let handle = agent.rules_handle();
    let started_with = handle.rules();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    let restarts = || sim.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count();
    let one = WatchLimit { incidents: Some(1), deadline: None };

    // A step no plan knows: refused with its line, the old rules stay.
    std::fs::write(&path, rules_text_with(OOM_PLAN, "cause = \"oom_kill\"\nsteps = [\"reboot_host\", \"verify\"]"))
        .unwrap();
    let err = handle.reload(&path, None).unwrap_err();
    let ReloadError::Invalid(e) = &err else { panic!("{err}") };
    assert_eq!(e.file, path);
    assert!(e.line.is_some(), "{err}");
    assert!(Arc::ptr_eq(&handle.rules(), &started_with));
    // And the watch goes on under them: an OOM kill is restarted.
    sim.inject(SimFault::DbOomKill);
    let first = agent.run(None, one).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].alarm.kind, AlarmKind::DbCrash(RootCause::OomKill));
    assert_eq!(first[0].resolution, Resolution::Resolved);
    assert_eq!(restarts(), 1, "{:?}", sim.ops());

    // Valid rules where an OOM kill goes straight to a human.
    std::fs::write(&path, rules_text_with(OOM_PLAN, "cause = \"oom_kill\"\nsteps = [\"stop\"]")).unwrap();
    let reloaded = handle.reload(&path, None).unwrap();
    assert!(Arc::ptr_eq(&handle.rules(), &reloaded));
    sim.inject(SimFault::DbOomKill);
    let second = agent.run(None, one).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].alarm.kind, AlarmKind::DbCrash(RootCause::OomKill));
    assert!(matches!(second[0].resolution, Resolution::Stopped { .. }), "{:?}", second[0].resolution);
    assert_ne!(second[0].resolution, Resolution::Stopped { reason: StopReason::RestartBudgetExhausted });
    assert_eq!(restarts(), 1, "the new plan restarts nothing: {:?}", sim.ops());

    // Another scope: refused (the host is bound to the old one), unless
    // --scope-label keeps the one in force.
    std::fs::write(&path, rules_text_with("label = \"opsguard.lab=true\"", "label = \"team=other\"")).unwrap();
    let err = handle.reload(&path, None).unwrap_err();
    assert!(matches!(err, ReloadError::ScopeChanged { .. }), "{err}");
    assert!(Arc::ptr_eq(&handle.rules(), &reloaded));
    let kept = handle.reload(&path, Some("opsguard.lab=true")).unwrap();
    assert_eq!(kept.scope_label, "opsguard.lab=true");
}

/// An approver that reloads the rules (a SIGHUP) while it is asked, then
/// approves.
struct ReloadsWhileAsked {
    handle: Arc<std::sync::OnceLock<opsguard::incident::RulesHandle>>,
    rules: Arc<Rules>,
}

impl opsguard::approval::Approver for ReloadsWhileAsked {
    fn name(&self) -> &str {
        "test:reloads-while-asked"
    }
    async fn review(
        &self,
        request: &opsguard::approval::ApprovalRequest,
    ) -> Result<opsguard::approval::Answer, opsguard::approval::ApprovalError> {
        self.handle.get().expect("the handle is set before the watch").replace(self.rules.clone()).unwrap();
        Ok(opsguard::approval::Answer::Approve { request: request.id })
    }
}

// An incident already open keeps the rules it opened with: a reload that
// no longer watches the database under that name does not strand the
// restart's verification.
#[tokio::test]
async fn an_open_incident_keeps_the_rules_it_opened_with() {
    use opsguard::host::sim::SimOp;

    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    sim.inject(SimFault::DbOomKill);
    let renamed = rules_text_with("container = \"db-prod\"", "container = \"db-replica\"");
    let renamed = Arc::new(Rules::from_toml_str(&renamed, std::path::Path::new("renamed.toml")).unwrap());
    let handle = Arc::new(std::sync::OnceLock::new());
    let approver = ReloadsWhileAsked { handle: handle.clone(), rules: renamed.clone() };
    let responder = Responder::new(
        Engine::new(Arc::new(Rules::default_rules())),
        sim.clone(),
        approver,
        NoAdvisor,
        clock.clone(),
        AuditLog::in_memory(),
    );
    let mut agent = Agent::new(responder);
    handle.set(agent.rules_handle()).unwrap();
    let reports = agent.run(None, WatchLimit { incidents: Some(1), deadline: None }).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].resolution, Resolution::Resolved, "{:#?}", reports[0].steps);
    assert!(sim.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", sim.ops());
    // The reload took: the observer now looks for the renamed database.
    assert!(Arc::ptr_eq(&agent.rules_handle().rules(), &renamed));
    assert_eq!(agent.responder().observer().rules().database.container.as_str(), "db-replica");
}
