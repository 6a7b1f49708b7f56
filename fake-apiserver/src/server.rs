//! The public entry points: [`FakeApiServer`] in-process (a tower service
//! and a `kube::Client` wired straight to it, no socket), [`Serving`] over TCP
//! on loopback with a kubeconfig, and loading objects from YAML/JSON files.
//!
//! The top layer: puts the pieces together (the registry's `Api` with the
//! garbage collector registered, the injector, the journal, the webhook
//! caller) and hands them to `endpoints`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    admission::webhooks::Admission,
    apimachinery::{clock::Clock, errors::ApiError},
    controllers::{self, gc::GarbageCollector, selection::Selection, stages::Stages, Simulation},
    endpoints::{self, ApiService, ControlSettings, Shared},
    registry::{
        generic::{Api, Settings},
        rest::Target,
        semantics::{meta_str, Endpoint},
    },
    testing::{
        inject::Injector,
        journal::{Journal, DEFAULT_LIMIT},
    },
};

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
    journal_limit: Option<usize>,
    controllers: Selection,
    nodes: usize,
    stages: Stages,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            settings: Settings::default(),
            control: ControlSettings::default(),
            journal_limit: None,
            controllers: Selection::none(),
            nodes: 1,
            stages: Stages::default(),
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

    /// Builds the server: built-in kinds and the four standard namespaces;
    /// and starts the simulated cluster's controllers, if any, on the
    /// current tokio runtime (none outside of one: a warning is logged).
    pub fn build(mut self) -> FakeApiServer {
        let seed = self.settings.seed;
        let clock = self.settings.clock.clone();
        let selection = self.controllers.clone();
        if selection.runs(controllers::selection::Ctl::Kubelet) {
            self.settings.graceful_pods = true;
        }
        let collectors: Vec<Arc<dyn crate::registry::rest::Controller>> =
            if selection.collects_garbage() {
                vec![Arc::new(GarbageCollector)]
            } else {
                Vec::new()
            };
        let api = Arc::new(Api::with_controllers(self.settings, collectors));
        let shared = Shared {
            admission: Admission::default(),
            injector: Arc::new(Injector::new(api.clone(), seed)),
            journal: Arc::new(Journal::new(self.journal_limit.unwrap_or(DEFAULT_LIMIT))),
            api,
            control: self.control,
        };
        let shared = Arc::new(shared);
        let simulation = if !selection.any() {
            None
        } else if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("the simulated cluster's controllers need a tokio runtime: build the server inside one");
            None
        } else {
            let for_clients = shared.clone();
            let factory: controllers::ClientFactory = Arc::new(move |agent: &str| {
                agent_client(ApiService::new(for_clients.clone(), "127.0.0.1:0"), agent)
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
        FakeApiServer { shared, simulation }
    }
}

/// A client of the service that sends `agent` as its User-Agent.
fn agent_client(service: ApiService, agent: &str) -> kube::Client {
    let agent = http::HeaderValue::from_str(agent)
        .unwrap_or_else(|_| http::HeaderValue::from_static("fake-apiserver"));
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.headers_mut()
                .insert(http::header::USER_AGENT, agent.clone());
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
    /// `default` as its default namespace.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.service(), "default")
    }

    /// Applies objects from a multi-document YAML or JSON string (CRDs
    /// first; `kind: List` expanded): created, or replaced when they exist.
    /// Returns `Kind namespace/name` for each object.
    pub fn load_str(&self, text: &str, origin: &str) -> Result<Vec<String>, LoadError> {
        let mut objects = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).map_err(|e| LoadError::Parse {
                    origin: origin.into(),
                    index: i + 1,
                    message: e.to_string(),
                })?;
            if value.is_null() {
                continue;
            }
            let value: Value = serde_json::to_value(value).map_err(|e| LoadError::Parse {
                origin: origin.into(),
                index: i + 1,
                message: e.to_string(),
            })?;
            match value.get("items").and_then(Value::as_array) {
                Some(items)
                    if value
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List")) =>
                {
                    objects.extend(items.iter().cloned())
                }
                _ => objects.push(value),
            }
        }
        objects.sort_by_key(|o| {
            o.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition")
        });
        objects.iter().map(|o| self.apply(o, origin)).collect()
    }

    /// Applies every `.yaml`, `.yml` and `.json` file at `path` (a file, or a
    /// directory read in name order), CRDs of all files first.
    pub fn load_path(&self, path: &Path) -> Result<Vec<String>, LoadError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| LoadError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let mut files = Vec::new();
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| LoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut text = String::new();
        for f in &files {
            text.push_str(&read(f)?);
            text.push_str("\n---\n");
        }
        self.load_str(&text, &path.display().to_string())
    }

    fn apply(&self, obj: &Value, origin: &str) -> Result<String, LoadError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind_name = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let refused = |what: String, source: ApiError| LoadError::Refused {
            origin: origin.into(),
            what,
            source: Box::new(source),
        };
        let Some((kind, version)) = self.shared.api.resources.by_kind(api_version, kind_name)
        else {
            return Err(refused(
                format!("{kind_name} {name}"),
                ApiError::not_found(
                    "",
                    "",
                    &format!("no kind {kind_name:?} is served in {api_version:?}"),
                ),
            ));
        };
        let namespace = if kind.namespaced {
            meta_str(obj, "namespace")
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let what = if namespace.is_empty() {
            format!("{kind_name} {name}")
        } else {
            format!("{kind_name} {namespace}/{name}")
        };
        let t = Target {
            kind,
            version,
            namespace,
            name: String::new(),
        };
        match self.shared.api.create(&t, obj.clone(), false) {
            Ok(_) => Ok(what),
            Err(e) if e.reason == "AlreadyExists" => {
                let t = Target {
                    name: name.clone(),
                    ..t
                };
                let mut obj = obj.clone();
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                self.shared
                    .api
                    .update(&t, obj, Endpoint::Main, false)
                    .map(|_| what.clone())
                    .map_err(|e| refused(what, e))
            }
            Err(e) => Err(refused(what, e)),
        }
    }

    /// Serves HTTP on `addr` (use port 0 for any free port) until the
    /// returned handle is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<Serving> {
        if self.shared.control.enabled
            && self.shared.control.token.is_none()
            && !addr.ip().is_loopback()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("refusing to serve the control API on non-loopback address {addr} without a token"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let service = ApiService::new(self.shared.clone(), &local_addr.to_string());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = endpoints::serve(listener, service, stop_rx);
        Ok(Serving {
            local_addr,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A server listening on TCP. Dropping it stops serving.
pub struct Serving {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// A kubeconfig pointing at this server (context `fake`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Writes the kubeconfig to a temporary file, removed when dropped.
    pub fn temp_kubeconfig(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let mut file = tempfile::Builder::new()
            .prefix("fake-kubeconfig-")
            .suffix(".yaml")
            .tempfile()?;
        std::io::Write::write_all(&mut file, self.kubeconfig().as_bytes())?;
        Ok(file)
    }

    /// Stops accepting, closes every connection, and waits for that.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
