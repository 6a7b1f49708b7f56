//! Testing an operator's RBAC (issue 14): example 99 runs as a
//! ServiceAccount under RBAC with the manifest a user would ship
//! (`examples/rbac.yaml`, Kopf's documented RBAC for its examples, ported),
//! and that suffices; the minimal RBAC it needs is snapshotted; and a
//! manifest with one permission removed fails `settle`, naming it.

use kopf_harness::{KopfRunner, Scenario};

#[path = "../examples/99-all-at-once.rs"]
mod all_at_once;

const CRD: &str = include_str!("../examples/crd.yaml");
const RBAC: &str = include_str!("../examples/rbac.yaml");

fn scenario() -> Scenario {
    Scenario::from_yaml(include_str!("scenarios/99-all-at-once.yaml")).expect("the scenario parses")
}

fn runner(rbac: &str) -> KopfRunner {
    let mut runner = KopfRunner::new(all_at_once::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .service_account("default", "kopfexample-account")
        .rbac(rbac)
        .unwrap();
    runner
}

#[tokio::test(start_paused = true)]
async fn kopfs_documented_rbac_should_suffice_for_example_99() {
    let mut runner = runner(RBAC);
    runner.play(&scenario()).await.unwrap();
    let outcome = runner.outcome();
    assert_eq!(outcome.denied, [], "nothing denied");
    insta::assert_snapshot!(outcome.required_rbac_yaml());
}

/// The shipped manifest with one grant removed (posting Events): `settle`
/// fails at once, naming the request kube-apiserver refused and the rule
/// that would allow it.
#[tokio::test(start_paused = true)]
async fn a_missing_permission_should_fail_settle_naming_it() {
    let without_events = RBAC.replace(
        "  - apiGroups: [\"\"]\n    resources: [events]\n    verbs: [create]\n",
        "",
    );
    assert_ne!(without_events, RBAC, "the events rule is in the manifest");
    let mut runner = runner(&without_events);
    let err = runner.play(&scenario()).await.unwrap_err().to_string();
    assert!(
        err.contains(r#"events is forbidden: User "system:serviceaccount:default:kopfexample-account" cannot create resource "events" in API group "" in the namespace "default""#),
        "{err}"
    );
    assert!(
        err.contains(r#"grant {apiGroups: [""], resources: ["events"], verbs: ["create"]} in a Role of namespace "default" (or a ClusterRole)"#),
        "{err}"
    );
    assert_eq!(runner.denied().len(), 1, "{:?}", runner.denied());
}

/// Degrading without a permission, as Kopf documents for events: the
/// operator logs the failure and carries on; with `tolerate_forbidden`
/// the scenario settles and the outcome lists what was denied.
#[tokio::test(start_paused = true)]
async fn an_operator_should_carry_on_when_events_are_forbidden() {
    let without_events = RBAC.replace(
        "  - apiGroups: [\"\"]\n    resources: [events]\n    verbs: [create]\n",
        "",
    );
    let mut runner = runner(&without_events);
    runner.tolerate_forbidden(true);
    runner.play(&scenario()).await.unwrap();
    let outcome = runner.outcome();
    assert!(
        outcome.count("create_1", "succeeded") == 1,
        "{:?}",
        outcome.handlers
    );
    assert_eq!(outcome.events, [], "no event could be posted");
    assert_eq!(outcome.denied.len(), 1);
    // The operator's log spells out the missing grant.
    assert!(
        runner.output().contains(r#"Failed to post an event: Forbidden: system:serviceaccount:default:kopfexample-account may not create events (the core API group) in the namespace "default"; grant a Role in "default" (or a ClusterRole) bound to it with {apiGroups: [""], resources: ["events"], verbs: [create]}"#),
        "{}",
        runner.output()
    );
    assert_eq!(
        outcome.denied[0].grant,
        r#"{apiGroups: [""], resources: ["events"], verbs: ["create"]} in a Role of namespace "default" (or a ClusterRole)"#
    );
}

#[path = "../examples/06-peering.rs"]
mod peering;

/// Without the peering grants, an operator whose peering resource is
/// served still handles its objects: the keep-alive is refused (logged
/// with the missing grant), as Kopf logs a failed peering write and goes on.
#[tokio::test(start_paused = true)]
async fn an_operator_should_carry_on_when_peering_is_forbidden() {
    let without_peering = RBAC.replace(
        "  - apiGroups: [kopf.dev]\n    resources: [clusterkopfpeerings]\n    verbs: [list, watch, patch, get]\n",
        "",
    );
    assert_ne!(without_peering, RBAC, "the peering rule is in the manifest");
    let mut runner = KopfRunner::new(peering::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .cluster()
        .apply(include_str!("../examples/peering.yaml"))
        .unwrap();
    runner
        .service_account("default", "kopfexample-account")
        .rbac(&without_peering)
        .unwrap()
        .tolerate_forbidden(true);
    runner
        .play(&Scenario::from_yaml(include_str!("scenarios/06-peering.yaml")).unwrap())
        .await
        .unwrap();
    let outcome = runner.outcome();
    assert_eq!(
        outcome.count("create_fn", "succeeded"),
        1,
        "{:?}",
        outcome.handlers
    );
    assert!(
        outcome
            .denied
            .iter()
            .any(|d| d.grant.contains(r#"resources: ["clusterkopfpeerings"]"#)),
        "{:?}",
        outcome.denied
    );
    assert!(
        runner
            .output()
            .contains("may not patch clusterkopfpeerings"),
        "{}",
        runner.output()
    );
}
