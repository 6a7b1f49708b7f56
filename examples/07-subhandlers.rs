//! 07-subhandlers: a creation handler that registers one sub-handler per
//! item of `spec.items` at run time. Each sub-handler (`create_fn/item1`,
//! `create_fn/item2`) has its own progress and retries; `create_fn`
//! succeeds once all of them have.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 07-subhandlers -- --kubeconfig /tmp/kc -A --standalone
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml
//! ```

use kopf::{Context, HandlerResult, Operator, Resource, Settings};
use serde_json::Value;

/// Registers a sub-handler for each item.
async fn create_fn(ctx: Context) -> HandlerResult {
    let items: Vec<String> = ctx.spec()["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for item in items {
        let what = item.clone();
        ctx.subhandler(&item, move |ctx: Context| {
            let what = what.clone();
            async move {
                ctx.logger
                    .info(format!("=== Handling creation for {what}. ==="));
                Ok(None)
            }
        })?;
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
