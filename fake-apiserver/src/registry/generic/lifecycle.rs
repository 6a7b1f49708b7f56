//! What kube-apiserver's built-in controllers do, done here at once after
//! the verbs' writes: a new CRD established (its kind served), a
//! terminating CRD or namespace emptied and then released, a removed
//! kind forgotten, each Event mirrored to the other Events API; and every
//! removal told to the controllers.

use std::sync::Arc;

use serde_json::Value;

use crate::{
    apimachinery::{errors::ApiError, resource_key::ResourceKey},
    registry::{
        crd, events,
        generic::{is_crd, Api, CRD_CLEANUP_FINALIZER},
        resources::Kind,
        rest::{DeleteOptions, ListOptions, Target},
        semantics,
    },
    storage::object::Change,
};

impl Api {
    /// After a write that changed the store: the controllers told, and an
    /// Event mirrored.
    pub(super) fn after_write(&self, kind: &Kind, namespace: &str, name: &str) {
        self.mirror_event(kind, namespace, name);
        for controller in &self.controllers {
            controller.written(self, &kind.key);
        }
    }

    /// After a write of an Event (`removed`: it is gone): the same write,
    /// converted, to the other Events API.
    fn mirror_event(&self, kind: &Kind, namespace: &str, name: &str) {
        let Some(other) = events::mirror_of(kind) else {
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
                        events::to_events_v1(v)
                    } else {
                        events::to_core(v)
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

    /// Serves the kinds of the CRDs found in a restored store (their status
    /// says Established already).
    pub(super) fn serve_stored_crds(&self) {
        let crd_key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let Ok(page) = self.store.list(&crd_key, None, None, None, 0, &|_| true) else {
            return;
        };
        for crd in page.items {
            self.resources.register(crd::kind_of(&crd.value()));
        }
    }

    /// Registers a CRD's kind and writes the status its controllers would.
    pub(super) fn establish_crd(&self, name: &str) {
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
    pub(super) fn empty_namespace(&self, ns: &str) {
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
    pub(super) fn empty_crd(&self, crd_obj: &Value) {
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
    pub(super) fn on_removed(&self, kind: &Kind, namespace: &str, name: &str, removed: &Value) {
        for controller in &self.controllers {
            controller.removed(self, removed);
        }
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
