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
//! cargo run --example chain_reaction -- --docker --yes   # the same on the real lab (root, Docker)
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

const USAGE: &str = "usage: chain_reaction [--docker] [--yes | --no]";

fn parse_args() -> Result<(Approval, bool), String> {
    let mut approval = None;
    let mut docker = false;
    for arg in std::env::args().skip(1) {
        let a = match arg.as_str() {
            "--yes" => Approval::Yes,
            "--no" => Approval::No,
            "--docker" => {
                docker = true;
                continue;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        };
        if approval.replace(a).is_some() {
            return Err("give at most one of --yes and --no".into());
        }
    }
    Ok((approval.unwrap_or(Approval::Ask), docker))
}

/// The chain on the real lab: starts it if needed, injects the chain reaction
/// with the chaos engine and lets OpsGuard (Docker events, observer, engine,
/// approval, verification) handle it.
async fn run_docker<A: Approver + 'static>(approver: A, rules: Arc<Rules>) -> Result<Resolution, String> {
    use opsguard::chaos::Scenario;
    use opsguard::chaos::docker::{DockerChaos, RunSettings, run_scenario, run_script};
    use opsguard::host::Host;
    use opsguard::host::docker::DockerHost;

    let lab = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
    println!("starting the lab if needed (lab/up.sh)...");
    run_script(&lab.join("up.sh")).await?;
    let host = DockerHost::connect(&rules.scope_label).await.map_err(|e| e.to_string())?;
    let chaos = DockerChaos::new(host.clone(), None, Some(lab));
    chaos.wait_healthy(std::time::Duration::from_secs(120)).await?;
    println!("💥 Chaos: fill db-prod's disk with /var/log/postgres_crash.log, then docker stop db-prod");
    let settings = RunSettings {
        rules,
        approver,
        incidents: 1,
        timeout: std::time::Duration::from_secs(240),
        verbose: true,
        audit_file: None,
        tap: None,
    };
    let run = run_scenario(&chaos, Scenario::ChainReaction, settings).await.map_err(|e| e.to_string())?;
    let report = run.reports.first().ok_or("no incident ended before the timeout")?;
    let state = host.inspect(DB).await.map(|s| s.state.as_str()).unwrap_or("unknown");
    println!("db-prod is {state}; fault to alarm {:?} ms, fault to end {:?} ms", run.mttd_ms(), run.mttr_ms());
    if report.resolution != Resolution::Resolved {
        println!("(the lab is left as OpsGuard left it: `cargo run -- chaos reset` repairs it)");
    }
    Ok(report.resolution)
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
    let (approval, docker) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let rules = Arc::new(Rules::default_rules());
    if docker {
        let interactive = std::io::stdin().is_terminal();
        let resolution = match approval {
            Approval::Yes => run_docker(PolicyApprover::ApproveAll, rules).await,
            Approval::Ask if interactive => run_docker(TerminalApprover, rules).await,
            Approval::No | Approval::Ask => run_docker(PolicyApprover::Deny, rules).await,
        };
        return match resolution {
            Ok(Resolution::Resolved) => ExitCode::SUCCESS,
            Ok(Resolution::Stopped { reason }) => {
                println!("Stopped for a human: {reason}.");
                ExitCode::from(2)
            }
            Ok(Resolution::Withheld) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("chain_reaction --docker: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
        // The example never turns shadow mode on.
        Resolution::Withheld => ExitCode::FAILURE,
    }
}
