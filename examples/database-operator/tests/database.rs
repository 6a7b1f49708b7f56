//! The Database operator's life, played on an in-process fake cluster on
//! virtual time: create, become ready, scale, delete. The CRD has a status
//! subresource; the operator writes status through a handler's result,
//! through `ctx.patch`, and from a timer.

use std::time::Duration;

use database_operator::operator;
use kopf::serde_json::json;
use kopf_harness::{assert_outcome, KopfRunner, Scenario};

const CRD: &str = include_str!("../deploy/crd.yaml");
const DB: &str = include_str!("../deploy/db1.yaml");
const DBS: &str = "databases.demo.example.com";
const DEPLOYMENTS: &str = "deployments.apps";

/// A runner with the CRD installed.
fn runner() -> KopfRunner {
    let runner = KopfRunner::new(operator);
    runner.cluster().apply(CRD).unwrap();
    runner
}

/// What the Deployment controller would report: `ready` pods ready.
fn deployment_reports(runner: &KopfRunner, ready: i64) {
    runner
        .cluster()
        .patch_status(
            DEPLOYMENTS,
            "default",
            "db1",
            &json!({"status": {"replicas": ready, "readyReplicas": ready}}),
        )
        .unwrap();
}

/// Creation: children made and adopted, the result and the phase in status.
#[tokio::test(start_paused = true)]
async fn creation_should_make_the_children_and_report_provisioning() {
    let mut runner = runner();
    let scenario = Scenario::new()
        .apply(DB)
        .settle()
        .expect(DBS, "db1", "status.phase", json!("Provisioning"))
        .expect(DBS, "db1", "status.reconcile.replicas", json!(2))
        .expect(DEPLOYMENTS, "db1", "spec.replicas", json!(2))
        .expect(
            DEPLOYMENTS,
            "db1",
            "metadata.ownerReferences.0.kind",
            json!("Database"),
        )
        .expect("services", "db1", "spec.ports.0.port", json!(5432));
    runner.play(&scenario).await.unwrap();
    assert_outcome!(runner.outcome().with_objects([DEPLOYMENTS, "services"]));
}

/// Readiness: once the Deployment reports its pods ready, the timer sets
/// the phase to Ready and copies the count.
#[tokio::test(start_paused = true)]
async fn a_ready_deployment_should_make_the_database_ready() {
    let mut runner = runner();
    runner
        .play(&Scenario::new().apply(DB).settle())
        .await
        .unwrap();
    deployment_reports(&runner, 1);
    runner.advance(Duration::from_secs(10)).await;
    runner.settle().await.unwrap();
    let db = runner.cluster().get(DBS, "default", "db1").unwrap();
    assert_eq!(db["status"]["phase"], "Provisioning", "1 of 2 is not ready");
    assert_eq!(db["status"]["readyReplicas"], 1);
    deployment_reports(&runner, 2);
    runner.advance(Duration::from_secs(10)).await;
    runner.settle().await.unwrap();
    let db = runner.cluster().get(DBS, "default", "db1").unwrap();
    assert_eq!(db["status"]["phase"], "Ready");
    assert_eq!(db["status"]["readyReplicas"], 2);
    assert_outcome!(runner.outcome().with_written_objects());
}

/// Scaling: the update handler re-applies the Deployment; the database is
/// provisioning again until the new pods are ready.
#[tokio::test(start_paused = true)]
async fn scaling_should_update_the_deployment() {
    let mut runner = runner();
    runner
        .play(&Scenario::new().apply(DB).settle())
        .await
        .unwrap();
    deployment_reports(&runner, 2);
    runner.advance(Duration::from_secs(10)).await;
    let scenario = Scenario::new()
        .settle()
        .expect(DBS, "db1", "status.phase", json!("Ready"))
        .patch(DBS, "db1", json!({"spec": {"replicas": 3}}))
        .settle()
        .expect(DEPLOYMENTS, "db1", "spec.replicas", json!(3))
        .expect(DBS, "db1", "status.reconcile.replicas", json!(3))
        .advance(Duration::from_secs(10))
        .settle()
        .expect(DBS, "db1", "status.phase", json!("Provisioning"));
    runner.play(&scenario).await.unwrap();
    assert_eq!(runner.outcome().count("reconcile", "succeeded"), 2);
}

/// Deletion: the database goes, and its children are collected with it.
#[tokio::test(start_paused = true)]
async fn deletion_should_collect_the_children() {
    let mut runner = runner();
    let scenario = Scenario::new()
        .apply(DB)
        .settle()
        .delete(DBS, "db1")
        .settle()
        .expect_absent(DBS, "db1", "")
        .expect_absent(DEPLOYMENTS, "db1", "")
        .expect_absent("services", "db1", "");
    runner.play(&scenario).await.unwrap();
    runner.stop().await.unwrap();
}
