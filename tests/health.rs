//! Issue 11, item 6: `/healthz` and `/readyz` answer over HTTP from what the
//! watch loop reports, and an agent reports its sweeps and its stop.

use std::sync::Arc;
use std::time::Duration;

use opsguard::approval::PolicyApprover;
use opsguard::audit::AuditLog;
use opsguard::clock::{Clock, SimClock, SystemClock};
use opsguard::engine::Engine;
use opsguard::health::{self, Health};
use opsguard::host::sim::SimHost;
use opsguard::incident::{Agent, Responder, WatchLimit};
use opsguard::llm::NoAdvisor;
use opsguard::model::Timestamp;
use opsguard::rules::Rules;
use opsguard::serve::Limits;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn the_endpoints_follow_the_sweeps_and_the_event_stream() {
    let h = Health::new(SystemClock.now(), Duration::from_secs(30));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(opsguard::serve::serve(listener, health::router(h.clone()), Limits::METRICS, None));
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get(addr, "/readyz").await, (503, "no sweep yet\n".to_string()));
    h.swept(SystemClock.now());
    h.events(true);
    assert_eq!(get(addr, "/readyz").await, (200, "ok\n".to_string()));
    h.events(false);
    let lost = "the Docker event stream is lost (reconnecting)\n".to_string();
    assert_eq!(get(addr, "/healthz").await, (503, lost.clone()));
    assert_eq!(get(addr, "/readyz").await, (503, lost));
    h.events(true);
    h.stopping();
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get(addr, "/readyz").await, (503, "stopping\n".to_string()));
    server.abort();
}

#[tokio::test]
async fn an_agent_reports_its_sweeps_and_its_stop() {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let sim = SimHost::lab(clock.clone());
    let rules = Arc::new(Rules::default_rules());
    let responder =
        Responder::new(Engine::new(rules), sim, PolicyApprover::Deny, NoAdvisor, clock.clone(), AuditLog::in_memory());
    let mut agent = Agent::new(responder);
    let health = agent.health();
    assert!(!health.check(clock.now()).ready(), "ready before any sweep");
    let start = clock.now();
    agent.run(None, WatchLimit { incidents: None, deadline: Some(start.plus_millis(65_000)) }).await;
    let report = health.check(clock.now());
    assert!(report.live() && report.ready(), "{report:?}");
    // Long after the watch ended, its last sweep is stale.
    assert!(!health.check(clock.now().plus_millis(10 * 60_000)).live());
    agent.shutdown_handle().shutdown();
    agent.run(None, WatchLimit { incidents: None, deadline: None }).await;
    let report = health.check(clock.now());
    assert!(report.live() && !report.ready(), "{report:?}");
    assert!(report.unhealthy.is_empty() && report.unready == ["stopping"], "{report:?}");
}
