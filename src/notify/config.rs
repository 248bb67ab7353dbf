//! The notify file (`watch --notify FILE`): where OpsGuard tells a human,
//! as `[[notify]]` tables, read and validated once at start so that a typo
//! is an error before the watch begins, not a notification lost later.
//!
//! ```toml
//! host = "db-host-1"                         # optional: the name notifications give this host
//! console_url = "https://ops.example:8990"   # optional: the console's address as humans reach it
//!
//! [[notify]]
//! name = "ops-hook"
//! kind = "webhook"                           # webhook | slack | alertmanager
//! url = "https://hooks.example/opsguard"     # or url_env = "VARIABLE" holding it
//! events = ["incident_opened", "resolved"]   # default: every event
//! headers = { Authorization = "Bearer abc" }
//! timeout = "10s"
//! ```
//!
//! Kept apart from the rules: the rules are the core's data; destinations,
//! secrets in URLs and HTTP settings are the shell's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// What a destination can be told about. `Test` is only ever sent by
/// `opsguard notify test` and passes every filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An alarm opened an incident.
    IncidentOpened,
    /// A risky action waits for a human's approval.
    ApprovalRequested,
    /// The incident ended without a fix: a human takes over (a stop, or
    /// shadow mode's withheld action).
    StoppedForHuman,
    /// The incident ended with the service verified running.
    Resolved,
    /// OpsGuard itself is degraded (event stream lost, audit log failing),
    /// or has recovered from it.
    Degraded,
    /// `opsguard notify test`.
    #[serde(skip_deserializing)]
    Test,
}

impl EventKind {
    /// The events a file may name, in the order they happen.
    pub const FILTERABLE: [EventKind; 5] = [
        EventKind::IncidentOpened,
        EventKind::ApprovalRequested,
        EventKind::StoppedForHuman,
        EventKind::Resolved,
        EventKind::Degraded,
    ];

    /// Its name in the file, the payload and metric labels.
    pub fn key(self) -> &'static str {
        match self {
            EventKind::IncidentOpened => "incident_opened",
            EventKind::ApprovalRequested => "approval_requested",
            EventKind::StoppedForHuman => "stopped_for_human",
            EventKind::Resolved => "resolved",
            EventKind::Degraded => "degraded",
            EventKind::Test => "test",
        }
    }
}

/// The kind of receiver, which decides the request's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// Any HTTP endpoint: the versioned JSON payload.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": …}`).
    Slack,
    /// Prometheus Alertmanager's `POST /api/v2/alerts`.
    Alertmanager,
}

impl DestinationKind {
    /// Its name in the file.
    pub fn key(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "webhook",
            DestinationKind::Slack => "slack",
            DestinationKind::Alertmanager => "alertmanager",
        }
    }
}

/// Defaults, also in the README.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_QUEUE: usize = 64;
const DEFAULT_ATTEMPTS: u32 = 5;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_EXPIRE: Duration = Duration::from_secs(4 * 3600);

/// One destination, validated.
#[derive(Clone, Debug)]
pub struct Destination {
    /// Unique in the file; the `destination` label of the metrics and the
    /// name logs give it (the URL may hold a secret and is never logged).
    pub name: String,
    /// Its kind.
    pub kind: DestinationKind,
    /// Where requests go (for Alertmanager, its `/api/v2/alerts`).
    pub url: Url,
    /// The events it receives.
    pub events: BTreeSet<EventKind>,
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Per request, connection included.
    pub timeout: Duration,
    /// Notifications waiting for this destination; beyond, new ones are
    /// dropped (and counted) rather than wait.
    pub queue: usize,
    /// Tries per notification, the first included.
    pub attempts: u32,
    /// The wait before the second try, doubled for each next one (at most
    /// [`MAX_BACKOFF`]).
    pub backoff: Duration,
    /// Alertmanager: how long an alert stays firing with no word from
    /// OpsGuard (an open incident, one stopped for a human, a degradation).
    pub expire_after: Duration,
}

/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Destination {
    /// Whether it receives `event`.
    pub fn wants(&self, event: EventKind) -> bool {
        event == EventKind::Test || self.events.contains(&event)
    }
}

/// The notify file, validated.
#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {
    /// The host name notifications carry (default: the system's).
    pub host: Option<String>,
    /// The console's base URL as humans reach it, for approval links
    /// (default: the address it listens on).
    pub console_url: Option<Url>,
    /// The destinations, in file order.
    pub destinations: Vec<Destination>,
}

/// Why a notify file was refused: the file, the place when known, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for NotifyConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for NotifyConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    host: Option<Spanned<String>>,
    console_url: Option<Spanned<String>>,
    #[serde(default)]
    notify: Vec<Spanned<DestinationSchema>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationSchema {
    name: Option<Spanned<String>>,
    kind: DestinationKind,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    events: Option<Vec<EventKind>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    timeout: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
    attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    expire_after: Option<Spanned<String>>,
}

/// Reads and validates the notify file at `path`; `env` looks up `url_env`
/// variables (the process environment in `watch`).
pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<NotifyConfig, NotifyConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| NotifyConfigError {
        file: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    })?;
    parse(&text, path, env)
}

/// [`load`] on text already read.
pub fn parse(text: &str, file: &Path, env: impl Fn(&str) -> Option<String>) -> Result<NotifyConfig, NotifyConfigError> {
    let at = |span: std::ops::Range<usize>, message: String| NotifyConfigError {
        file: file.to_path_buf(),
        line: Some(text[..span.start.min(text.len())].matches('\n').count() + 1),
        message,
    };
    let schema: FileSchema = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span, e.message().to_string()),
        None => NotifyConfigError { file: file.to_path_buf(), line: None, message: e.message().to_string() },
    })?;
    let host = match schema.host {
        Some(h) if h.get_ref().trim().is_empty() || h.get_ref().chars().any(char::is_control) => {
            return Err(at(h.span(), "host: must be a non-empty line of text".into()));
        }
        Some(h) => Some(h.into_inner()),
        None => None,
    };
    let console_url = match schema.console_url {
        Some(u) => Some(http_url(u.get_ref()).map_err(|m| at(u.span(), format!("console_url: {m}")))?),
        None => None,
    };
    if schema.notify.is_empty() {
        return Err(NotifyConfigError {
            file: file.to_path_buf(),
            line: None,
            message: "no [[notify]] table: name at least one destination".into(),
        });
    }
    let mut destinations: Vec<Destination> = Vec::new();
    for (i, table) in schema.notify.into_iter().enumerate() {
        let table_span = table.span();
        let d = table.into_inner();
        let name = match &d.name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref().len() <= 64
                    && n.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(at(n.span(), "name: 1 to 64 letters, digits, '-', '_' or '.'".into()));
                }
                n.get_ref().clone()
            }
            None => format!("{}-{}", d.kind.key(), i + 1),
        };
        if destinations.iter().any(|o| o.name == name) {
            let span = d.name.as_ref().map_or(table_span.clone(), |n| n.span());
            return Err(at(span, format!("name: {name:?} is used by an earlier [[notify]] table")));
        }
        let err = |span: std::ops::Range<usize>, m: String| at(span, format!("[[notify]] {name:?}: {m}"));
        let url_text = match (&d.url, &d.url_env) {
            (Some(u), None) => u.get_ref().clone(),
            (None, Some(var)) => match env(var.get_ref()) {
                Some(v) if !v.is_empty() => v,
                _ => return Err(err(var.span(), format!("url_env: the variable {:?} is not set", var.get_ref()))),
            },
            (Some(u), Some(_)) => return Err(err(u.span(), "give url or url_env, not both".into())),
            (None, None) => return Err(err(table_span, "url (or url_env) is missing".into())),
        };
        let url_span = d.url.as_ref().or(d.url_env.as_ref()).map(|s| s.span()).unwrap_or(table_span.clone());
        // The variable's value is a secret: it is not quoted in the error.
        let mut url = http_url(&url_text).map_err(|m| err(url_span.clone(), format!("url: {m}")))?;
        if d.kind == DestinationKind::Alertmanager {
            url = alertmanager_alerts_url(url);
        }
        let events = match d.events {
            None => EventKind::FILTERABLE.into_iter().collect(),
            Some(list) if list.is_empty() => {
                return Err(err(
                    table_span,
                    "events: an empty list sends nothing; leave it out for every event".into(),
                ));
            }
            Some(list) => list.into_iter().collect(),
        };
        let mut headers = HeaderMap::new();
        for (key, value) in &d.headers {
            let hname = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| err(value.span(), format!("headers: {key:?} is not a header name")))?;
            let mut hvalue = HeaderValue::from_str(value.get_ref())
                .map_err(|_| err(value.span(), format!("headers: the value of {key:?} is not a header value")))?;
            hvalue.set_sensitive(true);
            headers.insert(hname, hvalue);
        }
        let duration = |v: &Option<Spanned<String>>, field: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) => match humantime::parse_duration(s.get_ref()) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(err(s.span(), format!("{field}: must be longer than zero"))),
                Err(e) => Err(err(s.span(), format!("{field}: {e} (e.g. \"10s\", \"1m\")"))),
            },
        };
        let int = |v: &Option<Spanned<i64>>, field: &str, min: i64, max: i64, default: i64| match v {
            None => Ok(default),
            Some(n) if (min..=max).contains(n.get_ref()) => Ok(*n.get_ref()),
            Some(n) => Err(err(n.span(), format!("{field}: must be from {min} to {max}"))),
        };
        if d.expire_after.is_some() && d.kind != DestinationKind::Alertmanager {
            let span = d.expire_after.as_ref().map(|s| s.span()).unwrap_or(table_span.clone());
            return Err(err(span, "expire_after: only for kind = \"alertmanager\"".into()));
        }
        destinations.push(Destination {
            kind: d.kind,
            url,
            events,
            headers,
            timeout: duration(&d.timeout, "timeout", DEFAULT_TIMEOUT)?,
            queue: int(&d.queue, "queue", 1, 10_000, DEFAULT_QUEUE as i64)? as usize,
            attempts: int(&d.attempts, "attempts", 1, 20, DEFAULT_ATTEMPTS as i64)? as u32,
            backoff: duration(&d.backoff, "backoff", DEFAULT_BACKOFF)?.min(MAX_BACKOFF),
            expire_after: duration(&d.expire_after, "expire_after", DEFAULT_EXPIRE)?,
            name,
        });
    }
    Ok(NotifyConfig { host, console_url, destinations })
}

/// An absolute http(s) URL with a host; nothing else is ever requested.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https are allowed, not {:?}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(url)
}

/// Alertmanager's alerts endpoint under `base` (which may name it already).
fn alertmanager_alerts_url(mut base: Url) -> Url {
    if base.path().trim_end_matches('/').ends_with("/api/v2/alerts") {
        return base;
    }
    let path = format!("{}/api/v2/alerts", base.path().trim_end_matches('/'));
    base.set_path(&path);
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<NotifyConfig, NotifyConfigError> {
        parse(text, Path::new("notify.toml"), |var| (var == "HOOK").then(|| "https://secret.example/h".to_string()))
    }

    #[test]
    fn a_full_file_parses_with_defaults_where_left_out() {
        let c = parse_str(
            r#"
host = "db-host-1"
console_url = "https://ops.example:8990/"

[[notify]]
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
events = ["incident_opened", "resolved"]
headers = { Authorization = "Bearer abc" }
timeout = "3s"
queue = 8
attempts = 2
backoff = "250ms"

[[notify]]
name = "chat"
kind = "slack"
url_env = "HOOK"

[[notify]]
kind = "alertmanager"
url = "http://127.0.0.1:9093"
expire_after = "1h"
"#,
        )
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("db-host-1"));
        assert_eq!(c.console_url.unwrap().as_str(), "https://ops.example:8990/");
        let [w, s, a] = &c.destinations[..] else { panic!("{:?}", c.destinations) };
        assert_eq!((w.name.as_str(), w.kind), ("webhook-1", DestinationKind::Webhook));
        assert_eq!(w.events, [EventKind::IncidentOpened, EventKind::Resolved].into_iter().collect::<BTreeSet<_>>());
        assert!(w.wants(EventKind::Test) && !w.wants(EventKind::Degraded));
        assert_eq!(w.headers["authorization"], "Bearer abc");
        assert_eq!(
            (w.timeout, w.queue, w.attempts, w.backoff),
            (Duration::from_secs(3), 8, 2, Duration::from_millis(250))
        );
        assert_eq!((s.name.as_str(), s.url.as_str()), ("chat", "https://secret.example/h"));
        assert_eq!(s.events.len(), 5);
        assert_eq!((s.timeout, s.queue, s.attempts), (DEFAULT_TIMEOUT, DEFAULT_QUEUE, DEFAULT_ATTEMPTS));
        assert_eq!(a.url.as_str(), "http://127.0.0.1:9093/api/v2/alerts");
        assert_eq!(a.expire_after, Duration::from_secs(3600));
    }

    #[test]
    fn an_alertmanager_url_naming_the_endpoint_is_kept() {
        for given in ["http://am:9093/api/v2/alerts", "http://am:9093/api/v2/alerts/"] {
            let c = parse_str(&format!("[[notify]]\nkind = \"alertmanager\"\nurl = \"{given}\"\n")).unwrap();
            assert_eq!(c.destinations[0].url.path().trim_end_matches('/'), "/api/v2/alerts");
        }
        let c = parse_str("[[notify]]\nkind = \"alertmanager\"\nurl = \"http://am/prefix/\"\n").unwrap();
        assert_eq!(c.destinations[0].url.as_str(), "http://am/prefix/api/v2/alerts");
    }

    #[test]
    fn mistakes_are_refused_with_the_line_and_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nretries = 3\n",
                "notify.toml:4: unknown field `retries`",
            ),
            ("[[notify]]\nkind = \"pager\"\nurl = \"http://x\"\n", "notify.toml:2: unknown variant `pager`"),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"file:///etc/passwd\"\n",
                "notify.toml:3: [[notify]] \"webhook-1\": url: only http and https",
            ),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"ftp://x/\"\n", "only http and https are allowed, not \"ftp\""),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"not a url\"\n", "url: not a URL"),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nevents = [\"resolved\", \"exploded\"]\n",
                "notify.toml:4: unknown variant `exploded`",
            ),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nevents = [\"test\"]\n", "unknown variant `test`"),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nevents = []\n", "events: an empty list"),
            ("[[notify]]\nkind = \"webhook\"\n", "url (or url_env) is missing"),
            (
                "[[notify]]\nkind = \"webhook\"\nurl_env = \"NOPE\"\n",
                "notify.toml:3: [[notify]] \"webhook-1\": url_env: the variable \"NOPE\" is not set",
            ),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nurl_env = \"HOOK\"\n", "not both"),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\ntimeout = \"soon\"\n",
                "notify.toml:4: [[notify]] \"webhook-1\": timeout:",
            ),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nqueue = 0\n", "queue: must be from 1 to 10000"),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nheaders = { \"bad name\" = \"v\" }\n",
                "is not a header name",
            ),
            (
                "[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\nheaders = { X = \"a\\nb\" }\n",
                "is not a header value",
            ),
            (
                "[[notify]]\nkind = \"slack\"\nurl = \"http://x\"\nexpire_after = \"1h\"\n",
                "only for kind = \"alertmanager\"",
            ),
            ("[[notify]]\nname = \"a b\"\nkind = \"slack\"\nurl = \"http://x\"\n", "notify.toml:2: name: 1 to 64"),
            (
                "[[notify]]\nname = \"a\"\nkind = \"slack\"\nurl = \"http://x\"\n[[notify]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://y\"\n",
                "notify.toml:6: name: \"a\" is used by an earlier",
            ),
            (
                "console_url = \"javascript:alert(1)\"\n[[notify]]\nkind = \"slack\"\nurl = \"http://x\"\n",
                "notify.toml:1: console_url: only http and https",
            ),
            ("host = \"\"\n[[notify]]\nkind = \"slack\"\nurl = \"http://x\"\n", "host: must be a non-empty"),
            ("host = \"x\"\n", "no [[notify]] table"),
            ("[[notify]\n", "notify.toml:1:"),
        ];
        for (text, want) in cases {
            let e = parse_str(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}\n  gave {e:?}\n  want {want:?}");
        }
    }

    #[test]
    fn the_secret_url_of_a_variable_is_not_quoted_in_errors() {
        let e = parse("[[notify]]\nkind = \"slack\"\nurl_env = \"HOOK\"\n", Path::new("n.toml"), |_| {
            Some("gopher://hooks.example/T000/SECRET".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("only http and https") && !e.contains("SECRET"), "{e}");
    }
}
