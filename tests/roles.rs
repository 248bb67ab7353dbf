//! Web servers and databases found by their labels (issue #10), on the
//! simulated host: each healed by its own incident beside the
//! specification's two, on its own paths; a label asking for a dangerous
//! path watches nothing; prune never touches a watched service.

use std::sync::Arc;

use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditEvent, AuditLog, Resolution};
use opsguard::clock::{Clock, SimClock};
use opsguard::engine::Engine;
use opsguard::host::sim::{SimFault, SimHost, SimOp};
use opsguard::host::{ContainerEvent, ContainerEventKind};
use opsguard::incident::{Agent, IncidentReport, Responder, WatchLimit};
use opsguard::llm::NoAdvisor;
use opsguard::model::{AlarmKind, ContainerState, RootCause, StopReason, Timestamp};
use opsguard::observer::{Observer, Role};
use opsguard::rules::Rules;

const DB_LABELS: [&str; 4] =
    ["opsguard.lab=true", "opsguard.enable=true", "opsguard.role=database", "opsguard.disk=/var/lib/postgresql/data"];
const WEB_LABELS: [&str; 4] =
    ["opsguard.lab=true", "opsguard.enable=true", "opsguard.role=web", "opsguard.logs=/srv/shop/logs"];

struct Lab {
    sim: SimHost,
    clock: SimClock,
    audit: AuditLog,
}

fn lab() -> Lab {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    Lab { sim: SimHost::lab(clock.clone()), clock, audit: AuditLog::in_memory() }
}

impl Lab {
    /// Watches until `incidents` have ended (or a simulated hour passed).
    async fn watch(&self, approver: PolicyApprover, incidents: usize) -> Vec<IncidentReport> {
        let responder = Responder::new(
            Engine::new(Arc::new(Rules::default_rules())),
            self.sim.clone(),
            approver,
            NoAdvisor,
            self.clock.clone(),
            self.audit.clone(),
        );
        let deadline = self.clock.now().plus_millis(3_600_000);
        Agent::new(responder).run(None, WatchLimit { incidents: Some(incidents), deadline: Some(deadline) }).await
    }

    fn restarts_of(&self, name: &str) -> usize {
        self.sim.ops().iter().filter(|op| matches!(op, SimOp::Restart { container, .. } if container == name)).count()
    }
}

fn about<'a>(reports: &'a [IncidentReport], container: &str) -> Vec<&'a IncidentReport> {
    reports.iter().filter(|r| r.alarm.container.as_str() == container).collect()
}

#[tokio::test]
async fn two_databases_crash_together_and_each_is_healed_by_its_own_incident() {
    let lab = lab();
    lab.sim.add_database("shop-db", &DB_LABELS);
    lab.sim.inject(SimFault::DbOomKill);
    lab.sim.oom_kill("shop-db");
    let reports = lab.watch(PolicyApprover::ApproveAll, 2).await;
    for db in ["db-prod", "shop-db"] {
        let mine = about(&reports, db);
        assert_eq!(mine.len(), 1, "{db}: {reports:#?}");
        assert_eq!(mine[0].alarm.kind, AlarmKind::DbCrash(RootCause::OomKill), "{db}");
        assert_eq!(mine[0].resolution, Resolution::Resolved, "{db}: {:#?}", mine[0]);
        assert_eq!(lab.restarts_of(db), 1, "{db}");
        assert_eq!(lab.sim.state(db), Some(ContainerState::Running), "{db}");
    }
    assert_ne!(reports[0].id, reports[1].id);
}

#[tokio::test]
async fn a_labelled_database_restart_still_needs_a_human() {
    let lab = lab();
    lab.sim.add_database("shop-db", &DB_LABELS);
    lab.sim.oom_kill("shop-db");
    let reports = lab.watch(PolicyApprover::Deny, 1).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].alarm.container.as_str(), "shop-db");
    assert!(matches!(reports[0].resolution, Resolution::Stopped { .. }), "{:?}", reports[0].resolution);
    assert_eq!(lab.restarts_of("shop-db"), 0, "restarted without approval");
    assert_eq!(lab.sim.state("shop-db"), Some(ContainerState::Exited));
    assert_eq!(lab.sim.state("db-prod"), Some(ContainerState::Running), "the rules' database untouched");
}

#[tokio::test]
async fn a_labelled_web_servers_full_disk_is_cleaned_on_its_own_log_paths() {
    let lab = lab();
    lab.sim.add_web("shop-web", &WEB_LABELS, "/srv/shop/logs");
    lab.sim.fill_logs("shop-web", "/srv/shop/logs");
    let reports = lab.watch(PolicyApprover::Deny, 1).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].alarm.kind, AlarmKind::WebLogSaturation);
    assert_eq!(reports[0].alarm.container.as_str(), "shop-web");
    assert_eq!(reports[0].resolution, Resolution::Resolved, "{:#?}", reports[0]);
    let cleans: Vec<SimOp> = lab.sim.ops().into_iter().filter(|op| matches!(op, SimOp::Clean { .. })).collect();
    let [SimOp::Clean { container, files }] = &cleans[..] else { panic!("{cleans:?}") };
    assert_eq!(container, "shop-web");
    assert!(!files.is_empty() && files.iter().all(|f| f.starts_with("/srv/shop/logs/")), "{files:?}");
}

#[tokio::test]
async fn a_label_asking_to_clean_a_system_directory_watches_nothing() {
    let lab = lab();
    let hostile = ["opsguard.lab=true", "opsguard.enable=true", "opsguard.role=web", "opsguard.logs=/etc"];
    lab.sim.add_web("evil-web", &hostile, "/etc");
    lab.sim.fill_logs("evil-web", "/etc");
    let observer = Observer::new(Arc::new(Rules::default_rules()));
    let sweep = observer.sweep(&lab.sim, lab.clock.now()).await;
    assert!(sweep.alarms.is_empty(), "{:?}", sweep.alarms);
    assert!(observer.roster().get("evil-web").is_none());
    assert!(lab.sim.ops().is_empty(), "{:?}", lab.sim.ops());
}

#[tokio::test]
async fn a_labelled_databases_death_event_is_checked_as_a_crash_between_sweeps() {
    let lab = lab();
    lab.sim.add_database("shop-db", &DB_LABELS);
    let observer = Observer::new(Arc::new(Rules::default_rules()));
    // Before any sweep only the rules' services are known.
    assert_eq!(observer.roster().of_role(Role::Database).count(), 1);
    observer.sweep(&lab.sim, lab.clock.now()).await;
    assert_eq!(
        observer.roster().target_of("shop-db", Role::Database).map(|t| t.disk_path.as_str()),
        Some("/var/lib/postgresql/data")
    );
    lab.sim.oom_kill("shop-db");
    let died = ContainerEvent { container: "shop-db".into(), kind: ContainerEventKind::Die, at: lab.clock.now() };
    let alarm = observer.check_event(&lab.sim, &died, lab.clock.now()).await.unwrap().expect("an alarm");
    assert_eq!((alarm.kind, alarm.container.as_str()), (AlarmKind::DbCrash(RootCause::OomKill), "shop-db"));
    assert_eq!(alarm.evidence.exit_code, Some(137));
}

#[tokio::test]
async fn prune_never_removes_a_watched_service_even_one_marked_prunable() {
    let lab = lab();
    let prunable_db: Vec<&str> = DB_LABELS.iter().copied().chain(["opsguard.prune=true"]).collect();
    lab.sim.add_database("shop-db", &prunable_db);
    lab.sim.stop("shop-db");
    lab.sim.inject(SimFault::Zombies(8));
    // The database's restart is denied: it stays exited while the
    // outbreak is pruned.
    let reports = lab.watch(PolicyApprover::Deny, 2).await;
    let outbreak = reports.iter().find(|r| r.alarm.kind == AlarmKind::ZombieOutbreak).expect("an outbreak");
    assert_eq!(outbreak.resolution, Resolution::Resolved, "{outbreak:#?}");
    let pruned: Vec<String> = lab
        .sim
        .ops()
        .into_iter()
        .filter_map(|op| match op {
            SimOp::Prune { removed } => Some(removed),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(pruned.len(), 8, "{pruned:?}");
    assert!(!pruned.iter().any(|n| n == "shop-db"), "{pruned:?}");
    assert_eq!(lab.sim.state("shop-db"), Some(ContainerState::Exited), "kept for a human");
}

// Issue #10, behaviour 3: a database that runs but fails its health check
// is its own alarm, with the checks' output and its last lines, and by
// default a human looks: nothing is restarted.
#[tokio::test]
async fn an_unhealthy_running_database_is_left_for_a_human_with_the_evidence() {
    for db in ["db-prod", "shop-db"] {
        let lab = lab();
        lab.sim.add_database("shop-db", &DB_LABELS);
        lab.sim.write_logs(db, &["FATAL:  sorry, too many clients already"]);
        lab.sim.fail_health(
            db,
            &["127.0.0.1:5432 - no response", "\u{1b}[2Jpassword=hunter2 postgres://app:s3cret@db/app - no response"],
        );
        let reports = lab.watch(PolicyApprover::ApproveAll, 1).await;
        assert_eq!(reports.len(), 1, "{db}: {reports:#?}");
        let r = &reports[0];
        assert_eq!((r.alarm.kind, r.alarm.container.as_str()), (AlarmKind::DbUnhealthy, db));
        assert_eq!(r.resolution, Resolution::Stopped { reason: StopReason::Unhealthy }, "{db}");
        assert!(r.steps.is_empty(), "{db}: acted on: {:#?}", r.steps);
        assert_eq!(lab.restarts_of(db), 0, "{db}");
        let tail = &r.alarm.evidence.log_tail;
        assert!(tail.iter().any(|l| l.starts_with("health check (exit 1): 127.0.0.1:5432 - no response")), "{tail:?}");
        assert!(tail.iter().any(|l| l.contains("too many clients")), "{db}: the recent lines are missing: {tail:?}");
        assert!(tail.iter().all(|l| !l.contains("hunter2") && !l.contains("s3cret")), "a secret kept: {tail:?}");
        assert_eq!(lab.sim.state(db), Some(ContainerState::Running), "{db}");
    }
}

#[tokio::test]
async fn a_databases_health_event_raises_its_alarm_between_sweeps_and_a_web_servers_checks_its_disk() {
    let lab = lab();
    lab.sim.add_database("shop-db", &DB_LABELS);
    lab.sim.add_web("shop-web", &WEB_LABELS, "/srv/shop/logs");
    let observer = Observer::new(Arc::new(Rules::default_rules()));
    observer.sweep(&lab.sim, lab.clock.now()).await;
    let unhealthy = |c: &str| ContainerEvent {
        container: c.into(),
        kind: ContainerEventKind::HealthStatus(opsguard::model::Health::Unhealthy),
        at: lab.clock.now(),
    };
    lab.sim.fail_health("shop-db", &["no response"]);
    let alarm = observer.check_event(&lab.sim, &unhealthy("shop-db"), lab.clock.now()).await.unwrap();
    assert_eq!(alarm.map(|a| a.kind), Some(AlarmKind::DbUnhealthy));
    // A web server's ill health: its log disk is read first; a roomy one is no alarm.
    lab.sim.fail_health("shop-web", &["502"]);
    assert_eq!(observer.check_event(&lab.sim, &unhealthy("shop-web"), lab.clock.now()).await.unwrap(), None);
    lab.sim.fill_logs("shop-web", "/srv/shop/logs");
    let alarm = observer.check_event(&lab.sim, &unhealthy("shop-web"), lab.clock.now()).await.unwrap();
    assert_eq!(alarm.map(|a| (a.kind, a.container)), Some((AlarmKind::WebLogSaturation, "shop-web".into())));
}

fn db_depending_on(on: &'static str) -> Vec<&'static str> {
    DB_LABELS.iter().copied().chain([on]).collect()
}

// Issue #10, behaviour 4, for databases: a replica whose primary is down
// is held, not restarted, until the primary is healed; then healed in the
// incident its hold opened, the hold written once.
#[tokio::test]
async fn a_database_whose_dependency_is_down_is_held_until_the_dependency_is_healed() {
    let lab = lab();
    lab.sim.add_database("primary", &DB_LABELS);
    lab.sim.add_database("replica", &db_depending_on("opsguard.depends_on=primary"));
    lab.sim.oom_kill("primary");
    lab.sim.oom_kill("replica");
    let reports = lab.watch(PolicyApprover::ApproveAll, 2).await;
    let records = lab.audit.records();
    let holds: Vec<_> = records.iter().filter(|r| matches!(r.event, AuditEvent::AlarmHeld { .. })).collect();
    assert_eq!(holds.len(), 1, "one hold, written once: {records:#?}");
    let AuditEvent::AlarmHeld { alarm, dependency, state } = &holds[0].event else { unreachable!() };
    assert_eq!((alarm.container.as_str(), dependency.as_str()), ("replica", "primary"), "{state}");
    assert!(state.contains("primary"), "{state}");
    let primary = about(&reports, "primary");
    let replica = about(&reports, "replica");
    assert_eq!((primary.len(), replica.len()), (1, 1), "{reports:#?}");
    assert_eq!(primary[0].resolution, Resolution::Resolved);
    assert_eq!(replica[0].resolution, Resolution::Resolved, "{:#?}", replica[0]);
    assert_eq!(replica[0].id, holds[0].incident, "the incident keeps its hold's number");
    assert!(primary[0].closed_at <= replica[0].opened_at, "the replica was healed before its primary");
    assert!(holds[0].ts <= primary[0].closed_at);
    assert_eq!((lab.restarts_of("primary"), lab.restarts_of("replica")), (1, 1));
    assert_eq!(lab.sim.state("replica"), Some(ContainerState::Running));
    assert!(
        AuditEvent::AlarmHeld { alarm: alarm.clone(), dependency: dependency.clone(), state: state.clone() }
            .render()
            .contains("held, not acted on: it depends on primary")
    );
}

// Two databases that name each other, both down: neither waits forever.
#[tokio::test]
async fn databases_that_depend_on_each_other_are_both_healed() {
    let lab = lab();
    lab.sim.add_database("db-a", &db_depending_on("opsguard.depends_on=db-b"));
    lab.sim.add_database("db-b", &db_depending_on("opsguard.depends_on=db-a"));
    lab.sim.oom_kill("db-a");
    lab.sim.oom_kill("db-b");
    let reports = lab.watch(PolicyApprover::ApproveAll, 2).await;
    for db in ["db-a", "db-b"] {
        let mine = about(&reports, db);
        assert_eq!(mine.len(), 1, "{db}: {reports:#?}");
        assert_eq!(mine[0].resolution, Resolution::Resolved, "{db}");
        assert_eq!(lab.sim.state(db), Some(ContainerState::Running), "{db}");
    }
}

// A dependency that is not on the host holds nothing.
#[tokio::test]
async fn a_dependency_not_on_the_host_holds_nothing() {
    let lab = lab();
    lab.sim.add_database("shop-db", &db_depending_on("opsguard.depends_on=elsewhere"));
    lab.sim.oom_kill("shop-db");
    let reports = lab.watch(PolicyApprover::ApproveAll, 1).await;
    assert_eq!(reports[0].resolution, Resolution::Resolved, "{reports:#?}");
    assert!(!lab.audit.records().iter().any(|r| matches!(r.event, AuditEvent::AlarmHeld { .. })));
}
