//! `opsguard watch`: the agent on the local Docker host, with the approver
//! and advisor the flags choose, until its incidents or its time run out.
//! Exits 0 when every incident resolved, 2 when any stopped for a human
//! (shadow mode: 0 whatever was decided). SIGTERM and ^C stop it
//! gracefully; SIGHUP reloads the rules and reopens the audit log.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use opsguard::approval::{DynApprover, PolicyApprover, TerminalApprover};
use opsguard::audit::{AuditLog, Resolution};
use opsguard::clock::{Clock, SystemClock};
use opsguard::console::Console;
use opsguard::docker_agent::DockerAgentBuilder;
use opsguard::health::Health;
use opsguard::host::docker::{DockerHost, StreamNotice};
use opsguard::incident::{IncidentReport, ReloadError, RulesHandle, WatchLimit};
use opsguard::llm::config::LlmConfig;
use opsguard::llm::openai::OpenAiAdvisor;
use opsguard::llm::{DynAdvisor, NoAdvisor};
use opsguard::notify::event::Component;
use opsguard::notify::{Notifier, config};
use opsguard::redact::printable;
use opsguard::rules::Rules;

use super::args::{ApproveMode, LogFormat, OutputArgs, WatchArgs};
use super::console::{WebConsole, start_console};
use super::output::{StatusLine, announce, init_logging, serve_metrics};

/// Turns the flags into rules, an approver and an advisor, then watches.
pub async fn run(args: WatchArgs) -> Result<ExitCode, String> {
    let WatchArgs {
        rules: rules_path,
        scope_label,
        approve,
        audit,
        max_incidents,
        timeout,
        approval_timeout,
        listen,
        token,
        token_file,
        tls_cert,
        tls_key,
        insecure_http,
        llm_config,
        llm_url,
        llm_model,
        llm_api_key_env,
        llm_timeout,
        llm_max_tokens,
        llm_allow_http,
        shadow,
        notify,
        output,
    } = args;
    init_logging(output.log_format);
    // A broken notify file is an error now, not a notification lost later.
    let notify = match &notify {
        Some(path) => Some(config::load(path, |var| std::env::var(var).ok()).map_err(|e| e.to_string())?),
        None => None,
    };
    // A service (systemd, a container) has no terminal: asking there would
    // reject every approval in silence. Shadow mode never asks.
    if approve == ApproveMode::Prompt && !shadow && !std::io::stdin().is_terminal() {
        return Err("--approve prompt needs a terminal, and standard input is not one: \
                    use --approve web (the approval console) or deny, or set OPSGUARD_APPROVE"
            .into());
    }
    let (advisor, advice_timeout) = llm_advisor(
        [
            ("--llm-config", llm_config.map(|p| p.display().to_string())),
            ("--llm-url", llm_url),
            ("--llm-model", llm_model),
            ("--llm-api-key-env", llm_api_key_env),
            ("--llm-timeout", llm_timeout.map(|t| t.to_string())),
            ("--llm-max-tokens", llm_max_tokens.map(|t| t.to_string())),
        ],
        llm_allow_http,
    )?;
    let mut rules = match &rules_path {
        Some(path) => opsguard::rules::load(path).map_err(|e| e.to_string())?,
        None => Rules::default_rules(),
    };
    if let Some(label) = &scope_label {
        if !label.contains('=') {
            return Err(format!("--scope-label must be key=value, not {label:?}"));
        }
        rules.scope_label = label.clone();
    }
    let console = match approve {
        ApproveMode::Web => {
            let web = WebConsole { listen: &listen, token, token_file: &token_file, tls_cert, tls_key, insecure_http };
            Some(start_console(web, approval_timeout, output.log_format).await?)
        }
        _ => None,
    };
    let approver: Box<dyn DynApprover> = match (approve, &console) {
        (ApproveMode::Web, Some((c, _, _))) => Box::new(c.approver()),
        (ApproveMode::Prompt, _) => Box::new(TerminalApprover),
        (ApproveMode::Auto, _) => Box::new(PolicyApprover::ApproveAll),
        (ApproveMode::Deny | ApproveMode::Web, _) => Box::new(PolicyApprover::Deny),
    };
    let session = Session {
        rules_path,
        scope_label,
        audit_path: &audit,
        until: WatchLimit {
            incidents: max_incidents,
            deadline: timeout.map(|s| SystemClock.now().plus_millis(s.saturating_mul(1000))),
        },
        approval_timeout,
        advice_timeout,
        output: &output,
        console: console.as_ref().map(|(c, _, _)| c.clone()),
        notify: notify.map(|n| (n, console.as_ref().map(|(_, _, url)| url.clone()))),
        prompts: approve == ApproveMode::Prompt,
        shadow,
    };
    let reports = watch(Arc::new(rules), approver, advisor, session).await;
    if let Some((_, server, _)) = console {
        server.abort();
    }
    let reports = reports?;
    // Shadow mode reports decisions; none of them is a failure to act.
    Ok(if shadow { ExitCode::SUCCESS } else { exit_code(&reports) })
}

/// The `--llm-*` flags, through the same parser the library offers: no LLM
/// (unknown causes escalate), or an OpenAI-compatible one.
/// Also how long a consultation may take in all (every question it may ask
/// at the configured timeout), when an LLM is configured.
fn llm_advisor(
    flags: [(&str, Option<String>); 6],
    allow_http: bool,
) -> Result<(Box<dyn DynAdvisor>, Option<Duration>), String> {
    let mut args = Vec::new();
    if allow_http {
        args.push("--llm-allow-http".to_string());
    }
    for (flag, value) in flags {
        if let Some(v) = value {
            args.push(flag.to_string());
            args.push(v);
        }
    }
    match LlmConfig::from_args(&mut args).map_err(|e| e.to_string())? {
        None => Ok((Box::new(NoAdvisor), None)),
        Some(config) => {
            let deadline = config.consultation_deadline();
            Ok((Box::new(OpenAiAdvisor::new(config).map_err(|e| e.to_string())?), Some(deadline)))
        }
    }
}

/// How long open incidents have to close after SIGTERM or ^C: under the
/// 10 s Docker and systemd give before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// How long the end of a watch waits for queued notifications.
const NOTIFY_FLUSH: Duration = Duration::from_secs(5);
/// The same after SIGTERM: [`SHUTDOWN_GRACE`] plus this stays under 10 s.
const NOTIFY_FLUSH_AFTER_SIGNAL: Duration = Duration::from_secs(1);

/// Resolves with the signal's name at the first SIGTERM or SIGINT.
fn terminate_signals() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// What SIGHUP reloads and reopens.
struct Reload {
    rules: RulesHandle,
    rules_path: Option<PathBuf>,
    scope_label: Option<String>,
    audit: AuditLog,
    format: LogFormat,
}

impl Reload {
    /// At every SIGHUP, [`Reload::hangup`], said in one line.
    async fn on_hangups(self, mut hangups: tokio::signal::unix::Signal) {
        while hangups.recv().await.is_some() {
            announce(self.format, &self.hangup());
        }
    }

    /// Reloads the rules (validated; the old ones stay on error) and
    /// reopens the audit log at its path (the old file stays in use on
    /// error); returns what happened.
    fn hangup(&self) -> String {
        let rules = self.reload_rules();
        let audit = self.reopen_audit();
        format!("🔄 SIGHUP: {rules}; {audit}")
    }

    fn reload_rules(&self) -> String {
        let Some(path) = &self.rules_path else {
            return "built-in rules, nothing to reload".to_string();
        };
        match self.rules.reload(path, self.scope_label.as_deref()) {
            Ok(rules) => format!(
                "rules reloaded from {} (watching {} and {}, and the services labelled; open incidents keep their rules)",
                path.display(),
                rules.web.container,
                rules.database.container
            ),
            Err(e) => {
                match &e {
                    ReloadError::Invalid(r) => tracing::error!(
                        file = %r.file.display(),
                        line = r.line,
                        column = r.column,
                        field = r.field.as_deref(),
                        error = %printable(&r.message),
                        "rules not reloaded; the old rules stay"
                    ),
                    ReloadError::ScopeChanged { .. } => {
                        tracing::error!(file = %path.display(), error = %e, "rules not reloaded; the old rules stay")
                    }
                }
                format!("rules NOT reloaded, the old rules stay: {}", printable(&e.to_string()))
            }
        }
    }

    fn reopen_audit(&self) -> String {
        match self.audit.reopen() {
            Ok(Some(path)) => format!("audit log reopened at {}", path.display()),
            Ok(None) => "no audit file to reopen".to_string(),
            Err(e) => {
                tracing::error!(error = %e, "audit log not reopened; records still go to the old file");
                format!("audit log NOT reopened, still writing to the old file: {e}")
            }
        }
    }
}

/// 0 when every incident resolved, 2 when any stopped for a human.
fn exit_code(reports: &[IncidentReport]) -> ExitCode {
    if reports.iter().any(|r| matches!(r.resolution, Resolution::Stopped { .. })) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// How this watch runs, beside whom it asks and consults.
struct Session<'a> {
    /// Read again on SIGHUP (`None`: the built-in rules, nothing to reload).
    rules_path: Option<PathBuf>,
    /// `--scope-label`, applied again to reloaded rules.
    scope_label: Option<String>,
    audit_path: &'a Path,
    until: WatchLimit,
    approval_timeout: Duration,
    /// How long a consultation of the LLM may take, if one is configured.
    advice_timeout: Option<Duration>,
    output: &'a OutputArgs,
    console: Option<Console>,
    /// Approvals are asked at this terminal.
    prompts: bool,
    shadow: bool,
    /// `--notify`'s destinations, and the console's URL if it is on.
    notify: Option<(config::NotifyConfig, Option<String>)>,
}

async fn watch(
    rules: Arc<Rules>,
    approver: Box<dyn DynApprover>,
    advisor: Box<dyn DynAdvisor>,
    session: Session<'_>,
) -> Result<Vec<IncidentReport>, String> {
    let Session {
        rules_path,
        scope_label,
        audit_path,
        until,
        approval_timeout,
        advice_timeout,
        output,
        console,
        prompts,
        shadow,
        notify,
    } = session;
    // Listened for from the start: a signal while Docker is still being
    // reached waits for the watch instead of killing it.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot listen for signals: {e}"))?;
    let signals = terminate_signals().map_err(|e| format!("cannot listen for signals: {e}"))?;
    // One acting watch per Docker endpoint: a second would keep a restart
    // budget of its own. Shadow mode changes nothing, so it may run beside one.
    let _instance = if shadow {
        None
    } else {
        let dir = opsguard::instance::default_lock_dir();
        Some(
            opsguard::instance::InstanceLock::acquire(&dir, &opsguard::instance::docker_endpoint())
                .map_err(|e| e.to_string())?,
        )
    };
    let host = DockerHost::connect(&rules.scope_label).await.map_err(|e| e.to_string())?;
    // /healthz and /readyz beside /metrics: the loop's sweeps, the event
    // stream, the stop.
    let health = Health::new(SystemClock.now(), Duration::from_secs(rules.observer.interval_secs));
    let metrics = match output.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, output.log_format, Some(health.clone())).await?),
        None => None,
    };
    let mut resume = opsguard::audit::resume(audit_path).map_err(|e| format!("{}: {e}", audit_path.display()))?;
    // Only restarts the budget can still count; a year of them is not kept.
    let window = rules.restart_budget.window_secs.saturating_mul(1000);
    let now = SystemClock.now();
    for times in resume.restarts.values_mut() {
        times.retain(|t| now.millis_since(*t) < window);
    }
    let audit = AuditLog::to_file(audit_path).map_err(|e| format!("{}: {e}", audit_path.display()))?;
    // Notifications: a tap like the others, and the audit file's and the
    // event stream's health for the "degraded" event.
    let notifier = notify.map(|(config, console_url)| {
        let notifier = Notifier::start(&config, console_url);
        let names: Vec<&str> = config.destinations.iter().map(|d| d.name.as_str()).collect();
        announce(output.log_format, &format!("📣 notifying {} as {}", names.join(", "), printable(notifier.host())));
        let n = notifier.clone();
        let _ = audit.clone().with_write_watch(move |ts, change| n.component(Component::AuditLog, ts, change));
        notifier
    });
    let configured = advisor.is_configured_dyn();
    let mut agent = DockerAgentBuilder::new(rules.clone(), host, audit.clone())
        .approver(approver)
        .advisor(advisor)
        .approval_timeout(approval_timeout)
        .advice_timeout(advice_timeout)
        .shadow(shadow)
        .resuming(resume)
        .health(health.clone());
    let status = match output.log_format {
        LogFormat::Text => {
            let status = StatusLine::start(Duration::from_secs(rules.observer.rapid_window_secs), prompts);
            let tap = status.clone();
            agent = agent.tap(move |r| tap.record(r));
            Some(status)
        }
        // Every step already goes out as a JSON line through `telemetry`.
        LogFormat::Json => None,
    };
    if let Some(c) = console {
        agent = agent.tap(move |r| c.record(r));
    }
    if let Some(n) = &notifier {
        agent = agent.tap(n.audit_tap());
    }
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let agent = agent.notices(notices_tx).start();
    // Under systemd: READY=1 after the first sweep, the watchdog fed while
    // the loop is alive, STOPPING=1 at the end.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let service_task = tokio::spawn(opsguard::service::notify_service_manager(health.clone(), async move {
        let _ = stopping_rx.await;
    }));
    let stream_notifier = notifier.clone();
    let notice_task = tokio::spawn(async move {
        while let Some(n) = notices.recv().await {
            health.events(matches!(n, StreamNotice::Connected { .. }));
            if let Some(notifier) = &stream_notifier {
                let state = match &n {
                    StreamNotice::Connected { .. } => Ok(()),
                    StreamNotice::Lost { error } => Err(error.clone()),
                };
                notifier.component(Component::EventStream, SystemClock.now(), state);
            }
            match n {
                StreamNotice::Connected { since: None } => tracing::info!("watching Docker events"),
                StreamNotice::Connected { since: Some(t) } => {
                    tracing::warn!(since = %t, "event stream reconnected, resuming")
                }
                StreamNotice::Lost { error } => {
                    tracing::warn!(error = %printable(&error), "event stream lost; reconnecting")
                }
            }
        }
    });
    announce(
        output.log_format,
        &format!(
            "👁  OpsGuard watching {} and {} and the services labelled (scope {}), sweep every {}s, audit {}",
            rules.web.container,
            rules.database.container,
            rules.scope_label,
            rules.observer.interval_secs,
            audit_path.display()
        ),
    );
    if configured {
        announce(
            output.log_format,
            "🤖 unknown root causes consult the configured LLM (its choice still needs the same checks)",
        );
    }
    if shadow {
        announce(
            output.log_format,
            "👻 shadow mode: deciding for real, executing nothing (would-be actions go to the audit log)",
        );
    }
    // SIGHUP reloads the rules and reopens the audit log (logrotate); it
    // never ends the watch.
    let reload = Reload { rules: agent.rules_handle(), rules_path, scope_label, audit, format: output.log_format };
    let reload_task = tokio::spawn(reload.on_hangups(hangups));
    // SIGTERM (`docker stop`, systemd) and ^C end the watch gracefully:
    // open incidents close for a human, a pending approval is withdrawn and
    // recorded as unanswered, nothing is started after the signal. The
    // audit log is synced record by record. Dropping the agent stops the
    // event stream.
    let stop = agent.shutdown_handle();
    let run = agent.run(until);
    tokio::pin!(run);
    let mut stopping = Some(stopping_tx);
    let mut signalled = false;
    let reports = tokio::select! {
        r = &mut run => r,
        signal = signals => {
            signalled = true;
            announce(
                output.log_format,
                &format!("🛑 {signal}: stopping; open incidents close for a human, nothing new starts"),
            );
            if let Some(tx) = stopping.take() {
                let _ = tx.send(());
            }
            stop.shutdown();
            // Every incident closes at its next await; a Docker call under
            // way has its own timeout, but the stop must not outlast
            // `docker stop`'s 10 s.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut run).await {
                Ok(reports) => reports,
                Err(_) => {
                    tracing::error!("incidents did not close within {SHUTDOWN_GRACE:?} of the signal; exiting");
                    Vec::new()
                }
            }
        }
    };
    if let Some(tx) = stopping.take() {
        let _ = tx.send(());
    }
    // STOPPING=1 is a single datagram: let it go out before the runtime ends.
    let _ = tokio::time::timeout(Duration::from_secs(1), service_task).await;
    notice_task.abort();
    reload_task.abort();
    // What the last incidents said still goes out, within what is left of
    // `docker stop`'s 10 s after a signal.
    if let Some(n) = &notifier {
        let grace = if signalled { NOTIFY_FLUSH_AFTER_SIGNAL } else { NOTIFY_FLUSH };
        if !n.flush(grace).await {
            tracing::warn!("some notifications were still unsent when the watch ended");
        }
    }
    if let Some(status) = status {
        status.finish();
    }
    if let Some(m) = metrics {
        m.abort();
    }
    if output.log_format == LogFormat::Json {
        return Ok(reports);
    }
    println!();
    for r in &reports {
        let secs = r.closed_at.millis_since(r.opened_at) as f64 / 1000.0;
        let end = match r.resolution {
            Resolution::Resolved => "✅ resolved".to_string(),
            Resolution::Stopped { reason } => format!("🛑 stopped: {reason}"),
            Resolution::Withheld => "👻 shadow: nothing changed".to_string(),
        };
        println!("incident #{}: {} → {end} in {secs:.1}s ({} steps)", r.id, r.alarm, r.steps.len());
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsguard::approval::PolicyApprover;
    use opsguard::clock::SimClock;
    use opsguard::engine::Engine;
    use opsguard::host::sim::SimHost;
    use opsguard::incident::Responder;
    use opsguard::llm::NoAdvisor;
    use opsguard::model::Timestamp;
    use opsguard::rules::DEFAULT_RULES;

    fn reload(dir: &Path, rules_path: Option<PathBuf>) -> (Reload, AuditLog) {
        let audit = AuditLog::to_file(&dir.join("audit.jsonl")).unwrap();
        let clock = SimClock::new(Timestamp(1_795_766_400_000));
        let responder = Responder::new(
            Engine::new(Arc::new(Rules::default_rules())),
            SimHost::lab(clock.clone()),
            PolicyApprover::Deny,
            NoAdvisor,
            clock,
            audit.clone(),
        );
        let rules = responder.rules_handle();
        (Reload { rules, rules_path, scope_label: None, audit: audit.clone(), format: LogFormat::Text }, audit)
    }

    #[test]
    fn a_hangup_reloads_the_rules_file_and_reopens_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let rules_path = dir.path().join("rules.toml");
        std::fs::write(&rules_path, DEFAULT_RULES.replacen("web-prod", "web-blue", 1)).unwrap();
        let (reload, audit) = reload(dir.path(), Some(rules_path.clone()));
        let earlier = opsguard::audit::AuditEvent::Decided { action: opsguard::model::Action::PruneContainers };
        audit.record(1, Timestamp(1), earlier.clone()).unwrap();
        std::fs::rename(dir.path().join("audit.jsonl"), dir.path().join("audit.jsonl.1")).unwrap();
        let said = reload.hangup();
        assert!(said.contains("rules reloaded") && said.contains("web-blue"), "{said}");
        assert!(said.contains("audit log reopened"), "{said}");
        assert_eq!(reload.rules.rules().web.container.as_str(), "web-blue");
        audit.record(2, Timestamp(2), earlier).unwrap();
        let ids = |name: &str| -> Vec<u64> {
            let read = opsguard::audit::read_audit(&dir.path().join(name)).unwrap();
            read.records.iter().map(|r| r.incident).collect()
        };
        assert_eq!((ids("audit.jsonl.1"), ids("audit.jsonl")), (vec![1], vec![2]));

        // A broken file: said, and the rules stay.
        std::fs::write(&rules_path, "[thresholds\n").unwrap();
        let said = reload.hangup();
        assert!(said.contains("NOT reloaded") && said.contains("rules.toml:1"), "{said}");
        assert_eq!(reload.rules.rules().web.container.as_str(), "web-blue");
    }

    #[test]
    fn without_a_rules_file_a_hangup_only_reopens_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let (reload, _audit) = reload(dir.path(), None);
        let before = reload.rules.rules();
        let said = reload.hangup();
        assert!(said.contains("nothing to reload") && said.contains("audit log reopened"), "{said}");
        assert!(Arc::ptr_eq(&before, &reload.rules.rules()));
    }
}
