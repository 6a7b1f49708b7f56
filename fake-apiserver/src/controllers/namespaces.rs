//! Namespaces get their `default` ServiceAccount, as kube's serviceaccount
//! controller makes it (and makes it again when it is deleted).

use serde_json::json;

use crate::controllers::{
    is_deleting,
    resources::Res,
    sim::{Identity, Sim},
};

const WHO: Identity = Identity::ControllerManager("service-account-controller");

/// Syncs one namespace.
pub(crate) async fn sync(sim: &mut Sim, name: &str) -> Result<(), kube::Error> {
    let Some(ns) = sim.get(Res::Namespaces, name) else {
        return Ok(());
    };
    if is_deleting(&ns) || ns["status"]["phase"] == "Terminating" {
        return Ok(());
    }
    if sim
        .get(Res::ServiceAccounts, &format!("{name}/default"))
        .is_none()
    {
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "default", "namespace": name}});
        match sim.create(WHO, Res::ServiceAccounts, account).await {
            Ok(_) => {}
            // Made meanwhile, or the namespace is going.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
