//! The resources the simulation reads and writes, their URL paths, and
//! the keys (`namespace/name`) of its cache.

use serde_json::Value;

use crate::apimachinery::resource_key::ResourceKey;

/// The resources the controllers watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Res {
    Namespaces,
    Nodes,
    Pods,
    ReplicaSets,
    Deployments,
    Jobs,
    StatefulSets,
    PersistentVolumeClaims,
    PersistentVolumes,
    StorageClasses,
    PodDisruptionBudgets,
    DaemonSets,
    CronJobs,
    Services,
    Endpoints,
    EndpointSlices,
    ServiceAccounts,
    Events,
    Leases,
}

impl Res {
    /// (group, version, plural, kind, namespaced).
    pub(crate) fn info(self) -> (&'static str, &'static str, &'static str, &'static str, bool) {
        match self {
            Res::Namespaces => ("", "v1", "namespaces", "Namespace", false),
            Res::Nodes => ("", "v1", "nodes", "Node", false),
            Res::Pods => ("", "v1", "pods", "Pod", true),
            Res::ReplicaSets => ("apps", "v1", "replicasets", "ReplicaSet", true),
            Res::Deployments => ("apps", "v1", "deployments", "Deployment", true),
            Res::Jobs => ("batch", "v1", "jobs", "Job", true),
            Res::StatefulSets => ("apps", "v1", "statefulsets", "StatefulSet", true),
            Res::PersistentVolumeClaims => (
                "",
                "v1",
                "persistentvolumeclaims",
                "PersistentVolumeClaim",
                true,
            ),
            Res::PersistentVolumes => ("", "v1", "persistentvolumes", "PersistentVolume", false),
            Res::StorageClasses => (
                "storage.k8s.io",
                "v1",
                "storageclasses",
                "StorageClass",
                false,
            ),
            Res::PodDisruptionBudgets => (
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                true,
            ),
            Res::DaemonSets => ("apps", "v1", "daemonsets", "DaemonSet", true),
            Res::CronJobs => ("batch", "v1", "cronjobs", "CronJob", true),
            Res::Services => ("", "v1", "services", "Service", true),
            Res::Endpoints => ("", "v1", "endpoints", "Endpoints", true),
            Res::EndpointSlices => (
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                "EndpointSlice",
                true,
            ),
            Res::ServiceAccounts => ("", "v1", "serviceaccounts", "ServiceAccount", true),
            Res::Events => ("", "v1", "events", "Event", true),
            Res::Leases => ("coordination.k8s.io", "v1", "leases", "Lease", true),
        }
    }

    pub(crate) fn watched(self) -> bool {
        !matches!(self, Res::Events | Res::Leases)
    }

    pub(crate) fn api_version(self) -> String {
        let (group, version, ..) = self.info();
        if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        }
    }

    pub(crate) fn key(self) -> ResourceKey {
        let (group, _, plural, ..) = self.info();
        ResourceKey::new(group, plural)
    }

    /// The URL path of the collection (in `namespace`, or all).
    pub(crate) fn collection(self, namespace: &str) -> String {
        let (group, version, plural, _, namespaced) = self.info();
        let root = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        if namespaced && !namespace.is_empty() {
            format!("{root}/namespaces/{namespace}/{plural}")
        } else {
            format!("{root}/{plural}")
        }
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
pub(crate) fn key_of(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// Splits a key into (namespace, name).
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

pub(crate) fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}
