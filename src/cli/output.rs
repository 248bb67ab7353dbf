//! What `watch` shows an operator: the `tracing` subscriber, the
//! announcement lines, the Prometheus endpoint and the timeline with its
//! progress line.

use std::sync::Arc;
use std::time::Duration;

use opsguard::clock::{Clock, SystemClock};

use super::args::LogFormat;

/// Installs the `tracing` subscriber `watch` logs through: warnings and
/// errors on stderr beside the human timeline, or every step as JSON on
/// stdout. `RUST_LOG` overrides the level.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = |default: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let installed = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter("warn"))
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter("info"))
            .with_writer(std::io::stdout)
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("opsguard: logging not set up: {e}");
    }
}

/// A line for the operator: on stdout beside the timeline, or as a log
/// event so that stdout stays pure JSON.
pub fn announce(format: LogFormat, line: &str) {
    match format {
        LogFormat::Text => println!("{line}"),
        LogFormat::Json => tracing::info!("{line}"),
    }
}

/// Installs the Prometheus recorder and serves `/metrics` on `addr` until
/// the returned task is aborted. Picked `metrics-exporter-prometheus` (the
/// `metrics` project's own exporter) so the library stays on the facade.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    format: LogFormat,
    health: Option<opsguard::health::Health>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), opsguard::telemetry::TIME_BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics: {e}"))?;
    opsguard::telemetry::describe();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "opsguard: metrics are served on {addr}, beyond this host (read-only; no approval is possible there)"
        );
    }
    let at = listener.local_addr().map_err(|e| e.to_string())?;
    let also = if health.is_some() { ", /healthz and /readyz" } else { "" };
    announce(format, &format!("📈 metrics at http://{at}/metrics{also}"));
    let upkeep = handle.clone();
    Ok(tokio::spawn(async move {
        // Histograms are drained into the exporter's buckets on upkeep.
        let upkeep = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        let render = move || handle.render();
        let mut app = opsguard::telemetry::metrics_router(render);
        if let Some(health) = health {
            app = app.merge(opsguard::health::router(health));
        }
        if let Err(e) = opsguard::serve::serve(listener, app, opsguard::serve::Limits::METRICS, None).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
        upkeep.abort();
    }))
}

/// The human timeline, with a progress line under it while a terminal is
/// attached; plain lines otherwise (a pipe or a log file gets no escapes).
#[derive(Clone)]
pub struct StatusLine {
    bar: Option<indicatif::ProgressBar>,
    progress: Arc<std::sync::Mutex<opsguard::progress::Progress>>,
    ticker: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl StatusLine {
    /// `prompts`: approvals are asked at this terminal, so the line steps
    /// aside while a question waits for its answer.
    pub fn start(rapid_window: Duration, prompts: bool) -> StatusLine {
        use std::io::IsTerminal;
        let progress = Arc::new(std::sync::Mutex::new(opsguard::progress::Progress::new(rapid_window)));
        // Only where both streams are the terminal: a timeline redirected to
        // a file must not go to the bar's stderr instead.
        let bar = (std::io::stderr().is_terminal() && std::io::stdout().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {wide_msg}") {
                bar.set_style(style);
            }
            bar
        });
        let ticker = bar.clone().map(|bar| {
            let progress = progress.clone();
            tokio::spawn(async move {
                loop {
                    let (line, asking) = {
                        let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                        (p.line(SystemClock.now()), p.awaiting_approval())
                    };
                    if prompts && asking {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                    } else if bar.is_hidden() {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    }
                    bar.set_message(line);
                    bar.tick();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        });
        StatusLine { bar, progress, ticker: Arc::new(std::sync::Mutex::new(ticker)) }
    }

    pub fn record(&self, r: &opsguard::audit::AuditRecord) {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).observe(r);
        let time = r.time.get(11..23).unwrap_or(&r.time);
        let line = format!("[{time}] #{} {}", r.incident, r.event.render());
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => println!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(t) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
