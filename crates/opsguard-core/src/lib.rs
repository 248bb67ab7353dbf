//! OpsGuard's pure core: everything that decides, and nothing that does.
//!
//! The model, the rules and their validation, the safety rules both of
//! them apply, the crash classifier, the decision engine, redaction, the audit records, `explain`, replay and the
//! post-mortem. Every function here is a function of its arguments: time
//! comes in as a [`model::Timestamp`] the caller read, facts come in as data
//! the shell observed. The crate has no async runtime, no Docker client, no
//! HTTP among its dependencies, so the compiler keeps it that way; the
//! crate's `clippy.toml` forbids the standard library's clocks, sleeps,
//! files, sockets and processes.
#![deny(missing_docs)]

pub mod alarm;
pub mod approval;
pub mod audit;
pub mod classify;
pub mod engine;
pub mod explain;
pub mod incident;
pub mod model;
pub mod observe;
pub mod postmortem;
pub mod redact;
pub mod roster;
pub mod rules;
pub mod safety;
pub mod schedule;
pub mod stateless;
pub mod trend;
