//! Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! what `kubectl get` asks for: the usual columns of the built-in kinds
//! (pods, deployments, namespaces, events and others), a CRD version's
//! `additionalPrinterColumns` evaluated by their JSONPath, priority columns
//! for `-o wide`, and each row's object as metadata (for `--show-labels`)
//! or whole (`includeObject=Object`).
//!
//! Pure functions over JSON.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::registry::resources::Kind;

/// Whether the `Accept` header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        p.contains(&"as=Table") && p.contains(&"g=meta.k8s.io")
    })
}

/// kube's `HumanDuration`: `45s`, `5m10s`, `3h20m`, `2d4h`, `400d`, `3y20d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if d / 365 < 8 {
        match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        }
    } else {
        format!("{}y", d / 365)
    }
}

fn age(ts: Option<&Value>, now: Timestamp) -> Value {
    match ts
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        Some(t) => json!(human_duration(now.as_second() - t.as_second())),
        None => json!("<unknown>"),
    }
}

/// A column: name, type, priority, and how to fill it.
struct Column {
    name: &'static str,
    kind: &'static str,
    priority: i64,
    cell: fn(&Value, Timestamp) -> Value,
}

fn text(v: &Value, pointer: &str) -> Value {
    match v.pointer(pointer) {
        Some(Value::Null) | None => json!(""),
        Some(x) => x.clone(),
    }
}

fn name(o: &Value, _: Timestamp) -> Value {
    text(o, "/metadata/name")
}

fn created(o: &Value, now: Timestamp) -> Value {
    age(o.pointer("/metadata/creationTimestamp"), now)
}

fn count(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn pod_ready(o: &Value, _: Timestamp) -> Value {
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

/// kubectl's pod STATUS: the phase or `status.reason`, overridden by the
/// last container that waits or has terminated (its reason, or
/// `ExitCode:N`), and `Terminating` while being deleted.
fn pod_status(o: &Value, _: Timestamp) -> Value {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return json!("Terminating");
    }
    let mut reason = o
        .pointer("/status/reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .or_else(|| o.pointer("/status/phase").and_then(Value::as_str))
        .unwrap_or("Pending")
        .to_string();
    let mut running = false;
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for c in statuses.into_iter().flatten().rev() {
        let state = &c["state"];
        if let Some(r) = state["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
        } else if let Some(t) = state.get("terminated").filter(|t| t.is_object()) {
            reason = match t["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => r.to_string(),
                None if t["signal"].as_i64().unwrap_or(0) != 0 => format!("Signal:{}", t["signal"]),
                None => format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
            };
        } else if c["ready"] == true && state["running"].is_object() {
            running = true;
        }
    }
    if reason == "Completed" && running {
        let ready = o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        reason = if ready { "Running" } else { "NotReady" }.to_string();
    }
    json!(reason)
}

fn pod_restarts(o: &Value, _: Timestamp) -> Value {
    let n: i64 = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().map(|c| count(c.get("restartCount"))).sum());
    json!(n)
}

fn deploy_ready(o: &Value, _: Timestamp) -> Value {
    json!(format!(
        "{}/{}",
        count(o.pointer("/status/readyReplicas")),
        o.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    ))
}

fn containers(o: &Value, field: &str, pointer: &str) -> Value {
    let names: Vec<&str> = o
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|c| c[field].as_str()).collect())
        .unwrap_or_default();
    json!(names.join(","))
}

fn template_containers(o: &Value, _: Timestamp) -> Value {
    containers(o, "name", "/spec/template/spec/containers")
}

fn template_images(o: &Value, _: Timestamp) -> Value {
    containers(o, "image", "/spec/template/spec/containers")
}

fn selector(o: &Value, _: Timestamp) -> Value {
    let labels = o
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!(labels)
}

fn event_object(o: &Value, _: Timestamp) -> Value {
    let kind = o
        .pointer("/involvedObject/kind")
        .or_else(|| o.pointer("/regarding/kind"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    let name = o
        .pointer("/involvedObject/name")
        .or_else(|| o.pointer("/regarding/name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!(format!("{kind}/{name}"))
}

fn event_last_seen(o: &Value, now: Timestamp) -> Value {
    let ts = [
        "/lastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| o.pointer(p).filter(|v| v.is_string()));
    age(ts, now)
}

/// kubectl's node status: each condition true or `Not…`, and
/// `SchedulingDisabled` for a cordoned node.
fn node_status(o: &Value, _: Timestamp) -> Value {
    let mut status: Vec<String> = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            }
        })
        .collect();
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push("SchedulingDisabled".into());
    }
    json!(status.join(","))
}

fn node_roles(o: &Value, _: Timestamp) -> Value {
    let roles: Vec<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .collect();
    json!(if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    })
}

fn node_address(o: &Value, kind: &str) -> Value {
    let found = o
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a["type"] == kind)
        .and_then(|a| a["address"].as_str());
    json!(found.unwrap_or("<none>"))
}

/// Up to three items, then `+ N more...`, as kubectl lists endpoints.
fn first_three(items: Vec<String>) -> Value {
    if items.is_empty() {
        return json!("<none>");
    }
    let mut shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        shown.push_str(&format!(" + {} more...", items.len() - 3));
    }
    json!(shown)
}

fn endpoints_list(o: &Value, _: Timestamp) -> Value {
    let mut items = Vec::new();
    for subset in o
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for a in subset["addresses"].as_array().into_iter().flatten() {
            let ip = a["ip"].as_str().unwrap_or_default();
            if ports.is_empty() {
                items.push(ip.to_string());
            }
            items.extend(ports.iter().map(|p| format!("{ip}:{p}")));
        }
    }
    first_three(items)
}

fn slice_endpoints(o: &Value, _: Timestamp) -> Value {
    let items = o
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    first_three(items)
}

fn slice_ports(o: &Value, _: Timestamp) -> Value {
    let ports: Vec<String> = o
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            p["port"]
                .as_i64()
                .map_or("<unset>".to_string(), |p| p.to_string())
        })
        .collect();
    json!(if ports.is_empty() {
        "<unset>".to_string()
    } else {
        ports.join(",")
    })
}

fn columns_of(kind: &Kind) -> Vec<Column> {
    let c = |name, kind, priority, cell| Column {
        name,
        kind,
        priority,
        cell,
    };
    let base_name = c("Name", "string", 0, name);
    let base_age = c("Age", "string", 0, created);
    match (kind.key.group.as_str(), kind.key.plural.as_str()) {
        ("", "pods") => vec![
            base_name,
            c("Ready", "string", 0, pod_ready),
            c("Status", "string", 0, pod_status),
            c("Restarts", "string", 0, pod_restarts),
            base_age,
            c("IP", "string", 1, |o, _| text(o, "/status/podIP")),
            c("Node", "string", 1, |o, _| text(o, "/spec/nodeName")),
        ],
        ("apps", "deployments") => vec![
            base_name,
            c("Ready", "string", 0, deploy_ready),
            c("Up-to-date", "integer", 0, |o, _| {
                json!(count(o.pointer("/status/updatedReplicas")))
            }),
            c("Available", "integer", 0, |o, _| {
                json!(count(o.pointer("/status/availableReplicas")))
            }),
            base_age,
            c("Containers", "string", 1, template_containers),
            c("Images", "string", 1, template_images),
            c("Selector", "string", 1, selector),
        ],
        ("", "namespaces") => vec![
            base_name,
            c("Status", "string", 0, |o, _| text(o, "/status/phase")),
            base_age,
        ],
        ("", "nodes") => vec![
            base_name,
            c("Status", "string", 0, node_status),
            c("Roles", "string", 0, node_roles),
            base_age,
            c("Version", "string", 0, |o, _| {
                text(o, "/status/nodeInfo/kubeletVersion")
            }),
            c("Internal-IP", "string", 1, |o, _| {
                node_address(o, "InternalIP")
            }),
            c("External-IP", "string", 1, |o, _| {
                node_address(o, "ExternalIP")
            }),
            c("OS-Image", "string", 1, |o, _| {
                text(o, "/status/nodeInfo/osImage")
            }),
            c("Kernel-Version", "string", 1, |o, _| {
                text(o, "/status/nodeInfo/kernelVersion")
            }),
            c("Container-Runtime", "string", 1, |o, _| {
                text(o, "/status/nodeInfo/containerRuntimeVersion")
            }),
        ],
        ("apps", "replicasets") => vec![
            base_name,
            c("Desired", "integer", 0, |o, _| {
                json!(count(o.pointer("/spec/replicas")))
            }),
            c("Current", "integer", 0, |o, _| {
                json!(count(o.pointer("/status/replicas")))
            }),
            c("Ready", "integer", 0, |o, _| {
                json!(count(o.pointer("/status/readyReplicas")))
            }),
            base_age,
            c("Containers", "string", 1, template_containers),
            c("Images", "string", 1, template_images),
            c("Selector", "string", 1, selector),
        ],
        ("apps", "statefulsets") => vec![
            base_name,
            c("Ready", "string", 0, deploy_ready),
            base_age,
            c("Containers", "string", 1, template_containers),
            c("Images", "string", 1, template_images),
        ],
        ("", "endpoints") => vec![
            base_name,
            c("Endpoints", "string", 0, endpoints_list),
            base_age,
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            base_name,
            c("AddressType", "string", 0, |o, _| text(o, "/addressType")),
            c("Ports", "string", 0, slice_ports),
            c("Endpoints", "string", 0, slice_endpoints),
            base_age,
        ],
        ("", "serviceaccounts") => vec![
            base_name,
            c("Secrets", "integer", 0, |o, _| {
                json!(o
                    .get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len))
            }),
            base_age,
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            c("Last Seen", "string", 0, event_last_seen),
            c("Type", "string", 0, |o, _| text(o, "/type")),
            c("Reason", "string", 0, |o, _| text(o, "/reason")),
            c("Object", "string", 0, event_object),
            c("Message", "string", 0, |o, _| {
                let m = text(o, "/message");
                if m == "" {
                    text(o, "/note")
                } else {
                    m
                }
            }),
            c("Count", "integer", 1, |o, _| {
                json!(count(o.get("count")).max(1))
            }),
            c("Name", "string", 1, name),
        ],
        ("", "configmaps") => vec![
            base_name,
            c("Data", "integer", 0, |o, _| {
                let n = |k| {
                    o.get(k)
                        .and_then(Value::as_object)
                        .map_or(0, serde_json::Map::len)
                };
                json!(n("data") + n("binaryData"))
            }),
            base_age,
        ],
        ("", "secrets") => vec![
            base_name,
            c("Type", "string", 0, |o, _| text(o, "/type")),
            c("Data", "integer", 0, |o, _| {
                json!(o
                    .get("data")
                    .and_then(Value::as_object)
                    .map_or(0, serde_json::Map::len))
            }),
            base_age,
        ],
        ("", "services") => vec![
            base_name,
            c("Type", "string", 0, |o, _| text(o, "/spec/type")),
            c("Cluster-IP", "string", 0, |o, _| text(o, "/spec/clusterIP")),
            c("Port(s)", "string", 0, |o, _| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|p| {
                        p.iter()
                            .map(|p| {
                                format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!(ports.join(","))
            }),
            base_age,
        ],
        ("coordination.k8s.io", "leases") => vec![
            base_name,
            c("Holder", "string", 0, |o, _| {
                text(o, "/spec/holderIdentity")
            }),
            base_age,
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => vec![
            base_name,
            c("Created At", "date", 0, |o, _| {
                text(o, "/metadata/creationTimestamp")
            }),
        ],
        _ => vec![base_name, base_age],
    }
}

/// Evaluates a CRD printer column's JSONPath (`.a.b`, `.a[0]`, `.a[*].b`,
/// `.a[?(@.type=="Ready")].status`).
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![obj.clone()];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            current = if inner == "*" {
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect()
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let (field, wanted) = match filter.split_once("==") {
                    Some((f, w)) => (f.trim(), w.trim().trim_matches(|c| c == '"' || c == '\'')),
                    None => (filter.trim(), ""),
                };
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|item| match item.get(field) {
                        Some(Value::String(s)) => wanted.is_empty() || s == wanted,
                        Some(other) => {
                            wanted.is_empty()
                                || serde_json::from_str::<Value>(wanted).ok().as_ref()
                                    == Some(other)
                        }
                        None => false,
                    })
                    .collect()
            } else if let Ok(i) = inner.parse::<usize>() {
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            } else {
                let key = inner.trim_matches(|c| c == '\'' || c == '"');
                current.iter().filter_map(|v| v.get(key).cloned()).collect()
            };
        } else {
            return Vec::new();
        }
    }
    current
}

fn printer_cell(obj: &Value, column: &Value, now: Timestamp) -> Value {
    let path = column["jsonPath"].as_str().unwrap_or_default();
    let found = jsonpath(obj, path);
    let kind = column["type"].as_str().unwrap_or("string");
    match (found.as_slice(), kind) {
        ([], _) => Value::Null,
        ([one], "date") => age(Some(one), now),
        ([one], "integer" | "number" | "boolean") => one.clone(),
        ([Value::String(s)], _) => json!(s),
        ([one], _) => json!(one.to_string()),
        (many, _) => json!(many
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            .collect::<Vec<_>>()
            .join(",")),
    }
}

/// The row's object: its metadata (the default) or all of it.
fn row_object(obj: &Value, include: Option<&str>) -> Value {
    match include {
        Some("None") => Value::Null,
        Some("Object") => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// The Table of `items` of `kind` (at `version`); `list_meta` carries the
/// list's resourceVersion and continue token.
pub fn table(
    kind: &Kind,
    version: &str,
    items: &[Value],
    list_meta: Value,
    include: Option<&str>,
    now: Timestamp,
) -> Value {
    let printer: Vec<Value> = kind
        .versions
        .iter()
        .find(|v| v.name == version)
        .map(|v| v.printer_columns.clone())
        .unwrap_or_default();
    let (definitions, rows): (Vec<Value>, Vec<Value>) = if kind.custom && !printer.is_empty() {
        let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
            "description": "Name must be unique within a namespace.", "priority": 0})];
        defs.extend(printer.iter().map(|c| {
            json!({"name": c["name"], "type": c["type"].as_str().unwrap_or("string"),
                   "format": c["format"].as_str().unwrap_or(""),
                   "description": c["description"].as_str().unwrap_or(""),
                   "priority": c["priority"].as_i64().unwrap_or(0)})
        }));
        let rows = items
            .iter()
            .map(|o| {
                let mut cells = vec![text(o, "/metadata/name")];
                cells.extend(printer.iter().map(|c| printer_cell(o, c, now)));
                json!({"cells": cells, "object": row_object(o, include)})
            })
            .collect();
        (defs, rows)
    } else {
        let columns = columns_of(kind);
        let defs = columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.kind,
                       "format": if c.name == "Name" { "name" } else { "" },
                       "description": "", "priority": c.priority})
            })
            .collect();
        let rows = items
            .iter()
            .map(|o| {
                let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(o, now)).collect();
                json!({"cells": cells, "object": row_object(o, include)})
            })
            .collect();
        (defs, rows)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_should_read_like_kubectl() {
        for (secs, text) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (30 * 3600, "30h"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
    }

    #[test]
    fn jsonpaths_should_reach_fields_items_and_filters() {
        let o = json!({"spec": {"size": 3, "items": ["a", "b"]},
                       "status": {"conditions": [{"type": "Ready", "status": "True"},
                                                 {"type": "Synced", "status": "False"}]}});
        assert_eq!(jsonpath(&o, ".spec.size"), [json!(3)]);
        assert_eq!(jsonpath(&o, ".spec.items[1]"), [json!("b")]);
        assert_eq!(jsonpath(&o, ".spec.items[*]"), [json!("a"), json!("b")]);
        assert_eq!(
            jsonpath(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            [json!("True")]
        );
        assert!(jsonpath(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn accept_headers_should_be_recognized() {
        assert!(wanted("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(!wanted("application/json"));
    }
}
