//! The `opsguard` binary's commands, one module each, over the grammar in
//! [`args`]. They parse, wire and print; every decision is the library's.

pub mod approvals;
pub mod args;
#[cfg(feature = "lab")]
pub mod chaos;
mod console;
pub mod docs;
pub mod explain;
#[cfg(feature = "lab")]
pub mod lab;
pub mod notify;
mod output;
pub mod postmortem;
pub mod replay;
pub mod watch;

use std::path::Path;
#[cfg(feature = "lab")]
use std::path::PathBuf;

use opsguard::rules::Rules;

/// The lab scripts: `--lab-dir`, else `OPSGUARD_LAB_SCRIPTS`, else ./lab when
/// it holds them, else the source tree's.
#[cfg(feature = "lab")]
fn lab_dir(given: Option<PathBuf>) -> PathBuf {
    if let Some(d) = given {
        return d;
    }
    if let Some(d) = std::env::var_os("OPSGUARD_LAB_SCRIPTS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("lab");
    if here.join("up.sh").is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab")
}

/// `--rules FILE`, else the built-in rules.
fn load_rules(path: Option<&Path>) -> Result<Rules, String> {
    match path {
        Some(path) => opsguard::rules::load(path).map_err(|e| e.to_string()),
        None => Ok(Rules::default_rules()),
    }
}

/// The incidents in an audit log; unreadable lines are reported and skipped.
fn read_trails(audit: &Path) -> Result<Vec<opsguard::audit::IncidentTrail>, String> {
    let read = opsguard::audit::read_audit(audit).map_err(|e| format!("{}: {e}", audit.display()))?;
    for (line, text) in &read.bad_lines {
        eprintln!("opsguard: {}:{line}: skipped a line that is not an audit record: {text:?}", audit.display());
    }
    Ok(opsguard::audit::incident_trails(&read.records))
}
