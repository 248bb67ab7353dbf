//! The audit log's records: what an incident did, step by step, as data
//! (the file that holds them is the shell's). Explain, replay and the
//! post-mortem read these; the live taps render them with
//! [`AuditEvent::render`].

use serde::{Deserialize, Serialize};

use crate::model::{
    Action, Alarm, ContainerState, Health, LlmChoice, LlmDiagnosis, Outcome, StopReason, Timestamp, Verification,
};
use crate::redact::printable;

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Resolution {
    /// Verified Running: fully resolved.
    Resolved,
    /// Stopped for a human.
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// The first action that would change the host was recorded
    /// ([`AuditEvent::WouldExecute`]) and withheld, as shadow mode asks;
    /// what would follow depends on an outcome that did not happen. Logs
    /// written before the rename say `shadow`.
    #[serde(alias = "shadow")]
    Withheld,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// An alarm opened an incident.
    IncidentOpened {
        /// The alarm with its cause and evidence.
        alarm: Alarm,
    },
    /// The engine decided.
    Decided {
        /// The action.
        action: Action,
    },
    /// A human was asked.
    ApprovalRequested {
        /// Request id.
        request: u64,
        /// The exact action.
        action: Action,
        /// Who was asked.
        approver: String,
    },
    /// The human answered (or did not).
    ApprovalAnswered {
        /// Request id.
        request: u64,
        /// Whether the action may run.
        approved: bool,
        /// The channel that was asked (`web console`, `terminal`,
        /// `policy:deny`, …).
        approver: String,
        /// How (`approved`, `rejected`, `no answer within 300s`, …).
        detail: String,
        /// Who answered through that channel, as it vouches for them (the
        /// console's authenticated identity, `terminal`, the policy);
        /// absent when nobody did (a timeout, a shutdown, a channel
        /// error) and in records written before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answered_by: Option<String>,
        /// The SHA-256 of the request as the one who answered was shown
        /// it (the digest the console's page and API check); absent when
        /// nobody was shown it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence_digest: Option<String>,
    },
    /// The LLM was consulted.
    LlmConsulted {
        /// The model, when known.
        model: Option<String>,
        /// Latency.
        latency_ms: Option<u64>,
        /// The choice the rules made of a valid diagnosis, if any.
        choice: Option<LlmChoice>,
        /// The model's reason, or why its answer was refused.
        reason: String,
        /// The raw reply.
        raw: Option<String>,
        /// The valid diagnosis (category, quote, reason) the choice came
        /// from; absent in records written before diagnoses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diagnosis: Option<LlmDiagnosis>,
    },
    /// An action was carried out.
    Executed {
        /// The action.
        action: Action,
        /// Its outcome.
        outcome: Outcome,
    },
    /// Shadow mode: the engine decided this action and it was not carried
    /// out (nothing changed on the host, no approval was asked).
    WouldExecute {
        /// The action a real run would have taken.
        action: Action,
    },
    /// One rapid check during verification.
    Checked {
        /// The state seen.
        state: Option<ContainerState>,
        /// Health seen.
        health: Option<Health>,
        /// Whether the alarm's condition had cleared.
        cleared: Option<bool>,
        /// A host error, if the check failed.
        error: Option<String>,
    },
    /// An approval was voided because the crash it was for is over (the
    /// container ran or crashed again): the incident goes on from this
    /// fresh alarm, decided anew.
    Reassessed {
        /// The alarm as the host shows it now.
        alarm: Alarm,
    },
    /// An alarm on a service was held, not acted on (issue #10): something
    /// the service depends on is down or being healed. It is looked at
    /// again until the dependency is ready; the incident that may follow
    /// keeps this record's id.
    AlarmHeld {
        /// The alarm held.
        alarm: Alarm,
        /// What it waits for (a container, or a Compose service).
        dependency: String,
        /// How that was found (`shop-db exited`, `being healed`).
        state: String,
    },
    /// A stateless service (issue #10) was restarted without approval,
    /// seen good again, or left for a human once its budget was spent.
    Stateless {
        /// Which container.
        container: crate::model::ContainerName,
        /// What was wrong (absent once resolved).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trouble: Option<crate::stateless::Trouble>,
        /// What was done.
        step: crate::stateless::StatelessStep,
    },
    /// The incident ended.
    IncidentClosed {
        /// How.
        resolution: Resolution,
        /// Steps taken.
        steps: usize,
    },
}

impl AuditEvent {
    /// An answer nobody vouched for by name (a timeout, a shutdown, a
    /// channel error, a policy, a record from before names were kept):
    /// `answered_by` and `evidence_digest` stay empty rather than made up.
    pub fn unsigned_answer(request: u64, approved: bool, approver: &str, detail: &str) -> Self {
        AuditEvent::ApprovalAnswered {
            request,
            approved,
            approver: approver.to_string(),
            detail: detail.to_string(),
            answered_by: None,
            evidence_digest: None,
        }
    }

    /// One line for a human-readable timeline, in the specification's words
    /// (an opening adds its first evidence line on a second line). Every
    /// field that may quote a container, the daemon or a model passes
    /// through [`printable`], so none can break the line or drive a terminal.
    pub fn render(&self) -> String {
        match self {
            AuditEvent::IncidentOpened { alarm } => {
                let mut s = format!("🔴 {} on {}", alarm.kind, printable(alarm.container.as_str()));
                let e = &alarm.evidence;
                if let Some(code) = e.exit_code {
                    s += &format!(" (exit code {code}");
                    if let Some(oom) = e.oom_killed {
                        s += &format!(", OOMKilled={oom}");
                    }
                    s += ")";
                }
                if let Some(pct) = e.disk_used_pct {
                    s += &format!(", disk {pct:.0}%");
                }
                if let Some(n) = e.exited_containers {
                    s += &format!(", {n} exited containers");
                }
                if let Some(l) = e.log_lines.first() {
                    s += &format!("\n      evidence: {}", printable(l));
                }
                s
            }
            AuditEvent::Decided { action } => format!("🧠 decide → {}", shown(action)),
            AuditEvent::Reassessed { alarm } => {
                format!("🔁 decided again from fresh facts: {} on {}", alarm.kind, alarm.container)
            }
            AuditEvent::ApprovalRequested { action, approver, .. } => {
                format!("⚠  approval requested from {}: {}", printable(approver), shown(action))
            }
            AuditEvent::ApprovalAnswered { approved: true, approver, answered_by, evidence_digest, .. } => {
                format!("👤 ✅ approved by {}", answerer(approver, answered_by, evidence_digest))
            }
            AuditEvent::ApprovalAnswered {
                approved: false, approver, detail, answered_by, evidence_digest, ..
            } => {
                format!(
                    "👤 ❌ not approved by {} ({})",
                    answerer(approver, answered_by, evidence_digest),
                    printable(detail)
                )
            }
            AuditEvent::LlmConsulted { model, choice: Some(c), reason, latency_ms, diagnosis: Some(d), .. } => format!(
                "🤖 LLM {} diagnosed {} in {} ms, so the rules chose {}; model output, unverified: quote “{}”, reason: {}",
                printable(model.as_deref().unwrap_or("?")),
                d.category,
                latency_ms.unwrap_or(0),
                c.name(),
                printable(&d.quote),
                printable(reason)
            ),
            AuditEvent::LlmConsulted { model, choice: Some(c), reason, latency_ms, .. } => format!(
                "🤖 LLM {} chose {} in {} ms: {}",
                printable(model.as_deref().unwrap_or("?")),
                c.name(),
                latency_ms.unwrap_or(0),
                printable(reason)
            ),
            AuditEvent::LlmConsulted { reason, .. } => {
                format!("🤖 LLM answer refused: {}", printable(reason))
            }
            AuditEvent::Executed { action, outcome } => {
                // The wording is the outcome's own (the post-mortem uses it
                // too); the line adds only a mark for the eye.
                let mark = match outcome {
                    Outcome::Cleaned { .. } | Outcome::Pruned { .. } | Outcome::Verified(Verification::Confirmed) => {
                        "✅ "
                    }
                    Outcome::ApprovalRejected => "🛑 ",
                    Outcome::RestartNotNeeded | Outcome::ApprovalVoided { .. } => "⏭  ",
                    Outcome::Failed { .. } => "❌ ",
                    Outcome::Restarted
                    | Outcome::Verified(Verification::NotConfirmed { .. })
                    | Outcome::LlmChose { .. }
                    | Outcome::LlmFailed => "",
                };
                format!("🔧 {} → {mark}{}", action.tool_name(), outcome.describe())
            }
            AuditEvent::WouldExecute { action } => format!("👻 SHADOW would run {}", shown(action)),
            AuditEvent::Checked { state, health, cleared, error } => match error {
                Some(e) => format!("   rapid check: {}", printable(e)),
                None => format!(
                    "   rapid check: {}{}{}",
                    state.map_or("-", ContainerState::as_str),
                    match health {
                        Some(Health::Healthy) => " (healthy)",
                        Some(Health::Unhealthy) => " (unhealthy)",
                        Some(Health::Starting) => " (health: starting)",
                        _ => "",
                    },
                    if *cleared == Some(false) { ", condition persists" } else { "" }
                ),
            },
            AuditEvent::Stateless { container, trouble, step } => step.render(container.as_str(), trouble.as_ref()),
            AuditEvent::AlarmHeld { alarm, dependency, state } => format!(
                "⏸  {} on {} held, not acted on: it depends on {}, which is {}",
                alarm.kind,
                printable(alarm.container.as_str()),
                printable(dependency),
                printable(state)
            ),
            AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps } => {
                format!("✅ Issue fully resolved ({steps} steps)")
            }
            AuditEvent::IncidentClosed { resolution: Resolution::Stopped { reason }, steps } => {
                format!("🛑 STOP after {steps} steps: {reason}. Manual intervention needed.")
            }
            AuditEvent::IncidentClosed { resolution: Resolution::Withheld, steps } => {
                format!("👻 shadow mode: nothing changed on the host ({steps} steps)")
            }
        }
    }
}

/// Who answered, as one inert line: the channel, then who answered through
/// it and the start of the digest they were shown, when recorded.
pub fn answerer(approver: &str, answered_by: &Option<String>, digest: &Option<String>) -> String {
    let mut s = printable(approver);
    let by = answered_by.as_deref().filter(|by| *by != approver);
    match (by, digest) {
        (None, None) => {}
        (Some(by), None) => s += &format!(" ({})", printable(by)),
        (None, Some(d)) => s += &format!(" (evidence {})", short_digest(d)),
        (Some(by), Some(d)) => s += &format!(" ({}, evidence {})", printable(by), short_digest(d)),
    }
    s
}

/// The first 12 hex digits of a digest, enough to tell two apart by eye.
fn short_digest(d: &str) -> String {
    printable(d.get(..12).unwrap_or(d))
}

/// `value` as one inert line.
fn shown(value: &impl std::fmt::Display) -> String {
    printable(&value.to_string())
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, in milliseconds since the epoch.
    pub ts: Timestamp,
    /// When, as RFC 3339 for humans.
    pub time: String,
    /// The incident.
    pub incident: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The records of one incident, from its opening to its closing, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentTrail {
    /// The incident id.
    pub incident: u64,
    /// Its records.
    pub records: Vec<AuditRecord>,
}

impl IncidentTrail {
    /// The alarm that opened it, if the opening record is in the log.
    pub fn alarm(&self) -> Option<(&AuditRecord, &Alarm)> {
        self.records.iter().find_map(|r| match &r.event {
            AuditEvent::IncidentOpened { alarm } => Some((r, alarm)),
            _ => None,
        })
    }

    /// How and when it ended, if the closing record is in the log.
    pub fn closed(&self) -> Option<(&AuditRecord, Resolution)> {
        self.records.iter().rev().find_map(|r| match r.event {
            AuditEvent::IncidentClosed { resolution, .. } => Some((r, resolution)),
            _ => None,
        })
    }
}

/// Splits a log into incidents. Ids restart at 1 with every `watch` run
/// that appends to the same file, so an incident is an id between its
/// opening and its closing, not an id: the same id may appear several times.
/// Records of an incident whose opening is not in the log (a log cut at the
/// head) still form a trail, without an alarm.
pub fn incident_trails(records: &[AuditRecord]) -> Vec<IncidentTrail> {
    let mut trails: Vec<IncidentTrail> = Vec::new();
    let mut open: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for r in records {
        let reopened = matches!(r.event, AuditEvent::IncidentOpened { .. });
        let idx = match open.get(&r.incident) {
            Some(&i) if !reopened => i,
            _ => {
                trails.push(IncidentTrail { incident: r.incident, records: Vec::new() });
                open.insert(r.incident, trails.len() - 1);
                trails.len() - 1
            }
        };
        trails[idx].records.push(r.clone());
        if matches!(r.event, AuditEvent::IncidentClosed { .. }) {
            open.remove(&r.incident);
        }
    }
    trails
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlarmKind, ContainerName, Evidence, RootCause};

    /// Logs written before the renames (`restart_container`, `shadow`)
    /// still read; new ones use the specification's tool name.
    #[test]
    fn old_names_in_logs_still_parse() {
        let old: AuditEvent = serde_json::from_str(
            r#"{"event":"decided","action":{"action":"restart_container","target":"db-prod","reason":"disk_freed"}}"#,
        )
        .unwrap();
        let AuditEvent::Decided { action } = &old else { panic!("{old:?}") };
        assert!(matches!(action, Action::Restart { .. }), "{action:?}");
        let json = serde_json::to_string(action).unwrap();
        assert!(json.contains(r#""action":"restart_database_risky""#), "{json}");
        let shadow: Resolution = serde_json::from_str(r#"{"status":"shadow"}"#).unwrap();
        assert_eq!(shadow, Resolution::Withheld);
        assert_eq!(serde_json::to_string(&shadow).unwrap(), r#"{"status":"withheld"}"#);
    }

    /// Issue 11: an answer records who gave it and the digest they were
    /// shown; answers logged before that still read, without them.
    #[test]
    fn an_answer_names_who_gave_it_and_what_they_saw_and_old_answers_still_read() {
        let old: AuditRecord = serde_json::from_str(
            r#"{"ts":5,"time":"1970-01-01T00:00:00.005Z","incident":2,"event":"approval_answered","request":3,"approved":true,"approver":"web console","detail":"approved"}"#,
        )
        .unwrap();
        let AuditEvent::ApprovalAnswered { answered_by: None, evidence_digest: None, ref approver, .. } = old.event
        else {
            panic!("{old:?}")
        };
        assert_eq!(approver, "web console");
        assert_eq!(old.event.render(), "👤 ✅ approved by web console");

        let digest = "ab".repeat(32);
        let new = AuditEvent::ApprovalAnswered {
            request: 3,
            approved: true,
            approver: "web console".into(),
            detail: "approved".into(),
            answered_by: Some("api: alice".into()),
            evidence_digest: Some(digest.clone()),
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains(r#""answered_by":"api: alice""#), "{json}");
        assert!(json.contains(&format!(r#""evidence_digest":"{digest}""#)), "{json}");
        assert_eq!(serde_json::from_str::<AuditEvent>(&json).unwrap(), new);
        assert_eq!(new.render(), "👤 ✅ approved by web console (api: alice, evidence abababababab)");
        // Nobody answered: nothing is made up.
        let silent = AuditEvent::unsigned_answer(3, false, "web console", "no answer within 300s");
        let json = serde_json::to_string(&silent).unwrap();
        assert!(!json.contains("answered_by") && !json.contains("evidence_digest"), "{json}");
        // Whoever the channel names is one inert line.
        let hostile = AuditEvent::ApprovalAnswered {
            request: 3,
            approved: false,
            approver: "web console".into(),
            detail: "no answer within 300s".into(),
            answered_by: Some("api: a\nb\u{1b}[2J".into()),
            evidence_digest: None,
        };
        assert!(!hostile.render().contains('\n') && !hostile.render().contains('\u{1b}'), "{}", hostile.render());
    }

    fn opened() -> AuditEvent {
        AuditEvent::IncidentOpened {
            alarm: Alarm {
                kind: AlarmKind::DbCrash(RootCause::DiskFull),
                container: ContainerName::new("db-prod"),
                evidence: Evidence { exit_code: Some(1), ..Default::default() },
                raised_at: Timestamp(5),
            },
        }
    }

    /// Issue 9, item 6: the audit line words an outcome as the post-mortem
    /// does ([`Outcome::describe`]), with only a mark in front.
    #[test]
    fn the_audit_line_words_an_outcome_as_the_outcome_does() {
        let cases = [
            (Outcome::Cleaned { disk_used_pct: 32.34, freed_bytes: 55 << 20 }, "✅ "),
            (Outcome::ApprovalRejected, "🛑 "),
            (Outcome::Restarted, ""),
            (Outcome::Verified(Verification::NotConfirmed { last_state: Some(ContainerState::Exited) }), ""),
            (Outcome::Failed { error: "no\nsuch container".into() }, "❌ "),
        ];
        for (outcome, mark) in cases {
            let event = AuditEvent::Executed { action: Action::PruneContainers, outcome: outcome.clone() };
            assert_eq!(event.render(), format!("🔧 prune_containers → {mark}{}", outcome.describe()));
        }
        assert_eq!(
            Outcome::Cleaned { disk_used_pct: 32.34, freed_bytes: 55 << 20 }.describe(),
            "disk at 32.3 % after cleaning, 55 MiB freed"
        );
        assert!(!Outcome::Failed { error: "a\nb".into() }.describe().contains('\n'), "container text stays one line");
    }

    #[test]
    fn trails_split_on_reopened_ids() {
        let closed = || AuditEvent::IncidentClosed { resolution: Resolution::Resolved, steps: 0 };
        let rec =
            |incident, ts, event| AuditRecord { ts: Timestamp(ts), time: Timestamp(ts).to_rfc3339(), incident, event };
        let records = vec![
            rec(1, 1, opened()),
            rec(1, 2, closed()),
            // A second `watch` run appending to the same file starts at 1 again.
            rec(1, 3, opened()),
            rec(2, 4, opened()),
            rec(1, 5, closed()),
            rec(2, 6, closed()),
        ];
        let trails = incident_trails(&records);
        let shape: Vec<(u64, Vec<u64>)> =
            trails.iter().map(|t| (t.incident, t.records.iter().map(|r| r.ts.0).collect())).collect();
        assert_eq!(shape, vec![(1, vec![1, 2]), (1, vec![3, 5]), (2, vec![4, 6])]);
        assert!(trails.iter().all(|t| t.alarm().is_some() && t.closed().is_some()));
        // A log cut at the head: a trail without its alarm.
        let cut = incident_trails(&records[1..2]);
        assert_eq!(cut.len(), 1);
        assert!(cut[0].alarm().is_none());
    }
}
