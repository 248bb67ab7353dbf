//! `opsguard notify test`: a test notification to every destination of a
//! notify file, one line per destination; exit 1 if any failed.

use std::process::ExitCode;

use opsguard::clock::{Clock, SystemClock};
use opsguard::notify::config;
use opsguard::redact::printable;

use super::args::{NotifyArgs, NotifyCommand};

/// Runs the `notify` subcommand.
pub async fn run(args: NotifyArgs) -> Result<ExitCode, String> {
    match args.command {
        NotifyCommand::Test { notify } => {
            let config = config::load(&notify, |var| std::env::var(var).ok()).map_err(|e| e.to_string())?;
            let results = opsguard::notify::send_test(&config, SystemClock.now()).await;
            let mut failed = 0;
            for r in &results {
                match &r.result {
                    Ok(()) => println!("✅ {} ({}): sent", r.name, r.kind.key()),
                    Err(e) => {
                        failed += 1;
                        println!("❌ {} ({}): {}", r.name, r.kind.key(), printable(e));
                    }
                }
            }
            if failed > 0 {
                eprintln!("opsguard: {failed} of {} destination(s) failed", results.len());
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
