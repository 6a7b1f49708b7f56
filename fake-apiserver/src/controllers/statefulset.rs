//! The StatefulSet controller: pods `NAME-0..N-1` with stable names,
//! hostnames and claims (`TEMPLATE-NAME-i`, made from
//! `volumeClaimTemplates` before the pod and kept after it); with
//! `OrderedReady`, one at a time, each after the previous is Running and
//! Ready, and scaled down from the highest; with `Parallel`, all at once.
//! A new template rolls out from the highest ordinal down to the
//! `partition`, one pod at a time. The status counts replicas, ready,
//! available, current and updated ones, and names both revisions.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::controllers::{
    deployment::template_hash,
    int, is_deleting, pod_finished, pod_ready,
    replicaset::{available, pod_from_template},
    resources::Res,
    sim::{Identity, Sim},
    status_differs,
};

const WHO: Identity = Identity::ControllerManager("statefulset-controller");
const REVISION: &str = "controller-revision-hash";

/// The ordinal in a pod's name (`web-3` of set `web` is 3).
fn ordinal(set: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The pod of ordinal `i` from the set's template, at revision `revision`.
fn pod_for(set: &Value, i: usize, revision: &str) -> Value {
    let name = format!(
        "{}-{i}",
        set["metadata"]["name"].as_str().unwrap_or_default()
    );
    let mut pod = pod_from_template(set, &set["spec"]["template"], Some(name.clone()));
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[REVISION] = json!(revision);
    labels["statefulset.kubernetes.io/pod-name"] = json!(name);
    labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
    pod["spec"]["hostname"] = json!(name);
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        pod["spec"]["subdomain"] = json!(service);
    }
    for claim in set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let volume = claim["metadata"]["name"].as_str().unwrap_or_default();
        if !pod["spec"]["volumes"].is_array() {
            pod["spec"]["volumes"] = json!([]);
        }
        if let Some(volumes) = pod["spec"]["volumes"].as_array_mut() {
            volumes.retain(|v| v["name"] != volume);
            volumes.push(json!({"name": volume, "persistentVolumeClaim": {"claimName": format!("{volume}-{name}")}}));
        }
    }
    pod
}

/// Syncs one StatefulSet.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(set) = sim.get(Res::StatefulSets, key) else {
        return Ok(());
    };
    if is_deleting(&set) {
        return Ok(());
    }
    let ns = set["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = set["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = set["metadata"]["uid"].clone();
    let replicas = int(&set["spec"]["replicas"], 1).max(0) as usize;
    let parallel = set["spec"]["podManagementPolicy"] == "Parallel";
    let on_delete = set["spec"]["updateStrategy"]["type"] == "OnDelete";
    let partition = int(
        &set["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        0,
    )
    .max(0) as usize;
    let update_revision = format!("{name}-{}", template_hash(&set["spec"]["template"], 0));
    let mut pods: BTreeMap<usize, std::sync::Arc<Value>> = BTreeMap::new();
    for pod in sim.owned(Res::Pods, uid.as_str().unwrap_or_default()) {
        if let Some(i) = ordinal(&name, pod["metadata"]["name"].as_str().unwrap_or_default()) {
            pods.insert(i, pod);
        }
    }
    let selector_labels = set["spec"]["selector"]["matchLabels"].clone();
    // Claims first: a pod never starts without its volumes.
    for i in 0..replicas {
        for template in set["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let claim_name = format!(
                "{}-{name}-{i}",
                template["metadata"]["name"].as_str().unwrap_or_default()
            );
            if sim
                .get(Res::PersistentVolumeClaims, &format!("{ns}/{claim_name}"))
                .is_some()
            {
                continue;
            }
            let mut labels = template["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some(m) = selector_labels.as_object() {
                labels.extend(m.clone());
            }
            let mut claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim_name, "namespace": ns, "labels": labels},
                "spec": template["spec"]});
            if set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete" {
                claim["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": name, "uid": uid, "blockOwnerDeletion": true, "controller": true}]);
            }
            match sim.create(WHO, Res::PersistentVolumeClaims, claim).await {
                Ok(_) => {
                    sim.event(WHO, "statefulset-controller", &set, "Normal", "SuccessfulCreate",
                        format!("create Claim {claim_name} Pod {name}-{i} in StatefulSet {name} success")).await;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    let healthy = |p: &Value| {
        !is_deleting(p) && !pod_finished(p) && p["status"]["phase"] == "Running" && pod_ready(p)
    };
    // Up: the missing ordinals (in order, each after the previous is ready).
    for i in 0..replicas {
        match pods.get(&i) {
            None => {
                let pod = pod_for(&set, i, &update_revision);
                let created = sim.create(WHO, Res::Pods, pod).await?;
                pods.insert(i, std::sync::Arc::new(created));
                sim.event(
                    WHO,
                    "statefulset-controller",
                    &set,
                    "Normal",
                    "SuccessfulCreate",
                    format!("create Pod {name}-{i} in StatefulSet {name} successful"),
                )
                .await;
                if !parallel {
                    break;
                }
            }
            Some(p) if pod_finished(p) => {
                // A failed pod is replaced under the same name.
                sim.delete(WHO, Res::Pods, &format!("{ns}/{name}-{i}"), None)
                    .await?;
                if !parallel {
                    break;
                }
            }
            Some(p) if !parallel && !healthy(p) => break,
            Some(_) => {}
        }
    }
    // Down: the ordinals past the replicas, highest first.
    let extra: Vec<usize> = pods
        .keys()
        .copied()
        .filter(|i| *i >= replicas)
        .rev()
        .collect();
    let all_healthy = (0..replicas).all(|i| pods.get(&i).is_some_and(|p| healthy(p)));
    for i in extra {
        let pod = &pods[&i];
        if is_deleting(pod) {
            if parallel {
                continue;
            }
            break;
        }
        if !parallel && !all_healthy {
            break;
        }
        sim.delete(WHO, Res::Pods, &format!("{ns}/{name}-{i}"), None)
            .await?;
        sim.event(
            WHO,
            "statefulset-controller",
            &set,
            "Normal",
            "SuccessfulDelete",
            format!("delete Pod {name}-{i} in StatefulSet {name} successful"),
        )
        .await;
        if !parallel {
            break;
        }
    }
    // A new template: the highest outdated ordinal at or above the partition
    // goes (and comes back updated), once every pod is healthy.
    if !on_delete && all_healthy && pods.keys().all(|i| *i < replicas) {
        let outdated = (partition..replicas).rev().find(|i| {
            pods.get(i)
                .is_some_and(|p| p["metadata"]["labels"][REVISION] != update_revision.as_str())
        });
        if let Some(i) = outdated {
            sim.delete(WHO, Res::Pods, &format!("{ns}/{name}-{i}"), None)
                .await?;
        }
    }
    // The status.
    let now = sim.clock.now().as_second();
    let min_ready = int(&set["spec"]["minReadySeconds"], 0);
    let live: Vec<_> = pods.values().filter(|p| !pod_finished(p)).collect();
    let updated = live
        .iter()
        .filter(|p| p["metadata"]["labels"][REVISION] == update_revision.as_str())
        .count();
    let current_revision = if updated == live.len() && live.len() == replicas {
        update_revision.clone()
    } else {
        set["status"]["currentRevision"]
            .as_str()
            .map_or_else(|| update_revision.clone(), String::from)
    };
    let current = live
        .iter()
        .filter(|p| p["metadata"]["labels"][REVISION] == current_revision.as_str())
        .count();
    let status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": live.len(),
        "readyReplicas": live.iter().filter(|p| pod_ready(p)).count(),
        "availableReplicas": live.iter().filter(|p| available(p, min_ready, now).is_ok()).count(),
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    });
    if status_differs(&set, &status) {
        sim.patch_status(WHO, Res::StatefulSets, key, status)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_should_get_stable_names_hostnames_and_claims() {
        let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "db-headless", "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": []}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}});
        let pod = pod_for(&set, 2, "db-abc");
        assert_eq!(pod["metadata"]["name"], "db-2");
        assert_eq!(pod["spec"]["hostname"], "db-2");
        assert_eq!(pod["spec"]["subdomain"], "db-headless");
        assert_eq!(
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            "2"
        );
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "data-db-2"
        );
        assert_eq!(ordinal("db", "db-12"), Some(12));
        assert_eq!(ordinal("db", "dbx-1"), None);
    }
}
