//! `opsguard postmortem`, `explain`, `replay` (issue #5, items 3 and 4) and
//! `rules check` / `rules show` (issue #10, item 5):
//! on incidents recorded on the simulated host, and through the CLI,
//! including bad input (an unknown incident, a garbled audit line: a clear
//! error and exit code 1, never a panic).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditEvent, AuditLog, AuditRecord, Resolution, incident_trails};
use opsguard::clock::Clock;
use opsguard::explain::replay;
use opsguard::host::sim::SimFault;
use opsguard::llm::NoAdvisor;
use opsguard::model::{Action, AlarmKind, RootCause, StopReason, Timestamp};
use opsguard::postmortem::{Postmortem, format_ms};
use opsguard::rules::{DEFAULT_RULES, LogPattern, Rules};

mod sim_lab;

use sim_lab::{START, SimLab, sim_lab};

fn rules_with(from: &str, to: &str) -> Arc<Rules> {
    assert!(DEFAULT_RULES.contains(from), "{from}");
    Arc::new(Rules::from_toml_str(&DEFAULT_RULES.replace(from, to), "mine.toml".as_ref()).unwrap())
}

/// Runs `fault` on a simulated lab with the default rules, the alarm raised
/// 1.5 s after it; returns the audit trail.
async fn recorded(fault: SimFault) -> Vec<AuditRecord> {
    let mut lab = sim_lab(PolicyApprover::ApproveAll, NoAdvisor);
    lab.host.inject(fault);
    lab.clock.sleep(Duration::from_millis(1500)).await;
    let alarm = lab.db_alarm().await;
    lab.responder.handle(alarm).await;
    lab.audit.records()
}

fn ts_of(records: &[AuditRecord], f: impl Fn(&AuditEvent) -> bool) -> Vec<Timestamp> {
    records.iter().filter(|r| f(&r.event)).map(|r| r.ts).collect()
}

#[tokio::test]
async fn chain_reaction_report_times_match_the_audit_log() {
    let records = recorded(SimFault::ChainReaction).await;
    let trails = incident_trails(&records);
    assert_eq!(trails.len(), 1);
    let pm = Postmortem::new(&trails[0]).unwrap();
    let opened = ts_of(&records, |e| matches!(e, AuditEvent::IncidentOpened { .. }))[0];
    let closed = ts_of(&records, |e| matches!(e, AuditEvent::IncidentClosed { .. }))[0];
    // The fault is the database's exit, 1.5 s before the sweep saw it.
    assert_eq!(pm.timing.fault_at, Some(START));
    assert_eq!(pm.timing.detected_at, opened);
    assert_eq!(pm.timing.closed_at, Some(closed));
    assert_eq!(pm.timing.ttd_ms(), Some(1500));
    assert_eq!(pm.timing.ttr_ms(), Some(closed.millis_since(START)));
    assert!(closed > opened, "verification takes simulated time");
    assert_eq!(pm.resolution, Some(Resolution::Resolved));

    let md = pm.to_markdown();
    for section in [
        "## Summary",
        "## Timeline",
        "## Root cause and evidence",
        "## Actions",
        "## Verification",
        "## Time to detect and time to resolve",
        "## What a human should still do",
    ] {
        assert!(md.contains(section), "missing {section}:\n{md}");
    }
    // Every record is a timeline row at its own time.
    for r in &records {
        assert!(md.contains(&format!("| {} | +", r.time)), "no timeline row at {}:\n{md}", r.time);
    }
    assert!(md.contains(&format!("- **Time to detect:** {}", format_ms(1500))), "{md}");
    assert!(md.contains(&format!("- **Time to resolve:** {}", format_ms(closed.millis_since(START)))), "{md}");
    assert!(md.contains(&format!("| {} | -1.500 s |", START.to_rfc3339())), "fault row:\n{md}");
    // Each action at its record's time, the restart with who approved it.
    for r in &records {
        let AuditEvent::Executed { action, .. } = &r.event else { continue };
        let row = md.lines().find(|l| l.contains(&format!("| {} |", r.time)) && l.contains(action.tool_name()));
        assert!(row.is_some(), "no action row for {action} at {}:\n{md}", r.time);
    }
    let restart = md.lines().find(|l| l.contains("restart_database_risky('db-prod')") && l.ends_with("| restarted |"));
    let restart = restart.unwrap_or_else(|| panic!("no restart row:\n{md}"));
    assert!(restart.contains("approved by policy:approve"), "{restart}");
    assert!(md.contains("Root cause:** Disk Full"), "{md}");
    assert!(md.contains("No space left on device"), "{md}");
    assert!(md.contains("confirmed Running"), "{md}");
    if let Some(path) = std::env::var_os("OPSGUARD_WRITE_SAMPLE") {
        std::fs::write(path, &md).unwrap();
    }
}

#[tokio::test]
async fn config_error_report_says_which_file_to_fix() {
    let records = recorded(SimFault::DbConfigCorruption).await;
    let trails = incident_trails(&records);
    let pm = Postmortem::new(&trails[0]).unwrap();
    assert_eq!(pm.resolution, Some(Resolution::Stopped { reason: StopReason::ConfigError }));
    let closed = ts_of(&records, |e| matches!(e, AuditEvent::IncidentClosed { .. }))[0];
    assert_eq!(pm.timing.ttd_ms(), Some(1500));
    assert_eq!(pm.timing.ttr_ms(), Some(closed.millis_since(START)));
    let md = pm.to_markdown();
    assert!(md.contains("## What a human must do now"), "{md}");
    assert!(md.contains("Fix `/etc/postgresql/postgresql.conf` (line 816)"), "{md}");
    assert!(md.contains("OpsGuard will not restart it"), "{md}");
    assert!(md.contains("No verification ran."), "{md}");
    // A stop is not a fix: the time to it is not called a time to resolve.
    let ttr = format_ms(closed.millis_since(START));
    assert!(md.contains(&format!("- **Time to hand over (stopped, not fixed):** {ttr}")), "{md}");
    assert!(!md.contains("Time to resolve:"), "{md}");
}

#[tokio::test]
async fn data_corruption_report_says_do_not_restart() {
    let records = recorded(SimFault::DbDataCorruption).await;
    let md = Postmortem::new(&incident_trails(&records)[0]).unwrap().to_markdown();
    assert!(md.contains("**Do not restart it**"), "{md}");
    assert!(md.contains("backup"), "{md}");
}

#[tokio::test]
async fn same_rules_replay_the_same() {
    for fault in [SimFault::ChainReaction, SimFault::DbConfigCorruption, SimFault::DbOomKill] {
        let records = recorded(fault).await;
        let r = replay(Arc::new(Rules::default_rules()), &incident_trails(&records));
        assert_eq!(r.len(), 1);
        assert!(!r[0].differs(), "{fault:?}:\n{}", r[0].render());
        assert!(r[0].steps.len() >= 2 || fault == SimFault::DbConfigCorruption);
    }
}

#[tokio::test]
async fn a_stricter_clean_threshold_differs_after_the_clean() {
    let records = recorded(SimFault::ChainReaction).await;
    // The clean leaves the disk at 7.7 %: a 5 % threshold calls it a failure.
    let r = replay(rules_with("clean_success_pct = 80.0", "clean_success_pct = 5.0"), &incident_trails(&records));
    let r = &r[0];
    assert!(r.same_alarm());
    assert!(r.steps[0].same(), "{}", r.render());
    let d = r.first_difference().unwrap_or_else(|| panic!("no difference:\n{}", r.render()));
    assert_eq!(d.number, 2);
    assert_eq!(d.recorded, Action::Verify { target: "db-prod".into() });
    assert_eq!(d.today, Action::Stop { reason: StopReason::CleanDidNotFreeDisk });
    assert!(r.render().contains("DIFFERENT  recorded verify('db-prod'), today STOP"), "{}", r.render());
}

#[tokio::test]
async fn another_signature_reclassifies_and_differs_at_the_first_step() {
    let records = recorded(SimFault::ChainReaction).await;
    // A corruption signature that also reads the disk-full PANIC: a
    // dangerous cause decides whatever else matched.
    let mut rules = Rules::default_rules();
    assert_eq!(rules.signatures[3].cause, RootCause::DataCorruption);
    rules.signatures[3].log_pattern = Some(LogPattern::new("No space left on device$").unwrap());
    let r = &replay(Arc::new(rules), &incident_trails(&records))[0];
    assert_eq!(r.today.as_ref().unwrap().kind, AlarmKind::DbCrash(RootCause::DataCorruption));
    let d = r.first_difference().unwrap();
    assert_eq!(d.number, 1);
    assert_eq!(d.today, Action::Stop { reason: StopReason::DataCorruption });
}

/// The recorded chain reaction as an audit file, as `watch --audit` writes it.
async fn audit_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::to_file(&path).unwrap();
    for r in recorded(SimFault::ChainReaction).await {
        log.record(r.incident, r.ts, r.event).unwrap();
    }
    path
}

fn opsguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_opsguard")).args(args).output().expect("run opsguard");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn cli_postmortem_survives_bad_input_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_file(dir.path()).await;
    // A crash mid-write leaves a garbled partial last line.
    let mut text = std::fs::read(&audit).unwrap();
    text.extend_from_slice(b"{\"ts\":17957664\xff\xfe");
    std::fs::write(&audit, &text).unwrap();
    let a = audit.to_str().unwrap();
    let out = dir.path().join("pm.md");
    let (code, _, err) = opsguard(&["postmortem", "1", "--audit", a, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipped a line that is not an audit record"), "{err}");
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("## Timeline") && md.contains("Time to detect:** 1.500 s"), "{md}");

    let (code, out, err) = opsguard(&["postmortem", "7", "--audit", a]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("no incident #7 in the audit log (incidents in it: 1)"), "{err}");
    let (code, _, err) = opsguard(&["postmortem", "1", "--audit", a, "--occurrence", "2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("appears 1 time(s)"), "{err}");
    let missing = dir.path().join("nope.jsonl");
    let (code, _, err) = opsguard(&["postmortem", "1", "--audit", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nope.jsonl"), "{err}");
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, b"\x00\x01 not json\n{\"half\":").unwrap();
    let (code, _, err) = opsguard(&["postmortem", "1", "--audit", garbage.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holds no incidents"), "{err}");
}

#[tokio::test]
async fn cli_replay_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_file(dir.path()).await;
    let a = audit.to_str().unwrap();
    let (code, out, err) = opsguard(&["replay", a]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("decide every step the same"), "{out}");
    let stricter = dir.path().join("stricter.toml");
    std::fs::write(&stricter, DEFAULT_RULES.replace("clean_success_pct = 80.0", "clean_success_pct = 5.0")).unwrap();
    let (code, out, err) = opsguard(&["replay", a, "--rules", stricter.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("step  2    DIFFERENT  recorded verify('db-prod'), today STOP"), "{out}");
    assert!(out.contains("first at step 2"), "{out}");
    let (code, _, err) = opsguard(&["replay", a, "--incident", "9"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no incident #9"), "{err}");
    let bad_rules = dir.path().join("bad.toml");
    std::fs::write(&bad_rules, "[thresholds]\nweb_disk_pct = \"high\"\n").unwrap();
    let (code, _, err) = opsguard(&["replay", a, "--rules", bad_rules.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.toml"), "{err}");
}

#[tokio::test]
async fn cli_explain_from_flags_and_from_the_audit_log() {
    let (code, out, err) = opsguard(&[
        "explain",
        "--alarm",
        "db-crash",
        "--exit-code",
        "1",
        "--oom",
        "false",
        "--log-line",
        "LOG:  checkpoint starting: time",
        "--log-line",
        "PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device",
        "--disk-used",
        "97",
    ]);
    assert_eq!(code, 0, "{err}");
    for want in ["DB_CRASH — Disk Full on db-prod", "line 2: PANIC", "next action: clean_logs('db-prod') (safe)"] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_file(dir.path()).await;
    let a = audit.to_str().unwrap();
    let (code, out, err) = opsguard(&["explain", "--from", a, "--incident", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("recorded:    DB_CRASH — Disk Full on db-prod"), "{out}");
    assert!(out.contains("next action: clean_logs('db-prod')"), "{out}");
    let (code, _, err) = opsguard(&["explain", "--from", a, "--incident", "5"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no alarm recorded for incident #5"), "{err}");
    let (code, _, err) = opsguard(&["explain"]);
    assert_eq!(code, 1, "a usage error is an error: {err}");
    assert!(err.contains("--alarm"), "clap says what is missing: {err}");
}

/// The restart budget spans incidents: a replay rebuilds the restarts of
/// earlier incidents in the same run, so it agrees with the recorded stop
/// of the fourth OOM kill, and a larger budget differs exactly there.
#[tokio::test]
async fn replay_rebuilds_the_restart_budget_across_incidents() {
    let SimLab { clock, host, audit, mut responder } = sim_lab(PolicyApprover::ApproveAll, NoAdvisor);
    let mut ends = Vec::new();
    for _ in 0..4 {
        clock.sleep(Duration::from_secs(300)).await;
        host.inject(SimFault::DbOomKill);
        let alarm = responder.observer().check_database(responder.host(), clock.now()).await.unwrap().unwrap();
        ends.push(responder.handle(alarm).await.resolution);
    }
    assert_eq!(ends[2], Resolution::Resolved);
    assert_eq!(ends[3], Resolution::Stopped { reason: StopReason::RestartBudgetExhausted });
    let trails = incident_trails(&audit.records());
    let same = replay(Arc::new(Rules::default_rules()), &trails);
    assert!(same.iter().all(|r| !r.differs()), "{}", same.iter().map(|r| r.render()).collect::<String>());
    let larger = replay(rules_with("max_restarts = 3", "max_restarts = 5"), &trails);
    let differ: Vec<u64> = larger.iter().filter(|r| r.differs()).map(|r| r.incident).collect();
    assert_eq!(differ, vec![4]);
    let d = larger[3].first_difference().unwrap();
    assert_eq!(d.number, 1);
    assert!(matches!(d.today, Action::Restart { .. }), "{d:?}");
}

/// Issue 10, item 5: `rules check` validates a partial file over the
/// defaults, and what `rules show` prints checks as the same rules.
#[test]
fn cli_rules_check_and_show_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine.toml");
    std::fs::write(&mine, "# stricter\n[thresholds]\nzombie_max = 9\n").unwrap();
    let m = mine.to_str().unwrap();
    let (code, out, err) = opsguard(&["rules", "check", m]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&format!("{m}: ok: sets thresholds.zombie_max;")), "{out}");

    let (code, shown, err) = opsguard(&["rules", "show", "--rules", m]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("zombie_max = 9") && shown.contains("web_disk_pct = 85.0"), "{shown}");
    let again = dir.path().join("shown.toml");
    std::fs::write(&again, &shown).unwrap();
    let (code, out, err) = opsguard(&["rules", "check", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, reshown, _) = opsguard(&["rules", "show", "--rules", again.to_str().unwrap()]);
    let body = |s: &str| s.lines().skip_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&reshown), body(&shown));
    let (code, defaults, _) = opsguard(&["rules", "show"]);
    assert_eq!(code, 0);
    assert_eq!(body(&defaults), body(&shown).replace("zombie_max = 9", "zombie_max = 5"));

    std::fs::write(&mine, "[thresholds]\n\nzombie_max = \"nine\"\n").unwrap();
    let (code, out, err) = opsguard(&["rules", "check", m]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.starts_with(&format!("{m}:3:14: field `thresholds.zombie_max`: ")), "{err}");
    let (code, _, err) = opsguard(&["rules", "check", dir.path().join("none.toml").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("none.toml"), "{err}");
}
