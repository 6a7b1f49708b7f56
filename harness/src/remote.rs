//! A cluster reached through a kubeconfig (a real cluster, or a fake server
//! served elsewhere): the test's own reads and writes go through a helper
//! thread with its own runtime and client, so that the cluster handle keeps
//! its synchronous API; the operator's client records its write requests on
//! the client side, since there is no server journal to read them from.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{mpsc, Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use kube::{
    api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    client::Body,
    core::GroupVersionKind,
    discovery::{ApiCapabilities, ApiResource, Discovery, Scope},
    Client, Config,
};
use serde_json::Value;

use crate::{error::HarnessError, records::WriteRecord};

type Reply = mpsc::Sender<Result<Value, HarnessError>>;

/// What the helper thread is asked to do.
enum Op {
    Apply(Vec<Value>),
    Get(String, String, String),
    /// Resource, namespace, name, merge patch, and whether to `/status`.
    Patch(String, String, String, Value, bool),
    Delete(String, String, String),
    List(String),
}

/// The remote backend of a `Cluster`.
pub(crate) struct Remote {
    config: Config,
    ops: Mutex<mpsc::Sender<(Op, Reply)>>,
    /// The operator's write requests, as its client sent them.
    writes: Arc<Mutex<Vec<WriteRecord>>>,
    /// Per resource, the resourceVersion of the test's latest write.
    written: Arc<Mutex<HashMap<String, u64>>>,
}

impl Remote {
    pub(crate) fn new(config: Config) -> Result<Self, HarnessError> {
        let (tx, rx) = mpsc::channel::<(Op, Reply)>();
        let (ready, started) = mpsc::channel();
        let written = Arc::new(Mutex::new(HashMap::new()));
        let (thread_config, thread_written) = (config.clone(), written.clone());
        std::thread::Builder::new()
            .name("kopf-harness-remote".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                // The client's background tasks live on this runtime.
                let client = match runtime.block_on(async { Client::try_from(thread_config) }) {
                    Ok(client) => client,
                    Err(e) => {
                        let _ = ready.send(Err(format!("cannot build a client: {e}")));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut driver = Driver {
                    client,
                    discovery: None,
                    written: thread_written,
                };
                while let Ok((op, reply)) = rx.recv() {
                    let result = runtime.block_on(driver.run(op));
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| HarnessError::Stopped(format!("cannot start a thread: {e}")))?;
        started
            .recv()
            .map_err(|_| HarnessError::Stopped("the remote helper thread is gone".into()))?
            .map_err(HarnessError::Refused)?;
        Ok(Remote {
            config,
            ops: Mutex::new(tx),
            writes: Arc::default(),
            written,
        })
    }

    fn call(&self, op: Op) -> Result<Value, HarnessError> {
        let (tx, rx) = mpsc::channel();
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((op, tx))
            .map_err(|_| HarnessError::Stopped("the remote helper thread is gone".into()))?;
        rx.recv()
            .map_err(|_| HarnessError::Stopped("the remote helper thread is gone".into()))?
    }

    pub(crate) fn apply(&self, docs: Vec<Value>) -> Result<Vec<String>, HarnessError> {
        let done = self.call(Op::Apply(docs))?;
        Ok(serde_json::from_value(done).unwrap_or_default())
    }

    pub(crate) fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.call(Op::Get(resource.into(), namespace.into(), name.into()))
            .ok()
            .filter(|v| !v.is_null())
    }

    pub(crate) fn patch(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> Result<Value, HarnessError> {
        self.call(Op::Patch(
            resource.into(),
            namespace.into(),
            name.into(),
            patch.clone(),
            status,
        ))
    }

    pub(crate) fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), HarnessError> {
        self.call(Op::Delete(resource.into(), namespace.into(), name.into()))
            .map(|_| ())
    }

    pub(crate) fn list(&self, resource: &str) -> Vec<Value> {
        match self.call(Op::List(resource.into())) {
            Ok(Value::Array(items)) => items,
            _ => Vec::new(),
        }
    }

    /// A client for the operator that records its writes (call inside the
    /// test's runtime).
    pub(crate) fn client(&self) -> Result<Client, HarnessError> {
        let builder = kube::client::ClientBuilder::try_from(self.config.clone())
            .map_err(|e| refused(format!("cannot build a client: {e}")))?;
        Ok(builder
            .with_layer(&RecordLayer {
                writes: self.writes.clone(),
            })
            .build())
    }

    pub(crate) fn writes(&self) -> Vec<WriteRecord> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn written_rv(&self, resource: &str) -> u64 {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(resource)
            .copied()
            .unwrap_or(0)
    }
}

fn refused(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Refused(e.to_string())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn resource_key(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}

/// The helper thread's state.
struct Driver {
    client: Client,
    discovery: Option<Discovery>,
    written: Arc<Mutex<HashMap<String, u64>>>,
}

impl Driver {
    async fn discover(&mut self, refresh: bool) -> Result<&Discovery, HarnessError> {
        if refresh || self.discovery.is_none() {
            let d = Discovery::new(self.client.clone())
                .run()
                .await
                .map_err(|e| refused(format!("discovery failed: {e}")))?;
            self.discovery = Some(d);
        }
        Ok(self.discovery.as_ref().expect("discovery was just run"))
    }

    /// `plural` or `plural.group` to the served resource.
    async fn by_name(
        &mut self,
        resource: &str,
    ) -> Result<(ApiResource, ApiCapabilities), HarnessError> {
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        for refresh in [false, true] {
            let found = self.discover(refresh).await?.groups().find_map(|g| {
                (g.name() == group)
                    .then(|| {
                        g.recommended_resources()
                            .into_iter()
                            .find(|(ar, _)| ar.plural == plural)
                    })
                    .flatten()
            });
            if let Some(found) = found {
                return Ok(found);
            }
        }
        Err(refused(format!("resource {resource:?} is not served")))
    }

    /// A kind to its resource, waiting a little for a just-created CRD.
    async fn by_kind(
        &mut self,
        gvk: &GroupVersionKind,
    ) -> Result<(ApiResource, ApiCapabilities), HarnessError> {
        for attempt in 0..50 {
            if let Some(found) = self.discover(attempt > 0).await?.resolve_gvk(gvk) {
                return Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(refused(format!(
            "no kind {:?} is served in \"{}\"",
            gvk.kind,
            gvk.api_version()
        )))
    }

    fn api(&self, ar: &ApiResource, caps: &ApiCapabilities, namespace: &str) -> Api<DynamicObject> {
        match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, ar),
            Scope::Cluster => Api::all_with(self.client.clone(), ar),
        }
    }

    fn saw(&self, ar: &ApiResource, obj: &DynamicObject) {
        let rv = obj
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok());
        if let Some(rv) = rv {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            let at = written.entry(resource_key(ar)).or_default();
            *at = (*at).max(rv);
        }
    }

    async fn run(&mut self, op: Op) -> Result<Value, HarnessError> {
        match op {
            Op::Apply(docs) => {
                let mut done = Vec::new();
                for doc in docs {
                    done.push(self.apply_one(doc).await?);
                }
                Ok(Value::from(done))
            }
            Op::Get(resource, namespace, name) => {
                let (ar, caps) = self.by_name(&resource).await?;
                let obj = self
                    .api(&ar, &caps, &namespace)
                    .get_opt(&name)
                    .await
                    .map_err(refused)?;
                serde_json::to_value(obj).map_err(refused)
            }
            Op::Patch(resource, namespace, name, patch, status) => {
                let (ar, caps) = self.by_name(&resource).await?;
                let api = self.api(&ar, &caps, &namespace);
                let params = PatchParams::default();
                let obj = if status {
                    api.patch_status(&name, &params, &Patch::Merge(&patch))
                        .await
                } else {
                    api.patch(&name, &params, &Patch::Merge(&patch)).await
                }
                .map_err(refused)?;
                self.saw(&ar, &obj);
                serde_json::to_value(obj).map_err(refused)
            }
            Op::Delete(resource, namespace, name) => {
                let (ar, caps) = self.by_name(&resource).await?;
                let deleted = self
                    .api(&ar, &caps, &namespace)
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map_err(refused)?;
                if let Some(obj) = deleted.left() {
                    self.saw(&ar, &obj);
                }
                Ok(Value::Null)
            }
            Op::List(resource) => {
                let (ar, _) = self.by_name(&resource).await?;
                let list = Api::<DynamicObject>::all_with(self.client.clone(), &ar)
                    .list(&ListParams::default())
                    .await
                    .map_err(refused)?;
                let mut items = list
                    .items
                    .into_iter()
                    .map(|mut o| {
                        o.types.get_or_insert_with(|| kube::core::TypeMeta {
                            api_version: ar.api_version.clone(),
                            kind: ar.kind.clone(),
                        });
                        serde_json::to_value(o).map_err(refused)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                items.sort_by_key(|o| {
                    let s = |p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_string);
                    (s("/metadata/namespace"), s("/metadata/name"))
                });
                Ok(Value::Array(items))
            }
        }
    }

    async fn apply_one(&mut self, doc: Value) -> Result<String, HarnessError> {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let (ar, caps) = self.by_kind(&gvk).await?;
        let mut obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(refused)?;
        let namespace = match caps.scope {
            Scope::Namespaced => obj
                .metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            Scope::Cluster => String::new(),
        };
        obj.metadata.resource_version = None;
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api = self.api(&ar, &caps, &namespace);
        let stored = match api.create(&PostParams::default(), &obj).await {
            Ok(stored) => stored,
            Err(e) if is_status(&e, 409) => {
                let mut patch = doc;
                if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(refused)?
            }
            Err(e) => return Err(refused(e)),
        };
        self.saw(&ar, &stored);
        Ok(format!("{kind} {namespace}/{name}"))
    }
}

/// Records the write requests of a client (tower layer).
#[derive(Clone)]
struct RecordLayer {
    writes: Arc<Mutex<Vec<WriteRecord>>>,
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            writes: self.writes.clone(),
        }
    }
}

/// The recording service.
struct Record<S> {
    inner: S,
    writes: Arc<Mutex<Vec<WriteRecord>>>,
}

/// `plural[.group]`, `namespace/name` and the subresource of an API path.
fn parse_path(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub, ..] => (*plural, Some(*name), Some(sub.to_string())),
        [] => return None,
    };
    let resource = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    let object = name.map(|n| match namespace {
        Some(ns) => format!("{ns}/{n}"),
        None => n.to_string(),
    });
    Some((resource, object, sub))
}

impl<S, B> tower::Service<http::Request<Body>> for Record<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let verb = match *req.method() {
            http::Method::POST => Some("create"),
            http::Method::PUT => Some("update"),
            http::Method::PATCH => Some("patch"),
            http::Method::DELETE => Some("delete"),
            _ => None,
        };
        let parsed = verb.and_then(|_| parse_path(req.uri().path()));
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // kube sends whole bodies (`Body::from(Vec<u8>)`), which clone.
        let body = req.body().try_clone();
        let writes = self.writes.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let bytes = match body {
                Some(b) if parsed.is_some() => b.collect_bytes().await.ok(),
                _ => None,
            };
            let result = response.await;
            if let (Some(verb), Some((resource, object, subresource))) = (verb, parsed) {
                let verb = if verb == "delete" && object.is_none() {
                    "deletecollection"
                } else {
                    verb
                };
                writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(WriteRecord {
                        verb: verb.into(),
                        resource,
                        object,
                        subresource,
                        content_type,
                        body: bytes.filter(|b| !b.is_empty()).map(|b| {
                            serde_json::from_slice(&b).unwrap_or_else(|_| {
                                Value::String(String::from_utf8_lossy(&b).into_owned())
                            })
                        }),
                        code: result.as_ref().map_or(0, |r| r.status().as_u16()),
                    });
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_should_name_resource_object_and_subresource() {
        let p = |s: &str| parse_path(s);
        assert_eq!(
            p("/api/v1/namespaces/ns1/configmaps/cm"),
            Some(("configmaps".into(), Some("ns1/cm".into()), None))
        );
        assert_eq!(
            p("/apis/kopf.dev/v1/namespaces/ns1/kopfexamples/x/status"),
            Some((
                "kopfexamples.kopf.dev".into(),
                Some("ns1/x".into()),
                Some("status".into())
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/ns1"),
            Some(("namespaces".into(), Some("ns1".into()), None))
        );
        assert_eq!(
            p("/api/v1/namespaces/ns1/events"),
            Some(("events".into(), None, None))
        );
        assert_eq!(p("/version"), None);
    }
}
