//! 11-filtering-handlers: handlers that run only for objects passing their
//! filters: labels and annotations (a value, present, absent, a callback),
//! arbitrary `when` conditions, a field's value or presence, a field's
//! change from an old to a new value, and a daemon that runs only while a
//! field has a value (it stops when the value changes).
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 11-filtering-handlers -- --kubeconfig /tmp/kc -A --standalone
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml
//! kubectl --kubeconfig /tmp/kc patch kex kopf-example-1 --type merge -p '{"spec":{"field":"changed"}}'
//! ```

use std::{sync::Arc, time::Duration};

use kopf::{Context, FieldFilter, HandlerResult, MetaFilter, Operator, Resource, Settings};
use serde_json::{json, Value};

/// A handler that logs `message` and returns nothing.
fn says(message: &'static str) -> impl Fn(Context) -> std::future::Ready<HandlerResult> {
    move |ctx: Context| {
        ctx.logger.info(message);
        std::future::ready(Ok(None))
    }
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let kex = Resource::new("kopf.dev", "v1", "kopfexamples");
    let is = |v: &'static str| MetaFilter::Value(v.into());
    let mut op = Operator::new();

    op.on_create(&kex, says("Label is matching."))
        .id("create_with_labels_matching")
        .label("somelabel", is("somevalue"));
    op.on_create(&kex, says("Label is present."))
        .id("create_with_labels_present")
        .label("somelabel", MetaFilter::Present);
    op.on_create(&kex, says("Label is absent."))
        .id("create_with_labels_absent")
        .label("nonexistent", MetaFilter::Absent);
    // Kopf's label callbacks see the value and the object: here, the value
    // and a `when` on the spec.
    op.on_create(&kex, says("Label callback matching."))
        .id("create_with_labels_callback_matching")
        .label(
            "somelabel",
            MetaFilter::Predicate(Arc::new(|v| v == Some("somevalue"))),
        )
        .when(|body| !body["spec"]["field"].is_null());

    op.on_create(&kex, says("Annotation is matching."))
        .id("create_with_annotations_matching")
        .annotation("someannotation", is("somevalue"));
    op.on_create(&kex, says("Annotation is present."))
        .id("create_with_annotations_present")
        .annotation("someannotation", MetaFilter::Present);
    op.on_create(&kex, says("Annotation is absent."))
        .id("create_with_annotations_absent")
        .annotation("nonexistent", MetaFilter::Absent);
    op.on_create(&kex, says("Annotation callback mismatch."))
        .id("create_with_annotations_callback_matching")
        .annotation(
            "someannotation",
            MetaFilter::Predicate(Arc::new(|v| v == Some("somevalue"))),
        )
        .when(|body| body["spec"]["field"] == "not-this-value-for-sure");

    op.on_create(&kex, says("Filter satisfied."))
        .id("create_with_filter_satisfied")
        .when(|_| true);
    op.on_create(&kex, says("Filter not satisfied."))
        .id("create_with_filter_not_satisfied")
        .when(|_| false);

    op.on_create(&kex, says("Field value is satisfied."))
        .id("create_with_field_value_satisfied")
        .field("spec.field")
        .value(FieldFilter::Equals(json!("value")));
    op.on_create(&kex, says("Field value is not satisfied."))
        .id("create_with_field_value_not_satisfied")
        .field("spec.field")
        .value(FieldFilter::Equals(json!("something-else")));
    op.on_create(&kex, says("Field presence is satisfied."))
        .id("create_with_field_presence_satisfied")
        .field("spec.field")
        .value(FieldFilter::Present);
    op.on_create(&kex, says("Field presence is not satisfied."))
        .id("create_with_field_presence_not_satisfied")
        .field("spec.inexistent")
        .value(FieldFilter::Present);

    op.on_update(&kex, says("Field change is satisfied."))
        .id("update_with_field_change_satisfied")
        .field("spec.field")
        .old(FieldFilter::Equals(json!("value")))
        .new_value(FieldFilter::Equals(json!("changed")));

    op.on_daemon_blocking(&kex, |ctx: Context| {
        while !ctx.stopped.is_set() {
            ctx.logger.info("Field daemon is satisfied.");
            ctx.stopped.wait_blocking(Duration::from_secs(1));
        }
        Ok(None::<Value>)
    })
    .id("daemon_with_field")
    .field("spec.field")
    .value(FieldFilter::Equals(json!("value")));
    op
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
