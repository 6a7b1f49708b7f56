//! kopf_harness: test kopf operators with `cargo test`, against an
//! in-process fake cluster, on virtual time, with snapshots.
//!
//! The path a test takes:
//!
//! 1. build the operator as in production (a function returning `kopf::Operator`);
//! 2. wrap it in a [`KopfRunner`] (a fresh [`Cluster`] each time);
//! 3. play a [`Scenario`] (Rust builder or YAML): apply, patch, delete,
//!    inject faults, advance virtual time, `settle`, restart, expect;
//! 4. snapshot the [`Outcome`] with [`assert_outcome!`], then review it with
//!    `cargo insta review`.
//!
//! ```no_run
//! use kopf_harness::{assert_outcome, KopfRunner, Scenario};
//!
//! # fn operator() -> kopf::Operator { kopf::Operator::new() }
//! #[tokio::test(start_paused = true)]
//! async fn creation_is_handled() {
//!     let mut runner = KopfRunner::new(operator);
//!     let scenario = Scenario::new()
//!         .apply(include_str!("../../examples/crd.yaml"))
//!         .apply(include_str!("../../examples/obj.yaml"))
//!         .settle();
//!     runner.play(&scenario).await.unwrap();
//!     assert_outcome!(runner.outcome());
//! }
//! ```
//!
//! Virtual time: use `#[tokio::test(start_paused = true)]` (or [`block_on`]
//! in a plain `#[test]`): backoffs, delays and timers then cost no wall time,
//! and runs are deterministic (seeded uids, a clock anchored to tokio time).
//!
//! # Layout
//!
//! Lowest layer first (`tests/layering.rs` checks it): `rbac` (what the
//! operator's requests needed, from the journal); `error`, `records`;
//! `remote` (a real cluster); `cluster` ([`Cluster`]); `outcome`
//! ([`Outcome`]), `process` ([`ProcessRunner`]); `runner`
//! ([`KopfRunner`]); `scenario` ([`Scenario`]); `strategies` (proptest).
#![deny(missing_docs)]

mod cluster;
mod error;
mod outcome;
mod process;
mod rbac;
mod records;
mod remote;
mod runner;
mod scenario;
pub mod strategies;

pub use cluster::{Cluster, EPOCH};
pub use error::{HarnessError, SettleError};
pub use outcome::{redact, redact_str, Outcome};
pub use process::ProcessRunner;
pub use rbac::Denied;
pub use records::{EventRecord, WriteRecord};
pub use runner::{KopfRunner, OperatorFactory};
pub use scenario::{ObjectRef, PodFailure, Scenario, Step};

/// Runs `future` on a fresh current-thread runtime with a paused clock, for
/// plain `#[test]` functions.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds")
        .block_on(future)
}

/// Asserts an [`Outcome`] against its `insta` YAML snapshot.
#[macro_export]
macro_rules! assert_outcome {
    ($outcome:expr) => {
        $crate::__private::insta::assert_yaml_snapshot!($outcome)
    };
    ($name:expr, $outcome:expr) => {
        $crate::__private::insta::assert_yaml_snapshot!($name, $outcome)
    };
}

#[doc(hidden)]
pub mod __private {
    pub use insta;
}
