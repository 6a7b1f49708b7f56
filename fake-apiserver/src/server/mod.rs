//! The public entry points: [`FakeApiServer`] in-process (a tower service
//! and a `kube::Client` wired straight to it, no socket), [`Serving`] over
//! TCP on loopback, HTTP or HTTPS, with kubeconfigs (`serving`), and
//! loading objects from YAML/JSON files (`load`).
//!
//! The top layer: puts the pieces together (the registry's `Api` with the
//! garbage collector registered, the injector, the journal, the webhook
//! caller) and hands them to `endpoints`.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

mod load;
mod serving;

pub use serving::Serving;

use crate::{
    admission::webhooks::Admission,
    apimachinery::{clock::Clock, errors::ApiError},
    auth::{
        aggregation::{Aggregator, Changes},
        authn::{self, Authenticator},
        gate::{Gate, Mode},
        UserInfo,
    },
    controllers::{self, gc::GarbageCollector, selection::Selection, stages::Stages, Simulation},
    endpoints::{
        inflight::{InFlight, Limits},
        ApiService, ControlSettings, Shared,
    },
    registry::generic::{Api, Settings},
    storage::durable::DurableError,
    testing::{
        inject::Injector,
        journal::{Journal, DEFAULT_LIMIT},
    },
};

/// kube-apiserver's bootstrap RBAC policy.
const BOOTSTRAP_POLICY: &str = include_str!("../auth/bootstrap.yaml");

/// Errors of loading objects from files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read. Not retryable as is.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML or JSON.
    #[error("{origin}: document {index}: {message}")]
    Parse {
        /// Where the document came from.
        origin: String,
        /// Its position (1-based).
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The server refused an object.
    #[error("{origin}: {what}: {source}")]
    Refused {
        /// Where the object came from.
        origin: String,
        /// `Kind namespace/name`.
        what: String,
        /// The server's answer.
        #[source]
        source: Box<ApiError>,
    },
}

/// Builds a [`FakeApiServer`] with non-default settings.
#[derive(Debug)]
pub struct Builder {
    settings: Settings,
    control: ControlSettings,
    authorization: Mode,
    tokens: HashMap<String, UserInfo>,
    anonymous: bool,
    admin_token: Option<String>,
    journal_limit: Option<usize>,
    controllers: Selection,
    nodes: usize,
    stages: Stages,
    data_dir: Option<PathBuf>,
    limits: Limits,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            settings: Settings::default(),
            control: ControlSettings::default(),
            authorization: Mode::AlwaysAllow,
            tokens: HashMap::new(),
            anonymous: true,
            admin_token: None,
            journal_limit: None,
            controllers: Selection::none(),
            nodes: 1,
            stages: Stages::default(),
            data_dir: None,
            limits: Limits::default(),
        }
    }
}

impl Builder {
    /// Events kept per resource for watch resume (default 4096); resuming
    /// from before the window gets 410 Gone.
    pub fn history(mut self, events: usize) -> Self {
        self.settings.history = events;
        self
    }

    /// Seed for uids and generated names (deterministic per seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// The server's time source (default: the wall clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// How often watches with bookmarks get one (default 60 s).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.settings.bookmark_interval = interval;
        self
    }

    /// Whether deleting a pod bound to a node waits out its grace period
    /// (on by default with the simulated kubelet, which ends it).
    pub fn graceful_pods(mut self, graceful: bool) -> Self {
        self.settings.graceful_pods = graceful;
        self
    }

    /// Serves the control API (`/_fake/v1/...`), optionally behind a bearer
    /// token. [`FakeApiServer::serve`] refuses a non-loopback address with
    /// the control API on and no token.
    pub fn control(mut self, enabled: bool, token: Option<String>) -> Self {
        self.control = ControlSettings { enabled, token };
        self
    }

    /// How requests are authorized (default [`Mode::AlwaysAllow`] in
    /// process; the binary's default is RBAC). With RBAC, kube-apiserver's
    /// bootstrap roles and bindings are written at start.
    pub fn authorization(mut self, mode: Mode) -> Self {
        self.authorization = mode;
        self
    }

    /// Users known by bearer token (a static token file's, see
    /// [`crate::auth::authn::parse_token_file`]).
    pub fn tokens(mut self, tokens: HashMap<String, UserInfo>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Whether requests without credentials are `system:anonymous`
    /// (default, as kube-apiserver's `--anonymous-auth`) or 401.
    pub fn anonymous(mut self, allowed: bool) -> Self {
        self.anonymous = allowed;
        self
    }

    /// The administrator's bearer token (default: a random one), written
    /// to kubeconfigs and sent by [`FakeApiServer::client`].
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Journal entries kept (default 10,000; oldest dropped first).
    pub fn journal_limit(mut self, entries: usize) -> Self {
        self.journal_limit = Some(entries);
        self
    }

    /// Which controllers of the simulated cluster run (default: none, a
    /// pure store; [`Selection::all`] for every one, as `--controllers=*`).
    /// They run on the tokio runtime [`Builder::build`] is called in.
    pub fn controllers(mut self, selection: Selection) -> Self {
        self.controllers = selection;
        self
    }

    /// How many nodes the simulated cluster has (default 1; only with the
    /// `nodelifecycle` controller).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// How simulated pods behave (the stages file).
    pub fn stages(mut self, stages: Stages) -> Self {
        self.stages = stages;
        self
    }

    /// Keeps the objects in the data directory `dir` (created if needed),
    /// as kube-apiserver keeps them in etcd: every write is on disk before
    /// it is answered, and a server built on the same directory later
    /// resumes with the same objects, uids and resourceVersions. The
    /// ServiceAccount token signing key is kept there too. Without one
    /// (the default), objects live in memory only.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Requests in flight and header read time (default: kube-apiserver's
    /// 400 non-mutating, 200 mutating, 32 s); see [`Limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the server, as [`Builder::try_build`].
    ///
    /// # Panics
    /// Only when a [data directory](Builder::data_dir) was given and cannot
    /// be opened; use [`Builder::try_build`] to handle that.
    pub fn build(self) -> FakeApiServer {
        match self.try_build() {
            Ok(server) => server,
            Err(e) => panic!("cannot open the data directory: {e}"),
        }
    }

    /// Builds the server: built-in kinds and the four standard namespaces
    /// (or what the data directory holds); and starts the simulated
    /// cluster's controllers, if any, on the current tokio runtime (none
    /// outside of one: a warning is logged).
    ///
    /// # Errors
    /// When the data directory cannot be opened: unreadable, damaged, or in
    /// use by another server.
    pub fn try_build(mut self) -> Result<FakeApiServer, DurableError> {
        let seed = self.settings.seed;
        let clock = self.settings.clock.clone();
        let selection = self.controllers.clone();
        if selection.runs(controllers::selection::Ctl::Kubelet) {
            self.settings.graceful_pods = true;
        }
        let changes = Changes::default();
        let mut collectors: Vec<Arc<dyn crate::registry::rest::Controller>> =
            vec![Arc::new(Aggregator::new(changes.clone()))];
        if selection.collects_garbage() {
            collectors.push(Arc::new(GarbageCollector));
        }
        let (api, signing_key) = match &self.data_dir {
            None => (Api::with_controllers(self.settings, collectors), None),
            Some(dir) => (
                Api::open(self.settings, collectors, dir)?,
                Some(signing_key(dir)?),
            ),
        };
        let api = Arc::new(api);
        let authn = Authenticator::new(
            self.admin_token.unwrap_or_else(authn::random_token),
            self.tokens,
            self.anonymous,
            signing_key,
        );
        let objects: Arc<dyn crate::registry::rest::Objects + Send + Sync> = api.clone();
        let gate = Arc::new(Gate::new(objects, authn, Mode::AlwaysAllow, changes));
        let shared = Shared {
            gate,
            admission: Admission::default(),
            injector: Arc::new(Injector::new(api.clone(), seed)),
            journal: Arc::new(Journal::new(self.journal_limit.unwrap_or(DEFAULT_LIMIT))),
            api,
            control: self.control,
            inflight: InFlight::new(&self.limits),
            limits: self.limits,
        };
        let shared = Arc::new(shared);
        let server = FakeApiServer {
            shared: shared.clone(),
            simulation: None,
        };
        server.set_authorization(self.authorization);
        let simulation = if !selection.any() {
            None
        } else if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("the simulated cluster's controllers need a tokio runtime: build the server inside one");
            None
        } else {
            let for_clients = shared.clone();
            let factory: controllers::ClientFactory = Arc::new(move |agent: &str| {
                let token = for_clients.gate.authn().token_for(component_user(agent));
                agent_client(
                    ApiService::new(for_clients.clone(), "127.0.0.1:0"),
                    agent,
                    &token,
                )
            });
            let objects: Arc<dyn crate::registry::rest::Objects + Send + Sync> = shared.api.clone();
            Some(controllers::start(
                objects,
                factory,
                clock,
                controllers::Settings {
                    selection,
                    nodes: self.nodes,
                    seed,
                    stages: self.stages,
                },
            ))
        };
        Ok(FakeApiServer {
            simulation,
            ..server
        })
    }
}

/// The ServiceAccount token signing key kept in `dir` (made on first use,
/// readable by its owner only), so that tokens outlive a restart.
fn signing_key(dir: &std::path::Path) -> Result<Vec<u8>, DurableError> {
    let path = dir.join("service-account.key");
    let io = |source| DurableError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(hex) => {
            let key: Option<Vec<u8>> = (0..hex.trim().len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.trim().get(i..i + 2)?, 16).ok())
                .collect();
            match key {
                Some(key) if key.len() >= 32 => Ok(key),
                _ => Err(DurableError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    what: "not a hex key of at least 32 bytes".into(),
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hex = authn::random_token();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut file, hex.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            signing_key(dir)
        }
        Err(e) => Err(io(e)),
    }
}

/// The user a simulated component is, from its User-Agent: a controller
/// its ServiceAccount, the scheduler `system:kube-scheduler`, kubelets a
/// node (bound to cluster-admin by `system:fake:simulated-cluster`).
fn component_user(agent: &str) -> UserInfo {
    let account = agent
        .split_once("kubernetes/fake/system:serviceaccount:")
        .and_then(|(_, rest)| rest.split_once(':'));
    let (username, groups) = match account {
        Some((ns, name)) => (
            format!("system:serviceaccount:{ns}:{name}"),
            authn::service_account_groups(ns),
        ),
        None if agent.starts_with("kube-scheduler/") => (
            "system:kube-scheduler".to_string(),
            vec![authn::AUTHENTICATED.to_string()],
        ),
        None => (
            "system:node:kubelet".to_string(),
            vec!["system:nodes".to_string(), authn::AUTHENTICATED.to_string()],
        ),
    };
    UserInfo {
        username,
        uid: String::new(),
        groups,
        extra: Default::default(),
    }
}

/// A client of the service that sends `agent` as its User-Agent (when
/// given) and `token` as its bearer token.
fn agent_client(service: ApiService, agent: &str, token: &str) -> kube::Client {
    let agent = http::HeaderValue::from_str(agent)
        .ok()
        .filter(|a| !a.is_empty());
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).ok();
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            if let Some(agent) = &agent {
                req.headers_mut()
                    .insert(http::header::USER_AGENT, agent.clone());
            }
            if let Some(bearer) = &bearer {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, bearer.clone());
            }
            req
        })
        .service(service);
    kube::Client::new(service, "default")
}

/// A fake Kubernetes API server. Cheap to clone; clones share state.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use fake_apiserver::FakeApiServer;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::api::{Api, PostParams};
///
/// let server = FakeApiServer::new();
/// let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
/// let mut cm = ConfigMap::default();
/// cm.metadata.name = Some("hello".into());
/// cms.create(&PostParams::default(), &cm).await.unwrap();
/// assert_eq!(cms.get("hello").await.unwrap().metadata.generation, None);
/// # }
/// ```
#[derive(Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    simulation: Option<Simulation>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    /// A server with default settings.
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// A builder for other settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The transport-free API, for direct calls.
    pub fn api(&self) -> &Arc<Api> {
        &self.shared.api
    }

    /// The simulated cluster's controllers, when any run.
    pub fn simulation(&self) -> Option<&Simulation> {
        self.simulation.as_ref()
    }

    /// The injector: synthetic watch events and fault rules.
    pub fn injector(&self) -> &Arc<Injector> {
        &self.shared.injector
    }

    /// The journal of every request and response.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.shared.journal
    }

    /// The server as a tower `Service`.
    pub fn service(&self) -> ApiService {
        ApiService::new(self.shared.clone(), "127.0.0.1:0")
    }

    /// A `kube::Client` wired straight to the service (no socket), with
    /// `default` as its default namespace, as the administrator.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(self.admin_token())
    }

    /// A `kube::Client` wired straight to the service that authenticates
    /// with `token` (e.g. from [`FakeApiServer::token_for`]).
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        agent_client(self.service(), "", token)
    }

    /// The administrator's bearer token (in `system:masters`).
    pub fn admin_token(&self) -> &str {
        self.shared.gate.authn().admin_token()
    }

    /// A new bearer token that authenticates as `user` for as long as the
    /// server runs.
    pub fn token_for(&self, user: UserInfo) -> String {
        self.shared.gate.authn().token_for(user)
    }

    /// The authorization mode.
    pub fn authorization(&self) -> Mode {
        self.shared.gate.mode()
    }

    /// Switches the authorization mode from the next request on. Turning
    /// RBAC on writes kube-apiserver's bootstrap roles and bindings
    /// (cluster-admin, admin, edit, view, system:discovery,
    /// system:basic-user, system:public-info-viewer), unless they exist.
    pub fn set_authorization(&self, mode: Mode) {
        if mode == Mode::Rbac {
            let key = crate::apimachinery::resource_key::ResourceKey::new(
                "rbac.authorization.k8s.io",
                "clusterroles",
            );
            if self
                .shared
                .api
                .store
                .get(&key, "", "cluster-admin")
                .is_none()
            {
                if let Err(e) = self.load_str(BOOTSTRAP_POLICY, "the bootstrap policy") {
                    tracing::error!("cannot write the bootstrap RBAC policy: {e}");
                }
            }
        }
        self.shared.gate.set_mode(mode);
    }
}
