//! `opsguard chaos`: lists the scenarios, injects one into the lab, or
//! resets the lab.

use std::process::ExitCode;

use opsguard::audit::Resolution;
use opsguard::chaos::docker::{DB, DockerChaos, WEB, run_script};
use opsguard::chaos::{Scenario, StatelessScenario};
use opsguard::host::Host;
use opsguard::host::docker::DockerHost;
use opsguard::redact::printable;

use super::args::ChaosArgs;

/// `list`, `reset [--full]` or a scenario's name.
pub async fn run(args: ChaosArgs) -> Result<ExitCode, String> {
    let ChaosArgs { scenario, full, record, scope_label, lab_dir, target } = args;
    if scenario == "list" {
        for s in Scenario::ALL {
            let e = s.expected();
            let outcome = match e.resolution {
                Resolution::Resolved => "resolved".to_string(),
                Resolution::Stopped { reason } => format!("STOP: {reason}"),
                Resolution::Withheld => "shadow".to_string(),
            };
            let approval = if e.needs_approval { " (after approval)" } else { "" };
            let target = match s {
                Scenario::Zombies => String::new(),
                Scenario::WebDiskFill | Scenario::WebLogSlowFill => format!(" (--target, default {WEB})"),
                _ => format!(" (--target, default {DB})"),
            };
            println!("{:<24} {} → {outcome}{approval}{target}", s.name(), e.alarm);
        }
        for s in StatelessScenario::ALL {
            println!("{:<24} {} (--target, default {})", s.name(), s.expected(), StatelessScenario::LAB_TARGET);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dir = super::lab_dir(lab_dir);
    if scenario == "reset" && full {
        println!("{}", run_script(&dir.join("reset.sh")).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let host = DockerHost::connect(&scope_label).await.map_err(|e| e.to_string())?;
    let chaos = DockerChaos::new(host, Some(record), Some(dir));
    let mut recs = Vec::new();
    if scenario == "reset" {
        recs.push(chaos.reset().await.map_err(|e| e.to_string())?);
        // The stateless service, when it is there: recreated.
        if chaos.host().inspect(StatelessScenario::LAB_TARGET).await.is_ok() {
            recs.push(chaos.reset_stateless().await.map_err(|e| e.to_string())?);
        }
    } else if let Some(s) = StatelessScenario::from_name(&scenario) {
        let target = target.as_deref().unwrap_or(StatelessScenario::LAB_TARGET);
        println!("💥 {s} on {}: OpsGuard must answer {}", printable(target), s.expected());
        recs.push(chaos.inject_stateless(s, target).await.map_err(|e| e.to_string())?);
    } else {
        let s = Scenario::from_name(&scenario).ok_or_else(|| {
            let names: Vec<&str> =
                Scenario::ALL.iter().map(|s| s.name()).chain(StatelessScenario::ALL.iter().map(|s| s.name())).collect();
            format!("unknown scenario {}; one of: {}, reset, list", printable(&scenario), names.join(", "))
        })?;
        let on = target.as_deref().map(|t| format!(" on {}", printable(t))).unwrap_or_default();
        println!("💥 {s}{on}: OpsGuard must raise {} and end {:?}", s.expected().alarm, s.expected().resolution);
        recs.push(chaos.inject_on(s, target.as_deref()).await.map_err(|e| e.to_string())?);
    }
    for rec in &recs {
        for step in &rec.steps {
            println!("  {:>6} ms  {} → {}", step.ms, printable(&step.what), printable(&step.result));
        }
        println!("done in {} ms", rec.duration_ms);
    }
    Ok(ExitCode::SUCCESS)
}
