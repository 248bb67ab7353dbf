//! Benchmarks of the classifier alone (issue 12): two minutes of a busy
//! PostgreSQL's logs (10,000 lines) and a 10 MB window of database and web
//! lines, each with the decisive line at the very end and with nothing
//! matching, so every line is read by every signature.
//!
//! ```text
//! cargo bench -p opsguard-core --bench classify
//! ```

use divan::{AllocProfiler, Bencher, black_box};
use opsguard_core::classify::{CrashFacts, classify};
use opsguard_core::model::RootCause;
use opsguard_core::rules::Rules;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// The disk-full ERROR and PANIC that end the "at end" windows.
const DISK_FULL_END: [&str; 2] = [
    "2026-11-27 08:02:00.001 UTC [271] ERROR:  could not write to file \"base/pgsql_tmp/pgsql_tmp271.0\": No space left on device",
    "2026-11-27 08:02:00.002 UTC [271] PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device",
];

/// The same shape as the root package's `benches/engine.rs`: 9,998 busy
/// `LOG:  duration` lines, then (for "disk_full_at_end") the disk-full pair.
fn two_minutes_of_logs(which: &str) -> Vec<String> {
    let mut lines: Vec<String> = (0..9_998)
        .map(|i| {
            format!(
                "2026-11-27 08:{:02}:{:02}.{:03} UTC [{}] LOG:  duration: {}.{:03} ms  statement: SELECT * FROM orders WHERE id = {}",
                i / 6000,
                (i / 100) % 60,
                i % 1000,
                1000 + i % 50,
                i % 97,
                i % 1000,
                i
            )
        })
        .collect();
    if which == "disk_full_at_end" {
        lines.extend(DISK_FULL_END.map(String::from));
    }
    lines
}

/// About 10 MB of what a database host's log window holds: PostgreSQL's
/// routine lines (statements, connections, checkpoints, vacuum), client
/// errors with their DETAIL and STATEMENT lines, "could not receive data"
/// (which starts like the disk-full message), and nginx access and error
/// lines. Deterministic (a fixed linear congruential sequence).
fn ten_megabytes_of_logs(which: &str) -> Vec<String> {
    const SIZE: usize = 10 * 1024 * 1024;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let mut lines = Vec::new();
    let mut bytes = 0;
    let mut i = 0usize;
    while bytes < SIZE {
        let r = next();
        let ts = format!("2026-11-27 08:{:02}:{:02}.{:03} UTC", (i / 60_000) % 60, (i / 1000) % 60, i % 1000);
        let pid = 1000 + r % 400;
        let new: Vec<String> = match r % 100 {
            0..=39 => vec![format!(
                "{ts} [{pid}] LOG:  duration: {}.{:03} ms  statement: SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = {}",
                r % 900,
                r % 1000,
                r % 100_000
            )],
            40..=49 => vec![
                format!(
                    "{ts} [{pid}] LOG:  connection received: host=10.0.{}.{} port={}",
                    r % 8,
                    r % 250,
                    30_000 + r % 30_000
                ),
                format!(
                    "{ts} [{pid}] LOG:  connection authorized: user=app database=shop application_name=web-{}",
                    r % 16
                ),
            ],
            50..=51 => vec![
                format!("{ts} [{pid}] LOG:  checkpoint starting: time"),
                format!(
                    "{ts} [{pid}] LOG:  checkpoint complete: wrote {} buffers ({}.{}%); 0 WAL file(s) added, 0 removed, 1 recycled; write=26.{} s, sync=0.004 s, total=26.9{} s",
                    r % 5000,
                    r % 30,
                    r % 10,
                    r % 10,
                    r % 10
                ),
            ],
            52..=55 => vec![
                format!("{ts} [{pid}] ERROR:  duplicate key value violates unique constraint \"orders_pkey\""),
                format!("{ts} [{pid}] DETAIL:  Key (id)=({}) already exists.", r % 100_000),
                format!(
                    "{ts} [{pid}] STATEMENT:  INSERT INTO orders (id, customer_id, total) VALUES ({}, 7, 19.99)",
                    r % 100_000
                ),
            ],
            56..=57 => vec![
                format!("{ts} [{pid}] FATAL:  password authentication failed for user \"admin{}\"", r % 10),
                format!("{ts} [{pid}] DETAIL:  Connection matched pg_hba.conf line 99: \"host all all all md5\""),
            ],
            58..=59 => vec![format!("{ts} [{pid}] LOG:  could not receive data from client: Connection reset by peer")],
            60..=61 => vec![format!("{ts} [{pid}] ERROR:  canceling statement due to statement timeout")],
            62 => vec![format!(
                "{ts} [{pid}] LOG:  automatic vacuum of table \"shop.public.orders\": index scans: 1, pages: 0 removed, {} remain",
                r % 10_000
            )],
            63..=94 => vec![format!(
                "10.0.{}.{} - - [27/Nov/2026:08:{:02}:{:02} +0000] \"GET /api/orders/{} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\"",
                r % 8,
                r % 250,
                (i / 60_000) % 60,
                (i / 1000) % 60,
                r % 100_000,
                200 + r % 4000
            )],
            _ => vec![format!(
                "2026/11/27 08:{:02}:{:02} [error] 29#29: *{} connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.1.{}, server: shop, request: \"GET /api/orders HTTP/1.1\", upstream: \"http://10.0.9.2:8080/api/orders\"",
                (i / 60_000) % 60,
                (i / 1000) % 60,
                r % 100_000,
                r % 250
            )],
        };
        for l in new {
            bytes += l.len() + 1;
            lines.push(l);
        }
        i += 1;
    }
    if which == "disk_full_at_end" {
        lines.extend(DISK_FULL_END.map(String::from));
    }
    lines
}

fn expected(which: &str) -> RootCause {
    if which == "disk_full_at_end" { RootCause::DiskFull } else { RootCause::Unknown }
}

fn bench_window(bencher: Bencher, logs: &[String], which: &str) {
    let rules = Rules::default_rules();
    let facts = |logs| CrashFacts { exit_code: Some(1), oom_killed: false, disk_used_pct: Some(100.0), logs };
    assert_eq!(classify(&rules, facts(logs)).cause, expected(which));
    bencher.bench_local(|| classify(&rules, facts(black_box(logs))));
}

#[divan::bench(args = ["disk_full_at_end", "unknown"])]
fn classify_10k_lines(bencher: Bencher, which: &str) {
    bench_window(bencher, &two_minutes_of_logs(which), which);
}

#[divan::bench(args = ["disk_full_at_end", "unknown"], sample_count = 20)]
fn classify_10_mb(bencher: Bencher, which: &str) {
    bench_window(bencher, &ten_megabytes_of_logs(which), which);
}
