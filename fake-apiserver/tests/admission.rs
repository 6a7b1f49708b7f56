//! Admission webhook call-outs, with a small webhook server in the test:
//! mutation by JSON patch, denial wording and codes, failurePolicy for an
//! unreachable webhook, timeouts, namespace and object selectors, rules by
//! operation, and dry runs against sideEffects.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use fake_apiserver::FakeApiServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// The requests the webhook server received: (path, review request).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook server: `/allow` (adds a label by JSON patch), `/deny`,
/// `/slow` (answers after 3 s), `/warn` (allows with a warning).
async fn webhook_server() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let request = review["request"].clone();
                            record.lock().unwrap().push((path.clone(), request.clone()));
                            let uid = request["uid"].clone();
                            let response = match path.as_str() {
                                "/allow" => {
                                    let patch = json!([{"op": "add", "path": "/metadata/annotations", "value": {"mutated": "yes"}}]);
                                    json!({"uid": uid, "allowed": true, "patchType": "JSONPatch",
                                       "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())})
                                }
                                "/deny" => json!({"uid": uid, "allowed": false,
                                              "status": {"code": 403, "message": "not on my watch"}}),
                                "/slow" => {
                                    tokio::time::sleep(Duration::from_secs(3)).await;
                                    json!({"uid": uid, "allowed": true})
                                }
                                _ => json!({"uid": uid, "allowed": true, "warnings": ["careful"]}),
                            };
                            let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(out.to_string()),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn webhook(name: &str, url: String, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": url},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                   "operations": ["CREATE", "UPDATE"], "scope": "*"}],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 1,
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(w), Some(extra)) = (w.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            w.insert(k.clone(), v.clone());
        }
    }
    w
}

async fn configure(server: &FakeApiServer, kind: &str, webhooks: Vec<Value>) {
    let gvk = kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let plural = format!("{}s", kind.to_lowercase());
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural);
    let api: Api<DynamicObject> = Api::all_with(server.client(), &ar);
    let _ = api.delete("test", &DeleteParams::default()).await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": "test"}, "webhooks": webhooks,
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_then_validating_webhooks_should_shape_what_is_stored() {
    let (addr, seen) = webhook_server().await;
    let server = FakeApiServer::new();
    configure(
        &server,
        "MutatingWebhookConfiguration",
        vec![webhook(
            "mutate.example.dev",
            format!("http://{addr}/allow"),
            json!({}),
        )],
    )
    .await;
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![
            webhook(
                "deny.example.dev",
                format!("http://{addr}/deny"),
                json!({"objectSelector": {"matchLabels": {"guarded": "true"}}}),
            ),
            webhook("warn.example.dev", format!("http://{addr}/warn"), json!({})),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("plain"))
        .await
        .unwrap();
    assert_eq!(
        created.metadata.annotations.unwrap()["mutated"],
        "yes",
        "the mutating webhook's JSON patch is stored"
    );
    let stored = cms.get("plain").await.unwrap();
    assert_eq!(stored.metadata.annotations.unwrap()["mutated"], "yes");
    {
        let seen = seen.lock().unwrap();
        let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["/allow", "/warn"],
            "mutating first; the selector skips /deny"
        );
        let (_, validating) = &seen[1];
        assert_eq!(validating["operation"], "CREATE");
        assert_eq!(
            validating["object"]["metadata"]["annotations"]["mutated"], "yes",
            "validators see the mutation"
        );
        assert_eq!(
            validating["resource"],
            json!({"group": "", "version": "v1", "resource": "configmaps"})
        );
        assert_eq!(validating["namespace"], "default");
        assert_eq!(validating["dryRun"], false);
    }
    // The object selector matches: denied, with the webhook's code and kube-apiserver's wording.
    let mut guarded = cm("guarded");
    guarded.metadata.labels = Some([("guarded".to_string(), "true".to_string())].into());
    let err = status(
        cms.create(&PostParams::default(), &guarded)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"deny.example.dev\" denied the request: not on my watch"
    );
    assert!(cms.get_opt("guarded").await.unwrap().is_none());
    // An update of a guarded object is denied too, and nothing changes.
    let patch = json!({"metadata": {"labels": {"guarded": "true"}}});
    let err = status(
        cms.patch("plain", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    let labels = cms
        .get("plain")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert!(
        !labels.contains_key("guarded"),
        "the denied patch is not stored"
    );
    // DELETE is not among the rules' operations: no call-out.
    let before = seen.lock().unwrap().len();
    cms.delete("plain", &DeleteParams::default()).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policies_timeouts_and_dry_runs_should_behave_as_kube_apiserver() {
    let (addr, seen) = webhook_server().await;
    let server = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    // Nothing listens on port 9 of loopback: failurePolicy decides.
    let nowhere = "http://127.0.0.1:9/nowhere".to_string();
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![webhook("gone.example.dev", nowhere.clone(), json!({}))],
    )
    .await;
    let err = status(
        cms.create(&PostParams::default(), &cm("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    assert_eq!(err.reason, "InternalError");
    assert!(
        err.message
            .contains("failed calling webhook \"gone.example.dev\""),
        "{}",
        err.message
    );
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![webhook(
            "gone.example.dev",
            nowhere,
            json!({"failurePolicy": "Ignore"}),
        )],
    )
    .await;
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    // A webhook slower than its timeout fails the request.
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![webhook(
            "slow.example.dev",
            format!("http://{addr}/slow"),
            json!({}),
        )],
    )
    .await;
    let err = status(
        cms.create(&PostParams::default(), &cm("b"))
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("context deadline exceeded"),
        "{}",
        err.message
    );

    // Dry runs: called with dryRun for sideEffects None; refused for Unknown.
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![webhook(
            "warn.example.dev",
            format!("http://{addr}/warn"),
            json!({}),
        )],
    )
    .await;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("c")).await.unwrap();
    assert!(
        cms.get_opt("c").await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    assert_eq!(seen.lock().unwrap().last().unwrap().1["dryRun"], true);
    // sideEffects Unknown (which would refuse dry runs) is v1beta1 only:
    // admissionregistration/v1 refuses it, as kube-apiserver does.
    let configs: Api<DynamicObject> = Api::all_with(
        server.client(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
            ),
            "validatingwebhookconfigurations",
        ),
    );
    let unknown: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "effects"},
        "webhooks": [webhook("effects.example.dev", format!("http://{addr}/warn"), json!({"sideEffects": "Unknown"}))],
    }))
    .unwrap();
    let err = status(
        configs
            .create(&PostParams::default(), &unknown)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io \"effects\" is invalid: webhooks[0].sideEffects: Unsupported value: \"Unknown\": supported values: \"None\", \"NoneOnDryRun\""
    );

    // The namespace selector reads the namespace's labels.
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![webhook(
            "deny.example.dev",
            format!("http://{addr}/deny"),
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["red"]}]}}),
        )],
    )
    .await;
    cms.create(&PostParams::default(), &cm("e")).await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(server.client());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "red", "labels": {"team": "red"}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let red: Api<ConfigMap> = Api::namespaced(server.client(), "red");
    let err = status(
        red.create(&PostParams::default(), &cm("f"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
}

/// A webhook sees who asks for the write (issue 14): the administrator
/// through `FakeApiServer::client`, and a ServiceAccount with its groups
/// through its own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_should_receive_the_real_user_info() {
    let (addr, seen) = webhook_server().await;
    let server = FakeApiServer::new();
    configure(
        &server,
        "ValidatingWebhookConfiguration",
        vec![webhook(
            "who.example.com",
            format!("http://{addr}/warn"),
            json!({}),
        )],
    )
    .await;
    let admin: Api<ConfigMap> = Api::default_namespaced(server.client());
    admin
        .create(&PostParams::default(), &cm("by-admin"))
        .await
        .unwrap();
    let token = server.token_for(fake_apiserver::auth::UserInfo {
        username: "system:serviceaccount:ops:op".into(),
        uid: String::new(),
        groups: fake_apiserver::auth::authn::service_account_groups("ops"),
        extra: Default::default(),
    });
    let op: Api<ConfigMap> = Api::default_namespaced(server.client_with_token(&token));
    op.create(&PostParams::default(), &cm("by-op"))
        .await
        .unwrap();
    let users: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, request)| request["userInfo"].clone())
        .collect();
    assert_eq!(
        users,
        [
            json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]}),
            json!({"username": "system:serviceaccount:ops:op",
                   "groups": ["system:serviceaccounts", "system:serviceaccounts:ops", "system:authenticated"]}),
        ]
    );
}

/// A self-signed certificate with `CA:TRUE`, as Kopf and many development
/// setups make for their webhooks, for `hosts` (DNS names or IPs).
fn self_signed_ca(hosts: &[&str]) -> (String, Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec(), key.serialize_der())
}

/// A webhook server over TLS with `cert`/`key`, allowing everything with
/// an annotation added by JSON patch.
async fn tls_webhook_server(cert: Vec<u8>, key: Vec<u8>) -> SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        let patch = json!([{"op": "add", "path": "/metadata/annotations", "value": {"over": "tls"}}]);
                        let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": true, "patchType": "JSONPatch",
                                     "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())}});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(out.to_string()),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Go's crypto/x509, and so kube-apiserver, accepts a webhook certificate
/// that is itself in the caBundle even with `CA:TRUE`; webpki alone does
/// not. Hostname and trust are still checked.
#[tokio::test]
async fn a_self_signed_ca_certificate_in_the_bundle_should_serve_a_webhook() {
    let (pem, der, key) = self_signed_ca(&["127.0.0.1", "localhost"]);
    let addr = tls_webhook_server(der, key).await;
    let bundle = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let with = |pem: &str| {
        webhook(
            "tls.example.dev",
            format!("https://127.0.0.1:{}/", addr.port()),
            json!({"clientConfig": {"url": format!("https://127.0.0.1:{}/", addr.port()), "caBundle": bundle(pem)}}),
        )
    };
    let create = |server: FakeApiServer, name: &'static str| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cms.create(&PostParams::default(), &cm).await
    };

    let server = FakeApiServer::new();
    configure(&server, "MutatingWebhookConfiguration", vec![with(&pem)]).await;
    let made = create(server, "a").await.unwrap();
    assert_eq!(made.metadata.annotations.unwrap()["over"], "tls");

    // Another self-signed certificate in the bundle: not trusted.
    let (other, _, _) = self_signed_ca(&["127.0.0.1"]);
    let server = FakeApiServer::new();
    configure(&server, "MutatingWebhookConfiguration", vec![with(&other)]).await;
    let err = create(server, "b").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.message.starts_with("Internal error occurred: failed calling webhook \"tls.example.dev\"")),
        "{err:?}"
    );

    // The right certificate, for other names: the host is still checked.
    let (elsewhere, der, key) = self_signed_ca(&["webhook.example.dev"]);
    let addr = tls_webhook_server(der, key).await;
    let server = FakeApiServer::new();
    let url = format!("https://127.0.0.1:{}/", addr.port());
    configure(
        &server,
        "MutatingWebhookConfiguration",
        vec![webhook(
            "tls.example.dev",
            url.clone(),
            json!({"clientConfig": {"url": url, "caBundle": bundle(&elsewhere)}}),
        )],
    )
    .await;
    let err = create(server, "c").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.message.ends_with("tls: failed to verify certificate: x509: certificate is not valid for this host")),
        "{err:?}"
    );
}
