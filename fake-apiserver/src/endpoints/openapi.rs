//! OpenAPI v3: the index at `/openapi/v3` and a document per group-version,
//! with paths tagged by `x-kubernetes-group-version-kind` and PATCH
//! operations that declare `fieldValidation` (which makes kubectl validate
//! on the server instead of downloading `/openapi/v2`), and component schemas
//! (a CRD's own `openAPIV3Schema`; permissive ones for built-in kinds) so that
//! `kubectl explain` works on custom resources.

use std::hash::{Hash, Hasher};

use serde_json::{json, Map, Value};

use crate::{
    apimachinery::errors::ApiError,
    endpoints::discovery::{MAJOR, MINOR},
    registry::resources::{Kind, Resources},
};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn schema_name(kind: &Kind, version: &str) -> String {
    if kind.group().is_empty() {
        return format!("io.k8s.api.core.{version}.{}", kind.kind);
    }
    let reversed: Vec<&str> = kind.group().split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), kind.kind)
}

fn hash_of(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The `/openapi/v3` index.
pub(crate) fn index(resources: &Resources) -> Value {
    let mut paths = Map::new();
    let mut gvs = vec![(String::new(), "v1".to_string())];
    for (g, vs) in resources.groups() {
        for v in vs {
            gvs.push((g.clone(), v));
        }
    }
    for (g, v) in gvs {
        if let Ok(doc) = document(resources, &g, &v) {
            let path = gv_path(&g, &v);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash_of(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

fn operation(
    kind: &Kind,
    version: &str,
    action: &str,
    op_id: &str,
    schema_ref: &str,
    list: bool,
) -> Value {
    let gvk = json!({"group": kind.group(), "version": version, "kind": kind.kind});
    let response_schema = if list {
        json!({"type": "object"})
    } else {
        json!({"$ref": schema_ref})
    };
    let mut op = json!({
        "operationId": op_id,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": response_schema}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    });
    let mut params = vec![
        json!({"name": "pretty", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
    ];
    match action {
        "patch" | "put" | "post" => {
            for name in ["dryRun", "fieldManager", "fieldValidation"] {
                params.push(json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
            }
            if action == "patch" {
                params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
                let mut content = Map::new();
                for ct in [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ] {
                    content.insert(ct.into(), json!({"schema": {"type": "object"}}));
                }
                op["requestBody"] = json!({"required": true, "content": content});
            } else {
                op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": schema_ref}}}});
            }
        }
        "list" | "watchlist" => {
            for name in [
                "labelSelector",
                "fieldSelector",
                "continue",
                "resourceVersion",
                "resourceVersionMatch",
            ] {
                params.push(json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
            }
            for name in ["limit", "timeoutSeconds"] {
                params.push(json!({"name": name, "in": "query", "schema": {"type": "integer", "uniqueItems": true}}));
            }
            for name in ["watch", "allowWatchBookmarks", "sendInitialEvents"] {
                params.push(json!({"name": name, "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
            }
        }
        "delete" => {
            params.push(json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
            params.push(json!({"name": "propagationPolicy", "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
        }
        _ => {}
    }
    op["parameters"] = Value::Array(params);
    op
}

fn path_params(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}))
            .collect(),
    )
}

/// The schema of a kind in `version`: the CRD's own, with the standard
/// top-level fields, or a permissive object for built-in kinds.
fn schema(kind: &Kind, version: &str) -> Value {
    let gvk = json!([{"group": kind.group(), "version": version, "kind": kind.kind}]);
    let mut schema = match kind.version(version).and_then(|v| v.schema.clone()) {
        Some(mut s) => {
            let props = s
                .as_object_mut()
                .map(|o| o.entry("properties").or_insert_with(|| json!({})));
            if let Some(Value::Object(props)) = props {
                props.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                props.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                props.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata.", "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}));
            }
            s
        }
        None => json!({
            "type": "object",
            "description": format!("{} of {}.", kind.kind, kind.api_version(version)),
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
            },
            "x-kubernetes-preserve-unknown-fields": true,
        }),
    };
    schema["x-kubernetes-group-version-kind"] = gvk;
    schema
}

/// The document for one group-version.
pub(crate) fn document(
    resources: &Resources,
    group: &str,
    version: &str,
) -> Result<Value, ApiError> {
    let kinds = resources.in_group_version(group, version);
    if kinds.is_empty() {
        return Err(ApiError::no_route());
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
               "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                              "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}),
    );
    for kind in &kinds {
        let name = schema_name(kind, version);
        let r = format!("#/components/schemas/{name}");
        schemas.insert(name, schema(kind, version));
        let (collection, item, params) = if kind.namespaced {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}", kind.plural()),
                format!(
                    "{prefix}/namespaces/{{namespace}}/{}/{{name}}",
                    kind.plural()
                ),
                vec!["namespace"],
            )
        } else {
            (
                format!("{prefix}/{}", kind.plural()),
                format!("{prefix}/{}/{{name}}", kind.plural()),
                vec![],
            )
        };
        let k = &kind.kind;
        let ns = if kind.namespaced { "Namespaced" } else { "" };
        paths.insert(
            collection,
            json!({
                "parameters": path_params(&params),
                "get": operation(kind, version, "list", &format!("list{ns}{k}"), &r, true),
                "post": operation(kind, version, "post", &format!("create{ns}{k}"), &r, false),
                "delete": operation(kind, version, "deletecollection", &format!("deleteCollection{ns}{k}"), &r, true),
            }),
        );
        let mut item_params = params.clone();
        item_params.push("name");
        paths.insert(
            item.clone(),
            json!({
                "parameters": path_params(&item_params),
                "get": operation(kind, version, "get", &format!("read{ns}{k}"), &r, false),
                "put": operation(kind, version, "put", &format!("replace{ns}{k}"), &r, false),
                "patch": operation(kind, version, "patch", &format!("patch{ns}{k}"), &r, false),
                "delete": operation(kind, version, "delete", &format!("delete{ns}{k}"), &r, false),
            }),
        );
        if kind.has_status(version) {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "parameters": path_params(&item_params),
                    "get": operation(kind, version, "get", &format!("read{ns}{k}Status"), &r, false),
                    "put": operation(kind, version, "put", &format!("replace{ns}{k}Status"), &r, false),
                    "patch": operation(kind, version, "patch", &format!("patch{ns}{k}Status"), &r, false),
                }),
            );
        }
        if kind.namespaced {
            paths.insert(
                format!("{prefix}/{}", kind.plural()),
                json!({"get": operation(kind, version, "list", &format!("list{k}ForAllNamespaces"), &r, true)}),
            );
        }
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{MAJOR}.{MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_should_declare_field_validation() {
        let r = Resources::with_builtins();
        let doc = document(&r, "apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let status = &doc["paths"]
            ["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["patch"];
        assert!(status["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let index = index(&r);
        assert!(index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(index["paths"]["api/v1"].is_object());
    }
}
