//! What kinds exist: group, versions, kind, plural, singular, short names,
//! categories, scope, verbs, subresources and schemas.
//!
//! The bottom of the registry: `storage` keys objects by a kind's
//! [`ResourceKey`], `semantics` reads the flags here (status subresource,
//! generation), `endpoints` serves discovery from it. Built-in kinds are
//! fixed; custom kinds come and go with CustomResourceDefinitions.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use serde_json::Value;

use crate::{apimachinery::resource_key::ResourceKey, registry::builtins::builtins};

/// One served version of a kind.
#[derive(Clone, Debug)]
pub struct Version {
    /// The version name, e.g. `v1`.
    pub name: String,
    /// Whether this version is the storage version.
    pub storage: bool,
    /// Whether the `/status` subresource exists in this version.
    pub status: bool,
    /// The OpenAPI v3 schema of this version, when known (CRDs).
    pub schema: Option<Value>,
    /// CRD `additionalPrinterColumns`, as given.
    pub printer_columns: Vec<Value>,
    /// Where the `/scale` subresource reads and writes, when it exists.
    pub scale: Option<ScalePaths>,
}

/// The fields behind a `/scale` subresource, as JSON paths with a leading
/// dot (`.spec.replicas`), as a CRD's `subresources.scale` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// The desired replicas (`specReplicasPath`).
    pub spec_replicas: String,
    /// The observed replicas (`statusReplicasPath`).
    pub status_replicas: String,
    /// The label selector (`labelSelectorPath`): for custom resources a
    /// string field; for built-ins the `spec.selector` object.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// The scale of the built-in workloads: `.spec.replicas`,
    /// `.status.replicas` and `.spec.selector`.
    pub fn workload() -> Self {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".spec.selector".into()),
        }
    }
}

/// A kind of object the server serves.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Storage key (group + plural).
    pub key: ResourceKey,
    /// `kind`, e.g. `ConfigMap`.
    pub kind: String,
    /// `listKind`, e.g. `ConfigMapList`.
    pub list_kind: String,
    /// Singular name, e.g. `configmap`.
    pub singular: String,
    /// Short names, e.g. `cm`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `metadata.generation` is maintained for this kind.
    pub generation: bool,
    /// Served versions, preferred first.
    pub versions: Vec<Version>,
    /// Extra field selectors this kind supports beyond `metadata.name` and
    /// `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    /// Whether this kind comes from a CustomResourceDefinition.
    pub custom: bool,
    /// Whether the kind is only ever created, answered and not stored (the
    /// access and token reviews): `create` is its one verb.
    pub create_only: bool,
}

impl Kind {
    /// The API group.
    pub fn group(&self) -> &str {
        &self.key.group
    }

    /// The plural name.
    pub fn plural(&self) -> &str {
        &self.key.plural
    }

    /// The served version named `name`.
    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// The storage version.
    pub fn storage_version(&self) -> &Version {
        self.versions
            .iter()
            .find(|v| v.storage)
            .unwrap_or(&self.versions[0])
    }

    /// `apiVersion` for `version`: `v1` or `group/v1`.
    pub fn api_version(&self, version: &str) -> String {
        if self.key.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.key.group, version)
        }
    }

    /// Whether `version` has a status subresource.
    pub fn has_status(&self, version: &str) -> bool {
        self.version(version).is_some_and(|v| v.status)
    }
}

/// The standard verbs of a resource.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of a `/status` subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The registry of served kinds, shared by every layer.
#[derive(Default)]
pub struct Resources {
    inner: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    /// (group, plural) -> kind.
    by_key: HashMap<ResourceKey, Arc<Kind>>,
    /// Registration order, for stable discovery output.
    order: Vec<ResourceKey>,
}

impl Resources {
    /// A registry holding the built-in kinds.
    pub fn with_builtins() -> Self {
        let resources = Resources::default();
        for item in builtins() {
            resources.register(Kind {
                key: ResourceKey::new(item.group, item.plural),
                kind: item.kind.into(),
                list_kind: format!("{}List", item.kind),
                singular: item.kind.to_lowercase(),
                short_names: item.short.iter().map(|s| s.to_string()).collect(),
                categories: item.categories.iter().map(|s| s.to_string()).collect(),
                namespaced: item.namespaced,
                generation: item.generation,
                versions: vec![Version {
                    name: item.version.into(),
                    storage: true,
                    status: item.status,
                    schema: None,
                    printer_columns: Vec::new(),
                    scale: matches!(
                        (item.group, item.plural),
                        ("apps", "deployments" | "replicasets" | "statefulsets")
                            | ("", "replicationcontrollers")
                    )
                    .then(ScalePaths::workload),
                }],
                field_labels: item.field_labels,
                custom: false,
                create_only: matches!(item.group, "authorization.k8s.io" | "authentication.k8s.io"),
            });
        }
        resources
    }

    /// Adds or replaces a kind.
    pub fn register(&self, kind: Kind) {
        let mut index = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !index.by_key.contains_key(&kind.key) {
            index.order.push(kind.key.clone());
        }
        index.by_key.insert(kind.key.clone(), Arc::new(kind));
    }

    /// Removes a kind; returns it if it was there.
    pub fn unregister(&self, key: &ResourceKey) -> Option<Arc<Kind>> {
        let mut index = self.inner.write().unwrap_or_else(|e| e.into_inner());
        index.order.retain(|k| k != key);
        index.by_key.remove(key)
    }

    /// The kind stored under `key`.
    pub fn get(&self, key: &ResourceKey) -> Option<Arc<Kind>> {
        let index = self.inner.read().unwrap_or_else(|e| e.into_inner());
        index.by_key.get(key).cloned()
    }

    /// The kind served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Kind>> {
        let index = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let kind = index.by_key.get(&ResourceKey::new(group, plural))?;
        kind.version(version).map(|_| kind.clone())
    }

    /// The kind for `apiVersion` + `kind`, as found in an object body.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<(Arc<Kind>, String)> {
        let (group, version) = split_api_version(api_version);
        let index = self.inner.read().unwrap_or_else(|e| e.into_inner());
        index.order.iter().find_map(|key| {
            let k = &index.by_key[key];
            (k.key.group == group && k.kind == kind && k.version(version).is_some())
                .then(|| (k.clone(), version.to_string()))
        })
    }

    /// Every kind, in registration order.
    pub fn all(&self) -> Vec<Arc<Kind>> {
        let index = self.inner.read().unwrap_or_else(|e| e.into_inner());
        index
            .order
            .iter()
            .map(|k| index.by_key[k].clone())
            .collect()
    }

    /// Groups and their versions, in registration order (core group excluded),
    /// each version list preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for kind in self.all() {
            if kind.key.group.is_empty() {
                continue;
            }
            let pos = match groups.iter().position(|(g, _)| *g == kind.key.group) {
                Some(pos) => pos,
                None => {
                    groups.push((kind.key.group.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            for v in &kind.versions {
                if !groups[pos].1.contains(&v.name) {
                    groups[pos].1.push(v.name.clone());
                }
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by(|a, b| compare_versions(b, a));
        }
        groups
    }

    /// Kinds served in `group/version`.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<Kind>> {
        self.all()
            .into_iter()
            .filter(|k| k.key.group == group && k.version(version).is_some())
            .collect()
    }
}

/// Splits `apiVersion` into group and version (`v1` -> `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Orders Kubernetes version names by priority, as kube-apiserver does:
/// GA > beta > alpha, then by major and minor number, then other names.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(v: &str) -> (u8, u64, u64, String) {
        let parse = |s: &str| -> Option<(u64, u8, u64)> {
            let rest = s.strip_prefix('v')?;
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let major: u64 = digits.parse().ok()?;
            let tail = &rest[digits.len()..];
            if tail.is_empty() {
                return Some((major, 3, 0));
            }
            let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
                (2, n)
            } else if let Some(n) = tail.strip_prefix("alpha") {
                (1, n)
            } else {
                return None;
            };
            Some((major, level, num.parse().ok()?))
        };
        match parse(v) {
            Some((major, level, minor)) => (level, major, minor, String::new()),
            None => (0, 0, 0, v.to_string()),
        }
    }
    let (ra, rb) = (rank(a), rank(b));
    ra.0.cmp(&rb.0)
        .then(ra.1.cmp(&rb.1))
        .then(ra.2.cmp(&rb.2))
        .then(rb.3.cmp(&ra.3))
}

/// A subresource written with `create` only (a POST of another kind).
#[derive(Clone, Copy, Debug)]
pub struct Action {
    /// The subresource's name (`binding`).
    pub name: &'static str,
    /// The kind posted: (group, version, kind).
    pub posts: (&'static str, &'static str, &'static str),
}

impl Kind {
    /// The create-only subresources of this kind (`pods/binding`,
    /// `pods/eviction`, `serviceaccounts/token`).
    pub fn actions(&self) -> &'static [Action] {
        const POD_ACTIONS: &[Action] = &[
            Action {
                name: "binding",
                posts: ("", "v1", "Binding"),
            },
            Action {
                name: "eviction",
                posts: ("policy", "v1", "Eviction"),
            },
        ];
        const SERVICE_ACCOUNT_ACTIONS: &[Action] = &[Action {
            name: "token",
            posts: ("authentication.k8s.io", "v1", "TokenRequest"),
        }];
        match (
            self.custom,
            self.key.group.as_str(),
            self.key.plural.as_str(),
        ) {
            (false, "", "pods") => POD_ACTIONS,
            (false, "", "serviceaccounts") => SERVICE_ACCOUNT_ACTIONS,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_should_carry_real_names() {
        let resources = Resources::with_builtins();
        let deploy = resources.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.kind, "Deployment");
        assert_eq!(deploy.short_names, vec!["deploy"]);
        assert!(deploy.namespaced);
        assert!(resources.lookup("apps", "v2", "deployments").is_none());
        let (crd, version) = resources
            .by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            .unwrap();
        assert!(!crd.namespaced);
        assert_eq!(version, "v1");
    }

    #[test]
    fn versions_should_sort_like_kube_apiserver() {
        let mut versions = vec![
            "v1alpha1",
            "v2",
            "v1beta1",
            "v1",
            "v11alpha2",
            "foo10",
            "foo1",
            "v12alpha1",
        ];
        versions.sort_by(|a, b| compare_versions(b, a));
        assert_eq!(
            versions,
            vec![
                "v2",
                "v1",
                "v1beta1",
                "v12alpha1",
                "v11alpha2",
                "v1alpha1",
                "foo1",
                "foo10"
            ]
        );
    }
}
