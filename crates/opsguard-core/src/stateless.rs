//! Stateless services (issue #10): the label contract that opts a container
//! in, and the policy that restarts one on a crash or a failing health
//! check without approval: at once the first time, then after a doubling,
//! capped delay, and never more than a budget of restarts in a window;
//! past the budget a human is asked to look, with the exit codes seen.
//!
//! Pure: the shell passes in what it saw and the time it read; the
//! [`Supervisor`] says whether to restart now, wait until a time, escalate
//! or leave the container alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ContainerName, ContainerState, ContainerStatus, Health, Timestamp};

/// The label that opts a container in (`opsguard.enable=true`), or out
/// when the rules watch all (`opsguard.enable=false`).
pub const ENABLE_LABEL: &str = "opsguard.enable";
/// The label that says what a container is (`opsguard.role=stateless`).
pub const ROLE_LABEL: &str = "opsguard.role";
/// The label naming the containers a service needs
/// (`opsguard.depends_on=name[,name]`): while one of them is down or not
/// yet healthy, the service's trouble is held, not healed.
pub const DEPENDS_ON_LABEL: &str = "opsguard.depends_on";
/// Compose's own record of `depends_on`: `service:condition[:restart]`,
/// comma-separated, naming services of the same project.
pub const COMPOSE_DEPENDS_ON_LABEL: &str = "com.docker.compose.depends_on";
/// Compose's project of a container.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// Compose's service of a container.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Most dependencies read from one container's labels: the rest are the
/// writer's to do without.
pub const MAX_DEPENDENCIES: usize = 16;
/// Longest label value quoted in a warning: the rest is the writer's.
const MAX_QUOTED: usize = 64;
/// Distinct crashes remembered as evidence.
const MAX_CRASHES_KEPT: usize = 16;

/// `[stateless]` in the rules: which containers, and the restart policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatelessSettings {
    /// Watch every container in scope with a role, unless it says
    /// `opsguard.enable=false`; otherwise only those with
    /// `opsguard.enable=true`.
    pub watch_all: bool,
    /// The delay before the second restart in a window; the first is at once.
    pub backoff_initial_secs: u64,
    /// The longest delay between two restarts.
    pub backoff_max_secs: u64,
    /// Restarts allowed in any window of `window_secs`.
    pub max_restarts: u32,
    /// The budget's window, in seconds.
    pub window_secs: u64,
}

/// What the labels make of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelVerdict {
    /// Not opted in (or outside the scope): nothing to say.
    Unwatched,
    /// A stateless service: watched and healed by this module.
    Stateless,
    /// A web server or a database ([`crate::roster`]).
    Service(crate::roster::Role),
    /// Opted in but not honoured: why, for a warning (inert text).
    Ignored(String),
}

/// Whether `labels` hold `key=value` (or just `key`, when no `=`).
pub fn has_label(labels: &BTreeMap<String, String>, label: &str) -> bool {
    match label.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(label),
    }
}

/// Reads the label contract. Labels are written by whoever made the
/// container: any value is handled, an unknown one is ignored with a
/// reason, never trusted. The scope label stays a gate: nothing outside it
/// is watched, whatever else it says.
pub fn read_labels(labels: &BTreeMap<String, String>, scope: &str, settings: &StatelessSettings) -> LabelVerdict {
    if !has_label(labels, scope) {
        return LabelVerdict::Unwatched;
    }
    let enable = labels.get(ENABLE_LABEL).map(String::as_str);
    let opted_in = match enable {
        Some("true") => true,
        Some("false") => false,
        Some(other) if settings.watch_all || labels.contains_key(ROLE_LABEL) => {
            return LabelVerdict::Ignored(format!("{ENABLE_LABEL}={} is neither true nor false", quote(other)));
        }
        Some(_) => false,
        None => settings.watch_all,
    };
    if !opted_in {
        return LabelVerdict::Unwatched;
    }
    match labels.get(ROLE_LABEL).map(String::as_str) {
        Some("stateless") => LabelVerdict::Stateless,
        Some("database") => LabelVerdict::Service(crate::roster::Role::Database),
        Some("web") => LabelVerdict::Service(crate::roster::Role::Web),
        Some(other) => LabelVerdict::Ignored(format!("unknown {ROLE_LABEL}={}", quote(other))),
        None if enable == Some("true") => LabelVerdict::Ignored(format!("{ENABLE_LABEL}=true without {ROLE_LABEL}")),
        None => LabelVerdict::Unwatched,
    }
}

/// Something a service needs running before it can be healed, as its
/// labels name it. Names are matched exactly against Docker's, never
/// interpreted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    /// A container, by name (`opsguard.depends_on`).
    Container(String),
    /// A service of the same Compose project (`com.docker.compose.depends_on`).
    ComposeService {
        /// The project, the dependent's own.
        project: String,
        /// The service.
        service: String,
    },
}

impl Dependency {
    /// Whether the container `name`, labelled `labels`, is this dependency.
    pub fn is(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Dependency::Container(c) => c == name,
            Dependency::ComposeService { project, service } => {
                labels.get(COMPOSE_PROJECT_LABEL) == Some(project) && labels.get(COMPOSE_SERVICE_LABEL) == Some(service)
            }
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dependency::Container(c) => f.write_str(&crate::redact::printable(c)),
            Dependency::ComposeService { service, .. } => {
                write!(f, "Compose service {}", crate::redact::printable(service))
            }
        }
    }
}

/// The dependencies `labels` name, both ways, without repeats; an empty
/// or oversized entry is skipped, and at most [`MAX_DEPENDENCIES`] are read.
pub fn dependencies(labels: &BTreeMap<String, String>) -> Vec<Dependency> {
    // A Docker name is at most 253 characters ([a-zA-Z0-9][a-zA-Z0-9_.-]*):
    // anything longer names nothing.
    let usable = |n: &&str| !n.is_empty() && n.len() <= 253;
    let own = labels.get(DEPENDS_ON_LABEL).into_iter().flat_map(|list| list.split(','));
    let own = own.map(str::trim).filter(usable).map(|n| Dependency::Container(n.to_string()));
    let compose = match (labels.get(COMPOSE_DEPENDS_ON_LABEL), labels.get(COMPOSE_PROJECT_LABEL)) {
        (Some(list), Some(project)) => Some((list, project)),
        _ => None,
    };
    let compose = compose.into_iter().flat_map(|(list, project)| {
        list.split(',')
            .filter_map(|entry| entry.split(':').next())
            .map(str::trim)
            .filter(usable)
            .map(|service| Dependency::ComposeService { project: project.clone(), service: service.to_string() })
    });
    let mut out: Vec<Dependency> = Vec::new();
    for d in own.chain(compose) {
        if out.len() == MAX_DEPENDENCIES {
            break;
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// The dependencies `name`'s `labels` name, each with the containers of
/// `host` (name and labels) that are it; never `name` itself, which would
/// hold its own healing. None found: not on this host, so it holds nothing.
pub fn resolve_dependencies(
    name: &ContainerName,
    labels: &BTreeMap<String, String>,
    host: &[(&ContainerName, &BTreeMap<String, String>)],
) -> Vec<(Dependency, Vec<ContainerName>)> {
    dependencies(labels)
        .into_iter()
        .map(|d| {
            let found = host
                .iter()
                .filter(|(other, l)| *other != name && d.is(other.as_str(), l))
                .map(|(other, _)| (*other).clone())
                .collect();
            (d, found)
        })
        .collect()
}

/// Whether a dependency in `status` lets its dependents be healed: running,
/// and healthy or without a health check. Starting counts as not yet: a
/// dependent restarted against a database still in recovery crashes again.
pub fn dependency_ready(status: &ContainerStatus) -> bool {
    status.state == ContainerState::Running && matches!(status.health, Health::Healthy | Health::None)
}

/// A label value as a warning may show it: printable, bounded.
pub(crate) fn quote(value: &str) -> String {
    let cut: String = value.chars().take(MAX_QUOTED).collect();
    let shown = crate::redact::printable(&cut);
    if cut.len() < value.len() { format!("{shown:?}…") } else { format!("{shown:?}") }
}

/// Docker's restart policy of a container, from its inspect data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure` (empty means `no`).
    pub name: String,
    /// `on-failure`'s retry limit (0: no limit).
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Whether Docker itself brings back a container that exited with
    /// `exit_code` after `restart_count` restarts of its own. An unknown
    /// policy name counts as one that does not: OpsGuard acts, and a
    /// restart of a container Docker is restarting too is harmless.
    pub fn docker_restarts(&self, exit_code: i64, restart_count: i64) -> bool {
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                exit_code != 0 && (self.maximum_retry_count <= 0 || restart_count < self.maximum_retry_count)
            }
            _ => false,
        }
    }
}

/// What is wrong with a stateless container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trouble {
    /// Its main process exited non-zero and Docker will not bring it back.
    Crashed {
        /// The exit code.
        exit_code: i64,
        /// When the run ended, which tells one crash from the next.
        finished_at: Option<Timestamp>,
    },
    /// It runs, but its health check fails.
    Unhealthy,
}

impl Trouble {
    /// The kind alone, as metrics label it: `crashed` or `unhealthy`.
    pub fn key(&self) -> &'static str {
        match self {
            Trouble::Crashed { .. } => "crashed",
            Trouble::Unhealthy => "unhealthy",
        }
    }

    /// What a human is told: the timeline, the audit log and notifications
    /// use this one wording.
    pub fn describe(&self) -> String {
        match self {
            Trouble::Crashed { exit_code, .. } => format!("crashed (exit code {exit_code})"),
            Trouble::Unhealthy => "unhealthy (its health check fails)".to_string(),
        }
    }
}

/// What one look at a stateless container found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Running, and healthy or without a health check.
    Good,
    /// Something to heal.
    Trouble(Trouble),
    /// Neither: starting, restarting under Docker's policy, stopped cleanly
    /// (exit 0), paused. Nothing to do now.
    Neither,
}

/// Reads an inspect: exit 0 is not a crash, and a crash Docker's own
/// policy will restart is Docker's.
pub fn assess(status: &ContainerStatus) -> Seen {
    match status.state {
        ContainerState::Running => match status.health {
            Health::Unhealthy => Seen::Trouble(Trouble::Unhealthy),
            Health::None | Health::Healthy => Seen::Good,
            Health::Starting => Seen::Neither,
        },
        ContainerState::Exited | ContainerState::Dead => match status.exit_code {
            Some(code) if code != 0 => {
                let policy = status.restart_policy.clone().unwrap_or_default();
                if policy.docker_restarts(code, status.restart_count.unwrap_or(0)) {
                    Seen::Neither
                } else {
                    Seen::Trouble(Trouble::Crashed { exit_code: code, finished_at: status.finished_at })
                }
            }
            _ => Seen::Neither,
        },
        ContainerState::Created | ContainerState::Paused | ContainerState::Restarting | ContainerState::Removing => {
            Seen::Neither
        }
    }
}

/// What to do about a stateless container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Leave,
    /// Restart it now, without approval; `delay_ms` is the backoff that
    /// was waited since the last restart (0 for the first in the window).
    Restart {
        /// Which restart in the window this is (1-based).
        attempt: u32,
        /// The backoff waited before it.
        delay_ms: u64,
    },
    /// Wait, then look again.
    WaitUntil(Timestamp),
    /// The budget is spent: stop and ask a human, with the evidence.
    Escalate {
        /// Restarts in the window.
        restarts: u32,
        /// The exit codes of the crashes seen, oldest first.
        exit_codes: Vec<i64>,
    },
}

/// How an episode of trouble on one container stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Episode {
    /// Nothing wrong seen since the last resolution.
    Quiet,
    /// Being healed.
    Healing,
    /// Left for a human: no restart until it is seen good again.
    Escalated,
}

/// What the shell did about a stateless service, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum StatelessStep {
    /// Restarted without approval.
    Restarted {
        /// Which restart in the window.
        attempt: u32,
        /// The backoff waited before it.
        delay_ms: u64,
        /// The host's error, if the restart failed (it still counts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Not restarted: a dependency is down or not yet healthy, and a
    /// restart could not help until it is. Recorded once per hold.
    Held {
        /// The dependency waited for, as its labels named it (inert text).
        dependency: String,
        /// Its container and state, e.g. `db-prod exited` (inert text).
        state: String,
    },
    /// Seen running and healthy again after a restart or a hold.
    Resolved,
    /// The budget is spent: no more restarts until a human looks.
    Escalated {
        /// Restarts in the window.
        restarts: u32,
        /// The window.
        window_secs: u64,
        /// Exit codes of the crashes seen, oldest first.
        exit_codes: Vec<i64>,
        /// The container's last log lines, redacted.
        log_tail: Vec<String>,
    },
}

impl StatelessStep {
    /// One line for the timeline; every quoted field made inert.
    pub fn render(&self, container: &str, trouble: Option<&Trouble>) -> String {
        let container = crate::redact::printable(container);
        let what = trouble.map_or_else(|| "back".to_string(), Trouble::describe);
        match self {
            StatelessStep::Restarted { attempt, delay_ms, error: None } => {
                format!(
                    "🔁 stateless {container} {what}: restarted without approval (restart {attempt}, after {} s)",
                    delay_ms / 1000
                )
            }
            StatelessStep::Restarted { attempt, error: Some(e), .. } => {
                format!("❌ stateless {container} {what}: restart {attempt} failed: {}", crate::redact::printable(e))
            }
            StatelessStep::Held { dependency, state } => format!(
                "⏸ stateless {container} {what}: held, not restarted: it depends on {}, which is {}",
                crate::redact::printable(dependency),
                crate::redact::printable(state)
            ),
            StatelessStep::Resolved => format!("✅ stateless {container} running and healthy again"),
            StatelessStep::Escalated { restarts, window_secs, exit_codes, log_tail } => {
                let mut s = format!(
                    "🛑 stateless {container} {what}: {restarts} restarts in {window_secs} s, budget spent; exit codes {exit_codes:?}. Manual intervention needed."
                );
                if let Some(l) = log_tail.last() {
                    s += &format!("\n      last line: {}", crate::redact::printable(l));
                }
                s
            }
        }
    }
}

/// The restart policy's memory for one container.
#[derive(Clone, Debug)]
pub struct Supervisor {
    settings: StatelessSettings,
    restarts: Vec<Timestamp>,
    crashes: Vec<(Option<Timestamp>, i64)>,
    episode: Episode,
}

impl Supervisor {
    /// A container with no history.
    pub fn new(settings: StatelessSettings) -> Supervisor {
        Supervisor { settings, restarts: Vec::new(), crashes: Vec::new(), episode: Episode::Quiet }
    }

    /// The rules changed: the history stays, the policy is the new one.
    pub fn set_settings(&mut self, settings: StatelessSettings) {
        self.settings = settings;
    }

    /// Where the current episode stands.
    pub fn episode(&self) -> Episode {
        self.episode
    }

    /// The backoff before the restart that follows `done` restarts in the
    /// window: none before the first, then the initial delay doubling each
    /// time, capped.
    pub fn backoff_ms(settings: &StatelessSettings, done: u32) -> u64 {
        if done == 0 {
            return 0;
        }
        let initial = settings.backoff_initial_secs.saturating_mul(1000);
        let max = settings.backoff_max_secs.saturating_mul(1000);
        let shift = (done - 1).min(63);
        initial.checked_shl(shift).filter(|d| d >> shift == initial).unwrap_or(u64::MAX).min(max)
    }

    /// Restarts in the window ending at `now`.
    pub fn restarts_in_window(&self, now: Timestamp) -> u32 {
        let window = self.settings.window_secs.saturating_mul(1000);
        self.restarts.iter().filter(|t| now.millis_since(**t) < window && **t <= now).count() as u32
    }

    /// The container was seen in `seen` at `now`: what to do. A
    /// [`Decision::Restart`] is counted at once (call nothing else), as a
    /// restart that failed or timed out may still have happened.
    pub fn decide(&mut self, seen: Seen, now: Timestamp) -> Decision {
        let trouble = match seen {
            Seen::Good => {
                self.episode = Episode::Quiet;
                return Decision::Leave;
            }
            Seen::Neither => return Decision::Leave,
            Seen::Trouble(t) => t,
        };
        if let Trouble::Crashed { exit_code, finished_at } = trouble {
            // The same crash seen by an event and a sweep counts once.
            if !self.crashes.iter().any(|(at, _)| finished_at.is_some() && *at == finished_at) {
                self.crashes.push((finished_at, exit_code));
                if self.crashes.len() > MAX_CRASHES_KEPT {
                    self.crashes.remove(0);
                }
            }
        }
        if self.episode == Episode::Escalated {
            return Decision::Leave;
        }
        self.episode = Episode::Healing;
        // Forget what the window no longer holds.
        let window = self.settings.window_secs.saturating_mul(1000);
        self.restarts.retain(|t| now.millis_since(*t) < window);
        let done = self.restarts_in_window(now);
        if done >= self.settings.max_restarts {
            self.episode = Episode::Escalated;
            return Decision::Escalate { restarts: done, exit_codes: self.exit_codes() };
        }
        let delay_ms = Self::backoff_ms(&self.settings, done);
        if let Some(last) = self.restarts.iter().max() {
            let at = last.plus_millis(delay_ms);
            if now < at {
                return Decision::WaitUntil(at);
            }
        }
        self.restarts.push(now);
        Decision::Restart { attempt: done + 1, delay_ms }
    }

    /// The exit codes of the crashes remembered, oldest first.
    pub fn exit_codes(&self) -> Vec<i64> {
        self.crashes.iter().map(|(_, c)| *c).collect()
    }

    /// The times of the restarts in the window, oldest first.
    pub fn restarts(&self) -> &[Timestamp] {
        &self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StatelessSettings {
        StatelessSettings {
            watch_all: false,
            backoff_initial_secs: 5,
            backoff_max_secs: 60,
            max_restarts: 5,
            window_secs: 600,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const SCOPE: &str = "opsguard.lab=true";

    #[test]
    fn dependencies_are_read_from_both_labels_without_repeats() {
        let c = |n: &str| Dependency::Container(n.to_string());
        let svc = |n: &str| Dependency::ComposeService { project: "shop".into(), service: n.to_string() };
        assert_eq!(dependencies(&labels(&[])), []);
        assert_eq!(
            dependencies(&labels(&[("opsguard.depends_on", "db-prod, cache,,db-prod")])),
            [c("db-prod"), c("cache")]
        );
        let compose = [
            ("com.docker.compose.project", "shop"),
            ("com.docker.compose.depends_on", "shop-db:service_healthy:false,queue:service_started:true"),
        ];
        assert_eq!(dependencies(&labels(&compose)), [svc("shop-db"), svc("queue")]);
        // Compose's label without its project names nothing.
        assert_eq!(dependencies(&labels(&compose[1..])), []);
        let long = "x".repeat(254);
        assert_eq!(dependencies(&labels(&[("opsguard.depends_on", &long)])), []);
        let many = (0..40).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(dependencies(&labels(&[("opsguard.depends_on", &many)])).len(), MAX_DEPENDENCIES);

        let db = labels(&[("com.docker.compose.project", "shop"), ("com.docker.compose.service", "shop-db")]);
        assert!(svc("shop-db").is("shop_shop-db_1", &db));
        assert!(!svc("queue").is("shop_shop-db_1", &db));
        let other = labels(&[("com.docker.compose.project", "blog"), ("com.docker.compose.service", "shop-db")]);
        assert!(!svc("shop-db").is("blog_shop-db_1", &other), "another project's service of the same name");
        assert!(c("db-prod").is("db-prod", &db) && !c("db-prod").is("db-prod-2", &db));
    }

    #[test]
    fn a_dependency_is_ready_when_running_and_not_unhealthy_or_starting() {
        let st = |state, health| status(state, health, 0, "no", 0, 0);
        assert!(dependency_ready(&st(ContainerState::Running, Health::Healthy)));
        assert!(dependency_ready(&st(ContainerState::Running, Health::None)));
        assert!(!dependency_ready(&st(ContainerState::Running, Health::Starting)));
        assert!(!dependency_ready(&st(ContainerState::Running, Health::Unhealthy)));
        assert!(!dependency_ready(&st(ContainerState::Exited, Health::None)));
        assert!(!dependency_ready(&st(ContainerState::Restarting, Health::None)));
    }

    #[test]
    fn the_label_contract() {
        let s = settings();
        let v = |p: &[(&str, &str)]| read_labels(&labels(p), SCOPE, &s);
        let on = [("opsguard.lab", "true"), ("opsguard.enable", "true")];
        assert_eq!(v(&[on[0], on[1], ("opsguard.role", "stateless")]), LabelVerdict::Stateless);
        // Outside the scope nothing is watched, whatever it says.
        assert_eq!(v(&[on[1], ("opsguard.role", "stateless")]), LabelVerdict::Unwatched);
        // Not opted in.
        assert_eq!(v(&[on[0], ("opsguard.role", "stateless")]), LabelVerdict::Unwatched);
        // The lab's web and db carry a role without opting in.
        assert_eq!(v(&[on[0], ("opsguard.role", "web")]), LabelVerdict::Unwatched);
        assert_eq!(v(&[on[0], ("opsguard.role", "db")]), LabelVerdict::Unwatched);
        assert_eq!(v(&[on[0], ("opsguard.enable", "maybe")]), LabelVerdict::Unwatched);
        assert!(matches!(
            v(&[on[0], ("opsguard.enable", "yes"), ("opsguard.role", "stateless")]),
            LabelVerdict::Ignored(_)
        ));
        use crate::roster::Role;
        assert_eq!(v(&[on[0], on[1], ("opsguard.role", "database")]), LabelVerdict::Service(Role::Database));
        assert_eq!(v(&[on[0], on[1], ("opsguard.role", "web")]), LabelVerdict::Service(Role::Web));
        for role in ["Database", "db", "STATELESS", "", "x\u{1b}[2J"] {
            let LabelVerdict::Ignored(why) = v(&[on[0], on[1], ("opsguard.role", role)]) else {
                panic!("{role:?} was honoured")
            };
            assert!(!why.contains('\u{1b}'), "{why}");
        }
        assert!(matches!(v(&on), LabelVerdict::Ignored(_)));
        let long = "a".repeat(10_000);
        let LabelVerdict::Ignored(why) = v(&[on[0], on[1], ("opsguard.role", &long)]) else { panic!() };
        assert!(why.len() < 200, "{why}");
    }

    #[test]
    fn watch_all_with_an_opt_out() {
        let s = StatelessSettings { watch_all: true, ..settings() };
        let v = |p: &[(&str, &str)]| read_labels(&labels(p), SCOPE, &s);
        assert_eq!(v(&[("opsguard.lab", "true"), ("opsguard.role", "stateless")]), LabelVerdict::Stateless);
        let out = [("opsguard.lab", "true"), ("opsguard.role", "stateless"), ("opsguard.enable", "false")];
        assert_eq!(v(&out), LabelVerdict::Unwatched);
        assert_eq!(v(&[("opsguard.lab", "true")]), LabelVerdict::Unwatched);
        assert_eq!(v(&[("opsguard.role", "stateless")]), LabelVerdict::Unwatched);
    }

    fn status(state: ContainerState, health: Health, exit: i64, policy: &str, max: i64, count: i64) -> ContainerStatus {
        ContainerStatus {
            name: crate::model::ContainerName::new("api"),
            id: None,
            state,
            health,
            exit_code: Some(exit),
            oom_killed: false,
            started_at: None,
            finished_at: Some(Timestamp(7)),
            restart_policy: Some(RestartPolicy { name: policy.into(), maximum_retry_count: max }),
            restart_count: Some(count),
            health_log: Vec::new(),
        }
    }

    #[test]
    fn what_counts_as_trouble() {
        use ContainerState::*;
        let crash = Seen::Trouble(Trouble::Crashed { exit_code: 1, finished_at: Some(Timestamp(7)) });
        assert_eq!(assess(&status(Exited, Health::None, 1, "no", 0, 0)), crash);
        assert_eq!(assess(&status(Exited, Health::None, 1, "", 0, 0)), crash);
        assert_eq!(assess(&status(Exited, Health::None, 0, "no", 0, 0)), Seen::Neither, "exit 0 is no crash");
        assert_eq!(assess(&status(Exited, Health::None, 1, "always", 0, 0)), Seen::Neither);
        assert_eq!(assess(&status(Exited, Health::None, 1, "on-failure", 3, 1)), Seen::Neither);
        assert_eq!(assess(&status(Exited, Health::None, 1, "on-failure", 3, 3)), crash, "retries spent");
        assert_eq!(assess(&status(Exited, Health::None, 1, "on-failure", 0, 99)), Seen::Neither);
        assert_eq!(assess(&status(Running, Health::Unhealthy, 0, "no", 0, 0)), Seen::Trouble(Trouble::Unhealthy));
        assert_eq!(assess(&status(Running, Health::Healthy, 0, "no", 0, 0)), Seen::Good);
        assert_eq!(assess(&status(Running, Health::Starting, 0, "no", 0, 0)), Seen::Neither);
        assert_eq!(assess(&status(Restarting, Health::None, 1, "no", 0, 0)), Seen::Neither);
    }

    #[test]
    fn first_at_once_then_doubling_then_escalate() {
        let s = settings();
        let mut sup = Supervisor::new(s);
        let crash = |at| Seen::Trouble(Trouble::Crashed { exit_code: 3, finished_at: Some(Timestamp(at)) });
        assert_eq!(sup.decide(crash(1_000), Timestamp(1_000)), Decision::Restart { attempt: 1, delay_ms: 0 });
        assert_eq!(sup.decide(crash(2_000), Timestamp(2_000)), Decision::WaitUntil(Timestamp(6_000)));
        assert_eq!(sup.decide(crash(2_000), Timestamp(6_000)), Decision::Restart { attempt: 2, delay_ms: 5_000 });
        assert_eq!(sup.decide(crash(7_000), Timestamp(7_000)), Decision::WaitUntil(Timestamp(16_000)));
        assert_eq!(sup.decide(crash(7_000), Timestamp(16_000)), Decision::Restart { attempt: 3, delay_ms: 10_000 });
        assert_eq!(sup.decide(crash(17_000), Timestamp(36_000)), Decision::Restart { attempt: 4, delay_ms: 20_000 });
        assert_eq!(sup.decide(crash(37_000), Timestamp(76_000)), Decision::Restart { attempt: 5, delay_ms: 40_000 });
        assert_eq!(
            sup.decide(crash(77_000), Timestamp(200_000)),
            Decision::Escalate { restarts: 5, exit_codes: vec![3; 6] }
        );
        assert_eq!(sup.episode(), Episode::Escalated);
        assert_eq!(sup.decide(crash(77_000), Timestamp(900_000)), Decision::Leave, "left for a human");
        // A human brought it back: the next trouble is healed again.
        assert_eq!(sup.decide(Seen::Good, Timestamp(900_000)), Decision::Leave);
        assert_eq!(
            sup.decide(Seen::Trouble(Trouble::Unhealthy), Timestamp(901_000)),
            Decision::Restart { attempt: 1, delay_ms: 0 }
        );
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        let s = StatelessSettings { backoff_initial_secs: u64::MAX / 3, backoff_max_secs: u64::MAX, ..settings() };
        for n in 0..200 {
            let _ = Supervisor::backoff_ms(&s, n);
        }
        assert_eq!(Supervisor::backoff_ms(&settings(), 1), 5_000);
        assert_eq!(Supervisor::backoff_ms(&settings(), 5), 60_000);
        assert_eq!(Supervisor::backoff_ms(&settings(), 100), 60_000);
    }
}
