//! The setting of the console's tests (its page and its JSON API): a
//! chain-reaction incident on the simulated host, with a hostile line in the
//! database's logs, waiting on the web console for the restart's approval.
#![allow(dead_code)]

use std::time::Duration;

use opsguard::audit::AuditLog;
use opsguard::clock::Clock;
use opsguard::console::{Console, ConsoleSettings, OpenRequest};
use opsguard::host::sim::{DB, SimFault, SimHost, SimOp};
use opsguard::incident::{IncidentReport, Timeouts};
use opsguard::llm::NoAdvisor;
use tokio::task::JoinHandle;

use super::sim_lab::{SimLab, sim_lab_with_audit};

/// The console's token in every test.
pub const TOKEN: &str = "s3cret-token-for-tests";

/// The incident's console, host and audit log, and its open request.
pub struct Lab {
    pub console: Console,
    pub host: SimHost,
    pub audit: AuditLog,
    pub open: OpenRequest,
}

/// A chain reaction whose logs end with `hostile`, waiting on the console
/// (answered within `approval_timeout`) for the restart's approval.
pub async fn lab(hostile: &str, approval_timeout: Duration) -> (Lab, JoinHandle<IncidentReport>) {
    let console = Console::new(ConsoleSettings { token: Some(TOKEN.into()), approval_timeout }).unwrap();
    let tap = console.clone();
    let audit = AuditLog::in_memory().with_tap(move |r| tap.record(r));
    let SimLab { clock, host, responder, audit } = sim_lab_with_audit(console.approver(), NoAdvisor, audit);
    let mut responder = responder.with_timeouts(Timeouts { approval: approval_timeout, ..Default::default() });
    host.write_logs(DB, &[hostile]);
    host.inject(SimFault::ChainReaction);
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    let incident = tokio::spawn(async move { responder.handle(alarm).await });
    let open = wait_for(|| console.open_requests().into_iter().next()).await;
    (Lab { console, host, audit, open }, incident)
}

/// Polls `f` until it gives something; generous, for a busy machine.
pub async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..3000 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting");
}

/// How many times the simulated host restarted something.
pub fn restarts(host: &SimHost) -> usize {
    host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count()
}
