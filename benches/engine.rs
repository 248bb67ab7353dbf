//! Benchmarks: `decide` per call (and whether it allocates), classifying two
//! minutes of logs at 10,000 lines and a 10 MB log, and one whole simulated
//! chain-reaction incident.
//!
//! ```text
//! cargo bench --bench engine
//! ```

use std::sync::Arc;

use divan::{AllocProfiler, Bencher, black_box};
use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditLog, Resolution};
use opsguard::classify::{CrashFacts, classify};
use opsguard::clock::{Clock, SimClock};
use opsguard::engine::Engine;
use opsguard::host::sim::{SimFault, SimHost};
use opsguard::incident::Responder;
use opsguard::llm::NoAdvisor;
use opsguard::model::*;
use opsguard::rules::Rules;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

fn db_alarm(cause: RootCause) -> Alarm {
    Alarm {
        kind: AlarmKind::DbCrash(cause),
        container: ContainerName::new("db-prod"),
        evidence: Evidence::default(),
        raised_at: Timestamp(0),
    }
}

/// The disk-full chain at its longest: clean, verify, restart, verify.
fn chain_history() -> History {
    let step = |action, outcome| Step { action, outcome, at: Timestamp(0) };
    let db = ContainerName::new("db-prod");
    History {
        steps: vec![
            step(Action::CleanLogs { target: db.clone() }, Outcome::Cleaned { disk_used_pct: 15.0, freed_bytes: 1 }),
            step(
                Action::Verify { target: db.clone() },
                Outcome::Verified(Verification::NotConfirmed { last_state: Some(ContainerState::Exited) }),
            ),
            step(Action::Restart { target: db.clone(), reason: RestartReason::DiskFreed }, Outcome::Restarted),
        ],
        restarts: vec![Timestamp(1_000), Timestamp(2_000)],
    }
}

#[divan::bench(args = ["fresh", "mid_chain", "after_restart"])]
fn decide(bencher: Bencher, at: &str) {
    let engine = Engine::new(Arc::new(Rules::default_rules())).with_llm(true);
    let alarm = db_alarm(RootCause::DiskFull);
    let mut history = chain_history();
    match at {
        "fresh" => history.steps.clear(),
        "mid_chain" => history.steps.truncate(2),
        _ => {}
    }
    bencher.bench_local(|| engine.decide(black_box(&alarm), black_box(&history), black_box(Timestamp(10_000))));
}

/// Two minutes of a busy PostgreSQL's logs (10,000 lines) ending in the
/// disk-full PANIC, so every signature before it scans them all.
fn two_minutes_of_logs() -> Vec<String> {
    let mut lines: Vec<String> = (0..9_998)
        .map(|i| {
            format!(
                "2026-11-27 08:{:02}:{:02}.{:03} UTC [{}] LOG:  duration: {}.{:03} ms  statement: SELECT * FROM orders WHERE id = {}",
                i / 6000,
                (i / 100) % 60,
                i % 1000,
                1000 + i % 50,
                i % 97,
                i % 1000,
                i
            )
        })
        .collect();
    lines.push("ERROR:  could not write to file \"base/pgsql_tmp/pgsql_tmp271.0\": No space left on device".into());
    lines.push("PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device".into());
    lines
}

/// A crashed database's logs classified with the default rules.
fn classify_logs(bencher: Bencher, logs: &[String]) {
    let rules = Rules::default_rules();
    bencher.bench_local(|| {
        classify(
            &rules,
            CrashFacts { exit_code: Some(1), oom_killed: false, disk_used_pct: Some(100.0), logs: black_box(logs) },
        )
    });
}

#[divan::bench(args = ["disk_full_at_end", "unknown"])]
fn classify_10k_lines(bencher: Bencher, which: &str) {
    let mut logs = two_minutes_of_logs();
    if which == "unknown" {
        // Nothing matches: every signature scans every line.
        logs.truncate(9_998);
    }
    classify_logs(bencher, &logs);
}

/// About 10 MB of the same busy PostgreSQL's logs (the 10,000 lines over
/// and over, each line kept whole), ending in the disk-full PANIC.
fn ten_megabytes_of_logs() -> Vec<String> {
    const TEN_MB: usize = 10 * 1024 * 1024;
    let minutes = two_minutes_of_logs();
    let (body, end) = minutes.split_at(minutes.len() - 2);
    let mut lines = Vec::new();
    let mut bytes = end.iter().map(|l| l.len() + 1).sum::<usize>();
    for l in body.iter().cycle() {
        if bytes + l.len() + 1 > TEN_MB {
            break;
        }
        bytes += l.len() + 1;
        lines.push(l.clone());
    }
    lines.extend_from_slice(end);
    lines
}

#[divan::bench(args = ["disk_full_at_end", "unknown"])]
fn classify_10_mb_log(bencher: Bencher, which: &str) {
    let mut logs = ten_megabytes_of_logs();
    if which == "unknown" {
        logs.truncate(logs.len() - 2);
    }
    classify_logs(bencher, &logs);
}

#[divan::bench]
fn chain_reaction_incident(bencher: Bencher) {
    let rules = Arc::new(Rules::default_rules());
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    bencher.bench_local(|| {
        rt.block_on(async {
            let clock = SimClock::new(Timestamp(1_795_766_400_000));
            let host = SimHost::lab(clock.clone());
            let mut responder = Responder::new(
                Engine::new(rules.clone()),
                host.clone(),
                PolicyApprover::ApproveAll,
                NoAdvisor,
                clock.clone(),
                AuditLog::discard(),
            );
            host.inject(SimFault::ChainReaction);
            let sweep = responder.observer().sweep(responder.host(), clock.now()).await;
            let report = responder.handle(sweep.alarms.into_iter().next().unwrap()).await;
            assert_eq!(report.resolution, Resolution::Resolved);
            report
        })
    });
}
