//! The verbs: get, list, watch, create, update, patch, delete and
//! deletecollection, each applying `semantics` inside one atomic
//! `Store::write`, plus the work kube-apiserver's built-in controllers do at
//! once here (CRDs established and cleaned up, namespaces finalized); kube's
//! `genericregistry.Store`.
//!
//! Transport-free: `endpoints` parses requests into calls on [`Api`]; the
//! in-process loader, `testing` and tests call it directly. Each verb
//! family has its file: `read` (get, list, watch), `create`, `update` (and
//! patch, apply), `delete`, with the checks they share in `checks` and the
//! follow-up work of CRDs, namespaces and events in `lifecycle`.
//! Controllers (`controllers`) are reached through `rest`'s
//! [`Controller`] trait and see this `Api` as [`Objects`].

mod binding;
mod checks;
mod create;
mod delete;
mod eviction;
mod lifecycle;
mod read;
mod scale;
mod update;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::{
    apimachinery::{clock::Clock, errors::ApiError, resource_key::ResourceKey},
    registry::{
        resources::{Kind, Resources},
        rest::{Controller, DeleteOptions, Objects, Reply, Target},
        semantics::Endpoint,
    },
    storage::{
        durable::DurableError,
        object::{Change, StoreError, Stored, Written},
        store::{Store, DEFAULT_HISTORY},
        watch::Hub,
    },
};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Gone { requested, oldest } => {
                ApiError::too_old_resource_version(requested, oldest)
            }
            StoreError::Serialize(m) => ApiError::internal(m),
            e @ StoreError::Disk(_) => ApiError::internal(e.to_string()),
            // What kube-apiserver passes on from etcd: a 500 without a reason.
            e @ StoreError::TooLarge { .. } => ApiError::new(500, "", e.to_string()),
        }
    }
}

/// Server settings the verbs need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Events kept per resource for watch resume.
    pub history: usize,
    /// Seed for uids and generated names.
    pub seed: u64,
    /// Time source.
    pub clock: Clock,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Whether deleting a pod bound to a node gives it a grace period (set
    /// when a kubelet is simulated to end it; without one, pods go at once).
    pub graceful_pods: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            history: DEFAULT_HISTORY,
            seed: 0x6b6f_7066,
            clock: Clock::System,
            bookmark_interval: Duration::from_secs(60),
            graceful_pods: false,
        }
    }
}

/// The API: resources, store and fan-out, and the verbs over them.
pub struct Api {
    /// Served kinds.
    pub resources: Arc<Resources>,
    /// Objects.
    pub store: Arc<Store>,
    /// Watch fan-out.
    pub hub: Arc<Hub>,
    /// Time source.
    pub clock: Clock,
    bookmark_interval: Duration,
    graceful_pods: bool,
    /// Whether any object with owner references was written (the garbage
    /// collector looks for dependents only then).
    owned: AtomicBool,
    /// The built-in controllers, told of deletions at once.
    controllers: Vec<Arc<dyn Controller>>,
    /// Held while a Service's IP and ports are chosen and it is stored, so
    /// that two creates never take the same ones.
    service_allocation: std::sync::Mutex<()>,
}

const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn is_crd(kind: &Kind) -> bool {
    kind.key.group == "apiextensions.k8s.io" && kind.key.plural == "customresourcedefinitions"
}

fn is_namespace(kind: &Kind) -> bool {
    kind.key.group.is_empty() && kind.key.plural == "namespaces"
}

fn is_service(kind: &Kind) -> bool {
    !kind.custom && kind.key.group.is_empty() && kind.key.plural == "services"
}

/// The outcome of a write, dry or not.
enum Committed {
    Written(Written),
    Dry(Option<Value>),
}

impl Api {
    /// A fresh API with the built-in kinds and the namespaces every cluster
    /// has, and no controllers (no garbage collection; see
    /// [`Api::with_controllers`]).
    pub fn new(settings: Settings) -> Self {
        Self::with_controllers(settings, Vec::new())
    }

    /// A fresh API, as [`Api::new`], whose deletions `controllers` are told of.
    pub fn with_controllers(settings: Settings, controllers: Vec<Arc<dyn Controller>>) -> Self {
        let hub = Arc::new(Hub::default());
        let store = Store::new(hub.clone(), settings.history, settings.seed);
        Self::assemble(settings, controllers, hub, store)
    }

    /// An API, as [`Api::with_controllers`], whose objects are kept in the
    /// data directory `dir`: what it holds is served again (custom
    /// resources included), at the same resourceVersions.
    pub fn open(
        settings: Settings,
        controllers: Vec<Arc<dyn Controller>>,
        dir: &Path,
    ) -> Result<Self, DurableError> {
        let hub = Arc::new(Hub::default());
        let store = Store::open(hub.clone(), settings.history, settings.seed, dir)?;
        Ok(Self::assemble(settings, controllers, hub, store))
    }

    fn assemble(
        settings: Settings,
        controllers: Vec<Arc<dyn Controller>>,
        hub: Arc<Hub>,
        store: Store,
    ) -> Self {
        let restored = store.current_rv() > 0;
        let api = Api {
            resources: Arc::new(Resources::with_builtins()),
            store: Arc::new(store),
            hub,
            clock: settings.clock,
            bookmark_interval: settings.bookmark_interval,
            graceful_pods: settings.graceful_pods,
            owned: AtomicBool::new(restored),
            controllers,
            service_allocation: std::sync::Mutex::new(()),
        };
        if restored {
            api.serve_stored_crds();
        }
        let namespaces = ResourceKey::new("", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if api.store.get(&namespaces, "", ns).is_some() {
                continue;
            }
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Err(e) = api.create(&api.target("", "v1", "namespaces", ""), body, false) {
                tracing::error!("cannot create namespace {ns}: {e}");
            }
        }
        api
    }

    /// A target for `group/version/plural` in `namespace`.
    ///
    /// # Panics
    /// Only when the kind is not served; meant for built-in kinds.
    fn target(&self, group: &str, version: &str, plural: &str, namespace: &str) -> Target {
        Target {
            kind: self
                .resources
                .lookup(group, version, plural)
                .expect("built-in kind"),
            version: version.into(),
            namespace: namespace.into(),
            name: String::new(),
        }
    }

    /// Renders a stored object in the version `t` asks for.
    pub fn render(&self, t: &Target, obj: &Stored) -> Bytes {
        if t.kind.storage_version().name == t.version {
            return obj.bytes.clone();
        }
        let mut value = obj.value();
        value["apiVersion"] = Value::String(t.kind.api_version(&t.version));
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }

    fn render_value(&self, t: &Target, mut value: Value) -> Bytes {
        value["apiVersion"] = Value::String(t.kind.api_version(&t.version));
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }

    fn not_found(&self, t: &Target) -> ApiError {
        ApiError::not_found(t.kind.group(), t.kind.plural(), &t.name)
    }

    /// Runs `decide` atomically on the current object; with `dry_run`, stores
    /// nothing and returns what would have been stored.
    fn commit(
        &self,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
        dry_run: bool,
        decide: impl FnOnce(Option<&Arc<Stored>>) -> Result<Change, ApiError>,
    ) -> Result<Committed, ApiError> {
        let (written, dry) = self.store.write(key, namespace, name, |cur| {
            let change = decide(cur)?;
            if !dry_run {
                return Ok::<_, ApiError>((change, None));
            }
            let preview = match change {
                Change::Put(v) | Change::Update { new: v, .. } => Some(v),
                Change::Delete | Change::Keep => cur.map(|c| c.value()),
            };
            Ok((Change::Keep, Some(preview)))
        })?;
        Ok(match dry {
            Some(preview) => Committed::Dry(preview),
            None => Committed::Written(written),
        })
    }
}

fn has_spec_finalizers(kind: &Kind, obj: &Value) -> bool {
    is_namespace(kind)
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

impl Objects for Api {
    fn resources(&self) -> &Resources {
        &self.resources
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn owners_written(&self) -> bool {
        self.owned.load(Ordering::Relaxed)
    }

    fn update_with(&self, t: &Target, change: &dyn Fn(&Value) -> Value) -> Result<Reply, ApiError> {
        self.replace_with(t, Endpoint::Main, false, None, |old| Ok(change(old)))
    }

    fn update_status_with(
        &self,
        t: &Target,
        change: &dyn Fn(&Value) -> Value,
    ) -> Result<Reply, ApiError> {
        self.replace_with(t, Endpoint::Status, false, None, |old| Ok(change(old)))
    }

    fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<Reply, ApiError> {
        Api::delete(self, t, opts)
    }
}
