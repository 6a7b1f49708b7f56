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
//! Folders, lowest layer first: a folder uses only folders listed before it,
//! and the folders of one item (peers) do not use each other
//! (`tests/layering.rs` checks this).
//!
//! - [`apimachinery`]: the shared vocabulary: `Status` errors, the clock,
//!   resource keys, name and label validation.
//! - [`storage`]: the versioned object store (in memory, or kept in a data
//!   directory), selectors, the watch fan-out.
//! - [`registry`]: the kinds, the rules of every write, and the verbs
//!   ([`Api`](registry::generic::Api)).
//! - [`auth`]: who a request is (tokens, ServiceAccount tokens, client
//!   certificates, impersonation) and what it may do (AlwaysAllow or
//!   RBAC, with kube-apiserver's bootstrap policy), the review APIs, and
//!   the fake's certificate authority for `--tls`.
//! - [`controllers`] (garbage collection, and the simulated cluster: nodes,
//!   scheduler, kubelets and workload controllers, clients of the server
//!   through HTTP), `admission` (webhooks), [`testing`] (watch injection,
//!   fault rules, the journal).
//! - [`endpoints`]: HTTP: routing, discovery, OpenAPI, bodies and answers
//!   ([`ApiService`]), and the control API under `/_fake/v1`.
//! - `server` ([`FakeApiServer`]): in-process handle, TCP serving (HTTP or
//!   HTTPS), kubeconfigs, loading files, starting the simulated cluster;
//!   and the `fake-apiserver` binary on top.
#![deny(missing_docs)]

mod admission;
pub mod apimachinery;
pub mod auth;
pub mod controllers;
pub mod endpoints;
pub mod registry;
mod server;
pub mod storage;
pub mod testing;

pub use apimachinery::{clock::Clock, errors::ApiError};
pub use endpoints::{ApiService, ControlSettings, Dropped, ResponseBody, ServiceError, MAX_BODY};
pub use server::{Builder, FakeApiServer, LoadError, Serving};
