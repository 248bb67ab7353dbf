//! What can be wrong with a rules file, and where: every error names the
//! file, the line and the field.

use std::fmt;
use std::path::PathBuf;

/// What went wrong while loading rules.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RulesErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML, an unknown field, a missing field or a wrong type.
    Syntax,
    /// A regex that does not compile.
    BadRegex,
    /// A number outside its allowed range.
    OutOfRange,
    /// A name (alarm, cause, action) that OpsGuard does not know.
    UnknownName,
    /// A rule that would break a safety invariant or is otherwise inconsistent.
    Invalid,
}

/// A rules file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesError {
    /// The category.
    pub kind: RulesErrorKind,
    /// The file (or `<default rules>`).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The offending field, dotted (`thresholds.web_disk_pct`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RulesError {}
