//! The framework's failure paths against the fake API server's faults: 409s
//! and 500s on its patches, the object gone while a handler runs, and
//! continuity across a restart between retries.

use std::time::Duration;

use fake_apiserver::{
    testing::{
        faults::{FaultAction, FaultRule},
        journal::Filter,
    },
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

/// Resources named by short name or kind are resolved through discovery
/// (a name not served yet is waited for: tests/scanning.rs).
#[tokio::test(start_paused = true)]
async fn resources_should_resolve_by_short_name_and_kind() {
    for name in ["kex", "KopfExample", "kopfexamples.kopf.dev"] {
        let server = FakeApiServer::new();
        server.load_str(CRD, "crd").unwrap();
        let mut op = Operator::new();
        op.on_create(&Resource::named(name), create_fn);
        let (stop, task) = start(&server, op);
        let client = server.client();
        create(&client).await;
        assert!(
            until(&client, |s| s["create_fn"]["message"] == "hello world").await,
            "{name}"
        );
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

/// A typed custom resource: the resource from the type, typed spec in the handler.
mod typed {
    use super::*;
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// The examples' resource, typed.
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
    #[kube(group = "kopf.dev", version = "v1", kind = "KopfExample", namespaced)]
    pub(crate) struct KopfExampleSpec {
        pub(crate) field: String,
        pub(crate) items: Vec<String>,
    }

    /// `Resource::of::<K>()` and `ctx.typed::<K>()`.
    #[tokio::test(start_paused = true)]
    async fn typed_resources_should_give_typed_specs() {
        let server = FakeApiServer::new();
        server.load_str(CRD, "crd").unwrap();
        let mut op = Operator::new();
        op.on_create(&Resource::of::<KopfExample>(), |ctx: Context| async move {
            let example: KopfExample = ctx.typed()?;
            Ok(Some(
                json!({"field": example.spec.field, "items": example.spec.items.len()}),
            ))
        })
        .id("typed_fn");
        let (stop, task) = start(&server, op);
        let client = server.client();
        create(&client).await;
        assert!(
            until(&client, |s| s["typed_fn"]
                == json!({"field": "value", "items": 2}))
            .await
        );
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

/// Namespace globs: objects in matching namespaces are handled, others not.
#[tokio::test(start_paused = true)]
async fn namespace_globs_should_select_namespaces() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    server
        .load_str(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
            "ns",
        )
        .unwrap();
    let mut settings = settings();
    settings.watching.namespaces = vec!["team-*".into()];
    let mut op = Operator::new();
    op.on_create(&resource(), create_fn);
    let (stop, task) = start_with(&server, op, settings);
    let client = server.client();
    create(&client).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kopf.dev", "v1", "KopfExample"),
        "kopfexamples",
    );
    let team: Api<DynamicObject> = Api::namespaced_with(client.clone(), "team-a", &ar);
    let obj: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
    team.create(&PostParams::default(), &obj).await.unwrap();
    let mut handled = false;
    for _ in 0..100 {
        let got = serde_json::to_value(team.get("kopf-example-1").await.unwrap()).unwrap();
        if got["status"]["create_fn"]["message"] == "hello world" {
            handled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handled, "team-a matches team-*");
    assert_eq!(
        status_of(&client).await,
        Value::Null,
        "default does not match"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// Progress can live in `status.kopf.progress` instead of annotations.
#[tokio::test(start_paused = true)]
async fn progress_should_be_storable_in_status() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let mut settings = settings();
    settings.persistence.progress.location = kopf::storage::ProgressLocation::Status;
    let mut op = Operator::new();
    op.on_create(&resource(), |ctx: Context| async move {
        if ctx.retry == 0 {
            return Err(HandlerError::temporary("later", Duration::from_secs(60)));
        }
        Ok(Some(json!("done")))
    })
    .id("slow");
    let (stop, task) = start_with(&server, op, settings);
    let client = server.client();
    create(&client).await;
    assert!(
        until(&client, |s| s["kopf"]["progress"]["slow"]["retries"] == 1).await,
        "{}",
        status_of(&client).await
    );
    let obj = serde_json::to_value(examples(&client).get("kopf-example-1").await.unwrap()).unwrap();
    assert!(
        obj["metadata"]["annotations"]
            .get("kopf.zalando.org/slow")
            .is_none(),
        "nothing in annotations"
    );
    assert!(
        until(&client, |s| s["slow"] == "done"
            && s["kopf"]["progress"].get("slow").is_none())
        .await
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A handler retried past its timeout fails permanently.
#[tokio::test(start_paused = true)]
async fn handler_timeouts_should_fail_permanently() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let sink = kopf::LogSink::default();
    let mut settings = settings();
    settings.log_sink = Some(sink.clone());
    let mut op = Operator::new();
    op.on_create(&resource(), |_ctx: Context| async move {
        Err(HandlerError::temporary("not ready", Duration::from_secs(2)))
    })
    .id("never")
    .timeout(Duration::from_secs(5));
    let (stop, task) = start_with(&server, op, settings);
    let client = server.client();
    create(&client).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let lines = sink.messages();
    assert!(
        lines.iter().any(|l| l.contains(
            "Handler 'never' failed temporarily but will time out in 5.0 seconds: not ready"
        )),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("Creation is processed: 0 succeeded; 1 failed.")),
        "{lines:?}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// Field filters: `field` + `old`/`new` select one change; `value` selects
/// objects by a field's current value.
#[tokio::test(start_paused = true)]
async fn field_filters_should_select_changes_and_values() {
    use kopf::FieldFilter;
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let mut op = Operator::new();
    op.on_update(&resource(), |ctx: Context| async move {
        Ok(Some(json!({"from": ctx.old, "to": ctx.new})))
    })
    .id("value_to_newvalue")
    .field("spec.field")
    .old(FieldFilter::Equals(json!("value")))
    .new_value(FieldFilter::Equals(json!("newvalue")));
    op.on_update(&resource(), |_ctx: Context| async move {
        Ok(Some(json!("wrong")))
    })
    .id("other_change")
    .field("spec.field")
    .new_value(FieldFilter::Equals(json!("something else")));
    op.on_create(&resource(), |ctx: Context| async move {
        Ok(Some(ctx.param.clone().unwrap_or_default()))
    })
    .id("with_value")
    .field("spec.field")
    .value(FieldFilter::Equals(json!("value")))
    .param(json!("a param"));
    op.on_create(&resource(), |_ctx: Context| async move {
        Ok(Some(json!("wrong")))
    })
    .id("without_value")
    .value(FieldFilter::Absent)
    .field("spec.field");
    let (stop, task) = start(&server, op);
    let client = server.client();
    create(&client).await;
    assert!(until(&client, |s| s["with_value/spec.field"] == "a param").await);
    examples(&client)
        .patch(
            "kopf-example-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"field": "newvalue"}})),
        )
        .await
        .unwrap();
    assert!(
        until(&client, |s| s["value_to_newvalue/spec.field"]
            == json!({"from": "value", "to": "newvalue"}))
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = status_of(&client).await;
    assert!(
        status.get("other_change/spec.field").is_none()
            && status.get("without_value/spec.field").is_none(),
        "{status}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// `execution.max_workers` bounds how many objects are processed at once.
#[tokio::test(start_paused = true)]
async fn max_workers_should_bound_concurrency() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, p) = (now.clone(), peak.clone());
    let mut op = Operator::new();
    op.on_create(&resource(), move |_ctx: Context| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let running = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            Ok(Some(json!("done")))
        }
    })
    .id("slow");
    let mut s = settings();
    s.execution.max_workers = Some(2);
    let (stop, task) = start_with(&server, op, s);
    let client = server.client();
    for i in 0..8 {
        let mut obj: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
        obj.metadata.name = Some(format!("ex-{i}"));
        examples(&client)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    for _ in 0..200 {
        let list = examples(&client).list(&Default::default()).await.unwrap();
        if list
            .items
            .iter()
            .all(|o| o.data["status"]["slow"] == "done")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let list = examples(&client).list(&Default::default()).await.unwrap();
    assert!(list
        .items
        .iter()
        .all(|o| o.data["status"]["slow"] == "done"));
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than 2 at once, and 2 used"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A handler that panics is an error (retried), never a crash.
#[tokio::test(start_paused = true)]
async fn panicking_handlers_should_be_retried_not_crash() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let sink = kopf::LogSink::default();
    let mut s = settings();
    s.log_sink = Some(sink.clone());
    let mut op = Operator::new();
    op.on_create(&resource(), |ctx: Context| async move {
        if ctx.retry == 0 {
            panic!("kaboom");
        }
        Ok(Some(json!("survived")))
    })
    .id("panicky");
    let (stop, task) = start_with(&server, op, s);
    let client = server.client();
    create(&client).await;
    assert!(until(&client, |s| s["panicky"] == "survived").await);
    assert!(sink
        .messages()
        .iter()
        .any(|l| l.contains("Handler 'panicky' failed with an exception and will try again in 1.0 seconds: panicked: kaboom")));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// Another prefix: progress, diff-base and finalizer use it.
#[tokio::test(start_paused = true)]
async fn the_prefix_should_be_configurable() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let s = settings().with_prefix("my-operator.example.com");
    let mut op = Operator::new();
    op.on_create(&resource(), create_fn);
    op.on_delete(&resource(), |_ctx: Context| async move { Ok(None) })
        .id("delete_fn");
    let (stop, task) = start_with(&server, op, s);
    let client = server.client();
    create(&client).await;
    assert!(until(&client, |s| s["create_fn"]["message"] == "hello world").await);
    let obj = serde_json::to_value(examples(&client).get("kopf-example-1").await.unwrap()).unwrap();
    assert!(
        obj["metadata"]["annotations"]["my-operator.example.com/last-handled-configuration"]
            .is_string()
    );
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["my-operator.example.com/KopfFinalizerMarker"])
    );
    assert!(!obj["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("kopf.zalando.org/")));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// An object Kopf (Python) left mid-retry and another it fully handled:
/// the Rust operator continues the first from Kopf's record (naive
/// timestamps and all) and only resumes the second.
#[tokio::test(start_paused = true)]
async fn objects_left_by_kopf_should_continue_where_kopf_stopped() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let client = server.client();
    let kopf_record = r#"{"started":"2020-01-01T00:00:00.000000","delayed":"2020-01-01T00:01:00.000000","purpose":"create","retries":2,"success":false,"failure":false,"message":"Expected recoverable error."}"#;
    let mut pending: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
    pending
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("kopf.zalando.org/create_fn".into(), kopf_record.into());
    examples(&client)
        .create(&PostParams::default(), &pending)
        .await
        .unwrap();
    let mut handled: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
    handled.metadata.name = Some("kopf-example-2".into());
    let essence = r#"{"metadata":{"labels":{"somelabel":"somevalue"},"annotations":{"someannotation":"somevalue"}},"spec":{"duration":"1m","field":"value","items":["item1","item2"]}}"#;
    handled
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "kopf.zalando.org/last-handled-configuration".into(),
            format!("{essence}\n"),
        );
    examples(&client)
        .create(&PostParams::default(), &handled)
        .await
        .unwrap();

    let mut op = Operator::new();
    op.on_create(&resource(), |ctx: Context| async move {
        Ok(Some(json!({"retry": ctx.retry})))
    })
    .id("create_fn");
    op.on_resume(&resource(), |_ctx: Context| async move {
        Ok(Some(json!("resumed")))
    })
    .id("resume_fn");
    let (stop, task) = start(&server, op);
    assert!(
        until(&client, |s| s["create_fn"]["retry"] == 2).await,
        "continued at Kopf's retry count"
    );
    let mut two = Value::Null;
    for _ in 0..100 {
        two = serde_json::to_value(examples(&client).get("kopf-example-2").await.unwrap()).unwrap();
        if two["status"]["resume_fn"] == "resumed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(two["status"]["resume_fn"], "resumed");
    assert!(
        two["status"].get("create_fn").is_none(),
        "not created again"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// `on_login` supplies the credentials `kopf::run_with` connects with.
#[tokio::test]
async fn login_handlers_should_supply_the_connection() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let serving = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url: http::Uri = serving.url().parse().unwrap();
    let mut op = Operator::new();
    op.on_create(&resource(), create_fn);
    op.on_login(move || {
        let url = url.clone();
        async move { Ok(kube::Config::new(url)) }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut s = kopf::Settings::default();
    s.batching.batch_window = Duration::from_millis(10);
    let args = ["my-operator", "-A", "--standalone"].map(String::from);
    let task = tokio::spawn(kopf::run_with(op, s, args, async {
        let _ = stopped.await;
    }));
    let client = server.client();
    create(&client).await;
    let mut ok = false;
    for _ in 0..200 {
        if status_of(&client).await["create_fn"]["message"] == "hello world" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ok, "handled through the login handler's connection");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let err = kopf::run_with(
        Operator::new(),
        kopf::Settings::default(),
        ["x", "--bogus"].map(String::from),
        async {},
    )
    .await;
    assert!(matches!(err, Err(kopf::RunError::Args(_))));
}
