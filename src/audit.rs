//! The append-only JSONL audit log: one record per step of every incident
//! (alarm, cause and evidence, decisions, approvals, outcomes, checks,
//! resolution), each with its timestamp.
//!
//! Records are written whole, one `write` a line. A crash or a full disk
//! can still leave a partial line; the reader reports it and carries on,
//! and the writer starts its next record on a fresh line, so one lost
//! record never takes the next one with it. Approvals, executions and
//! closings are synced to disk: the restart budget of the next run is read
//! from them.
//!
//! Auditing never stands in the way of healing: the taps (terminal
//! timeline, web console, metrics) see every record before it is written,
//! and a write that fails is reported loudly (stderr, a metric) once per
//! failure streak while the incident goes on.
//!
//! The file is created `0600` and never through a symbolic link: it holds
//! log lines from the containers (redacted, but still the host's business).
//!
//! [`AuditLog::reopen`] (SIGHUP in `watch`) opens the path again, so that
//! logrotate can move the file away: a failed reopen leaves the log where
//! it was.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::{Action, ContainerName, Outcome, Timestamp};

pub use opsguard_core::audit::*;

/// A callback that sees every record as it is written (live timelines).
pub type Tap = Box<dyn Fn(&AuditRecord) + Send + Sync>;

/// A callback told when writes to the audit file start failing (`Err`
/// with the error, at `ts`) and when they succeed again (`Ok`).
pub type WriteWatch = Box<dyn Fn(Timestamp, Result<(), String>) + Send + Sync>;

/// Where a file log's bytes go: the audit file, or in tests a writer that
/// fails like a full disk.
trait Sink: Write + Send {
    /// Makes what was written durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl Sink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

struct FileSink {
    path: PathBuf,
    out: Box<dyn Sink>,
    /// The file may end mid-line (a failed or partial write): the next
    /// record starts with a line break (an empty line is skipped by readers).
    mid_line: bool,
    /// Records not written since writes started failing (0: healthy).
    lost: u64,
}

impl FileSink {
    fn write(&mut self, rec: &AuditRecord) -> io::Result<()> {
        let mut line = Vec::with_capacity(512);
        if self.mid_line {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, rec).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write per record keeps concurrent appenders' lines whole.
        let written = self.out.write_all(&line);
        if written.is_err() {
            // How much reached the file is unknown.
            self.mid_line = true;
        }
        let result = written.and_then(|()| if durable(&rec.event) { self.out.sync() } else { Ok(()) });
        match result {
            Ok(()) => {
                self.mid_line = false;
                if self.lost > 0 {
                    crate::telemetry::audit_write_recovered(&self.path, self.lost);
                    self.lost = 0;
                }
                Ok(())
            }
            Err(e) => {
                self.lost += 1;
                crate::telemetry::audit_write_failed(&self.path, &e, self.lost == 1);
                Err(io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
            }
        }
    }
}

/// Records a crash must not lose: an approval (who said yes), an action
/// carried out (the next run's restart budget counts them) and a closing.
fn durable(event: &AuditEvent) -> bool {
    matches!(
        event,
        AuditEvent::ApprovalAnswered { .. } | AuditEvent::Executed { .. } | AuditEvent::IncidentClosed { .. }
    )
}

/// Opens (creating `0600`) the audit file for appending; refuses a symbolic
/// link or anything but a regular file at `path`, so a link planted there
/// cannot make OpsGuard (root) append to another file.
fn open_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(e.kind(), "is a symbolic link; the audit log must be a regular file")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other("is not a regular file; the audit log must be one"));
    }
    // A log made by an older version (or by hand) may be readable by all.
    if meta.permissions().mode() & 0o077 != 0
        && let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600))
    {
        tracing::warn!(path = %path.display(), error = %e, "audit log is readable by others and could not be made private");
    }
    Ok(file)
}

/// [`open_private`], and whether the file ends mid-line (a partial record
/// left by a crash): the next record then starts on a fresh line.
fn open_for_append(path: &Path) -> io::Result<(File, bool)> {
    let mut file = open_private(path)?;
    let len = file.metadata()?.len();
    let mut mid_line = false;
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        mid_line = last[0] != b'\n';
    }
    Ok((file, mid_line))
}

struct Inner {
    file: Option<FileSink>,
    memory: Option<Vec<AuditRecord>>,
    taps: Vec<Tap>,
    watches: Vec<WriteWatch>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("file", &self.file.as_ref().map(|f| &f.path))
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

/// Where records go: a file, memory, or both. Clones share the sink.
#[derive(Clone, Debug)]
pub struct AuditLog(Arc<Mutex<Inner>>);

impl AuditLog {
    /// Appends to `path`, creating it `0600`; starts on a fresh line if the
    /// file ends in a partial record. A symbolic link or anything but a
    /// regular file at `path` is refused.
    pub fn to_file(path: &Path) -> io::Result<AuditLog> {
        let (file, mid_line) = open_for_append(path)?;
        Ok(AuditLog::to_sink(path, Box::new(file), mid_line))
    }

    /// Opens a file log's path again and writes the next records there
    /// (SIGHUP after logrotate moved the file away: the records before stay
    /// in the moved file, the ones after go to a new one at the path), with
    /// the same checks as [`AuditLog::to_file`]. On error the log goes on
    /// writing where it did and the error says why. Returns the path
    /// reopened, `None` for a log that keeps no file.
    pub fn reopen(&self) -> io::Result<Option<PathBuf>> {
        let Some(path) = self.lock().file.as_ref().map(|f| f.path.clone()) else {
            return Ok(None);
        };
        // Opened outside the lock: records go on meanwhile, to the old file.
        let (file, mid_line) =
            open_for_append(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if let Some(sink) = &mut self.lock().file {
            sink.out = Box::new(file);
            sink.mid_line = mid_line;
        }
        Ok(Some(path))
    }

    fn to_sink(path: &Path, out: Box<dyn Sink>, mid_line: bool) -> AuditLog {
        AuditLog(Arc::new(Mutex::new(Inner {
            file: Some(FileSink { path: path.to_path_buf(), out, mid_line, lost: 0 }),
            memory: None,
            taps: Vec::new(),
            watches: Vec::new(),
        })))
    }

    /// Keeps records in memory only.
    pub fn in_memory() -> AuditLog {
        AuditLog(Arc::new(Mutex::new(Inner {
            file: None,
            memory: Some(Vec::new()),
            taps: Vec::new(),
            watches: Vec::new(),
        })))
    }

    /// Also keeps the records in memory (a file log read back by [`AuditLog::records`]).
    pub fn keep_in_memory(self) -> AuditLog {
        self.lock().memory.get_or_insert_with(Vec::new);
        self
    }

    /// Keeps records nowhere (benchmarks).
    pub fn discard() -> AuditLog {
        AuditLog(Arc::new(Mutex::new(Inner { file: None, memory: None, taps: Vec::new(), watches: Vec::new() })))
    }

    /// Also calls `tap` with every record, after the taps added before it
    /// (the terminal timeline, the web console and the metrics each add one).
    pub fn with_tap(self, tap: impl Fn(&AuditRecord) + Send + Sync + 'static) -> AuditLog {
        self.lock().taps.push(Box::new(tap));
        self
    }

    /// Also tells `watch` when writes to the file start failing and when
    /// they work again (once per failure streak, like the stderr warning):
    /// the notifier's "audit log failing" degradation.
    pub fn with_write_watch(self, watch: impl Fn(Timestamp, Result<(), String>) + Send + Sync + 'static) -> AuditLog {
        self.lock().watches.push(Box::new(watch));
        self
    }

    /// The records kept in memory (empty for a file-only log).
    pub fn records(&self) -> Vec<AuditRecord> {
        self.lock().memory.clone().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record. Every tap sees it whether or not the file write
    /// succeeds; an error here means only the file missed it (and has been
    /// reported, once per failure streak).
    pub fn record(&self, incident: u64, ts: Timestamp, event: AuditEvent) -> io::Result<()> {
        let rec = AuditRecord { ts, time: ts.to_rfc3339(), incident, event };
        let mut inner = self.lock();
        // The operator's views first: a full disk is exactly when they are needed.
        for tap in &inner.taps {
            tap(&rec);
        }
        let was_failing = inner.file.as_ref().is_some_and(|f| f.lost > 0);
        let written = match &mut inner.file {
            Some(sink) => sink.write(&rec),
            None => Ok(()),
        };
        let change = match (&written, was_failing) {
            (Err(e), false) => Some(Err(e.to_string())),
            (Ok(()), true) => Some(Ok(())),
            _ => None,
        };
        if let Some(change) = change {
            for watch in &inner.watches {
                watch(ts, change.clone());
            }
        }
        if let Some(mem) = &mut inner.memory {
            mem.push(rec);
        }
        written
    }
}

/// What reading an audit log found.
#[derive(Debug, Default)]
pub struct AuditRead {
    /// The records that parsed, in order.
    pub records: Vec<AuditRecord>,
    /// Lines that did not parse (1-based line number, first bytes), e.g. a
    /// partial last line after a crash.
    pub bad_lines: Vec<(usize, String)>,
}

/// Reads an audit log, skipping (and reporting) lines that do not parse.
pub fn read_audit(path: &Path) -> io::Result<AuditRead> {
    read_audit_from(BufReader::new(File::open(path)?))
}

/// A shared reader of every audit record (the web console, a metrics feed),
/// for code that passes one along before it is added with
/// [`AuditLog::with_tap`].
pub type SharedTap = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

/// Where a new `watch` picks up from the audit log it appends to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resume {
    /// One more than the highest incident id recorded (1 for a new log), so
    /// an id names one incident for `postmortem` and `replay`.
    pub next_incident: u64,
    /// Every restart recorded, per container: the restart budget outlives
    /// the process, so an OpsGuard that is itself restarted cannot restart a
    /// crash-looping database again and again.
    pub restarts: BTreeMap<ContainerName, Vec<Timestamp>>,
}

/// Reads [`Resume`] from the audit log at `path`; a log that does not exist
/// yet is a fresh start. Unreadable lines are skipped, as everywhere else.
pub fn resume(path: &Path) -> io::Result<Resume> {
    let read = match read_audit(path) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Resume { next_incident: 1, ..Resume::default() }),
        Err(e) => return Err(e),
    };
    let mut resume = Resume { next_incident: 1, ..Resume::default() };
    for r in &read.records {
        resume.next_incident = resume.next_incident.max(r.incident.saturating_add(1));
        // A restart that failed may still have happened (a timeout): it
        // counts, as it did in the run that recorded it. So does one whose
        // re-check failed before it: the log cannot tell them apart, and
        // over-counting only escalates sooner.
        if let AuditEvent::Executed {
            action: Action::Restart { target, .. },
            outcome: Outcome::Restarted | Outcome::Failed { .. },
        } = &r.event
        {
            resume.restarts.entry(target.clone()).or_default().push(r.ts);
        }
    }
    Ok(resume)
}

/// How every record's line begins (`ts` is the first field serialized).
const RECORD_START: &str = "{\"ts\":";

/// Reads audit records from any reader.
pub fn read_audit_from<R: BufRead>(mut reader: R) -> io::Result<AuditRead> {
    let mut out = AuditRead::default();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditRecord>(line) {
            Ok(r) => out.records.push(r),
            Err(_) => {
                out.bad_lines.push((n, crate::classify::truncate(line, 80).to_string()));
                // An older writer appended the next record right after a
                // partial one: keep that record.
                if let Some(r) = line
                    .rfind(RECORD_START)
                    .filter(|&i| i > 0)
                    .and_then(|i| serde_json::from_str::<AuditRecord>(&line[i..]).ok())
                {
                    out.records.push(r);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alarm, AlarmKind, ContainerName, Evidence, RootCause};

    fn opened() -> AuditEvent {
        AuditEvent::IncidentOpened {
            alarm: Alarm {
                kind: AlarmKind::DbCrash(RootCause::DiskFull),
                container: ContainerName::new("db-prod"),
                evidence: Evidence { exit_code: Some(1), ..Default::default() },
                raised_at: Timestamp(5),
            },
        }
    }

    #[test]
    fn every_tap_sees_every_record_in_order() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let (a, b) = (seen.clone(), seen.clone());
        let log = AuditLog::in_memory()
            .with_tap(move |r| a[0].store(a[0].load(Ordering::SeqCst) * 10 + r.incident, Ordering::SeqCst))
            .with_tap(move |r| b[1].store(b[1].load(Ordering::SeqCst) * 10 + r.incident, Ordering::SeqCst));
        for id in [1, 2, 3] {
            log.record(id, Timestamp(id), AuditEvent::Decided { action: Action::PruneContainers }).unwrap();
        }
        assert_eq!(seen[0].load(Ordering::SeqCst), 123);
        assert_eq!(seen[1].load(Ordering::SeqCst), 123);
        assert_eq!(log.records().len(), 3);
    }

    #[test]
    fn a_new_watch_resumes_incident_ids_and_restarts_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert_eq!(resume(&path).unwrap(), Resume { next_incident: 1, restarts: BTreeMap::new() });
        let log = AuditLog::to_file(&path).unwrap();
        for id in [1, 2, 7, 3] {
            log.record(id, Timestamp(id), AuditEvent::Decided { action: Action::PruneContainers }).unwrap();
        }
        let db = ContainerName::new("db-prod");
        let restart = Action::Restart { target: db.clone(), reason: crate::model::RestartReason::OomKill };
        log.record(2, Timestamp(50), AuditEvent::Executed { action: restart.clone(), outcome: Outcome::Restarted })
            .unwrap();
        // A refused restart is not a restart.
        log.record(3, Timestamp(60), AuditEvent::Executed { action: restart, outcome: Outcome::ApprovalRejected })
            .unwrap();
        drop(log);
        // A crash left half a line behind: it does not hide the ids before it.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"incident\": 99").unwrap();
        let r = resume(&path).unwrap();
        assert_eq!(r.next_incident, 8);
        assert_eq!(r.restarts, BTreeMap::from([(db, vec![Timestamp(50)])]));
    }

    #[test]
    fn records_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::to_file(&path).unwrap();
        log.record(1, Timestamp(10), opened()).unwrap();
        log.record(1, Timestamp(20), AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 4 })
            .unwrap();
        let read = read_audit(&path).unwrap();
        assert!(read.bad_lines.is_empty());
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[0].event, opened());
        assert_eq!(read.records[1].ts, Timestamp(20));
    }

    #[test]
    fn partial_last_line_after_a_crash_does_not_stop_reading_or_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        AuditLog::to_file(&path).unwrap().record(1, Timestamp(10), opened()).unwrap();
        // A crash mid-write leaves half a record without its newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"ts":11,"time":"1970-01-01T00:00:00.011Z","incident":1,"event":"dec"#).unwrap();
        drop(f);
        let read = read_audit(&path).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.bad_lines.len(), 1);
        assert_eq!(read.bad_lines[0].0, 2);
        // Reopening appends on a fresh line: the next record survives whole.
        AuditLog::to_file(&path).unwrap().record(2, Timestamp(12), opened()).unwrap();
        let read = read_audit(&path).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[1].incident, 2);
        assert_eq!(read.bad_lines.len(), 1);
    }

    /// A disk that takes `room` more bytes, then fails with ENOSPC.
    #[derive(Clone, Default)]
    struct FullDisk {
        bytes: Arc<Mutex<Vec<u8>>>,
        room: Arc<std::sync::atomic::AtomicUsize>,
        syncs: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            use std::sync::atomic::Ordering;
            let room = self.room.load(Ordering::SeqCst);
            if room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = room.min(buf.len());
            self.room.store(room - n, Ordering::SeqCst);
            self.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink for FullDisk {
        fn sync(&mut self) -> io::Result<()> {
            self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_neither_silences_the_taps_nor_corrupts_the_next_record() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let disk = FullDisk::default();
        disk.room.store(usize::MAX, Ordering::SeqCst);
        let seen = Arc::new(AtomicUsize::new(0));
        let tap = seen.clone();
        let log = AuditLog::to_sink(Path::new("audit.jsonl"), Box::new(disk.clone()), false).with_tap(move |_| {
            tap.fetch_add(1, Ordering::SeqCst);
        });
        let decided = || AuditEvent::Decided { action: Action::PruneContainers };
        log.record(1, Timestamp(1), opened()).unwrap();
        // The disk fills up in the middle of the second record.
        disk.room.store(20, Ordering::SeqCst);
        let err = log.record(1, Timestamp(2), decided()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("audit.jsonl"), "{err}");
        assert!(log.record(1, Timestamp(3), decided()).is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 3, "the timeline and the console saw every record");
        // Space is freed: the next record starts on its own line and parses.
        disk.room.store(usize::MAX, Ordering::SeqCst);
        log.record(1, Timestamp(4), AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 2 }).unwrap();
        let bytes = disk.bytes.lock().unwrap().clone();
        let read = read_audit_from(&bytes[..]).unwrap();
        let ts: Vec<u64> = read.records.iter().map(|r| r.ts.0).collect();
        assert_eq!(ts, vec![1, 4], "{}", String::from_utf8_lossy(&bytes));
        // On a line of its own, not glued to the partial one.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let last = text.lines().rfind(|l| !l.is_empty()).unwrap();
        assert_eq!(serde_json::from_str::<AuditRecord>(last).unwrap().ts, Timestamp(4), "{text}");
        assert_eq!(read.bad_lines.len(), 1);
        // Only the closing asked for a sync.
        assert_eq!(disk.syncs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failing_writes_show_in_the_metrics_while_they_last() {
        use std::sync::atomic::Ordering;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let disk = FullDisk::default();
        let log = AuditLog::to_sink(Path::new("audit.jsonl"), Box::new(disk.clone()), false);
        let decided = || AuditEvent::Decided { action: Action::PruneContainers };
        metrics::with_local_recorder(&recorder, || {
            for t in 0..3 {
                assert!(log.record(1, Timestamp(t), decided()).is_err());
            }
        });
        let text = handle.render();
        assert!(text.contains("opsguard_audit_write_failures_total 3"), "{text}");
        assert!(text.contains("opsguard_audit_failing 1"), "{text}");
        disk.room.store(usize::MAX, Ordering::SeqCst);
        metrics::with_local_recorder(&recorder, || log.record(1, Timestamp(9), decided()).unwrap());
        assert!(handle.render().contains("opsguard_audit_failing 0"));
    }

    #[test]
    fn a_write_watch_hears_the_first_failure_and_the_recovery_only() {
        use std::sync::atomic::Ordering;
        let disk = FullDisk::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let ear = heard.clone();
        let log = AuditLog::to_sink(Path::new("audit.jsonl"), Box::new(disk.clone()), false).with_write_watch(
            move |ts, change| ear.lock().unwrap().push((ts.0, change.map_err(|e| e.contains("audit.jsonl")))),
        );
        let decided = || AuditEvent::Decided { action: Action::PruneContainers };
        for t in 1..=3 {
            assert!(log.record(1, Timestamp(t), decided()).is_err());
        }
        disk.room.store(usize::MAX, Ordering::SeqCst);
        log.record(1, Timestamp(4), decided()).unwrap();
        log.record(1, Timestamp(5), decided()).unwrap();
        assert_eq!(*heard.lock().unwrap(), vec![(1, Err(true)), (4, Ok(()))]);
    }

    #[test]
    fn approvals_and_executions_are_synced() {
        use std::sync::atomic::Ordering;
        let disk = FullDisk::default();
        disk.room.store(usize::MAX, Ordering::SeqCst);
        let log = AuditLog::to_sink(Path::new("audit.jsonl"), Box::new(disk.clone()), false);
        let answered = AuditEvent::unsigned_answer(1, true, "web", "approved");
        log.record(1, Timestamp(1), answered).unwrap();
        assert_eq!(disk.syncs.load(Ordering::SeqCst), 1);
        log.record(
            1,
            Timestamp(2),
            AuditEvent::Executed { action: Action::PruneContainers, outcome: Outcome::Pruned { removed: 3 } },
        )
        .unwrap();
        assert_eq!(disk.syncs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_file_is_private_and_never_reached_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        AuditLog::to_file(&path).unwrap().record(1, Timestamp(1), opened()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A log left readable by all is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuditLog::to_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A link planted at the path is refused and its target untouched.
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "root:x:0:0\n").unwrap();
        let link = dir.path().join("linked.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = AuditLog::to_file(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
        // So is a directory or a device.
        assert!(AuditLog::to_file(dir.path()).is_err());
    }

    #[test]
    fn reopening_after_logrotate_writes_the_next_records_to_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let log = AuditLog::to_file(&path).unwrap();
        log.record(1, Timestamp(1), opened()).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        // Until the reopen, records follow the moved file.
        log.record(2, Timestamp(2), opened()).unwrap();
        assert_eq!(log.reopen().unwrap(), Some(path.clone()));
        log.record(3, Timestamp(3), opened()).unwrap();
        let ids = |p: &Path| read_audit(p).unwrap().records.iter().map(|r| r.incident).collect::<Vec<_>>();
        assert_eq!(ids(&rotated), vec![1, 2]);
        assert_eq!(ids(&path), vec![3]);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Reopening a path that was not moved appends to the same file.
        log.reopen().unwrap();
        log.record(4, Timestamp(4), opened()).unwrap();
        assert_eq!(ids(&path), vec![3, 4]);
    }

    #[test]
    fn reopening_starts_on_a_fresh_line_and_refuses_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::to_file(&path).unwrap();
        log.record(1, Timestamp(1), opened()).unwrap();
        // Something else left half a record at the path.
        std::fs::rename(&path, dir.path().join("old")).unwrap();
        std::fs::write(&path, br#"{"ts":11,"incident":9"#).unwrap();
        log.reopen().unwrap();
        log.record(2, Timestamp(2), opened()).unwrap();
        let read = read_audit(&path).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].incident, 2);
        assert_eq!(read.bad_lines.len(), 1);
        // A link planted at the path: refused, the log goes on where it was.
        std::fs::rename(&path, dir.path().join("older")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "x\n").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = log.reopen().unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        log.record(3, Timestamp(3), opened()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "x\n");
        let ids: Vec<u64> = read_audit(&dir.path().join("older")).unwrap().records.iter().map(|r| r.incident).collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn a_reopen_that_fails_keeps_recording_to_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("audit.jsonl");
        let moved = dir.path().join("audit.jsonl.1");
        let log = AuditLog::to_file(&path).unwrap().keep_in_memory();
        log.record(1, Timestamp(1), opened()).unwrap();
        // The directory is gone (a read-only one stops no root): the path
        // cannot be opened again.
        std::fs::rename(&path, &moved).unwrap();
        std::fs::remove_dir(&logs).unwrap();
        let err = log.reopen().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("audit.jsonl"), "{err}");
        log.record(2, Timestamp(2), opened()).unwrap();
        let ids: Vec<u64> = read_audit(&moved).unwrap().records.iter().map(|r| r.incident).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(log.records().len(), 2);
        // A log without a file has nothing to reopen.
        assert_eq!(AuditLog::in_memory().reopen().unwrap(), None);
    }

    #[test]
    fn a_record_glued_to_a_partial_one_is_still_read() {
        let mut log = br#"{"ts":1,"time":"x","incident":1,"event":"deci"#.to_vec();
        let rec = AuditRecord {
            ts: Timestamp(2),
            time: Timestamp(2).to_rfc3339(),
            incident: 1,
            event: AuditEvent::Decided { action: Action::PruneContainers },
        };
        log.extend(serde_json::to_vec(&rec).unwrap());
        log.push(b'\n');
        let read = read_audit_from(&log[..]).unwrap();
        assert_eq!(read.records, vec![rec]);
        assert_eq!(read.bad_lines.len(), 1);
    }

    #[test]
    fn garbage_input_is_reported_not_fatal() {
        let read = read_audit_from(&b"\xff\xfe not json\n\n{}\n"[..]).unwrap();
        assert!(read.records.is_empty());
        assert_eq!(read.bad_lines.len(), 2);
    }
}
