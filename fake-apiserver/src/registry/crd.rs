//! CustomResourceDefinitions: validation of the definition, the kind it
//! serves, and the status kube-apiserver's controllers give it
//! (`acceptedNames`, `NamesAccepted`, `Established`, `storedVersions`).
//!
//! Pure functions at the semantics layer; callers: `registry::generic`.

use serde_json::{json, Value};

use crate::{
    apimachinery::{
        errors::Cause,
        resource_key::ResourceKey,
        validation::{dns1123_label_errors, dns1123_subdomain_errors},
    },
    registry::{
        resources::{compare_versions, Kind, ScalePaths, Version},
        semantics::meta_str,
    },
};

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Checks a CRD the way kube-apiserver's CRD validation does (the parts a
/// client can trip over) and returns every problem found.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    let name = meta_str(crd, "name").unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else {
        if !group.contains('.') {
            causes.push(Cause::invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
        for e in dns1123_subdomain_errors(group) {
            causes.push(Cause::invalid("spec.group", &json!(group), &e));
        }
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    } else {
        for e in dns1123_label_errors(plural) {
            causes.push(Cause::invalid("spec.names.plural", &json!(plural), &e));
        }
    }
    let singular = s(crd, "/spec/names/singular");
    if !singular.is_empty() {
        for e in dns1123_label_errors(singular) {
            causes.push(Cause::invalid("spec.names.singular", &json!(singular), &e));
        }
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => causes.push(Cause::required("spec.scope", "")),
        other => causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ),
            field: "spec.scope".into(),
        }),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &Value::Null,
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            causes.push(Cause::invalid(
                "spec.versions",
                &Value::Array(versions.clone()),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            let vname = s(v, "/name");
            if vname.is_empty() {
                causes.push(Cause::required(&format!("spec.versions[{i}].name"), ""));
            } else {
                for e in dns1123_label_errors(vname) {
                    causes.push(Cause::invalid(
                        &format!("spec.versions[{i}].name"),
                        &json!(vname),
                        &e,
                    ));
                }
            }
            if v.get("served").and_then(Value::as_bool).is_none() {
                causes.push(Cause::required(&format!("spec.versions[{i}].served"), ""));
            }
            if !v
                .pointer("/schema/openAPIV3Schema")
                .is_some_and(Value::is_object)
            {
                causes.push(Cause::required(
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
    }
    causes
}

/// The kind a valid CRD serves (its served versions, preferred first).
pub fn kind_of(crd: &Value) -> Kind {
    let group = s(crd, "/spec/group");
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let kind = s(&names, "/kind").to_string();
    let strings = |field: &str| -> Vec<String> {
        names
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions: Vec<Version> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
                .map(|v| Version {
                    name: s(v, "/name").to_string(),
                    storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
                    status: v.pointer("/subresources/status").is_some(),
                    scale: v.pointer("/subresources/scale").map(|scale| ScalePaths {
                        spec_replicas: s(scale, "/specReplicasPath").to_string(),
                        status_replicas: s(scale, "/statusReplicasPath").to_string(),
                        label_selector: scale
                            .get("labelSelectorPath")
                            .and_then(Value::as_str)
                            .map(String::from),
                    }),
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    printer_columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| compare_versions(&b.name, &a.name));
    let singular = match s(&names, "/singular") {
        "" => kind.to_lowercase(),
        other => other.to_string(),
    };
    let list_kind = match s(&names, "/listKind") {
        "" => format!("{kind}List"),
        other => other.to_string(),
    };
    Kind {
        key: ResourceKey::new(group, s(&names, "/plural")),
        list_kind,
        singular,
        short_names: strings("shortNames"),
        categories: strings("categories"),
        namespaced: s(crd, "/spec/scope") == "Namespaced",
        generation: true,
        versions,
        field_labels: &[],
        custom: true,
        create_only: false,
        kind,
    }
}

/// The status kube-apiserver's CRD controllers write once names are accepted.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let kind = kind_of(crd);
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .map(|v| s(v, "/name").to_string())
        })
        .unwrap_or_default();
    let mut stored: Vec<String> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !stored.contains(&storage) {
        stored.push(storage);
    }
    let mut accepted = json!({
        "plural": kind.plural(),
        "singular": kind.singular,
        "kind": kind.kind,
        "listKind": kind.list_kind,
    });
    if !kind.short_names.is_empty() {
        accepted["shortNames"] = json!(kind.short_names);
    }
    if !kind.categories.is_empty() {
        accepted["categories"] = json!(kind.categories);
    }
    json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    })
}

/// Adds the `Terminating` condition a CRD shows while its objects are deleted.
pub fn terminating_status(status: &mut Value, now: &str) {
    let condition = json!({
        "type": "Terminating", "status": "True", "lastTransitionTime": now,
        "reason": "InstanceDeletionInProgress",
        "message": "CustomResource deletion is in progress",
    });
    if !status.is_object() {
        *status = json!({});
    }
    match status.get_mut("conditions").and_then(Value::as_array_mut) {
        Some(conditions) => {
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("Terminating"));
            conditions.push(condition);
        }
        None => status["conditions"] = json!([condition]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v0", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]}
        })
    }

    #[test]
    fn kind_of_should_serve_only_served_versions_preferred_first() {
        assert!(validate(&crd()).is_empty());
        let kind = kind_of(&crd());
        assert_eq!(
            kind.versions
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            vec!["v1", "v1beta1"]
        );
        assert_eq!(kind.singular, "widget");
        assert_eq!(kind.list_kind, "WidgetList");
        assert!(kind.has_status("v1"));
        assert!(!kind.has_status("v1beta1"));
        assert_eq!(kind.storage_version().name, "v1");
    }

    #[test]
    fn validate_should_report_every_problem() {
        let bad = json!({"metadata": {"name": "x"}, "spec": {"group": "nodot", "names": {"plural": "Ws"}, "scope": "Global", "versions": []}});
        let fields: Vec<String> = validate(&bad).into_iter().map(|c| c.field).collect();
        for f in [
            "spec.group",
            "spec.names.plural",
            "spec.names.kind",
            "metadata.name",
            "spec.scope",
            "spec.versions",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn established_status_should_carry_conditions() {
        let status = established_status(&crd(), "2020-01-01T00:00:00Z");
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["acceptedNames"]["shortNames"], json!(["wd"]));
    }
}
