//! Defaults of volumes and their claims (core/v1
//! `SetDefaults_PersistentVolumeClaim`, `…ClaimSpec` and
//! `SetDefaults_PersistentVolume`), also applied to a StatefulSet's claim
//! templates.

use serde_json::{json, Value};

use super::{default, object};

/// core/v1 PersistentVolumeClaim: `spec.volumeMode: Filesystem` and
/// `status.phase: Pending`.
pub(super) fn claim(obj: &mut Value) {
    let Some(claim) = obj.as_object_mut() else {
        return;
    };
    default(object(claim, "spec"), "volumeMode", json!("Filesystem"));
    default(object(claim, "status"), "phase", json!("Pending"));
}

/// core/v1 PersistentVolume: `spec.persistentVolumeReclaimPolicy: Retain`,
/// `spec.volumeMode: Filesystem` and `status.phase: Pending`.
pub(super) fn volume(obj: &mut Value) {
    let Some(volume) = obj.as_object_mut() else {
        return;
    };
    let spec = object(volume, "spec");
    default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    default(spec, "volumeMode", json!("Filesystem"));
    default(object(volume, "status"), "phase", json!("Pending"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubectl create -f` of a bare claim and volume reads back as
    /// on a real cluster (values from kube's `SetDefaults_*`).
    #[test]
    fn claims_and_volumes_should_get_kubes_defaults() {
        let mut pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"],
                                      "resources": {"requests": {"storage": "1Gi"}}}});
        claim(&mut pvc);
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"], json!({"phase": "Pending"}));
        let mut block = json!({"spec": {"volumeMode": "Block"}, "status": {"phase": "Bound"}});
        claim(&mut block);
        assert_eq!(
            (
                block["spec"]["volumeMode"].as_str(),
                block["status"]["phase"].as_str()
            ),
            (Some("Block"), Some("Bound"))
        );
        let mut pv = json!({"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/x"}}});
        volume(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["status"]["phase"], "Pending");
    }
}
