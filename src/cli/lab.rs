//! `opsguard lab up|down`: runs the lab's own scripts.

use std::process::ExitCode;

use super::args::{LabAction, LabArgs};

/// Runs lab/up.sh or lab/down.sh; fails as the script does.
pub async fn run(args: LabArgs) -> Result<ExitCode, String> {
    let dir = super::lab_dir(args.lab_dir);
    let script = dir.join(match args.action {
        LabAction::Up => "up.sh",
        LabAction::Down => "down.sh",
    });
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .status()
        .await
        .map_err(|e| format!("{}: {e}", script.display()))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
