//! The versioned object store: pure and synchronous (no tokio, no hyper).
//!
//! One cluster-wide, monotonically increasing resourceVersion; objects kept as
//! their serialized JSON bytes, written once per version and shared by every
//! GET, LIST and watcher; a bounded history of events per resource for watch
//! resume and consistent paginated lists, compacted beyond its bound the way
//! etcd compacts (older resume points are `Gone`).
//!
//! Callers: `registry::generic` (every write goes through [`Store::write`],
//! whose closure applies the semantics under the lock) and `watch` (which
//! subscribes to the [`EventSink`] while holding the lock, so no event is
//! ever missed).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Bound,
    sync::{Arc, Mutex},
};

use crate::{
    apimachinery::resource_key::ResourceKey,
    storage::object::{
        event_line, make_stored, object_key, set_rv, Change, Event, EventSink, EventType, Page,
        StoreError, Stored, WatchFrom, WatchStart, Written,
    },
};

#[derive(Default)]
struct Table {
    objects: BTreeMap<Arc<str>, Arc<Stored>>,
    history: VecDeque<Arc<Event>>,
    /// Events with resourceVersion <= this may have been dropped.
    compacted: u64,
}

struct Inner {
    rv: u64,
    tables: HashMap<ResourceKey, Table>,
    rng: u64,
}

/// The store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    inner: Mutex<Inner>,
    sink: Arc<dyn EventSink>,
    history_limit: usize,
}

/// The default number of events kept per resource for watch resume.
pub const DEFAULT_HISTORY: usize = 4096;

impl Store {
    /// A store publishing to `sink`, keeping `history_limit` events per
    /// resource, with deterministic uids and names derived from `seed`.
    pub fn new(sink: Arc<dyn EventSink>, history_limit: usize, seed: u64) -> Self {
        Store {
            inner: Mutex::new(Inner {
                rv: 0,
                tables: HashMap::new(),
                rng: seed,
            }),
            sink,
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Runs `f` with the latest resourceVersion while holding the lock: no
    /// event can be published while `f` runs.
    pub fn with_rv<T>(&self, f: impl FnOnce(u64) -> T) -> T {
        let inner = self.lock();
        f(inner.rv)
    }

    /// The next 64 pseudo-random bits of the seeded generator (splitmix64).
    pub fn next_random(&self) -> u64 {
        let mut inner = self.lock();
        inner.rng = inner.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = inner.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A new uid, shaped like a version-4 UUID, from the seeded generator.
    pub fn new_uid(&self) -> String {
        let (a, b) = (self.next_random(), self.next_random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// Five characters for `generateName`, from the alphabet kube-apiserver uses.
    pub fn random_suffix(&self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.next_random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
                r /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Reads one object.
    pub fn get(&self, key: &ResourceKey, namespace: &str, name: &str) -> Option<Arc<Stored>> {
        let inner = self.lock();
        let table = inner.tables.get(key)?;
        table
            .objects
            .get(object_key(namespace, name).as_str())
            .cloned()
    }

    /// Counts the objects of a resource, optionally in one namespace.
    pub fn count(&self, key: &ResourceKey, namespace: Option<&str>) -> usize {
        let inner = self.lock();
        match inner.tables.get(key) {
            None => 0,
            Some(table) => match namespace {
                None => table.objects.len(),
                Some(ns) => namespace_range(&table.objects, ns).count(),
            },
        }
    }

    /// Writes one object atomically: `f` sees the current version (if any)
    /// and decides the change while the store is locked, so a read-modify-write
    /// never races another writer.
    pub fn write<T, E: From<StoreError>>(
        &self,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
        f: impl FnOnce(Option<&Arc<Stored>>) -> Result<(Change, T), E>,
    ) -> Result<(Written, T), E> {
        let mut inner = self.lock();
        let okey = object_key(namespace, name);
        let current = inner
            .tables
            .get(key)
            .and_then(|t| t.objects.get(okey.as_str()).cloned());
        let (change, out) = f(current.as_ref())?;
        let written = match change {
            Change::Keep => Written {
                object: current,
                event: None,
            },
            Change::Update { mut new, old } if current.is_some() => {
                if let Some(cur) = &current {
                    set_rv(&mut new, cur.rv);
                }
                if new == old {
                    return Ok((
                        Written {
                            object: current,
                            event: None,
                        },
                        out,
                    ));
                }
                let rv = inner.rv + 1;
                let stored = Arc::new(make_stored(okey, namespace.len(), rv, new)?);
                inner.rv = rv;
                self.record(
                    &mut inner,
                    key,
                    EventType::Modified,
                    stored.clone(),
                    current,
                );
                Written {
                    object: Some(stored),
                    event: Some(EventType::Modified),
                }
            }
            Change::Update { new: value, .. } | Change::Put(value) => {
                let rv = inner.rv + 1;
                let stored = Arc::new(make_stored(okey, namespace.len(), rv, value)?);
                inner.rv = rv;
                let kind = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.record(&mut inner, key, kind, stored.clone(), current);
                Written {
                    object: Some(stored),
                    event: Some(kind),
                }
            }
            Change::Delete => match current {
                None => Written {
                    object: None,
                    event: None,
                },
                Some(cur) => {
                    let rv = inner.rv + 1;
                    let mut value = cur.value();
                    set_rv(&mut value, rv);
                    let stored = Arc::new(make_stored(okey, namespace.len(), rv, value)?);
                    inner.rv = rv;
                    self.record(
                        &mut inner,
                        key,
                        EventType::Deleted,
                        stored.clone(),
                        Some(cur),
                    );
                    Written {
                        object: Some(stored),
                        event: Some(EventType::Deleted),
                    }
                }
            },
        };
        Ok((written, out))
    }

    fn record(
        &self,
        inner: &mut Inner,
        key: &ResourceKey,
        kind: EventType,
        object: Arc<Stored>,
        prev: Option<Arc<Stored>>,
    ) {
        let table = inner.tables.entry(key.clone()).or_default();
        match kind {
            EventType::Deleted => {
                table.objects.remove(&object.key);
            }
            _ => {
                table.objects.insert(object.key.clone(), object.clone());
            }
        }
        let line = event_line(kind.as_str(), &object.bytes);
        let event = Arc::new(Event {
            kind,
            object,
            prev,
            line,
        });
        table.history.push_back(event.clone());
        while table.history.len() > self.history_limit {
            if let Some(old) = table.history.pop_front() {
                table.compacted = old.rv();
            }
        }
        self.sink.publish(key, &event);
    }

    /// Drops the history of `key` (or of every resource): resume points up to
    /// the current resourceVersion become `Gone`, as after an etcd compaction.
    pub fn compact(&self, key: Option<&ResourceKey>) {
        let mut inner = self.lock();
        let rv = inner.rv;
        for (k, table) in inner.tables.iter_mut() {
            if key.is_none_or(|key| key == k) {
                table.history.clear();
                table.compacted = rv;
            }
        }
    }

    /// Forgets a resource entirely (after its CRD is gone). Its objects
    /// should have been deleted first so watchers saw them go.
    pub fn drop_table(&self, key: &ResourceKey) {
        self.lock().tables.remove(key);
    }

    /// Lists objects: in `namespace` (or everywhere), consistent at resourceVersion
    /// `at` (or now), starting after key `after`, keeping those `keep` accepts,
    /// at most `limit` of them (0 = no limit).
    pub fn list(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        at: Option<u64>,
        after: Option<&str>,
        limit: usize,
        keep: &dyn Fn(&Stored) -> bool,
    ) -> Result<Page, StoreError> {
        let inner = self.lock();
        let rv = at.unwrap_or(inner.rv);
        let empty = Table::default();
        let table = inner.tables.get(key).unwrap_or(&empty);
        let snapshot;
        let objects = if rv >= inner.rv || table.history.back().is_none_or(|e| e.rv() <= rv) {
            &table.objects
        } else {
            if rv < table.compacted {
                return Err(StoreError::Gone {
                    requested: rv,
                    oldest: table.compacted,
                });
            }
            snapshot = rewind(table, rv);
            &snapshot
        };
        let range = match namespace {
            Some(ns) => ns_bounds(ns),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0usize;
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let lower = max_bound(range.0.as_ref().map(|s| s.as_str()), start);
        let upper = range.1.as_ref().map(|s| s.as_str());
        // A start past the end (a continue key beyond the namespace) is an
        // empty range, never a reversed one (which `range` would panic on).
        let selected = if is_empty_range(lower, upper) {
            None
        } else {
            Some(objects.range::<str, _>((lower, upper)))
        };
        for obj in selected.into_iter().flatten().map(|(_, v)| v) {
            if !keep(obj) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                if next.is_none() {
                    next = items.last().map(|o: &Arc<Stored>| o.key.to_string());
                }
                remaining += 1;
                continue;
            }
            items.push(obj.clone());
        }
        Ok(Page {
            rv,
            items,
            next,
            remaining: (remaining > 0).then_some(remaining),
        })
    }

    /// Starts a watch of `key`: returns what to send first and, from `subscribe`
    /// (called under the lock, so nothing published in between is missed), the
    /// live feed. Also returns the current resourceVersion.
    pub fn watch<T>(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        from: WatchFrom,
        subscribe: impl FnOnce() -> T,
    ) -> Result<(WatchStart, u64, T), StoreError> {
        let inner = self.lock();
        let empty = Table::default();
        let table = inner.tables.get(key).unwrap_or(&empty);
        let start = match from {
            WatchFrom::Rv(rv) => {
                if rv < table.compacted {
                    return Err(StoreError::Gone {
                        requested: rv,
                        oldest: table.compacted,
                    });
                }
                let first = table.history.partition_point(|e| e.rv() <= rv);
                WatchStart::Events(
                    table
                        .history
                        .range(first..)
                        .filter(|e| namespace.is_none_or(|ns| e.object.namespace() == ns))
                        .cloned()
                        .collect(),
                )
            }
            WatchFrom::Now => {
                let items = match namespace {
                    Some(ns) => namespace_range(&table.objects, ns).cloned().collect(),
                    None => table.objects.values().cloned().collect(),
                };
                WatchStart::Snapshot(items)
            }
        };
        let feed = subscribe();
        Ok((start, inner.rv, feed))
    }

    /// The resourceVersion of the latest change to `key` (0 when none).
    pub fn latest_rv(&self, key: &ResourceKey) -> u64 {
        let inner = self.lock();
        inner
            .tables
            .get(key)
            .map(|t| t.history.back().map_or(t.compacted, |e| e.rv()))
            .unwrap_or(0)
    }

    /// The events of `key` still in the history window, oldest first.
    pub fn history(&self, key: &ResourceKey) -> Vec<Arc<Event>> {
        let inner = self.lock();
        inner
            .tables
            .get(key)
            .map(|t| t.history.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Events of `key` after `rv`, or `Gone` when the history no longer reaches back.
    pub fn events_since(&self, key: &ResourceKey, rv: u64) -> Result<Vec<Arc<Event>>, StoreError> {
        match self.watch(key, None, WatchFrom::Rv(rv), || ())? {
            (WatchStart::Events(events), _, ()) => Ok(events),
            (WatchStart::Snapshot(_), _, ()) => Ok(Vec::new()),
        }
    }
}

fn max_bound<'a>(a: Bound<&'a str>, b: Bound<&'a str>) -> Bound<&'a str> {
    fn key<'a>(b: &Bound<&'a str>) -> Option<(&'a str, bool)> {
        match b {
            Bound::Unbounded => None,
            Bound::Included(s) => Some((s, false)),
            Bound::Excluded(s) => Some((s, true)),
        }
    }
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => {
            if x >= y {
                a
            } else {
                b
            }
        }
    }
}

/// Whether no key lies between `lower` and `upper`, where `BTreeMap::range`
/// would panic (start after end, or equal and either excluded).
fn is_empty_range(lower: Bound<&str>, upper: Bound<&str>) -> bool {
    match (lower, upper) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
    }
}

fn ns_bounds(ns: &str) -> (Bound<String>, Bound<String>) {
    // Keys in a namespace are "ns/..."; '0' is the character after '/'.
    (
        Bound::Included(format!("{ns}/")),
        Bound::Excluded(format!("{ns}0")),
    )
}

fn namespace_range<'a>(
    objects: &'a BTreeMap<Arc<str>, Arc<Stored>>,
    ns: &str,
) -> impl Iterator<Item = &'a Arc<Stored>> + 'a {
    let (lo, hi) = ns_bounds(ns);
    objects
        .range::<str, _>((
            lo.as_ref().map(|s| s.as_str()),
            hi.as_ref().map(|s| s.as_str()),
        ))
        .map(|(_, v)| v)
}

/// The objects of `table` as they were at `rv`, undoing later events.
fn rewind(table: &Table, rv: u64) -> BTreeMap<Arc<str>, Arc<Stored>> {
    let mut objects = table.objects.clone();
    for event in table.history.iter().rev().take_while(|e| e.rv() > rv) {
        match (&event.kind, &event.prev) {
            (EventType::Added, _) | (_, None) => {
                objects.remove(&event.object.key);
            }
            (_, Some(prev)) => {
                objects.insert(prev.key.clone(), prev.clone());
            }
        }
    }
    objects
}

/// The latest event of `key` (optionally of one object) still in the history.
pub fn latest<'a>(
    events: &'a [Arc<Event>],
    namespace: Option<&str>,
    name: Option<&str>,
) -> Option<&'a Arc<Event>> {
    events.iter().rev().find(|e| {
        namespace.is_none_or(|ns| e.object.namespace() == ns)
            && name.is_none_or(|n| e.object.name() == n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::object::NoSink;
    use bytes::Bytes;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::sync::Mutex as StdMutex;

    #[derive(Default)]
    struct Recorder(StdMutex<Vec<Arc<Event>>>);
    impl EventSink for Recorder {
        fn publish(&self, _: &ResourceKey, event: &Arc<Event>) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn cm(name: &str, data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"k": data}})
    }

    fn put(store: &Store, name: &str, data: &str) -> Written {
        let key = ResourceKey::new("", "configmaps");
        store
            .write::<_, StoreError>(&key, "ns", name, |cur| {
                let change = match cur {
                    Some(cur) => Change::Update {
                        new: cm(name, data),
                        old: cur.value(),
                    },
                    None => Change::Put(cm(name, data)),
                };
                Ok((change, ()))
            })
            .unwrap()
            .0
    }

    fn delete(store: &Store, name: &str) -> Written {
        let key = ResourceKey::new("", "configmaps");
        store
            .write::<_, StoreError>(&key, "ns", name, |_| Ok((Change::Delete, ())))
            .unwrap()
            .0
    }

    #[test]
    fn write_should_bump_rv_and_skip_no_op_updates() {
        let store = Store::new(Arc::new(NoSink), 10, 1);
        let a = put(&store, "a", "1");
        assert_eq!(a.event, Some(EventType::Added));
        assert_eq!(a.object.as_ref().unwrap().rv, 1);
        let same = put(&store, "a", "1");
        assert_eq!(same.event, None);
        assert_eq!(store.current_rv(), 1);
        let b = put(&store, "a", "2");
        assert_eq!(b.event, Some(EventType::Modified));
        assert_eq!(
            b.object.unwrap().value()["metadata"]["resourceVersion"],
            "2"
        );
    }

    #[test]
    fn delete_should_carry_the_deletion_rv() {
        let store = Store::new(Arc::new(NoSink), 10, 1);
        put(&store, "a", "1");
        let d = delete(&store, "a");
        assert_eq!(d.event, Some(EventType::Deleted));
        assert_eq!(
            d.object.unwrap().value()["metadata"]["resourceVersion"],
            "2"
        );
        assert!(store
            .get(&ResourceKey::new("", "configmaps"), "ns", "a")
            .is_none());
    }

    #[test]
    fn watch_should_be_gone_before_the_history_window() {
        let store = Store::new(Arc::new(NoSink), 2, 1);
        let key = ResourceKey::new("", "configmaps");
        for i in 0..5 {
            put(&store, "a", &i.to_string());
        }
        assert!(matches!(
            store.watch(&key, None, WatchFrom::Rv(1), || ()),
            Err(StoreError::Gone {
                requested: 1,
                oldest: 3
            })
        ));
        let (start, rv, ()) = store.watch(&key, None, WatchFrom::Rv(3), || ()).unwrap();
        assert_eq!(rv, 5);
        match start {
            WatchStart::Events(events) => assert_eq!(
                events.iter().map(|e| e.rv()).collect::<Vec<_>>(),
                vec![4, 5]
            ),
            WatchStart::Snapshot(_) => panic!("expected events"),
        }
    }

    #[test]
    fn list_at_an_old_rv_should_rewind_history() {
        let store = Store::new(Arc::new(NoSink), 100, 1);
        let key = ResourceKey::new("", "configmaps");
        put(&store, "a", "1");
        put(&store, "b", "1");
        put(&store, "a", "2");
        delete(&store, "b");
        put(&store, "c", "1");
        let page = store.list(&key, None, Some(3), None, 0, &|_| true).unwrap();
        let names: Vec<_> = page
            .items
            .iter()
            .map(|o| (o.name().to_string(), o.rv))
            .collect();
        assert_eq!(names, vec![("a".to_string(), 3), ("b".to_string(), 2)]);
    }

    #[test]
    fn list_should_paginate_in_key_order() {
        let store = Store::new(Arc::new(NoSink), 100, 1);
        let key = ResourceKey::new("", "configmaps");
        for n in ["c", "a", "b", "d"] {
            put(&store, n, "x");
        }
        let page = store
            .list(&key, Some("ns"), None, None, 3, &|_| true)
            .unwrap();
        assert_eq!(
            page.items.iter().map(|o| o.name()).collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert_eq!(page.next.as_deref(), Some("ns/c"));
        assert_eq!(page.remaining, Some(1));
        let page2 = store
            .list(
                &key,
                Some("ns"),
                Some(page.rv),
                page.next.as_deref(),
                3,
                &|_| true,
            )
            .unwrap();
        assert_eq!(
            page2.items.iter().map(|o| o.name()).collect::<Vec<_>>(),
            vec!["d"]
        );
        assert!(page2.next.is_none());
        assert!(store
            .list(&key, Some("other"), None, None, 0, &|_| true)
            .unwrap()
            .items
            .is_empty());
    }

    /// Regression test for issue 15: a start key outside the listed range
    /// (after its end, or in another namespace) is an empty page, not a panic.
    #[test]
    fn list_should_survive_start_keys_outside_the_range() {
        let store = Store::new(Arc::new(NoSink), 100, 1);
        let key = ResourceKey::new("", "configmaps");
        put(&store, "a", "x");
        for after in ["zz/a", "ns0", "ns0/x", "ns/\u{10FFFF}", "ns/"] {
            let page = store
                .list(&key, Some("ns"), None, Some(after), 0, &|_| true)
                .unwrap();
            assert!(page.items.is_empty() || after == "ns/", "{after}");
        }
        let before = store
            .list(&key, Some("ns"), None, Some("a/b"), 0, &|_| true)
            .unwrap();
        assert_eq!(
            before.items.len(),
            1,
            "a key before the range starts at its beginning"
        );
    }

    proptest! {
        /// Whatever namespace and start key a client makes up, listing never panics.
        #[test]
        fn list_should_never_panic_on_any_start_key(ns in "\\PC{0,4}", after in "\\PC{0,8}") {
            let store = Store::new(Arc::new(NoSink), 100, 1);
            let key = ResourceKey::new("", "configmaps");
            put(&store, "a", "x");
            let _ = store.list(&key, Some(&ns), None, Some(&after), 2, &|_| true);
            let _ = store.list(&key, None, None, Some(&after), 2, &|_| true);
        }
    }

    #[test]
    fn uids_should_be_deterministic_per_seed() {
        let a = Store::new(Arc::new(NoSink), 1, 42);
        let b = Store::new(Arc::new(NoSink), 1, 42);
        assert_eq!(a.new_uid(), b.new_uid());
        let uid = a.new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_eq!(a.random_suffix().len(), 5);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u8..4).prop_map(|(n, d)| Op::Put(n, d)),
            (0u8..6).prop_map(Op::Delete),
        ]
    }

    proptest! {
        /// Every event has a strictly larger resourceVersion than the one before,
        /// and replaying the event log rebuilds exactly what LIST returns.
        #[test]
        fn replaying_events_should_rebuild_the_list(ops in proptest::collection::vec(arb_op(), 0..60)) {
            let recorder = Arc::new(Recorder::default());
            let store = Store::new(recorder.clone(), 1000, 7);
            let key = ResourceKey::new("", "configmaps");
            for op in &ops {
                match op {
                    Op::Put(n, d) => { put(&store, &format!("o{n}"), &d.to_string()); }
                    Op::Delete(n) => { delete(&store, &format!("o{n}")); }
                }
            }
            let events = recorder.0.lock().unwrap().clone();
            let mut last = 0;
            let mut rebuilt: BTreeMap<String, Bytes> = BTreeMap::new();
            for e in &events {
                prop_assert!(e.rv() > last);
                last = e.rv();
                match e.kind {
                    EventType::Deleted => { rebuilt.remove(e.object.name()); }
                    _ => { rebuilt.insert(e.object.name().to_string(), e.object.bytes.clone()); }
                }
            }
            let page = store.list(&key, None, None, None, 0, &|_| true).unwrap();
            let listed: BTreeMap<String, Bytes> = page.items.iter().map(|o| (o.name().to_string(), o.bytes.clone())).collect();
            prop_assert_eq!(listed, rebuilt);
            prop_assert_eq!(page.rv, last);
        }
    }
}
