//! The Postgres cluster example (examples/20-postgres-cluster.rs) on a
//! simulated cluster (issue 17): the StatefulSet's pods really start, get
//! their volumes, become ready, crash, and lose their node, on virtual
//! time. Each outcome is a reviewed snapshot.

use std::time::Duration;

use fake_apiserver::controllers::stages::Stages;
use kopf_harness::{assert_outcome, Cluster, KopfRunner, Scenario};
use serde_json::json;

#[path = "../examples/20-postgres-cluster.rs"]
mod postgres;

const MANIFESTS: &str = include_str!("../examples/postgres-cluster.yaml");
const CLUSTERS: &str = "postgresclusters.demo.kopf.dev";
const SETS: &str = "statefulsets.apps";

/// A runner on a simulated cluster of `nodes` nodes, the CRD installed.
fn runner(nodes: usize) -> KopfRunner {
    let runner = KopfRunner::with_cluster(
        Cluster::simulated_with(nodes, Stages::default()),
        postgres::operator,
    );
    let crd = MANIFESTS.split("\n---\n").next().unwrap();
    runner.cluster().apply(crd).unwrap();
    runner
}

fn the_cluster() -> &'static str {
    MANIFESTS.split("\n---\n").nth(1).unwrap()
}

/// The phase the health timer reports after its next round.
fn running() -> Scenario {
    Scenario::new()
        .apply(the_cluster())
        .settle()
        .advance(Duration::from_secs(10))
        .settle()
}

#[tokio::test(start_paused = true)]
async fn the_cluster_should_come_up_running() {
    let mut runner = runner(1);
    let scenario = running()
        .expect(CLUSTERS, "pg", "status.phase", json!("Running"))
        .expect(CLUSTERS, "pg", "status.readyInstances", json!(3))
        .expect(SETS, "pg", "status.readyReplicas", json!(3))
        .expect("pods", "pg-2", "status.phase", json!("Running"))
        .expect(
            "persistentvolumeclaims",
            "data-pg-0",
            "status.phase",
            json!("Bound"),
        )
        .expect(
            "endpoints",
            "pg",
            "subsets.0.addresses.2.targetRef.name",
            json!("pg-2"),
        );
    runner.play(&scenario).await.unwrap();
    assert_outcome!(runner
        .outcome()
        .with_objects([CLUSTERS, SETS, "services", "secrets"]));
}

#[tokio::test(start_paused = true)]
async fn scaling_up_should_add_instances() {
    let mut runner = runner(1);
    let scenario = running()
        .patch(CLUSTERS, "pg", json!({"spec": {"instances": 5}}))
        .settle()
        .expect(SETS, "pg", "spec.replicas", json!(5))
        .expect(SETS, "pg", "status.readyReplicas", json!(5))
        .advance(Duration::from_secs(10))
        .settle()
        .expect(CLUSTERS, "pg", "status.phase", json!("Running"))
        .expect(CLUSTERS, "pg", "status.readyInstances", json!(5))
        .expect(
            "persistentvolumeclaims",
            "data-pg-4",
            "status.phase",
            json!("Bound"),
        );
    runner.play(&scenario).await.unwrap();
    assert_outcome!(runner.outcome().with_written_objects());
}

#[tokio::test(start_paused = true)]
async fn a_crash_looping_pod_should_degrade_the_cluster() {
    let mut runner = runner(1);
    let scenario = running()
        .fail_pod("pg-1", "CrashLoopBackOff", Some(1))
        .settle()
        .expect(
            "pods",
            "pg-1",
            "status.containerStatuses.0.state.waiting.reason",
            json!("CrashLoopBackOff"),
        )
        .expect(
            "pods",
            "pg-1",
            "status.containerStatuses.0.lastState.terminated.exitCode",
            json!(1),
        )
        .advance(Duration::from_secs(10))
        .settle()
        .expect(CLUSTERS, "pg", "status.phase", json!("Degraded"))
        .expect(CLUSTERS, "pg", "status.readyInstances", json!(2));
    runner.play(&scenario).await.unwrap();
    // The crash loop goes on: restarts back off 10 s, 20 s, 40 s...
    runner.advance(Duration::from_secs(120)).await;
    runner.settle().await.unwrap();
    let pod = runner.cluster().get("pods", "default", "pg-1").unwrap();
    let restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap();
    assert!(
        (3..=5).contains(&restarts),
        "{restarts} restarts after about 2 minutes"
    );
    assert_outcome!(runner.outcome().with_written_objects());
}

#[tokio::test(start_paused = true)]
async fn a_node_going_down_should_degrade_the_cluster() {
    let mut runner = runner(2);
    let scenario = running()
        .node_down("node-2")
        .settle()
        .expect(
            "nodes",
            "node-2",
            "spec.taints.1.key",
            json!("node.kubernetes.io/unreachable"),
        )
        .advance(Duration::from_secs(10))
        .settle()
        .expect(CLUSTERS, "pg", "status.phase", json!("Degraded"));
    runner.play(&scenario).await.unwrap();
    let db = runner.cluster().get(CLUSTERS, "default", "pg").unwrap();
    assert_eq!(
        db["status"]["readyInstances"], 2,
        "one of three instances was on node-2"
    );
    // Back up: the pods run again and the cluster recovers.
    let back = Scenario::new()
        .node_up("node-2")
        .settle()
        .advance(Duration::from_secs(10))
        .settle()
        .expect(CLUSTERS, "pg", "status.phase", json!("Running"));
    runner.play(&back).await.unwrap();
    assert_outcome!(runner.outcome().with_written_objects());
}

#[tokio::test(start_paused = true)]
async fn deletion_should_collect_the_children_and_keep_the_volumes() {
    let mut runner = runner(1);
    let scenario = running()
        .delete(CLUSTERS, "pg")
        .settle()
        .expect_absent(CLUSTERS, "pg", "")
        .expect_absent(SETS, "pg", "")
        .expect_absent("services", "pg", "")
        .expect_absent("secrets", "pg-credentials", "")
        .expect_absent("pods", "pg-0", "")
        .expect(
            "persistentvolumeclaims",
            "data-pg-0",
            "status.phase",
            json!("Bound"),
        );
    runner.play(&scenario).await.unwrap();
    runner.stop().await.unwrap();
    assert_outcome!(runner.outcome());
}
