//! Storage (kube's `storage` and etcd): the versioned object store, its
//! data directory on disk (`durable`), label and field selection, and the
//! watch fan-out with its injection hooks.
//!
//! Pure and synchronous except `watch` (tokio channels) and `durable` (files); never applies a
//! Kubernetes rule and never stamps a time. Uses only `apimachinery`; used
//! by `registry` (every write), `admission` (webhook configurations),
//! `testing` (injected events, compaction) and `endpoints`.

pub mod durable;
pub mod object;
pub mod selector;
pub mod store;
pub mod watch;
