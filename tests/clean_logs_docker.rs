//! Issue 8 item 12 against a real Docker daemon: `clean_logs` truncates log
//! files and nothing they might point to. A container of the lab image gets a
//! log directory planted with what a hostile process in it could put there
//! (a symlink `evil.log -> /srv/secret/important.txt`, a hard link, a FIFO, a
//! symlinked directory, a PostgreSQL data directory, a read-only mount, a
//! name swapped between a file and a symlink in a tight loop); cleaning, by
//! `exec` while it runs and by a helper once it is stopped, truncates only
//! the real log files and counts only those.
//!
//! Needs Docker and the lab image (`lab/up.sh` builds it): `#[ignore]`d, and
//! failing without `OPSGUARD_E2E=1` (scripts/test.sh runs it). It uses its
//! own containers and scope label, not the lab's, so a watching OpsGuard
//! leaves them alone.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use opsguard::host::docker::DockerHost;
use opsguard::host::{CleanReport, Host};

const IMAGE: &str = "opsguard-lab:latest";

/// Fails (never passes silently) without `OPSGUARD_E2E=1`.
fn require_lab() {
    assert!(
        std::env::var("OPSGUARD_E2E").is_ok_and(|v| v == "1"),
        "OPSGUARD_E2E is not 1: this test needs Docker and the lab image. Run `bash scripts/test.sh`, \
         or as root `bash lab/up.sh` then `OPSGUARD_E2E=1 cargo test --test clean_logs_docker -- --include-ignored`"
    );
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container whatever happens to the test.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.0]).output();
    }
}

fn write(path: &Path, bytes: usize) {
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
}

fn size(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().len()
}

struct Lab {
    dir: tempfile::TempDir,
    name: String,
    scope: String,
}

impl Lab {
    fn logs(&self) -> std::path::PathBuf {
        self.dir.path().join("logs")
    }
    fn secret(&self) -> std::path::PathBuf {
        self.dir.path().join("secret")
    }

    /// Plants the hostile log directory (again: cleaning empties it).
    fn plant(&self) {
        let (logs, secret) = (self.logs(), self.secret());
        for p in ["real.log", "rot.log.1"] {
            let _ = std::fs::remove_file(logs.join(p));
        }
        write(&logs.join("real.log"), 10_000);
        write(&logs.join("rot.log.1"), 500);
        for (f, n) in [("important.txt", 1000), ("hard.txt", 700), ("x.log", 300), ("target.txt", 900)] {
            write(&secret.join(f), n);
        }
        write(&logs.join("pgdata/wal.log"), 400);
        write(&self.dir.path().join("ro/a.log"), 600);
    }
}

fn setup() -> (Lab, Container, DockerHost) {
    let dir = tempfile::Builder::new().prefix("opsguard-clean-").tempdir_in("/tmp").unwrap();
    let root = dir.path().to_path_buf();
    let p = root.as_path();
    for d in ["logs", "logs/pgdata", "secret", "ro"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    let lab = Lab {
        name: format!("opsguard-cleantest-{}", std::process::id()),
        scope: "opsguard.cleantest=true".into(),
        dir,
    };
    lab.plant();
    let (logs, secret) = (lab.logs(), lab.secret());
    symlink("/srv/secret/important.txt", logs.join("evil.log")).unwrap();
    std::fs::hard_link(secret.join("hard.txt"), logs.join("hard.log")).unwrap();
    symlink("/srv/secret", logs.join("linkdir")).unwrap();
    std::fs::write(logs.join("pgdata/PG_VERSION"), "15\n").unwrap();
    write(&logs.join("notes.txt"), 100);
    assert!(Command::new("mkfifo").arg(logs.join("fifo.log")).status().unwrap().success());
    docker(&["image", "inspect", IMAGE, "--format", "{{.Id}}"]);
    let vol = |host: &Path, at: &str, mode: &str| format!("{}:{at}:{mode}", host.display());
    docker(&[
        "create",
        "--name",
        &lab.name,
        "--label",
        &lab.scope,
        "--network",
        "none",
        "-e",
        "PGDATA=/srv/secret/pg",
        "-v",
        &vol(&logs, "/var/log/app", "rw"),
        "-v",
        &vol(&secret, "/srv/secret", "rw"),
        "-v",
        &vol(&p.join("ro"), "/var/log/app/ro", "ro"),
        "--entrypoint",
        "sleep",
        IMAGE,
        "600",
    ]);
    let guard = Container(lab.name.clone());
    let host = DockerHost::with_client(bollard::Docker::connect_with_local_defaults().unwrap(), &lab.scope);
    (lab, guard, host)
}

fn assert_untouched(lab: &Lab) {
    let (logs, secret) = (lab.logs(), lab.secret());
    assert_eq!(size(&secret.join("target.txt")), 900, "the race's target was truncated");
    assert_eq!(size(&secret.join("important.txt")), 1000, "the symlink's target was truncated");
    assert_eq!(size(&secret.join("hard.txt")), 700, "the hard link's other name was truncated");
    assert_eq!(size(&secret.join("x.log")), 300, "a log behind a symlinked directory was truncated");
    assert_eq!(size(&logs.join("pgdata/wal.log")), 400, "a file in a data directory was truncated");
    assert_eq!(size(&lab.dir.path().join("ro/a.log")), 600, "a read-only mount was written");
    assert_eq!(size(&logs.join("notes.txt")), 100);
    assert!(std::fs::symlink_metadata(logs.join("evil.log")).unwrap().file_type().is_symlink());
}

#[tokio::test]
#[ignore = "needs Docker and the lab image: OPSGUARD_E2E=1, as root (scripts/test.sh runs it)"]
async fn clean_logs_truncates_only_real_log_files_running_or_stopped() {
    require_lab();
    let (lab, _guard, host) = setup();
    let paths = vec!["/var/log/app".to_string()];
    docker(&["start", &lab.name]);

    // Running: exec. A process in the container swaps race.log between a
    // regular file and a symlink to the target as fast as it can.
    let racer = "cd /var/log/app; while :; do echo data > f.tmp; mv -f f.tmp race.log; \
                 ln -sfn /srv/secret/target.txt l.tmp; mv -Tf l.tmp race.log; done";
    docker(&["exec", "-d", &lab.name, "sh", "-c", racer]);
    for _ in 0..20 {
        host.clean_logs(&lab.name, &paths).await.unwrap();
    }
    docker(&["kill", &lab.name]);
    assert_untouched(&lab);
    let _ = std::fs::remove_file(lab.logs().join("race.log"));

    lab.plant();
    docker(&["start", &lab.name]);
    let r = host.clean_logs(&lab.name, &paths).await.unwrap();
    assert_eq!(r, CleanReport { files: 2, freed_bytes: 10_500 }, "running: only real.log and rot.log.1 count");
    assert_eq!((size(&lab.logs().join("real.log")), size(&lab.logs().join("rot.log.1"))), (0, 0));
    assert_untouched(&lab);

    // Stopped: a helper from the same image with the container's mounts.
    docker(&["kill", &lab.name]);
    lab.plant();
    let r = host.clean_logs(&lab.name, &paths).await.unwrap();
    assert_eq!(r, CleanReport { files: 2, freed_bytes: 10_500 }, "stopped: only real.log and rot.log.1 count");
    assert_untouched(&lab);

    // The read-only mount stays read-only in the helper too: nothing counted.
    let r = host.clean_logs(&lab.name, &["/var/log/app/ro".to_string()]).await.unwrap();
    assert_eq!(r, CleanReport::default());
    assert_untouched(&lab);

    // Log paths holding the data directory (PGDATA, or PostgreSQL's default
    // root) are refused before anything runs.
    for bad in ["/srv", "/srv/secret", "/srv/secret/pg", "/var/lib/postgresql"] {
        let e = host.clean_logs(&lab.name, &[bad.to_string()]).await.unwrap_err();
        assert!(e.message.contains("data directory"), "{bad}: {e}");
    }
    assert_untouched(&lab);
}
