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

use serde_json::{json, Value};

use crate::registry::{
    rest::{Controller, DeleteOptions, Objects, Target},
    semantics::{self, owner_refs, FOREGROUND, ORPHAN},
};

/// The garbage collector, registered with the API by the server.
#[derive(Clone, Copy, Debug, Default)]
pub struct GarbageCollector;

impl Controller for GarbageCollector {
    fn deleting(&self, api: &dyn Objects, t: &Target, obj: &Value, policy: &str) {
        collect(api, t, obj, policy);
    }

    fn removed(&self, api: &dyn Objects, obj: &Value) {
        collect_removed(api, uid(obj), obj);
    }
}

fn uid(obj: &Value) -> &str {
    semantics::meta_str(obj, "uid").unwrap_or_default()
}

/// Every object with an owner reference to `owner_uid`, as a target and its value.
fn dependents(api: &dyn Objects, owner_uid: &str) -> Vec<(Target, Value)> {
    if owner_uid.is_empty() || !api.owners_written() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for kind in api.resources().all() {
        let page = api.store().list(&kind.key, None, None, None, 0, &|o| {
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
fn owner_exists(api: &dyn Objects, reference: &Value, namespace: &str) -> bool {
    let api_version = reference["apiVersion"].as_str().unwrap_or_default();
    let kind = reference["kind"].as_str().unwrap_or_default();
    let name = reference["name"].as_str().unwrap_or_default();
    let Some((k, _)) = api.resources().by_kind(api_version, kind) else {
        return false;
    };
    let ns = if k.namespaced { namespace } else { "" };
    api.store()
        .get(&k.key, ns, name)
        .is_some_and(|o| uid(&o.value()) == reference["uid"].as_str().unwrap_or_default())
}

/// Whether `dependent` has a live owner besides `owner_uid`.
fn other_owner_alive(
    api: &dyn Objects,
    dependent: &Value,
    owner_uid: &str,
    namespace: &str,
) -> bool {
    owner_refs(dependent)
        .iter()
        .filter(|r| r["uid"] != owner_uid)
        .any(|r| owner_exists(api, r, namespace))
}

/// Rewrites an object's owner references (dropping those to `owner_uid`).
fn drop_reference(api: &dyn Objects, t: &Target, owner_uid: &str) {
    let _ = api.update_with(t, &|old| {
        let mut new = old.clone();
        let kept: Vec<Value> = owner_refs(old)
            .into_iter()
            .filter(|r| r["uid"] != owner_uid)
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

fn remove_finalizer(api: &dyn Objects, t: &Target, finalizer: &str) {
    let _ = api.update_with(t, &|old| {
        let mut new = old.clone();
        if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
            list.retain(|f| f != finalizer);
        }
        new
    });
}

/// After `owner` was marked as being deleted with `policy` (and is still there).
fn collect(api: &dyn Objects, owner: &Target, owner_obj: &Value, policy: &str) {
    let owner_uid = uid(owner_obj).to_string();
    match policy {
        "Orphan" => {
            for (t, _) in dependents(api, &owner_uid) {
                drop_reference(api, &t, &owner_uid);
            }
            remove_finalizer(api, owner, ORPHAN);
        }
        "Foreground" => {
            let opts = DeleteOptions {
                propagation: Some("Foreground".into()),
                ..Default::default()
            };
            for (t, dependent) in dependents(api, &owner_uid) {
                if other_owner_alive(api, &dependent, &owner_uid, &t.namespace) {
                    drop_reference(api, &t, &owner_uid);
                } else {
                    let _ = api.delete(&t, &opts);
                }
            }
            release_foreground(api, owner, &owner_uid);
        }
        _ => {}
    }
}

/// Removes the owner's `foregroundDeletion` finalizer once no blocking
/// dependent is left.
fn release_foreground(api: &dyn Objects, owner: &Target, owner_uid: &str) {
    let blocked = dependents(api, owner_uid).iter().any(|(_, v)| {
        owner_refs(v)
            .iter()
            .any(|r| r["uid"] == owner_uid && r["blockOwnerDeletion"] == true)
    });
    if !blocked {
        remove_finalizer(api, owner, FOREGROUND);
    }
}

/// An object is gone: its dependents follow (background), and owners
/// waiting in the foreground for it may go.
fn collect_removed(api: &dyn Objects, removed_uid: &str, removed: &Value) {
    if !api.owners_written() {
        return;
    }
    let background = DeleteOptions {
        propagation: Some("Background".into()),
        ..Default::default()
    };
    for (t, dependent) in dependents(api, removed_uid) {
        if other_owner_alive(api, &dependent, removed_uid, &t.namespace) {
            drop_reference(api, &t, removed_uid);
        } else if !semantics::is_deleting(&dependent) {
            let _ = api.delete(&t, &background);
        }
    }
    let namespace = semantics::meta_str(removed, "namespace").unwrap_or_default();
    for reference in owner_refs(removed) {
        let api_version = reference["apiVersion"].as_str().unwrap_or_default();
        let kind = reference["kind"].as_str().unwrap_or_default();
        let Some((k, _)) = api.resources().by_kind(api_version, kind) else {
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
        let waiting = api
            .store()
            .get(&t.kind.key, &t.namespace, &t.name)
            .is_some_and(|o| {
                let v = o.value();
                semantics::is_deleting(&v)
                    && semantics::finalizers(&v).iter().any(|f| f == FOREGROUND)
            });
        if waiting {
            let owner_uid = reference["uid"].as_str().unwrap_or_default().to_string();
            release_foreground(api, &t, &owner_uid);
        }
    }
}
