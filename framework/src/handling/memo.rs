//! The memo: memory kept across handler calls, operator-wide or per object.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::Value;

/// Memory kept across handler calls: operator-wide, or per object. A
/// per-object memo reads through to the operator-wide one for keys it has
/// not set itself; writes stay per object (Kopf's shallow copy).
#[derive(Clone, Debug, Default)]
pub struct Memo(Arc<Mutex<HashMap<String, Value>>>, Option<Box<Memo>>);

impl Memo {
    /// A fresh memo.
    pub fn new() -> Self {
        Memo::default()
    }

    /// A per-object memo over this operator-wide one.
    pub(crate) fn child(&self) -> Memo {
        Memo(Arc::default(), Some(Box::new(self.clone())))
    }

    /// The value stored under `key` (here, or in the operator-wide memo).
    pub fn get(&self, key: &str) -> Option<Value> {
        let own = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        own.or_else(|| self.1.as_ref().and_then(|parent| parent.get(key)))
    }

    /// The operator-wide memo (itself, when this is the operator-wide one).
    pub fn global(&self) -> Memo {
        match &self.1 {
            Some(parent) => (**parent).clone(),
            None => self.clone(),
        }
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: &str, value: Value) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.into(), value);
    }
}
