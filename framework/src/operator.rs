//! The public shell: registering handlers on an [`Operator`] and running it,
//! embedded in any tokio application, against any `kube::Client`.

use std::{future::Future, sync::Arc};

use kube::Client;
use tokio::sync::watch;

use crate::{
    handling::HandlerFn,
    handling::{Context, HandlerResult},
    reactor::{discover, watch_resource, Shared},
    references::{Reason, Resource},
    registry::{default_id, Handler, Registry},
    settings::Settings,
};

/// Errors that stop an operator from running.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A resource with handlers is not served by the cluster (checked at
    /// start). Not retryable until the CRD is installed.
    #[error("resource {resource} is not served by the cluster: {source}")]
    UnknownResource {
        /// The resource.
        resource: Box<Resource>,
        /// Discovery's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// No handlers were registered.
    #[error("no handlers are registered")]
    NoHandlers,
    /// A startup or cleanup activity failed permanently.
    #[error("Activity '{id}' failed permanently: {message}")]
    ActivityFailed {
        /// The activity's id.
        id: String,
        /// Why.
        message: String,
    },
}

/// A login function: produces the client configuration to use.
pub type LoginFn = Arc<
    dyn Fn() -> futures::future::BoxFuture<
            'static,
            Result<kube::Config, crate::handling::HandlerError>,
        > + Send
        + Sync,
>;

/// An operator: handlers for resources, and settings.
///
/// ```no_run
/// use kopf::{Operator, Resource, Settings};
/// # async fn run(client: kube::Client) -> Result<(), kopf::OperatorError> {
/// let mut operator = Operator::new();
/// let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
/// operator.on_create(&examples, |ctx| async move {
///     ctx.logger.info(format!("And here we are! Creating: {}", ctx.spec()));
///     Ok(Some(serde_json::json!({"message": "hello world"})))
/// }).id("create_fn");
/// operator.run(client, Settings::default(), std::future::pending()).await
/// # }
/// ```
#[derive(Default)]
pub struct Operator {
    registry: Registry,
    memo: crate::handling::Memo,
    login: Option<LoginFn>,
}

impl Operator {
    /// An operator with no handlers.
    pub fn new() -> Self {
        Operator::default()
    }

    /// The registered handlers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The operator-wide memo: what is set here before `run` is visible to
    /// every handler (through its per-object memo) and to activities.
    pub fn memo(&self) -> &crate::handling::Memo {
        &self.memo
    }

    /// Custom credentials: `f` returns the `kube::Config` that
    /// [`crate::run`] connects with, instead of the kubeconfig or in-cluster
    /// configuration.
    pub fn on_login<F, Fut>(&mut self, f: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<kube::Config, crate::handling::HandlerError>> + Send + 'static,
    {
        self.login = Some(Arc::new(move || Box::pin(f())));
    }

    /// Logs in with the `on_login` handler, if there is one.
    pub(crate) async fn login(
        &self,
    ) -> Option<Result<kube::Config, crate::handling::HandlerError>> {
        match &self.login {
            Some(f) => Some(f().await),
            None => None,
        }
    }

    /// Runs `f` once when the operator starts, before any object is handled;
    /// retried until it succeeds; a permanent failure stops the operator.
    pub fn on_startup<F, Fut>(&mut self, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(&Resource::new("", "", ""), Reason::Startup, f)
    }

    /// Runs `f` once when the operator stops, after handling stopped.
    pub fn on_cleanup<F, Fut>(&mut self, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(&Resource::new("", "", ""), Reason::Cleanup, f)
    }

    fn register<F, Fut>(&mut self, resource: &Resource, reason: Reason, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let id = default_id::<F>(reason, self.registry.handlers.len() + 1);
        let f = Arc::new(f);
        let func: HandlerFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.registry
            .handlers
            .push(Handler::new(resource.clone(), reason, id, func));
        self.registry.handlers.last_mut().expect("just pushed")
    }

    /// Runs `f` when an object is created (or first seen unhandled).
    pub fn on_create<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Create, f)
    }

    /// Runs `f` when an object's essence (spec, labels, annotations...) changes.
    pub fn on_update<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Update, f)
    }

    /// Runs `f` when an object is deleted; holds it with a finalizer until
    /// `f` succeeds, unless the handler is made `optional`.
    pub fn on_delete<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Delete, f)
    }

    /// Runs `f` for every object already there when the operator starts.
    pub fn on_resume<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Resume, f)
    }

    /// Runs `f` for every watch event of the resource (fire-and-forget:
    /// no retries, no progress, errors logged and ignored); `ctx.event` is
    /// `{"type": "ADDED"|"MODIFIED"|"DELETED"|null, "object": ...}`, with a
    /// null type for objects listed when the watch starts.
    pub fn on_event<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = self.register(resource, Reason::Event, f);
        handler.errors = crate::handling::ErrorsMode::Ignored;
        handler
    }

    /// Runs `f` when the field at `path` (dotted, e.g. `spec.size`) changes;
    /// `ctx.old`, `ctx.new` and `ctx.diff` are the field's.
    pub fn on_field<F, Fut>(&mut self, resource: &Resource, path: &str, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = self.register(resource, Reason::Update, f);
        handler.field(path);
        handler.id = format!("{}/{path}", handler.id);
        handler
    }

    /// Runs until `stop` completes: checks every resource through discovery,
    /// then watches each and handles its objects.
    ///
    /// # Errors
    /// [`OperatorError`] when nothing is registered or a resource is not served.
    pub async fn run(
        self,
        client: Client,
        settings: Settings,
        stop: impl Future<Output = ()>,
    ) -> Result<(), OperatorError> {
        if self.registry.handlers.is_empty() {
            return Err(OperatorError::NoHandlers);
        }
        let startup = self.registry.activities(Reason::Startup);
        crate::activities::run(&startup, Reason::Startup, &client, &self.memo, &settings)
            .await
            .map_err(|(id, message)| OperatorError::ActivityFailed { id, message })?;
        let poster = crate::posting::start(client.clone());
        let resources = self.registry.resources();
        let watches_per_resource =
            if settings.watching.namespaces.is_empty() || settings.watching.has_globs() {
                1
            } else {
                settings.watching.namespaces.len()
            };
        let listings = Arc::new(std::sync::atomic::AtomicUsize::new(
            resources.len() * watches_per_resource,
        ));
        if resources.is_empty() {
            if let Some(o) = &settings.observer {
                o.set_ready();
            }
        }
        let limit = settings
            .execution
            .max_workers
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for declared in resources {
            let unknown = |source: kube::Error| OperatorError::UnknownResource {
                resource: Box::new(declared.clone()),
                source: Box::new(source),
            };
            let resource = crate::reactor::resolve(&client, &declared)
                .await
                .map_err(unknown)?;
            let (api_resource, status_subresource) =
                discover(&client, &resource).await.map_err(unknown)?;
            let shared = Arc::new(Shared {
                client: client.clone(),
                handlers: self.registry.for_resource(&declared),
                resource,
                api_resource,
                status_subresource,
                settings: settings.clone(),
                poster: poster.clone(),
                memo: self.memo.clone(),
                limit: limit.clone(),
                listings: listings.clone(),
            });
            // Globs need the whole cluster watched (objects are filtered by
            // namespace); plain names get a watch each.
            let namespaces: Vec<Option<String>> =
                if settings.watching.namespaces.is_empty() || settings.watching.has_globs() {
                    vec![None]
                } else {
                    settings
                        .watching
                        .namespaces
                        .iter()
                        .cloned()
                        .map(Some)
                        .collect()
                };
            for ns in namespaces {
                tasks.spawn(watch_resource(shared.clone(), ns, stop_rx.clone()));
            }
        }
        stop.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let cleanup = self.registry.activities(Reason::Cleanup);
        crate::activities::run(&cleanup, Reason::Cleanup, &client, &self.memo, &settings)
            .await
            .map_err(|(id, message)| OperatorError::ActivityFailed { id, message })?;
        Ok(())
    }
}
