//! The chaos engine for the real lab: injects each [`Scenario`] (and each
//! [`StatelessScenario`] into a stateless service) into the
//! Docker lab (`docker-compose.yml`, `lab/up.sh`) following the verified
//! recipes of `lab/faults.sh`, records what it did as JSON lines, and puts
//! the lab back to healthy.
//!
//! Everything goes through [`DockerHost`] (exec in a running container, a
//! short-lived helper container mounting a stopped one's volumes, stop,
//! start, restart) and only touches containers carrying the scope label:
//! each action first passes [`DockerHost::inspect_in_scope`], the healing
//! tools' check, then acts on the id it inspected, and a scenario whose
//! target is out of scope is refused before anything is done. The zombies
//! it creates carry the label too, with `opsguard.role=zombie` and
//! `opsguard.prune=true` (only such containers are pruned).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder,
};
use serde::{Deserialize, Serialize};

use crate::chaos::{Expected, Scenario, StatelessScenario};
use crate::clock::{Clock, SystemClock};
use crate::host::docker::{CommandOutput, DockerHost, ROLE_LABEL, labels_match, map_error};
use crate::host::{Host, HostError, HostErrorKind, PRUNE_LABEL};
use crate::model::{ContainerState, Timestamp};

/// The lab's web container.
pub const WEB: &str = "web-prod";
/// The lab's database container.
pub const DB: &str = "db-prod";
/// The role label value of chaos zombies.
pub const ZOMBIE_ROLE: &str = "zombie";
/// How many memory hogs `db-oom-kill` runs at most before giving up.
const OOM_ATTEMPTS: u32 = 3;
/// How many zombies `zombies` creates.
pub const ZOMBIES: u32 = 15;
/// The garbage of `db-garbage-flood` (non-log data on the database's disk).
pub const DB_GARBAGE: &str = "/root/garbage.bin";
/// The crash log of `chain-reaction`.
pub const DB_CRASH_LOG: &str = "/var/log/postgres_crash.log";
/// The garbage log of `web-disk-fill`.
pub const WEB_GARBAGE: &str = "/var/log/nginx/chaos_garbage.log";
/// The log `web-log-slow-fill` grows.
pub const WEB_SLOW_LOG: &str = "/var/log/nginx/chaos_slow_fill.log";
/// While this file exists in `web-prod`, the slow fill's writer stops.
const WEB_SLOW_STOP: &str = "/run/opsguard-slow-fill.stop";
/// The slow fill's writer, detached: 256 KiB appended to `$1` every second
/// (about 0.45 % of the lab's 56 MB web log disk: 85 % about three minutes
/// after an empty disk), at most 240 times, until `$2` exists.
const SLOW_FILL_SH: &str = r#"rm -f "$2"; (i=0; while [ $i -lt 240 ] && [ ! -e "$2" ]; do dd if=/dev/zero of="$1" bs=256k count=1 oflag=append conv=notrunc status=none 2>/dev/null; sleep 1; i=$((i+1)); done) </dev/null >/dev/null 2>&1 &"#;
/// Where `db-data-corruption` keeps the original control file, for reset.
pub const PG_CONTROL_BACKUP: &str = "/root/pg_control.opsguard-backup";

/// Fill the filesystem holding `$1` to 100 % (1 MiB writes, then 1 KiB
/// writes for the last partial MiB); dd ends with ENOSPC on purpose.
const FILL_SH: &str = r#"f=$1; dd if=/dev/zero of="$f" bs=1M oflag=append conv=notrunc status=none 2>/dev/null; dd if=/dev/zero of="$f" bs=1k oflag=append conv=notrunc status=none 2>/dev/null; sync; true"#;
/// Generate WAL until a segment switch PANICs on the full disk.
const WAL_SH: &str = r#"for i in $(seq 1 100); do psql -U postgres -qAt -c "SELECT txid_current()" -c "SELECT pg_switch_wal()" >/dev/null 2>&1 || exit 0; done; echo "no PANIC after 100 WAL switches" >&2"#;
/// Repair the database's disk: remove every chaos artefact, keep the data.
const DB_REPAIR_SH: &str = r#"rm -f /root/garbage.bin /var/log/postgres_crash.log
if [ -f /root/pg_control.opsguard-backup ]; then cp -p /root/pg_control.opsguard-backup "$PGDATA/global/pg_control" && rm -f /root/pg_control.opsguard-backup; fi
if [ -f "$PGDATA/postgresql.conf" ]; then sed -i '/opsguard-chaos/d' "$PGDATA/postgresql.conf"; fi
true"#;

/// In a stateless service: while this file exists every start fails (the
/// lab's `shop-api` exits 3 quoting it); kept across restarts of the same
/// container, gone when it is recreated.
pub const STATELESS_BROKEN: &str = "/etc/opsguard-chaos.broken";
/// In a stateless service: its health check wants this file, which each
/// start creates.
pub const STATELESS_READY: &str = "/run/opsguard-chaos.ready";

/// One thing the chaos engine did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosStep {
    /// What (`exec db-prod: fill /root/garbage.bin`, `stop db-prod`, …).
    pub what: String,
    /// How long it took.
    pub ms: u64,
    /// Its result (`exit 0`, `ok`, an error).
    pub result: String,
}

/// The record of one injection or reset, one JSON line in the chaos log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosRecord {
    /// When it started (ms since the epoch).
    pub ts: Timestamp,
    /// The same, for humans.
    pub time: String,
    /// `inject` or `reset`.
    pub op: String,
    /// The scenario (none for a reset).
    pub scenario: Option<String>,
    /// The alarm and outcome OpsGuard must reach.
    pub expected: Option<ExpectedRecord>,
    /// What was done.
    pub steps: Vec<ChaosStep>,
    /// Whether every step did what it should.
    pub ok: bool,
    /// When the fault took effect, when the engine knows better than "at
    /// the end of the injection" (the zombies' kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_at: Option<Timestamp>,
    /// Total time.
    pub duration_ms: u64,
}

/// [`Expected`] in a serialisable form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRecord {
    /// The alarm (`DB_CRASH — OOM Killer`).
    pub alarm: String,
    /// The resolution (`resolved`, or `stopped: …`).
    pub resolution: crate::audit::Resolution,
    /// Whether a human must approve the fix.
    pub needs_approval: bool,
}

impl From<Expected> for ExpectedRecord {
    fn from(e: Expected) -> Self {
        ExpectedRecord { alarm: e.alarm.to_string(), resolution: e.resolution, needs_approval: e.needs_approval }
    }
}

/// A chaos failure.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The host failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The fault did not take.
    #[error("{0}")]
    Failed(String),
    /// The record could not be written.
    #[error("chaos record: {0}")]
    Record(#[from] std::io::Error),
}

/// Injects faults into the Docker lab.
#[derive(Clone, Debug)]
pub struct DockerChaos {
    host: DockerHost,
    record: Option<PathBuf>,
    lab_scripts: Option<PathBuf>,
}

struct Recorder {
    steps: Vec<ChaosStep>,
    ok: bool,
    fault_at: Option<Timestamp>,
    /// The database's last exit before the injection: a later one is this
    /// fault's, even when a watching OpsGuard restarted it before we looked.
    db_exit_before: Option<Timestamp>,
}

impl Recorder {
    fn new(db_exit_before: Option<Timestamp>) -> Recorder {
        Recorder { steps: Vec::new(), ok: true, fault_at: None, db_exit_before }
    }

    fn push(&mut self, what: impl Into<String>, t0: Instant, result: Result<String, String>) {
        let ms = t0.elapsed().as_millis() as u64;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.ok = false;
                format!("error: {e}")
            }
        };
        self.steps.push(ChaosStep { what: what.into(), ms, result });
    }
}

/// Whether the container exited after `before` (its exit before the fault).
fn exited_since(s: &crate::host::ContainerStatus, before: Option<Timestamp>) -> bool {
    match (s.finished_at, before) {
        (Some(now), Some(before)) => now > before,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A step whose command must have exited 0.
fn exit_zero(described: String) -> Result<String, String> {
    if described.starts_with("exit 0") { Ok(described) } else { Err(described) }
}

fn describe(out: &Result<CommandOutput, HostError>) -> Result<String, String> {
    match out {
        Ok(o) if o.stderr.trim().is_empty() => Ok(format!("exit {}", o.exit_code)),
        Ok(o) => Ok(format!("exit {}: {}", o.exit_code, crate::classify::truncate(o.stderr.trim(), 200))),
        Err(e) => Err(e.to_string()),
    }
}

impl DockerChaos {
    /// A chaos engine acting through `host`, appending its records to
    /// `record` (if any); `lab_scripts` is the `lab/` directory for a full
    /// reset.
    pub fn new(host: DockerHost, record: Option<PathBuf>, lab_scripts: Option<PathBuf>) -> DockerChaos {
        DockerChaos { host, record, lab_scripts }
    }

    /// The host.
    pub fn host(&self) -> &DockerHost {
        &self.host
    }

    /// Writes down what `r` did, started at `start` (`t0`), and fails with
    /// `failed` and the steps when a step did not do what it should.
    fn conclude(
        &self,
        op: &str,
        scenario: Option<String>,
        expected: Option<ExpectedRecord>,
        r: Recorder,
        (start, t0): (Timestamp, Instant),
        failed: &str,
    ) -> Result<ChaosRecord, ChaosError> {
        let rec = ChaosRecord {
            ts: start,
            time: start.to_rfc3339(),
            op: op.into(),
            scenario,
            expected,
            steps: r.steps,
            ok: r.ok,
            fault_at: r.fault_at,
            duration_ms: t0.elapsed().as_millis() as u64,
        };
        self.write(&rec)?;
        if !rec.ok {
            return Err(ChaosError::Failed(format!("{failed}: {:?}", rec.steps)));
        }
        Ok(rec)
    }

    fn write(&self, rec: &ChaosRecord) -> Result<(), ChaosError> {
        if let Some(path) = &self.record {
            let mut f = OpenOptions::new().create(true).append(true).open(path)?;
            let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
        }
        Ok(())
    }

    /// The id of `container` when it carries the scope label, through the
    /// same check as the healing tools ([`DockerHost::inspect_in_scope`]);
    /// [`HostErrorKind::OutOfScope`] otherwise. Chaos then acts on that id,
    /// not the name, so a container renamed into place meanwhile is not hit.
    async fn scoped_id(&self, container: &str, op: &str) -> Result<String, HostError> {
        let info = self.host.inspect_in_scope(container, op).await?;
        info.id.filter(|id| !id.is_empty()).ok_or_else(|| HostError::new(HostErrorKind::BadResponse, op, "no id"))
    }

    /// `exec` in `container`, only if it is in scope.
    async fn exec(&self, container: &str, cmd: &[&str]) -> Result<CommandOutput, HostError> {
        let id = self.scoped_id(container, &format!("chaos exec in {container}")).await?;
        self.host.exec(&id, cmd).await
    }

    /// Sends `signal` to `container`'s main process (in scope only):
    /// `SIGSTOP` hangs a server without ending it, `SIGCONT` lets it go on.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<String, String> {
        let opts = bollard::query_parameters::KillContainerOptionsBuilder::new().signal(signal).build();
        self.send_kill(container, format!("chaos kill -s {signal} {container}"), Some(opts)).await
    }

    /// Waits up to `limit` until Docker's health check says `container`
    /// is unhealthy while it runs.
    async fn until_unhealthy(&self, container: &str, limit: Duration) -> Result<String, String> {
        let t = Instant::now();
        loop {
            match self.host.inspect(container).await {
                Ok(s) if s.state == ContainerState::Running && s.health == crate::model::Health::Unhealthy => {
                    return Ok(format!("unhealthy after {} ms", t.elapsed().as_millis()));
                }
                Ok(_) if t.elapsed() < limit => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(s) => return Err(format!("still {} ({:?}) after {limit:?}", s.state.as_str(), s.health)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// SIGKILL `container`, only if it is in scope.
    async fn kill(&self, container: &str) -> Result<String, String> {
        self.send_kill(container, format!("chaos kill {container}"), None).await
    }

    /// Docker's kill of `container` with `opts` (its default: SIGKILL),
    /// on the id it has in scope.
    async fn send_kill(
        &self,
        container: &str,
        op: String,
        opts: Option<bollard::query_parameters::KillContainerOptions>,
    ) -> Result<String, String> {
        let id = self.scoped_id(container, &op).await.map_err(|e| e.to_string())?;
        self.host
            .client()
            .kill_container(&id, opts)
            .await
            .map(|()| "ok".to_string())
            .map_err(|e| map_error(&op, e).to_string())
    }

    /// Refuses, before doing anything, a scenario or reset whose containers
    /// do not all carry the scope label.
    async fn preflight(&self, what: &str, containers: &[&str]) -> Result<(), ChaosError> {
        for c in containers {
            self.scoped_id(c, &format!("chaos {what}")).await?;
        }
        Ok(())
    }

    /// Injects `scenario`; returns once the fault has happened (the database
    /// is down for the database scenarios), or an error saying what did not.
    /// A target without the scope label is refused before anything is done
    /// ([`ChaosError::Host`] with [`HostErrorKind::OutOfScope`]).
    pub async fn inject(&self, scenario: Scenario) -> Result<ChaosRecord, ChaosError> {
        self.inject_on(scenario, None).await
    }

    /// [`Self::inject`] into `target` instead of the lab's web server or
    /// database (issue #10: `db-oom-kill --target shop-db`). The target is
    /// what the scenario hits, so it must be of the scenario's kind: a
    /// database for the `db-*` and `chain-reaction`, a web server with the
    /// lab's log directory for the `web-*`; zombies are made by chaos and
    /// take no target.
    pub async fn inject_on(&self, scenario: Scenario, target: Option<&str>) -> Result<ChaosRecord, ChaosError> {
        let start = SystemClock.now();
        let t0 = Instant::now();
        let web_scenario = matches!(scenario, Scenario::WebDiskFill | Scenario::WebLogSlowFill);
        let (web, db) = match (target, web_scenario) {
            (Some(_), _) if scenario == Scenario::Zombies => {
                return Err(ChaosError::Failed("zombies are made by chaos: --target does not apply".into()));
            }
            (Some(t), true) => (t, DB),
            (Some(t), false) => (WEB, t),
            (None, _) => (WEB, DB),
        };
        let targets: &[&str] = match scenario {
            Scenario::WebDiskFill | Scenario::WebLogSlowFill => &[web],
            // Zombies are containers chaos creates, labelled in scope.
            Scenario::Zombies => &[],
            _ => &[db],
        };
        self.preflight(scenario.name(), targets).await?;
        let h = self;
        let db_exit_before = self.host.inspect(db).await.ok().and_then(|s| s.finished_at);
        let mut r = Recorder::new(db_exit_before);
        match scenario {
            Scenario::WebDiskFill => {
                let t = Instant::now();
                let out = h
                    .exec(
                        web,
                        &[
                            "sh",
                            "-c",
                            "dd if=/dev/zero of=\"$1\" bs=1M count=2048 status=none 2>/dev/null; true",
                            "fill",
                            WEB_GARBAGE,
                        ],
                    )
                    .await;
                r.push(format!("exec {web}: dd 2 GB into {WEB_GARBAGE}"), t, describe(&out));
            }
            Scenario::WebLogSlowFill => {
                let t = Instant::now();
                let out = h.exec(web, &["sh", "-c", SLOW_FILL_SH, "fill", WEB_SLOW_LOG, WEB_SLOW_STOP]).await;
                r.push(format!("exec {web}: append 256 KiB a second to {WEB_SLOW_LOG}"), t, describe(&out));
            }
            Scenario::Zombies => {
                let t = Instant::now();
                let res = self.spawn_zombies(ZOMBIES, &mut r.fault_at).await;
                r.push(format!("create {ZOMBIES} exited containers labelled {ROLE_LABEL}={ZOMBIE_ROLE}"), t, res);
            }
            Scenario::DbGarbageFlood => {
                let t = Instant::now();
                let out = h.exec(db, &["sh", "-c", FILL_SH, "fill", DB_GARBAGE]).await;
                r.push(format!("exec {db}: fill the disk with {DB_GARBAGE}"), t, describe(&out));
                let t = Instant::now();
                let out = h.exec(db, &["bash", "-c", WAL_SH]).await;
                // The exec dies with the server: an error here is the point.
                r.steps.push(ChaosStep {
                    what: format!("exec {db}: generate WAL until a segment switch PANICs"),
                    ms: t.elapsed().as_millis() as u64,
                    result: describe(&out).unwrap_or_else(|e| e),
                });
                self.wait_down(&mut r, db, Duration::from_secs(30)).await;
            }
            Scenario::DbConfigCorruption => {
                let t = Instant::now();
                let out = h
                    .exec(
                        db,
                        &["sh", "-c", "echo 'shared_buffers = = 16MB  # opsguard-chaos' >>\"$PGDATA/postgresql.conf\""],
                    )
                    .await;
                r.push(format!("exec {db}: append a broken line to postgresql.conf"), t, describe(&out));
                let t = Instant::now();
                let res = self.host.restart(db).await.map(|()| "ok".to_string()).map_err(|e| e.to_string());
                r.push(format!("restart {db} (as a deploy would)"), t, res);
                self.wait_down(&mut r, db, Duration::from_secs(30)).await;
            }
            Scenario::DbOomKill => {
                // The postmaster carries oom_score_adj 1000, so the kernel
                // kills it rather than the hog; yet CI once saw the hog
                // killed and the database still up (2 of ~8 runs under a
                // loaded host). A second hog is the same real fault, so
                // try again, a few times, each attempt on the record.
                for attempt in 1..=OOM_ATTEMPTS {
                    let t = Instant::now();
                    let out = h.exec(db, &["tail", "/dev/zero"]).await;
                    r.steps.push(ChaosStep {
                        what: format!(
                            "exec {db}: tail /dev/zero (memory hog under the 128 MB limit), attempt {attempt}"
                        ),
                        ms: t.elapsed().as_millis() as u64,
                        result: describe(&out).unwrap_or_else(|e| e),
                    });
                    if attempt == OOM_ATTEMPTS
                        || self.db_down(db, r.db_exit_before, Duration::from_secs(5)).await.is_ok()
                    {
                        break;
                    }
                }
                self.wait_down(&mut r, db, Duration::from_secs(30)).await;
            }
            Scenario::DbDataCorruption => {
                // Overwrite while it runs, SIGKILL (no shutdown checkpoint
                // rewrites the control file) and start at once: the gap between
                // the kill and the failed start is shorter than the observer's
                // settle time, so OpsGuard sees the corruption, not a stop.
                let t = Instant::now();
                let script = format!(
                    "cp -p \"$PGDATA/global/pg_control\" {PG_CONTROL_BACKUP}; printf OPSGUARD-CHAOS | dd of=\"$PGDATA/global/pg_control\" bs=1 seek=16 conv=notrunc status=none"
                );
                let out = h.exec(db, &["sh", "-c", &script]).await;
                r.push(
                    format!("exec {db}: overwrite 14 bytes of global/pg_control (backup {PG_CONTROL_BACKUP})"),
                    t,
                    describe(&out),
                );
                let t = Instant::now();
                let res = self.kill(db).await;
                r.push(format!("kill {db} (SIGKILL)"), t, res);
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(10)
                    && self.host.inspect(db).await.is_ok_and(|s| s.state == ContainerState::Running)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let t = Instant::now();
                let res = self.start(db).await;
                r.push(format!("start {db}"), t, res);
                self.wait_down(&mut r, db, Duration::from_secs(30)).await;
            }
            Scenario::DbHang => {
                let t = Instant::now();
                let res = self.signal(db, "SIGSTOP").await;
                let stopped = res.is_ok();
                r.push(format!("kill -STOP {db}: the server runs and answers nothing"), t, res);
                if stopped {
                    // Docker says unhealthy after its retries (3 × 5 s on the lab).
                    let t = Instant::now();
                    let res = self.until_unhealthy(db, Duration::from_secs(60)).await;
                    if res.is_ok() {
                        r.fault_at = Some(SystemClock.now());
                    }
                    r.push(format!("{db} is unhealthy by Docker's own check"), t, res);
                }
            }
            Scenario::ChainReaction => {
                let t = Instant::now();
                let out = h.exec(db, &["sh", "-c", FILL_SH, "fill", DB_CRASH_LOG]).await;
                r.push(format!("exec {db}: crash log {DB_CRASH_LOG} fills the disk to 100%"), t, describe(&out));
                let t = Instant::now();
                let res = self.stop(db).await;
                r.push(format!("stop {db}: the database goes down"), t, res);
                let t = Instant::now();
                let out = self.helper(db, &["sh", "-c", FILL_SH, "fill", DB_CRASH_LOG]).await;
                r.push("helper: take the blocks the shutdown freed", t, describe(&out));
                self.wait_down(&mut r, db, Duration::from_secs(30)).await;
            }
        }
        let failed = format!("{scenario} did not take");
        let name = match target {
            Some(t) => format!("{scenario} --target {}", crate::redact::printable(t)),
            None => scenario.name().into(),
        };
        let (name, expected) = (Some(name), Some(scenario.expected().into()));
        self.conclude("inject", name, expected, r, (start, t0), &failed)
    }

    /// Waits up to `limit` for the database to be down, or to have gone down
    /// since its exit at `before`: how it was found, or why not.
    async fn db_down(&self, db: &str, before: Option<Timestamp>, limit: Duration) -> Result<String, String> {
        let t = Instant::now();
        loop {
            match self.host.inspect(db).await {
                Ok(s) if s.state.is_settled_down() => {
                    return Ok(format!("{} exit={:?} OOMKilled={}", s.state.as_str(), s.exit_code, s.oom_killed));
                }
                // Down and already restarted by a watching OpsGuard between
                // two looks (a loaded host makes each look slow).
                Ok(s) if exited_since(&s, before) => {
                    return Ok(format!("exited at {:?}, since restarted; OOMKilled={}", s.finished_at, s.oom_killed));
                }
                Ok(_) if t.elapsed() < limit => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(s) => return Err(format!("still {} after {limit:?}", s.state.as_str())),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// [`Self::db_down`], on the record.
    async fn wait_down(&self, r: &mut Recorder, db: &str, limit: Duration) {
        let t = Instant::now();
        let res = self.db_down(db, r.db_exit_before, limit).await;
        r.push(format!("{} is down", crate::redact::printable(db)), t, res);
    }

    async fn helper(&self, container: &str, cmd: &[&str]) -> Result<CommandOutput, HostError> {
        let info = self.host.inspect_in_scope(container, "chaos helper").await?;
        let image = info.image.clone().unwrap_or_default();
        let id = info.id.clone().unwrap_or_else(|| container.to_string());
        self.host.run_helper(&image, Some(&id), false, cmd, &[("opsguard.chaos", "true")]).await
    }

    async fn stop(&self, container: &str) -> Result<String, String> {
        let id = self.scoped_id(container, "chaos stop").await.map_err(|e| e.to_string())?;
        let opts = StopContainerOptionsBuilder::default().t(30).build();
        let op = format!("stop {container}");
        match tokio::time::timeout(Duration::from_secs(45), self.host.client().stop_container(&id, Some(opts))).await {
            Ok(Ok(())) => Ok("ok".into()),
            Ok(Err(e)) => {
                let e = map_error(&op, e);
                if e.message.contains("304") { Ok("already stopped".into()) } else { Err(e.to_string()) }
            }
            Err(_) => Err(format!("{op}: timed out")),
        }
    }

    async fn start(&self, container: &str) -> Result<String, String> {
        let id = self.scoped_id(container, "chaos start").await.map_err(|e| e.to_string())?;
        let op = format!("start {container}");
        match tokio::time::timeout(
            Duration::from_secs(30),
            self.host.client().start_container(&id, None::<StartContainerOptions>),
        )
        .await
        {
            Ok(Ok(())) => Ok("ok".into()),
            Ok(Err(e)) => {
                let e = map_error(&op, e);
                if e.message.contains("304") { Ok("already running".into()) } else { Err(e.to_string()) }
            }
            Err(_) => Err(format!("{op}: timed out")),
        }
    }

    async fn lab_image(&self) -> Result<String, String> {
        let info = self.host.inspect_raw(DB).await.or(self.host.inspect_raw(WEB).await).map_err(|e| e.to_string())?;
        info.image.ok_or_else(|| "lab container without image".to_string())
    }

    async fn spawn_zombies(&self, n: u32, fault_at: &mut Option<Timestamp>) -> Result<String, String> {
        let image = self.lab_image().await?;
        self.remove_zombies().await?;
        let docker = self.host.client();
        let mut labels = HashMap::from([(ROLE_LABEL.to_string(), ZOMBIE_ROLE.to_string())]);
        // In scope and marked prunable: what a batch job's leftovers carry
        // when their owner lets OpsGuard clean them up.
        for label in [self.host.scope_label(), PRUNE_LABEL] {
            if let Some((k, v)) = label.split_once('=') {
                labels.insert(k.to_string(), v.to_string());
            }
        }
        // Create and start them all sleeping, then kill them all at once: the
        // host goes from 0 to n exited containers within a few milliseconds,
        // as after a batch job, instead of trickling (which would let
        // OpsGuard prune the first half while the rest are still coming).
        let create = (1..=n).map(|i| {
            let name = format!("opsguard-zombie-{i}");
            let body = ContainerCreateBody {
                image: Some(image.clone()),
                entrypoint: Some(vec![]),
                cmd: Some(vec!["sleep".into(), "600".into()]),
                labels: Some(labels.clone()),
                network_disabled: Some(true),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            async move {
                let opts = CreateContainerOptionsBuilder::default().name(&name).build();
                let c = docker.create_container(Some(opts), body).await.map_err(|e| map_error(&name, e).to_string())?;
                docker
                    .start_container(&c.id, None::<StartContainerOptions>)
                    .await
                    .map_err(|e| map_error(&name, e).to_string())?;
                Ok::<String, String>(c.id)
            }
        });
        let ids: Vec<String> =
            futures_util::future::join_all(create).await.into_iter().collect::<Result<Vec<_>, String>>()?;
        let kill =
            ids.iter().map(|id| docker.kill_container(id, None::<bollard::query_parameters::KillContainerOptions>));
        for r in futures_util::future::join_all(kill).await {
            r.map_err(|e| map_error("kill zombie", e).to_string())?;
        }
        *fault_at = Some(SystemClock.now());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut exited = 0;
            for id in &ids {
                match self.host.inspect(id).await {
                    Ok(s) if s.state == ContainerState::Exited => exited += 1,
                    // Already pruned by a watching OpsGuard.
                    Err(e) if e.kind == HostErrorKind::NotFound => exited += 1,
                    _ => {}
                }
            }
            if exited == ids.len() {
                return Ok(format!("{exited} exited"));
            }
            if Instant::now() > deadline {
                return Err(format!("only {exited} of {} zombies exited", ids.len()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn remove_zombies(&self) -> Result<String, String> {
        let docker = self.host.client();
        let filters = HashMap::from([(
            "label".to_string(),
            vec![self.host.scope_label().to_string(), format!("{ROLE_LABEL}={ZOMBIE_ROLE}")],
        )]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = docker.list_containers(Some(opts)).await.map_err(|e| map_error("list zombies", e).to_string())?;
        let mut n = 0;
        for c in list {
            // Check again on our side: only chaos's own zombies, in scope.
            let labels = c.labels.clone().unwrap_or_default();
            if !labels_match(&labels, self.host.scope_label())
                || !labels_match(&labels, &format!("{ROLE_LABEL}={ZOMBIE_ROLE}"))
            {
                continue;
            }
            let Some(id) = c.id else { continue };
            let rm = RemoveContainerOptionsBuilder::default().force(true).build();
            if docker.remove_container(&id, Some(rm)).await.is_ok() {
                n += 1;
            }
        }
        Ok(format!("{n} removed"))
    }

    /// Injects a stateless `scenario` into `target` (in scope and running,
    /// else refused before anything is done); returns once the fault has
    /// happened: the service exited for a crash, the health check's file
    /// gone for `api-unhealthy` (Docker notices on its next checks).
    pub async fn inject_stateless(&self, scenario: StatelessScenario, target: &str) -> Result<ChaosRecord, ChaosError> {
        let start = SystemClock.now();
        let t0 = Instant::now();
        self.preflight(scenario.name(), &[target]).await?;
        // The database it depends on, as its labels name it: in scope too.
        let db = match scenario {
            StatelessScenario::DbDownWithDependents => Some(self.dependency_of(target).await?),
            _ => None,
        };
        if let Some(db) = db.as_deref() {
            self.preflight(scenario.name(), &[db]).await?;
        }
        let before = self.host.inspect(target).await?;
        if before.state != ContainerState::Running {
            let target = crate::redact::printable(target);
            return Err(ChaosError::Failed(format!("{scenario}: {target} is not running ({:?})", before.state)));
        }
        let mut r = Recorder::new(None);
        if scenario == StatelessScenario::ApiCrashLoop {
            let t = Instant::now();
            let why = "opsguard-chaos: api-crashloop broke this service's configuration";
            let out = self
                .exec(target, &["sh", "-c", "printf '%s\\n' \"$2\" > \"$1\"", "break", STATELESS_BROKEN, why])
                .await;
            r.push(format!("exec {target}: write {STATELESS_BROKEN}"), t, describe(&out).and_then(exit_zero));
        }
        if let Some(db) = db.as_deref() {
            // The database first, the specification's way (it has its own
            // chaos record); then the service, as losing its database would.
            let t = Instant::now();
            let shown = crate::redact::printable(db);
            let res = match Box::pin(self.inject_on(Scenario::DbOomKill, Some(db))).await {
                Ok(rec) => Ok(format!("{shown} down at {}", rec.fault_at.map(|t| t.to_rfc3339()).unwrap_or_default())),
                Err(e) => Err(e.to_string()),
            };
            let down = res.is_ok();
            r.push(format!("db-oom-kill on {shown}"), t, res);
            if !down {
                let name = Some(format!("{scenario} --target {}", crate::redact::printable(target)));
                return self.conclude("inject", name, None, r, (start, t0), &format!("{scenario} did not take"));
            }
        }
        match scenario {
            StatelessScenario::ApiCrash | StatelessScenario::ApiCrashLoop | StatelessScenario::DbDownWithDependents => {
                let t = Instant::now();
                let res = self.kill(target).await;
                let killed = res.is_ok();
                r.push(format!("kill -KILL {target}"), t, res);
                // A kill the daemon refused has no exit to wait for.
                if killed {
                    let t = Instant::now();
                    match self.exited_after(target, before.started_at, Duration::from_secs(10)).await {
                        Ok(at) => {
                            r.fault_at = Some(at);
                            r.push(format!("{target} exited"), t, Ok(at.to_rfc3339()));
                        }
                        Err(e) => r.push(format!("{target} exited"), t, Err(e)),
                    }
                }
            }
            StatelessScenario::ApiUnhealthy => {
                let t = Instant::now();
                let out = self.exec(target, &["rm", "-f", "--", STATELESS_READY]).await;
                r.push(format!("exec {target}: rm {STATELESS_READY}"), t, describe(&out).and_then(exit_zero));
            }
        }
        let name = Some(format!("{scenario} --target {}", crate::redact::printable(target)));
        self.conclude("inject", name, None, r, (start, t0), &format!("{scenario} did not take"))
    }

    /// The first container `service`'s labels say it depends on
    /// (`opsguard.depends_on`, or Compose's own), that is on this host.
    async fn dependency_of(&self, service: &str) -> Result<String, ChaosError> {
        let list = self.host.list_containers().await?;
        let shown = crate::redact::printable(service);
        let me = list
            .iter()
            .find(|c| c.name.as_str() == service)
            .ok_or_else(|| ChaosError::Failed(format!("{shown} is not on this host")))?;
        opsguard_core::stateless::dependencies(&me.labels)
            .iter()
            .find_map(|d| list.iter().find(|c| c.name != me.name && d.is(c.name.as_str(), &c.labels)))
            .map(|c| c.name.as_str().to_string())
            .ok_or_else(|| {
                ChaosError::Failed(format!("{shown} depends on no container on this host (opsguard.depends_on)"))
            })
    }

    /// When `container`'s run that started at `started` ended (a later
    /// run may already be under way: a watching OpsGuard restarted it).
    async fn exited_after(
        &self,
        container: &str,
        started: Option<Timestamp>,
        limit: Duration,
    ) -> Result<Timestamp, String> {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.host.inspect(container).await.map_err(|e| e.to_string())?;
            if let (Some(end), Some(start)) = (s.finished_at, started)
                && end >= start
            {
                return Ok(end);
            }
            if Instant::now() > deadline {
                return Err(format!("{container} did not exit within {limit:?} ({:?})", s.state));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts the lab's stateless service back: recreated from the compose
    /// file by `lab/shop.sh up` (a restart would keep a crash loop's
    /// broken file), waited for until healthy.
    pub async fn reset_stateless(&self) -> Result<ChaosRecord, ChaosError> {
        let start = SystemClock.now();
        let t0 = Instant::now();
        let dir = self.lab_scripts.as_ref().ok_or_else(|| ChaosError::Failed("the lab scripts are unknown".into()))?;
        let t = Instant::now();
        let res = run_script_with(&dir.join("shop.sh"), &["up"]).await;
        let mut r = Recorder::new(None);
        r.push(format!("lab/shop.sh up ({})", StatelessScenario::LAB_TARGET), t, res);
        self.conclude(
            "reset",
            None,
            None,
            r,
            (start, t0),
            &format!("reset of {} failed", StatelessScenario::LAB_TARGET),
        )
    }

    /// Puts the lab back to healthy without losing the database's data:
    /// removes zombies and helpers, every chaos artefact (garbage, crash
    /// log, broken config line, overwritten control file), starts what is
    /// down and waits until `db-prod` accepts connections and `web-prod`
    /// runs. Falls back to `lab/reset.sh` (a fresh lab) when that fails and
    /// the lab scripts are known.
    pub async fn reset(&self) -> Result<ChaosRecord, ChaosError> {
        let start = SystemClock.now();
        let t0 = Instant::now();
        self.preflight("reset", &[WEB, DB]).await?;
        let mut r = Recorder::new(None);
        let t = Instant::now();
        let res = self.remove_zombies().await;
        r.push("remove zombies", t, res);
        let t = Instant::now();
        let res = self.host.prune_exited(&format!("{ROLE_LABEL}=helper"), &[]).await;
        r.steps.push(ChaosStep {
            what: "remove leftover helpers".into(),
            ms: t.elapsed().as_millis() as u64,
            result: format!("{:?}", res.map(|v| v.len())),
        });
        if self.host.inspect(WEB).await.is_ok_and(|s| s.state == ContainerState::Running) {
            // Stop a slow fill's writer before its log goes.
            let t = Instant::now();
            let out = self.exec(WEB, &["touch", WEB_SLOW_STOP]).await;
            r.push(format!("exec {WEB}: touch {WEB_SLOW_STOP}"), t, describe(&out));
        }
        let t = Instant::now();
        let out = self.helper(WEB, &["rm", "-f", WEB_GARBAGE, WEB_SLOW_LOG]).await;
        r.push(format!("helper: rm {WEB_GARBAGE} {WEB_SLOW_LOG}"), t, describe(&out));
        if self.host.inspect(DB).await.is_ok_and(|s| s.state == ContainerState::Running) {
            // A server left hanging by db-hang goes on (a no-op otherwise).
            let t = Instant::now();
            let res = self.signal(DB, "SIGCONT").await;
            r.push(format!("kill -CONT {DB}"), t, res);
        }
        let t = Instant::now();
        let out = self.helper(DB, &["sh", "-c", DB_REPAIR_SH]).await;
        r.push("helper: remove garbage and crash log, restore config and control file", t, describe(&out));
        for c in [WEB, DB] {
            if !self.host.inspect(c).await.is_ok_and(|s| s.state == ContainerState::Running) {
                let t = Instant::now();
                let res = self.start(c).await;
                r.push(format!("start {c}"), t, res);
            }
        }
        let t = Instant::now();
        let res = self.wait_healthy(Duration::from_secs(90)).await;
        r.push("wait until db-prod accepts connections and web-prod runs", t, res);
        if !r.ok
            && let Some(dir) = &self.lab_scripts
        {
            let t = Instant::now();
            let res = run_script(&dir.join("reset.sh")).await;
            r.ok = true;
            r.push("lab/reset.sh (fresh lab: repair failed)", t, res);
        }
        // A reset has no fault time, whatever the steps noted.
        r.fault_at = None;
        self.conclude("reset", None, None, r, (start, t0), "reset failed")
    }

    /// Waits until `db-prod` accepts connections and `web-prod` runs.
    pub async fn wait_healthy(&self, limit: Duration) -> Result<String, String> {
        let t = Instant::now();
        let mut last = String::new();
        while t.elapsed() < limit {
            let web = self.host.inspect(WEB).await.map(|s| s.state);
            let db = self.host.inspect(DB).await.map(|s| s.state);
            if web == Ok(ContainerState::Running) && db == Ok(ContainerState::Running) {
                match self.exec(DB, &["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"]).await {
                    Ok(o) if o.exit_code == 0 => return Ok(format!("healthy after {} ms", t.elapsed().as_millis())),
                    Ok(o) => last = format!("pg_isready exit {}", o.exit_code),
                    Err(e) => last = e.to_string(),
                }
            } else {
                last = format!("web {web:?}, db {db:?}");
                if let Ok(ContainerState::Exited) = db {
                    // A crashed start will not come back by waiting.
                    if t.elapsed() > Duration::from_secs(5) {
                        return Err(format!("db-prod exited: {last}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("not healthy within {limit:?}: {last}"))
    }

    /// Runs SQL in `db-prod` with psql; returns its output.
    pub async fn psql(&self, sql: &str) -> Result<String, HostError> {
        let out = self.exec(DB, &["psql", "-U", "postgres", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql]).await?;
        if out.exit_code != 0 {
            return Err(HostError::new(HostErrorKind::Other, "psql", out.stderr.trim().to_string()));
        }
        Ok(out.stdout.trim().to_string())
    }

    /// The size in bytes of a file on `container`'s volumes (running or not).
    pub async fn file_size(&self, container: &str, path: &str) -> Result<Option<u64>, HostError> {
        let out = self.helper(container, &["stat", "-c", "%s", "--", path]).await?;
        Ok(if out.exit_code == 0 { out.stdout.trim().parse().ok() } else { None })
    }
}

/// Runs a lab script, returning its last output lines.
pub async fn run_script(path: &Path) -> Result<String, String> {
    run_script_with(path, &[]).await
}

/// [`run_script`] with arguments.
pub async fn run_script_with(path: &Path, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("bash")
        .arg(path)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
    if out.status.success() { Ok(tail) } else { Err(format!("{} failed: {tail}", path.display())) }
}

/// One scenario run against the lab with OpsGuard watching: what the
/// end-to-end tests, the MTTR benchmark and the chain-reaction example use.
#[derive(Debug)]
pub struct ScenarioRun {
    /// What the chaos engine did.
    pub inject: ChaosRecord,
    /// When the fault took effect: the database's death for the database
    /// scenarios, the end of the injection otherwise.
    pub fault_at: Timestamp,
    /// The incidents OpsGuard ran.
    pub reports: Vec<crate::incident::IncidentReport>,
    /// The audit trail.
    pub audit: Vec<crate::audit::AuditRecord>,
}

impl ScenarioRun {
    /// Fault to alarm (the incident opening), in milliseconds.
    pub fn mttd_ms(&self) -> Option<u64> {
        self.audit
            .iter()
            .find(|r| matches!(r.event, crate::audit::AuditEvent::IncidentOpened { .. }))
            .map(|r| r.ts.millis_since(self.fault_at))
    }

    /// Fault to the end of the first incident (resolved or stopped), in ms.
    pub fn mttr_ms(&self) -> Option<u64> {
        self.reports.first().map(|r| r.closed_at.millis_since(self.fault_at))
    }
}

/// Settings for [`run_scenario`].
pub struct RunSettings<A> {
    /// The rules.
    pub rules: std::sync::Arc<crate::rules::Rules>,
    /// Who approves risky actions.
    pub approver: A,
    /// Incidents to wait for.
    pub incidents: usize,
    /// Give up after this long.
    pub timeout: Duration,
    /// Print the timeline as it happens.
    pub verbose: bool,
    /// Also append the audit trail to this file (JSON lines), as `watch` does.
    pub audit_file: Option<PathBuf>,
    /// Also hand every audit record to this (e.g. the web console's
    /// `Console::record`, as `watch --approve web` does).
    pub tap: Option<crate::audit::SharedTap>,
}

/// Starts OpsGuard (observer with the Docker event stream, engine, responder)
/// against the lab, injects `scenario` once it watches, and returns when
/// `incidents` incidents have ended or the timeout passed.
pub async fn run_scenario<A: crate::approval::Approver + Send + 'static>(
    chaos: &DockerChaos,
    scenario: Scenario,
    settings: RunSettings<A>,
) -> Result<ScenarioRun, ChaosError> {
    let host = chaos.host().clone();
    let verbose = settings.verbose;
    let audit = match &settings.audit_file {
        Some(path) => crate::audit::AuditLog::to_file(path)
            .map_err(|e| ChaosError::Failed(format!("{}: {e}", path.display())))?
            .keep_in_memory(),
        None => crate::audit::AuditLog::in_memory(),
    };
    let mut agent = crate::docker_agent::DockerAgentBuilder::new(settings.rules.clone(), host.clone(), audit.clone())
        .approver(Box::new(settings.approver))
        .approval_timeout(Duration::from_secs(30))
        .tap(move |r| {
            if verbose {
                let time = r.time.get(11..23).unwrap_or(&r.time);
                println!("[{time}] #{} {}", r.incident, r.event.render());
            }
        });
    if let Some(tap) = settings.tap.clone() {
        agent = agent.tap(move |r| tap(r));
    }
    let agent = agent.start();
    let deadline = SystemClock.now().plus_millis(settings.timeout.as_millis() as u64);
    let until = crate::incident::WatchLimit { incidents: Some(settings.incidents), deadline: Some(deadline) };
    // Dropping the agent (the task ends or is aborted) stops its event stream.
    let mut agent = tokio::spawn(agent.run(until));
    // Let the first sweep finish and the event stream connect.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let inject = match chaos.inject(scenario).await {
        Ok(r) => r,
        Err(e) => {
            agent.abort();
            return Err(e);
        }
    };
    // The database's own exit time, for those that bring it down (a hang
    // does not: its fault is when Docker first said unhealthy).
    let db_scenario =
        !matches!(scenario, Scenario::WebDiskFill | Scenario::Zombies | Scenario::WebLogSlowFill | Scenario::DbHang);
    let fault_at = match db_scenario {
        true => host.inspect(DB).await.ok().and_then(|s| s.finished_at),
        false => None,
    }
    .or(inject.fault_at)
    .unwrap_or(inject.ts.plus_millis(inject.duration_ms));
    let reports = tokio::time::timeout(settings.timeout + Duration::from_secs(30), &mut agent).await;
    agent.abort();
    let reports = match reports {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(ChaosError::Failed(format!("the agent task failed: {e}"))),
        Err(_) => return Err(ChaosError::Failed("the agent did not stop at its deadline".into())),
    };
    Ok(ScenarioRun { inject, fault_at, reports, audit: audit.records() })
}
