//! `pods/binding`: how a scheduler assigns a pod to a node (kube's
//! `BindingREST`): one atomic write of `spec.nodeName`, the binding's
//! annotations and the `PodScheduled` condition, refused for a pod that is
//! already bound, being deleted, or still gated.

use serde_json::{json, Value};

use crate::{
    apimachinery::errors::{ApiError, Cause},
    registry::{
        generic::{Api, Committed},
        rest::{Reply, Target},
        semantics,
    },
    storage::object::Change,
};

/// The `Status` a successful binding answers with.
fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

/// A Binding's own rules (`ValidatePodBinding`).
fn validate(binding: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kind = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause::invalid(
            "target.kind",
            &json!(kind),
            "must be empty or 'Node'",
        ));
    }
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        causes.push(Cause::required("target.name", ""));
    }
    causes
}

impl Api {
    /// POST `pods/NAME/binding`: binds the pod to `target.name`.
    ///
    /// # Errors
    /// 400 when the names differ, 422 for an invalid Binding, 404 for no
    /// pod, 409 when it is bound, being deleted, gated, or its uid differs.
    pub fn bind(&self, t: &Target, binding: &Value, dry_run: bool) -> Result<Reply, ApiError> {
        let name = semantics::meta_str(binding, "name").unwrap_or_default();
        if name != t.name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        let causes = validate(binding);
        if !causes.is_empty() {
            return Err(ApiError::invalid("", "Binding", name, causes));
        }
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let uid = semantics::meta_str(binding, "uid")
            .unwrap_or_default()
            .to_string();
        let annotations = binding.pointer("/metadata/annotations").cloned();
        let now = self.clock.rfc3339();
        let refuse = |detail: String| ApiError::conflict("", "pods/binding", &t.name, &detail);
        let committed = self.commit(&t.kind.key, &t.namespace, &t.name, dry_run, |cur| {
            let cur = cur.ok_or_else(|| self.not_found(t))?;
            let old = cur.value();
            let mut pod = old.clone();
            if !uid.is_empty() && semantics::meta_str(&pod, "uid") != Some(uid.as_str()) {
                return Err(refuse(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    semantics::meta_str(&pod, "uid").unwrap_or_default()
                )));
            }
            if semantics::is_deleting(&pod) {
                return Err(refuse(format!(
                    "pod {} is being deleted, cannot be assigned to a host",
                    t.name
                )));
            }
            let bound = pod["spec"]["nodeName"].as_str().unwrap_or_default();
            if !bound.is_empty() {
                return Err(refuse(format!(
                    "pod {} is already assigned to node {bound:?}",
                    t.name
                )));
            }
            if pod["spec"]["schedulingGates"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
            {
                return Err(refuse(format!(
                    "pod {} has non-empty .spec.schedulingGates",
                    t.name
                )));
            }
            if !pod["spec"].is_object() {
                pod["spec"] = json!({});
            }
            pod["spec"]["nodeName"] = Value::String(node.clone());
            if let Some(Value::Object(extra)) = &annotations {
                let meta = &mut pod["metadata"];
                if !meta["annotations"].is_object() {
                    meta["annotations"] = json!({});
                }
                for (k, v) in extra {
                    meta["annotations"][k] = v.clone();
                }
            }
            semantics::set_condition(
                &mut pod,
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
                &now,
            );
            Ok(Change::Update { new: pod, old })
        })?;
        if let Committed::Written(w) = committed {
            w.object.ok_or_else(|| self.not_found(t))?;
        }
        Ok(Reply {
            code: 201,
            ..Reply::ok(success().to_string().into())
        })
    }
}
