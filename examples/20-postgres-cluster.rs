//! A Postgres cluster operator in the spirit of Zalando's: for each
//! `PostgresCluster` it keeps a StatefulSet (one pod per instance, a volume
//! each), a headless Service and a Secret with the credentials, all owned
//! by the cluster; and it reports in the status what the pods say:
//!
//! - `status.phase`: `Creating` until every instance is ready, then
//!   `Running`; `Degraded` when a ready cluster loses an instance, or when a
//!   pod is crash-looping or cannot pull its image (with a Warning event
//!   naming the pod and why);
//! - `status.readyInstances`: the StatefulSet's ready pods.
//!
//! Run it against the standalone fake (which simulates the cluster):
//! `fake-apiserver --kubeconfig /tmp/kc --load examples/postgres-cluster.yaml`,
//! then `KUBECONFIG=/tmp/kc cargo run --example 20-postgres-cluster`.

use std::time::Duration;

use kopf::{
    hierarchies,
    k8s_openapi::api::{
        apps::v1::StatefulSet,
        core::v1::{Pod, Secret, Service},
    },
    kube::api::{Api, ListParams, Patch, PatchParams},
    serde_json::{json, Value},
    Context, HandlerResult, Operator, Resource, Settings,
};

/// The field manager of the operator's server-side applies.
const MANAGER: &str = "postgres-operator";

/// The resource the operator serves.
pub(crate) fn clusters() -> Resource {
    Resource::new("demo.kopf.dev", "v1", "postgresclusters")
}

fn instances(ctx: &Context) -> i64 {
    ctx.spec()
        .get("instances")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn labels(name: &str) -> Value {
    json!({"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": name})
}

/// Applies the Secret, the Service and the StatefulSet (the same call
/// creates and updates them).
async fn reconcile(ctx: Context) -> HandlerResult {
    let name = ctx.name().to_string();
    let spec = ctx.spec();
    let image = spec
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("postgres:16");
    let storage = spec.get("storage").and_then(Value::as_str).unwrap_or("1Gi");
    let selector = labels(&name);
    let secret_name = format!("{name}-credentials");
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name, "labels": selector},
        "stringData": {"username": "postgres", "password": format!("pw-{}", ctx.uid())},
    });
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": selector},
        "spec": {"clusterIP": "None", "selector": selector,
                 "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]},
    });
    let mut set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": selector},
        "spec": {
            "replicas": instances(&ctx),
            "serviceName": name,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{
                    "name": "postgres", "image": image,
                    "ports": [{"containerPort": 5432, "name": "postgres"}],
                    "env": [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "password"}}}],
                    "readinessProbe": {"tcpSocket": {"port": 5432}, "initialDelaySeconds": 5},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                }]},
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}}],
        },
    });
    for child in [&mut secret, &mut service, &mut set] {
        hierarchies::adopt(child, &ctx.body);
    }
    let params = PatchParams::apply(MANAGER).force();
    let ns = ctx.namespace().to_string();
    Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .patch(&secret_name, &params, &Patch::Apply(&secret))
        .await?;
    Api::<Service>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &params, &Patch::Apply(&service))
        .await?;
    Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &params, &Patch::Apply(&set))
        .await?;
    ctx.logger.info(format!(
        "StatefulSet, Service and Secret of {name} are applied."
    ));
    if ctx.status().get("phase").is_none() {
        ctx.patch.set(&["status", "phase"], json!("Creating"));
    }
    Ok(Some(json!({"instances": instances(&ctx)})))
}

/// Why a pod is unhealthy, if a container says so.
fn trouble(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let reason = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
        matches!(
            reason.as_str(),
            "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull"
        )
        .then_some(reason)
    })
}

/// Every 10 s: the ready count and the phase that follows from the pods.
async fn health(ctx: Context) -> HandlerResult {
    let ns = ctx.namespace().to_string();
    let name = ctx.name().to_string();
    let Some(set) = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?
    else {
        return Ok(None);
    };
    let ready = set
        .status
        .and_then(|s| s.ready_replicas)
        .map_or(0, i64::from);
    let selector = format!("app.kubernetes.io/instance={name}");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let troubled = pods
        .items
        .iter()
        .find_map(|p| trouble(p).map(|why| (p.metadata.name.clone().unwrap_or_default(), why)));
    let was = ctx
        .status()
        .get("phase")
        .and_then(Value::as_str)
        .unwrap_or("Creating")
        .to_string();
    let phase = if let Some((pod, why)) = &troubled {
        if was != "Degraded" {
            ctx.events
                .warn("Degraded", &format!("Pod {pod} is in {why}."));
        }
        "Degraded"
    } else if ready >= instances(&ctx) {
        "Running"
    } else if was == "Running" || was == "Degraded" {
        if was == "Running" {
            let message = format!("{ready} of {} instances are ready.", instances(&ctx));
            ctx.events.warn("Degraded", &message);
        }
        "Degraded"
    } else {
        "Creating"
    };
    if ctx.status().get("readyInstances").and_then(Value::as_i64) != Some(ready) {
        ctx.patch.set(&["status", "readyInstances"], json!(ready));
    }
    if was != phase || ctx.status().get("phase").is_none() {
        ctx.logger
            .info(format!("The cluster is {phase}: {ready} ready."));
        ctx.patch.set(&["status", "phase"], json!(phase));
    }
    Ok(None)
}

/// The operator.
pub(crate) fn operator() -> Operator {
    let mut operator = Operator::new();
    operator.on_create(&clusters(), reconcile).id("reconcile");
    operator.on_update(&clusters(), reconcile).id("reconcile");
    operator
        .on_timer(&clusters(), Duration::from_secs(10), health)
        .id("health");
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
