//! The vocabulary every layer shares (kube's `k8s.io/apimachinery` and
//! `k8s.io/utils/clock`): the `Status` errors, the server's clock, Go durations, the key
//! of a resource's storage, a small hash, name and label validation, and
//! bounded YAML.
//!
//! Uses nothing else in the crate; used by every folder above it.

/// The Kubernetes major version the fake server is (reported by `/version`,
/// by the simulated nodes' kubelets, and in its components' user agents).
pub const VERSION_MAJOR: &str = "1";
/// The Kubernetes minor version.
pub const VERSION_MINOR: &str = "33";

pub mod clock;
pub mod duration;
pub mod errors;
pub mod hash;
pub mod resource_key;
pub mod validation;
pub mod yaml;
