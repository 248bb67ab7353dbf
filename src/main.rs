//! `opsguard`: the command line.
//!
//! ```text
//! opsguard lab up | lab down            start or stop the Docker lab (lab/up.sh, lab/down.sh)
//! opsguard chaos SCENARIO               inject a fault into the lab
//! opsguard chaos reset [--full]         put the lab back to healthy
//! opsguard chaos list                   the scenarios and what OpsGuard must do
//!                                       (lab and chaos: the default `lab` feature)
//! opsguard watch [--rules FILE] [--approve prompt|auto|deny|web] [--audit FILE]
//!                [--max-incidents N] [--timeout SECS] [--approval-timeout 5m]
//!                [--listen 127.0.0.1:8990] [--token TOKEN | --token-file FILE]
//!                [--tls-cert PEM --tls-key PEM | --insecure-http] [--shadow] [--notify FILE]
//! opsguard postmortem INCIDENT [--audit FILE] [-o FILE]
//!                                       an incident's post-mortem in Markdown
//! opsguard explain --alarm db-crash|web-disk|zombies [--exit-code N] [--oom BOOL]
//!                  [--log-line LINE]... [--logs FILE] [--disk-used PCT] [--exited N] [--rules FILE]
//! opsguard explain --from AUDIT [--incident N] [--rules FILE]
//!                                       which rule, which evidence, which action; no host touched
//! opsguard replay AUDIT [--incident N] [--rules FILE]
//!                                       recorded incidents through today's rules
//! opsguard approvals list | approve ID | reject ID [--url URL] [--token TOKEN]
//!                                       answer a running console's approvals
//! opsguard completions SHELL | man [--out-dir DIR]
//!                                       shell completions, the man pages
//! opsguard notify test [--notify FILE]  a test notification to every destination
//! ```
//!
//! `watch` exits 0 when every incident resolved, 2 when any stopped for a
//! human, 1 on error; `watch --shadow` exits 0 unless on error. `replay`
//! exits 0 when today's rules decide every step the same, 3 when any
//! differs, 1 on error. `approvals` exits 0 when the console did what was
//! asked, 1 otherwise. `notify test` exits 1 if any destination failed.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use opsguard::redact::printable;

fn main() -> ExitCode {
    // A usage error exits 1 like any other error: clap's own 2 would read as
    // "an incident stopped for a human" to a script watching `watch`.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opsguard: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        // Errors quote the daemon and the containers: one inert line each.
        Err(e) => {
            eprintln!("opsguard: {}", printable(&e));
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        #[cfg(feature = "lab")]
        Command::Lab(args) => cli::lab::run(args).await,
        #[cfg(feature = "lab")]
        Command::Chaos(args) => cli::chaos::run(args).await,
        Command::Watch(args) => cli::watch::run(args).await,
        Command::Postmortem(args) => cli::postmortem::run(args),
        Command::Explain(args) => cli::explain::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Approvals(args) => cli::approvals::run(args).await,
        Command::Completions(args) => cli::docs::completions(args.shell),
        Command::Man(args) => cli::docs::man(args.out_dir.as_deref()),
        Command::Notify(args) => cli::notify::run(args).await,
    }
}
