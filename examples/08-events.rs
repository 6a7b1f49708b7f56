//! 08-events: raw watch-event handlers: fire-and-forget, errors logged and
//! ignored, no retries and no progress kept.
//!
//! ```text
//! cargo run --example 08-events -- --kubeconfig /tmp/kc -A --standalone --verbose
//! ```

use kopf::{Context, HandlerError, HandlerResult, Operator, Resource, Settings};

async fn event_fn_with_error(_ctx: Context) -> HandlerResult {
    Err(HandlerError::Other("Oops!".into()))
}

async fn normal_event_fn(ctx: Context) -> HandlerResult {
    let event = ctx.event.clone().unwrap_or_default();
    ctx.logger
        .info(format!("Event received: {}", event["type"]));
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator.on_event(&examples, event_fn_with_error);
    operator.on_event(&examples, normal_event_fn);
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
