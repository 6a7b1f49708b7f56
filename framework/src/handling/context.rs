//! The context a handler gets (Kopf's kwargs): the object, the cause, and
//! handles to act with (patch, logger, events, memo, client, sub-handlers).

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::structs::{DiffItem, Patch};

use super::{
    errors::{HandlerError, HandlerResult},
    logging::{Events, Logger},
    memo::Memo,
};

/// A handler function, type-erased.
pub(crate) type HandlerFn = Arc<dyn Fn(Context) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

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
