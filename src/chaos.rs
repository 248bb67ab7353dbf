//! The chaos catalogue: the specification's fault scenarios and the
//! stateless service's, each with the outcome OpsGuard must reach. The
//! simulated host injects the specification's in memory; the Docker chaos
//! engine injects them all into the real lab.

pub mod docker;

use std::fmt;

use crate::audit::Resolution;
use crate::host::sim::SimFault;
use crate::model::{AlarmKind, RootCause, StopReason};

/// A documented fault scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// `fill_web_disk_trigger()`: garbage log on the web disk.
    WebDiskFill,
    /// `create_zombie_containers(15)`.
    Zombies,
    /// `trigger_db_garbage_flood()`: non-log data fills the database's disk.
    DbGarbageFlood,
    /// `trigger_config_corruption()`.
    DbConfigCorruption,
    /// `trigger_oom_kill()`.
    DbOomKill,
    /// `trigger_data_corruption()`.
    DbDataCorruption,
    /// Phase 3: a crash log fills the database's disk, then it goes down.
    ChainReaction,
    /// A log on the web log disk grows at a steady rate (issue #12): seen
    /// before it crosses the threshold.
    WebLogSlowFill,
    /// The database server is stopped (SIGSTOP) without exiting: it runs
    /// and answers nothing, its health check fails (issue #10).
    DbHang,
}

/// What OpsGuard must reach for a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The alarm it must raise.
    pub alarm: AlarmKind,
    /// How the incident must end when risky actions are approved.
    pub resolution: Resolution,
    /// Whether the fix needs a human's approval (and so ends
    /// `ApprovalRejected` when it is refused).
    pub needs_approval: bool,
}

impl Scenario {
    /// Every scenario, in the specification's order.
    pub const ALL: [Scenario; 9] = [
        Scenario::WebDiskFill,
        Scenario::Zombies,
        Scenario::DbGarbageFlood,
        Scenario::DbConfigCorruption,
        Scenario::DbOomKill,
        Scenario::DbDataCorruption,
        Scenario::ChainReaction,
        Scenario::WebLogSlowFill,
        Scenario::DbHang,
    ];

    /// The command-line name (`web-disk-fill`, …).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::WebDiskFill => "web-disk-fill",
            Scenario::Zombies => "zombies",
            Scenario::DbGarbageFlood => "db-garbage-flood",
            Scenario::DbConfigCorruption => "db-config-corruption",
            Scenario::DbOomKill => "db-oom-kill",
            Scenario::DbDataCorruption => "db-data-corruption",
            Scenario::ChainReaction => "chain-reaction",
            Scenario::WebLogSlowFill => "web-log-slow-fill",
            Scenario::DbHang => "db-hang",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The outcome OpsGuard must reach.
    pub fn expected(self) -> Expected {
        let resolved = Resolution::Resolved;
        let stopped = |reason| Resolution::Stopped { reason };
        let (alarm, resolution, needs_approval) = match self {
            Scenario::WebDiskFill => (AlarmKind::WebLogSaturation, resolved, false),
            Scenario::Zombies => (AlarmKind::ZombieOutbreak, resolved, false),
            Scenario::DbGarbageFlood => {
                (AlarmKind::DbCrash(RootCause::DiskFull), stopped(StopReason::CleanDidNotFreeDisk), false)
            }
            Scenario::DbConfigCorruption => {
                (AlarmKind::DbCrash(RootCause::ConfigError), stopped(StopReason::ConfigError), false)
            }
            Scenario::DbOomKill => (AlarmKind::DbCrash(RootCause::OomKill), resolved, true),
            Scenario::DbDataCorruption => {
                (AlarmKind::DbCrash(RootCause::DataCorruption), stopped(StopReason::DataCorruption), false)
            }
            Scenario::ChainReaction => (AlarmKind::DbCrash(RootCause::DiskFull), resolved, true),
            // Cleaned early, by the default rules' plan.
            Scenario::WebLogSlowFill => (AlarmKind::WebLogDiskFilling, resolved, false),
            // A database that still runs is not restarted: a human looks.
            Scenario::DbHang => (AlarmKind::DbUnhealthy, stopped(StopReason::Unhealthy), false),
        };
        Expected { alarm, resolution, needs_approval }
    }

    /// The same fault on the simulated host.
    pub fn sim_fault(self) -> SimFault {
        match self {
            Scenario::WebDiskFill => SimFault::WebDiskFill,
            Scenario::Zombies => SimFault::Zombies(15),
            Scenario::DbGarbageFlood => SimFault::DbGarbageFlood,
            Scenario::DbConfigCorruption => SimFault::DbConfigCorruption,
            Scenario::DbOomKill => SimFault::DbOomKill,
            Scenario::DbDataCorruption => SimFault::DbDataCorruption,
            Scenario::ChainReaction => SimFault::ChainReaction,
            Scenario::WebLogSlowFill => SimFault::WebDiskSlowFill,
            Scenario::DbHang => SimFault::DbHang,
        }
    }
}

/// A fault in a stateless service (issue #10). OpsGuard heals it with
/// restarts that need no approval, within the `[stateless]` budget; no
/// incident of the specification's kind is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatelessScenario {
    /// The service is killed (SIGKILL, exit 137).
    ApiCrash,
    /// The service is broken so that every start fails (exit 3), then
    /// killed: it crash-loops until the budget is spent.
    ApiCrashLoop,
    /// The service's health check is made to fail while it runs.
    ApiUnhealthy,
    /// The database the service depends on dies (the specification's OOM
    /// kill of the lab's database), then the service crashes with it: the
    /// service must be held while the database is down, not restarted in a
    /// loop, and restarted once the database is healed.
    DbDownWithDependents,
}

impl StatelessScenario {
    /// Every stateless scenario.
    pub const ALL: [StatelessScenario; 4] = [
        StatelessScenario::ApiCrash,
        StatelessScenario::ApiCrashLoop,
        StatelessScenario::ApiUnhealthy,
        StatelessScenario::DbDownWithDependents,
    ];

    /// The lab's stateless service, the default target.
    pub const LAB_TARGET: &'static str = "shop-api";

    /// The command-line name (`api-crash`, …).
    pub fn name(self) -> &'static str {
        match self {
            StatelessScenario::ApiCrash => "api-crash",
            StatelessScenario::ApiCrashLoop => "api-crashloop",
            StatelessScenario::ApiUnhealthy => "api-unhealthy",
            StatelessScenario::DbDownWithDependents => "db-down-with-dependents",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<StatelessScenario> {
        StatelessScenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether OpsGuard must give up on it (the budget spent) rather than
    /// bring it back.
    pub fn escalates(self) -> bool {
        self == StatelessScenario::ApiCrashLoop
    }

    /// What OpsGuard must do, for `chaos list`.
    pub fn expected(self) -> &'static str {
        match self {
            StatelessScenario::ApiCrash => "crashed → restarted at once, no approval → running and healthy",
            StatelessScenario::ApiCrashLoop => {
                "crash loop → restarted with backoff until the budget is spent → STOP: left down for a human"
            }
            StatelessScenario::ApiUnhealthy => "unhealthy → restarted, no approval → running and healthy",
            StatelessScenario::DbDownWithDependents => {
                "db-prod OOM-killed, then the API crashed → the API held, not restarted, while db-prod is down → \
                 db-prod restarted (approval) and verified → the API restarted once → running and healthy"
            }
        }
    }
}

impl fmt::Display for StatelessScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
