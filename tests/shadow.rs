//! Shadow mode (issue #5, item 5): the observer and the engine run for real,
//! nothing is executed on the host, and the audit log records what a real
//! run would have done first.

mod sim_lab;

use std::time::Duration;

use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditEvent, AuditRecord, Resolution};
use opsguard::clock::{Clock, SimClock};
use opsguard::host::sim::{SimFault, SimHost};
use opsguard::incident::{Agent, IncidentReport, WatchLimit};
use opsguard::llm::NoAdvisor;
use opsguard::model::Action;
use sim_lab::{SimLab, sim_lab};

const FAULTS: [SimFault; 8] = [
    SimFault::WebDiskFill,
    SimFault::Zombies(15),
    SimFault::DbGarbageFlood,
    SimFault::DbConfigCorruption,
    SimFault::DbOomKill,
    SimFault::DbDataCorruption,
    SimFault::ChainReaction,
    SimFault::DbKilled,
];

struct Run {
    reports: Vec<IncidentReport>,
    audit: Vec<AuditRecord>,
    host: SimHost,
}

/// Injects `fault` into a fresh simulated lab and lets an agent watch it
/// for ten simulated minutes (twenty sweeps).
async fn watch(fault: SimFault, shadow: bool) -> Run {
    let SimLab { clock, host, audit, responder } = sim_lab(PolicyApprover::ApproveAll, NoAdvisor);
    let responder = responder.with_shadow(shadow);
    let mut agent = Agent::new(responder);
    host.inject(fault);
    let deadline = clock.now().plus_millis(10 * 60 * 1000);
    let reports = agent.run(None, WatchLimit { incidents: None, deadline: Some(deadline) }).await;
    Run { reports, audit: audit.records(), host }
}

fn decisions(audit: &[AuditRecord]) -> Vec<Action> {
    audit
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Decided { action } => Some(action.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn shadow_changes_nothing_and_records_what_a_real_run_does_first() {
    for fault in FAULTS {
        let real = watch(fault, false).await;
        let shadow = watch(fault, true).await;
        assert_eq!(shadow.host.ops(), vec![], "{fault:?}: shadow mode touched the host");
        assert!(
            !shadow
                .audit
                .iter()
                .any(|r| matches!(r.event, AuditEvent::ApprovalRequested { .. } | AuditEvent::Executed { .. })),
            "{fault:?}: shadow mode asked or executed: {:#?}",
            shadow.audit
        );
        // One incident, however many sweeps saw the condition persist.
        assert_eq!(shadow.reports.len(), 1, "{fault:?}: {:#?}", shadow.reports);
        let first_real = decisions(&real.audit).into_iter().next().expect("a real decision");
        let would: Vec<&Action> = shadow
            .audit
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::WouldExecute { action } => Some(action),
                _ => None,
            })
            .collect();
        if first_real.changes_host() {
            assert_eq!(would, vec![&first_real], "{fault:?}");
            assert_eq!(shadow.reports[0].resolution, Resolution::Withheld, "{fault:?}");
            let line = shadow.audit.iter().find(|r| matches!(r.event, AuditEvent::WouldExecute { .. })).unwrap();
            assert_eq!(line.event.render(), format!("👻 SHADOW would run {first_real}"));
        } else {
            // A stop is a decision, not an execution: shadow mode reports it as is.
            assert!(would.is_empty(), "{fault:?}: {would:?}");
            assert_eq!(decisions(&shadow.audit), vec![first_real.clone()], "{fault:?}");
            assert_eq!(shadow.reports[0].resolution, real.reports[0].resolution, "{fault:?}");
        }
    }
}

#[tokio::test]
async fn a_cleared_condition_is_observed_again_in_shadow_mode() {
    let SimLab { clock, host, responder, .. } = sim_lab(PolicyApprover::Deny, NoAdvisor);
    let responder = responder.with_shadow(true);
    let mut agent = Agent::new(responder);
    host.inject(SimFault::Zombies(15));
    let until = |c: &SimClock| WatchLimit { incidents: None, deadline: Some(c.now().plus_millis(120_000)) };
    assert_eq!(agent.run(None, until(&clock)).await.len(), 1);
    // An operator prunes by hand: the condition clears, and a new outbreak is a new incident.
    host.set_knobs(Default::default());
    let removed = opsguard::host::Host::prune_exited(&host, "opsguard.lab=true", &[]).await.unwrap();
    assert_eq!(removed.len(), 15);
    clock.sleep(Duration::from_secs(60)).await;
    assert_eq!(agent.run(None, until(&clock)).await.len(), 0);
    host.inject(SimFault::Zombies(15));
    assert_eq!(agent.run(None, until(&clock)).await.len(), 1);
}

/// An LLM that always diagnoses a one-off kill, which the default rules
/// turn into a restart.
const RESTART_ADVISOR: opsguard::llm::FixedAdvisor =
    opsguard::llm::FixedAdvisor { category: Some(opsguard::model::Diagnosis::KilledOnce) };

/// A configured LLM is consulted in shadow mode (it only advises); the
/// restart it picks is recorded, not run, and no one is asked to approve it.
#[tokio::test]
async fn shadow_consults_a_configured_llm_and_records_its_restart() {
    let SimLab { clock, host, audit, responder } = sim_lab(PolicyApprover::ApproveAll, RESTART_ADVISOR);
    let mut responder = responder.with_shadow(true);
    host.inject(SimFault::DbKilled);
    let alarm = responder.observer().check_database(responder.host(), clock.now()).await.unwrap().unwrap();
    let report = responder.handle(alarm).await;
    assert_eq!(report.resolution, Resolution::Withheld);
    assert_eq!(host.ops(), vec![]);
    let events: Vec<String> = audit.records().iter().map(|r| r.event.render()).collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("LLM fixed diagnosed killed-once in 0 ms, so the rules chose restart_database_risky")),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e
            == "👻 SHADOW would run restart_database_risky('db-prod') — suggested by the LLM for an unknown cause"),
        "{events:#?}"
    );
    assert!(!audit.records().iter().any(|r| matches!(r.event, AuditEvent::ApprovalRequested { .. })));
}
