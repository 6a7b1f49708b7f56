//! Harness figures, printed (not asserted):
//! - the wall time of a scenario with three temporary failures of 60 s
//!   backoff each, then success (virtual time);
//! - scenarios per second: a fresh fake cluster, an operator, a
//!   create/update/delete scenario, settled, and its outcome snapshot (YAML).
//!
//! Run: `cargo bench -p kopf-harness --bench scenarios`

use std::time::{Duration, Instant};

use kopf::{Context, HandlerError, HandlerResult, Operator, Resource};
use kopf_harness::{block_on, KopfRunner, Scenario};
use serde_json::json;

const CRD: &str = include_str!("../../examples/crd.yaml");
const OBJ: &str = include_str!("../../examples/obj.yaml");
const KEX: &str = "kopfexamples.kopf.dev";

fn res() -> Resource {
    Resource::new("kopf.dev", "v1", "kopfexamples")
}

fn patient() -> Operator {
    let mut op = Operator::new();
    op.on_create(&res(), |ctx: Context| async move {
        if ctx.retry < 3 {
            return Err(HandlerError::temporary("not yet", Duration::from_secs(60)));
        }
        HandlerResult::Ok(None)
    })
    .id("patient");
    op
}

fn crud() -> Operator {
    let mut op = Operator::new();
    op.on_create(&res(), |_ctx: Context| async move {
        HandlerResult::Ok(Some(json!("created")))
    })
    .id("create_fn");
    op.on_update(&res(), |_ctx: Context| async move {
        HandlerResult::Ok(Some(json!("updated")))
    })
    .id("update_fn");
    op.on_delete(
        &res(),
        |_ctx: Context| async move { HandlerResult::Ok(None) },
    )
    .id("delete_fn");
    op
}

fn main() {
    let mut walls = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        block_on(async {
            let mut runner = KopfRunner::new(patient);
            runner.cluster().apply(CRD).unwrap();
            runner
                .play(&Scenario::new().apply(OBJ).settle())
                .await
                .unwrap();
            assert_eq!(runner.outcome().count("patient", "succeeded"), 1);
        });
        walls.push(start.elapsed());
    }
    walls.sort();
    println!(
        "3 x 60 s backoff scenario: median {:.1} ms, max {:.1} ms wall (20 runs; 180 s of virtual time each)",
        walls[10].as_secs_f64() * 1e3,
        walls[19].as_secs_f64() * 1e3
    );

    let scenario = Scenario::new()
        .apply(OBJ)
        .settle()
        .patch(KEX, "kopf-example-1", json!({"spec": {"field": "changed"}}))
        .settle()
        .delete(KEX, "kopf-example-1")
        .settle();
    let n = 300;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += block_on(async {
            let mut runner = KopfRunner::new(crud);
            runner.cluster().apply(CRD).unwrap();
            runner.play(&scenario).await.unwrap();
            runner.stop().await.unwrap();
            runner.outcome().to_yaml().len()
        });
    }
    let elapsed = start.elapsed();
    println!(
        "scenarios: {n} (fresh cluster + operator + create/update/delete + snapshot) in {:.2} s = {:.0} scenarios/s (snapshots {} bytes on average), one thread",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        bytes / n
    );
}
