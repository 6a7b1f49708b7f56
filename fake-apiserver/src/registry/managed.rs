//! `metadata.managedFields`: field paths (`f:`, `k:`, `v:` steps), their
//! `fieldsV1` encoding, and the entries (manager, operation, time, fields)
//! that server-side apply and every update keep up to date.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// An object's field.
    F(String),
    /// A list item, by its key fields (as JSON text).
    K(String),
    /// A set item, by its value (as JSON text).
    V(String),
}

pub(crate) type Path = Vec<Step>;
pub(crate) type Set = BTreeSet<Path>;

pub(crate) fn step_text(s: &Step) -> String {
    match s {
        Step::F(f) => format!("f:{f}"),
        Step::K(k) => format!("k:{k}"),
        Step::V(v) => format!("v:{v}"),
    }
}

/// A field set as `fieldsV1`.
pub(crate) fn encode(set: &Set) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for step in path {
            node = node
                .entry(step_text(step))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("field nodes are objects");
        }
        if matches!(path.last(), Some(Step::K(_))) {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

/// `fieldsV1` as a field set.
pub(crate) fn decode(v: &Value) -> Set {
    fn go(node: &Value, path: &mut Path, out: &mut Set) {
        let Some(map) = node.as_object() else { return };
        if map.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, sub) in map {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let step = match k.split_at(k.find(':').map_or(0, |i| i + 1)) {
                ("f:", f) => Step::F(f.to_string()),
                ("k:", key) => Step::K(key.to_string()),
                ("v:", val) => Step::V(val.to_string()),
                _ => continue,
            };
            path.push(step);
            go(sub, path, out);
            path.pop();
        }
    }
    let mut out = Set::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// One entry of `managedFields`.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: String,
    pub(crate) subresource: Option<String>,
    pub(crate) fields: Set,
}

pub(crate) fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    time: e["time"].as_str().unwrap_or_default().to_string(),
                    subresource: e["subresource"].as_str().map(String::from),
                    fields: decode(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn store_entries(obj: &mut Value, list: &[Entry]) {
    let rendered: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation,
                "apiVersion": e.api_version, "time": e.time,
                "fieldsType": "FieldsV1", "fieldsV1": encode(&e.fields)});
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(rendered));
        }
    }
}
