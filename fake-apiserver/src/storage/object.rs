//! What the store holds and hands out: one stored version of an object
//! ([`Stored`], its JSON serialized once), the events of the history
//! ([`Event`], with the watch line built once), what a write closure decides
//! ([`Change`]) and what a write, a list or a watch returns.
//!
//! Plain data over `apimachinery`'s [`ResourceKey`]; built by `store`, read
//! by `selector`, `watch` and every layer above.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::apimachinery::resource_key::ResourceKey;

/// Errors of the store itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The requested resourceVersion is older than the retained history.
    /// Not retryable with the same resourceVersion; relist.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// What the client asked for.
        requested: u64,
        /// The oldest resourceVersion still resumable.
        oldest: u64,
    },
    /// An object could not be serialized (never expected for JSON values).
    #[error("cannot serialize object: {0}")]
    Serialize(String),
    /// The data directory could not be written or flushed: the write may be
    /// lost on a restart. Retryable once the disk is fixed.
    #[error("data directory: {0}")]
    Disk(String),
    /// An object is larger than etcd accepts ([`MAX_OBJECT_BYTES`]). Not
    /// retryable as is; nothing was stored.
    #[error("etcdserver: request is too large")]
    TooLarge {
        /// The serialized size.
        size: usize,
    },
}

/// The largest serialized object the store keeps: etcd's default request
/// limit (`--max-request-bytes`, 1.5 MiB). Custom resources reach etcd as
/// this JSON; built-ins as protobuf, a little smaller, so near the limit a
/// built-in that kube stores may be refused here.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// One stored version of one object.
#[derive(Debug)]
pub struct Stored {
    /// The resourceVersion of this version.
    pub rv: u64,
    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub(super) key: Arc<str>,
    pub(super) ns_len: usize,
    /// The object's JSON, serialized once.
    pub bytes: Bytes,
    /// `metadata.labels`, extracted for selectors.
    pub labels: Vec<(String, String)>,
    /// Whether `metadata.deletionTimestamp` is set (read without parsing
    /// the object, e.g. for every create in a namespace).
    pub deleting: bool,
}

impl Stored {
    /// The object's namespace ("" when cluster-scoped).
    pub fn namespace(&self) -> &str {
        &self.key[..self.ns_len]
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        if self.ns_len == 0 {
            &self.key
        } else {
            &self.key[self.ns_len + 1..]
        }
    }

    /// A copy of `like` at resourceVersion `rv` with `bytes`, not kept in
    /// the store (for events a single watcher sees differently).
    pub fn detached(like: &Stored, rv: u64, bytes: Vec<u8>) -> Stored {
        Stored {
            rv,
            key: like.key.clone(),
            ns_len: like.ns_len,
            bytes: Bytes::from(bytes),
            labels: like.labels.clone(),
            deleting: like.deleting,
        }
    }

    /// An object that is not in the store (e.g. an injected event's), keyed
    /// by its own namespace and name.
    pub fn loose(value: &Value) -> Stored {
        let meta = |f: &str| {
            value
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (namespace, name) = (meta("namespace"), meta("name"));
        let rv = meta("resourceVersion").parse().unwrap_or(0);
        let labels = labels_of(value);
        Stored {
            rv,
            key: object_key(&namespace, &name).into(),
            ns_len: namespace.len(),
            bytes: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            labels,
            deleting: is_deleting(value),
        }
    }

    /// The object as a JSON value (parsed from the stored bytes).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    /// The label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// The wire name: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one object, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for `Deleted`, the last state at the
    /// deletion's resourceVersion).
    pub object: Arc<Stored>,
    /// The object before the change (`None` for `Added`).
    pub prev: Option<Arc<Stored>>,
    /// The watch line `{"type":...,"object":...}\n`, built once.
    pub line: Bytes,
}

impl Event {
    /// The resourceVersion of the change.
    pub fn rv(&self) -> u64 {
        self.object.rv
    }
}

/// Builds a watch event line around an object's bytes.
pub fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(object.len() + 32);
    buf.put_slice(b"{\"type\":\"");
    buf.put_slice(kind.as_bytes());
    buf.put_slice(b"\",\"object\":");
    buf.put_slice(object);
    buf.put_slice(b"}\n");
    buf.freeze()
}

/// Receives every event, in resourceVersion order, while the store lock is held.
pub trait EventSink: Send + Sync {
    /// Publishes `event` for `key`. Must not block.
    fn publish(&self, key: &ResourceKey, event: &Arc<Event>);
}

/// A sink that drops everything.
pub struct NoSink;

impl EventSink for NoSink {
    fn publish(&self, _: &ResourceKey, _: &Arc<Event>) {}
}

/// What a write closure decides.
#[derive(Debug)]
pub enum Change {
    /// Store this object as the new version (its `metadata.resourceVersion`
    /// is set by the store).
    Put(Value),
    /// Store `new` unless it equals `old` (the current object as parsed by
    /// the caller), ignoring the resourceVersion: an unchanged update is a
    /// no-op, with no new resourceVersion and no event, as in kube-apiserver.
    Update {
        /// The object to store.
        new: Value,
        /// The current object.
        old: Value,
    },
    /// Remove the object.
    Delete,
    /// Leave everything as it is.
    Keep,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The object after the write (for a delete, its last state); `None`
    /// when the closure kept an absent object absent.
    pub object: Option<Arc<Stored>>,
    /// The event the write produced, if any.
    pub event: Option<EventType>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum WatchFrom {
    /// Only events after this resourceVersion.
    Rv(u64),
    /// The current state first (as a snapshot), then every later event.
    Now,
}

/// What a watch starts with.
#[derive(Debug)]
pub enum WatchStart {
    /// Events after the requested resourceVersion.
    Events(Vec<Arc<Event>>),
    /// The current objects.
    Snapshot(Vec<Arc<Stored>>),
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    /// The resourceVersion the list is consistent at.
    pub rv: u64,
    /// The objects, in key order.
    pub items: Vec<Arc<Stored>>,
    /// The key to continue after, when the page is not the last.
    pub next: Option<String>,
    /// How many matching objects remain after this page, when known.
    pub remaining: Option<usize>,
}

/// The store key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn object_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

fn labels_of(value: &Value) -> Vec<(String, String)> {
    value
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn set_rv(value: &mut Value, rv: u64) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

pub(super) fn make_stored(
    key: String,
    ns_len: usize,
    rv: u64,
    mut value: Value,
) -> Result<Stored, StoreError> {
    set_rv(&mut value, rv);
    let bytes = serde_json::to_vec(&value).map_err(|e| StoreError::Serialize(e.to_string()))?;
    if bytes.len() + key.len() > MAX_OBJECT_BYTES {
        return Err(StoreError::TooLarge { size: bytes.len() });
    }
    let labels = labels_of(&value);
    let deleting = is_deleting(&value);
    Ok(Stored {
        rv,
        key: key.into(),
        ns_len,
        bytes: Bytes::from(bytes),
        labels,
        deleting,
    })
}

/// A stored version read back from disk: `bytes` must be a JSON object.
pub(super) fn stored_from_bytes(
    key: &str,
    ns_len: usize,
    rv: u64,
    bytes: Vec<u8>,
) -> Result<Stored, String> {
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err(format!("{key}: not a JSON object"));
    }
    Ok(Stored {
        rv,
        key: key.into(),
        ns_len,
        bytes: Bytes::from(bytes),
        labels: labels_of(&value),
        deleting: is_deleting(&value),
    })
}

fn is_deleting(value: &Value) -> bool {
    value
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}
