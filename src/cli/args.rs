//! The command line's grammar: every command, flag and default of
//! `opsguard`, as clap derive types. What the commands do lives beside this
//! module, one module per command.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use opsguard::explain::AlarmSource;

#[derive(Parser)]
#[command(name = "opsguard", version, about = "A self-healing agent for Docker hosts")]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

// Each command's arguments are a struct of their own, for its module. Those
// structs carry plain comments: a doc comment would replace the help text
// given here. Parsed once at start: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Start or stop the Docker lab.
    #[cfg(feature = "lab")]
    Lab(LabArgs),
    /// Inject a fault into the lab, or reset it.
    #[cfg(feature = "lab")]
    Chaos(ChaosArgs),
    /// Watch the Docker host and respond to incidents.
    Watch(WatchArgs),
    /// Write an incident's post-mortem (Markdown) from the audit log.
    Postmortem(PostmortemArgs),
    /// Show which rule raises an alarm, which evidence decides its root
    /// cause and what action follows, touching no host.
    Explain(ExplainArgs),
    /// Run recorded incidents through today's rules and show where they
    /// would decide differently (exit 0: the same, 3: different, 1: error).
    Replay(ReplayArgs),
    /// List, approve or reject the approval requests waiting on a running
    /// `watch --approve web`, through its console's JSON API.
    Approvals(ApprovalsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff) on standard output, or write one page per
    /// command into a directory.
    Man(ManArgs),
    /// Check the notification destinations of a notify file.
    Notify(NotifyArgs),
    /// Check a rules file, or show the effective rules. A rules file names
    /// only what it changes; the built-in defaults give the rest.
    #[command(subcommand)]
    Rules(RulesCommand),
}

// `opsguard man`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// Write opsguard.1 and a page per command (opsguard-watch.1, …) here
    /// instead of printing opsguard.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

// `opsguard approvals`.
#[derive(clap::Args)]
pub struct ApprovalsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ApprovalsAction,
    /// The console's URL, as `watch --approve web` announced it.
    #[arg(long, global = true, env = "OPSGUARD_CONSOLE_URL", default_value = "http://127.0.0.1:8990")]
    pub url: String,
    /// The console's token (else the OPSGUARD_CONSOLE_TOKEN environment
    /// variable, which `ps` does not show; else the token file).
    #[arg(long, global = true, env = "OPSGUARD_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With no token given: the file `watch` wrote its generated token to.
    #[arg(long, global = true, env = "OPSGUARD_TOKEN_FILE", default_value = "opsguard-console.token")]
    pub token_file: PathBuf,
    /// Trust this CA certificate (PEM) for a console served over TLS with
    /// a certificate the system does not know (a self-signed one).
    #[arg(long, global = true, env = "OPSGUARD_CONSOLE_CA", value_name = "PEM")]
    pub cacert: Option<PathBuf>,
    /// Send the token over plain HTTP to a console that is not on
    /// loopback (it then crosses the network in the clear).
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// Seconds to wait for the console.
    #[arg(long, global = true, default_value_t = 30)]
    pub http_timeout: u64,
}

#[derive(Subcommand)]
pub enum ApprovalsAction {
    /// The requests waiting for a human, with their evidence.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve request ID (its current digest is fetched first, unless
    /// `--digest` names the one you reviewed).
    Approve(AnswerArgs),
    /// Reject request ID.
    Reject(AnswerArgs),
}

#[derive(clap::Args)]
pub struct AnswerArgs {
    /// The request id, as `approvals list` shows it.
    pub id: u64,
    /// The digest of the request as you reviewed it: refused if the
    /// action or its evidence changed since.
    #[arg(long)]
    pub digest: Option<String>,
    /// Your name, recorded with the answer (default: $USER).
    #[arg(long, env = "OPSGUARD_APPROVER")]
    pub approver: Option<String>,
}

// `opsguard completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

// `opsguard rules`.
#[derive(Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file over the built-in defaults (exit 0 with a
    /// summary; 1 with FILE:LINE:COL: field: what is wrong).
    Check {
        /// The rules file.
        file: PathBuf,
    },
    /// Print the effective rules (a file over the built-in defaults) as a
    /// complete rules file.
    Show {
        /// Rules file (default: the built-in rules alone).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

// `opsguard lab`.
#[cfg(feature = "lab")]
#[derive(clap::Args)]
pub struct LabArgs {
    /// `up` or `down`.
    #[arg(value_enum)]
    pub action: LabAction,
    /// The lab scripts' directory (default: ./lab, else the source tree's lab/).
    #[arg(long)]
    pub lab_dir: Option<PathBuf>,
}

// `opsguard chaos`.
#[cfg(feature = "lab")]
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// A scenario (`web-disk-fill`, `zombies`, `db-garbage-flood`,
    /// `db-config-corruption`, `db-oom-kill`, `db-data-corruption`,
    /// `chain-reaction`, `web-log-slow-fill`; for a stateless service
    /// `api-crash`, `api-crashloop`, `api-unhealthy`), `reset` or `list`.
    pub scenario: String,
    /// The container the scenario hits (in scope): a database for the
    /// `db-*` scenarios and `chain-reaction` (default `db-prod`), a web
    /// server with the lab's log directory for the `web-*` ones (default
    /// `web-prod`), a running stateless service for the others (default
    /// `shop-api`; `db-down-with-dependents` kills the database it depends
    /// on first). `zombies` takes none.
    #[arg(long)]
    pub target: Option<String>,
    /// With `reset`: a fresh lab (lab/reset.sh) instead of a repair.
    #[arg(long)]
    pub full: bool,
    /// Where to append the record of what was done (JSON lines).
    #[arg(long, default_value = "opsguard-chaos.jsonl")]
    pub record: PathBuf,
    /// Only touch containers with this label.
    #[arg(long, default_value = "opsguard.lab=true")]
    pub scope_label: String,
    /// The lab scripts' directory.
    #[arg(long)]
    pub lab_dir: Option<PathBuf>,
}

// `opsguard watch`.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// Rules file (default: the built-in rules/default.toml).
    #[arg(long, env = "OPSGUARD_RULES")]
    pub rules: Option<PathBuf>,
    /// Overrides the rules' scope label (`key=value`).
    #[arg(long, env = "OPSGUARD_SCOPE_LABEL")]
    pub scope_label: Option<String>,
    /// How risky actions are approved.
    #[arg(long, env = "OPSGUARD_APPROVE", value_enum, default_value_t = ApproveMode::Prompt)]
    pub approve: ApproveMode,
    /// Audit log (JSON lines, appended).
    #[arg(long, env = "OPSGUARD_AUDIT", default_value = "opsguard-audit.jsonl")]
    pub audit: PathBuf,
    /// Exit after this many incidents ended.
    #[arg(long, env = "OPSGUARD_MAX_INCIDENTS")]
    pub max_incidents: Option<usize>,
    /// Exit after this many seconds.
    #[arg(long, env = "OPSGUARD_TIMEOUT")]
    pub timeout: Option<u64>,
    /// How long a human has to answer an approval request (`300` seconds,
    /// `5m`, `90s`); silence is a rejection.
    #[arg(long, env = "OPSGUARD_APPROVAL_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub approval_timeout: Duration,
    /// With `--approve web`: where the console listens. Beyond loopback
    /// TLS is required (`--tls-cert`, `--tls-key`) unless `--insecure-http`.
    #[arg(long, env = "OPSGUARD_LISTEN", default_value = opsguard::console::DEFAULT_LISTEN)]
    pub listen: String,
    /// With `--approve web`: the token every client must present (else
    /// the OPSGUARD_CONSOLE_TOKEN environment variable, which `ps` does
    /// not show; else a random one written to `--token-file`).
    #[arg(long, env = "OPSGUARD_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With `--approve web` and no token given: where the generated
    /// token is written (mode 0600, replaced at each start).
    #[arg(long, env = "OPSGUARD_TOKEN_FILE", default_value = "opsguard-console.token")]
    pub token_file: PathBuf,
    /// With `--approve web`: serve the console over TLS with this
    /// certificate chain (PEM, leaf first).
    #[arg(long, env = "OPSGUARD_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "OPSGUARD_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// With `--approve web`: allow plain HTTP beyond loopback (the token
    /// and the session cookie then cross the network in the clear).
    #[arg(long, env = "OPSGUARD_INSECURE_HTTP", conflicts_with = "tls_cert")]
    pub insecure_http: bool,
    /// LLM for unknown root causes: an `llm.toml` with an `[llm]` table.
    #[arg(long, env = "OPSGUARD_LLM_CONFIG")]
    pub llm_config: Option<PathBuf>,
    /// LLM endpoint (OpenAI-compatible base URL, e.g. http://127.0.0.1:11434 for Ollama).
    #[arg(long, env = "OPSGUARD_LLM_URL")]
    pub llm_url: Option<String>,
    /// LLM model name.
    #[arg(long, env = "OPSGUARD_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Environment variable holding the LLM's API key (never logged).
    #[arg(long, env = "OPSGUARD_LLM_API_KEY_ENV")]
    pub llm_api_key_env: Option<String>,
    /// Seconds to wait for the LLM.
    #[arg(long, env = "OPSGUARD_LLM_TIMEOUT")]
    pub llm_timeout: Option<u64>,
    /// Most tokens the LLM may answer with.
    #[arg(long, env = "OPSGUARD_LLM_MAX_TOKENS")]
    pub llm_max_tokens: Option<u64>,
    /// Allow plain http to an LLM host that is not loopback (evidence
    /// and any API key then cross the network unencrypted).
    #[arg(long, env = "OPSGUARD_LLM_ALLOW_HTTP")]
    pub llm_allow_http: bool,
    /// Observe and decide for real, execute nothing: record what would
    /// be done (exit code 0 whatever was decided).
    #[arg(long, env = "OPSGUARD_SHADOW")]
    pub shadow: bool,
    /// Notify humans (webhook, Slack, Alertmanager) as this file's
    /// `[[notify]]` tables say; validated before the watch starts.
    #[arg(long, env = "OPSGUARD_NOTIFY", value_name = "FILE")]
    pub notify: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

// `opsguard postmortem`.
#[derive(clap::Args)]
pub struct PostmortemArgs {
    /// The incident id (as in the audit log's `incident` field).
    pub incident: u64,
    /// The audit log to read.
    #[arg(long, default_value = "opsguard-audit.jsonl")]
    pub audit: PathBuf,
    /// Which run of that id, when several `watch` runs appended to the
    /// log (1 = the first; default: the last).
    #[arg(long)]
    pub occurrence: Option<usize>,
    /// Write the report here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

// `opsguard explain`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["alarm", "from"])))]
pub struct ExplainArgs {
    /// The alarm to explain.
    #[arg(long, value_name = "KIND", value_parser = alarm_source())]
    pub alarm: Option<AlarmSource>,
    /// The crashed container's exit code.
    #[arg(long)]
    pub exit_code: Option<i64>,
    /// Docker's OOMKilled flag (`true` or `false`).
    #[arg(long, value_name = "BOOL")]
    pub oom: Option<bool>,
    /// A log line from before the crash (repeatable, oldest first).
    #[arg(long = "log-line", value_name = "LINE")]
    pub log_lines: Vec<String>,
    /// A file of log lines from before the crash (after any --log-line).
    #[arg(long, value_name = "FILE")]
    pub logs: Option<PathBuf>,
    /// Disk usage in percent.
    #[arg(long, value_name = "PCT")]
    pub disk_used: Option<f64>,
    /// Exited containers in scope (zombies).
    #[arg(long, value_name = "N")]
    pub exited: Option<u32>,
    /// Take the alarm recorded in this audit log instead of flags.
    #[arg(long, value_name = "AUDIT", conflicts_with_all = ["alarm", "exit_code", "oom", "log_lines", "logs", "disk_used", "exited"])]
    pub from: Option<PathBuf>,
    /// With --from: the incident (default: the last one in the log).
    #[arg(long, requires = "from")]
    pub incident: Option<u64>,
    /// Rules file (default: the built-in rules/default.toml).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Decide as if an LLM were configured (unknown causes consult it).
    #[arg(long)]
    pub llm: bool,
}

// `opsguard replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The audit log.
    pub audit: PathBuf,
    /// Only this incident id.
    #[arg(long)]
    pub incident: Option<u64>,
    /// Today's rules file (default: the built-in rules/default.toml).
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

// `opsguard notify`.
#[derive(clap::Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Send a test notification to every destination and say how each
    /// went (exit 1 if any failed).
    Test {
        /// The notify file.
        #[arg(long, env = "OPSGUARD_NOTIFY", value_name = "FILE")]
        notify: PathBuf,
    },
}

/// `--alarm`'s choices, one per alarm condition the core knows, with its help.
fn alarm_source() -> impl clap::builder::TypedValueParser<Value = AlarmSource> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let choices = AlarmSource::ALL.map(|s| PossibleValue::new(s.key()).help(s.describe()));
    PossibleValuesParser::new(choices).try_map(|key| AlarmSource::from_key(&key).ok_or("not an alarm kind"))
}

/// How `watch` reports what it does.
#[derive(clap::Args, Clone, Debug)]
pub struct OutputArgs {
    /// `text`: a timeline for humans (with a progress line on a terminal)
    /// and warnings on stderr; `json`: every incident step as a JSON line on
    /// stdout, from `tracing` (filter with RUST_LOG).
    #[arg(long, env = "OPSGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, env = "OPSGUARD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human timeline.
    Text,
    /// JSON lines.
    Json,
}

#[cfg(feature = "lab")]
#[derive(Clone, Copy, ValueEnum)]
pub enum LabAction {
    Up,
    Down,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApproveMode {
    /// Ask at the terminal (`watch` refuses to start without one).
    Prompt,
    /// Approve every risky action.
    Auto,
    /// Reject every risky action.
    Deny,
    /// Ask on the web approval console (`--listen`, `--token`).
    Web,
}

/// Plain seconds (`300`) or a humantime duration (`5m`, `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string())?,
    };
    if d.is_zero() { Err("must be longer than zero".into()) } else { Ok(d) }
}
