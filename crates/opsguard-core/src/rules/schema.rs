//! The rules file as written: the raw TOML structures, with the spans that
//! errors point at. Nothing here is validated; [`super::compile`] does that.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) thresholds: RawThresholds,
    pub(super) observer: RawObserver,
    pub(super) restart_budget: RawBudget,
    pub(super) limits: RawLimits,
    pub(super) scope: RawScope,
    pub(super) stateless: RawStateless,
    pub(super) web: RawTarget,
    pub(super) database: RawTarget,
    pub(super) server_log: RawServerLog,
    #[serde(default)]
    pub(super) signature: Vec<Spanned<RawSignature>>,
    #[serde(default)]
    pub(super) plan: Vec<Spanned<RawPlan>>,
    #[serde(default)]
    pub(super) llm_diagnosis: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholds {
    pub(super) web_disk_pct: Spanned<f64>,
    pub(super) clean_success_pct: Spanned<f64>,
    pub(super) zombie_max: Spanned<i64>,
    #[serde(default)]
    pub(super) web_disk_fill_horizon_secs: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) web_disk_fill_window_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObserver {
    pub(super) interval_secs: Spanned<i64>,
    pub(super) rapid_interval_secs: Spanned<i64>,
    pub(super) rapid_window_secs: Spanned<i64>,
    pub(super) log_window_secs: Spanned<i64>,
    pub(super) stable_checks: Spanned<i64>,
    #[serde(default)]
    pub(super) disk_watch_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) verify_interval_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub(super) max_restarts: Spanned<i64>,
    pub(super) window_secs: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_steps: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScope {
    pub(super) label: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStateless {
    pub(super) watch_all: bool,
    pub(super) backoff_initial_secs: Spanned<i64>,
    pub(super) backoff_max_secs: Spanned<i64>,
    pub(super) max_restarts: Spanned<i64>,
    pub(super) window_secs: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) container: Spanned<String>,
    pub(super) log_paths: Spanned<Vec<String>>,
    pub(super) disk_path: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerLog {
    pub(super) line: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignature {
    pub(super) cause: Spanned<String>,
    #[serde(default)]
    pub(super) exit_code: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) oom_killed: Option<bool>,
    #[serde(default)]
    pub(super) min_disk_used_pct: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) log_pattern: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) severities: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub(super) alarm: Spanned<String>,
    #[serde(default)]
    pub(super) cause: Option<Spanned<String>>,
    pub(super) steps: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) llm_choices: Option<Spanned<Vec<Spanned<String>>>>,
}
