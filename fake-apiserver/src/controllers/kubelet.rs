//! The kubelets of the simulated nodes: each pod bound to a Ready node
//! lives out its stages (`stages`): ContainerCreating, Running, Ready (after
//! a readiness probe's initial delay), and for some, exits, restarts and
//! back-offs; the kubelet posts the status kube's would (phase, conditions,
//! container statuses, IPs, start time) and the usual events. A pod being
//! deleted stops within its grace period and is then deleted for good (a
//! finalizer still holds it, as in kube). A node that is not Ready runs
//! nothing: its kubelet is down.

use std::time::Duration;

use serde_json::{json, Value};

use crate::controllers::{
    condition, controller_of, is_deleting, nodes,
    resources::{key_of, Res},
    selection::Ctl,
    sim::{Identity, Sim, Work},
    stages::{self, Exit, Moment, Run, State},
    volumes,
};

const WHO: Identity = Identity::Kubelet;

/// A claim changed: the pods that use it may start.
pub(crate) fn routes_for_claim(sim: &Sim, claim: &Value) -> Vec<Work> {
    let ns = claim["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = claim["metadata"]["name"].as_str().unwrap_or_default();
    sim.list(Res::Pods, ns)
        .iter()
        .filter(|p| {
            p["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == name)
        })
        .map(|p| (Ctl::Kubelet, key_of(p)))
        .collect()
}

/// A node changed: its pods are looked at again (it may be back).
pub(crate) fn routes_for_node(sim: &Sim, node: &str) -> Vec<Work> {
    sim.pods_on(node)
        .iter()
        .map(|p| (Ctl::Kubelet, key_of(p)))
        .collect()
}

fn seconds(sim: &Sim) -> i64 {
    sim.clock.now().as_second()
}

/// The delay until `at` (seconds since the epoch) on the cluster's clock.
fn until(sim: &Sim, at: i64) -> Duration {
    let now = sim.clock.now();
    let at = jiff::Timestamp::from_second(at).unwrap_or(now);
    let d = at.duration_since(now);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

fn time(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(crate::apimachinery::clock::format_time)
        .unwrap_or_default()
}

/// A container id, the same for the same pod, container and restart.
fn container_id(uid: &str, name: &str, restart: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes().chain(name.bytes()).chain(restart.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "containerd://{h:016x}{:016x}",
        h.rotate_left(17) ^ 0x5bd1_e995
    )
}

fn terminated(exit: &Exit, id: &str) -> Value {
    json!({"exitCode": exit.code, "reason": exit.reason, "startedAt": time(exit.started),
           "finishedAt": time(exit.finished), "containerID": id})
}

/// The status the kubelet posts for a pod at a moment.
fn status(pod: &Value, run: &Run, m: &Moment, node: &Value, now: i64) -> Value {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let host_ip = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .map(|a| a["address"].clone())
        .unwrap_or(Value::Null);
    let ready = matches!(m.state, State::Running { ready_at: Some(r), .. } if r <= now);
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        let image = c["image"].as_str().unwrap_or_default();
        let id = container_id(uid, name, m.restarts);
        let (state, started) = match &m.state {
            State::Waiting { reason } => {
                let mut waiting = json!({"reason": reason});
                match *reason {
                    "CrashLoopBackOff" => {
                        waiting["message"] = json!(format!(
                            "back-off {}s restarting failed container={name} pod={}_{}({uid})",
                            m.next.map_or(0, |n| n - now).max(0),
                            pod["metadata"]["name"].as_str().unwrap_or_default(),
                            pod["metadata"]["namespace"].as_str().unwrap_or_default()
                        ))
                    }
                    "ImagePullBackOff" => {
                        waiting["message"] = json!(format!("Back-off pulling image {image:?}"))
                    }
                    "ErrImagePull" => {
                        waiting["message"] = json!(format!(
                            "failed to pull and unpack image {image:?}: not found"
                        ))
                    }
                    _ => {}
                }
                (json!({"waiting": waiting}), false)
            }
            State::Running { since, .. } => (json!({"running": {"startedAt": time(*since)}}), true),
            State::Terminated(exit) => (json!({"terminated": terminated(exit, &id)}), false),
        };
        if !ready {
            unready.push(name.to_string());
        }
        let mut s = json!({
            "name": name, "image": image, "imageID": if started || matches!(m.state, State::Terminated(_)) { json!(format!("fake://images/{image}")) } else { json!("") },
            "ready": ready, "restartCount": m.restarts, "started": started, "state": state,
            "lastState": m.last.as_ref().map_or(json!({}), |e| json!({"terminated": terminated(e, &container_id(uid, name, m.restarts - 1))})),
        });
        if started || matches!(m.state, State::Terminated(_)) {
            s["containerID"] = json!(id);
        }
        statuses.push(s);
    }
    let phase = match &m.state {
        State::Waiting {
            reason: "CrashLoopBackOff",
        }
        | State::Running { .. } => "Running",
        State::Waiting { .. } => "Pending",
        State::Terminated(e) if e.code == 0 => "Succeeded",
        State::Terminated(_) => "Failed",
    };
    let started_at = time(run.epoch);
    let cond = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(msg) = message {
            c["message"] = json!(msg);
        }
        c
    };
    let finished = matches!(m.state, State::Terminated(_));
    let (why, what) = if finished {
        (Some("PodCompleted"), None)
    } else if ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let sandbox = !finished;
    let mut conditions = vec![
        cond("PodReadyToStartContainers", sandbox, None, None),
        cond(
            "Initialized",
            true,
            finished.then_some("PodCompleted"),
            None,
        ),
        cond("Ready", ready, why, what.clone()),
        cond("ContainersReady", ready, why, what),
    ];
    if let Some(scheduled) = condition(pod, "PodScheduled") {
        conditions.push(scheduled.clone());
    }
    // Transition times kept while a condition's status stays.
    let now_text = time(now);
    for c in &mut conditions {
        if c["type"] == "PodScheduled" {
            continue;
        }
        let before = condition(pod, c["type"].as_str().unwrap_or_default());
        c["lastTransitionTime"] = match before {
            Some(b) if b["status"] == c["status"] => b["lastTransitionTime"].clone(),
            _ => json!(now_text),
        };
    }
    let ip = if finished { Value::Null } else { json!(run.ip) };
    let mut s = json!({
        "phase": phase, "conditions": conditions, "containerStatuses": statuses,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": started_at,
        "qosClass": pod["status"]["qosClass"],
    });
    if !ip.is_null() {
        s["podIP"] = ip.clone();
        s["podIPs"] = json!([{"ip": ip}]);
    }
    s
}

/// Whether the posted status already says what `wanted` says.
fn same(current: &Value, wanted: &Value) -> bool {
    wanted
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &current[k] == v)
}

/// The events a kubelet posts when a pod's containers move from `before`
/// to `after`: (type, reason, message) for each container.
fn events(
    pod: &Value,
    before: Option<&Moment>,
    after: &Moment,
) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    let kind = |m: Option<&Moment>| {
        m.map(|m| {
            (
                std::mem::discriminant(&m.state),
                m.restarts,
                match &m.state {
                    State::Waiting { reason } => *reason,
                    _ => "",
                },
            )
        })
    };
    if kind(before) == kind(Some(after)) {
        return out;
    }
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        let image = c["image"].as_str().unwrap_or_default();
        match &after.state {
            State::Running { .. } => {
                let policy = c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent");
                if policy == "Always" && after.restarts == 0 {
                    out.push(("Normal", "Pulling", format!("Pulling image {image:?}")));
                    out.push(("Normal", "Pulled", format!("Successfully pulled image {image:?} in 1s (1s including waiting). Image size: 0 bytes.")));
                } else {
                    out.push((
                        "Normal",
                        "Pulled",
                        format!("Container image {image:?} already present on machine"),
                    ));
                }
                out.push(("Normal", "Created", format!("Created container: {name}")));
                out.push(("Normal", "Started", format!("Started container {name}")));
            }
            State::Waiting {
                reason: "ErrImagePull",
            } => {
                out.push(("Warning", "Failed", format!("Failed to pull image {image:?}: failed to pull and unpack image {image:?}: not found")));
                out.push(("Warning", "Failed", "Error: ErrImagePull".into()));
            }
            State::Waiting {
                reason: "ImagePullBackOff",
            } => {
                out.push((
                    "Normal",
                    "BackOff",
                    format!("Back-off pulling image {image:?}"),
                ));
                out.push(("Warning", "Failed", "Error: ImagePullBackOff".into()));
            }
            State::Waiting {
                reason: "CrashLoopBackOff",
            } => {
                let (pname, ns, uid) = (
                    pod["metadata"]["name"].as_str().unwrap_or_default(),
                    pod["metadata"]["namespace"].as_str().unwrap_or_default(),
                    pod["metadata"]["uid"].as_str().unwrap_or_default(),
                );
                out.push((
                    "Warning",
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {pname}_{ns}({uid})"
                    ),
                ));
            }
            _ => {}
        }
    }
    out
}

/// Runs one pod on its node.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(pod) = sim.get(Res::Pods, key) else {
        // Gone: its run is forgotten.
        if let Some(uid) = sim.kubelet.uid_of.remove(key) {
            sim.kubelet.runs.remove(&uid);
        }
        return Ok(());
    };
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node_name.is_empty() {
        return Ok(());
    }
    let Some(node) = sim.get(Res::Nodes, &node_name) else {
        return Ok(());
    };
    if !nodes::is_ready(&node) {
        return Ok(());
    }
    let now = seconds(sim);
    if is_deleting(&pod) {
        // Stopped within the grace period, then deleted for good.
        let grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0);
        let deadline = pod["metadata"]["deletionTimestamp"]
            .as_str()
            .and_then(crate::apimachinery::clock::parse_time)
            .map_or(now, |t| t.as_second());
        let asked = deadline - grace;
        let stop = sim
            .settings
            .stages
            .profile(&pod)
            .stop_after
            .map_or(0, |d| d.as_secs() as i64);
        let done_at = asked + stop.min(grace);
        if now < done_at {
            sim.after(until(sim, done_at), Ctl::Kubelet, key, false);
            return Ok(());
        }
        if grace > 0 {
            sim.delete(WHO, Res::Pods, key, Some(0)).await?;
        }
        sim.kubelet.runs.remove(&uid);
        return Ok(());
    }
    // Volumes first: a pod whose claims are not bound does not start.
    if !volumes::claims_bound(sim, &pod) {
        return Ok(());
    }
    let profile = sim.settings.stages.profile(&pod);
    let restarts_now = pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0);
    let mut run = match sim.kubelet.runs.get(&uid) {
        Some(run) if run.profile == profile => run.clone(),
        // A new stage profile (an annotation changed): a new run from now.
        Some(run) => Run {
            epoch: now,
            profile: profile.clone(),
            restarts_before: restarts_now,
            ip: run.ip.clone(),
            posted: run.posted.clone(),
        },
        None => {
            // The next address of the node's pod CIDR (10.244.<node>.0/24).
            let n = sim.kubelet.next_ip.entry(node_name.clone()).or_insert(1);
            *n += 1;
            let index: u32 = node_name
                .rsplit('-')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(1);
            let ip = format!(
                "10.244.{}.{}",
                index.saturating_sub(1) % 256,
                (*n - 2) % 253 + 2
            );
            let epoch = pod["status"]["startTime"]
                .as_str()
                .and_then(crate::apimachinery::clock::parse_time)
                .map_or(now, |t| t.as_second());
            Run {
                epoch,
                profile: profile.clone(),
                restarts_before: restarts_now,
                ip,
                posted: None,
            }
        }
    };
    let restart_policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let job_pod = controller_of(&pod).is_some_and(|o| o["kind"] == "Job");
    let probe_delay = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c["readinessProbe"]["initialDelaySeconds"]
                .as_i64()
                .or_else(|| c["readinessProbe"].is_object().then_some(0))
        })
        .max()
        .unwrap_or(0);
    let m = stages::moment(
        &profile,
        restart_policy,
        job_pod,
        probe_delay,
        run.epoch,
        now,
        run.restarts_before,
    );
    let wanted = status(&pod, &run, &m, &node, now);
    if !same(&pod["status"], &wanted) {
        sim.patch_status(WHO, Res::Pods, key, wanted).await?;
        for (kind, reason, message) in events(&pod, run.posted.as_ref(), &m) {
            sim.event(WHO, "kubelet", &pod, kind, reason, message).await;
        }
    }
    run.posted = Some(m.clone());
    // A pod of the same name but a new uid replaces the old one's run.
    if let Some(old) = sim.kubelet.uid_of.insert(key.to_string(), uid.clone()) {
        if old != uid {
            sim.kubelet.runs.remove(&old);
        }
    }
    sim.kubelet.runs.insert(uid, run);
    if let Some(next) = m.next {
        sim.after(until(sim, next), Ctl::Kubelet, key, m.steady);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::stages::Profile;

    #[test]
    fn container_ids_should_be_stable_and_differ_per_restart() {
        assert_eq!(container_id("u", "c", 0), container_id("u", "c", 0));
        assert_ne!(container_id("u", "c", 0), container_id("u", "c", 1));
        assert!(container_id("u", "c", 0).starts_with("containerd://"));
    }

    #[test]
    fn a_running_unready_pod_should_say_which_containers() {
        let pod = json!({"metadata": {"uid": "u", "name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
            "status": {"qosClass": "BestEffort"}});
        let run = Run {
            epoch: 100,
            profile: Profile::default(),
            restarts_before: 0,
            ip: "10.244.0.2".into(),
            posted: None,
        };
        let m = stages::moment(&run.profile, "Always", false, 10, 100, 105, 0);
        let node =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}});
        let s = status(&pod, &run, &m, &node, 105);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.244.0.2");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(
            (ready["status"].as_str(), ready["message"].as_str()),
            (Some("False"), Some("containers with unready status: [a b]"))
        );
        assert_eq!(
            s["containerStatuses"][1]["state"]["running"]["startedAt"],
            time(101)
        );
    }
}
