//! The approval gate: a human's explicit yes for a risky action.
//!
//! An answer is bound to the request it answers (its id); no answer, a
//! timeout, an error or an answer for another request all mean no. The
//! incident machine enforces the deadline and the binding, so every approver
//! implementation gets the same guarantees.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::OnceLock;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::model::Evidence;

pub use opsguard_core::approval::{Answer, ApprovalRequest, CrashBinding, Signoff};

/// Why no answer could be had; always treated as a rejection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("approval unavailable: {0}")]
pub struct ApprovalError(pub String);

/// Something that can answer approval requests.
#[trait_variant::make(Send)]
pub trait Approver: Sync {
    /// Who answers, for the audit log (`terminal`, `policy:deny`, …).
    fn name(&self) -> &str;
    /// Asks for an answer; may take as long as the human needs (the loop
    /// applies the timeout).
    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError>;
    /// Who gave the answer [`Approver::review`] just returned for
    /// `request`, and the digest of what they were shown, for the audit
    /// log. By default the approver's name, without a digest.
    fn signoff(&self, request: &ApprovalRequest) -> Signoff {
        let _ = request;
        Signoff { by: self.name().to_string(), digest: None }
    }
}

/// The SHA-256 (hex) of a request as a human is shown it: its id and
/// incident, the action with its target and reason, the alarm and its
/// evidence. The console's page and API make an answer carry it, and the
/// audit log records it with the answer.
pub fn evidence_digest(r: &ApprovalRequest) -> Result<String, ApprovalError> {
    let bytes = serde_json::to_vec(&(r.id, r.incident, &r.action, &r.alarm))
        .map_err(|e| ApprovalError(format!("cannot encode request {}: {e}", r.id)))?;
    Ok(hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)))
}

/// An [`Approver`] chosen at run time (the CLI's `--approve`), as a trait
/// object: [`Approver`]'s futures are not object-safe, so these are boxed.
/// Every approver is one; a `Box<dyn DynApprover>` is an [`Approver`] again.
/// The method names differ from [`Approver`]'s so that having both traits in
/// scope leaves no call ambiguous.
pub trait DynApprover: Send + Sync {
    /// [`Approver::name`].
    fn name_dyn(&self) -> &str;
    /// [`Approver::review`], boxed.
    fn review_dyn<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Result<Answer, ApprovalError>>;
    /// [`Approver::signoff`].
    fn signoff_dyn(&self, request: &ApprovalRequest) -> Signoff;
}

impl<T: Approver + Send> DynApprover for T {
    fn name_dyn(&self) -> &str {
        Approver::name(self)
    }

    fn review_dyn<'a>(&'a self, request: &'a ApprovalRequest) -> BoxFuture<'a, Result<Answer, ApprovalError>> {
        Box::pin(Approver::review(self, request))
    }

    fn signoff_dyn(&self, request: &ApprovalRequest) -> Signoff {
        Approver::signoff(self, request)
    }
}

impl Approver for Box<dyn DynApprover + '_> {
    fn name(&self) -> &str {
        (**self).name_dyn()
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        (**self).review_dyn(request).await
    }

    fn signoff(&self, request: &ApprovalRequest) -> Signoff {
        (**self).signoff_dyn(request)
    }
}

/// A fixed policy: deny everything (the safe default) or approve everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyApprover {
    /// Every request is rejected.
    Deny,
    /// Every request is approved (for unattended labs and benchmarks).
    ApproveAll,
}

impl Approver for PolicyApprover {
    fn name(&self) -> &str {
        match self {
            PolicyApprover::Deny => "policy:deny",
            PolicyApprover::ApproveAll => "policy:approve",
        }
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        Ok(match self {
            PolicyApprover::Deny => Answer::Reject,
            PolicyApprover::ApproveAll => Answer::Approve { request: request.id },
        })
    }
}

/// Asks at the terminal: shows the action and its evidence, reads a line.
/// Only `y` or `yes` approves; anything else, end of input, or no terminal
/// at all rejects.
///
/// Standard input is read by one [`LineApprover`] for the whole process,
/// started at the first request: a request that times out leaves no read
/// behind to eat the next answer, and nothing blocks `watch` from exiting.
#[derive(Clone, Copy, Debug, Default)]
pub struct TerminalApprover;

impl Approver for TerminalApprover {
    fn name(&self) -> &str {
        "terminal"
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        static STDIN: OnceLock<LineApprover> = OnceLock::new();
        if !std::io::stdin().is_terminal() {
            return Ok(Answer::Reject);
        }
        STDIN.get_or_init(|| LineApprover::new(std::io::stdin(), std::io::stderr())).review(request).await
    }

    fn signoff(&self, request: &ApprovalRequest) -> Signoff {
        shown_at_terminal(request)
    }
}

/// The terminal's answer: whoever types at it, shown [`render_request`]
/// of exactly the request digested.
fn shown_at_terminal(request: &ApprovalRequest) -> Signoff {
    Signoff { by: "terminal".into(), digest: evidence_digest(request).ok() }
}

/// Where the reader's next line goes.
#[derive(Debug)]
enum Slot {
    /// No request is showing: a line typed now is stale and dropped.
    Idle,
    /// This request's prompt is showing; the next line answers it.
    Waiting { request: u64, reply: oneshot::Sender<String> },
    /// The input ended (or failed): every request is rejected.
    Closed,
}

#[derive(Debug)]
struct Feed {
    slot: std::sync::Mutex<Slot>,
}

impl Feed {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A slot is replaced whole; a panic elsewhere cannot tear it.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stops waiting for a line when the review ends, however it ends (an
/// answer, a timeout that dropped it): a later line must not answer this
/// request, nor a later request get this one's line.
struct Unwait<'a> {
    feed: &'a Feed,
    request: u64,
}

impl Drop for Unwait<'_> {
    fn drop(&mut self) {
        let mut slot = self.feed.slot();
        if matches!(*slot, Slot::Waiting { request, .. } if request == self.request) {
            *slot = Slot::Idle;
        }
    }
}

/// Asks on any line-based input and output: the terminal approver's core,
/// with the input injectable for tests (a pipe). One thread reads the input
/// for the approver's whole life and hands each line to the request whose
/// prompt is showing, matched by request id; lines typed while no prompt
/// shows are dropped. A plain thread, not a tokio blocking task: a runtime
/// shuts down without waiting for it, so a read waiting on a silent
/// terminal keeps nobody from exiting.
#[derive(Clone)]
pub struct LineApprover {
    feed: std::sync::Arc<Feed>,
    out: std::sync::Arc<std::sync::Mutex<Box<dyn Write + Send>>>,
    /// One prompt at a time: a line answers the prompt above it.
    turn: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for LineApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineApprover").field("feed", &self.feed).finish_non_exhaustive()
    }
}

impl LineApprover {
    /// Reads answers from `input` (on a thread of its own) and writes
    /// prompts to `out`.
    pub fn new(input: impl std::io::Read + Send + 'static, out: impl Write + Send + 'static) -> LineApprover {
        let feed = std::sync::Arc::new(Feed { slot: std::sync::Mutex::new(Slot::Idle) });
        let reader = std::sync::Arc::clone(&feed);
        let spawned = std::thread::Builder::new().name("opsguard-approval-input".into()).spawn(move || {
            let mut input = std::io::BufReader::new(input);
            let mut line = String::new();
            loop {
                line.clear();
                // A line is bounded: a stuck key cannot fill the memory.
                match input.by_ref().take(4096).read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let mut slot = reader.slot();
                if let Slot::Waiting { reply, .. } = std::mem::replace(&mut *slot, Slot::Idle) {
                    let _ = reply.send(std::mem::take(&mut line));
                }
            }
            // Dropping a waiting reply rejects that request too.
            *reader.slot() = Slot::Closed;
        });
        if spawned.is_err() {
            *feed.slot() = Slot::Closed;
        }
        LineApprover {
            feed,
            out: std::sync::Arc::new(std::sync::Mutex::new(Box::new(out))),
            turn: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

impl Approver for LineApprover {
    fn name(&self) -> &str {
        "terminal"
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        let _turn = self.turn.lock().await;
        let id = request.id;
        {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(out, "{}⚠ Approve? [y/N] ", render_request(request));
            let _ = out.flush();
        }
        // Waiting starts after the prompt is out: a line typed before it
        // was not an answer to it.
        let (reply, answer) = oneshot::channel();
        {
            let mut slot = self.feed.slot();
            if matches!(*slot, Slot::Closed) {
                return Ok(Answer::Reject);
            }
            *slot = Slot::Waiting { request: id, reply };
        }
        let _unwait = Unwait { feed: &self.feed, request: id };
        match answer.await {
            Ok(line) => Ok(parse_answer(&line, id)),
            // End of input: no one is there to say yes.
            Err(_) => Ok(Answer::Reject),
        }
    }

    fn signoff(&self, request: &ApprovalRequest) -> Signoff {
        shown_at_terminal(request)
    }
}

/// `y`/`yes` (any case, surrounding spaces ignored) approves; all else rejects.
pub fn parse_answer(line: &str, request: u64) -> Answer {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Answer::Approve { request },
        _ => Answer::Reject,
    }
}

/// The facts behind an alarm as an approver reads them, in a fixed order:
/// `(label, value)` pairs for the container's state, exit code, OOM flag,
/// disk usage, zombie count and the signature that named the root cause.
/// The terminal prompt and the web console both show exactly these, and the
/// matching log lines ([`evidence_lines`]).
pub fn evidence_facts(e: &Evidence) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    if let Some(state) = e.state {
        facts.push(("state", state.as_str().to_string()));
    }
    if let Some(code) = e.exit_code {
        facts.push(("exit code", code.to_string()));
    }
    if let Some(oom) = e.oom_killed {
        facts.push(("OOMKilled", oom.to_string()));
    }
    if let Some(pct) = e.disk_used_pct {
        facts.push(("disk usage", format!("{pct:.1}%")));
    }
    if let Some(n) = e.exited_containers {
        facts.push(("exited containers", n.to_string()));
    }
    if let Some(sig) = &e.matched_signature {
        facts.push(("root cause from", crate::classify::printable(sig)));
    }
    // Every other signature the crash met, in full or in part: what the
    // decision set aside is evidence too.
    for m in e.signatures.iter().filter(|m| !m.decided) {
        let text = format!("{}: {}", m.cause.key(), m.signature);
        if m.matched() {
            facts.push(("also matched", crate::classify::printable(&text)));
        } else {
            let unmet = m.unmet.join("; ");
            facts.push(("partly matched", crate::classify::printable(&format!("{text} — not met: {unmet}"))));
        }
    }
    facts
}

/// The log lines that matched the root cause's signature, then those any
/// other signature matched, with control characters replaced: logs are
/// untrusted and must not drive a terminal.
pub fn evidence_lines(e: &Evidence) -> Vec<String> {
    let mut lines: Vec<&String> = e.log_lines.iter().collect();
    for l in e.signatures.iter().flat_map(|m| &m.lines) {
        if !lines.contains(&l) {
            lines.push(l);
        }
    }
    lines.into_iter().map(|l| crate::classify::printable(l)).collect()
}

/// The request as a human reads it at a terminal: action, target, reason
/// and the same evidence the web console shows.
pub fn render_request(r: &ApprovalRequest) -> String {
    let mut s = format!("I want to run {} (incident #{})\n", r.action, r.incident);
    s += &format!("  alarm: {}\n", r.alarm);
    for (label, value) in evidence_facts(&r.alarm.evidence) {
        s += &format!("  {label}: {value}\n");
    }
    if let Some(c) = &r.crash {
        s += &format!("  for {}; void if it runs or crashes again\n", c.describe());
    }
    if let Some(d) = &r.diagnosis {
        s += &format!(
            "  LLM diagnosis: {} (model output; OpsGuard only checked that the quote is in the evidence)\n",
            d.category
        );
        s += &format!("    quote: {}\n", crate::classify::printable(&d.quote));
        s += &format!("    reason: {}\n", crate::classify::printable(&d.reason));
    }
    let lines = evidence_lines(&r.alarm.evidence);
    if !lines.is_empty() {
        s += "  matching log lines:\n";
    }
    for l in lines {
        s += &format!("  | {l}\n");
    }
    s
}

/// A request waiting for an answer over a channel.
#[derive(Debug)]
pub struct PendingApproval {
    /// The request.
    pub request: ApprovalRequest,
    /// Where the answer goes; dropping it rejects.
    pub reply: oneshot::Sender<Answer>,
}

/// Sends each request over a channel and waits for the answer: for tests,
/// and for front ends (a web console) that answer from another task.
#[derive(Clone, Debug)]
pub struct ChannelApprover {
    tx: mpsc::Sender<PendingApproval>,
}

impl ChannelApprover {
    /// An approver and the receiving end its requests arrive on.
    pub fn new(capacity: usize) -> (ChannelApprover, mpsc::Receiver<PendingApproval>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelApprover { tx }, rx)
    }
}

impl Approver for ChannelApprover {
    fn name(&self) -> &str {
        "channel"
    }

    async fn review(&self, request: &ApprovalRequest) -> Result<Answer, ApprovalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(PendingApproval { request: request.clone(), reply })
            .await
            .map_err(|_| ApprovalError("nobody is listening for approvals".into()))?;
        rx.await.map_err(|_| ApprovalError("the approval request was dropped unanswered".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Action, Alarm, AlarmKind, ContainerName, ContainerStatus, Evidence, RestartReason, RootCause, Timestamp,
    };
    use std::time::Duration;

    fn request(id: u64) -> ApprovalRequest {
        ApprovalRequest {
            id,
            incident: 1,
            action: Action::Restart { target: "db-prod".into(), reason: RestartReason::OomKill },
            alarm: Alarm {
                kind: AlarmKind::DbCrash(RootCause::OomKill),
                container: ContainerName::new("db-prod"),
                evidence: Evidence { exit_code: Some(137), oom_killed: Some(true), ..Default::default() },
                raised_at: Timestamp(0),
            },
            crash: None,
            diagnosis: None,
        }
    }

    #[test]
    fn only_yes_approves() {
        assert_eq!(parse_answer(" YES \n", 3), Answer::Approve { request: 3 });
        assert_eq!(parse_answer("y", 3), Answer::Approve { request: 3 });
        for no in ["", "n", "no", "yess", "sure", "\u{0}"] {
            assert_eq!(parse_answer(no, 3), Answer::Reject, "{no:?}");
        }
    }

    /// An approver's answer as the incident machine takes it (binding to
    /// the request and the deadline are the machine's, tested in
    /// `tests/incident_machine.rs`): here only what the approver itself does
    /// with a timeout and a stale line.
    async fn ask<A: Approver>(approver: &A, request: &ApprovalRequest, timeout: Duration) -> (bool, String) {
        match tokio::time::timeout(timeout, approver.review(request)).await {
            Ok(Ok(Answer::Approve { request: id })) => (id == request.id, "approved".into()),
            Ok(Ok(Answer::Reject)) => (false, "rejected".into()),
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, format!("no answer within {}s", timeout.as_secs())),
        }
    }

    /// Issue 11: each channel names who answered; a digest only where a
    /// human was shown the request, and it changes with what is shown.
    #[test]
    fn each_channel_signs_its_answers() {
        let r = request(7);
        let shown = evidence_digest(&r).unwrap();
        let line = LineApprover::new(std::io::empty(), std::io::sink());
        assert_eq!(line.signoff(&r), Signoff { by: "terminal".into(), digest: Some(shown.clone()) });
        assert_eq!(TerminalApprover.signoff(&r), Signoff { by: "terminal".into(), digest: Some(shown.clone()) });
        assert_eq!(PolicyApprover::Deny.signoff(&r), Signoff { by: "policy:deny".into(), digest: None });
        let boxed: Box<dyn DynApprover> = Box::new(line);
        assert_eq!(boxed.signoff(&r).digest.as_deref(), Some(shown.as_str()));
        let mut other = r.clone();
        other.alarm.evidence.log_lines = vec!["another line".into()];
        assert_ne!(evidence_digest(&other).unwrap(), shown);
    }

    #[tokio::test]
    async fn policies_answer_for_the_request_asked() {
        assert_eq!(PolicyApprover::ApproveAll.review(&request(7)).await.unwrap(), Answer::Approve { request: 7 });
        assert_eq!(PolicyApprover::Deny.review(&request(7)).await.unwrap(), Answer::Reject);
    }

    #[tokio::test]
    async fn dropped_request_is_a_rejection() {
        let (approver, mut rx) = ChannelApprover::new(1);
        let answerer = tokio::spawn(async move { drop(rx.recv().await) });
        assert!(!ask(&approver, &request(1), Duration::from_secs(5)).await.0);
        answerer.await.unwrap();
    }

    /// Prompts written so far, for a test to wait on.
    #[derive(Clone, Default)]
    struct Screen(std::sync::Arc<std::sync::Mutex<String>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        async fn wait_for_prompts(&self, n: usize) {
            while self.0.lock().unwrap().matches("Approve? [y/N]").count() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    // Issue 8, item 6: a request that timed out leaves no read behind. The
    // line typed for the next prompt answers that prompt; a line typed while
    // no prompt shows answers nothing.
    #[tokio::test]
    async fn after_a_timeout_the_next_line_answers_the_next_request() {
        let (input, mut keys) = std::io::pipe().unwrap();
        let screen = Screen::default();
        let approver = LineApprover::new(input, screen.clone());
        let (ok, why) = ask(&approver, &request(1), Duration::from_millis(50)).await;
        assert!(!ok && why.contains("no answer"), "{why}");
        // Typed late, for request 1, while nothing is asked: dropped.
        keys.write_all(b"y\n").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!ask(&approver, &request(2), Duration::from_millis(100)).await.0, "a stale yes approved request 2");
        let third = tokio::spawn({
            let approver = approver.clone();
            async move { ask(&approver, &request(3), Duration::from_secs(10)).await }
        });
        screen.wait_for_prompts(3).await;
        keys.write_all(b"yes\n").unwrap();
        assert_eq!(third.await.unwrap(), (true, "approved".to_string()), "the answer was eaten");
        // End of input rejects at once.
        drop(keys);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ask(&approver, &request(4), Duration::from_secs(10)).await, (false, "rejected".to_string()));
    }

    // ... and a read waiting on a silent terminal does not keep the runtime
    // (`watch`) from shutting down.
    #[test]
    fn a_waiting_read_does_not_hold_up_shutdown() {
        // The writer stays open: the read never returns.
        let (input, _keys) = std::io::pipe().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let approver = LineApprover::new(input, std::io::sink());
        let (ok, _) = runtime.block_on(ask(&approver, &request(1), Duration::from_millis(20)));
        assert!(!ok);
        let (done, shut) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(runtime);
            let _ = done.send(());
        });
        assert!(shut.recv_timeout(Duration::from_secs(5)).is_ok(), "shutdown waited for a line");
    }

    // Issue 8, item 5: an approval is for one crash, in one state.
    #[test]
    fn a_binding_is_void_for_any_other_state_of_the_container() {
        use crate::model::{ContainerState, Health};
        let crashed = ContainerStatus {
            name: ContainerName::new("db-prod"),
            id: Some("c0ffee".into()),
            state: ContainerState::Exited,
            health: Health::None,
            exit_code: Some(137),
            oom_killed: true,
            started_at: Some(Timestamp(1_000)),
            finished_at: Some(Timestamp(9_000)),
            restart_policy: None,
            restart_count: None,
            health_log: Vec::new(),
        };
        let b = CrashBinding::of(&crashed, Some(RootCause::OomKill));
        assert_eq!(b.void_reason(&crashed), None);
        let changed = |f: &dyn Fn(&mut ContainerStatus)| {
            let mut s = crashed.clone();
            f(&mut s);
            b.void_reason(&s)
        };
        assert!(changed(&|s| s.id = Some("beef".into())).unwrap().contains("recreated"));
        assert!(changed(&|s| s.finished_at = Some(Timestamp(12_000))).unwrap().contains("ran again"));
        assert!(changed(&|s| s.started_at = Some(Timestamp(10_000))).unwrap().contains("ran again"));
        assert!(changed(&|s| s.oom_killed = false).is_some());
        assert!(changed(&|s| s.exit_code = Some(1)).is_some());
        let running = changed(&|s| {
            s.state = ContainerState::Running;
            s.health = Health::Starting;
        });
        assert!(running.unwrap().contains("running"));
        // The alarm's own crash, or a later one.
        let e = Evidence {
            fault_at: Some(Timestamp(9_000)),
            exit_code: Some(137),
            oom_killed: Some(true),
            ..Evidence::default()
        };
        assert_eq!(b.differs_from(&e), None);
        let older = Evidence { fault_at: Some(Timestamp(5_000)), ..e };
        assert!(b.differs_from(&older).unwrap().contains("crashed again"));
    }

    #[test]
    fn rendered_request_shows_the_evidence_and_escapes_log_lines() {
        let mut r = request(1);
        r.alarm.evidence.log_lines = vec!["evil\u{1b}[2J line".into()];
        let text = render_request(&r);
        assert!(text.contains("restart_database_risky('db-prod')"));
        assert!(text.contains("exit code: 137"), "{text}");
        assert!(text.contains("OOMKilled: true"), "{text}");
        assert!(text.contains("alarm: DB_CRASH — OOM Killer on db-prod"), "{text}");
        assert!(!text.contains('\u{1b}'), "terminal escapes from logs must not reach the operator's terminal");
    }

    // Issue #8, item 1: the approver sees every signature that matched.
    #[test]
    fn rendered_request_shows_every_signature_met() {
        use crate::model::SignatureMatch;
        let mut r = request(1);
        let sig = |cause, decided, unmet: &[&str], line: &str| SignatureMatch {
            cause,
            signature: format!("sig of {cause}"),
            decided,
            unmet: unmet.iter().map(|u| u.to_string()).collect(),
            lines: vec![line.to_string()],
        };
        r.alarm.evidence.matched_signature = Some("sig of OOM Killer".into());
        r.alarm.evidence.signatures = vec![
            sig(RootCause::DiskFull, false, &[], "PANIC:  disk line"),
            sig(RootCause::OomKill, true, &[], "oom line"),
            sig(RootCause::DataCorruption, false, &["disk usage at least 85.0% (seen 40.0%)"], "odd\u{1b} line"),
        ];
        let text = render_request(&r);
        assert!(text.contains("also matched: disk_full: sig of Disk Full"), "{text}");
        assert!(
            text.contains("partly matched: data_corruption: sig of DATA CORRUPTION — not met: disk usage"),
            "{text}"
        );
        assert!(text.contains("| PANIC:  disk line") && text.contains("| odd"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }
}
