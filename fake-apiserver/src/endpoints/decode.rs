//! Request bodies: read (3 MiB at most), decoded from JSON, YAML or
//! protobuf into an object, and `DeleteOptions` over the query's options.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::{
    apimachinery::{errors::ApiError, yaml},
    endpoints::{protobuf, route::Query, MAX_BODY},
    registry::rest::DeleteOptions,
};

pub(super) async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Decodes a JSON or YAML request body into an object.
pub(super) fn decode_object(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let base = content_type.split(';').next().unwrap_or_default().trim();
    match base {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}"))),
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(
            other,
            &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
        )),
    }
}

/// Reads `DeleteOptions` from the body (if any) over the query's options.
pub(super) fn delete_options(body: &[u8], q: &Query) -> Result<DeleteOptions, ApiError> {
    let mut opts = q.delete.clone();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(opts);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
    if let Some(uid) = s("/preconditions/uid") {
        opts.uid = Some(uid);
    }
    if let Some(rv) = s("/preconditions/resourceVersion") {
        opts.resource_version = Some(rv);
    }
    if let Some(p) = s("/propagationPolicy") {
        opts.propagation = Some(p);
    }
    if let Some(grace) = v.get("gracePeriodSeconds").filter(|g| !g.is_null()) {
        opts.grace_period = Some(grace.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "json: cannot unmarshal {grace} into Go struct field DeleteOptions.gracePeriodSeconds of type int64"
            ))
        })?);
    }
    if let Some(dry) = v.get("dryRun").and_then(Value::as_array) {
        for d in dry {
            match d.as_str() {
                Some("All") => opts.dry_run = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {}: supported values: \"All\"",
                        other.map_or_else(|| d.to_string(), |s| format!("{s:?}"))
                    )))
                }
            }
        }
    }
    Ok(opts)
}
