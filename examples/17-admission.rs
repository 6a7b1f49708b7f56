//! 17-admission: validating and mutating webhooks for KopfExamples, served
//! over HTTPS with a certificate made at start, and announced to the API
//! server through managed webhook configurations (`auto.kopf.dev`).
//!
//! - `authhook` warns who is calling (user agent; no client certificate);
//! - `validate1` denies `spec.field: wrong` (except in dry runs);
//! - `validate2` denies `spec.field: not-allowed` with code 555;
//! - `validate_subresources` denies a status whose `field` differs from the
//!   spec's (its rule, `kopfexamples/*`, covers subresources only, so its
//!   warning for the main resource is never asked for, as in Kopf on a real
//!   cluster);
//! - `mutate1` injects `spec.injected: 123` into labelled objects.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml &
//! cargo run --example 17-admission -- --kubeconfig /tmp/kc -A --standalone &
//! kubectl --kubeconfig /tmp/kc apply -f examples/obj.yaml     # warnings; spec.injected: 123
//! kubectl --kubeconfig /tmp/kc patch kex kopf-example-1 --type merge -p '{"spec":{"field":"wrong"}}'  # denied
//! ```

use kopf::{
    Admission, Context, FieldFilter, HandlerError, HandlerResult, MetaFilter, Operator, Resource,
    Settings, WebhookServer,
};
use serde_json::json;

/// Warns about the caller.
async fn authhook(ctx: Context) -> HandlerResult {
    if let Some(request) = &ctx.admission {
        let agent = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
            .map_or("(unidentified)", |(_, v)| v.as_str());
        request.warn(format!("Accessing as user-agent: {agent}"));
        // No client certificates are asked for: the peer is never identified.
        request.warn("SSL peer is not identified.");
    }
    Ok(None)
}

/// Denies a wrong field, except in dry runs.
async fn validate1(ctx: Context) -> HandlerResult {
    let dry_run = ctx.admission.as_ref().is_some_and(|a| a.dry_run);
    if !dry_run && ctx.spec()["field"] == "wrong" {
        return Err(HandlerError::admission(
            "Meh! I don't like it. Change the field.",
            500,
        ));
    }
    Ok(None)
}

/// Denies everything it sees (it sees only `spec.field: not-allowed`).
async fn validate2(_ctx: Context) -> HandlerResult {
    Err(HandlerError::admission(
        "I'm too lazy anyway. Go away!",
        555,
    ))
}

/// Keeps `status.field` equal to `spec.field`.
async fn validate_subresources(ctx: Context) -> HandlerResult {
    let (spec, status) = (&ctx.spec()["field"], &ctx.status()["field"]);
    let subresource = ctx.admission.as_ref().and_then(|a| a.subresource.clone());
    match subresource.as_deref() {
        Some("status") if status != spec => Err(HandlerError::admission(
            "status.field MUST be equal to spec.field!",
            500,
        )),
        None if status != spec => {
            if let Some(a) = &ctx.admission {
                a.warn(format!(
                    "Also update status.field to match spec.field: {spec} != {status}"
                ));
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Injects a field into what is stored.
async fn mutate1(ctx: Context) -> HandlerResult {
    ctx.patch.set(&["spec", "injected"], json!(123));
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let kex = Resource::named("kex");
    let mut op = Operator::new();
    op.on_validate(&kex, authhook);
    op.on_validate(&kex, validate1);
    op.on_validate(&kex, validate2)
        .field("spec.field")
        .value(FieldFilter::Equals(json!("not-allowed")));
    op.on_validate(&kex, validate_subresources).subresource("*");
    op.on_mutate(&kex, mutate1)
        .label("somelabel", MetaFilter::Value("somevalue".into()));
    op
}

/// The example's settings: HTTPS on loopback, managed configurations.
pub(crate) fn settings() -> Settings {
    Settings {
        admission: Admission {
            server: Some(WebhookServer::local_tls()),
            managed: Some("auto.kopf.dev".into()),
        },
        ..Settings::default()
    }
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), settings()).await
}
