//! The agent against a real Docker host, wired once: the host, whom it asks
//! (an approver), whom it consults (an advisor), the audit log with
//! its taps, the responder and Docker's event stream. `opsguard watch` and
//! the chaos runner ([`crate::chaos::docker::run_scenario`]) both start it
//! here, so what the lab tests measure is what `watch` runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::approval::{DynApprover, PolicyApprover};
use crate::audit::{AuditLog, AuditRecord, Resume};
use crate::clock::SystemClock;
use crate::engine::Engine;
use crate::host::ContainerEvent;
use crate::host::docker::{DockerHost, StreamNotice, spawn_events};
use crate::incident::{Agent, IncidentReport, Responder, Timeouts, WatchLimit};
use crate::llm::{DynAdvisor, NoAdvisor};
use crate::rules::Rules;

/// The responder of a Docker agent; approver and advisor are picked at run time.
pub type DockerResponder = Responder<DockerHost, Box<dyn DynApprover>, Box<dyn DynAdvisor>, SystemClock>;

/// Events waiting for the agent; beyond this the periodic sweep catches up.
const EVENT_CAPACITY: usize = 256;

/// Collects what a Docker agent is made of; [`DockerAgentBuilder::start`]
/// connects it to the event stream.
pub struct DockerAgentBuilder {
    rules: Arc<Rules>,
    host: DockerHost,
    audit: AuditLog,
    approver: Box<dyn DynApprover>,
    advisor: Box<dyn DynAdvisor>,
    timeouts: Timeouts,
    shadow: bool,
    resume: Option<Resume>,
    notices: Option<mpsc::UnboundedSender<StreamNotice>>,
    health: Option<crate::health::Health>,
}

impl DockerAgentBuilder {
    /// An agent for `host` under `rules`, recording to `audit` (with the
    /// metrics' tap first). Until told otherwise it rejects every risky
    /// action, consults no LLM and acts.
    pub fn new(rules: Arc<Rules>, host: DockerHost, audit: AuditLog) -> Self {
        DockerAgentBuilder {
            rules,
            host,
            audit: audit.with_tap(crate::telemetry::audit_tap()),
            approver: Box::new(PolicyApprover::Deny),
            advisor: Box::new(NoAdvisor),
            timeouts: Timeouts::default(),
            shadow: false,
            resume: None,
            notices: None,
            health: None,
        }
    }

    /// Who approves risky actions (any [`crate::approval::Approver`], boxed).
    pub fn approver(mut self, approver: Box<dyn DynApprover>) -> Self {
        self.approver = approver;
        self
    }

    /// Who is consulted about unknown root causes (any
    /// [`crate::llm::Advisor`], boxed).
    pub fn advisor(mut self, advisor: Box<dyn DynAdvisor>) -> Self {
        self.advisor = advisor;
        self
    }

    /// How long an approval request waits for its answer.
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.approval = timeout;
        self
    }

    /// How long a consultation of the LLM may take in all, every question
    /// included; `None` keeps the default. Past it the incident escalates.
    pub fn advice_timeout(mut self, timeout: Option<Duration>) -> Self {
        if let Some(t) = timeout {
            self.timeouts.advice = t;
        }
        self
    }

    /// Shadow mode ([`Responder::with_shadow`]).
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Continues the numbering and restart budget of an earlier run
    /// ([`Responder::resuming`]).
    pub fn resuming(mut self, resume: Resume) -> Self {
        self.resume = Some(resume);
        self
    }

    /// Also hands every audit record to `tap` (the timeline, the console),
    /// after the taps added before it.
    pub fn tap(mut self, tap: impl Fn(&AuditRecord) + Send + Sync + 'static) -> Self {
        self.audit = self.audit.with_tap(tap);
        self
    }

    /// Where the event stream reports its connections and losses.
    pub fn notices(mut self, notices: mpsc::UnboundedSender<StreamNotice>) -> Self {
        self.notices = Some(notices);
        self
    }

    /// Where the agent reports its sweeps and its stop (`/healthz`,
    /// `/readyz`); the event stream's state is reported by whoever reads
    /// [`DockerAgentBuilder::notices`].
    pub fn health(mut self, health: crate::health::Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Subscribes to Docker's events (within the rules' scope) and builds
    /// the agent. Needs a tokio runtime: the stream runs in tasks of its own
    /// until the agent is dropped.
    pub fn start(self) -> DockerAgent {
        let DockerAgentBuilder { rules, host, audit, approver, advisor, timeouts, shadow, resume, notices, health } =
            self;
        let (events, pump) =
            spawn_events(host.client().clone(), rules.scope_label.clone(), EVENT_CAPACITY, notices, SystemClock);
        let mut responder = Responder::new(Engine::new(rules), host, approver, advisor, SystemClock, audit)
            .with_timeouts(timeouts)
            .with_shadow(shadow);
        if let Some(resume) = resume {
            responder = responder.resuming(resume);
        }
        let mut agent = Agent::new(responder);
        if let Some(health) = health {
            agent = agent.with_health(health);
        }
        DockerAgent { agent, events: Some(events), pump }
    }
}

/// A Docker agent connected to the event stream.
pub struct DockerAgent {
    agent: Agent<DockerHost, Box<dyn DynApprover>, Box<dyn DynAdvisor>, SystemClock>,
    events: Option<mpsc::Receiver<ContainerEvent>>,
    /// The event pump.
    pump: JoinHandle<()>,
}

impl DockerAgent {
    /// The responder.
    pub fn responder(&self) -> &DockerResponder {
        self.agent.responder()
    }

    /// What replaces the rules while [`DockerAgent::run`] runs (SIGHUP).
    pub fn rules_handle(&self) -> crate::incident::RulesHandle {
        self.agent.rules_handle()
    }

    /// What stops [`DockerAgent::run`] gracefully (SIGTERM).
    pub fn shutdown_handle(&self) -> crate::incident::ShutdownHandle {
        self.agent.shutdown_handle()
    }

    /// Watches until `until` ([`Agent::run`]); the event stream stops with it.
    pub async fn run(mut self, until: WatchLimit) -> Vec<IncidentReport> {
        let events = self.events.take();
        self.agent.run(events, until).await
    }
}

impl Drop for DockerAgent {
    fn drop(&mut self) {
        self.pump.abort();
    }
}
