//! The root-cause classifier: tags a crashed database from its exit code,
//! its `OOMKilled` flag and its recent logs, using the rules' signatures in
//! the specification's order (disk full, config error, OOM, corruption).
//!
//! Logs are hostile input: lines are matched with the `regex` crate (linear
//! time, no backtracking blow-up), and only a capped number of capped lines
//! is kept as evidence.

use crate::model::RootCause;
use crate::rules::Rules;

/// Longest line kept as evidence, in bytes.
pub const MAX_EVIDENCE_LINE: usize = 512;
/// Most matching lines kept as evidence.
pub const MAX_EVIDENCE_LINES: usize = 5;
/// Longest line the classifier looks at; the rest of a longer line is
/// ignored so one giant line cannot dominate the work.
pub const MAX_SCANNED_LINE: usize = 16 * 1024;

/// The facts the classifier works from.
#[derive(Clone, Copy, Debug)]
pub struct CrashFacts<'a, L: AsRef<str>> {
    /// The container's exit code.
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled`.
    pub oom_killed: bool,
    /// Log lines from the window before the crash, oldest first.
    pub logs: &'a [L],
}

/// A root cause and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// The cause.
    pub cause: RootCause,
    /// The signature that decided it, described for humans; `None` for Unknown.
    pub signature: Option<String>,
    /// The matching log lines (capped).
    pub lines: Vec<String>,
}

/// Classifies a crash with the rules' signatures; first match wins.
pub fn classify<L: AsRef<str>>(rules: &Rules, facts: CrashFacts<'_, L>) -> Classification {
    for sig in &rules.signatures {
        if sig.exit_code.is_some_and(|c| facts.exit_code != Some(c)) {
            continue;
        }
        if sig.oom_killed.is_some_and(|f| f != facts.oom_killed) {
            continue;
        }
        let lines = match &sig.log_pattern {
            None => Vec::new(),
            Some(re) => {
                let mut hits = facts.logs.iter().map(|l| scanned(l.as_ref())).filter(|l| re.is_match(l)).peekable();
                if hits.peek().is_none() {
                    continue;
                }
                hits.take(MAX_EVIDENCE_LINES).map(|l| truncate(l, MAX_EVIDENCE_LINE).to_string()).collect()
            }
        };
        return Classification { cause: sig.cause, signature: Some(sig.describe()), lines };
    }
    Classification { cause: RootCause::Unknown, signature: None, lines: Vec::new() }
}

/// One condition of a signature, and what the crash showed.
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionCheck {
    /// The signature wants this exit code.
    ExitCode {
        /// Wanted.
        wanted: i64,
        /// Seen.
        seen: Option<i64>,
    },
    /// The signature wants this `OOMKilled` flag.
    OomKilled {
        /// Wanted.
        wanted: bool,
        /// Seen.
        seen: bool,
    },
    /// The signature wants a log line matching this regex.
    LogPattern {
        /// The regex.
        pattern: String,
        /// The first matching lines (0-based index in the logs, capped text).
        hits: Vec<(usize, String)>,
    },
}

impl ConditionCheck {
    /// Whether the condition held.
    pub fn holds(&self) -> bool {
        match self {
            ConditionCheck::ExitCode { wanted, seen } => *seen == Some(*wanted),
            ConditionCheck::OomKilled { wanted, seen } => wanted == seen,
            ConditionCheck::LogPattern { hits, .. } => !hits.is_empty(),
        }
    }
}

/// How one signature fared against a crash.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureCheck {
    /// Its position in the rules (0-based).
    pub index: usize,
    /// The cause it tags.
    pub cause: RootCause,
    /// Each of its conditions, checked (all of them, not just up to the first
    /// that failed, so a reader sees every reason).
    pub conditions: Vec<ConditionCheck>,
}

impl SignatureCheck {
    /// Whether every condition held.
    pub fn matched(&self) -> bool {
        self.conditions.iter().all(ConditionCheck::holds)
    }
}

/// [`classify`]'s result with its reasons: every signature tried, in order,
/// up to and including the one that matched.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The signatures tried.
    pub checks: Vec<SignatureCheck>,
    /// The same classification [`classify`] gives.
    pub classification: Classification,
}

/// Classifies like [`classify`] and says why, for `opsguard explain`. Not on
/// the hot path: it allocates for every signature it tries.
pub fn explain<L: AsRef<str>>(rules: &Rules, facts: CrashFacts<'_, L>) -> Explanation {
    let mut checks = Vec::new();
    for (index, sig) in rules.signatures.iter().enumerate() {
        let mut conditions = Vec::new();
        if let Some(wanted) = sig.exit_code {
            conditions.push(ConditionCheck::ExitCode { wanted, seen: facts.exit_code });
        }
        if let Some(wanted) = sig.oom_killed {
            conditions.push(ConditionCheck::OomKilled { wanted, seen: facts.oom_killed });
        }
        if let Some(re) = &sig.log_pattern {
            let hits = facts
                .logs
                .iter()
                .map(|l| scanned(l.as_ref()))
                .enumerate()
                .filter(|(_, l)| re.is_match(l))
                .take(MAX_EVIDENCE_LINES)
                .map(|(i, l)| (i, truncate(l, MAX_EVIDENCE_LINE).to_string()))
                .collect();
            conditions.push(ConditionCheck::LogPattern { pattern: re.as_str().to_string(), hits });
        }
        let check = SignatureCheck { index, cause: sig.cause, conditions };
        let matched = check.matched();
        checks.push(check);
        if matched {
            break;
        }
    }
    Explanation { checks, classification: classify(rules, facts) }
}

fn scanned(line: &str) -> &str {
    truncate(line, MAX_SCANNED_LINE)
}

pub use crate::redact::printable;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(exit: i64, oom: bool, logs: &[&str]) -> RootCause {
        classify(&Rules::default_rules(), CrashFacts { exit_code: Some(exit), oom_killed: oom, logs }).cause
    }

    // Real PostgreSQL 15 messages, as reproduced on a small loop-mounted disk
    // (see DESIGN.md).
    const PG_DISK_FULL: &[&str] = &[
        "2026-11-20 10:00:01.123 UTC [271] ERROR:  could not write to file \"base/pgsql_tmp/pgsql_tmp271.0\": No space left on device",
        "2026-11-20 10:00:02.456 UTC [271] PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device",
        "2026-11-20 10:00:02.460 UTC [1] LOG:  server process (PID 271) was terminated by signal 6: Aborted",
    ];
    const PG_CONFIG: &[&str] = &[
        "2026-11-20 10:00:00.000 UTC [1] LOG:  syntax error in file \"/srv/pg/postgresql.conf\" line 816, near token \"=\"",
        "2026-11-20 10:00:00.001 UTC [1] FATAL:  configuration file \"/srv/pg/postgresql.conf\" contains errors",
    ];
    const PG_CONTROL_CHECKSUM: &[&str] =
        &["2026-11-20 10:00:00.000 UTC [1] FATAL:  incorrect checksum in control file"];

    #[test]
    fn postgres_disk_full_panic_is_disk_full_not_corruption() {
        assert_eq!(cause(1, false, PG_DISK_FULL), RootCause::DiskFull);
    }

    #[test]
    fn startup_failure_for_lack_of_space_is_disk_full() {
        let logs = [
            "FATAL:  could not write lock file \"postmaster.pid\": No space left on device",
            "LOG:  shutting down due to startup process failure",
        ];
        assert_eq!(cause(1, false, &logs), RootCause::DiskFull);
    }

    #[test]
    fn postgres_config_error() {
        assert_eq!(cause(1, false, PG_CONFIG), RootCause::ConfigError);
        assert_eq!(
            cause(
                1,
                false,
                &[
                    "FATAL:  could not open configuration file \"/etc/postgresql/15/main/postgresql.conf\": No such file"
                ]
            ),
            RootCause::ConfigError
        );
    }

    #[test]
    fn sighup_reload_message_is_not_a_config_error() {
        let logs = ["LOG:  received SIGHUP, reloading configuration files", "LOG:  database system is shut down"];
        assert_eq!(cause(0, false, &logs), RootCause::Unknown);
    }

    #[test]
    fn oom_flag_makes_oom_kill() {
        assert_eq!(cause(137, true, &["LOG:  checkpoint starting: time"]), RootCause::OomKill);
    }

    #[test]
    fn exit_137_without_oom_flag_is_a_kill_not_an_oom() {
        assert_eq!(cause(137, false, &["LOG:  checkpoint starting: time"]), RootCause::Unknown);
    }

    #[test]
    fn postgres_corruption_messages() {
        assert_eq!(cause(1, false, PG_CONTROL_CHECKSUM), RootCause::DataCorruption);
        assert_eq!(cause(1, false, &["PANIC:  incorrect checksum in control file"]), RootCause::DataCorruption);
        assert_eq!(
            cause(1, false, &["ERROR:  invalid page in block 4 of relation base/16384/16385"]),
            RootCause::DataCorruption
        );
        assert_eq!(cause(1, false, &["PANIC:  could not locate a valid checkpoint record"]), RootCause::DataCorruption);
    }

    #[test]
    fn order_follows_the_specification() {
        // Disk full wins over everything; config over OOM; OOM over corruption.
        let mut all: Vec<&str> = PG_CONTROL_CHECKSUM.to_vec();
        all.extend(PG_CONFIG);
        all.extend(PG_DISK_FULL);
        assert_eq!(cause(137, true, &all), RootCause::DiskFull);
        let mut no_disk: Vec<&str> = PG_CONTROL_CHECKSUM.to_vec();
        no_disk.extend(PG_CONFIG);
        assert_eq!(cause(137, true, &no_disk), RootCause::ConfigError);
        assert_eq!(cause(137, true, PG_CONTROL_CHECKSUM), RootCause::OomKill);
    }

    #[test]
    fn nginx_messages_are_not_database_causes() {
        let logs = [
            "2026/11/20 10:00:00 [notice] 1#1: signal process started",
            "172.18.0.1 - - [20/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 615 \"-\" \"curl/7.88.1\"",
        ];
        assert_eq!(cause(0, false, &logs), RootCause::Unknown);
        // ...but a full log disk is a full disk wherever it is written.
        let full = [
            "2026/11/20 10:00:00 [crit] 29#29: *1 pwrite() \"/var/log/nginx/access.log\" failed (28: No space left on device)",
        ];
        assert_eq!(cause(1, false, &full), RootCause::DiskFull);
    }

    #[test]
    fn evidence_is_capped_and_names_the_signature() {
        let long = format!("PANIC: No space left on device {}", "é".repeat(5000));
        let logs: Vec<String> = std::iter::repeat_n(long, 50).collect();
        let c = classify(&Rules::default_rules(), CrashFacts { exit_code: Some(1), oom_killed: false, logs: &logs });
        assert_eq!(c.cause, RootCause::DiskFull);
        assert_eq!(c.lines.len(), MAX_EVIDENCE_LINES);
        assert!(c.lines.iter().all(|l| l.len() <= MAX_EVIDENCE_LINE));
        assert!(c.signature.unwrap().contains("No space left"));
    }

    #[test]
    fn explain_agrees_with_classify_and_names_the_line() {
        let rules = Rules::default_rules();
        let mut all: Vec<&str> = PG_CONTROL_CHECKSUM.to_vec();
        all.extend(PG_CONFIG);
        all.extend(PG_DISK_FULL);
        for (exit, oom, logs) in [
            (1, false, PG_DISK_FULL),
            (1, false, PG_CONFIG),
            (137, true, PG_CONTROL_CHECKSUM),
            (1, false, PG_CONTROL_CHECKSUM),
            (137, false, &[][..]),
            (137, true, &all[..]),
        ] {
            let facts = CrashFacts { exit_code: Some(exit), oom_killed: oom, logs };
            let e = explain(&rules, facts);
            assert_eq!(e.classification, classify(&rules, facts));
            let last = e.checks.last().unwrap();
            assert_eq!(last.matched(), e.classification.cause != RootCause::Unknown);
            assert!(e.checks[..e.checks.len() - 1].iter().all(|c| !c.matched()));
        }
        let e = explain(&rules, CrashFacts { exit_code: Some(1), oom_killed: false, logs: PG_DISK_FULL });
        assert_eq!(e.checks.len(), 1);
        match &e.checks[0].conditions[..] {
            [ConditionCheck::LogPattern { hits, .. }] => assert_eq!(hits[0].0, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_logs_and_no_flags_are_unknown() {
        let c = classify::<&str>(&Rules::default_rules(), CrashFacts { exit_code: None, oom_killed: false, logs: &[] });
        assert_eq!(c, Classification { cause: RootCause::Unknown, signature: None, lines: vec![] });
    }
}
