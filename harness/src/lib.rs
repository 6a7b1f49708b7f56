//! kopf_harness: run kopf operators against the in-process fake API server.
//!
//! `KopfRunner`, scenarios and snapshots are tracked in the project's issues;
//! this crate currently holds the workspace slot they will fill.
#![deny(missing_docs)]
