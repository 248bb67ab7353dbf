//! MTTD/MTTR benchmark on the real Docker lab (not a test).
//!
//! ```text
//! cargo run --release --example mttr [-- RUNS [SCENARIO...]]   # default: 5 runs, every scenario
//! ```
//!
//! For each chaos scenario, RUNS times: repair the lab, start OpsGuard
//! (events + sweeps, approvals auto-answered yes), inject the fault, and time
//! fault → alarm (MTTD) and fault → incident resolved or stopped (MTTR).
//! Beside it, Docker's own `restart: on-failure` policy restarting the same
//! OOM-killed db-prod (fault → running and accepting connections again).
//! The lab must be up (`opsguard lab up`). `MTTR_DISK_WATCH_MS=0` turns the
//! disk watch off (the web log disk then read by the sweeps only), for
//! comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
use opsguard::approval::PolicyApprover;
use opsguard::audit::Resolution;
use opsguard::chaos::Scenario;
use opsguard::chaos::docker::{DB, DockerChaos, RunSettings, run_scenario};
use opsguard::host::Host;
use opsguard::host::docker::DockerHost;
use opsguard::model::ContainerState;
use opsguard::rules::Rules;

fn stats(v: &[u64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let mean = s.iter().sum::<u64>() as f64 / s.len() as f64;
    let median =
        if s.len() % 2 == 1 { s[s.len() / 2] as f64 } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) as f64 / 2.0 };
    format!(
        "{:>7.2} s (median {:.2}, min {:.2}, max {:.2})",
        mean / 1000.0,
        median / 1000.0,
        s[0] as f64 / 1000.0,
        s[s.len() - 1] as f64 / 1000.0
    )
}

fn mean(v: &[u64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<u64>() as f64 / v.len() as f64 }
}

async fn set_restart_policy(host: &DockerHost, name: RestartPolicyNameEnum) -> Result<(), String> {
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy { name: Some(name), maximum_retry_count: None }),
        ..Default::default()
    };
    host.client().update_container(DB, body).await.map_err(|e| e.to_string())
}

/// Docker's restart policy on an OOM kill: fault → running and accepting connections.
async fn docker_policy_run(chaos: &DockerChaos) -> Result<u64, String> {
    chaos.reset().await.map_err(|e| e.to_string())?;
    let host = chaos.host();
    set_restart_policy(host, RestartPolicyNameEnum::ON_FAILURE).await?;
    let _ = host.exec(DB, &["tail", "/dev/zero"]).await;
    let t0 = Instant::now();
    let limit = Duration::from_secs(60);
    let result = loop {
        if t0.elapsed() > limit {
            break Err("db-prod not back within 60 s".to_string());
        }
        let s = host.inspect(DB).await.map_err(|e| e.to_string())?;
        if s.state == ContainerState::Running
            && host
                .exec(DB, &["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"])
                .await
                .is_ok_and(|o| o.exit_code == 0)
        {
            // Measure from the kill, as for OpsGuard: FinishedAt of the OOM'd run.
            let end = opsguard::clock::Clock::now(&opsguard::clock::SystemClock);
            break Ok(s.finished_at.map_or(t0.elapsed().as_millis() as u64, |f| end.millis_since(f)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    set_restart_policy(host, RestartPolicyNameEnum::NO).await?;
    result
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let only: Vec<String> = std::env::args().skip(2).collect();
    let wanted = |s: Scenario| only.is_empty() || only.iter().any(|o| o == s.name());
    let host = match DockerHost::connect("opsguard.lab=true").await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mttr: {e}");
            std::process::exit(1);
        }
    };
    let lab = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
    let chaos = DockerChaos::new(host, None, Some(lab));
    let mut rules = Rules::default_rules();
    if let Some(ms) = std::env::var("MTTR_DISK_WATCH_MS").ok().and_then(|v| v.parse().ok()) {
        rules.observer.disk_watch_ms = ms;
    }
    let rules = Arc::new(rules);
    println!(
        "{runs} runs per scenario; sweep every {}s, disk watch every {} ms (0: off), Docker events on; approvals auto-approved",
        rules.observer.interval_secs, rules.observer.disk_watch_ms
    );
    let mut table = Vec::new();
    let mut oom_mttr = Vec::new();
    for scenario in Scenario::ALL.into_iter().filter(|s| wanted(*s)) {
        let (mut mttd, mut mttr, mut outcomes, mut leads) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            if let Err(e) = chaos.reset().await {
                eprintln!("{scenario} run {i}: reset failed: {e}");
                continue;
            }
            let settings = RunSettings {
                rules: rules.clone(),
                approver: PolicyApprover::ApproveAll,
                incidents: 1,
                timeout: Duration::from_secs(150),
                verbose: false,
                audit_file: None,
                tap: None,
            };
            match run_scenario(&chaos, scenario, settings).await {
                Ok(run) if !run.reports.is_empty() => {
                    let (d, r) = (run.mttd_ms().unwrap_or(0), run.mttr_ms().unwrap_or(0));
                    let end = match run.reports[0].resolution {
                        Resolution::Resolved => "resolved".to_string(),
                        Resolution::Stopped { reason } => format!("stopped ({reason:?})"),
                        Resolution::Withheld => "shadow".to_string(),
                    };
                    // When the first action was done (zombies: pruned).
                    let acted = run
                        .audit
                        .iter()
                        .find(|r| matches!(r.event, opsguard::audit::AuditEvent::Executed { .. }))
                        .map_or("-".to_string(), |r| format!("{} ms", r.ts.millis_since(run.fault_at)));
                    eprintln!("{scenario} run {}: MTTD {d} ms, first action done {acted}, MTTR {r} ms, {end}", i + 1);
                    // A warning before the fault: how long before the
                    // foreseen crossing it came, and the clean was done.
                    let first = &run.reports[0];
                    if let Some(cross) = first.alarm.evidence.threshold_crossing_at {
                        let (warned, cleaned) =
                            (cross.millis_since(first.alarm.raised_at), cross.millis_since(first.closed_at));
                        let rate = first.alarm.evidence.fill_rate_pct_per_min.unwrap_or(f64::NAN);
                        eprintln!(
                            "{scenario} run {}: fill rate {rate:.2} points/min; warned {warned} ms and done {cleaned} ms before the foreseen crossing",
                            i + 1
                        );
                        leads.push(warned);
                    }
                    mttd.push(d);
                    mttr.push(r);
                    outcomes.push(end);
                }
                Ok(_) => eprintln!("{scenario} run {}: no incident within the timeout", i + 1),
                Err(e) => eprintln!("{scenario} run {}: {e}", i + 1),
            }
        }
        if scenario == Scenario::DbOomKill {
            oom_mttr = mttr.clone();
        }
        if !leads.is_empty() {
            println!("{scenario}: warned before the foreseen threshold crossing by {}", stats(&leads));
        }
        outcomes.sort();
        outcomes.dedup();
        table.push((scenario, mttd, mttr, outcomes.join(", ")));
    }
    let mut docker = Vec::new();
    for i in 0..if wanted(Scenario::DbOomKill) { runs } else { 0 } {
        match docker_policy_run(&chaos).await {
            Ok(ms) => {
                eprintln!("docker restart: on-failure run {}: {ms} ms", i + 1);
                docker.push(ms)
            }
            Err(e) => eprintln!("docker restart policy run {}: {e}", i + 1),
        }
    }
    let _ = chaos.reset().await;
    println!();
    println!("| scenario | runs | MTTD (fault → alarm) | MTTR (fault → resolved/stopped) | outcome |");
    println!("|---|---|---|---|---|");
    for (s, d, r, o) in &table {
        println!("| {s} | {} | {} | {} | {o} |", d.len(), stats(d), stats(r));
    }
    // The comparison only when the OOM kill was measured both ways.
    if docker.is_empty() || oom_mttr.is_empty() {
        return;
    }
    println!(
        "| db-oom-kill, Docker `restart: on-failure` (fault → accepting connections) | {} | - | {} | restarted blindly |",
        docker.len(),
        stats(&docker)
    );
    println!();
    println!(
        "OpsGuard / Docker restart policy on the OOM kill (mean MTTR ratio): {:.2}x",
        mean(&oom_mttr) / mean(&docker)
    );
}
