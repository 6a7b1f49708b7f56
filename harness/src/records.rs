//! What the harness records of a run, as plain data: the operator's write
//! requests and the Events posted. The lowest module: the cluster backends
//! fill them, the outcome shows them.

use serde::Serialize;
use serde_json::Value;

/// An Event posted about an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventRecord {
    /// `Kind namespace/name` of the involved object.
    pub object: String,
    /// `Normal`, `Warning`, `Error`...
    #[serde(rename = "type")]
    pub type_: String,
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// A write request the operator made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WriteRecord {
    /// `create`, `update`, `patch`, `delete`...
    pub verb: String,
    /// `plural` or `plural.group`.
    pub resource: String,
    /// `namespace/name` (or `name`), when one object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// `status` for the status subresource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// The request's content type.
    #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The request body (redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The response code.
    pub code: u16,
}
