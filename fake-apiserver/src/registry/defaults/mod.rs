//! kube-apiserver's defaulting of built-in kinds: what its typed decoding
//! fills in on every create and update (the `SetDefaults_*` functions, and
//! conversions that fold one field into another, as a Secret's
//! `stringData` into `data`). One small function per kind, found in a
//! table; kinds without one are stored as sent. Pods and the workloads
//! with a pod template are in `workloads`, volumes and their claims in
//! `storage`.

mod storage;
mod workloads;

pub use workloads::{image_pull_policy, pod_spec};

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::registry::{resources::Kind, webhooks};

/// Defaults one object of a kind, in place.
type Defaulter = fn(&mut Value);

/// The defaulted kinds: (group, plural, defaulter).
const DEFAULTERS: &[(&str, &str, Defaulter)] = &[
    ("", "secrets", secret),
    ("", "services", crate::registry::services::defaults),
    ("", "pods", workloads::pod),
    ("", "persistentvolumeclaims", storage::claim),
    ("", "persistentvolumes", storage::volume),
    ("", "replicationcontrollers", workloads::replica_set),
    ("apps", "deployments", workloads::deployment),
    ("apps", "replicasets", workloads::replica_set),
    ("apps", "statefulsets", workloads::stateful_set),
    ("apps", "daemonsets", workloads::daemon_set),
    ("batch", "jobs", workloads::job),
    ("batch", "cronjobs", workloads::cron_job),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        |o| webhooks::default(o, true),
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        |o| webhooks::default(o, false),
    ),
];

/// Inserts `value` at `key` when the key is absent (or null).
pub(super) fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), value);
    }
}

/// The object at `key`, made an empty one when absent or not an object.
pub(super) fn object<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = obj.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(map) => map,
        _ => unreachable!("made an object just above"),
    }
}

/// Applies the kind's defaults to `obj`, if the kind has any.
pub fn apply(kind: &Kind, obj: &mut Value) {
    if kind.custom {
        return;
    }
    let (group, plural) = (kind.group(), kind.plural());
    if let Some((_, _, defaulter)) = DEFAULTERS
        .iter()
        .find(|(g, p, _)| *g == group && *p == plural)
    {
        defaulter(obj);
    }
}

/// core/v1 Secret: `type` defaults to `Opaque` (`SetDefaults_Secret`), and
/// `stringData` is merged into `data`, base64-encoded, winning over `data`
/// for the same key, then dropped (the v1 → internal conversion): it is
/// write-only and never read back.
fn secret(obj: &mut Value) {
    let Some(secret) = obj.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(string_data)) = secret.remove("stringData") {
        let data = secret
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        if let Some(data) = data.as_object_mut() {
            for (key, value) in string_data {
                if let Value::String(text) = value {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                    data.insert(key, Value::String(encoded));
                }
            }
        }
    }
    let typed = secret
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed {
        secret.insert("type".into(), Value::from("Opaque"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What `kubectl create secret generic s --from-literal=a=b` and a
    /// manifest with `stringData` store on a real cluster.
    #[test]
    fn secrets_should_get_a_type_and_their_string_data_encoded() {
        let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "Yg==", "keep": "eA=="},
                           "stringData": {"a": "override", "plain": "text"}});
        secret(&mut s);
        assert_eq!(
            s,
            json!({"metadata": {"name": "s"}, "type": "Opaque",
                   "data": {"a": "b3ZlcnJpZGU=", "keep": "eA==", "plain": "dGV4dA=="}})
        );
        let mut tls = json!({"type": "kubernetes.io/tls", "data": {}});
        secret(&mut tls);
        assert_eq!(tls["type"], "kubernetes.io/tls");
    }
}
