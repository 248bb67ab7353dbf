//! Properties of the scheduler (`opsguard_core::schedule`), the pure part of
//! the watch loop that decides which alarms become incidents and when,
//! driven by an adversarial environment: sweeps that raise anything,
//! deaths in bursts, re-reads that clear, fail or grow, incidents that
//! close in any order, resolved or not, drains and deadlines, the clock
//! jumping in between. No runtime, no host.
//!
//! The invariants, each checked by a mutation of `schedule.rs`:
//! 1. one incident per container at a time (mutation: drop the `busy`
//!    check in `consider`);
//! 2. an alarm a human has is not opened again until a sweep no longer
//!    raises it (mutation: skip `escalated.insert` on an unresolved close;
//!    or clear `escalated` on every sweep);
//! 3. a death is checked once, no sooner than the settle delay after the
//!    container's last death, and not much later (mutation: keep the first
//!    death's due time instead of the last's);
//! 4. an outbreak is opened only after its count was read again (mutation:
//!    open zombie alarms at once);
//! 5. after the watch ends, nothing new starts, and it is over exactly when
//!    the incidents under way have closed (mutation: forget to drop the
//!    settling outbreak on a drain);
//! 6. one sweep at a time, and never more than the normal interval apart
//!    while watching (mutation: sweep on every tick);
//! 7. one disk watch read at a time, never more than its period apart while
//!    watching, and what it raises meets invariants 1 and 2 (mutation:
//!    leave `watching` unset when a read is asked);
//! 8. deterministic;
//! 9. an alarm held for a dependency (issue #10) frees its container and is
//!    never handed to a human: invariants 1, 2 and 5 hold through holds
//!    (mutation: keep the container busy after a hold).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use opsguard_core::model::{Alarm, AlarmKind, ContainerName, Evidence, RootCause, Timestamp};
use opsguard_core::rules::Rules;
use opsguard_core::schedule::{AlarmKey, Delays, Input, Output, Reread, Scheduler, WatchLimit};
use proptest::prelude::*;

// The suite's own knob (as in the root package's suites), not the core reading its environment.
#[allow(clippy::disallowed_methods)]
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const T0: u64 = 1_700_000_000_000;
const CONTAINERS: [&str; 3] = ["db-prod", "web-prod", "worker"];
const SCOPE: &str = "opsguard.lab=true";
/// The disk watch's period, in milliseconds.
const WATCH: u64 = 500;

#[derive(Clone, Debug)]
enum Raise {
    Crash(u8),
    Web,
    Zombies(u32),
}

fn alarm(r: &Raise, now: u64) -> Alarm {
    let (kind, container, exited) = match r {
        Raise::Crash(c) => (AlarmKind::DbCrash(RootCause::ALL[*c as usize % RootCause::ALL.len()]), "db-prod", None),
        Raise::Web => (AlarmKind::WebLogSaturation, "web-prod", None),
        Raise::Zombies(n) => (AlarmKind::ZombieOutbreak, SCOPE, Some(*n)),
    };
    Alarm {
        kind,
        container: ContainerName::new(container),
        raised_at: Timestamp(now),
        evidence: Evidence { exited_containers: exited, ..Evidence::default() },
    }
}

#[derive(Clone, Debug)]
enum Move {
    Tick(u64),
    /// Answers the sweep under way (if any) with these alarms.
    Swept(Vec<Raise>),
    Died(u8),
    Raised(Raise),
    /// Answers the re-read under way (or, unasked, a stale one).
    Reread(u8, u32),
    /// Closes the i-th open incident.
    Finish(u8, bool, bool),
    /// Holds the i-th alarm handed out instead of opening it (its
    /// service's dependency is down): its container is free again.
    Held(u8),
    /// Answers the disk watch's read under way (if any), raising a full
    /// web log disk or not.
    Watched(bool),
    Drain,
}

fn any_raise() -> impl Strategy<Value = Raise> {
    prop_oneof![any::<u8>().prop_map(Raise::Crash), Just(Raise::Web), (6u32..9).prop_map(Raise::Zombies)]
}

fn any_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => prop_oneof![0u64..800, 0u64..40_000].prop_map(Move::Tick),
        3 => prop::collection::vec(any_raise(), 0..3).prop_map(Move::Swept),
        3 => any::<u8>().prop_map(Move::Died),
        2 => any_raise().prop_map(Move::Raised),
        2 => (0u8..3, 6u32..9).prop_map(|(w, n)| Move::Reread(w, n)),
        3 => (any::<u8>(), any::<bool>(), any::<bool>()).prop_map(|(i, r, a)| Move::Finish(i, r, a)),
        1 => any::<u8>().prop_map(Move::Held),
        2 => any::<bool>().prop_map(Move::Watched),
        1 => Just(Move::Drain),
    ]
}

fn any_until() -> impl Strategy<Value = WatchLimit> {
    (prop::option::of(1usize..4), prop::option::of(0u64..200_000))
        .prop_map(|(incidents, d)| WatchLimit { incidents, deadline: d.map(|d| Timestamp(T0 + d)) })
}

/// What the environment knows, to judge the scheduler by.
#[derive(Default)]
struct World {
    now: u64,
    sweeping: bool,
    last_swept: u64,
    watching: bool,
    last_watched: u64,
    rereading: bool,
    /// Open incidents: container → the key they were opened for.
    open: BTreeMap<ContainerName, AlarmKey>,
    /// Keys closed unresolved and raised by every sweep since.
    human: BTreeSet<AlarmKey>,
    /// Deaths not yet checked: container → the last one's time.
    deaths: BTreeMap<ContainerName, u64>,
    ended: bool,
    closed: usize,
}

/// Runs `moves`; the trace of outputs, or the broken invariant.
fn run(moves: &[Move], until: WatchLimit, delays: Delays) -> Result<Vec<Output>, String> {
    let settings = Rules::default_rules().observer;
    let mut s = Scheduler::new(settings, delays, until, Timestamp(T0)).with_disk_watch(Duration::from_millis(WATCH));
    let mut w = World { now: T0, last_swept: T0, last_watched: T0, ..World::default() };
    let mut trace = Vec::new();
    let settle = delays.death_settle.as_millis() as u64;
    let normal = settings.interval_secs * 1000;
    s.handle(Input::Tick(Timestamp(T0)));
    let mut last_input_was_reread = false;
    let mut drained = false;
    // After the last move, its outputs are judged too.
    for m in moves.iter().map(Some).chain([None]) {
        if drained || until.deadline.is_some_and(|d| w.now >= d.0) || until.incidents.is_some_and(|n| w.closed >= n) {
            w.ended = true;
            // What was waiting is dropped with the watch.
            w.deaths.clear();
        }
        // Outputs of the last input.
        while let Some(o) = s.poll() {
            if w.ended && !matches!(o, Output::Open(_)) {
                return Err(format!("{o:?} after the watch ended"));
            }
            match &o {
                Output::Sweep => {
                    if w.sweeping {
                        return Err("a second sweep while one is under way".into());
                    }
                    w.sweeping = true;
                }
                Output::CheckDeath(c) => {
                    let Some(at) = w.deaths.remove(c) else { return Err(format!("{c} checked twice")) };
                    if w.now < at + settle {
                        return Err(format!("{c} checked {} ms after its last death", w.now - at));
                    }
                }
                Output::RereadZombies => w.rereading = true,
                Output::WatchDisk => {
                    if w.watching {
                        return Err("a second disk watch read while one is under way".into());
                    }
                    w.watching = true;
                }
                Output::Open(a) => {
                    if w.ended {
                        return Err(format!("{a} opened after the watch ended"));
                    }
                    let key = AlarmKey::of(a);
                    if w.open.contains_key(&a.container) {
                        return Err(format!("a second incident on {}", a.container));
                    }
                    if w.human.contains(&key) {
                        return Err(format!("{a} opened again while a human has it"));
                    }
                    if a.kind == AlarmKind::ZombieOutbreak && !last_input_was_reread {
                        return Err("an outbreak opened before its count was read again".into());
                    }
                    w.open.insert(a.container.clone(), key);
                }
            }
            trace.push(o);
        }
        if s.is_finished() != (w.ended && w.open.is_empty()) {
            return Err(format!("is_finished {} with ended {} and {} open", s.is_finished(), w.ended, w.open.len()));
        }
        if !w.ended {
            // Liveness: deaths and sweeps are never forgotten.
            // Without a wake-up, the scheduler may only be waiting on a sweep.
            let wake = s.next_wake().map_or(u64::MAX, |t| t.0);
            for (c, at) in &w.deaths {
                if wake > at + settle {
                    return Err(format!("{c}'s death is due at {} but the wake-up is at {wake}", at + settle));
                }
            }
            if !w.sweeping && wake > w.last_swept + normal {
                return Err(format!("the next sweep is at {wake}, later than the normal interval"));
            }
            if !w.watching && wake > w.last_watched + WATCH {
                return Err(format!("the next disk watch read is at {wake}, later than its period"));
            }
        }
        let Some(m) = m else { break };
        last_input_was_reread = false;
        let input = match m {
            Move::Tick(dt) => {
                w.now += dt;
                Input::Tick(Timestamp(w.now))
            }
            Move::Swept(raises) => {
                if !w.sweeping {
                    continue;
                }
                w.sweeping = false;
                w.last_swept = w.now;
                let alarms: Vec<Alarm> = raises.iter().map(|r| alarm(r, w.now)).collect();
                let raised: BTreeSet<AlarmKey> = alarms.iter().map(AlarmKey::of).collect();
                w.human.retain(|k| raised.contains(k));
                Input::Swept { at: Timestamp(w.now), alarms }
            }
            Move::Died(i) => {
                let c = ContainerName::new(CONTAINERS[*i as usize % CONTAINERS.len()]);
                if !w.ended {
                    w.deaths.insert(c.clone(), w.now);
                }
                Input::Died { at: Timestamp(w.now), container: c }
            }
            Move::Raised(r) => Input::Raised { at: Timestamp(w.now), alarm: alarm(r, w.now) },
            Move::Reread(what, n) => {
                w.rereading = false;
                last_input_was_reread = true;
                let reread = match what {
                    0 => Reread::Raised(alarm(&Raise::Zombies(*n), w.now)),
                    1 => Reread::Cleared,
                    _ => Reread::Failed,
                };
                Input::Reread { at: Timestamp(w.now), reread }
            }
            Move::Finish(i, resolved, acted) => {
                if w.open.is_empty() {
                    continue;
                }
                let c = w.open.keys().nth(*i as usize % w.open.len()).cloned().expect("an open incident");
                let key = w.open.remove(&c).expect("open");
                w.closed += 1;
                if !resolved {
                    w.human.insert(key.clone());
                }
                Input::Finished { at: Timestamp(w.now), key, resolved: *resolved, acted: *acted }
            }
            Move::Held(i) => {
                if w.open.is_empty() {
                    continue;
                }
                let c = w.open.keys().nth(*i as usize % w.open.len()).cloned().expect("an open incident");
                let key = w.open.remove(&c).expect("open");
                Input::Held { at: Timestamp(w.now), key }
            }
            Move::Watched(full) => {
                if !w.watching {
                    continue;
                }
                w.watching = false;
                w.last_watched = w.now;
                Input::DiskWatched {
                    at: Timestamp(w.now),
                    alarms: full.then(|| alarm(&Raise::Web, w.now)).into_iter().collect(),
                    read: vec![ContainerName::new("web-prod")],
                }
            }
            Move::Drain => {
                drained = true;
                Input::Drain
            }
        };
        s.handle(input);
    }
    Ok(trace)
}

fn any_delays() -> impl Strategy<Value = Delays> {
    (prop_oneof![Just(0u64), Just(1_000)], 1u32..4, prop_oneof![Just(0u64), Just(500)]).prop_map(|(z, r, d)| Delays {
        zombie_settle: Duration::from_millis(z),
        zombie_settle_rounds: r,
        death_settle: Duration::from_millis(d),
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_watch_keeps_the_schedulers_invariants(
        moves in prop::collection::vec(any_move(), 0..120),
        until in any_until(),
        delays in any_delays(),
    ) {
        // An outbreak opened at once is the zero-settle configuration's
        // promise, not a broken invariant 4.
        let delays = Delays { zombie_settle: delays.zombie_settle.max(Duration::from_millis(1)), ..delays };
        if let Err(e) = run(&moves, until, delays) {
            prop_assert!(false, "{}\nmoves: {:?}", e, moves);
        }
    }

    #[test]
    fn the_scheduler_is_deterministic(moves in prop::collection::vec(any_move(), 0..120), until in any_until()) {
        let a = run(&moves, until, Delays::default());
        let b = run(&moves, until, Delays::default());
        prop_assert_eq!(a, b);
    }
}
