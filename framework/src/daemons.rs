//! Daemons and timers (an engine): tasks that live beside an object for as
//! long as it exists and passes their filters.
//!
//! A daemon is invoked once and runs until it returns, fails for good, or is
//! asked to stop; temporary failures restart it after a backoff. A timer is
//! invoked every `interval` (after the previous run ends, or aligned to the
//! interval when `sharp`), optionally only once the object has been
//! unchanged for `idle`. Both get a stop signal: on deletion (the object's
//! finalizer waits for them), when the filters stop matching, when the
//! object is gone, and when the operator exits; after `cancellation_timeout`
//! they are cancelled. Their results and patches are written like handlers'.
//!
//! To observers (a test's `settle`), a timer's run is work in progress; a
//! daemon never is, since it may run for the object's whole life.
//!
//! The owner (the reactor's per-object worker) tells [`Spawned`] about each
//! new state of the object and asks it to stop everything; writing patches
//! and posting log lines are given to it as functions.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    handling::{attempt, Context, Events, Limits, LogLine, Logger, Memo, Outcome, Posting},
    references::{Reason, Resource},
    registry::Handler,
    settings::Settings,
    stopping::{signal, ParkHook, StopReason, Stopped, Stopper},
    structs::Patch,
};

/// Writes a merge patch to the object.
pub(crate) type Writer = Arc<dyn Fn(Patch) -> BoxFuture<'static, ()> + Send + Sync>;

/// Posts a log line about the object (as a Kubernetes Event, per the
/// settings).
pub(crate) type Post = Arc<dyn Fn(&Value, &LogLine) + Send + Sync>;

/// What the daemons and timers of one object share.
pub(crate) struct Env {
    pub(crate) resource: Resource,
    pub(crate) client: kube::Client,
    /// Shared by every object of the resource.
    pub(crate) settings: Arc<Settings>,
    pub(crate) memo: Memo,
    pub(crate) poster: Option<tokio::sync::mpsc::UnboundedSender<Posting>>,
    pub(crate) indices: crate::indices::Indices,
    pub(crate) write: Writer,
    pub(crate) post: Post,
    /// The observer's key of the object.
    pub(crate) observed: String,
}

/// The latest state of the object, and when it last changed.
#[derive(Clone)]
struct Latest {
    body: watch::Receiver<Arc<Value>>,
    changed: watch::Receiver<Instant>,
}

/// A running daemon or timer.
struct Running {
    stopper: Stopper,
    task: JoinHandle<()>,
    backoff: Option<Duration>,
    timeout: Option<Duration>,
    blocking: bool,
    label: String,
    logger: Logger,
}

/// The daemons and timers of one object.
pub(crate) struct Spawned {
    body: watch::Sender<Arc<Value>>,
    /// A hash of the essence last seen (what `idle` timers watch for changes).
    essence: Option<u64>,
    changed: watch::Sender<Instant>,
    running: BTreeMap<String, Running>,
    /// Exited on their own or failed for good: not spawned again while the
    /// operator runs (as in Kopf).
    finished: BTreeSet<String>,
}

fn rv(body: &Value) -> Option<&str> {
    body.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

fn label(h: &Handler) -> String {
    match h.reason {
        Reason::Timer => format!("Timer '{}'", h.id),
        _ => format!("Daemon '{}'", h.id),
    }
}

fn meta(body: &Value, key: &str) -> String {
    body.pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Spawned {
    pub(crate) fn new(body: &Arc<Value>) -> Self {
        Spawned {
            body: watch::Sender::new(body.clone()),
            essence: None,
            changed: watch::Sender::new(Instant::now()),
            running: BTreeMap::new(),
            finished: BTreeSet::new(),
        }
    }

    /// A new state of the (existing, not deleted) object: passes it on,
    /// starts the daemons and timers that match and are not running, and
    /// stops those that no longer match.
    pub(crate) fn update(&mut self, body: &Arc<Value>, handlers: &[Handler], env: &Arc<Env>) {
        if rv(body) != rv(&self.body.borrow()) {
            self.body.send_replace(body.clone());
        }
        // Idle timers count from the last change of the essence (not of
        // the status or the operator's own annotations), as Kopf does.
        let persistence = &env.settings.persistence;
        let essence = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            persistence
                .diffbase
                .current(body, &persistence.progress)
                .to_string()
                .hash(&mut h);
            h.finish()
        };
        if self.essence != Some(essence) {
            if self.essence.is_some() {
                self.changed.send_replace(Instant::now());
            }
            self.essence = Some(essence);
        }
        self.keep_exited_finished();
        for h in handlers.iter().filter(|h| h.reason.is_spawning()) {
            let matches = h.matches(body);
            if let Some(r) = self.running.get(&h.id) {
                if !matches {
                    r.logger.debug(format!(
                        "{} is stopping: {}.",
                        r.label,
                        StopReason::FiltersMismatch
                    ));
                    r.stopper.stop(StopReason::FiltersMismatch);
                    if let Some(r) = self.running.remove(&h.id) {
                        tokio::spawn(reap(r));
                    }
                }
                continue;
            }
            if matches && !self.finished.contains(&h.id) {
                let running = self.spawn(h, env);
                self.running.insert(h.id.clone(), running);
            }
        }
    }

    /// The daemons and timers that exited for good (they no longer need
    /// the finalizer).
    pub(crate) fn finished(&self) -> &BTreeSet<String> {
        &self.finished
    }

    /// Moves the daemons and timers that exited on their own to `finished`.
    fn keep_exited_finished(&mut self) {
        let exited: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in exited {
            self.running.remove(&id);
            self.finished.insert(id);
        }
    }

    /// Whether any daemon or timer is running.
    pub(crate) fn is_running(&self) -> bool {
        !self.running.is_empty()
    }

    /// Asks every daemon and timer to stop, and waits until they all have
    /// (each in parallel through its cancellation sequence, see `reap`).
    pub(crate) async fn stop_all(&mut self, reason: StopReason) {
        // Those that already exited for good stay finished (a pause must
        // not bring them back).
        self.keep_exited_finished();
        for r in self.running.values() {
            if !r.task.is_finished() {
                r.logger
                    .debug(format!("{} is stopping: {reason}.", r.label));
            }
            r.stopper.stop(reason);
        }
        let running = std::mem::take(&mut self.running);
        if reason != StopReason::OperatorPausing {
            // Paused ones start again on resume; the others are done.
            self.finished.extend(running.keys().cloned());
        }
        futures::future::join_all(running.into_values().map(reap)).await;
    }

    fn spawn(&self, h: &Handler, env: &Arc<Env>) -> Running {
        // Unique per spawn: a respawned daemon must not share the key of
        // its predecessor, which may still be exiting.
        static SPAWNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SPAWNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = format!("{} {} '{}' #{n}", env.observed, h.reason.as_str(), h.id);
        let observer = env.settings.observer.clone();
        // A timer's run is work to wait for (it ends); a daemon's is not (it
        // may never end): to observers, a daemon is always parked, with its
        // next wake-up when it sleeps on its stop signal.
        let daemon = h.reason == Reason::Daemon;
        let park: Option<ParkHook> = observer.clone().map(|o| {
            let key = key.clone();
            Arc::new(move |state: Option<Option<Instant>>| {
                o.spawned(&key, if daemon { Some(state.flatten()) } else { state });
            }) as ParkHook
        });
        let (stopped, stopper) = signal(park);
        let stopped = stopped.on_virtual_time(matches!(
            env.settings.clock,
            crate::settings::Clock::Tokio(..)
        ));
        if let Some(o) = &observer {
            o.spawned(&key, daemon.then_some(None));
        }
        let latest = Latest {
            body: self.body.subscribe(),
            changed: self.changed.subscribe(),
        };
        let body = self.body.borrow().clone();
        let post = env.post.clone();
        let involved = crate::handling::reference(&body);
        let logger = Logger::with_sink(
            &meta(&body, "namespace"),
            &meta(&body, "name"),
            env.settings.log_sink.clone(),
        )
        .with_hook(Arc::new(move |line| post(&involved, line)));
        let task = {
            let (h, env, logger) = (h.clone(), env.clone(), logger.clone());
            tokio::spawn(async move {
                // Reports the exit even when cancelled.
                let _exit = Unspawn(observer, key);
                match h.reason {
                    Reason::Timer => run_timer(&h, &env, &logger, stopped, latest).await,
                    _ => run_daemon(&h, &env, &logger, stopped, latest).await,
                }
            })
        };
        Running {
            stopper,
            task,
            backoff: h.spawning.cancellation_backoff,
            timeout: h.spawning.cancellation_timeout,
            blocking: h.spawning.blocking,
            label: label(h),
            logger,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.stopper.stop(StopReason::OperatorExiting);
            r.task.abort();
        }
    }
}

/// Tells the observer that a daemon or timer has exited.
struct Unspawn(Option<crate::observing::Observer>, String);

impl Drop for Unspawn {
    fn drop(&mut self) {
        if let Some(o) = &self.0 {
            o.unspawned(&self.1);
        }
    }
}

/// How often an exiting daemon with no `cancellation_timeout` is checked.
const POLLING: Duration = Duration::from_secs(60);

/// Waits for a stopped daemon or timer to exit, as Kopf does: a chance to
/// exit at once; then `cancellation_backoff` to exit gracefully; then,
/// with a `cancellation_timeout`, cancellation (a blocking daemon cannot be
/// cancelled: it gets the timeout, then is left orphaned); without one, it
/// is waited for as long as it runs.
async fn reap(mut r: Running) {
    for _ in 0..10 {
        if r.task.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    if let Some(backoff) = r.backoff.filter(|_| !r.task.is_finished()) {
        r.logger
            .debug(format!("{} is signalled to exit gracefully.", r.label));
        if tokio::time::timeout(backoff, &mut r.task).await.is_ok() {
            return;
        }
    }
    if r.task.is_finished() {
        return;
    }
    match r.timeout {
        Some(timeout) => {
            r.logger
                .debug(format!("{} is signalled to exit by force.", r.label));
            if r.blocking {
                if tokio::time::timeout(timeout, &mut r.task).await.is_err() {
                    r.logger.warn(format!(
                        "{} did not exit in time. Leaving it orphaned.",
                        r.label
                    ));
                    r.task.abort();
                }
            } else {
                r.task.abort();
                r.logger
                    .warn(format!("{} is cancelled. Will escalate.", r.label));
                let _ = (&mut r.task).await;
            }
        }
        None => {
            while tokio::time::timeout(POLLING, &mut r.task).await.is_err() {
                r.logger.debug(format!(
                    "{} is still exiting. The next check is in {} seconds.",
                    r.label,
                    crate::handling::py_seconds(POLLING)
                ));
            }
        }
    }
}

/// One invocation: the context, the attempt, then the result and patch
/// written and the log lines posted.
async fn invoke(
    h: &Handler,
    env: &Env,
    logger: &Logger,
    stopped: &Stopped,
    latest: &Latest,
    retry: u32,
    started: jiff::Timestamp,
) -> Outcome {
    let body = latest.body.borrow().clone();
    let now = env.settings.clock.now();
    let mut ctx = Context::new(
        (*body).clone(),
        h.id.clone(),
        h.reason,
        env.resource.clone(),
        started,
        logger.clone(),
        env.memo.clone(),
        env.client.clone(),
        Events::new(env.poster.clone(), (*body).clone()),
    );
    ctx.retry = retry;
    ctx.runtime = Duration::try_from(now.duration_since(started)).unwrap_or_default();
    ctx.param.clone_from(&h.param);
    ctx.stopped = stopped.clone();
    ctx.latest = Some(latest.body.clone());
    ctx.indices = env.indices.clone();
    let handle = ctx.patch.clone();
    let limits = Limits {
        retries: h.retries,
        timeout: h.timeout,
        backoff: h.backoff.unwrap_or(env.settings.execution.default_backoff),
        errors: h.errors,
    };
    let outcome = attempt(&h.func, ctx, &limits, &label(h)).await;
    let mut patch = handle.take();
    if let Outcome::Success(Some(value)) = &outcome {
        patch.set(&["status", &h.id], value.clone());
    }
    if !patch.is_empty() {
        (env.write)(patch).await;
    }
    outcome
}

async fn run_daemon(h: &Handler, env: &Env, logger: &Logger, stopped: Stopped, latest: Latest) {
    if let Some(delay) = h.spawning.initial_delay {
        if stopped.sleep(delay).await {
            return;
        }
    }
    let started = env.settings.clock.now();
    let mut retry = 0;
    loop {
        let outcome = invoke(h, env, logger, &stopped, &latest, retry, started).await;
        let Outcome::Retry { delay, .. } = outcome else {
            let how = if stopped.is_set() {
                "on request"
            } else {
                "on its own"
            };
            logger.debug(format!(
                "{} has exited {how} and will not be retried or restarted.",
                label(h)
            ));
            return;
        };
        if stopped.sleep(delay).await {
            return;
        }
        retry += 1;
    }
}

async fn run_timer(h: &Handler, env: &Env, logger: &Logger, stopped: Stopped, mut latest: Latest) {
    let interval = h.spawning.interval.unwrap_or(Duration::from_secs(60));
    if let Some(delay) = h.spawning.initial_delay {
        if stopped.sleep(delay).await {
            return;
        }
    }
    let origin = Instant::now();
    let mut started = env.settings.clock.now();
    let mut retry = 0;
    loop {
        if let Some(idle) = h.spawning.idle {
            // Restart the countdown with every change of the object.
            loop {
                let since = latest.changed.borrow_and_update().elapsed();
                if since >= idle {
                    break;
                }
                tokio::select! {
                    stop = stopped.sleep(idle - since) => if stop { return },
                    changed = latest.changed.changed() => if changed.is_err() { return },
                }
            }
        }
        let outcome = invoke(h, env, logger, &stopped, &latest, retry, started).await;
        if let Outcome::Retry { delay, .. } = outcome {
            if stopped.sleep(delay).await {
                return;
            }
            retry += 1;
            continue;
        }
        retry = 0;
        let wait = if h.spawning.sharp {
            let nanos = interval.as_nanos().max(1);
            let into = origin.elapsed().as_nanos() % nanos;
            Duration::from_nanos(u64::try_from(nanos - into).unwrap_or(u64::MAX))
        } else {
            interval
        };
        if stopped.sleep(wait).await {
            return;
        }
        started = env.settings.clock.now();
    }
}
