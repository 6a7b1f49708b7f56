//! kopf: a Kubernetes operator framework in the spirit of Kopf.
//!
//! Handlers are plain async functions taking one [`Context`] (Kopf's
//! kwargs) and returning a [`HandlerResult`]; the framework does the rest:
//! finalizers, retries with backoff, progress persisted on the object (in
//! Kopf's own format, so an operator migrated from Kopf resumes where Kopf
//! stopped), diffs, status, and Kubernetes Events. It talks to Kubernetes
//! only through `kube::Client`, so the same operator runs on a real cluster
//! and against the fake API server.
//!
//! # Layout
//!
//! Lowest layer first; a layer never reaches upward.
//!
//! - `structs`, `references`, `stopping`: diffs, merge patches, resources,
//!   reasons, the stop signal of daemons (plain data and a flag).
//! - `indices`: in-memory indices across objects (data under a lock).
//! - `storage`: progress records and the diff-base, Kopf-compatible.
//! - `handling`: the context, handler errors, one attempt's outcome.
//! - `registry`: handlers with their reasons, filters and options.
//! - [`hierarchies`]: owner references, labels and naming for children.
//! - `forbidden`: API errors as people read them (a 403's missing grant).
//! - `posting`: log lines posted as Kubernetes Events (an engine).
//! - `activities`: startup and cleanup handlers (an engine).
//! - `daemons`: daemons and timers beside each object (an engine).
//! - `indexing`: index handlers keeping the indices current (an engine).
//! - `probing`: the liveness endpoint with the probes' results (an engine).
//! - `peering`: peering objects or a Lease decide when to pause (an engine).
//! - `admission`: validating and mutating webhooks, their server and
//!   managed configurations (an engine).
//! - `networking`: the API client's retries (5xx, 429 with `Retry-After`,
//!   transport errors) and request timeout (an engine).
//! - `scanning`: which declared resources and which namespaces are served
//!   now, kept current as CRDs and namespaces come and go (an engine).
//! - `processing`: one object, one cycle: cause, finalizer, handlers, patch.
//! - `reactor`: watchers, per-object workers, patch application.
//! - `orchestrating`: a watch per served resource and namespace, started
//!   and stopped as the scanning's insights change.
//! - `operator`, `settings`: the public shell.
//! - `formatting`, `cli`: Kopf's command line and its log lines.
#![deny(missing_docs)]

mod activities;
mod admission;
mod cli;
mod daemons;
mod forbidden;
mod formatting;
mod handling;
pub mod hierarchies;
mod indexing;
mod indices;
mod networking;
mod observing;
mod operator;
mod orchestrating;
mod peering;
mod posting;
mod probing;
mod processing;
mod reactor;
mod references;
mod registry;
mod scanning;
mod settings;
mod stopping;
pub mod storage;
pub mod structs;

pub use cli::{run, run_with, RunError};
pub use handling::{
    AdmissionRequest, Context, ErrorsMode, Events, HandlerError, HandlerResult, Level, LogLine,
    LogSink, Logger, Memo, PatchHandle,
};
pub use indices::{Index, Indexed, Indices};
pub use observing::{Observer, Pending};
pub use operator::{LoginFn, Operator, OperatorError};
pub use references::{match_namespace, Reason, Resource};
pub use registry::{FieldFilter, FieldPredicate, Handler, MetaFilter, Registry, ValuePredicate};
pub use settings::{
    Admission, Batching, Clock, Execution, LeaseElection, Liveness, Networking, Peering,
    Persistence, Posting, Scanning, Settings, Watching, WebhookServer,
};
pub use stopping::{StopReason, Stopped};

// The crates an operator's own code needs, at the versions kopf uses (two
// versions of kube would give two incompatible `kube::Client`s).
pub use k8s_openapi;
pub use kube;
pub use serde_json;
