//! The cluster around the API server: the garbage collector (run at once,
//! inside the verbs), and the simulated cluster (nodes, scheduler,
//! kubelets, workload and networking controllers), which are clients of
//! the server, as kube-controller-manager is of kube-apiserver.
//!
//! - `gc`: garbage collection, a [`Controller`](crate::registry::rest::Controller)
//!   told of deletions at once.
//! - Lowest first: `resources` (what the simulation watches and writes),
//!   `selection` (`--controllers`), `stages` (how simulated containers
//!   behave: the stages file, the pure timeline), `quantity`; `sim` (the
//!   controllers' cache, queue, timers and writes).
//! - Then the controllers (below).
//! - On top, `runtime`: informers, routes and the loop ([`Simulation`],
//!   [`start`]).
//! - One module per simulated controller: `nodes`, `scheduler`, `kubelet`,
//!   `replicaset`, `deployment`, `statefulset`, `job`, `volumes`,
//!   `endpoints`, `namespaces`; each has a
//!   `sync` of one object and the `routes` from a change to the syncs it
//!   causes.
//!
//! Never names `registry::generic`: the GC sees the registry as
//! `registry::rest::Objects`, the simulation goes through HTTP.

mod cron;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
pub mod gc;
pub mod incidents;
mod index;
mod job;
mod kubelet;
mod namespaces;
mod nodes;
mod quantity;
mod replicaset;
mod resources;
pub mod runtime;
mod scheduler;
pub mod selection;
mod sim;
pub mod stages;
mod statefulset;
mod volumes;

use serde_json::Value;

pub use runtime::{start, Simulation};
pub use sim::{is_simulated, ClientFactory, Settings};

use crate::storage::selector::{format_label_selector, LabelSelector};

/// Whether a `metav1.LabelSelector` selects `labels`. An empty or invalid
/// selector selects nothing (workloads must have one).
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(text) = format_label_selector(selector) else {
        return false;
    };
    if text.is_empty() {
        return false;
    }
    LabelSelector::parse(&text)
        .is_ok_and(|s| s.matches(&|k| labels.get(k).and_then(Value::as_str).map(String::from)))
}

/// Whether a map selector (a Service's `spec.selector`) selects `labels`;
/// an empty one selects nothing.
fn selects_map(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The controlling owner reference of `obj`, if any.
fn controller_of(obj: &Value) -> Option<&Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

/// An owner reference to `owner` that marks it as the controller.
fn controller_ref(owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Whether the pod counts as ready (`Ready` condition true).
fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// A condition of `status.conditions` by type.
fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Whether the pod has finished (Succeeded or Failed).
fn pod_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Whether `obj`'s status differs from `status` in any field `status` has.
fn status_differs(obj: &Value, status: &Value) -> bool {
    status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| obj["status"][k] != *v)
}

/// An integer field, or `default`.
fn int(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}
