//! 02-children: a parent creates a child Pod, adopted (owner reference,
//! namespace, name and labels from the parent); the child's uid goes to
//! `status.create_fn.children`.
//!
//! ```text
//! cargo run --example 02-children -- --kubeconfig /tmp/kc -A --standalone --verbose
//! kubectl get pod -l somelabel=somevalue
//! ```

use k8s_openapi::api::core::v1::Pod;
use kopf::{hierarchies, Context, HandlerResult, Operator, Resource, Settings};
use kube::api::{Api, PostParams};
use serde_json::json;

async fn create_fn(ctx: Context) -> HandlerResult {
    let duration = ctx
        .spec()
        .get("duration")
        .and_then(|d| d.as_str())
        .unwrap_or("0");
    let field = ctx
        .spec()
        .get("field")
        .and_then(|f| f.as_str())
        .unwrap_or("default-value");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{
            "name": "the-only-one",
            "image": "busybox",
            "command": ["sh", "-x", "-c"],
            "args": [format!("echo \"FIELD=$FIELD\"\nsleep {duration}\n")],
            "env": [{"name": "FIELD", "value": field}],
        }]},
    }))?;
    let pod = hierarchies::adopt_typed(pod, &ctx.body)?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let created = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .create(&PostParams::default(), &pod)
        .await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    ctx.logger.info(format!("Pod child is created: {name}"));
    Ok(Some(json!({"children": [created.metadata.uid]})))
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let mut operator = Operator::new();
    operator.on_create(&Resource::new("kopf.dev", "v1", "kopfexamples"), create_fn);
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
