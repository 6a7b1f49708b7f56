//! The ReplicaSet controller: as many active pods as `spec.replicas`, made
//! from the template (`generateName`, a controller reference) or deleted
//! (the least useful first, as kube ranks them); orphans that match the
//! selector are adopted, owned pods that stopped matching are released;
//! the status counts replicas, fully labelled, ready and available ones
//! (ready for `minReadySeconds`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::controllers::{
    condition, controller_of, controller_ref, int, is_deleting, pod_finished, pod_ready,
    resources::{key_of, Res},
    selection::Ctl,
    selects,
    sim::{Identity, Sim, Work},
};

const WHO: Identity = Identity::ControllerManager("replicaset-controller");

/// A pod changed: its owner, or for an orphan the ReplicaSets that select it.
pub(crate) fn routes_for_pod(sim: &Sim, old: Option<&Value>, new: Option<&Value>) -> Vec<Work> {
    let mut work = Vec::new();
    for pod in [old, new].into_iter().flatten() {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        match controller_of(pod) {
            Some(owner) if owner["kind"] == "ReplicaSet" => {
                work.push((
                    Ctl::ReplicaSet,
                    format!("{ns}/{}", owner["name"].as_str().unwrap_or_default()),
                ));
            }
            Some(_) => {}
            None => {
                for rs in sim.list(Res::ReplicaSets, ns) {
                    if selects(&rs["spec"]["selector"], &pod["metadata"]["labels"]) {
                        work.push((Ctl::ReplicaSet, key_of(&rs)));
                    }
                }
            }
        }
    }
    work
}

/// Seconds since the pod became ready (`None`: not ready).
fn ready_for(pod: &Value, now: i64) -> Option<i64> {
    if !pod_ready(pod) {
        return None;
    }
    let since = condition(pod, "Ready")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(crate::apimachinery::clock::parse_time)
        .map_or(now, |t| t.as_second());
    Some(now - since)
}

/// Whether a pod is available (ready for `min_ready` seconds), and if
/// not yet, in how many seconds it will be.
pub(crate) fn available(pod: &Value, min_ready: i64, now: i64) -> Result<(), Option<i64>> {
    match ready_for(pod, now) {
        Some(for_) if for_ >= min_ready => Ok(()),
        Some(for_) => Err(Some(min_ready - for_)),
        None => Err(None),
    }
}

/// The order pods go in when scaling down: unscheduled, pending, not
/// ready, most restarted and newest first.
fn deletion_rank(pod: &Value) -> (bool, u8, bool, i64, std::cmp::Reverse<String>) {
    let assigned = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let phase = match pod["status"]["phase"].as_str() {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts: i64 = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| int(&c["restartCount"], 0))
        .sum();
    let created = pod["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (
        assigned,
        phase,
        pod_ready(pod),
        -restarts,
        std::cmp::Reverse(created),
    )
}

/// A pod made from an owner's template.
pub(crate) fn pod_from_template(owner: &Value, template: &Value, name: Option<String>) -> Value {
    let ns = owner["metadata"]["namespace"].clone();
    let mut meta = json!({"namespace": ns, "ownerReferences": [controller_ref(owner)]});
    match name {
        Some(name) => meta["name"] = json!(name),
        None => {
            meta["generateName"] = json!(format!(
                "{}-",
                owner["metadata"]["name"].as_str().unwrap_or_default()
            ))
        }
    }
    for field in ["labels", "annotations", "finalizers"] {
        if template["metadata"][field].is_object() || template["metadata"][field].is_array() {
            meta[field] = template["metadata"][field].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// Creates `pod` for `owner` and posts `SuccessfulCreate` ("Created pod:
/// NAME") as `component`, as the ReplicaSet, Job and DaemonSet controllers
/// do.
pub(crate) async fn create_pod(
    sim: &mut Sim,
    who: Identity,
    component: &str,
    owner: &Value,
    pod: Value,
) -> Result<Value, kube::Error> {
    let created = sim.create(who, Res::Pods, pod).await?;
    let name = created["metadata"]["name"].as_str().unwrap_or_default();
    let message = format!("Created pod: {name}");
    sim.event(who, component, owner, "Normal", "SuccessfulCreate", message)
        .await;
    Ok(created)
}

/// Deletes `owner`'s `pod` and posts `SuccessfulDelete` ("Deleted pod:
/// NAME") as `component`.
pub(crate) async fn delete_pod(
    sim: &mut Sim,
    who: Identity,
    component: &str,
    owner: &Value,
    pod: &Value,
) -> Result<(), kube::Error> {
    sim.delete(who, Res::Pods, &key_of(pod), None).await?;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let message = format!("Deleted pod: {name}");
    sim.event(who, component, owner, "Normal", "SuccessfulDelete", message)
        .await;
    Ok(())
}

/// Syncs one ReplicaSet.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(rs) = sim.get(Res::ReplicaSets, key) else {
        return Ok(());
    };
    let ns = rs["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = rs["metadata"]["uid"].clone();
    let selector = rs["spec"]["selector"].clone();
    let mut owned = Vec::new();
    let uid_text = uid.as_str().unwrap_or_default().to_string();
    let candidates: Vec<_> = sim
        .owned(Res::Pods, &uid_text)
        .into_iter()
        .chain(sim.orphans(Res::Pods, &ns))
        .collect();
    for pod in candidates {
        if is_deleting(&pod) {
            continue;
        }
        let matches = selects(&selector, &pod["metadata"]["labels"]);
        match controller_of(&pod) {
            Some(r) if r["uid"] == uid => {
                if matches {
                    owned.push(pod);
                } else if !is_deleting(&rs) {
                    // Released: it no longer matches.
                    let refs: Vec<Value> = pod["metadata"]["ownerReferences"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r| r["uid"] != uid)
                        .collect();
                    sim.patch(
                        WHO,
                        Res::Pods,
                        &key_of(&pod),
                        json!({"metadata": {"ownerReferences": refs}}),
                    )
                    .await?;
                }
            }
            None if matches && !is_deleting(&rs) => {
                // Adopted, guarded by its uid.
                let mut refs = pod["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                refs.push(controller_ref(&rs));
                let adopted = sim.patch(WHO, Res::Pods, &key_of(&pod),
                    json!({"metadata": {"ownerReferences": refs, "uid": pod["metadata"]["uid"]}})).await?;
                owned.push(std::sync::Arc::new(adopted));
            }
            _ => {}
        }
    }
    if is_deleting(&rs) {
        return Ok(());
    }
    let active: Vec<_> = owned.iter().filter(|p| !pod_finished(p)).cloned().collect();
    let want = int(&rs["spec"]["replicas"], 1).max(0) as usize;
    if active.len() < want {
        for _ in active.len()..want {
            let pod = pod_from_template(&rs, &rs["spec"]["template"], None);
            create_pod(sim, WHO, "replicaset-controller", &rs, pod).await?;
        }
    } else if active.len() > want {
        let mut doomed = active.clone();
        doomed.sort_by_key(|p| deletion_rank(p));
        for pod in doomed.into_iter().take(active.len() - want) {
            delete_pod(sim, WHO, "replicaset-controller", &rs, &pod).await?;
        }
    }
    // The status, from the pods as they are now.
    let now = sim.clock.now().as_second();
    let min_ready = int(&rs["spec"]["minReadySeconds"], 0);
    let pods: Vec<_> = sim
        .owned(Res::Pods, &uid_text)
        .into_iter()
        .filter(|p| !is_deleting(p) && !pod_finished(p))
        .collect();
    let template_labels = rs["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let fully = pods
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p["metadata"]["labels"][k] == *v)
        })
        .count();
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let mut available_count = 0;
    let mut soonest: Option<i64> = None;
    for p in &pods {
        match available(p, min_ready, now) {
            Ok(()) => available_count += 1,
            Err(Some(wait)) => soonest = Some(soonest.map_or(wait, |s| s.min(wait))),
            Err(None) => {}
        }
    }
    if let Some(wait) = soonest {
        sim.after(
            Duration::from_secs(wait.max(1) as u64),
            Ctl::ReplicaSet,
            key,
            false,
        );
    }
    let status = json!({
        "replicas": pods.len(), "fullyLabeledReplicas": fully, "readyReplicas": ready,
        "availableReplicas": available_count, "observedGeneration": rs["metadata"]["generation"],
    });
    let current = &rs["status"];
    let unchanged = [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .all(|f| int(&current[*f], 0) == int(&status[*f], 0));
    if !unchanged {
        sim.patch_status(WHO, Res::ReplicaSets, key, status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_down_should_take_the_least_useful_pods_first() {
        let pending = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"nodeName": "n"}, "status": {"phase": "Pending"}});
        let unscheduled = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}, "status": {"phase": "Pending"}});
        let ready = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
                           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let newer_ready = json!({"metadata": {"creationTimestamp": "2024-02-01T00:00:00Z"}, "spec": {"nodeName": "n"},
                           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let mut pods = [&ready, &newer_ready, &pending, &unscheduled];
        pods.sort_by_key(|p| deletion_rank(p));
        assert_eq!(pods, [&unscheduled, &pending, &newer_ready, &ready]);
    }

    #[test]
    fn availability_should_wait_for_min_ready_seconds() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "1970-01-01T00:01:40Z"}]}});
        assert_eq!(available(&pod, 10, 105), Err(Some(5)));
        assert_eq!(available(&pod, 10, 110), Ok(()));
        assert_eq!(available(&json!({}), 0, 0), Err(None));
    }
}
