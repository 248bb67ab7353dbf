//! Telling a human: incident transitions and OpsGuard's own degradation
//! sent to webhooks, Slack-compatible chats and Prometheus Alertmanager
//! (`watch --notify FILE`).
//!
//! The notifier is one more tap on the audit log (like the metrics and the
//! console), so the incident driver and the core know nothing of HTTP.
//! Healing never waits for a receiver: each destination has a bounded
//! queue that the tap fills with `try_send` (a full queue drops the
//! notification and counts it) and a worker task of its own that sends,
//! retrying with exponential backoff a bounded number of times. Failures
//! are logged and counted (`opsguard_notifications_total{destination,
//! result}`, `opsguard_notifications_dropped_total{destination}`); a slow
//! or dead receiver delays only its own queue.
//!
//! [`config`] reads the file, [`event`] derives what to tell from the audit
//! records, [`payload`] shapes it for each kind of receiver.

pub mod config;
pub mod event;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::counter;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::audit::AuditRecord;
use crate::model::Timestamp;
use crate::redact::printable;
use crate::telemetry::{NOTIFICATIONS, NOTIFICATIONS_DROPPED};

use config::{Destination, DestinationKind, MAX_BACKOFF, NotifyConfig};
use event::{Component, Notification, Transitions};
use payload::Sender;

/// What happened to the notifications of one destination so far.
#[derive(Debug, Default)]
pub struct Stats {
    /// Accepted by the receiver (a 2xx answer).
    pub sent: AtomicU64,
    /// Given up on after every try.
    pub failed: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Queued or being sent.
    pending: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// See [`Stats::sent`].
    pub sent: u64,
    /// See [`Stats::failed`].
    pub failed: u64,
    /// See [`Stats::dropped`].
    pub dropped: u64,
}

struct Queue {
    name: String,
    destination: Arc<Destination>,
    tx: mpsc::Sender<Arc<Notification>>,
    stats: Arc<Stats>,
}

struct Inner {
    host: String,
    queues: Vec<Queue>,
    transitions: Mutex<Transitions>,
    /// Each degraded component, since when.
    degraded: Mutex<BTreeMap<&'static str, Timestamp>>,
    /// Woken whenever a notification is done with, for [`Notifier::flush`].
    done: Arc<Notify>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

/// The destinations of a watch, each with its queue and worker. Clones
/// share them; the workers stop when the last clone is dropped.
#[derive(Clone)]
pub struct Notifier(Arc<Inner>);

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("destinations", &self.0.queues.iter().map(|q| &q.name).collect::<Vec<_>>())
            .finish()
    }
}

/// The host name notifications carry when the file gives none.
pub fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_string())
}

impl Notifier {
    /// Starts a worker per destination of `config` (needs a tokio runtime).
    /// Approval links point under `console` (the console's base URL) when
    /// it is on; the file's `console_url` takes precedence.
    pub fn start(config: &NotifyConfig, console: Option<String>) -> Notifier {
        let host = config.host.clone().unwrap_or_else(system_host_name);
        let console = config.console_url.as_ref().map(|u| u.to_string()).or(console);
        let done = Arc::new(Notify::new());
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for d in &config.destinations {
            let destination = Arc::new(d.clone());
            let stats = Arc::new(Stats::default());
            let (tx, rx) = mpsc::channel(d.queue);
            let sender = Sender { host: host.clone(), destination: d.name.clone() };
            let worker = Worker {
                destination: destination.clone(),
                client: client(d),
                sender,
                stats: stats.clone(),
                done: done.clone(),
            };
            workers.push(tokio::spawn(worker.run(rx)));
            queues.push(Queue { name: d.name.clone(), destination, tx, stats });
        }
        Notifier(Arc::new(Inner {
            host,
            queues,
            transitions: Mutex::new(Transitions::new(console)),
            degraded: Mutex::new(BTreeMap::new()),
            done,
            workers,
        }))
    }

    /// The host name notifications carry.
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// Queues `n` for every destination that wants it, never waiting: a
    /// full queue drops it for that destination (logged, counted).
    pub fn notify(&self, n: Notification) {
        let n = Arc::new(n);
        for q in &self.0.queues {
            if !q.destination.wants(n.event) {
                continue;
            }
            q.stats.pending.fetch_add(1, Ordering::SeqCst);
            if q.tx.try_send(n.clone()).is_err() {
                q.stats.pending.fetch_sub(1, Ordering::SeqCst);
                q.stats.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(NOTIFICATIONS_DROPPED, "destination" => q.name.clone()).increment(1);
                tracing::warn!(
                    destination = q.name.as_str(),
                    event = n.event.key(),
                    "notification dropped: the destination's queue is full (its receiver is slow or down)"
                );
                self.0.done.notify_waiters();
            }
        }
    }

    /// A tap for [`crate::audit::AuditLog::with_tap`]: every incident
    /// transition a human is told about is queued.
    pub fn audit_tap(&self) -> impl Fn(&AuditRecord) + Send + Sync + 'static {
        let me = self.clone();
        move |record| {
            let n = me.0.transitions.lock().unwrap_or_else(|e| e.into_inner()).observe(record);
            if let Some(n) = n {
                me.notify(n);
            }
        }
    }

    /// Reports a component's health at `now`: `Err(why)` is failing, `Ok`
    /// works. Only changes are told: the first failure, then the recovery.
    pub fn component(&self, component: Component, now: Timestamp, health: Result<(), String>) {
        let mut degraded = self.0.degraded.lock().unwrap_or_else(|e| e.into_inner());
        let n = match (health, degraded.get(component.key()).copied()) {
            (Err(why), None) => {
                degraded.insert(component.key(), now);
                Notification::degraded(component, now, Some(why))
            }
            (Ok(()), Some(since)) => {
                degraded.remove(component.key());
                Notification { opened_at: Some(since), ..Notification::degraded(component, now, None) }
            }
            _ => return,
        };
        drop(degraded);
        self.notify(n);
    }

    /// Each destination's counts so far, by name.
    pub fn counts(&self) -> Vec<(String, Counts)> {
        self.0
            .queues
            .iter()
            .map(|q| {
                let s = &q.stats;
                let c = Counts {
                    sent: s.sent.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    dropped: s.dropped.load(Ordering::Relaxed),
                };
                (q.name.clone(), c)
            })
            .collect()
    }

    /// Waits until every queued notification was sent or given up on, at
    /// most `grace` (the end of a watch: what the last incident said still
    /// goes out). Returns whether everything was.
    pub async fn flush(&self, grace: Duration) -> bool {
        let idle = || self.0.queues.iter().all(|q| q.stats.pending.load(Ordering::SeqCst) == 0);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let woken = self.0.done.notified();
            if idle() {
                return true;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return idle();
            }
        }
    }
}

/// The HTTP client of one destination: its timeout, no redirects (a 3xx
/// is a failure: a receiver is configured by its exact URL).
fn client(d: &Destination) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(d.timeout)
        .connect_timeout(d.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("opsguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The body `destination` gets for `n`.
pub fn body(destination: &Destination, n: &Notification, sender: &Sender) -> Value {
    match destination.kind {
        DestinationKind::Webhook => payload::webhook(n, sender),
        DestinationKind::Slack => payload::slack(n, sender),
        DestinationKind::Alertmanager => payload::alertmanager(n, sender, destination.expire_after),
    }
}

/// Why one try failed, and whether another may succeed.
#[derive(Debug)]
struct TryError {
    message: String,
    retry: bool,
}

/// One POST. A 2xx is success; a connection error, a timeout, 408, 429 or
/// a 5xx may pass on a later try; any other answer will not. Errors never
/// quote the URL (a Slack URL is a secret).
async fn post(client: &reqwest::Client, d: &Destination, body: &Value) -> Result<(), TryError> {
    let response = client.post(d.url.clone()).headers(d.headers.clone()).json(body).send().await;
    match response {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            let text = r.text().await.unwrap_or_default();
            let text = crate::redact::printable_line(&text, 200);
            Err(TryError { message: format!("HTTP {status}: {text}"), retry })
        }
        Err(e) => Err(TryError { message: describe(e), retry: true }),
    }
}

/// A request error with its causes (`error sending request: … Connection
/// refused`), without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

struct Worker {
    destination: Arc<Destination>,
    client: reqwest::Client,
    sender: Sender,
    stats: Arc<Stats>,
    done: Arc<Notify>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Notification>>) {
        while let Some(n) = rx.recv().await {
            let result = self.deliver(&n).await;
            let name = self.destination.name.clone();
            match result {
                Ok(tries) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    counter!(NOTIFICATIONS, "destination" => name, "result" => "sent").increment(1);
                    tracing::debug!(
                        destination = self.destination.name.as_str(),
                        event = n.event.key(),
                        tries,
                        "notification sent"
                    );
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    counter!(NOTIFICATIONS, "destination" => name, "result" => "failed").increment(1);
                    tracing::error!(
                        destination = self.destination.name.as_str(),
                        event = n.event.key(),
                        error = %printable(&e.message),
                        "notification not delivered"
                    );
                }
            }
            self.stats.pending.fetch_sub(1, Ordering::SeqCst);
            self.done.notify_waiters();
        }
    }

    /// Tries up to the destination's `attempts`, waiting `backoff`, then
    /// twice as long each time (at most [`MAX_BACKOFF`]); returns the tries
    /// it took.
    async fn deliver(&self, n: &Notification) -> Result<u32, TryError> {
        let d = &self.destination;
        let body = body(d, n, &self.sender);
        let mut wait = d.backoff;
        let mut tried = 0;
        loop {
            tried += 1;
            match post(&self.client, d, &body).await {
                Ok(()) => return Ok(tried),
                Err(e) if !e.retry || tried >= d.attempts => {
                    return Err(TryError { message: format!("after {tried} tries: {}", e.message), ..e });
                }
                Err(e) => {
                    tracing::warn!(
                        destination = d.name.as_str(),
                        event = n.event.key(),
                        try_ = tried,
                        error = %printable(&e.message),
                        "notification failed; retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// One destination's answer to `opsguard notify test`.
#[derive(Debug)]
pub struct TestResult {
    /// The destination.
    pub name: String,
    /// Its kind.
    pub kind: DestinationKind,
    /// `Err` with why.
    pub result: Result<(), String>,
}

/// Sends a test notification to every destination of `config` at once,
/// one try each (whatever the destination's events), and says how each went.
pub async fn send_test(config: &NotifyConfig, now: Timestamp) -> Vec<TestResult> {
    let host = config.host.clone().unwrap_or_else(system_host_name);
    let n = Notification::test(now);
    let tries = config.destinations.iter().map(|d| {
        let sender = Sender { host: host.clone(), destination: d.name.clone() };
        let body = body(d, &n, &sender);
        async move {
            let result = post(&client(d), d, &body).await.map_err(|e| e.message);
            TestResult { name: d.name.clone(), kind: d.kind, result }
        }
    });
    futures_util::future::join_all(tries).await
}
