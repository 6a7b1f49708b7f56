//! 12-embedded: the operator embedded in another tokio application, with an
//! operator-wide memo, stopped by the application when it is done.
//!
//! ```text
//! KUBECONFIG=/tmp/kc cargo run --example 12-embedded
//! ```

use std::time::Duration;

use kopf::{Context, HandlerResult, Operator, Resource, Settings};
use kube::{
    api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams},
    Client,
};
use serde_json::json;

fn render(template: Option<serde_json::Value>, name: &str) -> String {
    template
        .and_then(|t| t.as_str().map(String::from))
        .unwrap_or_default()
        .replace("{name}", name)
}

async fn create_fn(ctx: Context) -> HandlerResult {
    ctx.logger
        .info(render(ctx.memo.get("create_tpl"), ctx.name()));
    Ok(None)
}

async fn delete_fn(ctx: Context) -> HandlerResult {
    ctx.logger
        .info(render(ctx.memo.get("delete_tpl"), ctx.name()));
    Ok(None)
}

/// The embedded operator, with its memo filled in.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator.on_create(&examples, create_fn);
    operator.on_delete(&examples, delete_fn);
    operator.memo().set("create_tpl", json!("Hello, {name}!"));
    operator
        .memo()
        .set("delete_tpl", json!("Good bye, {name}!"));
    operator
}

/// The main application: runs the operator in the background, creates and
/// deletes a few objects, then stops the operator and waits for it.
pub(crate) async fn app(
    client: Client,
    settings: Settings,
    steps: usize,
) -> Result<(), kopf::OperatorError> {
    println!("Starting the main app.");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(operator().run(client.clone(), settings, async {
        let _ = stopped.await;
    }));
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kopf.dev", "v1", "KopfExample"),
        "kopfexamples",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    for step in 1..=steps {
        println!("Do the main app activity here. Step {step}/{steps}.");
        let name = format!("kopf-example-{step}");
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kopf.dev/v1", "kind": "KopfExample", "metadata": {"name": name}, "spec": {}
        }))
        .expect("a valid object");
        if let Err(e) = api.create(&PostParams::default(), &obj).await {
            eprintln!("cannot create {name}: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            eprintln!("cannot delete {name}: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("Exiting the main app.");
    let _ = stop.send(());
    operator.await.unwrap_or(Ok(()))
}

#[allow(dead_code)] // reason: the integration tests call `app()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    app(client, Settings::default(), 3).await?;
    Ok(())
}
