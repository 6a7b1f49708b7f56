//! The Deployment controller: one ReplicaSet per pod template (named with
//! its `pod-template-hash`, revisions in `deployment.kubernetes.io/revision`
//! so that `kubectl rollout history/undo` work), rolled from the old to the
//! new as kube does it: `RollingUpdate` within `maxSurge` and
//! `maxUnavailable`, or `Recreate`; nothing rolls while `spec.paused`. The
//! status counts replicas, updated, ready, available and unavailable ones,
//! with the `Available` and `Progressing` conditions and their reasons
//! (NewReplicaSetAvailable, ProgressDeadlineExceeded, ...); old
//! ReplicaSets beyond `revisionHistoryLimit` go.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::controllers::{
    controller_of, controller_ref, int, is_deleting,
    resources::{key_of, Res},
    selection::Ctl,
    selects,
    sim::{Identity, Sim, Work},
    status_differs,
};

const WHO: Identity = Identity::ControllerManager("deployment-controller");
const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

/// A ReplicaSet changed: its Deployment (or, for an orphan, those that select it).
pub(crate) fn routes_for_replica_set(sim: &Sim, rs: &Value) -> Vec<Work> {
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
    match controller_of(rs) {
        Some(owner) if owner["kind"] == "Deployment" => {
            vec![(
                Ctl::Deployment,
                format!("{ns}/{}", owner["name"].as_str().unwrap_or_default()),
            )]
        }
        Some(_) => Vec::new(),
        None => sim
            .list(Res::Deployments, ns)
            .iter()
            .filter(|d| selects(&d["spec"]["selector"], &rs["metadata"]["labels"]))
            .map(|d| (Ctl::Deployment, key_of(d)))
            .collect(),
    }
}

/// The template without its `pod-template-hash` label, for comparisons.
fn bare(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH);
        if labels.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if t["metadata"].as_object().is_some_and(Map::is_empty) {
        t.as_object_mut().map(|m| m.remove("metadata"));
    }
    t
}

/// The template's hash as kube spells it: FNV-1a, then encoded with the
/// consonant-and-digit alphabet of `rand.SafeEncodeString`.
pub(crate) fn template_hash(template: &Value, collisions: i64) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let text = bare(template).to_string();
    for b in text.bytes().chain(collisions.to_le_bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// `maxSurge`/`maxUnavailable` resolved against `replicas` (percentages
/// round up for surge, down for unavailable; both zero makes one unavailable).
pub(crate) fn resolve(surge: &Value, unavailable: &Value, replicas: i64) -> (i64, i64) {
    let value = |v: &Value, up: bool| -> i64 {
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) if up => (p * replicas + 99) / 100,
                Some(p) => p * replicas / 100,
                None => s.parse().unwrap_or(0),
            },
            _ => 0,
        }
    };
    let (s, u) = (value(surge, true), value(unavailable, false));
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &Value) -> i64 {
    int(&rs["spec"]["replicas"], 0)
}

fn status_int(rs: &Value, field: &str) -> i64 {
    int(&rs["status"][field], 0)
}

/// Sets a ReplicaSet's replicas (and the Deployment's annotations on it).
async fn scale(
    sim: &mut Sim,
    d: &Value,
    rs: &Value,
    to: i64,
    max_surge: i64,
) -> Result<Value, kube::Error> {
    let from = replicas(rs);
    let want = int(&d["spec"]["replicas"], 1);
    let annotations = json!({
        "deployment.kubernetes.io/desired-replicas": want.to_string(),
        "deployment.kubernetes.io/max-replicas": (want + max_surge).to_string(),
    });
    let same_annotations = rs["metadata"]["annotations"]
        ["deployment.kubernetes.io/desired-replicas"]
        == annotations["deployment.kubernetes.io/desired-replicas"];
    if from == to && same_annotations {
        return Ok(rs.clone());
    }
    let patched = sim
        .patch(
            WHO,
            Res::ReplicaSets,
            &key_of(rs),
            json!({"metadata": {"annotations": annotations}, "spec": {"replicas": to}}),
        )
        .await?;
    if from != to {
        let how = if to > from { "up" } else { "down" };
        let name = rs["metadata"]["name"].as_str().unwrap_or_default();
        sim.event(
            WHO,
            "deployment-controller",
            d,
            "Normal",
            "ScalingReplicaSet",
            format!("Scaled {how} replica set {name} from {from} to {to}"),
        )
        .await;
    }
    Ok(patched)
}

/// A condition as the deployment controller writes it.
fn cond(
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &str,
    old: Option<&Value>,
) -> Value {
    let transition = match old {
        Some(o) if o["status"] == status => o["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match old {
        Some(o)
            if o["status"] == status
                && o["reason"] == reason
                && o["message"] == message.as_str() =>
        {
            o["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastUpdateTime": update, "lastTransitionTime": transition})
}

/// Syncs one Deployment.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(d) = sim.get(Res::Deployments, key) else {
        return Ok(());
    };
    if is_deleting(&d) {
        return Ok(());
    }
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = d["metadata"]["uid"].clone();
    let selector = d["spec"]["selector"].clone();
    let want = int(&d["spec"]["replicas"], 1).max(0);
    let strategy = d["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        .to_string();
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let (max_surge, max_unavailable) = if strategy == "Recreate" {
        (0, want)
    } else {
        resolve(&rolling["maxSurge"], &rolling["maxUnavailable"], want)
    };
    // Its ReplicaSets: owned, and orphans it selects (adopted).
    let mut sets: Vec<Value> = Vec::new();
    let uid_text = uid.as_str().unwrap_or_default().to_string();
    let candidates: Vec<_> = sim
        .owned(Res::ReplicaSets, &uid_text)
        .into_iter()
        .chain(sim.orphans(Res::ReplicaSets, &ns))
        .collect();
    for rs in candidates {
        match controller_of(&rs) {
            Some(r) if r["uid"] == uid => sets.push((*rs).clone()),
            None if selects(&selector, &rs["metadata"]["labels"]) && !is_deleting(&rs) => {
                let mut refs = rs["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                refs.push(controller_ref(&d));
                sets.push(
                    sim.patch(
                        WHO,
                        Res::ReplicaSets,
                        &key_of(&rs),
                        json!({"metadata": {"ownerReferences": refs}}),
                    )
                    .await?,
                );
            }
            _ => {}
        }
    }
    sets.sort_by(|a, b| {
        (
            a["metadata"]["creationTimestamp"].as_str(),
            a["metadata"]["name"].as_str(),
        )
            .cmp(&(
                b["metadata"]["creationTimestamp"].as_str(),
                b["metadata"]["name"].as_str(),
            ))
    });
    let template = &d["spec"]["template"];
    let max_revision = sets.iter().map(revision).max().unwrap_or(0);
    let new_index = sets
        .iter()
        .position(|rs| bare(&rs["spec"]["template"]) == bare(template));
    let paused = d["spec"]["paused"] == true;
    let mut created_new = None;
    let mut new_rs = match new_index {
        Some(i) => {
            let rs = sets.remove(i);
            // Rolled back to an old template: it becomes the newest revision.
            if revision(&rs) < max_revision && !paused {
                let bumped = sim.patch(WHO, Res::ReplicaSets, &key_of(&rs),
                    json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}})).await?;
                Some(bumped)
            } else {
                Some(rs)
            }
        }
        None if paused => None,
        None => {
            let collisions = int(&d["status"]["collisionCount"], 0);
            let hash = template_hash(template, collisions);
            let mut t = template.clone();
            t["metadata"]["labels"][HASH] = json!(hash);
            let mut rs_selector = selector.clone();
            rs_selector["matchLabels"][HASH] = json!(hash);
            let old_total: i64 = sets.iter().map(replicas).sum();
            let start = if strategy == "Recreate" {
                0
            } else {
                (want + max_surge - old_total).clamp(0, want)
            };
            let name = format!(
                "{}-{hash}",
                d["metadata"]["name"].as_str().unwrap_or_default()
            );
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": ns, "labels": t["metadata"]["labels"],
                    "ownerReferences": [controller_ref(&d)],
                    "annotations": {REVISION: (max_revision + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": want.to_string(),
                        "deployment.kubernetes.io/max-replicas": (want + max_surge).to_string()}},
                "spec": {"replicas": start, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                         "selector": rs_selector, "template": t},
            });
            let created = sim.create(WHO, Res::ReplicaSets, rs).await?;
            created_new = Some(name.clone());
            if start > 0 {
                sim.event(
                    WHO,
                    "deployment-controller",
                    &d,
                    "Normal",
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {start}"),
                )
                .await;
            }
            Some(created)
        }
    };
    // The Deployment carries its current revision, as kube's controller
    // writes it (`kubectl rollout undo` replaces the annotations it reads).
    if let Some(rs) = &new_rs {
        let current = rs["metadata"]["annotations"][REVISION].clone();
        if !current.is_null() && d["metadata"]["annotations"][REVISION] != current {
            sim.patch(
                WHO,
                Res::Deployments,
                key,
                json!({"metadata": {"annotations": {REVISION: current}}}),
            )
            .await?;
        }
    }
    let mut old_sets = sets;
    if !paused {
        if strategy == "Recreate" {
            for rs in old_sets.iter_mut() {
                *rs = scale(sim, &d, rs, 0, max_surge).await?;
            }
            let old_running: i64 = old_sets.iter().map(|rs| status_int(rs, "replicas")).sum();
            if old_running == 0 {
                if let Some(rs) = &new_rs {
                    new_rs = Some(scale(sim, &d, rs, want, max_surge).await?);
                }
            }
        } else if let Some(rs) = new_rs.clone() {
            // Scale the new one up within the surge...
            let total: i64 = replicas(&rs) + old_sets.iter().map(replicas).sum::<i64>();
            let target = if replicas(&rs) > want {
                want
            } else {
                let room = (want + max_surge - total).max(0);
                replicas(&rs) + room.min(want - replicas(&rs))
            };
            let rs = scale(sim, &d, &rs, target, max_surge).await?;
            // ...and the old ones down within the unavailability.
            let all: i64 = replicas(&rs) + old_sets.iter().map(replicas).sum::<i64>();
            let min_available = want - max_unavailable;
            let new_unavailable = replicas(&rs) - status_int(&rs, "availableReplicas");
            let mut budget = all - min_available - new_unavailable;
            // First the old pods that are not available anyway.
            for old in old_sets.iter_mut() {
                if budget <= 0 {
                    break;
                }
                let unhealthy = (replicas(old) - status_int(old, "availableReplicas"))
                    .max(0)
                    .min(budget);
                if unhealthy > 0 {
                    *old = scale(sim, &d, old, replicas(old) - unhealthy, max_surge).await?;
                    budget -= unhealthy;
                }
            }
            let available: i64 = status_int(&rs, "availableReplicas")
                + old_sets
                    .iter()
                    .map(|o| status_int(o, "availableReplicas"))
                    .sum::<i64>();
            let mut budget = (available - min_available).min(budget.max(0));
            for old in old_sets.iter_mut() {
                if budget <= 0 {
                    break;
                }
                let down = replicas(old).min(budget);
                if down > 0 {
                    *old = scale(sim, &d, old, replicas(old) - down, max_surge).await?;
                    budget -= down;
                }
            }
            new_rs = Some(rs);
        }
    }
    // The status.
    let now = sim.clock.rfc3339();
    let all: Vec<&Value> = new_rs.iter().chain(old_sets.iter()).collect();
    let sum = |f: &dyn Fn(&Value) -> i64| all.iter().map(|rs| f(rs)).sum::<i64>();
    let spec_total = sum(&replicas);
    let available = sum(&|rs| status_int(rs, "availableReplicas"));
    let updated = new_rs.as_ref().map_or(0, |rs| status_int(rs, "replicas"));
    let status_replicas = sum(&|rs| status_int(rs, "replicas"));
    let complete = new_rs.as_ref().is_some_and(|rs| {
        replicas(rs) == want
            && status_int(rs, "availableReplicas") >= want
            && status_int(rs, "replicas") == want
    }) && old_sets.iter().all(|rs| status_int(rs, "replicas") == 0);
    let old_conditions = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let old_cond = |kind: &str| old_conditions.iter().find(|c| c["type"] == kind).cloned();
    let available_cond = if available >= want - max_unavailable {
        cond(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            &now,
            old_cond("Available").as_ref(),
        )
    } else {
        cond(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            &now,
            old_cond("Available").as_ref(),
        )
    };
    let rs_name = new_rs
        .as_ref()
        .and_then(|rs| rs["metadata"]["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let previous = old_cond("Progressing");
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64();
    let progressing = if paused {
        cond(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            &now,
            previous.as_ref(),
        )
    } else if complete {
        cond(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet {rs_name:?} has successfully progressed."),
            &now,
            previous.as_ref(),
        )
    } else if let Some(name) = &created_new {
        cond(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set {name:?}"),
            &now,
            None,
        )
    } else {
        let stamp = |c: &Value| {
            c["lastUpdateTime"]
                .as_str()
                .and_then(crate::apimachinery::clock::parse_time)
                .map(|t| t.as_second())
        };
        let last = previous
            .as_ref()
            .and_then(stamp)
            .unwrap_or_else(|| sim.clock.now().as_second());
        let progressed = d["status"]["updatedReplicas"].as_i64() != Some(updated)
            || d["status"]["availableReplicas"].as_i64() != Some(available)
            || d["status"]["readyReplicas"].as_i64()
                != Some(sum(&|rs| status_int(rs, "readyReplicas")));
        let timed_out = previous
            .as_ref()
            .is_some_and(|p| p["reason"] == "ProgressDeadlineExceeded");
        match deadline {
            Some(limit)
                if !progressed && (timed_out || sim.clock.now().as_second() - last >= limit) =>
            {
                let c = cond(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {rs_name:?} has timed out progressing."),
                    &now,
                    previous.as_ref(),
                );
                if !timed_out {
                    sim.event(
                        WHO,
                        "deployment-controller",
                        &d,
                        "Warning",
                        "ProgressDeadlineExceeded",
                        format!(
                            "Deployment {:?} has timed out progressing.",
                            d["metadata"]["name"].as_str().unwrap_or_default()
                        ),
                    )
                    .await;
                }
                c
            }
            _ => {
                let c = cond(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet {rs_name:?} is progressing."),
                    &now,
                    previous.as_ref().filter(|_| !progressed),
                );
                if let Some(limit) = deadline {
                    let since = if progressed {
                        sim.clock.now().as_second()
                    } else {
                        last
                    };
                    let left = (since + limit - sim.clock.now().as_second()).max(1);
                    sim.after(
                        Duration::from_secs(left as u64),
                        Ctl::Deployment,
                        key,
                        false,
                    );
                }
                c
            }
        }
    };
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": status_replicas, "updatedReplicas": updated,
        "readyReplicas": sum(&|rs| status_int(rs, "readyReplicas")),
        "availableReplicas": available,
        "unavailableReplicas": (spec_total - available).max(0),
        "conditions": [available_cond, progressing],
    });
    if let Some(c) = d["status"].get("collisionCount") {
        status["collisionCount"] = c.clone();
    }
    if status_differs(&d, &status) {
        sim.patch_status(WHO, Res::Deployments, key, status).await?;
    }
    // History beyond the limit goes, oldest first, once scaled to zero.
    if complete {
        let limit = int(&d["spec"]["revisionHistoryLimit"], 10).max(0) as usize;
        let idle: Vec<&Value> = old_sets
            .iter()
            .filter(|rs| replicas(rs) == 0 && status_int(rs, "replicas") == 0)
            .collect();
        if idle.len() > limit {
            let mut by_revision = idle;
            by_revision.sort_by_key(|rs| revision(rs));
            let doomed: Vec<String> = by_revision[..by_revision.len() - limit]
                .iter()
                .map(|rs| key_of(rs))
                .collect();
            for rs in doomed {
                sim.delete(WHO, Res::ReplicaSets, &rs, None).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_and_unavailability_should_round_like_kube() {
        assert_eq!(resolve(&json!("25%"), &json!("25%"), 3), (1, 0));
        assert_eq!(resolve(&json!("25%"), &json!("25%"), 10), (3, 2));
        assert_eq!(resolve(&json!(0), &json!(0), 3), (0, 1));
        assert_eq!(resolve(&json!(2), &json!("50%"), 5), (2, 2));
    }

    #[test]
    fn the_hash_should_ignore_its_own_label_and_use_kubes_alphabet() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "nginx"}]}});
        let mut labelled = t.clone();
        labelled["metadata"]["labels"][HASH] = json!("x");
        let h = template_hash(&t, 0);
        assert_eq!(h, template_hash(&labelled, 0));
        assert_ne!(h, template_hash(&t, 1));
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
    }
}
