//! Every example's scenario (`tests/scenarios/<example>.yaml`), played by the
//! harness against that example's operator, snapshotted one file each.

use kopf::Operator;
use kopf_harness::{assert_outcome, KopfRunner, Scenario};

#[path = "../examples/99-all-at-once.rs"]
mod all_at_once;
#[path = "../examples/10-builtins.rs"]
mod builtins;
#[path = "../examples/02-children.rs"]
mod children;
#[path = "../examples/14-daemons.rs"]
mod daemons;
#[path = "../examples/12-embedded.rs"]
mod embedded;
#[path = "../examples/04-events.rs"]
mod events;
#[path = "../examples/03-exceptions.rs"]
mod exceptions;
#[path = "../examples/11-filtering-handlers.rs"]
mod filtering;
#[path = "../examples/05-handlers.rs"]
mod handlers;
#[path = "../examples/13-hooks.rs"]
mod hooks;
#[path = "../examples/16-indexing.rs"]
mod indexing;
#[path = "../examples/01-minimal.rs"]
mod minimal;
#[path = "../examples/06-peering.rs"]
mod peering;
#[path = "../examples/07-subhandlers.rs"]
mod subhandlers;
#[path = "../examples/15-timers.rs"]
mod timers;
#[path = "../examples/08-events.rs"]
mod watch_events;

const CRD: &str = include_str!("../examples/crd.yaml");

fn factory(example: &str) -> fn() -> Operator {
    match example {
        "01-minimal" => minimal::operator,
        "02-children" => children::operator,
        "03-exceptions" => exceptions::operator,
        "04-events" => events::operator,
        "05-handlers" => handlers::operator,
        "08-events" => watch_events::operator,
        "10-builtins" => builtins::operator,
        "12-embedded" => embedded::operator,
        "06-peering" => peering::operator,
        "07-subhandlers" => subhandlers::operator,
        "11-filtering-handlers" => filtering::operator,
        "13-hooks" => hooks::operator,
        "14-daemons" => daemons::operator,
        "15-timers" => timers::operator,
        "16-indexing" => indexing::operator,
        "99-all-at-once" => all_at_once::operator,
        other => panic!("no operator for scenario {other}"),
    }
}

/// Plays each scenario file against its example's operator and snapshots the outcome.
#[test]
fn example_scenarios_should_match_their_snapshots() {
    insta::glob!("scenarios/*.yaml", |path| {
        let example = path.file_stem().unwrap().to_string_lossy().to_string();
        let scenario = Scenario::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
        let outcome = kopf_harness::block_on(async {
            let mut runner = KopfRunner::new(factory(&example));
            runner.settings_mut().execution.default_backoff = std::time::Duration::from_secs(1);
            runner.cluster().apply(CRD).unwrap();
            runner
                .play(&scenario)
                .await
                .unwrap_or_else(|e| panic!("{example}: {e}"));
            runner.stop().await.unwrap();
            runner.outcome()
        });
        assert_outcome!(outcome);
    });
}

/// The examples' CRD with a status subresource on every version, as most
/// real CRDs have: the operator's status writes then go to `/status`.
fn crd_with_status_subresource() -> String {
    let mut crd: serde_json::Value = serde_yaml::from_str(CRD).unwrap();
    for version in crd["spec"]["versions"].as_array_mut().unwrap() {
        version["subresources"] = serde_json::json!({"status": {}});
    }
    crd.to_string()
}

/// Plays `scenario` with the given CRD; the outcome, or the failure.
fn play(example: &str, crd: &str, scenario: &Scenario) -> kopf_harness::Outcome {
    kopf_harness::block_on(async {
        let mut runner = KopfRunner::new(factory(example));
        runner.settings_mut().execution.default_backoff = std::time::Duration::from_secs(1);
        runner.cluster().apply(crd).unwrap();
        runner
            .play(scenario)
            .await
            .unwrap_or_else(|e| panic!("{example} with {crd:.40}: {e}"));
        runner.stop().await.unwrap();
        runner.outcome()
    })
}

/// Regression test for issue 12: with a status subresource, every example
/// settles, and ends where it ends without one: the same objects (status
/// included), handler outcomes and events; only the writes differ, as the
/// status part of each patch goes to `/status`.
#[test]
fn example_scenarios_should_settle_alike_with_a_status_subresource() {
    let with_status = crd_with_status_subresource();
    insta::glob!("scenarios/*.yaml", |path| {
        let example = path.file_stem().unwrap().to_string_lossy().to_string();
        let scenario = Scenario::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
        let plain = play(&example, CRD, &scenario);
        let split = play(&example, &with_status, &scenario);
        assert_eq!(split.objects, plain.objects, "{example}: final objects");
        // The same outcomes and events; their order across concurrent
        // daemons (a sync daemon runs on a blocking thread) is scheduling's.
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(split.handlers.clone()),
            sorted(plain.handlers.clone()),
            "{example}: handler outcomes"
        );
        let events =
            |o: &kopf_harness::Outcome| sorted(o.events.iter().map(|e| format!("{e:?}")).collect());
        assert_eq!(events(&split), events(&plain), "{example}: events");
        let status_writes = |o: &kopf_harness::Outcome| {
            o.writes
                .iter()
                .filter(|w| w.subresource.as_deref() == Some("status"))
                .count()
        };
        assert_eq!(status_writes(&plain), 0, "{example}");
        let writes_status = plain.writes.iter().any(|w| {
            w.resource == "kopfexamples.kopf.dev"
                && w.body.as_ref().is_some_and(|b| b.get("status").is_some())
        });
        assert_eq!(
            status_writes(&split) > 0,
            writes_status,
            "{example}: status goes through /status exactly when the operator writes it"
        );
    });
}
