//! The `/scale` subresource's rules: an `autoscaling/v1` Scale read from an
//! object through its kind's scale paths, and a Scale's replicas written
//! back. Pure functions; the verbs are in `generic::scale`.

use serde_json::{json, Map, Value};

use crate::{
    apimachinery::errors::Cause, registry::resources::ScalePaths,
    storage::selector::format_label_selector,
};

/// The value at a scale path (`.spec.replicas`).
fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(obj, |v, k| v.get(k))
}

/// A label selector object (`matchLabels`, `matchExpressions`) or a plain
/// map (ReplicationController) as the string form a Scale carries.
fn selector_string(selector: &Value) -> String {
    let Some(map) = selector.as_object() else {
        return selector.as_str().unwrap_or_default().to_string();
    };
    if map.contains_key("matchLabels") || map.contains_key("matchExpressions") {
        format_label_selector(selector).unwrap_or_default()
    } else {
        format_label_selector(&json!({"matchLabels": map})).unwrap_or_default()
    }
}

/// The Scale of `obj`. `default_replicas` is what an absent desired count
/// means (1 for built-in workloads, which kube defaults so; 0 for custom
/// resources).
pub fn render(obj: &Value, paths: &ScalePaths, default_replicas: i64) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(key) {
            metadata.insert(key.into(), v.clone());
        }
    }
    let spec = at(obj, &paths.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(default_replicas);
    let status = at(obj, &paths.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut scale_status = json!({"replicas": status});
    if let Some(selector) = paths
        .label_selector
        .as_deref()
        .and_then(|p| at(obj, p))
        .map(selector_string)
        .filter(|s| !s.is_empty())
    {
        scale_status["selector"] = Value::String(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec},
        "status": scale_status,
    })
}

/// What is wrong with a Scale sent to be written.
pub fn validate(scale: &Value) -> Vec<Cause> {
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Vec::new(),
        Some(n) if n.as_i64().is_some_and(|n| n >= 0) => Vec::new(),
        Some(n) if n.is_i64() => vec![Cause::invalid(
            "spec.replicas",
            n,
            "must be greater than or equal to 0",
        )],
        Some(n) => vec![Cause::invalid("spec.replicas", n, "must be an integer")],
    }
}

/// `obj` with its desired replicas set to `replicas` (the path's parents
/// made as needed).
pub fn set_replicas(obj: &mut Value, paths: &ScalePaths, replicas: i64) {
    let keys: Vec<&str> = paths
        .spec_replicas
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut node = obj;
    for key in parents {
        if !node.get(*key).is_some_and(Value::is_object) {
            node[*key] = json!({});
        }
        node = &mut node[*key];
    }
    node[*last] = json!(replicas);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kube-apiserver answers for `GET deployments/web/scale`.
    #[test]
    fn a_deployments_scale_should_look_like_kube_apiservers() {
        let deploy = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7",
                                         "creationTimestamp": "2023-11-14T22:13:20Z", "labels": {"x": "y"}},
                            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
                            "status": {"replicas": 2}});
        assert_eq!(
            render(&deploy, &ScalePaths::workload(), 1),
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7",
                                "creationTimestamp": "2023-11-14T22:13:20Z"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web,tier in (a,b)"}})
        );
        let mut unset = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(
            render(&unset, &ScalePaths::workload(), 1)["spec"]["replicas"],
            1
        );
        set_replicas(&mut unset, &ScalePaths::workload(), 5);
        assert_eq!(unset["spec"]["replicas"], 5);
    }

    #[test]
    fn negative_replicas_should_be_invalid() {
        let causes = validate(&json!({"spec": {"replicas": -1}}));
        assert_eq!(
            causes[0].message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(validate(&json!({"spec": {"replicas": 0}})).is_empty());
    }
}
