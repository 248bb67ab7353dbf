//! The real host: Docker over bollard (API 1.41 and later).
//!
//! [`DockerHost`] implements [`Host`] against the local daemon. Every call is
//! wrapped in a tokio timeout and every daemon error is mapped to a
//! [`HostErrorKind`] (404 → `NotFound`, 409 → `Conflict`, a daemon that cannot
//! be reached → `Unavailable`, a call that takes too long → `Timeout`), so
//! the incident loop can turn it into an escalation; nothing here panics.
//!
//! Looking inside a container (disk usage, cleaning logs) runs a command
//! there with `exec` when the container is running. A stopped container
//! cannot `exec` (409), so a short-lived **helper container** from the
//! container's own image is started with `volumes_from` the target (the same
//! volumes and binds, no network), labelled with the scope label and
//! `opsguard.role=helper`, and removed afterwards whatever happened.
//!
//! Cleaning is deliberately narrow, and safe against the container's own
//! processes racing it (they may write the log directory): a small perl
//! program ([`CLEAN_LOGS_PL`], perl-base is Essential in Debian) walks the
//! log path one directory descriptor at a time with `O_NOFOLLOW` (no
//! symlink is followed, not even in the start path), never leaves the log
//! path's filesystem, skips every other mount of the container nested below
//! it and any PostgreSQL data directory (`PG_VERSION`), opens each log file
//! (the host contract: `*.log` and rotations such as `*.log.1`) with
//! `O_NOFOLLOW|O_NONBLOCK`, checks the open file (regular, one link, same
//! device) and truncates it through that descriptor to zero bytes; it never
//! removes anything. `find … -exec truncate` would check a name and then
//! truncate whatever the name pointed to by then. A helper gets the
//! container's mounts with their own read-only flags (Docker keeps a
//! read-only mount read-only under `volumes_from …:rw`). Log paths holding
//! the database's data directory (`PGDATA`, `/var/lib/postgresql`) are
//! refused.
//!
//! Every mutating operation (restart, clean, prune) and every helper is
//! limited to containers carrying the scope label (`scope.label` in the
//! rules); anything else is refused with [`HostErrorKind::OutOfScope`].
//!
//! [`spawn_events`] turns Docker's event stream into
//! [`crate::host::ContainerEvent`]s for [`crate::incident::Agent::run`],
//! reconnecting after the daemon restarts and resuming from the last event
//! seen.
//!
//! Reading a disk without starting anything (the disk watch between sweeps)
//! is a `statvfs` of the host path Docker reports for the mount, checked
//! once against a reading through the container: see [`diskwatch`].
//!
//! Submodules: [`helper`] (the helper containers), [`events`] (the event
//! stream) and [`diskwatch`]; the first two's items are re-exported here.

pub mod diskwatch;
pub mod events;
pub mod helper;

pub use events::{StreamNotice, convert_event, spawn_events};
pub use helper::{HELPER_ROLE, ROLE_LABEL};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum, ExecConfig, HealthStatusEnum,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StartContainerOptions,
};
use futures_util::StreamExt;

use crate::host::{
    CleanReport, ContainerStatus, ContainerSummary, DiskUsage, Host, HostError, HostErrorKind, LogLine, LogSink,
    PRUNE_LABEL, is_under, log_path_holding_data,
};
use crate::model::{ContainerName, ContainerState, Health, Timestamp};

/// Most bytes of logs read in one pass (hostile output: enough is enough).
const MAX_LOG_BYTES: usize = 256 * 1024 * 1024;
/// Lines read again, the newest, when a window was cut short.
const NEWEST_LINES_AGAIN: usize = 10_000;
/// Longest log line kept, in bytes; the rest of a longer one is dropped.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Bounds on how long OpsGuard's run of a container's health command may
/// take (Docker's `timeout` of the check, clamped: the container chose it).
const PROBE_TIMEOUT_MIN: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(5);
/// Bounds on a health command OpsGuard runs (the container wrote it).
const PROBE_MAX_ARGS: usize = 64;
const PROBE_MAX_BYTES: usize = 8 * 1024;

/// The argv of a Docker health check's `Test`, as Docker runs it: `CMD`
/// runs its arguments, `CMD-SHELL` its one string with `/bin/sh -c`.
/// `Ok(None)`: no check (`NONE`, empty). An error for anything else, or a
/// command too large or with a NUL byte.
pub fn health_command(test: &[String]) -> Result<Option<Vec<String>>, String> {
    let argv: Vec<String> = match test.split_first() {
        None => return Ok(None),
        Some((kind, _)) if kind == "NONE" => return Ok(None),
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, [shell])) if kind == "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), shell.clone()],
        Some(_) => return Err("health check in a form Docker does not run".into()),
    };
    let bytes: usize = argv.iter().map(String::len).sum();
    if argv.len() > PROBE_MAX_ARGS || bytes > PROBE_MAX_BYTES || argv.iter().any(|a| a.contains('\0')) {
        return Err("health check command too large or malformed".into());
    }
    Ok(Some(argv))
}

/// Timeouts for daemon calls.
#[derive(Clone, Copy, Debug)]
pub struct DockerTimeouts {
    /// One ordinary API call (inspect, list, logs, remove).
    pub call: Duration,
    /// A restart or start (the stop grace period plus the start).
    pub restart: Duration,
    /// A command in a container or a helper, from creation to removal.
    pub command: Duration,
}

impl Default for DockerTimeouts {
    fn default() -> Self {
        DockerTimeouts {
            call: Duration::from_secs(15),
            restart: Duration::from_secs(60),
            command: Duration::from_secs(60),
        }
    }
}

/// The output of a command run in or beside a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code.
    pub exit_code: i64,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The Docker host.
#[derive(Clone, Debug)]
pub struct DockerHost {
    docker: Docker,
    scope_label: String,
    timeouts: DockerTimeouts,
    disk_watch: diskwatch::DiskWatchCache,
    /// Whether [`Host::probe_ready`] runs health commands (else verification
    /// waits for Docker's own).
    ready_probe: bool,
}

/// Maps a daemon error to a host error.
pub fn map_error(op: &str, e: DockerError) -> HostError {
    let kind = match &e {
        DockerError::DockerResponseServerError { status_code, .. } => match status_code {
            404 => HostErrorKind::NotFound,
            409 => HostErrorKind::Conflict,
            502..=504 => HostErrorKind::Unavailable,
            _ => HostErrorKind::Other,
        },
        DockerError::RequestTimeoutError => HostErrorKind::Timeout,
        DockerError::JsonDataError { .. } | DockerError::JsonSerdeError { .. } | DockerError::StrParseError { .. } => {
            HostErrorKind::BadResponse
        }
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HttpClientError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::SocketNotFoundError(_) => HostErrorKind::Unavailable,
        _ => HostErrorKind::Other,
    };
    HostError::new(kind, op, e.to_string())
}

/// Runs `fut` with a timeout, mapping both failure kinds.
async fn timed<T>(
    op: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| map_error(op, e)),
        Err(_) => Err(HostError::new(HostErrorKind::Timeout, op, format!("no answer within {}s", limit.as_secs()))),
    }
}

/// Parses Docker's RFC 3339 time (nanoseconds, `Z`); the zero time
/// (`0001-01-01T00:00:00Z`) and garbage give `None`.
pub fn parse_docker_time(s: &str) -> Option<Timestamp> {
    let t = humantime::parse_rfc3339_weak(s.trim().trim_end_matches('Z')).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    (ms > 0).then(|| Timestamp(ms.min(u64::MAX as u128) as u64))
}

fn state_of(s: Option<ContainerStateStatusEnum>) -> ContainerState {
    match s {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        // "stopping" is on its way down; "" is unknown: treat as dead-ish only
        // when Docker says nothing at all.
        Some(ContainerStateStatusEnum::STOPPING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::EMPTY) | None => ContainerState::Dead,
    }
}

fn summary_state(s: Option<ContainerSummaryStateEnum>) -> ContainerState {
    match s {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::STOPPING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited,
        Some(ContainerSummaryStateEnum::DEAD) | Some(ContainerSummaryStateEnum::EMPTY) | None => ContainerState::Dead,
    }
}

fn health_of(h: Option<HealthStatusEnum>) -> Health {
    match h {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        _ => Health::None,
    }
}

/// Whether `labels` carry `label` (`key=value`, or just `key`).
pub fn labels_match(labels: &HashMap<String, String>, label: &str) -> bool {
    match label.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(label),
    }
}

/// A log path OpsGuard accepts to clean: absolute, normalised, not `/`, no
/// `..`, no odd characters.
pub fn valid_log_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && p.len() < 4096
        && !p.split('/').any(|c| c == ".." || c == ".")
        && !p.contains("//")
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c))
}

/// Parses `df -P -B1` output: (used, available) of the first filesystem.
pub fn parse_df(out: &str) -> Option<DiskUsage> {
    let line = out.lines().filter(|l| !l.trim().is_empty()).nth(1)?;
    let f: Vec<&str> = line.split_whitespace().collect();
    // Filesystem 1-blocks Used Available Capacity Mounted-on; a long
    // filesystem name never contains spaces in -P output.
    if f.len() < 6 {
        return None;
    }
    let used: u64 = f[2].parse().ok()?;
    let avail: u64 = f[3].parse().ok()?;
    // df's own Use% is used / (used + available): root-reserved blocks and
    // filesystem metadata do not count as space the service could use.
    Some(DiskUsage { total_bytes: used.saturating_add(avail), used_bytes: used })
}

/// The cleaning program, run by perl inside the container or its helper:
/// see the file for what it checks and prints.
pub const CLEAN_LOGS_PL: &str = include_str!("../clean_logs.pl");

/// Parses the cleaning program's output: only `T<TAB>BYTES<TAB>PATH` lines
/// (files really truncated) and the `A<TAB>FILES<TAB>BYTES` summary of
/// those beyond the first thousand count. Paths arrive escaped, so a file
/// name cannot forge a line.
fn parse_clean(out: &str) -> CleanReport {
    let mut r = CleanReport::default();
    for l in out.lines() {
        let f: Vec<&str> = l.splitn(3, '\t').collect();
        let (files, bytes) = match f.as_slice() {
            ["T", bytes, _path] => (Some(1), bytes.parse::<u64>().ok()),
            ["A", files, bytes] => (files.parse::<u32>().ok(), bytes.parse::<u64>().ok()),
            _ => continue,
        };
        if let (Some(files), Some(bytes)) = (files, bytes) {
            r.files = r.files.saturating_add(files);
            r.freed_bytes = r.freed_bytes.saturating_add(bytes);
        }
    }
    r
}

/// How many containers a prune removes at once: enough to hide each
/// removal's latency, few enough not to flood the daemon.
const PRUNE_PARALLEL: usize = 8;

impl DockerHost {
    /// Streams the container's log lines from `since` (at most the newest
    /// `max_lines`) to `each`, oldest first, holding one line at a time: a
    /// large window costs time, not memory. A window of more than
    /// [`MAX_LOG_BYTES`] is cut short, and then its newest
    /// [`NEWEST_LINES_AGAIN`] lines are read again, so a crashed server's
    /// last words (at the end) are never among what was cut.
    async fn read_logs(
        &self,
        container: &str,
        since: Timestamp,
        max_lines: usize,
        each: &mut (dyn FnMut(Timestamp, &str) + Send),
    ) -> Result<(), HostError> {
        let op = format!("logs {container}");
        self.inspect_raw(container).await?;
        let read = async {
            if !self.read_logs_once(container, &op, since, max_lines, each).await? {
                self.read_logs_once(container, &op, since, NEWEST_LINES_AGAIN.min(max_lines), each).await?;
            }
            Ok::<_, HostError>(())
        };
        match tokio::time::timeout(self.timeouts.call, read).await {
            Ok(r) => r,
            Err(_) => Err(HostError::new(HostErrorKind::Timeout, op, "logs did not arrive in time")),
        }
    }

    /// One pass of [`DockerHost::read_logs`]; `false` when it was cut short.
    async fn read_logs_once(
        &self,
        container: &str,
        op: &str,
        since: Timestamp,
        max_lines: usize,
        each: &mut (dyn FnMut(Timestamp, &str) + Send),
    ) -> Result<bool, HostError> {
        let since_secs = i32::try_from(since.0 / 1000).unwrap_or(i32::MAX);
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since_secs)
            .tail(&max_lines.max(1).to_string())
            .build();
        let mut emit = |raw: &[u8]| {
            let raw = String::from_utf8_lossy(raw);
            let raw = raw.trim_end_matches('\r');
            let (at, text) = match raw.split_once(' ').and_then(|(ts, rest)| Some((parse_docker_time(ts)?, rest))) {
                Some(x) => x,
                None => (since, raw),
            };
            if at >= since {
                each(at, text);
            }
        };
        let mut stream = self.docker.logs(container, Some(opts));
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0usize;
        let mut complete = true;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map_error(op, e))?;
            let bytes = chunk.as_ref();
            total += bytes.len();
            for piece in bytes.split_inclusive(|b| *b == b'\n') {
                let (body, ends) = match piece.strip_suffix(b"\n") {
                    Some(body) => (body, true),
                    None => (piece, false),
                };
                // A line longer than this is client data, not a server
                // report: keep its start, drop the rest.
                let room = MAX_LINE_BYTES.saturating_sub(pending.len());
                pending.extend_from_slice(&body[..body.len().min(room)]);
                if ends {
                    emit(&pending);
                    pending.clear();
                }
            }
            if total > MAX_LOG_BYTES {
                complete = false;
                break;
            }
        }
        if !pending.is_empty() {
            emit(&pending);
        }
        Ok(complete)
    }
    /// Connects to the local daemon (`DOCKER_HOST` or the Unix socket) and
    /// negotiates the API version.
    pub async fn connect(scope_label: &str) -> Result<DockerHost, HostError> {
        let op = "connect to the Docker daemon";
        let docker = Docker::connect_with_local_defaults().map_err(|e| map_error(op, e))?;
        let docker = timed(op, Duration::from_secs(10), docker.negotiate_version()).await?;
        Ok(DockerHost::with_client(docker, scope_label))
    }

    /// Wraps an existing client.
    pub fn with_client(docker: Docker, scope_label: &str) -> DockerHost {
        DockerHost {
            docker,
            scope_label: scope_label.to_string(),
            timeouts: DockerTimeouts::default(),
            disk_watch: diskwatch::DiskWatchCache::default(),
            ready_probe: true,
        }
    }

    /// Whether verification may run a container's health command at once
    /// ([`Host::probe_ready`], the default) or waits for Docker to run it
    /// (for a health command too heavy to run more often, or to compare).
    pub fn with_ready_probe(mut self, on: bool) -> DockerHost {
        self.ready_probe = on;
        self
    }

    /// Changes the timeouts.
    pub fn with_timeouts(mut self, timeouts: DockerTimeouts) -> DockerHost {
        self.timeouts = timeouts;
        self
    }

    /// The bollard client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The scope label (`key=value`).
    pub fn scope_label(&self) -> &str {
        &self.scope_label
    }

    /// Whether the daemon answers.
    pub async fn ping(&self) -> Result<(), HostError> {
        timed("ping", self.timeouts.call, self.docker.ping()).await.map(|_| ())
    }

    /// Raw inspect.
    pub async fn inspect_raw(&self, container: &str) -> Result<ContainerInspectResponse, HostError> {
        let op = format!("inspect {container}");
        if container.is_empty() || container.len() > 256 || container.contains('/') {
            return Err(HostError::new(HostErrorKind::NotFound, op, "not a container name"));
        }
        timed(&op, self.timeouts.call, self.docker.inspect_container(container, None)).await
    }

    /// Inspects `container` and checks it carries the scope label.
    pub async fn inspect_in_scope(&self, container: &str, op: &str) -> Result<ContainerInspectResponse, HostError> {
        let info = self.inspect_raw(container).await?;
        let labels = info.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        if !labels_match(&labels, &self.scope_label) {
            return Err(HostError::new(
                HostErrorKind::OutOfScope,
                op,
                format!("{container} does not carry the label {}; OpsGuard leaves it alone", self.scope_label),
            ));
        }
        Ok(info)
    }

    /// Runs `cmd` as root inside the running `container` with `exec`.
    pub async fn exec(&self, container: &str, cmd: &[&str]) -> Result<CommandOutput, HostError> {
        let op = format!("exec in {container}");
        let run = async {
            let config = ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                user: Some("root".into()),
                ..Default::default()
            };
            let created = self.docker.create_exec(container, config).await.map_err(|e| map_error(&op, e))?;
            let started = self.docker.start_exec(&created.id, None).await.map_err(|e| map_error(&op, e))?;
            let mut out = CommandOutput::default();
            if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| map_error(&op, e))? {
                        bollard::container::LogOutput::StdErr { message } => {
                            out.stderr.push_str(&String::from_utf8_lossy(&message))
                        }
                        other => out.stdout.push_str(&String::from_utf8_lossy(other.as_ref())),
                    }
                }
            }
            let info = self.docker.inspect_exec(&created.id).await.map_err(|e| map_error(&op, e))?;
            out.exit_code = info.exit_code.unwrap_or(-1);
            Ok(out)
        };
        match tokio::time::timeout(self.timeouts.command, run).await {
            Ok(r) => r,
            Err(_) => Err(HostError::new(HostErrorKind::Timeout, op, "command did not finish in time")),
        }
    }
}

impl Host for DockerHost {
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, HostError> {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        let list = timed("list containers", self.timeouts.call, self.docker.list_containers(Some(opts))).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names.as_ref()?.first()?.trim_start_matches('/').to_string();
                Some(ContainerSummary {
                    name: ContainerName::new(&name),
                    state: summary_state(c.state),
                    labels: c.labels.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
                })
            })
            .collect())
    }

    async fn inspect(&self, container: &str) -> Result<ContainerStatus, HostError> {
        let info = self.inspect_raw(container).await?;
        let state = info.state.unwrap_or_default();
        let restart_policy =
            info.host_config.and_then(|h| h.restart_policy).map(|p| opsguard_core::stateless::RestartPolicy {
                name: p.name.map(|n| n.to_string()).unwrap_or_default(),
                maximum_retry_count: p.maximum_retry_count.unwrap_or(0),
            });
        let (health, log) = state.health.map(|h| (h.status, h.log.unwrap_or_default())).unwrap_or_default();
        let skip = log.len().saturating_sub(opsguard_core::model::HEALTH_LOG_ENTRIES);
        let health_log = log
            .iter()
            .skip(skip)
            .map(|r| opsguard_core::model::health_entry(r.exit_code, r.output.as_deref().unwrap_or("")))
            .collect();
        Ok(ContainerStatus {
            name: ContainerName::new(container),
            id: info.id,
            state: state_of(state.status),
            health: health_of(health),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            started_at: state.started_at.as_deref().and_then(parse_docker_time),
            finished_at: state.finished_at.as_deref().and_then(parse_docker_time),
            restart_policy,
            restart_count: info.restart_count,
            health_log,
        })
    }

    async fn recent_logs(
        &self,
        container: &str,
        since: Timestamp,
        max_lines: usize,
    ) -> Result<Vec<LogLine>, HostError> {
        let mut lines: VecDeque<LogLine> = VecDeque::new();
        self.read_logs(container, since, max_lines, &mut |at, text| {
            lines.push_back(LogLine { at, text: text.to_string() });
            if lines.len() > max_lines {
                lines.pop_front();
            }
        })
        .await?;
        Ok(lines.into())
    }

    async fn scan_logs(
        &self,
        container: &str,
        since: Timestamp,
        max_lines: usize,
        sink: &mut dyn LogSink,
    ) -> Result<(), HostError> {
        self.read_logs(container, since, max_lines, &mut |_, text| sink.line(text)).await
    }

    async fn disk_usage(&self, container: &str, path: &str) -> Result<DiskUsage, HostError> {
        let op = format!("disk usage {container}:{path}");
        if !valid_log_path(path) {
            return Err(HostError::new(HostErrorKind::Other, op, "not an absolute, plain path"));
        }
        let info = self.inspect_in_scope(container, &op).await?;
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running && !Self::on_a_mount(&info, path) {
            return Err(HostError::new(
                HostErrorKind::Conflict,
                op,
                "the container is stopped and the path is not on a volume a helper could mount",
            ));
        }
        let out = self.run_beside(container, &info, true, &["df", "-P", "-B1", "--", path]).await?;
        if out.exit_code != 0 {
            let kind = if out.stderr.contains("No such file") { HostErrorKind::NotFound } else { HostErrorKind::Other };
            return Err(HostError::new(kind, op, format!("df exited {}: {}", out.exit_code, out.stderr.trim())));
        }
        parse_df(&out.stdout).ok_or_else(|| {
            HostError::new(HostErrorKind::BadResponse, op, format!("unreadable df output: {}", out.stdout))
        })
    }

    async fn watch_disk(&self, container: &str, path: &str) -> Result<Option<DiskUsage>, HostError> {
        self.watch_disk_usage(container, path).await
    }

    async fn clean_logs(&self, container: &str, log_paths: &[String]) -> Result<CleanReport, HostError> {
        let op = format!("clean_logs {container}");
        if log_paths.is_empty() || log_paths.iter().any(|p| !valid_log_path(p)) {
            return Err(HostError::new(HostErrorKind::Other, op, format!("refusing log paths {log_paths:?}")));
        }
        let info = self.inspect_in_scope(container, &op).await?;
        let pgdata: Vec<&str> = info
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|e| e.strip_prefix("PGDATA="))
            .collect();
        if let Some((p, d)) = log_path_holding_data(log_paths, &pgdata) {
            return Err(HostError::new(
                HostErrorKind::Other,
                op,
                format!("refusing log path {p}: it holds the database's data directory {d}"),
            ));
        }
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let mounts = Self::mounts(&info);
        let mut total = CleanReport::default();
        for path in log_paths {
            if !running && !Self::on_a_mount(&info, path) {
                return Err(HostError::new(HostErrorKind::Conflict, op, format!("{path} is not on a volume")));
            }
            let nested: Vec<&str> = mounts.iter().filter(|m| is_under(m, path)).map(String::as_str).collect();
            let mut cmd: Vec<&str> = vec!["perl", "-e", CLEAN_LOGS_PL, "--", path.as_str()];
            cmd.extend(nested);
            let out = self.run_beside(container, &info, false, &cmd).await?;
            if out.exit_code != 0 {
                let why = if out.exit_code == 127 || out.stderr.contains("executable file not found") {
                    "perl is not in the container's image (clean_logs needs perl-base)".to_string()
                } else {
                    crate::classify::truncate(out.stderr.trim(), 300).to_string()
                };
                return Err(HostError::new(
                    HostErrorKind::Other,
                    op,
                    format!("cleaning {path} exited {}: {why}", out.exit_code),
                ));
            }
            let r = parse_clean(&out.stdout);
            for skipped in out.stdout.lines().filter(|l| l.starts_with("S\t")).take(20) {
                tracing::warn!(container, path = %path, "clean_logs left alone: {}", skipped.replace('\t', " "));
            }
            total.files += r.files;
            total.freed_bytes = total.freed_bytes.saturating_add(r.freed_bytes);
        }
        Ok(total)
    }

    async fn restart(&self, container: &str) -> Result<(), HostError> {
        let op = format!("restart {container}");
        let info = self.inspect_in_scope(container, &op).await?;
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running {
            let opts = RestartContainerOptionsBuilder::default().t(30).build();
            timed(&op, self.timeouts.restart, self.docker.restart_container(container, Some(opts))).await
        } else {
            match timed(
                &op,
                self.timeouts.restart,
                self.docker.start_container(container, None::<StartContainerOptions>),
            )
            .await
            {
                // 304: already started (by its restart policy, or a human).
                Err(e) if e.message.contains("304") => Ok(()),
                other => other,
            }
        }
    }

    async fn probe_ready(&self, container: &str) -> Result<Option<bool>, HostError> {
        if !self.ready_probe {
            return Ok(None);
        }
        let op = format!("readiness check in {container}");
        let info = self.inspect_in_scope(container, &op).await?;
        let Some(check) = info.config.as_ref().and_then(|c| c.healthcheck.as_ref()) else { return Ok(None) };
        let Some(cmd) = health_command(check.test.as_deref().unwrap_or_default())
            .map_err(|e| HostError::new(HostErrorKind::Other, op.clone(), e))?
        else {
            return Ok(None);
        };
        // Docker's own limit on the check, within bounds of ours: the
        // container chose it.
        let limit = check
            .timeout
            .filter(|ns| *ns > 0)
            .map_or(PROBE_TIMEOUT_MAX, |ns| Duration::from_nanos(ns as u64))
            .clamp(PROBE_TIMEOUT_MIN, PROBE_TIMEOUT_MAX);
        let run = async {
            // As Docker runs it: as the container's own user, output unread
            // (drained, never kept: the container writes it).
            let config = ExecConfig {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let created = self.docker.create_exec(container, config).await.map_err(|e| map_error(&op, e))?;
            let started = self.docker.start_exec(&created.id, None).await.map_err(|e| map_error(&op, e))?;
            if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
                while let Some(chunk) = output.next().await {
                    chunk.map_err(|e| map_error(&op, e))?;
                }
            }
            let info = self.docker.inspect_exec(&created.id).await.map_err(|e| map_error(&op, e))?;
            Ok(Some(info.running != Some(true) && info.exit_code == Some(0)))
        };
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            // Docker counts a check that runs too long as failed.
            Err(_) => Ok(Some(false)),
        }
    }

    async fn prune_exited(&self, label: &str, protect: &[ContainerName]) -> Result<Vec<ContainerName>, HostError> {
        let op = "prune containers";
        if !label.contains('=') || label.starts_with('=') {
            return Err(HostError::new(HostErrorKind::OutOfScope, op, "label must be key=value"));
        }
        // Docker ANDs the label filters: the scope and the prune mark.
        let filters: HashMap<String, Vec<String>> = HashMap::from([
            ("label".to_string(), vec![label.to_string(), PRUNE_LABEL.to_string()]),
            ("status".to_string(), vec!["exited".to_string()]),
        ]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = timed(op, self.timeouts.call, self.docker.list_containers(Some(opts))).await?;
        let mut doomed = Vec::new();
        for c in list {
            let Some(name) = c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string())
            else {
                continue;
            };
            // Check again on our side: the labels, the state, the protected names.
            let labels = c.labels.clone().unwrap_or_default();
            if summary_state(c.state) != ContainerState::Exited
                || !labels_match(&labels, label)
                || !labels_match(&labels, PRUNE_LABEL)
                || protect.iter().any(|p| p.as_str() == name)
            {
                continue;
            }
            let Some(id) = c.id else { continue };
            doomed.push((id, name));
        }
        // Side by side, a few at a time: one after the other, 15 removals
        // took 0.7 s on the lab under load (issue #12, item 3).
        let removals = doomed.into_iter().map(|(id, name)| async move {
            let rm = RemoveContainerOptionsBuilder::default().v(false).force(false).build();
            (name, timed(op, self.timeouts.call, self.docker.remove_container(&id, Some(rm))).await)
        });
        let results: Vec<_> = futures_util::stream::iter(removals).buffer_unordered(PRUNE_PARALLEL).collect().await;
        let mut removed = Vec::new();
        for (name, result) in results {
            match result {
                Ok(()) => removed.push(ContainerName::new(&name)),
                // Gone already or restarted meanwhile: not ours to force.
                Err(e) if matches!(e.kind, HostErrorKind::NotFound | HostErrorKind::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        removed.sort();
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_commands_run_as_docker_runs_them_and_hostile_ones_are_refused() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(health_command(&v(&["CMD", "pg_isready", "-q"])).unwrap(), Some(v(&["pg_isready", "-q"])));
        assert_eq!(
            health_command(&v(&["CMD-SHELL", "curl -f localhost || exit 1"])).unwrap(),
            Some(v(&["/bin/sh", "-c", "curl -f localhost || exit 1"]))
        );
        assert_eq!(health_command(&v(&["NONE"])).unwrap(), None);
        assert_eq!(health_command(&[]).unwrap(), None);
        for bad in [v(&["CMD"]), v(&["CMD-SHELL", "a", "b"]), v(&["rm", "-rf", "/"]), v(&["CMD", "a\0b"])] {
            assert!(health_command(&bad).is_err(), "{bad:?}");
        }
        let long = vec!["x".repeat(100); PROBE_MAX_ARGS + 1];
        assert!(health_command(&[vec!["CMD".to_string()], long].concat()).is_err());
    }

    #[test]
    fn docker_times_parse_and_zero_time_is_none() {
        assert_eq!(parse_docker_time("1970-01-01T00:00:01.5Z"), Some(Timestamp(1500)));
        assert_eq!(parse_docker_time("2024-11-27T07:59:10.123456789Z").map(|t| t.0 % 1000), Some(123));
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time("garbage"), None);
        assert_eq!(parse_docker_time(""), None);
    }

    #[test]
    fn df_output_parses() {
        let out = "Filesystem     1-blocks     Used Available Capacity Mounted on\n/dev/loop3     95059968 90000000   5059968      95% /var/log/nginx\n";
        let u = parse_df(out).unwrap();
        assert_eq!(u.used_bytes, 90_000_000);
        assert_eq!(u.total_bytes, 95_059_968);
        assert!(parse_df("").is_none());
        assert!(parse_df("header\nx y\n").is_none());
        assert!(parse_df("h\n/dev a b c 1% /\n").is_none());
    }

    #[test]
    fn clean_output_counts_files_and_bytes() {
        let out = "T\t100\t/var/log/a.log\nT\t50\t/var/log/b.log.1\nS\tsymlink\t/var/log/evil.log\n\
                   S\t2 hard links\t/var/log/h.log\n100\t/var/log/old-format.log\nT\tx\t/y\nnoise\nA\t3\t7\n";
        assert_eq!(parse_clean(out), CleanReport { files: 5, freed_bytes: 157 });
    }

    #[test]
    fn log_paths_must_be_plain_absolute_paths() {
        assert!(valid_log_path("/var/log/nginx"));
        for bad in ["", "/", "var/log", "/var/../etc", "/var//log", "/var/log/$(rm)", "/a b", "/var/./log"] {
            assert!(!valid_log_path(bad), "{bad}");
        }
    }

    #[test]
    fn labels_match_key_value_and_key() {
        let l = HashMap::from([("opsguard.lab".to_string(), "true".to_string())]);
        assert!(labels_match(&l, "opsguard.lab=true"));
        assert!(labels_match(&l, "opsguard.lab"));
        assert!(!labels_match(&l, "opsguard.lab=false"));
        assert!(!labels_match(&l, "other"));
    }

    #[test]
    fn errors_map_to_kinds() {
        let e = |code| DockerError::DockerResponseServerError { status_code: code, message: "x".into() };
        assert_eq!(map_error("op", e(404)).kind, HostErrorKind::NotFound);
        assert_eq!(map_error("op", e(409)).kind, HostErrorKind::Conflict);
        assert_eq!(map_error("op", e(500)).kind, HostErrorKind::Other);
        assert_eq!(map_error("op", DockerError::RequestTimeoutError).kind, HostErrorKind::Timeout);
        assert_eq!(map_error("op", DockerError::SocketNotFoundError("/x".into())).kind, HostErrorKind::Unavailable);
    }
}
