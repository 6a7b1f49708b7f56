//! Invoking handlers: the context they get (Kopf's kwargs), the errors they
//! return, and how one attempt's outcome becomes a retry, a success or a
//! failure (retries, timeouts, backoff, errors mode, panics).
//!
//! Knows `structs` only; the registry and the reactor build on it.

use std::{
    collections::HashMap,
    fmt,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::structs::{DiffItem, Patch};

/// What to do with errors other than `Permanent` and `Temporary`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorsMode {
    /// Retry after the backoff (the default).
    #[default]
    Temporary,
    /// Fail for good.
    Permanent,
    /// Log and treat as done.
    Ignored,
}

/// A handler function, type-erased.
pub(crate) type HandlerFn = Arc<dyn Fn(Context) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// What a handler returns: `Ok(Some(value))` stores `value` under
/// `status.<handler id>`; `Ok(None)` stores nothing.
pub type HandlerResult = Result<Option<Value>, HandlerError>;

/// Why a handler did not succeed.
///
/// Any `std::error::Error` converts into [`HandlerError::Other`] with `?`,
/// which the handler's errors mode then treats (temporary by default).
#[derive(Debug)]
pub enum HandlerError {
    /// Stop this handler for good.
    Permanent(String),
    /// Try again after `delay` (default: the handler's backoff).
    Temporary {
        /// What went wrong.
        message: String,
        /// When to try again.
        delay: Option<Duration>,
    },
    /// An unexpected error; follows the handler's errors mode.
    Other(String),
    /// For admission webhooks: deny the request with this message and
    /// HTTP code (Kopf's `AdmissionError`); elsewhere, a permanent failure.
    Admission {
        /// Why the request is denied.
        message: String,
        /// The code the API server answers with (500 when not given).
        code: u16,
    },
}

impl HandlerError {
    /// A permanent failure.
    pub fn permanent(message: impl fmt::Display) -> Self {
        HandlerError::Permanent(message.to_string())
    }

    /// A temporary failure, retried after `delay`.
    pub fn temporary(message: impl fmt::Display, delay: Duration) -> Self {
        HandlerError::Temporary {
            message: message.to_string(),
            delay: Some(delay),
        }
    }

    /// Denies an admission request (Kopf's `AdmissionError`).
    pub fn admission(message: impl fmt::Display, code: u16) -> Self {
        HandlerError::Admission {
            message: message.to_string(),
            code,
        }
    }

    fn message(&self) -> &str {
        match self {
            HandlerError::Permanent(m) | HandlerError::Other(m) => m,
            HandlerError::Temporary { message, .. } | HandlerError::Admission { message, .. } => {
                message
            }
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::Other(e.to_string())
    }
}

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

/// A log line of an object, as handlers and the framework write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The message (without the `[namespace/name]` prefix).
    pub message: String,
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd.
    Warning,
    /// A failure.
    Error,
}

/// Collects an operator's log lines (`[namespace/name] message`), per
/// operator rather than process-wide: set it in `Settings::log_sink`.
#[derive(Clone, Debug, Default)]
pub struct LogSink(Arc<Mutex<Vec<LogLine>>>);

impl LogSink {
    /// Every line so far, in order.
    pub fn lines(&self) -> Vec<LogLine> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The messages so far, as `[namespace/name] message`.
    pub fn messages(&self) -> Vec<String> {
        self.lines().into_iter().map(|l| l.message).collect()
    }

    fn push(&self, line: LogLine) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

/// The per-object logger: writes `[namespace/name] message` through
/// `tracing` (and to the operator's [`LogSink`], if any) and keeps the lines
/// for posting as Kubernetes Events.
#[derive(Clone)]
pub struct Logger {
    prefix: Arc<str>,
    lines: Arc<Mutex<Vec<LogLine>>>,
    sink: Option<LogSink>,
    /// Takes each line at once instead of keeping it for `drain`.
    hook: Option<LineHook>,
}

/// Takes log lines as they are logged.
pub(crate) type LineHook = Arc<dyn Fn(&LogLine) + Send + Sync>;

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Logger {
    #[cfg(test)]
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        Self::with_sink(namespace, name, None)
    }

    pub(crate) fn with_sink(namespace: &str, name: &str, sink: Option<LogSink>) -> Self {
        let prefix = if namespace.is_empty() {
            format!("[{name}]")
        } else {
            format!("[{namespace}/{name}]")
        };
        Logger {
            prefix: prefix.into(),
            lines: Arc::default(),
            sink,
            hook: None,
        }
    }

    /// The same logger, handing its lines to `hook` as they come (for
    /// long-running daemons, whose lines cannot wait for the end).
    pub(crate) fn with_hook(mut self, hook: LineHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// A logger for the object `body` (`[namespace/name]`).
    pub(crate) fn for_body(body: &Value, sink: Option<LogSink>) -> Self {
        let s = |p: &str| body.pointer(p).and_then(Value::as_str).unwrap_or_default();
        Self::with_sink(s("/metadata/namespace"), s("/metadata/name"), sink)
    }

    /// A logger for operator-level messages (no object prefix).
    pub(crate) fn operator(sink: Option<LogSink>) -> Self {
        Logger {
            prefix: "".into(),
            lines: Arc::default(),
            sink,
            hook: None,
        }
    }

    fn log(&self, level: Level, message: String) {
        let full = if self.prefix.is_empty() {
            message.clone()
        } else {
            format!("{} {message}", self.prefix)
        };
        match level {
            Level::Debug => tracing::debug!("{full}"),
            Level::Info => tracing::info!("{full}"),
            Level::Warning => tracing::warn!("{full}"),
            Level::Error => tracing::error!("{full}"),
        }
        if let Some(sink) = &self.sink {
            sink.push(LogLine {
                level,
                message: full,
            });
        }
        let line = LogLine { level, message };
        match &self.hook {
            Some(hook) => hook(&line),
            None => self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line),
        }
    }

    /// Logs at debug level.
    pub fn debug(&self, message: impl fmt::Display) {
        self.log(Level::Debug, message.to_string());
    }

    /// Logs at info level.
    pub fn info(&self, message: impl fmt::Display) {
        self.log(Level::Info, message.to_string());
    }

    /// Logs a warning.
    pub fn warn(&self, message: impl fmt::Display) {
        self.log(Level::Warning, message.to_string());
    }

    /// Logs an error.
    pub fn error(&self, message: impl fmt::Display) {
        self.log(Level::Error, message.to_string());
    }

    /// Takes the lines logged so far.
    pub(crate) fn drain(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// An event to post about an object.
#[derive(Clone, Debug)]
pub(crate) struct Posting {
    pub(crate) involved: Value,
    pub(crate) type_: String,
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// Posts Kubernetes Events about an object (Kopf's `kopf.event`, `info`,
/// `warn`, `exception`), whatever the posting settings for log lines.
#[derive(Clone, Debug, Default)]
pub struct Events {
    tx: Option<tokio::sync::mpsc::UnboundedSender<Posting>>,
    involved: Value,
}

/// What an Event needs of its object: kind and identity, not the body.
pub(crate) fn reference(body: &Value) -> Value {
    let meta = &body["metadata"];
    serde_json::json!({
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": meta.get("name"), "uid": meta.get("uid"), "namespace": meta.get("namespace")},
    })
}

impl Events {
    pub(crate) fn new(
        tx: Option<tokio::sync::mpsc::UnboundedSender<Posting>>,
        involved: Value,
    ) -> Self {
        Events {
            tx,
            involved: reference(&involved),
        }
    }

    /// The same poster, about another object (e.g. a child).
    pub fn about(&self, body: &Value) -> Events {
        Events::new(self.tx.clone(), body.clone())
    }

    /// Posts an event of type `type_` (`Normal`, `Warning`, ...).
    pub fn event(&self, type_: &str, reason: &str, message: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Posting {
                involved: self.involved.clone(),
                type_: type_.into(),
                reason: reason.into(),
                message: message.into(),
            });
        }
    }

    /// Posts a `Normal` event.
    pub fn info(&self, reason: &str, message: &str) {
        self.event("Normal", reason, message);
    }

    /// Posts a `Warning` event.
    pub fn warn(&self, reason: &str, message: &str) {
        self.event("Warning", reason, message);
    }

    /// Posts an `Error` event: `message`, then the error.
    pub fn exception(&self, reason: &str, message: &str, error: &dyn fmt::Display) {
        self.event("Error", reason, &format!("{message} {error}"));
    }
}

/// What a handler gets: the object, the cause, and handles to act with
/// (Kopf's kwargs).
#[derive(Clone)]
pub struct Context {
    /// The whole object.
    pub body: Value,
    /// The handler's id.
    pub id: String,
    /// Why the handler runs.
    pub reason: crate::references::Reason,
    /// The resource.
    pub resource: crate::references::Resource,
    /// The diff since the last handled state.
    pub diff: Vec<DiffItem>,
    /// The last handled essence (`None` on creation).
    pub old: Option<Value>,
    /// The current essence.
    pub new: Option<Value>,
    /// How many attempts finished before this one.
    pub retry: u32,
    /// When the first attempt started.
    pub started: Timestamp,
    /// Time since the first attempt.
    pub runtime: Duration,
    /// The handler's `param`.
    pub param: Option<Value>,
    /// Changes to merge into the operator's own patch of this object.
    pub patch: PatchHandle,
    /// The per-object logger.
    pub logger: Logger,
    /// Per-object memory.
    pub memo: Memo,
    /// The client the operator uses (to create children, read others...).
    pub client: kube::Client,
    /// Posts Kubernetes Events about this object.
    pub events: Events,
    /// For event handlers: the raw watch event, `{"type": ..., "object": ...}`.
    pub event: Option<Value>,
    /// For daemons and timers: the stop signal (never raised for others).
    pub stopped: crate::stopping::Stopped,
    /// For daemons and timers: the object's latest state as watched.
    pub(crate) latest: Option<tokio::sync::watch::Receiver<Arc<Value>>>,
    /// For resource-changing handlers: the sub-handlers registered.
    pub(crate) children: Option<Children>,
    /// The operator's indices.
    pub(crate) indices: crate::indices::Indices,
    /// For admission webhooks: the request being admitted.
    pub admission: Option<AdmissionRequest>,
}

/// What an admission webhook handler is asked about (Kopf's `operation`,
/// `userinfo`, `dryrun`, `subresource`, `warnings` kwargs).
#[derive(Clone, Debug, Default)]
pub struct AdmissionRequest {
    /// The request's uid.
    pub uid: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// Who makes the request (`username`, `uid`, `groups`, `extra`).
    pub user_info: Value,
    /// Whether the request is a dry run (nothing will be stored).
    pub dry_run: bool,
    /// The subresource addressed (`status`...), if any.
    pub subresource: Option<String>,
    /// The request's HTTP headers (name, value).
    pub headers: Vec<(String, String)>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl AdmissionRequest {
    pub(crate) fn new(review: &Value, headers: Vec<(String, String)>) -> Self {
        let request = &review["request"];
        AdmissionRequest {
            uid: request["uid"].as_str().unwrap_or_default().to_string(),
            operation: request["operation"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            user_info: request["userInfo"].clone(),
            dry_run: request["dryRun"].as_bool().unwrap_or(false),
            subresource: request["subResource"].as_str().map(String::from),
            headers,
            warnings: Arc::default(),
        }
    }

    /// Adds a warning for the client (kubectl prints it).
    pub fn warn(&self, message: impl fmt::Display) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.to_string());
    }

    /// The warnings added so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Sub-handlers registered by a handler: id and function.
pub(crate) type Children = Arc<Mutex<Vec<(String, HandlerFn)>>>;

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("reason", &self.reason)
            .field("resource", &self.resource)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A shared, mutable merge patch for handlers.
#[derive(Clone, Debug, Default)]
pub struct PatchHandle(Arc<Mutex<Patch>>);

impl PatchHandle {
    /// Sets the value at `path` (e.g. `["status", "phase"]`).
    pub fn set(&self, path: &[&str], value: Value) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(path, value);
    }

    /// Merges a merge patch.
    pub fn merge(&self, patch: &Value) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(patch);
    }

    pub(crate) fn take(&self) -> Patch {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn section<'a>(body: &'a Value, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    body.get(key).unwrap_or(&NULL)
}

impl Context {
    /// A context with the essentials; the rest empty (no diff, first
    /// attempt started `now`, no param, a fresh patch, no event, a stop
    /// signal never raised).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        body: Value,
        id: String,
        reason: crate::references::Reason,
        resource: crate::references::Resource,
        now: Timestamp,
        logger: Logger,
        memo: Memo,
        client: kube::Client,
        events: Events,
    ) -> Self {
        Context {
            body,
            id,
            reason,
            resource,
            diff: Vec::new(),
            old: None,
            new: None,
            retry: 0,
            started: now,
            runtime: Duration::ZERO,
            param: None,
            patch: PatchHandle::default(),
            logger,
            memo,
            client,
            events,
            event: None,
            stopped: crate::stopping::Stopped::default(),
            latest: None,
            children: None,
            indices: crate::indices::Indices::default(),
            admission: None,
        }
    }

    /// The index built by the index handler `id` (see
    /// `Operator::on_index`); `None` if there is no such handler.
    pub fn index(&self, id: &str) -> Option<&crate::indices::Index> {
        self.indices.get(id)
    }

    /// Lets this context's handler register sub-handlers; returns where
    /// they are collected.
    pub(crate) fn accept_subhandlers(&mut self) -> Children {
        self.children.get_or_insert_with(Children::default).clone()
    }

    /// Registers a sub-handler (Kopf's `@kopf.subhandler`), e.g. one per
    /// item of a list: it runs after this handler returns, with the id
    /// `<this id>/<id>`, its own progress, retries and status result. This
    /// handler is invoked again (and must register the same sub-handlers)
    /// until all of them are done; then it succeeds.
    ///
    /// # Errors
    /// A permanent error outside resource-changing handlers (create,
    /// update, delete, resume, field), which cannot have sub-handlers.
    pub fn subhandler<F, Fut>(&self, id: &str, f: F) -> Result<(), HandlerError>
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = HandlerResult> + Send + 'static,
    {
        let Some(children) = &self.children else {
            return Err(HandlerError::Permanent(
                "Sub-handlers are only supported for resource-changing handlers.".into(),
            ));
        };
        let f = Arc::new(f);
        let func: HandlerFn = Arc::new(move |ctx| {
            let f = f.clone();
            Box::pin(async move { f(ctx).await })
        });
        children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id.to_string(), func));
        Ok(())
    }

    /// The object's latest state: for daemons and timers, as the watch
    /// last delivered it (it changes while they run); for other handlers,
    /// the body they were invoked with.
    pub fn latest_body(&self) -> Value {
        match &self.latest {
            Some(rx) => (**rx.borrow()).clone(),
            None => self.body.clone(),
        }
    }

    /// `spec` (null when absent).
    pub fn spec(&self) -> &Value {
        section(&self.body, "spec")
    }

    /// `metadata`.
    pub fn meta(&self) -> &Value {
        section(&self.body, "metadata")
    }

    /// `status` (null when absent).
    pub fn status(&self) -> &Value {
        section(&self.body, "status")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.meta()
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.namespace` ("" for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        self.meta()
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        self.meta()
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Map<String, Value> {
        self.meta()
            .get("labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// The body as a typed object (e.g. a `#[derive(CustomResource)]`
    /// struct, for typed `spec` and `status`).
    ///
    /// # Errors
    /// A permanent error when the body does not fit the type (retrying
    /// would not help).
    pub fn typed<K: serde::de::DeserializeOwned>(&self) -> Result<K, HandlerError> {
        serde_json::from_value(self.body.clone())
            .map_err(|e| HandlerError::Permanent(format!("the object does not fit the type: {e}")))
    }

    /// `metadata.annotations`.
    pub fn annotations(&self) -> Map<String, Value> {
        self.meta()
            .get("annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

/// The outcome of one attempt, decided with the handler's options.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Done; the value goes to `status.<id>`.
    Success(Option<Value>),
    /// Try again in this long.
    Retry { delay: Duration, message: String },
    /// Done for good, failed.
    Failure(String),
}

/// Limits that apply to one handler.
pub(crate) struct Limits {
    pub(crate) retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backoff: Duration,
    pub(crate) errors: ErrorsMode,
}

/// Invokes `func` once (catching panics) and decides the outcome, logging
/// Kopf's messages with `label` (e.g. `Handler 'create_fn'`).
pub(crate) async fn attempt(
    func: &HandlerFn,
    ctx: Context,
    limits: &Limits,
    label: &str,
) -> Outcome {
    let logger = ctx.logger.clone();
    let retries_done = ctx.retry;
    let runtime = ctx.runtime;
    if let Some(limit) = limits.retries {
        if retries_done >= limit {
            logger.error(format!("{label} has exceeded {limit} retries."));
            return Outcome::Failure(format!("{label} has exceeded {limit} retries."));
        }
    }
    if let Some(timeout) = limits.timeout {
        if runtime >= timeout {
            logger.error(format!(
                "{label} has timed out after {}.",
                fmt_duration(runtime)
            ));
            return Outcome::Failure(format!(
                "{label} has timed out after {}.",
                fmt_duration(runtime)
            ));
        }
    }
    logger.debug(format!("{label} is invoked."));
    let children = ctx.children.clone();
    let result = match AssertUnwindSafe(func(ctx)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(HandlerError::Other(format!("panicked: {what}")))
        }
    };
    let exceeds = |delay: Duration| -> Option<String> {
        if let Some(limit) = limits.retries {
            if retries_done + 1 >= limit {
                return Some(format!("exceed {limit} retries"));
            }
        }
        if let Some(timeout) = limits.timeout {
            if runtime + delay >= timeout {
                return Some(format!("time out in {} seconds", py_seconds(timeout)));
            }
        }
        None
    };
    match result {
        Ok(value) => {
            // A parent with sub-handlers succeeds once they all have.
            let parent = children
                .as_ref()
                .is_some_and(|c| !c.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
            if !parent {
                logger.info(format!("{label} succeeded."));
            }
            Outcome::Success(value)
        }
        Err(HandlerError::Permanent(e) | HandlerError::Admission { message: e, .. }) => {
            logger.error(format!("{label} failed permanently: {e}"));
            Outcome::Failure(e)
        }
        Err(HandlerError::Temporary { message, delay }) => {
            let delay = delay.unwrap_or(limits.backoff);
            match exceeds(delay) {
                Some(why) => {
                    logger.error(format!(
                        "{label} failed temporarily but will {why}: {message}"
                    ));
                    Outcome::Failure(message)
                }
                None => {
                    logger.error(format!("{label} failed temporarily: {message}"));
                    Outcome::Retry { delay, message }
                }
            }
        }
        Err(HandlerError::Other(e)) => match limits.errors {
            ErrorsMode::Ignored => {
                logger.error(format!(
                    "{label} failed with an exception and will ignore it: {e}"
                ));
                Outcome::Success(None)
            }
            ErrorsMode::Permanent => {
                logger.error(format!(
                    "{label} failed with an exception and will stop now: {e}"
                ));
                Outcome::Failure(e)
            }
            ErrorsMode::Temporary => match exceeds(limits.backoff) {
                Some(why) => {
                    logger.error(format!(
                        "{label} failed with an exception and will stop now (it would {why} on the next attempt): {e}"
                    ));
                    Outcome::Failure(e)
                }
                None => {
                    logger.error(format!(
                        "{label} failed with an exception and will try again in {} seconds: {e}",
                        py_seconds(limits.backoff)
                    ));
                    Outcome::Retry {
                        delay: limits.backoff,
                        message: e,
                    }
                }
            },
        },
    }
}

/// Formats seconds like Python prints a float: `1.0`, `60.0`, `0.5`.
pub(crate) fn py_seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.1}")
    } else {
        format!("{secs}")
    }
}

/// Formats a duration like Python's timedelta: `0:01:00.123456`.
fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let micros = d.subsec_micros();
    let base = format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::references::{Reason, Resource};

    fn ctx(retry: u32, runtime: Duration) -> Context {
        let mut ctx = Context::new(
            serde_json::json!({"metadata": {"name": "x", "namespace": "ns"}}),
            "h".into(),
            Reason::Create,
            Resource::new("", "v1", "configmaps"),
            Timestamp::UNIX_EPOCH,
            Logger::new("ns", "x"),
            Memo::default(),
            fake_apiserver::FakeApiServer::new().client(),
            Events::default(),
        );
        ctx.retry = retry;
        ctx.runtime = runtime;
        ctx
    }

    fn limits(retries: Option<u32>, errors: ErrorsMode) -> Limits {
        Limits {
            retries,
            timeout: None,
            backoff: Duration::from_secs(60),
            errors,
        }
    }

    fn handler(f: impl Fn() -> HandlerResult + Send + Sync + 'static) -> HandlerFn {
        let f = Arc::new(f);
        Arc::new(move |_ctx| {
            let f = f.clone();
            Box::pin(async move { f() })
        })
    }

    #[tokio::test]
    async fn outcomes_should_follow_kopf_rules() {
        let ok = handler(|| Ok(Some(serde_json::json!({"m": 1}))));
        assert_eq!(
            attempt(
                &ok,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Success(Some(serde_json::json!({"m": 1})))
        );
        let other = handler(|| Err(HandlerError::Other("boom".into())));
        assert_eq!(
            attempt(
                &other,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Retry {
                delay: Duration::from_secs(60),
                message: "boom".into()
            }
        );
        assert_eq!(
            attempt(
                &other,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Permanent),
                "Handler 'h'"
            )
            .await,
            Outcome::Failure("boom".into())
        );
        assert_eq!(
            attempt(
                &other,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Ignored),
                "Handler 'h'"
            )
            .await,
            Outcome::Success(None)
        );
        assert_eq!(
            attempt(
                &other,
                ctx(2, Duration::ZERO),
                &limits(Some(3), ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Failure("boom".into())
        );
        assert!(matches!(
            attempt(
                &ok,
                ctx(3, Duration::ZERO),
                &limits(Some(3), ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Failure(_)
        ));
        let temp = handler(|| Err(HandlerError::temporary("later", Duration::from_secs(5))));
        assert_eq!(
            attempt(
                &temp,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Permanent),
                "Handler 'h'"
            )
            .await,
            Outcome::Retry {
                delay: Duration::from_secs(5),
                message: "later".into()
            }
        );
    }

    #[tokio::test]
    async fn panics_should_be_errors_not_crashes() {
        let boom = handler(|| panic!("kaboom"));
        let c = ctx(0, Duration::ZERO);
        let logger = c.logger.clone();
        let outcome = attempt(
            &boom,
            c,
            &limits(None, ErrorsMode::Temporary),
            "Handler 'h'",
        )
        .await;
        assert!(
            matches!(outcome, Outcome::Retry { ref message, .. } if message.contains("kaboom"))
        );
        assert!(logger.drain().iter().any(|l| l.message.starts_with(
            "Handler 'h' failed with an exception and will try again in 60.0 seconds"
        )));
    }

    #[test]
    fn durations_should_print_like_timedelta() {
        assert_eq!(
            fmt_duration(Duration::from_micros(60_123_456)),
            "0:01:00.123456"
        );
        assert_eq!(fmt_duration(Duration::from_secs(3601)), "1:00:01");
    }
}
