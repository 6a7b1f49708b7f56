//! Kubernetes `Status` errors: the one error type every layer above the
//! store itself returns (the store's `StoreError` becomes one in
//! `registry::generic`), and the one place where an error becomes a
//! `Status` body.
//!
//! Reasons, codes and message shapes follow kube-apiserver
//! (`k8s.io/apimachinery/pkg/api/errors`), so that clients which switch on
//! `reason` or `code` (kube-rs, client-go, kubectl) behave as on a real cluster.

use serde_json::{json, Map, Value};

/// Which resource an error is about, as `details` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// API group ("" for the core group).
    pub group: String,
    /// The plural resource name or, for `Invalid`, the kind.
    pub kind: String,
    /// The object's name, if there is one.
    pub name: String,
}

/// One cause of an `Invalid` (422) or `BadRequest` error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, ...
    pub reason: String,
    /// The human-readable message for this cause.
    pub message: String,
    /// The JSON field path, e.g. `metadata.name`.
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: "value": detail`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {shown}: {detail}"),
            field: field.into(),
        }
    }

    /// `field: Required value: detail`.
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired".into(),
            message,
            field: field.into(),
        }
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        }
    }

    /// `field: Unsupported value: "value": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &Value, supported: &[&str]) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {shown}: supported values: {}",
                supported.join(", ")
            ),
            field: field.into(),
        }
    }

    /// `field: Duplicate value: "value"`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueDuplicate".into(),
            message: format!("Duplicate value: {shown}"),
            field: field.into(),
        }
    }

    /// `field: Too long: detail`.
    pub fn too_long(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: {detail}"),
            field: field.into(),
        }
    }
}

/// An API error, rendered as a Kubernetes `Status` object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// The machine-readable `reason` (`NotFound`, `Conflict`, ...).
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// `details`, when kube-apiserver includes them.
    pub details: Option<Box<Subject>>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds` (and the `Retry-After` header).
    pub retry_after: Option<u32>,
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    /// A bare error with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn with_subject(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(Box::new(Subject {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
        }));
        self
    }

    /// 404: `configmaps "x" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} {name:?} not found", qualified(group, resource));
        Self::new(404, "NotFound", message).with_subject(group, resource, name)
    }

    /// 401, as kube-apiserver answers a request whose credentials are
    /// missing (with anonymous requests off), forged, or expired.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: `configmaps "x" is forbidden: why` (`forbidden: why` when no
    /// resource is named, e.g. a non-resource URL).
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let message = if resource.is_empty() {
            format!("forbidden: {why}")
        } else if name.is_empty() {
            format!("{} is forbidden: {why}", qualified(group, resource))
        } else {
            format!(
                "{} {name:?} is forbidden: {why}",
                qualified(group, resource)
            )
        };
        Self::new(403, "Forbidden", message).with_subject(group, resource, name)
    }

    /// 404 for a URL that names no resource at all.
    pub fn no_route() -> Self {
        let mut err = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        err.details = Some(Box::default());
        err
    }

    /// 409: `configmaps "x" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} {name:?} already exists", qualified(group, resource));
        Self::new(409, "AlreadyExists", message).with_subject(group, resource, name)
    }

    /// 409: `Operation cannot be fulfilled on configmaps "x": <detail>`.
    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: {detail}",
            qualified(group, resource)
        );
        Self::new(409, "Conflict", message).with_subject(group, resource, name)
    }

    /// 409 for a stale resourceVersion.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422: `ConfigMap "x" is invalid: <cause>, <cause>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let listed: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let head = format!("{} {name:?} is invalid", qualified_kind(group, kind));
        let message = match listed.len() {
            0 => head,
            1 => format!("{head}: {}", listed[0]),
            _ => format!("{head}: [{}]", listed.join(", ")),
        };
        let mut err = Self::new(422, "Invalid", message).with_subject(group, kind, name);
        err.causes = causes;
        err
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed() -> Self {
        let mut err = Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        err.details = Some(Box::default());
        err
    }

    /// 410 `Expired`, for resume points older than the history window.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 410 for a watch resuming before the history window.
    pub fn too_old_resource_version(requested: u64, oldest: u64) -> Self {
        Self::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 504 for a watch or list at a resourceVersion the server has not
    /// reached after waiting a while (kube's watch cache waits 3 s).
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        );
        e.causes.push(Cause {
            reason: "ResourceVersionTooLarge".into(),
            message: "Too large resource version".into(),
            field: String::new(),
        });
        e.retry_after = Some(1);
        e
    }

    /// 410 for a list `continue` token from before the history window.
    pub fn continue_expired() -> Self {
        Self::expired(
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter, or use the continue token \
             in this response to retrieve the remainder of the results. Continuing with the \
             provided token results in an inconsistent list - objects that were created, \
             modified, or deleted between the time the first chunk was returned and now may \
             show up in the list.",
        )
    }

    /// 415 for a body in a media type the endpoint does not accept.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        let _ = content_type;
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 406 when no media type the client accepts can be served.
    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 500, for faults that are the server's own.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty() {
            // As kube-apiserver omits an empty reason (e.g. a webhook's denial).
            if let Some(m) = status.as_object_mut() {
                m.remove("reason");
            }
        }
        if self.details.is_some() || !self.causes.is_empty() || self.retry_after.is_some() {
            let subject = self.details.as_deref().cloned().unwrap_or_default();
            let mut details = Map::new();
            if !subject.name.is_empty() {
                details.insert("name".into(), subject.name.into());
            }
            if !subject.group.is_empty() {
                details.insert("group".into(), subject.group.into());
            }
            if !subject.kind.is_empty() {
                details.insert("kind".into(), subject.kind.into());
            }
            if !self.causes.is_empty() {
                let causes = self
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cause = json!({"reason": c.reason, "message": c.message});
                        if !c.field.is_empty() {
                            cause["field"] = c.field.clone().into();
                        }
                        cause
                    })
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            if let Some(secs) = self.retry_after {
                details.insert("retryAfterSeconds".into(), secs.into());
            }
            status["details"] = Value::Object(details);
        }
        if self.reason.is_empty() {
            if let Some(obj) = status.as_object_mut() {
                obj.remove("reason");
            }
        }
        status
    }
}

fn qualified_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_should_name_the_qualified_resource() {
        let err = ApiError::not_found("apps", "deployments", "web");
        assert_eq!(err.message, "deployments.apps \"web\" not found");
        let status = err.to_status();
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["kind"], "deployments");
        assert_eq!(status["details"]["name"], "web");
    }

    #[test]
    fn invalid_should_list_every_cause() {
        let err = ApiError::invalid(
            "",
            "ConfigMap",
            "Bad",
            vec![
                Cause::invalid("metadata.name", &json!("Bad"), "must be lowercase"),
                Cause::required("data", ""),
            ],
        );
        assert_eq!(
            err.message,
            "ConfigMap \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": must be lowercase, data: Required value]"
        );
        let status = err.to_status();
        assert_eq!(
            status["details"]["causes"][1]["reason"],
            "FieldValueRequired"
        );
        assert_eq!(status["code"], 422);
    }

    #[test]
    fn conflict_should_use_kube_apiserver_wording() {
        let err = ApiError::stale("", "configmaps", "x");
        assert_eq!(
            err.message,
            "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }
}
