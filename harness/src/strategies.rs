//! proptest strategies for operators' inputs (object specs, edit sequences,
//! fault schedules), invariants to check after a scenario, and a checker that
//! runs an operator over generated scenarios and, on a failure, reports the
//! shrunk scenario as YAML ready to paste as a regression test.

use std::time::Duration;

use fake_apiserver::testing::{
    faults::{FaultAction, FaultRule},
    inject::InjectRequest,
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestError, TestRunner},
};
use serde_json::{json, Value};

use crate::{
    outcome::Outcome,
    runner::KopfRunner,
    scenario::{ObjectRef, Scenario, Step},
};

/// A nested spec: a string field, a number, a list and a nested map.
pub fn arb_spec() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,6}",
        0i64..100,
        prop::collection::vec("[a-z]{1,4}", 0..3),
        prop::option::of(("[a-z]{1,4}", any::<bool>())),
    )
        .prop_map(|(field, size, items, nested)| {
            let mut spec = json!({"field": field, "size": size, "items": items});
            if let Some((k, v)) = nested {
                spec["nested"] = json!({ k: v });
            }
            spec
        })
}

/// Where generated objects live and what they look like.
#[derive(Clone, Debug)]
pub struct Target {
    /// `plural.group` of the resource.
    pub resource: String,
    /// `apiVersion` of objects.
    pub api_version: String,
    /// `kind` of objects.
    pub kind: String,
    /// Object names to pick from.
    pub names: Vec<String>,
}

impl Target {
    fn object(&self, name: &str, spec: &Value) -> String {
        json!({"apiVersion": self.api_version, "kind": self.kind, "metadata": {"name": name, "namespace": "default"}, "spec": spec})
            .to_string()
    }

    fn at(&self, name: &str) -> ObjectRef {
        ObjectRef {
            resource: self.resource.clone(),
            namespace: "default".into(),
            name: name.into(),
        }
    }
}

/// One generated edit: create or replace, patch the spec, delete, move time,
/// or a fault (a 409/500 on the operator's next patches, a cut watch, a
/// duplicated or stale event).
pub fn arb_step(target: Target) -> impl Strategy<Value = Step> {
    let n = target.names.len().max(1);
    let (t1, t2, t3, t4) = (
        target.clone(),
        target.clone(),
        target.clone(),
        target.clone(),
    );
    prop_oneof![
        3 => (0..n, arb_spec()).prop_map(move |(i, spec)| Step::Apply(t1.object(&t1.names[i], &spec))),
        3 => (0..n, arb_spec()).prop_map(move |(i, spec)| Step::Patch { object: t2.at(&t2.names[i]), patch: json!({"spec": spec}) }),
        1 => (0..n).prop_map(move |i| Step::Delete(t3.at(&t3.names[i]))),
        1 => (1u64..120).prop_map(|s| Step::Advance(s as f64)),
        1 => arb_fault(t4.resource.clone()),
        1 => Just(Step::Settle),
    ]
}

/// A fault step against `resource`.
pub fn arb_fault(resource: String) -> impl Strategy<Value = Step> {
    let (r1, r2) = (resource.clone(), resource);
    prop_oneof![
        (prop::sample::select(vec![409u16, 500, 503]), 1u64..3).prop_map(move |(code, times)| {
            Step::Fault(
                FaultRule::new(
                    &["patch"],
                    &r1,
                    FaultAction::Status {
                        code,
                        message: None,
                        retry_after: None,
                    },
                )
                .times(times),
            )
        }),
        prop::sample::select(vec!["cut", "duplicate", "stale"]).prop_map(move |action| {
            Step::Inject(InjectRequest {
                action: Some(action.into()),
                resource: Some(r2.clone()),
                ..Default::default()
            })
        }),
    ]
}

/// A scenario: one to `max_steps` generated steps, ending with `settle`.
pub fn arb_scenario(target: Target, max_steps: usize) -> impl Strategy<Value = Scenario> {
    prop::collection::vec(arb_step(target), 1..=max_steps.max(1)).prop_map(|mut steps| {
        steps.push(Step::Settle);
        Scenario {
            lenient: true,
            steps,
        }
    })
}

/// The invariants every operator built with kopf should keep.
pub struct Invariants<'a> {
    /// The create handler that must succeed once per object lifetime.
    pub create_handler: Option<&'a str>,
    /// Whether the final status must reflect the last spec (checked by `status_matches`).
    pub status_matches: Option<&'a (dyn Fn(&Value) -> bool + Sync)>,
}

fn lifetimes(scenario: &Scenario, name: &str) -> usize {
    // Every apply of an absent object starts a lifetime; count applies
    // after deletions (or the first), conservatively.
    let mut alive = false;
    let mut count = 0;
    for step in &scenario.steps {
        match step {
            Step::Apply(text) if text.contains(&format!("\"name\":\"{name}\"")) && !alive => {
                count += 1;
                alive = true;
            }
            Step::Delete(o) if o.name == name => alive = false,
            _ => {}
        }
    }
    count
}

/// Checks `outcome` of `scenario` against the invariants.
///
/// # Errors
/// The first invariant broken, described.
pub fn check_invariants(
    target: &Target,
    scenario: &Scenario,
    outcome: &Outcome,
    inv: &Invariants<'_>,
) -> Result<(), String> {
    let existing: Vec<String> = outcome
        .objects
        .iter()
        .filter_map(|o| {
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    for name in &target.names {
        let prefix = format!("[default/{name}] ");
        if let Some(id) = inv.create_handler {
            let ok = outcome
                .handlers
                .iter()
                .filter(|h| {
                    h.starts_with(&prefix) && h.ends_with(&format!("Handler '{id}' succeeded."))
                })
                .count();
            let allowed = lifetimes(scenario, name);
            if ok > allowed {
                return Err(format!(
                    "{name}: '{id}' succeeded {ok} times in {allowed} lifetimes"
                ));
            }
        }
        // Nothing handles an object after it is gone for good.
        if !existing.contains(name) {
            let last_gone = outcome.log.iter().rposition(|l| {
                l.starts_with(&prefix)
                    && l.ends_with("Deleted, really deleted, and we are notified.")
            });
            if let Some(i) = last_gone {
                if outcome.log[i + 1..]
                    .iter()
                    .any(|l| l.starts_with(&prefix) && l.contains("Handler '"))
                {
                    return Err(format!("{name}: a handler ran after the object was gone"));
                }
            }
        }
    }
    for obj in &outcome.objects {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(format!(
                "{name}: stuck in deletion with finalizers {}",
                obj["metadata"]["finalizers"]
            ));
        }
        if let Some(check) = inv.status_matches {
            if !check(obj) {
                return Err(format!(
                    "{name}: the final status does not match the last spec: spec {}, status {}",
                    obj["spec"], obj["status"]
                ));
            }
        }
    }
    Ok(())
}

/// Runs `make_runner`'s operator over `cases` generated scenarios and checks
/// the invariants; returns the shrunk failing scenario, if any.
pub fn find_counterexample(
    cases: u32,
    target: Target,
    max_steps: usize,
    setup: &(dyn Fn() -> KopfRunner + Sync),
    inv: &Invariants<'_>,
) -> Option<(Scenario, String)> {
    // A fixed seed (override with KOPF_PROPTEST_SEED): the same cases every
    // run, so a failure replays; vary the seed to explore.
    let seed: u64 = std::env::var("KOPF_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b6f7066);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(
        proptest::test_runner::RngAlgorithm::ChaCha,
        &bytes,
    );
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2048,
            ..Config::default()
        },
        rng,
    );
    let strategy = arb_scenario(target.clone(), max_steps);
    let result = runner.run(&strategy, |scenario| {
        crate::block_on(async {
            let mut kopf = setup();
            kopf.settle_budget(Duration::from_secs(300));
            kopf.play(&scenario)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let outcome = kopf.outcome();
            let checked =
                check_invariants(&target, &scenario, &outcome, inv).map_err(TestCaseError::fail);
            kopf.stop()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            checked
        })
    });
    match result {
        Ok(()) => None,
        Err(TestError::Fail(reason, scenario)) => Some((scenario, reason.to_string())),
        Err(TestError::Abort(reason)) => Some((Scenario::default(), reason.to_string())),
    }
}

/// As [`find_counterexample`], panicking with the shrunk scenario as YAML
/// (ready to paste as a regression test) when an invariant breaks.
pub fn check_operator(
    cases: u32,
    target: Target,
    max_steps: usize,
    setup: &(dyn Fn() -> KopfRunner + Sync),
    inv: &Invariants<'_>,
) {
    if let Some((scenario, reason)) = find_counterexample(cases, target, max_steps, setup, inv) {
        panic!(
            "invariant broken: {reason}\nminimal failing scenario:\n{}",
            scenario.to_yaml()
        );
    }
}
