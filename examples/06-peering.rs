//! 06-peering: an operator that does almost nothing, to watch peering at
//! work. Run two instances against one cluster with the peering resources
//! installed: the one with the lower priority pauses while the other runs,
//! and resumes when it leaves (or its record expires).
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/kc --load examples/crd.yaml --load examples/peering.yaml &
//! cargo run --example 06-peering -- --kubeconfig /tmp/kc -A --verbose &            # priority 0
//! cargo run --example 06-peering -- --kubeconfig /tmp/kc -A --verbose --dev        # priority 666: the first pauses
//! ```
//! With `--lease NAME` instead, the instances elect a leader on a Lease.

use kopf::{Context, HandlerResult, Operator, Resource, Settings};

/// Does nothing but succeed.
async fn create_fn(_ctx: Context) -> HandlerResult {
    Ok(None)
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let mut operator = Operator::new();
    operator.on_create(&Resource::new("kopf.dev", "v1", "kopfexamples"), create_fn);
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
