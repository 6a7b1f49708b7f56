//! Watch fan-out: store events to every watcher of a resource, with namespace
//! and selector filtering, resume from a resourceVersion, initial events,
//! bookmarks, timeouts and slow-consumer catch-up.
//!
//! Built on `store` (subscriptions are taken under the store lock, so the
//! history handed to a new watcher and its live feed never overlap or leave a
//! gap) and `selector`; unaware of HTTP: a watch is a channel of ready-to-send
//! lines.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::{
    apimachinery::{errors::ApiError, resource_key::ResourceKey},
    storage::{
        object::{
            event_line, Event, EventSink, EventType, StoreError, Stored, WatchFrom, WatchStart,
        },
        selector::{FieldSelector, LabelSelector},
        store::Store,
    },
};

/// Capacity of each resource's broadcast channel; a watcher further behind
/// than this catches up from the store's history instead.
const FANOUT_CAPACITY: usize = 1024;

/// Lines buffered for each watcher before it counts as not reading.
const WATCHER_BUFFER: usize = 256;

/// How long a watcher's buffer may stay full before the watch is ended,
/// as kube-apiserver's watch cache ends unresponsive watchers (the client
/// sees the stream end and watches again from its last resourceVersion).
pub const UNRESPONSIVE_WATCHER: Duration = Duration::from_secs(5);

/// Sends a line to a watcher; false when it is gone or has not made room
/// within [`UNRESPONSIVE_WATCHER`] (then the watch ends).
async fn send(tx: &mpsc::Sender<Bytes>, key: &ResourceKey, line: Bytes) -> bool {
    match tx.try_send(line) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(line)) => {
            match tokio::time::timeout(UNRESPONSIVE_WATCHER, tx.send(line)).await {
                Ok(sent) => sent.is_ok(),
                Err(_) => {
                    tracing::info!(
                        "Forcing {key} watcher close due to unresponsiveness: {WATCHER_BUFFER} events unread for {UNRESPONSIVE_WATCHER:?}"
                    );
                    false
                }
            }
        }
    }
}

/// What travels to watchers: store events, and injected ones.
#[derive(Clone, Debug)]
pub enum Feed {
    /// A change in the store.
    Event(Arc<Event>),
    /// Something injected into live watches (never stored).
    Inject(Arc<Injection>),
}

/// An injection into the live watches of a resource.
#[derive(Debug)]
pub struct Injection {
    /// Which watches it concerns.
    pub narrow: Narrow,
    /// What to do.
    pub action: InjectAction,
}

/// Narrows an injection to some watches: those whose scope includes the
/// namespace, and (for events carrying an object) whose selectors and the
/// narrowing's name and labels accept that object.
#[derive(Clone, Debug, Default)]
pub struct Narrow {
    /// Only watches that can see this namespace.
    pub namespace: Option<String>,
    /// Only this object name.
    pub name: Option<String>,
    /// Only objects these labels select.
    pub labels: LabelSelector,
}

/// What an injection does to a watch.
#[derive(Debug)]
pub enum InjectAction {
    /// Send this line; `object` (if any) is what selectors are matched against.
    Send {
        /// The complete event line.
        line: Bytes,
        /// The event's object, for filtering.
        object: Option<Stored>,
    },
    /// End the watch after this many more events (0 = now).
    Cut {
        /// Events still delivered before the cut.
        after: usize,
    },
    /// Hold events from now on.
    Hold,
    /// Deliver held events and stop holding.
    Release,
}

/// The fan-out hub: one broadcast channel per resource.
#[derive(Default)]
pub struct Hub {
    channels: RwLock<HashMap<ResourceKey, broadcast::Sender<Feed>>>,
}

impl Hub {
    /// Sends an injection to the live watches of `key`; returns how many
    /// watch streams it reached.
    pub fn inject(&self, key: &ResourceKey, injection: Injection) -> usize {
        match self
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            Some(tx) => tx.send(Feed::Inject(Arc::new(injection))).unwrap_or(0),
            None => 0,
        }
    }

    /// Subscribes to the events of `key`. Call under the store lock.
    pub fn subscribe(&self, key: &ResourceKey) -> broadcast::Receiver<Feed> {
        if let Some(tx) = self
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return tx.subscribe();
        }
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(FANOUT_CAPACITY).0)
            .subscribe()
    }

    /// How many watchers `key` has right now.
    pub fn watchers(&self, key: &ResourceKey) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map_or(0, |tx| tx.receiver_count())
    }
}

impl EventSink for Hub {
    fn publish(&self, key: &ResourceKey, event: &Arc<Event>) {
        if let Some(tx) = self
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            let _ = tx.send(Feed::Event(event.clone()));
        }
    }
}

/// How a watch begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After a resourceVersion, from the history.
    After(u64),
    /// Synthetic ADDED events for the current state, then live events.
    Current,
    /// As `Current`, then a BOOKMARK annotated `k8s.io/initial-events-end`
    /// (streaming lists, `sendInitialEvents=true`).
    InitialEvents,
}

/// Renders a stored object for this watcher (e.g. another served version).
pub type Render = Arc<dyn Fn(&Stored) -> Bytes + Send + Sync>;

/// Everything that defines one watch.
pub struct WatchSpec {
    /// The resource.
    pub key: ResourceKey,
    /// Only this namespace, if set.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Where to start.
    pub start: Start,
    /// Whether to send periodic BOOKMARK events.
    pub bookmarks: bool,
    /// The bookmark interval.
    pub bookmark_interval: Duration,
    /// End the watch after this long.
    pub timeout: Option<Duration>,
    /// `apiVersion` and `kind` for BOOKMARK objects.
    pub api_version: String,
    /// `kind` for BOOKMARK objects.
    pub kind: String,
    /// Re-renders objects when the watcher's version differs from storage.
    pub render: Option<Render>,
}

impl WatchSpec {
    fn matches(&self, obj: &Stored) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj.namespace() == ns)
            && self.labels.matches_stored(obj)
            && self.fields.matches_stored(obj)
    }

    fn line(&self, kind: EventType, obj: &Stored, precomputed: Option<&Bytes>) -> Bytes {
        match (&self.render, precomputed) {
            (None, Some(line)) => line.clone(),
            (None, None) => event_line(kind.as_str(), &obj.bytes),
            (Some(render), _) => event_line(kind.as_str(), &render(obj)),
        }
    }

    /// The line to send for `event`, if this watcher should see it: the
    /// event itself, or ADDED/DELETED when the object starts or stops matching.
    fn translate(&self, event: &Event) -> Option<Bytes> {
        let now = self.matches(&event.object);
        match event.kind {
            EventType::Added | EventType::Deleted => {
                now.then(|| self.line(event.kind, &event.object, Some(&event.line)))
            }
            EventType::Modified => {
                let before = event.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => {
                        Some(self.line(EventType::Modified, &event.object, Some(&event.line)))
                    }
                    (false, true) => Some(self.line(EventType::Added, &event.object, None)),
                    (true, false) => {
                        let prev = event.prev.as_ref()?;
                        let mut value = prev.value();
                        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            meta.insert(
                                "resourceVersion".into(),
                                Value::String(event.rv().to_string()),
                            );
                        }
                        let bytes = serde_json::to_vec(&value).unwrap_or_default();
                        let restamped = Stored::detached(prev, event.rv(), bytes);
                        Some(self.line(EventType::Deleted, &restamped, None))
                    }
                    (false, false) => None,
                }
            }
        }
    }

    /// Whether an injection narrowed by `narrow` concerns this watch's scope.
    fn in_scope(&self, narrow: &Narrow) -> bool {
        match (&self.namespace, &narrow.namespace) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": meta});
        event_line("BOOKMARK", obj.to_string().as_bytes())
    }
}

/// The line of an ERROR event carrying `err` as a Status.
pub fn error_line(err: &ApiError) -> Bytes {
    event_line("ERROR", err.to_status().to_string().as_bytes())
}

/// Starts a watch: validates the start point synchronously (so a too-old
/// resourceVersion can still be reported), then streams lines from a task.
///
/// # Errors
/// Never fails for a too-old resourceVersion: as kube-apiserver does, the
/// watch opens and its first and only event is an ERROR with a 410 Status.
pub fn start(store: Arc<Store>, hub: Arc<Hub>, spec: WatchSpec) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(WATCHER_BUFFER);
    let from = match spec.start {
        Start::After(rv) => WatchFrom::Rv(rv),
        Start::Current | Start::InitialEvents => WatchFrom::Now,
    };
    let began = store.watch(&spec.key, spec.namespace.as_deref(), from, || {
        hub.subscribe(&spec.key)
    });
    tokio::spawn(async move {
        let (first, rv, feed) = match began {
            Ok(b) => b,
            Err(StoreError::Gone { requested, oldest }) => {
                let _ = tx
                    .send(error_line(&ApiError::too_old_resource_version(
                        requested, oldest,
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(error_line(&ApiError::internal(e.to_string())))
                    .await;
                return;
            }
        };
        run(store, hub, spec, first, rv, feed, tx).await;
    });
    rx
}

async fn run(
    store: Arc<Store>,
    hub: Arc<Hub>,
    spec: WatchSpec,
    first: WatchStart,
    rv: u64,
    mut feed: broadcast::Receiver<Feed>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut last = rv;
    match first {
        WatchStart::Snapshot(objects) => {
            for obj in objects.iter().filter(|o| spec.matches(o)) {
                if !send(&tx, &spec.key, spec.line(EventType::Added, obj, None)).await {
                    return;
                }
            }
            if spec.start == Start::InitialEvents
                && !send(&tx, &spec.key, spec.bookmark(rv, true)).await
            {
                return;
            }
        }
        WatchStart::Events(events) => {
            if let Start::After(after) = spec.start {
                last = after;
            }
            for event in events {
                last = event.rv();
                if let Some(line) = spec.translate(&event) {
                    if !send(&tx, &spec.key, line).await {
                        return;
                    }
                }
            }
            last = last.max(rv);
        }
    }
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    // kube-apiserver's watch cache also bookmarks 2 s before a watch's
    // timeout, so that the client resumes from a fresh resourceVersion
    // (none when the timeout is shorter than that).
    let mut pre_timeout = deadline
        .and_then(|d| d.checked_sub(PRE_TIMEOUT_BOOKMARK))
        .filter(|at| *at > tokio::time::Instant::now());
    // Injected state: events held back, and events left before a cut.
    let mut held: Option<Vec<Bytes>> = None;
    let mut cut_after: Option<usize> = None;
    macro_rules! deliver {
        ($line:expr) => {{
            let line = $line;
            match held.as_mut() {
                Some(buffer) => buffer.push(line),
                None => {
                    if cut_after == Some(0) || !send(&tx, &spec.key, line).await {
                        return;
                    }
                    if let Some(n) = cut_after.as_mut() {
                        *n -= 1;
                        if *n == 0 {
                            return;
                        }
                    }
                }
            }
        }};
    }
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + spec.bookmark_interval,
        spec.bookmark_interval,
    );
    loop {
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = feed.recv() => match received {
                Ok(Feed::Event(event)) => {
                    if event.rv() <= last {
                        continue;
                    }
                    last = event.rv();
                    if let Some(line) = spec.translate(&event) {
                        deliver!(line);
                    }
                }
                Ok(Feed::Inject(injection)) => {
                    if !spec.in_scope(&injection.narrow) {
                        continue;
                    }
                    match &injection.action {
                        InjectAction::Send { line, object } => {
                            let accepted = object.as_ref().is_none_or(|o| {
                                spec.matches(o)
                                    && injection.narrow.name.as_deref().is_none_or(|n| n == o.name())
                                    && injection.narrow.labels.matches_stored(o)
                            });
                            if accepted {
                                deliver!(line.clone());
                            }
                        }
                        InjectAction::Cut { after } => {
                            if *after == 0 {
                                return;
                            }
                            cut_after = Some(*after);
                        }
                        InjectAction::Hold => {
                            held.get_or_insert_with(Vec::new);
                        }
                        InjectAction::Release => {
                            for line in held.take().unwrap_or_default() {
                                deliver!(line);
                            }
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live feed: resubscribe and catch up from history.
                    match store.watch(&spec.key, None, WatchFrom::Rv(last), || hub.subscribe(&spec.key)) {
                        Ok((WatchStart::Events(events), _, fresh)) => {
                            feed = fresh;
                            for event in events {
                                last = event.rv();
                                if let Some(line) = spec.translate(&event) {
                                    deliver!(line);
                                }
                            }
                        }
                        Ok((WatchStart::Snapshot(_), _, _)) => return,
                        Err(StoreError::Gone { requested, oldest }) => {
                            let _ = send(&tx, &spec.key, error_line(&ApiError::too_old_resource_version(requested, oldest))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = send(&tx, &spec.key, error_line(&ApiError::internal(e.to_string()))).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if spec.bookmarks && held.is_none() => {
                // Bookmark the latest resourceVersion when nothing is pending for
                // this watcher (checked under the store lock, so no event at or
                // below it can still be in flight), else the last one sent.
                let at = store.with_rv(|current| if feed.is_empty() { current } else { last });
                if !send(&tx, &spec.key, spec.bookmark(at, false)).await {
                    return;
                }
            }
            _ = async {
                    match pre_timeout {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if spec.bookmarks && held.is_none() => {
                pre_timeout = None;
                let at = store.with_rv(|current| if feed.is_empty() { current } else { last });
                if !send(&tx, &spec.key, spec.bookmark(at, false)).await {
                    return;
                }
            }
            _ = timeout => return,
            _ = tx.closed() => return,
        }
    }
}

/// How long before a watch's timeout its last bookmark goes out
/// (kube-apiserver's watch cache: 2 s).
const PRE_TIMEOUT_BOOKMARK: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::object::Change;

    fn setup(history: usize) -> (Arc<Store>, Arc<Hub>, ResourceKey) {
        let hub = Arc::new(Hub::default());
        let store = Arc::new(Store::new(hub.clone(), history, 1));
        (store, hub, ResourceKey::new("", "configmaps"))
    }

    fn put(store: &Store, name: &str, labels: Value) {
        let key = ResourceKey::new("", "configmaps");
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns", "labels": labels}});
        store
            .write::<_, StoreError>(&key, "ns", name, |_| Ok((Change::Put(obj), ())))
            .unwrap();
    }

    fn spec(key: &ResourceKey, start: Start, labels: &str) -> WatchSpec {
        WatchSpec {
            key: key.clone(),
            namespace: None,
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::default(),
            start,
            bookmarks: false,
            bookmark_interval: Duration::from_secs(60),
            timeout: None,
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            render: None,
        }
    }

    fn kind_of(line: &Bytes) -> (String, String) {
        let v: Value = serde_json::from_slice(line).unwrap();
        (
            v["type"].as_str().unwrap().to_string(),
            v["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    #[tokio::test]
    async fn selector_watch_should_turn_transitions_into_added_and_deleted() {
        let (store, hub, key) = setup(100);
        put(&store, "a", json!({"app": "x"}));
        let mut rx = start(store.clone(), hub, spec(&key, Start::After(1), "app=x"));
        put(&store, "a", json!({"app": "y"}));
        put(&store, "a", json!({"app": "x"}));
        put(&store, "a", json!({"app": "x", "more": "1"}));
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(kind_of(&rx.recv().await.unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                ("DELETED".into(), "a".into()),
                ("ADDED".into(), "a".into()),
                ("MODIFIED".into(), "a".into())
            ]
        );
    }

    /// Regression test for issue 13: a watch with bookmarks and a timeout
    /// gets a bookmark 2 s before the timeout (before the one-minute
    /// heartbeat), then ends; without time for it, none.
    #[tokio::test(start_paused = true)]
    async fn a_bookmark_should_come_two_seconds_before_the_timeout() {
        let (store, hub, key) = setup(100);
        put(&store, "a", json!({}));
        let with_timeout = |seconds| {
            let mut s = spec(&key, Start::After(1), "");
            s.bookmarks = true;
            s.timeout = Some(Duration::from_secs(seconds));
            s
        };
        let started = tokio::time::Instant::now();
        let mut rx = start(store.clone(), hub.clone(), with_timeout(10));
        let bookmark: Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], "1");
        assert_eq!(started.elapsed(), Duration::from_secs(8));
        assert!(rx.recv().await.is_none(), "then the watch times out");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let mut rx = start(store.clone(), hub, with_timeout(1));
        assert!(rx.recv().await.is_none(), "no bookmark in a 1 s watch");
    }

    #[tokio::test]
    async fn initial_events_should_end_with_an_annotated_bookmark() {
        let (store, hub, key) = setup(100);
        put(&store, "a", json!({}));
        put(&store, "b", json!({}));
        let mut rx = start(store.clone(), hub, spec(&key, Start::InitialEvents, ""));
        assert_eq!(kind_of(&rx.recv().await.unwrap()).0, "ADDED");
        assert_eq!(kind_of(&rx.recv().await.unwrap()).0, "ADDED");
        let bookmark: Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], "2");
        assert_eq!(
            bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
    }

    #[tokio::test]
    async fn slow_watchers_should_catch_up_from_history() {
        let (store, hub, key) = setup(5000);
        let mut rx = start(store.clone(), hub, spec(&key, Start::After(0), ""));
        for i in 0..(FANOUT_CAPACITY * 2) {
            put(&store, &format!("o{i}"), json!({}));
        }
        for i in 0..(FANOUT_CAPACITY * 2) {
            let (t, name) = kind_of(&rx.recv().await.unwrap());
            assert_eq!((t.as_str(), name), ("ADDED", format!("o{i}")));
        }
    }

    #[tokio::test]
    async fn resuming_before_the_window_should_send_a_410_error_event() {
        let (store, hub, key) = setup(2);
        for i in 0..5 {
            put(&store, &format!("o{i}"), json!({}));
        }
        let mut rx = start(store, hub, spec(&key, Start::After(1), ""));
        let v: Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["code"], 410);
        assert_eq!(v["object"]["reason"], "Expired");
        assert!(rx.recv().await.is_none());
    }
}
