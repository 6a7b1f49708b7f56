//! The rules kube-apiserver applies on every write, as pure functions over
//! JSON values: metadata defaulting, validation of names, labels and
//! annotations, system fields users cannot change, generation bumps on spec
//! changes only, the status subresource split, finalizers and
//! deletionTimestamp, and the owner references and finalizers garbage
//! collection goes by.
//!
//! Callers: `registry::generic`, inside `Store::write` closures, and
//! `controllers`. Knows `resources` (flags of a kind), `apimachinery`'s
//! validation and errors (the `Status` it returns); never touches the store.

use serde_json::{Map, Value};

use crate::{
    apimachinery::{
        clock::format_time,
        errors::{ApiError, Cause},
        validation::{
            dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors,
            label_value_errors, path_segment_errors, qualified_name_errors,
        },
    },
    registry::resources::Kind,
};

/// Total size allowed for all annotations of an object.
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// Problems with `name` as the name of an object of `kind`.
pub fn name_errors(kind: &Kind, name: &str) -> Vec<String> {
    match (kind.group(), kind.plural()) {
        ("", "namespaces") => dns1123_label_errors(name),
        ("", "services") => dns1035_label_errors(name),
        ("rbac.authorization.k8s.io", _) => path_segment_errors(name),
        _ => dns1123_subdomain_errors(name),
    }
}

/// The `metadata` object of `obj`, if it is one.
pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the object carries a `deletionTimestamp`.
pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

/// The finalizer of a foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub const ORPHAN: &str = "orphan";

/// `metadata.ownerReferences`, as given.
pub fn owner_refs(obj: &Value) -> Vec<Value> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether `obj` names owners (then the garbage collector has work to look for).
pub fn has_owners(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty())
}

/// Validates the metadata of an object about to be written (name already set).
pub fn validate_metadata(kind: &Kind, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(meta) = meta(obj) else {
        causes.push(Cause::required("metadata", ""));
        return causes;
    };
    if let Some(name) = meta.get("name").and_then(Value::as_str) {
        for e in name_errors(kind, name) {
            causes.push(Cause::invalid(
                "metadata.name",
                &Value::String(name.into()),
                &e,
            ));
        }
    }
    match meta.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                for e in qualified_name_errors(k) {
                    causes.push(Cause::invalid(
                        "metadata.labels",
                        &Value::String(k.clone()),
                        &e,
                    ));
                }
                match v.as_str() {
                    Some(s) => {
                        for e in label_value_errors(s) {
                            causes.push(Cause::invalid("metadata.labels", v, &e));
                        }
                    }
                    None => causes.push(Cause::invalid("metadata.labels", v, "must be a string")),
                }
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "metadata.labels",
            other,
            "must be an object",
        )),
    }
    match meta.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(annotations)) => {
            let mut total = 0;
            for (k, v) in annotations {
                for e in qualified_name_errors(&k.to_lowercase()) {
                    causes.push(Cause::invalid(
                        "metadata.annotations",
                        &Value::String(k.clone()),
                        &e,
                    ));
                }
                total += k.len() + v.as_str().map_or(0, str::len);
                if !v.is_string() {
                    causes.push(Cause::invalid(
                        "metadata.annotations",
                        v,
                        "must be a string",
                    ));
                }
            }
            if total > ANNOTATIONS_LIMIT {
                causes.push(Cause::too_long(
                    "metadata.annotations",
                    &format!("must have at most {ANNOTATIONS_LIMIT} bytes"),
                ));
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "metadata.annotations",
            other,
            "must be an object",
        )),
    }
    if let Some(list) = meta.get("finalizers") {
        match list.as_array() {
            Some(items) => {
                for (i, f) in items.iter().enumerate() {
                    let field = format!("metadata.finalizers[{i}]");
                    match f.as_str() {
                        Some(s) => {
                            for e in qualified_name_errors(s) {
                                causes.push(Cause::invalid(&field, f, &e));
                            }
                        }
                        None => causes.push(Cause::invalid(&field, f, "must be a string")),
                    }
                }
            }
            None if list.is_null() => {}
            None => causes.push(Cause::invalid(
                "metadata.finalizers",
                list,
                "must be a list",
            )),
        }
    }
    causes
}

/// Everything a create needs from outside: identity and time.
pub struct CreateInfo<'a> {
    /// The new uid.
    pub uid: String,
    /// `creationTimestamp`.
    pub now: &'a str,
}

/// Defaults the system metadata of a new object and resets what a create
/// may not set (status on kinds with a status subresource, deletion fields).
pub fn prepare_create(kind: &Kind, version: &str, obj: &mut Value, info: CreateInfo<'_>) {
    if kind.has_status(version) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    let meta = meta_mut(obj);
    meta.insert("uid".into(), Value::String(info.uid));
    meta.insert("creationTimestamp".into(), Value::String(info.now.into()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    meta.remove("resourceVersion");
    if kind.generation {
        meta.insert("generation".into(), Value::from(1));
    } else {
        meta.remove("generation");
    }
    if !kind.namespaced {
        meta.remove("namespace");
    }
    for empty in ["labels", "annotations", "finalizers", "ownerReferences"] {
        if meta.get(empty).is_some_and(Value::is_null) {
            meta.remove(empty);
        }
    }
    builtin_defaults(kind, obj);
    crate::registry::defaults::apply(kind, obj);
}

/// Status and labels kube-apiserver (or its controllers, instantly) gives new
/// built-in objects.
fn builtin_defaults(kind: &Kind, obj: &mut Value) {
    match (kind.group(), kind.plural()) {
        ("", "namespaces") => {
            let name = meta_str(obj, "name").unwrap_or_default().to_string();
            let meta = meta_mut(obj);
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
            }
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = serde_json::json!({});
            }
            if obj["spec"].get("finalizers").is_none() {
                obj["spec"]["finalizers"] = serde_json::json!(["kubernetes"]);
            }
            obj["status"] = serde_json::json!({"phase": "Active"});
        }
        ("", "pods") => {
            let qos = qos_class(&obj["spec"]);
            obj["status"] = serde_json::json!({"phase": "Pending", "qosClass": qos});
        }
        ("batch", "jobs") => job_selector(obj),
        _ => {}
    }
}

/// Which endpoint an update comes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The object itself.
    Main,
    /// The `/status` subresource.
    Status,
}

/// Turns a client's full replacement `new` of `old` into what is stored:
/// system fields kept from `old`, the status split applied, generation bumped
/// when the spec changed, and new finalizers refused while deleting.
///
/// # Errors
/// 409 on a stale resourceVersion or a uid mismatch, 400 on a name mismatch,
/// 422 on new finalizers during deletion.
pub fn prepare_update(
    kind: &Kind,
    version: &str,
    old: &Value,
    new: &mut Value,
    endpoint: Endpoint,
) -> Result<(), ApiError> {
    let name = meta_str(old, "name").unwrap_or_default().to_string();
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = Value::Object(Map::new());
    }
    match meta_str(new, "name") {
        None | Some("") => {
            meta_mut(new).insert("name".into(), Value::String(name.clone()));
        }
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        Some(_) => {}
    }
    let old_rv = meta_str(old, "resourceVersion").unwrap_or_default();
    match meta_str(new, "resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != old_rv => {
            if rv.parse::<u64>().is_err() {
                return Err(ApiError::invalid(
                    kind.group(),
                    &kind.kind,
                    &name,
                    vec![Cause::invalid(
                        "metadata.resourceVersion",
                        &Value::String(rv.into()),
                        "must be a valid resourceVersion",
                    )],
                ));
            }
            return Err(ApiError::stale(kind.group(), kind.plural(), &name));
        }
        _ => {}
    }
    let old_uid = meta_str(old, "uid").unwrap_or_default();
    if let Some(uid) = meta_str(new, "uid") {
        if !uid.is_empty() && uid != old_uid {
            return Err(ApiError::conflict(
                kind.group(),
                kind.plural(),
                &name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"),
            ));
        }
    }
    if endpoint == Endpoint::Status {
        let status = new.get("status").cloned();
        let managed = meta(new).and_then(|m| m.get("managedFields")).cloned();
        let mut merged = old.clone();
        if let Some(managed) = managed {
            meta_mut(&mut merged).insert("managedFields".into(), managed);
        }
        match (merged.as_object_mut(), status) {
            (Some(o), Some(s)) => {
                o.insert("status".into(), s);
            }
            (Some(o), None) => {
                o.remove("status");
            }
            _ => {}
        }
        *new = merged;
        return Ok(());
    }
    // The main endpoint: status comes from the old object when it has its own endpoint.
    if kind.has_status(version) {
        match (new.as_object_mut(), old.get("status")) {
            (Some(o), Some(s)) => {
                o.insert("status".into(), s.clone());
            }
            (Some(o), None) => {
                o.remove("status");
            }
            _ => {}
        }
    }
    let old_meta = meta(old).cloned().unwrap_or_default();
    let new_meta = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                new_meta.insert(field.into(), v.clone());
            }
            None => {
                new_meta.remove(field);
            }
        }
    }
    // Field ownership: what the write says (server-side apply computes it),
    // else what the object had.
    if !new_meta.contains_key("managedFields") {
        if let Some(v) = old_meta.get("managedFields") {
            new_meta.insert("managedFields".into(), v.clone());
        }
    }
    new_meta.remove("selfLink");
    for empty in ["labels", "annotations", "finalizers", "ownerReferences"] {
        if new_meta.get(empty).is_some_and(Value::is_null) {
            new_meta.remove(empty);
        }
    }
    if is_deleting(old) {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let listed = added
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::invalid(
                kind.group(),
                &kind.kind,
                &name,
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    &format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{listed}}}"),
                )],
            ));
        }
    }
    if kind.generation && spec_changed(kind, version, old, new) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), Value::from(generation + 1));
    }
    Ok(())
}

/// Whether anything other than metadata (and status, where it has its own
/// endpoint) differs.
fn spec_changed(kind: &Kind, version: &str, old: &Value, new: &Value) -> bool {
    let skip_status = kind.has_status(version);
    let relevant = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| {
                        k.as_str() != "metadata"
                            && !(skip_status && k.as_str() == "status")
                            && k.as_str() != "apiVersion"
                            && k.as_str() != "kind"
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    relevant(old) != relevant(new)
}

/// A pod's quality-of-service class: `Guaranteed` when every container
/// limits CPU and memory and requests the same (requests default to
/// limits), `BestEffort` when none requests or limits anything, and
/// `Burstable` otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let resources = |c: &Value, what: &str| -> Map<String, Value> {
        c.pointer(&format!("/resources/{what}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let (requests, limits) = (resources(c, "requests"), resources(c, "limits"));
        any |= !requests.is_empty() || !limits.is_empty();
        for r in ["cpu", "memory"] {
            let limit = limits.get(r);
            let request = requests.get(r).or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
        guaranteed &= requests.keys().all(|k| limits.get(k) == requests.get(k));
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// A Job's generated selector (unless `manualSelector`): its pods are
/// labelled with the Job's uid and name, and selected by the uid.
fn job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let uid = meta_str(obj, "uid").unwrap_or_default().to_string();
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let template = spec
        .entry("template")
        .or_insert_with(|| serde_json::json!({}));
    if !template["metadata"].is_object() {
        template["metadata"] = serde_json::json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = serde_json::json!({});
    }
    let labels = &mut template["metadata"]["labels"];
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[key] = Value::String(value.clone());
    }
    spec.insert(
        "selector".into(),
        serde_json::json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
}

/// Sets a condition in `status.conditions` by its `type`, as kube's
/// `UpdatePodCondition`: `lastTransitionTime` is `now` when the condition
/// is new or its status changed, and kept otherwise.
pub fn set_condition(obj: &mut Value, mut condition: Value, now: &str) {
    if !obj["status"].is_object() {
        obj["status"] = Value::Object(Map::new());
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = Value::Array(Vec::new());
    }
    let Some(list) = obj["status"]["conditions"].as_array_mut() else {
        return;
    };
    let existing = list.iter_mut().find(|c| c["type"] == condition["type"]);
    let transition = match &existing {
        Some(old) if old["status"] == condition["status"] => old["lastTransitionTime"].clone(),
        _ => Value::String(now.into()),
    };
    condition["lastTransitionTime"] = transition;
    match existing {
        Some(old) => *old = condition,
        None => list.push(condition),
    }
}

/// How long a pod being deleted may take to stop (kube's pod strategy):
/// the request's `gracePeriodSeconds`, else the pod's
/// `terminationGracePeriodSeconds`; none for a pod on no node or one that
/// has finished; a negative period counts as one second.
pub fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let period = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(0);
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    match period {
        _ if !bound || finished => 0,
        p if p < 0 => 1,
        p => p,
    }
}

/// Marks `obj` as being deleted within `grace` seconds of `now`; a later
/// request may only shorten the period, as kube's `BeforeDelete`.
pub fn mark_deleting_gracefully(obj: &mut Value, now: jiff::Timestamp, grace: i64) {
    let meta = meta_mut(obj);
    let current = meta
        .get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let deleting = meta.get("deletionTimestamp").is_some_and(|t| !t.is_null());
    if deleting && current.is_some_and(|c| c <= grace) {
        return;
    }
    if !deleting {
        if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
            if g > 0 {
                meta.insert("generation".into(), Value::from(g + 1));
            }
        }
    }
    let at = now
        .checked_add(jiff::SignedDuration::from_secs(grace))
        .unwrap_or(now);
    meta.insert("deletionTimestamp".into(), Value::String(format_time(at)));
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
}

/// Marks `obj` as being deleted: `deletionTimestamp`, a zero grace period, and
/// a generation bump the first time, as kube-apiserver's `markAsDeleting`.
pub fn mark_deleting(obj: &mut Value, now: &str) {
    let meta = meta_mut(obj);
    if meta.get("deletionTimestamp").is_none_or(Value::is_null) {
        if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
            if g > 0 {
                meta.insert("generation".into(), Value::from(g + 1));
            }
        }
        meta.insert("deletionTimestamp".into(), Value::String(now.into()));
    }
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::resources::Resources;
    use serde_json::json;

    fn kind(group: &str, plural: &str) -> Kind {
        let resources = Resources::with_builtins();
        (*resources.lookup(group, "v1", plural).unwrap()).clone()
    }

    #[test]
    fn names_should_follow_their_kinds_rules() {
        assert!(dns1123_subdomain_errors("a.b-c").is_empty());
        assert!(!dns1123_subdomain_errors("A").is_empty());
        assert!(!dns1123_subdomain_errors("a..b").is_empty());
        assert!(dns1123_label_errors("kube-system").is_empty());
        assert!(!dns1123_label_errors("a.b").is_empty());
        assert_eq!(
            dns1123_label_errors(&"a".repeat(64))[0],
            "must be no more than 63 characters"
        );
        assert!(name_errors(
            &kind("rbac.authorization.k8s.io", "clusterroles"),
            "system:controller:x"
        )
        .is_empty());
        assert!(!name_errors(&kind("", "services"), "1abc").is_empty());
    }

    #[test]
    fn labels_should_be_validated_like_kube_apiserver() {
        assert!(qualified_name_errors("example.com/my-key").is_empty());
        assert!(qualified_name_errors("app").is_empty());
        assert!(!qualified_name_errors("-app").is_empty());
        assert!(!qualified_name_errors("/app").is_empty());
        assert!(!qualified_name_errors(&"a".repeat(64)).is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("bad value").is_empty());
        let causes = validate_metadata(
            &kind("", "configmaps"),
            &json!({"metadata": {"name": "x", "labels": {"ok": "fine", "bad key": "v", "k": "bad value!"}}}),
        );
        assert_eq!(causes.len(), 2);
        assert!(causes.iter().all(|c| c.field == "metadata.labels"));
    }

    #[test]
    fn update_should_bump_generation_only_on_spec_changes() {
        let k = kind("apps", "deployments");
        let old = json!({"metadata": {"name": "d", "generation": 1, "resourceVersion": "5", "uid": "u"}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let mut labels_only = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"x": 2}});
        prepare_update(&k, "v1", &old, &mut labels_only, Endpoint::Main).unwrap();
        assert_eq!(labels_only["metadata"]["generation"], 1);
        assert_eq!(
            labels_only["status"]["x"], 1,
            "main endpoint ignores status"
        );
        let mut spec = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        prepare_update(&k, "v1", &old, &mut spec, Endpoint::Main).unwrap();
        assert_eq!(spec["metadata"]["generation"], 2);
        assert_eq!(spec["metadata"]["uid"], "u");
        let mut status = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 9}, "status": {"x": 3}});
        prepare_update(&k, "v1", &old, &mut status, Endpoint::Status).unwrap();
        assert_eq!(
            status["spec"]["replicas"], 1,
            "status endpoint ignores spec"
        );
        assert_eq!(status["status"]["x"], 3);
        assert!(status["metadata"].get("labels").is_none());
    }

    #[test]
    fn update_should_refuse_stale_rv_and_new_finalizers_while_deleting() {
        let k = kind("", "configmaps");
        let old = json!({"metadata": {"name": "c", "resourceVersion": "5", "deletionTimestamp": "2020-01-01T00:00:00Z", "finalizers": ["a"]}});
        let mut stale = json!({"metadata": {"name": "c", "resourceVersion": "4"}});
        assert_eq!(
            prepare_update(&k, "v1", &old, &mut stale, Endpoint::Main)
                .unwrap_err()
                .code,
            409
        );
        let mut added = json!({"metadata": {"name": "c", "finalizers": ["a", "b"]}});
        let err = prepare_update(&k, "v1", &old, &mut added, Endpoint::Main).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("no new finalizers can be added"),
            "{}",
            err.message
        );
        let mut removed = json!({"metadata": {"name": "c", "finalizers": []}});
        prepare_update(&k, "v1", &old, &mut removed, Endpoint::Main).unwrap();
        assert_eq!(
            removed["metadata"]["deletionTimestamp"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn mark_deleting_should_bump_generation_once() {
        let mut obj = json!({"metadata": {"name": "x", "generation": 3}});
        mark_deleting(&mut obj, "2020-01-01T00:00:00Z");
        mark_deleting(&mut obj, "2021-01-01T00:00:00Z");
        assert_eq!(obj["metadata"]["generation"], 4);
        assert_eq!(obj["metadata"]["deletionTimestamp"], "2020-01-01T00:00:00Z");
        assert_eq!(obj["metadata"]["deletionGracePeriodSeconds"], 0);
    }
}
