//! Processing one object: from its current body to the cause (create,
//! update, delete, resume or nothing), the finalizer decision, the handlers
//! that are due, their outcomes, and the patch and wake-up time that follow.
//!
//! Pure apart from invoking the handlers: no API calls here (the reactor
//! applies the returned patch), so it is tested with plain JSON bodies.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::{
    handling::{attempt, Context, Events, Limits, Logger, Memo, Outcome, PatchHandle},
    references::{Reason, Resource},
    registry::Handler,
    storage::{DiffBaseStorage, ProgressStorage},
    structs::{diff, reduce, Patch},
};

/// What processing decided.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// The merge patch to apply (empty = nothing to write).
    pub(crate) patch: Patch,
    /// Wake up again after this long (delayed handlers).
    pub(crate) delay: Option<Duration>,
}

/// Everything processing needs besides the body.
pub(crate) struct Inputs<'a> {
    pub(crate) resource: &'a Resource,
    pub(crate) handlers: &'a [Handler],
    pub(crate) progress: &'a ProgressStorage,
    pub(crate) diffbase: &'a DiffBaseStorage,
    pub(crate) finalizer: &'a str,
    pub(crate) backoff: Duration,
    /// First sight of the object since the operator started.
    pub(crate) initial: bool,
    pub(crate) now: Timestamp,
    pub(crate) logger: &'a Logger,
    pub(crate) memo: &'a Memo,
    pub(crate) client: &'a kube::Client,
    pub(crate) events: &'a Events,
    /// Daemons and timers that exited for good: they need no finalizer.
    pub(crate) exited: Option<&'a std::collections::BTreeSet<String>>,
    pub(crate) indices: &'a crate::indices::Indices,
}

fn finalizers(body: &Value) -> Vec<String> {
    body.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn finalizer_patch(body: &Value, list: Vec<String>) -> Patch {
    let mut patch = Patch::new();
    patch.set(&["metadata", "finalizers"], json!(list));
    // A precondition: the patch applies only to the version we looked at.
    if let Some(rv) = body.pointer("/metadata/resourceVersion") {
        patch.set(&["metadata", "resourceVersion"], rv.clone());
    }
    patch
}

/// Decides the cause for `body`.
fn cause(body: &Value, inputs: &Inputs<'_>) -> Option<(Reason, Option<Value>, Value)> {
    let deleting = body
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let new = inputs.diffbase.current(body, inputs.progress);
    if deleting {
        return finalizers(body)
            .iter()
            .any(|f| f == inputs.finalizer)
            .then_some((Reason::Delete, None, new));
    }
    match inputs.diffbase.fetch(body, inputs.progress) {
        None => Some((Reason::Create, None, new)),
        Some(old) if old == new && inputs.initial => Some((Reason::Resume, Some(old), new)),
        Some(old) if old == new => None,
        Some(old) => Some((Reason::Update, Some(old), new)),
    }
}

/// Processes one object once.
pub(crate) async fn process(body: &Value, inputs: Inputs<'_>) -> Decision {
    let logger = inputs.logger;
    let deleting = body
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let present = finalizers(body);
    let has_finalizer = present.iter().any(|f| f == inputs.finalizer);
    // Deletion handlers need the finalizer; so do daemons and timers, to be
    // stopped before the object goes.
    let requires = inputs.handlers.iter().any(|h| {
        let spawning = h.reason.is_spawning() && !inputs.exited.is_some_and(|e| e.contains(&h.id));
        (h.reason == Reason::Delete && !h.optional || spawning) && h.matches(body)
    });
    if !deleting && requires && !has_finalizer {
        logger.debug("Adding the finalizer, thus preventing the actual deletion.");
        let mut list = present;
        list.push(inputs.finalizer.to_string());
        return Decision {
            patch: finalizer_patch(body, list),
            delay: None,
        };
    }
    if !deleting && !requires && has_finalizer {
        logger.debug("Removing the finalizer, as there are no handlers requiring it.");
        let list = present
            .into_iter()
            .filter(|f| f != inputs.finalizer)
            .collect();
        return Decision {
            patch: finalizer_patch(body, list),
            delay: None,
        };
    }
    let Some((reason, old, new)) = cause(body, &inputs) else {
        if deleting {
            logger.debug("Deletion, but we are done with it, and we do not care.");
        } else {
            logger.debug(
                "Something has changed, but we are not interested (the essence is the same).",
            );
        }
        return Decision::default();
    };
    let changes = diff(old.as_ref(), Some(&new));
    let selected: Vec<&Handler> = inputs
        .handlers
        .iter()
        .filter(|h| {
            let wanted = match reason {
                Reason::Resume => h.reason == Reason::Resume,
                Reason::Delete => h.reason == Reason::Delete,
                Reason::Create => {
                    h.reason == Reason::Create || (inputs.initial && h.reason == Reason::Resume)
                }
                Reason::Update => {
                    h.reason == Reason::Update || (inputs.initial && h.reason == Reason::Resume)
                }
                Reason::Event
                | Reason::Startup
                | Reason::Cleanup
                | Reason::Daemon
                | Reason::Timer
                | Reason::Index
                | Reason::Probe
                | Reason::Validate
                | Reason::Mutate => false,
            };
            let field_ok = match (&h.field, reason) {
                (Some(path), Reason::Update | Reason::Create) => {
                    let p: Vec<&str> = path.iter().map(String::as_str).collect();
                    !reduce(&changes, &p).is_empty()
                }
                _ => true,
            };
            wanted && field_ok && h.matches(body) && h.matches_change(old.as_ref(), &new)
        })
        .collect();
    if reason != Reason::Resume || !selected.is_empty() {
        let title = reason.title();
        logger.debug(format!("{} is in progress: {}", capitalize(title), body));
        if reason != Reason::Delete {
            logger.debug(format!(
                "{} diff: {}",
                capitalize(title),
                serde_json::to_string(&changes).unwrap_or_default()
            ));
        }
    }
    let mut patch = Patch::new();
    let mut tally = Tally::default();
    let cause = Cause {
        body,
        reason,
        old: old.as_ref(),
        new: &new,
        changes: &changes,
        inputs: &inputs,
    };
    let top: Vec<Handler> = selected.into_iter().cloned().collect();
    execute(&top, &cause, &mut patch, &mut tally).await;
    let Tally {
        succeeded,
        failed,
        delay: next_delay,
        subrefs,
    } = tally;
    if next_delay.is_none() {
        // The cause is fully handled: purge progress, remember the essence,
        // and release the object if it is being deleted.
        if !top.is_empty() {
            logger.info(format!(
                "{} is processed: {succeeded} succeeded; {failed} failed.",
                capitalize(reason.title())
            ));
        }
        let mut ids: Vec<String> = inputs.handlers.iter().map(|h| h.id.clone()).collect();
        ids.extend(subrefs);
        inputs.progress.purge(body, &mut patch, &ids);
        if reason == Reason::Delete {
            logger.debug("Removing the finalizer, thus allowing the actual deletion.");
            let list: Vec<String> = present
                .into_iter()
                .filter(|f| f != inputs.finalizer)
                .collect();
            patch.merge(&finalizer_patch(body, list).to_value());
        } else if old.as_ref() != Some(&new) {
            inputs.diffbase.store(&mut patch, &new);
        }
    } else if let Some(d) = next_delay {
        logger.debug(format!(
            "Sleeping for {} seconds for the delayed handlers.",
            d.as_secs_f64()
        ));
    }
    Decision {
        patch,
        delay: next_delay,
    }
}

/// What one cycle of handlers came to.
#[derive(Default)]
struct Tally {
    /// Handlers (of the level counted) finished successfully.
    succeeded: usize,
    /// Handlers finished with a failure.
    failed: usize,
    /// The earliest delayed handler (at any depth).
    delay: Option<Duration>,
    /// Every sub-handler id met (to purge their progress at the end).
    subrefs: Vec<String>,
}

impl Tally {
    fn delay(&mut self, d: Duration) {
        self.delay = Some(self.delay.map_or(d, |c| c.min(d)));
    }
}

/// The cause being handled, shared by handlers and their sub-handlers.
struct Cause<'a> {
    body: &'a Value,
    reason: Reason,
    old: Option<&'a Value>,
    new: &'a Value,
    changes: &'a [crate::structs::DiffItem],
    inputs: &'a Inputs<'a>,
}

/// Runs the handlers that are due, each with its own progress record;
/// then the sub-handlers each one registered (ids `parent/child`), in the
/// same cycle: a parent is done once all its sub-handlers are.
fn execute<'a>(
    handlers: &'a [Handler],
    cause: &'a Cause<'a>,
    patch: &'a mut Patch,
    tally: &'a mut Tally,
) -> futures::future::BoxFuture<'a, ()> {
    Box::pin(async move {
        let inputs = cause.inputs;
        for handler in handlers {
            let loaded = inputs.progress.fetch(cause.body, &handler.id);
            let mut record = loaded.clone().unwrap_or_default();
            tally.subrefs.extend(record.subrefs.iter().cloned());
            if record.finished() {
                if record.success {
                    tally.succeeded += 1;
                } else {
                    tally.failed += 1;
                }
                continue;
            }
            let started = *record.started.get_or_insert(inputs.now);
            record
                .purpose
                .get_or_insert_with(|| cause.reason.as_str().to_string());
            if let Some(due) = record.delayed {
                if due > inputs.now {
                    let wait =
                        Duration::try_from(due.duration_since(inputs.now)).unwrap_or_default();
                    tally.delay(wait);
                    // Written only when it differs from what is stored, as Kopf does.
                    if loaded.as_ref() != Some(&record) {
                        inputs.progress.store(patch, &handler.id, &record);
                    }
                    continue;
                }
            }
            let handle = PatchHandle::default();
            let (h_old, h_new, h_diff) = match &handler.field {
                Some(path) => {
                    let p: Vec<&str> = path.iter().map(String::as_str).collect();
                    (
                        cause
                            .old
                            .and_then(|o| crate::structs::resolve(o, &p))
                            .cloned(),
                        crate::structs::resolve(cause.new, &p).cloned(),
                        reduce(cause.changes, &p),
                    )
                }
                None => (
                    cause.old.cloned(),
                    Some(cause.new.clone()),
                    cause.changes.to_vec(),
                ),
            };
            let mut ctx = Context::new(
                cause.body.clone(),
                handler.id.clone(),
                cause.reason,
                inputs.resource.clone(),
                started,
                inputs.logger.clone(),
                inputs.memo.clone(),
                inputs.client.clone(),
                inputs.events.clone(),
            );
            ctx.diff = h_diff;
            ctx.old = h_old;
            ctx.new = h_new;
            ctx.retry = record.retries;
            ctx.runtime =
                Duration::try_from(inputs.now.duration_since(started)).unwrap_or_default();
            ctx.param.clone_from(&handler.param);
            ctx.patch = handle.clone();
            ctx.indices = inputs.indices.clone();
            let children = ctx.accept_subhandlers();
            let limits = Limits {
                retries: handler.retries,
                timeout: handler.timeout,
                backoff: handler.backoff.unwrap_or(inputs.backoff),
                errors: handler.errors,
            };
            let label = format!("Handler '{}'", handler.id);
            let mut outcome = attempt(&handler.func, ctx, &limits, &label).await;
            patch.merge(&handle.take().to_value());
            let registered =
                std::mem::take(&mut *children.lock().unwrap_or_else(|e| e.into_inner()));
            if matches!(outcome, Outcome::Success(_)) && !registered.is_empty() {
                let subs: Vec<Handler> = registered
                    .into_iter()
                    .map(|(id, func)| {
                        let mut sub = Handler::new(
                            handler.resource.clone(),
                            handler.reason,
                            format!("{}/{id}", handler.id),
                            func,
                        );
                        sub.backoff = handler.backoff;
                        sub
                    })
                    .collect();
                for sub in &subs {
                    if !record.subrefs.contains(&sub.id) {
                        record.subrefs.push(sub.id.clone());
                    }
                }
                tally.subrefs.extend(record.subrefs.iter().cloned());
                let mut below = Tally::default();
                execute(&subs, cause, patch, &mut below).await;
                tally.subrefs.extend(below.subrefs);
                if let Some(delay) = below.delay {
                    inputs.logger.debug(format!(
                        "{label} has unfinished sub-handlers. Will retry soon."
                    ));
                    outcome = Outcome::Retry {
                        delay,
                        message: "unfinished sub-handlers".into(),
                    };
                } else {
                    inputs.logger.info(format!("{label} succeeded."));
                }
            }
            record.retries += 1;
            record.delayed = None;
            match outcome {
                Outcome::Success(value) => {
                    tally.succeeded += 1;
                    record.success = true;
                    record.stopped = Some(inputs.now);
                    record.message = None;
                    if let Some(v) = value {
                        patch.set(&["status", &handler.id], v);
                    }
                }
                Outcome::Failure(message) => {
                    tally.failed += 1;
                    record.failure = true;
                    record.stopped = Some(inputs.now);
                    record.message = Some(message);
                }
                Outcome::Retry { delay, message } => {
                    record.delayed = Some(inputs.now + delay);
                    record.message = Some(message);
                    tally.delay(delay);
                }
            }
            inputs.progress.store(patch, &handler.id, &record);
        }
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
/// Reads the progress record of a handler (for tests).
pub(crate) fn record_of(
    body: &Value,
    progress: &ProgressStorage,
    id: &str,
) -> Option<crate::storage::ProgressRecord> {
    progress.fetch(body, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        handling::{HandlerError, HandlerFn},
        structs::apply_patch,
    };
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    fn handler(
        reason: Reason,
        id: &str,
        f: impl Fn() -> crate::handling::HandlerResult + Send + Sync + 'static,
    ) -> Handler {
        let f = Arc::new(f);
        let func: HandlerFn = Arc::new(move |_ctx| {
            let f = f.clone();
            Box::pin(async move { f() })
        });
        Handler::new(
            Resource::new("kopf.dev", "v1", "kopfexamples"),
            reason,
            id.into(),
            func,
        )
    }

    async fn run(body: &Value, handlers: &[Handler], now: Timestamp, initial: bool) -> Decision {
        let progress = ProgressStorage::default();
        let diffbase = DiffBaseStorage::default();
        let logger = Logger::new("ns", "x");
        let memo = Memo::default();
        let client = fake_apiserver::FakeApiServer::new().client();
        let events = Events::default();
        process(
            body,
            Inputs {
                resource: &Resource::new("kopf.dev", "v1", "kopfexamples"),
                handlers,
                progress: &progress,
                diffbase: &diffbase,
                finalizer: "kopf.zalando.org/KopfFinalizerMarker",
                backoff: Duration::from_secs(60),
                initial,
                now,
                logger: &logger,
                memo: &memo,
                client: &client,
                events: &events,
                exited: None,
                indices: &crate::indices::Indices::default(),
            },
        )
        .await
    }

    fn body() -> Value {
        json!({"apiVersion": "kopf.dev/v1", "kind": "KopfExample",
               "metadata": {"name": "x", "namespace": "ns", "resourceVersion": "1"}, "spec": {"field": "value"}})
    }

    #[tokio::test]
    async fn create_should_run_once_store_status_and_diffbase() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let handlers = vec![handler(Reason::Create, "create_fn", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(Some(json!({"message": "hello world"})))
        })];
        let mut b = body();
        let now = Timestamp::UNIX_EPOCH;
        let d = run(&b, &handlers, now, true).await;
        assert!(d.delay.is_none());
        apply_patch(&mut b, &d.patch.to_value());
        assert_eq!(b["status"]["create_fn"]["message"], "hello world");
        assert!(
            b["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"].is_string()
        );
        assert!(
            b["metadata"]["annotations"]
                .get("kopf.zalando.org/create_fn")
                .is_none(),
            "progress purged"
        );
        // Seen again: nothing to do.
        let again = run(&b, &handlers, now, false).await;
        assert!(again.patch.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A spec change is an update; no update handlers, so the diff-base moves on.
        b["spec"]["field"] = json!("other");
        let upd = run(&b, &handlers, now, false).await;
        assert!(upd
            .patch
            .get(&[
                "metadata",
                "annotations",
                "kopf.zalando.org/last-handled-configuration"
            ])
            .is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn temporary_failures_should_retry_with_progress_kept() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let handlers = vec![handler(Reason::Create, "flaky", move || {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(HandlerError::temporary("not yet", Duration::from_secs(10)))
            } else {
                Ok(None)
            }
        })];
        let mut b = body();
        let mut now = Timestamp::UNIX_EPOCH;
        for round in 0..2 {
            let d = run(&b, &handlers, now, false).await;
            assert_eq!(d.delay, Some(Duration::from_secs(10)), "round {round}");
            apply_patch(&mut b, &d.patch.to_value());
            let rec = record_of(&b, &ProgressStorage::default(), "flaky").unwrap();
            assert_eq!(rec.retries, round + 1);
            assert_eq!(rec.message.as_deref(), Some("not yet"));
            // Too early: nothing runs, the delay shrinks.
            let early = run(&b, &handlers, now + Duration::from_secs(4), false).await;
            assert_eq!(early.delay, Some(Duration::from_secs(6)));
            now += Duration::from_secs(10);
        }
        let d = run(&b, &handlers, now, false).await;
        assert!(d.delay.is_none());
        apply_patch(&mut b, &d.patch.to_value());
        assert!(record_of(&b, &ProgressStorage::default(), "flaky").is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn delete_handlers_should_hold_a_finalizer_until_done() {
        let handlers = vec![handler(Reason::Delete, "delete_fn", || Ok(None))];
        let mut b = body();
        let d = run(&b, &handlers, Timestamp::UNIX_EPOCH, false).await;
        assert_eq!(
            d.patch.get(&["metadata", "finalizers"]),
            Some(&json!(["kopf.zalando.org/KopfFinalizerMarker"]))
        );
        apply_patch(&mut b, &d.patch.to_value());
        b["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        let d = run(&b, &handlers, Timestamp::UNIX_EPOCH, false).await;
        assert_eq!(d.patch.get(&["metadata", "finalizers"]), Some(&json!([])));
        let mut optional = handler(Reason::Delete, "gentle", || Ok(None));
        optional.optional(true);
        let d = run(&body(), &[optional], Timestamp::UNIX_EPOCH, false).await;
        assert!(
            d.patch.get(&["metadata", "finalizers"]).is_none(),
            "optional delete handlers add no finalizer"
        );
    }

    #[tokio::test]
    async fn resume_should_run_on_first_sight_of_handled_objects() {
        let handlers = vec![handler(Reason::Resume, "resume_fn", || {
            Ok(Some(json!("resumed")))
        })];
        let mut b = body();
        let d = run(&b, &handlers, Timestamp::UNIX_EPOCH, true).await;
        apply_patch(&mut b, &d.patch.to_value());
        assert_eq!(
            b["status"]["resume_fn"], "resumed",
            "a new object on start gets resume handlers too"
        );
        b["status"] = json!({});
        let d = run(&b, &handlers, Timestamp::UNIX_EPOCH, true).await;
        assert_eq!(
            d.patch.get(&["status", "resume_fn"]),
            Some(&json!("resumed"))
        );
        let d = run(&b, &handlers, Timestamp::UNIX_EPOCH, false).await;
        assert!(d.patch.is_empty());
    }
}
