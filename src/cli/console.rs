//! The web approval console as `watch --approve web` starts it: every
//! check (the address, TLS, the token) before anything listens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opsguard::console::{Console, ConsoleSettings};

use super::args::LogFormat;
use super::output::announce;

/// The `--approve web` flags.
pub struct WebConsole<'a> {
    pub listen: &'a str,
    pub token: Option<String>,
    pub token_file: &'a Path,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_http: bool,
}

/// The console as started: its state, its server task and the base URL
/// it answers at (for the notifications' approval links).
pub type StartedConsole = (Console, tokio::task::JoinHandle<std::io::Result<()>>, String);

/// Starts the web approval console; returns it and its server task. Every
/// check (the address, TLS, the token) is made before anything listens.
pub async fn start_console(
    web: WebConsole<'_>,
    approval_timeout: Duration,
    format: LogFormat,
) -> Result<StartedConsole, String> {
    use opsguard::console::{TOKEN_ENV, check_listen, generate_token, write_token_file};
    let addr: std::net::SocketAddr = web.listen.parse().map_err(|e| format!("--listen {:?}: {e}", web.listen))?;
    let tls = match (&web.tls_cert, &web.tls_key) {
        (Some(cert), Some(key)) => Some(opsguard::serve::tls_acceptor(cert, key).map_err(|e| e.to_string())?),
        _ => None,
    };
    check_listen(addr, tls.is_some(), web.insecure_http).map_err(|e| e.to_string())?;
    let given = web.token.or_else(|| std::env::var(TOKEN_ENV).ok()).filter(|t| !t.is_empty());
    let (token, written) = match given {
        Some(t) => (t, None),
        None => {
            let t = generate_token().map_err(|e| e.to_string())?;
            let path = write_token_file(web.token_file, &t)
                .map_err(|e| format!("--token-file {}: {e}", web.token_file.display()))?;
            (t, Some(path))
        }
    };
    let console = Console::new(ConsoleSettings { token: Some(token), approval_timeout }).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--listen {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    announce(format, &format!("🌐 approval console: {scheme}://{local}/login"));
    match written {
        Some(path) => announce(
            format,
            &format!("🔑 console token generated and written to {} (readable by its owner only)", path.display()),
        ),
        None => announce(format, "🔑 console token: the one given (--token or OPSGUARD_CONSOLE_TOKEN)"),
    }
    if tls.is_none() && !addr.ip().is_loopback() {
        eprintln!("opsguard: --insecure-http: the console's token and session cookie cross the network in the clear");
    }
    let serving = console.clone().serve_with(listener, opsguard::serve::Limits::CONSOLE, tls);
    // The oldest pending request's age grows between changes to the board.
    let gauges = console.clone();
    let server = tokio::spawn(async move {
        let ticking = async move {
            loop {
                gauges.publish_metrics();
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        };
        tokio::select! {
            served = serving => served,
            () = ticking => Ok(()),
        }
    });
    // A console on every interface has no one address a human can use: the
    // host's name stands in (the notify file's console_url overrides it).
    let base = match local.ip().is_unspecified() {
        true => format!("{scheme}://{}:{}", opsguard::notify::system_host_name(), local.port()),
        false => format!("{scheme}://{local}"),
    };
    Ok((console, server, base))
}
