//! Load and slow clients (issue 15), as behaviour, not timings: a
//! saturated server answers 429 with `Retry-After`; a watcher that never
//! reads is ended without holding up the others; a client trickling its
//! headers is cut off; a thousand connections are served at once.
//! The figures (throughput, memory over 100,000 writes) are in
//! `benches/soak.rs` and docs/BENCHMARKS.md.

use std::time::Duration;

use bytes::Bytes;
use fake_apiserver::{
    endpoints::inflight::Limits,
    storage::watch::UNRESPONSIVE_WATCHER,
    testing::faults::{FaultAction, FaultRule},
    FakeApiServer,
};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A request as an anonymous client (no token: not `system:masters`).
fn request(method: &str, uri: &str, body: Value) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_saturated_server_should_answer_429_with_retry_after() {
    let server = FakeApiServer::builder()
        .limits(Limits {
            max_requests_inflight: 2,
            max_mutating_requests_inflight: 1,
            ..Limits::default()
        })
        .build();
    // Lists of configmaps take a (virtual) second: two fill the pool.
    server.injector().add_fault(FaultRule::new(
        &["list"],
        "configmaps",
        FaultAction::Delay { millis: 1000 },
    ));
    let list = || {
        server.service().oneshot(request(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            Value::Null,
        ))
    };
    let (a, b) = (tokio::spawn(list()), tokio::spawn(list()));
    tokio::task::yield_now().await;
    let refused = list().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let status: Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Too many requests, please try again later.",
               "reason": "TooManyRequests", "details": {"retryAfterSeconds": 1}, "code": 429})
    );
    // Writes have their own pool; the administrator (system:masters) and
    // watches are never counted.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}});
    let created = server
        .service()
        .oneshot(request("POST", "/api/v1/namespaces/default/configmaps", cm))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let admin = server
        .client()
        .request_text(
            http::Request::get("/api/v1/namespaces/default/configmaps")
                .body(Vec::new())
                .unwrap(),
        )
        .await;
    assert!(admin.is_ok(), "{admin:?}");
    let watch = server
        .service()
        .oneshot(request(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true",
            Value::Null,
        ))
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    // Once the two are answered, there is room again.
    assert_eq!(a.await.unwrap().unwrap().status(), 200);
    assert_eq!(b.await.unwrap().unwrap().status(), 200);
    assert_eq!(list().await.unwrap().status(), 200);
}

/// Reads a watch body to its end; its event lines.
async fn lines_of(body: fake_apiserver::ResponseBody) -> Vec<Value> {
    let bytes = body.collect().await.unwrap().to_bytes();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_watcher_that_never_reads_should_be_ended_and_hold_up_no_one() {
    let server = FakeApiServer::new();
    let watch = || {
        server.service().oneshot(request(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
            Value::Null,
        ))
    };
    let stalled = watch().await.unwrap().into_body();
    let mut reading = watch().await.unwrap().into_body();
    let reader = tokio::spawn(async move {
        let (mut buf, mut names) = (Vec::new(), Vec::new());
        while names.len() < 1000 {
            let frame = reading
                .frame()
                .await
                .expect("the reading watch goes on")
                .unwrap();
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
            }
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let event: Value = serde_json::from_slice(&line).unwrap();
                names.push(
                    event["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
        names
    });
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(server.client(), "default");
    for i in 0..1000 {
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.name = Some(format!("cm-{i}"));
        cms.create(&Default::default(), &cm).await.unwrap();
    }
    // The reading watcher saw every event, in order.
    let names = reader.await.unwrap();
    assert_eq!(
        names,
        (0..1000).map(|i| format!("cm-{i}")).collect::<Vec<_>>()
    );
    // Past the budget, the stalled watch is ended: its body ends after
    // what was buffered, far short of the 1000 events.
    tokio::time::sleep(UNRESPONSIVE_WATCHER * 2).await;
    let got = tokio::time::timeout(Duration::from_secs(60), lines_of(stalled))
        .await
        .expect("the unread watch was ended");
    assert!(
        !got.is_empty() && got.len() < 1000,
        "the unread watch got {} events",
        got.len()
    );
}

#[tokio::test]
async fn a_client_trickling_its_headers_should_be_cut_off() {
    let server = FakeApiServer::builder()
        .limits(Limits {
            request_header_timeout: Duration::from_millis(500),
            ..Limits::default()
        })
        .build();
    let serving = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = serving.local_addr();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header every 100 ms: never a complete head.
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return i,
                _ => {}
            }
        }
        unreachable!()
    };
    // A generous guard so a regression fails instead of hanging.
    tokio::time::timeout(Duration::from_secs(60), trickle)
        .await
        .expect("the server cut the trickling client off");
    // Others are served meanwhile and after.
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    other
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_should_be_served_at_once() {
    let server = FakeApiServer::new();
    let serving = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = serving.local_addr();
    // Open every connection first, then send every request, then read.
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for s in &mut streams {
        s.write_all(
            b"GET /api/v1/namespaces/default HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    }
    let answers = futures::future::join_all(streams.into_iter().map(|mut s| async move {
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.map(|_| answer)
    }))
    .await;
    let mut codes = std::collections::BTreeMap::new();
    for a in answers {
        let a = a.unwrap();
        *codes
            .entry(a.get(9..12).unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    // Anonymous GETs count against the 400 in flight: each is answered,
    // 200, or 429 if too many were in flight at one moment.
    let served = codes.get("200").copied().unwrap_or(0);
    let refused = codes.get("429").copied().unwrap_or(0);
    assert_eq!(served + refused, 1000, "{codes:?}");
    assert!(served >= 400, "{codes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_over_its_time_should_get_504_and_a_bad_timeout_400() {
    let server = FakeApiServer::new();
    // A list held two minutes: past kube's one-minute request timeout.
    server.injector().add_fault(FaultRule::new(
        &["list"],
        "configmaps",
        FaultAction::Delay { millis: 120_000 },
    ));
    let send = |uri: &str| server.service().oneshot(request("GET", uri, Value::Null));
    let started = tokio::time::Instant::now();
    let resp = send("/api/v1/namespaces/default/configmaps").await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    let status: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (status["reason"].as_str(), status["message"].as_str()),
        (
            Some("Timeout"),
            Some("Timeout: request did not complete within requested timeout - context deadline exceeded")
        )
    );
    // A shorter `timeout` parameter is honoured; a longer one is capped.
    let started = tokio::time::Instant::now();
    let resp = send("/api/v1/namespaces/default/configmaps?timeout=5s")
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), started.elapsed()),
        (504, Duration::from_secs(5))
    );
    let started = tokio::time::Instant::now();
    let resp = send("/api/v1/namespaces/default/configmaps?timeout=10m")
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), started.elapsed()),
        (504, Duration::from_secs(60))
    );
    let resp = send("/api/v1/namespaces/default/configmaps?timeout=soon")
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let status: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        status["message"],
        "invalid timeout specified in the request URL"
    );
    // Watches are long-running: not cut at a minute.
    let resp = send("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=90")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_service_creates_should_get_distinct_cluster_ips() {
    let server = FakeApiServer::new();
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(server.client(), "default");
    let creators: Vec<_> = (0..8)
        .map(|w| {
            let services = services.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
                        "metadata": {"name": format!("s{w}-{i}")},
                        "spec": {"type": "NodePort", "ports": [{"port": 80}]}
                    }))
                    .unwrap();
                    services.create(&Default::default(), &svc).await.unwrap();
                }
            })
        })
        .collect();
    for c in creators {
        c.await.unwrap();
    }
    let listed = services.list(&Default::default()).await.unwrap().items;
    let ips: std::collections::BTreeSet<String> = listed
        .iter()
        .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
        .collect();
    let ports: std::collections::BTreeSet<i32> = listed
        .iter()
        .map(|s| {
            s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
                .node_port
                .unwrap()
        })
        .collect();
    assert_eq!((listed.len(), ips.len(), ports.len()), (200, 200, 200));
}
