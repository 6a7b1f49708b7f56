//! Discovery documents: legacy (`APIVersions`, `APIGroupList`, `APIGroup`,
//! `APIResourceList`) and aggregated (`APIGroupDiscoveryList` v2), plus `/version`.

use serde_json::{json, Value};

use crate::{
    apimachinery::errors::ApiError,
    registry::resources::{Kind, Resources, STATUS_VERBS, VERBS},
};

pub(crate) use crate::apimachinery::{VERSION_MAJOR as MAJOR, VERSION_MINOR as MINOR};

/// The content type of aggregated discovery responses.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2.
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

pub(crate) fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": format!("v{MAJOR}.{MINOR}.0-fake"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub(crate) fn groups(resources: &Resources) -> Value {
    let groups: Vec<Value> = resources
        .groups()
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn group(resources: &Resources, name: &str) -> Result<Value, ApiError> {
    let groups = resources.groups();
    let (g, vs) = groups
        .iter()
        .find(|(g, _)| g == name)
        .ok_or_else(ApiError::no_route)?;
    let mut entry = group_entry(g, vs);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(entry)
}

fn storage_version_hash(kind: &Kind) -> String {
    use base64::Engine;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (kind.group(), &kind.storage_version().name, &kind.kind).hash(&mut h);
    base64::engine::general_purpose::STANDARD.encode(&h.finish().to_be_bytes()[..8])[..11]
        .to_string()
}

pub(crate) fn resource_list(
    resources: &Resources,
    group: &str,
    version: &str,
) -> Result<Value, ApiError> {
    let kinds = resources.in_group_version(group, version);
    if kinds.is_empty() {
        return Err(ApiError::no_route());
    }
    let mut list = Vec::new();
    for kind in kinds {
        let mut entry = json!({
            "name": kind.plural(),
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": if kind.create_only { &["create"][..] } else { VERBS },
            "storageVersionHash": storage_version_hash(&kind),
        });
        if !kind.short_names.is_empty() {
            entry["shortNames"] = json!(kind.short_names);
        }
        if !kind.categories.is_empty() {
            entry["categories"] = json!(kind.categories);
        }
        list.push(entry);
        if kind.has_status(version) {
            list.push(json!({
                "name": format!("{}/status", kind.plural()),
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": STATUS_VERBS,
            }));
        }
        if kind.version(version).is_some_and(|v| v.scale.is_some()) {
            list.push(json!({
                "name": format!("{}/scale", kind.plural()),
                "singularName": "",
                "namespaced": kind.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": STATUS_VERBS,
            }));
        }
        for action in kind.actions() {
            let (group, version, posted) = action.posts;
            let mut entry = json!({
                "name": format!("{}/{}", kind.plural(), action.name),
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": posted,
                "verbs": ["create"],
            });
            if !group.is_empty() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            list.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}),
    )
}

fn aggregated_version(resources: &Resources, group: &str, version: &str) -> Value {
    let list: Vec<Value> = resources
        .in_group_version(group, version)
        .iter()
        .map(|kind| {
            let response_kind = json!({"group": group, "version": version, "kind": kind.kind});
            let mut entry = json!({
                "resource": kind.plural(),
                "responseKind": response_kind,
                "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": kind.singular,
                "verbs": if kind.create_only { &["create"][..] } else { VERBS },
            });
            if !kind.short_names.is_empty() {
                entry["shortNames"] = json!(kind.short_names);
            }
            if !kind.categories.is_empty() {
                entry["categories"] = json!(kind.categories);
            }
            let mut subresources = Vec::new();
            if kind.has_status(version) {
                subresources.push(json!({
                    "subresource": "status",
                    "responseKind": response_kind,
                    "verbs": STATUS_VERBS,
                }));
            }
            if kind.version(version).is_some_and(|v| v.scale.is_some()) {
                subresources.push(json!({
                    "subresource": "scale",
                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                    "verbs": STATUS_VERBS,
                }));
            }
            for action in kind.actions() {
                let (group, version, posted) = action.posts;
                subresources.push(json!({
                    "subresource": action.name,
                    "responseKind": {"group": group, "version": version, "kind": posted},
                    "verbs": ["create"],
                }));
            }
            if !subresources.is_empty() {
                entry["subresources"] = Value::Array(subresources);
            }
            entry
        })
        .collect();
    json!({"version": version, "resources": list, "freshness": "Current"})
}

/// Aggregated discovery for the core group (`/api`).
pub(crate) fn aggregated_core(resources: &Resources) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [{"metadata": {"creationTimestamp": null}, "versions": [aggregated_version(resources, "", "v1")]}],
    })
}

/// Aggregated discovery for the named groups (`/apis`).
pub(crate) fn aggregated_groups(resources: &Resources) -> Value {
    let items: Vec<Value> = resources
        .groups()
        .iter()
        .map(|(g, vs)| {
            json!({
                "metadata": {"name": g, "creationTimestamp": null},
                "versions": vs.iter().map(|v| aggregated_version(resources, g, v)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_should_be_recognised() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn resource_lists_should_include_status_subresources() {
        let r = Resources::with_builtins();
        let list = resource_list(&r, "apps", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments") && names.contains(&"deployments/status"));
        assert!(names.contains(&"deployments/scale"));
        assert_eq!(resource_list(&r, "apps", "v9").unwrap_err().code, 404);
    }
}
