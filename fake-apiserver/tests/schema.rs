//! CRD schemas as a client sees them: an operator-style status write with a
//! field the schema does not know is pruned (or refused with
//! `fieldValidation=Strict`), defaults are filled in, and an invalid object
//! gets one 422 listing every cause.

use fake_apiserver::FakeApiServer;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    ValidationDirective,
};
use serde_json::json;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.dev}
spec:
  group: example.dev
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1, maximum: 10}
                color: {type: string, enum: [red, blue], default: red}
                name: {type: string, maxLength: 8, pattern: '^[a-z]+$'}
            status:
              type: object
              properties:
                phase: {type: string}
"#;

fn widgets(server: &FakeApiServer) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.dev", "v1", "Widget");
    Api::namespaced_with(
        server.client(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    )
}

fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.dev/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec}))
    .unwrap()
}

#[tokio::test]
async fn unknown_status_fields_should_be_pruned_and_defaults_filled() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let api = widgets(&server);
    let created = api
        .create(
            &PostParams::default(),
            &widget("w", json!({"size": 3, "surprise": true})),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"size": 3, "color": "red"}),
        "pruned, defaulted"
    );
    // What an operator might write: a known field and one the schema lacks.
    let written = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready", "progress": {"done": 1}}})),
        )
        .await
        .unwrap();
    assert_eq!(written.data["status"], json!({"phase": "Ready"}));
    let stored = api.get("w").await.unwrap();
    assert_eq!(
        stored.data["status"],
        json!({"phase": "Ready"}),
        "nothing unknown stored"
    );
    // Strict: refused, and nothing changes.
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..Default::default()
    };
    let err = api
        .patch_status(
            "w",
            &strict,
            &Patch::Merge(json!({"status": {"phase": "Done", "progress": 2}})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert_eq!(
                s.message,
                "strict decoding error: unknown field \"status.progress\""
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api.get("w").await.unwrap().data["status"]["phase"], "Ready");
}

#[tokio::test]
async fn invalid_objects_should_get_one_422_with_every_cause() {
    let server = FakeApiServer::new();
    server.load_str(CRD, "crd").unwrap();
    let api = widgets(&server);
    let err = api
        .create(
            &PostParams::default(),
            &widget(
                "bad",
                json!({"size": 0, "color": "green", "name": "TooLongName"}),
            ),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("an API error")
    };
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    let details = status.details.expect("details");
    assert_eq!(details.kind, "Widget");
    assert_eq!(details.name, "bad");
    let mut causes: Vec<(String, String)> = details
        .causes
        .iter()
        .map(|c| (c.field.clone(), c.reason.clone()))
        .collect();
    causes.sort();
    assert_eq!(
        causes,
        [
            (
                "spec.color".to_string(),
                "FieldValueNotSupported".to_string()
            ),
            ("spec.name".to_string(), "FieldValueInvalid".to_string()),
            ("spec.name".to_string(), "FieldValueTooLong".to_string()),
            ("spec.size".to_string(), "FieldValueInvalid".to_string()),
        ]
    );
    assert!(
        status
            .message
            .starts_with("Widget.example.dev \"bad\" is invalid: ["),
        "{}",
        status.message
    );
    // A missing required field, on update too.
    api.create(&PostParams::default(), &widget("ok", json!({"size": 1})))
        .await
        .unwrap();
    let err = api
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": null}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("an API error")
    };
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Widget.example.dev \"ok\" is invalid: spec.size: Required value"
    );
}
