//! The reactor: one watcher per resource, a worker per object, and the
//! application of what processing decided.
//!
//! Each object's events go to its own worker through a `watch` channel, so
//! only the latest state is processed (events batch for a short window);
//! objects are processed in parallel, one worker at a time per object. After
//! its own patch, a worker waits until the watch stream shows that
//! resourceVersion (or a later one) before it processes the object again,
//! so a handler never runs twice for one change.

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use kube::{
    api::{ApiResource, DynamicObject, Patch as KubePatch, PatchParams},
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::{
    daemons::{Env, Post, Spawned, Writer},
    handling::{Events, Logger, Memo, Posting},
    indexing::{Exclusions, Indexer},
    indices::Indices,
    processing::{process, Inputs},
    references::Resource,
    registry::Handler,
    settings::Settings,
    stopping::StopReason,
};

/// What a worker is told about its object.
#[derive(Clone, Debug)]
enum Seen {
    /// The object's latest state; `true` while the initial listing runs.
    Object(Arc<Value>, bool),
    /// The object is gone.
    Gone,
}

/// Everything the workers of one resource share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) resource: Resource,
    pub(crate) api_resource: ApiResource,
    pub(crate) status_subresource: bool,
    pub(crate) handlers: Vec<Handler>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) poster: mpsc::UnboundedSender<Posting>,
    /// The operator-wide memo.
    pub(crate) memo: Memo,
    /// The operator-wide bound on objects processed at once.
    pub(crate) limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Watches whose initial listing is not dispatched yet (operator-wide).
    pub(crate) listings: Arc<std::sync::atomic::AtomicUsize>,
    /// The operator's indices.
    pub(crate) indices: Indices,
    /// Watches of indexed resources not listed and indexed yet
    /// (operator-wide): nothing is handled before it reaches zero.
    pub(crate) indexing: Arc<watch::Sender<usize>>,
    /// Whether peering paused the operator (nothing is handled meanwhile).
    pub(crate) paused: watch::Receiver<bool>,
}

impl Shared {
    /// Waits until the operator is not paused.
    async fn unpaused(&self) {
        let _ = self.paused.clone().wait_for(|p| !*p).await;
    }

    /// Waits until every indexed resource is listed and indexed.
    async fn indexed(&self) {
        let _ = self.indexing.subscribe().wait_for(|n| *n == 0).await;
    }

    fn indexer(&self) -> Indexer<'_> {
        Indexer {
            handlers: &self.handlers,
            indices: &self.indices,
            resource: &self.resource,
            client: &self.client,
            settings: &self.settings,
            memo: &self.memo,
        }
    }

    /// Whether an index handler reads this resource.
    pub(crate) fn is_indexed(&self) -> bool {
        self.handlers
            .iter()
            .any(|h| h.reason == crate::references::Reason::Index)
    }

    /// One of this resource's watches listed its objects (or stopped
    /// before it could): readiness and the indexing gate count it done.
    fn listed(&self) {
        if self.is_indexed() {
            self.indexing.send_modify(|n| *n = n.saturating_sub(1));
        }
        if self
            .listings
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.observe(|o| o.set_ready());
        }
    }

    /// Reports to the observer, if there is one.
    pub(crate) fn observe(&self, f: impl FnOnce(&crate::observing::Observer)) {
        if let Some(o) = &self.settings.observer {
            f(o);
        }
    }

    /// `plural` or `plural.group`, as the observer names resources.
    pub(crate) fn resource_key(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    /// The observer's key of an object of this resource.
    fn object_key(&self, key: &str) -> String {
        format!("{} {key}", self.resource)
    }
}

fn rv_of(body: &Value) -> Option<&str> {
    body.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Whether `seen` is at least the resourceVersion `expected`.
fn reached(seen: Option<&str>, expected: &str) -> bool {
    match (
        seen.and_then(|s| s.parse::<u64>().ok()),
        expected.parse::<u64>().ok(),
    ) {
        (Some(s), Some(e)) => s >= e,
        _ => seen == Some(expected),
    }
}

/// Watches one resource (in one namespace, or all) until `stop` fires.
/// The caller counts the watch in `listings` (and `indexing`) first.
pub(crate) async fn watch_resource(
    shared: Arc<Shared>,
    namespace: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(shared.client.clone(), ns, &shared.api_resource),
        None => Api::all_with(shared.client.clone(), &shared.api_resource),
    };
    shared.observe(|o| o.watching(&shared.resource_key(), namespace.as_deref()));
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
    let mut workers: HashMap<String, watch::Sender<Seen>> = HashMap::new();
    // Awaited when the watch ends, so that daemons stop before cleanup.
    let mut tasks = tokio::task::JoinSet::new();
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut listing = false;
    let mut listed = false;
    let indexing = shared.is_indexed();
    let mut excluded = Exclusions::default();
    let mut relisted: Option<std::collections::HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = stop.changed() => break,
        };
        let Some(event) = event else { break };
        let (obj, initial, gone) = match event {
            Ok(watcher::Event::Init) => {
                listing = true;
                relisted = Some(std::collections::HashSet::new());
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                listing = false;
                if let Some(listed) = relisted.take().filter(|_| indexing) {
                    shared.indexer().keep_only(&listed, namespace.as_deref());
                }
                if !listed {
                    listed = true;
                    shared.listed();
                }
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => (o, true, false),
            Ok(watcher::Event::Apply(o)) => (o, listing, false),
            Ok(watcher::Event::Delete(o)) => (o, false, true),
            Err(e) => {
                let e = crate::forbidden::explain_watch(&e);
                tracing::warn!("Watching {} failed; retrying: {e}", shared.resource);
                continue;
            }
        };
        let rv = obj
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok())
            .unwrap_or(0);
        let key = format!(
            "{}/{}",
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default()
        );
        let body = match serde_json::to_value(&obj) {
            Ok(b) => Arc::new(b),
            Err(_) => continue,
        };
        // The raw event's type (`None` in the initial listing, as in Kopf).
        let event_type = if gone {
            known.remove(&key);
            Some("DELETED")
        } else if initial {
            known.insert(key.clone());
            None
        } else if known.insert(key.clone()) {
            Some("ADDED")
        } else {
            Some("MODIFIED")
        };
        if indexing {
            // Indices first: whatever handles the event sees them current.
            if gone {
                shared.indexer().discard(&key, &mut excluded);
            } else {
                shared.indexer().index(&key, &body, &mut excluded).await;
            }
        }
        if let Some(listed) = relisted.as_mut().filter(|_| initial) {
            listed.insert(key.clone());
        }
        spawn_event_handlers(&shared, &body, event_type.map_or(Value::Null, Value::from));
        let has_workers = shared.handlers.iter().any(|h| {
            !matches!(
                h.reason,
                crate::references::Reason::Event | crate::references::Reason::Index
            )
        });
        // Never replace a newer state with an older one (a stale event).
        let stale = !gone
            && workers.get(&key).is_some_and(|tx| match &*tx.borrow() {
                Seen::Object(old, _) => rv_of(old).is_some_and(|o| !reached(rv_of(&body), o)),
                Seen::Gone => false,
            });
        if has_workers && !stale && (!gone || workers.contains_key(&key)) {
            // Queued before seen: whoever sees the resourceVersion sees the work too.
            shared.observe(|o| {
                let what = format!("{} at rv {rv}", event_type.unwrap_or("listed"));
                o.queued(&shared.object_key(&key), what);
            });
        }
        shared.observe(|o| o.seen(&shared.resource_key(), rv));
        if !has_workers {
            continue;
        }
        let seen = if gone {
            Seen::Gone
        } else {
            Seen::Object(body, initial)
        };
        if stale {
            continue;
        }
        if let Some(tx) = workers.get(&key) {
            if tx.send(seen.clone()).is_ok() {
                continue;
            }
        }
        if gone {
            // Its worker is already gone: nothing is queued after all.
            workers.remove(&key);
            shared.observe(|o| o.gone(&shared.object_key(&key)));
            continue;
        }
        let (tx, rx) = watch::channel(seen);
        workers.insert(key.clone(), tx);
        let observed = shared.object_key(&key);
        let shared = shared.clone();
        let stop = stop.clone();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            worker(shared.clone(), &observed, rx, stop).await;
            shared.observe(|o| o.gone(&observed));
        });
    }
    drop(workers);
    while tasks.join_next().await.is_some() {}
    if !listed {
        shared.listed();
    }
}

/// Posts a log line about `body` as a Kubernetes Event, if the settings
/// say so (never about Events themselves).
fn post_line(shared: &Shared, body: &Value, line: &crate::handling::LogLine) {
    let settings = &shared.settings;
    if settings.posting.enabled
        && line.level >= settings.posting.level
        && !(shared.resource.group.is_empty() && shared.resource.plural == "events")
    {
        let _ = shared
            .poster
            .send(crate::posting::from_line(body.clone(), line));
    }
}

/// What the daemons and timers of one object need from the reactor.
fn spawning_env(shared: &Arc<Shared>, observed: &str, namespace: &str, name: &str) -> Arc<Env> {
    let write: Writer = {
        let shared = shared.clone();
        let (namespace, name) = (namespace.to_string(), name.to_string());
        Arc::new(move |patch| {
            let shared = shared.clone();
            let (namespace, name) = (namespace.clone(), name.clone());
            Box::pin(async move {
                match apply(&shared, &namespace, &name, patch).await {
                    Ok(_) | Err(Failure::Gone) => {}
                    Err(Failure::Conflict) => tracing::debug!(
                        "[{namespace}/{name}] Patching conflicted; the result is dropped."
                    ),
                    Err(Failure::Other(e)) => {
                        tracing::error!("[{namespace}/{name}] Patching failed: {e}");
                    }
                }
            })
        })
    };
    let post: Post = {
        let shared = shared.clone();
        Arc::new(move |body, line| post_line(&shared, body, line))
    };
    Arc::new(Env {
        resource: shared.resource.clone(),
        client: shared.client.clone(),
        settings: shared.settings.clone(),
        memo: shared.memo.child(),
        poster: Some(shared.poster.clone()),
        indices: shared.indices.clone(),
        write,
        post,
        observed: observed.to_string(),
    })
}

/// Runs the event handlers that accept `body`, each in its own task.
fn spawn_event_handlers(shared: &Arc<Shared>, body: &Arc<Value>, event_type: Value) {
    for handler in shared
        .handlers
        .iter()
        .filter(|h| h.reason == crate::references::Reason::Event)
    {
        if !handler.matches(body) {
            continue;
        }
        let handler = handler.clone();
        let shared = shared.clone();
        let body = body.clone();
        let event_type = event_type.clone();
        shared.observe(|o| o.detached(1));
        tokio::spawn(async move {
            shared.indexed().await;
            shared.unpaused().await;
            let now = shared.settings.clock.now();
            let mut ctx = crate::handling::Context::new(
                (*body).clone(),
                handler.id.clone(),
                crate::references::Reason::Event,
                shared.resource.clone(),
                now,
                Logger::for_body(&body, shared.settings.log_sink.clone()),
                shared.memo.child(),
                shared.client.clone(),
                Events::new(Some(shared.poster.clone()), (*body).clone()),
            );
            ctx.param.clone_from(&handler.param);
            ctx.indices = shared.indices.clone();
            ctx.event = Some(serde_json::json!({"type": event_type, "object": *body}));
            let limits = crate::handling::Limits {
                retries: None,
                timeout: None,
                backoff: shared.settings.execution.default_backoff,
                errors: crate::handling::ErrorsMode::Ignored,
            };
            crate::handling::attempt(
                &handler.func,
                ctx,
                &limits,
                &format!("Handler '{}'", handler.id),
            )
            .await;
            shared.observe(|o| o.detached(-1));
        });
    }
}

/// Handles one object until it is gone or the operator stops.
async fn worker(
    shared: Arc<Shared>,
    observed: &str,
    mut rx: watch::Receiver<Seen>,
    mut stop: watch::Receiver<bool>,
) {
    let memo = shared.memo.child();
    let mut wake: Option<tokio::time::Instant> = None;
    let mut awaiting: Option<(String, tokio::time::Instant)> = None;
    let mut first = true;
    let mut pending: Option<crate::structs::Patch> = None;
    let mut newest: Option<String> = None;
    let (mut last_ns, mut last_name) = (String::new(), String::new());
    let spawning = shared.handlers.iter().any(|h| h.reason.is_spawning());
    shared.indexed().await;
    let mut spawned: Option<(Spawned, Arc<Env>)> = None;
    let mut paused = shared.paused.clone();
    loop {
        if !first {
            let sleep_until = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let exiting = tokio::select! {
                changed = rx.changed() => changed.is_err(),
                _ = sleep_until => { wake = None; false }
                _ = paused.changed() => false,
                _ = stop.changed() => true,
            };
            if exiting {
                if let Some((s, _)) = &mut spawned {
                    s.stop_all(StopReason::OperatorExiting).await;
                }
                return;
            }
        }
        first = false;
        if *paused.borrow_and_update() {
            // Paused by peering: daemons stop (to start again on resume),
            // and nothing is handled until the pause ends.
            if let Some((s, _)) = &mut spawned {
                s.stop_all(StopReason::OperatorPausing).await;
            }
            // Not work in progress meanwhile (what is queued waits).
            shared.observe(|o| {
                o.taken(observed);
                o.done(observed, None, "paused by peering".into());
            });
            let resumed = tokio::select! {
                _ = paused.wait_for(|p| !*p) => true,
                _ = stop.changed() => false,
            };
            if !resumed {
                return;
            }
        }
        // Busy from now on (not only after the batch window), for observers.
        shared.observe(|o| o.taken(observed));
        // Batch: let more events for this object arrive, keep only the latest.
        tokio::time::sleep(shared.settings.batching.batch_window).await;
        let seen = rx.borrow_and_update().clone();
        // Whatever arrived during the batch window is taken now too: its
        // change is consumed here, so no `changed()` will take it later.
        shared.observe(|o| o.taken(observed));
        let (body, initial) = match seen {
            Seen::Gone => {
                if let Some((s, _)) = &mut spawned {
                    s.stop_all(StopReason::ObjectGone).await;
                }
                Logger::with_sink(&last_ns, &last_name, shared.settings.log_sink.clone())
                    .debug("Deleted, really deleted, and we are notified.");
                return;
            }
            Seen::Object(body, initial) => (body, initial),
        };
        // An older version than one already handled is a stale event: skip it.
        if let Some(newest) = &newest {
            if !reached(rv_of(&body), newest) {
                shared.observe(|o| {
                    let seen = rv_of(&body).unwrap_or("?");
                    let note = format!("skipped rv {seen} as stale (rv {newest} was handled)");
                    o.done(observed, wake, note);
                });
                continue;
            }
        }
        if let Some(rv) = rv_of(&body) {
            newest = Some(rv.to_string());
        }
        if let Some((expected, deadline)) = &awaiting {
            if !reached(rv_of(&body), expected) && tokio::time::Instant::now() < *deadline {
                shared.observe(|o| {
                    let seen = rv_of(&body).unwrap_or("?");
                    let note = format!(
                        "waits for its own patch (rv {expected}) in the watch; has seen rv {seen}"
                    );
                    o.done(observed, wake, note);
                });
                continue;
            }
            awaiting = None;
        }
        let namespace = body
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if spawning {
            let deleting = body
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let (s, env) = spawned.get_or_insert_with(|| {
                (
                    Spawned::new(&body),
                    spawning_env(&shared, observed, &namespace, &name),
                )
            });
            if deleting {
                // Daemons and timers exit before the finalizer is released.
                if s.is_running() {
                    s.stop_all(StopReason::Deletion).await;
                }
            } else {
                s.update(&body, &shared.handlers, env);
            }
        }
        if let Some(mut retry) = pending.take() {
            // A write that failed earlier goes first, against the newer version.
            retry.remove(&["metadata", "resourceVersion"]);
            match Box::pin(apply(&shared, &namespace, &name, retry.clone())).await {
                Ok(rv) => {
                    if let Some(rv) = rv {
                        awaiting = Some((
                            rv,
                            tokio::time::Instant::now() + shared.settings.batching.patch_wait,
                        ));
                    }
                    shared.observe(|o| {
                        let now_at = awaiting.as_ref().map_or("?", |(rv, _)| rv.as_str());
                        let note =
                            format!("wrote a patch that had failed before; now at rv {now_at}");
                        o.done(observed, wake, note);
                    });
                    continue;
                }
                Err(Failure::Gone) => return,
                Err(_) => {
                    pending = Some(retry);
                    let throttle = tokio::time::Instant::now()
                        + shared
                            .settings
                            .execution
                            .error_throttle
                            .min(std::time::Duration::from_secs(1));
                    wake = Some(wake.map_or(throttle, |w| w.min(throttle)));
                    shared.observe(|o| {
                        o.done(observed, wake, "retrying a patch that failed again".into());
                    });
                    continue;
                }
            }
        }
        let logger = Logger::for_body(&body, shared.settings.log_sink.clone());
        last_ns.clone_from(&namespace);
        last_name.clone_from(&name);
        let settings = &shared.settings;
        let _permit = match &shared.limit {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        };
        // Boxed, so that an idle worker's own future stays small.
        let decision = Box::pin(process(
            &body,
            Inputs {
                resource: &shared.resource,
                handlers: &shared.handlers,
                progress: &settings.persistence.progress,
                diffbase: &settings.persistence.diffbase,
                finalizer: &settings.persistence.finalizer,
                backoff: settings.execution.default_backoff,
                initial,
                now: settings.clock.now(),
                logger: &logger,
                memo: &memo,
                client: &shared.client,
                events: &Events::new(Some(shared.poster.clone()), (*body).clone()),
                exited: spawned.as_ref().map(|(s, _)| s.finished()),
                indices: &shared.indices,
            },
        ))
        .await;
        for line in logger.drain() {
            post_line(&shared, &body, &line);
        }
        wake = decision
            .delay
            .and_then(|d| tokio::time::Instant::now().checked_add(d));
        // What the worker did, for observers (formatted only for them).
        let handled = || format!("handled rv {}", rv_of(&body).unwrap_or("?"));
        if decision.patch.is_empty() {
            shared.observe(|o| o.done(observed, wake, format!("{}; nothing to write", handled())));
            continue;
        }
        // Kept until written: if the write fails, it is retried as is, so a
        // handler that succeeded is not invoked again for the same change.
        pending = Some(decision.patch.clone());
        let mut failed = None;
        match Box::pin(apply(&shared, &namespace, &name, decision.patch)).await {
            Ok(Some(rv)) => {
                pending = None;
                awaiting = Some((
                    rv,
                    tokio::time::Instant::now() + settings.batching.patch_wait,
                ));
            }
            Ok(None) => pending = None,
            Err(Failure::Gone) => return,
            Err(Failure::Conflict) => {
                // The object changed in between, or the server refused for now:
                // process again with the latest version we have (a newer one,
                // if the watch brings it first).
                tracing::debug!(
                    "[{namespace}/{name}] Patching conflicted; will retry with the newer version."
                );
                wake = Some(tokio::time::Instant::now());
                failed = Some("conflicted (409)".to_string());
            }
            Err(Failure::Other(e)) => {
                tracing::error!("[{namespace}/{name}] Patching failed: {e}");
                failed = Some(format!("failed: {e}"));
                let throttle = tokio::time::Instant::now() + settings.execution.error_throttle;
                wake = Some(wake.map_or(throttle, |w| w.min(throttle)));
            }
        }
        shared.observe(|o| {
            let did = match (&failed, &awaiting) {
                (Some(why), _) => format!("its patch {why}, to be retried"),
                (None, Some((rv, _))) => format!("patched it to rv {rv}, to be seen in the watch"),
                (None, None) => "patched it".into(),
            };
            o.done(observed, wake, format!("{}; {did}", handled()));
        });
    }
}

enum Failure {
    Gone,
    Conflict,
    /// Anything else, as a log line says it.
    Other(String),
}

/// Applies a merge patch (the status part through `/status` when the
/// resource has that subresource); returns the last resourceVersion written.
async fn apply(
    shared: &Shared,
    namespace: &str,
    name: &str,
    mut patch: crate::structs::Patch,
) -> Result<Option<String>, Failure> {
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(shared.client.clone(), &shared.api_resource)
    } else {
        Api::namespaced_with(shared.client.clone(), namespace, &shared.api_resource)
    };
    let classify = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 404 => Failure::Gone,
        kube::Error::Api(s) if s.code == 409 => Failure::Conflict,
        _ => Failure::Other(crate::forbidden::explain(&e)),
    };
    let params = PatchParams::default();
    let mut rv = None;
    let status = if shared.status_subresource {
        patch.take_status()
    } else {
        None
    };
    if !patch.is_empty() {
        let done = api
            .patch(name, &params, &KubePatch::Merge(patch.to_value()))
            .await
            .map_err(classify)?;
        rv = done.metadata.resource_version;
    }
    if let Some(status) = status {
        let done = api
            .patch_status(
                name,
                &params,
                &KubePatch::Merge(serde_json::json!({"status": status})),
            )
            .await
            .map_err(classify)?;
        rv = done.metadata.resource_version;
    }
    Ok(rv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_should_compare_numerically_when_possible() {
        assert!(reached(Some("10"), "9"));
        assert!(!reached(Some("9"), "10"));
        assert!(reached(Some("abc"), "abc"));
        assert!(!reached(None, "1"));
    }
}
