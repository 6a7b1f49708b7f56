//! The disruption controller: each PodDisruptionBudget's status from the
//! pods it selects (expected, currently healthy, desired healthy from
//! `minAvailable` or `maxUnavailable`, integers or percentages of the
//! expected pods, and the disruptions that leaves), with the
//! `DisruptionAllowed` condition; what `pods/eviction` reads.

use serde_json::{json, Value};

use crate::controllers::{
    condition, is_deleting, pod_finished, pod_ready,
    resources::{key_of, Res},
    selection::Ctl,
    selects,
    sim::{Identity, Sim, Work},
};

const WHO: Identity = Identity::ControllerManager("disruption-controller");

/// A pod changed: the budgets in its namespace that select it.
pub(crate) fn routes_for_pod(sim: &Sim, pod: &Value) -> Vec<Work> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    sim.list(Res::PodDisruptionBudgets, ns)
        .iter()
        .filter(|pdb| selects(&pdb["spec"]["selector"], &pod["metadata"]["labels"]))
        .map(|pdb| (Ctl::Disruption, key_of(pdb)))
        .collect()
}

/// An integer, or a percentage of `of` (rounded up, as kube does for budgets).
fn scaled(v: &Value, of: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p.parse::<i64>().ok().map(|p| (p * of + 99) / 100),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// (expected, desired healthy) for a budget over `expected` pods.
pub(crate) fn desired(spec: &Value, expected: i64) -> i64 {
    if let Some(min) = scaled(&spec["minAvailable"], expected) {
        return min;
    }
    match scaled(&spec["maxUnavailable"], expected) {
        Some(max) => (expected - max).max(0),
        None => expected,
    }
}

/// Syncs one budget's status.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(pdb) = sim.get(Res::PodDisruptionBudgets, key) else {
        return Ok(());
    };
    let ns = pdb["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pods: Vec<_> = sim
        .list(Res::Pods, &ns)
        .into_iter()
        .filter(|p| selects(&pdb["spec"]["selector"], &p["metadata"]["labels"]))
        .filter(|p| !pod_finished(p))
        .collect();
    let expected = pods.len() as i64;
    let healthy = pods
        .iter()
        .filter(|p| pod_ready(p) && !is_deleting(p))
        .count() as i64;
    let want = desired(&pdb["spec"], expected);
    let allowed = (healthy - want).max(0);
    let now = sim.clock.rfc3339();
    let (status_text, reason, message) = if allowed > 0 {
        ("True", "SufficientPods", "")
    } else {
        ("False", "InsufficientPods", "")
    };
    let transition = match condition(&pdb, "DisruptionAllowed") {
        Some(c) if c["status"] == status_text => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    // Evictions recorded in `disruptedPods` stay until the pod is gone.
    // (a merge patch removes the others with nulls).
    let disrupted: serde_json::Map<String, Value> = pdb["status"]["disruptedPods"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, at)| {
            let kept = pods
                .iter()
                .any(|p| p["metadata"]["name"] == name.as_str() && !is_deleting(p));
            (name.clone(), if kept { at.clone() } else { Value::Null })
        })
        .collect();
    let status = json!({
        "observedGeneration": pdb["metadata"]["generation"],
        "expectedPods": expected, "currentHealthy": healthy, "desiredHealthy": want,
        "disruptionsAllowed": allowed, "disruptedPods": disrupted,
        "conditions": [{"type": "DisruptionAllowed", "status": status_text, "reason": reason,
                        "message": message, "observedGeneration": pdb["metadata"]["generation"],
                        "lastTransitionTime": transition}],
    });
    let differs = status.as_object().into_iter().flatten().any(|(k, v)| {
        let current = &pdb["status"][k];
        if k == "disruptedPods" {
            return v
                .as_object()
                .is_some_and(|m| m.values().any(Value::is_null));
        }
        current != v
    });
    if differs {
        sim.patch_status(WHO, Res::PodDisruptionBudgets, key, status)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_should_resolve_like_kubes() {
        assert_eq!(desired(&json!({"minAvailable": 2}), 3), 2);
        assert_eq!(desired(&json!({"minAvailable": "50%"}), 3), 2);
        assert_eq!(desired(&json!({"maxUnavailable": 1}), 3), 2);
        assert_eq!(desired(&json!({"maxUnavailable": "34%"}), 3), 1);
        assert_eq!(desired(&json!({}), 3), 3);
    }
}
