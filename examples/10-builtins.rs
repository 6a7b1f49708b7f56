//! 10-builtins: handling built-in resources (Pods): each new or resumed pod
//! outside `kube-*` namespaces gets a background task that deletes it after
//! 30 s, unless the pod is deleted first, which cancels the task.
//!
//! ```text
//! cargo run --example 10-builtins -- --kubeconfig /tmp/kc -A --standalone --verbose
//! ```

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kopf::{Context, HandlerResult, Logger, Operator, Resource, Settings};
use kube::api::{Api, DeleteParams};
use tokio::sync::oneshot;

/// The pending killers, by `namespace/name`; sending cancels one.
type Tasks = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn pod_killer(
    client: kube::Client,
    namespace: String,
    name: String,
    logger: Logger,
    cancel: oneshot::Receiver<()>,
) {
    logger.info(format!(
        "=== Pod killing happens in {}s.",
        TIMEOUT.as_secs()
    ));
    tokio::select! {
        _ = tokio::time::sleep(TIMEOUT) => {
            logger.info("=== Pod killing happens NOW!");
            if let Err(e) = Api::<Pod>::namespaced(client, &namespace).delete(&name, &DeleteParams::default()).await {
                logger.error(format!("=== Pod killing failed: {e}"));
            }
        }
        _ = cancel => logger.info("=== Pod killing is cancelled!"),
    }
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let pods = Resource::new("", "v1", "pods");
    let tasks: Tasks = Arc::default();
    let mut operator = Operator::new();
    for on_resume in [true, false] {
        let tasks = tasks.clone();
        let pod_in_sight = move |ctx: Context| {
            let tasks = tasks.clone();
            async move {
                if ctx.namespace().starts_with("kube-") {
                    return Ok(None);
                }
                let key = format!("{}/{}", ctx.namespace(), ctx.name());
                let (cancel, cancelled) = oneshot::channel();
                tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, cancel);
                tokio::spawn(pod_killer(
                    ctx.client.clone(),
                    ctx.namespace().to_string(),
                    ctx.name().to_string(),
                    ctx.logger.clone(),
                    cancelled,
                ));
                HandlerResult::Ok(None)
            }
        };
        let handler = if on_resume {
            operator.on_resume(&pods, pod_in_sight)
        } else {
            operator.on_create(&pods, pod_in_sight)
        };
        handler.id("pod_in_sight");
    }
    operator
        .on_delete(&pods, move |ctx: Context| {
            let tasks = tasks.clone();
            async move {
                let key = format!("{}/{}", ctx.namespace(), ctx.name());
                if let Some(cancel) = tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(&key) {
                    let _ = cancel.send(());
                }
                HandlerResult::Ok(None)
            }
        })
        .id("pod_deleted");
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
