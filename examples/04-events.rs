//! 04-events: posting Kubernetes Events about the handled object, of every
//! type, including one for a caught error.
//!
//! ```text
//! cargo run --example 04-events -- --kubeconfig /tmp/kc -A --standalone --verbose
//! kubectl describe kex kopf-example-1
//! ```

use kopf::{Context, HandlerResult, Operator, Resource, Settings};

async fn create_fn(ctx: Context) -> HandlerResult {
    ctx.events.event("SomeType", "SomeReason", "Some message");
    ctx.events.info("SomeReason", "Some message");
    ctx.events.warn("SomeReason", "Some message");
    let failed: Result<(), String> = Err("Exception text.".into());
    if let Err(e) = failed {
        ctx.events.exception("SomeReason", "Some exception:", &e);
    }
    Ok(None)
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
