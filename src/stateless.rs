//! The shell around stateless services (issue #10): finds them by their
//! labels ([`opsguard_core::stateless::read_labels`]), reads their state,
//! carries out what each one's [`Supervisor`] decides (a restart without
//! approval, a wait, a stop for a human) and audits it. The policy itself
//! (backoff, budget) is the core's.
//!
//! Each episode of trouble on a container is one incident id in the audit
//! log, from its first restart (or hold) to its resolution or escalation.
//!
//! Restarts are not made here: a decided restart becomes a [`RestartJob`]
//! the driver runs beside everything else ([`run_job`], a bounded number
//! at a time) and hands back ([`StatelessWatch::restarted`]). A burst of
//! dying services (each restart takes a fraction of a second) must not hold
//! up a database's alarm, nor each other.
//!
//! A service whose labels name a dependency (`opsguard.depends_on`, or
//! Compose's `depends_on`) is held while that dependency is down or not yet
//! healthy: restarting an API whose database is down only spends its budget
//! and floods the logs. The hold is audited once, the service looked at again
//! at the rapid cadence, and healed as usual once the dependency is ready.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

pub use opsguard_core::stateless::*;

use crate::audit::{AuditEvent, AuditLog};
use crate::clock::Clock;
use crate::host::{ContainerSummary, Host, HostErrorKind};
use crate::model::{ContainerName, Timestamp};
use crate::model::{ContainerState, Health};
use crate::redact::{printable, redact_lines};
use crate::rules::Rules;

/// Log lines kept as an escalation's evidence.
pub const TAIL_LINES: usize = 20;
/// Most containers whose label warnings are remembered (said once each).
const MAX_WARNED: usize = 4096;

/// What the shell needs to act on stateless services.
pub struct Ctx<'a, H, C> {
    /// The host.
    pub host: &'a H,
    /// The rules in force.
    pub rules: &'a Rules,
    /// The clock.
    pub clock: &'a C,
    /// Where each step is recorded.
    pub audit: &'a AuditLog,
    /// Incident numbering, shared with the other incidents.
    pub ids: &'a AtomicU64,
}

#[derive(Debug)]
struct Watched {
    supervisor: Supervisor,
    /// The audit incident of the episode under way.
    incident: Option<u64>,
    /// A restart the backoff holds back until then.
    wait: Option<Timestamp>,
    /// The last restart, for the rapid checks that follow it.
    restarted: Option<Timestamp>,
    /// The next rapid check.
    recheck: Option<Timestamp>,
    /// What its labels say it needs, and the containers that are it (none:
    /// the dependency does not exist, and holds nothing).
    depends_on: Vec<(Dependency, Vec<ContainerName>)>,
    /// The dependency a hold under way waits for (audited once).
    held: Option<String>,
    /// A restart of it is queued or under way: it is not looked at again
    /// until that is done.
    restarting: bool,
}

/// A restart decided for a stateless service, for the driver to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartJob {
    /// The service.
    pub container: ContainerName,
    /// The episode's incident.
    pub incident: u64,
    /// What was wrong.
    pub trouble: Option<Trouble>,
    /// Which restart in the window.
    pub attempt: u32,
    /// The backoff waited before it.
    pub delay_ms: u64,
}

/// Runs `job` on `host`: the restart's error, if it failed.
pub async fn run_job<H: Host>(host: &H, job: RestartJob) -> (RestartJob, Option<String>) {
    let error = host.restart(job.container.as_str()).await.err().map(|e| e.to_string());
    (job, error)
}

/// The stateless services seen and each one's restart history.
#[derive(Debug, Default)]
pub struct StatelessWatch {
    watched: BTreeMap<ContainerName, Watched>,
    warned: BTreeSet<ContainerName>,
    warned_missing: BTreeSet<(ContainerName, Dependency)>,
    jobs: VecDeque<RestartJob>,
}

impl StatelessWatch {
    /// Nothing seen yet.
    pub fn new() -> StatelessWatch {
        StatelessWatch::default()
    }

    /// The containers watched as stateless.
    pub fn names(&self) -> impl Iterator<Item = &ContainerName> {
        self.watched.keys()
    }

    /// Takes in the stateless ones of `listing` (the sweep's own, so the
    /// daemon is listed once a sweep), drops those gone, and looks at each.
    pub async fn sweep<H: Host, C: Clock>(&mut self, cx: &Ctx<'_, H, C>, listing: &[ContainerSummary]) {
        self.refresh(cx.rules, listing);
        let names: Vec<ContainerName> = self.watched.keys().cloned().collect();
        for name in names {
            self.check(cx, &name).await;
        }
    }

    /// A container event: looks at the container if it is (or may have
    /// become) a stateless service.
    pub async fn on_event<H: Host, C: Clock>(&mut self, cx: &Ctx<'_, H, C>, name: &ContainerName) {
        if !self.watched.contains_key(name) {
            // A container started since the last sweep, perhaps.
            match cx.host.list_containers().await {
                Ok(list) => self.refresh(cx.rules, &list),
                Err(_) => return,
            }
        }
        if self.watched.contains_key(name) {
            self.check(cx, name).await;
        }
    }

    /// Looks again at the containers whose time has come: a backoff run
    /// out, or the rapid checks after a restart.
    pub async fn tick<H: Host, C: Clock>(&mut self, cx: &Ctx<'_, H, C>) {
        let now = cx.clock.now();
        let due: Vec<ContainerName> = self
            .watched
            .iter()
            .filter(|(_, w)| Self::wake_of(w).is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.check(cx, &name).await;
        }
    }

    /// The next restart decided and not yet handed out, oldest first.
    pub fn next_job(&mut self) -> Option<RestartJob> {
        self.jobs.pop_front()
    }

    /// `job` ran (`error` if the restart failed; it still counts): audited,
    /// and the service looked at again at the rapid cadence.
    pub fn restarted<H: Host, C: Clock>(&mut self, cx: &Ctx<'_, H, C>, job: RestartJob, error: Option<String>) {
        let now = cx.clock.now();
        if let Some(w) = self.watched.get_mut(&job.container) {
            w.restarting = false;
            w.restarted = Some(now);
            w.recheck = Some(now.plus_millis(cx.rules.observer.rapid_interval_secs * 1000));
        }
        let step = StatelessStep::Restarted { attempt: job.attempt, delay_ms: job.delay_ms, error };
        record(cx, job.incident, &job.container, job.trouble, step);
    }

    /// When [`StatelessWatch::tick`] has something to look at.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.watched.values().filter_map(Self::wake_of).min()
    }

    fn wake_of(w: &Watched) -> Option<Timestamp> {
        match (w.wait, w.recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn refresh(&mut self, rules: &Rules, list: &[ContainerSummary]) {
        let specified = [&rules.web.container, &rules.database.container];
        let host: Vec<_> = list.iter().map(|c| (&c.name, &c.labels)).collect();
        let mut present = BTreeSet::new();
        for c in list {
            if specified.contains(&&c.name) {
                continue;
            }
            match read_labels(&c.labels, &rules.scope_label, &rules.stateless) {
                LabelVerdict::Stateless => {
                    present.insert(c.name.clone());
                    let w = self.watched.entry(c.name.clone()).or_insert_with(|| Watched {
                        supervisor: Supervisor::new(rules.stateless),
                        incident: None,
                        wait: None,
                        restarted: None,
                        recheck: None,
                        depends_on: Vec::new(),
                        held: None,
                        restarting: false,
                    });
                    w.supervisor.set_settings(rules.stateless);
                    w.depends_on = resolve_dependencies(&c.name, &c.labels, &host);
                    for (d, found) in &w.depends_on {
                        if found.is_empty()
                            && self.warned_missing.len() < MAX_WARNED
                            && self.warned_missing.insert((c.name.clone(), d.clone()))
                        {
                            tracing::warn!(
                                container = %printable(c.name.as_str()),
                                "depends on {d}, which is not on this host: its trouble is not held for it"
                            );
                        }
                    }
                }
                LabelVerdict::Ignored(why) => {
                    if self.warned.len() < MAX_WARNED && self.warned.insert(c.name.clone()) {
                        tracing::warn!(
                            container = %crate::redact::printable(c.name.as_str()),
                            "labels ignored: {why}"
                        );
                    }
                }
                // The observer's, through its roster.
                LabelVerdict::Service(_) | LabelVerdict::Unwatched => {}
            }
        }
        self.watched.retain(|n, _| present.contains(n));
    }

    async fn check<H: Host, C: Clock>(&mut self, cx: &Ctx<'_, H, C>, name: &ContainerName) {
        // Its restart, once done, sets the next look.
        if self.watched.get(name).is_some_and(|w| w.restarting) {
            return;
        }
        let status = match cx.host.inspect(name.as_str()).await {
            Ok(s) => s,
            Err(e) if e.kind == HostErrorKind::NotFound => {
                self.watched.remove(name);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "stateless service check failed");
                return;
            }
        };
        // Services held themselves: waiting for one of them could close a
        // cycle (labels may name each other) in which none is ever healed.
        // Only a service with dependencies needs them.
        let holding: BTreeSet<ContainerName> = if self.watched.get(name).is_some_and(|w| !w.depends_on.is_empty()) {
            self.watched.iter().filter(|(n, w)| w.held.is_some() && *n != name).map(|(n, _)| n.clone()).collect()
        } else {
            BTreeSet::new()
        };
        let Some(w) = self.watched.get_mut(name) else { return };
        let now = cx.clock.now();
        let seen = assess(&status);
        if seen == Seen::Good && (w.supervisor.episode() == Episode::Healing || w.held.is_some()) {
            if let Some(id) = w.incident.take() {
                record(cx, id, name, None, StatelessStep::Resolved);
            }
            w.restarted = None;
        }
        let trouble = match seen {
            Seen::Trouble(t) => Some(t),
            _ => None,
        };
        // Left for a human already: a hold would say nothing new.
        if trouble.is_some()
            && w.supervisor.episode() != Episode::Escalated
            && let Some((dependency, state)) = blocking_dependency(cx.host, &w.depends_on, &holding).await
        {
            w.wait = None;
            let id = *w.incident.get_or_insert_with(|| cx.ids.fetch_add(1, Ordering::SeqCst));
            if w.held.as_ref() != Some(&dependency) {
                w.held = Some(dependency.clone());
                record(cx, id, name, trouble, StatelessStep::Held { dependency, state });
            }
            let o = &cx.rules.observer;
            w.recheck = Some(cx.clock.now().plus_millis(o.rapid_interval_secs * 1000));
            return;
        }
        w.held = None;
        match w.supervisor.decide(seen, now) {
            Decision::Leave => w.wait = None,
            Decision::WaitUntil(at) => w.wait = Some(at),
            Decision::Restart { attempt, delay_ms } => {
                w.wait = None;
                w.recheck = None;
                w.restarting = true;
                let incident = *w.incident.get_or_insert_with(|| cx.ids.fetch_add(1, Ordering::SeqCst));
                self.jobs.push_back(RestartJob { container: name.clone(), incident, trouble, attempt, delay_ms });
                return;
            }
            Decision::Escalate { restarts, exit_codes } => {
                w.wait = None;
                let id = w.incident.take().unwrap_or_else(|| cx.ids.fetch_add(1, Ordering::SeqCst));
                let since = status
                    .started_at
                    .unwrap_or(Timestamp(now.0.saturating_sub(cx.rules.observer.log_window_secs.saturating_mul(1000))));
                let lines = cx.host.recent_logs(name.as_str(), since, TAIL_LINES).await.unwrap_or_default();
                let log_tail = redact_lines(&lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>());
                let step = StatelessStep::Escalated {
                    restarts,
                    window_secs: cx.rules.stateless.window_secs,
                    exit_codes,
                    log_tail,
                };
                record(cx, id, name, trouble, step);
            }
        }
        // Rapid checks for the rapid window after a restart, as after any
        // fix; then the sweeps.
        let o = &cx.rules.observer;
        let now = cx.clock.now();
        w.recheck = match w.restarted {
            Some(at)
                if w.supervisor.episode() == Episode::Healing && now < at.plus_millis(o.rapid_window_secs * 1000) =>
            {
                Some(now.plus_millis(o.rapid_interval_secs * 1000))
            }
            _ => None,
        };
    }
}

/// The first dependency in `depends_on` that is not ready, with what was
/// seen of it. A dependency not on the host holds nothing (it was warned
/// about), nor does one in `holding` (itself held, for this service
/// perhaps); one that cannot be read holds until it can; one whose health
/// check Docker has not run yet since its start is ready when that check,
/// run now, passes.
pub(crate) async fn blocking_dependency<H: Host>(
    host: &H,
    depends_on: &[(Dependency, Vec<ContainerName>)],
    holding: &BTreeSet<ContainerName>,
) -> Option<(String, String)> {
    'dependencies: for (dependency, containers) in depends_on {
        if containers.iter().any(|c| holding.contains(c)) {
            continue;
        }
        // A Compose service may run several containers: one ready is enough.
        let mut not_ready = None;
        for c in containers {
            match host.inspect(c.as_str()).await {
                Ok(status) if dependency_ready(&status) => continue 'dependencies,
                // Docker says `starting` until its next interval (5 s and
                // more) after a start: its own check run now, as
                // verification does, tells sooner.
                Ok(status)
                    if status.state == ContainerState::Running
                        && status.health == Health::Starting
                        && host.probe_ready(c.as_str()).await.is_ok_and(|r| r == Some(true)) =>
                {
                    continue 'dependencies;
                }
                Ok(status) => not_ready = not_ready.or(Some(format!("{} {}", printable(c.as_str()), seen_as(&status)))),
                // Removed since the listing: as if it were not on the host.
                Err(e) if e.kind == HostErrorKind::NotFound => {}
                Err(e) => not_ready = not_ready.or(Some(format!("{} unreadable ({e})", printable(c.as_str())))),
            }
        }
        if let Some(state) = not_ready {
            return Some((dependency.to_string(), state));
        }
    }
    None
}

/// A dependency's state in a few words: `exited`, `running, starting`.
fn seen_as(status: &crate::model::ContainerStatus) -> String {
    match (status.state, status.health) {
        (ContainerState::Running, Health::Starting) => "running, its health check not yet passed".to_string(),
        (ContainerState::Running, Health::Unhealthy) => "running, unhealthy".to_string(),
        (state, _) => state.as_str().to_string(),
    }
}

fn record<H, C: Clock>(
    cx: &Ctx<'_, H, C>,
    incident: u64,
    container: &ContainerName,
    trouble: Option<Trouble>,
    step: StatelessStep,
) {
    let event = AuditEvent::Stateless { container: container.clone(), trouble, step };
    if let Err(e) = cx.audit.record(incident, cx.clock.now(), event) {
        // As for incidents: the audit log tells the operator once per
        // failure streak, and the service is healed regardless.
        tracing::debug!(incident, error = %e, "audit log write failed");
    }
}
