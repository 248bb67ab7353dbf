//! Where the LLM lives and how OpsGuard talks to it: [`LlmConfig`], loaded
//! from an `llm.toml` file (an `[llm]` table) and/or command-line flags, and
//! validated once with errors that name the file, the line and the field.
//!
//! The API key itself is never part of the configuration: only the *name*
//! of the environment variable that holds it ([`LlmConfig::api_key_env`]).
//! The key is read by [`ApiKey::from_env`] and its `Debug` prints
//! `[REDACTED]`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Default answer budget: enough for `{"action": …, "reason": …}`.
pub const DEFAULT_MAX_TOKENS: u32 = 200;
/// Default time the whole HTTP exchange may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A consultation's time beyond its questions: reading the container's
/// state for the facts.
pub const CONSULTATION_SLACK: Duration = Duration::from_secs(10);
/// Default number of log lines sent (the last ones).
pub const DEFAULT_MAX_LOG_LINES: usize = 30;
/// Default total bytes of log text sent.
pub const DEFAULT_MAX_LOG_BYTES: usize = 3000;
/// Most log lines any configuration sends.
pub const MAX_LOG_LINES: usize = 200;
/// Most bytes of log text any configuration sends.
pub const MAX_LOG_BYTES: usize = 65536;

/// How to reach an OpenAI-compatible chat-completions endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmConfig {
    /// The server's root, e.g. `http://127.0.0.1:11434` (Ollama),
    /// `http://127.0.0.1:8080` (llama.cpp) or `https://api.openai.com`.
    /// A trailing `/` or `/v1` is accepted and dropped: requests go to
    /// `{base_url}/v1/chat/completions`.
    pub base_url: String,
    /// The model name sent with each request.
    pub model: String,
    /// The name of the environment variable holding the API key, if the
    /// server needs one. Never the key itself.
    pub api_key_env: Option<String>,
    /// How long one consultation may take, connection included.
    pub timeout: Duration,
    /// The most tokens the model may generate.
    pub max_tokens: u32,
    /// How many of the last log lines go into the prompt.
    pub max_log_lines: usize,
    /// How many bytes of log text, at most, go into the prompt.
    pub max_log_bytes: usize,
    /// Allows plain `http://` to a host that is not loopback (the prompt
    /// carries incident evidence and the key a bearer token): off unless the
    /// operator asks with `allow_http = true` or `--llm-allow-http`.
    pub allow_http: bool,
}

impl LlmConfig {
    /// A configuration with the defaults for everything but the endpoint
    /// and the model. Call [`LlmConfig::validate`] before use.
    pub fn new(base_url: &str, model: &str) -> LlmConfig {
        LlmConfig {
            base_url: normalise_base_url(base_url),
            model: model.to_string(),
            api_key_env: None,
            timeout: DEFAULT_TIMEOUT,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_log_lines: DEFAULT_MAX_LOG_LINES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            allow_http: false,
        }
    }

    /// How long a whole consultation may take: every question it may ask
    /// ([`super::MAX_ASKS`]) at [`LlmConfig::timeout`], and a few seconds
    /// for OpsGuard's own look at the container. Never less than the
    /// incident machine's default.
    pub fn consultation_deadline(&self) -> Duration {
        let asks = u32::try_from(super::MAX_ASKS).unwrap_or(u32::MAX);
        (self.timeout.saturating_mul(asks) + CONSULTATION_SLACK)
            .max(opsguard_core::incident::Timeouts::default().advice)
    }

    /// The URL requests are posted to.
    pub fn endpoint(&self) -> String {
        format!("{}/v1/chat/completions", normalise_base_url(&self.base_url))
    }

    /// Whether the endpoint is on this machine (then no proxy is used): its
    /// host, as the HTTP client parses it, is an IP address in 127.0.0.0/8,
    /// `::1` (or `::ffff:127.x.y.z`), or the name `localhost`, which
    /// RFC 6761 reserves for loopback and the client pins to 127.0.0.1 and
    /// `::1` ([`LlmConfig::pinned_localhost`]). A name that merely starts
    /// with `127.` (`127.evil.com`) is not loopback.
    pub fn is_loopback(&self) -> bool {
        reqwest::Url::parse(&self.base_url).is_ok_and(|u| url_is_loopback(&u))
    }

    /// When the host is the name `localhost`: the addresses the HTTP client
    /// must use for it instead of asking the resolver (`/etc/hosts` could
    /// send it anywhere), with the URL's port.
    pub fn pinned_localhost(&self) -> Option<[std::net::SocketAddr; 2]> {
        let u = reqwest::Url::parse(&self.base_url).ok()?;
        if !matches!(url_host(&u), Some(UrlHost::Name(n)) if n == "localhost") {
            return None;
        }
        let port = u.port_or_known_default()?;
        Some([
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ])
    }

    /// Checks every field; the error names the field (no file or line:
    /// see [`LlmConfig::from_toml_str`] for those).
    pub fn validate(&self) -> Result<(), LlmConfigError> {
        let fail = |field: &str, message: String| Err(LlmConfigError::field(field, message));
        if let Err(m) = check_base_url(&self.base_url) {
            return fail("llm.base_url", m);
        }
        if let Err(m) = check_transport(&self.base_url, self.allow_http) {
            return fail("llm.base_url", m);
        }
        if self.model.trim().is_empty() {
            return fail("llm.model", "must not be empty".into());
        }
        if let Some(var) = &self.api_key_env
            && let Err(m) = check_env_name(var)
        {
            return fail("llm.api_key_env", m);
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > Duration::from_secs(600) {
            return fail("llm.timeout_secs", format!("{}s is outside 1..=600", self.timeout.as_secs_f64()));
        }
        if !(16..=4096).contains(&self.max_tokens) {
            return fail("llm.max_tokens", format!("{} is outside 16..=4096", self.max_tokens));
        }
        if !(1..=MAX_LOG_LINES).contains(&self.max_log_lines) {
            return fail("llm.max_log_lines", format!("{} is outside 1..={MAX_LOG_LINES}", self.max_log_lines));
        }
        if !(256..=MAX_LOG_BYTES).contains(&self.max_log_bytes) {
            return fail("llm.max_log_bytes", format!("{} is outside 256..={MAX_LOG_BYTES}", self.max_log_bytes));
        }
        Ok(())
    }

    /// Loads an `llm.toml` file: an `[llm]` table with `base_url`, `model`
    /// and optionally `api_key_env`, `timeout_secs`, `max_tokens`,
    /// `max_log_lines`, `max_log_bytes`, `allow_http`.
    pub fn load(path: &Path) -> Result<LlmConfig, LlmConfigError> {
        LlmConfig::load_with(path, false)
    }

    /// [`LlmConfig::load`], with `--llm-allow-http` already given on the
    /// command line (so a file with a plain-http URL is accepted).
    fn load_with(path: &Path, allow_http: bool) -> Result<LlmConfig, LlmConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| LlmConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        LlmConfig::parse_toml(&text, path, allow_http)
    }

    /// Parses and validates `llm.toml` text; `file` is only used in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<LlmConfig, LlmConfigError> {
        LlmConfig::parse_toml(text, file, false)
    }

    fn parse_toml(text: &str, file: &Path, allow_http: bool) -> Result<LlmConfig, LlmConfigError> {
        let at = |span: Option<Range<usize>>, field: Option<&str>, message: String| LlmConfigError {
            file: Some(file.to_path_buf()),
            line: span.map(|s| line_of(text, s.start)),
            field: field.map(str::to_string),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| at(e.span(), None, e.message().to_string()))?;
        let raw = raw.llm;
        let int = |v: &Spanned<i64>, field: &str, range: Range<i64>| -> Result<i64, LlmConfigError> {
            let n = *v.get_ref();
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(at(Some(v.span()), Some(field), format!("{n} is outside {}..={}", range.start, range.end - 1)))
            }
        };
        let mut config = LlmConfig::new(raw.base_url.get_ref(), raw.model.get_ref());
        if let Err(m) = check_base_url(raw.base_url.get_ref()) {
            return Err(at(Some(raw.base_url.span()), Some("llm.base_url"), m));
        }
        if raw.model.get_ref().trim().is_empty() {
            return Err(at(Some(raw.model.span()), Some("llm.model"), "must not be empty".into()));
        }
        if let Some(var) = &raw.api_key_env {
            check_env_name(var.get_ref()).map_err(|m| at(Some(var.span()), Some("llm.api_key_env"), m))?;
            config.api_key_env = Some(var.get_ref().clone());
        }
        if let Some(v) = &raw.timeout_secs {
            config.timeout = Duration::from_secs(int(v, "llm.timeout_secs", 1..601)? as u64);
        }
        if let Some(v) = &raw.max_tokens {
            config.max_tokens = int(v, "llm.max_tokens", 16..4097)? as u32;
        }
        if let Some(v) = &raw.max_log_lines {
            config.max_log_lines = int(v, "llm.max_log_lines", 1..201)? as usize;
        }
        if let Some(v) = &raw.max_log_bytes {
            config.max_log_bytes = int(v, "llm.max_log_bytes", 256..65537)? as usize;
        }
        config.allow_http = allow_http || raw.allow_http.unwrap_or(false);
        if let Err(m) = check_transport(raw.base_url.get_ref(), config.allow_http) {
            return Err(at(Some(raw.base_url.span()), Some("llm.base_url"), m));
        }
        config.validate().map_err(|mut e| {
            e.file = Some(file.to_path_buf());
            e
        })?;
        Ok(config)
    }

    /// Takes the LLM flags out of `args`, leaving the others in place:
    /// `--llm-config FILE` (an `llm.toml`), then `--llm-url URL`,
    /// `--llm-model NAME`, `--llm-api-key-env VAR`, `--llm-timeout SECS`,
    /// `--llm-max-tokens N`, which override the file, and the switch
    /// `--llm-allow-http` (plain http beyond loopback). `Ok(None)` when
    /// neither a file nor a URL was given: no LLM, unknown causes escalate.
    pub fn from_args(args: &mut Vec<String>) -> Result<Option<LlmConfig>, LlmConfigError> {
        let mut flags = std::collections::BTreeMap::new();
        let mut allow_http = false;
        let mut i = 0;
        while i < args.len() {
            let name = args[i].clone();
            if name == "--llm-allow-http" {
                args.remove(i);
                allow_http = true;
                continue;
            }
            let known =
                ["--llm-config", "--llm-url", "--llm-model", "--llm-api-key-env", "--llm-timeout", "--llm-max-tokens"];
            let (flag, inline) = match name.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (name.clone(), None),
            };
            if !known.contains(&flag.as_str()) {
                i += 1;
                continue;
            }
            args.remove(i);
            let value = match inline {
                Some(v) => v,
                None if i < args.len() => args.remove(i),
                None => return Err(LlmConfigError::field(&flag, "needs a value".into())),
            };
            flags.insert(flag, value);
        }
        let mut config = match flags.get("--llm-config") {
            Some(path) => LlmConfig::load_with(Path::new(path), allow_http)?,
            None => match (flags.get("--llm-url"), flags.get("--llm-model")) {
                (None, None) if flags.is_empty() && !allow_http => return Ok(None),
                (None, _) => {
                    return Err(LlmConfigError::field("--llm-url", "is required for the other --llm-* flags".into()));
                }
                (Some(_), None) => {
                    return Err(LlmConfigError::field("--llm-model", "is required with --llm-url".into()));
                }
                (Some(url), Some(model)) => LlmConfig::new(url, model),
            },
        };
        if let Some(url) = flags.get("--llm-url") {
            config.base_url = normalise_base_url(url);
        }
        if let Some(model) = flags.get("--llm-model") {
            config.model = model.clone();
        }
        if let Some(var) = flags.get("--llm-api-key-env") {
            config.api_key_env = Some(var.clone());
        }
        let number = |flag: &str| -> Result<Option<u64>, LlmConfigError> {
            flags
                .get(flag)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| LlmConfigError::field(flag, format!("`{v}` is not a whole number")))
                })
                .transpose()
        };
        if let Some(secs) = number("--llm-timeout")? {
            config.timeout = Duration::from_secs(secs);
        }
        if let Some(n) = number("--llm-max-tokens")? {
            config.max_tokens = u32::try_from(n).unwrap_or(u32::MAX);
        }
        config.allow_http |= allow_http;
        config.validate()?;
        Ok(Some(config))
    }
}

/// An API key read from the environment. Its `Debug` and `Display` never
/// show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    /// Reads the key from the variable `var`; an error names the variable,
    /// never its value.
    pub fn from_env(var: &str) -> Result<ApiKey, LlmConfigError> {
        match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Ok(ApiKey(k.trim().to_string())),
            Ok(_) => Err(LlmConfigError::field("llm.api_key_env", format!("environment variable {var} is empty"))),
            Err(_) => Err(LlmConfigError::field("llm.api_key_env", format!("environment variable {var} is not set"))),
        }
    }

    /// The key, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// An LLM configuration that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmConfigError {
    /// The file, when it came from one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (`llm.timeout_secs`) or flag (`--llm-url`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl LlmConfigError {
    fn field(field: &str, message: String) -> LlmConfigError {
        LlmConfigError { file: None, line: None, field: Some(field.to_string()), message }
    }
}

impl fmt::Display for LlmConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for LlmConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    llm: RawLlm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    base_url: Spanned<String>,
    model: Spanned<String>,
    api_key_env: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<i64>>,
    max_tokens: Option<Spanned<i64>>,
    max_log_lines: Option<Spanned<i64>>,
    max_log_bytes: Option<Spanned<i64>>,
    allow_http: Option<bool>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn normalise_base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    url.strip_suffix("/v1").unwrap_or(url).to_string()
}

fn check_base_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}` is not a URL: expected http://HOST[:PORT] or https://HOST[:PORT]"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme `{scheme}` is not http or https"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err("must not carry credentials: put the key in the variable named by api_key_env".into());
    }
    if rest.contains(['?', '#']) {
        return Err("must not have a query or fragment".into());
    }
    Ok(())
}

/// A URL's host as the HTTP client will use it.
enum UrlHost<'a> {
    Ip(std::net::IpAddr),
    Name(&'a str),
}

/// The host of `u`. The URL parser has already normalised it: IPv4 in any
/// spelling (`127.1`, `0x7f.1`, `2130706433`) comes out dotted-decimal, IPv6
/// in brackets, and names lower-cased.
fn url_host(u: &reqwest::Url) -> Option<UrlHost<'_>> {
    let h = u.host_str()?;
    if let Some(v6) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().ok().map(|ip| UrlHost::Ip(ip.into()));
    }
    match h.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => Some(UrlHost::Ip(ip.into())),
        Err(_) => Some(UrlHost::Name(h)),
    }
}

fn url_is_loopback(u: &reqwest::Url) -> bool {
    match url_host(u) {
        Some(UrlHost::Ip(std::net::IpAddr::V4(ip))) => ip.is_loopback(),
        Some(UrlHost::Ip(std::net::IpAddr::V6(ip))) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        // RFC 6761 §6.3: `localhost` is loopback, and the client is pinned to
        // it (`pinned_localhost`); no other name is trusted to be.
        Some(UrlHost::Name(n)) => n == "localhost",
        None => false,
    }
}

/// Plain http only to loopback, unless the operator allowed it.
fn check_transport(url: &str, allow_http: bool) -> Result<(), String> {
    let u = reqwest::Url::parse(url.trim()).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if u.scheme() == "http" && !allow_http && !url_is_loopback(&u) {
        return Err(format!(
            "plain http to {} would send incident evidence (and any API key) unencrypted: use https, \
             or allow it explicitly with `allow_http = true` / --llm-allow-http",
            u.host_str().unwrap_or("?")
        ));
    }
    Ok(())
}

fn check_env_name(var: &str) -> Result<(), String> {
    let ok = !var.is_empty()
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !var.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        // The value is not echoed: it may be a key pasted by mistake.
        Err("is not an environment variable name (the key itself never goes here)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[llm]
base_url = "http://127.0.0.1:11434/v1/"
model = "qwen2.5-coder:1.5b"
api_key_env = "OPSGUARD_LLM_KEY"
timeout_secs = 20
max_tokens = 100
"#;

    fn parse(text: &str) -> Result<LlmConfig, LlmConfigError> {
        LlmConfig::from_toml_str(text, Path::new("llm.toml"))
    }

    #[test]
    fn loads_a_good_file_and_normalises_the_url() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:11434");
        assert_eq!(c.endpoint(), "http://127.0.0.1:11434/v1/chat/completions");
        assert_eq!(c.model, "qwen2.5-coder:1.5b");
        assert_eq!(c.api_key_env.as_deref(), Some("OPSGUARD_LLM_KEY"));
        assert_eq!(c.timeout, Duration::from_secs(20));
        assert_eq!(c.max_tokens, 100);
        assert_eq!(c.max_log_lines, DEFAULT_MAX_LOG_LINES);
        assert!(c.is_loopback());
        assert!(!LlmConfig::new("https://api.openai.com/v1", "m").is_loopback());
        assert!(LlmConfig::new("http://[::1]:8080", "m").is_loopback());
        assert!(LlmConfig::new("http://localhost", "m").is_loopback());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse(&GOOD.replace("timeout_secs = 20", "timeout_secs = 0")).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(6), Some("llm.timeout_secs")));
        assert!(e.to_string().starts_with("llm.toml:6: field `llm.timeout_secs`"), "{e}");

        let e = parse(&GOOD.replace("max_tokens = 100", "max_tokenz = 100")).unwrap_err();
        assert_eq!(e.line, Some(7));
        assert!(e.message.contains("max_tokenz"), "{e}");

        let e = parse(&GOOD.replace("\"http://127.0.0.1:11434/v1/\"", "\"ftp://x\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(3), Some("llm.base_url")));

        let e = parse(&GOOD.replace("\"http://127.0.0.1:11434/v1/\"", "\"http://u:pw@h\"")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("llm.base_url"));

        let e = parse(&GOOD.replace("\"OPSGUARD_LLM_KEY\"", "\"sk-abc def\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(5), Some("llm.api_key_env")));
        assert!(!e.to_string().contains("sk-abc"), "a mistakenly pasted key is echoed: {e}");

        let e = parse("[llm]\nmodel = \"m\"\n").unwrap_err();
        assert!(e.message.contains("base_url"), "{e}");
    }

    #[test]
    fn flags_override_the_file_and_leave_other_args() {
        let mut args: Vec<String> = [
            "run",
            "--llm-url",
            "http://127.0.0.1:8089",
            "--llm-model=smol",
            "--llm-timeout",
            "5",
            "--rules",
            "r.toml",
        ]
        .map(String::from)
        .to_vec();
        let c = LlmConfig::from_args(&mut args).unwrap().unwrap();
        assert_eq!(args, ["run", "--rules", "r.toml"]);
        assert_eq!(c.endpoint(), "http://127.0.0.1:8089/v1/chat/completions");
        assert_eq!(c.model, "smol");
        assert_eq!(c.timeout, Duration::from_secs(5));

        let mut none: Vec<String> = vec!["run".into()];
        assert_eq!(LlmConfig::from_args(&mut none).unwrap(), None);

        let mut bad: Vec<String> =
            ["--llm-url", "http://127.0.0.1:1", "--llm-model", "m", "--llm-timeout", "soon"].map(String::from).to_vec();
        assert_eq!(LlmConfig::from_args(&mut bad).unwrap_err().field.as_deref(), Some("--llm-timeout"));
        let mut dangling: Vec<String> = vec!["--llm-url".into()];
        assert!(LlmConfig::from_args(&mut dangling).is_err());
        let mut no_model: Vec<String> = vec!["--llm-url".into(), "http://127.0.0.1:1".into()];
        assert_eq!(LlmConfig::from_args(&mut no_model).unwrap_err().field.as_deref(), Some("--llm-model"));
    }

    /// Issue 8 item 17: plain http only to a host that parses as loopback.
    #[test]
    fn plain_http_only_to_loopback_by_parsed_address() {
        let ok = |url: &str| LlmConfig::new(url, "m").validate().is_ok();
        for url in [
            "http://127.0.0.1:11434",
            "http://127.8.9.10",
            "http://[::1]:8080/v1",
            "http://[::ffff:127.0.0.1]:80",
            "http://localhost:8080",
            "http://LOCALHOST",
            // Other spellings of 127.0.0.1 that the HTTP client accepts.
            "http://127.1",
            "http://2130706433",
            "https://api.openai.com",
            "https://127.evil.com",
        ] {
            assert!(ok(url), "{url} refused");
        }
        for url in [
            "http://127.evil.com",
            "http://127.0.0.1.nip.io",
            "http://localhost.evil.com",
            "http://evil-localhost",
            "http://10.0.0.5:11434",
            "http://[::2]",
            "http://0.0.0.0",
            "http://llm.internal",
        ] {
            let e = LlmConfig::new(url, "m").validate().unwrap_err();
            assert_eq!(e.field.as_deref(), Some("llm.base_url"), "{url}: {e}");
            assert!(e.message.contains("--llm-allow-http"), "{url}: {e}");
            let mut allowed = LlmConfig::new(url, "m");
            allowed.allow_http = true;
            assert!(allowed.validate().is_ok(), "{url} refused despite allow_http");
        }
        assert!(!LlmConfig::new("http://127.evil.com", "m").is_loopback());
        assert!(!LlmConfig::new("http://127.0.0.1@evil.com", "m").is_loopback());
    }

    #[test]
    fn localhost_is_pinned_to_loopback_addresses() {
        let pins = LlmConfig::new("http://localhost:8089", "m").pinned_localhost().unwrap();
        assert!(pins.iter().all(|a| a.ip().is_loopback() && a.port() == 8089), "{pins:?}");
        assert_eq!(LlmConfig::new("http://127.0.0.1:1", "m").pinned_localhost(), None);
        assert_eq!(LlmConfig::new("https://localhost.evil.com", "m").pinned_localhost(), None);
    }

    #[test]
    fn plain_http_elsewhere_needs_the_file_field_or_the_flag() {
        let remote = GOOD.replace("http://127.0.0.1:11434/v1/", "http://llm.lan:11434");
        let e = parse(&remote).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(3), Some("llm.base_url")));
        let c = parse(&format!("{remote}allow_http = true\n")).unwrap();
        assert!(c.allow_http);

        let mut args: Vec<String> =
            ["--llm-url", "http://llm.lan:11434", "--llm-model", "m"].map(String::from).to_vec();
        assert_eq!(LlmConfig::from_args(&mut args).unwrap_err().field.as_deref(), Some("llm.base_url"));
        let mut args: Vec<String> = ["--llm-url", "http://llm.lan:11434", "--llm-allow-http", "--llm-model", "m", "x"]
            .map(String::from)
            .to_vec();
        assert!(LlmConfig::from_args(&mut args).unwrap().unwrap().allow_http);
        assert_eq!(args, ["x"]);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llm.toml");
        std::fs::write(&file, &remote).unwrap();
        let f = file.display().to_string();
        let mut args: Vec<String> = vec!["--llm-config".into(), f.clone()];
        assert!(LlmConfig::from_args(&mut args).is_err());
        let mut args: Vec<String> = vec!["--llm-config".into(), f, "--llm-allow-http".into()];
        assert!(LlmConfig::from_args(&mut args).unwrap().unwrap().allow_http);
    }

    #[test]
    fn api_key_debug_is_redacted() {
        let k = ApiKey::new("sk-very-secret-123".into());
        assert_eq!(format!("{k:?}"), "ApiKey([REDACTED])");
        assert!(ApiKey::from_env("OPSGUARD_SURELY_UNSET_VAR_4711").unwrap_err().message.contains("not set"));
    }

    #[test]
    fn a_consultation_has_time_for_every_question() {
        let mut c = LlmConfig::new("http://127.0.0.1:8089", "m");
        assert_eq!(c.consultation_deadline(), Duration::from_secs(70));
        c.timeout = Duration::from_secs(5);
        assert_eq!(c.consultation_deadline(), Duration::from_secs(60), "never below the default");
        c.timeout = Duration::from_secs(600);
        assert_eq!(c.consultation_deadline(), Duration::from_secs(1210));
    }
}
