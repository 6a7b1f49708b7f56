//! Unit tests of the store: versions, history, lists, watches, the data
//! directory.
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

#[test]
fn a_reopened_store_should_resume_at_the_same_versions_with_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let key = ResourceKey::new("", "configmaps");
    let (uid, rv) = {
        let store = Store::open(Arc::new(NoSink), 10, 1, dir.path()).unwrap();
        let uid = store.new_uid();
        put(&store, "a", "1");
        put(&store, "a", "2");
        put(&store, "b", "1");
        delete(&store, "b");
        (uid, store.current_rv())
    };
    assert_eq!(rv, 4);
    let store = Store::open(Arc::new(NoSink), 10, 1, dir.path()).unwrap();
    assert_eq!(store.current_rv(), 4);
    let a = store.get(&key, "ns", "a").unwrap();
    assert_eq!((a.rv, a.value()["data"]["k"].clone()), (2, json!("2")));
    assert!(store.get(&key, "ns", "b").is_none());
    // The generator goes on from the last write, not from the seed: the
    // same uids as a store that never restarted.
    let unbroken = Store::new(Arc::new(NoSink), 10, 1);
    assert_eq!(uid, unbroken.new_uid());
    assert_eq!(store.new_uid(), unbroken.new_uid());
    // Resume points from before the restart are gone, as after compaction;
    // the restart's own version is still a valid start.
    let gone = StoreError::Gone {
        requested: 3,
        oldest: 4,
    };
    assert_eq!(store.events_since(&key, 3).unwrap_err(), gone);
    assert_eq!(
        store
            .list(&key, None, Some(3), None, 0, &|_| true)
            .unwrap_err(),
        gone
    );
    assert!(store.events_since(&key, 4).unwrap().is_empty());
    let other = ResourceKey::new("apps", "deployments");
    assert!(store.events_since(&other, 1).is_err());
    assert_eq!(put(&store, "c", "1").object.unwrap().rv, 5);
    assert_eq!(store.events_since(&key, 4).unwrap().len(), 1);
}
