//! The HTTP server under the web console and the metrics endpoint: our own
//! accept loop, so that clients on the network cannot hold OpsGuard's file
//! descriptors or its attention.
//!
//! `axum::serve` has no header-read timeout, no request timeout and no
//! connection limit: 300 clients that open a connection and never finish
//! their headers kept the console from answering, and the descriptors they
//! held made every Docker call fail. Here, per [`Limits`]:
//!
//! - at most `max_connections` connections are open at once (a semaphore);
//!   at the limit a new connection takes the slot of the oldest one with no
//!   request in flight (a slow client still sending its headers, or an idle
//!   keep-alive), so a prompt client is served however many slow ones
//!   arrived first; when every slot is busy with a request the newcomer is
//!   closed at once;
//! - a client must send a complete request head within
//!   `header_read_timeout` of connecting, and of its previous response
//!   (hyper's http1 timer), and finish a TLS handshake within the same time;
//! - a request (its body included) gets `request_timeout`, then 408;
//! - a connection lives at most `max_connection_age`, then is shut down
//!   gracefully.
//!
//! Each request carries the peer's address as [`ConnectInfo`] (the console
//! rate-limits logins by it) and, on a TLS connection, the [`OverTls`]
//! marker (its session cookie is then `Secure`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

/// How long, at most, the accept loop waits for an evicted connection to
/// give its slot back before it closes the newcomer instead.
const EVICT_WAIT: Duration = Duration::from_millis(200);
/// After an accept error (out of descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The most a connection buffers of a request head; hyper's minimum.
const MAX_BUF: usize = 16 * 1024;

/// The bounds a server keeps; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From connecting (or the previous response) to a complete request
    /// head, TLS handshake included.
    pub header_read_timeout: Duration,
    /// From a request head to its response (408 after).
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// A connection's lifetime before it is asked to close.
    pub max_connection_age: Duration,
}

impl Limits {
    /// The console: a few operators' browsers reloading every 2 s.
    pub const CONSOLE: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(15),
        max_connections: 64,
        max_connection_age: Duration::from_secs(300),
    };
    /// The metrics endpoint: a scraper or two.
    pub const METRICS: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(15),
        max_connections: 16,
        max_connection_age: Duration::from_secs(300),
    };
}

/// In a request's extensions when it came over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverTls;

/// Why TLS cannot be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

/// A TLS acceptor from PEM files: the certificate chain (leaf first) and its
/// private key. Uses rustls with the ring provider and its safe defaults
/// (TLS 1.2 and 1.3), HTTP/1.1 only.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{}: no certificate in the file", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("the certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Slot {
    /// Requests in flight on it.
    busy: AtomicUsize,
    /// Already asked to give its slot up.
    evicted: AtomicBool,
    evict: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    slots: Mutex<BTreeMap<u64, Arc<Slot>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the oldest connection with no request in flight to close.
    fn evict_oldest_idle(&self) -> bool {
        let slots = self.lock();
        let victim = slots.values().find(|s| s.busy.load(Ordering::Acquire) == 0 && !s.evicted.load(Ordering::Acquire));
        match victim {
            Some(s) => {
                s.evicted.store(true, Ordering::Release);
                s.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Counts a request in flight on its connection while alive.
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: &Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` within `limits`, over TLS when `tls` is
/// given, until the task is dropped. Returns only if the listener fails
/// for good.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let app = app.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let registry = Arc::new(Registry::default());
    let mut next_id: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: wait for some to be freed.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !registry.evict_oldest_idle() {
                    // Every slot has a request in flight, each bounded by
                    // the request timeout: this client may retry.
                    drop(stream);
                    continue;
                }
                match tokio::time::timeout(EVICT_WAIT, permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let slot = Arc::new(Slot::default());
        registry.lock().insert(next_id, slot.clone());
        let registered = Registered { registry: registry.clone(), id: next_id };
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _registered = registered;
            tokio::select! {
                () = connection(stream, peer, tls, app, limits, slot.clone()) => {}
                () = slot.evict.notified() => {}
            }
        });
    }
}

/// Accept errors that concern one connection only (it was reset before we
/// took it): the next accept is fine.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted)
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    slot: Arc<Slot>,
) {
    match tls {
        None => http(stream, peer, false, app, limits, slot).await,
        Some(acceptor) => match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => http(stream, peer, true, app, limits, slot).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn http<S>(stream: S, peer: SocketAddr, over_tls: bool, app: Router, limits: Limits, slot: Arc<Slot>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if over_tls {
            req.extensions_mut().insert(OverTls);
        }
        let busy = Busy::new(&slot);
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await;
            drop(busy);
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        () = tokio::time::sleep(limits.max_connection_age) => conn.as_mut().graceful_shutdown(),
    }
    let _ = tokio::time::timeout(limits.request_timeout, conn).await;
}
