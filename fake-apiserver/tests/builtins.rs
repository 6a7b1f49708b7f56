//! Built-in kinds as kube-apiserver's typed decoding treats them (issue
//! 13): a missing `kind`/`apiVersion` is defaulted from the URL (Python's
//! `kubernetes` client and Kopf send none), a wrong one is refused, custom
//! resources must carry both; defaults a real cluster stores.

use bytes::Bytes;
use fake_apiserver::FakeApiServer;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn send(server: &FakeApiServer, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = server.service().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// What the Python client sends for `create_namespaced_config_map`.
#[tokio::test]
async fn built_ins_without_kind_should_be_created() {
    let server = FakeApiServer::new();
    let (code, body) = send(
        &server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "py"}, "data": {"a": "b"}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        (&body["kind"], &body["apiVersion"]),
        (&json!("ConfigMap"), &json!("v1"))
    );
    // Python Kopf's webhook configuration, as it posts it.
    let (code, body) = send(
        &server,
        "POST",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({"metadata": {"name": "auto.kopf.dev"}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "ValidatingWebhookConfiguration");
    // An update without kind, too.
    let (code, body) = send(
        &server,
        "PUT",
        "/api/v1/namespaces/default/configmaps/py",
        json!({"metadata": {"name": "py"}, "data": {"a": "c"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["a"], "c");
}

/// A kind or apiVersion given and wrong stays a 400 with kube's words.
#[tokio::test]
async fn a_wrong_kind_should_still_be_refused() {
    let server = FakeApiServer::new();
    let (code, body) = send(
        &server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        json!({"kind": "Secret", "metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "the kind in the data (Secret) does not match the expected kind (ConfigMap)"
    );
    let (code, body) = send(
        &server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "apps/v1", "metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
}

/// Custom resources are decoded as unstructured: `kind` is required.
#[tokio::test]
async fn custom_resources_without_kind_should_be_refused() {
    let server = FakeApiServer::new();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    });
    let (code, body) = send(
        &server,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        crd,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = send(
        &server,
        "POST",
        "/apis/example.com/v1/namespaces/default/widgets",
        json!({"metadata": {"name": "w"}}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "Object 'Kind' is missing in '{\"metadata\":{\"name\":\"w\"}}'"
    );
}

/// A Secret stores a type and its stringData as data, on create and update.
#[tokio::test]
async fn secrets_should_be_defaulted_as_kube_apiserver_does() {
    let server = FakeApiServer::new();
    let (code, body) = send(
        &server,
        "POST",
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["type"], "Opaque");
    assert_eq!(body["data"], json!({"user": "YWRtaW4="}));
    assert!(body.get("stringData").is_none());
    let (code, body) = send(
        &server,
        "PUT",
        "/api/v1/namespaces/default/secrets/s",
        json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"user": "YWRtaW4="},
               "stringData": {"password": "hunter2"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"user": "YWRtaW4=", "password": "aHVudGVyMg=="})
    );
}

/// `/scale` of a Deployment: read, written, and a negative count refused
/// with kube-apiserver's 422.
#[tokio::test]
async fn deployments_should_scale_through_their_scale_subresource() {
    let server = FakeApiServer::new();
    let deploy = json!({"metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    let (code, body) = send(
        &server,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        deploy,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let uri = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let (code, scale) = send(&server, "GET", uri, Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(
        scale["spec"]["replicas"], 1,
        "an unset count reads as kube's default"
    );
    let (code, body) = send(
        &server,
        "PUT",
        uri,
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web"}, "spec": {"replicas": -1}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["message"],
        "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    let (code, body) = send(
        &server,
        "PUT",
        uri,
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web"}, "spec": {"replicas": 4}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["replicas"], 4);
    let (_, deploy) = send(
        &server,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Value::Null,
    )
    .await;
    assert_eq!(deploy["spec"]["replicas"], 4);
    assert_eq!(deploy["metadata"]["generation"], 2, "a spec change");
    let (code, _) = send(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps/x/scale",
        Value::Null,
    )
    .await;
    assert_eq!(code, 404, "no /scale on kinds without one");
}

/// A Service whose type becomes NodePort gets node ports on that update,
/// keeps its cluster IP, and cannot take another Service's port.
#[tokio::test]
async fn a_service_turned_node_port_should_get_node_ports_on_update() {
    let server = FakeApiServer::new();
    let uri = "/api/v1/namespaces/default/services";
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                     "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}});
    let (code, made) = send(&server, "POST", uri, svc).await;
    assert_eq!(code, 201, "{made}");
    assert!(made["spec"]["ports"][0].get("nodePort").is_none());
    let ip = made["spec"]["clusterIP"].clone();
    let mut changed = made.clone();
    changed["spec"]["type"] = json!("NodePort");
    let (code, updated) = send(&server, "PUT", &format!("{uri}/a"), changed).await;
    assert_eq!(code, 200, "{updated}");
    let port = updated["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    assert_eq!(updated["spec"]["clusterIP"], ip);
    // Another Service's node port is refused, in kube's words.
    let other = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"},
                       "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30100}]}});
    let (code, _) = send(&server, "POST", uri, other).await;
    assert_eq!(code, 201);
    let mut taking = updated.clone();
    taking["spec"]["ports"][0]["nodePort"] = json!(30100);
    let (code, status) = send(&server, "PUT", &format!("{uri}/a"), taking).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Service \"a\" is invalid: spec.ports[0].nodePort: Invalid value: 30100: provided port is already allocated"
    );
}
