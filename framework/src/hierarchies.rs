//! Hierarchies: making one object the owner of others, as Kopf's `adopt`,
//! `label`, `append_owner_reference`, `remove_owner_reference`,
//! `harmonize_naming` and `adjust_namespace` do; for JSON bodies, and for
//! typed objects through [`adopt_typed`].
//!
//! Plain data transformations (no I/O).

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("made an object above")
}

fn owner_field<'a>(owner: &'a Value, field: &str) -> Option<&'a str> {
    owner
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
}

/// Adds an owner reference to `owner` (controller, blocking owner deletion),
/// unless one with the same uid is there.
pub fn append_owner_reference(obj: &mut Value, owner: &Value) {
    let reference = json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": owner_field(owner, "name"),
        "uid": owner_field(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    });
    let meta = meta_mut(obj);
    let refs = meta.entry("ownerReferences").or_insert_with(|| json!([]));
    if let Some(refs) = refs.as_array_mut() {
        if !refs.iter().any(|r| r.get("uid") == reference.get("uid")) {
            refs.push(reference);
        }
    }
}

/// Removes owner references to `owner` (by uid).
pub fn remove_owner_reference(obj: &mut Value, owner: &Value) {
    let uid = owner_field(owner, "uid").map(String::from);
    if let Some(refs) = obj
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != uid.as_deref());
    }
}

/// Adds `labels` the object does not have yet (existing values win).
pub fn label(obj: &mut Value, labels: &Map<String, Value>) {
    let meta = meta_mut(obj);
    let own = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(own) = own.as_object_mut() {
        for (k, v) in labels {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Names the object after `name` unless it has a name: a `generateName` of
/// `name-` (or exactly `name` when `strict`).
pub fn harmonize_naming(obj: &mut Value, name: &str, strict: bool) {
    let meta = meta_mut(obj);
    if meta
        .get("name")
        .is_some_and(|n| n.as_str().is_some_and(|s| !s.is_empty()))
    {
        return;
    }
    if strict {
        meta.insert("name".into(), json!(name));
        meta.remove("generateName");
    } else if !meta.contains_key("generateName") {
        meta.insert("generateName".into(), json!(format!("{name}-")));
    }
}

/// Puts the object in `namespace` unless it has one.
pub fn adjust_namespace(obj: &mut Value, namespace: Option<&str>) {
    let Some(ns) = namespace.filter(|n| !n.is_empty()) else {
        return;
    };
    let meta = meta_mut(obj);
    let has_namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_namespace {
        meta.insert("namespace".into(), json!(ns));
    }
}

/// Makes `obj` a child of `owner`: owner reference, owner's namespace,
/// a name derived from the owner's, and the owner's labels.
pub fn adopt(obj: &mut Value, owner: &Value) {
    append_owner_reference(obj, owner);
    if let Some(name) = owner_field(owner, "name") {
        harmonize_naming(obj, name, false);
    }
    adjust_namespace(obj, owner_field(owner, "namespace"));
    if let Some(labels) = owner.pointer("/metadata/labels").and_then(Value::as_object) {
        label(obj, labels);
    }
}

/// [`adopt`] for typed objects (e.g. `k8s_openapi::api::core::v1::Pod`).
///
/// # Errors
/// When the object does not round-trip through JSON.
pub fn adopt_typed<T: Serialize + DeserializeOwned>(
    obj: T,
    owner: &Value,
) -> Result<T, serde_json::Error> {
    let mut value = serde_json::to_value(obj)?;
    adopt(&mut value, owner);
    serde_json::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Value {
        json!({"apiVersion": "kopf.dev/v1", "kind": "KopfExample",
               "metadata": {"name": "kopf-example-1", "namespace": "ns", "uid": "u-1", "labels": {"somelabel": "somevalue"}}})
    }

    #[test]
    fn adopt_should_set_owner_namespace_name_and_labels() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"somelabel": "mine"}}});
        adopt(&mut pod, &owner());
        adopt(&mut pod, &owner());
        assert_eq!(
            pod["metadata"]["ownerReferences"].as_array().unwrap().len(),
            1
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["metadata"]["namespace"], "ns");
        assert_eq!(pod["metadata"]["generateName"], "kopf-example-1-");
        assert_eq!(
            pod["metadata"]["labels"]["somelabel"], "mine",
            "the child's own labels win"
        );
        remove_owner_reference(&mut pod, &owner());
        assert!(pod["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn adopt_typed_should_work_on_k8s_openapi_objects() {
        let pod = k8s_openapi::api::core::v1::Pod::default();
        let pod = adopt_typed(pod, &owner()).unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            pod.metadata.owner_references.unwrap()[0].name,
            "kopf-example-1"
        );
    }
}
