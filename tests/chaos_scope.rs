//! Issue 8 item 13: the chaos engine acts only on containers carrying the
//! scope label, through the same check as the healing tools. A fake Docker
//! API (wiremock) serves containers named like the lab's; no real daemon is
//! needed.

use bollard::{API_DEFAULT_VERSION, Docker};
use opsguard::chaos::docker::{ChaosError, DB, DockerChaos, WEB};
use opsguard::chaos::{Scenario, StatelessScenario};
use opsguard::host::HostErrorKind;
use opsguard::host::docker::DockerHost;
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SCOPE: &str = "opsguard.lab=true";

/// A fake daemon on which `web-prod` and `db-prod` exist and run, with
/// `labels`.
async fn daemon(labels: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    for (name, id) in [(WEB, "1111aaaa"), (DB, "2222bbbb")] {
        let body = json!({
            "Id": id,
            "Name": format!("/{name}"),
            "Image": "sha256:0123",
            "State": {"Status": "running", "Running": true, "ExitCode": 0},
            "Config": {"Labels": labels},
            "Mounts": []
        });
        Mock::given(method("GET"))
            .and(path_regex(format!(r"/containers/({name}|{id})/json$")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex(r"/containers/json$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    // Anything else (exec, kill, stop, start, create): a daemon error, so a
    // chaos run that gets that far fails fast instead of hanging.
    server
}

fn chaos(server: &MockServer) -> DockerChaos {
    let docker = Docker::connect_with_http(&server.uri(), 5, API_DEFAULT_VERSION).unwrap();
    DockerChaos::new(DockerHost::with_client(docker, SCOPE), None, None)
}

async fn mutating_requests(server: &MockServer) -> Vec<String> {
    let reqs = server.received_requests().await.unwrap_or_default();
    reqs.iter().filter(|r| r.method.as_str() != "GET").map(|r| format!("{} {}", r.method, r.url.path())).collect()
}

#[tokio::test]
async fn chaos_refuses_containers_outside_the_scope_and_touches_nothing() {
    // Same names as the lab's, but not labelled: someone's real containers.
    let server = daemon(json!({"com.example.team": "payments"})).await;
    let chaos = chaos(&server);
    for scenario in Scenario::ALL.into_iter().filter(|s| *s != Scenario::Zombies) {
        let err = chaos.inject(scenario).await.expect_err("out of scope target accepted");
        match &err {
            ChaosError::Host(e) => assert_eq!(e.kind, HostErrorKind::OutOfScope, "{scenario}: {e}"),
            other => panic!("{scenario}: not a scope error: {other}"),
        }
        assert!(err.to_string().contains(SCOPE), "{scenario}: the error does not say why: {err}");
    }
    // The stateless scenarios take any target: the same check holds.
    for scenario in StatelessScenario::ALL {
        let err = chaos.inject_stateless(scenario, WEB).await.expect_err("out of scope target accepted");
        assert!(matches!(&err, ChaosError::Host(e) if e.kind == HostErrorKind::OutOfScope), "{scenario}: {err}");
    }
    let err = chaos.reset().await.expect_err("reset of out-of-scope containers accepted");
    assert!(matches!(&err, ChaosError::Host(e) if e.kind == HostErrorKind::OutOfScope), "{err}");
    assert!(chaos.psql("SELECT 1").await.is_err_and(|e| e.kind == HostErrorKind::OutOfScope));
    assert_eq!(mutating_requests(&server).await, Vec::<String>::new(), "chaos touched out-of-scope containers");
}

#[tokio::test]
async fn chaos_acts_on_the_in_scope_container_by_id() {
    // The control: with the label, the same fake daemon does see chaos act,
    // on the id it inspected rather than on the name.
    let server = daemon(json!({"opsguard.lab": "true"})).await;
    let chaos = chaos(&server);
    assert!(chaos.inject(Scenario::WebDiskFill).await.is_err(), "the fake daemon accepts no exec");
    let acted = mutating_requests(&server).await;
    assert!(acted.iter().any(|r| r.starts_with("POST") && r.ends_with("/containers/1111aaaa/exec")), "{acted:?}");
    assert!(chaos.inject_stateless(StatelessScenario::ApiCrash, WEB).await.is_err(), "the fake daemon kills nothing");
    let acted = mutating_requests(&server).await;
    assert!(acted.iter().any(|r| r.starts_with("POST") && r.ends_with("/containers/1111aaaa/kill")), "{acted:?}");
}
