//! The observer: turns what a [`Host`] shows into [`Alarm`]s with evidence,
//! and re-checks an alarm's condition for verification.
//!
//! It watches every web server and database of its [`Roster`]: the rules'
//! `[web]` and `[database]`, and those the containers' labels ask for,
//! read again at each sweep (issue #10). Each raises its own alarms, so
//! each is healed by its own incident.
//!
//! It polls (a full sweep at the normal interval, every 2 s in rapid mode
//! after a fix, see [`Cadence`]) and also takes container events, so a
//! Docker event stream can raise a crash alarm without waiting for the next
//! sweep. Between sweeps it also reads the web log disk the cheap way
//! ([`Observer::watch_web`], paced by the scheduler), so a full log disk
//! is seen within a second rather than at the next sweep. It never decides
//! anything: that is the engine's job.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::alarm::{self, Clears, DatabaseCrash, Observed, Reading};
use crate::classify::LogScan;
use crate::host::{ContainerEvent, ContainerEventKind, ContainerSummary, DiskUsage, Host, HostError};
use crate::model::{Alarm, ContainerName, ContainerState, Health, RootCause, Timestamp};
use crate::rules::{Rules, Target};
pub use opsguard_core::observe::{Cadence, Check};
pub use opsguard_core::roster::{Role, Roster};
use opsguard_core::trend::{FillTrend, TrendSettings};

/// Most log lines read for one classification: the newest of the window.
/// The classifier keeps only what can decide and a short tail, so this
/// bounds time, not memory; a crashed server's last words are at the end
/// of its window, so a flood before them cannot push them out.
pub const MAX_LOG_LINES: usize = 1_000_000;
/// Log lines kept as the tail shown to a human or an LLM.
pub const TAIL_LINES: usize = 20;

/// The result of one full sweep.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Alarms raised.
    pub alarms: Vec<Alarm>,
    /// Checks that could not be made (a vanished daemon, an unknown container).
    pub errors: Vec<HostError>,
    /// The containers as the sweep listed them, when it could: the
    /// stateless services are read from the same listing.
    pub listing: Option<Vec<ContainerSummary>>,
}

impl Sweep {
    fn take(&mut self, result: Result<Option<Alarm>, HostError>) {
        match result {
            Ok(Some(alarm)) => self.alarms.push(alarm),
            Ok(None) => {}
            Err(e) => self.errors.push(e),
        }
    }
}

/// What one read of the disk watch found.
#[derive(Debug)]
// One value per read, handed on at once: boxing the alarm buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum DiskWatch {
    /// The host cannot read this disk the cheap way; the sweeps read it.
    Unavailable,
    /// The disk's usage, and the alarm it raises, if any.
    Read {
        /// The usage read.
        usage: DiskUsage,
        /// `WEB_LOG_SATURATION`, when the disk is above threshold.
        alarm: Option<Alarm>,
    },
}

/// Containers whose refused labels were warned about, at most: a host
/// relabelling containers in a loop cannot grow this without bound.
const MAX_WARNED: usize = 1024;

/// The services as the last sweep found them, shared by an observer's
/// clones (the driver's sweeps, the incidents' checks).
#[derive(Debug)]
struct Found {
    roster: Arc<Roster>,
    warned: BTreeSet<ContainerName>,
    /// Services the rules name that the last sweep did not find.
    missing: BTreeSet<ContainerName>,
}

/// Watches the host for the rules' alarms.
#[derive(Clone, Debug)]
pub struct Observer {
    rules: Arc<Rules>,
    found: Arc<Mutex<Found>>,
}

impl Observer {
    /// An observer applying `rules`, watching the rules' two services
    /// until its first sweep reads the labels.
    pub fn new(rules: Arc<Rules>) -> Observer {
        let roster = Arc::new(Roster::of_rules(&rules));
        let found = Found { roster, warned: BTreeSet::new(), missing: BTreeSet::new() };
        Observer { rules, found: Arc::new(Mutex::new(found)) }
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The web servers and databases watched, as the last sweep found them.
    pub fn roster(&self) -> Arc<Roster> {
        Arc::clone(&self.found().roster)
    }

    fn found(&self) -> std::sync::MutexGuard<'_, Found> {
        // Written whole under the lock: a panic cannot leave it half-made.
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the services from a listing: the rules' and the labelled ones.
    /// A refusal is warned about once per container. A service the rules
    /// name that is not on the host or not in scope (a host run by labels
    /// alone, where the built-in `web-prod` and `db-prod` do not exist) is
    /// left out, warned about once, not failed at every sweep.
    pub fn discover(&self, containers: &[ContainerSummary]) -> Arc<Roster> {
        let (mut roster, refused) = Roster::build(&self.rules, containers.iter().map(|c| (&c.name, &c.labels)));
        let scope = &self.rules.scope_label;
        let mut found = self.found();
        roster.retain(|s| {
            let name = &s.target.container;
            if !s.from_rules || containers.iter().any(|c| c.name == *name && c.has_label(scope)) {
                found.missing.remove(name);
                return true;
            }
            if found.missing.insert(name.clone()) {
                tracing::warn!(
                    container = %crate::redact::printable(name.as_str()),
                    "the rules' [{}] is not on this host, or not in scope: not watched until it is",
                    s.role
                );
            }
            false
        });
        for r in refused {
            if found.warned.len() < MAX_WARNED && found.warned.insert(r.container.clone()) {
                tracing::warn!(container = %crate::redact::printable(r.container.as_str()), "labels ignored: {}", r.why);
            }
        }
        let roster = Arc::new(roster);
        found.roster = Arc::clone(&roster);
        roster
    }

    /// Checks everything: each web server's log disk, each database, the
    /// zombies. The listing that counts the zombies also finds the services
    /// ([`Observer::discover`]).
    pub async fn sweep<H: Host>(&self, host: &H, now: Timestamp) -> Sweep {
        let mut sweep = Sweep::default();
        let listing = host.list_containers().await;
        // Without a listing, the services of the last one are checked.
        let roster = match &listing {
            Ok(list) => self.discover(list),
            Err(_) => self.roster(),
        };
        for service in roster.services() {
            let t = &service.target;
            let result = match service.role {
                Role::Web => self.check_web_at(host, t, now).await,
                Role::Database => self.check_database_at(host, t, now).await,
            };
            sweep.take(result);
        }
        match listing {
            Ok(list) => {
                sweep.take(Ok(self.zombie_alarm(&list, &roster, now)));
                sweep.listing = Some(list);
            }
            Err(e) => sweep.errors.push(e),
        }
        sweep
    }

    /// `WEB_LOG_SATURATION` when the rules' web log disk is above threshold.
    pub async fn check_web<H: Host>(&self, host: &H, now: Timestamp) -> Result<Option<Alarm>, HostError> {
        self.check_web_at(host, &self.rules.web, now).await
    }

    /// `WEB_LOG_SATURATION` when `web`'s log disk is above threshold.
    pub async fn check_web_at<H: Host>(
        &self,
        host: &H,
        web: &Target,
        now: Timestamp,
    ) -> Result<Option<Alarm>, HostError> {
        let used_pct = host.disk_usage(web.container.as_str(), &web.disk_path).await?.used_pct();
        Ok(self.web_alarm(host, web, used_pct, now).await)
    }

    /// `web`'s log disk read without starting anything
    /// ([`Host::watch_disk`]): `WEB_LOG_SATURATION` as
    /// [`Observer::check_web_at`] raises it, between sweeps.
    pub async fn watch_web<H: Host>(&self, host: &H, web: &Target, now: Timestamp) -> Result<DiskWatch, HostError> {
        let Some(usage) = host.watch_disk(web.container.as_str(), &web.disk_path).await? else {
            return Ok(DiskWatch::Unavailable);
        };
        Ok(DiskWatch::Read { usage, alarm: self.web_alarm(host, web, usage.used_pct(), now).await })
    }

    /// A fill trend of the web log disk under the rules (`None` when
    /// `thresholds.web_disk_fill_horizon_secs` is 0): fitted to the window's
    /// readings, warning once they span a third of it.
    pub fn fill_trend(&self) -> Option<FillTrend> {
        let t = &self.rules.thresholds;
        let window_ms = t.web_disk_fill_window_secs * 1000;
        let settings =
            TrendSettings { window_ms, min_span_ms: window_ms / 3, horizon_ms: t.web_disk_fill_horizon_secs * 1000 };
        (t.web_disk_fill_horizon_secs > 0).then(|| FillTrend::new(settings, t.web_disk_pct))
    }

    /// Feeds `trend` the disk watch's reading of `web`;
    /// `WEB_LOG_DISK_FILLING` while it foresees the threshold crossed
    /// within the horizon.
    pub fn foresee_web(&self, trend: &mut FillTrend, web: &Target, usage: DiskUsage, now: Timestamp) -> Option<Alarm> {
        let forecast = trend.observe(now, usage.used_pct())?;
        let observed = Observed::WebDiskFilling {
            container: web.container.clone(),
            used_pct: forecast.used_pct,
            rate_pct_per_min: forecast.rate_pct_per_min,
            crosses_in_ms: Some(forecast.crosses_at.millis_since(now)),
            state: None,
        };
        alarm::assess(&self.rules, observed, now).alarm
    }

    async fn web_alarm<H: Host>(&self, host: &H, web: &Target, used_pct: f64, now: Timestamp) -> Option<Alarm> {
        let observed = Observed::WebDisk { container: web.container.clone(), used_pct, state: None };
        let mut alarm = alarm::assess(&self.rules, observed, now).alarm?;
        // Evidence only, so read only when there is an alarm to carry it.
        alarm.evidence.state = host.inspect(web.container.as_str()).await.ok().map(|s| s.state);
        Some(alarm)
    }

    /// `DB_CRASH` with its root cause when the rules' database is not running.
    pub async fn check_database<H: Host>(&self, host: &H, now: Timestamp) -> Result<Option<Alarm>, HostError> {
        self.check_database_at(host, &self.rules.database, now).await
    }

    /// `DB_CRASH` with its root cause when the database `db` is not
    /// running; `DB_UNHEALTHY` when it runs and Docker says its health
    /// check fails.
    pub async fn check_database_at<H: Host>(
        &self,
        host: &H,
        db: &Target,
        now: Timestamp,
    ) -> Result<Option<Alarm>, HostError> {
        let status = host.inspect(db.container.as_str()).await?;
        if status.state == ContainerState::Running && status.health == Health::Unhealthy {
            return self.unhealthy_database(host, db, status, now).await;
        }
        if !status.state.is_stopped() {
            return Ok(None);
        }
        // Read the window before the crash, however late we notice it.
        let end = status.finished_at.unwrap_or(now);
        let since = Timestamp(end.0.saturating_sub(self.rules.observer.log_window_secs * 1000));
        // Only this run's lines: a disk-full PANIC from before the last start
        // (already fixed) must not tag an OOM kill a minute later as Disk Full
        // (seen on the real lab, issue #3).
        let since = since.max(status.started_at.unwrap_or_default());
        let mut scan = LogScan::new(&self.rules, TAIL_LINES);
        host.scan_logs(db.container.as_str(), since, MAX_LOG_LINES, &mut scan).await?;
        let (exit_code, oom_killed) = (status.exit_code, status.oom_killed);
        // The disk's own usage, where it could decide (a full-disk signature
        // whose other conditions hold) or for a reader of an unknown cause.
        let measure = scan.wants_disk_usage(exit_code, oom_killed)
            || scan.classify(exit_code, oom_killed, None).cause == RootCause::Unknown;
        let disk_used_pct = if measure {
            host.disk_usage(db.container.as_str(), &db.disk_path).await.ok().map(|u| u.used_pct())
        } else {
            None
        };
        let crash = DatabaseCrash {
            container: db.container.clone(),
            state: Some(status.state),
            fault_at: status.finished_at,
            exit_code,
            oom_killed,
            disk_used_pct,
            classification: scan.classify(exit_code, oom_killed, disk_used_pct),
            tail: scan.tail().map(str::to_string).collect(),
        };
        Ok(alarm::assess(&self.rules, Observed::DatabaseDown(Box::new(crash)), now).alarm)
    }

    /// `DB_UNHEALTHY`, with what its health checks said and its last lines.
    async fn unhealthy_database<H: Host>(
        &self,
        host: &H,
        db: &Target,
        status: crate::model::ContainerStatus,
        now: Timestamp,
    ) -> Result<Option<Alarm>, HostError> {
        let since = Timestamp(now.0.saturating_sub(self.rules.observer.log_window_secs * 1000));
        let since = since.max(status.started_at.unwrap_or_default());
        let mut scan = LogScan::new(&self.rules, TAIL_LINES);
        // The health log alone is evidence enough: lines that cannot be read
        // do not hold the alarm back.
        if let Err(e) = host.scan_logs(db.container.as_str(), since, MAX_LOG_LINES, &mut scan).await {
            tracing::warn!(error = %e, "could not read an unhealthy database's lines");
        }
        let tail = status.health_log.into_iter().chain(scan.tail().map(str::to_string)).collect();
        let observed = Observed::DatabaseUnhealthy { container: db.container.clone(), tail };
        Ok(alarm::assess(&self.rules, observed, now).alarm)
    }

    /// `ZOMBIE_OUTBREAK` when more prunable exited containers than allowed.
    pub async fn check_zombies<H: Host>(&self, host: &H, now: Timestamp) -> Result<Option<Alarm>, HostError> {
        let list = host.list_containers().await?;
        let roster = self.discover(&list);
        Ok(self.zombie_alarm(&list, &roster, now))
    }

    fn zombie_alarm(&self, list: &[ContainerSummary], roster: &Roster, now: Timestamp) -> Option<Alarm> {
        let exited = self.zombie_count(list, roster);
        alarm::assess(&self.rules, Observed::Zombies { exited }, now).alarm
    }

    /// What a container event calls for: a check of that container.
    pub async fn check_event<H: Host>(
        &self,
        host: &H,
        event: &ContainerEvent,
        now: Timestamp,
    ) -> Result<Option<Alarm>, HostError> {
        let name = event.container.as_str();
        let roster = self.roster();
        match event.kind {
            ContainerEventKind::Die => match roster.target_of(name, Role::Database) {
                Some(db) => self.check_database_at(host, db, now).await,
                None => self.check_zombies(host, now).await,
            },
            // A web server's log disk is the first suspect; a database's
            // ill health is its own alarm.
            ContainerEventKind::HealthStatus(Health::Unhealthy) => match roster.get(name) {
                Some(s) if s.role == Role::Web => self.check_web_at(host, &s.target, now).await,
                Some(s) => self.check_database_at(host, &s.target, now).await,
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Re-checks an alarm's condition, for verification.
    pub async fn recheck<H: Host>(&self, host: &H, alarm: &Alarm) -> Result<Check, HostError> {
        let clears = Clears::of(&self.rules, alarm.kind);
        if let Clears::ExitedAtMost(_) = clears {
            let list = host.list_containers().await?;
            let exited = self.zombie_count(&list, &self.discover(&list));
            return Ok(Check {
                state: None,
                health: Health::None,
                ready: None,
                started_at: None,
                cleared: clears.holds(Reading::Exited(exited)),
            });
        }
        let target = self.target(alarm.container.as_str()).ok_or_else(|| {
            HostError::new(
                crate::host::HostErrorKind::OutOfScope,
                "verify",
                format!("{} is not watched", alarm.container),
            )
        })?;
        let status = host.inspect(target.container.as_str()).await?;
        let reading = match clears {
            Clears::DiskBelow(_) => {
                Reading::DiskUsedPct(host.disk_usage(target.container.as_str(), &target.disk_path).await?.used_pct())
            }
            Clears::ExitedAtMost(_) | Clears::WithTheContainer => Reading::Nothing,
        };
        // Docker runs the health check only every interval (5 s on the
        // lab's database, the first one an interval after the start): run
        // it now rather than wait. A probe that cannot be run is no pass.
        let ready = if status.state == ContainerState::Running && status.health == Health::Starting {
            host.probe_ready(target.container.as_str()).await.unwrap_or(Some(false))
        } else {
            None
        };
        Ok(Check {
            state: Some(status.state),
            health: status.health,
            ready,
            started_at: status.started_at,
            cleared: clears.holds(reading),
        })
    }

    /// The watched service whose container is `name`: its logs and disk.
    pub fn target(&self, name: &str) -> Option<Target> {
        self.roster().get(name).map(|s| s.target.clone())
    }

    /// The watched services, which are never zombies and never pruned.
    pub fn protected(&self) -> Vec<ContainerName> {
        self.roster().names()
    }

    /// The exited containers a prune would remove: in scope, marked
    /// `opsguard.prune=true`, not a watched service. Any other exited
    /// container (a one-shot job without the mark) is not a zombie: it
    /// neither raises the alarm nor could be pruned to clear it.
    fn zombie_count(&self, containers: &[ContainerSummary], roster: &Roster) -> u32 {
        let protected = roster.names();
        containers.iter().filter(|c| c.prunable(&self.rules.scope_label) && !protected.contains(&c.name)).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SimClock};
    use crate::host::sim::{SimFault, SimHost};
    use crate::model::{AlarmKind, ContainerState};
    use std::time::Duration;

    fn setup() -> (Observer, SimHost) {
        let clock = SimClock::new(Timestamp(1_700_000_000_000));
        (Observer::new(Arc::new(Rules::default_rules())), SimHost::lab(clock))
    }

    async fn sweep_kinds(o: &Observer, h: &SimHost) -> Vec<AlarmKind> {
        let s = o.sweep(h, h.clock().now()).await;
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        s.alarms.into_iter().map(|a| a.kind).collect()
    }

    #[tokio::test]
    async fn healthy_lab_raises_nothing() {
        let (o, h) = setup();
        assert!(sweep_kinds(&o, &h).await.is_empty());
    }

    #[tokio::test]
    async fn each_fault_raises_the_specified_alarm() {
        let cases = [
            (SimFault::WebDiskFill, AlarmKind::WebLogSaturation),
            (SimFault::Zombies(15), AlarmKind::ZombieOutbreak),
            (SimFault::DbGarbageFlood, AlarmKind::DbCrash(RootCause::DiskFull)),
            (SimFault::DbConfigCorruption, AlarmKind::DbCrash(RootCause::ConfigError)),
            (SimFault::DbOomKill, AlarmKind::DbCrash(RootCause::OomKill)),
            (SimFault::DbDataCorruption, AlarmKind::DbCrash(RootCause::DataCorruption)),
            (SimFault::ChainReaction, AlarmKind::DbCrash(RootCause::DiskFull)),
            (SimFault::DbKilled, AlarmKind::DbCrash(RootCause::Unknown)),
        ];
        for (fault, kind) in cases {
            let (o, h) = setup();
            h.inject(fault);
            assert_eq!(sweep_kinds(&o, &h).await, vec![kind], "{fault:?}");
        }
    }

    #[tokio::test]
    async fn five_zombies_are_tolerated_six_are_not() {
        let (o, h) = setup();
        h.inject(SimFault::Zombies(5));
        assert!(sweep_kinds(&o, &h).await.is_empty());
        h.inject(SimFault::Zombies(1));
        assert_eq!(sweep_kinds(&o, &h).await, vec![AlarmKind::ZombieOutbreak]);
    }

    // Issue 10, item 6: an exited container in scope without
    // `opsguard.prune=true` (a one-shot job) is no zombie: it neither counts
    // toward the outbreak nor is pruned; nor is one marked prunable outside
    // the scope.
    #[tokio::test]
    async fn only_prunable_containers_are_zombies_and_pruned() {
        let (o, h) = setup();
        h.add_exited("migrate", &["opsguard.lab=true", "opsguard.role=oneshot"]);
        h.add_exited("elsewhere", &["opsguard.prune=true"]);
        h.inject(SimFault::Zombies(5));
        assert!(sweep_kinds(&o, &h).await.is_empty(), "a one-shot without the prune label counted");
        h.inject(SimFault::Zombies(1));
        assert_eq!(sweep_kinds(&o, &h).await, vec![AlarmKind::ZombieOutbreak]);
        let removed = h.prune_exited(&o.rules.scope_label, &o.protected()).await.unwrap();
        assert_eq!(removed.len(), 6);
        assert_eq!(h.state("migrate"), Some(ContainerState::Exited));
        assert_eq!(h.state("elsewhere"), Some(ContainerState::Exited));
        assert!(sweep_kinds(&o, &h).await.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]

        /// Whatever the mix, the outbreak is decided by the prunable
        /// containers alone and a prune removes those and only those.
        #[test]
        fn the_outbreak_and_the_prune_see_only_prunable_containers(
            zombies in 0u32..12,
            kept in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(&["opsguard.lab=true"][..]),
                proptest::strategy::Just(&["opsguard.lab=true", "opsguard.prune=false"][..]),
                proptest::strategy::Just(&["opsguard.prune=true"][..]),
                proptest::strategy::Just(&["opsguard.lab=false", "opsguard.prune=true"][..]),
            ], 0..8),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let (o, h) = setup();
                for (i, labels) in kept.iter().enumerate() {
                    h.add_exited(&format!("kept-{i}"), labels);
                }
                h.inject(SimFault::Zombies(zombies));
                let raised = sweep_kinds(&o, &h).await.contains(&AlarmKind::ZombieOutbreak);
                assert_eq!(raised, zombies > o.rules.thresholds.zombie_max);
                let removed = h.prune_exited(&o.rules.scope_label, &o.protected()).await.unwrap();
                assert_eq!(removed.len() as u32, zombies);
                for i in 0..kept.len() {
                    assert_eq!(h.state(&format!("kept-{i}")), Some(ContainerState::Exited));
                }
            });
        }
    }

    #[tokio::test]
    async fn crash_evidence_carries_exit_code_flag_and_lines() {
        let (o, h) = setup();
        h.inject(SimFault::ChainReaction);
        let a = o.check_database(&h, h.clock().now()).await.unwrap().unwrap();
        assert_eq!(a.evidence.exit_code, Some(1));
        assert_eq!(a.evidence.oom_killed, Some(false));
        assert_eq!(a.evidence.disk_used_pct, Some(100.0));
        assert!(a.evidence.log_lines.iter().any(|l| l.contains("No space left on device")));
    }

    #[tokio::test]
    async fn logs_older_than_the_window_do_not_count() {
        let (o, h) = setup();
        h.write_logs("db-prod", &["PANIC:  could not write to file \"pg_wal/x\": No space left on device"]);
        h.clock().advance(Duration::from_secs(600));
        h.stop("db-prod");
        let a = o.check_database(&h, h.clock().now()).await.unwrap().unwrap();
        assert_eq!(a.kind, AlarmKind::DbCrash(RootCause::Unknown));
    }

    // Regression (issue #3): on the real lab an OOM kill 7 s after a fixed
    // disk-full crash was tagged Disk Full from the previous run's lines.
    #[tokio::test]
    async fn lines_from_before_the_last_start_do_not_count() {
        let (o, h) = setup();
        h.write_logs("db-prod", &["PANIC:  could not write to file \"pg_wal/x\": No space left on device"]);
        h.clock().advance(Duration::from_secs(5));
        h.restart("db-prod").await.unwrap();
        h.clock().advance(Duration::from_secs(5));
        h.inject(SimFault::DbOomKill);
        let a = o.check_database(&h, h.clock().now()).await.unwrap().unwrap();
        assert_eq!(a.kind, AlarmKind::DbCrash(RootCause::OomKill));
    }

    // Issue #8, item 4: the observer read the newest 10,000 lines only, so
    // a disk-full PANIC followed by 12,000 lines was tagged Unknown.
    #[tokio::test]
    async fn a_decisive_line_followed_by_a_flood_still_decides() {
        let (o, h) = setup();
        h.inject(SimFault::DbGarbageFlood);
        let noise: Vec<String> = (0..12_000)
            .map(|i| format!("2026-11-20 10:00:03.000 UTC [{i}] LOG:  connection received: host=10.0.0.7 port={i}"))
            .collect();
        h.write_logs("db-prod", &noise.iter().map(String::as_str).collect::<Vec<_>>());
        let a = o.check_database(&h, h.clock().now()).await.unwrap().unwrap();
        assert_eq!(a.kind, AlarmKind::DbCrash(RootCause::DiskFull));
        assert_eq!(a.evidence.log_tail.len(), TAIL_LINES);
        assert!(a.evidence.log_tail.last().unwrap().contains("port=11999"));
    }

    // Issue #8, item 1: a full-disk line without a full disk is not a full disk.
    #[tokio::test]
    async fn a_disk_full_line_on_a_roomy_disk_is_unknown() {
        let (o, h) = setup();
        h.write_logs("db-prod", &["PANIC:  could not write to file \"pg_wal/x\": No space left on device"]);
        h.stop("db-prod");
        let a = o.check_database(&h, h.clock().now()).await.unwrap().unwrap();
        assert_eq!(a.kind, AlarmKind::DbCrash(RootCause::Unknown));
        assert!(a.evidence.disk_used_pct.is_some_and(|p| p < 85.0));
        let m = &a.evidence.signatures[0];
        assert_eq!((m.cause, m.matched()), (RootCause::DiskFull, false));
    }

    #[tokio::test]
    async fn the_disk_watch_raises_what_the_sweep_raises_and_says_when_it_cannot_read() {
        let (o, h) = setup();
        let now = h.clock().now();
        let DiskWatch::Read { usage, alarm: None } = o.watch_web(&h, &o.rules.web, now).await.unwrap() else {
            panic!("a healthy web disk read the cheap way raises nothing")
        };
        assert!(usage.used_pct() < 85.0);
        h.inject(SimFault::WebDiskFill);
        let DiskWatch::Read { alarm: Some(a), .. } = o.watch_web(&h, &o.rules.web, now).await.unwrap() else {
            panic!("a full web disk raises an alarm")
        };
        assert_eq!(Some(a), o.check_web(&h, now).await.unwrap());
        h.set_knobs(crate::host::sim::SimKnobs { no_disk_watch: true, ..Default::default() });
        assert!(matches!(o.watch_web(&h, &o.rules.web, now).await.unwrap(), DiskWatch::Unavailable));
        assert!(o.check_web(&h, now).await.unwrap().is_some(), "the sweep still reads it its own way");
        h.set_knobs(crate::host::sim::SimKnobs { daemon_down: true, ..Default::default() });
        assert!(o.watch_web(&h, &o.rules.web, now).await.is_err(), "an unreadable disk is an error, not an empty disk");
    }

    #[tokio::test]
    async fn a_slow_fill_is_foreseen_with_its_rate_and_crossing_time() {
        let (o, h) = setup();
        let mut trend = o.fill_trend().expect("on by default");
        h.inject(SimFault::WebDiskSlowFill);
        let start = h.clock().now();
        let mut warned = None;
        for _ in 0..120 {
            h.clock().advance(Duration::from_millis(500));
            let now = h.clock().now();
            let DiskWatch::Read { usage, alarm: None } = o.watch_web(&h, &o.rules.web, now).await.unwrap() else {
                panic!("saturated before the warning")
            };
            if let Some(a) = o.foresee_web(&mut trend, &o.rules.web, usage, now) {
                warned = Some((now, a, usage));
                break;
            }
        }
        let (at, a, usage) = warned.expect("a warning within a minute");
        assert_eq!(a.kind, AlarmKind::WebLogDiskFilling);
        // 8 MiB a second on a 2.5 GiB disk: 18.75 points a minute.
        let rate = a.evidence.fill_rate_pct_per_min.unwrap();
        assert!((rate - 18.75).abs() < 0.01, "{rate}");
        let left_ms = (85.0 - usage.used_pct()) / 18.75 * 60_000.0;
        let crossing = a.evidence.threshold_crossing_at.unwrap();
        assert!((crossing.millis_since(at) as f64 - left_ms).abs() < 1_000.0, "{crossing:?} vs {left_ms} ms");
        assert!(at.millis_since(start) >= 20_000, "not before the readings span 20 s");
    }

    // Issue #10: a host run by labels alone has no web-prod or db-prod;
    // the built-in rules' services are then warned about once, not failed.
    #[tokio::test]
    async fn the_rules_services_missing_from_the_host_are_skipped_not_failed() {
        let (o, h) = setup();
        h.remove("web-prod");
        let s = o.sweep(&h, h.clock().now()).await;
        assert!(s.errors.is_empty() && s.alarms.is_empty(), "{s:?}");
        h.inject(SimFault::DbOomKill);
        let s = o.sweep(&h, h.clock().now()).await;
        assert_eq!(s.alarms.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlarmKind::DbCrash(RootCause::OomKill)]);
    }

    #[tokio::test]
    async fn vanished_daemon_is_an_error_not_an_alarm() {
        let (o, h) = setup();
        h.set_knobs(crate::host::sim::SimKnobs { daemon_down: true, ..Default::default() });
        let s = o.sweep(&h, h.clock().now()).await;
        assert!(s.alarms.is_empty());
        assert_eq!(s.errors.len(), 3);
    }
}
