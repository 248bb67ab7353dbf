//! OpsGuard: a self-healing agent for Docker hosts.
//!
//! OpsGuard watches a host (a web server, a database, exited "zombie"
//! containers), raises alarms, tags a crashed database's root cause from its
//! exit code, OOM flag and recent logs, and fixes routine breakage (a full
//! log disk, zombies, an OOM-killed database) while stopping and escalating
//! dangerous breakage (a broken config, corrupt data, a disk that cleaning
//! cannot free) to a human, never making it worse.
//!
//! # Design
//!
//! A pure core inside an IO shell. [`engine::Engine::decide`] is a pure
//! function of the alarm, the incident's history, the loaded
//! [`rules::Rules`] and the current time, which the caller passes in: the
//! engine **never calls `Instant::now()` or any other clock itself**, never
//! does IO, and gives the same action for the same inputs. Everything else
//! (the [`observer`], the [`incident`] loop, the [`approval`] gate, the
//! [`host`] implementations, the [`audit`] log) feeds it inputs and carries
//! its actions out. Rules and thresholds are data (`rules/default.toml`),
//! validated when loaded; the safety rules are code and hold whatever the
//! rules, the history or an LLM say.
//!
//! ```
//! use std::sync::Arc;
//! use opsguard::engine::Engine;
//! use opsguard::model::{Action, Alarm, AlarmKind, ContainerName, Evidence, History, RootCause, Timestamp};
//! use opsguard::rules::Rules;
//!
//! let rules = Rules::from_toml_str(opsguard::rules::DEFAULT_RULES, "default.toml".as_ref())?;
//! let engine = Engine::new(Arc::new(rules));
//! let alarm = Alarm {
//!     kind: AlarmKind::DbCrash(RootCause::DiskFull),
//!     container: ContainerName::new("db-prod"),
//!     evidence: Evidence::default(),
//!     raised_at: Timestamp(0),
//! };
//! // Disk full: clean first, restart later.
//! let action = engine.decide(&alarm, &History::default(), Timestamp(1_000));
//! assert_eq!(action, Action::CleanLogs { target: ContainerName::new("db-prod") });
//! # Ok::<(), opsguard::rules::RulesError>(())
//! ```
#![deny(missing_docs)]

// The pure core, under the paths the shell and its users have always named.
pub use opsguard_core::{alarm, classify, engine, explain, model, postmortem, redact, safety, schedule};

pub mod approval;
pub mod audit;
pub mod chaos;
pub mod clock;
pub mod console;
pub mod docker_agent;
pub mod health;
pub mod host;
pub mod incident;
pub mod instance;
pub mod llm;
pub mod notify;
pub mod observer;
pub mod progress;
pub mod rules;
pub mod serve;
pub mod service;
pub mod stateless;
pub mod telemetry;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
