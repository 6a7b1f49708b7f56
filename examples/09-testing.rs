//! 09-testing: an operator and its test with `kopf_harness` (see
//! `tests/harness.rs`, `example_09_testing`): the operator logs on creation
//! and deletion; the test replays a scenario and snapshots what it did.
//!
//! ```text
//! cargo run --example 09-testing -- --kubeconfig /tmp/kc -A --standalone --verbose
//! ```

use kopf::{Context, HandlerResult, Operator, Resource, Settings};

async fn create_fn(ctx: Context) -> HandlerResult {
    ctx.logger.info(format!("Creation event: {}", ctx.name()));
    Ok(None)
}

async fn delete_fn(ctx: Context) -> HandlerResult {
    ctx.logger.info(format!("Deletion event: {}", ctx.name()));
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator.on_create(&examples, create_fn);
    operator.on_delete(&examples, delete_fn);
    operator
}

#[allow(dead_code)] // reason: the tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
