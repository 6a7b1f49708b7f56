//! A fast, faithful fake Kubernetes API server, in-process or standalone.
//!
//! [`FakeApiServer::client`] gives a `kube::Client` wired straight to the
//! server's tower service (no socket), so tests start a cluster in
//! microseconds; [`FakeApiServer::serve`] serves the same API over HTTP on
//! loopback so that `kubectl` and clients in any language can use it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use fake_apiserver::FakeApiServer;
//! use k8s_openapi::api::core::v1::Namespace;
//! use kube::api::{Api, ListParams};
//!
//! let server = FakeApiServer::new();
//! let namespaces: Api<Namespace> = Api::all(server.client());
//! let names: Vec<String> = namespaces
//!     .list(&ListParams::default())
//!     .await
//!     .unwrap()
//!     .items
//!     .into_iter()
//!     .filter_map(|ns| ns.metadata.name)
//!     .collect();
//! assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
//! # }
//! ```
//!
//! # Layout
//!
//! Lowest layer first; a layer never reaches upward.
//!
//! - [`resources`]: which kinds exist (built-ins, and kinds added by CRDs).
//! - [`store`]: the versioned object store: resourceVersions, serialized
//!   bytes shared by every reader, bounded event history. Pure and synchronous.
//! - [`protobuf`]: protobuf request bodies (what kubectl sends for built-ins).
//! - [`selector`], [`semantics`], [`crd`], [`schema`], [`patch`]: the rules applied on
//!   every write (defaulting, validation, generation, status split,
//!   finalizers) and the patch formats, as pure functions.
//! - [`watch`]: fan-out of store events (and injected ones) to watchers.
//! - [`api`]: the verbs, each an atomic store write applying the rules.
//! - [`apply`]: server-side apply and field ownership (managedFields).
//! - `events`: core/v1 and events.k8s.io/v1 Events mirrored into each other.
//! - [`gc`]: garbage collection of dependents (ownerReferences).
//! - [`table`]: Table output for `kubectl get` (columns, printer columns).
//! - `admission`: call-outs to the admission webhooks of the stored
//!   webhook configurations (mutating, then validating).
//! - [`inject`]: the [`Injector`](inject::Injector): synthetic watch events,
//!   fault rules (errors, delays, dropped connections), seeded.
//! - [`journal`]: every request and response, in order, with a normalized,
//!   snapshot-stable form.
//! - `http`: routing, discovery, OpenAPI, body limits and `Status` errors
//!   ([`ApiService`]), and the control API under `/_fake/v1`.
//! - [`server`](FakeApiServer): in-process handle, TCP serving, kubeconfig,
//!   loading files; and the `fake-apiserver` binary on top.
#![deny(missing_docs)]

mod admission;
pub mod api;
pub mod apply;
pub mod clock;
pub mod crd;
pub mod error;
mod events;
pub mod gc;
mod http;
pub mod inject;
pub mod journal;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod semantics;
mod server;
pub mod store;
pub mod table;
pub mod watch;

pub use clock::Clock;
pub use error::ApiError;
pub use http::{ApiService, ControlSettings, Dropped, ResponseBody, ServiceError, MAX_BODY};
pub use server::{Builder, FakeApiServer, LoadError, Serving};
