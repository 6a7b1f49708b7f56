//! What a scheduler and a kubelet need of the API (issue 17): the
//! `pods/binding` subresource, graceful deletion of pods bound to a node,
//! and the pod defaults kube-apiserver stores. Expected values are
//! kube-apiserver's documented answers.

use bytes::Bytes;
use fake_apiserver::FakeApiServer;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn send(server: &FakeApiServer, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(
            "content-type",
            if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            },
        )
        .header(
            "user-agent",
            "kube-scheduler/v1.34.0 (linux/amd64) kubernetes/abc",
        )
        .body(Full::new(Bytes::from(if body.is_null() {
            String::new()
        } else {
            body.to_string()
        })))
        .unwrap();
    let resp = server.service().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const PODS: &str = "/api/v1/namespaces/default/pods";

async fn pod(server: &FakeApiServer, name: &str) -> Value {
    let (code, body) = send(
        server,
        "POST",
        PODS,
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body
}

#[tokio::test]
async fn a_binding_should_assign_the_pod_once() {
    let server = FakeApiServer::new();
    let created = pod(&server, "p").await;
    assert_eq!(
        created["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
    assert_eq!(created["spec"]["schedulerName"], "default-scheduler");
    assert_eq!(
        created["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );

    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"kind": "Node", "name": "node-1"}});
    let (code, body) = send(
        &server,
        "POST",
        &format!("{PODS}/p/binding"),
        binding.clone(),
    )
    .await;
    assert_eq!((code, &body["status"]), (201, &json!("Success")), "{body}");
    let (_, bound) = send(&server, "GET", &format!("{PODS}/p"), Value::Null).await;
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let scheduled = &bound["status"]["conditions"][0];
    assert_eq!(
        (&scheduled["type"], &scheduled["status"]),
        (&json!("PodScheduled"), &json!("True"))
    );

    let (code, body) = send(&server, "POST", &format!("{PODS}/p/binding"), binding).await;
    assert_eq!(code, 409);
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\""
    );
}

#[tokio::test]
async fn a_binding_should_be_validated() {
    let server = FakeApiServer::new();
    pod(&server, "p").await;
    let (code, body) = send(
        &server,
        "POST",
        &format!("{PODS}/p/binding"),
        json!({"metadata": {"name": "q"}, "target": {"name": "n"}}),
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str().unwrap()),
        (400, "name in URL does not match name in Binding object")
    );
    let (code, body) = send(
        &server,
        "POST",
        &format!("{PODS}/p/binding"),
        json!({"metadata": {"name": "p"}, "target": {"kind": "Pod"}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["message"],
        "Binding \"p\" is invalid: [target.kind: Invalid value: \"Pod\": must be empty or 'Node', target.name: Required value]"
    );
    let (code, _) = send(&server, "GET", &format!("{PODS}/p/binding"), Value::Null).await;
    assert_eq!(code, 405);
    let (code, _) = send(
        &server,
        "POST",
        &format!("{PODS}/missing/binding"),
        json!({"metadata": {"name": "missing"}, "target": {"name": "n"}}),
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn writes_without_a_field_manager_should_be_managed_by_the_user_agent() {
    let server = FakeApiServer::new();
    let created = pod(&server, "p").await;
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "kube-scheduler"
    );
}

#[tokio::test]
async fn discovery_should_list_pods_binding() {
    let server = FakeApiServer::new();
    let (_, list) = send(&server, "GET", "/api/v1", Value::Null).await;
    let binding = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/binding")
        .cloned();
    assert_eq!(
        binding.map(|b| (b["kind"].clone(), b["verbs"].clone())),
        Some((json!("Binding"), json!(["create"])))
    );
}

#[tokio::test]
async fn a_bound_pod_should_be_deleted_gracefully_when_a_kubelet_runs() {
    let server = FakeApiServer::builder()
        .clock(fake_apiserver::Clock::Fixed(1_700_000_000))
        .graceful_pods(true)
        .build();
    pod(&server, "p").await;
    pod(&server, "unbound").await;
    send(
        &server,
        "POST",
        &format!("{PODS}/p/binding"),
        json!({"metadata": {"name": "p"}, "target": {"name": "n"}}),
    )
    .await;

    // Unscheduled: at once.
    let (code, _) = send(&server, "DELETE", &format!("{PODS}/unbound"), Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(
        send(&server, "GET", &format!("{PODS}/unbound"), Value::Null)
            .await
            .0,
        404
    );

    // Bound: terminationGracePeriodSeconds (30, defaulted) from now.
    let (code, body) = send(&server, "DELETE", &format!("{PODS}/p"), Value::Null).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["metadata"]["deletionTimestamp"],
        "2023-11-14T22:13:50Z"
    );
    assert_eq!(body["metadata"]["deletionGracePeriodSeconds"], 30);
    // A longer period changes nothing, a shorter one shortens it.
    let (_, body) = send(
        &server,
        "DELETE",
        &format!("{PODS}/p?gracePeriodSeconds=60"),
        Value::Null,
    )
    .await;
    assert_eq!(body["metadata"]["deletionGracePeriodSeconds"], 30);
    let (_, body) = send(
        &server,
        "DELETE",
        &format!("{PODS}/p"),
        json!({"gracePeriodSeconds": 5}),
    )
    .await;
    assert_eq!(
        body["metadata"]["deletionTimestamp"],
        "2023-11-14T22:13:25Z"
    );
    // A status write by the kubelet meanwhile keeps it.
    let (code, _) = send(
        &server,
        "PATCH",
        &format!("{PODS}/p/status"),
        json!({"status": {"phase": "Running"}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        send(&server, "GET", &format!("{PODS}/p"), Value::Null)
            .await
            .0,
        200
    );
    // The kubelet's final delete, with no grace: gone.
    let (code, _) = send(
        &server,
        "DELETE",
        &format!("{PODS}/p?gracePeriodSeconds=0"),
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        send(&server, "GET", &format!("{PODS}/p"), Value::Null)
            .await
            .0,
        404
    );
    let (code, body) = send(
        &server,
        "DELETE",
        &format!("{PODS}/x?gracePeriodSeconds=soon"),
        Value::Null,
    )
    .await;
    assert_eq!(code, 400, "{body}");
}
