//! `opsguard completions SHELL` and `opsguard man`: what a packager or a
//! user installs beside the binary, generated from the one grammar in
//! [`super::args`] so they cannot drift from it.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode, String> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "opsguard", &mut out);
    print(&out)
}

/// Prints the man page, in roff; with `out_dir`, writes it and one page per
/// command there instead (the main page's SEE ALSO names them).
pub fn man(out_dir: Option<&std::path::Path>) -> Result<ExitCode, String> {
    if let Some(dir) = out_dir {
        clap_mangen::generate_to(Cli::command(), dir).map_err(|e| format!("--out-dir {}: {e}", dir.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out).map_err(|e| format!("man page: {e}"))?;
    print(&out)
}

fn print(bytes: &[u8]) -> Result<ExitCode, String> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(|e| format!("standard output: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
