//! The fake API server driven through the `kube` crate, in-process: typed
//! built-ins and `DynamicObject` custom resources, and the error paths a real
//! client can see.

use std::collections::BTreeMap;

use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::{
    api::{
        Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
        PatchParams, PostParams, Preconditions, WatchEvent, WatchParams,
    },
    core::Status,
    Client,
};
use serde_json::{json, Value};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    if !labels.is_empty() {
        cm.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    cm.data = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
    cm
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(e) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

fn widgets(client: &Client, version: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", version, "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn with_crd() -> (FakeApiServer, Client) {
    let server = FakeApiServer::new();
    server.load_str(CRD, "test").unwrap();
    let client = server.client();
    (server, client)
}

/// Create, get, list, replace, merge and JSON patches, delete of a ConfigMap.
#[tokio::test]
async fn configmap_crud_should_behave_like_kube_apiserver() {
    let server = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.metadata.generation, None,
        "ConfigMaps have no generation"
    );
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();

    let mut got = cms.get("a").await.unwrap();
    assert_eq!(got.metadata.uid.as_deref(), Some(uid.as_str()));
    got.data = Some(BTreeMap::from([("k".into(), "w".into())]));
    let replaced = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    let merged = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["m"], "1");
    let same = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, merged.metadata.resource_version,
        "an update that changes nothing is a no-op"
    );
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::<Value>::Json(
                serde_json::from_value(json!([{"op": "remove", "path": "/data/k"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(!patched.data.as_ref().unwrap().contains_key("k"));
    let strategic = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"s": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.metadata.labels.unwrap()["s"], "1");

    let listed = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "a built-in deleted at once answers a Success Status"
    );
    assert_eq!(api_error(cms.get("a").await.unwrap_err()).code, 404);
}

/// 404, 409 AlreadyExists, 409 Conflict and 422 Invalid carry real Status bodies.
#[tokio::test]
async fn errors_should_carry_real_status_bodies() {
    let server = FakeApiServer::new();
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let missing = api_error(cms.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let dup = api_error(
        cms.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let mut stale = cms.get("a").await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    stale.data = None;
    let conflict = api_error(
        cms.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(conflict.message.contains("the object has been modified"));

    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let no_ns = api_error(
        elsewhere
            .create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (no_ns.code, no_ns.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    let invalid = api_error(
        cms.create(
            &PostParams::default(),
            &cm("Bad_Name", &[("bad key", "ok"), ("k", "bad value!")]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert!(
        invalid
            .message
            .starts_with("ConfigMap \"Bad_Name\" is invalid: ["),
        "{}",
        invalid.message
    );
    assert!(invalid
        .message
        .contains("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
    assert!(invalid
        .message
        .contains("metadata.labels: Invalid value: \"bad key\""));
    assert!(invalid
        .message
        .contains("metadata.labels: Invalid value: \"bad value!\""));

    let nameless = api_error(
        cms.create(&PostParams::default(), &ConfigMap::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(nameless.code, 422);
    assert!(nameless
        .message
        .contains("name or generateName is required"));
}

/// Malformed JSON, oversized bodies, unknown media types and bad verbs get
/// 400, 413, 415 and 405 Status bodies, and the server keeps serving.
#[tokio::test]
async fn bad_requests_should_get_status_errors_and_never_break_the_server() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let server = FakeApiServer::new();
    let send = |method: &str, path: &str, ct: &str, body: Vec<u8>| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let svc = server.service();
        async move {
            let resp = svc.oneshot(req).await.unwrap();
            let code = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let status: Value = serde_json::from_slice(&body).unwrap();
            (code, status)
        }
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, status) = send("POST", cms, "application/json", b"{not json".to_vec()).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    assert_eq!(status["kind"], "Status");
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (code, status) = send("POST", cms, "application/json", big.into_bytes()).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    let (code, _) = send("POST", cms, "application/xml", b"<x/>".to_vec()).await;
    assert_eq!(code, 415);
    let (code, status) = send("PUT", cms, "application/json", b"{}".to_vec()).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, _) = send("POST", cms, "application/json", b"[1,2]".to_vec()).await;
    assert_eq!(code, 400);
    let (code, status) = send("GET", "/api/v1/namespaces/default/nothings", "", vec![]).await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    let (code, _) = send(
        "GET",
        &format!("{cms}?labelSelector=a%20in%20("),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = send(
        "GET",
        &format!("{cms}?watch=1&resourceVersion=abc"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    // Still serving.
    let ok: Api<ConfigMap> = Api::default_namespaced(server.client());
    ok.create(&PostParams::default(), &cm("fine", &[]))
        .await
        .unwrap();
}

/// generation starts at 1 and moves only when something other than metadata
/// and status changes; the main endpoint ignores status and the status
/// endpoint ignores everything else.
#[tokio::test]
async fn generation_and_status_split_should_follow_kube_apiserver() {
    let (_server, client) = with_crd();
    let api = widgets(&client, "v1");
    let mut w = widget("w", json!({"size": 1}));
    w.data["status"] = json!({"phase": "ignored on create"});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let labelled = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}, "status": {"x": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    assert!(
        labelled.data.get("status").is_none(),
        "main endpoint ignores status"
    );

    let status = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 99}})),
        )
        .await
        .unwrap();
    assert_eq!(status.metadata.generation, Some(1));
    assert_eq!(status.data["status"]["phase"], "Ready");
    assert_eq!(
        status.data["spec"]["size"], 1,
        "status endpoint ignores spec"
    );

    let spec = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(spec.data["status"]["phase"], "Ready");
    let got = api.get_status("w").await.unwrap();
    assert_eq!(got.data["status"]["phase"], "Ready");

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    let err = api_error(cms.get_status("c").await.unwrap_err());
    assert_eq!(err.code, 404, "ConfigMaps have no status subresource");
}

/// Objects with finalizers get deletionTimestamp and stay until the last
/// finalizer goes; no new finalizers once deleting; preconditions hold.
#[tokio::test]
async fn finalizers_should_hold_deletion_until_removed() {
    let (_server, client) = with_crd();
    let api = widgets(&client, "v1");
    let mut w = widget("w", json!({"size": 1}));
    w.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let created = api.create(&PostParams::default(), &w).await.unwrap();

    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = api_error(api.delete("w", &wrong_uid).await.unwrap_err());
    assert_eq!(err.code, 409);
    assert!(err
        .message
        .contains("Precondition failed: UID in precondition: not-the-uid"));
    let wrong_rv = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..Default::default()
    };
    assert_eq!(
        api_error(api.delete("w", &wrong_rv).await.unwrap_err()).code,
        409
    );

    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let pending = api
        .delete("w", &right)
        .await
        .unwrap()
        .left()
        .expect("still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    assert_eq!(
        pending.metadata.generation,
        Some(2),
        "marking for deletion bumps generation"
    );

    let err = api_error(
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(err
        .message
        .contains("no new finalizers can be added if the object is being deleted"));

    // Other changes are still allowed while deleting.
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(api.get("w").await.unwrap_err()).code, 404);
}

/// Label selectors with every operator, field selectors, limit + continue
/// pagination, and 410 for a continue token older than the history window.
#[tokio::test]
async fn list_should_select_and_paginate() {
    let server = FakeApiServer::builder().history(30).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..25 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let mut labels = vec![("tier", tier)];
        if i % 5 == 0 {
            labels.push(("special", "yes"));
        }
        cms.create(&PostParams::default(), &cm(&format!("cm-{i:02}"), &labels))
            .await
            .unwrap();
    }
    let count = |sel: &'static str| {
        let cms = cms.clone();
        async move {
            cms.list(&ListParams::default().labels(sel))
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(count("tier=front").await, 13);
    assert_eq!(count("tier==back").await, 12);
    assert_eq!(count("tier!=front").await, 12);
    assert_eq!(count("tier in (front,back)").await, 25);
    assert_eq!(count("tier notin (front)").await, 12);
    assert_eq!(count("special").await, 5);
    assert_eq!(count("!special").await, 20);
    assert_eq!(count("special,tier=back").await, 2);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=cm-03"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let not_name = cms
        .list(&ListParams::default().fields("metadata.name!=cm-03,metadata.namespace==default"))
        .await
        .unwrap();
    assert_eq!(not_name.items.len(), 24);

    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    let first = cms.list(&params).await.unwrap();
    let first_rv = first.metadata.resource_version.clone();
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let mut page = first;
    loop {
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.clone().filter(|c| !c.is_empty()) {
            Some(token) => {
                // Writes between pages do not show up in a continued list.
                cms.create(&PostParams::default(), &cm(&format!("late-{pages}"), &[]))
                    .await
                    .unwrap();
                params = params.continue_token(&token);
                page = cms.list(&params).await.unwrap();
                assert_eq!(
                    page.metadata.resource_version, first_rv,
                    "pages share the first page's resourceVersion"
                );
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..25).map(|i| format!("cm-{i:02}")).collect::<Vec<_>>()
    );

    let stale = cms.list(&ListParams::default().limit(5)).await.unwrap();
    let token = stale.metadata.continue_.clone().unwrap();
    for i in 0..40 {
        cms.patch(
            "cm-00",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let err = api_error(
        cms.list(&ListParams::default().limit(5).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
}

/// generateName, deletecollection, and cluster-scoped kinds.
#[tokio::test]
async fn generate_name_delete_collection_and_cluster_scope_should_work() {
    let server = FakeApiServer::new();
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut generated = ConfigMap::default();
    generated.metadata.generate_name = Some("gen-".into());
    let a = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let b = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(na.starts_with("gen-") && na.len() == 9 && na != nb);
    cms.create(&PostParams::default(), &cm("keep", &[("keep", "yes")]))
        .await
        .unwrap();
    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("!keep"),
        )
        .await
        .unwrap();
    assert_eq!(deleted.left().unwrap().items.len(), 2);
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = Node::default();
    node.metadata.name = Some("node-1".into());
    node.metadata.namespace = Some("ignored".into());
    let created = nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(created.metadata.namespace, None);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut bad = Namespace::default();
    bad.metadata.name = Some("a.b".into());
    let err = api_error(
        namespaces
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("a lowercase RFC 1123 label"),
        "{}",
        err.message
    );
    let pods: Api<Pod> = Api::all(client);
    assert!(pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

/// A namespace being deleted is Terminating, refuses new content, and goes
/// away once its objects (and their finalizers) are gone.
#[tokio::test]
async fn namespace_deletion_should_empty_then_remove_it() {
    let server = FakeApiServer::new();
    let client = server.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("doomed".into());
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("free", &[]))
        .await
        .unwrap();
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = namespaces.get("doomed").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert_eq!(api_error(cms.get("free").await.unwrap_err()).code, 404);
    assert!(cms
        .get("held")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    let refused = api_error(
        cms.create(&PostParams::default(), &cm("new", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.code, 403);
    assert!(refused.message.contains("because it is being terminated"));

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api_error(namespaces.get("doomed").await.unwrap_err()).code,
        404
    );
    let err = api_error(
        namespaces
            .delete("default", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
}

/// A CRD is served at once for every served version (Established), objects
/// written in one version read in another, and deleting it deletes its
/// objects and stops serving the kind.
#[tokio::test]
async fn crd_lifecycle_should_serve_and_unserve_its_kind() {
    let (_server, client) = with_crd();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get("widgets.example.com").await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "NamesAccepted" && c.status == "True"));

    let v1 = widgets(&client, "v1");
    v1.create(&PostParams::default(), &widget("w", json!({"size": 1})))
        .await
        .unwrap();
    let beta = widgets(&client, "v1beta1").get("w").await.unwrap();
    assert_eq!(beta.types.unwrap().api_version, "example.com/v1beta1");

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "example.com"));

    let mut held = widget("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    v1.create(&PostParams::default(), &held).await.unwrap();
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = crds.get("widgets.example.com").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(api_error(v1.get("w").await.unwrap_err()).code, 404);
    let refused = api_error(
        v1.create(&PostParams::default(), &widget("new", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.code, 405);
    v1.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api_error(crds.get("widgets.example.com").await.unwrap_err()).code,
        404
    );
    let gone = api_error(v1.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(gone.code, 404);

    let err = api_error(
        v1.patch("w", &PatchParams::default(), &Patch::Strategic(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404, "the kind is no longer served");
}

/// Strategic merge patch is refused for custom resources with 415.
#[tokio::test]
async fn strategic_merge_on_custom_resources_should_be_415() {
    let (_server, client) = with_crd();
    let v1 = widgets(&client, "v1");
    v1.create(&PostParams::default(), &widget("w", json!({})))
        .await
        .unwrap();
    let err = api_error(
        v1.patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
}

/// Watches resume after a resourceVersion, start with ADDED events from
/// "0", turn selector transitions into ADDED/DELETED, and get 410 once the
/// history window has moved past their resume point.
#[tokio::test]
async fn watch_should_resume_select_and_expire() {
    let server = FakeApiServer::builder().history(5).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let a = cms
        .create(&PostParams::default(), &cm("a", &[("app", "x")]))
        .await
        .unwrap();
    let rv_a = a.metadata.resource_version.clone().unwrap();
    cms.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();

    let mut from_a = cms
        .watch(&WatchParams::default(), &rv_a)
        .await
        .unwrap()
        .boxed();
    match from_a.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }

    let mut from_zero = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut initial = Vec::new();
    for _ in 0..2 {
        if let WatchEvent::Added(o) = from_zero.try_next().await.unwrap().unwrap() {
            initial.push(o.metadata.name.unwrap());
        }
    }
    assert_eq!(initial, ["a", "b"]);

    let now = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut selected = cms
        .watch(&WatchParams::default().labels("app=x"), &now)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    match selected.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    match selected.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }

    for i in 0..10 {
        cms.patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut expired = cms
        .watch(&WatchParams::default(), &rv_a)
        .await
        .unwrap()
        .boxed();
    match expired.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
}

/// Streaming lists: initial ADDED events then a BOOKMARK annotated
/// `k8s.io/initial-events-end`; periodic bookmarks; timeoutSeconds ends the watch.
#[tokio::test(start_paused = true)]
async fn watch_should_stream_initial_events_bookmark_and_time_out() {
    let server = FakeApiServer::builder()
        .bookmark_interval(std::time::Duration::from_secs(30))
        .build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let params = WatchParams::streaming_lists().timeout(100);
    let mut stream = cms.watch(&params, "").await.unwrap().boxed();
    assert!(matches!(
        stream.try_next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => {
            assert_eq!(
                b.metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            )
        }
        other => panic!("{other:?}"),
    }
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert!(b.metadata.annotations.is_empty()),
        other => panic!("{other:?}"),
    }
    let rest: Vec<_> = stream.collect().await;
    // kube-apiserver's watch cache bookmarks at min(next heartbeat, 2 s
    // before the deadline): 60 s, 90 s, then 98 s.
    assert_eq!(
        rest.len(),
        3,
        "bookmarks at 60 s, 90 s and 98 s, then the 100 s timeout ends the stream"
    );
}
