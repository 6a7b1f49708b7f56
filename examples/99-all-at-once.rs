//! 99-all-at-once: most features together: startup and cleanup activities
//! (one retried), several create handlers (one failing once), update and
//! field handlers, a delete handler (with its finalizer), a child Pod adopted
//! and labelled, events about the object, and an event handler on Pods
//! selected by label.
//!
//! ```text
//! cargo run --example 99-all-at-once -- --kubeconfig /tmp/kc -A --standalone --verbose
//! ```

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kopf::{
    hierarchies, Context, HandlerError, HandlerResult, MetaFilter, Operator, Resource, Settings,
};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

async fn startup_fn_simple(ctx: Context) -> HandlerResult {
    ctx.logger.info("Starting in 1s...");
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(None)
}

async fn startup_fn_retried(ctx: Context) -> HandlerResult {
    if ctx.retry < 3 {
        let left = 3 - ctx.retry;
        return Err(HandlerError::temporary(
            format!("Going to succeed in {left}s"),
            Duration::from_secs(1),
        ));
    }
    ctx.logger.info("Starting retried...");
    Ok(None)
}

async fn cleanup_fn(ctx: Context) -> HandlerResult {
    ctx.logger.info("Cleaning up in 3s...");
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(None)
}

async fn create_1(ctx: Context) -> HandlerResult {
    ctx.events.info("AnyReason", "");
    ctx.events
        .event("Warning", "SomeReason", "Cannot do something");
    Ok(Some(json!({"job1-status": 100})))
}

async fn create_2(ctx: Context) -> HandlerResult {
    tokio::time::sleep(Duration::from_secs(1)).await;
    if ctx.retry == 0 {
        return Err(HandlerError::Other("Whoops!".into()));
    }
    Ok(Some(json!({"job2-status": 100})))
}

async fn update(ctx: Context) -> HandlerResult {
    ctx.logger.info(format!(
        "Handling the diff: {}",
        serde_json::to_string(&ctx.diff)?
    ));
    Ok(None)
}

async fn update_lst(ctx: Context) -> HandlerResult {
    let show = |v: &Option<Value>| v.as_ref().map_or("None".to_string(), Value::to_string);
    ctx.logger.info(format!(
        "Handling the FIELD = {} -> {}",
        show(&ctx.old),
        show(&ctx.new)
    ));
    Ok(None)
}

async fn delete(_ctx: Context) -> HandlerResult {
    Ok(None)
}

async fn create_pod(ctx: Context) -> HandlerResult {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{"name": "the-only-one", "image": "busybox", "command": ["sh", "-x", "-c", "sleep 1"]}]},
    });
    hierarchies::adopt(&mut pod, &ctx.body);
    let labels = json!({"application": "kopf-example-10"});
    hierarchies::label(&mut pod, labels.as_object().expect("an object literal"));
    let pod: Pod = serde_json::from_value(pod)?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(None)
}

async fn example_pod_change(ctx: Context) -> HandlerResult {
    ctx.logger.info("This pod is special for us.");
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let pods = Resource::new("", "v1", "pods");
    let mut operator = Operator::new();
    operator.on_startup(startup_fn_simple);
    operator.on_startup(startup_fn_retried);
    operator.on_cleanup(cleanup_fn);
    operator.on_create(&examples, create_1);
    operator.on_create(&examples, create_2);
    operator.on_update(&examples, update);
    operator.on_field(&examples, "spec.lst", update_lst);
    operator.on_delete(&examples, delete);
    operator.on_create(&examples, create_pod);
    operator
        .on_event(&pods, example_pod_change)
        .label("application", MetaFilter::Value("kopf-example-10".into()));
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
