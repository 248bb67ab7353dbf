//! Issue #5: an approval is checked against the host again when it arrives.
//! A database that came back on its own while the human was reading is not
//! restarted; the incident still ends only after verification.

mod sim_lab;

use opsguard::approval::{Answer, ChannelApprover};
use opsguard::audit::{AuditEvent, Resolution};
use opsguard::clock::Clock;
use opsguard::host::sim::{DB, SimFault, SimOp};
use opsguard::llm::NoAdvisor;
use opsguard::model::{ContainerState, Outcome};
use sim_lab::{SimLab, sim_lab};

#[tokio::test]
async fn a_database_back_on_its_own_is_not_restarted_after_approval() {
    let (approver, mut requests) = ChannelApprover::new(1);
    let SimLab { clock, host, audit, mut responder } = sim_lab(approver, NoAdvisor);

    host.inject(SimFault::ChainReaction);
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    let incident = tokio::spawn(async move { responder.handle(alarm).await });

    let pending = requests.recv().await.expect("the restart is put to a human");
    // While the human reads, someone else starts the database.
    host.start_by_itself(DB);
    pending.reply.send(Answer::Approve { request: pending.request.id }).unwrap();
    let report = incident.await.unwrap();

    assert!(!host.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", host.ops());
    assert_eq!(report.resolution, Resolution::Resolved);
    assert!(report.steps.iter().any(|s| s.outcome == Outcome::RestartNotNeeded), "{:#?}", report.steps);
    assert_eq!(host.state(DB), Some(ContainerState::Running));
    let rendered: Vec<String> = audit.records().iter().map(|r| r.event.render()).collect();
    assert!(rendered.iter().any(|l| l.contains("came back on its own")), "{rendered:#?}");
    assert!(audit.records().iter().any(|r| matches!(r.event, AuditEvent::ApprovalAnswered { approved: true, .. })));
}

#[tokio::test]
async fn a_database_still_down_is_restarted_after_approval() {
    let (approver, mut requests) = ChannelApprover::new(1);
    let SimLab { clock, host, mut responder, .. } = sim_lab(approver, NoAdvisor);
    host.inject(SimFault::ChainReaction);
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    let incident = tokio::spawn(async move { responder.handle(alarm).await });
    let pending = requests.recv().await.unwrap();
    pending.reply.send(Answer::Approve { request: pending.request.id }).unwrap();
    let report = incident.await.unwrap();
    assert_eq!(host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count(), 1);
    assert_eq!(report.resolution, Resolution::Resolved);
}
