//! Storage, as on a kind cluster: a default StorageClass `standard`
//! (`WaitForFirstConsumer`), and the binder with its provisioner: a claim
//! of that class gets a volume (`pvc-<uid>`, the size it asks for, on the
//! node of its first pod) once a pod using it is scheduled; an
//! `Immediate` class binds at once. A volume whose claim is gone is
//! deleted (`reclaimPolicy: Delete`) or released (`Retain`).

use serde_json::{json, Value};

use crate::controllers::{
    is_deleting,
    resources::{key_of, Res},
    selection::Ctl,
    sim::{Identity, Sim, Work},
};

const WHO: Identity = Identity::ControllerManager("persistent-volume-binder");
const DEFAULT_CLASS: &str = "standard";
const PROVISIONER: &str = "rancher.io/local-path";
const IS_DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";

/// The claims a pod uses, as `namespace/name` keys.
fn claims_of(pod: &Value) -> Vec<String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .map(|c| format!("{ns}/{c}"))
        .collect()
}

/// A scheduled pod: its claims may bind now.
pub(crate) fn routes_for_pod(pod: &Value) -> Vec<Work> {
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return Vec::new();
    }
    claims_of(pod)
        .into_iter()
        .map(|c| (Ctl::Volumes, c))
        .collect()
}

/// A volume changed: its claim.
pub(crate) fn routes_for_volume(pv: &Value) -> Vec<Work> {
    let r = &pv["spec"]["claimRef"];
    match (r["namespace"].as_str(), r["name"].as_str()) {
        (Some(ns), Some(name)) => vec![(Ctl::Volumes, format!("{ns}/{name}"))],
        _ => Vec::new(),
    }
}

/// Whether every claim of the pod is bound (the kubelet waits for that).
pub(crate) fn claims_bound(sim: &Sim, pod: &Value) -> bool {
    claims_of(pod).iter().all(|c| {
        sim.get(Res::PersistentVolumeClaims, c)
            .is_some_and(|claim| claim["status"]["phase"] == "Bound")
    })
}

/// Makes the default StorageClass, unless there is one.
pub(crate) async fn boot(sim: &mut Sim) {
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {IS_DEFAULT: "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    match sim.create(WHO, Res::StorageClasses, class).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "simulation: no default StorageClass"),
    }
}

/// The class a claim asks for, or the default one.
fn class_of(sim: &Sim, claim: &Value) -> Option<std::sync::Arc<Value>> {
    match claim["spec"]["storageClassName"].as_str() {
        Some("") => None,
        Some(name) => sim.get(Res::StorageClasses, name),
        None => sim
            .list(Res::StorageClasses, "")
            .into_iter()
            .find(|c| c["metadata"]["annotations"][IS_DEFAULT] == "true"),
    }
}

/// Binds (or cleans up after) one claim.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(claim) = sim.get(Res::PersistentVolumeClaims, key) else {
        // The claim is gone: its provisioned volume goes or is released.
        let (ns, name) = crate::controllers::resources::split_key(key);
        let volumes: Vec<_> = sim
            .list(Res::PersistentVolumes, "")
            .into_iter()
            .filter(|pv| {
                pv["spec"]["claimRef"]["namespace"] == ns && pv["spec"]["claimRef"]["name"] == name
            })
            .collect();
        for pv in volumes {
            let pv_key = key_of(&pv);
            if pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete" {
                sim.delete(WHO, Res::PersistentVolumes, &pv_key, None)
                    .await?;
            } else if pv["status"]["phase"] != "Released" {
                sim.patch_status(
                    WHO,
                    Res::PersistentVolumes,
                    &pv_key,
                    json!({"phase": "Released"}),
                )
                .await?;
            }
        }
        return Ok(());
    };
    if is_deleting(&claim) || claim["status"]["phase"] == "Bound" {
        return Ok(());
    }
    let Some(class) = class_of(sim, &claim) else {
        return Ok(());
    };
    let class_name = class["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (ns, name) = crate::controllers::resources::split_key(key);
    let (ns, name) = (ns.to_string(), name.to_string());
    // WaitForFirstConsumer: on the node of the first scheduled pod using it.
    let node = sim
        .list(Res::Pods, &ns)
        .into_iter()
        .filter(|p| claims_of(p).iter().any(|c| c == key))
        .find_map(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(String::from)
        });
    let waits = class["volumeBindingMode"] == "WaitForFirstConsumer";
    if waits && node.is_none() {
        return Ok(());
    }
    let uid = claim["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pv_name = format!("pvc-{uid}");
    let size = claim["spec"]["resources"]["requests"]["storage"].clone();
    let modes = claim["spec"]["accessModes"].clone();
    let mut pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": class["provisioner"]}},
        "spec": {
            "capacity": {"storage": size}, "accessModes": modes,
            "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
            "storageClassName": class_name, "volumeMode": claim["spec"]["volumeMode"].as_str().unwrap_or("Filesystem"),
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
                         "uid": uid, "resourceVersion": claim["metadata"]["resourceVersion"]},
            "hostPath": {"path": format!("/var/local-path-provisioner/{pv_name}_{ns}_{name}"), "type": "DirectoryOrCreate"},
        },
    });
    if let Some(node) = &node {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
    }
    if sim.get(Res::PersistentVolumes, &pv_name).is_none() {
        match sim.create(WHO, Res::PersistentVolumes, pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
        sim.event(
            WHO,
            "persistentvolume-controller",
            &claim,
            "Normal",
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name}"),
        )
        .await;
    }
    sim.patch_status(
        WHO,
        Res::PersistentVolumes,
        &pv_name,
        json!({"phase": "Bound"}),
    )
    .await?;
    let mut annotations = json!({
        "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": class["provisioner"],
        "volume.kubernetes.io/storage-provisioner": class["provisioner"],
    });
    if let Some(node) = &node {
        annotations["volume.kubernetes.io/selected-node"] = json!(node);
    }
    let mut spec = json!({"volumeName": pv_name});
    if claim["spec"]["storageClassName"].is_null() {
        spec["storageClassName"] = json!(class_name);
    }
    sim.patch(
        WHO,
        Res::PersistentVolumeClaims,
        key,
        json!({"metadata": {"annotations": annotations}, "spec": spec}),
    )
    .await?;
    sim.patch_status(
        WHO,
        Res::PersistentVolumeClaims,
        key,
        json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}),
    )
    .await?;
    Ok(())
}
