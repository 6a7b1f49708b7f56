//! Events have two APIs, core/v1 and events.k8s.io/v1, over one storage in
//! kube-apiserver: an Event written through either is listed, watched and
//! described through both. Here each write to one is mirrored, converted,
//! to the other (same name and uid), so `kubectl get events` and `kubectl
//! describe` show what an operator posted through events.k8s.io/v1 (as
//! kube-rs's recorder does), and the other way round.

use serde_json::{Map, Value};

use crate::{apimachinery::resource_key::ResourceKey, registry::resources::Kind};

/// The storage key of the other API's Events, for an Event kind.
pub(crate) fn mirror_of(kind: &Kind) -> Option<ResourceKey> {
    match (kind.key.group.as_str(), kind.key.plural.as_str()) {
        ("", "events") => Some(ResourceKey::new("events.k8s.io", "events")),
        ("events.k8s.io", "events") => Some(ResourceKey::new("", "events")),
        _ => None,
    }
}

fn moved(from: &Map<String, Value>, to: &mut Map<String, Value>, pairs: &[(&str, &str)]) {
    for (src, dst) in pairs {
        if let Some(v) = from.get(*src).filter(|v| !v.is_null()) {
            to.insert((*dst).to_string(), v.clone());
        }
    }
}

/// A core/v1 Event as events.k8s.io/v1 shows it.
pub(crate) fn to_events_v1(core: &Value) -> Value {
    let Some(src) = core.as_object() else {
        return core.clone();
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from("events.k8s.io/v1"));
    out.insert("kind".into(), Value::from("Event"));
    moved(
        src,
        &mut out,
        &[
            ("metadata", "metadata"),
            ("involvedObject", "regarding"),
            ("related", "related"),
            ("message", "note"),
            ("reason", "reason"),
            ("type", "type"),
            ("action", "action"),
            ("reportingInstance", "reportingInstance"),
            ("eventTime", "eventTime"),
            ("series", "series"),
            ("source", "deprecatedSource"),
            ("firstTimestamp", "deprecatedFirstTimestamp"),
            ("lastTimestamp", "deprecatedLastTimestamp"),
            ("count", "deprecatedCount"),
        ],
    );
    let controller = src
        .get("reportingComponent")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        .or_else(|| src.get("source").and_then(|s| s.get("component")));
    if let Some(c) = controller {
        out.insert("reportingController".into(), c.clone());
    }
    Value::Object(out)
}

/// An events.k8s.io/v1 Event as core/v1 shows it.
pub(crate) fn to_core(ev: &Value) -> Value {
    let Some(src) = ev.as_object() else {
        return ev.clone();
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from("v1"));
    out.insert("kind".into(), Value::from("Event"));
    moved(
        src,
        &mut out,
        &[
            ("metadata", "metadata"),
            ("regarding", "involvedObject"),
            ("related", "related"),
            ("note", "message"),
            ("reason", "reason"),
            ("type", "type"),
            ("action", "action"),
            ("reportingController", "reportingComponent"),
            ("reportingInstance", "reportingInstance"),
            ("eventTime", "eventTime"),
            ("series", "series"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ],
    );
    if !out.contains_key("involvedObject") {
        out.insert("involvedObject".into(), Value::Object(Map::new()));
    }
    if !out.contains_key("source") {
        let mut source = Map::new();
        moved(
            src,
            &mut source,
            &[
                ("reportingController", "component"),
                ("reportingInstance", "host"),
            ],
        );
        out.insert("source".into(), Value::Object(source));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_should_convert_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": "pulled", "reason": "Pulled",
            "type": "Normal", "source": {"component": "kubelet", "host": "node-1"}, "count": 2,
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z"});
        let v1 = to_events_v1(&core);
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["note"], "pulled");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 2);
        let back = to_core(&v1);
        for field in [
            "involvedObject",
            "message",
            "reason",
            "type",
            "source",
            "count",
            "firstTimestamp",
            "lastTimestamp",
        ] {
            assert_eq!(back[field], core[field], "{field}");
        }
    }
}
