//! The structured log lines an incident leaves behind, read the way a log
//! shipper reads them: one JSON object per line, with the step's fields.
//!
//! Alone in its own test binary: `tracing` caches per call site whether
//! anyone listens, and a test on another thread of the same process that
//! reaches a call site with no subscriber can leave it marked as unheard
//! while this test's scoped subscriber waits for it (seen failing about
//! one run in three on a loaded machine when it shared `telemetry.rs`).

mod sim_lab;

use std::sync::Arc;
use std::time::Duration;

use opsguard::approval::PolicyApprover;
use opsguard::audit::Resolution;
use opsguard::clock::Clock;
use opsguard::host::sim::SimFault;
use opsguard::llm::NoAdvisor;
use sim_lab::sim_lab;

/// One simulated chain reaction, approved.
fn chain_reaction() -> Resolution {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut lab = sim_lab(PolicyApprover::ApproveAll, NoAdvisor);
        lab.host.inject(SimFault::ChainReaction);
        lab.clock.sleep(Duration::from_millis(1500)).await;
        let alarm = lab.db_alarm().await;
        lab.responder.handle(alarm).await.resolution
    })
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_incident_step_is_a_json_log_line_with_its_fields() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let resolution = tracing::subscriber::with_default(subscriber, chain_reaction);
    assert_eq!(resolution, Resolution::Resolved);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let opened = lines.iter().find(|l| l["alarm"] == "DB_CRASH").expect("the incident's opening line");
    assert_eq!(opened["root_cause"], "disk_full");
    assert_eq!(opened["container"], "db-prod");
    assert_eq!(opened["level"], "INFO");
    assert!(opened["incident"].is_u64());
    let actions: Vec<&str> =
        lines.iter().filter(|l| l.get("result").is_some()).filter_map(|l| l["action"].as_str()).collect();
    assert_eq!(actions.first(), Some(&"clean_logs"), "{actions:?}");
    assert!(actions.contains(&"restart_database_risky"), "{actions:?}");
    assert!(lines.iter().any(|l| l["answer"] == "approved"), "{text}");
    let last = lines.last().unwrap();
    assert_eq!(last["outcome"], "resolved", "{text}");
}
