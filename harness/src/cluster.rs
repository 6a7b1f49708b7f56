//! The cluster handle: an in-process fake API server with its clock on
//! tokio's (virtual) time, and the test's own reads and writes, which go
//! straight to the server's API (not through HTTP), so that the journal holds
//! only the operator's requests.

use std::sync::Arc;

use fake_apiserver::{
    api::{DeleteOptions, Target},
    inject::{parse_resource, Injector},
    journal::Journal,
    patch::PatchType,
    semantics::Endpoint,
    Clock, FakeApiServer,
};
use serde_json::Value;

use crate::HarnessError;

/// The epoch the virtual clocks start at (2023-11-14T22:13:20Z).
pub const EPOCH: i64 = 1_700_000_000;

/// A fake cluster for one test.
#[derive(Clone)]
pub struct Cluster {
    server: FakeApiServer,
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

    /// A cluster around an existing server.
    pub fn with_server(server: FakeApiServer) -> Self {
        Cluster { server }
    }

    /// The fake API server.
    pub fn server(&self) -> &FakeApiServer {
        &self.server
    }

    /// A client for the operator (its requests are journaled).
    pub fn client(&self) -> kube::Client {
        self.server.client()
    }

    /// The journal of the operator's requests.
    pub fn journal(&self) -> &Arc<Journal> {
        self.server.journal()
    }

    /// The injector (watch events, fault rules).
    pub fn injector(&self) -> &Arc<Injector> {
        self.server.injector()
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
            let Some((kind, version)) = self.server.api().resources.by_kind(api_version, kind_name)
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
            match self.server.api().create(&t, doc.clone(), false) {
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
                    self.server
                        .api()
                        .patch(
                            &t,
                            PatchType::Merge,
                            patch.to_string().as_bytes(),
                            Endpoint::Main,
                            false,
                        )
                        .map_err(|e| HarnessError::Refused(e.to_string()))?;
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

    fn target(&self, resource: &str, namespace: &str, name: &str) -> Result<Target, HarnessError> {
        let key = parse_resource(resource);
        let kind =
            self.server.api().resources.get(&key).ok_or_else(|| {
                HarnessError::Refused(format!("resource {resource:?} is not served"))
            })?;
        Ok(Target {
            version: kind.storage_version().name.clone(),
            namespace: if kind.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            kind,
            name: name.to_string(),
        })
    }

    /// The object, if it exists (`resource` is `plural` or `plural.group`).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let t = self.target(resource, namespace, name).ok()?;
        let reply = self.server.api().get(&t).ok()?;
        serde_json::from_slice(&reply.body).ok()
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
        let t = self.target(resource, namespace, name)?;
        let reply = self
            .server
            .api()
            .patch(
                &t,
                PatchType::Merge,
                patch.to_string().as_bytes(),
                Endpoint::Main,
                false,
            )
            .map_err(|e| HarnessError::Refused(e.to_string()))?;
        serde_json::from_slice(&reply.body).map_err(|e| HarnessError::Refused(e.to_string()))
    }

    /// Deletes the object (finalizers hold it, as on a real cluster).
    ///
    /// # Errors
    /// When the server refuses (e.g. 404).
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<(), HarnessError> {
        let t = self.target(resource, namespace, name)?;
        self.server
            .api()
            .delete(&t, &DeleteOptions::default())
            .map(|_| ())
            .map_err(|e| HarnessError::Refused(e.to_string()))
    }

    /// Every object of a resource, in key order.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let key = parse_resource(resource);
        self.server
            .api()
            .store
            .list(&key, None, None, None, 0, &|_| true)
            .map(|p| p.items.iter().map(|o| o.value()).collect())
            .unwrap_or_default()
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

    /// The latest resourceVersion of a resource's changes.
    pub(crate) fn latest_rv(&self, resource: &str) -> u64 {
        self.server.api().store.latest_rv(&parse_resource(resource))
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}
