//! Incidents a test scripts on the simulated cluster, written straight to
//! the registry (as the test's own writes): a node going down (its `Ready`
//! condition `Unknown`, as when its kubelet stops posting) or coming back,
//! and a pod whose containers start failing (the stages annotations).
//! Served by the control API and the `fake-apiserver node|pod`
//! subcommands, and used by the harness.

use serde_json::{json, Value};

use crate::{
    apimachinery::errors::ApiError,
    controllers::stages::{Failure, ANNOTATION_PREFIX},
    registry::rest::{Objects, Target},
};

fn target(
    objects: &dyn Objects,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Target, ApiError> {
    let kind = objects
        .resources()
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::not_found("", plural, name))?;
    Ok(Target {
        kind,
        version: "v1".into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

/// Sets a node's `Ready` condition: `up` as its kubelet posts it, or down
/// (`Unknown`, "Kubelet stopped posting node status."); the node lifecycle
/// controller reacts.
///
/// # Errors
/// 404 when there is no such node.
pub fn set_node_ready(
    objects: &dyn Objects,
    node: &str,
    up: bool,
    now: &str,
) -> Result<(), ApiError> {
    let t = target(objects, "nodes", "", node)?;
    let (status, reason, message) = if up {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    objects.update_status_with(&t, &|old: &Value| {
        let mut new = old.clone();
        let mut conditions: Vec<Value> = old["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !conditions.iter().any(|c| c["type"] == "Ready") {
            conditions.push(json!({"type": "Ready"}));
        }
        for c in &mut conditions {
            let was = c["status"].clone();
            if c["type"] == "Ready" {
                c["status"] = json!(status);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            } else {
                c["status"] = json!(if up { "False" } else { "Unknown" });
            }
            if c["status"] != was {
                c["lastTransitionTime"] = json!(now);
            }
        }
        new["status"]["conditions"] = json!(conditions);
        new
    })?;
    Ok(())
}

/// Makes a pod's containers fail from now on (`failure` as in the stages:
/// `CrashLoopBackOff`, `OOMKilled`, `ImagePullBackOff`, `ErrImagePull`,
/// `NeverReady`), with `exit_code` for a crash loop's runs.
///
/// # Errors
/// 400 for an unknown failure, 404 when there is no such pod.
pub fn fail_pod(
    objects: &dyn Objects,
    namespace: &str,
    pod: &str,
    failure: &str,
    exit_code: Option<i32>,
) -> Result<(), ApiError> {
    if serde_json::from_value::<Failure>(json!(failure)).is_err() {
        return Err(ApiError::bad_request(format!(
            "unknown failure {failure:?}: one of CrashLoopBackOff, OOMKilled, ImagePullBackOff, ErrImagePull, NeverReady"
        )));
    }
    let t = target(objects, "pods", namespace, pod)?;
    objects.update_with(&t, &|old: &Value| {
        let mut new = old.clone();
        if !new["metadata"]["annotations"].is_object() {
            new["metadata"]["annotations"] = json!({});
        }
        new["metadata"]["annotations"][format!("{ANNOTATION_PREFIX}fail")] = json!(failure);
        if let Some(code) = exit_code {
            new["metadata"]["annotations"][format!("{ANNOTATION_PREFIX}exit-code")] =
                json!(code.to_string());
        }
        new
    })?;
    Ok(())
}
