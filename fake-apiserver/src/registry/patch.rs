//! Patch formats: RFC 6902 JSON patch and RFC 7386 merge patch (through the
//! `json-patch` crate), and strategic merge patch for built-in kinds, with
//! their list merge keys and the `$patch`, `$retainKeys`,
//! `$deleteFromPrimitiveList` and `$setElementOrder` directives.
//!
//! Pure functions over JSON values; callers: `registry::generic` (and
//! `endpoints`, for the patch types a kind accepts).

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use crate::apimachinery::errors::ApiError;

/// A patch's media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// The media types a custom resource accepts for PATCH.
pub const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// The media types a built-in resource accepts for PATCH.
pub const BUILTIN_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Applies an RFC 6902 JSON patch.
///
/// # Errors
/// 400 when the patch is not a JSON patch document; 422 when an operation
/// does not apply (a failed `test`, a missing path), as kube-apiserver answers.
///
/// Bounded as kube-apiserver bounds it: at most [`MAX_JSON_PATCH_OPERATIONS`]
/// operations (413 beyond), and at most [`MAX_JSON_PATCH_COPY_BYTES`] copied
/// by `copy` operations in all (422 beyond), so that a small patch cannot
/// grow an object exponentially.
pub fn apply_json_patch(doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let ops: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                ops.0.len()
            ),
        ));
    }
    let mut out = doc.clone();
    let mut copied = 0usize;
    for op in ops.0 {
        if let json_patch::PatchOperation::Copy(copy) = &op {
            // The size of what the copy adds, as compact JSON; a missing
            // source is left to the patch itself to report.
            if let Some(source) = out.pointer(copy.from.as_str()) {
                copied = copied.saturating_add(json_size(source));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                        ),
                    ));
                }
            }
        }
        json_patch::patch(&mut out, std::slice::from_ref(&op))
            .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
    }
    Ok(out)
}

/// The most operations one JSON patch may have (kube-apiserver's
/// `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes the `copy` operations of one JSON patch may copy in all
/// (kube-apiserver's `--json-patch-max-copy-bytes` default, 3 MiB).
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The length of `v` as compact JSON, without building it.
fn json_size(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, v);
    counter.0
}

/// Applies an RFC 7386 merge patch.
///
/// # Errors
/// 400 when the patch is not JSON.
pub fn apply_merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut out = doc.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

/// Applies a strategic merge patch to a built-in kind's object.
///
/// # Errors
/// 400 when the patch is not a JSON object or a directive is malformed.
pub fn apply_strategic_patch(doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    };
    let original = doc.as_object().cloned().unwrap_or_default();
    let mut path = Vec::new();
    Ok(match merge_map(original, patch, &mut path)? {
        Some(map) => Value::Object(map),
        None => Value::Object(Map::new()),
    })
}

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Replace the whole list (the default).
    Replace,
    /// Union of primitive values.
    Primitives,
    /// Merge elements with the same value of this key.
    Key(&'static str),
}

/// How server-side apply treats the list at `path` of a built-in kind:
/// merged by this key (`Some(Some(key))`), as a set of values
/// (`Some(None)`), or atomic (`None`).
pub(crate) fn apply_list_key(path: &[String]) -> Option<Option<&'static str>> {
    match list_strategy(path) {
        ListStrategy::Key(k) => Some(Some(k)),
        ListStrategy::Primitives => Some(None),
        ListStrategy::Replace => None,
    }
}

/// The patch strategy of the list at `path` in built-in kinds (from the Go
/// types' `patchStrategy`/`patchMergeKey` tags).
fn list_strategy(path: &[String]) -> ListStrategy {
    let last = path.last().map(String::as_str).unwrap_or_default();
    let parent = path
        .len()
        .checked_sub(2)
        .map(|i| path[i].as_str())
        .unwrap_or_default();
    match (parent, last) {
        ("metadata", "finalizers") => ListStrategy::Primitives,
        ("metadata", "ownerReferences") => ListStrategy::Key("uid"),
        (_, "containers" | "initContainers" | "ephemeralContainers") => ListStrategy::Key("name"),
        ("containers" | "initContainers" | "ephemeralContainers", "env") => {
            ListStrategy::Key("name")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => {
            ListStrategy::Key("containerPort")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "volumeMounts") => {
            ListStrategy::Key("mountPath")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "volumeDevices") => {
            ListStrategy::Key("devicePath")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "resizePolicy") => {
            ListStrategy::Key("resourceName")
        }
        ("spec", "ports") => ListStrategy::Key("port"),
        (_, "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates") => {
            ListStrategy::Key("name")
        }
        (_, "hostAliases") => ListStrategy::Key("ip"),
        (_, "topologySpreadConstraints") => ListStrategy::Key("topologyKey"),
        ("status", "conditions" | "addresses") => ListStrategy::Key("type"),
        _ => ListStrategy::Replace,
    }
}

const DELETE_FROM: &str = "$deleteFromPrimitiveList/";
const SET_ORDER: &str = "$setElementOrder/";

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match patch.remove("$patch") {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "replace" => {
            strip_directives(&mut patch);
            return Ok(Some(patch));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid $patch directive: {other}"
            )))
        }
    }
    let retain = match patch.remove("$retainKeys") {
        None => None,
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .map(|k| k.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad_request("$retainKeys must be a list of strings"))?,
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "$retainKeys must be a list of strings",
            ))
        }
    };
    let mut orders = Vec::new();
    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let remove = patch.remove(&key).unwrap_or(Value::Null);
            let remove: HashSet<String> = remove
                .as_array()
                .map(|r| r.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|v| !remove.contains(&v.to_string()));
            }
        } else if let Some(field) = key.strip_prefix(SET_ORDER) {
            if let Some(order) = patch.remove(&key) {
                orders.push((field.to_string(), order));
            }
        }
    }
    for (key, value) in patch {
        match value {
            Value::Null => {
                original.remove(&key);
            }
            Value::Object(sub) => {
                path.push(key.clone());
                let merged = match original.remove(&key) {
                    Some(Value::Object(orig)) => merge_map(orig, sub, path)?,
                    _ => merge_map(Map::new(), sub, path)?,
                };
                path.pop();
                if let Some(m) = merged {
                    original.insert(key, Value::Object(m));
                }
            }
            Value::Array(items) => {
                path.push(key.clone());
                let orig = match original.remove(&key) {
                    Some(Value::Array(o)) => o,
                    _ => Vec::new(),
                };
                let merged = merge_list(orig, items, path)?;
                path.pop();
                original.insert(key, Value::Array(merged));
            }
            scalar => {
                original.insert(key, scalar);
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(items)), Value::Array(order)) = (original.get_mut(&field), order)
        {
            path.push(field.clone());
            let strategy = list_strategy(path);
            path.pop();
            reorder(items, &order, strategy);
        }
    }
    if let Some(retain) = retain {
        original.retain(|k, _| retain.contains(k));
    }
    Ok(Some(original))
}

fn strip_directives(map: &mut Map<String, Value>) {
    map.retain(|k, _| !k.starts_with('$'));
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, ApiError> {
    // A `{"$patch": "replace"}` element replaces the list with the other elements.
    let replace = patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"));
    if replace {
        return Ok(patch
            .into_iter()
            .filter(|v| v.get("$patch").and_then(Value::as_str) != Some("replace"))
            .collect());
    }
    match list_strategy(path) {
        ListStrategy::Replace => Ok(patch
            .into_iter()
            .map(|v| match v {
                Value::Object(mut m) => {
                    strip_directives(&mut m);
                    Value::Object(m)
                }
                other => other,
            })
            .collect()),
        ListStrategy::Primitives => {
            // Hashed by their JSON, so a long list merges in linear time.
            let mut seen: HashSet<String> = original.iter().map(Value::to_string).collect();
            let mut out = original;
            for v in patch {
                if seen.insert(v.to_string()) {
                    out.push(v);
                }
            }
            Ok(out)
        }
        ListStrategy::Key(merge_key) => {
            // Items by the JSON of their key, each key's positions in
            // order, so that a long list merges in linear time; removed
            // items leave a hole until the end.
            let mut out: Vec<Option<Value>> = original.into_iter().map(Some).collect();
            let mut index: HashMap<String, VecDeque<usize>> = HashMap::new();
            for (i, o) in out.iter().enumerate() {
                if let Some(k) = o.as_ref().and_then(|o| o.get(merge_key)) {
                    index.entry(k.to_string()).or_default().push_back(i);
                }
            }
            for item in patch {
                let Value::Object(item) = item else {
                    return Err(ApiError::bad_request(format!(
                        "unable to find api field in struct for the list {}: elements must be objects with the merge key {merge_key:?}",
                        path.join(".")
                    )));
                };
                let Some(key_value) = item.get(merge_key) else {
                    return Err(ApiError::bad_request(format!(
                        "map: {} does not contain declared merge key: {merge_key}",
                        Value::Object(item)
                    )));
                };
                let ident = key_value.to_string();
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    for i in index.remove(&ident).unwrap_or_default() {
                        out[i] = None;
                    }
                    continue;
                }
                match index.get(&ident).and_then(|at| at.front().copied()) {
                    Some(i) => {
                        let orig = match out[i].take() {
                            Some(Value::Object(m)) => m,
                            _ => Map::new(),
                        };
                        match merge_map(orig, item, path)? {
                            Some(m) => out[i] = Some(Value::Object(m)),
                            None => {
                                if let Some(at) = index.get_mut(&ident) {
                                    at.pop_front();
                                }
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(Map::new(), item, path)? {
                            out.push(Some(Value::Object(m)));
                            index.entry(ident).or_default().push_back(out.len() - 1);
                        }
                    }
                }
            }
            Ok(out.into_iter().flatten().collect())
        }
    }
}

/// Orders `items` as `order` lists them (by merge key or value); items not
/// listed keep their relative order after the listed ones.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let ident = |v: &Value| -> String {
        match strategy {
            ListStrategy::Key(k) => v.get(k).unwrap_or(&Value::Null).to_string(),
            _ => v.to_string(),
        }
    };
    let mut slots: Vec<Option<Value>> = items.drain(..).map(Some).collect();
    let mut at: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, item) in slots.iter().enumerate() {
        if let Some(item) = item {
            at.entry(ident(item)).or_default().push_back(i);
        }
    }
    let mut listed = Vec::new();
    for o in order {
        if let Some(i) = at.get_mut(&ident(o)).and_then(VecDeque::pop_front) {
            listed.extend(slots[i].take());
        }
    }
    listed.extend(slots.into_iter().flatten());
    *items = listed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(doc: Value, patch: Value) -> Value {
        apply_strategic_patch(&doc, patch.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn containers_should_merge_by_name() {
        let doc = json!({"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "side:1"}
        ]}});
        let out = smp(
            doc,
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}
            ]}}),
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "app:2");
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "side");
    }

    #[test]
    fn patch_delete_directive_should_remove_an_element() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(
            doc,
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn patch_replace_directive_should_replace_a_map_or_list() {
        let doc = json!({"spec": {"selector": {"a": "1", "b": "2"}, "containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(
            doc.clone(),
            json!({"spec": {"selector": {"c": "3", "$patch": "replace"}}}),
        );
        assert_eq!(out["spec"]["selector"], json!({"c": "3"}));
        let out = smp(
            doc,
            json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
    }

    #[test]
    fn finalizers_should_union_and_delete_from_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(doc.clone(), json!({"metadata": {"finalizers": ["c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            doc,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn set_element_order_should_reorder_merged_lists() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(
            doc,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "x"}]
            }}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a", "image": "x"}])
        );
    }

    #[test]
    fn retain_keys_should_drop_unlisted_fields() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(
            doc,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn unkeyed_lists_and_nulls_should_follow_merge_patch_rules() {
        let doc = json!({"spec": {"args": ["a"], "x": 1}, "data": {"k": "v"}});
        let out = smp(doc, json!({"spec": {"args": ["b"], "x": null}}));
        assert_eq!(out, json!({"spec": {"args": ["b"]}, "data": {"k": "v"}}));
    }

    /// Regression test for issue 15: copies that double a subtree each round
    /// (2^40 times 1 kB unbounded) stop at the copy budget, with
    /// kube-apiserver's message.
    #[test]
    fn json_patch_copies_should_stop_at_the_copy_budget() {
        let mut ops = vec![json!({"op": "add", "path": "/a", "value": "x".repeat(1000)})];
        for _ in 0..40 {
            ops.push(json!({"op": "add", "path": "/t", "value": []}));
            ops.push(json!({"op": "copy", "from": "/a", "path": "/t/-"}));
            ops.push(json!({"op": "copy", "from": "/a", "path": "/t/-"}));
            ops.push(json!({"op": "move", "from": "/t", "path": "/a"}));
        }
        let patch = serde_json::to_vec(&ops).unwrap();
        let err = apply_json_patch(&json!({}), &patch).unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert!(
            err.message.starts_with(
                "Unable to complete the copy, the accumulated size increase of copy is "
            ),
            "{}",
            err.message
        );
        assert!(
            err.message.ends_with(", exceeding the limit 3145728"),
            "{}",
            err.message
        );
    }

    #[test]
    fn json_patches_should_have_at_most_10000_operations() {
        let ops: Vec<Value> = (0..10_001)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let err = apply_json_patch(&json!({}), &serde_json::to_vec(&ops).unwrap()).unwrap_err();
        assert_eq!((err.code, err.reason), (413, "RequestEntityTooLarge"));
        assert_eq!(
            err.message,
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        let ok: Vec<Value> = ops[..10_000].to_vec();
        assert!(apply_json_patch(&json!({}), &serde_json::to_vec(&ok).unwrap()).is_ok());
    }

    #[test]
    fn json_patch_failure_should_be_422() {
        let err =
            apply_json_patch(&json!({}), br#"[{"op":"test","path":"/a","value":1}]"#).unwrap_err();
        assert_eq!(err.code, 422);
        let err = apply_json_patch(&json!({}), b"{}").unwrap_err();
        assert_eq!(err.code, 400);
    }
}
