//! Headless Chromium for the browser tests: Debian's `chromedriver` as a
//! child process and a fantoccini session over plain HTTP (no browser
//! download, no TLS), and the console interactions both tests share: the
//! login form, the buttons, the status badge.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use opsguard::console::{Console, RequestStatus};

/// chromedriver as a child process on a free loopback port, killed on drop.
pub struct Driver {
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
pub fn driver() -> Option<Driver> {
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

pub async fn browser(driver: &Driver) -> Client {
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
