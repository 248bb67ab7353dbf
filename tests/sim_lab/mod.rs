//! A simulated lab for the integration tests: the in-memory host with the
//! default rules, a simulated clock and an audit log, wired into a
//! `Responder`, so each test states only what it varies (the approver, the
//! advisor, a tap on the audit log).
#![allow(dead_code)]

use std::sync::Arc;

use opsguard::approval::Approver;
use opsguard::audit::AuditLog;
use opsguard::clock::SimClock;
use opsguard::engine::Engine;
use opsguard::host::sim::SimHost;
use opsguard::incident::Responder;
use opsguard::llm::Advisor;
use opsguard::model::Timestamp;
use opsguard::rules::Rules;

/// When every simulated lab's clock starts.
pub const START: Timestamp = Timestamp(1_795_766_400_000);

/// A healthy simulated lab and the responder watching it.
pub struct SimLab<A, L> {
    pub clock: SimClock,
    pub host: SimHost,
    pub audit: AuditLog,
    pub responder: Responder<SimHost, A, L, SimClock>,
}

/// A lab with the default rules and an in-memory audit log.
pub fn sim_lab<A: Approver, L: Advisor>(approver: A, advisor: L) -> SimLab<A, L> {
    sim_lab_with_audit(approver, advisor, AuditLog::in_memory())
}

/// A lab with the default rules, recording into `audit`, with the metrics'
/// tap as the CLI has it.
pub fn sim_lab_with_audit<A: Approver, L: Advisor>(approver: A, advisor: L, audit: AuditLog) -> SimLab<A, L> {
    let audit = audit.with_tap(opsguard::telemetry::audit_tap());
    let clock = SimClock::new(START);
    let host = SimHost::lab(clock.clone());
    let responder = Responder::new(
        Engine::new(Arc::new(Rules::default_rules())),
        host.clone(),
        approver,
        advisor,
        clock.clone(),
        audit.clone(),
    );
    SimLab { clock, host, audit, responder }
}

impl<A: Approver, L: Advisor> SimLab<A, L> {
    /// The alarm a sweep raises on the database now.
    pub async fn db_alarm(&self) -> opsguard::model::Alarm {
        use opsguard::clock::Clock;
        let sweep = self.responder.observer().sweep(self.responder.host(), self.clock.now()).await;
        let db = opsguard::host::sim::DB;
        sweep.alarms.into_iter().find(|a| a.container.as_str() == db).expect("a database alarm")
    }
}
