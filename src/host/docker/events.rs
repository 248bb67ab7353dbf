//! Docker's event stream as [`ContainerEvent`]s for
//! [`crate::incident::Agent::run`]: conversion, and reconnection after a
//! daemon restart (resuming from the last event seen). The settling of
//! `die` events is the scheduler's ([`opsguard_core::schedule`]).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{HELPER_ROLE, ROLE_LABEL};
use crate::clock::Clock;
use crate::host::{ContainerEvent, ContainerEventKind};
use crate::model::{ContainerName, Health, Timestamp};

/// Converts one Docker event to a [`ContainerEvent`]; `None` for events
/// OpsGuard does not use, helpers' events, and malformed ones.
pub fn convert_event(ev: &EventMessage) -> Option<ContainerEvent> {
    let actor = ev.actor.as_ref()?;
    let attrs = actor.attributes.as_ref()?;
    if attrs.get(ROLE_LABEL).is_some_and(|r| r == HELPER_ROLE) {
        return None;
    }
    let name = attrs.get("name")?;
    let action = ev.action.as_deref()?;
    let kind = match action {
        "die" => ContainerEventKind::Die,
        "oom" => ContainerEventKind::Oom,
        "start" => ContainerEventKind::Start,
        a => match a.strip_prefix("health_status:").map(str::trim) {
            Some("healthy") => ContainerEventKind::HealthStatus(Health::Healthy),
            Some("unhealthy") => ContainerEventKind::HealthStatus(Health::Unhealthy),
            Some("starting") => ContainerEventKind::HealthStatus(Health::Starting),
            _ => return None,
        },
    };
    let ms = ev
        .time_nano
        .map(|n| (n / 1_000_000).max(0) as u64)
        .or_else(|| ev.time.map(|s| (s.max(0) as u64).saturating_mul(1000)))
        .unwrap_or(0);
    Some(ContainerEvent { container: ContainerName::new(name), kind, at: Timestamp(ms) })
}

/// What the event pump reports besides events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamNotice {
    /// Connected (again), reading events since this Unix second.
    Connected {
        /// Resume point.
        since: Option<i64>,
    },
    /// The stream broke; reconnecting after a pause.
    Lost {
        /// Why.
        error: String,
    },
}

/// Streams container events (`die`, `oom`, `start`, `health_status`) of
/// containers carrying `scope_label` into a channel until the receiver is
/// dropped. After the stream breaks (a daemon restart) it reconnects with
/// backoff and resumes from the last event's second, skipping events it has
/// already delivered. Events that do not fit the channel are dropped: the
/// periodic sweep catches up with them. `clock` gives the resume point when
/// the stream breaks before any event was seen, and paces the reconnects.
pub fn spawn_events<C: Clock + Send + 'static>(
    docker: Docker,
    scope_label: String,
    capacity: usize,
    notices: Option<mpsc::UnboundedSender<StreamNotice>>,
    clock: C,
) -> (mpsc::Receiver<ContainerEvent>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let handle = tokio::spawn(async move {
        let mut since: Option<i64> = None;
        let mut seen: VecDeque<(i64, String, String)> = VecDeque::new();
        let mut backoff = Duration::from_millis(200);
        let notify = |n: StreamNotice| {
            if let Some(tx) = &notices {
                let _ = tx.send(n);
            }
        };
        loop {
            if tx.is_closed() {
                return;
            }
            let filters: HashMap<String, Vec<String>> = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), ["die", "oom", "start", "health_status"].iter().map(|s| s.to_string()).collect()),
                ("label".to_string(), vec![scope_label.clone()]),
            ]);
            let mut b = EventsOptionsBuilder::default().filters(&filters);
            let s;
            if let Some(t) = since {
                s = t.to_string();
                b = b.since(&s);
            }
            let mut stream = Box::pin(docker.events(Some(b.build())));
            notify(StreamNotice::Connected { since });
            let mut got_any = false;
            let error = loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    item = stream.next() => match item {
                        None => break "event stream ended".to_string(),
                        Some(Err(e)) => break e.to_string(),
                        Some(Ok(ev)) => {
                            got_any = true;
                            backoff = Duration::from_millis(200);
                            let nanos = ev.time_nano.unwrap_or(0);
                            let key = (
                                nanos,
                                ev.actor.as_ref().and_then(|a| a.id.clone()).unwrap_or_default(),
                                ev.action.clone().unwrap_or_default(),
                            );
                            if seen.contains(&key) {
                                continue;
                            }
                            seen.push_back(key);
                            if seen.len() > 512 {
                                seen.pop_front();
                            }
                            if let Some(t) = ev.time {
                                since = Some(since.map_or(t, |s| s.max(t)));
                            }
                            if let Some(ce) = convert_event(&ev) {
                                match tx.try_send(ce) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {}
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                        }
                    }
                }
            };
            // Never lose the window while reconnecting: resume from now if
            // nothing was seen yet.
            if since.is_none() {
                since = Some(i64::try_from(clock.now().0 / 1000).unwrap_or(i64::MAX));
            }
            notify(StreamNotice::Lost { error });
            if !got_any {
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = clock.sleep(backoff) => {}
            }
        }
    });
    (rx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;
    #[test]
    fn events_convert_and_helpers_are_ignored() {
        let ev = |action: &str, role: Option<&str>| EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    [("name".to_string(), "db-prod".to_string())]
                        .into_iter()
                        .chain(role.map(|r| (ROLE_LABEL.to_string(), r.to_string())))
                        .collect(),
                ),
            }),
            time: Some(2),
            time_nano: Some(2_500_000_000),
            ..Default::default()
        };
        let e = convert_event(&ev("die", None)).unwrap();
        assert_eq!((e.kind, e.at, e.container.as_str()), (ContainerEventKind::Die, Timestamp(2500), "db-prod"));
        assert_eq!(
            convert_event(&ev("health_status: unhealthy", None)).unwrap().kind,
            ContainerEventKind::HealthStatus(Health::Unhealthy)
        );
        assert_eq!(convert_event(&ev("oom", None)).unwrap().kind, ContainerEventKind::Oom);
        assert!(convert_event(&ev("die", Some(HELPER_ROLE))).is_none());
        assert!(convert_event(&ev("exec_start: sh", None)).is_none());
        assert!(convert_event(&EventMessage::default()).is_none());
    }
}
