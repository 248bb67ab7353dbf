//! Issue #5: the web approval console in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`, driven with fantoccini over plain
//! HTTP), while an in-process agent on the simulated host waits for the
//! chain reaction's restart to be approved.
//!
//! With `OPSGUARD_BROWSER=1` a missing chromedriver fails the tests (CI);
//! without it they are skipped with a notice, so `cargo test` passes on a
//! machine without Chromium. `OPSGUARD_SCREENSHOT=1` writes the pending
//! approval to `docs/console-pending-approval.png`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use opsguard::audit::{AuditLog, Resolution};
use opsguard::clock::SimClock;
use opsguard::console::{Console, ConsoleSettings, RequestStatus};
use opsguard::engine::Engine;
use opsguard::host::sim::{SimFault, SimHost, SimOp};
use opsguard::incident::{Agent, IncidentReport, Responder, Timeouts, Until};
use opsguard::llm::NoAdvisor;
use opsguard::model::{StopReason, Timestamp};
use opsguard::rules::Rules;
use tokio::task::JoinHandle;

/// chromedriver as a child process on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// Starts chromedriver, or says why the test is skipped (`None`).
fn driver() -> Option<Driver> {
    let required = std::env::var("OPSGUARD_BROWSER").is_ok_and(|v| v == "1");
    let bin = env_path("OPSGUARD_CHROMEDRIVER", "/usr/bin/chromedriver");
    if !bin.is_file() {
        assert!(!required, "OPSGUARD_BROWSER=1 but there is no chromedriver at {}", bin.display());
        eprintln!("skipping the browser test: no {} (apt-get install chromium chromium-driver)", bin.display());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let child = Command::new(&bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let chromium = env_path("OPSGUARD_CHROMIUM", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", "--hide-scrollbars"],
        }),
    );
    ClientBuilder::new(HttpConnector::new()).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

struct Lab {
    console: Console,
    host: SimHost,
    agent: JoinHandle<Vec<IncidentReport>>,
    url: String,
    server: JoinHandle<std::io::Result<()>>,
}

/// The console on a loopback port and an agent whose chain-reaction incident
/// waits on it for the restart's approval.
async fn lab() -> Lab {
    let clock = SimClock::new(Timestamp(1_795_766_400_000));
    let host = SimHost::lab(clock.clone());
    let timeout = Timeouts::default().approval;
    let console = Console::new(ConsoleSettings { token: None, approval_timeout: timeout }).unwrap();
    let tap = console.clone();
    let audit = AuditLog::in_memory().with_tap(move |r| tap.record(r));
    let responder = Responder::new(
        Engine::new(Arc::new(Rules::default_rules())),
        host.clone(),
        console.approver(),
        NoAdvisor,
        clock,
        audit,
    )
    .with_timeouts(Timeouts { approval: timeout, ..Default::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(console.clone().serve(listener));
    host.inject(SimFault::ChainReaction);
    let mut agent = Agent::new(responder);
    let agent = tokio::spawn(async move { agent.run(None, Until { incidents: Some(1), deadline: None }).await });
    Lab { console, host, agent, url, server }
}

fn restarts(host: &SimHost) -> usize {
    host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count()
}

/// Clicks `button` until the console has the answer: the page reloads itself
/// every few seconds, which can take an element away mid-click.
async fn answer(c: &Client, lab: &Lab, button: &str) {
    let button_css = format!("button.{button}");
    let first = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(&button_css))
        .await
        .expect("the console offers the restart for approval");
    drop(first);
    let id = lab.console.open_requests().first().expect("one pending request").id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.console.request_status(id) == Some(RequestStatus::Pending) {
        assert!(Instant::now() < deadline, "the click never reached the console");
        if let Ok(b) = c.find(Locator::Css(&button_css)).await {
            let _ = b.click().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_for_status(c: &Client, incident: u64, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(e) = c.find(Locator::Id(&format!("status-{incident}"))).await
            && let Ok(text) = e.text().await
            && text == want
        {
            return c.source().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the page never showed {want}: {}", c.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = c.refresh().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_approve_restarts_the_database_and_the_page_shows_it_resolved() {
    let Some(driver) = driver() else { return };
    let lab = lab().await;
    let c = browser(&driver).await;
    c.goto(&lab.url).await.unwrap();
    c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("button.approve")).await.unwrap();
    let page = c.source().await.unwrap();
    for needle in ["DB_CRASH — Disk Full", "exit code", "OOMKilled", "disk usage", "No space left on device"] {
        assert!(page.contains(needle), "missing {needle:?}");
    }
    assert!(page.contains("restart_database_risky('db-prod')"), "the browser shows the action as the spec writes it");
    if std::env::var("OPSGUARD_SCREENSHOT").is_ok_and(|v| v == "1") {
        let png = c.screenshot().await.unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console-pending-approval.png");
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot written to {}", path.display());
    }
    assert_eq!(restarts(&lab.host), 0, "nothing restarts before the click");

    answer(&c, &lab, "approve").await;
    let page = wait_for_status(&c, 1, "RESOLVED").await;
    assert!(page.contains("APPROVED"));
    let reports = lab.agent.await.unwrap();
    assert_eq!(reports[0].resolution, Resolution::Resolved);
    assert_eq!(restarts(&lab.host), 1);
    c.close().await.unwrap();
    lab.server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_reject_leaves_the_database_down_and_the_page_shows_it_stopped() {
    let Some(driver) = driver() else { return };
    let lab = lab().await;
    let c = browser(&driver).await;
    c.goto(&lab.url).await.unwrap();
    answer(&c, &lab, "reject").await;
    let page = wait_for_status(&c, 1, "STOPPED").await;
    assert!(page.contains("restart not approved"), "{page}");
    let reports = lab.agent.await.unwrap();
    assert_eq!(reports[0].resolution, Resolution::Stopped { reason: StopReason::ApprovalRejected });
    assert_eq!(restarts(&lab.host), 0, "a rejected restart never reaches the host");
    c.close().await.unwrap();
    lab.server.abort();
}
