//! The one trait through which OpsGuard sees and touches a host.
//!
//! Implementations: [`sim::SimHost`], an in-memory host with the
//! specification's faults, for the example, the property suite and the
//! benchmarks; a mockall mock for unit tests; and the Docker host over
//! bollard. Every operation can fail with a typed [`HostError`]; none may
//! panic, and the incident loop turns any failure into an escalation.

pub mod docker;
pub mod sim;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::model::ContainerStatus;
use crate::model::{ContainerName, ContainerState, Health, Timestamp};

/// What a container event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerEventKind {
    /// The container's main process ended.
    Die,
    /// The OOM killer struck (arrives before `die`).
    Oom,
    /// The container started.
    Start,
    /// The health check changed.
    HealthStatus(Health),
}

/// A container event, from Docker's event stream or a simulation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEvent {
    /// Which container.
    pub container: ContainerName,
    /// What happened.
    pub kind: ContainerEventKind,
    /// When.
    pub at: Timestamp,
}

/// What kind of failure a host operation hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostErrorKind {
    /// No such container (or path).
    NotFound,
    /// The container is in the wrong state for this (Docker's 409).
    Conflict,
    /// The daemon cannot be reached.
    Unavailable,
    /// The operation did not finish in time.
    Timeout,
    /// The target is outside OpsGuard's scope; nothing was done.
    OutOfScope,
    /// The daemon answered something OpsGuard cannot use.
    BadResponse,
    /// Anything else.
    Other,
}

/// A failed host operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
// `op` and `message` quote the daemon and the container (a `find` or `df`
// error, a daemon message): shown, they stay one inert line.
#[error("{} failed ({kind:?}): {}", crate::redact::printable(.op), crate::redact::printable(.message))]
pub struct HostError {
    /// The category.
    pub kind: HostErrorKind,
    /// The operation, e.g. `inspect db-prod`.
    pub op: String,
    /// Details for humans.
    pub message: String,
}

impl HostError {
    /// Builds an error.
    pub fn new(kind: HostErrorKind, op: impl Into<String>, message: impl Into<String>) -> HostError {
        HostError { kind, op: op.into(), message: message.into() }
    }
}

/// A container as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// Name.
    pub name: ContainerName,
    /// State.
    pub state: ContainerState,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The label that marks a container prunable once exited (issue #10): a
/// prune removes an exited container only when it carries this label as
/// well as the scope label, so a one-shot job that exited (a migration, a
/// backup) is kept unless its owner said it may go.
pub const PRUNE_LABEL: &str = "opsguard.prune=true";

impl ContainerSummary {
    /// Whether the container is an exited one a prune scoped by `scope`
    /// may remove (a zombie): exited, with `scope` and [`PRUNE_LABEL`].
    /// The watched services are kept apart by the caller.
    pub fn prunable(&self, scope: &str) -> bool {
        self.state == ContainerState::Exited && self.has_label(scope) && self.has_label(PRUNE_LABEL)
    }

    /// Whether the container carries `key=value`.
    pub fn has_label(&self, label: &str) -> bool {
        match label.split_once('=') {
            Some((k, v)) => self.labels.get(k).is_some_and(|x| x == v),
            None => self.labels.contains_key(label),
        }
    }
}

/// Usage of the filesystem holding a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
}

impl DiskUsage {
    /// Percent used; a zero-sized filesystem counts as full.
    pub fn used_pct(&self) -> f64 {
        if self.total_bytes == 0 {
            return 100.0;
        }
        (self.used_bytes as f64 / self.total_bytes as f64 * 100.0).clamp(0.0, 100.0)
    }
}

/// What `clean_logs` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanReport {
    /// Files truncated.
    pub files: u32,
    /// Bytes freed.
    pub freed_bytes: u64,
}

/// A log line with the time Docker recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was written.
    pub at: Timestamp,
    /// The text, without its trailing newline.
    pub text: String,
}

// Pure path checks, shared with rules validation (the core may not use
// the host module).
pub use crate::classify::LogSink;
pub use crate::safety::{DEFAULT_DATA_ROOT, holds, is_under, log_path_holding_data};

/// Everything OpsGuard does to or learns from a host.
#[cfg_attr(test, mockall::automock)]
#[trait_variant::make(Send)]
pub trait Host: Sync {
    /// Every container, running or not.
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, HostError>;
    /// One container's state; works on stopped containers.
    async fn inspect(&self, container: &str) -> Result<ContainerStatus, HostError>;
    /// The container's stdout and stderr from `since` to now, at most
    /// `max_lines` of the newest lines.
    async fn recent_logs(&self, container: &str, since: Timestamp, max_lines: usize)
    -> Result<Vec<LogLine>, HostError>;
    /// Feeds `sink` the text of each of the container's log lines from
    /// `since` to now, oldest first, at most `max_lines` of the newest: like
    /// [`Host::recent_logs`], but the caller keeps what it needs, so a large
    /// window costs time, not memory. The default reads
    /// [`Host::recent_logs`]; hosts whose logs can be large stream them.
    fn scan_logs(
        &self,
        container: &str,
        since: Timestamp,
        max_lines: usize,
        sink: &mut dyn LogSink,
    ) -> impl std::future::Future<Output = Result<(), HostError>> + Send {
        async move {
            for l in self.recent_logs(container, since, max_lines).await? {
                sink.line(&l.text);
            }
            Ok(())
        }
    }
    /// Usage of the filesystem holding `path` inside the container; works on
    /// stopped containers.
    async fn disk_usage(&self, container: &str, path: &str) -> Result<DiskUsage, HostError>;
    /// The same reading as [`Host::disk_usage`], made without starting
    /// anything (no `exec`, no helper): what the disk watch polls between
    /// sweeps, so it must stay cheap. `Ok(None)` when this host has no
    /// such way to read this path (the Docker host cannot see the volume),
    /// and by default; the sweeps then read it with [`Host::disk_usage`].
    /// An error is an unknown reading, never an empty disk.
    fn watch_disk(
        &self,
        container: &str,
        path: &str,
    ) -> impl std::future::Future<Output = Result<Option<DiskUsage>, HostError>> + Send {
        let _ = (container, path);
        async { Ok(None) }
    }
    /// Runs the container's own health check command at once, as Docker
    /// would at its next interval, and says whether it passed: what
    /// verification reads while Docker's own verdict is still `starting`.
    /// `Ok(None)` when the container has no health check, or this host has
    /// no way to run it (the default). Never changes anything.
    fn probe_ready(
        &self,
        container: &str,
    ) -> impl std::future::Future<Output = Result<Option<bool>, HostError>> + Send {
        let _ = container;
        async { Ok(None) }
    }
    /// Truncates the log files (regular files named `*.log`, or rotations
    /// such as `*.log.1`) under each of `log_paths` inside the container, and
    /// nothing else: no symlink is followed, a file with more than one link
    /// or on another filesystem is left alone, no other file is touched, and
    /// a log path holding a database's data directory is refused; works on
    /// stopped containers. Only files really truncated are counted.
    async fn clean_logs(&self, container: &str, log_paths: &[String]) -> Result<CleanReport, HostError>;
    /// Restarts (or starts) the container.
    async fn restart(&self, container: &str) -> Result<(), HostError>;
    /// Removes exited containers carrying both `label` (`key=value`) and
    /// [`PRUNE_LABEL`], except those named in `protect` (the watched
    /// services), and nothing else, keeping their volumes; returns their
    /// names.
    async fn prune_exited(&self, label: &str, protect: &[ContainerName]) -> Result<Vec<ContainerName>, HostError>;
}

impl fmt::Display for DiskUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}% of {} MiB", self.used_pct(), self.total_bytes / (1024 * 1024))
    }
}
