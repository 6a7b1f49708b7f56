//! 15-timers: periodic handlers per object, each firing only once the
//! object has been left unchanged for a while (`idle`): every 2 s after 5 s
//! of quiet, and every 4 s after 10 s of quiet.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 15-timers -- --kubeconfig /tmp/kc -A --standalone
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml
//! ```

use std::time::Duration;

use kopf::{Context, HandlerResult, Operator, Resource, Settings};

/// Does no waiting: the body of a "sync" timer.
async fn every_few_seconds_sync(ctx: Context) -> HandlerResult {
    ctx.logger.info(format!(
        "Ping from a sync timer: field={}",
        ctx.spec()["field"]
    ));
    Ok(None)
}

/// The same, as async code would be written.
async fn every_few_seconds_async(ctx: Context) -> HandlerResult {
    tokio::task::yield_now().await;
    ctx.logger.info(format!(
        "Ping from an async timer: field={}",
        ctx.spec()["field"]
    ));
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator
        .on_timer(&examples, Duration::from_secs(2), every_few_seconds_sync)
        .idle(Duration::from_secs(5));
    operator
        .on_timer(&examples, Duration::from_secs(4), every_few_seconds_async)
        .idle(Duration::from_secs(10));
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
