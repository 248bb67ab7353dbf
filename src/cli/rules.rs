//! `opsguard rules check` and `opsguard rules show`: a rules file laid over
//! the built-in defaults, validated, and the effective rules it gives.

use std::path::Path;
use std::process::ExitCode;

use opsguard::model::AlarmKind;
use opsguard::redact::printable;
use opsguard::rules::EffectiveRules;

use super::args::RulesCommand;

/// Runs `rules check` or `rules show`.
pub fn run(cmd: RulesCommand) -> Result<ExitCode, String> {
    match cmd {
        RulesCommand::Check { file } => match opsguard::rules::effective(Some(&file)) {
            Ok(effective) => {
                println!("{}", summary(&file, &effective));
                Ok(ExitCode::SUCCESS)
            }
            // The error alone, as compilers print theirs: FILE:LINE:COL: ...
            Err(e) => {
                eprintln!("{}", printable(&e.to_string()));
                Ok(ExitCode::from(1))
            }
        },
        RulesCommand::Show { rules } => {
            let effective = opsguard::rules::effective(rules.as_deref()).map_err(|e| e.to_string())?;
            let text = effective.to_toml().map_err(|e| format!("cannot write the rules as TOML: {e}"))?;
            let over = match &rules {
                Some(path) => format!("{} over the built-in defaults", printable(&path.display().to_string())),
                None => "the built-in defaults".to_string(),
            };
            print!("# OpsGuard's effective rules: {over}.\n\n{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line: the file, what it sets, what the result holds.
fn summary(file: &Path, effective: &EffectiveRules) -> String {
    let set = match effective.from_file.as_slice() {
        [] => "sets nothing: the built-in defaults as they are".to_string(),
        few @ [_, ..] if few.len() <= 4 => format!("sets {}; the rest is the built-in defaults", few.join(", ")),
        many => format!("sets {} settings; the rest is the built-in defaults", many.len()),
    };
    let rules = &effective.rules;
    let plans = AlarmKind::ALL.iter().filter(|k| rules.plan(**k).is_some()).count();
    format!(
        "{}: ok: {set} ({} signatures, {plans} plans)",
        printable(&file.display().to_string()),
        rules.signatures.len()
    )
}
