//! The classifier's fast path (`LogScan::push` passing over lines that hold
//! none of a signature's match-start literals) against the plain reading:
//! per line, the server-line captures, then per signature its severity and
//! `is_match` on the message. Same hits (indices and capped text), same
//! checks, same classification, same tail, on generated windows: server and
//! client lines, near misses that share a signature's literals, lines that
//! match several signatures, client text quoting a message, control
//! characters, multi-byte text, over-long lines, more matches than are
//! kept; with the default signatures and with generated ones (unanchored,
//! case-insensitive, look-around, patterns whose matches may start
//! anywhere).
//!
//! Mutation checks, each making it fail: keeping only the first literal of
//! a pattern's set in `rules::match_starts` (a config-error line that starts
//! with another of its messages is passed over); looking for the literals in
//! the line cut to `MAX_EVIDENCE_LINE` in `LogScan::push` (a long line's
//! message is passed over).

use opsguard_core::classify::{
    ConditionCheck, CrashFacts, LogScan, MAX_EVIDENCE_LINE, MAX_EVIDENCE_LINES, MAX_SCANNED_LINE, analyse, truncate,
};
use opsguard_core::model::RootCause;
use opsguard_core::rules::{LogPattern, Rules, SERVER_SEVERITIES, Signature};
use proptest::prelude::*;

// The suite's own knob (as in the root package's suites), not the core reading its environment.
#[allow(clippy::disallowed_methods)]
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Per signature, the lines it matched, read the plain way.
fn reference_hits(rules: &Rules, logs: &[String]) -> Vec<Vec<(usize, String)>> {
    let mut hits = vec![Vec::new(); rules.signatures.len()];
    for (index, line) in logs.iter().enumerate() {
        if line.len() > MAX_SCANNED_LINE {
            continue;
        }
        let Some(caps) = rules.server_line.captures(line) else { continue };
        let (Some(severity), Some(message)) = (caps.name("severity"), caps.name("message")) else { continue };
        for (sig, hits) in rules.signatures.iter().zip(&mut hits) {
            let Some(pattern) = &sig.log_pattern else { continue };
            if hits.len() < MAX_EVIDENCE_LINES
                && sig.severities.contains(&severity.as_str())
                && pattern.regex().is_match(message.as_str())
            {
                hits.push((index, truncate(line, MAX_EVIDENCE_LINE).to_string()));
            }
        }
    }
    hits
}

/// Messages: each default signature's, near misses sharing their literals,
/// one that two default signatures match, and noise.
const MESSAGES: &[&str] = &[
    "could not write to file \"pg_wal/xlogtemp.271\": No space left on device",
    "could not open configuration file \"/etc/pg.conf\": No space left on device",
    "could not write to file \"x\": No space left on device and more",
    "could not receive data from client: Connection reset by peer",
    "could not read block 7 in file \"base/1/2\": read only 0 of 8192 bytes",
    "could not read block x in file",
    "configuration file \"/srv/pg/postgresql.conf\" contains errors",
    "configuration file \"/srv/pg/postgresql.conf\" contains errors; no changes were applied",
    "could not load pg_hba.conf",
    "syntax error in file \"/srv/pg/postgresql.conf\" line 816, near token \"=\"",
    "incorrect checksum in control file",
    "invalid page in block 4 of relation base/16384/16385",
    "invalid secondary checkpoint record",
    "invalid magic number 0000 in log segment 000000010000000000000003, offset 0",
    "page verification failed, calculated checksum 12345 but expected 6789",
    "missing chunk number 0 for toast value 99 in pg_toast_2619",
    "password authentication failed for user \"No space left on device\"",
    "relation \"panic\" does not exist at character 15",
    "duration: 0.042 ms  statement: SELECT 'PANIC:  invalid page in block 1 of relation x'",
    "Could Not Write to file \"é\": no space left on device",
    "checkpoint starting: time",
    "",
];

const PREFIXES: &[&str] =
    &["", "2026-11-30 01:00:00.000 UTC [42] ", "2026-11-30 01:00:00 GMT [1] ", "\t", "10.0.0.1 - - "];

const SEVERITIES: &[&str] =
    &["PANIC", "FATAL", "ERROR", "WARNING", "LOG", "DEBUG1", "DETAIL", "STATEMENT", "HINT", "panic", "X9"];

/// Bits of text spliced into messages: literals of the signatures, quotes,
/// control characters, multi-byte characters, a whole server line.
const SPLICES: &[&str] = &[
    "could not ",
    "invalid ",
    "No space left on device",
    "\"",
    "é",
    "\u{0}",
    "\u{1b}[31m",
    "\r",
    "PANIC:  ",
    "2026-11-30 01:00:00.000 UTC [7] FATAL:  could not load pg_ident.conf",
    "\u{fffd}",
    "ß",
];

fn line() -> impl Strategy<Value = String> {
    let message = (
        prop::sample::select(MESSAGES),
        prop::option::of((any::<prop::sample::Index>(), prop::sample::select(SPLICES))),
        prop::option::of(prop::sample::select(MESSAGES)),
    )
        .prop_map(|(m, splice, tail)| {
            let mut m = m.to_string();
            if let Some((at, text)) = splice {
                let mut i = at.index(m.len() + 1);
                while !m.is_char_boundary(i) {
                    i -= 1;
                }
                m.insert_str(i, text);
            }
            if let Some(t) = tail {
                m.push(' ');
                m.push_str(t);
            }
            m
        });
    let separator = prop::sample::select(&[":  ", ":  ", ":  ", ": ", ":"][..]);
    prop_oneof![
        20 => (prop::sample::select(PREFIXES), prop::sample::select(SEVERITIES), separator, message)
            .prop_map(|(p, s, sep, m)| format!("{p}{s}{sep}{m}")),
        2 => r"[ -~\x00-\x1fé]{0,80}",
        // Over the scanned limit, or just under it, with a matching end.
        1 => (prop::sample::select(&[MAX_SCANNED_LINE - 120, MAX_SCANNED_LINE + 1][..]), prop::sample::select(MESSAGES))
            .prop_map(|(n, m)| format!("PANIC:  could not write to file \"{}\": No space left on device {m}", "a".repeat(n))),
    ]
}

/// Patterns for generated signatures: whatever literal sets the extractor
/// gives them (one literal, several, case-folded, none).
const PATTERNS: &[&str] = &[
    "No space left on device$",
    "(?i)could not write",
    r"^\w+ failed",
    r"^(?:could not|invalid) \S+",
    r"checksum \d+",
    r"^invalid page in block \d+ of relation .*$",
    r"[Pp]age verification",
    r"\bpanic\b",
    r"^.{3}ld not",
    "é|ß",
    r"(?:contains errors|pg_(?:hba|ident)\.conf)$",
    "\u{0}",
    r"^[a-z]{2,}\s",
    r"(?i)\bno space\b",
];

fn rules() -> impl Strategy<Value = Rules> {
    let extra = prop::collection::vec(
        (prop::sample::select(PATTERNS), prop::sample::subsequence(SERVER_SEVERITIES.to_vec(), 1..=4)),
        0..4,
    );
    (any::<bool>(), extra).prop_map(|(keep_defaults, extra)| {
        let mut rules = Rules::default_rules();
        if !keep_defaults {
            rules.signatures.retain(|s| s.log_pattern.is_none());
        }
        for (pattern, severities) in extra {
            rules.signatures.push(Signature {
                cause: RootCause::DataCorruption,
                exit_code: None,
                oom_killed: None,
                min_disk_used_pct: None,
                log_pattern: Some(LogPattern::new(pattern).expect("a valid pattern")),
                severities,
            });
        }
        rules
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_fast_path_reads_like_the_plain_one(
        rules in rules(),
        logs in prop::collection::vec(line(), 0..60),
        exit in prop::option::of(prop::sample::select(&[0i64, 1, 137][..])),
        oom in any::<bool>(),
        tail_cap in 0usize..4,
    ) {
        let reference = reference_hits(&rules, &logs);
        let facts = CrashFacts { exit_code: exit, oom_killed: oom, disk_used_pct: Some(100.0), logs: &logs };
        let e = analyse(&rules, facts);
        for (check, expected) in e.checks.iter().zip(&reference) {
            let hits = check.conditions.iter().find_map(|c| match c {
                ConditionCheck::LogPattern { hits, .. } => Some(hits.clone()),
                _ => None,
            });
            prop_assert_eq!(hits.unwrap_or_default(), expected.clone(), "signature {}", check.index);
        }

        let mut scan = LogScan::new(&rules, tail_cap);
        for l in &logs {
            scan.push(l);
        }
        prop_assert_eq!(scan.analyse(exit, oom, Some(100.0)), e);
        prop_assert_eq!(scan.lines_read(), logs.len());
        let tail: Vec<&str> = logs[logs.len().saturating_sub(tail_cap)..].iter().map(|l| truncate(l, MAX_EVIDENCE_LINE)).collect();
        prop_assert_eq!(scan.tail().collect::<Vec<_>>(), tail);
    }
}

/// The generator's windows hold lines that two default signatures match.
#[test]
fn a_line_can_match_two_default_signatures() {
    let rules = Rules::default_rules();
    let logs = vec![format!("FATAL:  {}", MESSAGES[1])];
    let hit: Vec<usize> =
        reference_hits(&rules, &logs).iter().enumerate().filter(|(_, h)| !h.is_empty()).map(|(i, _)| i).collect();
    assert_eq!(hit, [0, 1]);
    let e =
        analyse(&rules, CrashFacts { exit_code: Some(1), oom_killed: false, disk_used_pct: Some(100.0), logs: &logs });
    assert_eq!(e.classification.cause, RootCause::ConfigError);
    assert_eq!(e.classification.matches.len(), 2);
}
