//! Bad input never panics: malformed rules files get an error that names
//! the line (and the field where there is one), and hostile logs classify
//! without panicking.

use std::path::Path;

use opsguard::classify::{CrashFacts, MAX_EVIDENCE_LINE, MAX_EVIDENCE_LINES, classify};
use opsguard::model::RootCause;
use opsguard::rules::{DEFAULT_RULES, Rules, RulesErrorKind};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn load(text: &str) -> Result<Rules, opsguard::rules::RulesError> {
    Rules::from_toml_str(text, Path::new("fuzzed.toml"))
}

/// A mutation of the default rules: the kind of damage a hand edit does.
#[derive(Clone, Debug)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceByte(usize, u8),
    InsertText(usize, String),
    Truncate(usize),
}

fn any_edit() -> impl Strategy<Value = Edit> {
    let n = DEFAULT_RULES.lines().count();
    let len = DEFAULT_RULES.len();
    prop_oneof![
        (0..n).prop_map(Edit::DeleteLine),
        (0..n).prop_map(Edit::DuplicateLine),
        (0..len, any::<u8>()).prop_map(|(i, b)| Edit::ReplaceByte(i, b)),
        (
            0..n,
            prop_oneof![
                Just("zombie_max = -1".to_string()),
                Just("web_disk_pct = 1e999".to_string()),
                Just("log_pattern = '('".to_string()),
                Just("steps = [\"restart_database_risky\"]".to_string()),
                Just("[[plan]]".to_string()),
                Just("x = \"\\u0000\"".to_string()),
                "[ -~]{0,40}",
            ]
        )
            .prop_map(|(i, t)| Edit::InsertText(i, t)),
        (0..len).prop_map(Edit::Truncate),
    ]
}

fn apply(edit: &Edit) -> String {
    let mut lines: Vec<String> = DEFAULT_RULES.lines().map(str::to_string).collect();
    match edit {
        Edit::DeleteLine(i) => {
            lines.remove(*i);
        }
        Edit::DuplicateLine(i) => {
            let l = lines[*i].clone();
            lines.insert(*i, l);
        }
        Edit::InsertText(i, t) => lines.insert(*i, t.clone()),
        Edit::ReplaceByte(i, b) => {
            let mut bytes = DEFAULT_RULES.as_bytes().to_vec();
            bytes[*i] = *b;
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::Truncate(i) => return String::from_utf8_lossy(&DEFAULT_RULES.as_bytes()[..*i]).into_owned(),
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_rules_never_panic_and_errors_say_where(edit in any_edit()) {
        let text = apply(&edit);
        match load(&text) {
            Ok(rules) => {
                // Whatever loads still keeps the safety rules.
                for cause in [RootCause::ConfigError, RootCause::DataCorruption] {
                    if let Some(plan) = rules.plan(opsguard::model::AlarmKind::DbCrash(cause)) {
                        prop_assert!(!plan.steps.contains(&opsguard::rules::PlanStep::Restart));
                    }
                }
            }
            Err(e) => {
                let rendered = e.to_string();
                prop_assert!(rendered.starts_with("fuzzed.toml"), "{rendered}");
                if e.kind != RulesErrorKind::Invalid || e.line.is_some() {
                    let line = e.line.unwrap_or(0);
                    prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {line} in {rendered}");
                }
                prop_assert!(e.line.is_some() || e.field.is_some(), "no line and no field: {rendered}");
            }
        }
    }

    #[test]
    fn arbitrary_text_as_rules_never_panics(text in "\\PC{0,300}") {
        let _ = load(&text);
    }

    #[test]
    fn hostile_logs_never_panic_and_evidence_stays_capped(
        lines in prop::collection::vec(prop_oneof![
            "\\PC{0,300}",
            Just("PANIC: No space left on device".to_string()),
            Just("\u{1b}[2J\r FATAL:  configuration file \"x\" contains errors".to_string()),
            ".{2000,3000}",
        ], 0..50),
        exit_code in prop::option::of(any::<i64>()),
        oom in any::<bool>(),
    ) {
        let rules = Rules::default_rules();
        let c = classify(&rules, CrashFacts { exit_code, oom_killed: oom, disk_used_pct: Some(100.0), logs: &lines });
        prop_assert!(c.lines.len() <= MAX_EVIDENCE_LINES);
        prop_assert!(c.lines.iter().all(|l| l.len() <= MAX_EVIDENCE_LINE));
        prop_assert_eq!(c.cause == RootCause::Unknown, c.signature.is_none());
    }
}

/// A regression fixture for each kind of rules error, with the line it names.
#[test]
fn each_rules_error_names_its_line() {
    let cases = [
        ("zombie_max = 5", "zombie_max = \"five\"", "zombie_max"),
        ("interval_secs = 30", "interval_secs = 0", "interval_secs"),
        ("max_restarts = 3", "max_restarts = 3\nmax_restart = 4", "max_restart ="),
        ("cause = \"oom_kill\"\n", "cause = \"oom\"\n", "cause = \"oom\""),
        ("label = \"opsguard.lab=true\"", "label = \"everything\"", "label = \"everything\""),
    ];
    for (from, to, needle) in cases {
        assert!(DEFAULT_RULES.contains(from), "fixture out of date: {from}");
        let text = DEFAULT_RULES.replacen(from, to, 1);
        let e = load(&text).expect_err(to);
        let want = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(e.line, Some(want), "{e}");
        assert!(e.field.is_some(), "{e}");
    }
    let e = load(&DEFAULT_RULES.replacen("zombie_max = 5", "zombie_max = \"five\"", 1)).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("thresholds.zombie_max"));
}
