//! Services get their endpoints, as kube's endpoint and endpointslice
//! controllers write them: an `Endpoints` object of the Service's name
//! (ready pods in `addresses`, others in `notReadyAddresses`) and an
//! `EndpointSlice` labelled `kubernetes.io/service-name`, owned by the
//! Service, with each pod's ready/serving/terminating conditions. Ports
//! come from the Service's `targetPort`, by number or by the pods' port
//! names. A Service without a selector is left to its owner.

use serde_json::{json, Value};

use crate::controllers::{
    controller_ref, is_deleting, pod_finished, pod_ready,
    resources::{key_of, Res},
    selection::Ctl,
    selects_map,
    sim::{Identity, Sim, Work},
};

const ENDPOINTS: Identity = Identity::ControllerManager("endpoint-controller");
const SLICES: Identity = Identity::ControllerManager("endpointslice-controller");
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";

/// A pod changed: the Services in its namespace that select it (before or after).
pub(crate) fn routes_for_pod(sim: &Sim, old: Option<&Value>, new: Option<&Value>) -> Vec<Work> {
    let Some(ns) = new
        .or(old)
        .and_then(|p| p["metadata"]["namespace"].as_str())
    else {
        return Vec::new();
    };
    sim.list(Res::Services, ns)
        .iter()
        .filter(|svc| {
            [old, new]
                .into_iter()
                .flatten()
                .any(|p| selects_map(&svc["spec"]["selector"], &p["metadata"]["labels"]))
        })
        .map(|svc| (Ctl::Endpoints, key_of(svc)))
        .collect()
}

/// Endpoints or a slice changed (by someone else, perhaps): its Service.
pub(crate) fn routes_for_endpoints(res: Res, obj: &Value) -> Vec<Work> {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let service = match res {
        Res::EndpointSlices => obj["metadata"]["labels"][SERVICE_NAME].as_str(),
        _ => obj["metadata"]["name"].as_str(),
    };
    service
        .map(|s| vec![(Ctl::Endpoints, format!("{ns}/{s}"))])
        .unwrap_or_default()
}

/// The port a Service port reaches on a pod: a number, or the pod's
/// container port of that name.
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    let target = if port["targetPort"].is_null() {
        &port["port"]
    } else {
        &port["targetPort"]
    };
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_i64()),
        _ => None,
    }
}

/// The endpoint ports for the pods (resolved against the first pod that has them).
fn ports(svc: &Value, pods: &[&Value]) -> Vec<Value> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = pods.iter().find_map(|pod| target_port(p, pod))?;
            let mut out =
                json!({"port": port, "protocol": p["protocol"].as_str().unwrap_or("TCP")});
            if let Some(name) = p["name"].as_str().filter(|n| !n.is_empty()) {
                out["name"] = json!(name);
            }
            Some(out)
        })
        .collect()
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
           "uid": pod["metadata"]["uid"]})
}

/// Syncs one Service's endpoints.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(svc) = sim.get(Res::Services, key) else {
        // Its slices are owned and go with it; its Endpoints go here.
        if sim.get(Res::Endpoints, key).is_some() {
            sim.delete(ENDPOINTS, Res::Endpoints, key, None).await?;
        }
        return Ok(());
    };
    let selector = &svc["spec"]["selector"];
    if selector.as_object().is_none_or(|m| m.is_empty()) || is_deleting(&svc) {
        return Ok(());
    }
    let ns = svc["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = svc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let publish_not_ready = svc["spec"]["publishNotReadyAddresses"] == true;
    let all = sim.list(Res::Pods, &ns);
    let pods: Vec<&Value> = all
        .iter()
        .map(|p| &**p)
        .filter(|p| selects_map(selector, &p["metadata"]["labels"]))
        .filter(|p| {
            p["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty())
                && !pod_finished(p)
        })
        .collect();
    let ports = ports(&svc, &pods);
    // Endpoints.
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    for pod in pods.iter().filter(|p| !is_deleting(p)) {
        let address = json!({"ip": pod["status"]["podIP"], "nodeName": pod["spec"]["nodeName"], "targetRef": target_ref(pod)});
        if pod_ready(pod) || publish_not_ready {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    let subsets = if ready.is_empty() && not_ready.is_empty() {
        Value::Null
    } else {
        let mut subset = json!({"ports": ports});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        json!([subset])
    };
    let mut labels = svc["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        json!("true"),
    );
    let existing = sim.get(Res::Endpoints, key);
    match existing {
        None => {
            let mut e = json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": labels}});
            if !subsets.is_null() {
                e["subsets"] = subsets;
            }
            match sim.create(ENDPOINTS, Res::Endpoints, e).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Some(e) if e["subsets"] != subsets || e["metadata"]["labels"] != json!(labels) => {
            let mut e = (*e).clone();
            e["metadata"]["labels"] = json!(labels);
            match subsets {
                Value::Null => {
                    e.as_object_mut().map(|o| o.remove("subsets"));
                }
                s => e["subsets"] = s,
            }
            sim.replace(ENDPOINTS, Res::Endpoints, e).await?;
        }
        Some(_) => {}
    }
    // The EndpointSlice.
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|pod| {
            let terminating = is_deleting(pod);
            let serving = pod_ready(pod);
            json!({
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": (serving || publish_not_ready) && !terminating, "serving": serving || publish_not_ready, "terminating": terminating},
                "nodeName": pod["spec"]["nodeName"], "targetRef": target_ref(pod),
            })
        })
        .collect();
    let mut slice_labels = svc["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    slice_labels.insert(SERVICE_NAME.into(), json!(name));
    slice_labels.insert(MANAGED_BY.into(), json!(MANAGER));
    let slice = sim.list(Res::EndpointSlices, &ns).into_iter().find(|s| {
        s["metadata"]["labels"][SERVICE_NAME] == name.as_str()
            && s["metadata"]["labels"][MANAGED_BY] == MANAGER
    });
    match slice {
        None => {
            let s = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": slice_labels,
                             "ownerReferences": [controller_ref(&svc)]},
                "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
            });
            sim.create(SLICES, Res::EndpointSlices, s).await?;
        }
        Some(s)
            if s["endpoints"] != json!(endpoints)
                || s["ports"] != json!(ports)
                || s["metadata"]["labels"] != json!(slice_labels) =>
        {
            let mut s = (*s).clone();
            s["endpoints"] = json!(endpoints);
            s["ports"] = json!(ports);
            s["metadata"]["labels"] = json!(slice_labels);
            sim.replace(SLICES, Res::EndpointSlices, s).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ports_should_resolve_by_number_or_name() {
        let pod =
            json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "http"}), &pod),
            Some(8080)
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": 9000}), &pod),
            Some(9000)
        );
        assert_eq!(target_port(&json!({"port": 80}), &pod), Some(80));
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "grpc"}), &pod),
            None
        );
    }
}
