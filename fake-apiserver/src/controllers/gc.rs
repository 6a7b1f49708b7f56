//! Garbage collection of dependents (objects whose `ownerReferences` name
//! an owner by uid), as kube-controller-manager's collector does it, but
//! at once instead of eventually:
//!
//! - `Background` (the default): the owner goes; then each dependent goes
//!   too, unless another of its owners still exists (then only the dangling
//!   reference is dropped).
//! - `Foreground`: the owner stays, with the `foregroundDeletion`
//!   finalizer, while its dependents are deleted (in the foreground too);
//!   once no dependent with `blockOwnerDeletion` is left, the finalizer
//!   goes and so does the owner.
//! - `Orphan`: the owner stays, with the `orphan` finalizer, until every
//!   dependent has lost its reference to it; then it goes.
//!
//! Scanning for dependents costs a pass over the store, so it only happens
//! once some object with owner references was written.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::{
    api::{Api, DeleteOptions, Target},
    semantics::{self, Endpoint},
};

/// The finalizer of a foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub const ORPHAN: &str = "orphan";

fn uid(obj: &Value) -> &str {
    semantics::meta_str(obj, "uid").unwrap_or_default()
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether `obj` names owners (then the collector has work to look for).
pub(crate) fn has_owners(obj: &Value) -> bool {
    !owner_refs(obj).is_empty()
}

impl Api {
    /// Every object with an owner reference to `owner_uid`, as a target and its value.
    fn dependents(&self, owner_uid: &str) -> Vec<(Target, Value)> {
        if owner_uid.is_empty() || !self.owned.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for kind in self.resources.all() {
            let page = self.store.list(&kind.key, None, None, None, 0, &|o| {
                std::str::from_utf8(&o.bytes).is_ok_and(|t| t.contains(owner_uid))
            });
            for item in page.map(|p| p.items).unwrap_or_default() {
                let value = item.value();
                if owner_refs(&value).iter().any(|r| r["uid"] == owner_uid) {
                    let target = Target {
                        version: kind.storage_version().name.clone(),
                        namespace: item.namespace().to_string(),
                        name: item.name().to_string(),
                        kind: kind.clone(),
                    };
                    found.push((target, value));
                }
            }
        }
        found
    }

    /// Whether any object with this uid exists (looked up by its reference).
    fn owner_exists(&self, reference: &Value, namespace: &str) -> bool {
        let api_version = reference["apiVersion"].as_str().unwrap_or_default();
        let kind = reference["kind"].as_str().unwrap_or_default();
        let name = reference["name"].as_str().unwrap_or_default();
        let Some((k, _)) = self.resources.by_kind(api_version, kind) else {
            return false;
        };
        let ns = if k.namespaced { namespace } else { "" };
        self.store
            .get(&k.key, ns, name)
            .is_some_and(|o| uid(&o.value()) == reference["uid"].as_str().unwrap_or_default())
    }

    /// Whether `dependent` has a live owner besides `owner_uid`.
    fn other_owner_alive(&self, dependent: &Value, owner_uid: &str, namespace: &str) -> bool {
        owner_refs(dependent)
            .iter()
            .filter(|r| r["uid"] != owner_uid)
            .any(|r| self.owner_exists(r, namespace))
    }

    /// Rewrites an object's owner references (dropping those to `owner_uid`).
    fn drop_reference(&self, t: &Target, owner_uid: &str) {
        let owner_uid = owner_uid.to_string();
        let _ = self.replace_for_gc(t, move |old| {
            let mut new = old.clone();
            let kept: Vec<Value> = owner_refs(old)
                .into_iter()
                .filter(|r| r["uid"] != owner_uid.as_str())
                .collect();
            if let Some(meta) = new["metadata"].as_object_mut() {
                if kept.is_empty() {
                    meta.remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), json!(kept));
                }
            }
            new
        });
    }

    fn remove_finalizer(&self, t: &Target, finalizer: &str) {
        let finalizer = finalizer.to_string();
        let _ = self.replace_for_gc(t, move |old| {
            let mut new = old.clone();
            if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| f != finalizer.as_str());
            }
            new
        });
    }

    fn replace_for_gc(
        &self,
        t: &Target,
        change: impl FnOnce(&Value) -> Value,
    ) -> Result<crate::api::Reply, crate::error::ApiError> {
        self.replace_with(t, Endpoint::Main, false, None, |old| Ok(change(old)))
    }

    /// After `owner` (deleted with `policy`) was marked or removed.
    pub(crate) fn collect(&self, owner: &Target, owner_obj: &Value, policy: &str, removed: bool) {
        let owner_uid = uid(owner_obj).to_string();
        match (policy, removed) {
            (_, true) => self.collect_removed(&owner_uid, owner_obj),
            ("Orphan", false) => {
                for (t, _) in self.dependents(&owner_uid) {
                    self.drop_reference(&t, &owner_uid);
                }
                self.remove_finalizer(owner, ORPHAN);
            }
            ("Foreground", false) => {
                let opts = DeleteOptions {
                    propagation: Some("Foreground".into()),
                    ..Default::default()
                };
                for (t, dependent) in self.dependents(&owner_uid) {
                    if self.other_owner_alive(&dependent, &owner_uid, &t.namespace) {
                        self.drop_reference(&t, &owner_uid);
                    } else {
                        let _ = self.delete(&t, &opts);
                    }
                }
                self.release_foreground(owner, &owner_uid);
            }
            _ => {}
        }
    }

    /// Removes the owner's `foregroundDeletion` finalizer once no blocking
    /// dependent is left.
    fn release_foreground(&self, owner: &Target, owner_uid: &str) {
        let blocked = self.dependents(owner_uid).iter().any(|(_, v)| {
            owner_refs(v)
                .iter()
                .any(|r| r["uid"] == owner_uid && r["blockOwnerDeletion"] == true)
        });
        if !blocked {
            self.remove_finalizer(owner, FOREGROUND);
        }
    }

    /// An object is gone: its dependents follow (background), and owners
    /// waiting in the foreground for it may go.
    pub(crate) fn collect_removed(&self, removed_uid: &str, removed: &Value) {
        if !self.owned.load(Ordering::Relaxed) {
            return;
        }
        let background = DeleteOptions {
            propagation: Some("Background".into()),
            ..Default::default()
        };
        for (t, dependent) in self.dependents(removed_uid) {
            if self.other_owner_alive(&dependent, removed_uid, &t.namespace) {
                self.drop_reference(&t, removed_uid);
            } else if !semantics::is_deleting(&dependent) {
                let _ = self.delete(&t, &background);
            }
        }
        let namespace = semantics::meta_str(removed, "namespace").unwrap_or_default();
        for reference in owner_refs(removed) {
            let api_version = reference["apiVersion"].as_str().unwrap_or_default();
            let kind = reference["kind"].as_str().unwrap_or_default();
            let Some((k, _)) = self.resources.by_kind(api_version, kind) else {
                continue;
            };
            let t = Target {
                version: k.storage_version().name.clone(),
                namespace: if k.namespaced {
                    namespace.to_string()
                } else {
                    String::new()
                },
                name: reference["name"].as_str().unwrap_or_default().to_string(),
                kind: k,
            };
            let waiting = self
                .store
                .get(&t.kind.key, &t.namespace, &t.name)
                .is_some_and(|o| {
                    let v = o.value();
                    semantics::is_deleting(&v)
                        && semantics::finalizers(&v).iter().any(|f| f == FOREGROUND)
                });
            if waiting {
                let owner_uid = reference["uid"].as_str().unwrap_or_default().to_string();
                self.release_foreground(&t, &owner_uid);
            }
        }
    }
}
