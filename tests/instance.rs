//! Issue 8, item 8: a second `watch` on the same Docker endpoint refuses to
//! start (exit 1, a clear error) instead of keeping a restart budget of its own.

use opsguard::instance::{InstanceLock, LOCK_DIR_ENV};

#[test]
fn a_second_watch_on_the_same_endpoint_exits_1_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the lock is taken before Docker is reached.
    let endpoint = "tcp://127.0.0.1:9";
    let _first = InstanceLock::acquire(dir.path(), endpoint).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_opsguard"));
    // Every watch flag also reads OPSGUARD_*; test.sh exports some (the model URL).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .args(["watch", "--approve", "deny", "--max-incidents", "1"])
        .arg("--audit")
        .arg(dir.path().join("audit.jsonl"))
        .env(LOCK_DIR_ENV, dir.path())
        .env("DOCKER_HOST", endpoint)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.contains("another `opsguard watch` is already watching tcp://127.0.0.1:9"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", std::process::id())), "{stderr}");
}
