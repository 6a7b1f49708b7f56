//! Defaults of pods and of the workloads that hold a pod template
//! (`SetDefaults_PodSpec`, `SetDefaults_Container`, `SetDefaults_Deployment`
//! and friends), and what kube-apiserver's default admission plugins add to
//! a new pod (`ServiceAccount`, `Priority`, `DefaultTolerationSeconds`).
//!
//! Only fields absent from the object are filled in; a value given is kept.

use serde_json::{json, Map, Value};

use super::{default, object, storage};

/// `imagePullPolicy`: `Always` for a `:latest` or untagged image (unless it
/// is pinned by digest), `IfNotPresent` otherwise.
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else {
        return;
    };
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let policy = image_pull_policy(image);
    default(c, "imagePullPolicy", json!(policy));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(port, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
        }
    }
}

/// `SetDefaults_PodSpec` and the containers' defaults.
pub fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
}

/// A pod: its spec's defaults, `enableServiceLinks`, and what the default
/// admission plugins add: the `default` service account, priority 0, and
/// five minutes of toleration for a not-ready or unreachable node.
pub(super) fn pod(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    pod_spec(spec);
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "serviceAccountName", json!("default"));
    let account = spec["serviceAccountName"].clone();
    default(spec, "serviceAccount", account);
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for taint in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let covered = list.iter().any(|t| {
                (t["key"] == taint || (t["key"].is_null() && t["operator"] == "Exists"))
                    && (t["effect"].is_null() || t["effect"] == "NoExecute")
            });
            if !covered {
                list.push(json!({"key": taint, "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

/// The pod template at `spec.template` (labels kept, spec defaulted).
fn template(spec: &mut Map<String, Value>) {
    let template = object(spec, "template");
    let pod = object(template, "spec");
    pod_spec(pod);
}

/// `maxUnavailable`/`maxSurge` of a rolling update, 25% each by default.
fn rolling(strategy: &mut Map<String, Value>, unavailable: Value, surge: Value) {
    let rolling = object(strategy, "rollingUpdate");
    default(rolling, "maxUnavailable", unavailable);
    default(rolling, "maxSurge", surge);
}

/// apps/v1 Deployment.
pub(super) fn deployment(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    let strategy = object(spec, "strategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        rolling(strategy, json!("25%"), json!("25%"));
    }
    template(spec);
}

/// apps/v1 ReplicaSet and core/v1 ReplicationController.
pub(super) fn replica_set(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "replicas", json!(1));
    if spec.contains_key("template") {
        template(spec);
    }
}

/// apps/v1 StatefulSet.
pub(super) fn stateful_set(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "replicas", json!(1));
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    default(spec, "revisionHistoryLimit", json!(10));
    default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    let strategy = object(spec, "updateStrategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        default(object(strategy, "rollingUpdate"), "partition", json!(0));
    }
    if let Some(claims) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for claim in claims.iter_mut() {
            storage::claim(claim);
        }
    }
    template(spec);
}

/// apps/v1 DaemonSet.
pub(super) fn daemon_set(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "revisionHistoryLimit", json!(10));
    let strategy = object(spec, "updateStrategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        rolling(strategy, json!(1), json!(0));
    }
    template(spec);
}

/// batch/v1 Job: one completion and one pod at a time unless told
/// otherwise, six retries, not suspended.
pub(super) fn job(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "manualSelector", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    template(spec);
}

/// batch/v1 CronJob: the job template's defaults, and its own.
pub(super) fn cron_job(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "concurrencyPolicy", json!("Allow"));
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    let job_template = object(spec, "jobTemplate");
    let job_spec = object(job_template, "spec");
    if job_spec.contains_key("template") {
        template(job_spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_should_follow_the_tag() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/nginx:1"), "IfNotPresent");
        assert_eq!(image_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    /// What `kubectl create deployment d --image=nginx` reads back from a
    /// real cluster (spec only).
    #[test]
    fn deployments_should_get_kube_apiservers_defaults() {
        let mut d = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}});
        deployment(&mut d);
        assert_eq!(
            d["spec"],
            json!({
                "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "d"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "imagePullPolicy": "Always",
                        "resources": {}, "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"}],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "schedulerName": "default-scheduler", "securityContext": {},
                    "terminationGracePeriodSeconds": 30}}
            })
        );
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}, "template": {}}});
        deployment(&mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn pods_should_get_admission_defaults_once() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 10}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let tolerations = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2, "{tolerations:?}");
        assert_eq!(tolerations[0]["tolerationSeconds"], 10);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
        let before = p.clone();
        pod(&mut p);
        assert_eq!(p, before);
    }

    #[test]
    fn jobs_should_default_completions_only_when_neither_count_is_given() {
        let mut j = json!({"spec": {"template": {}}});
        job(&mut j);
        assert_eq!(
            (
                j["spec"]["completions"].clone(),
                j["spec"]["parallelism"].clone()
            ),
            (json!(1), json!(1))
        );
        let mut work_queue = json!({"spec": {"parallelism": 3, "template": {}}});
        job(&mut work_queue);
        assert!(work_queue["spec"].get("completions").is_none());
        assert_eq!(work_queue["spec"]["backoffLimit"], 6);
    }
}
