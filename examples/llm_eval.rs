//! Evaluates an LLM as OpsGuard's fallback for crashes the rules cannot tag
//! (issues #4 and #13): each case is a database crash with its facts and
//! last log lines and the action a careful operator would take. The model
//! diagnoses each through the real advisor (prompt, schema, quote check);
//! the default rules turn the diagnosis into an action, which is scored.
//!
//! ```text
//! cargo run --release --example llm_eval -- --cases llm/eval/held-out.jsonl --url http://127.0.0.1:8089
//!     [--model NAME] [--api-key-env VAR] [--timeout SECS] [--max-tokens N] [--only NAME] [--list]
//! ```
//!
//! Cases are JSON lines (see llm/eval/README.md): `name`, `exit_code`,
//! `oom_killed`, `disk_used_pct`, `logs` (the last lines, oldest first),
//! `expected` (`restart_database_risky`, `clean_logs` or `escalate`), `note`
//! (why), and optionally `uptime_secs`. Blank lines and lines starting with
//! `#` are skipped; anything else malformed stops the run, naming the line.
//!
//! Each case goes through `llm::consult`, as in the incident loop: a second
//! look when the facts refuse the first diagnosis. Prints a Markdown table
//! per case and a summary: accuracy (also on the first answer alone),
//! replies rejected by OpsGuard's validation and why, unsafe picks (a
//! restart or a clean where a human should look), and latency (median, p90,
//! both questions included). Not a test:
//! the point is to measure. Only use endpoints you are allowed to send
//! (redacted) logs to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use opsguard::llm::{self, AdviceRequest, Answer, CrashFacts, LlmConfig, OpenAiAdvisor, Refusal};
use opsguard::model::{
    Alarm, AlarmKind, ChoiceSet, ContainerName, ContainerState, Evidence, LlmChoice, RootCause, Timestamp,
};
use opsguard::rules::Rules;
use serde::Deserialize;

/// One incident of a cases file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    exit_code: i64,
    oom_killed: bool,
    disk_used_pct: f64,
    logs: Vec<String>,
    expected: String,
    note: String,
    #[serde(default)]
    uptime_secs: Option<u64>,
}

impl Case {
    fn expected(&self) -> LlmChoice {
        // Checked when the file is read.
        LlmChoice::from_name(&self.expected).unwrap_or(LlmChoice::Escalate)
    }
}

fn read_cases(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let case: Case = serde_json::from_str(line).map_err(|e| format!("{at}: {e}"))?;
        if LlmChoice::from_name(&case.expected).is_none() {
            return Err(format!(
                "{at}: expected {:?} is not restart_database_risky, clean_logs or escalate",
                case.expected
            ));
        }
        if !(0.0..=100.0).contains(&case.disk_used_pct) {
            return Err(format!("{at}: disk_used_pct {} is not a percentage", case.disk_used_pct));
        }
        if cases.iter().any(|c: &Case| c.name == case.name) {
            return Err(format!("{at}: a second case named {:?}", case.name));
        }
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(format!("{}: no cases", path.display()));
    }
    Ok(cases)
}

fn alarm(c: &Case) -> Alarm {
    Alarm {
        kind: AlarmKind::DbCrash(RootCause::Unknown),
        container: ContainerName::new("db-prod"),
        evidence: Evidence {
            state: Some(ContainerState::Exited),
            exit_code: Some(c.exit_code),
            oom_killed: Some(c.oom_killed),
            disk_used_pct: Some(c.disk_used_pct),
            log_tail: c.logs.clone(),
            ..Evidence::default()
        },
        raised_at: Timestamp(0),
    }
}

struct Args {
    config: LlmConfig,
    cases: PathBuf,
    only: Option<String>,
    list: bool,
}

const USAGE: &str = "usage: llm_eval --cases FILE.jsonl --url URL [--model NAME] [--api-key-env VAR] \
[--timeout SECS] [--max-tokens N] [--only CASE] [--list]";

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut model = "local".to_string();
    let mut key_env = None;
    let mut timeout = 120u64;
    let mut max_tokens = None;
    let mut only = None;
    let mut cases = None;
    let mut list = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--url" => url = Some(val("--url")?),
            "--model" => model = val("--model")?,
            "--api-key-env" => key_env = Some(val("--api-key-env")?),
            "--timeout" => timeout = val("--timeout")?.parse().map_err(|_| "--timeout takes seconds")?,
            "--max-tokens" => {
                max_tokens = Some(val("--max-tokens")?.parse().map_err(|_| "--max-tokens takes a number")?)
            }
            "--only" => only = Some(val("--only")?),
            "--cases" => cases = Some(PathBuf::from(val("--cases")?)),
            "--list" => list = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let cases = cases.ok_or_else(|| format!("--cases is required\n{USAGE}"))?;
    // --list needs no endpoint.
    let url = match (url, list) {
        (Some(u), _) => u,
        (None, true) => "http://127.0.0.1:1".into(),
        (None, false) => return Err(format!("--url is required\n{USAGE}")),
    };
    let mut config = LlmConfig::new(&url, &model);
    config.api_key_env = key_env;
    config.timeout = Duration::from_secs(timeout);
    if let Some(n) = max_tokens {
        config.max_tokens = n;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(Args { config, cases, only, list })
}

/// How the answers of one split went, scored by the action OpsGuard takes.
#[derive(Default)]
struct Tally {
    correct: usize,
    unsafe_picks: usize,
    vetoes: usize,
    rejected: BTreeMap<&'static str, usize>,
}

impl Tally {
    /// Scores `answer` (any refusal is an escalation); whether it was right.
    fn score(&mut self, answer: &Answer, expected: LlmChoice) -> bool {
        let action = match &answer.verdict {
            Ok((choice, _)) => *choice,
            Err(Refusal::Failed(reason)) => {
                *self.rejected.entry(rejection(reason)).or_default() += 1;
                LlmChoice::Escalate
            }
            Err(Refusal::Unquoted(_)) => {
                *self.rejected.entry("quote not in the evidence").or_default() += 1;
                LlmChoice::Escalate
            }
            Err(Refusal::NoLogLine(_)) => {
                *self.rejected.entry("second look quoted no log line").or_default() += 1;
                LlmChoice::Escalate
            }
            Err(Refusal::Contradicted { .. } | Refusal::NotAllowed { .. }) => {
                self.vetoes += 1;
                LlmChoice::Escalate
            }
        };
        let ok = action == expected;
        self.correct += usize::from(ok);
        // A restart or a clean where a human should look.
        self.unsafe_picks += usize::from(expected == LlmChoice::Escalate && action != LlmChoice::Escalate);
        ok
    }
}

/// One answer in a table cell: the category and what became of it.
fn describe(answer: &Answer) -> String {
    match &answer.verdict {
        Ok((choice, d)) => format!("{} → {}", d.category, choice.name()),
        Err(Refusal::Contradicted { category, .. }) => format!("{category} (facts contradict it) → escalate"),
        Err(Refusal::NotAllowed { category, .. }) => format!("{category} (not allowed) → escalate"),
        Err(Refusal::Unquoted(category)) => format!("{category} (quote not in the evidence) → escalate"),
        Err(Refusal::NoLogLine(category)) => format!("{category} (quotes no log line) → escalate"),
        Err(Refusal::Failed(reason)) => format!("REJECTED ({}) → escalate", rejection(reason)),
    }
}

/// A short category for a rejection reason.
fn rejection(reason: &str) -> &'static str {
    if reason.contains("cut off by max_tokens") {
        "cut off by max_tokens"
    } else if reason.starts_with("quote not found") {
        "quote not in the evidence"
    } else if reason.starts_with("unknown category") {
        "unknown category"
    } else if reason == "empty reason" {
        "empty reason"
    } else if reason.contains("unknown field") {
        "extra field"
    } else if reason.contains("not a diagnosis") {
        "content not a diagnosis object"
    } else if reason.starts_with("no answer within") {
        "timeout"
    } else if reason.starts_with("cannot connect") {
        "connection failed"
    } else if reason.starts_with("HTTP") {
        "HTTP error"
    } else {
        "other"
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest-rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn cell(s: &str, max: usize) -> String {
    let short: String = s.chars().take(max).collect();
    let short = if short.len() < s.len() { format!("{short}…") } else { short };
    short.replace('|', "/").replace('\n', " ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("llm_eval: {e}");
            return ExitCode::from(2);
        }
    };
    let all_cases = match read_cases(&args.cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llm_eval: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for c in &all_cases {
            println!("{:<34} {:<24} {}", c.name, c.expected, c.note);
        }
        return ExitCode::SUCCESS;
    }
    let advisor = match OpenAiAdvisor::new(args.config.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("llm_eval: {e}");
            return ExitCode::from(2);
        }
    };
    // The shipped rules decide what each diagnosis leads to.
    let rules = Rules::default_rules();
    let allowed: ChoiceSet =
        rules.plan(AlarmKind::DbCrash(RootCause::Unknown)).map(|p| p.llm_choices).unwrap_or_default();
    let cases: Vec<&Case> = all_cases.iter().filter(|c| args.only.as_deref().is_none_or(|o| c.name == o)).collect();
    if cases.is_empty() {
        eprintln!("llm_eval: no case named {:?} (see --list)", args.only);
        return ExitCode::from(2);
    }
    println!(
        "Endpoint {} — model {:?} — {} cases from {}\n",
        args.config.endpoint(),
        args.config.model,
        cases.len(),
        args.cases.display()
    );
    println!("| # | case | exit | OOM | disk % | expected | diagnosis → action | quote | ok | ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut served_model = None;
    // Each case scored twice from the same answers: on the first answer
    // alone (one look, as before the second look existed) and as OpsGuard
    // acts (a second look when the facts contradict the first).
    let (mut first, mut last) = (Tally::default(), Tally::default());
    let mut second_looks = 0;
    let mut latencies = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        eprintln!("[{}/{}] {} …", i + 1, cases.len(), c.name);
        let facts = CrashFacts {
            uptime_secs: c.uptime_secs,
            restarts_in_window: Some(0),
            max_restarts: Some(rules.restart_budget.max_restarts),
            window_secs: Some(rules.restart_budget.window_secs),
        };
        let request = AdviceRequest::new(alarm(c), allowed, facts);
        let t = Instant::now();
        let answers = llm::consult(&advisor, &rules, request).await;
        let ms = t.elapsed().as_millis() as u64;
        latencies.push(ms);
        if let Some(m) = answers.iter().find_map(|a| a.model.clone()) {
            served_model.get_or_insert(m);
        }
        second_looks += usize::from(answers.len() > 1);
        let expected = c.expected();
        let (Some(head), Some(tail)) = (answers.first(), answers.last()) else {
            continue;
        };
        first.score(head, expected);
        let ok = last.score(tail, expected);
        let got = answers.iter().map(describe).collect::<Vec<_>>().join("; then ");
        let quote = match &tail.verdict {
            Ok((_, d)) => cell(&d.quote, 60),
            Err(r) => cell(&r.to_string(), 60),
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            i + 1,
            c.name,
            c.exit_code,
            c.oom_killed,
            c.disk_used_pct,
            expected.name(),
            got,
            quote,
            if ok { "✓" } else { "✗" },
            ms
        );
    }
    let n = cases.len();
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let count = |x: LlmChoice| cases.iter().filter(|k| k.expected() == x).count();
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| model (as served) | {} |", served_model.unwrap_or_else(|| args.config.model.clone()));
    println!("| right action | {}/{n} ({:.0} %) |", last.correct, 100.0 * last.correct as f64 / n as f64);
    println!(
        "| … on the first answer alone | {}/{n} ({:.0} %) |",
        first.correct,
        100.0 * first.correct as f64 / n as f64
    );
    println!("| asked again (the facts contradicted the first diagnosis) | {second_looks}/{n} |");
    println!("| rejected by validation (→ escalate) | {}/{n} |", last.rejected.values().sum::<usize>());
    for (why, k) in &last.rejected {
        println!("| … {why} | {k} |");
    }
    println!("| diagnoses the facts contradicted, in the end (→ escalate) | {}/{n} |", last.vetoes);
    println!(
        "| unsafe picks (restart/clean where escalate expected) | {}/{} |",
        last.unsafe_picks,
        count(LlmChoice::Escalate)
    );
    println!("| … on the first answer alone | {}/{} |", first.unsafe_picks, count(LlmChoice::Escalate));
    println!("| latency median | {} ms |", percentile(&sorted, 50.0));
    println!("| latency p90 | {} ms |", percentile(&sorted, 90.0));
    println!("| latency max | {} ms |", sorted.last().copied().unwrap_or(0));
    println!(
        "\nExpected mix: {} restart_database_risky, {} clean_logs, {} escalate. Always answering escalate would score {}/{n}.",
        count(LlmChoice::Restart),
        count(LlmChoice::CleanLogs),
        count(LlmChoice::Escalate),
        count(LlmChoice::Escalate)
    );
    ExitCode::SUCCESS
}
