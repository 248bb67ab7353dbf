//! The rules as the shell reads them: the pure parser and validator live in
//! `opsguard_core::rules`; reading the file is IO, so it happens here.

use std::path::Path;

pub use opsguard_core::rules::*;

/// Loads and validates a rules file.
pub fn load(path: &Path) -> Result<Rules, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError {
        kind: RulesErrorKind::Io,
        file: path.to_path_buf(),
        line: None,
        column: None,
        field: None,
        message: e.to_string(),
    })?;
    Rules::from_toml_str(&text, path)
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
    }
}
