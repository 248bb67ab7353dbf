//! `opsguard explain`: which rule raises an alarm, which evidence decides
//! its root cause and which action follows, from flags or from an alarm
//! recorded in an audit log; no host is touched.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use opsguard::clock::{Clock, SystemClock};
use opsguard::engine::Engine;
use opsguard::explain::AlarmFacts;

use super::args::ExplainArgs;

/// Prints the explanation.
pub fn run(args: ExplainArgs) -> Result<ExitCode, String> {
    let ExplainArgs { alarm, exit_code, oom, log_lines, logs, disk_used, exited, from, incident, rules, llm } = args;
    let engine = Engine::new(Arc::new(super::load_rules(rules.as_deref())?)).with_llm(llm);
    let facts = match (from, alarm) {
        (Some(audit), _) => recorded_alarm(&audit, incident)?,
        (None, Some(kind)) => {
            let mut lines = log_lines;
            if let Some(path) = logs {
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_string));
            }
            // The observer reads at most this many lines before a crash.
            let keep = lines.len().saturating_sub(opsguard::observer::MAX_LOG_LINES);
            lines.drain(..keep);
            AlarmFacts {
                source: kind,
                exit_code,
                oom_killed: oom.unwrap_or(false),
                logs: lines,
                disk_used_pct: disk_used,
                exited_containers: exited,
                fill_rate_pct_per_min: None,
            }
        }
        (None, None) => return Err("give --alarm KIND or --from AUDIT".into()),
    };
    print!("{}", opsguard::explain::explain(&engine, &facts, SystemClock.now()).render());
    Ok(ExitCode::SUCCESS)
}

/// The facts of the alarm recorded for `incident` (default: the last one).
fn recorded_alarm(audit: &Path, incident: Option<u64>) -> Result<AlarmFacts, String> {
    let trails = super::read_trails(audit)?;
    let alarm = trails
        .iter()
        .rev()
        .filter(|t| incident.is_none_or(|id| t.incident == id))
        .find_map(|t| t.alarm().map(|(_, a)| a.clone()))
        .ok_or_else(|| match incident {
            Some(id) => format!("{}: no alarm recorded for incident #{id}", audit.display()),
            None => format!("{}: no alarm recorded", audit.display()),
        })?;
    println!("recorded:    {alarm} (raised {})", alarm.raised_at.to_rfc3339());
    Ok(AlarmFacts::from_alarm(&alarm))
}
