//! Posting log lines as Kubernetes Events (core/v1), the way Kopf does:
//! reason `Logging`, type by level, `reportingComponent: kopf`, messages
//! over 1024 characters shortened in the middle.
//!
//! An engine: it only needs a client and the involved object.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::{api::PostParams, Api, Client};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::handling::{Level, LogLine, Posting};

/// The event for a log line, as Kopf posts it (reason `Logging`).
pub(crate) fn from_line(involved: Value, line: &LogLine) -> Posting {
    let type_ = match line.level {
        Level::Debug => "Debug",
        Level::Info => "Normal",
        Level::Warning => "Warning",
        Level::Error => "Error",
    };
    Posting {
        involved,
        type_: type_.into(),
        reason: "Logging".into(),
        message: line.message.clone(),
    }
}

fn shorten(message: &str) -> String {
    if message.chars().count() <= 1024 {
        return message.to_string();
    }
    let chars: Vec<char> = message.chars().collect();
    let head: String = chars[..510].iter().collect();
    let tail: String = chars[chars.len() - 511..].iter().collect();
    format!("{head}...{tail}")
}

fn event_body(p: &Posting, now: Timestamp) -> Option<Event> {
    let involved = &p.involved;
    let meta = involved.get("metadata")?;
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let time = crate::storage::format_time(now);
    let body = json!({
        "metadata": {"namespace": namespace, "generateName": "kopf-event-"},
        "action": "Action",
        "type": p.type_,
        "reason": p.reason,
        "message": shorten(&p.message),
        "reportingComponent": "kopf",
        "reportingInstance": "dev",
        "source": {"component": "kopf"},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "namespace": meta.get("namespace"),
        },
        "firstTimestamp": time,
        "lastTimestamp": time,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
    });
    serde_json::from_value(body).ok()
}

/// Starts the poster: a task posting events in order, stamped by `clock`
/// (the operator's, so that under a test's virtual clock events carry the
/// same time as everything else); returns its inbox.
pub(crate) fn start(
    client: Client,
    clock: crate::settings::Clock,
    sink: Option<crate::handling::LogSink>,
) -> mpsc::UnboundedSender<Posting> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Posting>();
    // Failures go to the operator's log, not as Events (that would loop).
    let logger = crate::handling::Logger::operator(sink);
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            let Some(event) = event_body(&p, clock.now()) else {
                continue;
            };
            let namespace = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                logger.warn(format!(
                    "Failed to post an event: {}",
                    crate::forbidden::explain(&e)
                ));
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_should_look_like_kopfs() {
        let involved = json!({"apiVersion": "kopf.dev/v1", "kind": "KopfExample",
                              "metadata": {"name": "x", "namespace": "ns", "uid": "u"}});
        let line = LogLine {
            level: Level::Info,
            message: "Handler 'create_fn' succeeded.".into(),
        };
        let e = event_body(&from_line(involved, &line), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reason.as_deref(), Some("Logging"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("KopfExample"));
        assert_eq!(e.metadata.generate_name.as_deref(), Some("kopf-event-"));
        assert_eq!(shorten(&"a".repeat(2000)).len(), 1024);
    }
}
