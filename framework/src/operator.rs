//! The public shell: registering handlers on an [`Operator`] and running it,
//! embedded in any tokio application, against any `kube::Client`.

use std::{future::Future, sync::Arc};

use kube::Client;
use tokio::sync::watch;

use crate::{
    handling::HandlerFn,
    handling::{Context, HandlerResult},
    reactor::Shared,
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
    /// The liveness endpoint cannot listen.
    #[error("cannot serve the liveness endpoint at {addr}: {source}")]
    Liveness {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Admission webhooks exist but cannot be served.
    #[error("{0}")]
    Admission(String),
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

    /// A probe (Kopf's `@kopf.on.probe`): its result is reported under its
    /// id on the liveness endpoint (`settings.liveness`, `--liveness`);
    /// `Ok(None)` reports nothing; a permanent failure makes the endpoint
    /// answer 500. Results are recomputed at most every 10 seconds.
    pub fn on_probe<F, Fut>(&mut self, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(&Resource::new("", "", ""), Reason::Probe, f)
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

    /// Runs `f` as a daemon: a long-running task per object, started when
    /// the object is first seen (created, or found when the operator
    /// starts) after the handler's `initial_delay`. It should return once
    /// `ctx.stopped` is raised (on deletion, the finalizer waits for it;
    /// after `cancellation_timeout` it is cancelled). Temporary failures
    /// restart it after the backoff; once it returns, it is not restarted.
    /// Waiting through `ctx.stopped.sleep(..)` / `ctx.stopped.wait()`
    /// tells observers (a test's `settle`) that the daemon is idle.
    pub fn on_daemon<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Daemon, f)
    }

    /// A daemon written as blocking code (Kopf's sync daemons): `f` runs on
    /// a thread of its own, polls `ctx.stopped.is_set()` and waits with
    /// `ctx.stopped.wait_blocking(..)` (in the runtime's time, so virtual
    /// under a paused clock). It cannot be cancelled: past its
    /// `cancellation_timeout` it is left running, orphaned.
    pub fn on_daemon_blocking<F>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> HandlerResult + Send + Sync + 'static,
    {
        let id = default_id::<F>(Reason::Daemon, self.registry.handlers.len() + 1);
        let f = Arc::new(f);
        let handler = self.register(resource, Reason::Daemon, move |mut ctx: Context| {
            let f = f.clone();
            async move {
                let gate = crate::stopping::Gate::current();
                let stopped = ctx.stopped.clone();
                // On virtual time the runtime is kept busy while the thread
                // runs code (so time cannot jump); on the wall clock, not.
                let holds_clock = stopped.is_virtual_time();
                ctx.stopped = ctx.stopped.with_gate(gate.clone());
                let (tx, mut rx) = tokio::sync::oneshot::channel();
                let thread = std::thread::Builder::new()
                    .name("kopf-daemon".into())
                    .spawn(move || {
                        let result =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ctx)));
                        let _ = tx.send(result);
                    });
                if let Err(e) = thread {
                    return Err(crate::handling::HandlerError::Other(format!(
                        "cannot start the daemon's thread: {e}"
                    )));
                }
                loop {
                    tokio::select! {
                        biased;
                        done = &mut rx => return match done {
                            Ok(Ok(result)) => result,
                            Ok(Err(panic)) => std::panic::resume_unwind(panic),
                            Err(_) => Err(crate::handling::HandlerError::Other(
                                "the daemon's thread is gone".into(),
                            )),
                        },
                        // Once asked to stop, the thread no longer holds the
                        // clock: it may never exit, and its reaper's timeouts
                        // must be able to pass.
                        _ = gate.tick(), if holds_clock && !stopped.is_set() => {}
                        _ = stopped.raised(), if !stopped.is_set() => {}
                    }
                }
            }
        });
        handler.id(&id);
        handler.spawning.blocking = true;
        handler
    }

    /// Runs `f` every `interval` for each object (a timer), from the end of
    /// one run to the start of the next (or aligned to the interval with
    /// `sharp`), after `initial_delay`, and only once the object has been
    /// unchanged for `idle` if set. Results go to `status.<id>` and patches
    /// are written, as for other handlers; temporary failures are retried
    /// after their delay.
    pub fn on_timer<F, Fut>(
        &mut self,
        resource: &Resource,
        interval: std::time::Duration,
        f: F,
    ) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Timer, f).interval(interval)
    }

    /// An index handler (Kopf's `@kopf.index`): `f` runs for every object
    /// of `resource` as it is listed and changed, and what it returns is
    /// kept in the index named by the handler's id, readable by every
    /// handler as `ctx.index(id)`: [`Indexed::Entries`] (or a JSON object,
    /// through `Indexed::from`) contributes values under keys,
    /// [`Indexed::One`] one value under the `null` key, [`Indexed::Keep`]
    /// keeps what the object contributed. Values go when the object does.
    /// No object of any resource is handled until every indexed resource
    /// is listed and indexed. Errors are ignored by default (the previous
    /// values stay).
    ///
    /// [`Indexed::Entries`]: crate::Indexed::Entries
    /// [`Indexed::One`]: crate::Indexed::One
    /// [`Indexed::Keep`]: crate::Indexed::Keep
    pub fn on_index<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<crate::indices::Indexed, crate::handling::HandlerError>>
            + Send
            + 'static,
    {
        let id = default_id::<F>(Reason::Index, self.registry.handlers.len() + 1);
        let f = Arc::new(f);
        let handler = self.register(resource, Reason::Index, move |ctx: Context| {
            let f = f.clone();
            async move { f(ctx).await.map(crate::indexing::encode) }
        });
        handler.id(&id);
        handler.errors = crate::handling::ErrorsMode::Ignored;
        handler
    }

    /// A validating admission webhook (Kopf's `@kopf.on.validate`): the
    /// API server asks it before storing a change of `resource`; an
    /// `Err(HandlerError::admission(message, code))` (or any error) denies
    /// the request; `ctx.admission` tells the operation, user, dry run and
    /// subresource, and takes warnings. Needs `settings.admission.server`.
    pub fn on_validate<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = self.register(resource, Reason::Validate, f);
        handler.errors = crate::handling::ErrorsMode::Permanent;
        handler
    }

    /// A mutating admission webhook (Kopf's `@kopf.on.mutate`): what it
    /// sets in `ctx.patch` is sent back to the API server as a JSON patch
    /// of the object being stored. Errors deny the request, as for
    /// validating webhooks.
    pub fn on_mutate<F, Fut>(&mut self, resource: &Resource, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = self.register(resource, Reason::Mutate, f);
        handler.errors = crate::handling::ErrorsMode::Permanent;
        handler
    }

    /// Runs `f` when the field at `path` (dotted, e.g. `spec.size`) changes;
    /// `ctx.old`, `ctx.new` and `ctx.diff` are the field's.
    pub fn on_field<F, Fut>(&mut self, resource: &Resource, path: &str, f: F) -> &mut Handler
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(resource, Reason::Update, f).field(path)
    }

    /// Starts the admission webhook server (and the managed configurations)
    /// if there are webhooks: returns the reviewer, the URL and the CA.
    async fn serve_webhooks(
        &self,
        client: &Client,
        settings: &Settings,
        indices: &crate::indices::Indices,
        tasks: &mut tokio::task::JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<(Arc<crate::admission::Reviewer>, String, Option<String>)>, OperatorError>
    {
        let handlers = self.registry.webhooks();
        if handlers.is_empty() {
            return Ok(None);
        }
        let Some(server) = &settings.admission.server else {
            return Err(OperatorError::Admission(
                "Admission handlers exist, but no admission server/tunnel is configured in `settings.admission.server`.".into(),
            ));
        };
        let mut webhooks = Vec::new();
        for handler in handlers {
            let resource = crate::scanning::resolve(client, &handler.resource)
                .await
                .map_err(|source| OperatorError::UnknownResource {
                    resource: Box::new(handler.resource.clone()),
                    source: Box::new(source),
                })?;
            webhooks.push(crate::admission::Webhook { handler, resource });
        }
        let listening = crate::admission::listen(server)
            .await
            .map_err(OperatorError::Admission)?;
        let (url, ca) = (listening.url.clone(), listening.ca_bundle.clone());
        let reviewer = Arc::new(crate::admission::Reviewer {
            webhooks,
            client: client.clone(),
            memo: self.memo.clone(),
            indices: indices.clone(),
            settings: settings.clone(),
        });
        tasks.spawn(crate::admission::serve(
            listening,
            server.path.clone(),
            reviewer.clone(),
            stop.clone(),
        ));
        if let Some(managed) = &settings.admission.managed {
            let logger = crate::handling::Logger::operator(settings.log_sink.clone());
            crate::admission::configure(
                client,
                &reviewer.webhooks,
                managed,
                &url,
                ca.as_deref(),
                false,
                &logger,
            )
            .await;
        }
        Ok(Some((reviewer, url, ca)))
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
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every request of the operator is retried and bounded as Kopf's are.
        let client = crate::networking::resilient(
            client,
            &settings.networking,
            crate::handling::Logger::operator(settings.log_sink.clone()),
        );
        let indices = crate::indices::Indices::new(
            self.registry
                .handlers
                .iter()
                .filter(|h| h.reason == Reason::Index)
                .map(|h| h.id.clone()),
        );
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(liveness) = &settings.liveness {
            let listener =
                tokio::net::TcpListener::bind(liveness.addr)
                    .await
                    .map_err(|source| OperatorError::Liveness {
                        addr: liveness.addr,
                        source,
                    })?;
            let prober = Arc::new(crate::probing::Prober::new(
                self.registry.activities(Reason::Probe),
                client.clone(),
                self.memo.clone(),
                indices.clone(),
                settings.clone(),
            ));
            tasks.spawn(crate::probing::serve(
                listener,
                liveness.path.clone(),
                prober,
                stop_rx.clone(),
            ));
        }
        let startup = self.registry.activities(Reason::Startup);
        crate::activities::run(&startup, Reason::Startup, &client, &self.memo, &settings)
            .await
            .map_err(|(id, message)| OperatorError::ActivityFailed { id, message })?;
        let poster = crate::posting::start(
            client.clone(),
            settings.clock.clone(),
            settings.log_sink.clone(),
        );
        let admission = self
            .serve_webhooks(&client, &settings, &indices, &mut tasks, &stop_rx)
            .await?;
        // Peering (or a Lease) decides when this instance pauses.
        let paused = Arc::new(watch::Sender::new(false));
        // Cluster-wide peering for the whole cluster (or globs), else a
        // KopfPeering in each served namespace.
        let peering_namespaces: Vec<Option<String>> = if settings.watching.namespaces.is_empty()
            || settings
                .watching
                .namespaces
                .iter()
                .any(|p| !crate::references::is_plain_namespace(p))
        {
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
        tasks.spawn(crate::peering::run_all(
            client.clone(),
            settings.clone(),
            peering_namespaces,
            paused.clone(),
            stop_rx.clone(),
        ));
        let limit = settings
            .execution
            .max_workers
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        // The scanning keeps the insights current; the orchestra runs a
        // watch per served resource and namespace.
        let insights = Arc::new(watch::Sender::new(crate::scanning::Insights::default()));
        let shared_settings = Arc::new(settings.clone());
        tasks.spawn(crate::scanning::observe_resources(
            client.clone(),
            shared_settings.clone(),
            self.registry.resources(),
            insights.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(crate::scanning::observe_namespaces(
            client.clone(),
            shared_settings.clone(),
            insights.clone(),
            stop_rx.clone(),
        ));
        let listings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Opens once every watch of an indexed resource listed and indexed.
        let indexing = Arc::new(watch::Sender::new(0));
        let registry = self.registry.clone();
        let memo = self.memo.clone();
        let paused_rx = paused.subscribe();
        let make_shared = {
            let client = client.clone();
            move |declared: &Resource, served: &crate::scanning::Served| {
                Arc::new(Shared {
                    client: client.clone(),
                    handlers: registry.for_resource(declared),
                    resource: served.resource.clone(),
                    api_resource: served.api_resource.clone(),
                    status_subresource: served.status_subresource,
                    settings: shared_settings.clone(),
                    poster: poster.clone(),
                    memo: memo.clone(),
                    limit: limit.clone(),
                    listings: listings.clone(),
                    indices: indices.clone(),
                    indexing: indexing.clone(),
                    paused: paused_rx.clone(),
                })
            }
        };
        tasks.spawn(crate::orchestrating::orchestrate(
            insights.subscribe(),
            make_shared,
            settings.observer.clone(),
            stop_rx.clone(),
        ));
        stop.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        if let (Some((reviewer, url, ca)), Some(managed)) =
            (&admission, &settings.admission.managed)
        {
            let logger = crate::handling::Logger::operator(settings.log_sink.clone());
            crate::admission::configure(
                &client,
                &reviewer.webhooks,
                managed,
                url,
                ca.as_deref(),
                true,
                &logger,
            )
            .await;
        }
        let cleanup = self.registry.activities(Reason::Cleanup);
        crate::activities::run(&cleanup, Reason::Cleanup, &client, &self.memo, &settings)
            .await
            .map_err(|(id, message)| OperatorError::ActivityFailed { id, message })?;
        Ok(())
    }
}
