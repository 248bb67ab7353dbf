//! Validates rules files and prints what is wrong with each, the way an
//! operator would check an edit before deploying it (`opsguard rules check
//! FILE` does the same for one file). A file may be partial: the built-in
//! defaults give what it does not name.
//!
//! ```text
//! cargo run --example check_rules -- rules/default.toml my-rules.toml
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut ok = true;
    for path in std::env::args().skip(1) {
        match opsguard::rules::load(path.as_ref()) {
            Ok(rules) => println!("{path}: ok ({} signatures)", rules.signatures.len()),
            Err(e) => {
                ok = false;
                println!("{e}");
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
