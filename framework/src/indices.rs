//! In-memory indices across objects (Kopf's `kopf.Index`): keys mapped to
//! the values that objects contributed, one value per object, kept up to
//! date by index handlers (the `indexing` engine) and read by every handler.
//!
//! Plain data with a lock; keys and values are JSON values, so a key can be
//! a string, a number, or a tuple-like array such as `["default", "pod-1"]`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use serde_json::Value;

/// What an index handler returns for an object.
#[derive(Clone, Debug, PartialEq)]
pub enum Indexed {
    /// Keep what the object contributed before (Kopf's `None`).
    Keep,
    /// One value, under the `null` key.
    One(Value),
    /// Values under their keys (a key may be any JSON value).
    Entries(Vec<(Value, Value)>),
}

impl From<Value> for Indexed {
    /// Kopf's rule: an object's fields are entries (keys are the field
    /// names), `null` keeps the previous values, anything else is one value.
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Indexed::Keep,
            Value::Object(m) => {
                Indexed::Entries(m.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
            }
            other => Indexed::One(other),
        }
    }
}

#[derive(Debug, Default)]
struct Data {
    /// Key (as JSON text) → the key, and the value of each object.
    by_key: BTreeMap<String, (Value, BTreeMap<String, Value>)>,
    /// Object → the keys it contributed to.
    by_object: HashMap<String, Vec<String>>,
}

/// One index: a read-only view for handlers (cheap to clone; reads see
/// the latest state).
#[derive(Clone, Debug, Default)]
pub struct Index(Arc<RwLock<Data>>);

impl Index {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The values under `key`, one per object (empty if none).
    pub fn get(&self, key: &Value) -> Vec<Value> {
        self.read()
            .by_key
            .get(&key.to_string())
            .map(|(_, per)| per.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any object has a value under `key`.
    pub fn contains_key(&self, key: &Value) -> bool {
        self.read().by_key.contains_key(&key.to_string())
    }

    /// The keys, in a stable order.
    pub fn keys(&self) -> Vec<Value> {
        self.read()
            .by_key
            .values()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every key with its values.
    pub fn entries(&self) -> Vec<(Value, Vec<Value>)> {
        self.read()
            .by_key
            .values()
            .map(|(k, per)| (k.clone(), per.values().cloned().collect()))
            .collect()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.read().by_key.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.read().by_key.is_empty()
    }

    /// The objects with values in the index.
    pub(crate) fn objects(&self) -> Vec<String> {
        self.read().by_object.keys().cloned().collect()
    }

    /// Replaces what `object` contributes (`Keep` changes nothing).
    pub(crate) fn replace(&self, object: &str, indexed: Indexed) {
        let entries = match indexed {
            Indexed::Keep => return,
            Indexed::One(v) => vec![(Value::Null, v)],
            Indexed::Entries(e) => e,
        };
        let mut data = self.0.write().unwrap_or_else(|e| e.into_inner());
        remove(&mut data, object);
        let mut keys = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let text = key.to_string();
            data.by_key
                .entry(text.clone())
                .or_insert_with(|| (key, BTreeMap::new()))
                .1
                .insert(object.to_string(), value);
            keys.push(text);
        }
        data.by_object.insert(object.to_string(), keys);
    }

    /// Removes what `object` contributes.
    pub(crate) fn discard(&self, object: &str) {
        remove(
            &mut self.0.write().unwrap_or_else(|e| e.into_inner()),
            object,
        );
    }
}

fn remove(data: &mut Data, object: &str) {
    for key in data.by_object.remove(object).unwrap_or_default() {
        if let Some((_, per)) = data.by_key.get_mut(&key) {
            per.remove(object);
            if per.is_empty() {
                data.by_key.remove(&key);
            }
        }
    }
}

/// All indices of an operator, by the id of their index handler.
#[derive(Clone, Debug, Default)]
pub struct Indices(Arc<BTreeMap<String, Index>>);

impl Indices {
    pub(crate) fn new(ids: impl IntoIterator<Item = String>) -> Self {
        Indices(Arc::new(
            ids.into_iter().map(|id| (id, Index::default())).collect(),
        ))
    }

    /// The index built by the index handler `id`.
    pub fn get(&self, id: &str) -> Option<&Index> {
        self.0.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_should_contribute_one_value_per_key_and_leave_cleanly() {
        let index = Index::default();
        index.replace(
            "ns/a",
            Indexed::Entries(vec![
                (json!(["ns", "a"]), json!(true)),
                (json!("app"), json!("a")),
            ]),
        );
        index.replace("ns/b", Indexed::from(json!({"app": "b"})));
        assert_eq!(index.get(&json!("app")), vec![json!("a"), json!("b")]);
        assert_eq!(index.get(&json!(["ns", "a"])), vec![json!(true)]);
        assert_eq!(index.len(), 2);
        index.replace("ns/a", Indexed::Keep);
        assert_eq!(index.len(), 2, "keep changes nothing");
        index.replace("ns/a", Indexed::One(json!(1)));
        assert_eq!(index.get(&Value::Null), vec![json!(1)]);
        assert!(
            !index.contains_key(&json!(["ns", "a"])),
            "re-indexing replaces"
        );
        index.discard("ns/a");
        index.discard("ns/b");
        assert!(index.is_empty());
        assert!(index.objects().is_empty());
    }
}
