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
    ctx.logger.info("UPDATED");
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
    ctx.logger.info(format!(
        "FIELD CHANGED: {} -> {}",
        py_str(ctx.old.as_ref()),
        py_str(ctx.new.as_ref())
    ));
    Ok(None)
}

/// A value as Python's `str()` shows it, as Kopf's example prints it:
/// strings bare, `None`, `True`, `{'a': 1}`.
pub(crate) fn py_str(value: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    fn repr(v: &Value) -> String {
        match v {
            Value::String(s) => format!("'{s}'"),
            other => py_str(Some(other)),
        }
    }
    match value {
        None | Some(Value::Null) => "None".into(),
        Some(Value::Bool(b)) => if *b { "True" } else { "False" }.into(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::Object(map)) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("'{k}': {}", repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
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
