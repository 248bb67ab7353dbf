//! MTTD/MTTR benchmark on the real Docker lab (not a test).
//!
//! ```text
//! cargo run --release --example mttr [-- RUNS [SCENARIO...]]   # default: 5 runs, every scenario
//! ```
//!
//! For each chaos scenario, RUNS times: repair the lab, start OpsGuard
//! (events + sweeps, approvals auto-answered yes), inject the fault, and time
//! fault → alarm (the incident opening), fault → service answering and
//! fault → incident resolved or stopped. "Answering" is measured apart from
//! OpsGuard by an external probe on the host: `psql -c 'select 1'` against
//! db-prod's address on the lab's Docker network (the address Docker
//! reports for it, nothing else), or `GET /` on the web's published port on
//! loopback, every 25 ms from the injection, until the service answers
//! after having been seen down.
//!
//! For the OOM kill it also prints where the time goes, phase by phase,
//! from the audit trail and the probe: detect (fault → the check that
//! raised the alarm), classify (→ incident opened), approval (→ answered,
//! with the inspection before asking), restart call (→ the restart done,
//! with the re-inspection after the yes), PostgreSQL start (→ the probe's
//! first answer) and verification (→ resolved). Beside it, Docker's own
//! `restart: on-failure` policy restarting the same OOM-killed db-prod
//! (fault → the probe's first answer).
//!
//! The lab must be up (`opsguard lab up`), and `psql` installed on the host
//! (else the database's answering time is not measured). For comparison:
//! `MTTR_DISK_WATCH_MS=0` turns the disk watch off (the web log disk then
//! read by the sweeps only); `MTTR_VERIFY=docker` verifies as before issue
//! #12 (Docker's own health check only, re-checks every
//! `rapid_interval_secs`).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
use opsguard::approval::PolicyApprover;
use opsguard::audit::{AuditEvent, Resolution};
use opsguard::chaos::Scenario;
use opsguard::chaos::docker::{DB, DockerChaos, RunSettings, ScenarioRun, run_scenario};
use opsguard::clock::{Clock, SystemClock};
use opsguard::host::docker::DockerHost;
use opsguard::model::{Action, Timestamp};
use opsguard::rules::Rules;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The web's published port, on loopback (docker-compose.yml).
const WEB_URL_ADDR: &str = "127.0.0.1:8080";
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// `median (min–max)` in seconds.
fn stats(v: &[i64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] as f64 } else { (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0 };
    let secs = |ms: f64| format!("{:.2}", ms / 1000.0);
    if n == 1 {
        return format!("{} s", secs(median));
    }
    format!("{} s ({}–{})", secs(median), secs(s[0] as f64), secs(s[n - 1] as f64))
}

/// Which service a scenario takes down, for the probe.
#[derive(Clone, Copy, PartialEq)]
enum Service {
    Db,
    Web,
    None,
}

fn service_of(s: Scenario) -> Service {
    match s {
        Scenario::WebDiskFill | Scenario::WebLogSlowFill => Service::Web,
        Scenario::Zombies => Service::None,
        _ => Service::Db,
    }
}

/// What the external probe saw: each time it found the service down, and
/// when it answered again (if it did).
type Outages = Arc<Mutex<Vec<(Timestamp, Option<Timestamp>)>>>;

/// What the probe saw of the fault at `fault`.
#[derive(Clone, Copy, Debug)]
enum Seen {
    NeverDown,
    NotBack,
    Answered(Timestamp),
}

fn seen_after(outages: &Outages, fault: Timestamp) -> Seen {
    let o = outages.lock().unwrap_or_else(|e| e.into_inner());
    // An outage over before the fault (a probe that blinked) is not it.
    match o.iter().find(|(_, up)| up.is_none_or(|u| u > fault)) {
        None => Seen::NeverDown,
        Some((_, None)) => Seen::NotBack,
        Some((_, Some(up))) => Seen::Answered(*up),
    }
}

/// db-prod's address on the lab network, while it runs: from Docker's
/// inspect, and only a private address.
async fn db_address(host: &DockerHost) -> Option<IpAddr> {
    let info = host.inspect_raw(DB).await.ok()?;
    if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
        return None;
    }
    let networks = info.network_settings?.networks?;
    networks
        .values()
        .filter_map(|n| n.ip_address.as_deref()?.parse::<IpAddr>().ok())
        .find(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_private()))
}

/// `select 1` answered, through `psql` from the host.
async fn db_answers(host: &DockerHost) -> bool {
    let Some(ip) = db_address(host).await else { return false };
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-h", &ip.to_string(), "-U", "postgres", "-d", "postgres", "-c", "select 1"])
        .env("PGCONNECT_TIMEOUT", "2")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match tokio::time::timeout(Duration::from_secs(3), out).await {
        Ok(Ok(o)) => o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "1",
        _ => false,
    }
}

/// `GET /` answered with 200 on the web's published port.
async fn web_answers() -> bool {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(WEB_URL_ADDR).await.ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
        let mut head = Vec::new();
        (&mut s).take(12).read_to_end(&mut head).await.ok()?;
        Some(head == b"HTTP/1.1 200" || head == b"HTTP/1.0 200")
    };
    tokio::time::timeout(Duration::from_secs(2), get).await.ok().flatten().unwrap_or(false)
}

/// Probes `service` until aborted, recording its outages in `seen`.
fn spawn_probe(host: DockerHost, service: Service, seen: Outages) -> Option<tokio::task::JoinHandle<()>> {
    if service == Service::None {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let ok = match service {
                Service::Db => db_answers(&host).await,
                _ => web_answers().await,
            };
            let now = SystemClock.now();
            {
                let mut o = seen.lock().unwrap_or_else(|e| e.into_inner());
                let open = o.last().is_some_and(|(_, up)| up.is_none());
                match (ok, open) {
                    (false, false) => o.push((now, None)),
                    (true, true) => {
                        if let Some(last) = o.last_mut() {
                            last.1 = Some(now);
                        }
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }))
}

/// The OOM restart's phases, in ms, from the audit trail and the probe.
const PHASES: [&str; 6] =
    ["detect", "classify", "approval", "restart call", "PostgreSQL start (→ select 1)", "verification (→ resolved)"];

fn phases(run: &ScenarioRun, answered: Option<Timestamp>) -> Option<[i64; 6]> {
    let report = run.reports.first()?;
    let ms = |a: Timestamp, b: Timestamp| b.0 as i64 - a.0 as i64;
    let find = |f: &dyn Fn(&AuditEvent) -> bool| run.audit.iter().find(|r| f(&r.event)).map(|r| r.ts);
    let opened = find(&|e| matches!(e, AuditEvent::IncidentOpened { .. }))?;
    let answered_yes = find(&|e| matches!(e, AuditEvent::ApprovalAnswered { approved: true, .. }))?;
    let restarted = find(&|e| matches!(e, AuditEvent::Executed { action: Action::Restart { .. }, .. }))?;
    let pg = answered?;
    let raised = report.alarm.raised_at;
    Some([
        ms(run.fault_at, raised),
        ms(raised, opened),
        ms(opened, answered_yes),
        ms(answered_yes, restarted),
        ms(restarted, pg),
        ms(pg, report.closed_at),
    ])
}

async fn set_restart_policy(host: &DockerHost, name: RestartPolicyNameEnum) -> Result<(), String> {
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy { name: Some(name), maximum_retry_count: None }),
        ..Default::default()
    };
    host.client().update_container(DB, body).await.map_err(|e| e.to_string())
}

/// Docker's restart policy on an OOM kill: fault → `select 1` answers.
async fn docker_policy_run(chaos: &DockerChaos) -> Result<i64, String> {
    chaos.reset().await.map_err(|e| e.to_string())?;
    let host = chaos.host();
    set_restart_policy(host, RestartPolicyNameEnum::ON_FAILURE).await?;
    let before = host.inspect_raw(DB).await.map_err(|e| e.to_string())?;
    let started_before = before.state.and_then(|s| s.started_at);
    let seen = Outages::default();
    let probe = spawn_probe(host.clone(), Service::Db, seen.clone());
    let _ = host.exec(DB, &["tail", "/dev/zero"]).await;
    let t0 = Instant::now();
    let result = loop {
        if t0.elapsed() > Duration::from_secs(60) {
            break Err("db-prod not answering within 60 s".to_string());
        }
        // From the kill, as for OpsGuard: FinishedAt of the OOM'd run.
        let info = host.inspect_raw(DB).await.map_err(|e| e.to_string())?;
        let state = info.state.unwrap_or_default();
        let finished = state.finished_at.as_deref().and_then(opsguard::host::docker::parse_docker_time);
        if let Some(f) = finished.filter(|_| state.started_at != started_before)
            && let Seen::Answered(at) = seen_after(&seen, f)
        {
            break Ok(at.0 as i64 - f.0 as i64);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if let Some(p) = probe {
        p.abort();
    }
    set_restart_policy(host, RestartPolicyNameEnum::NO).await?;
    result
}

#[derive(Default)]
struct Row {
    alarm: Vec<i64>,
    answering: Vec<i64>,
    never_down: usize,
    not_back: usize,
    end: Vec<i64>,
    outcomes: Vec<String>,
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let only: Vec<String> = std::env::args().skip(2).collect();
    let wanted = |s: Scenario| only.is_empty() || only.iter().any(|o| o == s.name());
    let as_before = std::env::var("MTTR_VERIFY").is_ok_and(|v| v == "docker");
    let host = match DockerHost::connect("opsguard.lab=true").await {
        Ok(h) => h.with_ready_probe(!as_before),
        Err(e) => {
            eprintln!("mttr: {e}");
            std::process::exit(1);
        }
    };
    let lab = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
    let chaos = DockerChaos::new(host.clone(), None, Some(lab));
    let mut rules = Rules::default_rules();
    if let Some(ms) = std::env::var("MTTR_DISK_WATCH_MS").ok().and_then(|v| v.parse().ok()) {
        rules.observer.disk_watch_ms = ms;
    }
    if as_before {
        rules.observer.verify_interval_ms = rules.observer.rapid_interval_secs * 1000;
    }
    let rules = Arc::new(rules);
    println!(
        "{runs} runs per scenario; sweep every {}s, disk watch every {} ms (0: off), verification re-checks every {} ms \
         ({} good checks of one run confirm; readiness check {}), Docker events on; approvals auto-approved",
        rules.observer.interval_secs,
        rules.observer.disk_watch_ms,
        rules.observer.verify_interval_ms,
        rules.observer.stable_checks,
        if as_before { "off" } else { "on" }
    );
    let mut table = Vec::new();
    let mut oom_phases: Vec<[i64; 6]> = Vec::new();
    let mut oom_answering = Vec::new();
    for scenario in Scenario::ALL.into_iter().filter(|s| wanted(*s)) {
        let mut row = Row::default();
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
            let seen = Outages::default();
            let probe = spawn_probe(host.clone(), service_of(scenario), seen.clone());
            let result = run_scenario(&chaos, scenario, settings).await;
            if let Some(p) = probe {
                // A last look: the service may answer just after the incident closed.
                tokio::time::sleep(Duration::from_secs(1)).await;
                p.abort();
            }
            match result {
                Ok(run) if !run.reports.is_empty() => {
                    let (d, r) = (run.mttd_ms().unwrap_or(0) as i64, run.mttr_ms().unwrap_or(0) as i64);
                    let end = match run.reports[0].resolution {
                        Resolution::Resolved => "resolved".to_string(),
                        Resolution::Stopped { reason } => format!("stopped ({reason:?})"),
                        Resolution::Withheld => "shadow".to_string(),
                    };
                    let probed = seen_after(&seen, run.fault_at);
                    let answered = match probed {
                        Seen::Answered(at) => Some(at),
                        _ => None,
                    };
                    let answer_text = match (service_of(scenario), probed) {
                        (Service::None, _) => "-".to_string(),
                        (_, Seen::NeverDown) => "never down".to_string(),
                        (_, Seen::NotBack) => "not back".to_string(),
                        (_, Seen::Answered(a)) => format!("{} ms", a.0 as i64 - run.fault_at.0 as i64),
                    };
                    // When the first action was done (zombies: pruned).
                    let acted = run
                        .audit
                        .iter()
                        .find(|r| matches!(r.event, AuditEvent::Executed { .. }))
                        .map_or("-".to_string(), |r| format!("{} ms", r.ts.millis_since(run.fault_at)));
                    eprintln!(
                        "{scenario} run {}: alarm {d} ms, first action done {acted}, answering {answer_text}, end {r} ms, {end}",
                        i + 1
                    );
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
                    }
                    if scenario == Scenario::DbOomKill {
                        match phases(&run, answered) {
                            Some(p) => {
                                eprintln!(
                                    "{scenario} run {} phases (ms): {}",
                                    i + 1,
                                    PHASES
                                        .iter()
                                        .zip(p)
                                        .map(|(n, v)| format!("{n} {v}"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                );
                                oom_phases.push(p);
                            }
                            None => eprintln!("{scenario} run {}: phases not all seen", i + 1),
                        }
                    }
                    match (service_of(scenario), probed) {
                        (Service::None, _) => {}
                        (_, Seen::NeverDown) => row.never_down += 1,
                        (_, Seen::NotBack) => row.not_back += 1,
                        (_, Seen::Answered(a)) => row.answering.push(a.0 as i64 - run.fault_at.0 as i64),
                    }
                    row.alarm.push(d);
                    row.end.push(r);
                    row.outcomes.push(end);
                }
                Ok(_) => eprintln!("{scenario} run {}: no incident within the timeout", i + 1),
                Err(e) => eprintln!("{scenario} run {}: {e}", i + 1),
            }
        }
        if scenario == Scenario::DbOomKill {
            oom_answering = row.answering.clone();
        }
        row.outcomes.sort();
        row.outcomes.dedup();
        table.push((scenario, row));
    }
    let mut docker = Vec::new();
    for i in 0..if wanted(Scenario::DbOomKill) { runs } else { 0 } {
        match docker_policy_run(&chaos).await {
            Ok(ms) => {
                eprintln!("docker restart: on-failure run {}: answering {ms} ms", i + 1);
                docker.push(ms)
            }
            Err(e) => eprintln!("docker restart policy run {}: {e}", i + 1),
        }
    }
    let _ = chaos.reset().await;
    println!();
    println!("Median (min–max) of the runs that ended:");
    println!();
    println!("| scenario | runs | fault → alarm | fault → service answering | fault → resolved/stopped | outcome |");
    println!("|---|---|---|---|---|---|");
    for (s, row) in &table {
        let mut answering = match service_of(*s) {
            Service::None => "– (no service down)".to_string(),
            _ => stats(&row.answering),
        };
        if row.never_down > 0 {
            answering = if row.answering.is_empty() && row.not_back == 0 {
                "never down".to_string()
            } else {
                format!("{answering}; never down in {}", row.never_down)
            };
        }
        if row.not_back > 0 {
            answering = if row.answering.is_empty() && row.never_down == 0 {
                "not back (left to a human)".to_string()
            } else {
                format!("{answering}; not back in {}", row.not_back)
            };
        }
        println!(
            "| {s} | {} | {} | {answering} | {} | {} |",
            row.alarm.len(),
            stats(&row.alarm),
            stats(&row.end),
            row.outcomes.join(", ")
        );
    }
    if !docker.is_empty() {
        println!(
            "| db-oom-kill under Docker's `restart: on-failure` | {} | – | {} | – | restarted blindly |",
            docker.len(),
            stats(&docker)
        );
    }
    if !oom_phases.is_empty() {
        println!();
        println!("db-oom-kill, where the time goes ({} runs; median (min–max)):", oom_phases.len());
        println!();
        println!("| phase | from → to | time |");
        println!("|---|---|---|");
        let spans = [
            "fault (FinishedAt) → the check that raised the alarm",
            "→ incident opened (logs read, cause classified)",
            "→ approval answered (inspection before asking, auto-approved)",
            "→ restart done (re-inspection, `docker start`)",
            "→ external `select 1` answers",
            "→ incident resolved (readiness and stable checks)",
        ];
        for (k, (name, span)) in PHASES.iter().zip(spans).enumerate() {
            let v: Vec<i64> = oom_phases.iter().map(|p| p[k]).collect();
            println!("| {name} | {span} | {} |", stats(&v));
        }
        let total: Vec<i64> = oom_phases.iter().map(|p| p.iter().sum()).collect();
        println!("| total | fault → resolved | {} |", stats(&total));
        if !oom_answering.is_empty() {
            println!();
            println!("OpsGuard, fault → answering: {}; Docker's policy: {}", stats(&oom_answering), stats(&docker));
        }
    }
}
