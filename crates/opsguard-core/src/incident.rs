//! The incident machine: one incident, from its alarm to its closing, as a
//! sans-IO state machine in the manner of quinn-proto and str0m.
//!
//! The driver feeds [`Input`]s (an operation's result, an approval answer,
//! a check, the time) to [`Incident::handle`] and carries out what
//! [`Incident::poll`] returns ([`Output`]: inspect a container, ask a
//! human, execute an action, re-check, wake me at, audit, closed). The
//! machine never reads a clock (every input carries its time), never waits
//! and never touches a host, so the property suite drives whole incidents
//! through any interleaving of late, duplicated and foreign inputs.
//!
//! What it owns: the decision loop around [`Engine::decide`], the approval
//! gate for every [`Risk::Risky`] action (bound to one request and to the
//! crash the human was shown), the approval and advice deadlines, the
//! verification cadence and stable-check count, the restarts an incident
//! adds to its budget, and the re-assessment of a crash that changed under
//! the approver.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::approval::{Answer, ApprovalRequest, CrashBinding, Signoff};
use crate::audit::{AuditEvent, Resolution};
use crate::engine::Engine;
use crate::model::{
    Action, Alarm, ChoiceSet, ContainerName, ContainerState, ContainerStatus, History, Outcome, Risk, Step, StopReason,
    Timestamp, Verification,
};
use crate::observe::Check;

/// How many times one incident may be decided again after an approval was
/// voided by a new crash; a container that keeps changing under the
/// approver ends in verification instead.
pub const MAX_REASSESSMENTS: u32 = 3;

/// How long the machine waits for what it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a human has to answer; silence is a no.
    pub approval: Duration,
    /// How long the LLM has to answer; silence is an escalation.
    pub advice: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { approval: Duration::from_secs(300), advice: Duration::from_secs(60) }
    }
}

/// Approval request ids, unique across the incidents of one run (a line
/// approver matches answers by them). Clones share the counter.
#[derive(Clone, Debug)]
pub struct RequestIds(Arc<AtomicU64>);

impl RequestIds {
    /// Ids from `first` on.
    pub fn starting_at(first: u64) -> RequestIds {
        RequestIds(Arc::new(AtomicU64::new(first)))
    }

    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::starting_at(1)
    }
}

/// How an incident is opened.
#[derive(Clone, Debug)]
pub struct Opening {
    /// The incident's id.
    pub id: u64,
    /// The alarm.
    pub alarm: Alarm,
    /// When.
    pub at: Timestamp,
    /// Restarts of the alarmed container already in the budget window's
    /// reach (earlier incidents, earlier runs).
    pub restarts: Vec<Timestamp>,
    /// Who answers approvals, for the audit log.
    pub approver: String,
    /// Shadow mode: record the first action that would change the host and
    /// stop there.
    pub shadow: bool,
    /// Deadlines.
    pub timeouts: Timeouts,
}

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
    /// When it opened.
    pub opened_at: Timestamp,
    /// When it closed.
    pub closed_at: Timestamp,
}

/// Names one operation the machine asked for; its result must name it back,
/// so a late or repeated result for an earlier one is recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What the driver tells the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The time is now this (a wake-up the machine asked for, or any other).
    Tick(Timestamp),
    /// A container was inspected for the approval gate.
    Inspected {
        /// Which request.
        ticket: Ticket,
        /// When the answer came.
        at: Timestamp,
        /// What the host showed, or why it could not.
        status: Result<ContainerStatus, String>,
    },
    /// A human (or policy) answered approval request `request`.
    Answered {
        /// The request the channel was asked (not what the answer claims).
        request: u64,
        /// When.
        at: Timestamp,
        /// The answer, or why none could be had.
        answer: Result<Answer, String>,
        /// Who gave the answer and what they were shown, as the channel
        /// vouches for it; recorded with the answer.
        signoff: Option<Signoff>,
    },
    /// An action was carried out (or the LLM consulted).
    Executed {
        /// Which request.
        ticket: Ticket,
        /// When it finished.
        at: Timestamp,
        /// What came of it.
        outcome: Outcome,
    },
    /// The alarm's condition was re-checked.
    Checked {
        /// Which request.
        ticket: Ticket,
        /// When.
        at: Timestamp,
        /// The check, or why it could not be made.
        check: Result<Check, String>,
    },
    /// The alarmed container was looked at again after a voided approval.
    Reassessed {
        /// Which request.
        ticket: Ticket,
        /// When.
        at: Timestamp,
        /// The alarm the host raises now (`None`: it is up), or why it
        /// could not be looked at.
        alarm: Result<Option<Alarm>, String>,
    },
    /// OpsGuard is stopping: the incident closes now, for a human, and
    /// nothing more is started. A pending approval is withdrawn and
    /// recorded as unanswered; an operation under way is recorded as
    /// interrupted (a restart still counts against the budget, as it may
    /// have happened).
    Shutdown {
        /// When the signal came.
        at: Timestamp,
    },
}

/// What the machine asks of the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Record this in the audit log.
    Audit(AuditEvent),
    /// Inspect `container` and answer with [`Input::Inspected`].
    Inspect {
        /// The request.
        ticket: Ticket,
        /// Which container.
        container: ContainerName,
    },
    /// Put this request to the approver; answer with [`Input::Answered`].
    AskApproval(ApprovalRequest),
    /// The request is no longer wanted (its deadline passed): take it off
    /// every screen and drop any answer to it.
    Withdraw {
        /// The request.
        request: u64,
    },
    /// Carry out `action` and answer with [`Input::Executed`]. A risky
    /// action comes here only after its approval and the re-check of the
    /// crash it was approved for.
    Execute {
        /// The request.
        ticket: Ticket,
        /// The action.
        action: Action,
    },
    /// Ask the LLM to choose among `allowed` for `alarm` and answer with
    /// [`Input::Executed`] (its choice, or its failure). The machine's
    /// deadline applies: a late answer is dropped.
    Consult {
        /// The request.
        ticket: Ticket,
        /// The alarm, with its (untrusted) evidence.
        alarm: Alarm,
        /// What the rules let it choose.
        allowed: ChoiceSet,
    },
    /// Re-check `alarm`'s condition and answer with [`Input::Checked`].
    Check {
        /// The request.
        ticket: Ticket,
        /// The alarm.
        alarm: Alarm,
    },
    /// Look at the alarm's container again and answer with
    /// [`Input::Reassessed`].
    Reassess {
        /// The request.
        ticket: Ticket,
        /// The alarm as it was.
        alarm: Alarm,
    },
    /// Send [`Input::Tick`] at this time (or later). Only the latest
    /// counts.
    WakeAt(Timestamp),
    /// The incident is over.
    Closed(IncidentReport),
}

/// Where an incident is.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// Ready to decide the next action.
    Deciding,
    /// Inspecting the container before asking (`approved`: after the
    /// answer, before acting).
    Inspecting { ticket: Ticket, action: Action, bound: Option<CrashBinding> },
    /// Waiting for a human.
    Approving { request: u64, action: Action, crash: CrashBinding, deadline: Timestamp },
    /// An action under way; `deadline` for the LLM only.
    Executing { ticket: Ticket, action: Action, deadline: Option<Timestamp> },
    /// Rapid checks after a fix.
    Verifying(Verifying),
    /// Looking again at a container whose approval was voided.
    Reassessing { ticket: Ticket },
    /// Over.
    Closed,
}

#[derive(Clone, Debug, PartialEq)]
struct Verifying {
    action: Action,
    until: Timestamp,
    stable: u32,
    /// The run (its start) the good checks counted in `stable` saw.
    run: Option<Timestamp>,
    last_state: Option<ContainerState>,
    /// A check under way, or the time of the next one.
    next: Next,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Next {
    Awaiting(Ticket),
    At(Timestamp),
}

/// One incident, from alarm to resolution.
#[derive(Debug)]
pub struct Incident {
    id: u64,
    engine: Engine,
    opening: Alarm,
    alarm: Alarm,
    history: History,
    /// Steps taken for alarms the incident has since reassessed.
    earlier_steps: Vec<Step>,
    reassessments: u32,
    approver: String,
    shadow: bool,
    timeouts: Timeouts,
    requests: RequestIds,
    opened_at: Timestamp,
    now: Timestamp,
    phase: Phase,
    next_ticket: u64,
    out: VecDeque<Output>,
}

impl Incident {
    /// Opens an incident: its opening is audited and its first action
    /// decided at once. `engine` decides (with or without an LLM, as it was
    /// built); `requests` numbers its approval requests.
    pub fn open(engine: Engine, opening: Opening, requests: RequestIds) -> Incident {
        let mut incident = Incident {
            id: opening.id,
            engine,
            opening: opening.alarm.clone(),
            alarm: opening.alarm.clone(),
            history: History::with_restarts(opening.restarts),
            earlier_steps: Vec::new(),
            reassessments: 0,
            approver: opening.approver,
            shadow: opening.shadow,
            timeouts: opening.timeouts,
            requests,
            opened_at: opening.at,
            now: opening.at,
            phase: Phase::Deciding,
            next_ticket: 1,
            out: VecDeque::new(),
        };
        incident.audit(AuditEvent::IncidentOpened { alarm: opening.alarm });
        incident.advance();
        incident
    }

    /// The incident's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The alarm being handled (the opening one, or a reassessed one).
    pub fn alarm(&self) -> &Alarm {
        &self.alarm
    }

    /// Whether it has closed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The approval request waiting for an answer, if one is.
    pub fn pending_request(&self) -> Option<u64> {
        match self.phase {
            Phase::Approving { request, .. } => Some(request),
            _ => None,
        }
    }

    /// The next thing to do, until there is none.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds one input. Results for anything but the current request (late,
    /// repeated, for another request) and anything after the closing are
    /// dropped; time never goes backwards.
    pub fn handle(&mut self, input: Input) {
        if self.phase == Phase::Closed {
            return;
        }
        match input {
            Input::Tick(at) => {
                self.at(at);
                self.on_tick();
            }
            Input::Inspected { ticket, at, status } => {
                let Phase::Inspecting { ticket: want, .. } = &self.phase else { return };
                if *want != ticket {
                    return;
                }
                self.at(at);
                let Phase::Inspecting { action, bound, .. } = std::mem::replace(&mut self.phase, Phase::Deciding)
                else {
                    return;
                };
                self.on_inspected(action, bound, status);
            }
            Input::Answered { request, at, answer, signoff } => {
                let Phase::Approving { request: want, .. } = &self.phase else { return };
                if *want != request {
                    return;
                }
                self.at(at);
                let Phase::Approving { action, crash, .. } = std::mem::replace(&mut self.phase, Phase::Deciding) else {
                    return;
                };
                let (approved, detail) = match answer {
                    Ok(Answer::Approve { request: id }) if id == request => (true, "approved".to_string()),
                    Ok(Answer::Approve { request: id }) => {
                        (false, format!("answer was for request {id}, not {request}"))
                    }
                    Ok(Answer::Reject) => (false, "rejected".to_string()),
                    Err(e) => (false, e),
                };
                self.on_answer(request, action, crash, approved, detail, signoff);
            }
            Input::Executed { ticket, at, outcome } => {
                let Phase::Executing { ticket: want, .. } = &self.phase else { return };
                if *want != ticket {
                    return;
                }
                self.at(at);
                let Phase::Executing { action, .. } = std::mem::replace(&mut self.phase, Phase::Deciding) else {
                    return;
                };
                if matches!(action, Action::Restart { .. }) {
                    // Counted whatever the answer: a restart that timed out
                    // or lost its connection may still have happened, and a
                    // budget that skipped it would let a crash loop run on.
                    self.history.restarts.push(self.now);
                }
                self.finish_step(action, outcome);
            }
            Input::Checked { ticket, at, check } => {
                let Phase::Verifying(v) = &self.phase else { return };
                if v.next != Next::Awaiting(ticket) {
                    return;
                }
                self.at(at);
                self.on_checked(check);
            }
            Input::Reassessed { ticket, at, alarm } => {
                let Phase::Reassessing { ticket: want } = &self.phase else { return };
                if *want != ticket {
                    return;
                }
                self.at(at);
                self.phase = Phase::Deciding;
                match alarm {
                    Ok(Some(fresh)) => {
                        self.reassessments += 1;
                        self.audit(AuditEvent::Reassessed { alarm: fresh.clone() });
                        self.alarm = fresh;
                        self.earlier_steps.append(&mut self.history.steps);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.audit(AuditEvent::Checked { state: None, health: None, cleared: None, error: Some(error) })
                    }
                }
                self.advance();
            }
            Input::Shutdown { at } => {
                self.at(at);
                self.on_shutdown();
            }
        }
    }

    fn at(&mut self, at: Timestamp) {
        self.now = self.now.max(at);
    }

    fn ticket(&mut self) -> Ticket {
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        t
    }

    fn audit(&mut self, event: AuditEvent) {
        self.out.push_back(Output::Audit(event));
    }

    fn on_tick(&mut self) {
        match &self.phase {
            Phase::Approving { request, deadline, .. } if self.now >= *deadline => {
                let request = *request;
                let Phase::Approving { action, crash, .. } = std::mem::replace(&mut self.phase, Phase::Deciding) else {
                    return;
                };
                self.out.push_back(Output::Withdraw { request });
                let detail = format!("no answer within {}s", self.timeouts.approval.as_secs());
                self.on_answer(request, action, crash, false, detail, None);
            }
            Phase::Executing { deadline: Some(deadline), .. } if self.now >= *deadline => {
                let Phase::Executing { action, .. } = std::mem::replace(&mut self.phase, Phase::Deciding) else {
                    return;
                };
                self.audit(AuditEvent::LlmConsulted {
                    model: None,
                    latency_ms: None,
                    choice: None,
                    reason: format!("no answer within {}s", self.timeouts.advice.as_secs()),
                    raw: None,
                    diagnosis: None,
                });
                self.finish_step(action, Outcome::LlmFailed);
            }
            Phase::Verifying(Verifying { next: Next::At(when), .. }) if self.now >= *when => {
                let ticket = self.ticket();
                if let Phase::Verifying(v) = &mut self.phase {
                    v.next = Next::Awaiting(ticket);
                }
                self.out.push_back(Output::Check { ticket, alarm: self.alarm.clone() });
            }
            _ => {}
        }
    }

    fn on_shutdown(&mut self) {
        const INTERRUPTED: &str = "interrupted: OpsGuard was stopped while it was under way; it may have happened";
        match std::mem::replace(&mut self.phase, Phase::Deciding) {
            Phase::Approving { request, action, .. } => {
                self.out.push_back(Output::Withdraw { request });
                let unanswered =
                    AuditEvent::unsigned_answer(request, false, &self.approver, "unanswered: OpsGuard is stopping");
                self.audit(unanswered);
                self.record_step(action, Outcome::ApprovalRejected);
            }
            Phase::Inspecting { action, bound: Some(_), .. } => {
                let error = "not started: OpsGuard is stopping".to_string();
                self.record_step(action, Outcome::Failed { error });
            }
            Phase::Executing { action: Action::ConsultLlm, .. } => {
                self.record_step(Action::ConsultLlm, Outcome::LlmFailed);
            }
            Phase::Executing { action, .. } => {
                if matches!(action, Action::Restart { .. }) {
                    self.history.restarts.push(self.now);
                }
                self.record_step(action, Outcome::Failed { error: INTERRUPTED.to_string() });
            }
            Phase::Verifying(v) => {
                let verdict = Verification::NotConfirmed { last_state: v.last_state };
                self.record_step(v.action, Outcome::Verified(verdict));
            }
            Phase::Deciding | Phase::Inspecting { bound: None, .. } | Phase::Reassessing { .. } | Phase::Closed => {}
        }
        self.close(Resolution::Stopped { reason: StopReason::Interrupted });
    }

    /// Decides and starts the next action, or closes.
    fn advance(&mut self) {
        let action = self.engine.decide(&self.alarm, &self.history, self.now);
        self.audit(AuditEvent::Decided { action: action.clone() });
        match action {
            Action::Resolved => self.close(Resolution::Resolved),
            Action::Stop { reason } => self.close(Resolution::Stopped { reason }),
            action if self.shadow && action.changes_host() => {
                self.audit(AuditEvent::WouldExecute { action });
                self.close(Resolution::Withheld);
            }
            action if action.risk() == Risk::Risky => self.inspect(action, None),
            Action::Verify { .. } => {
                let settings = self.engine.rules().observer;
                let ticket = self.ticket();
                self.phase = Phase::Verifying(Verifying {
                    action: action.clone(),
                    until: self.now.plus_millis(settings.rapid_window_secs * 1000),
                    stable: 0,
                    run: None,
                    last_state: None,
                    next: Next::Awaiting(ticket),
                });
                self.out.push_back(Output::Check { ticket, alarm: self.alarm.clone() });
            }
            Action::ConsultLlm => {
                let ticket = self.ticket();
                let allowed = self.engine.rules().plan(self.alarm.kind).map(|p| p.llm_choices).unwrap_or_default();
                self.out.push_back(Output::Consult { ticket, alarm: self.alarm.clone(), allowed });
                let deadline = self.now.plus_millis(self.timeouts.advice.as_millis() as u64);
                self.out.push_back(Output::WakeAt(deadline));
                self.phase = Phase::Executing { ticket, action: Action::ConsultLlm, deadline: Some(deadline) };
            }
            action => self.execute(action),
        }
    }

    fn execute(&mut self, action: Action) {
        let ticket = self.ticket();
        self.out.push_back(Output::Execute { ticket, action: action.clone() });
        self.phase = Phase::Executing { ticket, action, deadline: None };
    }

    /// The approval gate's look at the container: before asking
    /// (`bound: None`) and after a yes (`bound`: the crash approved).
    fn inspect(&mut self, action: Action, bound: Option<CrashBinding>) {
        let Some(container) = action.target().cloned() else {
            // A risky action without a container cannot be bound to what a
            // human saw, so it is never carried out.
            return self.finish_step(action, Outcome::Failed { error: "a risky action needs a target".into() });
        };
        let ticket = self.ticket();
        self.out.push_back(Output::Inspect { ticket, container });
        self.phase = Phase::Inspecting { ticket, action, bound };
    }

    fn on_inspected(&mut self, action: Action, bound: Option<CrashBinding>, status: Result<ContainerStatus, String>) {
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                let error = match bound {
                    None => format!("inspect before asking: {e}"),
                    // Acting blind is what the approval gate is for avoiding.
                    Some(_) => format!("re-check before restarting: {e}"),
                };
                return self.finish_step(action, Outcome::Failed { error });
            }
        };
        self.audit(AuditEvent::Checked {
            state: Some(status.state),
            health: Some(status.health),
            cleared: None,
            error: None,
        });
        // Running (even if still starting) or restarting under Docker's
        // policy: never restarted on an approval given for a stopped one.
        if !status.state.is_stopped() {
            return self.finish_step(action, Outcome::RestartNotNeeded);
        }
        match bound {
            None => {
                let crash = CrashBinding::of(&status, self.alarm.kind.cause());
                if let Some(reason) = crash.differs_from(&self.alarm.evidence) {
                    return self.finish_step(action, Outcome::ApprovalVoided { reason });
                }
                let request = self.requests.next();
                self.audit(AuditEvent::ApprovalRequested {
                    request,
                    action: action.clone(),
                    approver: self.approver.clone(),
                });
                self.out.push_back(Output::AskApproval(ApprovalRequest {
                    id: request,
                    incident: self.id,
                    action: action.clone(),
                    alarm: self.alarm.clone(),
                    crash: Some(crash.clone()),
                    // The diagnosis behind an LLM's restart, for the approver.
                    diagnosis: self.history.steps.iter().rev().find_map(|s| match &s.outcome {
                        Outcome::LlmChose { diagnosis, .. } => diagnosis.clone(),
                        _ => None,
                    }),
                }));
                let deadline = self.now.plus_millis(self.timeouts.approval.as_millis() as u64);
                self.out.push_back(Output::WakeAt(deadline));
                self.phase = Phase::Approving { request, action, crash, deadline };
            }
            // The human answered what they saw, maybe minutes ago: act only
            // on the very crash they approved, still stopped.
            Some(crash) => match crash.void_reason(&status) {
                Some(reason) => self.finish_step(action, Outcome::ApprovalVoided { reason }),
                None => self.execute(action),
            },
        }
    }

    fn on_answer(
        &mut self,
        request: u64,
        action: Action,
        crash: CrashBinding,
        approved: bool,
        detail: String,
        signoff: Option<Signoff>,
    ) {
        let (answered_by, evidence_digest) = signoff.map_or((None, None), |s| (Some(s.by), s.digest));
        self.audit(AuditEvent::ApprovalAnswered {
            request,
            approved,
            approver: self.approver.clone(),
            detail,
            answered_by,
            evidence_digest,
        });
        if approved {
            self.inspect(action, Some(crash));
        } else {
            self.finish_step(action, Outcome::ApprovalRejected);
        }
    }

    fn on_checked(&mut self, check: Result<Check, String>) {
        let stable_checks = self.engine.rules().observer.stable_checks;
        let interval = self.engine.rules().observer.verify_interval_ms;
        let now = self.now;
        let Phase::Verifying(v) = &mut self.phase else { return };
        let mut verdict = None;
        let event = match check {
            Ok(check) => {
                v.last_state = check.state;
                if check.is_good() {
                    // Good checks of different runs (it died and came back
                    // in between) are no stable run: count from this one.
                    if v.stable > 0 && check.started_at != v.run {
                        v.stable = 0;
                    }
                    v.run = check.started_at;
                    v.stable += 1;
                    if v.stable >= stable_checks {
                        verdict = Some(Verification::Confirmed);
                    }
                } else {
                    v.stable = 0;
                    if check.is_settled_down() {
                        verdict = Some(Verification::NotConfirmed { last_state: v.last_state });
                    }
                }
                AuditEvent::Checked {
                    state: check.state,
                    health: Some(check.health_seen()),
                    cleared: Some(check.cleared),
                    error: None,
                }
            }
            Err(error) => {
                // A daemon that blinks may come back within the window.
                v.stable = 0;
                AuditEvent::Checked { state: None, health: None, cleared: None, error: Some(error) }
            }
        };
        if verdict.is_none() && now >= v.until {
            verdict = Some(Verification::NotConfirmed { last_state: v.last_state });
        }
        let action = v.action.clone();
        match verdict {
            Some(verdict) => {
                self.audit(event);
                self.finish_step(action, Outcome::Verified(verdict));
            }
            None => {
                let when = now.plus_millis(interval);
                v.next = Next::At(when);
                self.audit(event);
                self.out.push_back(Output::WakeAt(when));
            }
        }
    }

    /// Records a finished action and goes on: decides again, or first looks
    /// again at a crash that changed under the approver.
    fn finish_step(&mut self, action: Action, outcome: Outcome) {
        let voided = matches!(outcome, Outcome::ApprovalVoided { .. });
        self.record_step(action, outcome);
        // A new crash is a new decision, from its own facts (a config error
        // now forbids the restart approved for an OOM kill). Bounded.
        if voided
            && self.reassessments < MAX_REASSESSMENTS
            && matches!(self.alarm.kind, crate::model::AlarmKind::DbCrash(_))
        {
            let ticket = self.ticket();
            self.out.push_back(Output::Reassess { ticket, alarm: self.alarm.clone() });
            self.phase = Phase::Reassessing { ticket };
            return;
        }
        self.phase = Phase::Deciding;
        self.advance();
    }

    /// Audits a finished action and adds it to the history.
    fn record_step(&mut self, action: Action, outcome: Outcome) {
        self.audit(AuditEvent::Executed { action: action.clone(), outcome: outcome.clone() });
        self.history.steps.push(Step { action, outcome, at: self.now });
    }

    fn close(&mut self, resolution: Resolution) {
        self.earlier_steps.append(&mut self.history.steps);
        let steps = std::mem::take(&mut self.earlier_steps);
        self.audit(AuditEvent::IncidentClosed { resolution, steps: steps.len() });
        self.out.push_back(Output::Closed(IncidentReport {
            id: self.id,
            alarm: self.opening.clone(),
            steps,
            resolution,
            opened_at: self.opened_at,
            closed_at: self.now,
        }));
        self.phase = Phase::Closed;
    }
}
