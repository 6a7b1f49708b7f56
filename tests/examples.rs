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

const CRD: &str = include_str!("../examples/crd.yaml");
const OBJ: &str = include_str!("../examples/obj.yaml");

/// A running operator against a fresh in-process cluster with the examples' CRD.
struct Running {
    server: FakeApiServer,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), kopf::OperatorError>>,
}

impl Running {
    async fn start(operator: kopf::Operator) -> Self {
        let server = FakeApiServer::new();
        server.load_str(CRD, "crd.yaml").unwrap();
        let client = server.client();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            operator.run(client.clone(), kopf::Settings::default(), async {
                let _ = stopped.await;
            }),
        );
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
        panic!("timed out waiting for {what}");
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
