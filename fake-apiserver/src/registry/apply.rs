//! Server-side apply and field ownership (`metadata.managedFields`), after
//! kube-apiserver's structured-merge-diff:
//!
//! - every field is owned by the managers that set it: an `Apply` entry per
//!   applier (the fields of its last applied configuration) and an `Update`
//!   entry per manager of ordinary writes (the fields it changed);
//! - applying a configuration merges it into the object (maps deeply; lists
//!   by their merge keys, as sets, or atomically), takes ownership of its
//!   fields, and removes the fields the applier owned before, left out
//!   now, and nobody else owns;
//! - setting a field another manager owns to a different value is a
//!   conflict (409, listing each) unless forced, which takes it over;
//!   setting it to the same value shares it.
//!
//! Field sets travel in `fieldsV1`: `f:<field>`, `k:<key object>` for list
//! items by key, `v:<value>` for set items, `.` for a list item itself.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::{
    apimachinery::errors::{ApiError, Cause},
    registry::{
        managed::{entries, store_entries, Entry, Path, Set, Step},
        patch::apply_list_key,
    },
};

/// How lists of one kind merge: by key, as sets, or atomically.
pub struct Lists<'a> {
    /// For custom resources: the schema (its `x-kubernetes-list-type`s);
    /// `None` for built-ins, which use their merge keys.
    pub schema: Option<&'a Value>,
}

enum ListKind {
    Atomic,
    Keyed(Vec<String>),
    Set,
}

impl Lists<'_> {
    fn kind(&self, names: &[String], schema: Option<&Value>) -> ListKind {
        match self.schema {
            None => match apply_list_key(names) {
                Some(Some(key)) => ListKind::Keyed(vec![key.to_string()]),
                Some(None) => ListKind::Set,
                None => ListKind::Atomic,
            },
            Some(_) => match schema
                .and_then(|s| s.get("x-kubernetes-list-type"))
                .and_then(Value::as_str)
            {
                Some("map") => ListKind::Keyed(
                    schema
                        .and_then(|s| s.get("x-kubernetes-list-map-keys"))
                        .and_then(Value::as_array)
                        .map(|k| {
                            k.iter()
                                .filter_map(Value::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            },
        }
    }
}

fn child<'a>(schema: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(field))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// Fields outside ownership: identity and what the server maintains.
fn skipped(path: &[String]) -> bool {
    match path {
        [one] => matches!(one.as_str(), "apiVersion" | "kind" | "status"),
        [m, f] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

fn key_of(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(Value::Object(m).to_string())
}

/// The leaf fields of `v`.
fn leaves(v: &Value, lists: &Lists<'_>) -> Set {
    leaf_values(v, lists).into_keys().collect()
}

/// Every leaf field of `v` with its value (for a keyed list item, the item).
fn leaf_values<'a>(v: &'a Value, lists: &Lists<'_>) -> BTreeMap<Path, &'a Value> {
    let mut out = BTreeMap::new();
    walk(
        v,
        lists,
        None.or(lists.schema),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut out,
    );
    out
}

fn walk<'a>(
    v: &'a Value,
    lists: &Lists<'_>,
    schema: Option<&Value>,
    path: &mut Path,
    names: &mut Vec<String>,
    out: &mut BTreeMap<Path, &'a Value>,
) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, sub) in map {
                names.push(k.clone());
                if !skipped(names) {
                    path.push(Step::F(k.clone()));
                    walk(sub, lists, child(schema, k), path, names, out);
                    path.pop();
                }
                names.pop();
            }
        }
        Value::Array(items) => match lists.kind(names, schema) {
            ListKind::Keyed(keys) if !keys.is_empty() => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in items {
                    let Some(key) = key_of(item, &keys) else {
                        out.insert(path.clone(), v);
                        return;
                    };
                    path.push(Step::K(key));
                    out.insert(path.clone(), item);
                    if let Value::Object(fields) = item {
                        for (k, sub) in fields {
                            path.push(Step::F(k.clone()));
                            names.push(k.clone());
                            walk(sub, lists, child(item_schema, k), path, names, out);
                            names.pop();
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(Step::V(item.to_string()));
                    out.insert(path.clone(), item);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone(), v);
            }
        },
        _ => {
            if !path.is_empty() {
                out.insert(path.clone(), v);
            }
        }
    }
}

/// The value at `path`: from the walked leaves, else looked up (a leaf in
/// one object may be a whole subtree in the other).
fn leaf_or_get<'a>(
    values: &BTreeMap<Path, &'a Value>,
    whole: &'a Value,
    path: &[Step],
) -> Option<&'a Value> {
    values.get(path).copied().or_else(|| get(whole, path))
}

/// A `k:` step's key object, parsed once per lookup (not once per item).
fn parse_key(key: &str) -> Option<Map<String, Value>> {
    serde_json::from_str(key).ok()
}

fn matches_key(item: &Value, key: &Option<Map<String, Value>>) -> bool {
    key.as_ref()
        .is_some_and(|k| k.iter().all(|(f, v)| item.get(f) == Some(v)))
}

fn get<'a>(v: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            Step::F(f) => cur.get(f)?,
            Step::K(k) => {
                let key = parse_key(k);
                cur.as_array()?.iter().find(|i| matches_key(i, &key))?
            }
            Step::V(val) => {
                let want: Value = serde_json::from_str(val).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
        };
    }
    Some(cur)
}

fn remove(v: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for step in parents {
        let next = match step {
            Step::F(f) => cur.get_mut(f),
            Step::K(k) => {
                let key = parse_key(k);
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|i| matches_key(i, &key)))
            }
            Step::V(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Step::F(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Step::K(k) => {
            let key = parse_key(k);
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !matches_key(i, &key));
            }
        }
        Step::V(val) => {
            if let (Some(a), Ok(want)) = (cur.as_array_mut(), serde_json::from_str::<Value>(val)) {
                a.retain(|i| *i != want);
            }
        }
    }
}

/// Merges an applied configuration into the object.
fn merge(
    live: &mut Value,
    config: &Value,
    lists: &Lists<'_>,
    schema: Option<&Value>,
    names: &mut Vec<String>,
) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                names.push(k.clone());
                match l.get_mut(k) {
                    Some(lv) if !skipped(names) => merge(lv, cv, lists, child(schema, k), names),
                    Some(_) => {}
                    None => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
                names.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) => match lists.kind(names, schema) {
            ListKind::Keyed(keys) if !keys.is_empty() => {
                let item_schema = schema.and_then(|s| s.get("items"));
                // The live items by key: a long list merges in linear time.
                let mut at: HashMap<String, usize> = HashMap::new();
                for (i, item) in l.iter().enumerate() {
                    if let Some(k) = key_of(item, &keys) {
                        at.entry(k).or_insert(i);
                    }
                }
                for item in c {
                    match key_of(item, &keys).and_then(|k| at.get(&k).copied()) {
                        Some(i) => merge(&mut l[i], item, lists, item_schema, names),
                        None => {
                            if let Some(k) = key_of(item, &keys) {
                                at.insert(k, l.len());
                            }
                            l.push(item.clone());
                        }
                    }
                }
            }
            ListKind::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            _ => *l = c.clone(),
        },
        (l, c) => *l = c.clone(),
    }
}

/// A manager's entry in `managedFields`.
/// `.spec.replicas`, `.spec.containers[name="c1"].image`, as kube prints paths.
fn shown(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::F(f) => {
                out.push('.');
                out.push_str(f);
            }
            Step::K(k) => {
                let fields = serde_json::from_str::<Map<String, Value>>(k).unwrap_or_default();
                let inner: Vec<String> = fields.iter().map(|(f, v)| format!("{f}={v}")).collect();
                out.push_str(&format!("[{}]", inner.join(",")));
            }
            Step::V(v) => out.push_str(&format!("[{v}]")),
        }
    }
    out
}

/// The request being applied.
pub struct Request<'a> {
    /// The field manager (required).
    pub manager: &'a str,
    /// `force=true`: take conflicting fields over.
    pub force: bool,
    /// The API version of the request (recorded per entry).
    pub api_version: &'a str,
    /// Now, as recorded in the entries.
    pub now: &'a str,
    /// `status` for the status subresource.
    pub subresource: Option<&'a str>,
}

/// Applies `config` to `live` (or to nothing, for a creation); returns the
/// object to store, with its managed fields.
///
/// # Errors
/// 409 Conflict listing every conflicting field, unless forced.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    req: &Request<'_>,
    lists: &Lists<'_>,
) -> Result<Value, ApiError> {
    let mine = leaves(config, lists);
    let mut others: Vec<Entry> = live.map(entries).unwrap_or_default();
    let previous = others
        .iter()
        .position(|e| e.manager == req.manager && e.operation == "Apply")
        .map(|i| others.remove(i).fields)
        .unwrap_or_default();
    let mut conflicts: BTreeMap<Path, Vec<(String, String)>> = BTreeMap::new();
    if let Some(live) = live {
        // Both walked once: a lookup per field would be quadratic in
        // long lists.
        let (applied, current) = (leaf_values(config, lists), leaf_values(live, lists));
        for path in &mine {
            let differs = match (
                leaf_or_get(&applied, config, path),
                leaf_or_get(&current, live, path),
            ) {
                (Some(c), Some(l)) => {
                    c != l && !c.is_object() && !matches!(path.last(), Some(Step::K(_)))
                }
                _ => false,
            };
            if !differs {
                continue;
            }
            for e in &others {
                if e.manager != req.manager && e.fields.contains(path) {
                    conflicts
                        .entry(path.clone())
                        .or_default()
                        .push((e.manager.clone(), e.api_version.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflict_error(&conflicts));
        }
        for e in &mut others {
            e.fields.retain(|p| !conflicts.contains_key(p));
        }
    }
    let mut result = live.cloned().unwrap_or_else(|| config.clone());
    if live.is_some() {
        merge(&mut result, config, lists, lists.schema, &mut Vec::new());
    }
    // Fields this applier dropped from its configuration, owned by no one else.
    // (The fields under `p` sort right after it: one range step each.)
    let owned_elsewhere = |p: &Path| {
        others.iter().any(|e| {
            e.fields
                .range::<Path, _>(p..)
                .next()
                .is_some_and(|f| f.starts_with(p))
        })
    };
    // A key field of a list item goes only with its item.
    let is_key_field = |p: &Path| match p.as_slice() {
        [.., Step::K(key), Step::F(field)] => {
            serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(field))
        }
        _ => false,
    };
    let mut gone: Vec<&Path> = previous
        .iter()
        .filter(|p| !mine.contains(*p) && !owned_elsewhere(p) && !is_key_field(p))
        .collect();
    gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in gone {
        remove(&mut result, path);
    }
    others.push(Entry {
        manager: req.manager.to_string(),
        operation: "Apply".into(),
        api_version: req.api_version.to_string(),
        time: req.now.to_string(),
        subresource: req.subresource.map(String::from),
        fields: mine,
    });
    store_entries(&mut result, &others);
    Ok(result)
}

fn conflict_error(conflicts: &BTreeMap<Path, Vec<(String, String)>>) -> ApiError {
    let mut causes = Vec::new();
    let mut lines = Vec::new();
    for (path, owners) in conflicts {
        for (manager, api_version) in owners {
            let message = format!("conflict with \"{manager}\" using {api_version}");
            lines.push(format!("{message}: {}", shown(path)));
            causes.push(Cause {
                reason: "FieldManagerConflict".into(),
                message,
                field: shown(path),
            });
        }
    }
    let n = lines.len();
    let mut err = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            lines.join("\n")
        ),
    );
    err.causes = causes;
    err
}

/// Records an ordinary write (create, update, patch) by `manager`: it owns
/// the fields it changed, which other managers lose; fields that no longer
/// exist leave every set.
pub fn record_update(old: Option<&Value>, new: &mut Value, req: &Request<'_>, lists: &Lists<'_>) {
    // A list item (`k:`) changes hands only when it is new; changing one of
    // its fields takes that field, not the item. Both objects are walked
    // once (no lookup per field).
    let (now_fields, changed) = {
        let after = leaf_values(new, lists);
        let before = old.map(|o| leaf_values(o, lists)).unwrap_or_default();
        let changed: Set = after
            .iter()
            .filter(|(p, v)| match p.last() {
                Some(Step::K(_)) => !before.contains_key(*p),
                _ => before.get(*p) != Some(*v),
            })
            .map(|(p, _)| p.clone())
            .collect();
        (after.into_keys().collect::<Set>(), changed)
    };
    let mut list = old.map(entries).unwrap_or_default();
    for e in &mut list {
        e.fields
            .retain(|p| now_fields.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|e| e.manager == req.manager && e.operation == "Update")
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = req.now.to_string();
            }
            None => list.push(Entry {
                manager: req.manager.to_string(),
                operation: "Update".into(),
                api_version: req.api_version.to_string(),
                time: req.now.to_string(),
                subresource: req.subresource.map(String::from),
                fields: changed,
            }),
        }
    }
    store_entries(new, &list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::managed::{decode, encode};
    use serde_json::json;

    const BUILTIN: Lists<'static> = Lists { schema: None };

    fn req(manager: &str, force: bool) -> Request<'_> {
        Request {
            manager,
            force,
            api_version: "apps/v1",
            now: "2024-01-01T00:00:00Z",
            subresource: None,
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "main", "image": image}]}}}})
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    #[test]
    fn field_sets_should_round_trip_through_fields_v1() {
        let set = leaves(&deployment(2, "nginx"), &BUILTIN);
        let encoded = encode(&set);
        assert_eq!(
            encoded,
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(decode(&encoded), set);
    }

    #[test]
    fn applying_should_create_then_merge_and_own() {
        let created = apply(
            None,
            &deployment(2, "nginx:1"),
            &req("alice", false),
            &BUILTIN,
        )
        .unwrap();
        assert_eq!(managers(&created), [("alice".into(), "Apply".into())]);
        // A second applier setting the same value shares it; a new field is theirs.
        let mut config = deployment(2, "nginx:1");
        config["spec"]["paused"] = json!(true);
        let shared = apply(Some(&created), &config, &req("bob", false), &BUILTIN).unwrap();
        assert_eq!(shared["spec"]["paused"], true);
        assert_eq!(managers(&shared).len(), 2);
    }

    #[test]
    fn changing_another_managers_field_should_conflict_unless_forced() {
        let live = apply(
            None,
            &deployment(2, "nginx:1"),
            &req("alice", false),
            &BUILTIN,
        )
        .unwrap();
        let err = apply(
            Some(&live),
            &deployment(3, "nginx:2"),
            &req("bob", false),
            &BUILTIN,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 2 conflicts: conflict with \"alice\" using apps/v1: .spec.replicas\nconflict with \"alice\" using apps/v1: .spec.template.spec.containers[name=\"main\"].image"
        );
        assert_eq!(err.causes[0].reason, "FieldManagerConflict");
        assert_eq!(err.causes[0].field, ".spec.replicas");
        let forced = apply(
            Some(&live),
            &deployment(3, "nginx:2"),
            &req("bob", true),
            &BUILTIN,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let alice = entries(&forced)
            .into_iter()
            .find(|e| e.manager == "alice")
            .unwrap();
        assert!(
            !alice
                .fields
                .contains(&vec![Step::F("spec".into()), Step::F("replicas".into())]),
            "forcing takes the field over"
        );
    }

    #[test]
    fn fields_left_out_of_a_new_configuration_should_go_unless_owned_elsewhere() {
        let mut config = deployment(2, "nginx:1");
        config["spec"]["paused"] = json!(true);
        config["metadata"]["labels"] = json!({"a": "1", "b": "2"});
        let live = apply(None, &config, &req("alice", false), &BUILTIN).unwrap();
        // Bob also sets label b (same value: shared).
        let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"b": "2"}}});
        let live = apply(Some(&live), &bob, &req("bob", false), &BUILTIN).unwrap();
        // Alice drops paused and both labels.
        let live = apply(
            Some(&live),
            &deployment(2, "nginx:1"),
            &req("alice", false),
            &BUILTIN,
        )
        .unwrap();
        assert!(
            live["spec"].get("paused").is_none(),
            "removed: nobody else owns it"
        );
        assert!(live["metadata"]["labels"].get("a").is_none());
        assert_eq!(
            live["metadata"]["labels"]["b"], "2",
            "kept: bob owns it too"
        );
    }

    #[test]
    fn list_items_should_keep_their_keys_when_others_own_fields() {
        let live = apply(
            None,
            &deployment(2, "nginx:1"),
            &req("alice", false),
            &BUILTIN,
        )
        .unwrap();
        let mut new = live.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        record_update(Some(&live), &mut new, &req("kubectl-set", false), &BUILTIN);
        let mut other = deployment(2, "nginx:1");
        other["spec"]["template"]["spec"]["containers"][0]["name"] = json!("app");
        let after = apply(Some(&new), &other, &req("alice", true), &BUILTIN).unwrap();
        let containers = after["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert!(
            containers.iter().all(|c| c.get("name").is_some()),
            "no container loses its name: {containers:?}"
        );
    }

    #[test]
    fn ordinary_writes_should_take_the_fields_they_change() {
        let live = apply(
            None,
            &deployment(2, "nginx:1"),
            &req("alice", false),
            &BUILTIN,
        )
        .unwrap();
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(5);
        record_update(
            Some(&live),
            &mut new,
            &req("kubectl-scale", false),
            &BUILTIN,
        );
        let list = entries(&new);
        let scale = list.iter().find(|e| e.manager == "kubectl-scale").unwrap();
        assert_eq!(scale.operation, "Update");
        assert_eq!(encode(&scale.fields), json!({"f:spec": {"f:replicas": {}}}));
        let alice = list.iter().find(|e| e.manager == "alice").unwrap();
        assert!(!encode(&alice.fields)["f:spec"]
            .as_object()
            .unwrap()
            .contains_key("f:replicas"));
        // Alice applying her old value now conflicts with the scaler.
        let err = apply(
            Some(&new),
            &deployment(2, "nginx:1"),
            &req("alice", false),
            &BUILTIN,
        )
        .unwrap_err();
        assert!(
            err.message.contains("conflict with \"kubectl-scale\""),
            "{}",
            err.message
        );
    }
}
