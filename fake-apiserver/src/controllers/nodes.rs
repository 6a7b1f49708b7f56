//! Nodes: registered at boot by their kubelets (Ready, with capacity,
//! addresses, labels and a Lease), and their lifecycle as kube's node
//! lifecycle controller runs it: a node whose `Ready` condition is not
//! `True` gets the `unreachable` (Unknown) or `not-ready` (False) taints and
//! its pods are marked not ready, then evicted once their toleration runs
//! out; a cordoned node (`spec.unschedulable`) gets the `unschedulable`
//! taint. Taking a node down is a status write anyone can make
//! (`Ready` to `Unknown`), as when its kubelet stops posting.

use std::time::Duration;

use serde_json::{json, Value};

use crate::controllers::{
    condition, is_deleting,
    resources::Res,
    selection::Ctl,
    sim::{Identity, Sim},
};

const LIFECYCLE: Identity = Identity::ControllerManager("node-controller");
const EVICTION: Identity = Identity::ControllerManager("taint-eviction-controller");

/// The taints the lifecycle controller manages.
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The name of the `i`th node (from 1).
pub(crate) fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// A node's conditions as a healthy kubelet posts them.
pub(crate) fn healthy_conditions(now: &str) -> Value {
    let c = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

fn node(i: usize) -> Value {
    let name = node_name(i);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
        }},
        "spec": {"podCIDR": format!("10.244.{}.0/24", i - 1), "podCIDRs": [format!("10.244.{}.0/24", i - 1)]},
    })
}

fn node_status(i: usize, now: &str) -> Value {
    let resources =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let version = format!(
        "v{}.{}.0",
        crate::apimachinery::VERSION_MAJOR,
        crate::apimachinery::VERSION_MINOR
    );
    json!({
        "capacity": resources, "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": format!("172.18.0.{}", i + 1)},
                      {"type": "Hostname", "address": node_name(i)}],
        "conditions": healthy_conditions(now),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux", "osImage": "fake-apiserver simulated node",
            "kernelVersion": "6.1.0", "containerRuntimeVersion": "fake://1.0.0",
            "kubeletVersion": version, "kubeProxyVersion": version,
            "machineID": format!("{i:032x}"), "systemUUID": format!("00000000-0000-0000-0000-{i:012x}"),
            "bootID": format!("00000000-0000-0000-0001-{i:012x}"),
        },
    })
}

/// Registers the nodes that do not exist yet, as their kubelets would.
pub(crate) async fn boot(sim: &mut Sim) {
    for i in 1..=sim.settings.nodes {
        let now = sim.clock.rfc3339();
        let name = node_name(i);
        match sim.create(Identity::Kubelet, Res::Nodes, node(i)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "simulation: cannot register a node");
                continue;
            }
        }
        if let Err(e) = sim
            .patch_status(Identity::Kubelet, Res::Nodes, &name, node_status(i, &now))
            .await
        {
            tracing::warn!(node = %name, error = %e, "simulation: cannot post a node's status");
        }
        let created = sim.get(Res::Nodes, &name);
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": created.map(|n| vec![json!({
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": n["metadata"]["uid"],
            })])},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": sim.clock.rfc3339_micros()},
        });
        if let Err(e) = sim.create(Identity::Kubelet, Res::Leases, lease).await {
            tracing::debug!(node = %name, error = %e, "simulation: no node lease");
        }
    }
}

/// Whether the node's `Ready` condition is `True`.
pub(crate) fn is_ready(node: &Value) -> bool {
    condition(node, "Ready").is_some_and(|c| c["status"] == "True")
}

/// The taints the node should have from the lifecycle controller, given its
/// state, with the others it has kept.
fn wanted_taints(node: &Value, now: &str) -> Value {
    let ready = condition(node, "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown");
    let mut taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| {
            ![UNREACHABLE, NOT_READY, UNSCHEDULABLE]
                .contains(&t["key"].as_str().unwrap_or_default())
        })
        .collect();
    let keep_or = |key: &str, effect: &str| -> Value {
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == key && t["effect"] == effect)
            .cloned()
            .unwrap_or_else(|| {
                if effect == "NoExecute" {
                    json!({"key": key, "effect": effect, "timeAdded": now})
                } else {
                    json!({"key": key, "effect": effect})
                }
            })
    };
    let down = match ready {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    if let Some(key) = down {
        taints.push(keep_or(key, "NoSchedule"));
        taints.push(keep_or(key, "NoExecute"));
    }
    if node["spec"]["unschedulable"] == true {
        taints.push(keep_or(UNSCHEDULABLE, "NoSchedule"));
    }
    Value::Array(taints)
}

/// How long `pod` tolerates a `NoExecute` taint with `key` (`None`: for
/// ever; `Some(0)`: not at all).
fn tolerates_for(pod: &Value, key: &str) -> Option<i64> {
    let tolerations = pod["spec"]["tolerations"].as_array();
    let matching = tolerations.into_iter().flatten().find(|t| {
        let key_ok = t["key"] == key
            || (t["key"].as_str().is_none_or(str::is_empty) && t["operator"] == "Exists");
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || e == "NoExecute");
        key_ok && effect_ok
    });
    match matching {
        None => Some(0),
        Some(t) => t["tolerationSeconds"].as_i64().map(|s| s.max(0)),
    }
}

/// The lifecycle of one node.
pub(crate) async fn sync(sim: &mut Sim, name: &str) -> Result<(), kube::Error> {
    let Some(node) = sim.get(Res::Nodes, name) else {
        return Ok(());
    };
    let now = sim.clock.rfc3339();
    let taints = wanted_taints(&node, &now);
    let current = node["spec"]["taints"].clone();
    let same = match (&current, &taints) {
        (Value::Array(a), Value::Array(b)) => a == b,
        (Value::Null, Value::Array(b)) => b.is_empty(),
        _ => false,
    };
    if !same {
        sim.patch(
            LIFECYCLE,
            Res::Nodes,
            name,
            json!({"spec": {"taints": taints}}),
        )
        .await?;
    }
    if is_ready(&node) {
        return Ok(());
    }
    let key = if condition(&node, "Ready").is_some_and(|c| c["status"] == "False") {
        NOT_READY
    } else {
        UNREACHABLE
    };
    let since = taints
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["key"] == key && t["effect"] == "NoExecute")
        .and_then(|t| t["timeAdded"].as_str())
        .and_then(crate::apimachinery::clock::parse_time)
        .map_or(0, |t| t.as_second());
    let elapsed = sim.clock.now().as_second() - since;
    let pods = sim.pods_on(name);
    for pod in pods {
        let pod_key = crate::controllers::resources::key_of(&pod);
        if is_deleting(&pod) {
            continue;
        }
        // Marked not ready, as `MarkPodsNotReady` does.
        if crate::controllers::pod_ready(&pod) {
            let mut conditions = pod["status"]["conditions"].clone();
            if let Some(list) = conditions.as_array_mut() {
                for c in list.iter_mut().filter(|c| c["type"] == "Ready") {
                    c["status"] = json!("False");
                    c["lastTransitionTime"] = json!(now);
                }
            }
            sim.patch_status(
                LIFECYCLE,
                Res::Pods,
                &pod_key,
                json!({"conditions": conditions}),
            )
            .await?;
        }
        // Evicted once its toleration of the taint runs out.
        match tolerates_for(&pod, key) {
            None => {}
            Some(limit) if elapsed >= limit => {
                sim.event(
                    EVICTION,
                    "taint-eviction-controller",
                    &pod,
                    "Normal",
                    "TaintManagerEviction",
                    format!("Marking for deletion Pod {pod_key}"),
                )
                .await;
                sim.delete(EVICTION, Res::Pods, &pod_key, None).await?;
            }
            Some(limit) => {
                sim.after(
                    Duration::from_secs((limit - elapsed) as u64),
                    Ctl::Nodes,
                    name,
                    false,
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_node_should_be_tainted_and_a_cordoned_one_unschedulable() {
        let mut n = node(1);
        n["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
        n["spec"]["unschedulable"] = json!(true);
        n["spec"]["taints"] = json!([{"key": "dedicated", "effect": "NoSchedule", "value": "db"}]);
        let taints = wanted_taints(&n, "T");
        assert_eq!(
            taints,
            json!([
                {"key": "dedicated", "effect": "NoSchedule", "value": "db"},
                {"key": UNREACHABLE, "effect": "NoSchedule"},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "T"},
                {"key": UNSCHEDULABLE, "effect": "NoSchedule"},
            ])
        );
        n["spec"]["taints"] = taints;
        n["status"]["conditions"] = healthy_conditions("T");
        n["spec"]["unschedulable"] = json!(false);
        assert_eq!(
            wanted_taints(&n, "T"),
            json!([{"key": "dedicated", "effect": "NoSchedule", "value": "db"}])
        );
    }

    #[test]
    fn tolerations_should_bound_the_time_on_a_down_node() {
        let pod = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}});
        assert_eq!(tolerates_for(&pod, UNREACHABLE), Some(300));
        assert_eq!(tolerates_for(&pod, NOT_READY), Some(0));
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(tolerates_for(&forever, NOT_READY), None);
    }
}
