//! Observing an operator from outside (the embedding API a test harness
//! uses): which objects have work queued or in progress, when the next
//! delayed handler is due, what each watch has seen, and whether the
//! operator is ready (startup activities done, initial listings handled).
//!
//! Lives at the settings layer: the reactor reports into it; nothing reads
//! it but the embedder.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use tokio::time::Instant;

#[derive(Debug, Default)]
struct State {
    /// Bumped on every change, for waiters ([`Observer::changed`]).
    generation: u64,
    ready: bool,
    /// Paused by peering: queued work waits for the pause to end.
    paused: bool,
    /// Objects with an event not yet taken by their worker.
    queued: BTreeSet<String>,
    /// Objects being processed (or awaiting their own patch in the watch).
    busy: BTreeSet<String>,
    /// Fire-and-forget handlers still running.
    detached: usize,
    /// Next wake-up of each object with delayed handlers.
    wakeups: BTreeMap<String, Instant>,
    /// The latest resourceVersion each resource's watch has delivered.
    seen: HashMap<String, u64>,
    /// The namespaces each resource is watched in (`None`: all of them).
    scopes: HashMap<String, BTreeSet<Option<String>>>,
    /// Daemons and timers: `None` while a timer runs its code, `Some(until)`
    /// while parked (`until` = `None`: no known deadline; daemons are
    /// always parked to observers).
    spawned: BTreeMap<String, Option<Option<Instant>>>,
    /// Per object: the latest event queued for it (type and resourceVersion).
    events: HashMap<String, String>,
    /// Per object: what its worker last did with it.
    notes: HashMap<String, String>,
}

/// A shared view of an operator's pending work. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Observer(Arc<Mutex<State>>, Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Observer {
    fn default() -> Self {
        Observer(Arc::default(), Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

/// Changes to what an [`Observer`] sees, to wait on.
#[derive(Debug)]
pub struct Changes(tokio::sync::watch::Receiver<u64>);

impl Changes {
    /// Waits until the observer sees a change after the last call (or
    /// after [`Observer::changes`] made this); returns at once if there was
    /// one meanwhile.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What is still pending, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Objects with queued events.
    pub queued: Vec<String>,
    /// Objects being processed.
    pub busy: Vec<String>,
    /// Per queued, busy or delayed object: the latest event queued for it
    /// and what its worker last did with it.
    pub notes: Vec<(String, String)>,
    /// Event handlers still running.
    pub detached: usize,
    /// Delayed handlers: object and when (relative to now).
    pub wakeups: Vec<(String, std::time::Duration)>,
    /// Timers running their code now.
    pub running: Vec<String>,
    /// Daemons and timers parked: when they wake up next (relative to
    /// now; `None` when only a stop wakes them).
    pub parked: Vec<(String, Option<std::time::Duration>)>,
}

impl Observer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes whoever waits for changes.
    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, generation) = {
            let mut s = self.lock();
            let r = f(&mut s);
            s.generation += 1;
            (r, s.generation)
        };
        self.1.send_replace(generation);
        r
    }

    /// How many changes the observer has seen (a counter to compare).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// A handle to wait for the next change (for embedders that wait until
    /// the operator is quiet without polling).
    pub fn changes(&self) -> Changes {
        let mut rx = self.1.subscribe();
        rx.mark_unchanged();
        Changes(rx)
    }

    pub(crate) fn set_ready(&self) {
        self.update(|s| s.ready = true);
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.update(|s| s.paused = paused);
    }

    /// Whether peering paused the operator (queued work waits meanwhile).
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// An event (`what`: its type and resourceVersion) is queued for the
    /// object `key`.
    pub(crate) fn queued(&self, key: &str, what: String) {
        self.update(|s| {
            s.queued.insert(key.to_string());
            s.events.insert(key.to_string(), what);
        });
    }

    pub(crate) fn taken(&self, key: &str) {
        self.update(|s| {
            s.queued.remove(key);
            s.wakeups.remove(key);
            s.busy.insert(key.to_string());
        });
    }

    /// The worker of `key` is done for now (`note`: what it did), with
    /// delayed handlers due at `wake`, if any.
    pub(crate) fn done(&self, key: &str, wake: Option<Instant>, note: String) {
        self.update(|s| {
            s.busy.remove(key);
            s.notes.insert(key.to_string(), note);
            match wake {
                Some(at) => {
                    s.wakeups.insert(key.to_string(), at);
                }
                None => {
                    s.wakeups.remove(key);
                }
            }
        });
    }

    pub(crate) fn gone(&self, key: &str) {
        self.update(|s| {
            s.queued.remove(key);
            s.busy.remove(key);
            s.wakeups.remove(key);
            s.events.remove(key);
            s.notes.remove(key);
        });
    }

    /// A daemon or timer runs its code (`None`) or parks (`Some(until)`).
    pub(crate) fn spawned(&self, key: &str, state: Option<Option<Instant>>) {
        self.update(|s| s.spawned.insert(key.to_string(), state));
    }

    /// A daemon or timer has exited.
    pub(crate) fn unspawned(&self, key: &str) {
        self.update(|s| s.spawned.remove(key));
    }

    pub(crate) fn detached(&self, delta: isize) {
        self.update(|s| s.detached = s.detached.saturating_add_signed(delta));
    }

    pub(crate) fn watching(&self, resource: &str, namespace: Option<&str>) {
        self.update(|s| {
            s.seen.entry(resource.to_string()).or_insert(0);
            s.scopes
                .entry(resource.to_string())
                .or_default()
                .insert(namespace.map(str::to_string));
        });
    }

    /// A watch stopped (its namespace or resource is no longer served).
    pub(crate) fn unwatched(&self, resource: &str, namespace: Option<&str>) {
        self.update(|s| {
            let scopes = s.scopes.entry(resource.to_string()).or_default();
            scopes.remove(&namespace.map(str::to_string));
            if scopes.is_empty() {
                s.scopes.remove(resource);
                s.seen.remove(resource);
            }
        });
    }

    pub(crate) fn seen(&self, resource: &str, rv: u64) {
        self.update(|s| {
            let entry = s.seen.entry(resource.to_string()).or_insert(0);
            *entry = (*entry).max(rv);
        });
    }

    /// Whether startup is over and the initial listings were dispatched.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Whether nothing is queued (or the operator is paused) or in progress
    /// right now: delayed handlers
    /// may be due later, and daemons and timers may be parked (waiting on
    /// their stop signal), but none is running its code.
    pub fn is_idle(&self) -> bool {
        let s = self.lock();
        (s.paused || s.queued.is_empty())
            && s.busy.is_empty()
            && s.detached == 0
            && s.spawned.values().all(Option::is_some)
    }

    /// The earliest wake-up of a parked daemon or timer, if any.
    pub fn next_spawned_wakeup(&self) -> Option<Instant> {
        self.lock()
            .spawned
            .values()
            .flatten()
            .flatten()
            .min()
            .copied()
    }

    /// The earliest delayed handler's wake-up, if any.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.lock().wakeups.values().min().copied()
    }

    /// The latest resourceVersion the watch of `resource` (`plural` or
    /// `plural.group`) delivered.
    pub fn seen_rv(&self, resource: &str) -> Option<u64> {
        self.lock().seen.get(resource).copied()
    }

    /// Every watched resource (`plural` or `plural.group`) with the latest
    /// resourceVersion its watch delivered (0 before any event).
    pub fn watched(&self) -> Vec<(String, u64)> {
        self.lock()
            .seen
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The namespaces `resource` is watched in; `None` when it is watched
    /// in the whole cluster (or not at all).
    pub fn watched_namespaces(&self, resource: &str) -> Option<Vec<String>> {
        let s = self.lock();
        let scopes = s.scopes.get(resource)?;
        scopes.iter().cloned().collect()
    }

    /// What is pending now.
    pub fn pending(&self) -> Pending {
        let s = self.lock();
        let now = Instant::now();
        Pending {
            queued: s.queued.iter().cloned().collect(),
            busy: s.busy.iter().cloned().collect(),
            notes: s
                .queued
                .iter()
                .chain(&s.busy)
                .chain(s.wakeups.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|k| {
                    let event = s.events.get(k).map_or("no event", String::as_str);
                    let note = s.notes.get(k).map_or("not processed yet", String::as_str);
                    (k.clone(), format!("latest event: {event}; last: {note}"))
                })
                .collect(),
            detached: s.detached,
            wakeups: s
                .wakeups
                .iter()
                .map(|(k, at)| (k.clone(), at.saturating_duration_since(now)))
                .collect(),
            running: s
                .spawned
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect(),
            parked: s
                .spawned
                .iter()
                .filter_map(|(k, v)| {
                    v.map(|until| (k.clone(), until.map(|u| u.saturating_duration_since(now))))
                })
                .collect(),
        }
    }
}
