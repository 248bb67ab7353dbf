//! Phase 3's chain reaction, end to end, on the simulated host (no Docker
//! needed): a crash log fills the database's disk, the database goes down,
//! OpsGuard tags the crash `DB_CRASH — Disk Full`, cleans first, asks a
//! human before restarting, verifies with rapid checks and only then calls
//! it resolved.
//!
//! ```text
//! cargo run --example chain_reaction            # asks at the terminal
//! cargo run --example chain_reaction -- --yes   # approves the restart
//! cargo run --example chain_reaction -- --no    # rejects it: stops for a human
//! ```
//!
//! With no terminal and no flag the restart is rejected. Exits 0 only when
//! the incident resolved.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use opsguard::approval::{Approver, PolicyApprover, TerminalApprover};
use opsguard::audit::{AuditLog, Resolution};
use opsguard::clock::{Clock, SimClock};
use opsguard::engine::Engine;
use opsguard::host::sim::{DB, SimFault, SimHost, SimOp};
use opsguard::incident::{IncidentReport, Responder};
use opsguard::llm::NoAdvisor;
use opsguard::model::Timestamp;
use opsguard::rules::Rules;

/// 2026-11-27T08:00:00Z, so the timeline reads like a real morning.
const START: Timestamp = Timestamp(1_795_766_400_000);

enum Approval {
    Yes,
    No,
    Ask,
}

fn parse_args() -> Result<Approval, String> {
    let mut approval = None;
    for arg in std::env::args().skip(1) {
        let a = match arg.as_str() {
            "--yes" => Approval::Yes,
            "--no" => Approval::No,
            "-h" | "--help" => return Err("usage: chain_reaction [--yes | --no]".into()),
            other => return Err(format!("unknown argument {other:?}; usage: chain_reaction [--yes | --no]")),
        };
        if approval.replace(a).is_some() {
            return Err("give at most one of --yes and --no".into());
        }
    }
    Ok(approval.unwrap_or(Approval::Ask))
}

async fn run<A: Approver>(approver: A, host: SimHost, clock: SimClock, rules: Arc<Rules>) -> (IncidentReport, bool) {
    let t0 = clock.now();
    let audit = AuditLog::in_memory().with_tap(move |r| {
        let secs = r.ts.millis_since(t0) as f64 / 1000.0;
        println!("[t+{secs:5.1}s] {}", r.event.render());
    });
    let mut responder =
        Responder::new(Engine::new(rules.clone()), host.clone(), approver, NoAdvisor, clock.clone(), audit);

    let log_paths = [rules.web.log_paths.clone(), rules.database.log_paths.clone()].concat();
    let data_before = host.non_log_files(&log_paths);
    println!("[t+  0.0s] 💥 Chaos: write 3 GB to {}", opsguard::host::sim::paths::DB_CRASH_LOG);
    host.inject(SimFault::ChainReaction);
    println!("[t+  0.0s]    disk → 100%, db-prod status → Exited");
    clock.sleep(std::time::Duration::from_secs(1)).await;

    println!("[t+  1.0s] 👁  Observer: detect disk full + DB down");
    let sweep = responder.observer().sweep(responder.host(), clock.now()).await;
    let alarm = sweep
        .alarms
        .into_iter()
        .find(|a| a.container.as_str() == DB)
        .expect("the chain reaction raises a database alarm");
    let report = responder.handle(alarm).await;
    let data_after = host.non_log_files(&log_paths);
    let data_intact = data_before.iter().all(|(path, size)| data_after.get(path) == Some(size));
    (report, data_intact)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let approval = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let rules = Arc::new(Rules::default_rules());
    let clock = SimClock::new(START);
    let host = SimHost::lab(clock.clone());

    let (report, data_intact) = match approval {
        Approval::Yes => run(PolicyApprover::ApproveAll, host.clone(), clock, rules).await,
        Approval::No => run(PolicyApprover::Deny, host.clone(), clock, rules).await,
        Approval::Ask if std::io::stdin().is_terminal() => run(TerminalApprover, host.clone(), clock, rules).await,
        Approval::Ask => {
            println!("(no terminal and neither --yes nor --no: every restart will be rejected)");
            run(PolicyApprover::Deny, host.clone(), clock, rules).await
        }
    };

    let restarts = host.ops().iter().filter(|op| matches!(op, SimOp::Restart { .. })).count();
    let state = host.state(DB).map_or("missing", |s| s.as_str());
    println!();
    if !data_intact {
        println!("BUG: a file outside the log paths changed");
        return ExitCode::FAILURE;
    }
    match report.resolution {
        Resolution::Resolved => {
            println!("Resolved: db-prod is {state}; {restarts} restart(s); database files untouched.");
            ExitCode::SUCCESS
        }
        Resolution::Stopped { reason } => {
            println!(
                "Stopped for a human: {reason}. db-prod is {state}; {restarts} restart(s); database files untouched."
            );
            ExitCode::from(2)
        }
    }
}
