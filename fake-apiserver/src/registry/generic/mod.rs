//! The verbs: get, list, watch, create, update, patch, delete and
//! deletecollection, each applying `semantics` inside one atomic
//! `Store::write`, plus the work kube-apiserver's built-in controllers do at
//! once here (CRDs established and cleaned up, namespaces finalized).
//!
//! Transport-free: `http` parses requests into calls on [`Api`]; the
//! in-process loader calls it directly.

use std::{sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::{
    apply,
    clock::Clock,
    crd,
    error::{ApiError, Cause},
    patch::{self, PatchType},
    resources::{Kind, ResourceKey, Resources},
    schema,
    selector::{FieldSelector, LabelSelector},
    semantics::{self, Endpoint},
    store::{Change, Store, StoreError, Stored, Written},
    watch::{self, Hub, Start, WatchSpec},
};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Gone { requested, oldest } => {
                ApiError::too_old_resource_version(requested, oldest)
            }
            StoreError::Serialize(m) => ApiError::internal(m),
        }
    }
}

/// The object (or collection) a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    /// The kind.
    pub kind: Arc<Kind>,
    /// The version asked for.
    pub version: String,
    /// The namespace ("" for cluster-scoped kinds or all namespaces).
    pub namespace: String,
    /// The object's name ("" for the collection).
    pub name: String,
}

/// Options of list and watch requests.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 = none).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

/// Options of delete requests (query and `DeleteOptions` body).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy`.
    pub propagation: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// A successful answer: status code and JSON body.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status code.
    pub code: u16,
    /// The JSON body.
    pub body: Bytes,
    /// Fields dropped by the CRD schema (for `fieldValidation`).
    pub unknown_fields: Vec<String>,
}

impl Reply {
    fn ok(body: Bytes) -> Self {
        Reply {
            code: 200,
            body,
            unknown_fields: Vec::new(),
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            history: crate::store::DEFAULT_HISTORY,
            seed: 0x6b6f_7066,
            clock: Clock::System,
            bookmark_interval: Duration::from_secs(60),
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
    /// Whether any object with owner references was written (the garbage
    /// collector looks for dependents only then).
    pub(crate) owned: std::sync::atomic::AtomicBool,
}

const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The "manager" of a server-side apply's own write (which records its
/// ownership itself).
pub(crate) const APPLIED: &str = "\u{0}applied";
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn is_crd(kind: &Kind) -> bool {
    kind.key.group == "apiextensions.k8s.io" && kind.key.plural == "customresourcedefinitions"
}

/// One 422 `Invalid` listing every cause, if there are any.
fn refuse_invalid(t: &Target, obj: &Value, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    let name = semantics::meta_str(obj, "name").unwrap_or_default();
    Err(ApiError::invalid(
        t.kind.group(),
        &t.kind.kind,
        name,
        causes,
    ))
}

fn is_namespace(kind: &Kind) -> bool {
    kind.key.group.is_empty() && kind.key.plural == "namespaces"
}

/// The outcome of a write, dry or not.
enum Committed {
    Written(Written),
    Dry(Option<Value>),
}

impl Api {
    /// A fresh API with the built-in kinds and the namespaces every cluster has.
    pub fn new(settings: Settings) -> Self {
        let hub = Arc::new(Hub::default());
        let api = Api {
            resources: Arc::new(Resources::with_builtins()),
            store: Arc::new(Store::new(hub.clone(), settings.history, settings.seed)),
            hub,
            clock: settings.clock,
            bookmark_interval: settings.bookmark_interval,
            owned: Default::default(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
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

    /// After a write of an Event (`removed`: it is gone): the same write,
    /// converted, to the other Events API.
    fn mirror_event(&self, kind: &Kind, namespace: &str, name: &str) {
        let Some(other) = crate::events::mirror_of(kind) else {
            return;
        };
        let source = self
            .store
            .get(&kind.key, namespace, name)
            .map(|o| o.value());
        let _ = self.commit(&other, namespace, name, false, |cur| {
            Ok(match &source {
                None if cur.is_none() => Change::Keep,
                None => Change::Delete,
                Some(v) => {
                    let mut converted = if kind.key.group.is_empty() {
                        crate::events::to_events_v1(v)
                    } else {
                        crate::events::to_core(v)
                    };
                    if let Some(meta) = converted["metadata"].as_object_mut() {
                        meta.remove("resourceVersion");
                        meta.remove("managedFields");
                    }
                    Change::Put(converted)
                }
            })
        });
    }

    /// GET one object.
    pub fn get(&self, t: &Target) -> Result<Reply, ApiError> {
        let obj = self
            .store
            .get(&t.kind.key, &t.namespace, &t.name)
            .ok_or_else(|| self.not_found(t))?;
        Ok(Reply::ok(self.render(t, &obj)))
    }

    /// LIST a collection.
    pub fn list(&self, t: &Target, opts: &ListOptions) -> Result<Reply, ApiError> {
        let (at, after) = match &opts.continue_token {
            Some(token) => {
                let (rv, after) = decode_continue(token)?;
                (Some(rv), Some(after))
            }
            None => (self.list_rv(opts)?, None),
        };
        let namespace = (!t.namespace.is_empty()).then_some(t.namespace.as_str());
        let keep = |o: &Stored| opts.labels.matches_stored(o) && opts.fields.matches_stored(o);
        let page = match self.store.list(
            &t.kind.key,
            namespace,
            at,
            after.as_deref(),
            opts.limit,
            &keep,
        ) {
            Ok(page) => page,
            Err(StoreError::Gone { .. }) if opts.continue_token.is_some() => {
                return Err(ApiError::continue_expired())
            }
            Err(e) => return Err(e.into()),
        };
        let mut meta = json!({"resourceVersion": page.rv.to_string()});
        if let Some(next) = &page.next {
            meta["continue"] = Value::String(encode_continue(page.rv, next));
            if opts.labels.is_empty() && opts.fields.is_empty() {
                if let Some(n) = page.remaining {
                    meta["remainingItemCount"] = Value::from(n);
                }
            }
        }
        let head = json!({"kind": t.kind.list_kind, "apiVersion": t.kind.api_version(&t.version), "metadata": meta});
        let items: Vec<Bytes> = page.items.iter().map(|o| self.render(t, o)).collect();
        Ok(Reply::ok(list_body(&head, &items)))
    }

    /// The resourceVersion a list must be consistent at, from its options.
    fn list_rv(&self, opts: &ListOptions) -> Result<Option<u64>, ApiError> {
        let Some(rv) = opts.resource_version.as_deref().filter(|s| !s.is_empty()) else {
            if opts.resource_version_match.is_some() {
                return Err(list_options_invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            return Ok(None);
        };
        let n = parse_rv(rv)?;
        match opts.resource_version_match.as_deref() {
            Some("Exact") => {
                if n == 0 {
                    return Err(list_options_invalid(
                        "resourceVersionMatch",
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                let current = self.store.current_rv();
                if n > current {
                    return Err(too_large(n, current));
                }
                Ok(Some(n))
            }
            None | Some("NotOlderThan") | Some("") => {
                let current = self.store.current_rv();
                if n > current {
                    return Err(too_large(n, current));
                }
                Ok(None)
            }
            Some(other) => Err(list_options_invalid(
                "resourceVersionMatch",
                &format!("Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""),
            )),
        }
    }

    /// WATCH a collection: a channel of ready-to-send event lines.
    pub fn watch(&self, t: &Target, opts: &ListOptions) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let rv = opts.resource_version.as_deref().filter(|s| !s.is_empty());
        let start = match opts.send_initial_events {
            Some(true) => {
                if opts.resource_version_match.as_deref() != Some("NotOlderThan") {
                    return Err(list_options_invalid(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    ));
                }
                if !opts.bookmarks {
                    return Err(list_options_invalid(
                        "allowWatchBookmarks",
                        "sendInitialEvents requires setting allowWatchBookmarks to true",
                    ));
                }
                if let Some(rv) = rv {
                    let n = parse_rv(rv)?;
                    let current = self.store.current_rv();
                    if n > current {
                        return Err(too_large(n, current));
                    }
                }
                Start::InitialEvents
            }
            _ => match rv {
                None | Some("0") => Start::Current,
                Some(rv) => {
                    if opts.resource_version_match.is_some() {
                        return Err(list_options_invalid(
                            "resourceVersionMatch",
                            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                        ));
                    }
                    Start::After(parse_rv(rv)?)
                }
            },
        };
        let render: Option<watch::Render> = if t.kind.storage_version().name == t.version {
            None
        } else {
            let api_version = t.kind.api_version(&t.version);
            Some(Arc::new(move |obj: &Stored| {
                let mut value = obj.value();
                value["apiVersion"] = Value::String(api_version.clone());
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }))
        };
        let spec = WatchSpec {
            key: t.kind.key.clone(),
            namespace: (!t.namespace.is_empty()).then(|| t.namespace.clone()),
            labels: opts.labels.clone(),
            fields: opts.fields.clone(),
            start,
            bookmarks: opts.bookmarks,
            bookmark_interval: self.bookmark_interval,
            timeout: opts.timeout,
            api_version: t.kind.api_version(&t.version),
            kind: t.kind.kind.clone(),
            render,
        };
        Ok(watch::start(self.store.clone(), self.hub.clone(), spec))
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

    fn check_body_kind(&self, t: &Target, body: &Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a JSON object, not {}",
                type_name(body)
            )));
        }
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}'",
                truncate(&body.to_string(), 512)
            )));
        }
        let expected = t.kind.api_version(&t.version);
        if api_version.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'apiVersion' is missing in '{}'",
                truncate(&body.to_string(), 512)
            )));
        }
        if api_version != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )));
        }
        if kind != t.kind.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                t.kind.kind
            )));
        }
        Ok(())
    }

    fn check_namespace_for_create(&self, t: &Target, name: &str) -> Result<(), ApiError> {
        if !t.kind.namespaced {
            return Ok(());
        }
        let ns_key = ResourceKey::new("", "namespaces");
        let Some(ns) = self.store.get(&ns_key, "", &t.namespace) else {
            return Err(ApiError::not_found("", "namespaces", &t.namespace));
        };
        let ns = ns.value();
        if semantics::is_deleting(&ns) {
            let mut err = ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} {name:?} is forbidden: unable to create new content in namespace {} because it is being terminated",
                    qualified(&t.kind),
                    t.namespace
                ),
            );
            err.details = Some(Box::new(crate::error::Subject {
                group: t.kind.group().into(),
                kind: t.kind.plural().into(),
                name: name.into(),
            }));
            err.causes = vec![Cause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {} is being terminated", t.namespace),
                field: "metadata.namespace".into(),
            }];
            return Err(err);
        }
        Ok(())
    }

    fn check_crd_not_terminating(&self, t: &Target) -> Result<(), ApiError> {
        if !t.kind.custom {
            return Ok(());
        }
        let crd_key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let crd_name = t.kind.key.to_string();
        if let Some(crd) = self.store.get(&crd_key, "", &crd_name) {
            if semantics::is_deleting(&crd.value()) {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "create not allowed while custom resource definition is terminating",
                ));
            }
        }
        Ok(())
    }

    /// Custom resources: prunes, defaults and validates against the CRD
    /// version's schema; returns the pruned fields.
    fn apply_schema(&self, t: &Target, obj: &mut Value) -> Result<Vec<String>, ApiError> {
        if !t.kind.custom {
            return Ok(Vec::new());
        }
        let Some(schema) = t
            .kind
            .versions
            .iter()
            .find(|v| v.name == t.version)
            .and_then(|v| v.schema.as_ref())
        else {
            return Ok(Vec::new());
        };
        let dropped = schema::prune(obj, schema);
        schema::default(obj, schema);
        refuse_invalid(t, obj, schema::validate(obj, schema))?;
        Ok(dropped)
    }

    fn validate(&self, t: &Target, obj: &Value) -> Result<(), ApiError> {
        let mut causes = semantics::validate_metadata(&t.kind, obj);
        if is_crd(&t.kind) {
            causes.extend(crd::validate(obj));
        }
        refuse_invalid(t, obj, causes)
    }

    /// CREATE (POST to the collection).
    pub fn create(&self, t: &Target, body: Value, dry_run: bool) -> Result<Reply, ApiError> {
        self.create_as(t, body, dry_run, None)
    }

    /// CREATE recording `manager` as the owner of every field it sets.
    pub fn create_as(
        &self,
        t: &Target,
        mut body: Value,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Reply, ApiError> {
        self.check_body_kind(t, &body)?;
        if !body.get("metadata").is_some_and(Value::is_object) {
            body["metadata"] = json!({});
        }
        if t.kind.namespaced {
            match semantics::meta_str(&body, "namespace") {
                Some(ns) if !ns.is_empty() && ns != t.namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    body["metadata"]["namespace"] = Value::String(t.namespace.clone());
                }
            }
        }
        if semantics::meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let given = semantics::meta_str(&body, "name")
            .unwrap_or_default()
            .to_string();
        let generate = semantics::meta_str(&body, "generateName")
            .unwrap_or_default()
            .to_string();
        if given.is_empty() && generate.is_empty() {
            return Err(ApiError::invalid(
                t.kind.group(),
                &t.kind.kind,
                "",
                vec![Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        self.check_namespace_for_create(t, &given)?;
        self.check_crd_not_terminating(t)?;
        // generateName: retry a few times on a collision, as kube-apiserver does.
        let attempts = if given.is_empty() { 8 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            let name = if given.is_empty() {
                format!("{generate}{}", self.store.random_suffix())
            } else {
                given.clone()
            };
            let mut obj = body.clone();
            obj["metadata"]["name"] = Value::String(name.clone());
            let unknown_fields = self.apply_schema(t, &mut obj)?;
            self.validate(t, &obj)?;
            if crate::gc::has_owners(&obj) {
                self.owned.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let now = self.clock.rfc3339();
            if let Some(manager) = manager.filter(|m| *m != APPLIED) {
                self.record_manager(t, None, &mut obj, manager, Endpoint::Main);
            }
            semantics::prepare_create(
                &t.kind,
                &t.version,
                &mut obj,
                semantics::CreateInfo {
                    uid: self.store.new_uid(),
                    now: &now,
                },
            );
            obj["apiVersion"] = Value::String(t.kind.api_version(&t.kind.storage_version().name));
            let target = Target {
                name: name.clone(),
                ..t.clone()
            };
            let result = self.commit(&t.kind.key, &t.namespace, &name, dry_run, |cur| {
                if cur.is_some() {
                    return Err(ApiError::already_exists(
                        t.kind.group(),
                        t.kind.plural(),
                        &name,
                    ));
                }
                Ok(Change::Put(obj))
            });
            match result {
                Ok(Committed::Written(w)) => {
                    let stored = w
                        .object
                        .ok_or_else(|| ApiError::internal("create stored nothing"))?;
                    let reply = Reply {
                        code: 201,
                        body: self.render(&target, &stored),
                        unknown_fields,
                    };
                    if is_crd(&t.kind) {
                        self.establish_crd(&name);
                    }
                    self.mirror_event(&t.kind, &t.namespace, &name);
                    return Ok(reply);
                }
                Ok(Committed::Dry(preview)) => {
                    return Ok(Reply {
                        code: 201,
                        body: self.render_value(&target, preview.unwrap_or_default()),
                        unknown_fields,
                    })
                }
                Err(e) if e.reason == "AlreadyExists" && given.is_empty() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::internal("generateName failed")))
    }

    /// UPDATE (PUT) the object or its status.
    pub fn update(
        &self,
        t: &Target,
        body: Value,
        endpoint: Endpoint,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        self.update_as(t, body, endpoint, dry_run, None)
    }

    /// UPDATE recording `manager` as the owner of the fields it changes.
    pub fn update_as(
        &self,
        t: &Target,
        body: Value,
        endpoint: Endpoint,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Reply, ApiError> {
        self.check_body_kind(t, &body)?;
        self.replace_with(t, endpoint, dry_run, manager, |_| Ok(body))
    }

    /// Records an ordinary write by `manager` in `new`'s managed fields.
    fn record_manager(
        &self,
        t: &Target,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
        endpoint: Endpoint,
    ) {
        let now = self.clock.rfc3339();
        let api_version = t.kind.api_version(&t.version);
        apply::record_update(
            old,
            new,
            &apply::Request {
                manager,
                force: false,
                api_version: &api_version,
                now: &now,
                subresource: (endpoint == Endpoint::Status).then_some("status"),
            },
            &self.lists(t),
        );
    }

    /// How server-side apply merges lists of this kind.
    fn lists<'a>(&self, t: &'a Target) -> apply::Lists<'a> {
        static NO_SCHEMA: Value = Value::Null;
        apply::Lists {
            schema: if t.kind.custom {
                Some(
                    t.kind
                        .versions
                        .iter()
                        .find(|v| v.name == t.version)
                        .and_then(|v| v.schema.as_ref())
                        .unwrap_or(&NO_SCHEMA),
                )
            } else {
                None
            },
        }
    }

    /// Server-side apply (`application/apply-patch+yaml`): merges the
    /// configuration as `manager`'s, creating the object if needed.
    ///
    /// # Errors
    /// 409 listing the fields other managers own (unless `force`), and the
    /// errors of create and update.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_patch(
        &self,
        t: &Target,
        body: &[u8],
        manager: Option<&str>,
        force: bool,
        endpoint: Endpoint,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        let Some(manager) = manager.filter(|m| !m.is_empty()) else {
            return Err(ApiError::bad_request(
                "PATCH requests with application/apply-patch+yaml must specify a fieldManager",
            ));
        };
        let config: Value = serde_yaml::from_slice::<serde_yaml::Value>(body)
            .ok()
            .and_then(|y| serde_json::to_value(y).ok())
            .filter(Value::is_object)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "error decoding YAML: the apply configuration is not an object",
                )
            })?;
        self.check_body_kind(t, &config)?;
        if config.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request(
                "the apply configuration's metadata is not an object",
            ));
        }
        if let Some(name) = semantics::meta_str(&config, "name").filter(|n| !n.is_empty()) {
            if name != t.name {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
        }
        let now = self.clock.rfc3339();
        let api_version = t.kind.api_version(&t.version);
        let req = apply::Request {
            manager,
            force,
            api_version: &api_version,
            now: &now,
            subresource: (endpoint == Endpoint::Status).then_some("status"),
        };
        let lists = self.lists(t);
        if self.store.get(&t.kind.key, &t.namespace, &t.name).is_none() {
            let mut fresh = apply::apply(None, &config, &req, &lists)?;
            fresh["metadata"]["name"] = json!(t.name);
            fresh["apiVersion"] = json!(api_version);
            fresh["kind"] = json!(t.kind.kind);
            let collection = Target {
                name: String::new(),
                ..t.clone()
            };
            return self.create(&collection, fresh, dry_run);
        }
        self.replace_with(t, endpoint, dry_run, Some(APPLIED), |current| {
            apply::apply(Some(current), &config, &req, &lists)
        })
    }

    /// PATCH the object or its status.
    pub fn patch(
        &self,
        t: &Target,
        ptype: PatchType,
        patch_body: &[u8],
        endpoint: Endpoint,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        self.patch_as(t, ptype, patch_body, endpoint, dry_run, None)
    }

    /// PATCH recording `manager` as the owner of the fields it changes (for
    /// an apply patch, the applier; see [`Api::apply_patch`]).
    pub fn patch_as(
        &self,
        t: &Target,
        ptype: PatchType,
        patch_body: &[u8],
        endpoint: Endpoint,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Reply, ApiError> {
        match ptype {
            PatchType::Strategic if t.kind.custom => {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                    patch::CUSTOM_PATCH_TYPES,
                ))
            }
            PatchType::Apply => {
                return self.apply_patch(t, patch_body, manager, false, endpoint, dry_run);
            }
            _ => {}
        }
        let api_version = t.kind.api_version(&t.version);
        self.replace_with(t, endpoint, dry_run, manager, |current| {
            let mut current = current.clone();
            current["apiVersion"] = Value::String(api_version.clone());
            let patched = match ptype {
                PatchType::Json => patch::apply_json_patch(&current, patch_body)?,
                PatchType::Merge => patch::apply_merge_patch(&current, patch_body)?,
                PatchType::Strategic => patch::apply_strategic_patch(&current, patch_body)?,
                PatchType::Apply => {
                    return Err(ApiError::internal("apply patches go through apply_patch"))
                }
            };
            if !patched.is_object() {
                return Err(ApiError::bad_request(
                    "the patch made the object something other than a JSON object",
                ));
            }
            Ok(patched)
        })
    }

    /// The shared path of update and patch: `make` turns the current object
    /// into the client's intended object, then the update rules apply.
    pub(crate) fn replace_with(
        &self,
        t: &Target,
        endpoint: Endpoint,
        dry_run: bool,
        manager: Option<&str>,
        make: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Reply, ApiError> {
        if endpoint == Endpoint::Status && !t.kind.has_status(&t.version) {
            return Err(ApiError::no_route());
        }
        let storage_api_version = t.kind.api_version(&t.kind.storage_version().name);
        let mut removed = false;
        let mut unknown_fields = Vec::new();
        let result = self.commit(&t.kind.key, &t.namespace, &t.name, dry_run, |cur| {
            let cur = cur.ok_or_else(|| self.not_found(t))?;
            let old = cur.value();
            let mut new = make(&old)?;
            self.check_body_kind(t, &new)?;
            if t.kind.namespaced {
                if let Some(ns) = semantics::meta_str(&new, "namespace") {
                    if !ns.is_empty() && ns != t.namespace {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                }
            }
            // Pruned and defaulted first: a write that only adds unknown
            // fields changes nothing (no generation bump, no new version).
            unknown_fields = self.apply_schema(t, &mut new)?;
            semantics::prepare_update(&t.kind, &t.version, &old, &mut new, endpoint)?;
            // Field ownership: by the request's manager, or kept up to date
            // once an object has it (server-side apply records its own).
            let tracked = old.pointer("/metadata/managedFields").is_some();
            if manager != Some(APPLIED) && (manager.is_some() || tracked) {
                self.record_manager(t, Some(&old), &mut new, manager.unwrap_or("unknown"), endpoint);
            }
            if endpoint == Endpoint::Main {
                self.validate(t, &new)?;
            }
            new["apiVersion"] = Value::String(storage_api_version.clone());
            if crate::gc::has_owners(&new) {
                self.owned.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if semantics::is_deleting(&new) && semantics::finalizers(&new).is_empty() && !has_spec_finalizers(&t.kind, &new) {
                removed = true;
                return Ok(Change::Delete);
            }
            Ok(Change::Update { new, old })
        })?;
        match result {
            Committed::Dry(preview) => Ok(Reply {
                unknown_fields,
                ..Reply::ok(self.render_value(t, preview.unwrap_or_default()))
            }),
            Committed::Written(w) => {
                let obj = w.object.ok_or_else(|| self.not_found(t))?;
                let body = self.render(t, &obj);
                if removed && w.event.is_some() {
                    self.on_removed(&t.kind, &t.namespace, &t.name, &obj.value());
                } else if is_crd(&t.kind) && w.event.is_some() {
                    self.establish_crd(&t.name);
                }
                if w.event.is_some() {
                    self.mirror_event(&t.kind, &t.namespace, &t.name);
                }
                Ok(Reply {
                    unknown_fields,
                    ..Reply::ok(body)
                })
            }
        }
    }

    /// DELETE one object, honouring finalizers and preconditions.
    pub fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<Reply, ApiError> {
        if let Some(p) = opts.propagation.as_deref() {
            if !matches!(p, "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::invalid(
                    "meta.k8s.io",
                    "DeleteOptions",
                    "",
                    vec![Cause {
                        reason: "FieldValueNotSupported".into(),
                        message: format!("Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""),
                        field: "propagationPolicy".into(),
                    }],
                ));
            }
        }
        if is_namespace(&t.kind) && PROTECTED_NAMESPACES.contains(&t.name.as_str()) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "namespaces {:?} is forbidden: this namespace may not be deleted",
                    t.name
                ),
            ));
        }
        let now = self.clock.rfc3339();
        let mut removed = false;
        // Counted before taking the store lock for the write (the store lock is not reentrant).
        let custom_objects = if is_crd(&t.kind) {
            self.resources
                .all()
                .iter()
                .find(|k| k.custom && k.key.to_string() == t.name)
                .map_or(0, |k| self.store.count(&k.key, None))
        } else {
            0
        };
        let result = self.commit(&t.kind.key, &t.namespace, &t.name, opts.dry_run, |cur| {
            let cur = cur.ok_or_else(|| self.not_found(t))?;
            let mut obj = cur.value();
            let uid = semantics::meta_str(&obj, "uid").unwrap_or_default();
            if let Some(want) = opts.uid.as_deref().filter(|u| !u.is_empty()) {
                if want != uid {
                    return Err(ApiError::conflict(
                        t.kind.group(),
                        t.kind.plural(),
                        &t.name,
                        &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
                    ));
                }
            }
            let rv = semantics::meta_str(&obj, "resourceVersion").unwrap_or_default();
            if let Some(want) = opts.resource_version.as_deref().filter(|r| !r.is_empty()) {
                if want != rv {
                    return Err(ApiError::conflict(
                        t.kind.group(),
                        t.kind.plural(),
                        &t.name,
                        &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"),
                    ));
                }
            }
            let mut blocking = !semantics::finalizers(&obj).is_empty() || has_spec_finalizers(&t.kind, &obj);
            // Foreground and Orphan deletions wait for the collector.
            let gc_finalizer = match opts.propagation.as_deref() {
                Some("Foreground") => Some(crate::gc::FOREGROUND),
                Some("Orphan") => Some(crate::gc::ORPHAN),
                _ => None,
            };
            if let Some(f) = gc_finalizer.filter(|_| !is_namespace(&t.kind) && !is_crd(&t.kind)) {
                blocking = true;
                let meta = obj["metadata"].as_object_mut().ok_or_else(|| ApiError::internal("no metadata"))?;
                let list = meta.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    if !list.iter().any(|x| x == f) {
                        list.push(json!(f));
                    }
                }
            }
            if is_crd(&t.kind) && custom_objects > 0 {
                {
                    blocking = true;
                    let meta = obj["metadata"].as_object_mut().ok_or_else(|| ApiError::internal("no metadata"))?;
                    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
                    if let Some(list) = list.as_array_mut() {
                        if !list.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
                            list.push(json!(CRD_CLEANUP_FINALIZER));
                        }
                    }
                    crd::terminating_status(&mut obj["status"], &now);
                }
            }
            if !blocking {
                removed = true;
                return Ok(Change::Delete);
            }
            semantics::mark_deleting(&mut obj, &now);
            if is_namespace(&t.kind) {
                obj["status"]["phase"] = json!("Terminating");
            }
            Ok(Change::Put(obj))
        })?;
        let written = match result {
            Committed::Dry(preview) => {
                return Ok(Reply::ok(self.render_value(t, preview.unwrap_or_default())));
            }
            Committed::Written(w) => w,
        };
        let obj = written.object.ok_or_else(|| self.not_found(t))?;
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        self.mirror_event(&t.kind, &t.namespace, &t.name);
        if removed {
            self.on_removed(&t.kind, &t.namespace, &t.name, &obj.value());
            if t.kind.custom {
                return Ok(Reply::ok(self.render(t, &obj)));
            }
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": t.name, "group": t.kind.group(), "kind": t.kind.plural(),
                            "uid": obj.value()["metadata"]["uid"]},
            });
            return Ok(Reply::ok(Bytes::from(status.to_string())));
        }
        let body = self.render(t, &obj);
        if is_namespace(&t.kind) {
            self.empty_namespace(&t.name);
        } else if is_crd(&t.kind) {
            self.empty_crd(&obj.value());
        } else {
            self.collect(t, &obj.value(), policy, false);
            // The collector may have let it go already.
            if self.store.get(&t.kind.key, &t.namespace, &t.name).is_none() {
                return Ok(Reply::ok(body));
            }
            if let Ok(reply) = self.get(t) {
                return Ok(reply);
            }
        }
        Ok(Reply::ok(body))
    }

    /// DELETE a collection: every object the options select.
    pub fn delete_collection(
        &self,
        t: &Target,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Reply, ApiError> {
        let namespace = (!t.namespace.is_empty()).then_some(t.namespace.as_str());
        let keep = |o: &Stored| list.labels.matches_stored(o) && list.fields.matches_stored(o);
        let page = self
            .store
            .list(&t.kind.key, namespace, None, None, 0, &keep)?;
        let mut items = Vec::new();
        for obj in page.items {
            let target = Target {
                namespace: obj.namespace().to_string(),
                name: obj.name().to_string(),
                ..t.clone()
            };
            match self.delete(&target, opts) {
                Ok(reply) => {
                    let v: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                    if v.get("kind").and_then(Value::as_str) == Some("Status") {
                        items.push(self.render(&target, &obj));
                    } else {
                        items.push(reply.body);
                    }
                }
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let head = json!({"kind": t.kind.list_kind, "apiVersion": t.kind.api_version(&t.version),
                          "metadata": {"resourceVersion": self.store.current_rv().to_string()}});
        Ok(Reply::ok(list_body(&head, &items)))
    }

    /// Registers a CRD's kind and writes the status its controllers would.
    fn establish_crd(&self, name: &str) {
        let crd_key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let now = self.clock.rfc3339();
        let result = self.store.write::<_, ApiError>(&crd_key, "", name, |cur| {
            let Some(cur) = cur else {
                return Ok((Change::Keep, None));
            };
            let old = cur.value();
            if semantics::is_deleting(&old) {
                return Ok((Change::Keep, None));
            }
            let mut obj = old.clone();
            let kind = crd::kind_of(&obj);
            let mut status = crd::established_status(&obj, &now);
            // Keep the transition times of conditions that were already true.
            if let Some(old) = obj.pointer("/status/conditions").and_then(Value::as_array) {
                if let Some(conds) = status["conditions"].as_array_mut() {
                    for c in conds.iter_mut() {
                        if let Some(prev) = old
                            .iter()
                            .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
                        {
                            c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
                        }
                    }
                }
            }
            obj["status"] = status;
            Ok((Change::Update { new: obj, old }, Some(kind)))
        });
        match result {
            Ok((_, Some(kind))) => self.resources.register(kind),
            Ok((_, None)) => {}
            Err(e) => tracing::error!("cannot establish CRD {name}: {e}"),
        }
    }

    /// Deletes everything in a terminating namespace, then finalizes it if empty.
    fn empty_namespace(&self, ns: &str) {
        for kind in self.resources.all().into_iter().filter(|k| k.namespaced) {
            let version = kind.storage_version().name.clone();
            let t = Target {
                kind: kind.clone(),
                version,
                namespace: ns.into(),
                name: String::new(),
            };
            if let Err(e) =
                self.delete_collection(&t, &ListOptions::default(), &DeleteOptions::default())
            {
                tracing::warn!("cannot empty namespace {ns} of {}: {e}", kind.key);
            }
        }
        self.finalize_namespace_if_empty(ns);
    }

    fn finalize_namespace_if_empty(&self, ns: &str) {
        let remaining: usize = self
            .resources
            .all()
            .iter()
            .filter(|k| k.namespaced)
            .map(|k| self.store.count(&k.key, Some(ns)))
            .sum();
        if remaining > 0 {
            return;
        }
        let ns_key = ResourceKey::new("", "namespaces");
        let result = self.store.write::<_, ApiError>(&ns_key, "", ns, |cur| {
            let Some(cur) = cur else {
                return Ok((Change::Keep, ()));
            };
            let mut obj = cur.value();
            if !semantics::is_deleting(&obj) {
                return Ok((Change::Keep, ()));
            }
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
            if semantics::finalizers(&obj).is_empty() {
                Ok((Change::Delete, ()))
            } else {
                Ok((Change::Put(obj), ()))
            }
        });
        if let Err(e) = result {
            tracing::error!("cannot finalize namespace {ns}: {e}");
        }
    }

    /// Deletes every object of a terminating CRD, then releases it if none remain.
    fn empty_crd(&self, crd_obj: &Value) {
        let kind = Arc::new(crd::kind_of(crd_obj));
        let t = Target {
            version: kind.storage_version().name.clone(),
            kind: kind.clone(),
            namespace: String::new(),
            name: String::new(),
        };
        if let Err(e) =
            self.delete_collection(&t, &ListOptions::default(), &DeleteOptions::default())
        {
            tracing::warn!("cannot delete objects of {}: {e}", kind.key);
        }
        self.release_crd_if_empty(&kind.key);
    }

    fn release_crd_if_empty(&self, key: &ResourceKey) {
        if self.store.count(key, None) > 0 {
            return;
        }
        let crd_key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let name = key.to_string();
        let result = self.store.write::<_, ApiError>(&crd_key, "", &name, |cur| {
            let Some(cur) = cur else {
                return Ok((Change::Keep, false));
            };
            let mut obj = cur.value();
            if !semantics::is_deleting(&obj) {
                return Ok((Change::Keep, false));
            }
            if let Some(list) = obj
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                list.retain(|f| f != CRD_CLEANUP_FINALIZER);
            }
            if semantics::finalizers(&obj).is_empty() {
                Ok((Change::Delete, true))
            } else {
                Ok((Change::Put(obj), false))
            }
        });
        match result {
            Ok((_, true)) => self.forget_kind(key),
            Ok(_) => {}
            Err(e) => tracing::error!("cannot release CRD {name}: {e}"),
        }
    }

    fn forget_kind(&self, key: &ResourceKey) {
        self.resources.unregister(key);
        self.store.drop_table(key);
    }

    /// Runs what follows an object really being removed.
    fn on_removed(&self, kind: &Kind, namespace: &str, name: &str, removed: &Value) {
        self.collect_removed(
            semantics::meta_str(removed, "uid").unwrap_or_default(),
            removed,
        );
        if is_crd(kind) {
            if let Some(k) = self
                .resources
                .all()
                .iter()
                .find(|k| k.custom && k.key.to_string() == name)
            {
                let key = k.key.clone();
                self.forget_kind(&key);
            }
            return;
        }
        if kind.custom {
            self.release_crd_if_empty(&kind.key);
        }
        if kind.namespaced && !namespace.is_empty() {
            let ns_key = ResourceKey::new("", "namespaces");
            if self
                .store
                .get(&ns_key, "", namespace)
                .is_some_and(|ns| semantics::is_deleting(&ns.value()))
            {
                self.finalize_namespace_if_empty(namespace);
            }
        }
    }
}

/// A list's JSON: `head` (kind, apiVersion, metadata) with `items` spliced
/// in from their already-serialized bytes.
fn list_body(head: &Value, items: &[Bytes]) -> Bytes {
    let head = head.to_string();
    let mut buf =
        BytesMut::with_capacity(head.len() + 16 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    buf.put_slice(&head.as_bytes()[..head.len() - 1]);
    buf.put_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(item);
    }
    buf.put_slice(b"]}");
    buf.freeze()
}

fn has_spec_finalizers(kind: &Kind, obj: &Value) -> bool {
    is_namespace(kind)
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

fn qualified(kind: &Kind) -> String {
    kind.key.to_string()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses a resourceVersion parameter.
pub fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

fn too_large(requested: u64, current: u64) -> ApiError {
    let mut err = ApiError::new(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {requested}, current: {current}"),
    );
    err.causes = vec![Cause {
        reason: "ResourceVersionTooLarge".into(),
        message: "Too large resource version".into(),
        field: String::new(),
    }];
    err.retry_after = Some(1);
    err
}

fn list_options_invalid(field: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "ListOptions",
        "",
        vec![Cause::forbidden(field, detail)],
    )
}

fn encode_continue(rv: u64, after: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{after}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine;
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let v: Value =
        serde_json::from_slice(&raw).map_err(|_| invalid("the continue token is not JSON"))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(invalid("server does not recognize this encoded version"));
    }
    let rv = v
        .get("rv")
        .and_then(Value::as_u64)
        .filter(|rv| *rv > 0)
        .ok_or_else(|| {
            invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("encoded start key is missing"))?;
    Ok((rv, start.trim_end_matches('\u{0}').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_should_round_trip_and_reject_garbage() {
        let token = encode_continue(42, "ns/name");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, "ns/name".to_string())
        );
        assert_eq!(decode_continue("!!!").unwrap_err().code, 400);
        assert_eq!(decode_continue("e30=").unwrap_err().code, 400);
    }
}
