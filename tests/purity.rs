//! The pure core stays pure: no module of the decision core names tokio,
//! bollard or reqwest, reads a clock (the standard library's, or the
//! crate's own `SystemClock` through `crate::clock`), or reaches into the
//! crate's IO shell by any path (`use crate::{clock, …}`, `super::host::…`).
//!
//! A text scan: issue 9 puts the core in a crate of its own, so that the
//! compiler keeps it pure; until then this is the guard.

use regex::Regex;

/// The core's modules and, for each, the crate modules it may use.
const CORE: [(&str, &[&str]); 7] = [
    ("engine", &["model", "rules"]),
    ("classify", &["model", "redact", "rules"]),
    ("model", &["redact"]),
    // Redaction is applied to evidence where it is built, so the core
    // renders redacted text; it is text in, text out.
    ("redact", &["classify", "model"]),
    // explain, replay and post-mortems read recorded facts (the audit
    // records' types), never a host.
    ("explain", &["audit", "classify", "engine", "model", "redact", "rules"]),
    ("postmortem", &["audit", "classify", "model", "rules"]),
    ("rules", &["model"]),
];

/// Names the core never mentions, whatever the path: IO crates, the
/// standard library's clocks, the crate's own clocks and sleeps.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "bollard",
    "reqwest",
    "Instant::now",
    "SystemTime",
    "Utc::now",
    "Local::now",
    "std::net",
    "std::thread",
    "std::process",
    "std::env",
    "SystemClock",
    "SimClock",
    "Clock",
];

/// The file's code: comments and string literals' contents removed (the
/// module docs may say what the module does not do, and a rule's text may
/// hold any word).
fn code_of(text: &str) -> String {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    text.lines()
        .map(|l| {
            let l = strings.replace_all(l, "\"\"");
            match l.find("//") {
                Some(i) => l[..i].to_string(),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate modules a piece of code names: the first segment after
/// `crate::`, `super::` or `opsguard::`, also inside `use crate::{a, b::c}`
/// groups spread over several lines.
fn crate_modules_named(code: &str) -> Vec<String> {
    let path = Regex::new(r"\b(?:crate|super|opsguard)\s*::\s*(\{|[A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let head = Regex::new(r"^\s*([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let mut found = Vec::new();
    for m in path.captures_iter(code) {
        let first = m.get(1).unwrap();
        if first.as_str() != "{" {
            found.push(first.as_str().to_string());
            continue;
        }
        // A group: split its top level on commas; each item's head counts.
        let rest = &code[first.end()..];
        let (mut depth, mut item) = (0usize, String::new());
        for ch in rest.chars() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.extend(head.captures(&item).map(|c| c[1].to_string()));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(ch);
        }
        found.extend(head.captures(&item).map(|c| c[1].to_string()));
    }
    found
}

fn violations(file: &str, text: &str, allowed: &[&str]) -> Vec<String> {
    let code = code_of(text);
    let crate_modules = crate_modules();
    let mut bad = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for f in FORBIDDEN {
            let word = Regex::new(&format!(r"\b{}\b", regex::escape(f))).unwrap();
            if word.is_match(line) {
                bad.push(format!("{file}:{}: mentions `{f}`: {}", n + 1, line.trim()));
            }
        }
    }
    for m in crate_modules_named(&code) {
        if crate_modules.contains(&m)
            && !allowed.contains(&m.as_str())
            && !CORE.iter().any(|(c, _)| *c == m && file.ends_with(&format!("/{c}.rs")))
        {
            bad.push(format!("{file}: uses the IO shell's module `{m}`"));
        }
    }
    bad
}

/// The crate's modules, from `src/lib.rs`.
fn crate_modules() -> Vec<String> {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let m = Regex::new(r"(?m)^\s*(?:pub\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;").unwrap();
    m.captures_iter(&lib).map(|c| c[1].to_string()).collect()
}

#[test]
fn the_core_does_no_io() {
    assert!(crate_modules().contains(&"clock".to_string()), "src/lib.rs lists no clock module");
    let mut bad = Vec::new();
    for (module, allowed) in CORE {
        let file = format!("src/{module}.rs");
        let text = std::fs::read_to_string(&file).unwrap();
        bad.extend(violations(&file, &text, allowed));
        // Loading a rules file is the one read the rules module does.
        if module != "rules" {
            for l in code_of(&text).lines().filter(|l| l.contains("std::fs") || l.contains("std::io")) {
                bad.push(format!("{file}: file IO: {}", l.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "the pure core does IO:\n{}", bad.join("\n"));
}

/// The scan itself: each way of reading the wall clock through the crate's
/// own `SystemClock` is caught, and a clean module passes.
#[test]
fn the_scan_catches_the_crates_own_clock() {
    let allowed = &["model", "rules"];
    for sneaky in [
        "fn f() -> u64 { crate::clock::SystemClock.now().0 }",
        "use crate::clock::{Clock as _, SystemClock as Wall};\nfn f() { Wall.now(); }",
        "use crate::{\n    clock::{self, Clock},\n    model::Timestamp,\n};\nfn f() -> Timestamp { clock::SystemClock.now() }",
        "use crate::{\n    clock as c,\n    model,\n};\nfn f() { let w = c::SystemClock; }",
        "use super::clock as wall;\nfn f() { wall::Wall::default(); }",
        "use crate::{incident, model};",
        "fn f() { let t = opsguard::clock::now(); }",
    ] {
        assert!(!violations("src/engine.rs", sneaky, allowed).is_empty(), "missed:\n{sneaky}");
    }
    let clean = "use crate::model::{Action, Timestamp};\nuse crate::rules::Rules;\n\
                 /// Never reads the clock (SystemClock): now is passed in.\n\
                 fn f(now: Timestamp) -> Timestamp { let s = \"tokio\"; now }";
    assert_eq!(violations("src/engine.rs", clean, allowed), Vec::<String>::new());
}
