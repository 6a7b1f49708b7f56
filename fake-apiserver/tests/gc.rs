//! Garbage collection through a client: background (dependents follow
//! their owner, unless another owner lives), foreground (the owner waits
//! for its blocking dependents), and orphan (dependents lose the reference).

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

async fn make(
    api: &Api<ConfigMap>,
    name: &str,
    owners: &[&ConfigMap],
    extra: serde_json::Value,
) -> ConfigMap {
    let refs: Vec<serde_json::Value> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
                   "uid": o.metadata.uid, "blockOwnerDeletion": true})
        })
        .collect();
    let mut meta = json!({"name": name});
    if !refs.is_empty() {
        meta["ownerReferences"] = json!(refs);
    }
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            meta[k] = v.clone();
        }
    }
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": meta})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap()
}

fn policy(p: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(p),
        ..Default::default()
    }
}

#[tokio::test]
async fn background_deletion_should_collect_dependents_unless_another_owner_lives() {
    let server = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let owner = make(&api, "owner", &[], json!({})).await;
    let other = make(&api, "other", &[], json!({})).await;
    let child = make(&api, "child", &[&owner], json!({})).await;
    make(&api, "grandchild", &[&child], json!({})).await;
    make(&api, "shared", &[&owner, &other], json!({})).await;
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    assert!(
        api.get_opt("child").await.unwrap().is_none(),
        "a dependent follows its owner"
    );
    assert!(
        api.get_opt("grandchild").await.unwrap().is_none(),
        "and its own dependents"
    );
    let shared = api.get("shared").await.unwrap();
    let refs = shared.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1, "only the dangling reference is dropped");
    assert_eq!(refs[0].name, "other");
}

#[tokio::test]
async fn foreground_deletion_should_wait_for_blocking_dependents() {
    let server = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let owner = make(&api, "owner", &[], json!({})).await;
    make(
        &api,
        "held",
        &[&owner],
        json!({"finalizers": ["example.dev/hold"]}),
    )
    .await;
    api.delete("owner", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    let waiting = api.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(waiting.metadata.finalizers.unwrap(), ["foregroundDeletion"]);
    let held = api.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "the dependent is being deleted"
    );
    // The dependent's own finalizer goes: it goes, then the owner does.
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
    assert!(
        api.get_opt("owner").await.unwrap().is_none(),
        "released once no blocking dependent is left"
    );
}

#[tokio::test]
async fn orphan_deletion_should_leave_dependents_without_the_reference() {
    let server = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let owner = make(&api, "owner", &[], json!({})).await;
    make(&api, "kept", &[&owner], json!({})).await;
    api.delete("owner", &policy(PropagationPolicy::Orphan))
        .await
        .unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    let kept = api.get("kept").await.unwrap();
    assert!(
        kept.metadata.owner_references.is_none(),
        "{:?}",
        kept.metadata
    );
    // An owner with no dependents and a foreground deletion goes at once.
    make(&api, "lonely", &[], json!({})).await;
    api.delete("lonely", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    assert!(api.get_opt("lonely").await.unwrap().is_none());
}

#[tokio::test]
async fn foreground_deletion_should_spare_dependents_with_another_live_owner() {
    let server = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let owner = make(&api, "owner", &[], json!({})).await;
    let other = make(&api, "other", &[], json!({})).await;
    make(&api, "shared", &[&owner, &other], json!({})).await;
    api.delete("owner", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    let shared = api.get("shared").await.unwrap();
    let refs = shared.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "other");
}
