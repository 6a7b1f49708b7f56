//! Peering end to end on one in-process cluster and virtual time: two
//! operators with different priorities (the lower pauses while the higher
//! runs, and resumes when it leaves or its record expires), equal
//! priorities (both pause), and Lease-based leader election.

use std::time::Duration;

use kopf::{Context, Operator, Resource};
use kopf_harness::{Cluster, KopfRunner, Scenario};
use serde_json::json;

#[path = "../examples/06-peering.rs"]
mod peering_example;

const CRD: &str = include_str!("../examples/crd.yaml");
const PEERING: &str = include_str!("../examples/peering.yaml");
const KEX: &str = "kopfexamples.kopf.dev";

fn object(name: &str) -> String {
    format!("{{\"apiVersion\": \"kopf.dev/v1\", \"kind\": \"KopfExample\", \"metadata\": {{\"name\": \"{name}\"}}, \"spec\": {{}}}}")
}

/// An operator that writes its own name into what it creates.
fn named(who: &'static str) -> impl Fn() -> Operator + Send + Sync + 'static {
    move || {
        let mut op = Operator::new();
        op.on_create(
            &Resource::new("kopf.dev", "v1", "kopfexamples"),
            move |_ctx: Context| async move { Ok(Some(json!(who))) },
        )
        .id("owner");
        op
    }
}

fn runner(cluster: &Cluster, who: &'static str, priority: i64) -> KopfRunner {
    let mut r = KopfRunner::with_cluster(cluster.clone(), named(who));
    r.settings_mut().peering.priority = priority;
    r.settings_mut().peering.identity = who.into();
    r
}

fn owner(cluster: &Cluster, name: &str) -> serde_json::Value {
    cluster
        .get(KEX, "default", name)
        .map(|o| o["status"]["owner"].clone())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn lower_priorities_should_pause_while_a_higher_one_runs() {
    let cluster = Cluster::new();
    cluster.apply(CRD).unwrap();
    cluster.apply(PEERING).unwrap();
    let mut low = runner(&cluster, "low", 0);
    let mut high = runner(&cluster, "high", 100);
    low.play(&Scenario::new().apply(&object("first")).settle())
        .await
        .unwrap();
    assert_eq!(owner(&cluster, "first"), "low");

    high.start().await.unwrap();
    high.settle().await.unwrap();
    low.settle().await.unwrap();
    assert!(
        low.output().contains(
            "Pausing operations in favour of [<Peer high: priority=100, lifetime=60, lastseen="
        ),
        "{}",
        low.output()
    );
    cluster.apply(&object("second")).unwrap();
    high.settle().await.unwrap();
    low.settle().await.unwrap();
    assert_eq!(owner(&cluster, "second"), "high");
    assert!(!low
        .output()
        .contains("Handler 'owner' succeeded.\n[default/second]"));

    // The higher one leaves: its record goes, the lower one resumes.
    high.stop().await.unwrap();
    low.settle().await.unwrap();
    assert!(low.output().contains(
        "Resuming operations after the pause. Conflicting operators with the same priority are gone."
    ));
    let peering = cluster
        .get("clusterkopfpeerings.kopf.dev", "", "default")
        .unwrap();
    assert!(peering["status"].get("high").is_none(), "{peering}");
    assert!(peering["status"].get("low").is_some(), "{peering}");
    low.play(&Scenario::new().apply(&object("third")).settle())
        .await
        .unwrap();
    assert_eq!(owner(&cluster, "third"), "low");
    assert_eq!(
        low.outcome().count("owner", "succeeded"),
        2,
        "first and third"
    );

    // A record that is not renewed expires: the pause ends with it.
    // Seen now: as fresh as the lower one's own record.
    low.advance(Duration::from_secs(60)).await;
    let peering = cluster
        .get("clusterkopfpeerings.kopf.dev", "", "default")
        .unwrap();
    let now = peering["status"]["low"]["lastseen"].clone();
    cluster
        .patch(
            "clusterkopfpeerings.kopf.dev",
            "",
            "default",
            &json!({"status": {"ghost": {"priority": 1000, "lifetime": 30,
                "lastseen": now}}}),
        )
        .unwrap();
    low.settle().await.unwrap();
    cluster.apply(&object("fourth")).unwrap();
    low.settle().await.unwrap();
    assert!(owner(&cluster, "fourth").is_null(), "paused for the ghost");
    low.advance(Duration::from_secs(31)).await;
    low.settle().await.unwrap();
    assert_eq!(
        owner(&cluster, "fourth"),
        "low",
        "resumed after the ghost expired"
    );
    let peering = cluster
        .get("clusterkopfpeerings.kopf.dev", "", "default")
        .unwrap();
    assert!(
        peering["status"].get("ghost").is_none(),
        "the dead record is cleaned up"
    );
    low.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn equal_priorities_should_all_pause() {
    let cluster = Cluster::new();
    cluster.apply(CRD).unwrap();
    cluster.apply(PEERING).unwrap();
    let mut one = runner(&cluster, "one", 5);
    let mut two = runner(&cluster, "two", 5);
    one.start().await.unwrap();
    two.start().await.unwrap();
    one.settle().await.unwrap();
    two.settle().await.unwrap();
    cluster.apply(&object("contested")).unwrap();
    one.settle().await.unwrap();
    two.settle().await.unwrap();
    assert!(owner(&cluster, "contested").is_null());
    for (r, other) in [(&one, "two"), (&two, "one")] {
        let out = r.output();
        assert!(
            out.contains(&format!(
                "Possibly conflicting operators with the same priority: [<Peer {other}: priority=5"
            )) && out.contains("Pausing all operators, including self: "),
            "{out}"
        );
    }
    two.stop().await.unwrap();
    one.settle().await.unwrap();
    assert_eq!(owner(&cluster, "contested"), "one");
    one.stop().await.unwrap();
}

/// Lease-based leader election: one leader at a time; the other takes
/// over when the leader releases the Lease.
#[tokio::test(start_paused = true)]
async fn a_lease_should_elect_one_leader() {
    let cluster = Cluster::new();
    cluster.apply(CRD).unwrap();
    let lease = kopf::LeaseElection {
        namespace: "default".into(),
        name: "example-operator".into(),
        duration: Duration::from_secs(15),
    };
    let mut first = runner(&cluster, "first", 0);
    first.settings_mut().peering.lease = Some(lease.clone());
    let mut second = runner(&cluster, "second", 0);
    second.settings_mut().peering.lease = Some(lease);
    first.start().await.unwrap();
    first.settle().await.unwrap();
    second.start().await.unwrap();
    second.settle().await.unwrap();
    let held = cluster
        .get("leases.coordination.k8s.io", "default", "example-operator")
        .unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "first");
    cluster.apply(&object("led")).unwrap();
    first.settle().await.unwrap();
    second.settle().await.unwrap();
    assert_eq!(owner(&cluster, "led"), "first");
    first.stop().await.unwrap();
    second.advance(Duration::from_secs(8)).await;
    second.settle().await.unwrap();
    let held = cluster
        .get("leases.coordination.k8s.io", "default", "example-operator")
        .unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "second");
    assert_eq!(held["spec"]["leaseTransitions"], 1);
    assert!(second
        .output()
        .contains("Acquired the lease default/example-operator: resuming operations."));
    cluster.apply(&object("next")).unwrap();
    second.settle().await.unwrap();
    assert_eq!(owner(&cluster, "next"), "second");
    second.stop().await.unwrap();
}

/// 06-peering runs (standalone here) and handles the object once.
#[tokio::test(start_paused = true)]
async fn example_06_peering_should_handle_objects() {
    let mut r = KopfRunner::new(peering_example::operator);
    r.settings_mut().peering.standalone = true;
    r.cluster().apply(CRD).unwrap();
    r.play(&Scenario::new().apply(&object("kopf-example-1")).settle())
        .await
        .unwrap();
    assert_eq!(r.outcome().count("create_fn", "succeeded"), 1);
    r.stop().await.unwrap();
}

/// Serving namespaces (not the cluster): a KopfPeering in each; a live
/// higher-priority peer in any of them pauses the operator.
#[tokio::test(start_paused = true)]
async fn namespaced_peering_should_pause_for_a_peer_in_any_namespace() {
    let cluster = Cluster::new();
    cluster.apply(CRD).unwrap();
    cluster.apply(PEERING).unwrap();
    cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\napiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: default, namespace: other}\n")
        .unwrap();
    let mut op = runner(&cluster, "mine", 0);
    op.settings_mut().watching.namespaces = vec!["default".into(), "other".into()];
    op.start().await.unwrap();
    op.settle().await.unwrap();
    for ns in ["default", "other"] {
        let peering = cluster.get("kopfpeerings.kopf.dev", ns, "default").unwrap();
        assert!(peering["status"].get("mine").is_some(), "{ns}: {peering}");
    }
    let lastseen = cluster
        .get("kopfpeerings.kopf.dev", "other", "default")
        .unwrap()["status"]["mine"]["lastseen"]
        .clone();
    cluster
        .patch(
            "kopfpeerings.kopf.dev",
            "other",
            "default",
            &json!({"status": {"boss": {"priority": 10, "lifetime": 60, "lastseen": lastseen}}}),
        )
        .unwrap();
    op.settle().await.unwrap();
    assert!(
        op.output()
            .contains("Pausing operations in favour of [<Peer boss"),
        "{}",
        op.output()
    );
    cluster.apply(&object("waiting")).unwrap();
    op.settle().await.unwrap();
    assert!(owner(&cluster, "waiting").is_null(), "paused");
    op.advance(Duration::from_secs(61)).await;
    op.settle().await.unwrap();
    assert_eq!(
        owner(&cluster, "waiting"),
        "mine",
        "resumed once the boss expired"
    );
    op.stop().await.unwrap();
}
