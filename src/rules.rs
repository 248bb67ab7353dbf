//! The rules as the shell reads them: the pure parser and validator live in
//! `opsguard_core::rules`; reading the file is IO, so it happens here.

use std::path::Path;

pub use opsguard_core::rules::*;

/// Loads a rules file, lays it over the built-in defaults and validates
/// the result.
pub fn load(path: &Path) -> Result<Rules, RulesError> {
    Rules::from_toml_str(&read(path)?, path)
}

/// The effective rules: the file at `path` over the built-in defaults, or
/// the defaults alone; what `opsguard rules check` and `rules show` report.
pub fn effective(path: Option<&Path>) -> Result<EffectiveRules, RulesError> {
    match path {
        Some(path) => EffectiveRules::from_toml_str(&read(path)?, path),
        None => EffectiveRules::from_toml_str("", Path::new("<default rules>")),
    }
}

fn read(path: &Path) -> Result<String, RulesError> {
    std::fs::read_to_string(path).map_err(|e| RulesError {
        kind: RulesErrorKind::Io,
        file: path.to_path_buf(),
        line: None,
        column: None,
        field: None,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_an_io_error() {
        let e = load(Path::new("/nonexistent/rules.toml")).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::Io);
    }

    #[test]
    fn a_file_is_validated_like_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "[thresholds\n").unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(e.kind, RulesErrorKind::Syntax);
        assert_eq!(e.file, path);
        std::fs::write(&path, DEFAULT_RULES).unwrap();
        assert!(load(&path).is_ok());
        // Issue 10, item 5: a partial file, the rest from the defaults.
        std::fs::write(&path, "[limits]\nmax_steps = 20\n").unwrap();
        assert_eq!(load(&path).unwrap().max_steps, 20);
        assert_eq!(effective(Some(&path)).unwrap().from_file, ["limits.max_steps"]);
        assert_eq!(effective(None).unwrap().rules.max_steps, 12);
    }
}
