//! The root-cause classifier: tags a crashed database from its exit code,
//! its `OOMKilled` flag, the usage of its disk and its recent logs, using the
//! rules' signatures.
//!
//! Logs are hostile input: a client chooses user names, database names and
//! SQL, and PostgreSQL quotes them in its log. So a signature reads only the
//! message of a line the server wrote about itself (the rules'
//! `server_log.line`, at the severities the signature lists), every signature
//! is checked, and a dangerous cause (config error, data corruption: a
//! restart can only make them worse) decides whatever else matched; text
//! alone can never make a crash look safe. A full disk also needs the disk's
//! own usage. Lines are matched with the `regex` crate (linear time, no
//! backtracking blow-up), after a search for the literals a signature's
//! matches start with has ruled most lines out
//! ([`crate::rules::LogPattern`]).
//!
//! [`LogScan`] reads the window line by line and keeps only what can decide
//! (the first matching lines of each signature) and a short tail, so however
//! many lines follow the decisive one, memory stays bounded and the decisive
//! line still counts.

use std::collections::VecDeque;

use regex::CaptureLocations;

use crate::model::{RootCause, SignatureMatch};
use crate::rules::{Rules, Signature};

/// Longest line kept as evidence, in bytes.
pub const MAX_EVIDENCE_LINE: usize = 512;
/// Most matching lines kept as evidence, per signature.
pub const MAX_EVIDENCE_LINES: usize = 5;
/// Longest line the classifier looks at. PostgreSQL's reports of its own
/// state are short (paths are at most 1 KiB); a longer line is client data,
/// and it is skipped whole rather than cut, since a cut could end where a
/// pattern's `$` wants it to.
pub const MAX_SCANNED_LINE: usize = 16 * 1024;

/// The facts the classifier works from.
#[derive(Clone, Copy, Debug)]
pub struct CrashFacts<'a, L: AsRef<str>> {
    /// The container's exit code.
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled`.
    pub oom_killed: bool,
    /// Usage of the database's disk, in percent, when measured.
    pub disk_used_pct: Option<f64>,
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
    /// The log lines the deciding signature matched (capped).
    pub lines: Vec<String>,
    /// Every signature met at least in part, in rules order, the deciding one
    /// included, with what did not hold.
    pub matches: Vec<SignatureMatch>,
}

/// The classifier's reading of a log window, line by line, in bounded
/// memory: for each signature its first [`MAX_EVIDENCE_LINES`] matching
/// lines, and the last lines read.
#[derive(Clone, Debug)]
pub struct LogScan<'r> {
    rules: &'r Rules,
    locs: CaptureLocations,
    severity_group: usize,
    message_group: usize,
    seen: usize,
    hits: Vec<Vec<(usize, String)>>,
    tail: VecDeque<String>,
    tail_cap: usize,
}

impl<'r> LogScan<'r> {
    /// An empty scan that keeps the last `tail_cap` lines (each cut to
    /// [`MAX_EVIDENCE_LINE`]) besides what the signatures need.
    pub fn new(rules: &'r Rules, tail_cap: usize) -> LogScan<'r> {
        let re = &rules.server_line;
        // Validated at load: both groups exist.
        let group = |name: &str| re.capture_names().position(|n| n == Some(name)).unwrap_or(0);
        LogScan {
            rules,
            locs: re.capture_locations(),
            severity_group: group("severity"),
            message_group: group("message"),
            seen: 0,
            hits: vec![Vec::new(); rules.signatures.len()],
            tail: VecDeque::with_capacity(tail_cap.min(1024)),
            tail_cap,
        }
    }

    /// Reads the next line (oldest first).
    pub fn push(&mut self, line: &str) {
        let index = self.seen;
        self.seen += 1;
        if self.tail_cap > 0 {
            if self.tail.len() == self.tail_cap {
                self.tail.pop_front();
            }
            self.tail.push_back(truncate(line, MAX_EVIDENCE_LINE).to_string());
        }
        if line.len() > MAX_SCANNED_LINE {
            return;
        }
        // Finding the message costs a regex search of the whole line; a line
        // that holds none of the literals a still-wanted signature's match
        // starts with cannot add a hit, and most lines are such.
        let may_hit = self.rules.signatures.iter().zip(&self.hits).any(|(sig, hits)| {
            hits.len() < MAX_EVIDENCE_LINES && sig.log_pattern.as_ref().is_some_and(|p| p.may_match_within(line))
        });
        if !may_hit {
            return;
        }
        if self.rules.server_line.captures_read(&mut self.locs, line).is_none() {
            return;
        }
        let (Some((s0, s1)), Some((m0, m1))) = (self.locs.get(self.severity_group), self.locs.get(self.message_group))
        else {
            return;
        };
        let (severity, message) = (&line[s0..s1], &line[m0..m1]);
        for (sig, hits) in self.rules.signatures.iter().zip(self.hits.iter_mut()) {
            let Some(re) = &sig.log_pattern else { continue };
            if hits.len() < MAX_EVIDENCE_LINES && sig.wants_severity(severity) && re.is_match(message) {
                hits.push((index, truncate(line, MAX_EVIDENCE_LINE).to_string()));
            }
        }
    }

    /// How many lines were read.
    pub fn lines_read(&self) -> usize {
        self.seen
    }

    /// The last lines read (at most the tail capacity), oldest first.
    pub fn tail(&self) -> impl Iterator<Item = &str> {
        self.tail.iter().map(String::as_str)
    }

    /// Every signature checked against the lines read and the given facts.
    pub fn checks(&self, exit_code: Option<i64>, oom_killed: bool, disk_used_pct: Option<f64>) -> Vec<SignatureCheck> {
        self.rules
            .signatures
            .iter()
            .zip(&self.hits)
            .enumerate()
            .map(|(index, (sig, hits))| check(index, sig, hits, exit_code, oom_killed, disk_used_pct))
            .collect()
    }

    /// Whether measuring the disk could change the cause: some signature
    /// that wants the disk's usage holds on every other condition.
    pub fn wants_disk_usage(&self, exit_code: Option<i64>, oom_killed: bool) -> bool {
        self.checks(exit_code, oom_killed, None).iter().any(|c| {
            c.conditions.iter().any(|k| matches!(k, ConditionCheck::DiskUsage { .. }))
                && c.conditions.iter().all(|k| matches!(k, ConditionCheck::DiskUsage { .. }) || k.holds())
        })
    }

    /// The root cause from the lines read and the given facts.
    pub fn classify(&self, exit_code: Option<i64>, oom_killed: bool, disk_used_pct: Option<f64>) -> Classification {
        self.analyse(exit_code, oom_killed, disk_used_pct).classification
    }

    /// [`LogScan::classify`] with every signature's conditions, for a reader.
    pub fn analyse(&self, exit_code: Option<i64>, oom_killed: bool, disk_used_pct: Option<f64>) -> CauseAnalysis {
        let checks = self.checks(exit_code, oom_killed, disk_used_pct);
        let decided = decide(self.rules, &checks);
        let matches = checks
            .iter()
            .filter(|c| c.conditions.iter().any(ConditionCheck::holds))
            .map(|c| SignatureMatch {
                cause: c.cause,
                signature: self.rules.signatures[c.index].describe(),
                decided: Some(c.index) == decided,
                unmet: c.conditions.iter().filter(|k| !k.holds()).map(ConditionCheck::describe).collect(),
                lines: c.lines().map(str::to_string).collect(),
            })
            .collect();
        let classification = match decided {
            Some(i) => Classification {
                cause: checks[i].cause,
                signature: Some(self.rules.signatures[i].describe()),
                lines: checks[i].lines().map(str::to_string).collect(),
                matches,
            },
            None => Classification { cause: RootCause::Unknown, signature: None, lines: Vec::new(), matches },
        };
        CauseAnalysis { checks, decided, classification }
    }
}

/// Where a host delivers log lines, one at a time
/// (`Host::scan_logs`): the classifier's side of streaming a log window.
pub trait LogSink: Send {
    /// Takes the next line's text (oldest first).
    fn line(&mut self, text: &str);
}

impl LogSink for LogScan<'_> {
    fn line(&mut self, text: &str) {
        self.push(text);
    }
}

fn check(
    index: usize,
    sig: &Signature,
    hits: &[(usize, String)],
    exit_code: Option<i64>,
    oom_killed: bool,
    disk_used_pct: Option<f64>,
) -> SignatureCheck {
    let mut conditions = Vec::new();
    if let Some(wanted) = sig.exit_code {
        conditions.push(ConditionCheck::ExitCode { wanted, seen: exit_code });
    }
    if let Some(wanted) = sig.oom_killed {
        conditions.push(ConditionCheck::OomKilled { wanted, seen: oom_killed });
    }
    if let Some(re) = &sig.log_pattern {
        conditions.push(ConditionCheck::LogPattern {
            pattern: re.as_str().to_string(),
            severities: sig.severities.join("/"),
            hits: hits.to_vec(),
        });
    }
    if let Some(min) = sig.min_disk_used_pct {
        conditions.push(ConditionCheck::DiskUsage { min, seen: disk_used_pct });
    }
    SignatureCheck { index, cause: sig.cause, conditions }
}

/// The deciding signature: a matching one whose cause forbids a restart
/// comes first whatever its position, so no other match (made of text a
/// client may have put in the log) can hide it; otherwise the first match.
fn decide(rules: &Rules, checks: &[SignatureCheck]) -> Option<usize> {
    let matched = || checks.iter().filter(|c| c.matched()).map(|c| c.index);
    matched().find(|i| rules.signatures[*i].cause.forbids_restart()).or_else(|| matched().next())
}

/// Classifies a crash with the rules' signatures (see the module doc).
pub fn classify<L: AsRef<str>>(rules: &Rules, facts: CrashFacts<'_, L>) -> Classification {
    scan(rules, facts.logs).classify(facts.exit_code, facts.oom_killed, facts.disk_used_pct)
}

fn scan<'r, L: AsRef<str>>(rules: &'r Rules, logs: &[L]) -> LogScan<'r> {
    let mut s = LogScan::new(rules, 0);
    for l in logs {
        s.push(l.as_ref());
    }
    s
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
    /// The signature wants a server line at one of these severities whose
    /// message matches this regex.
    LogPattern {
        /// The regex.
        pattern: String,
        /// The severities, `/`-separated.
        severities: String,
        /// The first matching lines (0-based index in the logs, capped text).
        hits: Vec<(usize, String)>,
    },
    /// The signature wants the disk at least this full.
    DiskUsage {
        /// Wanted, percent.
        min: f64,
        /// Seen, percent, when measured.
        seen: Option<f64>,
    },
}

impl ConditionCheck {
    /// Whether the condition held.
    pub fn holds(&self) -> bool {
        match self {
            ConditionCheck::ExitCode { wanted, seen } => *seen == Some(*wanted),
            ConditionCheck::OomKilled { wanted, seen } => wanted == seen,
            ConditionCheck::LogPattern { hits, .. } => !hits.is_empty(),
            // NaN (a garbled measurement) is no evidence.
            ConditionCheck::DiskUsage { min, seen } => seen.is_some_and(|p| p >= *min),
        }
    }

    /// The condition and what was seen, for humans.
    pub fn describe(&self) -> String {
        match self {
            ConditionCheck::ExitCode { wanted, seen } => {
                format!("exit code {wanted} (seen {})", seen.map_or("none".to_string(), |c| c.to_string()))
            }
            ConditionCheck::OomKilled { wanted, seen } => format!("OOMKilled={wanted} (seen {seen})"),
            ConditionCheck::LogPattern { pattern, severities, hits } => {
                let n = hits.len();
                let seen =
                    if n == 0 { "none".to_string() } else { format!("{n} line{}", if n == 1 { "" } else { "s" }) };
                format!("a server {severities} line matches /{pattern}/ (seen {seen})")
            }
            ConditionCheck::DiskUsage { min, seen } => format!(
                "disk usage at least {min:.1}% (seen {})",
                seen.map_or("not measured".to_string(), |p| format!("{p:.1}%"))
            ),
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

    /// The log lines it matched.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.conditions
            .iter()
            .flat_map(|c| match c {
                ConditionCheck::LogPattern { hits, .. } => hits.as_slice(),
                _ => &[],
            })
            .map(|(_, l)| l.as_str())
    }
}

/// [`classify`]'s result with its reasons: every signature, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct CauseAnalysis {
    /// Every signature, checked.
    pub checks: Vec<SignatureCheck>,
    /// The index of the signature that decided, if one did.
    pub decided: Option<usize>,
    /// The same classification [`classify`] gives.
    pub classification: Classification,
}

/// Classifies like [`classify`] and says why, for `opsguard explain`.
pub fn analyse<L: AsRef<str>>(rules: &Rules, facts: CrashFacts<'_, L>) -> CauseAnalysis {
    scan(rules, facts.logs).analyse(facts.exit_code, facts.oom_killed, facts.disk_used_pct)
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

    const FULL: Option<f64> = Some(100.0);

    fn cause_on(exit: i64, oom: bool, disk: Option<f64>, logs: &[&str]) -> RootCause {
        classify(
            &Rules::default_rules(),
            CrashFacts { exit_code: Some(exit), oom_killed: oom, disk_used_pct: disk, logs },
        )
        .cause
    }

    fn cause(exit: i64, oom: bool, logs: &[&str]) -> RootCause {
        cause_on(exit, oom, FULL, logs)
    }

    // Real PostgreSQL 15 messages, as reproduced on a small loop-mounted disk
    // (see DESIGN.md and lab/FAULTS.md).
    const PG_DISK_FULL: &[&str] = &[
        "2026-11-20 10:00:01.123 UTC [271] ERROR:  could not write to file \"base/pgsql_tmp/pgsql_tmp271.0\": No space left on device",
        "2026-11-20 10:00:02.456 UTC [271] PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device",
        "2026-11-20 10:00:02.456 UTC [271] STATEMENT:  SELECT pg_switch_wal()",
        "2026-11-20 10:00:02.460 UTC [1] LOG:  server process (PID 271) was terminated by signal 6: Aborted",
    ];
    const PG_CONFIG: &[&str] = &[
        "2026-11-20 10:00:00.000 GMT [1] LOG:  syntax error in file \"/srv/pg/postgresql.conf\" line 816, near token \"=\"",
        "2026-11-20 10:00:00.001 GMT [1] FATAL:  configuration file \"/srv/pg/postgresql.conf\" contains errors",
    ];
    const PG_CONTROL_CHECKSUM: &[&str] =
        &["2026-11-20 10:00:00.000 UTC [1] FATAL:  incorrect checksum in control file"];
    const PG_INVALID_PAGE: &str =
        "2026-11-20 10:00:00.000 UTC [88] ERROR:  invalid page in block 4 of relation base/16384/16385";

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

    // Issue #8, item 1: a log line is not the disk's evidence.
    #[test]
    fn disk_full_needs_the_disk_to_be_full() {
        assert_eq!(cause_on(1, false, Some(40.0), PG_DISK_FULL), RootCause::Unknown);
        assert_eq!(cause_on(1, false, None, PG_DISK_FULL), RootCause::Unknown);
        assert_eq!(cause_on(1, false, Some(f64::NAN), PG_DISK_FULL), RootCause::Unknown);
        assert_eq!(cause_on(1, false, Some(85.0), PG_DISK_FULL), RootCause::DiskFull);
        // The partial match is shown, with what is missing.
        let c = classify(
            &Rules::default_rules(),
            CrashFacts { exit_code: Some(1), oom_killed: false, disk_used_pct: Some(40.0), logs: PG_DISK_FULL },
        );
        let m = c.matches.iter().find(|m| m.cause == RootCause::DiskFull).unwrap();
        assert!(!m.matched() && !m.decided);
        assert_eq!(m.unmet, ["disk usage at least 85.0% (seen 40.0%)"]);
        assert_eq!(m.lines.len(), 1, "only the PANIC line, not the ERROR line: {m:?}");
    }

    #[test]
    fn postgres_config_error() {
        assert_eq!(cause(1, false, PG_CONFIG), RootCause::ConfigError);
        assert_eq!(
            cause(
                1,
                false,
                &[
                    "FATAL:  could not open configuration file \"/etc/postgresql/15/main/postgresql.conf\": No such file or directory"
                ]
            ),
            RootCause::ConfigError
        );
    }

    // Issue #8, item 3: what PostgreSQL 15 really writes.
    #[test]
    fn pg_hba_that_does_not_load_is_a_config_error() {
        let logs = [
            "2026-11-30 01:00:00.000 UTC [1] LOG:  invalid connection type \"hots\"",
            "2026-11-30 01:00:00.000 UTC [1] CONTEXT:  line 1 of configuration file \"/var/lib/postgresql/data/pg_hba.conf\"",
            "2026-11-30 01:00:00.000 UTC [1] FATAL:  could not load pg_hba.conf",
            "2026-11-30 01:00:00.001 UTC [1] LOG:  database system is shut down",
        ];
        assert_eq!(cause(1, false, &logs), RootCause::ConfigError);
    }

    #[test]
    fn end_of_wal_in_normal_recovery_is_not_corruption() {
        let logs = [
            "2026-11-30 01:00:00.000 UTC [27] LOG:  database system was interrupted; last known up at 2026-11-30 00:59:00 UTC",
            "2026-11-30 01:00:00.100 UTC [27] LOG:  redo starts at 0/1A2B3C8",
            "2026-11-30 01:00:00.200 UTC [27] LOG:  invalid magic number 0000 in log segment 000000010000000000000003, offset 0",
            "2026-11-30 01:00:00.200 UTC [27] LOG:  redo done at 0/3FFFFC8",
            "2026-11-30 01:00:05.000 UTC [1] LOG:  received fast shutdown request",
        ];
        assert_eq!(cause(0, false, &logs), RootCause::Unknown);
    }

    #[test]
    fn panic_in_query_text_is_not_corruption() {
        let logs = [
            "2026-11-30 01:00:00.000 UTC [40] ERROR:  relation \"panic\" does not exist at character 15",
            "2026-11-30 01:00:00.000 UTC [40] STATEMENT:  SELECT * FROM panic WHERE note = 'PANIC:  invalid page in block 1 of relation x'",
            "2026-11-30 01:00:00.100 UTC [41] ERROR:  syntax error at or near \"PANIC\" at character 1",
            "2026-11-30 01:00:00.100 UTC [41] STATEMENT:  PANIC;",
            "2026-11-30 01:00:01.000 UTC [1] LOG:  database system is shut down",
        ];
        assert_eq!(cause(0, false, &logs), RootCause::Unknown);
    }

    #[test]
    fn sighup_reload_message_is_not_a_config_error() {
        let logs = [
            "LOG:  received SIGHUP, reloading configuration files",
            "LOG:  configuration file \"/srv/pg/postgresql.conf\" contains errors; no changes were applied",
            "LOG:  database system is shut down",
        ];
        assert_eq!(cause(0, false, &logs), RootCause::Unknown);
    }

    #[test]
    fn oom_flag_and_exit_137_make_oom_kill() {
        assert_eq!(cause(137, true, &["LOG:  checkpoint starting: time"]), RootCause::OomKill);
    }

    #[test]
    fn exit_137_without_oom_flag_is_a_kill_not_an_oom() {
        assert_eq!(cause(137, false, &["LOG:  checkpoint starting: time"]), RootCause::Unknown);
    }

    // Issue #8, item 2: Docker keeps OOMKilled for a run in which any
    // process of the container was OOM-killed.
    #[test]
    fn oom_flag_without_exit_137_is_not_an_oom_crash() {
        assert_eq!(cause(1, true, &["LOG:  database system is shut down"]), RootCause::Unknown);
        assert_eq!(cause(0, true, &[]), RootCause::Unknown);
        let c = classify::<&str>(
            &Rules::default_rules(),
            CrashFacts { exit_code: Some(1), oom_killed: true, disk_used_pct: None, logs: &[] },
        );
        let m = c.matches.iter().find(|m| m.cause == RootCause::OomKill).unwrap();
        assert_eq!(m.unmet, ["exit code 137 (seen 1)"]);
    }

    #[test]
    fn postgres_corruption_messages() {
        assert_eq!(cause(1, false, PG_CONTROL_CHECKSUM), RootCause::DataCorruption);
        assert_eq!(cause(1, false, &["PANIC:  incorrect checksum in control file"]), RootCause::DataCorruption);
        assert_eq!(cause(1, false, &[PG_INVALID_PAGE]), RootCause::DataCorruption);
        assert_eq!(cause(1, false, &["PANIC:  could not locate a valid checkpoint record"]), RootCause::DataCorruption);
        assert_eq!(
            cause(1, false, &["WARNING:  page verification failed, calculated checksum 12345 but expected 6789"]),
            RootCause::DataCorruption
        );
        // pg_control read by a running server (pg_control_checkpoint()).
        assert_eq!(
            cause(0, false, &["ERROR:  calculated CRC checksum does not match value stored in file"]),
            RootCause::DataCorruption
        );
        // A PANIC alone is not corruption.
        assert_eq!(cause(1, false, &["PANIC:  something else went wrong"]), RootCause::Unknown);
    }

    // Issue #8, item 1: dangerous causes dominate, whatever the order.
    #[test]
    fn corruption_or_config_decide_whatever_else_matched() {
        let mut all: Vec<&str> = PG_DISK_FULL.to_vec();
        all.extend(PG_CONTROL_CHECKSUM);
        assert_eq!(cause(137, true, &all), RootCause::DataCorruption);
        let mut all: Vec<&str> = PG_DISK_FULL.to_vec();
        all.extend(PG_CONFIG);
        assert_eq!(cause(137, true, &all), RootCause::ConfigError);
        // Without a dangerous cause, the order holds: disk full before OOM.
        assert_eq!(cause(137, true, PG_DISK_FULL), RootCause::DiskFull);
        assert_eq!(cause_on(137, true, Some(50.0), PG_DISK_FULL), RootCause::OomKill);
        let c = classify(
            &Rules::default_rules(),
            CrashFacts { exit_code: Some(137), oom_killed: true, disk_used_pct: FULL, logs: &all },
        );
        let matched: Vec<_> = c.matches.iter().filter(|m| m.matched()).map(|m| (m.cause, m.decided)).collect();
        assert_eq!(
            matched,
            [(RootCause::DiskFull, false), (RootCause::ConfigError, true), (RootCause::OomKill, false)],
            "the approver sees every match"
        );
    }

    // Issue #8, item 1: the original report.
    #[test]
    fn a_client_chosen_user_name_cannot_hide_corruption() {
        let logs = [
            "2026-11-30 01:00:00.000 UTC [50] FATAL:  password authentication failed for user \"No space left on device\"",
            "2026-11-30 01:00:00.000 UTC [50] DETAIL:  Connection matched pg_hba.conf line 99: \"host all all all md5\"",
            "2026-11-30 01:00:00.100 UTC [51] FATAL:  role \"x\": No space left on device\" does not exist",
            "2026-11-30 01:00:00.200 UTC [52] ERROR:  could not write to file \"x\": No space left on device",
            "2026-11-30 01:00:00.200 UTC [52] STATEMENT:  SELECT 'PANIC:  could not write to file \"y\": No space left on device'",
            "\tPANIC:  could not write to file \"z\": No space left on device",
            "2026-11-30 01:00:01.000 UTC [60] PANIC:  invalid page in block 7 of relation base/5/1249",
        ];
        assert_eq!(cause(1, false, &logs), RootCause::DataCorruption);
        // And without the corruption line, none of that text is a full disk.
        assert_eq!(cause(1, false, &logs[..6]), RootCause::Unknown);
    }

    #[test]
    fn nginx_lines_are_not_server_reports() {
        let logs = [
            "2026/11/20 10:00:00 [notice] 1#1: signal process started",
            "2026/11/20 10:00:00 [crit] 29#29: *1 pwrite() \"/var/log/nginx/access.log\" failed (28: No space left on device)",
        ];
        assert_eq!(cause(0, false, &logs), RootCause::Unknown);
    }

    #[test]
    fn evidence_is_capped_and_names_the_signature() {
        let long = format!("PANIC:  could not write to file \"{}\": No space left on device", "é".repeat(200));
        let logs: Vec<String> = std::iter::repeat_n(long, 50).collect();
        let c = classify(
            &Rules::default_rules(),
            CrashFacts { exit_code: Some(1), oom_killed: false, disk_used_pct: FULL, logs: &logs },
        );
        assert_eq!(c.cause, RootCause::DiskFull);
        assert_eq!(c.lines.len(), MAX_EVIDENCE_LINES);
        assert!(c.lines.iter().all(|l| l.len() <= MAX_EVIDENCE_LINE));
        assert!(c.signature.unwrap().contains("No space left"));
    }

    #[test]
    fn an_over_long_line_is_skipped_not_cut() {
        // Cut at MAX_SCANNED_LINE it would end in the disk-full message.
        let pad = "a".repeat(MAX_SCANNED_LINE - "PANIC:  could not write to file \"\": No space left on device".len());
        let line = format!("PANIC:  could not write to file \"{pad}\": No space left on device and more");
        assert_eq!(cause(1, false, &[line.as_str()]), RootCause::Unknown);
    }

    // Issue #8, item 4: noise after the decisive line does not push it out,
    // and the scan keeps a bounded amount.
    #[test]
    fn the_decisive_line_survives_any_amount_of_noise() {
        let rules = Rules::default_rules();
        let mut scan = LogScan::new(&rules, 20);
        scan.push(PG_DISK_FULL[1]);
        for i in 0..200_000 {
            scan.push(&format!("2026-11-20 10:00:03.000 UTC [{i}] LOG:  connection received: host=10.0.0.1 port={i}"));
            scan.push(&format!(
                "2026-11-20 10:00:03.000 UTC [{i}] ERROR:  could not write to file \"f{i}\": No space left on device"
            ));
        }
        assert_eq!(scan.classify(Some(1), false, FULL).cause, RootCause::DiskFull);
        assert_eq!(scan.lines_read(), 400_001);
        assert_eq!(scan.tail().count(), 20);
        assert!(scan.hits.iter().all(|h| h.len() <= MAX_EVIDENCE_LINES));
    }

    #[test]
    fn wants_disk_usage_only_when_it_could_decide() {
        let rules = Rules::default_rules();
        let mut scan = LogScan::new(&rules, 0);
        assert!(!scan.wants_disk_usage(Some(1), false));
        scan.push(PG_DISK_FULL[1]);
        assert!(scan.wants_disk_usage(Some(1), false));
    }

    #[test]
    fn analyse_agrees_with_classify_and_names_the_line() {
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
            let facts = CrashFacts { exit_code: Some(exit), oom_killed: oom, disk_used_pct: FULL, logs };
            let e = analyse(&rules, facts);
            assert_eq!(e.classification, classify(&rules, facts));
            assert_eq!(e.checks.len(), rules.signatures.len());
            match e.decided {
                Some(i) => assert!(e.checks[i].matched() && e.checks[i].cause == e.classification.cause),
                None => assert!(e.checks.iter().all(|c| !c.matched())),
            }
        }
        let e = analyse(
            &rules,
            CrashFacts { exit_code: Some(1), oom_killed: false, disk_used_pct: FULL, logs: PG_DISK_FULL },
        );
        assert_eq!(e.decided, Some(0));
        match &e.checks[0].conditions[..] {
            [ConditionCheck::LogPattern { hits, .. }, ConditionCheck::DiskUsage { .. }] => assert_eq!(hits[0].0, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_logs_and_no_flags_are_unknown() {
        let c = classify::<&str>(
            &Rules::default_rules(),
            CrashFacts { exit_code: None, oom_killed: false, disk_used_pct: None, logs: &[] },
        );
        assert_eq!(c, Classification { cause: RootCause::Unknown, signature: None, lines: vec![], matches: vec![] });
    }
}
