//! The DaemonSet controller: one pod per eligible node (its
//! `nodeSelector`, required node affinity and taints, with the tolerations
//! kube adds to daemon pods), each pinned to its node by node affinity and
//! bound by the scheduler; pods on nodes no longer eligible go. A new
//! template rolls out node by node within `maxUnavailable`. The status
//! counts desired, current, misscheduled, ready, available and updated
//! pods.

use serde_json::{json, Value};

use crate::controllers::{
    int, is_deleting, pod_finished, pod_ready,
    replicaset::{available, create_pod, delete_pod, pod_from_template},
    resources::{key_of, Res},
    scheduler::{affinity_holds, untolerated},
    selection::Ctl,
    sim::{Identity, Sim, Work},
    status_differs,
};

const WHO: Identity = Identity::ControllerManager("daemon-set-controller");
const GENERATION: &str = "pod-template-generation";

/// A node changed: every DaemonSet looks again.
pub(crate) fn routes_for_node(sim: &Sim) -> Vec<Work> {
    sim.list(Res::DaemonSets, "")
        .iter()
        .map(|d| (Ctl::DaemonSet, key_of(d)))
        .collect()
}

/// The tolerations the controller gives daemon pods, so that they run on
/// nodes that are not ready, under pressure or cordoned.
fn with_daemon_tolerations(spec: &mut Value) {
    let defaults = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    if let Some(list) = spec["tolerations"].as_array_mut() {
        for (key, effect) in defaults {
            if !list
                .iter()
                .any(|t| t["key"] == key && t["effect"] == effect)
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": effect}));
            }
        }
    }
}

/// Whether the daemon pod (with its tolerations) should run on `node`.
fn eligible(pod_spec_holder: &Value, node: &Value) -> bool {
    affinity_holds(pod_spec_holder, node) && untolerated(pod_spec_holder, node).is_none()
}

/// Syncs one DaemonSet.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(ds) = sim.get(Res::DaemonSets, key) else {
        return Ok(());
    };
    if is_deleting(&ds) {
        return Ok(());
    }
    let generation = ds["metadata"]["generation"]
        .as_i64()
        .unwrap_or(1)
        .to_string();
    let mut template = ds["spec"]["template"].clone();
    with_daemon_tolerations(&mut template["spec"]);
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][GENERATION] = json!(generation);
    let probe = json!({"spec": template["spec"].clone()});
    let pods = sim.owned(
        Res::Pods,
        ds["metadata"]["uid"].as_str().unwrap_or_default(),
    );
    let live: Vec<_> = pods
        .iter()
        .filter(|p| !is_deleting(p) && !pod_finished(p))
        .cloned()
        .collect();
    let pinned = |p: &Value| -> Option<String> {
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            .as_str()
            .map(String::from)
            .or_else(|| p["spec"]["nodeName"].as_str().map(String::from))
    };
    let nodes = sim.list(Res::Nodes, "");
    let wanted: Vec<String> = nodes
        .iter()
        .filter(|n| eligible(&probe, n))
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .collect();
    // Missing pods: one per eligible node.
    for node in &wanted {
        if live
            .iter()
            .any(|p| pinned(p).as_deref() == Some(node.as_str()))
        {
            continue;
        }
        let mut pod = pod_from_template(&ds, &template, None);
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]});
        create_pod(sim, WHO, "daemonset-controller", &ds, pod).await?;
    }
    // Misscheduled ones go, and so do extra pods on one node.
    let mut seen = std::collections::BTreeSet::new();
    for pod in &live {
        let node = pinned(pod).unwrap_or_default();
        if !wanted.contains(&node) || !seen.insert(node) {
            delete_pod(sim, WHO, "daemonset-controller", &ds, pod).await?;
        }
    }
    // A new template: outdated pods go within maxUnavailable (default 1).
    if ds["spec"]["updateStrategy"]["type"] != "OnDelete" {
        let max = int(
            &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1,
        )
        .max(1) as usize;
        let unavailable = live.iter().filter(|p| !pod_ready(p)).count();
        let outdated: Vec<_> = live
            .iter()
            .filter(|p| p["metadata"]["labels"][GENERATION] != generation.as_str())
            .collect();
        for pod in outdated.into_iter().take(max.saturating_sub(unavailable)) {
            sim.delete(WHO, Res::Pods, &key_of(pod), None).await?;
        }
    }
    // The status.
    let now = sim.clock.now().as_second();
    let min_ready = int(&ds["spec"]["minReadySeconds"], 0);
    let pods: Vec<_> = sim
        .owned(
            Res::Pods,
            ds["metadata"]["uid"].as_str().unwrap_or_default(),
        )
        .into_iter()
        .filter(|p| !is_deleting(p) && !pod_finished(p))
        .collect();
    let on_wanted: Vec<_> = pods
        .iter()
        .filter(|p| pinned(p).is_some_and(|n| wanted.contains(&n)))
        .collect();
    let ready = on_wanted.iter().filter(|p| pod_ready(p)).count();
    let available_now = on_wanted
        .iter()
        .filter(|p| available(p, min_ready, now).is_ok())
        .count();
    let status = json!({
        "observedGeneration": ds["metadata"]["generation"],
        "desiredNumberScheduled": wanted.len(),
        "currentNumberScheduled": on_wanted.len(),
        "numberMisscheduled": pods.len() - on_wanted.len(),
        "numberReady": ready,
        "numberAvailable": available_now,
        "numberUnavailable": wanted.len().saturating_sub(available_now),
        "updatedNumberScheduled": on_wanted.iter().filter(|p| p["metadata"]["labels"][GENERATION] == generation.as_str()).count(),
    });
    if status_differs(&ds, &status) {
        sim.patch_status(WHO, Res::DaemonSets, key, status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pods_should_tolerate_down_and_cordoned_nodes() {
        let mut spec = json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]});
        with_daemon_tolerations(&mut spec);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 6);
        let cordoned = json!({"metadata": {"name": "n", "labels": {}}, "spec": {"unschedulable": true,
            "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}});
        assert!(eligible(&json!({"spec": spec}), &cordoned));
        let dedicated = json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}});
        assert!(!eligible(&json!({"spec": spec}), &dedicated));
    }
}
