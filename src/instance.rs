//! The single-instance lock: one `watch` per Docker endpoint.
//!
//! Two `watch` processes on one host would each keep their own restart
//! budget, so together they could restart a crash-looping database twice as
//! often as the rules allow, and both would answer the same alarm. `watch`
//! therefore holds an exclusive advisory lock (`flock`) on a file named after
//! the endpoint for as long as it runs; a second one fails at once with
//! [`LockError::Held`]. The operating system drops the lock when the process
//! ends, however it ends, so a `kill -9` leaves nothing stale behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that names the lock directory instead of the default.
pub const LOCK_DIR_ENV: &str = "OPSGUARD_LOCK_DIR";
/// The endpoint bollard's local defaults connect to when `DOCKER_HOST` is unset.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another `opsguard watch` is already watching {endpoint} ({holder}; lock {}): \
         two would each keep their own restart budget, so this one does not start",
        path.display()
    )]
    Held {
        /// The Docker endpoint.
        endpoint: String,
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote about itself (its pid), filtered for printing.
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot take the single-instance lock {}: {source}", path.display())]
    Io {
        /// The lock file (or its directory).
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct InstanceLock {
    // Held for its lock: closing the file releases it.
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock for `endpoint` in `dir` (created if missing), or
    /// fails at once if another process (or another handle in this one)
    /// holds it.
    pub fn acquire(dir: &Path, endpoint: &str) -> Result<InstanceLock, LockError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(io_err(dir))?;
        let path = dir.join(lock_file_name(endpoint));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // Best effort: the holder may be between truncating and writing.
                let _ = Read::by_ref(&mut file).take(256).read_to_string(&mut text);
                let holder = crate::classify::printable(text.lines().next().unwrap_or("").trim());
                let holder = if holder.is_empty() { "pid unknown".to_string() } else { holder };
                return Err(LockError::Held { endpoint: crate::classify::printable(endpoint), path, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        // Who holds it, for the error the next one prints.
        let note = format!("pid {}\nendpoint {}\n", std::process::id(), endpoint);
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(io_err(&path))?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The Docker endpoint `watch` connects to: `DOCKER_HOST`, or the local socket.
pub fn docker_endpoint() -> String {
    std::env::var("DOCKER_HOST").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.into())
}

/// Where the lock lives: `OPSGUARD_LOCK_DIR`, else `/run/opsguard` (root, as
/// in production), else the user's runtime directory, else a directory in
/// the system's temporary directory. Every `watch` run by the same user
/// finds the same one.
pub fn default_lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let run = Path::new("/run/opsguard");
    if std::fs::DirBuilder::new().recursive(true).mode(0o755).create(run).is_ok() && is_writable(run) {
        return run.to_path_buf();
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("opsguard");
    }
    std::env::temp_dir().join("opsguard-locks")
}

fn is_writable(dir: &Path) -> bool {
    // Opening a file proves more than reading permission bits would.
    let probe = dir.join(".probe");
    let ok = OpenOptions::new().write(true).create(true).truncate(false).open(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// `watch-<first 16 hex digits of SHA-256(endpoint)>.lock`: one file per
/// endpoint, whatever characters the endpoint holds.
fn lock_file_name(endpoint: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, endpoint.trim().as_bytes());
    format!("watch-{}.lock", &hex::encode(digest.as_ref())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 8, item 8: a second watch on the same endpoint is refused with a
    // clear error; another endpoint is another lock.
    #[test]
    fn a_second_lock_on_the_same_endpoint_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(dir.path(), DEFAULT_ENDPOINT).unwrap();
        let err = InstanceLock::acquire(dir.path(), DEFAULT_ENDPOINT).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{err:?}");
        assert!(text.contains("already watching unix:///var/run/docker.sock"), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        let other = InstanceLock::acquire(dir.path(), "tcp://127.0.0.1:2375").unwrap();
        assert_ne!(other.path(), first.path());
        // Released with its holder.
        drop(first);
        InstanceLock::acquire(dir.path(), DEFAULT_ENDPOINT).unwrap();
    }

    #[test]
    fn the_lock_file_name_is_safe_whatever_the_endpoint() {
        let name = lock_file_name("tcp://../../etc/passwd\n\u{1b}[2J");
        assert!(name.starts_with("watch-") && name.ends_with(".lock"));
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'), "{name}");
    }
}
