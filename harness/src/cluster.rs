//! The cluster handle: by default an in-process fake API server with its
//! clock on tokio's (virtual) time, where the test's own reads and writes go
//! straight to the server's API (not through HTTP), so that the journal holds
//! only the operator's requests; or any cluster a kubeconfig points to.

use std::sync::Arc;

use fake_apiserver::{
    apimachinery::resource_key::parse_resource,
    registry::{
        patch::PatchType,
        rest::{DeleteOptions, Target},
        semantics::Endpoint,
    },
    testing::{inject::Injector, journal::Journal},
    Clock, FakeApiServer,
};
use serde_json::Value;

use crate::{error::HarnessError, records::WriteRecord, remote::Remote};

/// The epoch the virtual clocks start at (2023-11-14T22:13:20Z).
pub const EPOCH: i64 = 1_700_000_000;

/// The cluster of one test: an in-process fake (the default) or a cluster
/// reached through a kubeconfig ([`Cluster::connect`]).
#[derive(Clone)]
pub struct Cluster {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Fake(FakeApiServer),
    Remote(Arc<Remote>),
}

impl Cluster {
    /// A fresh cluster whose clock follows tokio's (call inside a runtime).
    pub fn new() -> Self {
        Cluster::with_server(
            FakeApiServer::builder()
                .seed(7)
                .clock(Clock::tokio_from(EPOCH))
                .build(),
        )
    }

    /// A fresh simulated cluster (every controller, one node) whose clock
    /// follows tokio's: Deployments get pods that run on the node,
    /// Services get endpoints, Jobs complete, and `settle` waits for the
    /// controllers too. Call inside a runtime.
    pub fn simulated() -> Self {
        Self::simulated_with(1, fake_apiserver::controllers::stages::Stages::default())
    }

    /// A simulated cluster with `nodes` nodes and pods that behave as
    /// `stages` says (see the stages file in docs/fake-apiserver.md).
    pub fn simulated_with(
        nodes: usize,
        stages: fake_apiserver::controllers::stages::Stages,
    ) -> Self {
        Cluster::with_server(
            FakeApiServer::builder()
                .seed(7)
                .clock(Clock::tokio_from(EPOCH))
                .controllers(fake_apiserver::controllers::selection::Selection::all())
                // The controllers' requests are journaled too: room for them
                // besides the operator's.
                .journal_limit(200_000)
                .nodes(nodes)
                .stages(stages)
                .build(),
        )
    }

    /// Whether the simulated cluster's controllers have nothing to do now
    /// (always for a pure store or a remote cluster).
    pub(crate) fn controllers_quiet(&self) -> bool {
        self.server()
            .and_then(FakeApiServer::simulation)
            .is_none_or(|s| s.is_quiet())
    }

    /// When the simulated cluster next has something to do, if ever.
    pub(crate) fn controllers_next_wakeup(&self) -> Option<tokio::time::Instant> {
        self.server()
            .and_then(FakeApiServer::simulation)
            .and_then(|s| s.next_wakeup())
    }

    /// Takes a node down, as when its kubelet stops posting status: its
    /// `Ready` condition becomes `Unknown`; the node lifecycle controller
    /// taints it and marks its pods not ready, and evicts them once their
    /// toleration (300 s by default) runs out.
    ///
    /// # Errors
    /// When there is no such node, or the cluster is not the fake.
    pub fn node_down(&self, node: &str) -> Result<(), HarnessError> {
        self.node_ready(node, false)
    }

    /// Brings a node back: `Ready` again; its kubelet runs its pods again.
    ///
    /// # Errors
    /// When there is no such node, or the cluster is not the fake.
    pub fn node_up(&self, node: &str) -> Result<(), HarnessError> {
        self.node_ready(node, true)
    }

    fn node_ready(&self, node: &str, up: bool) -> Result<(), HarnessError> {
        let server = self.fake("taking nodes down")?;
        let now = server.api().clock.rfc3339();
        fake_apiserver::controllers::incidents::set_node_ready(&**server.api(), node, up, &now)
            .map_err(|e| HarnessError::Refused(e.to_string()))
    }

    /// Makes a pod's containers misbehave from now on, as the stages
    /// annotations say: `failure` is `CrashLoopBackOff`, `OOMKilled`,
    /// `ImagePullBackOff`, `ErrImagePull` or `NeverReady` (with
    /// `exit_code` for a crash loop).
    ///
    /// # Errors
    /// When there is no such pod, or the cluster is not the fake.
    pub fn fail_pod(
        &self,
        namespace: &str,
        pod: &str,
        failure: &str,
        exit_code: Option<i32>,
    ) -> Result<(), HarnessError> {
        let server = self.fake("failing pods")?;
        fake_apiserver::controllers::incidents::fail_pod(
            &**server.api(),
            namespace,
            pod,
            failure,
            exit_code,
        )
        .map_err(|e| HarnessError::Refused(e.to_string()))
    }

    /// A cluster around an existing server.
    pub fn with_server(server: FakeApiServer) -> Self {
        Cluster {
            backend: Backend::Fake(server),
        }
    }

    /// The cluster a kubeconfig points to (`None`: the usual inference,
    /// `KUBECONFIG` or `~/.kube/config` or in-cluster). Runs there use real
    /// time: run such tests without a paused clock. Watch injection and
    /// fault rules need the fake; the operator's writes are recorded by its
    /// client instead of a server journal.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read or yields no client.
    pub async fn connect(kubeconfig: Option<&std::path::Path>) -> Result<Self, HarnessError> {
        let config = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| HarnessError::Refused(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| HarnessError::Refused(e.to_string()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| HarnessError::Refused(e.to_string()))?,
        };
        Ok(Cluster {
            backend: Backend::Remote(Arc::new(Remote::new(config)?)),
        })
    }

    /// Whether this is the in-process fake.
    pub fn is_fake(&self) -> bool {
        matches!(self.backend, Backend::Fake(_))
    }

    /// The fake API server (`None` for a remote cluster).
    pub fn server(&self) -> Option<&FakeApiServer> {
        match &self.backend {
            Backend::Fake(server) => Some(server),
            Backend::Remote(_) => None,
        }
    }

    pub(crate) fn fake(&self, what: &str) -> Result<&FakeApiServer, HarnessError> {
        self.server().ok_or_else(|| {
            HarnessError::Refused(format!("{what} needs the fake cluster, not a remote one"))
        })
    }

    /// A client for the operator (its requests are journaled by the fake,
    /// or recorded by the client for a remote cluster). Call inside the
    /// runtime the operator runs on.
    ///
    /// # Errors
    /// When a remote cluster's kubeconfig yields no client.
    pub fn client(&self) -> Result<kube::Client, HarnessError> {
        match &self.backend {
            Backend::Fake(server) => Ok(server.client()),
            Backend::Remote(remote) => remote.client(),
        }
    }

    /// Authorizes the fake's requests with RBAC from now on, as a real
    /// cluster does (kube-apiserver's bootstrap roles and bindings are
    /// written). The test's own reads and writes through this handle are
    /// not requests, and stay allowed.
    ///
    /// # Errors
    /// For a remote cluster.
    pub fn enforce_rbac(&self) -> Result<(), HarnessError> {
        self.fake("enforcing RBAC")?
            .set_authorization(fake_apiserver::auth::gate::Mode::Rbac);
        Ok(())
    }

    /// A bearer token of the ServiceAccount `namespace/name`, created (with
    /// its namespace) if missing; it authenticates as
    /// `system:serviceaccount:NAMESPACE:NAME`, in its groups.
    ///
    /// # Errors
    /// For a remote cluster, or when the objects cannot be created.
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, HarnessError> {
        let server = self.fake("service accounts")?;
        if self.get("namespaces", "", namespace).is_none() {
            self.apply(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace:?}}}\n"
            ))?;
        }
        if self.get("serviceaccounts", namespace, name).is_none() {
            self.apply(&format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name:?}, namespace: {namespace:?}}}\n"
            ))?;
        }
        Ok(server.token_for(fake_apiserver::auth::UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: String::new(),
            groups: fake_apiserver::auth::authn::service_account_groups(namespace),
            extra: Default::default(),
        }))
    }

    /// The journal of the operator's requests (fake cluster only).
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.server().map(FakeApiServer::journal)
    }

    /// The injector (watch events, fault rules; fake cluster only).
    ///
    /// # Errors
    /// For a remote cluster.
    pub fn injector(&self) -> Result<&Arc<Injector>, HarnessError> {
        self.fake("watch injection and fault rules")
            .map(FakeApiServer::injector)
    }

    /// The operator's write requests so far, in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        match &self.backend {
            Backend::Remote(remote) => remote.writes(),
            Backend::Fake(server) => server
                .journal()
                .entries(&fake_apiserver::testing::journal::Filter {
                    writes: true,
                    ..Default::default()
                })
                .into_iter()
                // The operator's, not the simulated cluster's.
                .filter(|e| {
                    !e.user_agent
                        .as_deref()
                        .is_some_and(fake_apiserver::controllers::is_simulated)
                })
                .map(|e| WriteRecord {
                    verb: e.verb,
                    resource: e.resource.unwrap_or_default(),
                    object: e.name.map(|n| match e.namespace {
                        Some(ns) => format!("{ns}/{n}"),
                        None => n,
                    }),
                    subresource: e.subresource,
                    content_type: e.content_type,
                    body: e.request_body,
                    code: e.code,
                })
                .collect(),
        }
    }

    /// Applies YAML or JSON documents (CRDs first), as `kubectl apply` would
    /// for the fields given: created when absent, else merged into the
    /// existing object (other annotations, status and finalizers stay).
    ///
    /// # Errors
    /// When a document is malformed or refused by the server.
    pub fn apply(&self, text: &str) -> Result<Vec<String>, HarnessError> {
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| HarnessError::Refused(e.to_string()))?;
            if !v.is_null() {
                docs.push(
                    serde_json::to_value(v).map_err(|e| HarnessError::Refused(e.to_string()))?,
                );
            }
        }
        docs.sort_by_key(|d| {
            d.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition")
        });
        let server = match &self.backend {
            Backend::Fake(server) => server,
            Backend::Remote(remote) => return remote.apply(docs),
        };
        let mut done = Vec::new();
        for doc in docs {
            let api_version = doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind_name = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some((kind, version)) = server.api().resources.by_kind(api_version, kind_name)
            else {
                return Err(HarnessError::Refused(format!(
                    "no kind {kind_name:?} is served in {api_version:?}"
                )));
            };
            let namespace = if kind.namespaced {
                doc.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or("default")
                    .to_string()
            } else {
                String::new()
            };
            let t = Target {
                kind,
                version,
                namespace: namespace.clone(),
                name: String::new(),
            };
            match server.api().create(&t, doc.clone(), false) {
                Ok(_) => {}
                Err(e) if e.reason == "AlreadyExists" => {
                    let t = Target {
                        name: name.clone(),
                        ..t
                    };
                    let mut patch = doc.clone();
                    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                    merge_patch(server, &t, &patch, Endpoint::Main)?;
                }
                Err(e) => return Err(HarnessError::Refused(e.to_string())),
            }
            done.push(format!("{kind_name} {namespace}/{name}"));
        }
        Ok(done)
    }

    /// Applies one typed object (e.g. a k8s-openapi `ConfigMap`).
    ///
    /// # Errors
    /// When it does not serialize or is refused.
    pub fn apply_typed<T: serde::Serialize>(&self, obj: &T) -> Result<Vec<String>, HarnessError> {
        let value = serde_json::to_value(obj).map_err(|e| HarnessError::Refused(e.to_string()))?;
        self.apply(&value.to_string())
    }

    /// The fake's target for a resource, or the remote backend.
    fn target(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Result<(&FakeApiServer, Target), &Remote>, HarnessError> {
        let server = match &self.backend {
            Backend::Fake(server) => server,
            Backend::Remote(remote) => return Ok(Err(remote)),
        };
        let key = parse_resource(resource);
        let kind =
            server.api().resources.get(&key).ok_or_else(|| {
                HarnessError::Refused(format!("resource {resource:?} is not served"))
            })?;
        Ok(Ok((
            server,
            Target {
                version: kind.storage_version().name.clone(),
                namespace: if kind.namespaced {
                    namespace.to_string()
                } else {
                    String::new()
                },
                kind,
                name: name.to_string(),
            },
        )))
    }

    /// The object, if it exists (`resource` is `plural` or `plural.group`).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        match self.target(resource, namespace, name).ok()? {
            Ok((server, t)) => {
                let reply = server.api().get(&t).ok()?;
                serde_json::from_slice(&reply.body).ok()
            }
            Err(remote) => remote.get(resource, namespace, name),
        }
    }

    /// Merge-patches the object.
    ///
    /// # Errors
    /// When the server refuses (e.g. 404).
    pub fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, HarnessError> {
        self.patch_at(resource, namespace, name, patch, Endpoint::Main)
    }

    /// Merge-patches the object's `/status` subresource, as a controller
    /// reporting on it would (e.g. a Deployment's `readyReplicas`); for
    /// resources without that subresource, the object itself.
    ///
    /// # Errors
    /// When the server refuses (e.g. 404).
    pub fn patch_status(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, HarnessError> {
        self.patch_at(resource, namespace, name, patch, Endpoint::Status)
    }

    fn patch_at(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
        endpoint: Endpoint,
    ) -> Result<Value, HarnessError> {
        let (server, t) = match self.target(resource, namespace, name)? {
            Ok(fake) => fake,
            Err(remote) => {
                let status = endpoint == Endpoint::Status;
                return remote.patch(resource, namespace, name, patch, status);
            }
        };
        let endpoint = if t.kind.has_status(&t.version) {
            endpoint
        } else {
            Endpoint::Main
        };
        let reply = merge_patch(server, &t, patch, endpoint)?;
        serde_json::from_slice(&reply.body).map_err(|e| HarnessError::Refused(e.to_string()))
    }

    /// Deletes the object (finalizers hold it, as on a real cluster).
    ///
    /// # Errors
    /// When the server refuses (e.g. 404).
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<(), HarnessError> {
        match self.target(resource, namespace, name)? {
            Ok((server, t)) => server
                .api()
                .delete(&t, &DeleteOptions::default())
                .map(|_| ())
                .map_err(|e| HarnessError::Refused(e.to_string())),
            Err(remote) => remote.delete(resource, namespace, name),
        }
    }

    /// Every object of a resource, in key order.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        match &self.backend {
            Backend::Fake(server) => server
                .api()
                .store
                .list(&parse_resource(resource), None, None, None, 0, &|_| true)
                .map(|p| p.items.iter().map(|o| o.value()).collect())
                .unwrap_or_default(),
            Backend::Remote(remote) => remote.list(resource),
        }
    }

    /// The core/v1 Events about the object named `name`, oldest first.
    pub fn events_for(&self, name: &str) -> Vec<Value> {
        self.list("events")
            .into_iter()
            .filter(|e| e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name))
            .collect()
    }

    /// Waits (in tokio time, so virtual under a paused clock) until the
    /// object exists and `condition` holds for it; returns it.
    ///
    /// # Errors
    /// A timeout, with the object's last state.
    pub async fn wait_for(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        condition: impl Fn(&Value) -> bool,
        timeout: std::time::Duration,
    ) -> Result<Value, HarnessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.get(resource, namespace, name);
            if let Some(obj) = current.as_ref().filter(|o| condition(o)) {
                return Ok(obj.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(HarnessError::Expectation(format!(
                    "{resource} {namespace}/{name} did not meet the condition within {timeout:?}; last state: {}",
                    current.map_or("absent".to_string(), |o| o.to_string())
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The resourceVersion the operator's watch must reach to have seen
    /// every change: the fake's latest change of the resource, or, for a
    /// remote cluster, the test's own latest write to it.
    /// The latest resourceVersion of `resource`'s changes, in `namespaces`
    /// only when given.
    pub(crate) fn latest_rv(&self, resource: &str, namespaces: Option<&[String]>) -> u64 {
        match &self.backend {
            Backend::Fake(server) => match namespaces {
                Some(ns) => server
                    .api()
                    .store
                    .latest_rv_in(&parse_resource(resource), ns),
                None => server.api().store.latest_rv(&parse_resource(resource)),
            },
            Backend::Remote(remote) => remote.written_rv(resource),
        }
    }
}

/// A merge patch of the fake's object (or its `/status`), as the test's
/// own write.
fn merge_patch(
    server: &FakeApiServer,
    t: &Target,
    patch: &Value,
    endpoint: Endpoint,
) -> Result<fake_apiserver::registry::rest::Reply, HarnessError> {
    server
        .api()
        .patch(
            t,
            PatchType::Merge,
            patch.to_string().as_bytes(),
            endpoint,
            false,
        )
        .map_err(|e| HarnessError::Refused(e.to_string()))
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}
