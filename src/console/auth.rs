//! Who may see the console: the token, login sessions in an `HttpOnly`
//! cookie, the rate limits on wrong tokens, and the middleware that checks
//! every request and sets the headers that keep pages out of frames and caches.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::html::{login_html, refuse, refuse_login};
use super::{
    Console, ConsoleError, GLOBAL_BURST, GLOBAL_REFILL, LOGIN_BURST, LOGIN_REFILL, MAX_PEERS, MAX_SESSIONS,
    MIN_TOKEN_LEN, SESSION_COOKIE,
};
use crate::serve::OverTls;

pub(super) fn random_hex(bytes: usize) -> Result<String, ConsoleError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| ConsoleError("the operating system gave no random numbers".into()))?;
    Ok(hex::encode(buf))
}

pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Refuses a token that is short or that a cookie or header cannot carry as is.
pub(super) fn check_token(token: &str) -> Result<(), ConsoleError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConsoleError(format!("the token must be at least {MIN_TOKEN_LEN} characters")));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
        return Err(ConsoleError("the token may only hold letters, digits and - . _ ~".into()));
    }
    Ok(())
}

/// Refuses plain HTTP beyond loopback (the token and the session cookie
/// would cross the network in the clear) unless `insecure_http` says the
/// operator chose it.
pub fn check_listen(addr: SocketAddr, tls: bool, insecure_http: bool) -> Result<(), ConsoleError> {
    if !addr.ip().is_loopback() && !tls && !insecure_http {
        return Err(ConsoleError(format!(
            "listening on {addr} (not loopback) needs TLS: --tls-cert and --tls-key \
             (or --insecure-http to send the token in the clear)"
        )));
    }
    Ok(())
}

/// A fresh random token (256 bits, hex).
pub fn generate_token() -> Result<String, ConsoleError> {
    random_hex(32)
}

/// Writes `token` to `path` readable by its owner only (mode 0600): into a
/// new file with a random name beside it (created exclusively, so nothing
/// there is followed or reused), then renamed over `path` (which replaces a
/// symlink at `path` rather than writing through it). Returns the absolute
/// path.
pub fn write_token_file(path: &FsPath, token: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::path::absolute(path)?;
    let dir = path.parent().unwrap_or(FsPath::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = random_hex(8).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

/// The login sessions, by the SHA-256 of their id (a lookup then says
/// nothing about a guessed id's bytes).
pub(super) struct Sessions {
    pub(super) ttl: Duration,
    pub(super) live: HashMap<[u8; 32], Instant>,
}

enum SessionState {
    Live,
    Expired,
    Unknown,
}

pub(super) fn session_key(id: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

impl Sessions {
    fn create(&mut self, now: Instant) -> Result<String, ConsoleError> {
        let id = random_hex(32)?;
        self.live.retain(|_, until| *until > now);
        while self.live.len() >= MAX_SESSIONS {
            let Some(oldest) = self.live.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k) else { break };
            self.live.remove(&oldest);
        }
        self.live.insert(session_key(&id), now + self.ttl);
        Ok(id)
    }

    fn check(&mut self, id: &str, now: Instant) -> SessionState {
        let key = session_key(id);
        match self.live.get(&key) {
            Some(until) if *until > now => SessionState::Live,
            Some(_) => {
                self.live.remove(&key);
                SessionState::Expired
            }
            None => SessionState::Unknown,
        }
    }

    fn remove(&mut self, id: &str) {
        self.live.remove(&session_key(id));
    }
}

/// A token bucket of wrong guesses.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(burst), at: now }
    }

    fn refill(&mut self, burst: u32, every: Duration, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(f64::from(burst));
        self.at = now;
    }

    /// How long until one more try, if none is left.
    fn wait(&self, every: Duration) -> Option<Duration> {
        (self.tokens < 1.0).then(|| every.mul_f64(1.0 - self.tokens))
    }
}

/// Rate limits on wrong tokens, per peer and for all peers together.
pub(super) struct Throttle {
    peers: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

/// A peer's key: its address, or its /64 for IPv6 (one host holds many).
pub(super) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    }
}

impl Throttle {
    pub(super) fn new(now: Instant) -> Throttle {
        Throttle { peers: HashMap::new(), global: Bucket::full(GLOBAL_BURST, now) }
    }

    /// `Err(retry_after)` while `peer` (or everyone) has no try left.
    fn allow(&mut self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        self.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
        let mut wait = self.global.wait(GLOBAL_REFILL);
        if let Some(b) = self.peers.get_mut(&peer_key(peer)) {
            b.refill(LOGIN_BURST, LOGIN_REFILL, now);
            wait = wait.max(b.wait(LOGIN_REFILL));
        }
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Counts a wrong token from `peer`.
    fn failed(&mut self, peer: IpAddr, now: Instant) {
        self.global.tokens -= 1.0;
        let key = peer_key(peer);
        if !self.peers.contains_key(&key) && self.peers.len() >= MAX_PEERS {
            for b in self.peers.values_mut() {
                b.refill(LOGIN_BURST, LOGIN_REFILL, now);
            }
            self.peers.retain(|_, b| b.tokens < f64::from(LOGIN_BURST));
            if self.peers.len() >= MAX_PEERS {
                // Still full: this peer is only held by the global bucket.
                return;
            }
        }
        let b = self.peers.entry(key).or_insert_with(|| Bucket::full(LOGIN_BURST, now));
        b.refill(LOGIN_BURST, LOGIN_REFILL, now);
        b.tokens -= 1.0;
    }
}

/// The peer's address, as the server put it in the request.
pub(super) fn peer_ip(ext: &Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) fn session_cookie(value: &str, max_age: Duration, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .ok()
}

pub(super) fn clear_cookie(resp: &mut Response, secure: bool) {
    if let Some(v) = session_cookie("", Duration::ZERO, secure) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(super) fn too_many(retry: Duration) -> Response {
    let mut resp = refuse_login(StatusCode::TOO_MANY_REQUESTS, "too many wrong tokens: wait and try again");
    let secs = retry.as_secs() + 1;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// How a request proved (or failed to prove) it may see the console.
enum Access {
    Granted,
    Refused(Response),
}

impl Console {
    /// The API's door: the token in `Authorization: Bearer` only, checked
    /// and throttled as the page's, every refusal in JSON. A session cookie
    /// does not open it: a cookie rides along with any request a browser is
    /// tricked into sending, and the API takes no CSRF token.
    fn api_access(&self, req: &Request) -> Access {
        let refused = |status, code, why: &str| Access::Refused(super::api::error(status, code, why));
        let Some(auth) = req.headers().get(header::AUTHORIZATION) else {
            let why = if cookie_value(req.headers(), SESSION_COOKIE).is_some() {
                "the API takes the console's token as Authorization: Bearer, not a session cookie"
            } else {
                "send the console's token as Authorization: Bearer TOKEN"
            };
            return refused(StatusCode::UNAUTHORIZED, "unauthorized", why);
        };
        let Some(given) = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
            return refused(StatusCode::UNAUTHORIZED, "unauthorized", "only Bearer tokens are accepted");
        };
        let now = Instant::now();
        let peer = peer_ip(req.extensions());
        // While the peer is limited its guess is not even compared.
        if let Err(retry) = self.throttle().allow(peer, now) {
            let mut resp = super::api::error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many wrong tokens: wait and try again",
            );
            if let Ok(v) = HeaderValue::from_str(&(retry.as_secs() + 1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Access::Refused(resp);
        }
        if same_secret(given, &self.state.token) {
            return Access::Granted;
        }
        self.throttle().failed(peer, now);
        refused(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token")
    }

    fn access(&self, req: &Request) -> Access {
        let now = Instant::now();
        let secure = req.extensions().get::<OverTls>().is_some();
        if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
            let Some(given) = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim) else {
                return Access::Refused(refuse_login(StatusCode::UNAUTHORIZED, "only Bearer tokens are accepted"));
            };
            let peer = peer_ip(req.extensions());
            // While the peer is limited its guess is not even compared.
            if let Err(retry) = self.throttle().allow(peer, now) {
                return Access::Refused(too_many(retry));
            }
            if same_secret(given, &self.state.token) {
                return Access::Granted;
            }
            self.throttle().failed(peer, now);
            return Access::Refused(refuse(StatusCode::FORBIDDEN, "wrong token"));
        }
        let Some(id) = cookie_value(req.headers(), SESSION_COOKIE) else {
            return Access::Refused(refuse_login(StatusCode::UNAUTHORIZED, "log in with the console's token"));
        };
        let why = match self.sessions().check(id, now) {
            SessionState::Live => return Access::Granted,
            SessionState::Expired => "your session expired: log in again",
            SessionState::Unknown => "your session is not known here (OpsGuard restarted, or you logged out): log in",
        };
        let mut resp = refuse_login(StatusCode::UNAUTHORIZED, why);
        clear_cookie(&mut resp, secure);
        Access::Refused(resp)
    }
}

/// Authentication (but for the login page), and headers that keep every
/// page out of frames and caches.
pub(super) async fn gate(State(console): State<Console>, req: Request, next: Next) -> Response {
    let mut resp = if req.uri().path() == "/login" {
        next.run(req).await
    } else if req.uri().path().starts_with("/api/") {
        match console.api_access(&req) {
            Access::Granted => next.run(req).await,
            Access::Refused(resp) => resp,
        }
    } else {
        match console.access(&req) {
            Access::Granted => next.run(req).await,
            Access::Refused(resp) => resp,
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The login form. A token in the URL (`/login?token=…`) is refused, not
/// used: a URL stays in the browser's history and in proxies' logs.
pub(super) async fn login_page(method: Method, uri: axum::http::Uri) -> Response {
    let in_url = uri.query().is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("token")));
    match (method, in_url) {
        (_, true) => refuse_login(
            StatusCode::BAD_REQUEST,
            "the token goes in this form, not in the URL (a URL is kept in the browser's history)",
        ),
        _ => Html(login_html("Log in to approve or reject OpsGuard's risky actions.")).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

/// Exchanges the token for a session cookie.
pub(super) async fn login(
    State(console): State<Console>,
    ext: Extensions,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let now = Instant::now();
    let peer = peer_ip(&ext);
    if let Err(retry) = console.throttle().allow(peer, now) {
        return too_many(retry);
    }
    let given = match form {
        Ok(Form(f)) => f.token,
        Err(e) => return refuse_login(e.status(), &e.body_text()),
    };
    if !same_secret(given.trim(), &console.state.token) {
        console.throttle().failed(peer, now);
        return refuse_login(StatusCode::FORBIDDEN, "wrong token");
    }
    let (id, ttl) = {
        let mut sessions = console.sessions();
        match sessions.create(now) {
            Ok(id) => (id, sessions.ttl),
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    };
    let mut resp = Redirect::to("/").into_response();
    if let Some(v) = session_cookie(&id, ttl, ext.get::<OverTls>().is_some()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Ends the session on the server and in the browser.
pub(super) async fn logout(State(console): State<Console>, ext: Extensions, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers, SESSION_COOKIE) {
        console.sessions().remove(id);
    }
    let mut resp = Redirect::to("/login").into_response();
    clear_cookie(&mut resp, ext.get::<OverTls>().is_some());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleSettings;

    #[test]
    fn listening_beyond_loopback_needs_tls_or_the_explicit_insecure_flag() {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert!(check_listen(addr("127.0.0.1:8990"), false, false).is_ok());
        assert!(check_listen(addr("[::1]:8990"), false, false).is_ok());
        let e = check_listen(addr("0.0.0.0:8990"), false, false).unwrap_err();
        assert!(e.0.contains("needs TLS"), "{e}");
        assert!(check_listen(addr("192.168.1.5:8990"), false, false).is_err());
        assert!(check_listen(addr("0.0.0.0:8990"), true, false).is_ok());
        assert!(check_listen(addr("0.0.0.0:8990"), false, true).is_ok());
    }

    #[test]
    fn weak_or_unsendable_tokens_are_refused() {
        let settings = |t: &str| ConsoleSettings { token: Some(t.into()), approval_timeout: Duration::from_secs(1) };
        assert!(Console::new(settings("short")).is_err());
        assert!(Console::new(settings("0123456789abcdef; x=y")).is_err());
        assert!(Console::new(settings("0123456789abcdef")).is_ok());
    }

    #[test]
    fn a_generated_token_is_long_random_and_accepted() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        check_token(&a).unwrap();
        let console = Console::new(ConsoleSettings { token: None, approval_timeout: Duration::from_secs(1) }).unwrap();
        assert_eq!(console.token().len(), 64);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions { ttl: Duration::from_secs(60), live: HashMap::new() };
        let id = s.create(t0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(matches!(s.check(&id, t0 + Duration::from_secs(59)), SessionState::Live));
        assert!(matches!(s.check(&id, t0 + Duration::from_secs(60)), SessionState::Expired));
        assert!(matches!(s.check(&id, t0), SessionState::Unknown), "an expired session is forgotten");
        assert!(matches!(s.check("0123", t0), SessionState::Unknown));
        for _ in 0..3 * MAX_SESSIONS {
            s.create(t0).unwrap();
        }
        assert!(s.live.len() <= MAX_SESSIONS);
    }

    #[test]
    fn wrong_tokens_are_limited_per_peer_and_in_total() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..LOGIN_BURST {
            assert!(t.allow(a, t0).is_ok());
            t.failed(a, t0);
        }
        let wait = t.allow(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= LOGIN_REFILL, "{wait:?}");
        assert!(t.allow("10.0.0.2".parse().unwrap(), t0).is_ok(), "another peer is not held");
        assert!(t.allow(a, t0 + LOGIN_REFILL).is_ok(), "one more try after the refill");
        // One IPv6 host is one peer, whatever its address in its /64.
        let mut t = Throttle::new(t0);
        for i in 0..LOGIN_BURST {
            t.failed(format!("2001:db8::{i:x}").parse().unwrap(), t0);
        }
        assert!(t.allow("2001:db8::ffff".parse().unwrap(), t0).is_err());
        // Many peers: the global bucket holds them all.
        let mut t = Throttle::new(t0);
        for i in 0..GLOBAL_BURST {
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0100 + i)), t0);
        }
        assert!(t.allow("10.9.9.9".parse().unwrap(), t0).is_err());
        // And the peer table stays bounded.
        let mut t = Throttle::new(t0);
        for i in 0..(MAX_PEERS as u32 + 100) {
            t.global.tokens = 1e9;
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), t0);
        }
        assert!(t.peers.len() <= MAX_PEERS);
    }
}
