//! Hostile and buggy requests (issue 15): each gets kube-apiserver's
//! `Status`, never a panic, a hang or unbounded memory, and the server
//! keeps serving afterwards.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use fake_apiserver::{
    testing::faults::{FaultAction, FaultRule},
    FakeApiServer,
};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Sends one request to the in-process service; the code, headers and body.
async fn send(
    server: &FakeApiServer,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Value) {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = server.service().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        code,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates configmaps `a`..`c` in `default`.
async fn three_configmaps(server: &FakeApiServer) {
    for name in ["a", "b", "c"] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        let (code, _, _) = send(
            server,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
        assert_eq!(code, 201);
    }
}

/// The server still answers a plain GET.
async fn still_serving(server: &FakeApiServer) {
    let (code, _, body) = send(
        server,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

fn token(rv: u64, start: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE.encode(raw)
}

/// A re-encoded continue token whose start key lies outside the listed
/// namespace is refused with 400; one past the end is an empty page.
#[tokio::test]
async fn forged_continue_tokens_should_get_400_not_a_panic() {
    let server = FakeApiServer::new();
    three_configmaps(&server).await;
    let (code, _, body) = send(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps?limit=1",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200);
    let rv: u64 = body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for start in ["kube-system/x\u{0}", "zzz/a\u{0}", "a\u{0}"] {
        let uri = format!(
            "/api/v1/namespaces/default/configmaps?limit=1&continue={}",
            token(rv, start)
        );
        let (code, _, body) = send(&server, "GET", &uri, &[], "").await;
        assert_eq!(code, 400, "{start:?}: {body}");
        assert_eq!(body["reason"], "BadRequest");
        assert_eq!(
            body["message"],
            format!(
                "continue key is not valid: {}",
                start.trim_end_matches('\u{0}')
            )
        );
    }
    // Inside the namespace but after its last key: the list is simply over.
    let uri = format!(
        "/api/v1/namespaces/default/configmaps?limit=1&continue={}",
        token(rv, "default/\u{10FFFF}")
    );
    let (code, _, body) = send(&server, "GET", &uri, &[], "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"], json!([]));
    still_serving(&server).await;
}

/// A JSON patch whose copies double a subtree (2^40 kB unbounded) stops at
/// kube-apiserver's copy budget, and more than 10,000 operations are 413.
#[tokio::test]
async fn json_patch_bombs_should_be_refused() {
    let server = FakeApiServer::new();
    three_configmaps(&server).await;
    let mut ops = vec![json!({"op": "add", "path": "/data", "value": {"k": "x".repeat(1000)}})];
    for _ in 0..40 {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
        ops.push(json!({"op": "copy", "from": "/data", "path": "/metadata/annotations/a"}));
        ops.push(json!({"op": "copy", "from": "/data", "path": "/metadata/annotations/b"}));
        ops.push(json!({"op": "move", "from": "/metadata/annotations", "path": "/data"}));
    }
    let ct = [("content-type", "application/json-patch+json")];
    let uri = "/api/v1/namespaces/default/configmaps/a";
    let (code, _, body) = send(
        &server,
        "PATCH",
        uri,
        &ct,
        serde_json::to_vec(&ops).unwrap(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (422, Some("Invalid")),
        "{body}"
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .ends_with("exceeding the limit 3145728"));
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "ConfigMap"}))
        .collect();
    let (code, _, body) = send(
        &server,
        "PATCH",
        uri,
        &ct,
        serde_json::to_vec(&many).unwrap(),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(
        body["message"],
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    still_serving(&server).await;
}

/// YAML nested 100,000 levels deep, as a create body and as an apply
/// patch, is refused before it is parsed.
#[tokio::test]
async fn deeply_nested_yaml_should_be_refused_at_once() {
    let server = FakeApiServer::new();
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, _, body) = send(
        &server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[("content-type", "application/yaml")],
        deep.clone(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "error converting YAML to JSON: yaml: exceeded max depth of 1000"
    );
    let (code, _, body) = send(
        &server,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/deep?fieldManager=m",
        &[("content-type", "application/apply-patch+yaml")],
        deep,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "error decoding YAML: yaml: exceeded max depth of 1000"
    );
    still_serving(&server).await;
}

/// A media type nobody serves gets 406 with the ones served, per kind.
#[tokio::test]
async fn unservable_accept_headers_should_get_406() {
    let server = FakeApiServer::new();
    let (code, _, body) = send(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[("accept", "application/xml")],
        "",
    )
    .await;
    assert_eq!(code, 406);
    assert_eq!(body["reason"], "NotAcceptable");
    assert_eq!(
        body["message"],
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    let (code, _, _) = send(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[(
            "accept",
            "application/vnd.kubernetes.protobuf,application/json",
        )],
        "",
    )
    .await;
    assert_eq!(code, 200, "kubectl's Accept header");
}

/// A watch at a resourceVersion the server has not reached waits 3 s (on
/// the server's clock), then gets kube-apiserver's 504 with Retry-After.
#[tokio::test(start_paused = true)]
async fn a_watch_far_in_the_future_should_time_out_with_504() {
    let server = FakeApiServer::new();
    let started = tokio::time::Instant::now();
    let (code, headers, body) = send(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=999999",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 504, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["reason"], "Timeout");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Timeout: Too large resource version: 999999, current: "),
        "{message}"
    );
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}])
    );
}

/// kube-apiserver treats a negative grace period as 1 s on the delete path
/// (registry/rest/delete.go): the delete is accepted.
#[tokio::test]
async fn a_negative_grace_period_should_delete_as_kube_does() {
    let server = FakeApiServer::new();
    three_configmaps(&server).await;
    let (code, _, body) = send(
        &server,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/a?gracePeriodSeconds=-5",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// A panic in a handler (a test-only fault action) answers 500 with
/// kube-apiserver's wording, and the server keeps serving.
#[tokio::test]
async fn a_panic_in_a_handler_should_be_a_500_and_the_server_should_live_on() {
    let server = FakeApiServer::new();
    server
        .injector()
        .add_fault(FaultRule::new(&["list"], "configmaps", FaultAction::Panic).times(1));
    let (code, _, body) = send(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 500);
    assert_eq!(body["reason"], "InternalError");
    assert_eq!(
        body["message"],
        "This request caused apiserver to panic. Look in the logs for details."
    );
    still_serving(&server).await;
}

/// An object over etcd's 1.5 MiB is refused as kube-apiserver passes on
/// etcd's refusal (500, no reason), on create and when patches grow it;
/// the stored object is left as it was.
#[tokio::test]
async fn objects_over_etcds_limit_should_be_refused_and_nothing_stored() {
    let server = FakeApiServer::new();
    let uri = "/api/v1/namespaces/default/configmaps";
    let json = [("content-type", "application/json")];
    let big = "x".repeat(1600 * 1024);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": big}});
    let (code, _, status) = send(&server, "POST", uri, &json, body.to_string()).await;
    assert_eq!(code, 500, "{status}");
    assert_eq!(status["message"], "etcdserver: request is too large");
    assert_eq!(status.get("reason"), None);
    let (code, _, _) = send(&server, "GET", &format!("{uri}/big"), &[], "").await;
    assert_eq!(code, 404);

    // Each patch is well under the body limit; the third would pass etcd's.
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grows"}});
    let (code, _, _) = send(&server, "POST", uri, &json, body.to_string()).await;
    assert_eq!(code, 201);
    let merge = [("content-type", "application/merge-patch+json")];
    let chunk = "y".repeat(600 * 1024);
    for (i, expected) in [(1, 200), (2, 200), (3, 500)] {
        let patch = json!({"data": {format!("k{i}"): chunk}});
        let (code, _, body) = send(
            &server,
            "PATCH",
            &format!("{uri}/grows"),
            &merge,
            patch.to_string(),
        )
        .await;
        assert_eq!(code, expected, "patch {i}: {}", body["message"]);
    }
    let (_, _, stored) = send(&server, "GET", &format!("{uri}/grows"), &[], "").await;
    let keys: Vec<&String> = stored["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["k1", "k2"]);
    still_serving(&server).await;
}

/// Long lists merge in linear time: a strategic merge patch reordering
/// 3,000 containers and a server-side apply of them answer correctly (a
/// quadratic merge once took 50 s for 5,000 in a release build).
#[tokio::test]
async fn long_lists_should_merge_by_key_through_smp_and_apply() {
    let server = FakeApiServer::new();
    let n = 3000;
    let uri = "/api/v1/namespaces/default/pods";
    let containers = |image: &str| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("c{i}"), "image": image}))
            .collect()
    };
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "long"},
                     "spec": {"containers": containers("a")}});
    let json = [("content-type", "application/json")];
    let (code, _, _) = send(&server, "POST", uri, &json, pod.to_string()).await;
    assert_eq!(code, 201);
    let order: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"name": format!("c{i}")}))
        .collect();
    let patch =
        json!({"spec": {"containers": containers("b"), "$setElementOrder/containers": order}});
    let smp = [("content-type", "application/strategic-merge-patch+json")];
    let (code, _, body) = send(
        &server,
        "PATCH",
        &format!("{uri}/long"),
        &smp,
        patch.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{}", body["message"]);
    let got = body["spec"]["containers"].as_array().unwrap();
    assert_eq!(got.len(), n);
    assert_eq!(
        (got[0]["name"].clone(), got[0]["image"].clone()),
        (json!(format!("c{}", n - 1)), json!("b"))
    );
    assert_eq!(got[n - 1]["name"], "c0");
    // Apply takes the images over (forced: the patch's manager owns them).
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "long"},
                        "spec": {"containers": containers("c")}});
    let apply = [("content-type", "application/apply-patch+yaml")];
    let (code, _, body) = send(
        &server,
        "PATCH",
        &format!("{uri}/long?fieldManager=me&force=true"),
        &apply,
        config.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{}", body["message"]);
    let got = body["spec"]["containers"].as_array().unwrap();
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|c| c["image"] == "c"));
}
