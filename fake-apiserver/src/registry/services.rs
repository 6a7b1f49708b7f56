//! Services as kube-apiserver stores them: defaults (`type: ClusterIP`,
//! `sessionAffinity`, IP families, traffic policies, each port's protocol
//! and `targetPort`), a cluster IP from the service range
//! `10.96.0.0/12` and node ports from `30000-32767` allocated on create
//! (lowest free first, so that a seed replays), and both kept by an update
//! that leaves them out, as kube's service REST does.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::apimachinery::errors::{ApiError, Cause};

/// The first cluster IP handed out (`.1` is the `kubernetes` Service's and
/// `.10` kube-dns's on a kind cluster).
const FIRST_IP: u32 = 11;
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), value);
    }
}

/// `SetDefaults_Service` and what the service REST fills in besides IPs.
pub(crate) fn defaults(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "ExternalName" {
        return;
    }
    default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(port, "protocol", json!("TCP"));
            let number = port.get("port").cloned().unwrap_or(Value::Null);
            default(port, "targetPort", number);
        }
    }
    default(spec, "ipFamilies", json!(["IPv4"]));
    default(spec, "ipFamilyPolicy", json!("SingleStack"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    if kind == "NodePort" || kind == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
        default(spec, "clusterIPs", json!(["None"]));
    }
}

/// The offset of `ip` in 10.96.0.0/12 (`ip_text`'s inverse), if inside.
fn ip_offset(ip: &str) -> Option<u32> {
    let octets: Vec<u32> = ip
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else {
        return None;
    };
    if octets.iter().any(|o| *o > 255) {
        return None;
    }
    let n = (a << 24) | (b << 16) | (c << 8) | d;
    let base: u32 = (10 << 24) | (96 << 16);
    (n >= base && n - base < (1 << 20)).then(|| n - base)
}

fn ip_text(n: u32) -> String {
    let base: u32 = (10 << 24) | (96 << 16);
    let ip = base + n;
    format!(
        "{}.{}.{}.{}",
        ip >> 24,
        (ip >> 16) & 255,
        (ip >> 8) & 255,
        ip & 255
    )
}

/// Allocates the new Service's cluster IP and node ports, given the
/// Services that exist.
///
/// # Errors
/// 422 when an IP or a node port asked for is taken.
pub(crate) fn allocate(obj: &mut Value, existing: &[Value]) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = obj["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if kind == "ExternalName" {
        return Ok(());
    }
    let invalid = |field: &str, value: Value, detail: String| {
        ApiError::invalid(
            "",
            "Service",
            &name,
            vec![Cause::invalid(field, &value, &detail)],
        )
    };
    let used_ips: BTreeSet<String> = existing
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(String::from))
        .collect();
    // The same, as offsets into the range, to find a free one without
    // spelling every candidate.
    let used_offsets: std::collections::HashSet<u32> =
        used_ips.iter().filter_map(|ip| ip_offset(ip)).collect();
    match obj["spec"]["clusterIP"].as_str() {
        Some("None") => {}
        Some(ip) if !ip.is_empty() => {
            if used_ips.contains(ip) {
                return Err(invalid(
                    "spec.clusterIPs",
                    json!([ip]),
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ));
            }
            obj["spec"]["clusterIPs"] = json!([ip]);
        }
        _ => {
            let free = (FIRST_IP..(1 << 20) - 1)
                .find(|n| !used_offsets.contains(n))
                .map(ip_text)
                .ok_or_else(|| ApiError::internal("the service IP range is full"))?;
            obj["spec"]["clusterIP"] = json!(free);
            obj["spec"]["clusterIPs"] = json!([free]);
        }
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        let mut used: BTreeSet<i64> = existing
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            // The ports asked for first, then the others from the lowest free.
            for (i, port) in ports.iter().enumerate() {
                let Some(n) = port["nodePort"].as_i64() else {
                    continue;
                };
                if !NODE_PORTS.contains(&n) {
                    return Err(invalid(&format!("spec.ports[{i}].nodePort"), json!(n),
                        "provided port is not in the valid range. The range of valid ports is 30000-32767".into()));
                }
                if !used.insert(n) {
                    return Err(invalid(
                        &format!("spec.ports[{i}].nodePort"),
                        json!(n),
                        "provided port is already allocated".into(),
                    ));
                }
            }
            for port in ports.iter_mut().filter(|p| p["nodePort"].is_null()) {
                let n = NODE_PORTS
                    .clone()
                    .find(|n| !used.contains(n))
                    .ok_or_else(|| ApiError::internal("the node port range is full"))?;
                used.insert(n);
                port["nodePort"] = json!(n);
            }
        }
    }
    Ok(())
}

/// An update that leaves the allocated values out keeps them.
pub(crate) fn keep_allocated(old: &Value, new: &mut Value) {
    for field in ["clusterIP", "clusterIPs"] {
        if new["spec"][field].is_null() && !old["spec"][field].is_null() && new["spec"].is_object()
        {
            new["spec"][field] = old["spec"][field].clone();
        }
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        let protocol = |p: &Value| p["protocol"].as_str().unwrap_or("TCP").to_string();
        for port in ports.iter_mut().filter(|p| p["nodePort"].is_null()) {
            let same = old_ports
                .iter()
                .find(|o| o["port"] == port["port"] && protocol(o) == protocol(port));
            if let Some(n) = same
                .and_then(|o| o.get("nodePort"))
                .filter(|n| !n.is_null())
            {
                port["nodePort"] = n.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_offsets_should_invert_ip_text() {
        for n in [0, 1, 11, 255, 256, 70_000, (1 << 20) - 1] {
            assert_eq!(ip_offset(&ip_text(n)), Some(n));
        }
        for outside in [
            "10.112.0.0",
            "10.95.255.255",
            "1.2.3",
            "10.96.0.256",
            "x.96.0.1",
            "",
        ] {
            assert_eq!(ip_offset(outside), None, "{outside}");
        }
    }

    #[test]
    fn a_service_should_get_kubes_defaults_and_the_lowest_free_ip() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        defaults(&mut svc);
        let existing = vec![json!({"spec": {"clusterIP": "10.96.0.11"}})];
        allocate(&mut svc, &existing).unwrap();
        assert_eq!(
            svc["spec"],
            json!({
                "type": "ClusterIP", "sessionAffinity": "None", "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"],
            })
        );
        let mut taken = json!({"metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.11"}});
        let err = allocate(&mut taken, &existing).unwrap_err();
        assert_eq!(err.message, "Service \"x\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.11\"]: failed to allocate IP 10.96.0.11: provided IP is already allocated");
    }

    #[test]
    fn node_ports_should_be_allocated_and_kept_by_updates() {
        let mut svc = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30000}]}});
        defaults(&mut svc);
        allocate(&mut svc, &[]).unwrap();
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
        let mut replaced =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        keep_allocated(&svc, &mut replaced);
        assert_eq!(replaced["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
        assert_eq!(replaced["spec"]["ports"][0]["nodePort"], 30001);
    }
}
