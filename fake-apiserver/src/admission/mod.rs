//! Admission (kube's `admission` plugins): calls to the admission webhooks
//! of the stored webhook configurations, mutating then validating.
//!
//! Reads the configurations from `storage`, addresses requests with
//! `registry::rest::Target`; called by `endpoints` for each write of one
//! object, and set up by `server`.

pub(crate) mod webhooks;
