//! Bodies, diffs and patches: plain data with no I/O (the lowest layer).
//!
//! Diffs follow Kopf: items `(op, path, old, new)` with `add`, `change` and
//! `remove`; mappings are recursed into, lists and scalars change as a whole,
//! and a key whose value is null counts as absent.

use serde::Serialize;
use serde_json::{Map, Value};

/// A diff operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffOp {
    /// The field appeared.
    Add,
    /// The field's value changed.
    Change,
    /// The field disappeared.
    Remove,
}

/// One difference between two versions of an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffItem {
    /// What happened.
    pub op: DiffOp,
    /// The field path, e.g. `["spec", "size"]`.
    pub path: Vec<String>,
    /// The old value (`None` for `add`).
    pub old: Option<Value>,
    /// The new value (`None` for `remove`).
    pub new: Option<Value>,
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// The Kopf-style diff between `old` and `new` (absent = `None`).
pub fn diff(old: Option<&Value>, new: Option<&Value>) -> Vec<DiffItem> {
    let mut out = Vec::new();
    diff_into(non_null(old), non_null(new), &mut Vec::new(), &mut out);
    out
}

fn diff_into(
    a: Option<&Value>,
    b: Option<&Value>,
    path: &mut Vec<String>,
    out: &mut Vec<DiffItem>,
) {
    match (a, b) {
        (None, None) => {}
        (Some(a), Some(b)) if a == b => {}
        (None, Some(b)) => out.push(DiffItem {
            op: DiffOp::Add,
            path: path.clone(),
            old: None,
            new: Some(b.clone()),
        }),
        (Some(a), None) => out.push(DiffItem {
            op: DiffOp::Remove,
            path: path.clone(),
            old: Some(a.clone()),
            new: None,
        }),
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
            keys.extend(a.keys().filter(|k| !b.contains_key(*k)));
            keys.extend(a.keys().filter(|k| b.contains_key(*k)));
            for key in keys {
                path.push(key.clone());
                diff_into(non_null(a.get(key)), non_null(b.get(key)), path, out);
                path.pop();
            }
        }
        (Some(a), Some(b)) => out.push(DiffItem {
            op: DiffOp::Change,
            path: path.clone(),
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
    }
}

/// The diff narrowed to the field at `path` (for field handlers): items
/// below it re-rooted, items above it resolved and diffed again.
pub fn reduce(items: &[DiffItem], path: &[&str]) -> Vec<DiffItem> {
    let mut out = Vec::new();
    for item in items {
        let depth = item.path.len().min(path.len());
        if item.path[..depth]
            .iter()
            .map(String::as_str)
            .ne(path[..depth].iter().copied())
        {
            continue;
        }
        if item.path.len() >= path.len() {
            out.push(DiffItem {
                path: item.path[path.len()..].to_vec(),
                ..item.clone()
            });
        } else {
            let rest = &path[item.path.len()..];
            let old = item.old.as_ref().and_then(|v| resolve(v, rest));
            let new = item.new.as_ref().and_then(|v| resolve(v, rest));
            out.extend(diff(old, new));
        }
    }
    out
}

/// The value at `path` in `value`, if any.
pub fn resolve<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// A JSON merge patch being accumulated (RFC 7386): set values, nulls delete.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch(Map<String, Value>);

impl Patch {
    /// An empty patch.
    pub fn new() -> Self {
        Patch::default()
    }

    /// Whether nothing is patched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets the value at `path` (a `null` value removes the field).
    pub fn set(&mut self, path: &[&str], value: Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut cur = &mut self.0;
        for key in parents {
            let entry = cur
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            cur = entry.as_object_mut().expect("made an object above");
        }
        cur.insert(last.to_string(), value);
    }

    /// The value at `path` in the patch, if set.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        rest.iter()
            .try_fold(self.0.get(*first)?, |v, key| v.get(*key))
    }

    /// Removes the value at `path` from the patch (not from the object),
    /// pruning parents left empty.
    pub fn remove(&mut self, path: &[&str]) {
        fn go(map: &mut Map<String, Value>, path: &[&str]) {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            if rest.is_empty() {
                map.remove(*first);
                return;
            }
            if let Some(Value::Object(child)) = map.get_mut(*first) {
                go(child, rest);
                if child.is_empty() {
                    map.remove(*first);
                }
            }
        }
        go(&mut self.0, path);
    }

    /// Merges another merge patch into this one.
    pub fn merge(&mut self, other: &Value) {
        let mut mine = Value::Object(std::mem::take(&mut self.0));
        merge_patches(&mut mine, other);
        if let Value::Object(m) = mine {
            self.0 = m;
        }
    }

    /// Splits off the `status` part (for kinds with a status subresource).
    pub fn take_status(&mut self) -> Option<Value> {
        self.0.remove("status")
    }

    /// The patch as JSON.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

/// Combines two merge patches: applying the result equals applying both in order.
fn merge_patches(into: &mut Value, other: &Value) {
    match (into, other) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_patches(existing, v)
                    }
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Applies a merge patch to a body, as the server would.
pub fn apply_patch(body: &mut Value, patch: &Value) {
    match (body, patch) {
        (Value::Object(target), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    target.remove(k);
                } else {
                    let slot = target.entry(k.clone()).or_insert(Value::Null);
                    if v.is_object() && !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    apply_patch(slot, v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_should_recurse_into_mappings_only() {
        let old = json!({"spec": {"size": 1, "items": [1, 2], "gone": "x"}});
        let new = json!({"spec": {"size": 2, "items": [1, 2, 3], "new": true}});
        let items = diff(Some(&old), Some(&new));
        let ops: Vec<(DiffOp, String)> = items.iter().map(|i| (i.op, i.path.join("."))).collect();
        assert!(ops.contains(&(DiffOp::Change, "spec.size".into())));
        assert!(ops.contains(&(DiffOp::Change, "spec.items".into())));
        assert!(ops.contains(&(DiffOp::Remove, "spec.gone".into())));
        assert!(ops.contains(&(DiffOp::Add, "spec.new".into())));
        assert_eq!(ops.len(), 4);
        assert_eq!(
            ops[0].0,
            DiffOp::Add,
            "adds first, then removes, then changes"
        );
    }

    #[test]
    fn diff_should_treat_null_as_absent_and_whole_values_as_add() {
        assert!(diff(Some(&json!({"a": null})), Some(&json!({}))).is_empty());
        let created = diff(None, Some(&json!({"spec": 1})));
        assert_eq!(
            created,
            vec![DiffItem {
                op: DiffOp::Add,
                path: vec![],
                old: None,
                new: Some(json!({"spec": 1}))
            }]
        );
    }

    #[test]
    fn reduce_should_reroot_and_resolve() {
        let old = json!({"spec": {"a": {"b": 1}}});
        let new = json!({"spec": {"a": {"b": 2}}});
        let items = diff(Some(&old), Some(&new));
        let reduced = reduce(&items, &["spec", "a"]);
        assert_eq!(reduced[0].path, vec!["b"]);
        let whole = diff(None, Some(&new));
        let reduced = reduce(&whole, &["spec", "a", "b"]);
        assert_eq!(
            reduced,
            vec![DiffItem {
                op: DiffOp::Add,
                path: vec![],
                old: None,
                new: Some(json!(2))
            }]
        );
    }

    #[test]
    fn patches_should_merge_and_apply() {
        let mut p = Patch::new();
        p.set(&["status", "create_fn"], json!({"message": "hi"}));
        p.merge(&json!({"metadata": {"annotations": {"a": null}}, "status": {"x": 1}}));
        assert_eq!(p.get(&["status", "x"]), Some(&json!(1)));
        let mut body =
            json!({"metadata": {"annotations": {"a": "1", "b": "2"}}, "status": {"old": true}});
        apply_patch(&mut body, &p.to_value());
        assert_eq!(
            body,
            json!({"metadata": {"annotations": {"b": "2"}}, "status": {"old": true, "create_fn": {"message": "hi"}, "x": 1}})
        );
    }
}
