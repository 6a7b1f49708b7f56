//! kube-scheduler, simulated: binds each pending pod of the
//! `default-scheduler` to a node through `pods/binding`, after kube's
//! filters (cordoned nodes, `nodeSelector` and required node affinity,
//! untolerated `NoSchedule`/`NoExecute` taints, requests against
//! allocatable, the pod limit), picking the least requested node. A pod
//! that fits nowhere gets `PodScheduled=False` (Unschedulable) and a
//! FailedScheduling event with kube's message, and is tried again only when
//! a node changes or a pod goes: it never loops hot.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::controllers::{
    index::Usage,
    is_deleting, pod_finished,
    quantity::{milli, pod_requests},
    resources::Res,
    selection::Ctl,
    sim::{Identity, Sim, Work},
};

const WHO: Identity = Identity::Scheduler;

/// Nodes changed or room was freed: the unschedulable pods try again.
pub(crate) fn routes_for_node(sim: &Sim) -> Vec<Work> {
    sim.unschedulable
        .iter()
        .map(|k| (Ctl::Scheduler, k.clone()))
        .collect()
}

/// Whether one node selector term (`matchExpressions` and `matchFields`,
/// all of them) holds for the node.
fn term_holds(term: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let expr_holds = |e: &Value, value: Option<&str>| {
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let number = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
        match e["operator"].as_str().unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" => {
                matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a > b)
            }
            "Lt" => {
                matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a < b)
            }
            _ => false,
        }
    };
    let exprs = term["matchExpressions"].as_array().into_iter().flatten();
    let fields = term["matchFields"].as_array().into_iter().flatten();
    let mut any = false;
    for e in exprs {
        any = true;
        if !expr_holds(e, labels[e["key"].as_str().unwrap_or_default()].as_str()) {
            return false;
        }
    }
    for e in fields {
        any = true;
        let value = (e["key"] == "metadata.name")
            .then(|| node["metadata"]["name"].as_str())
            .flatten();
        if !expr_holds(e, value) {
            return false;
        }
    }
    // An empty term selects no node.
    any
}

/// `nodeSelector` and required node affinity.
pub(crate) fn affinity_holds(pod: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let selector_ok = pod["spec"]["nodeSelector"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let required =
        &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    let affinity_ok = match required["nodeSelectorTerms"].as_array() {
        None => true,
        Some(terms) => terms.iter().any(|t| term_holds(t, node)),
    };
    selector_ok && affinity_ok
}

/// Whether a toleration tolerates a taint (kube's `ToleratesTaint`).
fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or_default();
    if !effect.is_empty() && toleration["effect"] != taint["effect"] {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or_default();
    if !key.is_empty() && toleration["key"] != taint["key"] {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration["value"].as_str().unwrap_or_default()
                == taint["value"].as_str().unwrap_or_default()
        }
        _ => false,
    }
}

/// The first taint the pod does not tolerate, among those that keep pods off.
pub(crate) fn untolerated<'a>(pod: &Value, node: &'a Value) -> Option<&'a Value> {
    let tolerations: Vec<&Value> = pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|taint| {
            matches!(taint["effect"].as_str(), Some("NoSchedule" | "NoExecute"))
                && !tolerations.iter().any(|t| tolerates(t, taint))
        })
}

/// Why a node does not fit the pod (kube's reasons), or `None` if it does.
fn misfit(pod: &Value, node: &Value, used: &Usage) -> Option<String> {
    let tolerates_cordon = pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            tolerates(
                t,
                &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
            )
        });
    if node["spec"]["unschedulable"] == true && !tolerates_cordon {
        return Some("node(s) were unschedulable".into());
    }
    if !affinity_holds(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    if let Some(taint) = untolerated(pod, node) {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint["key"].as_str().unwrap_or_default(),
            taint["value"].as_str().unwrap_or_default()
        ));
    }
    let allocatable = &node["status"]["allocatable"];
    let max_pods = milli(&allocatable["pods"]).unwrap_or(110_000) / 1000;
    if used.pods as i128 + 1 > max_pods {
        return Some("Too many pods".into());
    }
    for (resource, want) in pod_requests(pod) {
        let Some(has) = milli(&allocatable[resource.as_str()]) else {
            if want > 0 {
                return Some(format!("Insufficient {resource}"));
            }
            continue;
        };
        if used.requests.get(&resource).copied().unwrap_or(0) + want > has {
            return Some(format!("Insufficient {resource}"));
        }
    }
    None
}

/// kube-scheduler's FitError message.
fn unschedulable_message(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    let listed: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let mut message = format!("0/{nodes} nodes are available");
    if !listed.is_empty() {
        message.push_str(&format!(": {}", listed.join(", ")));
    }
    message.push_str(&format!(
        ". preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling."
    ));
    message
}

/// Schedules one pod.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(pod) = sim.get(Res::Pods, key) else {
        sim.unschedulable.remove(key);
        return Ok(());
    };
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let ours = pod["spec"]["schedulerName"]
        .as_str()
        .is_none_or(|s| s == "default-scheduler");
    if bound || !ours || is_deleting(&pod) || pod_finished(&pod) {
        sim.unschedulable.remove(key);
        return Ok(());
    }
    if pod["spec"]["schedulingGates"]
        .as_array()
        .is_some_and(|g| !g.is_empty())
    {
        return Ok(());
    }
    let nodes = sim.list(Res::Nodes, "");
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(i128, usize, &str)> = None;
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let used = sim.index.usage(name);
        match misfit(&pod, node, &used) {
            Some(reason) => *reasons.entry(reason).or_default() += 1,
            None => {
                // Least requested CPU first, then fewest pods, then name.
                let cpu = used.requests.get("cpu").copied().unwrap_or(0);
                let score = (cpu, used.pods, name);
                if best.is_none_or(|b| score < b) {
                    best = Some(score);
                }
            }
        }
    }
    let Some((_, _, node)) = best else {
        let message = unschedulable_message(nodes.len(), &reasons);
        sim.unschedulable.insert(key.to_string());
        let current = crate::controllers::condition(&pod, "PodScheduled");
        if current
            .is_some_and(|c| c["reason"] == "Unschedulable" && c["message"] == message.as_str())
        {
            return Ok(());
        }
        let now = sim.clock.rfc3339();
        let mut conditions: Vec<Value> = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": now}),
        );
        sim.patch_status(WHO, Res::Pods, key, json!({"conditions": conditions}))
            .await?;
        sim.event(
            WHO,
            "default-scheduler",
            &pod,
            "Warning",
            "FailedScheduling",
            message,
        )
        .await;
        return Ok(());
    };
    let node = node.to_string();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"], "uid": pod["metadata"]["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match sim
        .post_subresource(WHO, Res::Pods, key, "binding", binding)
        .await
    {
        Ok(_) => {}
        // Bound or deleted meanwhile: the next event says what happened.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    sim.unschedulable.remove(key);
    // Assumed bound at once, so the next pod counts this one's requests.
    let mut assumed = (*pod).clone();
    assumed["spec"]["nodeName"] = json!(node);
    sim.assume(Res::Pods, assumed);
    let (ns, name) = crate::controllers::resources::split_key(key);
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    sim.event(
        WHO,
        "default-scheduler",
        &pod,
        "Normal",
        "Scheduled",
        message,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "disk": "ssd"}},
               "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"}}})
    }

    fn used(pods: &[&Value]) -> Usage {
        let mut usage = Usage::default();
        for p in pods {
            usage.pods += 1;
            for (k, v) in pod_requests(p) {
                *usage.requests.entry(k).or_default() += v;
            }
        }
        usage
    }

    #[test]
    fn filters_should_give_kubes_reasons() {
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1500m"}}}]}});
        let n = node("a");
        assert_eq!(misfit(&pod, &n, &used(&[])), None);
        assert_eq!(
            misfit(&pod, &n, &used(&[&pod])).as_deref(),
            Some("Insufficient cpu")
        );
        let picky = json!({"spec": {"nodeSelector": {"disk": "hdd"}}});
        assert_eq!(
            misfit(&picky, &n, &used(&[])).as_deref(),
            Some("node(s) didn't match Pod's node affinity/selector")
        );
        let mut tainted = node("b");
        tainted["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        assert_eq!(
            misfit(&json!({}), &tainted, &used(&[])).as_deref(),
            Some("node(s) had untolerated taint {dedicated: db}")
        );
        let tolerant = json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}});
        assert_eq!(misfit(&tolerant, &tainted, &used(&[])), None);
        let full = json!({});
        assert_eq!(
            misfit(&full, &n, &used(&[&full, &full, &full])).as_deref(),
            Some("Too many pods")
        );
        let mut cordoned = node("c");
        cordoned["spec"]["unschedulable"] = json!(true);
        assert_eq!(
            misfit(&full, &cordoned, &used(&[])).as_deref(),
            Some("node(s) were unschedulable")
        );
    }

    #[test]
    fn required_affinity_should_or_its_terms_and_and_its_expressions() {
        let pod = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "Exists"}, {"key": "gpu", "operator": "DoesNotExist"}],
             "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["b"]}]},
        ]}}}}});
        assert!(affinity_holds(&pod, &node("a")));
        assert!(!affinity_holds(&pod, &node("b")));
    }

    #[test]
    fn the_fit_error_should_read_like_kube_schedulers() {
        let reasons = BTreeMap::from([
            ("Insufficient cpu".to_string(), 2),
            ("node(s) were unschedulable".to_string(), 1),
        ]);
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }
}
