//! Secrets in container logs never leave through any of OpsGuard's outputs
//! (issue 8, item 15): a generated secret, embedded in a generated log line
//! in each of the shapes real logs carry it (SQL `PASSWORD '…'`, a
//! `--password` flag, env-style `DB_PASS=…`, a connection string whose
//! password holds `/` and `@`, …), goes through the simulated host, the
//! observer and an incident, and is then looked for in the audit log file,
//! the terminal timeline and status line, the terminal approval prompt, the
//! web console page, the post-mortem and the LLM prompt.

mod sim_lab;

use std::time::Duration;

use opsguard::approval::{ApprovalRequest, PolicyApprover, render_request};
use opsguard::audit::{AuditLog, incident_trails, read_audit};
use opsguard::console::{Console, ConsoleSettings};
use opsguard::host::sim::DB;
use opsguard::llm::NoAdvisor;
use opsguard::llm::prompt::{LogBudget, system_prompt, user_prompt};
use opsguard::model::{Action, RestartReason};
use opsguard::postmortem::Postmortem;
use opsguard::progress::Progress;
use proptest::prelude::*;
use sim_lab::sim_lab_with_audit;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// How a secret sits in a log line.
#[derive(Clone, Copy, Debug)]
enum Shape {
    SqlAlterRole,
    SqlCreateUser,
    FlagSpace,
    FlagEquals,
    Env(&'static str),
    Uri,
    KeyValue,
    JsonField,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::SqlAlterRole),
        Just(Shape::SqlCreateUser),
        Just(Shape::FlagSpace),
        Just(Shape::FlagEquals),
        prop::sample::select(vec![
            "DB_PASS",
            "POSTGRES_PASSWORD",
            "PGPASSWORD",
            "API_TOKEN",
            "APP_SECRET",
            "MYSQL_PWD"
        ])
        .prop_map(Shape::Env),
        Just(Shape::Uri),
        Just(Shape::KeyValue),
        Just(Shape::JsonField),
    ]
}

impl Shape {
    fn embed(self, secret: &str) -> String {
        match self {
            Shape::SqlAlterRole => format!("STATEMENT:  ALTER ROLE app PASSWORD '{secret}'"),
            Shape::SqlCreateUser => {
                format!("ERROR:  role exists STATEMENT:  CREATE USER bob WITH PASSWORD '{secret}';")
            }
            Shape::FlagSpace => format!("exec pg_dump --password {secret} --host db-prod"),
            Shape::FlagEquals => format!("exec mysqldump --password={secret} shop"),
            Shape::Env(key) => format!("environment {key}={secret}"),
            // The password holds `/` and `@` (see `secret`).
            Shape::Uri => format!("could not connect to postgres://app:{secret}@db-prod:5432/shop"),
            Shape::KeyValue => format!("host=db user=app password={secret} dbname=shop"),
            Shape::JsonField => format!("{{\"user\":\"app\",\"password\":\"{secret}\"}}"),
        }
    }
}

/// A secret: letters, digits and the punctuation passwords use, never
/// escaped by any output (HTML, JSON, Markdown), with a `/` and an `@` in
/// it so a connection string's password cannot end early.
fn secret() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9!#%*+.:=?^_~-]{3,10}", "[A-Za-z0-9!#%*+.:=?^_~-]{3,10}", "[A-Za-z0-9]{4,10}")
        .prop_map(|(a, b, c)| format!("{a}/{b}@{c}"))
}

/// A PostgreSQL-looking line around the secret: a severity prefix and
/// ordinary words before and after.
fn line() -> impl Strategy<Value = (Shape, String, String)> {
    (
        shape(),
        secret(),
        prop::sample::select(vec!["LOG:  ", "ERROR:  ", "FATAL:  ", "DETAIL:  ", ""]),
        prop::collection::vec("[a-z]{1,8}", 0..4),
        prop::collection::vec("[a-z]{1,8}", 0..4),
        // The secret also in a line the disk-full signature matches.
        any::<bool>(),
    )
        .prop_map(|(shape, secret, severity, before, after, signature)| {
            let mut l = format!("2026-11-20 10:00:00.000 UTC [271] {severity}");
            for w in before {
                l += &w;
                l.push(' ');
            }
            l += &shape.embed(&secret);
            for w in after {
                l.push(' ');
                l += &w;
            }
            if signature {
                l += " PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device";
            }
            (shape, secret, l)
        })
}

/// Every output OpsGuard makes of an incident whose logs hold `line`.
fn outputs(line: &str) -> Vec<(&'static str, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let console = Console::new(ConsoleSettings { token: None, approval_timeout: Duration::from_secs(60) }).unwrap();
    let terminal = std::sync::Arc::new(std::sync::Mutex::new((Progress::new(Duration::from_secs(60)), String::new())));
    let (c, t) = (console.clone(), terminal.clone());
    let audit = AuditLog::to_file(&path).unwrap().with_tap(move |r| c.record(r)).with_tap(move |r| {
        let mut t = t.lock().unwrap();
        t.0.observe(r);
        let shown = format!("[{}] #{} {}\n{}\n", r.time, r.incident, r.event.render(), t.0.line(r.ts));
        t.1 += &shown;
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let alarm = rt.block_on(async {
        let mut lab = sim_lab_with_audit(PolicyApprover::ApproveAll, NoAdvisor, audit);
        lab.host.write_logs(DB, &["LOG:  database system is ready to accept connections", line]);
        lab.host.stop(DB);
        let alarm = lab.db_alarm().await;
        lab.responder.handle(alarm.clone()).await;
        alarm
    });
    let request = ApprovalRequest {
        id: 1,
        incident: 1,
        action: Action::Restart { target: alarm.container.clone(), reason: RestartReason::LlmSuggested },
        alarm: alarm.clone(),
        crash: None,
        diagnosis: None,
    };
    let audit_text = std::fs::read_to_string(&path).unwrap();
    let read = read_audit(&path).unwrap();
    let trails = incident_trails(&read.records);
    let postmortem = Postmortem::new(&trails[0]).unwrap().to_markdown();
    let budget = LogBudget { max_lines: 30, max_bytes: 8000 };
    let terminal = terminal.lock().unwrap().1.clone();
    vec![
        ("the alarm's evidence", format!("{:?}", alarm.evidence)),
        ("the audit log", audit_text),
        ("the terminal timeline", terminal),
        ("the terminal approval prompt", render_request(&request)),
        ("the web console", console.page(None)),
        ("the post-mortem", postmortem),
        ("the LLM prompt", format!("{}\n{}", system_prompt(), user_prompt(&alarm, &Default::default(), budget, &[]))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_secret_survives_into_any_output((shape, secret, line) in line()) {
        let outs = outputs(&line);
        // The line did reach the evidence (redacted), so each output had
        // the chance to leak it.
        prop_assert!(outs[0].1.contains("[REDACTED]"), "{shape:?} {line:?}: {}", outs[0].1);
        for (name, text) in outs {
            prop_assert!(!text.contains(&secret), "{shape:?}: {secret:?} survived into {name}:\n{text}");
        }
    }
}
