//! Issue 11, item 5: every `watch` flag also comes from an `OPSGUARD_*`
//! environment variable, a flag beating its variable; and without a
//! terminal `--approve prompt` refuses to start instead of rejecting every
//! approval in silence. Each case stops before Docker is reached.

use std::process::{Command, Output, Stdio};

use opsguard::instance::{InstanceLock, LOCK_DIR_ENV};

/// `opsguard watch ARGS` with `env` and none of the caller's `OPSGUARD_*`
/// variables (test.sh exports some), no terminal on stdin, and Docker at an
/// address where nothing listens. Each test holds the instance lock in
/// `lock_dir` (see [`held`]), so a run that gets past the checks under test
/// stops there, before any Docker.
fn watch(args: &[&str], env: &[(&str, &str)], lock_dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("watch")
        .args(args)
        .arg("--audit")
        .arg(lock_dir.join("audit.jsonl"))
        .envs(env.iter().copied())
        .env(LOCK_DIR_ENV, lock_dir)
        .env("DOCKER_HOST", "tcp://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The instance lock a test holds for its whole run. Taken once: a lock
/// dropped and taken again can collide with a copy of its descriptor that a
/// child spawned by another test thread holds between fork and exec.
fn held(dir: &tempfile::TempDir) -> InstanceLock {
    InstanceLock::acquire(dir.path(), "tcp://127.0.0.1:9").unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const NEEDS_A_TERMINAL: &str = "--approve prompt needs a terminal";

#[test]
fn without_a_terminal_prompt_approval_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let _held = held(&dir);
    let out = watch(&[], &[], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains(NEEDS_A_TERMINAL), "{}", stderr(&out));
}

#[test]
fn flags_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let _held = held(&dir);
    let out = watch(&[], &[("OPSGUARD_APPROVE", "bogus")], dir.path());
    // A usage error is 1: 2 means a human is needed.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("'bogus'") && stderr(&out).contains("--approve"), "{}", stderr(&out));
    let out = watch(&[], &[("OPSGUARD_APPROVE", "deny"), ("OPSGUARD_SCOPE_LABEL", "no-equals-sign")], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("--scope-label must be key=value"), "{}", stderr(&out));
}

#[test]
fn a_flag_beats_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let _held = held(&dir);
    let out = watch(&["--approve", "prompt"], &[("OPSGUARD_APPROVE", "deny")], dir.path());
    assert!(stderr(&out).contains(NEEDS_A_TERMINAL), "{}", stderr(&out));
    // With the flag saying deny, the run gets as far as the instance lock,
    // past where prompt would have refused.
    let out = watch(&["--approve", "deny"], &[("OPSGUARD_APPROVE", "prompt")], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("another `opsguard watch` is already watching"), "{}", stderr(&out));
}
