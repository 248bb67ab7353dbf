//! Alarm raising: from what was observed to the alarm it raises (or why it
//! raises none), and from a fresh reading to whether an alarm's condition
//! has cleared. The observer's sweep, the verification re-check and
//! `explain` all come through here, so each threshold is compared in one
//! place and a new alarm kind is one more [`Observed`] variant (and
//! [`AlarmSource`]) that every `match` below must handle.

use crate::classify::{self, CauseAnalysis, Classification, CrashFacts};
use crate::model::{self, Alarm, AlarmKind, ContainerName, ContainerState, Evidence, Timestamp};
use crate::redact::redact_evidence;
use crate::rules::Rules;

/// What the shell saw, for one alarm's condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// A web server's log disk.
    WebDisk {
        /// The web server.
        container: ContainerName,
        /// Usage of its log disk, in percent.
        used_pct: f64,
        /// Its state, when it could be read (evidence only).
        state: Option<ContainerState>,
    },
    /// A web server's log disk, below its threshold, and its fill trend
    /// ([`crate::trend::FillTrend`]).
    WebDiskFilling {
        /// The web server.
        container: ContainerName,
        /// Usage of its log disk now, in percent (the fitted line's value).
        used_pct: f64,
        /// How fast it fills, in percentage points a minute.
        rate_pct_per_min: f64,
        /// In how long, at that rate, it crosses the threshold: `None`
        /// when the trend does not warn.
        crosses_in_ms: Option<u64>,
        /// Its state, when it could be read (evidence only).
        state: Option<ContainerState>,
    },
    /// Exited containers in the zombie scope.
    Zombies {
        /// How many.
        exited: u32,
    },
    /// A database that is not running, its crash read and classified.
    DatabaseDown(Box<DatabaseCrash>),
    /// A database that runs but whose health check fails.
    DatabaseUnhealthy {
        /// The database.
        container: ContainerName,
        /// What its last health checks said (Docker's health log, raw),
        /// then its last lines, oldest first.
        tail: Vec<String>,
    },
}

model::enum_with_all! {
    /// Which alarm condition a set of facts is about: one for each
    /// [`Observed`] variant.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum AlarmSource {
        /// The database is down (`DB_CRASH`); its cause is classified.
        DbCrash,
        /// The web server's log disk (`WEB_LOG_SATURATION`).
        WebDisk,
        /// Exited containers (`ZOMBIE_OUTBREAK`).
        Zombies,
        /// The web server's log disk filling (`WEB_LOG_DISK_FILLING`).
        WebDiskFilling,
        /// The database runs but its health check fails (`DB_UNHEALTHY`).
        DbUnhealthy,
    }
    /// Every source, for the command line's choices.
    const ALL;
}

impl AlarmSource {
    /// The name `opsguard explain --alarm` takes.
    pub fn key(self) -> &'static str {
        match self {
            AlarmSource::DbCrash => "db-crash",
            AlarmSource::WebDisk => "web-disk",
            AlarmSource::Zombies => "zombies",
            AlarmSource::WebDiskFilling => "web-disk-filling",
            AlarmSource::DbUnhealthy => "db-unhealthy",
        }
    }

    /// The source named `key`.
    pub fn from_key(key: &str) -> Option<AlarmSource> {
        AlarmSource::ALL.into_iter().find(|s| s.key() == key)
    }

    /// What the facts must say, for the command line's help.
    pub fn describe(self) -> &'static str {
        match self {
            AlarmSource::DbCrash => "DB_CRASH: the database is down; its cause is classified",
            AlarmSource::WebDisk => "WEB_LOG_SATURATION: the web log disk (with --disk-used)",
            AlarmSource::Zombies => "ZOMBIE_OUTBREAK: exited containers (with --exited)",
            AlarmSource::WebDiskFilling => {
                "WEB_LOG_DISK_FILLING: the web log disk's fill rate (from a recorded alarm, --from)"
            }
            AlarmSource::DbUnhealthy => "DB_UNHEALTHY: the database runs but its health check fails",
        }
    }

    /// The condition that raised an alarm of `kind`.
    pub fn of(kind: AlarmKind) -> AlarmSource {
        match kind {
            AlarmKind::DbCrash(_) => AlarmSource::DbCrash,
            AlarmKind::WebLogSaturation => AlarmSource::WebDisk,
            AlarmKind::ZombieOutbreak => AlarmSource::Zombies,
            AlarmKind::WebLogDiskFilling => AlarmSource::WebDiskFilling,
            AlarmKind::DbUnhealthy => AlarmSource::DbUnhealthy,
        }
    }
}

/// The facts an alarm is raised and classified from, given by hand or
/// recorded, for `opsguard explain` and replays.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmFacts {
    /// Which alarm.
    pub source: AlarmSource,
    /// The container's exit code (database).
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled` (database).
    pub oom_killed: bool,
    /// Log lines from before the crash, oldest first (database).
    pub logs: Vec<String>,
    /// Disk usage in percent.
    pub disk_used_pct: Option<f64>,
    /// Exited containers in scope (zombies).
    pub exited_containers: Option<u32>,
    /// The disk's fill rate, in percentage points a minute (a filling disk).
    pub fill_rate_pct_per_min: Option<f64>,
}

impl AlarmFacts {
    /// The facts a recorded alarm carries: its flags, its matching lines and
    /// its log tail (tail first, as it is in log order, then any matching
    /// line the tail does not hold).
    pub fn from_alarm(alarm: &Alarm) -> AlarmFacts {
        let e = &alarm.evidence;
        let mut logs = e.log_tail.clone();
        for l in &e.log_lines {
            if !logs.contains(l) {
                logs.push(l.clone());
            }
        }
        AlarmFacts {
            source: AlarmSource::of(alarm.kind),
            exit_code: e.exit_code,
            oom_killed: e.oom_killed.unwrap_or(false),
            logs,
            disk_used_pct: e.disk_used_pct,
            exited_containers: e.exited_containers,
            fill_rate_pct_per_min: e.fill_rate_pct_per_min,
        }
    }

    /// What these facts say was observed on the rules' own containers, for
    /// [`assess`], with the classifier's reasons for a crash; or which fact
    /// is missing.
    pub fn observe(&self, rules: &Rules) -> Result<(Observed, Option<CauseAnalysis>), &'static str> {
        match self.source {
            AlarmSource::DbCrash => {
                let analysis = classify::analyse(
                    rules,
                    CrashFacts {
                        exit_code: self.exit_code,
                        oom_killed: self.oom_killed,
                        disk_used_pct: self.disk_used_pct,
                        logs: &self.logs,
                    },
                );
                let crash = DatabaseCrash {
                    container: rules.database.container.clone(),
                    state: None,
                    fault_at: None,
                    exit_code: self.exit_code,
                    oom_killed: self.oom_killed,
                    disk_used_pct: self.disk_used_pct,
                    classification: analysis.classification.clone(),
                    tail: Vec::new(),
                };
                Ok((Observed::DatabaseDown(Box::new(crash)), Some(analysis)))
            }
            AlarmSource::WebDisk => self
                .disk_used_pct
                .map(|used_pct| {
                    (Observed::WebDisk { container: rules.web.container.clone(), used_pct, state: None }, None)
                })
                .ok_or("no disk usage given (--disk-used)"),
            AlarmSource::WebDiskFilling => {
                let (Some(used_pct), Some(rate)) = (self.disk_used_pct, self.fill_rate_pct_per_min) else {
                    return Err("no disk usage and fill rate given (a recorded alarm, --from)");
                };
                // One reading, no history: warned when within the horizon.
                let t = &rules.thresholds;
                let crosses_in_ms = (rate > 0.0)
                    .then(|| ((t.web_disk_pct - used_pct).max(0.0) / rate * 60_000.0).ceil())
                    .filter(|ms| *ms <= (t.web_disk_fill_horizon_secs * 1000) as f64)
                    .map(|ms| ms as u64);
                let container = rules.web.container.clone();
                Ok((
                    Observed::WebDiskFilling {
                        container,
                        used_pct,
                        rate_pct_per_min: rate,
                        crosses_in_ms,
                        state: None,
                    },
                    None,
                ))
            }
            AlarmSource::Zombies => self
                .exited_containers
                .map(|exited| (Observed::Zombies { exited }, None))
                .ok_or("no exited-container count given (--exited)"),
            AlarmSource::DbUnhealthy => Ok((
                Observed::DatabaseUnhealthy { container: rules.database.container.clone(), tail: self.logs.clone() },
                None,
            )),
        }
    }
}

/// A database crash as the shell read it: the container's record and the
/// classifier's verdict on its log window (raw lines; the alarm carries
/// them redacted).
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseCrash {
    /// The database.
    pub container: ContainerName,
    /// Its state (exited, dead, …).
    pub state: Option<ContainerState>,
    /// When it stopped, when known.
    pub fault_at: Option<Timestamp>,
    /// Its exit code.
    pub exit_code: Option<i64>,
    /// Docker's `OOMKilled`.
    pub oom_killed: bool,
    /// Usage of its data disk, in percent, when measured.
    pub disk_used_pct: Option<f64>,
    /// The classifier's verdict.
    pub classification: Classification,
    /// The last lines of the window, oldest first.
    pub tail: Vec<String>,
}

/// The alarm a fact raises, and why (or why not), in the rules' words.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// The alarm, when the condition holds.
    pub alarm: Option<Alarm>,
    /// The threshold or the fact that decided.
    pub because: String,
}

/// The alarm `observed` raises under `rules` at `now`, if any.
pub fn assess(rules: &Rules, observed: Observed, now: Timestamp) -> Assessment {
    let t = &rules.thresholds;
    let raise = |kind, container, evidence| Some(Alarm { kind, container, evidence, raised_at: now });
    match observed {
        Observed::WebDisk { container, used_pct, state } => {
            let above = used_pct > t.web_disk_pct;
            let because = format!(
                "web log disk at {used_pct:.1} % is {}above thresholds.web_disk_pct {:.1} %",
                if above { "" } else { "not " },
                t.web_disk_pct
            );
            let evidence = Evidence { state, disk_used_pct: Some(used_pct), ..Evidence::default() };
            Assessment {
                alarm: if above { raise(AlarmKind::WebLogSaturation, container, evidence) } else { None },
                because,
            }
        }
        Observed::WebDiskFilling { container, used_pct, rate_pct_per_min, crosses_in_ms, state } => {
            let because = match crosses_in_ms {
                Some(ms) => format!(
                    "web log disk at {used_pct:.1} % fills at {rate_pct_per_min:.2} points a minute: \
                     it crosses thresholds.web_disk_pct {:.1} % in {} s, within \
                     thresholds.web_disk_fill_horizon_secs {} s",
                    t.web_disk_pct,
                    ms.div_ceil(1000),
                    t.web_disk_fill_horizon_secs
                ),
                None => format!(
                    "web log disk at {used_pct:.1} % at {rate_pct_per_min:.2} points a minute does not cross \
                     thresholds.web_disk_pct {:.1} % within thresholds.web_disk_fill_horizon_secs {} s",
                    t.web_disk_pct, t.web_disk_fill_horizon_secs
                ),
            };
            let alarm = crosses_in_ms.and_then(|ms| {
                let evidence = Evidence {
                    state,
                    disk_used_pct: Some(used_pct),
                    fill_rate_pct_per_min: Some(rate_pct_per_min),
                    threshold_crossing_at: Some(now.plus_millis(ms)),
                    ..Evidence::default()
                };
                raise(AlarmKind::WebLogDiskFilling, container, evidence)
            });
            Assessment { alarm, because }
        }
        Observed::Zombies { exited } => {
            let above = exited > t.zombie_max;
            let because = format!(
                "{exited} exited containers is {}above thresholds.zombie_max {}",
                if above { "" } else { "not " },
                t.zombie_max
            );
            let evidence = Evidence { exited_containers: Some(exited), ..Evidence::default() };
            let alarm = if above { raise(AlarmKind::ZombieOutbreak, zombie_scope(rules), evidence) } else { None };
            Assessment { alarm, because }
        }
        Observed::DatabaseDown(crash) => {
            let DatabaseCrash {
                container,
                state,
                fault_at,
                exit_code,
                oom_killed,
                disk_used_pct,
                classification,
                tail,
            } = *crash;
            let because = format!("{container} is not running");
            // Classified on the raw lines; recorded, shown and sent redacted.
            let evidence = redact_evidence(Evidence {
                state,
                fault_at,
                exit_code,
                oom_killed: Some(oom_killed),
                disk_used_pct,
                exited_containers: None,
                fill_rate_pct_per_min: None,
                threshold_crossing_at: None,
                matched_signature: classification.signature,
                log_lines: classification.lines,
                signatures: classification.matches,
                log_tail: tail,
            });
            Assessment { alarm: raise(AlarmKind::DbCrash(classification.cause), container, evidence), because }
        }
        Observed::DatabaseUnhealthy { container, tail } => {
            let because = format!("{container} runs but its health check fails");
            let evidence = redact_evidence(Evidence {
                state: Some(ContainerState::Running),
                log_tail: tail,
                ..Evidence::default()
            });
            Assessment { alarm: raise(AlarmKind::DbUnhealthy, container, evidence), because }
        }
    }
}

/// The name zombie outbreaks are raised on: the scope label, as no one
/// container is the subject.
pub fn zombie_scope(rules: &Rules) -> ContainerName {
    ContainerName::new(&rules.scope_label)
}

/// What a re-check must read again to tell whether an alarm of `kind` has
/// cleared, with the limit it is held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clears {
    /// When the alarmed container's disk is below this percentage.
    DiskBelow(f64),
    /// When at most this many containers in the scope are exited.
    ExitedAtMost(u32),
    /// With the container itself: its state and health are the check.
    WithTheContainer,
}

impl Clears {
    /// When an alarm of `kind` clears under `rules`.
    pub fn of(rules: &Rules, kind: AlarmKind) -> Clears {
        let t = &rules.thresholds;
        match kind {
            AlarmKind::WebLogSaturation => Clears::DiskBelow(t.web_disk_pct),
            // Below the success threshold, not merely below full: cleaning
            // that leaves 95 % is the "cleaning did not free the disk" stop.
            AlarmKind::DbCrash(crate::model::RootCause::DiskFull) => Clears::DiskBelow(t.clean_success_pct),
            AlarmKind::DbCrash(_) | AlarmKind::DbUnhealthy => Clears::WithTheContainer,
            AlarmKind::ZombieOutbreak => Clears::ExitedAtMost(t.zombie_max),
            // Cleaned early: as far below the threshold as a clean must leave it.
            AlarmKind::WebLogDiskFilling => Clears::DiskBelow(t.clean_success_pct),
        }
    }

    /// Whether the fresh `reading` (disk percentage or exited count, as
    /// asked) shows the condition cleared.
    pub fn holds(self, reading: Reading) -> bool {
        match (self, reading) {
            (Clears::DiskBelow(limit), Reading::DiskUsedPct(pct)) => pct < limit,
            (Clears::ExitedAtMost(max), Reading::Exited(n)) => n <= max,
            (Clears::WithTheContainer, _) => true,
            // A reading of the wrong thing proves nothing.
            (Clears::DiskBelow(_) | Clears::ExitedAtMost(_), _) => false,
        }
    }
}

/// A fresh measurement for [`Clears::holds`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// A disk's usage, in percent.
    DiskUsedPct(f64),
    /// Exited containers in the scope.
    Exited(u32),
    /// Nothing needed measuring.
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RootCause;

    fn rules() -> Rules {
        Rules::default_rules()
    }

    fn web(pct: f64) -> Observed {
        Observed::WebDisk { container: ContainerName::new("web-prod"), used_pct: pct, state: None }
    }

    #[test]
    fn a_web_disk_alarms_above_the_threshold_only() {
        let r = rules();
        let at = assess(&r, web(r.thresholds.web_disk_pct), Timestamp(1));
        assert_eq!(at.alarm, None);
        assert!(at.because.contains("is not above thresholds.web_disk_pct"), "{}", at.because);
        let above = assess(&r, web(r.thresholds.web_disk_pct + 0.1), Timestamp(1)).alarm.unwrap();
        assert_eq!((above.kind, above.container.as_str()), (AlarmKind::WebLogSaturation, "web-prod"));
        assert_eq!(above.raised_at, Timestamp(1));
    }

    #[test]
    fn a_filling_web_disk_alarms_with_its_rate_and_crossing_time() {
        let r = rules();
        let filling = |crosses_in_ms| Observed::WebDiskFilling {
            container: ContainerName::new("web-prod"),
            used_pct: 40.0,
            rate_pct_per_min: 9.0,
            crosses_in_ms,
            state: None,
        };
        let a = assess(&r, filling(Some(300_000)), Timestamp(1_000)).alarm.unwrap();
        assert_eq!(a.kind, AlarmKind::WebLogDiskFilling);
        assert_eq!(a.evidence.fill_rate_pct_per_min, Some(9.0));
        assert_eq!(a.evidence.threshold_crossing_at, Some(Timestamp(301_000)));
        assert_eq!(a.evidence.disk_used_pct, Some(40.0));
        let none = assess(&r, filling(None), Timestamp(1_000));
        assert_eq!(none.alarm, None);
        assert!(none.because.contains("does not cross"), "{}", none.because);
        // From a recorded alarm: the crossing is computed again, within the horizon or not.
        let facts = AlarmFacts::from_alarm(&a);
        let (observed, _) = facts.observe(&r).unwrap();
        assert_eq!(assess(&r, observed, Timestamp(1_000)).alarm.map(|a| a.kind), Some(AlarmKind::WebLogDiskFilling));
        let slow = AlarmFacts { fill_rate_pct_per_min: Some(0.01), ..facts };
        let (observed, _) = slow.observe(&r).unwrap();
        assert_eq!(assess(&r, observed, Timestamp(1_000)).alarm, None, "45 points at 0.01 a minute: days away");
        assert_eq!(Clears::of(&r, AlarmKind::WebLogDiskFilling), Clears::DiskBelow(r.thresholds.clean_success_pct));
    }

    #[test]
    fn zombies_alarm_past_the_maximum_on_the_scope() {
        let r = rules();
        let max = r.thresholds.zombie_max;
        assert_eq!(assess(&r, Observed::Zombies { exited: max }, Timestamp(0)).alarm, None);
        let a = assess(&r, Observed::Zombies { exited: max + 1 }, Timestamp(0)).alarm.unwrap();
        assert_eq!(a.kind, AlarmKind::ZombieOutbreak);
        assert_eq!(a.container, zombie_scope(&r));
        assert_eq!(a.evidence.exited_containers, Some(max + 1));
    }

    #[test]
    fn a_database_crash_carries_its_cause_and_redacted_lines() {
        let r = rules();
        let crash = DatabaseCrash {
            container: ContainerName::new("db-prod"),
            state: Some(ContainerState::Exited),
            fault_at: Some(Timestamp(5)),
            exit_code: Some(1),
            oom_killed: false,
            disk_used_pct: Some(100.0),
            classification: Classification {
                cause: RootCause::DiskFull,
                signature: Some("disk".into()),
                lines: vec!["FATAL: password=hunter2 No space left on device".into()],
                matches: vec![],
            },
            tail: vec![],
        };
        let a = assess(&r, Observed::DatabaseDown(Box::new(crash)), Timestamp(9)).alarm.unwrap();
        assert_eq!(a.kind, AlarmKind::DbCrash(RootCause::DiskFull));
        assert_eq!(a.evidence.fault_at, Some(Timestamp(5)));
        assert!(!a.evidence.log_lines[0].contains("hunter2"), "{:?}", a.evidence.log_lines);
    }

    #[test]
    fn each_alarm_clears_on_its_own_measure() {
        let r = rules();
        let t = r.thresholds;
        let web = Clears::of(&r, AlarmKind::WebLogSaturation);
        assert!(!web.holds(Reading::DiskUsedPct(t.web_disk_pct)));
        assert!(web.holds(Reading::DiskUsedPct(t.web_disk_pct - 0.1)));
        let disk_full = Clears::of(&r, AlarmKind::DbCrash(RootCause::DiskFull));
        assert!(!disk_full.holds(Reading::DiskUsedPct(t.clean_success_pct)));
        assert!(disk_full.holds(Reading::DiskUsedPct(t.clean_success_pct - 1.0)));
        let zombies = Clears::of(&r, AlarmKind::ZombieOutbreak);
        assert!(zombies.holds(Reading::Exited(t.zombie_max)));
        assert!(!zombies.holds(Reading::Exited(t.zombie_max + 1)));
        // A reading of the wrong thing, or none, never clears a measured alarm.
        assert!(!zombies.holds(Reading::DiskUsedPct(0.0)));
        assert!(!web.holds(Reading::Nothing));
        assert!(Clears::of(&r, AlarmKind::DbCrash(RootCause::OomKill)).holds(Reading::Nothing));
    }
}
