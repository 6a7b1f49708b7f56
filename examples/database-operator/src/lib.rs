//! A `Database` operator: for each Database it keeps a Deployment and a
//! Service (its children, collected with it), and reports in its status:
//!
//! - `status.reconcile`: what the create/update handler returned;
//! - `status.phase`: `Provisioning`, written by that handler through
//!   `ctx.patch`, then `Ready` once the Deployment's pods are ready, written
//!   by the `readiness` timer;
//! - `status.readyReplicas`: the Deployment's ready pods, from the timer.

use std::time::Duration;

use kopf::{
    hierarchies,
    k8s_openapi::api::{apps::v1::Deployment, core::v1::Service},
    kube::api::{Api, Patch, PatchParams},
    serde_json::{json, Value},
    Context, HandlerResult, Operator, Resource,
};

/// The field manager of the operator's server-side applies.
const MANAGER: &str = "database-operator";

/// The resource the operator serves.
pub fn databases() -> Resource {
    Resource::new("demo.example.com", "v1", "databases")
}

fn replicas(ctx: &Context) -> i64 {
    ctx.spec()
        .get("replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Creates or updates the children to match the spec (server-side apply:
/// the same call for both), then marks the database as provisioning.
async fn reconcile(ctx: Context) -> HandlerResult {
    let name = ctx.name().to_string();
    let image = ctx
        .spec()
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("postgres:16");
    let selector =
        json!({"app.kubernetes.io/name": "database", "app.kubernetes.io/instance": name});
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": selector},
        "spec": {
            "replicas": replicas(&ctx),
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{
                    "name": "postgres",
                    "image": image,
                    "ports": [{"containerPort": 5432, "name": "postgres"}],
                }]},
            },
        },
    });
    let mut service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": selector},
        "spec": {
            "selector": selector,
            "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}],
        },
    });
    hierarchies::adopt(&mut deployment, &ctx.body);
    hierarchies::adopt(&mut service, &ctx.body);
    let params = PatchParams::apply(MANAGER).force();
    Api::<Deployment>::namespaced(ctx.client.clone(), ctx.namespace())
        .patch(&name, &params, &Patch::Apply(&deployment))
        .await?;
    Api::<Service>::namespaced(ctx.client.clone(), ctx.namespace())
        .patch(&name, &params, &Patch::Apply(&service))
        .await?;
    ctx.logger
        .info(format!("Deployment and Service {name} are applied."));
    if ctx.status().get("phase").and_then(Value::as_str) != Some("Ready") {
        ctx.patch.set(&["status", "phase"], json!("Provisioning"));
    }
    Ok(Some(
        json!({"deployment": name, "service": name, "replicas": replicas(&ctx)}),
    ))
}

/// Every 10 s: copies the Deployment's ready pods into the status, and the
/// phase that follows from them.
async fn readiness(ctx: Context) -> HandlerResult {
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ctx.namespace());
    let Some(deployment) = deployments.get_opt(ctx.name()).await? else {
        return Ok(None);
    };
    let ready = deployment
        .status
        .and_then(|s| s.ready_replicas)
        .map_or(0, i64::from);
    let phase = if ready >= replicas(&ctx) {
        "Ready"
    } else {
        "Provisioning"
    };
    if ctx.status().get("readyReplicas").and_then(Value::as_i64) != Some(ready) {
        ctx.patch.set(&["status", "readyReplicas"], json!(ready));
    }
    if ctx.status().get("phase").and_then(Value::as_str) != Some(phase) {
        ctx.logger
            .info(format!("The database is {phase}: {ready} ready."));
        ctx.patch.set(&["status", "phase"], json!(phase));
    }
    Ok(None)
}

/// The operator.
pub fn operator() -> Operator {
    let mut operator = Operator::new();
    operator.on_create(&databases(), reconcile).id("reconcile");
    operator.on_update(&databases(), reconcile).id("reconcile");
    operator
        .on_timer(&databases(), Duration::from_secs(10), readiness)
        .id("readiness");
    operator
}
