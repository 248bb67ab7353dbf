//! Headless Chromium for the browser tests: Debian's `chromedriver` as a
//! child process and a fantoccini session over plain HTTP (no browser
//! download, no TLS), and the console interactions both tests share: the
//! login form, the buttons, the status badge.
//!
//! The tests that use it are `#[ignore]`d and need `OPSGUARD_BROWSER=1`
//! (scripts/test.sh sets it): run without it, they fail rather than pass
//! having done nothing.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use opsguard::console::{Console, RequestStatus};

/// chromedriver as a child process on a free loopback port. Dropped, even
/// while a test panics, it kills chromedriver and every Chromium process it
/// started: its process group, and any process naming this driver's own
/// profile directory (Chromium's helpers may leave the group).
pub struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let marker = self.profile.path().to_string_lossy().into_owned();
        for _ in 0..50 {
            let left = processes_naming(&marker);
            if left.is_empty() {
                return;
            }
            for pid in left {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("Chromium processes naming {marker} survived SIGKILL: {:?}", processes_naming(&marker));
    }
}

/// Pids of the live processes whose command line contains `needle`.
pub fn processes_naming(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A zombie's command line is empty: it is dead, only not reaped.
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

impl Driver {
    /// The profile directory that every Chromium of this driver runs with.
    pub fn profile(&self) -> &std::path::Path {
        self.profile.path()
    }
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// Starts chromedriver; fails the test, saying why, without
/// `OPSGUARD_BROWSER=1` or without chromedriver.
pub fn driver() -> Driver {
    assert!(
        std::env::var("OPSGUARD_BROWSER").is_ok_and(|v| v == "1"),
        "OPSGUARD_BROWSER is not 1: this test needs headless Chromium. Run `bash scripts/test.sh`, or install \
         Debian's chromium and chromium-driver (scripts/ensure-chromium.sh) and run it with OPSGUARD_BROWSER=1 \
         and --include-ignored"
    );
    let bin = env_path("OPSGUARD_CHROMEDRIVER", "/usr/bin/chromedriver");
    assert!(
        bin.is_file(),
        "OPSGUARD_BROWSER=1 but there is no chromedriver at {} (bash scripts/ensure-chromium.sh)",
        bin.display()
    );
    let profile = tempfile::Builder::new().prefix("opsguard-chromium-").tempdir().expect("a profile directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let child = Command::new(&bin)
        .arg(format!("--port={port}"))
        // Its own process group, so that Drop reaches Chromium too.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), profile };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

pub async fn browser(driver: &Driver) -> Client {
    let chromium = env_path("OPSGUARD_CHROMIUM", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", "--hide-scrollbars",
                     format!("--user-data-dir={}", driver.profile().display())],
        }),
    );
    ClientBuilder::new(HttpConnector::new()).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

/// Logs in at `base` (the console's root URL) through the login form, as
/// an operator does, and waits for the console's page.
pub async fn login(c: &Client, base: &str, token: &str) {
    let base = base.trim_end_matches('/');
    c.goto(&format!("{base}/login")).await.expect("the login page");
    let field =
        c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Id("token")).await.expect("the login form");
    field.send_keys(token).await.expect("typing the token");
    c.find(Locator::Id("login")).await.expect("the login button").click().await.expect("logging in");
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("logout"))
        .await
        .expect("logged in: the console's page with its Log out button");
}

/// Clicks `button` (`approve` or `reject`) until the console has the
/// answer: the page reloads itself every few seconds, which can take an
/// element away mid-click.
pub async fn answer(c: &Client, console: &Console, button: &str, within: Duration) {
    let button_css = format!("button.{button}");
    c.wait()
        .at_most(within)
        .for_element(Locator::Css(&button_css))
        .await
        .expect("the console offers the restart for approval");
    let id = console.open_requests().first().expect("one pending request").id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while console.request_status(id) == Some(RequestStatus::Pending) {
        assert!(Instant::now() < deadline, "the click never reached the console");
        if let Ok(b) = c.find(Locator::Css(&button_css)).await {
            let _ = b.click().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Reloads until incident `incident`'s status badge reads `want`; returns
/// the page.
pub async fn wait_for_status(c: &Client, incident: u64, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
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
