//! Property tests: operators run over a few hundred generated scenarios
//! (creates, spec edits, deletions, time jumps, and faults: 409/500/503 on
//! patches, cut watches, duplicated and stale events), keeping kopf's
//! invariants; a deliberately broken operator is caught and shrunk.

use kopf::{Context, HandlerResult, Operator, Resource};
use kopf_harness::{
    strategies::{check_operator, find_counterexample, Invariants, Target},
    KopfRunner, Step,
};
use serde_json::{json, Value};

#[path = "../examples/01-minimal.rs"]
mod minimal;

const CRD: &str = include_str!("../examples/crd.yaml");

fn target() -> Target {
    Target {
        resource: "kopfexamples.kopf.dev".into(),
        api_version: "kopf.dev/v1".into(),
        kind: "KopfExample".into(),
        names: vec!["a".into(), "b".into()],
    }
}

fn runner(factory: fn() -> Operator) -> KopfRunner {
    let runner = KopfRunner::new(factory);
    runner.cluster().apply(CRD).unwrap();
    runner
}

/// An operator whose status mirrors `spec.field`, on creation and on changes.
fn mirror() -> Operator {
    let resource = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut op = Operator::new();
    op.on_create(&resource, |ctx: Context| async move {
        HandlerResult::Ok(Some(ctx.spec()["field"].clone()))
    })
    .id("mirror");
    op.on_update(&resource, |ctx: Context| async move {
        ctx.patch
            .set(&["status", "mirror"], ctx.spec()["field"].clone());
        HandlerResult::Ok(None)
    })
    .id("follow");
    op
}

/// The same, forgetting updates: its status goes stale after a spec change.
fn broken_mirror() -> Operator {
    let resource = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut op = Operator::new();
    op.on_create(&resource, |ctx: Context| async move {
        HandlerResult::Ok(Some(ctx.spec()["field"].clone()))
    })
    .id("mirror");
    op
}

fn mirrors(obj: &Value) -> bool {
    obj["status"]["mirror"] == obj["spec"]["field"]
}

/// 01-minimal keeps the invariants over 200 generated scenarios with faults.
#[test]
fn minimal_should_keep_invariants_under_generated_scenarios() {
    let inv = Invariants {
        create_handler: Some("create_fn"),
        status_matches: None,
    };
    check_operator(200, target(), 8, &|| runner(minimal::operator), &inv);
}

/// A mirroring operator's final status matches the last spec, whatever happened.
#[test]
fn mirror_should_match_the_last_spec_under_generated_scenarios() {
    let inv = Invariants {
        create_handler: Some("mirror"),
        status_matches: Some(&mirrors),
    };
    check_operator(200, target(), 8, &|| runner(mirror), &inv);
}

/// The broken mirror is caught, and the scenario shrinks to a create and a change.
#[test]
fn a_broken_operator_should_be_caught_and_shrunk() {
    let inv = Invariants {
        create_handler: Some("mirror"),
        status_matches: Some(&mirrors),
    };
    let (scenario, reason) = find_counterexample(200, target(), 8, &|| runner(broken_mirror), &inv)
        .expect("the broken operator is caught");
    assert!(
        reason.contains("the final status does not match the last spec"),
        "{reason}"
    );
    let edits = scenario
        .steps
        .iter()
        .filter(|s| !matches!(s, Step::Settle | Step::Advance(_)))
        .count();
    assert!(
        edits <= 2,
        "shrunk to the essentials:\n{}",
        scenario.to_yaml()
    );
    let yaml = scenario.to_yaml();
    assert!(yaml.contains("steps:"), "{yaml}");
    assert_eq!(
        json!(kopf_harness::Scenario::from_yaml(&yaml)
            .unwrap()
            .steps
            .len()),
        json!(scenario.steps.len())
    );
}

/// Regression (found by the property test, seed 1): a duplicated DELETED
/// event for an object already gone must not leave work queued forever.
#[test]
fn duplicate_deleted_events_should_not_block_settling() {
    let scenario = kopf_harness::Scenario::from_yaml(
        r#"
lenient: true
steps:
- apply: '{"apiVersion":"kopf.dev/v1","kind":"KopfExample","metadata":{"name":"a","namespace":"default"},"spec":{"field":"a","items":[],"size":0}}'
- delete: {resource: kopfexamples.kopf.dev, namespace: default, name: a}
- advance: 1.0
- inject: {action: duplicate, resource: kopfexamples.kopf.dev}
- settle
"#,
    )
    .unwrap();
    kopf_harness::block_on(async {
        let mut runner = runner(mirror);
        runner.play(&scenario).await.unwrap();
        runner.stop().await.unwrap();
    });
}
