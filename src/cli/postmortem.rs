//! `opsguard postmortem`: an incident's report in Markdown, from the audit
//! log, to a file or standard output.

use std::process::ExitCode;

use super::args::PostmortemArgs;

/// Writes the report of the chosen incident (and run of its id).
pub fn run(args: PostmortemArgs) -> Result<ExitCode, String> {
    let PostmortemArgs { incident, audit, occurrence, output } = args;
    let trails = super::read_trails(&audit)?;
    let report = opsguard::postmortem::select(&trails, incident, occurrence)
        .map_err(|e| format!("{}: {e}", audit.display()))?
        .to_markdown();
    match output {
        Some(path) => std::fs::write(&path, report).map_err(|e| format!("{}: {e}", path.display()))?,
        None => print!("{report}"),
    }
    Ok(ExitCode::SUCCESS)
}
