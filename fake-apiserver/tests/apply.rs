//! Server-side apply through `kube::Api` (`Patch::Apply`): creation,
//! shared and conflicting ownership, forcing, removal of fields an applier
//! drops, and ordinary writes recorded as their managers' updates.

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

fn config(replicas: i64, image: &str, extra_label: Option<&str>) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(l) = extra_label {
        labels[l] = json!("yes");
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "labels": labels},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "main", "image": image}]}}}})
}

fn managers(d: &Deployment) -> Vec<(String, String)> {
    d.metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.manager.unwrap_or_default(),
                e.operation.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn appliers_should_share_conflict_force_and_drop_fields() {
    let server = FakeApiServer::new();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let alice = PatchParams::apply("alice");
    let created = api
        .patch(
            "web",
            &alice,
            &Patch::Apply(config(2, "nginx:1", Some("team"))),
        )
        .await
        .unwrap();
    assert_eq!(created.spec.replicas, Some(2));
    assert_eq!(
        managers(&created),
        [("alice".to_string(), "Apply".to_string())]
    );

    // Bob applies a different replica count: a conflict naming the field.
    let bob = PatchParams::apply("bob");
    let err = api
        .patch("web", &bob, &Patch::Apply(config(5, "nginx:1", None)))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("an API error")
    };
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas"
    );
    // Forced, Bob takes the field over.
    let forced = api
        .patch(
            "web",
            &bob.clone().force(),
            &Patch::Apply(config(5, "nginx:1", None)),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(5));
    assert_eq!(managers(&forced).len(), 2);

    // Alice drops the `team` label and the replicas: the label goes (hers
    // alone); the replicas stay (Bob's now).
    let mut without = config(2, "nginx:1", None);
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let after = api
        .patch("web", &alice, &Patch::Apply(without))
        .await
        .unwrap();
    let labels = after.metadata.labels.clone().unwrap();
    assert!(!labels.contains_key("team"), "{labels:?}");
    assert_eq!(after.spec.replicas, Some(5));

    // An ordinary patch records its manager's update.
    let scaler = PatchParams {
        field_manager: Some("scaler".into()),
        ..Default::default()
    };
    let scaled = api
        .patch(
            "web",
            &scaler,
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert!(managers(&scaled).contains(&("scaler".to_string(), "Update".to_string())));
    let err = api
        .patch("web", &bob, &Patch::Apply(config(5, "nginx:1", None)))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("an API error")
    };
    assert!(
        status.message.contains("conflict with \"scaler\""),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn apply_without_a_field_manager_should_be_refused() {
    let server = FakeApiServer::new();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let err = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Apply(config(1, "nginx:1", None)),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("an API error")
    };
    assert_eq!(status.code, 400);
}
