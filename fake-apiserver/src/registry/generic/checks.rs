//! The checks create and update share: the body's kind and apiVersion,
//! a custom resource's schema (pruning, defaults, validation), and the
//! metadata rules, each failure one 422 listing every cause.

use serde_json::Value;

use crate::{
    apimachinery::errors::{ApiError, Cause},
    registry::{
        crd,
        generic::{is_crd, Api},
        rest::Target,
        schema, semantics, webhooks,
    },
};

/// One 422 `Invalid` listing every cause, if there are any.
fn refuse_invalid(t: &Target, obj: &Value, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    let name = semantics::meta_str(obj, "name").unwrap_or_default();
    Err(ApiError::invalid(
        t.kind.group(),
        &t.kind.kind,
        name,
        causes,
    ))
}

impl Api {
    /// A create or update body of a built-in kind is decoded as its type,
    /// which defaults a missing `kind` and `apiVersion` from the URL, as
    /// kube-apiserver's typed decoding does (clients such as Python's
    /// `kubernetes` send none); custom resources are decoded as
    /// unstructured objects and must carry both. A value given and wrong
    /// stays an error ([`Api::check_body_kind`]).
    pub(crate) fn default_body_kind(t: &Target, body: &mut Value) {
        if t.kind.custom {
            return;
        }
        if let Some(obj) = body.as_object_mut() {
            let missing = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
            if missing(obj.get("kind")) {
                obj.insert("kind".into(), Value::from(t.kind.kind.as_str()));
            }
            if missing(obj.get("apiVersion")) {
                obj.insert(
                    "apiVersion".into(),
                    Value::from(t.kind.api_version(&t.version)),
                );
            }
        }
    }

    /// The body's `kind` and `apiVersion` are those of the URL.
    pub(super) fn check_body_kind(&self, t: &Target, body: &Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a JSON object, not {}",
                type_name(body)
            )));
        }
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}'",
                truncate(&body.to_string(), 512)
            )));
        }
        let expected = t.kind.api_version(&t.version);
        if api_version.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'apiVersion' is missing in '{}'",
                truncate(&body.to_string(), 512)
            )));
        }
        if api_version != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )));
        }
        if kind != t.kind.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                t.kind.kind
            )));
        }
        Ok(())
    }

    /// Custom resources: prunes, defaults and validates against the CRD
    /// version's schema; returns the pruned fields.
    pub(super) fn apply_schema(
        &self,
        t: &Target,
        obj: &mut Value,
    ) -> Result<Vec<String>, ApiError> {
        if !t.kind.custom {
            return Ok(Vec::new());
        }
        let Some(schema) = t
            .kind
            .versions
            .iter()
            .find(|v| v.name == t.version)
            .and_then(|v| v.schema.as_ref())
        else {
            return Ok(Vec::new());
        };
        let dropped = schema::prune(obj, schema);
        schema::default(obj, schema);
        refuse_invalid(t, obj, schema::validate(obj, schema))?;
        Ok(dropped)
    }

    pub(super) fn validate(&self, t: &Target, obj: &Value) -> Result<(), ApiError> {
        let mut causes = semantics::validate_metadata(&t.kind, obj);
        if is_crd(&t.kind) {
            causes.extend(crd::validate(obj));
        }
        if webhooks::configuration_kind(t.kind.group(), t.kind.plural()).is_some() {
            causes.extend(webhooks::validate(obj));
        }
        refuse_invalid(t, obj, causes)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
