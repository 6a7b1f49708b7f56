//! The versioned object store: pure and synchronous (no tokio, no hyper).
//!
//! One cluster-wide, monotonically increasing resourceVersion; objects kept as
//! their serialized JSON bytes, written once per version and shared by every
//! GET, LIST and watcher; a bounded history of events per resource for watch
//! resume and consistent paginated lists, compacted beyond its bound the way
//! etcd compacts (older resume points are `Gone`).
//!
//! With a data directory (`durable`), every write is appended to its log
//! under the lock and flushed after it, before the write returns; a store
//! opened on it resumes at the same resourceVersion, and resume points
//! from before the restart are `Gone`.
//!
//! Callers: `registry::generic` (every write goes through [`Store::write`],
//! whose closure applies the semantics under the lock) and `watch` (which
//! subscribes to the [`EventSink`] while holding the lock, so no event is
//! ever missed).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Bound,
    path::Path,
    sync::{Arc, Mutex},
};

use crate::{
    apimachinery::resource_key::ResourceKey,
    storage::durable::{DataDir, DurableError, Flusher, Op},
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

impl Table {
    /// A table with no history before `floor`.
    fn since(floor: u64) -> Table {
        Table {
            compacted: floor,
            ..Table::default()
        }
    }
}

struct Inner {
    rv: u64,
    tables: HashMap<ResourceKey, Table>,
    rng: u64,
    /// The resourceVersion the store was restored at: no history before it.
    floor: u64,
    data: Option<DataDir>,
}

/// The store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    inner: Mutex<Inner>,
    sink: Arc<dyn EventSink>,
    history_limit: usize,
    flusher: Option<Flusher>,
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
                floor: 0,
                data: None,
            }),
            sink,
            history_limit: history_limit.max(1),
            flusher: None,
        }
    }

    /// A store kept in the data directory `dir`: restored from it (objects,
    /// resourceVersion, the generator's state), then every write logged
    /// there before it returns. A new directory starts empty, as
    /// [`Store::new`]. The log starts empty after a fresh snapshot.
    pub fn open(
        sink: Arc<dyn EventSink>,
        history_limit: usize,
        seed: u64,
        dir: &Path,
    ) -> Result<Self, DurableError> {
        let (mut data, flusher, restored) = DataDir::open(dir)?;
        if restored.cut > 0 {
            tracing::warn!(
                "{}: cut {} bytes of a torn or damaged log tail (writes never acknowledged)",
                dir.display(),
                restored.cut
            );
        }
        let rv = restored.rv;
        let rng = restored.rng.unwrap_or(seed);
        let mut tables: HashMap<ResourceKey, Table> = HashMap::new();
        for (key, stored) in restored.objects {
            tables
                .entry(key)
                .or_insert_with(|| Table::since(rv))
                .objects
                .insert(stored.key.clone(), Arc::new(stored));
        }
        let objects = tables
            .iter()
            .flat_map(|(k, t)| t.objects.values().map(move |o| (k, o.as_ref())));
        data.snapshot(&flusher, rv, rng, objects)
            .map_err(|source| DurableError::Io {
                path: dir.join("snapshot"),
                source,
            })?;
        Ok(Store {
            inner: Mutex::new(Inner {
                rv,
                tables,
                rng,
                floor: rv,
                data: Some(data),
            }),
            sink,
            history_limit: history_limit.max(1),
            flusher: Some(flusher),
        })
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
    ///
    /// With a data directory, the write is on disk when this returns; a
    /// write that cannot be logged is not made (`StoreError::Disk`).
    pub fn write<T, E: From<StoreError>>(
        &self,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
        f: impl FnOnce(Option<&Arc<Stored>>) -> Result<(Change, T), E>,
    ) -> Result<(Written, T), E> {
        let (written, out) = {
            let mut inner = self.lock();
            self.write_locked(&mut inner, key, namespace, name, f)?
        };
        if let (Some(flusher), Some(_), Some(object)) =
            (&self.flusher, written.event, &written.object)
        {
            if let Err(e) = flusher.flush(object.rv) {
                tracing::error!("cannot flush the data directory's log: {e}");
                return Err(StoreError::Disk(e.to_string()).into());
            }
        }
        Ok((written, out))
    }

    fn write_locked<T, E: From<StoreError>>(
        &self,
        inner: &mut Inner,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
        f: impl FnOnce(Option<&Arc<Stored>>) -> Result<(Change, T), E>,
    ) -> Result<(Written, T), E> {
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
                self.commit(inner, key, EventType::Modified, stored.clone(), current)?;
                Written {
                    object: Some(stored),
                    event: Some(EventType::Modified),
                }
            }
            Change::Update { new: value, .. } | Change::Put(value) => {
                let rv = inner.rv + 1;
                let stored = Arc::new(make_stored(okey, namespace.len(), rv, value)?);
                let kind = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.commit(inner, key, kind, stored.clone(), current)?;
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
                    self.commit(inner, key, EventType::Deleted, stored.clone(), Some(cur))?;
                    Written {
                        object: Some(stored),
                        event: Some(EventType::Deleted),
                    }
                }
            },
        };
        Ok((written, out))
    }

    /// Makes a change: logged first (with a data directory), then applied
    /// and published at its resourceVersion.
    fn commit(
        &self,
        inner: &mut Inner,
        key: &ResourceKey,
        kind: EventType,
        object: Arc<Stored>,
        prev: Option<Arc<Stored>>,
    ) -> Result<(), StoreError> {
        if let (Some(data), Some(flusher)) = (inner.data.as_mut(), self.flusher.as_ref()) {
            let op = match kind {
                EventType::Deleted => Op::Delete,
                _ => Op::Put,
            };
            data.append(flusher, op, inner.rng, key, &object)
                .map_err(|e| StoreError::Disk(e.to_string()))?;
        }
        inner.rv = object.rv;
        self.record(inner, key, kind, object, prev);
        self.snapshot_if_due(inner);
        Ok(())
    }

    /// Writes a snapshot and empties the log once it has grown long.
    fn snapshot_if_due(&self, inner: &mut Inner) {
        let Inner {
            rv,
            tables,
            rng,
            data,
            ..
        } = inner;
        let (Some(data), Some(flusher)) = (data.as_mut(), self.flusher.as_ref()) else {
            return;
        };
        if !data.log_is_long() {
            return;
        }
        let objects = tables
            .iter()
            .flat_map(|(k, t)| t.objects.values().map(move |o| (k, o.as_ref())));
        if let Err(e) = data.snapshot(flusher, *rv, *rng, objects) {
            // The log is intact and keeps growing; the next write tries again.
            tracing::error!("cannot write the data directory's snapshot: {e}");
        }
    }

    fn record(
        &self,
        inner: &mut Inner,
        key: &ResourceKey,
        kind: EventType,
        object: Arc<Stored>,
        prev: Option<Arc<Stored>>,
    ) {
        let floor = inner.floor;
        let table = inner
            .tables
            .entry(key.clone())
            .or_insert_with(|| Table::since(floor));
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
        let empty = Table::since(inner.floor);
        let table = inner.tables.get(key).unwrap_or(&empty);
        if rv < inner.floor {
            // Before a restart: no history reaches back there.
            return Err(StoreError::Gone {
                requested: rv,
                oldest: inner.floor,
            });
        }
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
        let empty = Table::since(inner.floor);
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

    /// The latest resourceVersion of `key`'s changes in `namespaces` still
    /// in the history window (0 if none): what a watch of those namespaces
    /// alone has to reach to be current.
    pub fn latest_rv_in(&self, key: &ResourceKey, namespaces: &[String]) -> u64 {
        let inner = self.lock();
        inner
            .tables
            .get(key)
            .and_then(|t| {
                t.history
                    .iter()
                    .rev()
                    .find(|e| namespaces.iter().any(|ns| ns == e.object.namespace()))
            })
            .map_or(0, |e| e.rv())
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
mod tests;
