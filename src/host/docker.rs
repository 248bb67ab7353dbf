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
//! [`ContainerEvent`]s for [`crate::incident::Agent::run`], reconnecting
//! after the daemon restarts and resuming from the last event seen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum, EventMessage,
    ExecConfig, HealthStatusEnum, HostConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::host::{
    CleanReport, ContainerStatus, ContainerSummary, DiskUsage, Host, HostError, HostErrorKind, LogLine, LogSink,
    is_under, log_path_holding_data,
};
use crate::model::{ContainerName, ContainerState, Health, Timestamp};

/// Most bytes of logs read in one pass (hostile output: enough is enough).
const MAX_LOG_BYTES: usize = 256 * 1024 * 1024;
/// Lines read again, the newest, when a window was cut short.
const NEWEST_LINES_AGAIN: usize = 10_000;
/// Longest log line kept, in bytes; the rest of a longer one is dropped.
const MAX_LINE_BYTES: usize = 64 * 1024;
use crate::host::{ContainerEvent, ContainerEventKind};

/// The label key marking what a container is for (`helper`, `zombie`, …).
pub const ROLE_LABEL: &str = "opsguard.role";
/// The role value of OpsGuard's own short-lived helper containers.
pub const HELPER_ROLE: &str = "helper";

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
pub const CLEAN_LOGS_PL: &str = include_str!("clean_logs.pl");

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
        DockerHost { docker, scope_label: scope_label.to_string(), timeouts: DockerTimeouts::default() }
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

    /// Runs `cmd` in a short-lived helper container from `image` that mounts
    /// the volumes and binds of `volumes_from` (read-only when `read_only`),
    /// with no network, labelled with the scope label and
    /// `opsguard.role=helper`; removes it afterwards.
    pub async fn run_helper(
        &self,
        image: &str,
        volumes_from: Option<&str>,
        read_only: bool,
        cmd: &[&str],
        extra_labels: &[(&str, &str)],
    ) -> Result<CommandOutput, HostError> {
        let op = format!("helper for {}", volumes_from.unwrap_or(image));
        let mut labels = HashMap::new();
        if let Some((k, v)) = self.scope_label.split_once('=') {
            labels.insert(k.to_string(), v.to_string());
        } else {
            labels.insert(self.scope_label.clone(), String::new());
        }
        labels.insert(ROLE_LABEL.to_string(), HELPER_ROLE.to_string());
        for (k, v) in extra_labels {
            labels.insert(k.to_string(), v.to_string());
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec![]),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels: Some(labels),
            user: Some("root".into()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                volumes_from: volumes_from.map(|v| vec![format!("{v}:{}", if read_only { "ro" } else { "rw" })]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!(
            "opsguard-helper-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() % 1_000_000_000)
        );
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = timed(&op, self.timeouts.call, self.docker.create_container(Some(options), body)).await?;
        let id = created.id;
        let result = tokio::time::timeout(self.timeouts.command, self.helper_body(&op, &id)).await;
        // Remove whatever happened; a failure here leaves an exited, labelled
        // helper that the next prune takes away.
        let rm = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        if let Err(e) = timed(&op, self.timeouts.call, self.docker.remove_container(&id, Some(rm))).await {
            eprintln!("opsguard: could not remove helper {name}: {e}");
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(HostError::new(HostErrorKind::Timeout, op, "helper did not finish in time")),
        }
    }

    async fn helper_body(&self, op: &str, id: &str) -> Result<CommandOutput, HostError> {
        self.docker.start_container(id, None::<StartContainerOptions>).await.map_err(|e| map_error(op, e))?;
        let mut wait = self.docker.wait_container(id, None);
        let mut exit_code = -1;
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) => exit_code = w.status_code,
                Err(DockerError::DockerContainerWaitError { code, .. }) => exit_code = code,
                Err(e) => return Err(map_error(op, e)),
            }
        }
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(id, Some(opts));
        let mut out = CommandOutput { exit_code, ..Default::default() };
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(|e| map_error(op, e))? {
                bollard::container::LogOutput::StdErr { message } => {
                    out.stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => out.stdout.push_str(&String::from_utf8_lossy(other.as_ref())),
            }
        }
        Ok(out)
    }

    /// Runs `cmd` where it can see `container`'s files: `exec` when it runs,
    /// a helper mounting its volumes otherwise.
    pub async fn run_beside(
        &self,
        container: &str,
        info: &ContainerInspectResponse,
        read_only: bool,
        cmd: &[&str],
    ) -> Result<CommandOutput, HostError> {
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running {
            match self.exec(container, cmd).await {
                Err(e) if e.kind == HostErrorKind::Conflict => {} // stopped meanwhile
                other => return other,
            }
        }
        let image = info
            .image
            .clone()
            .ok_or_else(|| HostError::new(HostErrorKind::BadResponse, "helper", "container has no image"))?;
        let id = info.id.clone().unwrap_or_else(|| container.to_string());
        self.run_helper(&image, Some(&id), read_only, cmd, &[("opsguard.helper-for", container)]).await
    }

    /// The mount destinations of the container.
    fn mounts(info: &ContainerInspectResponse) -> Vec<String> {
        info.mounts.iter().flatten().filter_map(|m| m.destination.clone()).collect()
    }

    /// Whether `path` lives on one of the container's mounts (so that a
    /// helper sees the same files).
    fn on_a_mount(info: &ContainerInspectResponse, path: &str) -> bool {
        Self::mounts(info).iter().any(|m| path == m || is_under(path, m))
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
        Ok(ContainerStatus {
            name: ContainerName::new(container),
            id: info.id,
            state: state_of(state.status),
            health: health_of(state.health.and_then(|h| h.status)),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            started_at: state.started_at.as_deref().and_then(parse_docker_time),
            finished_at: state.finished_at.as_deref().and_then(parse_docker_time),
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

    async fn prune_exited(&self, label: &str, protect: &[ContainerName]) -> Result<Vec<ContainerName>, HostError> {
        let op = "prune containers";
        if !label.contains('=') || label.starts_with('=') {
            return Err(HostError::new(HostErrorKind::OutOfScope, op, "label must be key=value"));
        }
        let filters: HashMap<String, Vec<String>> = HashMap::from([
            ("label".to_string(), vec![label.to_string()]),
            ("status".to_string(), vec!["exited".to_string()]),
        ]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = timed(op, self.timeouts.call, self.docker.list_containers(Some(opts))).await?;
        let mut removed = Vec::new();
        for c in list {
            let Some(name) = c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string())
            else {
                continue;
            };
            // Check again on our side: the label, the state, the protected names.
            let labels = c.labels.clone().unwrap_or_default();
            if summary_state(c.state) != ContainerState::Exited
                || !labels_match(&labels, label)
                || protect.iter().any(|p| p.as_str() == name)
            {
                continue;
            }
            let Some(id) = c.id else { continue };
            let rm = RemoveContainerOptionsBuilder::default().v(false).force(false).build();
            match timed(op, self.timeouts.call, self.docker.remove_container(&id, Some(rm))).await {
                Ok(()) => removed.push(ContainerName::new(&name)),
                // Gone already or restarted meanwhile: not ours to force.
                Err(e) if matches!(e.kind, HostErrorKind::NotFound | HostErrorKind::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

/// Converts one Docker event to a [`ContainerEvent`]; `None` for events
/// OpsGuard does not use, helpers' events, and malformed ones.
pub fn convert_event(ev: &EventMessage) -> Option<ContainerEvent> {
    let actor = ev.actor.as_ref()?;
    let attrs = actor.attributes.as_ref()?;
    if attrs.get(ROLE_LABEL).is_some_and(|r| r == HELPER_ROLE) {
        return None;
    }
    let name = attrs.get("name")?;
    let action = ev.action.as_deref()?;
    let kind = match action {
        "die" => ContainerEventKind::Die,
        "oom" => ContainerEventKind::Oom,
        "start" => ContainerEventKind::Start,
        a => match a.strip_prefix("health_status:").map(str::trim) {
            Some("healthy") => ContainerEventKind::HealthStatus(Health::Healthy),
            Some("unhealthy") => ContainerEventKind::HealthStatus(Health::Unhealthy),
            Some("starting") => ContainerEventKind::HealthStatus(Health::Starting),
            _ => return None,
        },
    };
    let ms = ev
        .time_nano
        .map(|n| (n / 1_000_000).max(0) as u64)
        .or_else(|| ev.time.map(|s| (s.max(0) as u64).saturating_mul(1000)))
        .unwrap_or(0);
    Some(ContainerEvent { container: ContainerName::new(name), kind, at: Timestamp(ms) })
}

/// What the event pump reports besides events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamNotice {
    /// Connected (again), reading events since this Unix second.
    Connected {
        /// Resume point.
        since: Option<i64>,
    },
    /// The stream broke; reconnecting after a pause.
    Lost {
        /// Why.
        error: String,
    },
}

/// Streams container events (`die`, `oom`, `start`, `health_status`) of
/// containers carrying `scope_label` into a channel until the receiver is
/// dropped. After the stream breaks (a daemon restart) it reconnects with
/// backoff and resumes from the last event's second, skipping events it has
/// already delivered. Events that do not fit the channel are dropped: the
/// periodic sweep catches up with them.
pub fn spawn_events(
    docker: Docker,
    scope_label: String,
    capacity: usize,
    notices: Option<mpsc::UnboundedSender<StreamNotice>>,
) -> (mpsc::Receiver<ContainerEvent>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let handle = tokio::spawn(async move {
        let mut since: Option<i64> = None;
        let mut seen: VecDeque<(i64, String, String)> = VecDeque::new();
        let mut backoff = Duration::from_millis(200);
        let notify = |n: StreamNotice| {
            if let Some(tx) = &notices {
                let _ = tx.send(n);
            }
        };
        loop {
            if tx.is_closed() {
                return;
            }
            let filters: HashMap<String, Vec<String>> = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), ["die", "oom", "start", "health_status"].iter().map(|s| s.to_string()).collect()),
                ("label".to_string(), vec![scope_label.clone()]),
            ]);
            let mut b = EventsOptionsBuilder::default().filters(&filters);
            let s;
            if let Some(t) = since {
                s = t.to_string();
                b = b.since(&s);
            }
            let mut stream = Box::pin(docker.events(Some(b.build())));
            notify(StreamNotice::Connected { since });
            let mut got_any = false;
            let error = loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    item = stream.next() => match item {
                        None => break "event stream ended".to_string(),
                        Some(Err(e)) => break e.to_string(),
                        Some(Ok(ev)) => {
                            got_any = true;
                            backoff = Duration::from_millis(200);
                            let nanos = ev.time_nano.unwrap_or(0);
                            let key = (
                                nanos,
                                ev.actor.as_ref().and_then(|a| a.id.clone()).unwrap_or_default(),
                                ev.action.clone().unwrap_or_default(),
                            );
                            if seen.contains(&key) {
                                continue;
                            }
                            seen.push_back(key);
                            if seen.len() > 512 {
                                seen.pop_front();
                            }
                            if let Some(t) = ev.time {
                                since = Some(since.map_or(t, |s| s.max(t)));
                            }
                            if let Some(ce) = convert_event(&ev) {
                                match tx.try_send(ce) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {}
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                        }
                    }
                }
            };
            // Never lose the window while reconnecting: resume from now if
            // nothing was seen yet.
            if since.is_none() {
                since = Some(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                );
            }
            notify(StreamNotice::Lost { error });
            if !got_any {
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    });
    (rx, handle)
}

/// Holds `die` events for `settle` and passes on only the last one per
/// container: `docker restart` (and a deploy) emits `die` with exit code 0
/// a few milliseconds before `start`, and a database with a broken config
/// dies again right after; checking once the container has settled sees
/// its real state instead of the gap. Other events pass at once.
pub fn settle_deaths(
    mut rx: mpsc::Receiver<ContainerEvent>,
    settle: Duration,
) -> (mpsc::Receiver<ContainerEvent>, tokio::task::JoinHandle<()>) {
    let (tx, out) = mpsc::channel(rx.max_capacity().max(1));
    let handle = tokio::spawn(async move {
        let mut pending: Vec<(ContainerEvent, tokio::time::Instant)> = Vec::new();
        loop {
            let next = pending.iter().map(|(_, at)| *at).min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = rx.recv() => match ev {
                    None => {
                        for (ev, _) in pending.drain(..) {
                            let _ = tx.send(ev).await;
                        }
                        return;
                    }
                    Some(ev) if ev.kind == ContainerEventKind::Die => {
                        pending.retain(|(p, _)| p.container != ev.container);
                        pending.push((ev, tokio::time::Instant::now() + settle));
                    }
                    Some(ev) => {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                },
                _ = sleep => {
                    let now = tokio::time::Instant::now();
                    let (due, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, at)| *at <= now);
                    pending = rest;
                    for (ev, _) in due {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    (out, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

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
    fn events_convert_and_helpers_are_ignored() {
        let ev = |action: &str, role: Option<&str>| EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    [("name".to_string(), "db-prod".to_string())]
                        .into_iter()
                        .chain(role.map(|r| (ROLE_LABEL.to_string(), r.to_string())))
                        .collect(),
                ),
            }),
            time: Some(2),
            time_nano: Some(2_500_000_000),
            ..Default::default()
        };
        let e = convert_event(&ev("die", None)).unwrap();
        assert_eq!((e.kind, e.at, e.container.as_str()), (ContainerEventKind::Die, Timestamp(2500), "db-prod"));
        assert_eq!(
            convert_event(&ev("health_status: unhealthy", None)).unwrap().kind,
            ContainerEventKind::HealthStatus(Health::Unhealthy)
        );
        assert_eq!(convert_event(&ev("oom", None)).unwrap().kind, ContainerEventKind::Oom);
        assert!(convert_event(&ev("die", Some(HELPER_ROLE))).is_none());
        assert!(convert_event(&ev("exec_start: sh", None)).is_none());
        assert!(convert_event(&EventMessage::default()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn deaths_settle_and_coalesce_per_container() {
        let (tx, rx) = mpsc::channel(16);
        let (mut out, _h) = settle_deaths(rx, Duration::from_millis(500));
        let ev = |name: &str, kind| ContainerEvent { container: ContainerName::new(name), kind, at: Timestamp(0) };
        tx.send(ev("db-prod", ContainerEventKind::Die)).await.unwrap();
        tx.send(ev("db-prod", ContainerEventKind::Start)).await.unwrap();
        tx.send(ev("db-prod", ContainerEventKind::Die)).await.unwrap();
        tx.send(ev("zombie", ContainerEventKind::Die)).await.unwrap();
        // The start passes at once; the two deaths of db-prod become one.
        assert_eq!(out.recv().await.unwrap().kind, ContainerEventKind::Start);
        let a = out.recv().await.unwrap();
        let b = out.recv().await.unwrap();
        let mut names = [a.container.as_str().to_string(), b.container.as_str().to_string()];
        names.sort();
        assert_eq!(names, ["db-prod".to_string(), "zombie".to_string()]);
        drop(tx);
        assert!(out.recv().await.is_none());
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
