//! The framework's failure paths against the fake API server's faults: 409s
//! and 500s on its patches, the object gone while a handler runs, a resource
//! that is not served, and continuity across a restart between retries.

use std::time::Duration;

use fake_apiserver::{
    inject::{FaultAction, FaultRule},
    journal::Filter,
    FakeApiServer,
};
use kopf::{Context, HandlerError, HandlerResult, Operator, Resource};
use kube::{
    api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams},
    Client,
};
use serde_json::{json, Value};

const CRD: &str = include_str!("../examples/crd.yaml");
const OBJ: &str = include_str!("../examples/obj.yaml");

fn settings() -> kopf::Settings {
    let mut s = kopf::Settings::default();
    s.execution.default_backoff = Duration::from_secs(1);
    s.execution.error_throttle = Duration::from_secs(1);
    s.clock = kopf::Clock::tokio_from(1_700_000_000);
    s
}

fn examples(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kopf.dev", "v1", "KopfExample"),
        "kopfexamples",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn resource() -> Resource {
    Resource::new("kopf.dev", "v1", "kopfexamples")
}

async fn status_of(client: &Client) -> Value {
    examples(client)
        .get("kopf-example-1")
        .await
        .map(|o| serde_json::to_value(o).unwrap()["status"].clone())
        .unwrap_or(Value::Null)
}

async fn until(client: &Client, cond: impl Fn(&Value) -> bool) -> bool {
    for _ in 0..1200 {
        if cond(&status_of(client).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn create_fn(_ctx: Context) -> HandlerResult {
    Ok(Some(json!({"message": "hello world"})))
}

type Stop = tokio::sync::oneshot::Sender<()>;
type Task = tokio::task::JoinHandle<Result<(), kopf::OperatorError>>;

fn start(server: &FakeApiServer, operator: Operator) -> (Stop, Task) {
    start_with(server, operator, settings())
}

/// Starts with given settings (a restart must keep the same clock anchor).
fn start_with(
    server: &FakeApiServer,
    operator: Operator,
    settings: kopf::Settings,
) -> (Stop, Task) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(operator.run(server.client(), settings, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn create(client: &Client) {
    let obj: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
    examples(client)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

/// Conflicts (409) and server errors (500) on the operator's patches are
/// retried until the result is stored.
#[tokio::test(start_paused = true)]
async fn patches_failing_with_409_and_500_should_be_retried() {
    for code in [409u16, 500] {
        let server = FakeApiServer::new();
        server.load_str(CRD, "crd").unwrap();
        server.injector().add_fault(
            FaultRule::new(
                &["patch"],
                "kopfexamples.kopf.dev",
                FaultAction::Status {
                    code,
                    message: None,
                    retry_after: None,
                },
            )
            .times(2),
        );
        let mut op = Operator::new();
        op.on_create(&resource(), create_fn);
        let (stop, task) = start(&server, op);
        let client = server.client();
        create(&client).await;
        assert!(
            until(&client, |s| s["create_fn"]["message"] == "hello world").await,
            "{code}: status never written"
        );
        let patches = server.journal().entries(&Filter {
            verb: Some("patch".into()),
            ..Default::default()
        });
        assert_eq!(
            patches.iter().filter(|e| e.code == code).count(),
            2,
            "{code}"
        );
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

/// An object deleted while its handler runs: the operator notices it is
/// gone (404 on its patch) and carries on without crashing.
#[tokio::test(start_paused = true)]
async fn object_gone_mid_handling_should_be_dropped_quietly() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let mut op = Operator::new();
    op.on_create(&resource(), |ctx: Context| async move {
        examples(&ctx.client)
            .delete(ctx.name(), &DeleteParams::default())
            .await?;
        Ok(Some(json!("done")))
    })
    .id("self_destruct");
    let (stop, task) = start(&server, op);
    let client = server.client();
    create(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(examples(&client)
        .get_opt("kopf-example-1")
        .await
        .unwrap()
        .is_none());
    let patches = server.journal().entries(&Filter {
        verb: Some("patch".into()),
        ..Default::default()
    });
    assert!(
        patches.iter().all(|e| e.code == 404),
        "only the patch of a gone object: {patches:?}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A resource the cluster does not serve stops the operator at start with a clear error.
#[tokio::test]
async fn unknown_resource_should_fail_at_start() {
    let server = FakeApiServer::new();
    let mut op = Operator::new();
    op.on_create(&resource(), create_fn);
    let err = op
        .run(server.client(), settings(), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("resource kopf.dev/v1/kopfexamples is not served by the cluster"),
        "{err}"
    );
}

/// Stopped between retries and started again, the operator continues with
/// the retry count preserved (it is persisted on the object); an object
/// created while it was down is handled on start.
#[tokio::test(start_paused = true)]
async fn restart_between_retries_should_preserve_the_retry_count() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let flaky = |ctx: Context| async move {
        if ctx.retry < 2 {
            return Err(HandlerError::temporary(
                format!("attempt {}", ctx.retry + 1),
                Duration::from_secs(30),
            ));
        }
        Ok(Some(json!({"attempts": ctx.retry + 1})))
    };
    let shared = settings();
    let mut op = Operator::new();
    op.on_create(&resource(), flaky).id("flaky");
    let (stop, task) = start_with(&server, op, shared.clone());
    let client = server.client();
    create(&client).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let obj = serde_json::to_value(examples(&client).get("kopf-example-1").await.unwrap()).unwrap();
    let record: Value = serde_json::from_str(
        obj["metadata"]["annotations"]["kopf.zalando.org/flaky"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["retries"], 1);
    assert_eq!(record["message"], "attempt 1");

    // Another object appears while the operator is down.
    let mut second: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
    second.metadata.name = Some("kopf-example-2".into());
    examples(&client)
        .create(&PostParams::default(), &second)
        .await
        .unwrap();

    let mut op = Operator::new();
    op.on_create(&resource(), flaky).id("flaky");
    let (stop, task) = start_with(&server, op, shared);
    assert!(
        until(&client, |s| s["flaky"]["attempts"] == 3).await,
        "continued from the stored retry count"
    );
    for _ in 0..1200 {
        let two = examples(&client).get("kopf-example-2").await.unwrap();
        if serde_json::to_value(two).unwrap()["status"]["flaky"]["attempts"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let two = serde_json::to_value(examples(&client).get("kopf-example-2").await.unwrap()).unwrap();
    assert_eq!(
        two["status"]["flaky"]["attempts"], 3,
        "created while down, handled on start"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
