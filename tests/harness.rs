//! The harness itself: scenarios played against operators on virtual time,
//! settle detection and its failure report, restarts, faults, plain `#[test]`
//! support, and outcome snapshots.

use std::time::Duration;

use fake_apiserver::testing::faults::{FaultAction, FaultRule};
use kopf::{Context, HandlerError, HandlerResult, Operator, Resource};
use kopf_harness::{assert_outcome, block_on, HarnessError, KopfRunner, Scenario};
use serde_json::json;

#[path = "../examples/01-minimal.rs"]
mod minimal;

#[path = "../examples/09-testing.rs"]
mod testing;

const CRD: &str = include_str!("../examples/crd.yaml");
const OBJ: &str = include_str!("../examples/obj.yaml");
const KEX: &str = "kopfexamples.kopf.dev";

fn examples() -> Resource {
    Resource::new("kopf.dev", "v1", "kopfexamples")
}

/// A handler that fails temporarily three times, 60 s apart, then succeeds.
fn backoff_operator() -> Operator {
    let mut op = Operator::new();
    op.on_create(&examples(), |ctx: Context| async move {
        if ctx.retry < 3 {
            return Err(HandlerError::temporary(
                format!("not yet ({})", ctx.retry + 1),
                Duration::from_secs(60),
            ));
        }
        HandlerResult::Ok(Some(json!({"attempts": ctx.retry + 1})))
    })
    .id("patient");
    op
}

/// 01-minimal as a scenario, snapshotted.
#[tokio::test(start_paused = true)]
async fn minimal_scenario_should_match_its_snapshot() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.cluster().apply(CRD).unwrap();
    let scenario = Scenario::new()
        .apply(OBJ)
        .settle()
        .expect(
            KEX,
            "kopf-example-1",
            "status.create_fn.message",
            json!("hello world"),
        )
        .delete(KEX, "kopf-example-1")
        .settle()
        .expect_absent(KEX, "kopf-example-1", "");
    runner.play(&scenario).await.unwrap();
    let outcome = runner.outcome();
    assert_eq!(outcome.count("create_fn", "succeeded"), 1);
    assert_outcome!(outcome);
}

/// Three temporary failures with a 60 s backoff each, then success: settled
/// in virtual time, deterministic, the retries visible in the snapshot.
#[tokio::test(start_paused = true)]
async fn three_backoffs_of_60s_should_settle_in_virtual_time() {
    let wall = std::time::Instant::now();
    let mut runner = KopfRunner::new(backoff_operator);
    runner.settle_budget(Duration::from_secs(400));
    runner.cluster().apply(CRD).unwrap();
    let started = tokio::time::Instant::now();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(180),
        "three 60 s delays passed in virtual time"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(30),
        "and cost (almost) no wall time"
    );
    let outcome = runner.outcome();
    assert_eq!(outcome.count("patient", "failed temporarily"), 3);
    assert_eq!(outcome.count("patient", "succeeded"), 1);
    assert_outcome!(outcome);
}

/// A handler that never succeeds: settle fails with a clear report instead of hanging.
#[tokio::test(start_paused = true)]
async fn settle_should_report_what_is_pending() {
    let mut runner = KopfRunner::new(|| {
        let mut op = Operator::new();
        op.on_create(&examples(), |_ctx: Context| async move {
            HandlerResult::Err(HandlerError::temporary("never", Duration::from_secs(600)))
        })
        .id("hopeless");
        op
    });
    runner.settle_budget(Duration::from_secs(300));
    runner.cluster().apply(CRD).unwrap();
    let err = runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("step 2: the operator did not settle within"),
        "{text}"
    );
    assert!(
        text.contains("delayed handlers of kopf.dev/v1/kopfexamples default/kopf-example-1 due in"),
        "{text}"
    );
}

/// A handler that never returns: settle gives up when the paused clock
/// reaches the budget, and says which event the object waits with and what
/// the operator last did with it.
#[tokio::test(start_paused = true)]
async fn settle_should_say_why_an_object_is_still_pending() {
    let mut runner = KopfRunner::new(|| {
        let mut op = Operator::new();
        op.on_create(&examples(), |_ctx: Context| async move {
            std::future::pending::<()>().await;
            HandlerResult::Ok(None)
        })
        .id("stuck");
        op
    });
    runner.cluster().apply(CRD).unwrap();
    runner.start().await.unwrap();
    runner.cluster().apply(OBJ).unwrap();
    let err = runner.settle().await.unwrap_err();
    assert_eq!(
        err.waited,
        Duration::from_secs(3600),
        "the whole default budget"
    );
    assert!(!err.wall_clock);
    let key = "kopf.dev/v1/kopfexamples default/kopf-example-1";
    assert_eq!(err.busy, vec![key.to_string()]);
    let rv = runner
        .cluster()
        .get(KEX, "default", "kopf-example-1")
        .unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "  - in progress: {key}\n      latest event: ADDED at rv {rv}; last: not processed yet\n"
        )),
        "{text}"
    );
}

/// After a handled change, the report says what the operator did with it
/// (here: its own patch seen and handled, and the delayed retry it waits for).
#[tokio::test(start_paused = true)]
async fn settle_report_should_say_what_the_operator_last_did() {
    let mut runner = KopfRunner::new(|| {
        let mut op = Operator::new();
        op.on_create(&examples(), |_ctx: Context| async move {
            HandlerResult::Err(HandlerError::temporary("later", Duration::from_secs(600)))
        })
        .id("later");
        op
    });
    runner.settle_budget(Duration::from_secs(60));
    runner.cluster().apply(CRD).unwrap();
    let err = runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap_err();
    let HarnessError::Step(2, inner) = err else {
        panic!("{err}")
    };
    let text = inner.to_string();
    assert!(
        text.contains("delayed handlers of kopf.dev/v1/kopfexamples default/kopf-example-1 due in"),
        "{text}"
    );
    // The last event is the operator's own patch (progress annotations),
    // handled with nothing more to write until the retry is due.
    assert!(
        text.contains("      latest event: MODIFIED at rv "),
        "{text}"
    );
    assert!(text.contains("; last: handled rv "), "{text}");
    assert!(text.contains("; nothing to write"), "{text}");
}

/// A hot retry loop (a zero delay, forever) never lets virtual time reach
/// the budget quickly: the wall-clock guard ends it, and says so.
#[tokio::test(start_paused = true)]
async fn settle_should_stop_a_hot_loop_at_the_wall_clock_guard() {
    let mut runner = KopfRunner::new(|| {
        let mut op = Operator::new();
        op.on_create(&examples(), |_ctx: Context| async move {
            HandlerResult::Err(HandlerError::temporary("again", Duration::ZERO))
        })
        .id("restless");
        op
    });
    // A budget no hot loop reaches: only the guard can end this settle.
    runner.settle_budget(Duration::from_secs(100 * 365 * 86400));
    runner.settle_wall_budget(Duration::from_millis(300));
    runner.cluster().apply(CRD).unwrap();
    runner.start().await.unwrap();
    runner.cluster().apply(OBJ).unwrap();
    let err = runner.settle().await.unwrap_err();
    assert!(err.wall_clock, "{err}");
    assert!(
        err.to_string().starts_with(
            "the operator did not settle: it kept busy for the whole wall-clock guard"
        ),
        "{err}"
    );
}

/// Regression test for issue 12: the Events the operator posts carry the
/// one virtual clock that objects carry, not the wall clock.
#[tokio::test(start_paused = true)]
async fn posted_events_should_follow_the_virtual_clock() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(
            &Scenario::new()
                .advance(Duration::from_secs(90))
                .apply(OBJ)
                .settle(),
        )
        .await
        .unwrap();
    let events = runner.cluster().events_for("kopf-example-1");
    assert!(!events.is_empty());
    let created = runner
        .cluster()
        .get(KEX, "default", "kopf-example-1")
        .unwrap();
    // EPOCH (2023-11-14T22:13:20Z) plus the 90 s advanced before creation.
    assert_eq!(
        created["metadata"]["creationTimestamp"],
        "2023-11-14T22:14:50Z"
    );
    for event in events {
        for field in ["eventTime", "firstTimestamp", "lastTimestamp"] {
            let time = event[field].as_str().unwrap_or_default();
            assert!(time.starts_with("2023-11-14T22:14:50"), "{field}: {time}");
        }
    }
}

/// Restarting between retries continues; a fault rule on the operator's
/// patches is survived; expectations check the final state.
#[tokio::test(start_paused = true)]
async fn restarts_and_faults_should_be_scenario_steps() {
    let mut runner = KopfRunner::new(backoff_operator);
    runner.cluster().apply(CRD).unwrap();
    let scenario = Scenario::new()
        .fault(
            FaultRule::new(
                &["patch"],
                KEX,
                FaultAction::Status {
                    code: 500,
                    message: None,
                    retry_after: None,
                },
            )
            .times(1),
        )
        .apply(OBJ)
        .advance(Duration::from_secs(70))
        .restart()
        .settle()
        .expect(KEX, "kopf-example-1", "status.patient.attempts", json!(4));
    runner.play(&scenario).await.unwrap();
    let outcome = runner.outcome();
    assert_eq!(outcome.writes.iter().filter(|w| w.code == 500).count(), 1);
    runner.stop().await.unwrap();
}

/// A failed expectation names the step and both values.
#[tokio::test(start_paused = true)]
async fn failed_expectations_should_say_what_differs() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.cluster().apply(CRD).unwrap();
    let err = runner
        .play(&Scenario::new().apply(OBJ).settle().expect(
            KEX,
            "kopf-example-1",
            "status.create_fn.message",
            json!("bye"),
        ))
        .await
        .unwrap_err();
    match err {
        HarnessError::Step(3, inner) => assert_eq!(
            inner.to_string(),
            "expectation failed: kopfexamples.kopf.dev/kopf-example-1 status.create_fn.message: expected \"bye\", got \"hello world\""
        ),
        other => panic!("{other}"),
    }
}

/// The harness works from a plain `#[test]` too.
#[test]
fn plain_tests_should_work_with_block_on() {
    block_on(async {
        let mut runner = KopfRunner::new(minimal::operator);
        runner.cluster().apply(CRD).unwrap();
        runner
            .play(&Scenario::new().apply(OBJ).settle())
            .await
            .unwrap();
        assert_eq!(runner.outcome().count("create_fn", "succeeded"), 1);
        assert!(runner
            .output()
            .contains("[default/kopf-example-1] Handler 'create_fn' succeeded."));
    });
}

/// 09-testing, Kopf's testing example: the operator run by the runner sees
/// the object's creation and deletion (finalizer added, then released), as
/// Kopf's `KopfRunner` test checks its output.
#[tokio::test(start_paused = true)]
async fn example_09_testing() {
    let mut runner = KopfRunner::new(testing::operator);
    runner.cluster().apply(CRD).unwrap();
    let scenario = Scenario::new()
        .apply(OBJ)
        .settle()
        .expect(
            KEX,
            "kopf-example-1",
            "metadata.finalizers",
            json!(["kopf.zalando.org/KopfFinalizerMarker"]),
        )
        .delete(KEX, "kopf-example-1")
        .settle()
        .expect_absent(KEX, "kopf-example-1", "");
    runner.play(&scenario).await.unwrap();
    runner.stop().await.unwrap();
    let output = runner.output();
    assert!(
        output.contains("[default/kopf-example-1] Creation event: kopf-example-1"),
        "{output}"
    );
    assert!(
        output.contains("[default/kopf-example-1] Deletion event: kopf-example-1"),
        "{output}"
    );
    assert!(
        output.contains("[default/kopf-example-1] Deleted, really deleted, and we are notified."),
        "{output}"
    );
    assert_outcome!(runner.outcome());
}

/// An operator binary run as a process against the served fake cluster, as
/// Kopf's runner runs `kopf run`: output captured, stopped with SIGTERM, exit
/// status reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_binaries_should_run_as_processes() {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join("01-minimal");
    assert!(
        binary.exists(),
        "{} is built by `cargo test --workspace`",
        binary.display()
    );
    let cluster = kopf_harness::Cluster::with_server(fake_apiserver::FakeApiServer::new());
    cluster.apply(CRD).unwrap();
    let mut process =
        kopf_harness::ProcessRunner::start(cluster, &binary, &["-A", "--standalone", "--verbose"])
            .await
            .unwrap();
    process.cluster().apply(OBJ).unwrap();
    process
        .wait_for_output(
            "[default/kopf-example-1] Handler 'create_fn' succeeded.",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    // The log line comes before the patch that stores the result: wait for it.
    let obj = process
        .cluster()
        .wait_for(
            KEX,
            "default",
            "kopf-example-1",
            |o| o["status"]["create_fn"].is_object(),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(obj["status"]["create_fn"]["message"], "hello world");
    let status = process.stop(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status:?}\n{}", process.output());
    assert!(process
        .output()
        .contains("Stop-signal received. Stopping the operator."));
    // Kopf's default `full` layout; `--verbose` means DEBUG, as in Kopf.
    let output = process.output();
    let line = |text: &str| {
        output
            .lines()
            .find(|l| l.ends_with(text))
            .unwrap_or_else(|| panic!("{text:?} not in:\n{output}"))
            .to_string()
    };
    let invoked = line("] kopf.objects         [DEBUG   ] [default/kopf-example-1] Handler 'create_fn' is invoked.");
    let succeeded = line(
        "] kopf.objects         [INFO    ] [default/kopf-example-1] Handler 'create_fn' succeeded.",
    );
    for l in [invoked, succeeded] {
        // `[2026-01-01 12:00:00,123] `: Python's asctime.
        let shape: String = l[..26]
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "[9999-99-99 99:99:99,999] ", "{l}");
    }
}

/// `--log-format json --log-refkey k8s`: one JSON object per line, the
/// object's reference under `k8s`, no prefix in the message (Kopf's JSON
/// default); `--log-prefix` puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_should_carry_the_object_reference() {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join("01-minimal");
    for (args, message) in [
        (vec![], "Handler 'create_fn' succeeded."),
        (
            vec!["--log-prefix"],
            "[default/kopf-example-1] Handler 'create_fn' succeeded.",
        ),
    ] {
        let cluster = kopf_harness::Cluster::with_server(fake_apiserver::FakeApiServer::new());
        cluster.apply(CRD).unwrap();
        let mut all = vec![
            "-A",
            "--standalone",
            "--log-format",
            "json",
            "--log-refkey",
            "k8s",
        ];
        all.extend(args);
        let mut process = kopf_harness::ProcessRunner::start(cluster, &binary, &all)
            .await
            .unwrap();
        process.cluster().apply(OBJ).unwrap();
        process
            .wait_for_output("Handler 'create_fn' succeeded.", Duration::from_secs(20))
            .await
            .unwrap();
        process.stop(Duration::from_secs(10)).await.unwrap();
        let output = process.output();
        let lines: Vec<serde_json::Value> = output
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let found = lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("{message:?} not in:\n{output}"));
        assert_eq!(found["severity"], "info");
        assert_eq!(found["k8s"]["kind"], "KopfExample");
        assert_eq!(found["k8s"]["apiVersion"], "kopf.dev/v1");
        assert_eq!(found["k8s"]["name"], "kopf-example-1");
        assert_eq!(found["k8s"]["namespace"], "default");
        assert!(found["k8s"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(
            !lines.iter().any(|l| l["severity"] == "debug"),
            "no --verbose, no debug lines"
        );
    }
}

/// The cluster handle waits for conditions in virtual time.
#[tokio::test(start_paused = true)]
async fn cluster_should_wait_for_conditions() {
    let mut runner = KopfRunner::new(backoff_operator);
    runner.cluster().apply(CRD).unwrap();
    runner.start().await.unwrap();
    runner.cluster().apply(OBJ).unwrap();
    let done = runner
        .cluster()
        .wait_for(
            KEX,
            "default",
            "kopf-example-1",
            |o| o["status"]["patient"]["attempts"] == 4,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(done["status"]["patient"]["attempts"], 4);
    let err = runner
        .cluster()
        .wait_for(KEX, "default", "nothing", |_| true, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("last state: absent"), "{err}");
}

/// A fake served over HTTP on its own thread and runtime, standing in for a
/// cluster elsewhere: its kubeconfig, and a guard that stops it.
fn external_cluster() -> (tempfile::NamedTempFile, std::sync::mpsc::Sender<()>) {
    let (config_tx, config_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = fake_apiserver::FakeApiServer::new();
        let serving = runtime
            .block_on(server.serve("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        config_tx.send(serving.temp_kubeconfig().unwrap()).unwrap();
        let _ = stop_rx.recv();
        runtime.block_on(serving.shutdown());
    });
    (config_rx.recv().unwrap(), stop_tx)
}

/// The runner against a cluster reached through a kubeconfig (real time):
/// the same scenario steps, `settle` waiting for the watch to see the test's
/// writes, and the operator's writes recorded by its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_should_work_against_any_kubeconfig() {
    let (kubeconfig, _stop) = external_cluster();
    let cluster = kopf_harness::Cluster::connect(Some(kubeconfig.path()))
        .await
        .unwrap();
    assert!(!cluster.is_fake());
    assert!(cluster.journal().is_none());
    cluster.apply(CRD).unwrap();
    let mut runner = KopfRunner::with_cluster(cluster, minimal::operator);
    let scenario = Scenario::new()
        .apply(OBJ)
        .settle()
        .expect(
            KEX,
            "kopf-example-1",
            "status.create_fn.message",
            json!("hello world"),
        )
        .delete(KEX, "kopf-example-1")
        .settle()
        .expect_absent(KEX, "kopf-example-1", "");
    runner.play(&scenario).await.unwrap();
    let outcome = runner.outcome();
    assert_eq!(outcome.count("create_fn", "succeeded"), 1, "{outcome:#?}");
    let status_patch = outcome.writes.iter().find(|w| {
        w.body
            .as_ref()
            .and_then(|b| b.pointer("/status/create_fn/message"))
            == Some(&json!("hello world"))
    });
    let status_patch = status_patch.unwrap_or_else(|| panic!("{:#?}", outcome.writes));
    assert_eq!(status_patch.verb, "patch");
    assert_eq!(status_patch.resource, KEX);
    assert_eq!(
        status_patch.object.as_deref(),
        Some("default/kopf-example-1")
    );
    assert_eq!(
        status_patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(status_patch.code, 200);
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.object == "KopfExample default/kopf-example-1"),
        "{:#?}",
        outcome.events
    );
    let refused = runner
        .play(&Scenario::new().fault(FaultRule::new(
            &["patch"],
            KEX,
            FaultAction::Status {
                code: 500,
                message: None,
                retry_after: None,
            },
        )))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs the fake cluster"),
        "{refused}"
    );
    runner.stop().await.unwrap();
}
