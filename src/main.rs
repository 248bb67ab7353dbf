//! `opsguard`: the command line.
//!
//! ```text
//! opsguard lab up | lab down            start or stop the Docker lab (lab/up.sh, lab/down.sh)
//! opsguard chaos SCENARIO               inject a fault into the lab
//! opsguard chaos reset [--full]         put the lab back to healthy
//! opsguard chaos list                   the scenarios and what OpsGuard must do
//! opsguard watch [--rules FILE] [--approve prompt|auto|deny|web] [--audit FILE]
//!                [--max-incidents N] [--timeout SECS] [--approval-timeout 5m]
//!                [--listen 127.0.0.1:8990] [--token TOKEN | --token-file FILE]
//!                [--tls-cert PEM --tls-key PEM | --insecure-http] [--shadow]
//! opsguard postmortem INCIDENT [--audit FILE] [-o FILE]
//!                                       an incident's post-mortem in Markdown
//! opsguard explain --alarm db-crash|web-disk|zombies [--exit-code N] [--oom BOOL]
//!                  [--log-line LINE]... [--logs FILE] [--disk-used PCT] [--exited N] [--rules FILE]
//! opsguard explain --from AUDIT [--incident N] [--rules FILE]
//!                                       which rule, which evidence, which action; no host touched
//! opsguard replay AUDIT [--incident N] [--rules FILE]
//!                                       recorded incidents through today's rules
//! ```
//!
//! `watch` exits 0 when every incident resolved, 2 when any stopped for a
//! human, 1 on error; `watch --shadow` exits 0 unless on error. `replay`
//! exits 0 when today's rules decide every step the same, 3 when any
//! differs, 1 on error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use opsguard::approval::{Answer, ApprovalError, ApprovalRequest, Approver, PolicyApprover, TerminalApprover};
use opsguard::audit::{AuditLog, Resolution};
use opsguard::chaos::Scenario;
use opsguard::chaos::docker::{DockerChaos, run_script};
use opsguard::clock::{Clock, SystemClock};
use opsguard::console::{Console, ConsoleSettings, WebApprover};
use opsguard::engine::Engine;
use opsguard::host::docker::{DockerHost, StreamNotice, settle_deaths, spawn_events};
use opsguard::incident::{Agent, IncidentReport, Responder, Until};
use opsguard::llm::config::LlmConfig;
use opsguard::llm::openai::OpenAiAdvisor;
use opsguard::llm::{Advice, AdviceError, AdviceRequest, Advisor, NoAdvisor};
use opsguard::redact::printable;
use opsguard::rules::Rules;

#[derive(Parser)]
#[command(name = "opsguard", version, about = "A self-healing agent for Docker hosts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Start or stop the Docker lab.
    Lab {
        /// `up` or `down`.
        #[arg(value_enum)]
        action: LabAction,
        /// The lab scripts' directory (default: ./lab, else the source tree's lab/).
        #[arg(long)]
        lab_dir: Option<PathBuf>,
    },
    /// Inject a fault into the lab, or reset it.
    Chaos {
        /// A scenario (`web-disk-fill`, `zombies`, `db-garbage-flood`,
        /// `db-config-corruption`, `db-oom-kill`, `db-data-corruption`,
        /// `chain-reaction`), `reset` or `list`.
        scenario: String,
        /// With `reset`: a fresh lab (lab/reset.sh) instead of a repair.
        #[arg(long)]
        full: bool,
        /// Where to append the record of what was done (JSON lines).
        #[arg(long, default_value = "opsguard-chaos.jsonl")]
        record: PathBuf,
        /// Only touch containers with this label.
        #[arg(long, default_value = "opsguard.lab=true")]
        scope_label: String,
        /// The lab scripts' directory.
        #[arg(long)]
        lab_dir: Option<PathBuf>,
    },
    /// Watch the Docker host and respond to incidents.
    Watch {
        /// Rules file (default: the built-in rules/default.toml).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Overrides the rules' scope label (`key=value`).
        #[arg(long)]
        scope_label: Option<String>,
        /// How risky actions are approved.
        #[arg(long, value_enum, default_value_t = ApproveMode::Prompt)]
        approve: ApproveMode,
        /// Audit log (JSON lines, appended).
        #[arg(long, default_value = "opsguard-audit.jsonl")]
        audit: PathBuf,
        /// Exit after this many incidents ended.
        #[arg(long)]
        max_incidents: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// How long a human has to answer an approval request (`300` seconds,
        /// `5m`, `90s`); silence is a rejection.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        approval_timeout: Duration,
        /// With `--approve web`: where the console listens. Beyond loopback
        /// TLS is required (`--tls-cert`, `--tls-key`) unless `--insecure-http`.
        #[arg(long, default_value = opsguard::console::DEFAULT_LISTEN)]
        listen: String,
        /// With `--approve web`: the token every client must present (else
        /// the OPSGUARD_CONSOLE_TOKEN environment variable, which `ps` does
        /// not show; else a random one written to `--token-file`).
        #[arg(long)]
        token: Option<String>,
        /// With `--approve web` and no token given: where the generated
        /// token is written (mode 0600, replaced at each start).
        #[arg(long, default_value = "opsguard-console.token")]
        token_file: PathBuf,
        /// With `--approve web`: serve the console over TLS with this
        /// certificate chain (PEM, leaf first).
        #[arg(long, requires = "tls_key", value_name = "PEM")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of `--tls-cert`.
        #[arg(long, requires = "tls_cert", value_name = "PEM")]
        tls_key: Option<PathBuf>,
        /// With `--approve web`: allow plain HTTP beyond loopback (the token
        /// and the session cookie then cross the network in the clear).
        #[arg(long, conflicts_with = "tls_cert")]
        insecure_http: bool,
        /// LLM for unknown root causes: an `llm.toml` with an `[llm]` table.
        #[arg(long)]
        llm_config: Option<PathBuf>,
        /// LLM endpoint (OpenAI-compatible base URL, e.g. http://127.0.0.1:11434 for Ollama).
        #[arg(long)]
        llm_url: Option<String>,
        /// LLM model name.
        #[arg(long)]
        llm_model: Option<String>,
        /// Environment variable holding the LLM's API key (never logged).
        #[arg(long)]
        llm_api_key_env: Option<String>,
        /// Seconds to wait for the LLM.
        #[arg(long)]
        llm_timeout: Option<u64>,
        /// Most tokens the LLM may answer with.
        #[arg(long)]
        llm_max_tokens: Option<u64>,
        /// Allow plain http to an LLM host that is not loopback (evidence
        /// and any API key then cross the network unencrypted).
        #[arg(long)]
        llm_allow_http: bool,
        /// Observe and decide for real, execute nothing: record what would
        /// be done (exit code 0 whatever was decided).
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write an incident's post-mortem (Markdown) from the audit log.
    Postmortem {
        /// The incident id (as in the audit log's `incident` field).
        incident: u64,
        /// The audit log to read.
        #[arg(long, default_value = "opsguard-audit.jsonl")]
        audit: PathBuf,
        /// Which run of that id, when several `watch` runs appended to the
        /// log (1 = the first; default: the last).
        #[arg(long)]
        occurrence: Option<usize>,
        /// Write the report here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show which rule raises an alarm, which evidence decides its root
    /// cause and what action follows, touching no host.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["alarm", "from"])))]
    Explain {
        /// The alarm to explain.
        #[arg(long, value_enum)]
        alarm: Option<AlarmArg>,
        /// The crashed container's exit code.
        #[arg(long)]
        exit_code: Option<i64>,
        /// Docker's OOMKilled flag (`true` or `false`).
        #[arg(long, value_name = "BOOL")]
        oom: Option<bool>,
        /// A log line from before the crash (repeatable, oldest first).
        #[arg(long = "log-line", value_name = "LINE")]
        log_lines: Vec<String>,
        /// A file of log lines from before the crash (after any --log-line).
        #[arg(long, value_name = "FILE")]
        logs: Option<PathBuf>,
        /// Disk usage in percent.
        #[arg(long, value_name = "PCT")]
        disk_used: Option<f64>,
        /// Exited containers in scope (zombies).
        #[arg(long, value_name = "N")]
        exited: Option<u32>,
        /// Take the alarm recorded in this audit log instead of flags.
        #[arg(long, value_name = "AUDIT", conflicts_with_all = ["alarm", "exit_code", "oom", "log_lines", "logs", "disk_used", "exited"])]
        from: Option<PathBuf>,
        /// With --from: the incident (default: the last one in the log).
        #[arg(long, requires = "from")]
        incident: Option<u64>,
        /// Rules file (default: the built-in rules/default.toml).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Decide as if an LLM were configured (unknown causes consult it).
        #[arg(long)]
        llm: bool,
    },
    /// Run recorded incidents through today's rules and show where they
    /// would decide differently (exit 0: the same, 3: different, 1: error).
    Replay {
        /// The audit log.
        audit: PathBuf,
        /// Only this incident id.
        #[arg(long)]
        incident: Option<u64>,
        /// Today's rules file (default: the built-in rules/default.toml).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AlarmArg {
    /// `DB_CRASH`: the database is down; its cause is classified.
    DbCrash,
    /// `WEB_LOG_SATURATION`: the web log disk (with --disk-used).
    WebDisk,
    /// `ZOMBIE_OUTBREAK`: exited containers (with --exited).
    Zombies,
}

/// How `watch` reports what it does.
#[derive(clap::Args, Clone, Debug)]
struct OutputArgs {
    /// `text`: a timeline for humans (with a progress line on a terminal)
    /// and warnings on stderr; `json`: every incident step as a JSON line on
    /// stdout, from `tracing` (filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human timeline.
    Text,
    /// JSON lines.
    Json,
}

/// No LLM (unknown causes escalate), or an OpenAI-compatible one.
enum CliAdvisor {
    None(NoAdvisor),
    OpenAi(Box<OpenAiAdvisor>),
}

impl Advisor for CliAdvisor {
    fn is_configured(&self) -> bool {
        match self {
            CliAdvisor::None(a) => a.is_configured(),
            CliAdvisor::OpenAi(a) => a.is_configured(),
        }
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Advice, AdviceError> {
        match self {
            CliAdvisor::None(a) => a.advise(request).await,
            CliAdvisor::OpenAi(a) => a.advise(request).await,
        }
    }
}

/// The `--llm-*` flags, through the same parser the library offers.
fn llm_advisor(flags: [(&str, Option<String>); 6], allow_http: bool) -> Result<CliAdvisor, String> {
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
        None => Ok(CliAdvisor::None(NoAdvisor)),
        Some(config) => Ok(CliAdvisor::OpenAi(Box::new(OpenAiAdvisor::new(config).map_err(|e| e.to_string())?))),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LabAction {
    Up,
    Down,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ApproveMode {
    /// Ask at the terminal (no terminal: reject).
    Prompt,
    /// Approve every risky action.
    Auto,
    /// Reject every risky action.
    Deny,
    /// Ask on the web approval console (`--listen`, `--token`).
    Web,
}

/// Plain seconds (`300`) or a humantime duration (`5m`, `1m30s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string())?,
    };
    if d.is_zero() { Err("must be longer than zero".into()) } else { Ok(d) }
}

enum CliApprover {
    Terminal(TerminalApprover),
    Policy(PolicyApprover),
    Web(WebApprover),
}

impl Approver for CliApprover {
    fn name(&self) -> &str {
        match self {
            CliApprover::Terminal(a) => a.name(),
            CliApprover::Policy(a) => a.name(),
            CliApprover::Web(a) => a.name(),
        }
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        match self {
            CliApprover::Terminal(a) => a.review(request).await,
            CliApprover::Policy(a) => a.review(request).await,
            CliApprover::Web(a) => a.review(request).await,
        }
    }
}

fn lab_dir(given: Option<PathBuf>) -> PathBuf {
    if let Some(d) = given {
        return d;
    }
    if let Some(d) = std::env::var_os("OPSGUARD_LAB_SCRIPTS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("lab");
    if here.join("up.sh").is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab")
}

fn main() -> ExitCode {
    // A usage error exits 1 like any other error: clap's own 2 would read as
    // "an incident stopped for a human" to a script watching `watch`.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opsguard: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        // Errors quote the daemon and the containers: one inert line each.
        Err(e) => {
            eprintln!("opsguard: {}", printable(&e));
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Lab { action, lab_dir: dir } => {
            let dir = lab_dir(dir);
            let script = dir.join(match action {
                LabAction::Up => "up.sh",
                LabAction::Down => "down.sh",
            });
            let status = tokio::process::Command::new("bash")
                .arg(&script)
                .status()
                .await
                .map_err(|e| format!("{}: {e}", script.display()))?;
            Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Chaos { scenario, full, record, scope_label, lab_dir: dir } => {
            if scenario == "list" {
                for s in Scenario::ALL {
                    let e = s.expected();
                    let outcome = match e.resolution {
                        Resolution::Resolved => "resolved".to_string(),
                        Resolution::Stopped { reason } => format!("STOP: {reason}"),
                        Resolution::Shadow => "shadow".to_string(),
                    };
                    let approval = if e.needs_approval { " (after approval)" } else { "" };
                    println!("{:<22} {} → {outcome}{approval}", s.name(), e.alarm);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let dir = lab_dir(dir);
            if scenario == "reset" && full {
                println!("{}", run_script(&dir.join("reset.sh")).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let host = DockerHost::connect(&scope_label).await.map_err(|e| e.to_string())?;
            let chaos = DockerChaos::new(host, Some(record), Some(dir));
            let rec = if scenario == "reset" {
                chaos.reset().await
            } else {
                let s = Scenario::from_name(&scenario).ok_or_else(|| {
                    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    format!("unknown scenario {scenario:?}; one of: {}, reset, list", names.join(", "))
                })?;
                println!("💥 {s}: OpsGuard must raise {} and end {:?}", s.expected().alarm, s.expected().resolution);
                chaos.inject(s).await
            }
            .map_err(|e| e.to_string())?;
            for step in &rec.steps {
                println!("  {:>6} ms  {} → {}", step.ms, printable(&step.what), printable(&step.result));
            }
            println!("done in {} ms", rec.duration_ms);
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch {
            rules,
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
            output,
        } => {
            init_logging(output.log_format);
            let advisor = llm_advisor(
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
            let mut rules = match rules {
                Some(path) => opsguard::rules::load(&path).map_err(|e| e.to_string())?,
                None => Rules::default_rules(),
            };
            if let Some(label) = scope_label {
                if !label.contains('=') {
                    return Err(format!("--scope-label must be key=value, not {label:?}"));
                }
                rules.scope_label = label;
            }
            let console = match approve {
                ApproveMode::Web => {
                    let web = WebConsole {
                        listen: &listen,
                        token,
                        token_file: &token_file,
                        tls_cert,
                        tls_key,
                        insecure_http,
                    };
                    Some(start_console(web, approval_timeout, output.log_format).await?)
                }
                _ => None,
            };
            let approver = match (approve, &console) {
                (ApproveMode::Web, Some((c, _))) => CliApprover::Web(c.approver()),
                (ApproveMode::Prompt, _) => CliApprover::Terminal(TerminalApprover),
                (ApproveMode::Auto, _) => CliApprover::Policy(PolicyApprover::ApproveAll),
                (ApproveMode::Deny | ApproveMode::Web, _) => CliApprover::Policy(PolicyApprover::Deny),
            };
            let how = WatchHow {
                audit_path: &audit,
                until: Until {
                    incidents: max_incidents,
                    deadline: timeout.map(|s| SystemClock.now().plus_millis(s.saturating_mul(1000))),
                },
                approval_timeout,
                output: &output,
                console: console.as_ref().map(|(c, _)| c.clone()),
                shadow,
            };
            let reports = watch(Arc::new(rules), approver, advisor, how).await;
            if let Some((_, server)) = console {
                server.abort();
            }
            let reports = reports?;
            // Shadow mode reports decisions; none of them is a failure to act.
            Ok(if shadow { ExitCode::SUCCESS } else { exit_code(&reports) })
        }
        Command::Postmortem { incident, audit, occurrence, output } => {
            postmortem(incident, &audit, occurrence, output.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { alarm, exit_code, oom, log_lines, logs, disk_used, exited, from, incident, rules, llm } => {
            let engine = Engine::new(Arc::new(load_rules(rules.as_deref())?)).with_llm(llm);
            let facts = match (from, alarm) {
                (Some(audit), _) => recorded_alarm(&audit, incident)?,
                (None, Some(kind)) => {
                    let mut lines = log_lines;
                    if let Some(path) = logs {
                        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_string));
                    }
                    // The observer reads at most this many lines before a crash.
                    let keep = lines.len().saturating_sub(opsguard::observer::MAX_LOG_LINES);
                    lines.drain(..keep);
                    opsguard::explain::AlarmFacts {
                        source: match kind {
                            AlarmArg::DbCrash => opsguard::explain::AlarmSource::DbCrash,
                            AlarmArg::WebDisk => opsguard::explain::AlarmSource::WebDisk,
                            AlarmArg::Zombies => opsguard::explain::AlarmSource::Zombies,
                        },
                        exit_code,
                        oom_killed: oom.unwrap_or(false),
                        logs: lines,
                        disk_used_pct: disk_used,
                        exited_containers: exited,
                    }
                }
                (None, None) => return Err("give --alarm KIND or --from AUDIT".into()),
            };
            print!("{}", opsguard::explain::explain(&engine, &facts, SystemClock.now()).render());
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { audit, incident, rules } => {
            let rules = Arc::new(load_rules(rules.as_deref())?);
            let trails = read_trails(&audit)?;
            let trails: Vec<_> = trails.into_iter().filter(|t| incident.is_none_or(|id| t.incident == id)).collect();
            let replays = opsguard::explain::replay(rules, &trails);
            if replays.is_empty() {
                return Err(match incident {
                    Some(id) => format!("{}: no incident #{id} with its opening record", audit.display()),
                    None => format!("{}: no incident with its opening record", audit.display()),
                });
            }
            for r in &replays {
                println!("{}", r.render());
            }
            let differ = replays.iter().filter(|r| r.differs()).count();
            println!("{} incident(s) replayed, {differ} decided differently by today's rules", replays.len());
            Ok(if differ > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
    }
}

fn load_rules(path: Option<&Path>) -> Result<Rules, String> {
    match path {
        Some(path) => opsguard::rules::load(path).map_err(|e| e.to_string()),
        None => Ok(Rules::default_rules()),
    }
}

/// The incidents in an audit log; unreadable lines are reported and skipped.
fn read_trails(audit: &Path) -> Result<Vec<opsguard::audit::IncidentTrail>, String> {
    let read = opsguard::audit::read_audit(audit).map_err(|e| format!("{}: {e}", audit.display()))?;
    for (line, text) in &read.bad_lines {
        eprintln!("opsguard: {}:{line}: skipped a line that is not an audit record: {text:?}", audit.display());
    }
    Ok(opsguard::audit::incident_trails(&read.records))
}

/// The facts of the alarm recorded for `incident` (default: the last one).
fn recorded_alarm(audit: &Path, incident: Option<u64>) -> Result<opsguard::explain::AlarmFacts, String> {
    let trails = read_trails(audit)?;
    let alarm = trails
        .iter()
        .rev()
        .filter(|t| incident.is_none_or(|id| t.incident == id))
        .find_map(|t| t.alarm().map(|(_, a)| a.clone()))
        .ok_or_else(|| match incident {
            Some(id) => format!("{}: no alarm recorded for incident #{id}", audit.display()),
            None => format!("{}: no alarm recorded", audit.display()),
        })?;
    println!("recorded:    {alarm} (raised {})", alarm.raised_at.to_rfc3339());
    Ok(opsguard::explain::AlarmFacts::from_alarm(&alarm))
}

/// `opsguard postmortem`: the report, to a file or standard output.
fn postmortem(incident: u64, audit: &Path, occurrence: Option<usize>, output: Option<&Path>) -> Result<(), String> {
    let trails = read_trails(audit)?;
    let report = opsguard::postmortem::select(&trails, incident, occurrence)
        .map_err(|e| format!("{}: {e}", audit.display()))?
        .to_markdown();
    match output {
        Some(path) => std::fs::write(path, report).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            print!("{report}");
            Ok(())
        }
    }
}

/// The `--approve web` flags.
struct WebConsole<'a> {
    listen: &'a str,
    token: Option<String>,
    token_file: &'a Path,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_http: bool,
}

/// Starts the web approval console; returns it and its server task. Every
/// check (the address, TLS, the token) is made before anything listens.
async fn start_console(
    web: WebConsole<'_>,
    approval_timeout: Duration,
    format: LogFormat,
) -> Result<(Console, tokio::task::JoinHandle<std::io::Result<()>>), String> {
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
    let server = tokio::spawn(console.clone().serve_with(listener, opsguard::serve::Limits::CONSOLE, tls));
    Ok((console, server))
}

/// 0 when every incident resolved, 2 when any stopped for a human.
fn exit_code(reports: &[IncidentReport]) -> ExitCode {
    if reports.iter().any(|r| matches!(r.resolution, Resolution::Stopped { .. })) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// How `watch` runs, beside whom it asks and consults.
struct WatchHow<'a> {
    audit_path: &'a Path,
    until: Until,
    approval_timeout: Duration,
    output: &'a OutputArgs,
    console: Option<Console>,
    shadow: bool,
}

async fn watch<A: Approver, L: Advisor>(
    rules: Arc<Rules>,
    approver: A,
    advisor: L,
    how: WatchHow<'_>,
) -> Result<Vec<IncidentReport>, String> {
    let WatchHow { audit_path, until, approval_timeout, output, console, shadow } = how;
    let prompts = approver.name() == TerminalApprover.name();
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
    let metrics = match output.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, output.log_format).await?),
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
    let (audit, status) = match output.log_format {
        LogFormat::Text => {
            let status = StatusLine::start(Duration::from_secs(rules.observer.rapid_window_secs), prompts);
            let tap = status.clone();
            (audit.with_tap(move |r| tap.record(r)), Some(status))
        }
        // Every step already goes out as a JSON line through `telemetry`.
        LogFormat::Json => (audit, None),
    };
    let audit = match console {
        Some(c) => audit.with_tap(move |r| c.record(r)),
        None => audit,
    };
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let (raw, pump) = spawn_events(host.client().clone(), rules.scope_label.clone(), 256, Some(notices_tx));
    let (events, settle) = settle_deaths(raw, Duration::from_millis(500));
    let notice_task = tokio::spawn(async move {
        while let Some(n) = notices.recv().await {
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
            "👁  OpsGuard watching {} and {} (scope {}), sweep every {}s, audit {}",
            rules.web.container,
            rules.database.container,
            rules.scope_label,
            rules.observer.interval_secs,
            audit_path.display()
        ),
    );
    let engine = Engine::new(rules);
    if advisor.is_configured() {
        announce(
            output.log_format,
            "🤖 unknown root causes consult the configured LLM (its choice still needs the same checks)",
        );
    }
    let responder = Responder::new(engine, host, approver, advisor, SystemClock, audit)
        .with_timeouts(opsguard::incident::Timeouts { approval: approval_timeout, ..Default::default() })
        .with_shadow(shadow)
        .resuming(resume);
    if shadow {
        announce(
            output.log_format,
            "👻 shadow mode: deciding for real, executing nothing (would-be actions go to the audit log)",
        );
    }
    let mut agent = Agent::new(responder);
    let reports = tokio::select! {
        r = agent.run(Some(events), until) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("opsguard: interrupted");
            Vec::new()
        }
    };
    pump.abort();
    settle.abort();
    notice_task.abort();
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
            Resolution::Shadow => "👻 shadow: nothing changed".to_string(),
        };
        println!("incident #{}: {} → {end} in {secs:.1}s ({} steps)", r.id, r.alarm, r.steps.len());
    }
    Ok(reports)
}

/// Installs the `tracing` subscriber `watch` logs through: warnings and
/// errors on stderr beside the human timeline, or every step as JSON on
/// stdout. `RUST_LOG` overrides the level.
fn init_logging(format: LogFormat) {
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
fn announce(format: LogFormat, line: &str) {
    match format {
        LogFormat::Text => println!("{line}"),
        LogFormat::Json => tracing::info!("{line}"),
    }
}

/// Installs the Prometheus recorder and serves `/metrics` on `addr` until
/// the returned task is aborted. Picked `metrics-exporter-prometheus` (the
/// `metrics` project's own exporter) so the library stays on the facade.
async fn serve_metrics(addr: std::net::SocketAddr, format: LogFormat) -> Result<tokio::task::JoinHandle<()>, String> {
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
    announce(format, &format!("📈 metrics at http://{at}/metrics"));
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
        if let Err(e) = opsguard::telemetry::serve_metrics(listener, render, opsguard::serve::Limits::METRICS).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
        upkeep.abort();
    }))
}

/// The human timeline, with a progress line under it while a terminal is
/// attached; plain lines otherwise (a pipe or a log file gets no escapes).
#[derive(Clone)]
struct StatusLine {
    bar: Option<indicatif::ProgressBar>,
    progress: Arc<std::sync::Mutex<opsguard::progress::Progress>>,
    ticker: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl StatusLine {
    /// `prompts`: approvals are asked at this terminal, so the line steps
    /// aside while a question waits for its answer.
    fn start(rapid_window: Duration, prompts: bool) -> StatusLine {
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

    fn record(&self, r: &opsguard::audit::AuditRecord) {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).observe(r);
        let time = r.time.get(11..23).unwrap_or(&r.time);
        let line = format!("[{time}] #{} {}", r.incident, r.event.render());
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(t) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
