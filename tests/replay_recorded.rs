//! Audit logs recorded before the incident machine and the scheduler (by
//! commit ca57c9f's agent on the simulated lab, every scenario approved
//! and denied: `tests/fixtures/audit-ca57c9f/`) replay through today's
//! `opsguard replay` with every decision the same. Issue 9 changed how an
//! incident is carried out, not what is decided; a change of decisions
//! shows here as a failing replay (exit 3), a change of the record format
//! as a replay that cannot read them.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn logs_recorded_before_the_incident_machine_decide_the_same_today() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit-ca57c9f");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the recorded logs")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    logs.sort();
    // Eight scenarios, each approved and denied.
    assert_eq!(logs.len(), 16, "{logs:?}");
    for log in &logs {
        let out =
            Command::new(env!("CARGO_BIN_EXE_opsguard")).arg("replay").arg(log).output().expect("opsguard replay");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: replay exited {:?}\n{stdout}\n{}",
            log.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 incident(s) replayed, 0 decided differently"), "{}:\n{stdout}", log.display());
    }
}
