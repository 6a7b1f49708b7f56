//! DELETE and DELETECOLLECTION: preconditions, finalizers (and the ones
//! `Foreground` and `Orphan` propagation add), then the object goes or is
//! marked as being deleted; a terminating namespace or CRD is emptied, and
//! the controllers hear of every other deletion.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::{
    apimachinery::errors::{ApiError, Cause},
    registry::{
        crd,
        generic::{
            has_spec_finalizers, is_crd, is_namespace, read::list_body, Api, Committed,
            CRD_CLEANUP_FINALIZER,
        },
        rest::{DeleteOptions, ListOptions, Reply, Target},
        semantics,
    },
    storage::object::{Change, Stored},
};

const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

impl Api {
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
            let grace = if self.graceful_pods && t.kind.key.group.is_empty() && t.kind.key.plural == "pods" {
                semantics::pod_grace_period(&obj, opts.grace_period)
            } else {
                0
            };
            blocking |= grace > 0;
            // Foreground and Orphan deletions wait for the collector.
            let gc_finalizer = match opts.propagation.as_deref() {
                Some("Foreground") => Some(semantics::FOREGROUND),
                Some("Orphan") => Some(semantics::ORPHAN),
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
            if grace > 0 {
                semantics::mark_deleting_gracefully(&mut obj, self.clock.now(), grace);
            } else {
                semantics::mark_deleting(&mut obj, &now);
            }
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
        self.after_write(&t.kind, &t.namespace, &t.name);
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
            let value = obj.value();
            for controller in &self.controllers {
                controller.deleting(self, t, &value, policy);
            }
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
}
