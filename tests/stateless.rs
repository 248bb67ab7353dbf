//! Stateless services (issue #10) on the simulated host: found by their
//! labels, restarted without approval on a crash or a failing health check
//! with backoff, left for a human once the budget is spent; the
//! specification's web and database untouched.

use std::sync::Arc;

use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditEvent, AuditLog, AuditRecord};
use opsguard::clock::{Clock, SimClock};
use opsguard::engine::Engine;
use opsguard::host::sim::{RestartPolicy, SimHost, SimOp};
use opsguard::incident::{Agent, Responder, WatchLimit};
use opsguard::llm::NoAdvisor;
use opsguard::model::{ContainerState, Health, Timestamp};
use opsguard::rules::Rules;
use opsguard::stateless::{StatelessStep, Trouble};

const API: &str = "shop-api";
const LABELS: [&str; 3] = ["opsguard.lab=true", "opsguard.enable=true", "opsguard.role=stateless"];

struct Lab {
    sim: SimHost,
    clock: SimClock,
    audit: AuditLog,
    rules: Arc<Rules>,
}

fn lab() -> Lab {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    Lab { sim, clock, audit: AuditLog::in_memory(), rules: Arc::new(Rules::default_rules()) }
}

impl Lab {
    /// Watches for `secs` simulated seconds.
    async fn watch(&self, secs: u64) {
        let responder = Responder::new(
            Engine::new(self.rules.clone()),
            self.sim.clone(),
            PolicyApprover::Deny,
            NoAdvisor,
            self.clock.clone(),
            self.audit.clone(),
        );
        let mut agent = Agent::new(responder);
        let deadline = self.clock.now().plus_millis(secs * 1000);
        agent.run(None, WatchLimit { incidents: None, deadline: Some(deadline) }).await;
    }

    fn restarts_of(&self, name: &str) -> Vec<Timestamp> {
        self.sim
            .ops()
            .into_iter()
            .filter_map(|op| match op {
                SimOp::Restart { container, at } if container == name => Some(at),
                _ => None,
            })
            .collect()
    }

    fn steps(&self) -> Vec<(AuditRecord, Option<Trouble>, StatelessStep)> {
        self.audit
            .records()
            .into_iter()
            .filter_map(|r| match r.event.clone() {
                AuditEvent::Stateless { trouble, step, .. } => Some((r, trouble, step)),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn a_crashed_stateless_service_is_restarted_at_once_and_resolved() {
    let lab = lab();
    lab.sim.add_running(API, &LABELS, None);
    lab.sim.crash(API, 2, &["panic: boom"]);
    lab.watch(20).await;
    assert_eq!(lab.restarts_of(API).len(), 1);
    assert_eq!(lab.sim.state(API), Some(ContainerState::Running));
    let steps = lab.steps();
    assert!(matches!(steps[0].2, StatelessStep::Restarted { attempt: 1, delay_ms: 0, error: None }), "{steps:?}");
    assert!(matches!(steps[0].1, Some(Trouble::Crashed { exit_code: 2, .. })));
    assert_eq!(steps[1].2, StatelessStep::Resolved);
    assert_eq!(steps[0].0.incident, steps[1].0.incident, "one episode, one incident");
    assert_eq!(steps.len(), 2);
    // Nothing else was touched, nothing asked.
    assert!(lab.sim.ops().iter().all(|op| matches!(op, SimOp::Restart { container, .. } if container == API)));
}

#[tokio::test]
async fn a_crash_loop_backs_off_then_stops_for_a_human_with_the_evidence() {
    let lab = lab();
    let s = lab.rules.stateless;
    lab.sim.add_running(API, &LABELS, None);
    lab.sim.crash_loop(API, Some((1_000, 3)));
    lab.sim.crash(API, 3, &["fatal: exiting with 3"]);
    lab.watch(s.window_secs / 2).await;
    let restarts = lab.restarts_of(API);
    assert_eq!(restarts.len() as u32, s.max_restarts, "{restarts:?}");
    // First at once, then doubling from the initial delay, capped.
    let gaps: Vec<u64> = restarts.windows(2).map(|w| w[1].millis_since(w[0])).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let want = ((s.backoff_initial_secs * 1000) << i).min(s.backoff_max_secs * 1000);
        assert!(*gap >= want, "gap {i}: {gap} ms < {want} ms ({gaps:?})");
    }
    let steps = lab.steps();
    let (_, _, last) = steps.last().unwrap();
    let StatelessStep::Escalated { restarts: n, exit_codes, log_tail, .. } = last else {
        panic!("not escalated: {steps:?}")
    };
    assert_eq!(*n, s.max_restarts);
    assert!(exit_codes.len() as u32 > s.max_restarts && exit_codes.iter().all(|c| *c == 3), "{exit_codes:?}");
    assert!(log_tail.iter().any(|l| l.contains("fatal: exiting with 3")), "{log_tail:?}");
    assert!(log_tail.iter().all(|l| !l.contains("hunter2")), "a secret in the evidence: {log_tail:?}");
    assert_eq!(lab.sim.state(API), Some(ContainerState::Exited), "left down for a human");
    let rendered = AuditEvent::Stateless { container: API.into(), trouble: None, step: last.clone() }.render();
    assert!(rendered.contains("Manual intervention needed"), "{rendered}");
}

#[tokio::test]
async fn an_unhealthy_stateless_service_is_restarted_and_resolved() {
    let lab = lab();
    lab.sim.add_running(API, &LABELS, None);
    lab.sim.set_health(API, Health::Unhealthy);
    lab.watch(20).await;
    assert_eq!(lab.restarts_of(API).len(), 1);
    let steps = lab.steps();
    assert_eq!(steps[0].1, Some(Trouble::Unhealthy), "{steps:?}");
    assert_eq!(steps[1].2, StatelessStep::Resolved);
}

#[tokio::test]
async fn what_is_not_restarted() {
    let lab = lab();
    // Exit 0 is no crash.
    lab.sim.add_running("clean-exit", &LABELS, None);
    lab.sim.crash("clean-exit", 0, &[]);
    // Docker's own policy brings it back.
    let always = RestartPolicy { name: "always".into(), maximum_retry_count: 0 };
    lab.sim.add_running("docker-restarts", &LABELS, Some(always));
    lab.sim.crash("docker-restarts", 1, &[]);
    let retries = RestartPolicy { name: "on-failure".into(), maximum_retry_count: 5 };
    lab.sim.add_running("retries-left", &LABELS, Some(retries));
    lab.sim.crash("retries-left", 1, &[]);
    // Outside the scope, not opted in, or an unknown role.
    lab.sim.add_running("out-of-scope", &["opsguard.enable=true", "opsguard.role=stateless"], None);
    lab.sim.crash("out-of-scope", 1, &[]);
    lab.sim.add_running("not-opted-in", &["opsguard.lab=true", "opsguard.role=stateless"], None);
    lab.sim.crash("not-opted-in", 1, &[]);
    lab.sim.add_running(
        "odd-role",
        &["opsguard.lab=true", "opsguard.enable=true", "opsguard.role=\u{1b}[2Jcache"],
        None,
    );
    lab.sim.crash("odd-role", 1, &[]);
    lab.sim.add_running("db-by-label", &["opsguard.lab=true", "opsguard.enable=true", "opsguard.role=database"], None);
    lab.sim.crash("db-by-label", 1, &[]);
    lab.watch(120).await;
    assert!(lab.sim.ops().is_empty(), "{:?}", lab.sim.ops());
    assert!(lab.steps().is_empty());
}

#[tokio::test]
async fn watch_all_takes_every_container_in_scope_with_a_role_unless_it_opts_out() {
    let mut lab = lab();
    let text = "[stateless]\nwatch_all = true\n";
    lab.rules = Arc::new(Rules::from_toml_str(text, std::path::Path::new("watch_all.toml")).unwrap());
    lab.sim.add_running("api-1", &["opsguard.lab=true", "opsguard.role=stateless"], None);
    lab.sim.crash("api-1", 1, &[]);
    let out = ["opsguard.lab=true", "opsguard.role=stateless", "opsguard.enable=false"];
    lab.sim.add_running("api-2", &out, None);
    lab.sim.crash("api-2", 1, &[]);
    lab.watch(20).await;
    assert_eq!(lab.restarts_of("api-1").len(), 1);
    assert!(lab.restarts_of("api-2").is_empty());
}

/// What a dependency's labels name must be running and healthy before a
/// service is healed: the service's trouble is held (audited once), not
/// restarted, while the dependency is down, then healed once it is back,
/// in the same incident.
#[tokio::test]
async fn a_service_is_held_while_its_dependency_is_down_and_healed_once_it_is_back() {
    let lab = lab();
    lab.sim.add_running("shop-db", &["opsguard.lab=true"], None);
    let labels = [LABELS[0], LABELS[1], LABELS[2], "opsguard.depends_on=shop-db"];
    lab.sim.add_running(API, &labels, None);
    lab.sim.crash("shop-db", 137, &[]);
    lab.sim.set_health(API, Health::Unhealthy);
    let back_at = lab.clock.now().plus_millis(90_000);
    let (sim, clock) = (lab.sim.clone(), lab.clock.clone());
    let revive = tokio::spawn(async move {
        while clock.now() < back_at {
            tokio::task::yield_now().await;
        }
        sim.start_by_itself("shop-db");
    });
    lab.watch(150).await;
    revive.await.unwrap();

    let restarts = lab.restarts_of(API);
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert!(restarts[0] >= back_at, "restarted while shop-db was down: {restarts:?}");
    let rapid = lab.rules.observer.rapid_interval_secs * 1000;
    assert!(restarts[0].millis_since(back_at) <= rapid, "not looked at again within the rapid interval");
    assert!(lab.restarts_of("shop-db").is_empty(), "OpsGuard started shop-db");
    let steps = lab.steps();
    let kinds: Vec<&StatelessStep> = steps.iter().map(|(_, _, s)| s).collect();
    let StatelessStep::Held { dependency, state } = kinds[0] else { panic!("not held first: {kinds:?}") };
    assert_eq!((dependency.as_str(), state.as_str()), ("shop-db", "shop-db exited"));
    assert!(matches!(kinds[1], StatelessStep::Restarted { attempt: 1, .. }), "{kinds:?}");
    assert_eq!(kinds[2], &StatelessStep::Resolved);
    assert_eq!(kinds.len(), 3, "the hold is audited once: {kinds:?}");
    assert!(steps.iter().all(|(r, _, _)| r.incident == steps[0].0.incident), "one episode, one incident");
    let rendered =
        AuditEvent::Stateless { container: API.into(), trouble: Some(Trouble::Unhealthy), step: kinds[0].clone() }
            .render();
    assert!(rendered.contains("held, not restarted: it depends on shop-db, which is shop-db exited"), "{rendered}");
}

/// Compose's own `depends_on` label names a service of the same project;
/// a dependency down for good holds the service for good, spending none of
/// its budget, and escalates nothing.
#[tokio::test]
async fn compose_depends_on_holds_for_the_projects_service_as_long_as_it_is_down() {
    let lab = lab();
    let db = ["opsguard.lab=true", "com.docker.compose.project=shop", "com.docker.compose.service=db"];
    lab.sim.add_running("shop_db_1", &db, None);
    // The same service name in another project is not the dependency.
    let other = ["opsguard.lab=true", "com.docker.compose.project=blog", "com.docker.compose.service=db"];
    lab.sim.add_running("blog_db_1", &other, None);
    let api = [
        LABELS[0],
        LABELS[1],
        LABELS[2],
        "com.docker.compose.project=shop",
        "com.docker.compose.depends_on=db:service_healthy:false",
    ];
    lab.sim.add_running(API, &api, None);
    lab.sim.crash("shop_db_1", 1, &[]);
    lab.sim.crash(API, 2, &["connection refused"]);
    lab.watch(lab.rules.stateless.window_secs).await;
    assert!(lab.restarts_of(API).is_empty(), "restarted while its database was down");
    let steps = lab.steps();
    assert_eq!(steps.len(), 1, "{steps:?}");
    let StatelessStep::Held { dependency, state } = &steps[0].2 else { panic!("{steps:?}") };
    assert_eq!((dependency.as_str(), state.as_str()), ("Compose service db", "shop_db_1 exited"));
}

/// A dependency that is not on the host holds nothing: a typo in a label
/// must not leave a service down.
#[tokio::test]
async fn a_dependency_not_on_the_host_holds_nothing() {
    let lab = lab();
    let labels = [LABELS[0], LABELS[1], LABELS[2], "opsguard.depends_on=no-such-db"];
    lab.sim.add_running(API, &labels, None);
    lab.sim.crash(API, 2, &[]);
    lab.watch(20).await;
    assert_eq!(lab.restarts_of(API).len(), 1);
    assert!(lab.steps().iter().all(|(_, _, s)| !matches!(s, StatelessStep::Held { .. })));
}

/// Labels may name the service itself, or name each other: neither may
/// leave a service down for good. A service never waits for itself, nor for
/// one that is itself held; of two that name each other, one is healed,
/// then the other.
#[tokio::test]
async fn a_service_never_waits_for_itself_nor_in_a_cycle() {
    let lab = lab();
    let own = [LABELS[0], LABELS[1], LABELS[2], "opsguard.depends_on=solo"];
    lab.sim.add_running("solo", &own, None);
    let a = [LABELS[0], LABELS[1], LABELS[2], "opsguard.depends_on=api-b"];
    let b = [LABELS[0], LABELS[1], LABELS[2], "opsguard.depends_on=api-a"];
    lab.sim.add_running("api-a", &a, None);
    lab.sim.add_running("api-b", &b, None);
    for c in ["solo", "api-a", "api-b"] {
        lab.sim.crash(c, 1, &[]);
    }
    lab.watch(30).await;
    for c in ["solo", "api-a", "api-b"] {
        assert_eq!(lab.restarts_of(c).len(), 1, "{c}: {:?}", lab.steps());
        assert_eq!(lab.sim.state(c), Some(ContainerState::Running), "{c}");
    }
    let held: Vec<_> = lab.steps().into_iter().filter(|(_, _, s)| matches!(s, StatelessStep::Held { .. })).collect();
    assert!(held.len() <= 1, "at most one of the pair waits, once: {held:?}");
}
