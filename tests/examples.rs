//! Kopf's examples, ported, each run against the in-process fake API server
//! and checked for what Kopf's own end-to-end tests check: the handlers'
//! log lines and events, each handler succeeding exactly once, status
//! written, progress purged, finalizers added and removed.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Event;
use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
    Client,
};
use serde_json::Value;

#[path = "../examples/01-minimal.rs"]
mod minimal;

#[path = "../examples/02-children.rs"]
mod children;

#[path = "../examples/04-events.rs"]
mod events;

#[path = "../examples/08-events.rs"]
mod watch_events;

#[path = "../examples/10-builtins.rs"]
mod builtins;

#[path = "../examples/12-embedded.rs"]
mod embedded;

#[path = "../examples/99-all-at-once.rs"]
mod all_at_once;

#[path = "../examples/03-exceptions.rs"]
mod exceptions;

#[path = "../examples/05-handlers.rs"]
mod handlers;

const CRD: &str = include_str!("../examples/crd.yaml");
const OBJ: &str = include_str!("../examples/obj.yaml");

/// Settings as Kopf's end-to-end tests use them (a 1-second default
/// backoff), with progress timestamps following tokio's paused clock.
fn test_settings() -> kopf::Settings {
    let mut settings = kopf::Settings::default();
    settings.execution.default_backoff = Duration::from_secs(1);
    settings.clock = kopf::Clock::tokio_from(1_700_000_000);
    settings
}

/// A running operator against a fresh in-process cluster with the examples' CRD.
struct Running {
    server: FakeApiServer,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), kopf::OperatorError>>,
}

impl Running {
    async fn start(operator: kopf::Operator) -> Self {
        Self::start_with(operator, test_settings()).await
    }

    async fn start_with(operator: kopf::Operator, settings: kopf::Settings) -> Self {
        let server = FakeApiServer::new();
        server.load_str(CRD, "crd.yaml").unwrap();
        let client = server.client();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(operator.run(client.clone(), settings, async {
            let _ = stopped.await;
        }));
        Running {
            server,
            client,
            stop: Some(stop),
            task,
        }
    }

    fn examples(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kopf.dev", "v1", "KopfExample"),
            "kopfexamples",
        );
        Api::namespaced_with(self.client.clone(), "default", &ar)
    }

    async fn create_example(&self) -> DynamicObject {
        let obj: DynamicObject = serde_yaml::from_str(OBJ).unwrap();
        self.examples()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap()
    }

    /// Waits (in virtual time) until `cond` holds for the example object.
    async fn wait_for(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            if let Ok(obj) = self.examples().get("kopf-example-1").await {
                let v = serde_json::to_value(&obj).unwrap();
                if cond(&v) {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let obj = self.examples().get("kopf-example-1").await.ok();
        panic!(
            "timed out waiting for {what}; object: {}; events: {:?}",
            serde_json::to_string(&obj).unwrap_or_default(),
            self.event_messages().await
        );
    }

    /// The messages of the Events posted about the example object.
    async fn event_messages(&self) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let mut list = events
            .list(&ListParams::default().fields("involvedObject.name=kopf-example-1"))
            .await
            .unwrap()
            .items;
        list.sort_by_key(|e| {
            e.metadata
                .resource_version
                .clone()
                .unwrap_or_default()
                .parse::<u64>()
                .unwrap_or(0)
        });
        list.into_iter().filter_map(|e| e.message).collect()
    }

    async fn patch_example(&self, patch: serde_json::Value) {
        self.examples()
            .patch(
                "kopf-example-1",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .unwrap();
    }

    async fn delete_example(&self) {
        self.examples()
            .delete("kopf-example-1", &kube::api::DeleteParams::default())
            .await
            .unwrap();
    }

    async fn wait_gone(&self) {
        for _ in 0..600 {
            if self
                .examples()
                .get_opt("kopf-example-1")
                .await
                .unwrap()
                .is_none()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for the deletion");
    }

    /// How many events say `"Handler 'id' succeeded."`, per handler id.
    async fn counts(&self, pattern: &str) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for m in self.event_messages().await {
            if let Some(rest) = m.strip_prefix("Handler '") {
                if let Some((id, tail)) = rest.split_once('\'') {
                    if tail.trim_start().starts_with(pattern) {
                        *counts.entry(id.to_string()).or_insert(0) += 1;
                    }
                }
            }
        }
        counts
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
        drop(self.server);
    }
}

/// 01-minimal: create_fn runs once, its result is the status, no finalizer,
/// progress purged, the diff-base stored, and Kopf's messages posted as Events.
#[tokio::test(start_paused = true)]
async fn example_01_minimal_should_handle_creation_once() {
    let running = Running::start(minimal::operator()).await;
    running.create_example().await;
    let obj = running
        .wait_for("status.create_fn", |v| {
            v["status"]["create_fn"]["message"] == "hello world"
        })
        .await;
    let annotations = obj["metadata"]["annotations"].as_object().unwrap();
    assert!(annotations.contains_key("kopf.zalando.org/last-handled-configuration"));
    assert!(
        !annotations.contains_key("kopf.zalando.org/create_fn"),
        "progress is purged once handled"
    );
    assert!(
        obj["metadata"].get("finalizers").is_none(),
        "no delete handlers, no finalizer"
    );
    // Let everything settle, then check what was said, and that it was said once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let messages = running.event_messages().await;
    let creating: Vec<_> = messages
        .iter()
        .filter(|m| m.starts_with("And here we are! Creating: "))
        .collect();
    assert_eq!(creating.len(), 1, "{messages:?}");
    assert!(
        creating[0].contains("\"field\":\"value\""),
        "{}",
        creating[0]
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| *m == "Handler 'create_fn' succeeded.")
            .count(),
        1,
        "{messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| *m == "Creation is processed: 1 succeeded; 0 failed.")
            .count(),
        1
    );
    running.stop().await;
}

fn counts(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// 03-exceptions: permanent errors stop at once, temporary ones retry until
/// success, unexpected ones follow retries and errors mode; exactly Kopf's
/// success and failure counts.
#[tokio::test(start_paused = true)]
async fn example_03_exceptions_should_count_successes_and_failures_like_kopf() {
    let running = Running::start(exceptions::operator()).await;
    running.create_example().await;
    running
        .wait_for("creation handled", |v| {
            v["metadata"]["annotations"]
                .get("kopf.zalando.org/last-handled-configuration")
                .is_some()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        running.counts("succeeded").await,
        counts(&[("eventual_success_with_a_few_messages", 1)])
    );
    let mut failures = running.counts("failed permanently").await;
    for (k, v) in running
        .counts("failed with an exception and will stop")
        .await
    {
        *failures.entry(k).or_insert(0) += v;
    }
    assert_eq!(
        failures,
        counts(&[
            ("eventual_failure_with_tracebacks", 1),
            ("instant_failure_with_only_a_message", 1),
            ("instant_failure_with_traceback", 1),
        ])
    );
    let messages = running.event_messages().await;
    assert_eq!(
        messages.iter().filter(|m| *m == "Handler 'eventual_success_with_a_few_messages' failed temporarily: Expected recoverable error.").count(),
        3,
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m == "Handler 'eventual_failure_with_tracebacks' failed with an exception and will try again in 1.0 seconds: An error that is supposed to be recoverable."));
    assert!(
        messages
            .iter()
            .any(|m| m == "Creation is processed: 1 succeeded; 3 failed."),
        "{messages:?}"
    );
    running.delete_example().await;
    running.wait_gone().await;
    running.stop().await;
}

/// 05-handlers: create handlers in order on creation (resume handlers only
/// for objects found at start), update and field handlers on a change, delete
/// handlers holding a finalizer until they succeed; each exactly once.
#[tokio::test(start_paused = true)]
async fn example_05_handlers_should_run_each_handler_once_in_order() {
    let running = Running::start(handlers::operator()).await;
    running.create_example().await;
    let obj = running
        .wait_for("creation handled", |v| {
            v["metadata"]["annotations"]
                .get("kopf.zalando.org/last-handled-configuration")
                .is_some()
        })
        .await;
    assert_eq!(
        obj["metadata"]["finalizers"],
        serde_json::json!(["kopf.zalando.org/KopfFinalizerMarker"])
    );
    running
        .patch_example(serde_json::json!({"spec": {"field": "newvalue", "newfield": 100}}))
        .await;
    running
        .wait_for("update handled", |v| {
            v["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"]
                .as_str()
                .is_some_and(|s| s.contains("newvalue"))
        })
        .await;
    running.delete_example().await;
    running.wait_gone().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        running.counts("succeeded").await,
        counts(&[
            ("create_fn_1", 1),
            ("create_fn_2", 1),
            ("delete_fn_1", 1),
            ("delete_fn_2", 1),
            ("field_fn/spec.field", 1),
            ("update_fn", 1),
        ])
    );
    let messages = running.event_messages().await;
    let said = |m: &str| {
        messages
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m:?} not in {messages:?}"))
    };
    assert!(said("CREATED 1st") < said("CREATED 2nd"));
    assert!(said("DELETED 1st") < said("DELETED 2nd"));
    // Kopf's example prints `f'FIELD CHANGED: {old} -> {new}'`: Python's str().
    said("FIELD CHANGED: value -> newvalue");
    said("UPDATED");
    said("Updating is processed: 2 succeeded; 0 failed.");
    said("Deletion is processed: 2 succeeded; 0 failed.");
    assert!(
        !messages.iter().any(|m| m.starts_with("RESUMED")),
        "nothing existed at start"
    );
    running.stop().await;
}

/// 05-handlers, restarted: an object handled before the operator started gets
/// the resume handlers (and only them) when the operator starts again.
#[tokio::test(start_paused = true)]
async fn example_05_handlers_should_resume_objects_found_at_start() {
    let running = Running::start(handlers::operator()).await;
    running.create_example().await;
    running
        .wait_for("creation handled", |v| {
            v["metadata"]["annotations"]
                .get("kopf.zalando.org/last-handled-configuration")
                .is_some()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Restart the operator against the same cluster.
    let server = running.server.clone();
    let client = running.client.clone();
    if let Some(stop) = running.stop {
        let _ = stop.send(());
    }
    running.task.await.unwrap().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        handlers::operator().run(client.clone(), test_settings(), async {
            let _ = stopped.await;
        }),
    );
    let restarted = Running {
        server,
        client,
        stop: Some(stop),
        task,
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = restarted.counts("succeeded").await;
    assert_eq!(got.get("resume_fn_1"), Some(&1), "{got:?}");
    assert_eq!(got.get("resume_fn_2"), Some(&1), "{got:?}");
    assert_eq!(
        got.get("create_fn_1"),
        Some(&1),
        "creation is not repeated: {got:?}"
    );
    restarted.stop().await;
}

/// 02-children: the child Pod is created once, owned by the parent, in its
/// namespace, with its labels; its uid is in the parent's status.
#[tokio::test(start_paused = true)]
async fn example_02_children_should_create_an_adopted_pod() {
    let running = Running::start(children::operator()).await;
    running.create_example().await;
    let obj = running
        .wait_for("status.create_fn.children", |v| {
            v["status"]["create_fn"]["children"].is_array()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(running.client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels("somelabel=somevalue"))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 1, "exactly one child");
    let pod = &list[0];
    assert_eq!(
        obj["status"]["create_fn"]["children"][0],
        serde_json::json!(pod.metadata.uid)
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.name, "kopf-example-1");
    assert_eq!(owner.kind, "KopfExample");
    assert_eq!(Some(owner.uid.as_str()), obj["metadata"]["uid"].as_str());
    assert!(pod
        .metadata
        .name
        .as_ref()
        .unwrap()
        .starts_with("kopf-example-1-"));
    let env = &pod.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()[0];
    assert_eq!(env.value.as_deref(), Some("value"));
    assert_eq!(
        running.counts("succeeded").await,
        counts(&[("create_fn", 1)])
    );
    running.stop().await;
}

/// 04-events: the handler's own events are posted with their types and reasons.
#[tokio::test(start_paused = true)]
async fn example_04_events_should_post_every_kind_of_event() {
    let running = Running::start(events::operator()).await;
    running.create_example().await;
    running
        .wait_for("creation handled", |v| {
            v["metadata"]["annotations"]
                .get("kopf.zalando.org/last-handled-configuration")
                .is_some()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Api<Event> = Api::namespaced(running.client.clone(), "default");
    let list = events
        .list(&ListParams::default().fields("involvedObject.name=kopf-example-1,reason=SomeReason"))
        .await
        .unwrap()
        .items;
    let mut seen: Vec<(String, String)> = list
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "Error".to_string(),
                "Some exception: Exception text.".to_string()
            ),
            ("Normal".to_string(), "Some message".to_string()),
            ("SomeType".to_string(), "Some message".to_string()),
            ("Warning".to_string(), "Some message".to_string()),
        ]
    );
    assert_eq!(
        running.counts("succeeded").await,
        counts(&[("create_fn", 1)])
    );
    running.stop().await;
}

/// 08-events: both event handlers see the ADDED and DELETED events; the
/// failing one is logged and ignored; no finalizer, no progress, no status.
#[tokio::test(start_paused = true)]
async fn example_08_events_should_see_every_event_fire_and_forget() {
    let sink = kopf::LogSink::default();
    let mut settings = test_settings();
    settings.log_sink = Some(sink.clone());
    let running = Running::start_with(watch_events::operator(), settings).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.create_example().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let obj = running.examples().get("kopf-example-1").await.unwrap();
    assert!(obj.metadata.finalizers.is_none());
    assert!(obj
        .metadata
        .annotations
        .as_ref()
        .is_none_or(|a| !a.keys().any(|k| k.starts_with("kopf.zalando.org/"))));
    running.delete_example().await;
    running.wait_gone().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logs = sink.messages().join("\n");
    assert_eq!(
        logs.matches("Handler 'normal_event_fn' succeeded.").count(),
        2,
        "{logs}"
    );
    assert!(
        logs.contains("[default/kopf-example-1] Event received: \"ADDED\""),
        "{logs}"
    );
    assert!(
        logs.contains("[default/kopf-example-1] Event received: \"DELETED\""),
        "{logs}"
    );
    assert_eq!(
        logs.matches(
            "Handler 'event_fn_with_error' failed with an exception and will ignore it: Oops!"
        )
        .count(),
        2,
        "{logs}"
    );
    running.stop().await;
}

/// Counts `'<id>' succeeded` in log lines, as Kopf's e2e tests do.
fn log_counts(lines: &[String], pattern: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in lines {
        if let Some(start) = line
            .find(" '")
            .map(|i| i + 2)
            .or_else(|| line.find('\'').map(|i| i + 1))
        {
            if let Some(len) = line[start..].find('\'') {
                let (id, tail) = (&line[start..start + len], &line[start + len + 1..]);
                if tail.trim_start().starts_with(pattern) {
                    *counts.entry(id.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

/// 12-embedded: the operator runs inside another application, sees the
/// memo the application gave it, and stops when the application says so.
#[tokio::test(start_paused = true)]
async fn example_12_embedded_should_run_inside_an_application() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd.yaml").unwrap();
    let sink = kopf::LogSink::default();
    let mut settings = test_settings();
    settings.log_sink = Some(sink.clone());
    embedded::app(server.client(), settings, 3).await.unwrap();
    let messages = sink.messages();
    for step in 1..=3 {
        let name = format!("kopf-example-{step}");
        assert!(
            messages.contains(&format!("[default/{name}] Hello, {name}!")),
            "{messages:?}"
        );
        assert!(
            messages.contains(&format!("[default/{name}] Good bye, {name}!")),
            "{messages:?}"
        );
    }
}

/// 99-all-at-once: Kopf's success counts for activities and handlers, the
/// child pod seen by the label-filtered event handler, status results.
#[tokio::test(start_paused = true)]
async fn example_99_all_at_once_should_match_kopfs_success_counts() {
    let sink = kopf::LogSink::default();
    let mut settings = test_settings();
    settings.log_sink = Some(sink.clone());
    let running = Running::start_with(all_at_once::operator(), settings).await;
    running.create_example().await;
    let obj = running
        .wait_for("creation handled", |v| {
            v["metadata"]["annotations"]
                .get("kopf.zalando.org/last-handled-configuration")
                .is_some()
        })
        .await;
    assert_eq!(obj["status"]["create_1"]["job1-status"], 100);
    assert_eq!(obj["status"]["create_2"]["job2-status"], 100);
    running
        .patch_example(serde_json::json!({"spec": {"lst": ["a", "b"]}}))
        .await;
    running
        .wait_for("update handled", |v| {
            v["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"]
                .as_str()
                .is_some_and(|s| s.contains("lst"))
        })
        .await;
    running.delete_example().await;
    running.wait_gone().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warnings: Vec<String> = running.event_messages().await;
    assert!(
        warnings.contains(&"Cannot do something".to_string()),
        "{warnings:?}"
    );
    running.stop().await;
    let lines = sink.messages();
    let succeeded = log_counts(&lines, "succeeded");
    let expected = [
        ("create_1", 1),
        ("create_2", 1),
        ("create_pod", 1),
        ("delete", 1),
        ("startup_fn_simple", 1),
        ("startup_fn_retried", 1),
        ("cleanup_fn", 1),
    ];
    for (id, n) in expected {
        assert_eq!(succeeded.get(id), Some(&n), "{id}: {succeeded:?}");
    }
    assert_eq!(
        log_counts(&lines, "failed permanently"),
        Default::default(),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("This pod is special for us.")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(
            |l| l == "Activity 'startup_fn_retried' failed temporarily: Going to succeed in 3s"
        ),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("Handling the FIELD = None -> [\"a\",\"b\"]")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "[default/kopf-example-1] Deleted, really deleted, and we are notified."),
        "{lines:?}"
    );
}

async fn make_pod(client: &Client) -> String {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "kopf-pod-"},
        "spec": {"containers": [{"name": "the-only-one", "image": "busybox", "command": ["sh", "-x", "-c", "sleep 1"]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap()
        .metadata
        .name
        .unwrap()
}

/// 10-builtins: a pod deleted before its killer fires cancels it (the
/// deletion waits for the delete handler through the finalizer).
#[tokio::test(start_paused = true)]
async fn example_10_builtins_should_cancel_the_killer_on_deletion() {
    let sink = kopf::LogSink::default();
    let mut settings = test_settings();
    settings.log_sink = Some(sink.clone());
    let running = Running::start_with(builtins::operator(), settings).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let name = make_pod(&running.client).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(running.client.clone(), "default");
    let pod = pods.get(&name).await.unwrap();
    assert_eq!(
        pod.metadata.finalizers,
        Some(vec!["kopf.zalando.org/KopfFinalizerMarker".to_string()])
    );
    pods.delete(&name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pods.get_opt(&name).await.unwrap().is_none(),
        "the finalizer was released"
    );
    let lines = sink.messages();
    for expected in [
        format!("[default/{name}] Creation is in progress:"),
        format!("[default/{name}] === Pod killing happens in 30s."),
        format!("[default/{name}] Deletion is in progress:"),
        format!("[default/{name}] === Pod killing is cancelled!"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&expected)),
            "{expected:?} not in {lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("happens NOW")),
        "{lines:#?}"
    );
    running.stop().await;
}

/// 10-builtins: a pod left alone is deleted by its killer after 30 s.
#[tokio::test(start_paused = true)]
async fn example_10_builtins_should_kill_pods_after_30_seconds() {
    let sink = kopf::LogSink::default();
    let mut settings = test_settings();
    settings.log_sink = Some(sink.clone());
    let running = Running::start_with(builtins::operator(), settings).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let name = make_pod(&running.client).await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(running.client.clone(), "default");
    assert!(
        pods.get_opt(&name).await.unwrap().is_none(),
        "killed and finalized"
    );
    let lines = sink.messages();
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("[default/{name}] === Pod killing happens NOW!")),
        "{lines:#?}"
    );
    running.stop().await;
}

/// The values 05-handlers prints read as Python's `str()` of them (the
/// expected text is what Python prints for the same values).
#[test]
fn example_05_should_show_values_as_python_prints_them() {
    use serde_json::json;
    let show = |v: serde_json::Value| handlers::py_str(Some(&v));
    assert_eq!(
        show(json!({"a": 1, "b": [null, true, "x"]})),
        "{'a': 1, 'b': [None, True, 'x']}"
    );
    assert_eq!(handlers::py_str(None), "None");
    assert_eq!(show(json!(1.5)), "1.5");
    assert_eq!(show(json!("s")), "s");
}
