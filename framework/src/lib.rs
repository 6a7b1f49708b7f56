//! kopf: a Kubernetes operator framework in the spirit of Kopf.
//!
//! The framework's handlers, reactor and engines are tracked in the project's
//! issues; this crate currently holds the workspace slot they will fill.
#![deny(missing_docs)]
