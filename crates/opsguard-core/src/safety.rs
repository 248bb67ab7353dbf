//! The safety rules, written once: what no rules file, history or LLM answer
//! may make OpsGuard do. Rules validation ([`crate::rules`]) refuses a plan
//! that would break them, and the engine's guard ([`crate::engine::Engine::guard`])
//! refuses the action again at run time, from the same functions, so the two
//! can never drift apart.

use crate::model::{AlarmKind, History, Outcome, RootCause, Timestamp, Verification};
use crate::rules::{RestartBudget, Thresholds};

/// Why restarting for an alarm is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartRefusal {
    /// Only a crashed database is ever restarted.
    NotADatabaseCrash,
    /// A cause a restart can only make worse (a config error, data corruption).
    CauseForbids(RootCause),
    /// On a full disk, the logs are cleaned and the disk freed before any restart.
    DiskNotFreed,
}

/// The safety rules on restarting the container an alarm of `kind` is about,
/// given whether a clean has freed its disk. `None`: a restart is allowed
/// (the restart budget and the approval gate still apply).
pub fn restart_refusal(kind: AlarmKind, disk_freed: bool) -> Option<RestartRefusal> {
    let AlarmKind::DbCrash(cause) = kind else {
        return Some(RestartRefusal::NotADatabaseCrash);
    };
    if cause.forbids_restart() {
        return Some(RestartRefusal::CauseForbids(cause));
    }
    if cause == RootCause::DiskFull && !disk_freed {
        return Some(RestartRefusal::DiskNotFreed);
    }
    None
}

/// Whether a clean that left the disk at `disk_used_pct` freed it. NaN (a
/// garbled measurement) is not a success.
pub fn clean_freed_disk(disk_used_pct: f64, thresholds: &Thresholds) -> bool {
    disk_used_pct < thresholds.clean_success_pct
}

/// Whether some clean in this incident freed the disk.
pub fn disk_freed(history: &History, thresholds: &Thresholds) -> bool {
    history.steps.iter().any(
        |s| matches!(s.outcome, Outcome::Cleaned { disk_used_pct, .. } if clean_freed_disk(disk_used_pct, thresholds)),
    )
}

/// Whether the container has had its budget of restarts within the window
/// before `now`. Restarts stamped in the future (a clock step back) still count.
pub fn restart_budget_spent(budget: RestartBudget, restarts: &[Timestamp], now: Timestamp) -> bool {
    let window_ms = budget.window_secs.saturating_mul(1000);
    let recent = restarts.iter().filter(|t| **t > now || now.millis_since(**t) < window_ms).count();
    recent >= budget.max_restarts as usize
}

/// Only a verification may call an incident resolved.
pub fn may_resolve(history: &History) -> bool {
    matches!(history.steps.last().map(|s| &s.outcome), Some(Outcome::Verified(Verification::Confirmed)))
}

/// Paths `clean_logs` may touch must be narrow: absolute, normalised, and
/// never the root or a system directory.
pub fn check_log_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must be an absolute path");
    }
    if p.split('/').any(|c| c == ".." || c == ".") || p.contains("//") {
        return Err("must be normalised (no `.`, `..` or `//`)");
    }
    let trimmed = p.trim_end_matches('/');
    const TOO_WIDE: [&str; 9] =
        ["", "/var", "/var/lib", "/etc", "/usr", "/bin", "/root", "/home", "/var/lib/postgresql"];
    if TOO_WIDE.contains(&trimmed) {
        return Err("too wide: cleaning there could destroy data");
    }
    Ok(())
}

/// Whether `path` lies strictly below the directory `dir` (a trailing `/`
/// on `dir` is ignored); `dir` itself is not below itself.
pub fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Where PostgreSQL keeps its data when nobody says otherwise (Debian's
/// clusters and the official image's `PGDATA` both live below it).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/postgresql";

/// Whether the directory `outer` is `inner` or one of its parents.
pub fn holds(outer: &str, inner: &str) -> bool {
    let outer = outer.trim_end_matches('/');
    inner.trim_end_matches('/') == outer || is_under(inner, outer)
}

/// The first log path that holds a database's data directory (one of
/// `data_dirs`, or [`DEFAULT_DATA_ROOT`]), with that directory: cleaning
/// there could destroy data, so it is refused.
pub fn log_path_holding_data<'a>(log_paths: &'a [String], data_dirs: &[&str]) -> Option<(&'a str, String)> {
    let dirs: Vec<&str> = data_dirs.iter().copied().filter(|d| d.starts_with('/')).chain([DEFAULT_DATA_ROOT]).collect();
    log_paths.iter().find_map(|p| dirs.iter().find(|d| holds(p, d)).map(|d| (p.as_str(), d.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, ContainerName, Step};
    use crate::rules::Rules;

    fn step(outcome: Outcome) -> Step {
        Step { action: Action::Verify { target: ContainerName::new("db-prod") }, outcome, at: Timestamp(0) }
    }

    #[test]
    fn restarts_are_refused_for_what_a_restart_makes_worse() {
        use AlarmKind::*;
        assert_eq!(restart_refusal(WebLogSaturation, true), Some(RestartRefusal::NotADatabaseCrash));
        assert_eq!(restart_refusal(ZombieOutbreak, true), Some(RestartRefusal::NotADatabaseCrash));
        for cause in [RootCause::ConfigError, RootCause::DataCorruption] {
            assert_eq!(restart_refusal(DbCrash(cause), true), Some(RestartRefusal::CauseForbids(cause)));
        }
        assert_eq!(restart_refusal(DbCrash(RootCause::DiskFull), false), Some(RestartRefusal::DiskNotFreed));
        assert_eq!(restart_refusal(DbCrash(RootCause::DiskFull), true), None);
        assert_eq!(restart_refusal(DbCrash(RootCause::OomKill), false), None);
    }

    #[test]
    fn only_a_clean_below_the_success_threshold_frees_the_disk() {
        let t = Rules::default_rules().thresholds;
        assert!(clean_freed_disk(t.clean_success_pct - 0.1, &t));
        assert!(!clean_freed_disk(t.clean_success_pct, &t));
        assert!(!clean_freed_disk(f64::NAN, &t), "a garbled measurement is not a success");
        let cleaned = |pct| History {
            steps: vec![step(Outcome::Cleaned { disk_used_pct: pct, freed_bytes: 1 })],
            ..History::default()
        };
        assert!(disk_freed(&cleaned(40.0), &t));
        assert!(!disk_freed(&cleaned(95.0), &t));
        assert!(!disk_freed(&History::default(), &t));
    }

    #[test]
    fn the_restart_budget_counts_the_window_and_the_future() {
        let budget = RestartBudget { max_restarts: 2, window_secs: 60 };
        let now = Timestamp(100_000);
        assert!(!restart_budget_spent(budget, &[Timestamp(50_000)], now));
        assert!(restart_budget_spent(budget, &[Timestamp(50_000), Timestamp(99_000)], now));
        // One restart just left the window.
        assert!(!restart_budget_spent(budget, &[Timestamp(40_000), Timestamp(99_000)], now));
        // A restart stamped after `now` (the clock stepped back) still counts.
        assert!(restart_budget_spent(budget, &[Timestamp(99_000), Timestamp(200_000)], now));
    }

    #[test]
    fn only_a_confirmed_verification_resolves() {
        let last = |o| History { steps: vec![step(o)], ..History::default() };
        assert!(may_resolve(&last(Outcome::Verified(Verification::Confirmed))));
        assert!(!may_resolve(&last(Outcome::Verified(Verification::NotConfirmed { last_state: None }))));
        assert!(!may_resolve(&last(Outcome::Restarted)));
        assert!(!may_resolve(&History::default()));
    }
}
