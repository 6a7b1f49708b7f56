//! 14-daemons: long-running tasks beside each object. A blocking daemon on
//! its own thread waits on its stop signal and exits when asked; an async
//! daemon ignores the signal and is cancelled one second after the stop
//! request (`cancellation_backoff`). Both fail three times first, and are
//! restarted after each failure.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 14-daemons -- --kubeconfig /tmp/kc -A --standalone
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml      # pings every 5 s
//! kubectl --kubeconfig /tmp/kc delete -f examples/obj.yaml     # daemons stop, then the object goes
//! ```

use std::time::Duration;

use kopf::{Context, HandlerError, HandlerResult, MetaFilter, Operator, Resource, Settings};
use serde_json::json;

/// Blocking: polls and waits on `ctx.stopped`; runs for 30 seconds at most.
fn background_sync(ctx: Context) -> HandlerResult {
    if ctx.retry < 3 {
        ctx.patch.set(
            &["status", "message"],
            json!(format!("Failed {} times.", ctx.retry + 1)),
        );
        return Err(HandlerError::temporary(
            "Simulated failure.",
            Duration::from_secs(1),
        ));
    }
    let mut running = Duration::ZERO;
    while !ctx.stopped.is_set() && running <= Duration::from_secs(30) {
        ctx.logger.info(format!(
            "=> Ping from a sync daemon: field={}, retry={}",
            ctx.spec()["field"],
            ctx.retry
        ));
        ctx.stopped.wait_blocking(Duration::from_secs(5));
        running += Duration::from_secs(5);
    }
    ctx.patch
        .set(&["status", "message"], json!("Accompanying is finished."));
    Ok(None)
}

/// Async: never looks at its stop signal; cancelled when the object goes.
async fn background_async(ctx: Context) -> HandlerResult {
    if ctx.retry < 3 {
        return Err(HandlerError::temporary(
            "Simulated failure.",
            Duration::from_secs(1),
        ));
    }
    loop {
        ctx.logger.info(format!(
            "=> Ping from an async daemon: field={}",
            ctx.spec()["field"]
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator
        .on_daemon_blocking(&examples, background_sync)
        .backoff(Duration::from_secs(3));
    operator
        .on_daemon(&examples, background_async)
        .backoff(Duration::from_secs(3))
        .cancellation_backoff(Duration::from_secs(1))
        .cancellation_timeout(Duration::from_millis(500))
        .annotation("someannotation", MetaFilter::Value("somevalue".into()));
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
