//! 13-hooks: operator-level handlers. Two startup activities (one retried
//! three times), a cleanup activity that stops the background tasks, a
//! login handler, two probes on the liveness endpoint, and an event
//! handler that starts one background task per pod seen.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc &
//! KUBECONFIG=/tmp/kc cargo run --example 13-hooks -- -A --standalone --liveness http://localhost:8080/healthz
//! kubectl --kubeconfig /tmp/kc run web --image=nginx
//! curl -s localhost:8080/healthz      # {"monitored_objects":{"default":["web"]},"tasks_count":1}
//! ```

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use kopf::{Context, HandlerError, HandlerResult, Logger, Operator, Resource, Settings};
use serde_json::json;
use tokio::sync::watch;

/// The stop flags of the background tasks, by namespace and name.
type Stoppers = Arc<Mutex<BTreeMap<String, BTreeMap<String, watch::Sender<bool>>>>>;

/// Between 1 and 10 seconds, fixed per pod (Kopf's original draws it at
/// random; a fixed draw keeps runs reproducible).
fn pause_for(name: &str) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    Duration::from_secs(1 + h.finish() % 10)
}

async fn task_fn(logger: Logger, pause: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(pause) => logger.info("Served by the background task."),
            _ = stop.changed() => {}
        }
    }
    logger.info("Serving is finished by request.");
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let stoppers = Stoppers::default();
    let mut op = Operator::new();
    op.on_startup(|ctx: Context| async move {
        ctx.logger.info("Initialising the task-lock...");
        Ok(None)
    })
    .id("startup_fn_simple");
    op.on_startup(|ctx: Context| async move {
        if ctx.retry < 3 {
            return Err(HandlerError::temporary(
                format!("Going to succeed in {}s", 3 - ctx.retry),
                Duration::from_secs(1),
            ));
        }
        ctx.logger.info("Starting retried...");
        Ok(None)
    })
    .id("startup_fn_retried");
    let s = stoppers.clone();
    op.on_cleanup(move |ctx: Context| {
        let s = s.clone();
        async move {
            ctx.logger.info("Cleaning up...");
            for flags in s.lock().unwrap_or_else(|e| e.into_inner()).values() {
                for flag in flags.values() {
                    flag.send_replace(true);
                }
            }
            ctx.logger.info("All pod-tasks are requested to stop...");
            Ok(None)
        }
    })
    .id("cleanup_fn");
    op.on_login(|| async {
        println!("Logging in in 2s...");
        tokio::time::sleep(Duration::from_secs(2)).await;
        kube::Config::infer()
            .await
            .map_err(|e| HandlerError::Permanent(e.to_string()))
    });
    let s = stoppers.clone();
    op.on_probe(move |_ctx: Context| {
        let count: usize = s
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(BTreeMap::len)
            .sum();
        async move { HandlerResult::Ok(Some(json!(count))) }
    })
    .id("tasks_count");
    let s = stoppers.clone();
    op.on_probe(move |_ctx: Context| {
        let monitored: BTreeMap<String, Vec<String>> = s
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(ns, flags)| (ns.clone(), flags.keys().cloned().collect()))
            .collect();
        async move { HandlerResult::Ok(Some(json!(monitored))) }
    })
    .id("monitored_objects");
    let s = stoppers;
    op.on_event(&Resource::new("", "v1", "pods"), move |ctx: Context| {
        let (namespace, name) = (ctx.namespace().to_string(), ctx.name().to_string());
        let mut all = s.lock().unwrap_or_else(|e| e.into_inner());
        let flags = all.entry(namespace).or_default();
        if !flags.contains_key(&name) {
            let (tx, rx) = watch::channel(false);
            flags.insert(name.clone(), tx);
            tokio::spawn(task_fn(ctx.logger.clone(), pause_for(&name), rx));
        }
        async { HandlerResult::Ok(None) }
    })
    .id("pod_task");
    op
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
