//! 16-indexing: two in-memory indices over all pods (whether each is
//! running, and the pod names under each label), read by two probes on the
//! liveness endpoint and by a timer that writes the running pods of
//! `default` and `kube-system` into each KopfExample's status.
//!
//! Kopf's original keeps a pod when its index entry is non-empty (always);
//! this port keeps it when it is running, as the example's comments intend.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 16-indexing -- --kubeconfig /tmp/kc -A --standalone --liveness http://localhost:8080/healthz
//! kubectl --kubeconfig /tmp/kc run web --image=nginx
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml
//! curl -s localhost:8080/healthz      # {"pod_count":1,"pod_names":["web"]}
//! ```

use std::time::Duration;

use kopf::{Context, HandlerResult, Indexed, Operator, Resource, Settings};
use serde_json::{json, Value};

/// `[namespace, name]` → whether the pod is running.
async fn is_running(ctx: Context) -> Result<Indexed, kopf::HandlerError> {
    Ok(Indexed::Entries(vec![(
        json!([ctx.namespace(), ctx.name()]),
        json!(ctx.status()["phase"] == "Running"),
    )]))
}

/// `[label, value]` → the pod's name, for each of its labels.
async fn by_label(ctx: Context) -> Result<Indexed, kopf::HandlerError> {
    Ok(Indexed::Entries(
        ctx.labels()
            .into_iter()
            .map(|(label, value)| (json!([label, value]), json!(ctx.name())))
            .collect(),
    ))
}

fn running(ctx: &Context) -> kopf::Index {
    ctx.index("is_running").cloned().unwrap_or_default()
}

/// How many pods there are.
async fn pod_count(ctx: Context) -> HandlerResult {
    Ok(Some(json!(running(&ctx).len())))
}

/// The pods' names.
async fn pod_names(ctx: Context) -> HandlerResult {
    let names: Vec<Value> = running(&ctx)
        .keys()
        .into_iter()
        .map(|key| key[1].clone())
        .collect();
    Ok(Some(Value::Array(names)))
}

/// Every 5 s: logs the label index, stores the running pods of two namespaces.
async fn intervalled(ctx: Context) -> HandlerResult {
    let labels: Vec<String> = ctx
        .index("by_label")
        .map(|i| i.entries())
        .unwrap_or_default()
        .into_iter()
        .map(|(key, names)| format!("{key}: {}", Value::from(names)))
        .collect();
    ctx.logger.info(format!("{{{}}}", labels.join(", ")));
    let pods: Vec<String> = running(&ctx)
        .entries()
        .into_iter()
        .filter(|(key, values)| {
            ["kube-system", "default"].contains(&key[0].as_str().unwrap_or_default())
                && values.iter().any(|v| v == true)
        })
        .map(|(key, _)| {
            format!(
                "{}::{}",
                key[0].as_str().unwrap_or_default(),
                key[1].as_str().unwrap_or_default()
            )
        })
        .collect();
    ctx.patch.set(&["status", "running-pods"], json!(pods));
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let pods = Resource::new("", "v1", "pods");
    let mut operator = Operator::new();
    operator.on_index(&pods, is_running);
    operator.on_index(&pods, by_label);
    operator.on_probe(pod_count);
    operator.on_probe(pod_names);
    operator.on_timer(&Resource::named("kex"), Duration::from_secs(5), intervalled);
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
