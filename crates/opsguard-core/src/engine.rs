//! The decision engine: a pure `decide(alarm, history, now) -> Action`.
//!
//! **Architecture Invariant:** this module does no IO. It never reads a
//! clock, never touches tokio, bollard or reqwest, and does not allocate on
//! its hot path; the same inputs always give the same action. The incident
//! loop in [`crate::incident`] feeds it and carries its actions out.
//!
//! The rules' plan says what to try next; [`Engine::guard`] then applies the
//! safety rules ([`crate::safety`], the functions rules validation uses too)
//! that no rules file, history or LLM answer can override.

use std::sync::Arc;

use crate::model::{
    Action, Alarm, AlarmKind, History, LlmChoice, Outcome, RestartReason, RootCause, StopReason, Timestamp,
    Verification,
};
use crate::rules::{PlanStep, Rules};
use crate::safety::{self, RestartRefusal};

/// What an LLM's choice expands to: the same steps a rule would run.
const LLM_RESTART: &[PlanStep] = &[PlanStep::Restart, PlanStep::Verify];
/// A log flood is the disk-full plan's first half: with the logs cleaned
/// the database may still be down, and then it is restarted, with approval,
/// as the disk-full plan does (the guard still demands the disk freed).
const LLM_CLEAN: &[PlanStep] = &[PlanStep::CleanLogs, PlanStep::Verify, PlanStep::Restart, PlanStep::Verify];

/// The decision engine: compiled rules plus whether an LLM can be consulted.
#[derive(Clone, Debug)]
pub struct Engine {
    rules: Arc<Rules>,
    llm_available: bool,
}

impl Engine {
    /// An engine over `rules`, with no LLM: unknown causes escalate.
    pub fn new(rules: Arc<Rules>) -> Engine {
        Engine { rules, llm_available: false }
    }

    /// Whether unknown causes may consult an LLM.
    pub fn with_llm(mut self, available: bool) -> Engine {
        self.llm_available = available;
        self
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The rules in force, shared, for the observer that works beside the engine.
    pub fn shared_rules(&self) -> Arc<Rules> {
        Arc::clone(&self.rules)
    }

    /// The next action for an incident. Pure and deterministic.
    pub fn decide(&self, alarm: &Alarm, history: &History, now: Timestamp) -> Action {
        let proposed = self.plan_next(alarm, history);
        self.guard(alarm, history, now, proposed)
    }

    fn plan_next(&self, alarm: &Alarm, history: &History) -> Action {
        let steps = &history.steps;
        let Some(plan) = self.rules.plan(alarm.kind) else {
            return stop(StopReason::NoPlan);
        };
        if let Some(last) = steps.last() {
            match &last.outcome {
                Outcome::Failed { .. } => return stop(StopReason::ActionFailed),
                Outcome::ApprovalRejected => return stop(StopReason::ApprovalRejected),
                Outcome::LlmFailed => return stop(StopReason::LlmFailed),
                Outcome::Cleaned { disk_used_pct, .. } if !self.clean_succeeded(*disk_used_pct) => {
                    return stop(StopReason::CleanDidNotFreeDisk);
                }
                Outcome::Verified(Verification::Confirmed) => return Action::Resolved,
                _ => {}
            }
        }
        if steps.len() >= self.rules.max_steps as usize {
            return stop(StopReason::StepLimit);
        }
        // Only a verification may call it resolved, whatever the plan's next
        // step is; after the step limit, like any step.
        if steps.last().is_some_and(|s| matches!(s.outcome, Outcome::RestartNotNeeded | Outcome::ApprovalVoided { .. }))
        {
            return Action::Verify { target: alarm.container.clone() };
        }

        // Position in the plan is the number of steps taken, except that a
        // consulted LLM's choice continues the plan with that choice's steps.
        let pos = steps.len();
        let next = match plan.steps.iter().position(|s| *s == PlanStep::ConsultLlm) {
            Some(k) if pos > k => {
                let choice = match &steps[k].outcome {
                    Outcome::LlmChose { choice, .. } => *choice,
                    // A consult step without a choice outcome: nothing to follow.
                    _ => return stop(StopReason::LlmFailed),
                };
                if !plan.llm_choices.contains(choice) {
                    return stop(StopReason::LlmChoiceRefused);
                }
                let tail = match choice {
                    LlmChoice::Restart => LLM_RESTART,
                    LlmChoice::CleanLogs => LLM_CLEAN,
                    LlmChoice::Escalate => return stop(StopReason::LlmEscalated),
                };
                tail.get(pos - k - 1).copied()
            }
            _ => plan.steps.get(pos).copied(),
        };
        let Some(next) = next else {
            // The plan is exhausted and its last verification did not confirm.
            return stop(StopReason::VerificationFailed);
        };
        let target = &alarm.container;
        match next {
            PlanStep::CleanLogs => Action::CleanLogs { target: target.clone() },
            PlanStep::PruneContainers => Action::PruneContainers,
            PlanStep::Restart => Action::Restart { target: target.clone(), reason: restart_reason(alarm.kind) },
            PlanStep::Verify => Action::Verify { target: target.clone() },
            PlanStep::ConsultLlm if self.llm_available && plan.llm_choices != Default::default() => Action::ConsultLlm,
            PlanStep::ConsultLlm => stop(StopReason::UnknownCause),
            PlanStep::Stop => stop(stop_reason_for(alarm.kind)),
        }
    }

    fn clean_succeeded(&self, disk_used_pct: f64) -> bool {
        safety::clean_freed_disk(disk_used_pct, &self.rules.thresholds)
    }

    /// The safety rules, applied to whatever the plan proposed. They hold
    /// whatever the rules file, the history or an LLM said.
    pub fn guard(&self, alarm: &Alarm, history: &History, now: Timestamp, proposed: Action) -> Action {
        let rules = &self.rules;
        match &proposed {
            Action::Restart { target, .. } => {
                match safety::restart_refusal(alarm.kind, safety::disk_freed(history, &rules.thresholds)) {
                    Some(RestartRefusal::CauseForbids(_)) => return stop(stop_reason_for(alarm.kind)),
                    Some(RestartRefusal::NotADatabaseCrash | RestartRefusal::DiskNotFreed) => {
                        return stop(StopReason::SafetyRule);
                    }
                    None => {}
                }
                if *target != alarm.container {
                    return stop(StopReason::SafetyRule);
                }
                if safety::restart_budget_spent(rules.restart_budget, &history.restarts, now) {
                    return stop(StopReason::RestartBudgetExhausted);
                }
                proposed
            }
            Action::CleanLogs { target } | Action::Verify { target } if *target != alarm.container => {
                stop(StopReason::SafetyRule)
            }
            Action::Resolved if !safety::may_resolve(history) => stop(StopReason::VerificationFailed),
            _ => proposed,
        }
    }
}

fn stop(reason: StopReason) -> Action {
    Action::Stop { reason }
}

fn restart_reason(kind: AlarmKind) -> RestartReason {
    match kind {
        AlarmKind::DbCrash(RootCause::OomKill) => RestartReason::OomKill,
        AlarmKind::DbCrash(RootCause::DiskFull) => RestartReason::DiskFreed,
        _ => RestartReason::LlmSuggested,
    }
}

fn stop_reason_for(kind: AlarmKind) -> StopReason {
    match kind {
        AlarmKind::DbCrash(RootCause::ConfigError) => StopReason::ConfigError,
        AlarmKind::DbCrash(RootCause::DataCorruption) => StopReason::DataCorruption,
        AlarmKind::DbUnhealthy => StopReason::Unhealthy,
        _ => StopReason::SafetyRule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerName, ContainerState, Evidence, Risk, Step};

    fn engine() -> Engine {
        Engine::new(Arc::new(Rules::default_rules())).with_llm(true)
    }

    fn alarm(kind: AlarmKind, container: &str) -> Alarm {
        Alarm { kind, container: ContainerName::new(container), evidence: Evidence::default(), raised_at: Timestamp(0) }
    }

    fn db(cause: RootCause) -> Alarm {
        alarm(AlarmKind::DbCrash(cause), "db-prod")
    }

    fn step(action: Action, outcome: Outcome) -> Step {
        Step { action, outcome, at: Timestamp(0) }
    }

    fn run(engine: &Engine, alarm: &Alarm, outcomes: &[Outcome]) -> Action {
        let mut h = History::default();
        for o in outcomes {
            let a = engine.decide(alarm, &h, Timestamp(1_000));
            assert!(!a.is_terminal(), "ended early with {a:?}");
            h.steps.push(step(a, o.clone()));
        }
        engine.decide(alarm, &h, Timestamp(1_000))
    }

    const NOT_RUNNING: Outcome =
        Outcome::Verified(Verification::NotConfirmed { last_state: Some(ContainerState::Exited) });
    const CONFIRMED: Outcome = Outcome::Verified(Verification::Confirmed);

    fn cleaned(pct: f64) -> Outcome {
        Outcome::Cleaned { disk_used_pct: pct, freed_bytes: 1 }
    }

    #[test]
    fn disk_full_cleans_then_restarts_with_approval_then_resolves() {
        let e = engine();
        let a = db(RootCause::DiskFull);
        assert_eq!(run(&e, &a, &[]), Action::CleanLogs { target: "db-prod".into() });
        assert_eq!(run(&e, &a, &[cleaned(15.0)]), Action::Verify { target: "db-prod".into() });
        let restart = run(&e, &a, &[cleaned(15.0), NOT_RUNNING]);
        assert_eq!(restart, Action::Restart { target: "db-prod".into(), reason: RestartReason::DiskFreed });
        assert_eq!(restart.risk(), crate::model::Risk::Risky);
        assert_eq!(
            run(&e, &a, &[cleaned(15.0), NOT_RUNNING, Outcome::Restarted]),
            Action::Verify { target: "db-prod".into() }
        );
        assert_eq!(run(&e, &a, &[cleaned(15.0), NOT_RUNNING, Outcome::Restarted, CONFIRMED]), Action::Resolved);
    }

    #[test]
    fn disk_full_stops_when_cleaning_does_not_free_the_disk() {
        let e = engine();
        assert_eq!(run(&e, &db(RootCause::DiskFull), &[cleaned(80.0)]), stop(StopReason::CleanDidNotFreeDisk));
        assert_eq!(run(&e, &db(RootCause::DiskFull), &[cleaned(f64::NAN)]), stop(StopReason::CleanDidNotFreeDisk));
    }

    #[test]
    fn rejected_approval_cancels() {
        let e = engine();
        let a = db(RootCause::OomKill);
        assert_eq!(run(&e, &a, &[Outcome::ApprovalRejected]), stop(StopReason::ApprovalRejected));
    }

    #[test]
    fn config_error_and_corruption_stop_at_once() {
        let e = engine();
        assert_eq!(run(&e, &db(RootCause::ConfigError), &[]), stop(StopReason::ConfigError));
        assert_eq!(run(&e, &db(RootCause::DataCorruption), &[]), stop(StopReason::DataCorruption));
    }

    #[test]
    fn unknown_consults_the_llm_only_when_available() {
        let a = db(RootCause::Unknown);
        assert_eq!(run(&engine(), &a, &[]), Action::ConsultLlm);
        assert_eq!(run(&engine().with_llm(false), &a, &[]), stop(StopReason::UnknownCause));
    }

    #[test]
    fn llm_choices_go_through_the_same_steps() {
        let e = engine();
        let a = db(RootCause::Unknown);
        let chose = |choice| Outcome::LlmChose { choice, diagnosis: None };
        assert_eq!(
            run(&e, &a, &[chose(LlmChoice::Restart)]),
            Action::Restart { target: "db-prod".into(), reason: RestartReason::LlmSuggested }
        );
        assert_eq!(run(&e, &a, &[chose(LlmChoice::CleanLogs)]), Action::CleanLogs { target: "db-prod".into() });
        assert_eq!(run(&e, &a, &[chose(LlmChoice::Escalate)]), stop(StopReason::LlmEscalated));
        assert_eq!(run(&e, &a, &[Outcome::LlmFailed]), stop(StopReason::LlmFailed));
        assert_eq!(
            run(&e, &a, &[chose(LlmChoice::Restart), Outcome::Restarted, NOT_RUNNING]),
            stop(StopReason::VerificationFailed)
        );
    }

    #[test]
    fn an_llm_clean_continues_as_the_disk_full_plan() {
        let e = engine();
        let a = db(RootCause::Unknown);
        let clean = Outcome::LlmChose { choice: LlmChoice::CleanLogs, diagnosis: None };
        assert_eq!(run(&e, &a, &[clean.clone(), cleaned(40.0)]), Action::Verify { target: "db-prod".into() });
        // Still down after the clean: a restart, which needs approval.
        let restart = run(&e, &a, &[clean.clone(), cleaned(40.0), NOT_RUNNING]);
        assert_eq!(restart, Action::Restart { target: "db-prod".into(), reason: RestartReason::LlmSuggested });
        assert_eq!(restart.risk(), Risk::Risky);
        assert_eq!(
            run(&e, &a, &[clean.clone(), cleaned(40.0), NOT_RUNNING, Outcome::Restarted, NOT_RUNNING]),
            stop(StopReason::VerificationFailed)
        );
        // A clean that freed nothing stops before any restart.
        assert_eq!(run(&e, &a, &[clean, cleaned(97.0)]), stop(StopReason::CleanDidNotFreeDisk));
    }

    #[test]
    fn restart_budget_escalates_a_container_that_keeps_dying() {
        let e = engine();
        let a = db(RootCause::OomKill);
        let mut h = History::with_restarts(vec![Timestamp(10_000), Timestamp(20_000), Timestamp(30_000)]);
        assert_eq!(e.decide(&a, &h, Timestamp(40_000)), stop(StopReason::RestartBudgetExhausted));
        // An hour after the first restart one slot is free again.
        assert!(matches!(e.decide(&a, &h, Timestamp(3_600_000 + 10_000)), Action::Restart { .. }));
        h.restarts.truncate(2);
        assert!(matches!(e.decide(&a, &h, Timestamp(40_000)), Action::Restart { .. }));
    }

    #[test]
    fn guard_refuses_a_restart_for_config_error_whatever_the_history() {
        let e = engine();
        let a = db(RootCause::ConfigError);
        let h = History::default();
        let forced = Action::Restart { target: "db-prod".into(), reason: RestartReason::LlmSuggested };
        assert_eq!(e.guard(&a, &h, Timestamp(0), forced), stop(StopReason::ConfigError));
    }

    #[test]
    fn guard_refuses_resolved_without_confirmed_verification() {
        let e = engine();
        let a = db(RootCause::OomKill);
        assert_eq!(
            e.guard(&a, &History::default(), Timestamp(0), Action::Resolved),
            stop(StopReason::VerificationFailed)
        );
    }

    #[test]
    fn web_saturation_and_zombies() {
        let e = engine();
        let web = alarm(AlarmKind::WebLogSaturation, "web-prod");
        assert_eq!(run(&e, &web, &[]), Action::CleanLogs { target: "web-prod".into() });
        assert_eq!(run(&e, &web, &[cleaned(12.0), CONFIRMED]), Action::Resolved);
        assert_eq!(run(&e, &web, &[cleaned(12.0), NOT_RUNNING]), stop(StopReason::VerificationFailed));
        let z = alarm(AlarmKind::ZombieOutbreak, "opsguard.lab=true");
        assert_eq!(run(&e, &z, &[]), Action::PruneContainers);
        assert_eq!(run(&e, &z, &[Outcome::Pruned { removed: 15 }, CONFIRMED]), Action::Resolved);
    }

    #[test]
    fn a_restart_found_unneeded_goes_on_to_verification() {
        let e = engine();
        let a = db(RootCause::OomKill);
        assert_eq!(run(&e, &a, &[Outcome::RestartNotNeeded]), Action::Verify { target: "db-prod".into() });
        assert_eq!(run(&e, &a, &[Outcome::RestartNotNeeded, CONFIRMED]), Action::Resolved);
        assert_eq!(run(&e, &a, &[Outcome::RestartNotNeeded, NOT_RUNNING]), stop(StopReason::VerificationFailed));
        // Found by the property suite: the shortcut to verification still respects the step limit.
        let mut h = History::default();
        for _ in 0..e.rules().max_steps {
            h.steps.push(step(
                Action::Restart { target: "db-prod".into(), reason: RestartReason::OomKill },
                Outcome::RestartNotNeeded,
            ));
        }
        assert_eq!(e.decide(&a, &h, Timestamp(1_000)), stop(StopReason::StepLimit));
    }

    #[test]
    fn host_failure_escalates() {
        let e = engine();
        let failed = Outcome::Failed { error: "daemon gone".into() };
        assert_eq!(run(&e, &db(RootCause::DiskFull), &[failed]), stop(StopReason::ActionFailed));
    }
}
