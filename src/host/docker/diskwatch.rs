//! The cheap disk reading behind [`crate::host::Host::watch_disk`]: a
//! `statvfs` of the host path that Docker reports for the mount holding a
//! container's path, so the web log disk can be read twice a second without
//! an `exec` or a helper each time.
//!
//! The mount's source is attacker-influenced (whoever wrote the compose file
//! or created the volume), so it is used only as Docker reports it: the
//! mount's own source path (never joined with the part of the container
//! path below the mount point, which the container's processes could turn
//! into a symlink), and only after one reading through the container
//! (today's `df` by `exec`) showed the same filesystem size. That check is
//! what catches OpsGuard running in a container of its own, where the host
//! path may not exist or may name another filesystem of OpsGuard's own.
//! Anything that fails makes the reading unknown, never "0 % used"; the
//! sweeps still read the disk through the container.
//!
//! Which way each disk is read is logged once, and again when it changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, MountPoint};

use super::{DockerHost, timed, valid_log_path};
use crate::host::{DiskUsage, Host, HostError, HostErrorKind, is_under};

/// How long a resolved way of reading a disk is trusted before the container
/// is inspected again (a recreated container may mount something else).
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// Longest a `statvfs` may take (a hung network filesystem).
const STATVFS_TIMEOUT: Duration = Duration::from_secs(2);

/// How one watched disk is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMethod {
    /// `statvfs` of this host path.
    Statvfs(PathBuf),
    /// Not visible from here: the sweeps' `exec`/helper only, for this reason.
    Fallback(String),
}

impl std::fmt::Display for WatchMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchMethod::Statvfs(p) => {
                write!(f, "statvfs of host path {}", crate::redact::printable(&p.to_string_lossy()))
            }
            WatchMethod::Fallback(why) => {
                write!(f, "exec/helper in the sweeps only ({})", crate::redact::printable(why))
            }
        }
    }
}

#[derive(Debug)]
struct Resolved {
    /// The container's id and the mount source the method was checked for.
    id: String,
    source: Option<String>,
    method: WatchMethod,
    at: Instant,
}

/// The resolved methods, by (container, path); shared by clones of a host.
#[derive(Clone, Debug, Default)]
pub struct DiskWatchCache(Arc<Mutex<HashMap<(String, String), Resolved>>>);

impl DiskWatchCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Resolved>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where the filesystem holding `path` (inside the container) can be seen
/// on the host, from the container's mounts as Docker reports them: the
/// source of the deepest mount holding `path`. `Err` says why there is none.
pub fn host_source(mounts: &[MountPoint], path: &str) -> Result<String, String> {
    let mount = mounts
        .iter()
        .filter(|m| m.destination.as_deref().is_some_and(|d| path == d || is_under(path, d)))
        .max_by_key(|m| m.destination.as_deref().map_or(0, str::len))
        .ok_or_else(|| "the path is on the container's own filesystem, not on a mount".to_string())?;
    let kind = mount.typ.as_deref().unwrap_or("");
    if kind != "bind" && kind != "volume" {
        return Err(format!("the mount is of type {kind:?}, with no host path"));
    }
    match mount.source.as_deref() {
        Some(s) if plain_absolute(s) => Ok(s.to_string()),
        Some("") | None => Err("Docker reports no host path for the mount".into()),
        Some(_) => Err("the mount's host path is not a plain absolute path".into()),
    }
}

/// Absolute, no `.` or `..` component, no NUL, not absurdly long: the path
/// as Docker reports it, taken as it is.
fn plain_absolute(p: &str) -> bool {
    p.starts_with('/') && p.len() < 4096 && !p.contains('\0') && !p.split('/').any(|c| c == ".." || c == ".")
}

/// The usage `df -P -B1` reports, from a `statvfs`: used is what is not
/// free, total is used plus what an unprivileged writer may still use (as
/// [`super::parse_df`]).
pub fn usage_of(frsize: u64, blocks: u64, bfree: u64, bavail: u64) -> DiskUsage {
    let used = blocks.saturating_sub(bfree).saturating_mul(frsize);
    let avail = bavail.saturating_mul(frsize);
    DiskUsage { total_bytes: used.saturating_add(avail), used_bytes: used }
}

/// Reads the filesystem holding `path` on this host, off the runtime's
/// threads and within [`STATVFS_TIMEOUT`].
async fn statvfs(op: &str, path: PathBuf) -> Result<DiskUsage, HostError> {
    let read = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&path));
    match tokio::time::timeout(STATVFS_TIMEOUT, read).await {
        Ok(Ok(Ok(s))) => Ok(usage_of(s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail)),
        Ok(Ok(Err(e))) => {
            let kind = if e == rustix::io::Errno::NOENT { HostErrorKind::NotFound } else { HostErrorKind::Other };
            Err(HostError::new(kind, op, format!("statvfs: {e}")))
        }
        Ok(Err(e)) => Err(HostError::new(HostErrorKind::Other, op, format!("statvfs task: {e}"))),
        Err(_) => Err(HostError::new(HostErrorKind::Timeout, op, "statvfs did not answer in time")),
    }
}

/// Whether two readings are of the same filesystem: the same size (used
/// plus available does not move as files grow) and about the same use (the
/// two readings are a moment apart).
fn same_filesystem(a: DiskUsage, b: DiskUsage) -> bool {
    a.total_bytes == b.total_bytes && a.total_bytes > 0 && a.used_bytes.abs_diff(b.used_bytes) <= a.total_bytes / 20
}

impl DockerHost {
    /// [`Host::watch_disk`] for Docker; see the module doc.
    pub(super) async fn watch_disk_usage(&self, container: &str, path: &str) -> Result<Option<DiskUsage>, HostError> {
        let op = format!("watch disk {container}:{path}");
        if !valid_log_path(path) {
            return Err(HostError::new(HostErrorKind::Other, op, "not an absolute, plain path"));
        }
        let key = (container.to_string(), path.to_string());
        let fresh = {
            let cache = self.disk_watch.lock();
            cache.get(&key).filter(|r| r.at.elapsed() < RESOLVE_EVERY).map(|r| r.method.clone())
        };
        let method = match fresh {
            Some(m) => m,
            None => self.resolve(&op, container, path).await?,
        };
        let WatchMethod::Statvfs(host_path) = method else { return Ok(None) };
        match statvfs(&op, host_path).await {
            Ok(u) => Ok(Some(u)),
            Err(e) => {
                // Resolve again next time: the volume may have gone.
                self.disk_watch.lock().remove(&key);
                Err(e)
            }
        }
    }

    /// Inspects the container and decides how its disk is read, checking a
    /// new host path against one reading through the container.
    async fn resolve(&self, op: &str, container: &str, path: &str) -> Result<WatchMethod, HostError> {
        let info = self.inspect_in_scope(container, op).await?;
        let id = info.id.clone().unwrap_or_default();
        let mut mounts = info.mounts.clone().unwrap_or_default();
        for m in mounts
            .iter_mut()
            .filter(|m| m.typ.as_deref() == Some("volume") && m.source.as_deref().unwrap_or("").is_empty())
        {
            // A volume whose driver left the source out: its mountpoint.
            if let Some(name) = m.name.clone() {
                let volume = timed(op, self.timeouts.call, self.docker.inspect_volume(&name)).await?;
                m.source = Some(volume.mountpoint);
            }
        }
        let source = host_source(&mounts, path);
        let key = (container.to_string(), path.to_string());
        let previous = {
            let mut cache = self.disk_watch.lock();
            match cache.get_mut(&key) {
                // Same container, same mount: what was checked still holds.
                Some(r) if r.id == id && r.source.as_deref() == source.as_deref().ok() => {
                    r.at = Instant::now();
                    return Ok(r.method.clone());
                }
                other => other.map(|r| r.method.clone()),
            }
        };
        let method = match &source {
            Err(why) => WatchMethod::Fallback(why.clone()),
            Ok(s) => self.check_host_path(op, container, &info, path, s).await?,
        };
        if previous.as_ref() != Some(&method) {
            tracing::info!(container, path, method = %method, "disk watch");
        }
        let resolved = Resolved { id, source: source.ok(), method: method.clone(), at: Instant::now() };
        self.disk_watch.lock().insert(key, resolved);
        Ok(method)
    }

    /// Reads `source` here and `path` inside the container, and keeps the
    /// host path only if both show the same filesystem. A reading that
    /// cannot be made inside (a stopped container) is an error: nothing is
    /// decided until it can be compared.
    async fn check_host_path(
        &self,
        op: &str,
        container: &str,
        info: &ContainerInspectResponse,
        path: &str,
        source: &str,
    ) -> Result<WatchMethod, HostError> {
        let here = match statvfs(op, PathBuf::from(source)).await {
            Ok(u) => u,
            Err(e) => return Ok(WatchMethod::Fallback(format!("the host path is not visible here: {}", e.message))),
        };
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running {
            return Err(HostError::new(HostErrorKind::Conflict, op, "stopped: the host path cannot be checked"));
        }
        let inside = self.disk_usage(container, path).await?;
        if same_filesystem(here, inside) {
            Ok(WatchMethod::Statvfs(PathBuf::from(source)))
        } else {
            Ok(WatchMethod::Fallback(format!(
                "the host path shows another filesystem here ({here}) than the container ({inside})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(typ: &str, source: &str, destination: &str) -> MountPoint {
        MountPoint {
            typ: Some(typ.into()),
            source: Some(source.into()),
            destination: Some(destination.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_deepest_mount_holding_the_path_gives_its_source_as_reported() {
        let mounts = [
            mount("bind", "/srv/lab/web-logs", "/var/log"),
            mount("volume", "/var/lib/docker/volumes/nginx/_data", "/var/log/nginx"),
        ];
        assert_eq!(host_source(&mounts, "/var/log/nginx").unwrap(), "/var/lib/docker/volumes/nginx/_data");
        // A path below a mount point reads the mount's own source, never
        // the source joined with the rest of the path.
        assert_eq!(host_source(&mounts, "/var/log/nginx/sub").unwrap(), "/var/lib/docker/volumes/nginx/_data");
        assert_eq!(host_source(&mounts, "/var/log/apt").unwrap(), "/srv/lab/web-logs");
        assert!(host_source(&mounts, "/var/lognginx").is_err(), "a prefix of a name is not a parent");
        assert!(host_source(&mounts, "/data").is_err());
    }

    #[test]
    fn hostile_or_missing_sources_are_refused() {
        for source in ["", "relative/path", "/srv/../etc", "/srv/./x", "/a\0b"] {
            let m = [mount("bind", source, "/var/log/nginx")];
            assert!(host_source(&m, "/var/log/nginx").is_err(), "{source:?}");
        }
        let tmpfs = [mount("tmpfs", "", "/var/log/nginx")];
        assert!(host_source(&tmpfs, "/var/log/nginx").is_err());
        let no_source =
            [MountPoint { typ: Some("volume".into()), destination: Some("/x".into()), ..Default::default() }];
        assert!(host_source(&no_source, "/x").is_err());
    }

    #[test]
    fn statvfs_counts_as_df_does() {
        // 4 KiB blocks: 1000 in all, 600 free, 550 available to users.
        let u = usage_of(4096, 1000, 600, 550);
        assert_eq!(u.used_bytes, 400 * 4096);
        assert_eq!(u.total_bytes, 950 * 4096);
        // Hostile numbers do not overflow.
        let u = usage_of(u64::MAX, u64::MAX, 0, u64::MAX);
        assert_eq!(u.total_bytes, u64::MAX);
    }

    #[test]
    fn only_the_same_size_counts_as_the_same_filesystem() {
        let a = DiskUsage { total_bytes: 1_000_000, used_bytes: 500_000 };
        assert!(same_filesystem(a, DiskUsage { used_bytes: 510_000, ..a }));
        assert!(!same_filesystem(a, DiskUsage { total_bytes: 1_000_001, ..a }));
        assert!(!same_filesystem(a, DiskUsage { used_bytes: 900_000, ..a }));
        let empty = DiskUsage { total_bytes: 0, used_bytes: 0 };
        assert!(!same_filesystem(empty, empty));
    }

    #[tokio::test]
    async fn statvfs_reads_a_real_directory_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let u = statvfs("test", dir.path().to_path_buf()).await.unwrap();
        assert!(u.total_bytes > 0 && u.used_bytes <= u.total_bytes);
        let e = statvfs("test", dir.path().join("missing")).await.unwrap_err();
        assert_eq!(e.kind, HostErrorKind::NotFound);
    }
}
