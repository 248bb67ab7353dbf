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

// Issue 8, item 5: an approval is for one crash, in one state. While the
// restart for an OOM kill waits for a human, the database is started and
// fails again, now on a broken config: the approval is void and the
// incident is decided again from the new facts, which forbid a restart.
#[tokio::test]
async fn a_new_crash_with_another_cause_voids_the_approval() {
    use opsguard::model::{AlarmKind, RootCause, StopReason};
    let (approver, mut requests) = ChannelApprover::new(1);
    let SimLab { clock, host, audit, mut responder } = sim_lab(approver, NoAdvisor);

    host.inject(SimFault::DbOomKill);
    clock.advance(std::time::Duration::from_secs(1));
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    assert_eq!(alarm.kind, AlarmKind::DbCrash(RootCause::OomKill));
    let incident = tokio::spawn(async move { responder.handle(alarm).await });

    let pending = requests.recv().await.expect("the restart is put to a human");
    let crash = pending.request.crash.clone().expect("the request names its crash");
    assert_eq!(crash.cause, Some(RootCause::OomKill));
    // While the human reads: someone starts it, and a deploy breaks its config.
    clock.advance(std::time::Duration::from_secs(5));
    host.start_by_itself(DB);
    clock.advance(std::time::Duration::from_secs(5));
    host.inject(SimFault::DbConfigCorruption);
    pending.reply.send(Answer::Approve { request: pending.request.id }).unwrap();
    let report = incident.await.unwrap();

    assert!(!host.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", host.ops());
    assert_eq!(report.resolution, Resolution::Stopped { reason: StopReason::ConfigError });
    assert!(report.steps.iter().any(|s| matches!(s.outcome, Outcome::ApprovalVoided { .. })), "{:#?}", report.steps);
    let records = audit.records();
    assert!(
        records.iter().any(|r| matches!(&r.event,
            AuditEvent::Reassessed { alarm } if alarm.kind == AlarmKind::DbCrash(RootCause::ConfigError))),
        "{records:#?}"
    );
    let rendered: Vec<String> = records.iter().map(|r| r.event.render()).collect();
    assert!(rendered.iter().any(|l| l.contains("approval void") && l.contains("ran again")), "{rendered:#?}");
}

// A database that came back on its own and is still recovering (Running,
// health `starting`) is not restarted on an approval given while it was down.
#[tokio::test]
async fn a_database_recovering_with_health_starting_is_not_restarted() {
    use opsguard::host::sim::SimKnobs;
    let (approver, mut requests) = ChannelApprover::new(1);
    let SimLab { clock, host, mut responder, .. } = sim_lab(approver, NoAdvisor);
    host.inject(SimFault::DbOomKill);
    clock.advance(std::time::Duration::from_secs(1));
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    let incident = tokio::spawn(async move { responder.handle(alarm).await });
    let pending = requests.recv().await.unwrap();
    host.set_knobs(SimKnobs { db_stuck_starting: true, ..Default::default() });
    host.start_by_itself(DB);
    pending.reply.send(Answer::Approve { request: pending.request.id }).unwrap();
    let report = incident.await.unwrap();
    assert!(!host.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "{:?}", host.ops());
    assert!(report.steps.iter().any(|s| s.outcome == Outcome::RestartNotNeeded), "{:#?}", report.steps);
    assert_eq!(host.state(DB), Some(ContainerState::Running));
}

// The same cause again is still a new crash: a new request, for it.
#[tokio::test]
async fn a_new_crash_with_the_same_cause_is_asked_about_again() {
    let (approver, mut requests) = ChannelApprover::new(1);
    let SimLab { clock, host, mut responder, .. } = sim_lab(approver, NoAdvisor);
    host.inject(SimFault::DbOomKill);
    clock.advance(std::time::Duration::from_secs(1));
    let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
    let incident = tokio::spawn(async move { responder.handle(alarm).await });
    let first = requests.recv().await.unwrap();
    clock.advance(std::time::Duration::from_secs(5));
    host.start_by_itself(DB);
    clock.advance(std::time::Duration::from_secs(5));
    host.inject(SimFault::DbOomKill);
    first.reply.send(Answer::Approve { request: first.request.id }).unwrap();
    let second = requests.recv().await.expect("the new crash is put to a human again");
    assert_ne!(second.request.id, first.request.id);
    let (a, b) = (first.request.crash.unwrap(), second.request.crash.clone().unwrap());
    assert!(b.finished_at > a.finished_at, "{a:?} {b:?}");
    assert!(!host.ops().iter().any(|op| matches!(op, SimOp::Restart { .. })), "restarted on a void approval");
    second.reply.send(Answer::Approve { request: second.request.id }).unwrap();
    let report = incident.await.unwrap();
    assert_eq!(host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count(), 1);
    assert_eq!(report.resolution, Resolution::Resolved);
}

/// Issue 11: whoever answers is named in the audit record of the answer,
/// with the digest of what they were shown: the terminal (the request it
/// printed), a policy (shown nothing), through the boxed approver `watch`
/// builds from `--approve` as well.
#[tokio::test]
async fn the_answer_names_the_terminal_or_the_policy_and_the_digest_shown() {
    use opsguard::approval::{DynApprover, LineApprover, PolicyApprover};
    use std::io::Write;

    type Answered = Vec<(bool, String, Option<String>, Option<String>)>;
    async fn answered<A: opsguard::approval::Approver>(approver: A) -> (Answered, usize) {
        let SimLab { clock, host, audit, mut responder } = sim_lab(approver, NoAdvisor);
        host.inject(SimFault::ChainReaction);
        let alarm = responder.observer().sweep(responder.host(), clock.now()).await.alarms.into_iter().next().unwrap();
        responder.handle(alarm).await;
        let got = audit
            .records()
            .into_iter()
            .filter_map(|r| match r.event {
                AuditEvent::ApprovalAnswered { approved, approver, answered_by, evidence_digest, .. } => {
                    Some((approved, approver, answered_by, evidence_digest))
                }
                _ => None,
            })
            .collect();
        let restarts = host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count();
        (got, restarts)
    }

    let policy: Box<dyn DynApprover> = Box::new(PolicyApprover::ApproveAll);
    let (got, restarts) = answered(policy).await;
    assert_eq!(got, vec![(true, "policy:approve".into(), Some("policy:approve".into()), None)]);
    assert_eq!(restarts, 1);

    // A terminal on a pipe. A line typed before the approver waits for it
    // answers nothing (the prompt is out a moment before), so the typist
    // sees the prompt, then types `y` until the incident is over.
    let (input, mut keys) = std::io::pipe().unwrap();
    let (screen, prompts) = std::io::pipe().unwrap();
    let terminal: Box<dyn DynApprover> = Box::new(LineApprover::new(input, prompts));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let typist = std::thread::spawn({
        let done = done.clone();
        move || {
            use std::io::Read;
            let mut screen = screen;
            let mut seen = String::new();
            let mut buf = [0u8; 4096];
            while !seen.contains("Approve? [y/N]") {
                let n = screen.read(&mut buf).unwrap();
                assert!(n > 0, "the prompt never came");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                keys.write_all(b"y\n").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            seen
        }
    });
    let (got, restarts) = answered(terminal).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let shown = typist.join().unwrap();
    assert_eq!(restarts, 1, "{shown}");
    assert_eq!(got.len(), 1, "{got:?}");
    let (approved, approver, by, digest) = &got[0];
    assert!(*approved);
    assert_eq!((approver.as_str(), by.as_deref()), ("terminal", Some("terminal")));
    let digest = digest.as_deref().expect("the terminal's answer carries the digest of the prompt");
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
}
