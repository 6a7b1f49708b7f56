//! 05-handlers: every kind of change handler, in registration order:
//! resume, create, update, delete (holding a finalizer) and a field handler.
//!
//! ```text
//! cargo run --example 05-handlers -- --kubeconfig /tmp/kc -A --standalone --verbose
//! kubectl patch kex kopf-example-1 --type merge -p '{"spec": {"field": "newvalue", "newfield": 100}}'
//! ```

use kopf::{Context, HandlerResult, Operator, Resource, Settings};

async fn resume_fn_1(ctx: Context) -> HandlerResult {
    ctx.logger.info("RESUMED 1st");
    Ok(None)
}

async fn create_fn_1(ctx: Context) -> HandlerResult {
    ctx.logger.info("CREATED 1st");
    Ok(None)
}

async fn resume_fn_2(ctx: Context) -> HandlerResult {
    ctx.logger.info("RESUMED 2nd");
    Ok(None)
}

async fn create_fn_2(ctx: Context) -> HandlerResult {
    ctx.logger.info("CREATED 2nd");
    Ok(None)
}

async fn update_fn(ctx: Context) -> HandlerResult {
    ctx.logger
        .info(format!("UPDATED: {} changes", ctx.diff.len()));
    Ok(None)
}

async fn delete_fn_1(ctx: Context) -> HandlerResult {
    ctx.logger.info("DELETED 1st");
    Ok(None)
}

async fn delete_fn_2(ctx: Context) -> HandlerResult {
    ctx.logger.info("DELETED 2nd");
    Ok(None)
}

async fn field_fn(ctx: Context) -> HandlerResult {
    let show =
        |v: &Option<serde_json::Value>| v.as_ref().map_or("None".to_string(), |v| v.to_string());
    ctx.logger.info(format!(
        "FIELD CHANGED: {} -> {}",
        show(&ctx.old),
        show(&ctx.new)
    ));
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator.on_resume(&examples, resume_fn_1);
    operator.on_create(&examples, create_fn_1);
    operator.on_resume(&examples, resume_fn_2);
    operator.on_create(&examples, create_fn_2);
    operator.on_update(&examples, update_fn);
    operator.on_delete(&examples, delete_fn_1);
    operator.on_delete(&examples, delete_fn_2);
    operator.on_field(&examples, "spec.field", field_fn);
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
