//! 01-minimal: the smallest operator. One creation handler; its return
//! value becomes `status.create_fn`.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 01-minimal -- --kubeconfig /tmp/kc -A --standalone --verbose
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml
//! kubectl --kubeconfig /tmp/kc get kex kopf-example-1 -o jsonpath='{.status.create_fn.message}'
//! ```

use kopf::{Context, HandlerResult, Operator, Resource, Settings};
use serde_json::json;

/// Reacts to every new KopfExample.
async fn create_fn(ctx: Context) -> HandlerResult {
    ctx.logger
        .info(format!("And here we are! Creating: {}", ctx.spec()));
    Ok(Some(json!({"message": "hello world"})))
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
