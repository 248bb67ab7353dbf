//! The scheduler: which alarms become incidents, and when. kube-runtime
//! keeps its watcher, its scheduler (delay and deduplicate) and its
//! reconciler apart; here the observer watches, the incident machines
//! reconcile, and this sits between them, sans-IO like the machines:
//! the driver feeds [`Input`]s, carries out what [`Scheduler::poll`]
//! returns and sleeps until [`Scheduler::next_wake`] (quinn-proto's
//! `poll_timeout`). It never reads a clock.
//!
//! What it owns: the sweep cadence (normal, or rapid after a fix), one
//! incident per container at a time, the suppression of an alarm already
//! handed to a human until its condition clears, the settle wait of a
//! zombie outbreak, the debounce of container deaths, and when the watch
//! ends (after so many incidents, at a deadline, or when told to drain:
//! nothing new starts, what is under way finishes). Where the host can
//! read the web log disk without starting anything, it also paces the disk
//! watch between sweeps; what the watch raises goes through the same
//! suppression as a sweep's alarms.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::model::{Alarm, AlarmKind, ContainerName, Timestamp};
use crate::observe::Cadence;
use crate::rules::ObserverSettings;

/// The code only the disk watch raises.
const FILLING: &str = AlarmKind::WebLogDiskFilling.alarm_code().as_str();

/// What identifies "the same problem" for suppression: the alarm's code and
/// its container. A database crash counts by code, not cause: the same
/// outage re-read after a clean (the disk no longer full) is no new
/// incident while a human has it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmKey {
    /// The alarm's code (`DB_CRASH`, …).
    pub code: &'static str,
    /// The container it is about (the zombie scope for an outbreak).
    pub container: ContainerName,
}

impl AlarmKey {
    /// The key of `alarm`.
    pub fn of(alarm: &Alarm) -> AlarmKey {
        AlarmKey { code: alarm.kind.code(), container: alarm.container.clone() }
    }
}

/// When the watch ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchLimit {
    /// After this many incidents have ended.
    pub incidents: Option<usize>,
    /// At this time.
    pub deadline: Option<Timestamp>,
}

/// How long the scheduler holds things back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delays {
    /// How long a zombie count must hold still before the outbreak is acted
    /// on: a batch of containers exits over a second or more on a loaded
    /// host, and pruning half of them leaves the rest above the threshold,
    /// so the verification fails and a routine clean-up is escalated (seen
    /// in CI). Measured from the last container death heard of (each death
    /// while it settles starts it again), or from the alarm when no death
    /// was heard of; then the count is read once more. Zero acts at once.
    pub zombie_settle: Duration,
    /// At most this many settle periods from the alarm, so a host where
    /// containers keep dying still gets its clean-up.
    pub zombie_settle_rounds: u32,
    /// How long a container's death is held before it is checked, the
    /// later death of the same container replacing it: `docker restart`
    /// (and a deploy) emits `die` with exit code 0 a few milliseconds
    /// before `start`, and a database with a broken config dies again right
    /// after; checking once the container has settled sees its real state
    /// instead of the gap.
    pub death_settle: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            zombie_settle: Duration::from_secs(1),
            zombie_settle_rounds: 10,
            death_settle: Duration::from_millis(500),
        }
    }
}

/// A zombie count read again while an outbreak settles.
#[derive(Clone, Debug, PartialEq)]
// Each value is handed on once: boxing the alarm buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Reread {
    /// Still above the threshold: the outbreak as it is now.
    Raised(Alarm),
    /// Back under the threshold: nothing to do.
    Cleared,
    /// The host did not answer: act on what was seen.
    Failed,
}

/// What the driver tells the scheduler.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The time is now this.
    Tick(Timestamp),
    /// A full sweep (asked by [`Output::Sweep`]) ended at `at` and raised
    /// these alarms. An alarm a sweep no longer raises may be handed to a
    /// human again if it returns.
    Swept {
        /// When the sweep ended.
        at: Timestamp,
        /// Every alarm it raised.
        alarms: Vec<Alarm>,
    },
    /// A container died (an event). Checked once it has settled.
    Died {
        /// When the event arrived.
        at: Timestamp,
        /// The container.
        container: ContainerName,
    },
    /// A check between sweeps (of a settled death, or any other event)
    /// raised this alarm.
    Raised {
        /// When the check ended.
        at: Timestamp,
        /// The alarm.
        alarm: Alarm,
    },
    /// The disk watch (asked by [`Output::WatchDisk`]) of every web
    /// server ended at `at`, raising these alarms. An error raises none:
    /// the sweeps still read the disk their own way. Only the watch
    /// foresees a filling disk (`WEB_LOG_DISK_FILLING`), so only a web
    /// server whose disk was `read` without raising it again may have its
    /// warning handed to a human again.
    DiskWatched {
        /// When the read ended.
        at: Timestamp,
        /// What it raised, on any of the web servers.
        alarms: Vec<Alarm>,
        /// The web servers whose disk was read (not an error, not
        /// unreadable here).
        read: Vec<ContainerName>,
    },
    /// The alarm handed out with [`Output::Open`] was held, not opened:
    /// something its service depends on is down or being healed. Its
    /// container is free again, and the sweeps turn rapid, so the next
    /// one that raises it hands it out again soon.
    Held {
        /// When it was held.
        at: Timestamp,
        /// Which alarm.
        key: AlarmKey,
    },
    /// The zombie count re-read for a settling outbreak
    /// ([`Output::RereadZombies`]).
    Reread {
        /// When it was read.
        at: Timestamp,
        /// What it showed.
        reread: Reread,
    },
    /// An incident opened by [`Output::Open`] has closed.
    Finished {
        /// When it closed.
        at: Timestamp,
        /// The key of the alarm it was opened for.
        key: AlarmKey,
        /// Whether it ended resolved; anything else (stopped, escalated,
        /// shadow) is with a human and suppressed until its condition clears.
        resolved: bool,
        /// Whether it changed anything: then the cadence goes rapid.
        acted: bool,
    },
    /// Stop starting anything (a signal, the caller's own end).
    Drain,
}

/// What the scheduler asks of the driver.
#[derive(Clone, Debug, PartialEq)]
// Each value is handed on once: boxing the alarm buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Sweep the whole host; answer with [`Input::Swept`].
    Sweep,
    /// Check `container`, whose death has settled; answer with
    /// [`Input::Raised`] if it raises an alarm.
    CheckDeath(ContainerName),
    /// Read the zombie count again; answer with [`Input::Reread`].
    RereadZombies,
    /// Read the web log disk the cheap way; answer with
    /// [`Input::DiskWatched`].
    WatchDisk,
    /// Open an incident for this alarm; answer with [`Input::Finished`]
    /// when it closes.
    Open(Alarm),
}

/// An outbreak waiting for its count to stop growing.
#[derive(Debug)]
struct Settling {
    alarm: Alarm,
    rounds: u32,
    /// When to read again; `None` while a read is under way.
    due: Option<Timestamp>,
    /// The latest a read may be put off to by deaths: however long
    /// containers keep dying, the clean-up comes.
    latest: Timestamp,
}

/// The scheduler of one watch. See the module doc.
#[derive(Debug)]
pub struct Scheduler {
    cadence: Cadence,
    delays: Delays,
    until: WatchLimit,
    next_sweep: Timestamp,
    sweeping: bool,
    /// The disk watch's period, when it is on.
    disk_watch: Option<Duration>,
    next_watch: Timestamp,
    watching: bool,
    /// Alarms handed to a human and not yet cleared by a sweep.
    escalated: BTreeSet<AlarmKey>,
    /// Containers with an incident open, or an outbreak settling.
    busy: BTreeSet<ContainerName>,
    settling: Option<Settling>,
    /// Deaths waiting to settle, by container: when each is due.
    deaths: BTreeMap<ContainerName, Timestamp>,
    /// When the last container death was heard of.
    last_death: Option<Timestamp>,
    finished: usize,
    draining: bool,
    out: VecDeque<Output>,
}

impl Scheduler {
    /// A scheduler that sweeps first at `now`.
    pub fn new(settings: ObserverSettings, delays: Delays, until: WatchLimit, now: Timestamp) -> Scheduler {
        Scheduler {
            cadence: Cadence::new(settings),
            delays,
            until,
            next_sweep: now,
            sweeping: false,
            disk_watch: None,
            next_watch: now,
            watching: false,
            escalated: BTreeSet::new(),
            busy: BTreeSet::new(),
            settling: None,
            deaths: BTreeMap::new(),
            last_death: None,
            finished: 0,
            draining: false,
            out: VecDeque::new(),
        }
    }

    /// Also reads the web log disk every `period` between sweeps (first at
    /// once); a zero period leaves it to the sweeps.
    pub fn with_disk_watch(mut self, period: Duration) -> Scheduler {
        self.disk_watch = (!period.is_zero()).then_some(period);
        self
    }

    /// Takes one input; what it calls for comes out of [`Scheduler::poll`].
    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Tick(now) => self.tick(now),
            Input::Swept { at, alarms } => {
                self.sweeping = false;
                let raised: BTreeSet<AlarmKey> = alarms.iter().map(AlarmKey::of).collect();
                // What the sweeps do not look for is cleared by the watch.
                self.escalated.retain(|k| raised.contains(k) || k.code == FILLING);
                for alarm in alarms {
                    self.consider(alarm, at);
                }
                self.next_sweep = self.after_interval(at);
                self.tick(at);
            }
            Input::Died { at, container } => {
                if !self.draining {
                    // A later death of the same container replaces the earlier.
                    self.deaths.insert(container, at.plus_millis(millis(self.delays.death_settle)));
                    self.last_death = Some(self.last_death.map_or(at, |d| d.max(at)));
                    // The count is not holding still: read it once the
                    // deaths have stopped for a settle period.
                    let settle = millis(self.delays.zombie_settle);
                    if let Some(s) = self.settling.as_mut()
                        && let Some(due) = s.due
                    {
                        s.due = Some(due.max(at.plus_millis(settle)).min(s.latest));
                    }
                }
                self.tick(at);
            }
            Input::Raised { at, alarm } => {
                match self.settling.as_mut() {
                    // A later count of the outbreak that is settling (another
                    // death checked): the read that follows compares with it.
                    Some(s) if s.alarm.kind == alarm.kind && s.alarm.container == alarm.container => s.alarm = alarm,
                    _ => self.consider(alarm, at),
                }
                self.tick(at);
            }
            Input::DiskWatched { at, alarms, read } => {
                self.watching = false;
                let foreseen = |c: &ContainerName| {
                    alarms.iter().any(|a| a.kind == AlarmKind::WebLogDiskFilling && a.container == *c)
                };
                self.escalated.retain(|k| k.code != FILLING || !read.contains(&k.container) || foreseen(&k.container));
                for alarm in alarms {
                    self.consider(alarm, at);
                }
                if let Some(period) = self.disk_watch {
                    self.next_watch = at.plus_millis(millis(period));
                }
                self.tick(at);
            }
            Input::Held { at, key } => {
                self.busy.remove(&key.container);
                self.cadence.trigger_rapid(at);
                self.next_sweep = self.next_sweep.min(self.after_interval(at));
                self.tick(at);
            }
            Input::Reread { at, reread } => {
                self.reread(at, reread);
                self.tick(at);
            }
            Input::Finished { at, key, resolved, acted } => {
                self.busy.remove(&key.container);
                self.finished += 1;
                if !resolved {
                    self.escalated.insert(key);
                }
                if acted {
                    // Rapid mode: look again soon after a fix.
                    self.cadence.trigger_rapid(at);
                    self.next_sweep = self.next_sweep.min(self.after_interval(at));
                }
                if self.until.incidents.is_some_and(|n| self.finished >= n) {
                    self.drain();
                }
                self.tick(at);
            }
            Input::Drain => self.drain(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the scheduler wants a [`Input::Tick`]: the next sweep, death or
    /// settle read, or the deadline. `None` when it waits only on answers.
    pub fn next_wake(&self) -> Option<Timestamp> {
        if self.draining {
            return None;
        }
        let sweep = (!self.sweeping).then_some(self.next_sweep);
        let settle = self.settling.as_ref().and_then(|s| s.due);
        let watch = self.disk_watch.filter(|_| !self.watching).map(|_| self.next_watch);
        [sweep, settle, watch, self.deaths.values().min().copied(), self.until.deadline].into_iter().flatten().min()
    }

    /// Whether the watch is over: draining, and every incident closed.
    pub fn is_finished(&self) -> bool {
        self.draining && self.busy.is_empty()
    }

    /// How many incidents have closed.
    pub fn finished(&self) -> usize {
        self.finished
    }

    fn tick(&mut self, now: Timestamp) {
        if self.until.deadline.is_some_and(|d| now >= d) {
            self.drain();
        }
        if self.draining {
            return;
        }
        let due: Vec<ContainerName> =
            self.deaths.iter().filter(|(_, at)| **at <= now).map(|(c, _)| c.clone()).collect();
        for container in due {
            self.deaths.remove(&container);
            self.out.push_back(Output::CheckDeath(container));
        }
        if let Some(s) = self.settling.as_mut()
            && s.due.is_some_and(|d| d <= now)
        {
            s.due = None;
            self.out.push_back(Output::RereadZombies);
        }
        if !self.sweeping && now >= self.next_sweep {
            self.sweeping = true;
            self.out.push_back(Output::Sweep);
        }
        if self.disk_watch.is_some() && !self.watching && now >= self.next_watch {
            self.watching = true;
            self.out.push_back(Output::WatchDisk);
        }
    }

    /// An alarm becomes an incident unless its container already has one
    /// or a human already has it.
    fn consider(&mut self, alarm: Alarm, at: Timestamp) {
        if self.draining || self.escalated.contains(&AlarmKey::of(&alarm)) || self.busy.contains(&alarm.container) {
            return;
        }
        self.busy.insert(alarm.container.clone());
        if alarm.kind == AlarmKind::ZombieOutbreak && !self.delays.zombie_settle.is_zero() {
            let settle = millis(self.delays.zombie_settle);
            let latest = at.plus_millis(settle.saturating_mul(u64::from(self.delays.zombie_settle_rounds.max(1))));
            // Measured from the last death heard of, when one was: the
            // count has held still since then. Without any (deaths found
            // by a sweep, no event stream) a whole period from now.
            let due = match self.last_death {
                Some(d) => d.plus_millis(settle).max(at),
                None => at.plus_millis(settle),
            };
            self.settling = Some(Settling { alarm, rounds: 0, due: Some(due), latest });
        } else {
            self.out.push_back(Output::Open(alarm));
        }
    }

    fn reread(&mut self, at: Timestamp, reread: Reread) {
        // A read nobody is waiting for (after a drain) changes nothing.
        let Some(mut s) = self.settling.take_if(|s| s.due.is_none()) else { return };
        let next = match reread {
            Reread::Cleared => {
                self.busy.remove(&s.alarm.container);
                return;
            }
            Reread::Failed => return self.out.push_back(Output::Open(s.alarm)),
            Reread::Raised(next) => next,
        };
        let grew = next.evidence.exited_containers != s.alarm.evidence.exited_containers;
        s.rounds += 1;
        s.alarm = next;
        if grew && s.rounds < self.delays.zombie_settle_rounds {
            s.due = Some(at.plus_millis(millis(self.delays.zombie_settle)));
            self.settling = Some(s);
        } else {
            self.out.push_back(Output::Open(s.alarm));
        }
    }

    fn drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        // Nothing has been done for these yet; they are not abandoned halfway.
        self.deaths.clear();
        if let Some(s) = self.settling.take() {
            self.busy.remove(&s.alarm.container);
        }
        for o in std::mem::take(&mut self.out) {
            // An incident not yet handed to the driver has not started.
            if let Output::Open(alarm) = o {
                self.busy.remove(&alarm.container);
            }
        }
        self.sweeping = false;
        self.watching = false;
    }

    fn after_interval(&self, at: Timestamp) -> Timestamp {
        at.plus_millis(millis(self.cadence.interval(at)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, RootCause};
    use crate::rules::Rules;

    const T0: Timestamp = Timestamp(1_000_000);

    fn scheduler(until: WatchLimit) -> Scheduler {
        Scheduler::new(Rules::default_rules().observer, Delays::default(), until, T0)
    }

    /// A scheduler with a 500 ms disk watch, its first sweep answered empty.
    fn watching_disks() -> Scheduler {
        let mut s = scheduler(WatchLimit::default()).with_disk_watch(Duration::from_millis(500));
        s.handle(Input::Tick(T0));
        drain(&mut s);
        s.handle(Input::Swept { at: T0, alarms: vec![] });
        s
    }

    fn alarm(kind: AlarmKind, container: &str, exited: u32) -> Alarm {
        Alarm {
            kind,
            container: ContainerName::new(container),
            raised_at: T0,
            evidence: Evidence { exited_containers: Some(exited), ..Evidence::default() },
        }
    }

    fn drain(s: &mut Scheduler) -> Vec<Output> {
        std::iter::from_fn(|| s.poll()).collect()
    }

    fn crash() -> Alarm {
        alarm(AlarmKind::DbCrash(RootCause::OomKill), "db-prod", 0)
    }

    #[test]
    fn sweeps_at_start_then_at_the_interval_and_rapidly_after_a_fix() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        assert_eq!(drain(&mut s), [Output::Sweep]);
        // No second sweep while one is under way.
        s.handle(Input::Tick(T0.plus_millis(60_000)));
        assert_eq!(drain(&mut s), []);
        s.handle(Input::Swept { at: T0, alarms: vec![crash()] });
        assert_eq!(drain(&mut s), [Output::Open(crash())]);
        assert_eq!(s.next_wake(), Some(T0.plus_millis(30_000)));
        let at = T0.plus_millis(5_000);
        s.handle(Input::Finished { at, key: AlarmKey::of(&crash()), resolved: true, acted: true });
        assert_eq!(s.next_wake(), Some(at.plus_millis(2_000)), "rapid mode after a fix");
        s.handle(Input::Tick(at.plus_millis(2_000)));
        assert_eq!(drain(&mut s), [Output::Sweep]);
    }

    #[test]
    fn one_incident_per_container_and_none_for_what_a_human_has_until_it_clears() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        drain(&mut s);
        s.handle(Input::Swept { at: T0, alarms: vec![crash()] });
        assert_eq!(drain(&mut s), [Output::Open(crash())]);
        s.handle(Input::Raised { at: T0, alarm: crash() });
        assert_eq!(drain(&mut s), [], "the container already has an incident");
        let at = T0.plus_millis(1_000);
        s.handle(Input::Finished { at, key: AlarmKey::of(&crash()), resolved: false, acted: false });
        // The same outage, another cause: still the human's.
        let other_cause = alarm(AlarmKind::DbCrash(RootCause::DiskFull), "db-prod", 0);
        s.handle(Input::Raised { at, alarm: other_cause.clone() });
        assert_eq!(drain(&mut s), []);
        s.handle(Input::Tick(T0.plus_millis(30_000)));
        assert_eq!(drain(&mut s), [Output::Sweep]);
        s.handle(Input::Swept { at: T0.plus_millis(30_000), alarms: vec![other_cause.clone()] });
        assert_eq!(drain(&mut s), [], "still raised: still suppressed");
        s.handle(Input::Tick(T0.plus_millis(60_000)));
        drain(&mut s);
        s.handle(Input::Swept { at: T0.plus_millis(60_000), alarms: vec![] });
        s.handle(Input::Raised { at: T0.plus_millis(61_000), alarm: other_cause.clone() });
        assert_eq!(drain(&mut s), [Output::Open(other_cause)], "cleared, then back: a new incident");
    }

    #[test]
    fn deaths_settle_and_the_last_one_of_a_container_wins() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        drain(&mut s);
        s.handle(Input::Swept { at: T0, alarms: vec![] });
        let db = ContainerName::new("db-prod");
        s.handle(Input::Died { at: T0.plus_millis(100), container: db.clone() });
        s.handle(Input::Died { at: T0.plus_millis(400), container: db.clone() });
        s.handle(Input::Died { at: T0.plus_millis(450), container: ContainerName::new("zombie") });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(900)));
        s.handle(Input::Tick(T0.plus_millis(899)));
        assert_eq!(drain(&mut s), []);
        s.handle(Input::Tick(T0.plus_millis(950)));
        assert_eq!(drain(&mut s), [Output::CheckDeath(db), Output::CheckDeath(ContainerName::new("zombie"))]);
        s.handle(Input::Tick(T0.plus_millis(5_000)));
        assert_eq!(drain(&mut s), [], "each death is checked once");
    }

    #[test]
    fn an_outbreak_is_opened_once_its_count_holds_still() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        drain(&mut s);
        let scope = "zombie-scope";
        s.handle(Input::Swept { at: T0, alarms: vec![alarm(AlarmKind::ZombieOutbreak, scope, 6)] });
        assert_eq!(drain(&mut s), []);
        s.handle(Input::Tick(T0.plus_millis(1_000)));
        assert_eq!(drain(&mut s), [Output::RereadZombies]);
        let grown = alarm(AlarmKind::ZombieOutbreak, scope, 9);
        s.handle(Input::Reread { at: T0.plus_millis(1_100), reread: Reread::Raised(grown.clone()) });
        assert_eq!(drain(&mut s), [], "still growing");
        s.handle(Input::Tick(T0.plus_millis(2_100)));
        assert_eq!(drain(&mut s), [Output::RereadZombies]);
        s.handle(Input::Reread { at: T0.plus_millis(2_200), reread: Reread::Raised(grown.clone()) });
        assert_eq!(drain(&mut s), [Output::Open(grown)]);
    }

    // Issue 12, item 3: the settle is measured from the last death heard
    // of, a death while settling puts the read off (never past the cap),
    // and the counts of the deaths checked meanwhile are what the read is
    // compared with.
    #[test]
    fn an_outbreak_settles_from_its_last_death() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        drain(&mut s);
        let scope = "zombie-scope";
        for (i, dt) in [0u64, 40, 90].into_iter().enumerate() {
            s.handle(Input::Died { at: T0.plus_millis(dt), container: ContainerName::new(&format!("z{i}")) });
        }
        s.handle(Input::Tick(T0.plus_millis(500)));
        assert_eq!(drain(&mut s), [Output::CheckDeath(ContainerName::new("z0"))]);
        s.handle(Input::Raised { at: T0.plus_millis(520), alarm: alarm(AlarmKind::ZombieOutbreak, scope, 6) });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(540)), "z1's check");
        s.handle(Input::Tick(T0.plus_millis(590)));
        assert_eq!(
            drain(&mut s),
            [Output::CheckDeath(ContainerName::new("z1")), Output::CheckDeath(ContainerName::new("z2"))]
        );
        let whole = alarm(AlarmKind::ZombieOutbreak, scope, 9);
        s.handle(Input::Raised { at: T0.plus_millis(600), alarm: whole.clone() });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(1_090)), "a settle period after the last death");
        s.handle(Input::Tick(T0.plus_millis(1_090)));
        assert_eq!(drain(&mut s), [Output::RereadZombies]);
        s.handle(Input::Reread { at: T0.plus_millis(1_100), reread: Reread::Raised(whole.clone()) });
        assert_eq!(drain(&mut s), [Output::Open(whole)], "the count of the last check held still");
    }

    #[test]
    fn deaths_while_settling_put_the_read_off_up_to_a_cap() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        drain(&mut s);
        s.handle(Input::Swept { at: T0, alarms: vec![alarm(AlarmKind::ZombieOutbreak, "zombie-scope", 6)] });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(1_000)), "no death heard of: a whole period");
        s.handle(Input::Died { at: T0.plus_millis(700), container: ContainerName::new("z") });
        s.handle(Input::Tick(T0.plus_millis(1_000)));
        assert_eq!(drain(&mut s), [], "still dying");
        let cap = T0.plus_millis(10 * 1_000);
        let mut at = T0.plus_millis(1_000);
        while at < cap {
            s.handle(Input::Died { at, container: ContainerName::new("z") });
            at = at.plus_millis(900);
            s.handle(Input::Tick(at.min(cap)));
            let out = drain(&mut s);
            if out.contains(&Output::RereadZombies) {
                break;
            }
            assert!(out.iter().all(|o| matches!(o, Output::CheckDeath(_))), "{out:?}");
        }
        assert!(at >= cap, "read at {at:?}, before the cap");
    }

    #[test]
    fn an_outbreak_that_clears_while_settling_opens_nothing() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        drain(&mut s);
        let outbreak = alarm(AlarmKind::ZombieOutbreak, "zombie-scope", 6);
        s.handle(Input::Swept { at: T0, alarms: vec![outbreak.clone()] });
        s.handle(Input::Tick(T0.plus_millis(1_000)));
        assert_eq!(drain(&mut s), [Output::RereadZombies]);
        s.handle(Input::Reread { at: T0.plus_millis(1_000), reread: Reread::Cleared });
        assert_eq!(drain(&mut s), []);
        // The scope is free again.
        s.handle(Input::Raised { at: T0.plus_millis(1_500), alarm: outbreak });
        s.handle(Input::Tick(T0.plus_millis(2_500)));
        assert_eq!(drain(&mut s), [Output::RereadZombies]);
    }

    #[test]
    fn the_watch_ends_after_its_incidents_and_lets_the_running_ones_finish() {
        let mut s = scheduler(WatchLimit { incidents: Some(1), deadline: None });
        s.handle(Input::Tick(T0));
        drain(&mut s);
        let web = alarm(AlarmKind::WebLogSaturation, "web-prod", 0);
        s.handle(Input::Swept { at: T0, alarms: vec![crash(), web.clone()] });
        assert_eq!(drain(&mut s), [Output::Open(crash()), Output::Open(web.clone())]);
        s.handle(Input::Finished { at: T0, key: AlarmKey::of(&crash()), resolved: true, acted: true });
        assert!(!s.is_finished(), "the web incident is still under way");
        assert_eq!(s.next_wake(), None);
        s.handle(Input::Died { at: T0, container: ContainerName::new("db-prod") });
        s.handle(Input::Tick(T0.plus_millis(60_000)));
        assert_eq!(drain(&mut s), [], "nothing new starts");
        s.handle(Input::Finished { at: T0, key: AlarmKey::of(&web), resolved: true, acted: true });
        assert!(s.is_finished());
        assert_eq!(s.finished(), 2);
    }

    #[test]
    fn the_disk_watch_runs_between_sweeps_and_shares_their_suppression() {
        let mut s = scheduler(WatchLimit::default()).with_disk_watch(Duration::from_millis(500));
        s.handle(Input::Tick(T0));
        assert_eq!(drain(&mut s), [Output::Sweep, Output::WatchDisk]);
        s.handle(Input::Swept { at: T0, alarms: vec![] });
        // No second read while one is under way.
        s.handle(Input::Tick(T0.plus_millis(2_000)));
        assert_eq!(drain(&mut s), []);
        s.handle(Input::DiskWatched { at: T0.plus_millis(10), alarms: vec![], read: vec!["web-prod".into()] });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(510)), "the next read, long before the next sweep");
        s.handle(Input::Tick(T0.plus_millis(510)));
        assert_eq!(drain(&mut s), [Output::WatchDisk]);
        let web = alarm(AlarmKind::WebLogSaturation, "web-prod", 0);
        s.handle(Input::DiskWatched {
            at: T0.plus_millis(520),
            alarms: vec![web.clone()],
            read: vec!["web-prod".into()],
        });
        assert_eq!(drain(&mut s), [Output::Open(web.clone())]);
        // The next sweep sees the same full disk: the same incident, not a second.
        s.handle(Input::Tick(T0.plus_millis(30_000)));
        assert_eq!(drain(&mut s), [Output::Sweep, Output::WatchDisk]);
        s.handle(Input::Swept { at: T0.plus_millis(30_000), alarms: vec![web.clone()] });
        s.handle(Input::DiskWatched {
            at: T0.plus_millis(30_000),
            alarms: vec![web.clone()],
            read: vec!["web-prod".into()],
        });
        assert_eq!(drain(&mut s), []);
        // Handed to a human: the watch raising it again opens nothing until a sweep sees it clear.
        let at = T0.plus_millis(31_000);
        s.handle(Input::Finished { at, key: AlarmKey::of(&web), resolved: false, acted: false });
        s.handle(Input::Tick(T0.plus_millis(31_000)));
        assert_eq!(drain(&mut s), [Output::WatchDisk]);
        s.handle(Input::DiskWatched { at, alarms: vec![web.clone()], read: vec!["web-prod".into()] });
        assert_eq!(drain(&mut s), []);
        s.handle(Input::Drain);
        s.handle(Input::Tick(T0.plus_millis(40_000)));
        assert_eq!(drain(&mut s), [], "nothing is read once draining");
    }

    #[test]
    fn a_filling_disk_with_a_human_stays_theirs_until_the_watch_no_longer_foresees_it() {
        let mut s = watching_disks();
        let filling = alarm(AlarmKind::WebLogDiskFilling, "web-prod", 0);
        s.handle(Input::DiskWatched { at: T0, alarms: vec![filling.clone()], read: vec!["web-prod".into()] });
        assert_eq!(drain(&mut s), [Output::Open(filling.clone())]);
        s.handle(Input::Finished { at: T0, key: AlarmKey::of(&filling), resolved: false, acted: false });
        let watch = |s: &mut Scheduler, at: u64, alarm: Option<Alarm>, read: bool| {
            s.handle(Input::Tick(T0.plus_millis(at)));
            let asked = drain(s);
            assert!(asked.contains(&Output::WatchDisk), "{asked:?}");
            if asked.contains(&Output::Sweep) {
                // A sweep does not look for a filling disk: it does not clear it.
                s.handle(Input::Swept { at: T0.plus_millis(at), alarms: vec![] });
            }
            let read = if read { vec![ContainerName::from("web-prod")] } else { vec![] };
            s.handle(Input::DiskWatched { at: T0.plus_millis(at), alarms: alarm.into_iter().collect(), read });
            drain(s)
        };
        assert_eq!(watch(&mut s, 30_000, Some(filling.clone()), true), []);
        // An unread disk proves nothing either.
        assert_eq!(watch(&mut s, 30_500, None, false), []);
        assert_eq!(watch(&mut s, 31_000, Some(filling.clone()), true), []);
        // Read, and no longer foreseen: the next warning is a new incident.
        assert_eq!(watch(&mut s, 31_500, None, true), []);
        assert_eq!(watch(&mut s, 32_000, Some(filling.clone()), true), [Output::Open(filling)]);
    }

    // Issue #10: an alarm held for a dependency frees its container, is
    // not suppressed, and the sweeps turn rapid so it is raised again soon.
    #[test]
    fn a_held_alarm_is_handed_out_again_by_the_next_rapid_sweep() {
        let mut s = scheduler(WatchLimit::default());
        s.handle(Input::Tick(T0));
        assert_eq!(drain(&mut s), [Output::Sweep]);
        let crash = alarm(AlarmKind::DbCrash(RootCause::OomKill), "replica", 0);
        s.handle(Input::Swept { at: T0, alarms: vec![crash.clone()] });
        assert_eq!(drain(&mut s), [Output::Open(crash.clone())]);
        s.handle(Input::Held { at: T0.plus_millis(10), key: AlarmKey::of(&crash) });
        let rapid = Rules::default_rules().observer.rapid_interval_secs * 1000;
        assert_eq!(s.next_wake(), Some(T0.plus_millis(10 + rapid)), "a rapid sweep, not one 30 s away");
        s.handle(Input::Tick(T0.plus_millis(10 + rapid)));
        assert_eq!(drain(&mut s), [Output::Sweep]);
        s.handle(Input::Swept { at: T0.plus_millis(10 + rapid), alarms: vec![crash.clone()] });
        assert_eq!(drain(&mut s), [Output::Open(crash)], "held is not handed to a human");
    }

    // Issue #10: each web server's warning is its own; reading another's
    // disk clears nothing.
    #[test]
    fn a_warning_is_cleared_only_by_its_own_disk() {
        let mut s = watching_disks();
        let (a, b) = (alarm(AlarmKind::WebLogDiskFilling, "web-a", 0), alarm(AlarmKind::WebLogDiskFilling, "web-b", 0));
        let read = || vec![ContainerName::from("web-a"), ContainerName::from("web-b")];
        s.handle(Input::DiskWatched { at: T0, alarms: vec![a.clone(), b.clone()], read: read() });
        assert_eq!(drain(&mut s), [Output::Open(a.clone()), Output::Open(b.clone())], "one incident each");
        for k in [&a, &b] {
            s.handle(Input::Finished { at: T0, key: AlarmKey::of(k), resolved: false, acted: false });
        }
        let mut watch = |at: u64, alarms: Vec<Alarm>, read: Vec<ContainerName>| {
            s.handle(Input::Tick(T0.plus_millis(at)));
            drain(&mut s);
            s.handle(Input::DiskWatched { at: T0.plus_millis(at), alarms, read });
            drain(&mut s)
        };
        // web-a no longer foreseen, web-b still: only web-a's is cleared.
        assert_eq!(watch(1_000, vec![b.clone()], read()), []);
        assert_eq!(watch(1_500, vec![a.clone(), b.clone()], read()), [Output::Open(a)]);
        // web-b not read this time: nothing said about it.
        assert_eq!(watch(2_000, vec![], vec!["web-a".into()]), []);
        assert_eq!(watch(2_500, vec![b.clone()], read()), []);
    }

    #[test]
    fn a_zero_period_leaves_the_disk_to_the_sweeps() {
        let mut s = scheduler(WatchLimit::default()).with_disk_watch(Duration::ZERO);
        s.handle(Input::Tick(T0));
        assert_eq!(drain(&mut s), [Output::Sweep]);
        s.handle(Input::Swept { at: T0, alarms: vec![] });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(30_000)));
    }

    #[test]
    fn at_the_deadline_a_settling_outbreak_is_dropped_and_the_watch_ends() {
        let mut s = scheduler(WatchLimit { incidents: None, deadline: Some(T0.plus_millis(500)) });
        s.handle(Input::Tick(T0));
        drain(&mut s);
        s.handle(Input::Swept { at: T0, alarms: vec![alarm(AlarmKind::ZombieOutbreak, "zombie-scope", 6)] });
        assert_eq!(s.next_wake(), Some(T0.plus_millis(500)));
        s.handle(Input::Tick(T0.plus_millis(500)));
        assert_eq!(drain(&mut s), []);
        assert!(s.is_finished());
    }
}
