//! An in-memory Docker host: containers with states and logs, size-limited
//! disks holding log and data files, and the specification's faults.
//!
//! It lets the example, the property suite and the benchmarks run whole
//! incidents with no Docker at all. It follows the behaviour recorded on the
//! real lab (DESIGN.md): a database on a full disk fails to start with
//! `No space left on device`, one with a broken config or a corrupt control
//! file fails every start, and an OOM-killed one comes back on restart.
//! Knobs inject what real hosts also do: failing operations, a restart that
//! never comes up, a daemon that vanishes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::{Clock, SimClock};
use crate::host::{
    CleanReport, ContainerStatus, ContainerSummary, DiskUsage, Host, HostError, HostErrorKind, LogLine, PRUNE_LABEL,
    is_under, log_path_holding_data,
};
use crate::model::{ContainerName, ContainerState, Health, Timestamp};
pub use opsguard_core::stateless::RestartPolicy;

const MIB: u64 = 1024 * 1024;

/// The web container's name in the simulated lab.
pub const WEB: &str = "web-prod";
/// The database container's name in the simulated lab.
pub const DB: &str = "db-prod";
/// The label every lab container carries.
pub const LAB_LABEL: (&str, &str) = ("opsguard.lab", "true");

/// Where the simulated lab keeps things (the same paths as the real lab).
pub mod paths {
    /// nginx's log directory (its own small disk).
    pub const WEB_LOGS: &str = "/var/log/nginx";
    /// The database container's log directory, on the database's disk.
    pub const DB_LOGS: &str = "/var/log";
    /// PostgreSQL's data directory, on the same disk.
    pub const DB_DATA: &str = "/var/lib/postgresql/data";
    /// Where the garbage flood writes non-log data, on the same disk.
    pub const DB_GARBAGE: &str = "/root/garbage.bin";
    /// The crash log of the chain reaction.
    pub const DB_CRASH_LOG: &str = "/var/log/postgres_crash.log";
}

/// How fast [`SimFault::WebDiskSlowFill`] writes: 8 MiB a second, so the
/// lab's web log disk crosses 85 % about 4 minutes after the fault.
pub const SLOW_FILL_BYTES_PER_SEC: u64 = 8 * MIB;

/// A fault the simulated host can suffer: the specification's chaos scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimFault {
    /// A 2 GB garbage log on the web log disk (`fill_web_disk_trigger`).
    WebDiskFill,
    /// `n` exited containers (`create_zombie_containers`).
    Zombies(u32),
    /// Non-log data fills the database's disk; it crashes (`trigger_db_garbage_flood`).
    DbGarbageFlood,
    /// A broken `postgresql.conf`; the database exits (`trigger_config_corruption`).
    DbConfigCorruption,
    /// The OOM killer ends the database (`trigger_oom_kill`).
    DbOomKill,
    /// A corrupt control file; the database exits (`trigger_data_corruption`).
    DbDataCorruption,
    /// A crash log fills the database's disk to 100 %, then the database
    /// goes down (Phase 3).
    ChainReaction,
    /// A log on the web log disk grows by [`SLOW_FILL_BYTES_PER_SEC`] from
    /// now on, a steady writer, until the disk is full.
    WebDiskSlowFill,
    /// The database is killed by SIGKILL without the OOM killer (exit 137).
    DbKilled,
    /// The database runs but answers nothing: its health check fails.
    DbHang,
}

/// Behaviour switches for adversarial tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimKnobs {
    /// Every operation fails as if the daemon were gone.
    pub daemon_down: bool,
    /// `restart` returns an error.
    pub restart_fails: bool,
    /// After a restart the container stays in `restarting` for ever.
    pub restart_never_runs: bool,
    /// `clean_logs` returns an error.
    pub clean_fails: bool,
    /// `prune_exited` returns an error.
    pub prune_fails: bool,
    /// The database crashes again this long after any start, whatever the cause.
    pub db_crashes_after_start_ms: Option<u64>,
    /// After a start the database runs but its health check never passes
    /// (stuck in recovery, say).
    pub db_stuck_starting: bool,
    /// After a good start the database accepts connections at once, but
    /// Docker's health check first passes this long after the start (its
    /// interval: 5 s on the lab); `None`: healthy at once.
    pub db_health_lag_ms: Option<u64>,
    /// Running the health check on demand ([`Host::probe_ready`]) fails.
    pub probe_fails: bool,
    /// The disks cannot be read the cheap way ([`Host::watch_disk`]
    /// answers `None`), as for OpsGuard in a container without the volumes.
    pub no_disk_watch: bool,
}

/// Something OpsGuard did to the simulated host, for tests to check.
#[derive(Clone, Debug, PartialEq)]
pub enum SimOp {
    /// A restart (or start) of a container.
    Restart {
        /// Which.
        container: String,
        /// When.
        at: Timestamp,
    },
    /// Files truncated by `clean_logs`.
    Clean {
        /// Which container.
        container: String,
        /// The files truncated.
        files: Vec<String>,
    },
    /// Containers removed by `prune_exited`.
    Prune {
        /// Their names.
        removed: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct SimFile {
    size: u64,
}

#[derive(Clone, Debug)]
struct SimDisk {
    capacity: u64,
    /// Absolute in-container path -> file. A disk is mounted in one container.
    files: BTreeMap<String, SimFile>,
}

impl SimDisk {
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.size).sum::<u64>().min(self.capacity)
    }

    fn free(&self) -> u64 {
        self.capacity - self.used()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Web,
    Db,
    Other,
}

#[derive(Clone, Debug)]
struct SimContainer {
    /// Docker's id: changes when the container is recreated.
    id: String,
    role: Role,
    state: ContainerState,
    health: Health,
    exit_code: Option<i64>,
    oom_killed: bool,
    labels: BTreeMap<String, String>,
    logs: Vec<LogLine>,
    /// (mount point, disk index)
    mounts: Vec<(String, usize)>,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    /// Whether the service answers (its health command would pass).
    ready: bool,
    /// When Docker's health check, still starting, first passes.
    healthy_at: Option<Timestamp>,
    /// A crash scheduled for later: (when, exit code, OOM flag, log lines).
    pending_crash: Option<(Timestamp, i64, bool, Vec<String>)>,
    /// Docker's restart policy (`None`: `no`).
    restart_policy: Option<RestartPolicy>,
    /// A crash loop: every start crashes this long after with this code.
    crash_after_start: Option<(u64, i64)>,
    /// What its health checks said, as inspect shows it.
    health_log: Vec<String>,
}

#[derive(Debug)]
struct World {
    containers: BTreeMap<String, SimContainer>,
    disks: Vec<SimDisk>,
    knobs: SimKnobs,
    config_broken: bool,
    data_corrupt: bool,
    ops: Vec<SimOp>,
    faults: Vec<(Timestamp, SimFault)>,
    /// A steady writer on the web log disk: written up to this time.
    slow_fill: Option<Timestamp>,
}

/// The in-memory host. Clones share the same world.
#[derive(Clone, Debug)]
pub struct SimHost {
    world: Arc<Mutex<World>>,
    clock: SimClock,
}

fn lab_labels(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LAB_LABEL.0.to_string(), LAB_LABEL.1.to_string()),
        ("opsguard.role".to_string(), role.to_string()),
    ])
}

/// A container that ran at `now` and exited 0 at once.
fn exited(id: String, labels: BTreeMap<String, String>, now: Timestamp) -> SimContainer {
    SimContainer {
        id,
        role: Role::Other,
        state: ContainerState::Exited,
        health: Health::None,
        exit_code: Some(0),
        oom_killed: false,
        labels,
        logs: Vec::new(),
        mounts: Vec::new(),
        started_at: Some(now),
        finished_at: Some(now),
        ready: false,
        healthy_at: None,
        pending_crash: None,
        restart_policy: None,
        crash_after_start: None,
        health_log: Vec::new(),
    }
}

/// Labels given as `key=value` each (one without `=` is dropped).
fn parse_labels(labels: &[&str]) -> BTreeMap<String, String> {
    labels.iter().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

/// A chaos zombie's: in the lab's scope, and prunable.
fn zombie_labels() -> BTreeMap<String, String> {
    let mut labels = lab_labels("zombie");
    if let Some((k, v)) = PRUNE_LABEL.split_once('=') {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

impl SimHost {
    /// The specification's lab, healthy: `web-prod` with a 2.5 GiB log disk
    /// and `db-prod` with a 4 GiB disk holding its data and its logs.
    pub fn lab(clock: SimClock) -> SimHost {
        let now = clock.now();
        let web_disk = SimDisk {
            capacity: 2560 * MIB,
            files: BTreeMap::from([
                (format!("{}/access.log", paths::WEB_LOGS), SimFile { size: 120 * MIB }),
                (format!("{}/error.log", paths::WEB_LOGS), SimFile { size: 8 * MIB }),
            ]),
        };
        let db_disk = SimDisk {
            capacity: 4096 * MIB,
            files: BTreeMap::from([
                (format!("{}/base/16384/16385", paths::DB_DATA), SimFile { size: 300 * MIB }),
                (format!("{}/pg_wal/000000010000000000000001", paths::DB_DATA), SimFile { size: 16 * MIB }),
                (format!("{}/global/pg_control", paths::DB_DATA), SimFile { size: 8192 }),
                (format!("{}/postgresql/postgresql-15-main.log", paths::DB_LOGS), SimFile { size: 40 * MIB }),
                (format!("{}/apt/history", paths::DB_LOGS), SimFile { size: MIB }),
            ]),
        };
        let running = |id: &str, role, mounts, labels| SimContainer {
            id: id.to_string(),
            role,
            state: ContainerState::Running,
            health: Health::Healthy,
            exit_code: Some(0),
            oom_killed: false,
            labels,
            logs: Vec::new(),
            mounts,
            started_at: Some(now),
            finished_at: None,
            ready: true,
            healthy_at: None,
            pending_crash: None,
            restart_policy: None,
            crash_after_start: None,
            health_log: Vec::new(),
        };
        let containers = BTreeMap::from([
            (
                WEB.to_string(),
                running("sim-web-1", Role::Web, vec![(paths::WEB_LOGS.to_string(), 0)], lab_labels("web")),
            ),
            (
                DB.to_string(),
                running(
                    "sim-db-1",
                    Role::Db,
                    vec![
                        (paths::DB_DATA.to_string(), 1),
                        (paths::DB_LOGS.to_string(), 1),
                        ("/var/lib/postgresql".to_string(), 1),
                    ],
                    lab_labels("db"),
                ),
            ),
        ]);
        let mut world = World {
            containers,
            disks: vec![web_disk, db_disk],
            knobs: SimKnobs::default(),
            config_broken: false,
            data_corrupt: false,
            ops: Vec::new(),
            faults: Vec::new(),
            slow_fill: None,
        };
        world.log(DB, now, "LOG:  database system is ready to accept connections");
        SimHost { world: Arc::new(Mutex::new(world)), clock }
    }

    /// The clock this host lives by.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-updated
        // in a way that matters to a simulation; keep going.
        let mut w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        w.settle(self.clock.now());
        w
    }

    /// Changes the behaviour switches.
    pub fn set_knobs(&self, knobs: SimKnobs) {
        self.world().knobs = knobs;
    }

    /// What OpsGuard did to the host so far.
    pub fn ops(&self) -> Vec<SimOp> {
        self.world().ops.clone()
    }

    /// The faults injected so far, with when.
    pub fn faults(&self) -> Vec<(Timestamp, SimFault)> {
        self.world().faults.clone()
    }

    /// Every file on every disk that is not a log file under one of
    /// `log_paths`, with its size: what cleaning must never touch.
    pub fn non_log_files(&self, log_paths: &[String]) -> BTreeMap<String, u64> {
        let w = self.world();
        w.disks
            .iter()
            .flat_map(|d| d.files.iter())
            .filter(|(p, _)| !(is_log_file(p) && log_paths.iter().any(|l| is_under(p, l))))
            .map(|(p, f)| (p.clone(), f.size))
            .collect()
    }

    /// A container's state, for tests and the example.
    pub fn state(&self, container: &str) -> Option<ContainerState> {
        self.world().containers.get(container).map(|c| c.state)
    }

    /// Appends log lines to a container, as its process would.
    pub fn write_logs(&self, container: &str, lines: &[&str]) {
        let now = self.clock.now();
        let mut w = self.world();
        for l in lines {
            w.log(container, now, l);
        }
    }

    /// Stops a container as `docker stop` would (exit code 0).
    pub fn stop(&self, container: &str) {
        let now = self.clock.now();
        let mut w = self.world();
        if let Some(c) = w.containers.get_mut(container) {
            c.state = ContainerState::Exited;
            c.exit_code = Some(0);
            c.health = Health::None;
            c.finished_at = Some(now);
            c.ready = false;
            c.healthy_at = None;
            c.pending_crash = None;
        }
    }

    /// Starts a container as someone other than OpsGuard would (an operator's
    /// `docker start`, a restart policy): not recorded in [`SimHost::ops`].
    pub fn start_by_itself(&self, container: &str) {
        let now = self.clock.now();
        self.world().start(container, now);
    }

    /// Removes a container, as `docker rm -f` would.
    pub fn remove(&self, container: &str) {
        self.world().containers.remove(container);
    }

    /// Adds an exited one-shot container (a migration job that ran, say)
    /// named `name`, with `labels` (`key=value` each), beside the lab's.
    pub fn add_exited(&self, name: &str, labels: &[&str]) {
        let now = self.clock.now();
        let labels = parse_labels(labels);
        self.world().containers.insert(name.to_string(), exited(format!("sim-{name}-{}", now.0), labels, now));
    }

    /// Adds a running, healthy container named `name` with `labels`
    /// (`key=value` each) and Docker's restart `policy` (`None`: `no`): a
    /// stateless service (issue #10).
    pub fn add_running(&self, name: &str, labels: &[&str], policy: Option<RestartPolicy>) {
        let now = self.clock.now();
        let labels = parse_labels(labels);
        let mut c = exited(format!("sim-{name}-{}", now.0), labels, now);
        c.restart_policy = policy;
        let mut w = self.world();
        w.containers.insert(name.to_string(), c);
        w.start(name, now);
    }

    /// Adds a running PostgreSQL like the lab's `db-prod`, named `name`,
    /// with a disk of its own holding its data and logs, and `labels`
    /// (`key=value` each): a database found by its labels (issue #10).
    pub fn add_database(&self, name: &str, labels: &[&str]) {
        let disk = SimDisk {
            capacity: 4096 * MIB,
            files: BTreeMap::from([
                (format!("{}/base/16384/16385", paths::DB_DATA), SimFile { size: 200 * MIB }),
                (format!("{}/postgresql/postgresql-15-main.log", paths::DB_LOGS), SimFile { size: 20 * MIB }),
            ]),
        };
        self.add_service(name, labels, Role::Db, disk, &[paths::DB_DATA, paths::DB_LOGS]);
    }

    /// Adds a running web server named `name` whose logs, in `log_dir`,
    /// are on a 2.5 GiB disk of their own, with `labels` (`key=value`
    /// each): a web server found by its labels (issue #10).
    pub fn add_web(&self, name: &str, labels: &[&str], log_dir: &str) {
        let disk = SimDisk {
            capacity: 2560 * MIB,
            files: BTreeMap::from([(format!("{log_dir}/access.log"), SimFile { size: 100 * MIB })]),
        };
        self.add_service(name, labels, Role::Web, disk, &[log_dir]);
    }

    /// Adds a running `role` container with `disk` of its own, mounted at
    /// each of `mounts`.
    fn add_service(&self, name: &str, labels: &[&str], role: Role, disk: SimDisk, mounts: &[&str]) {
        let now = self.clock.now();
        let mut w = self.world();
        let d = w.disks.len();
        w.disks.push(disk);
        let mut c = exited(format!("sim-{name}-{}", now.0), parse_labels(labels), now);
        c.role = role;
        c.mounts = mounts.iter().map(|m| (m.to_string(), d)).collect();
        w.containers.insert(name.to_string(), c);
        w.start(name, now);
    }

    /// Writes a garbage log file into `dir` of `container` until the disk
    /// holding it is 87 % full (as `web-disk-fill` leaves the lab's).
    pub fn fill_logs(&self, container: &str, dir: &str) {
        let mut w = self.world();
        let Some(c) = w.containers.get(container) else { return };
        let Ok(d) = w.disk_of("fill", c, dir) else { return };
        let target = w.disks[d].capacity / 100 * 87;
        let more = target.saturating_sub(w.disks[d].used());
        w.add_file(d, &format!("{dir}/garbage.log"), more);
    }

    /// Kills a database the way the kernel's OOM killer does: exit 137,
    /// the OOM flag set.
    pub fn oom_kill(&self, container: &str) {
        let now = self.clock.now();
        self.world().crash_db(container, now, 137, true, &["LOG:  checkpoint starting: time".to_string()]);
    }

    /// Kills a container's main process: it exits with `exit_code`, after
    /// writing `lines`.
    pub fn crash(&self, container: &str, exit_code: i64, lines: &[&str]) {
        let now = self.clock.now();
        let mut w = self.world();
        for l in lines {
            w.log(container, now, l);
        }
        if let Some(c) = w.containers.get_mut(container) {
            c.state = ContainerState::Exited;
            c.health = Health::None;
            c.exit_code = Some(exit_code);
            c.finished_at = Some(now);
            c.pending_crash = None;
        }
    }

    /// From now on every start of `container` crashes `after_ms` later
    /// with `exit_code` (`None`: starts stay up again).
    pub fn crash_loop(&self, container: &str, crash: Option<(u64, i64)>) {
        if let Some(c) = self.world().containers.get_mut(container) {
            c.crash_after_start = crash;
        }
    }

    /// Its health check turns `health` (a restart makes it healthy).
    pub fn set_health(&self, container: &str, health: Health) {
        if let Some(c) = self.world().containers.get_mut(container) {
            c.health = health;
        }
    }

    /// Its health check turns unhealthy, its last checks having said
    /// `outputs` (Docker's health log, as inspect shows it; a restart
    /// clears it).
    pub fn fail_health(&self, container: &str, outputs: &[&str]) {
        if let Some(c) = self.world().containers.get_mut(container) {
            c.health = Health::Unhealthy;
            c.health_log = outputs.iter().map(|o| opsguard_core::model::health_entry(Some(1), o)).collect();
        }
    }

    /// Injects one of the specification's faults.
    pub fn inject(&self, fault: SimFault) {
        let now = self.clock.now();
        let mut w = self.world();
        w.faults.push((now, fault));
        match fault {
            SimFault::WebDiskFill => {
                w.add_file(0, &format!("{}/garbage.log", paths::WEB_LOGS), 2230 * MIB);
            }
            SimFault::Zombies(n) => {
                for i in 0..n {
                    let name = format!("zombie-{}", w.containers.len() + i as usize);
                    w.containers.insert(name, exited(format!("sim-zombie-{i}-{}", now.0), zombie_labels(), now));
                }
            }
            SimFault::DbGarbageFlood => {
                let free = w.disks[1].free();
                w.add_file(1, paths::DB_GARBAGE, free);
                w.crash_db(DB, now, 1, false, &disk_full_lines());
            }
            SimFault::DbConfigCorruption => {
                w.config_broken = true;
                // The running server keeps its config until the next start;
                // the chaos script then restarts it, as a deploy would.
                w.crash_db(DB, now, 1, false, &config_error_lines());
            }
            SimFault::DbOomKill => {
                w.crash_db(DB, now, 137, true, &["LOG:  checkpoint starting: time".to_string()]);
            }
            SimFault::DbDataCorruption => {
                w.data_corrupt = true;
                w.crash_db(DB, now, 1, false, &corruption_lines());
            }
            SimFault::ChainReaction => {
                let free = w.disks[1].free();
                w.add_file(1, paths::DB_CRASH_LOG, free);
                w.crash_db(DB, now, 1, false, &disk_full_lines());
            }
            SimFault::DbKilled => {
                w.crash_db(DB, now, 137, false, &[]);
            }
            SimFault::DbHang => {
                if let Some(c) = w.containers.get_mut(DB) {
                    c.health = Health::Unhealthy;
                    c.ready = false;
                    c.health_log = vec![opsguard_core::model::health_entry(Some(1), "127.0.0.1:5432 - no response")];
                }
            }
            SimFault::WebDiskSlowFill => w.slow_fill = Some(now),
        }
    }

    fn check(&self, op: &str) -> Result<MutexGuard<'_, World>, HostError> {
        let w = self.world();
        if w.knobs.daemon_down {
            return Err(HostError::new(HostErrorKind::Unavailable, op, "cannot connect to the Docker daemon"));
        }
        Ok(w)
    }
}

fn disk_full_lines() -> Vec<String> {
    vec![
        "ERROR:  could not write to file \"base/pgsql_tmp/pgsql_tmp271.0\": No space left on device".into(),
        "PANIC:  could not write to file \"pg_wal/xlogtemp.271\": No space left on device".into(),
        "LOG:  server process (PID 271) was terminated by signal 6: Aborted".into(),
    ]
}

fn config_error_lines() -> Vec<String> {
    vec![
        "LOG:  syntax error in file \"/etc/postgresql/postgresql.conf\" line 816, near token \"=\"".into(),
        "FATAL:  configuration file \"/etc/postgresql/postgresql.conf\" contains errors".into(),
    ]
}

fn corruption_lines() -> Vec<String> {
    vec!["FATAL:  incorrect checksum in control file".into()]
}

/// The host contract's log file: `*.log`, or a rotation of one (`*.log.1`).
pub fn is_log_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".log") || name.contains(".log.")
}

impl World {
    fn log(&mut self, container: &str, at: Timestamp, text: &str) {
        if let Some(c) = self.containers.get_mut(container) {
            c.logs.push(LogLine { at, text: text.to_string() });
        }
    }

    fn add_file(&mut self, disk: usize, path: &str, size: u64) {
        let d = &mut self.disks[disk];
        let size = size.min(d.free());
        d.files.entry(path.to_string()).or_insert(SimFile { size: 0 }).size += size;
    }

    fn crash_db(&mut self, db: &str, at: Timestamp, exit_code: i64, oom: bool, lines: &[String]) {
        for l in lines {
            self.log(db, at, l);
        }
        if let Some(c) = self.containers.get_mut(db) {
            c.state = ContainerState::Exited;
            c.health = Health::None;
            c.exit_code = Some(exit_code);
            c.oom_killed = oom;
            c.finished_at = Some(at);
            c.ready = false;
            c.healthy_at = None;
            c.pending_crash = None;
        }
    }

    /// Applies crashes whose time has come, and a slow fill's writes.
    fn settle(&mut self, now: Timestamp) {
        if let Some(since) = self.slow_fill.filter(|s| *s < now) {
            let bytes = SLOW_FILL_BYTES_PER_SEC.saturating_mul(now.millis_since(since)) / 1000;
            self.add_file(0, &format!("{}/slow_fill.log", paths::WEB_LOGS), bytes);
            self.slow_fill = Some(now);
        }
        let due: Vec<(String, i64, bool, Vec<String>)> = self
            .containers
            .iter_mut()
            .filter_map(|(name, c)| match &c.pending_crash {
                Some((at, ..)) if *at <= now => {
                    let (at, code, oom, lines) = c.pending_crash.take()?;
                    let _ = at;
                    Some((name.clone(), code, oom, lines))
                }
                _ => None,
            })
            .collect();
        for (name, code, oom, lines) in due {
            for l in &lines {
                self.log(&name, now, l);
            }
            if let Some(c) = self.containers.get_mut(&name) {
                c.state = ContainerState::Exited;
                c.health = Health::None;
                c.exit_code = Some(code);
                c.oom_killed = oom;
                c.finished_at = Some(now);
                c.ready = false;
                c.healthy_at = None;
            }
        }
        for c in self.containers.values_mut() {
            if c.state == ContainerState::Running
                && c.health == Health::Starting
                && c.healthy_at.is_some_and(|at| at <= now)
            {
                c.health = Health::Healthy;
                c.healthy_at = None;
            }
        }
    }

    fn container(&self, op: &str, name: &str) -> Result<&SimContainer, HostError> {
        self.containers
            .get(name)
            .ok_or_else(|| HostError::new(HostErrorKind::NotFound, op, format!("no such container: {name}")))
    }

    fn disk_of(&self, op: &str, c: &SimContainer, path: &str) -> Result<usize, HostError> {
        c.mounts
            .iter()
            .filter(|(m, _)| path == m || is_under(path, m))
            .max_by_key(|(m, _)| m.len())
            .map(|(_, d)| *d)
            .ok_or_else(|| HostError::new(HostErrorKind::NotFound, op, format!("{path} is not on a watched disk")))
    }

    fn start(&mut self, name: &str, now: Timestamp) {
        let knobs = self.knobs.clone();
        // Its own data disk's.
        let data_disk = self.containers.get(name).and_then(|c| c.mounts.iter().find(|(m, _)| m == paths::DB_DATA));
        let db_full = data_disk.and_then(|(_, d)| self.disks.get(*d)).is_some_and(|d| d.free() < MIB);
        let (config_broken, data_corrupt) = (self.config_broken, self.data_corrupt);
        let Some(c) = self.containers.get_mut(name) else { return };
        c.started_at = Some(now);
        c.finished_at = None;
        c.oom_killed = false;
        c.health_log.clear();
        c.exit_code = Some(0);
        c.ready = false;
        c.healthy_at = None;
        if knobs.restart_never_runs {
            c.state = ContainerState::Restarting;
            c.health = Health::Starting;
            return;
        }
        c.state = ContainerState::Running;
        c.health = Health::Healthy;
        if let Some((ms, code)) = c.crash_after_start {
            c.pending_crash = Some((
                now.plus_millis(ms),
                code,
                false,
                vec![format!("fatal: exiting with {code} (db postgres://shop:hunter2@shop-db/shop)")],
            ));
        }
        if c.role != Role::Db {
            c.ready = true;
            return;
        }
        // A database with an unfixed cause fails its start about a second later.
        let failure = if db_full {
            Some(vec![
                "FATAL:  could not write lock file \"postmaster.pid\": No space left on device".to_string(),
                "LOG:  shutting down due to startup process failure".to_string(),
            ])
        } else if config_broken {
            Some(config_error_lines())
        } else if data_corrupt {
            Some(corruption_lines())
        } else {
            None
        };
        if let Some(lines) = failure {
            c.health = Health::Starting;
            c.pending_crash = Some((now.plus_millis(1_000), 1, false, lines));
        } else if knobs.db_stuck_starting {
            c.health = Health::Starting;
        } else if let Some(ms) = knobs.db_crashes_after_start_ms {
            c.ready = true;
            c.pending_crash =
                Some((now.plus_millis(ms), 1, false, vec!["LOG:  terminating on an unexplained signal".to_string()]));
        } else {
            c.ready = true;
            if let Some(lag) = knobs.db_health_lag_ms {
                c.health = Health::Starting;
                c.healthy_at = Some(now.plus_millis(lag));
            }
            c.logs.push(LogLine { at: now, text: "LOG:  database system is ready to accept connections".into() });
        }
    }
}

impl Host for SimHost {
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, HostError> {
        let w = self.check("list containers")?;
        Ok(w.containers
            .iter()
            .map(|(n, c)| ContainerSummary { name: ContainerName::new(n), state: c.state, labels: c.labels.clone() })
            .collect())
    }

    async fn inspect(&self, container: &str) -> Result<ContainerStatus, HostError> {
        let op = format!("inspect {container}");
        let w = self.check(&op)?;
        let c = w.container(&op, container)?;
        Ok(ContainerStatus {
            name: ContainerName::new(container),
            id: Some(c.id.clone()),
            state: c.state,
            health: c.health,
            exit_code: c.exit_code,
            oom_killed: c.oom_killed,
            started_at: c.started_at,
            finished_at: c.finished_at,
            restart_policy: c.restart_policy.clone(),
            restart_count: Some(0),
            health_log: c.health_log.clone(),
        })
    }

    async fn recent_logs(
        &self,
        container: &str,
        since: Timestamp,
        max_lines: usize,
    ) -> Result<Vec<LogLine>, HostError> {
        let op = format!("logs {container}");
        let w = self.check(&op)?;
        let c = w.container(&op, container)?;
        let recent: Vec<&LogLine> = c.logs.iter().filter(|l| l.at >= since).collect();
        Ok(recent[recent.len().saturating_sub(max_lines)..].iter().map(|l| (*l).clone()).collect())
    }

    async fn disk_usage(&self, container: &str, path: &str) -> Result<DiskUsage, HostError> {
        let op = format!("disk usage {container}:{path}");
        let w = self.check(&op)?;
        let c = w.container(&op, container)?;
        let d = &w.disks[w.disk_of(&op, c, path)?];
        Ok(DiskUsage { total_bytes: d.capacity, used_bytes: d.used() })
    }

    async fn watch_disk(&self, container: &str, path: &str) -> Result<Option<DiskUsage>, HostError> {
        let unseen = self.check("watch disk")?.knobs.no_disk_watch;
        if unseen {
            return Ok(None);
        }
        self.disk_usage(container, path).await.map(Some)
    }

    async fn probe_ready(&self, container: &str) -> Result<Option<bool>, HostError> {
        let op = format!("readiness check in {container}");
        let w = self.check(&op)?;
        let c = w.container(&op, container)?;
        if w.knobs.probe_fails {
            return Err(HostError::new(HostErrorKind::Other, op, "exec failed"));
        }
        if c.role == Role::Other {
            return Ok(None);
        }
        Ok(Some(c.state == ContainerState::Running && c.ready))
    }

    async fn clean_logs(&self, container: &str, log_paths: &[String]) -> Result<CleanReport, HostError> {
        let op = format!("clean_logs {container}");
        let mut w = self.check(&op)?;
        if w.knobs.clean_fails {
            return Err(HostError::new(HostErrorKind::Other, op, "helper container failed"));
        }
        // As on Docker: a log path holding the database's data is refused.
        if let Some((p, d)) = log_path_holding_data(log_paths, &[]) {
            return Err(HostError::new(
                HostErrorKind::Other,
                op,
                format!("refusing log path {p}: it holds the database's data directory {d}"),
            ));
        }
        let c = w.container(&op, container)?;
        let disks: Vec<usize> = c.mounts.iter().map(|(_, d)| *d).collect();
        let mut report = CleanReport::default();
        let mut files = Vec::new();
        for d in disks {
            for (path, f) in w.disks[d].files.iter_mut() {
                if f.size > 0 && log_paths.iter().any(|l| is_under(path, l)) && is_log_file(path) {
                    report.files += 1;
                    report.freed_bytes += f.size;
                    f.size = 0;
                    files.push(path.clone());
                }
            }
        }
        files.sort();
        files.dedup();
        w.ops.push(SimOp::Clean { container: container.to_string(), files });
        Ok(report)
    }

    async fn restart(&self, container: &str) -> Result<(), HostError> {
        let op = format!("restart {container}");
        let now = self.clock.now();
        let mut w = self.check(&op)?;
        w.container(&op, container)?;
        if w.knobs.restart_fails {
            return Err(HostError::new(HostErrorKind::Timeout, op, "restart timed out"));
        }
        w.ops.push(SimOp::Restart { container: container.to_string(), at: now });
        w.start(container, now);
        Ok(())
    }

    async fn prune_exited(&self, label: &str, protect: &[ContainerName]) -> Result<Vec<ContainerName>, HostError> {
        let op = "prune containers".to_string();
        let mut w = self.check(&op)?;
        if w.knobs.prune_fails {
            return Err(HostError::new(HostErrorKind::Conflict, op, "a prune operation is already running"));
        }
        if !label.contains('=') {
            return Err(HostError::new(HostErrorKind::OutOfScope, "prune", "label must be key=value"));
        }
        let doomed: Vec<String> = w
            .containers
            .iter()
            .filter(|(n, c)| {
                let summary =
                    ContainerSummary { name: ContainerName::new(n), state: c.state, labels: c.labels.clone() };
                summary.prunable(label) && !protect.iter().any(|p| p.as_str() == n.as_str())
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in &doomed {
            w.containers.remove(n);
        }
        w.ops.push(SimOp::Prune { removed: doomed.clone() });
        Ok(doomed.iter().map(|n| ContainerName::new(n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 8 item 12, mirrored from the Docker host: a log path holding
    /// the database's data directory is refused and nothing is truncated.
    #[tokio::test]
    async fn clean_logs_refuses_a_log_path_holding_the_data_directory() {
        let host = SimHost::lab(SimClock::new(Timestamp(1_000_000)));
        host.inject(SimFault::ChainReaction);
        let before = host.non_log_files(&[]);
        for bad in ["/var/lib/postgresql", "/var/lib", "/var"] {
            let e = host.clean_logs(DB, &[paths::DB_LOGS.to_string(), bad.to_string()]).await.unwrap_err();
            assert!(e.message.contains("data directory"), "{bad}: {e}");
        }
        assert_eq!(host.non_log_files(&[]), before, "a refused clean touched files");
        let r = host.clean_logs(DB, &[paths::DB_LOGS.to_string()]).await.unwrap();
        assert!(r.files >= 1 && r.freed_bytes > 0, "{r:?}");
    }
}
