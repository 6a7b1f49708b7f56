//! What a request to the registry is, and what a controller may ask of it
//! (kube's `registry/rest`): the [`Target`] of a request, the options of
//! list, watch and delete, the [`Reply`], and the narrow traits
//! [`Objects`] (implemented by `generic::Api`) and [`Controller`] (the
//! built-in controllers, told of deletions at once).
//!
//! Uses `resources` and `storage`; used by `generic`, `controllers`,
//! `admission`, `testing`, `endpoints` and `server`.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use serde_json::Value;

use crate::{
    apimachinery::errors::ApiError,
    registry::resources::{Kind, Resources},
    storage::{
        selector::{FieldSelector, LabelSelector},
        store::Store,
    },
};

/// The object (or collection) a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    /// The kind.
    pub kind: Arc<Kind>,
    /// The version asked for.
    pub version: String,
    /// The namespace ("" for cluster-scoped kinds or all namespaces).
    pub namespace: String,
    /// The object's name ("" for the collection).
    pub name: String,
}

/// Options of list and watch requests.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 = none).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

/// Options of delete requests (query and `DeleteOptions` body).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy`.
    pub propagation: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `gracePeriodSeconds` (pods: how long the kubelet may take to stop
    /// the containers; negative counts as one second, as in kube).
    pub grace_period: Option<i64>,
}

/// A successful answer: status code and JSON body.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status code.
    pub code: u16,
    /// The JSON body.
    pub body: Bytes,
    /// Fields dropped by the CRD schema (for `fieldValidation`).
    pub unknown_fields: Vec<String>,
}

impl Reply {
    pub(crate) fn ok(body: Bytes) -> Self {
        Reply {
            code: 200,
            body,
            unknown_fields: Vec::new(),
        }
    }
}

/// The "manager" of a server-side apply's own write (which records its
/// ownership itself).
pub(crate) const APPLIED: &str = "\u{0}applied";

/// Parses a resourceVersion parameter.
pub fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// What a built-in controller may do with the objects: read them, and write
/// through the verbs' rules (never around them).
pub trait Objects {
    /// Served kinds.
    fn resources(&self) -> &Resources;

    /// The objects, for reads.
    fn store(&self) -> &Store;

    /// Whether an object with owner references was ever written (the
    /// garbage collector looks for dependents only then).
    fn owners_written(&self) -> bool;

    /// An update of the object `t` names under the update rules: `change`
    /// turns the current object into the new one.
    ///
    /// # Errors
    /// Those of an update (404 when the object is gone, 409, 422).
    fn update_with(&self, t: &Target, change: &dyn Fn(&Value) -> Value) -> Result<Reply, ApiError>;

    /// An update of the `/status` of the object `t` names (as a client's
    /// status write).
    ///
    /// # Errors
    /// Those of an update.
    fn update_status_with(
        &self,
        t: &Target,
        change: &dyn Fn(&Value) -> Value,
    ) -> Result<Reply, ApiError>;

    /// A DELETE of the object `t` names.
    ///
    /// # Errors
    /// Those of a delete (404 when the object is gone, 409 on preconditions).
    fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<Reply, ApiError>;
}

/// A built-in controller, told at once (synchronously, after the verb's
/// write) instead of eventually through a watch.
pub trait Controller: Send + Sync {
    /// The object `t` names was marked as being deleted with `policy`
    /// (`Background`, `Foreground` or `Orphan`) and is still there.
    fn deleting(&self, _api: &dyn Objects, _t: &Target, _obj: &Value, _policy: &str) {}

    /// `obj` (its last state) was removed from the store.
    fn removed(&self, _api: &dyn Objects, _obj: &Value) {}

    /// An object of `key` was created, changed or removed (every write
    /// that changed the store).
    fn written(&self, _api: &dyn Objects, _key: &crate::apimachinery::resource_key::ResourceKey) {}
}
