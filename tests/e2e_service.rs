//! OpsGuard run as a service, end to end on the real lab (issue #11):
//! its own image under docker-compose (profile `agent`), stopped with
//! `docker stop` while an approval is pending, started again; `watch`
//! under a service manager's notify socket (systemd's `Type=notify`);
//! healing a chain reaction while telling a webhook receiver and a real
//! Alertmanager; as a global service of the Swarm stack file on a
//! single-node swarm made for the test; and the deploy files checked by the
//! tools that read them.
//!
//! `#[ignore]`d like tests/e2e.rs: `scripts/test.sh` runs them with
//! `OPSGUARD_E2E=1` (and fails them without it). They need root, Docker,
//! the lab (`lab/up.sh`), docker-compose and systemd-analyze; the
//! notification test also Alertmanager (`OPSGUARD_ALERTMANAGER_URL`, from
//! `scripts/alertmanager.sh start`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use opsguard::audit::{AuditEvent, AuditRecord, Resolution, read_audit};
use opsguard::chaos::Scenario;
use opsguard::chaos::docker::{DB, DockerChaos};
use opsguard::clock::{Clock, SystemClock};
use opsguard::host::Host;
use opsguard::host::docker::DockerHost;
use opsguard::model::{ContainerState, Outcome, StopReason};

static LAB: Mutex<()> = Mutex::new(());

const METRICS: &str = "127.0.0.1:9464";
const AGENT: &str = "opsguard";
/// The agent's console, as docker-compose.yml has it listen.
const CONSOLE: &str = "http://127.0.0.1:8090";
const TOKEN: &str = "e2e-service-token";

fn lab_lock() -> std::sync::MutexGuard<'static, ()> {
    assert!(
        std::env::var("OPSGUARD_E2E").is_ok_and(|v| v == "1"),
        "OPSGUARD_E2E is not 1: this end-to-end test needs the real Docker lab. Run `bash scripts/test.sh`, \
         or as root `bash lab/up.sh` then `OPSGUARD_E2E=1 cargo test --test e2e_service -- --include-ignored --test-threads=1`"
    );
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// Runs `cmd`, returns stdout; the test fails with stderr if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker-compose` on the lab's project with the agent's profile, through
/// lab/lib.sh so the project name and the lab's paths are the lab's.
fn compose(args: &str) -> String {
    compose_with(None, args)
}

/// [`compose`], with `extra` merged over docker-compose.yml as an operator's
/// override file would be.
fn compose_with(extra: Option<&Path>, args: &str) -> String {
    let files = match extra {
        None => String::new(),
        Some(f) => format!("-f \"$COMPOSE_FILE\" -f '{}'", f.display()),
    };
    let call = if files.is_empty() {
        format!("compose --profile agent {args}")
    } else {
        format!("docker-compose -p \"$COMPOSE_PROJECT_NAME\" {files} --profile agent {args}")
    };
    run(Command::new("bash")
        .arg("-c")
        .arg(format!(". lab/lib.sh && {call}"))
        .current_dir(repo())
        .env("OPSGUARD_CONSOLE_TOKEN", TOKEN)
        .env("OPSGUARD_APPROVE", "web"))
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// The image of this very binary (cached by its hash: seconds once the
/// Debian base exists).
fn build_image() {
    let binary = env!("CARGO_BIN_EXE_opsguard");
    let out = run(Command::new("bash")
        .arg(repo().join("deploy/build-image.sh"))
        .env("OPSGUARD_BINARY", binary)
        .stderr(Stdio::inherit()));
    assert!(out.trim().starts_with("opsguard:"), "build-image.sh printed {out:?}");
}

/// GET http://127.0.0.1:9464/PATH: the status, or None when nothing answers.
async fn probe(path: &str) -> Option<u16> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().ok()?;
    client.get(format!("http://{METRICS}{path}")).send().await.ok().map(|r| r.status().as_u16())
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, limit: Duration, mut f: impl FnMut() -> F) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what}: not within {limit:?}\nagent log:\n{}", agent_log());
}

fn agent_log() -> String {
    Command::new("docker")
        .args(["logs", "--tail", "40", AGENT])
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default()
}

/// The agent's audit log, copied out of its volume.
fn agent_audit(dir: &Path) -> Vec<AuditRecord> {
    let copy = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&copy);
    run(Command::new("docker").args(["cp", &format!("{AGENT}:/var/lib/opsguard/audit.jsonl")]).arg(&copy));
    read_audit(&copy).expect("the agent's audit log reads").records
}

/// Removes the agent's container and its volume, whatever state it is in.
fn remove_agent() {
    let _ = Command::new("bash")
        .arg("-c")
        .arg(". lab/lib.sh && compose --profile agent rm -f -s -v opsguard >/dev/null 2>&1; docker volume rm -f opsguard_opsguard-state >/dev/null 2>&1; true")
        .current_dir(repo())
        .status();
}

/// Removes the agent and repairs the lab, also when the test fails.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_agent();
        let lab = self.0.clone();
        let repaired = rt().block_on(async move {
            let host = DockerHost::connect("opsguard.lab=true").await.map_err(|e| e.to_string())?;
            DockerChaos::new(host, None, Some(lab)).reset().await.map(|_| ()).map_err(|e| e.to_string())
        });
        if let Err(e) = repaired {
            eprintln!("lab repair after the test failed: {e}");
        }
    }
}

async fn chaos() -> DockerChaos {
    let host = DockerHost::connect("opsguard.lab=true").await.expect("Docker daemon reachable");
    DockerChaos::new(host, None, Some(repo().join("lab")))
}

/// `opsguard approvals ARGS` against the agent's console; its stdout.
fn approvals_cli(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(k);
        }
    }
    run(cmd.arg("approvals").args(args).env("OPSGUARD_CONSOLE_URL", CONSOLE).env("OPSGUARD_CONSOLE_TOKEN", TOKEN))
}

/// A webhook receiver on the host's loopback, which the agent (on the host's
/// network) reaches: every body posted to it, as JSON.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<Value>>>);

impl Hook {
    /// Listens on 127.0.0.1 (a free port); the receiver and its URL.
    async fn start() -> (Hook, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the webhook receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("its address"));
        let hook = Hook::default();
        let app = axum::Router::new().fallback(Hook::receive).with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, url)
    }

    async fn receive(State(hook): State<Hook>, body: String) -> StatusCode {
        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
        hook.0.lock().unwrap_or_else(|e| e.into_inner()).push(body);
        StatusCode::OK
    }

    fn payloads(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The events told about `container`, in the order received.
    fn events_on(&self, container: &str) -> Vec<(u64, String)> {
        self.payloads()
            .iter()
            .filter(|p| p["container"] == container)
            .map(|p| (p["incident"].as_u64().unwrap_or(0), p["event"].as_str().unwrap_or("?").to_string()))
            .collect()
    }
}

/// A name no earlier run used: Alertmanager keeps what earlier runs sent.
fn fresh_host(what: &str) -> String {
    format!("e2e-{what}-{}-{}", std::process::id(), SystemClock.now().0)
}

/// Alertmanager's URL, as `scripts/alertmanager.sh start` printed it.
fn alertmanager_url() -> String {
    match std::env::var("OPSGUARD_ALERTMANAGER_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1:") => url.trim_end_matches('/').to_string(),
        other => panic!(
            "OPSGUARD_ALERTMANAGER_URL is {other:?}: start Alertmanager with `scripts/alertmanager.sh start` \
             and export its URL (scripts/test.sh does)"
        ),
    }
}

/// The alerts Alertmanager holds as active from `host`.
async fn active_alerts(base: &str, host: &str) -> Vec<Value> {
    let filter = format!("host=\"{host}\"");
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v2/alerts"))
        .query(&[("filter", filter.as_str()), ("active", "true")])
        .send()
        .await
        .expect("Alertmanager answers");
    assert!(response.status().is_success(), "GET /api/v2/alerts: {}", response.status());
    response.json().await.expect("Alertmanager's alerts are JSON")
}

/// The approvals the agent's console lists as pending.
fn pending_approvals() -> Vec<Value> {
    let listed = approvals_cli(&["list", "--json"]);
    let list: Value = serde_json::from_str(&listed).unwrap_or_else(|e| panic!("{e}: {listed}"));
    list["approvals"].as_array().cloned().unwrap_or_default()
}

/// Approves, with `opsguard approvals approve`, the one request pending,
/// which must be about `container`.
fn approve_the_one_pending(container: &str) {
    let pending = pending_approvals();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["container"], container, "{pending:?}");
    let id = pending[0]["id"].as_u64().expect("id").to_string();
    approvals_cli(&["approve", &id, "--approver", "e2e"]);
}

/// Waits until the agent's audit log holds an incident closed resolved.
async fn until_resolved(dir: &Path) {
    wait_for("the approved restart resolves the incident", Duration::from_secs(180), || async {
        agent_audit(dir)
            .iter()
            .any(|r| matches!(r.event, AuditEvent::IncidentClosed { resolution: Resolution::Resolved, .. }))
    })
    .await;
}

fn approvals_requested(audit: &[AuditRecord]) -> Vec<u64> {
    audit.iter().filter(|r| matches!(r.event, AuditEvent::ApprovalRequested { .. })).map(|r| r.incident).collect()
}

/// Issue #11's "Done when": `docker stop` of the agent's container while an
/// approval is pending exits by itself within Docker's 10 s (exit 0, not
/// SIGKILL's 137), the audit log records the approval unanswered and the
/// incident interrupted, nothing was restarted; the agent started again
/// picks the crashed database up again and asks again, still without
/// restarting it unasked; approved with `opsguard approvals approve`, it
/// restarts the database once and the incident resolves.
#[test]
#[ignore = "needs the lab: OPSGUARD_E2E=1, as root (scripts/test.sh runs it)"]
fn e2e_agent_container_stops_gracefully_with_an_approval_pending_and_carries_on() {
    let _lab = lab_lock();
    build_image();
    let dir = tempfile::tempdir().expect("tempdir");
    remove_agent();
    let _cleanup = Cleanup(repo().join("lab"));
    rt().block_on(async {
        let chaos = chaos().await;
        chaos.reset().await.expect("lab reset");
        std::fs::create_dir_all("/run/opsguard").expect("/run/opsguard");
        compose("up -d opsguard");
        wait_for("the agent's /readyz answers 200", Duration::from_secs(120), || async {
            probe("/readyz").await == Some(200)
        })
        .await;
        assert_eq!(probe("/healthz").await, Some(200));

        chaos.inject(Scenario::DbOomKill).await.expect("db-oom-kill injected");
        let crashed = chaos.host().inspect(DB).await.expect("inspect db-prod");
        assert_ne!(crashed.state, ContainerState::Running, "db-prod should be down after the OOM kill");
        wait_for("the agent asks for approval to restart db-prod", Duration::from_secs(120), || async {
            !approvals_requested(&agent_audit(dir.path())).is_empty()
        })
        .await;

        let t0 = Instant::now();
        docker(&["stop", "--time", "10", AGENT]);
        let stopped_in = t0.elapsed();
        let exit = docker(&["inspect", "-f", "{{.State.ExitCode}}", AGENT]);
        eprintln!("docker stop took {stopped_in:?}, exit code {}", exit.trim());
        // 137 would be Docker's SIGKILL after the grace period.
        assert!(matches!(exit.trim(), "0" | "2"), "the agent did not exit by itself: exit code {exit}\n{}", agent_log());

        let audit = agent_audit(dir.path());
        let incident = approvals_requested(&audit)[0];
        assert!(
            audit.iter().any(|r| r.incident == incident
                && matches!(&r.event, AuditEvent::ApprovalAnswered { approved: false, detail, .. } if detail.contains("unanswered"))),
            "the pending approval is not recorded as unanswered: {audit:#?}"
        );
        assert!(
            audit.iter().any(|r| r.incident == incident
                && matches!(r.event, AuditEvent::IncidentClosed {
                    resolution: Resolution::Stopped { reason: StopReason::Interrupted },
                    ..
                })),
            "the incident is not closed as interrupted: {audit:#?}"
        );
        // The withdrawn approval is a step whose outcome is the rejection;
        // nothing else ran.
        assert!(
            !audit.iter().any(|r| matches!(&r.event, AuditEvent::Executed { outcome, .. } if *outcome != Outcome::ApprovalRejected)),
            "something ran: {audit:#?}"
        );
        let after = chaos.host().inspect(DB).await.expect("inspect db-prod");
        assert_eq!((after.state, after.started_at), (crashed.state, crashed.started_at), "db-prod was touched");

        // Started again: the crash is still there, it is picked up again and
        // asked about again; nothing is restarted unasked.
        docker(&["start", AGENT]);
        wait_for("the restarted agent is ready", Duration::from_secs(120), || async {
            probe("/readyz").await == Some(200)
        })
        .await;
        wait_for("the restarted agent asks again", Duration::from_secs(120), || async {
            approvals_requested(&agent_audit(dir.path())).iter().any(|i| *i != incident)
        })
        .await;
        let again = chaos.host().inspect(DB).await.expect("inspect db-prod");
        assert_eq!((again.state, again.started_at), (crashed.state, crashed.started_at), "db-prod was restarted unasked");

        // Answered from the command line, through the console's JSON API.
        approve_the_one_pending(DB);
        until_resolved(dir.path()).await;
        let audit = agent_audit(dir.path());
        let restarts =
            audit.iter().filter(|r| matches!(r.event, AuditEvent::Executed { outcome: Outcome::Restarted, .. })).count();
        assert_eq!(restarts, 1, "one restart, the approved one: {audit:#?}");
        assert_eq!(chaos.host().inspect(DB).await.expect("inspect db-prod").state, ContainerState::Running);
        docker(&["stop", "--time", "10", AGENT]);
    });
}

/// Issue #11's "Done when", the healing half: the image under Compose, with
/// `--approve web` and a notify file mounted by an override file, heals the
/// chain reaction; the approval is answered with `opsguard approvals
/// approve`; the webhook receiver gets one versioned payload per
/// transition; Alertmanager shows the alert firing while the approval is
/// pending, then no longer active once the incident resolved.
#[test]
#[ignore = "needs the lab and Alertmanager: OPSGUARD_E2E=1 and OPSGUARD_ALERTMANAGER_URL (scripts/test.sh)"]
fn e2e_agent_container_heals_a_chain_reaction_and_tells_the_receivers() {
    let _lab = lab_lock();
    let alertmanager = alertmanager_url();
    build_image();
    let dir = tempfile::tempdir().expect("tempdir");
    remove_agent();
    let _cleanup = Cleanup(repo().join("lab"));
    rt().block_on(async {
        let (hook, hook_url) = Hook::start().await;
        let host = fresh_host("agent");
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).expect("config dir");
        let notify = format!(
            "host = \"{host}\"\n\n[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook_url}\"\n\n\
             [[notify]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{alertmanager}\"\nbackoff = \"200ms\"\n"
        );
        std::fs::write(config.join("notify.toml"), notify).expect("notify.toml");
        let override_file = dir.path().join("docker-compose.override.yml");
        std::fs::write(
            &override_file,
            format!(
                "version: \"2.4\"\nservices:\n  opsguard:\n    environment:\n      OPSGUARD_NOTIFY: /etc/opsguard/notify.toml\n    \
                 volumes:\n      - {}:/etc/opsguard:ro\n",
                config.display()
            ),
        )
        .expect("override file");

        let chaos = chaos().await;
        chaos.reset().await.expect("lab reset");
        std::fs::create_dir_all("/run/opsguard").expect("/run/opsguard");
        compose_with(Some(&override_file), "up -d opsguard");
        wait_for("the agent's /readyz answers 200", Duration::from_secs(120), || async {
            probe("/readyz").await == Some(200)
        })
        .await;

        chaos.inject(Scenario::ChainReaction).await.expect("chain reaction injected");
        wait_for("the agent asks, on its console, to restart db-prod", Duration::from_secs(180), || async {
            pending_approvals().iter().any(|a| a["container"] == DB)
        })
        .await;
        wait_for("Alertmanager shows db-prod's alert firing, awaiting approval", Duration::from_secs(60), || async {
            active_alerts(&alertmanager, &host).await.iter().any(|a| {
                a["labels"]["container"] == DB
                    && a["annotations"]["state"] == "awaiting_approval"
                    && a["annotations"]["approval_url"].is_string()
            })
        })
        .await;
        let firing = active_alerts(&alertmanager, &host).await;
        let alert = firing.iter().find(|a| a["labels"]["container"] == DB).expect("db-prod's alert");
        assert_eq!(alert["labels"]["alertname"], "DB_CRASH", "{alert}");
        assert_eq!(alert["annotations"]["root_cause"], "disk_full", "{alert}");
        assert_eq!(alert["status"]["state"], "active", "{alert}");
        let db = chaos.host().inspect(DB).await.expect("inspect db-prod");
        assert_ne!(db.state, ContainerState::Running, "db-prod was restarted before the approval");

        approve_the_one_pending(DB);
        until_resolved(dir.path()).await;
        assert_eq!(chaos.host().inspect(DB).await.expect("inspect db-prod").state, ContainerState::Running);
        wait_for("the webhook is told db-prod's incident resolved", Duration::from_secs(60), || async {
            hook.events_on(DB).iter().any(|(_, e)| e == "resolved")
        })
        .await;
        wait_for("Alertmanager no longer shows an active alert from this host", Duration::from_secs(60), || async {
            active_alerts(&alertmanager, &host).await.is_empty()
        })
        .await;

        let audit = agent_audit(dir.path());
        let restarts =
            audit.iter().filter(|r| matches!(r.event, AuditEvent::Executed { outcome: Outcome::Restarted, .. })).count();
        assert_eq!(restarts, 1, "one restart, the approved one: {audit:#?}");
        let told = hook.events_on(DB);
        let incident = told[0].0;
        let transitions: Vec<&str> = told.iter().filter(|(i, _)| *i == incident).map(|(_, e)| e.as_str()).collect();
        assert_eq!(transitions, ["incident_opened", "approval_requested", "resolved"], "{told:?}");
        let payloads = hook.payloads();
        let mut keys: Vec<(Option<u64>, String)> =
            payloads.iter().map(|p| (p["incident"].as_u64(), p["event"].to_string())).collect();
        let all = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all, "a transition told twice: {payloads:#?}");
        for p in &payloads {
            assert_eq!((p["schema"].as_str(), p["version"].as_u64()), (Some("opsguard.notification"), Some(1)), "{p}");
            assert_eq!(p["host"], host.as_str(), "{p}");
        }
        let asked = payloads.iter().find(|p| p["event"] == "approval_requested").expect("approval_requested");
        assert!(
            asked["approval"]["url"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:8090/")),
            "the approval link is the agent's console: {asked}"
        );
        docker(&["stop", "--time", "10", AGENT]);
    });
}

const STACK: &str = "opsguard-e2e";

/// The stack's one task container on this node, if it runs.
fn stack_container() -> Option<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=com.docker.stack.namespace={STACK}")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string)
}

/// Leaves the swarm the test made, with everything the stack left behind,
/// also when the test fails.
struct Swarm;

impl Drop for Swarm {
    fn drop(&mut self) {
        if let Some(c) = stack_container() {
            let logs = Command::new("docker").args(["logs", "--tail", "40", &c]).output();
            if let Ok(o) = logs {
                eprintln!(
                    "the stack's agent said:\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        let _ = Command::new("docker").args(["stack", "rm", STACK]).status();
        let t0 = Instant::now();
        while stack_container().is_some() && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = Command::new("docker").args(["swarm", "leave", "--force"]).status();
        // Swarm's own bridge outlives the swarm; nothing else uses it here.
        let _ = Command::new("docker").args(["network", "rm", "docker_gwbridge"]).output();
        let volume = format!("{STACK}_state");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30)
            && !Command::new("docker").args(["volume", "rm", "-f", &volume]).status().is_ok_and(|s| s.success())
        {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Issue #11, item 3: deploy/opsguard-stack.yml on a single-node swarm
/// (`docker swarm init` on loopback here, left again afterwards). The stack
/// deploys offline (the image named by its ID, `--resolve-image never`);
/// the agent runs as a global service, one task on the one node; it heals
/// its node's web log disk and tells the webhook in the notify file the
/// stack hands it as a swarm config.
#[test]
#[ignore = "needs the lab and a Docker engine that may join a swarm: OPSGUARD_E2E=1 (scripts/test.sh runs it)"]
fn e2e_swarm_stack_runs_a_global_agent_that_heals_its_node() {
    let _lab = lab_lock();
    build_image();
    remove_agent();
    let swarm = docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(
        swarm.trim(),
        "inactive",
        "this engine is already in a swarm: the test makes a swarm of its own and leaves it, so it does not run here"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(repo().join("lab"));
    docker(&["swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"]);
    let _swarm = Swarm;
    let image = docker(&["image", "inspect", "-f", "{{.Id}}", "opsguard:latest"]).trim().to_string();
    assert!(image.starts_with("sha256:"), "{image}");
    rt().block_on(async {
        let (hook, hook_url) = Hook::start().await;
        let host = fresh_host("swarm");
        let notify = dir.path().join("notify.toml");
        let text =
            format!("host = \"{host}\"\n\n[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook_url}\"\n");
        std::fs::write(&notify, text).expect("notify.toml");

        let chaos = chaos().await;
        chaos.reset().await.expect("lab reset");
        std::fs::create_dir_all("/run/opsguard").expect("/run/opsguard");
        let mut deploy = Command::new("docker");
        deploy
            .args(["stack", "deploy", "--resolve-image", "never", "-c"])
            .arg(repo().join("deploy/opsguard-stack.yml"))
            .arg(STACK)
            .env("OPSGUARD_IMAGE", &image)
            .env("OPSGUARD_NOTIFY_FILE", &notify)
            .env("OPSGUARD_CONSOLE_TOKEN", TOKEN);
        run(&mut deploy);
        wait_for("the stack's agent answers /readyz with 200", Duration::from_secs(180), || async {
            probe("/readyz").await == Some(200)
        })
        .await;

        let service = format!("{STACK}_agent");
        let mode = docker(&["service", "inspect", "-f", "{{if .Spec.Mode.Global}}global{{end}}", &service]);
        assert_eq!(mode.trim(), "global", "the agent is not a global service");
        let tasks = docker(&["service", "ps", "-q", "--filter", "desired-state=running", &service]);
        assert_eq!(tasks.lines().count(), 1, "one agent on the one node: {tasks}");
        let container = stack_container().expect("the agent's container on this node");
        let spec_image = docker(&["inspect", "-f", "{{.Image}}", &container]);
        assert_eq!(spec_image.trim(), image, "the task runs the image deployed");

        chaos.inject(Scenario::WebDiskFill).await.expect("web-disk-fill injected");
        wait_for("the stack's agent heals web-prod's log disk and says so", Duration::from_secs(120), || async {
            hook.events_on(opsguard::chaos::docker::WEB).iter().any(|(_, e)| e == "resolved")
        })
        .await;
        let told = hook.events_on(opsguard::chaos::docker::WEB);
        assert_eq!(told.first().map(|(_, e)| e.as_str()), Some("incident_opened"), "{told:?}");
        assert!(hook.payloads().iter().all(|p| p["host"] == host.as_str()), "{:#?}", hook.payloads());

        let copy = dir.path().join("audit.jsonl");
        run(Command::new("docker").args(["cp", &format!("{container}:/var/lib/opsguard/audit.jsonl")]).arg(&copy));
        let audit = read_audit(&copy).expect("the stack's audit log reads").records;
        assert!(
            audit.iter().any(|r| matches!(r.event, AuditEvent::Executed { outcome: Outcome::Cleaned { .. }, .. })),
            "no clean in the stack agent's audit log: {audit:#?}"
        );
    });
}

/// `watch` under a service manager: READY=1 once the first sweep is done,
/// WATCHDOG=1 while it is alive, STOPPING=1 at SIGTERM, then a clean exit.
#[test]
#[ignore = "needs the lab: OPSGUARD_E2E=1, as root (scripts/test.sh runs it)"]
fn e2e_watch_tells_a_service_manager_ready_watchdog_and_stopping() {
    let _lab = lab_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["watch", "--approve", "deny", "--shadow", "--timeout", "120", "--log-format", "json"])
        .arg("--audit")
        .arg(dir.path().join("audit.jsonl"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn opsguard watch");
    let mut said: Vec<String> = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    let mut signalled = false;
    while t0.elapsed() < Duration::from_secs(90) {
        if let Ok(n) = socket.recv(&mut buf) {
            said.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
        let ready = said.iter().any(|s| s == "READY=1");
        let pings = said.iter().filter(|s| *s == "WATCHDOG=1").count();
        if !signalled && ready && pings >= 3 {
            // SAFETY-free: a plain kill(2) through the shell's kill.
            run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
            signalled = true;
        }
        if said.iter().any(|s| s == "STOPPING=1") {
            break;
        }
    }
    let status = child.wait().expect("wait for opsguard");
    assert!(said.iter().any(|s| s == "READY=1"), "no READY=1: {said:?}");
    let ready_at = said.iter().position(|s| s == "READY=1").unwrap();
    assert!(said[ready_at..].iter().filter(|s| *s == "WATCHDOG=1").count() >= 2, "no watchdog pings: {said:?}");
    assert!(said.iter().any(|s| s == "STOPPING=1"), "no STOPPING=1: {said:?}");
    assert_eq!(said.iter().filter(|s| *s == "READY=1").count(), 1, "READY=1 said more than once: {said:?}");
    assert!(status.success(), "opsguard watch exited with {status}");
}

/// The deploy files read by the tools that use them: the systemd unit by
/// `systemd-analyze verify` (with this binary in ExecStart), the compose
/// file with the agent's profile by `docker-compose config`, the Swarm
/// stack file by `docker stack config`.
#[test]
#[ignore = "needs systemd-analyze and docker-compose: OPSGUARD_E2E=1 (scripts/test.sh runs it)"]
fn e2e_deploy_files_verify() {
    let _lab = lab_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(repo().join("deploy/opsguard.service")).expect("deploy/opsguard.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/opsguard watch"), "{unit}");
    let copy = dir.path().join("opsguard.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/opsguard", env!("CARGO_BIN_EXE_opsguard"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {}\n{stderr}", out.status);

    let config = compose("config");
    assert!(config.contains("opsguard:") && config.contains("/var/run/docker.sock"), "{config}");
    let services = compose("config --services");
    assert!(services.lines().any(|s| s == "opsguard"), "{services}");
    // Only with its profile: `lab/up.sh` (no profile) brings the lab alone.
    let service = config.split("\n  opsguard:\n").nth(1).expect("the opsguard service in the config");
    let profiles = service.split("\n  ").next().unwrap_or_default();
    assert!(service.contains("profiles:\n    - agent"), "the agent has no profile of its own:\n{profiles}");

    // The Swarm stack file, as `docker stack deploy` reads it (no swarm
    // needed): a global service, offline, refusing to deploy without an image.
    let stack = repo().join("deploy/opsguard-stack.yml");
    let config = run(Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(&stack)
        .env("OPSGUARD_IMAGE", "sha256:0123")
        .env("OPSGUARD_NOTIFY_FILE", &copy));
    for want in
        ["mode: global", "image: sha256:0123", "name: host", "target: /var/run/docker.sock", "order: stop-first"]
    {
        assert!(config.contains(want), "no {want:?} in the stack:\n{config}");
    }
    let out = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(&stack)
        .env_remove("OPSGUARD_IMAGE")
        .env("OPSGUARD_NOTIFY_FILE", &copy)
        .output()
        .expect("docker stack config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("OPSGUARD_IMAGE"), "deployed without an image: {stderr}");
}
