//! Properties of whole incidents, driven through the pure incident machine
//! (`opsguard::incident::Incident`) by an adversarial environment: every
//! operation the machine asks for is answered with any result, late, twice,
//! for another request or not at all, with the clock jumping in between.
//! No runtime, no host, no sleeps: the machine takes time only as input.
//!
//! DESIGN.md's invariants over whole incidents: 1 (no restart on config
//! error or corruption), 2 (no risky action without an explicit approval of
//! that request; a timeout or an error is a no), 3 (disk full: cleaned
//! below the threshold before any restart), 4 (resolved only after a good
//! check), 5 (every incident ends; restarts within the budget), 7
//! (deterministic), 9 (an approval is for one crash: void if the container
//! ran, crashed again or changed). Plus the machine's own contract: stale
//! inputs change nothing, nothing after the closing, a well-formed trail.

use std::sync::Arc;
use std::time::Duration;

use opsguard::approval::{Answer, ApprovalRequest, Signoff};
use opsguard::audit::{AuditEvent, Resolution};
use opsguard::engine::Engine;
use opsguard::incident::{Incident, IncidentReport, Input, Opening, Output, RequestIds, Ticket, Timeouts};
use opsguard::model::*;
use opsguard::observer::Check;
use opsguard::rules::Rules;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

fn rules() -> Arc<Rules> {
    static RULES: std::sync::OnceLock<Arc<Rules>> = std::sync::OnceLock::new();
    RULES.get_or_init(|| Arc::new(Rules::default_rules())).clone()
}

const T0: u64 = 1_700_000_000_000;
const TIMEOUTS: Timeouts = Timeouts { approval: Duration::from_secs(300), advice: Duration::from_secs(60) };

/// How the environment answers whatever is asked.
#[derive(Clone, Debug)]
struct Reply {
    ok: bool,
    pick: u8,
    pct: f64,
    flag: bool,
}

/// One move of the environment.
#[derive(Clone, Debug)]
enum Move {
    /// Answer the operation under way (or the pending approval).
    Reply(Reply),
    /// A result for an operation that is not the one under way.
    Stale(Reply),
    /// An answer on another request's channel.
    Foreign(Reply),
    /// The last input again.
    Again,
    /// Time passes.
    Tick(u64),
    /// OpsGuard is told to stop.
    Shutdown,
}

fn any_reply() -> impl Strategy<Value = Reply> {
    (prop::bool::weighted(0.85), any::<u8>(), prop_oneof![0.0..100.0f64, Just(50.0), Just(99.0)], any::<bool>())
        .prop_map(|(ok, pick, pct, flag)| Reply { ok, pick, pct, flag })
}

fn any_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        6 => any_reply().prop_map(Move::Reply),
        1 => any_reply().prop_map(Move::Stale),
        1 => any_reply().prop_map(Move::Foreign),
        1 => Just(Move::Again),
        2 => prop_oneof![0u64..3_000, 0u64..400_000].prop_map(Move::Tick),
        1 => Just(Move::Shutdown),
    ]
}

fn any_cause() -> impl Strategy<Value = RootCause> {
    prop::sample::select(RootCause::ALL.to_vec())
}

fn any_opening() -> impl Strategy<Value = (Alarm, Vec<Timestamp>, bool)> {
    let db = || ContainerName::new("db-prod");
    let kind = prop_oneof![
        4 => any_cause().prop_map(AlarmKind::DbCrash),
        1 => Just(AlarmKind::WebLogSaturation),
        1 => Just(AlarmKind::ZombieOutbreak),
        1 => Just(AlarmKind::WebLogDiskFilling),
        1 => Just(AlarmKind::DbUnhealthy),
    ];
    (kind, any::<bool>(), prop::collection::vec(0u64..4_000_000, 0..4), any::<bool>(), any::<bool>()).prop_map(
        move |(kind, oom, restarts_ago, llm, fault_known)| {
            let container = match kind {
                AlarmKind::DbCrash(_) | AlarmKind::DbUnhealthy => db(),
                AlarmKind::WebLogSaturation | AlarmKind::WebLogDiskFilling => ContainerName::new("web-prod"),
                AlarmKind::ZombieOutbreak => ContainerName::new("opsguard.scope=lab"),
            };
            let evidence = Evidence {
                state: Some(ContainerState::Exited),
                fault_at: fault_known.then_some(Timestamp(T0 - 1_000)),
                exit_code: Some(if oom { 137 } else { 1 }),
                oom_killed: Some(oom),
                disk_used_pct: Some(97.0),
                ..Evidence::default()
            };
            let alarm = Alarm { kind, container, evidence, raised_at: Timestamp(T0) };
            let restarts = restarts_ago.into_iter().map(|ago| Timestamp(T0 - ago)).collect();
            (alarm, restarts, llm)
        },
    )
}

/// The status the environment shows for the alarmed container.
fn status(alarm: &Alarm, r: &Reply) -> ContainerStatus {
    let states = [
        ContainerState::Exited,
        ContainerState::Exited,
        ContainerState::Exited,
        ContainerState::Dead,
        ContainerState::Running,
        ContainerState::Restarting,
        ContainerState::Created,
    ];
    let e = &alarm.evidence;
    let mut s = ContainerStatus {
        name: alarm.container.clone(),
        id: Some("c0ffee".into()),
        state: states[r.pick as usize % states.len()],
        health: Health::None,
        exit_code: e.exit_code,
        oom_killed: e.oom_killed.unwrap_or(false),
        started_at: Some(Timestamp(T0 - 60_000)),
        finished_at: e.fault_at.or(Some(Timestamp(T0 - 1_000))),
        restart_policy: None,
        restart_count: None,
        health_log: Vec::new(),
    };
    // Mostly the very crash the alarm saw; sometimes another one.
    match (r.pick / 7) % 8 {
        0 => s.finished_at = Some(Timestamp(T0 + 5_000)),
        1 => s.id = Some("deadbeef".into()),
        2 => s.exit_code = Some(2),
        _ => {}
    }
    s
}

fn check(r: &Reply, zombie: bool) -> Check {
    let states = [ContainerState::Running, ContainerState::Running, ContainerState::Exited, ContainerState::Restarting];
    let healths = [Health::None, Health::Healthy, Health::Starting, Health::Unhealthy];
    Check {
        state: (!zombie).then(|| states[r.pick as usize % states.len()]),
        health: healths[(r.pick / 4) as usize % healths.len()],
        ready: [None, Some(true), Some(false)][(r.pick / 16) as usize % 3],
        // Mostly the same run; sometimes it came back in between.
        started_at: Some(Timestamp(T0 + if (r.pick / 48).is_multiple_of(5) { r.pick as u64 } else { 0 })),
        cleared: r.flag || !r.pick.is_multiple_of(3),
    }
}

fn outcome(action: &Action, r: &Reply) -> Outcome {
    if !r.ok {
        return Outcome::Failed { error: "daemon\nwent away".into() };
    }
    match action {
        Action::CleanLogs { .. } => Outcome::Cleaned { disk_used_pct: r.pct, freed_bytes: 1 << 20 },
        Action::PruneContainers => Outcome::Pruned { removed: r.pick as u32 % 20 },
        Action::Restart { .. } => Outcome::Restarted,
        _ => Outcome::Failed { error: "not executable".into() },
    }
}

fn llm_outcome(r: &Reply) -> Outcome {
    let choices = [LlmChoice::Restart, LlmChoice::CleanLogs, LlmChoice::Escalate];
    if r.ok { Outcome::LlmChose { choice: choices[r.pick as usize % 3], diagnosis: None } } else { Outcome::LlmFailed }
}

/// What the machine is waiting for, as the environment sees it.
#[derive(Clone, Debug)]
enum Asked {
    Inspect(Ticket),
    Approval(ApprovalRequest),
    Execute(Ticket, Action),
    Consult(Ticket),
    Check(Ticket),
    Reassess(Ticket, Alarm),
}

/// The environment and the checks it makes as the machine runs.
struct Run {
    machine: Incident,
    engine: Engine,
    now: u64,
    asked: Option<Asked>,
    wake: Option<u64>,
    last_input: Option<Input>,
    outputs: Vec<Output>,
    report: Option<IncidentReport>,
    /// A valid yes for the pending request, and the crash it was for.
    approved: Option<ApprovalRequest>,
    /// What the container showed after that yes.
    seen_after_yes: Option<ContainerStatus>,
    /// Restart times: the opening's and every one the machine ran.
    restarts: Vec<Timestamp>,
    /// The disk was cleaned below the success threshold in this incident.
    cleaned_below: bool,
    last_check_good: bool,
    pending_clean: bool,
    /// A shutdown was fed.
    shut: bool,
}

impl Run {
    fn new(alarm: &Alarm, restarts: &[Timestamp], llm: bool) -> Run {
        let engine = Engine::new(rules()).with_llm(llm);
        let machine = Incident::open(
            engine.clone(),
            Opening {
                id: 7,
                alarm: alarm.clone(),
                at: Timestamp(T0),
                restarts: restarts.to_vec(),
                approver: "test".into(),
                shadow: false,
                timeouts: TIMEOUTS,
            },
            RequestIds::starting_at(40),
        );
        let mut run = Run {
            machine,
            engine,
            now: T0,
            asked: None,
            wake: None,
            last_input: None,
            outputs: Vec::new(),
            report: None,
            approved: None,
            seen_after_yes: None,
            restarts: restarts.to_vec(),
            cleaned_below: false,
            last_check_good: false,
            pending_clean: false,
            shut: false,
        };
        run.drain().expect("opening");
        run
    }

    /// Takes every output, checking each as it comes.
    fn drain(&mut self) -> Result<usize, TestCaseError> {
        let mut n = 0;
        while let Some(out) = self.machine.poll() {
            n += 1;
            prop_assert!(self.report.is_none(), "output after the closing: {out:?}");
            // After a shutdown nothing starts: records, a withdrawal, the closing.
            let winding_down = matches!(out, Output::Audit(_) | Output::Withdraw { .. } | Output::Closed(_));
            prop_assert!(!self.shut || winding_down, "{out:?} after the shutdown");
            let alarm = self.machine.alarm().clone();
            match &out {
                Output::Inspect { ticket, container } => {
                    prop_assert_eq!(container, &alarm.container);
                    self.asked = Some(Asked::Inspect(*ticket));
                }
                Output::AskApproval(request) => {
                    prop_assert_eq!(request.action.risk(), Risk::Risky);
                    prop_assert!(request.crash.is_some(), "an approval must be bound to a crash");
                    self.approved = None;
                    self.seen_after_yes = None;
                    self.asked = Some(Asked::Approval(request.clone()));
                }
                Output::Execute { ticket, action } => {
                    if action.risk() == Risk::Risky {
                        // Invariant 2 and 9: an explicit yes for this very
                        // request, then the same crash, still stopped.
                        let request = self.approved.take();
                        prop_assert!(request.is_some(), "{action} without an approval");
                        let request = request.unwrap();
                        prop_assert_eq!(&request.action, action);
                        let seen = self.seen_after_yes.take();
                        prop_assert!(seen.is_some(), "{action} without a look after the yes");
                        let seen = seen.unwrap();
                        prop_assert!(seen.state.is_stopped(), "restart of a {:?} container", seen.state);
                        let crash = request.crash.as_ref().unwrap();
                        prop_assert!(crash.void_reason(&seen).is_none(), "restart of another crash: {seen:?}");
                    }
                    if let Action::Restart { .. } = action {
                        // Invariant 1.
                        prop_assert!(
                            !matches!(
                                alarm.kind,
                                AlarmKind::DbCrash(RootCause::ConfigError | RootCause::DataCorruption)
                            ),
                            "restart on {}",
                            alarm.kind
                        );
                        // Invariant 3.
                        if alarm.kind == AlarmKind::DbCrash(RootCause::DiskFull) {
                            prop_assert!(self.cleaned_below, "restart of a full disk before cleaning it");
                        }
                        // Invariant 5: the budget, across incidents.
                        let b = self.engine.rules().restart_budget;
                        let since = self.now.saturating_sub(b.window_secs * 1000);
                        let recent = self.restarts.iter().filter(|t| t.0 >= since).count() as u32;
                        prop_assert!(recent < b.max_restarts, "restart {} in the window", recent + 1);
                    }
                    self.pending_clean = matches!(action, Action::CleanLogs { .. });
                    self.asked = Some(Asked::Execute(*ticket, action.clone()));
                }
                Output::Consult { ticket, .. } => self.asked = Some(Asked::Consult(*ticket)),
                Output::Check { ticket, alarm: checked } => {
                    prop_assert_eq!(checked, &alarm);
                    self.asked = Some(Asked::Check(*ticket));
                }
                Output::Reassess { ticket, alarm } => self.asked = Some(Asked::Reassess(*ticket, alarm.clone())),
                Output::WakeAt(t) => {
                    prop_assert!(t.0 >= self.now, "a wake-up in the past");
                    self.wake = Some(t.0);
                }
                Output::Withdraw { request } => {
                    let pending = matches!(&self.asked, Some(Asked::Approval(r)) if r.id == *request);
                    prop_assert!(pending, "withdrew {request}, which is not pending");
                    self.asked = None;
                }
                Output::Audit(_) => {}
                Output::Closed(report) => {
                    // Invariant 4.
                    if report.resolution == Resolution::Resolved {
                        prop_assert!(self.last_check_good, "resolved without a good last check");
                    }
                    self.report = Some(report.clone());
                    self.asked = None;
                }
            }
            self.outputs.push(out);
        }
        Ok(n)
    }

    fn feed(&mut self, input: Input) -> Result<usize, TestCaseError> {
        self.last_input = Some(input.clone());
        self.machine.handle(input);
        self.drain()
    }

    fn at(&self) -> Timestamp {
        Timestamp(self.now)
    }

    /// The answer to what is asked, shaped by `r`.
    fn reply(&mut self, r: &Reply) -> Result<(), TestCaseError> {
        let Some(asked) = self.asked.take() else { return Ok(()) };
        self.now += 1 + r.pick as u64 * 7;
        let at = self.at();
        let alarm = self.machine.alarm().clone();
        let input = match asked {
            Asked::Inspect(ticket) => {
                let status = if r.ok { Ok(status(&alarm, r)) } else { Err("inspect: daemon gone".to_string()) };
                if self.approved.is_some()
                    && let Ok(s) = &status
                {
                    self.seen_after_yes = Some(s.clone());
                }
                Input::Inspected { ticket, at, status }
            }
            Asked::Approval(request) => {
                let answer = match r.pick % 5 {
                    0 | 1 => Ok(Answer::Approve { request: request.id }),
                    2 => Ok(Answer::Approve { request: request.id + 1 }),
                    3 => Ok(Answer::Reject),
                    _ => Err("approval unavailable: console down".to_string()),
                };
                if answer == Ok(Answer::Approve { request: request.id })
                    && self.machine.pending_request() == Some(request.id)
                {
                    self.approved = Some(request.clone());
                }
                Input::Answered { request: request.id, at, answer, signoff: None }
            }
            Asked::Execute(ticket, action) => {
                let outcome = outcome(&action, r);
                if let Action::Restart { .. } = action {
                    self.restarts.push(at);
                }
                if let Outcome::Cleaned { disk_used_pct, .. } = outcome
                    && self.pending_clean
                    && disk_used_pct < self.engine.rules().thresholds.clean_success_pct
                {
                    self.cleaned_below = true;
                }
                Input::Executed { ticket, at, outcome }
            }
            Asked::Consult(ticket) => Input::Executed { ticket, at, outcome: llm_outcome(r) },
            Asked::Check(ticket) => {
                let check = if r.ok {
                    Ok(check(r, alarm.kind == AlarmKind::ZombieOutbreak))
                } else {
                    Err("check: timed out".to_string())
                };
                self.last_check_good = matches!(&check, Ok(c) if c.is_good());
                Input::Checked { ticket, at, check }
            }
            Asked::Reassess(ticket, old) => {
                let fresh = match r.pick % 4 {
                    0 => Ok(None),
                    1 => Err("inspect: gone".to_string()),
                    n => {
                        let causes = RootCause::ALL;
                        let cause = causes[(r.pick as usize / 4 + n as usize) % causes.len()];
                        let mut a = old.clone();
                        a.kind = AlarmKind::DbCrash(cause);
                        a.evidence.fault_at = Some(Timestamp(self.now - 1));
                        Ok(Some(a))
                    }
                };
                // A fresh alarm is a fresh start for invariant 3.
                if matches!(fresh, Ok(Some(_))) {
                    self.cleaned_below = false;
                }
                Input::Reassessed { ticket, at, alarm: fresh }
            }
        };
        self.feed(input)?;
        Ok(())
    }

    /// A result nobody asked for: must change nothing.
    fn stale(&mut self, r: &Reply) -> Result<(), TestCaseError> {
        let at = self.at();
        let ticket = Ticket(10_000 + r.pick as u64);
        let input = match r.pick % 4 {
            0 => Input::Inspected { ticket, at, status: Err("late".into()) },
            1 => Input::Executed { ticket, at, outcome: Outcome::Restarted },
            2 => Input::Checked { ticket, at, check: Ok(check(r, false)) },
            _ => Input::Reassessed { ticket, at, alarm: Ok(None) },
        };
        let n = self.feed(input)?;
        prop_assert_eq!(n, 0, "a stale result changed something");
        Ok(())
    }

    /// An answer on the wrong channel, even one that says yes.
    fn foreign(&mut self, r: &Reply) -> Result<(), TestCaseError> {
        let other = self.machine.pending_request().unwrap_or(40) + 1 + r.pick as u64;
        let answer = Ok(Answer::Approve { request: other });
        let n = self.feed(Input::Answered { request: other, at: self.at(), answer, signoff: None })?;
        prop_assert_eq!(n, 0, "an answer for request {} changed something", other);
        Ok(())
    }

    fn again(&mut self) -> Result<(), TestCaseError> {
        let Some(input) = self.last_input.clone() else { return Ok(()) };
        if matches!(input, Input::Tick(_)) {
            return Ok(());
        }
        let was_closed = self.report.is_some();
        let n = self.feed(input)?;
        prop_assert!(n == 0 || !was_closed);
        // A repeated result names a ticket already answered.
        prop_assert_eq!(n, 0, "a repeated result changed something");
        Ok(())
    }

    fn tick(&mut self, ms: u64) -> Result<(), TestCaseError> {
        self.now += ms;
        self.feed(Input::Tick(self.at()))?;
        Ok(())
    }

    /// A cooperative environment from here: answers and wakes up on time.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        let good = Reply { ok: true, pick: 0, pct: 10.0, flag: true };
        for _ in 0..400 {
            if self.report.is_some() {
                return Ok(());
            }
            if self.asked.is_some() {
                self.reply(&good)?;
            } else if let Some(w) = self.wake.take() {
                self.now = self.now.max(w);
                self.feed(Input::Tick(self.at()))?;
            } else {
                prop_assert!(false, "the machine waits for nothing and asked for nothing");
            }
        }
        prop_assert!(false, "the incident did not end within 400 answers");
        Ok(())
    }

    fn play(&mut self, m: &Move) -> Result<(), TestCaseError> {
        if self.report.is_some() {
            // After the closing, nothing changes whatever comes.
            let n = self.feed(Input::Tick(Timestamp(self.now + 1_000_000)))?;
            prop_assert_eq!(n, 0);
            return Ok(());
        }
        match m {
            Move::Reply(r) => self.reply(r),
            Move::Stale(r) => self.stale(r),
            Move::Foreign(r) => self.foreign(r),
            Move::Again => self.again(),
            Move::Tick(ms) => self.tick(*ms),
            Move::Shutdown => self.shutdown(),
        }
    }

    /// The incident closes at once, for a human, whatever it was doing.
    fn shutdown(&mut self) -> Result<(), TestCaseError> {
        let approving = match &self.asked {
            Some(Asked::Approval(r)) => Some(r.id),
            _ => None,
        };
        self.shut = true;
        let from = self.outputs.len();
        self.feed(Input::Shutdown { at: self.at() })?;
        let resolution = self.report.as_ref().map(|r| r.resolution);
        prop_assert_eq!(resolution, Some(Resolution::Stopped { reason: StopReason::Interrupted }));
        if let Some(id) = approving {
            let withdrawn =
                self.outputs[from..].iter().any(|o| matches!(o, Output::Withdraw { request } if *request == id));
            prop_assert!(withdrawn, "request {id} was pending and not withdrawn");
            let unanswered = self.outputs[from..].iter().any(|o| {
                matches!(o, Output::Audit(AuditEvent::ApprovalAnswered { request, approved: false, .. }) if *request == id)
            });
            prop_assert!(unanswered, "request {id} not recorded as unanswered");
        }
        Ok(())
    }
}

fn check_trail(run: &Run) -> Result<(), TestCaseError> {
    let audits: Vec<&AuditEvent> =
        run.outputs.iter().filter_map(|o| if let Output::Audit(e) = o { Some(e) } else { None }).collect();
    let opened = matches!(audits.first(), Some(AuditEvent::IncidentOpened { .. }));
    prop_assert!(opened, "the trail does not start with the opening");
    let closings = run.outputs.iter().filter(|o| matches!(o, Output::Closed(_))).count();
    prop_assert_eq!(closings, 1);
    let last_closed = matches!(run.outputs.last(), Some(Output::Closed(_)));
    prop_assert!(last_closed, "the closing is not the last output");
    let report = run.report.as_ref().unwrap();
    let closed_as_reported = matches!(
        audits.last(),
        Some(AuditEvent::IncidentClosed { resolution, steps })
            if *resolution == report.resolution && *steps == report.steps.len()
    );
    prop_assert!(closed_as_reported, "the closing record is not the report's");
    let executed = audits.iter().filter(|e| matches!(e, AuditEvent::Executed { .. })).count();
    prop_assert_eq!(executed, report.steps.len());
    // Invariant 5: bounded, as the engine's step budget says.
    prop_assert!(report.steps.len() <= (run.engine.rules().max_steps as usize + 1) * 4);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Invariants 1, 2, 3, 4, 5 and 9 over whole incidents, whatever the
    /// environment answers and whenever.
    #[test]
    fn whole_incidents_keep_every_invariant(
        (alarm, restarts, llm) in any_opening(),
        moves in prop::collection::vec(any_move(), 0..40),
    ) {
        let mut run = Run::new(&alarm, &restarts, llm);
        for m in &moves {
            run.play(m)?;
        }
        run.finish()?;
        check_trail(&run)?;
    }

    /// Invariant 7: the same inputs give the same outputs.
    #[test]
    fn the_machine_is_deterministic(
        (alarm, restarts, llm) in any_opening(),
        moves in prop::collection::vec(any_move(), 0..40),
    ) {
        let mut a = Run::new(&alarm, &restarts, llm);
        let mut b = Run::new(&alarm, &restarts, llm);
        for m in &moves {
            a.play(m)?;
            b.play(m)?;
        }
        a.finish()?;
        b.finish()?;
        prop_assert_eq!(&a.outputs, &b.outputs);
    }
}

/// An OOM-killed database's incident, run until it asks a human to approve
/// the restart: the run and the request put to them.
fn oom_run_awaiting_approval() -> (Run, ApprovalRequest) {
    let alarm = Alarm {
        kind: AlarmKind::DbCrash(RootCause::OomKill),
        container: ContainerName::new("db-prod"),
        evidence: Evidence {
            fault_at: Some(Timestamp(T0 - 1_000)),
            exit_code: Some(137),
            oom_killed: Some(true),
            ..Evidence::default()
        },
        raised_at: Timestamp(T0),
    };
    let mut run = Run::new(&alarm, &[], false);
    let stopped = Reply { ok: true, pick: 7 * 3, pct: 0.0, flag: false };
    run.reply(&stopped).unwrap();
    // Left in `asked`: the run checks that only a pending request is withdrawn.
    let Some(Asked::Approval(request)) = run.asked.clone() else { panic!("no approval asked: {:?}", run.outputs) };
    (run, request)
}

/// The audited answer: (approved, approver, detail, answered_by, evidence_digest).
type AuditedAnswer = (bool, String, String, Option<String>, Option<String>);

fn audited_answer(run: &Run) -> Option<AuditedAnswer> {
    run.outputs.iter().find_map(|o| match o {
        Output::Audit(AuditEvent::ApprovalAnswered {
            approved,
            approver,
            detail,
            answered_by,
            evidence_digest,
            ..
        }) => Some((*approved, approver.clone(), detail.clone(), answered_by.clone(), evidence_digest.clone())),
        _ => None,
    })
}

/// A silent approver: the deadline passes, the request is withdrawn and the
/// answer that comes after it is dropped, even a yes.
#[test]
fn a_yes_after_the_deadline_restarts_nothing() {
    let (mut run, request) = oom_run_awaiting_approval();
    run.tick(TIMEOUTS.approval.as_millis() as u64).unwrap();
    assert!(run.outputs.contains(&Output::Withdraw { request: request.id }));
    let late = Input::Answered {
        request: request.id,
        at: run.at(),
        answer: Ok(Answer::Approve { request: request.id }),
        signoff: None,
    };
    run.feed(late).unwrap();
    run.finish().unwrap();
    assert!(!run.outputs.iter().any(|o| matches!(o, Output::Execute { action: Action::Restart { .. }, .. })));
    // Nobody answered: nobody is named.
    let expected = (false, "test".to_string(), "no answer within 300s".to_string(), None, None);
    assert_eq!(audited_answer(&run), Some(expected));
}

/// Issue 11: the audit record of an answer names who gave it and the
/// digest of what they were shown, as the channel vouched for them.
#[test]
fn an_answer_is_audited_with_who_gave_it_and_the_digest_they_saw() {
    for approve in [false, true] {
        let (mut run, request) = oom_run_awaiting_approval();
        let answer = if approve { Answer::Approve { request: request.id } } else { Answer::Reject };
        let signoff = Signoff { by: "api: alice".into(), digest: Some("d1".repeat(32)) };
        run.feed(Input::Answered { request: request.id, at: run.at(), answer: Ok(answer), signoff: Some(signoff) })
            .unwrap();
        let (approved, approver, _, by, digest) = audited_answer(&run).expect("no answer audited");
        assert_eq!(
            (approved, approver, by, digest),
            (approve, "test".to_string(), Some("api: alice".to_string()), Some("d1".repeat(32))),
            "{:?}",
            run.outputs
        );
    }
}

/// Drives a web log saturation (clean, then verify) to its end, each
/// re-check seeing the web running and healthy, in the run started at
/// `runs[i]` for the i-th check; returns the report and when each check was
/// asked for.
fn verify_runs(runs: &[u64]) -> (IncidentReport, Vec<u64>) {
    let alarm = Alarm {
        kind: AlarmKind::WebLogSaturation,
        container: ContainerName::new("web-prod"),
        evidence: Evidence { disk_used_pct: Some(95.0), ..Evidence::default() },
        raised_at: Timestamp(T0),
    };
    let opening = Opening {
        id: 3,
        alarm,
        at: Timestamp(T0),
        restarts: vec![],
        approver: "test".into(),
        shadow: false,
        timeouts: TIMEOUTS,
    };
    let mut m = Incident::open(Engine::new(rules()), opening, RequestIds::starting_at(1));
    let (mut now, mut checks) = (T0, Vec::new());
    for _ in 0..100 {
        let Some(out) = m.poll() else { panic!("the machine waits for nothing") };
        match out {
            Output::Execute { ticket, action: Action::CleanLogs { .. } } => {
                let outcome = Outcome::Cleaned { disk_used_pct: 10.0, freed_bytes: 1 << 20 };
                m.handle(Input::Executed { ticket, at: Timestamp(now), outcome });
            }
            Output::Check { ticket, .. } => {
                let run = runs[checks.len().min(runs.len() - 1)];
                checks.push(now);
                let check = Check {
                    state: Some(ContainerState::Running),
                    health: Health::Healthy,
                    ready: None,
                    started_at: Some(Timestamp(run)),
                    cleared: true,
                };
                m.handle(Input::Checked { ticket, at: Timestamp(now), check: Ok(check) });
            }
            Output::WakeAt(t) => {
                now = now.max(t.0);
                m.handle(Input::Tick(Timestamp(now)));
            }
            Output::Closed(report) => return (report, checks),
            Output::Audit(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the incident did not end");
}

/// Confirmation takes `stable_checks` good checks in a row of one run, each
/// `verify_interval_ms` after the last; a container that died and came back
/// between two good checks starts the count again.
#[test]
fn only_good_checks_of_one_run_confirm_a_fix() {
    let o = rules().observer;
    assert_eq!(o.stable_checks, 2, "the default rules");
    let (report, checks) = verify_runs(&[T0 - 10]);
    assert_eq!(report.resolution, Resolution::Resolved);
    assert_eq!(checks, vec![T0, T0 + o.verify_interval_ms]);

    let (report, checks) = verify_runs(&[T0 - 10, T0 + 100]);
    assert_eq!(report.resolution, Resolution::Resolved);
    let step = o.verify_interval_ms;
    assert_eq!(checks, vec![T0, T0 + step, T0 + 2 * step], "the second run counted from its first check");
}
