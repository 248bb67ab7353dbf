//! `opsguard replay`: recorded incidents through today's rules; exits 3
//! when any step would be decided differently.

use std::process::ExitCode;
use std::sync::Arc;

use super::args::ReplayArgs;

/// Prints each replayed incident and a summary line.
pub fn run(args: ReplayArgs) -> Result<ExitCode, String> {
    let ReplayArgs { audit, incident, rules } = args;
    let rules = Arc::new(super::load_rules(rules.as_deref())?);
    let trails = super::read_trails(&audit)?;
    let trails: Vec<_> = trails.into_iter().filter(|t| incident.is_none_or(|id| t.incident == id)).collect();
    let replays = opsguard::explain::replay(rules, &trails);
    if replays.is_empty() {
        return Err(match incident {
            Some(id) => format!("{}: no incident #{id} with its opening record", audit.display()),
            None => format!("{}: no incident with its opening record", audit.display()),
        });
    }
    for r in &replays {
        println!("{}", r.render());
    }
    let differ = replays.iter().filter(|r| r.differs()).count();
    println!("{} incident(s) replayed, {differ} decided differently by today's rules", replays.len());
    Ok(if differ > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
