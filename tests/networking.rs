//! API resilience (issue 18, Kopf's `settings.networking`), against the
//! fake's fault rules: 5xx and dropped connections are retried on the
//! `error_backoffs` sequence, a 429's `Retry-After` is obeyed, other 4xx
//! escalate at once, the last failure escalates, and a request that takes
//! too long is cut at `request_timeout` and tried again.

use std::time::Duration;

use fake_apiserver::testing::{
    faults::{FaultAction, FaultRule},
    journal::Filter,
};
use kopf_harness::{KopfRunner, Scenario};
use serde_json::json;

#[path = "../examples/01-minimal.rs"]
mod minimal;

const CRD: &str = include_str!("../examples/crd.yaml");
const OBJ: &str = include_str!("../examples/obj.yaml");
const KEX: &str = "kopfexamples.kopf.dev";

fn runner(backoffs: &[u64]) -> KopfRunner {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.settings_mut().networking.error_backoffs =
        backoffs.iter().copied().map(Duration::from_secs).collect();
    runner.settle_budget(Duration::from_secs(600));
    runner.cluster().apply(CRD).unwrap();
    runner
}

fn patch_fault(runner: &KopfRunner, action: FaultAction, times: u64) {
    runner
        .cluster()
        .injector()
        .unwrap()
        .add_fault(FaultRule::new(&["patch"], KEX, action).times(times));
}

fn status(code: u16, retry_after: Option<u32>) -> FaultAction {
    FaultAction::Status {
        code,
        message: None,
        retry_after,
    }
}

/// The codes answered to the operator's patches, in order.
fn patches(runner: &KopfRunner) -> Vec<u16> {
    runner
        .cluster()
        .journal()
        .unwrap()
        .entries(&Filter {
            verb: Some("patch".into()),
            ..Filter::default()
        })
        .iter()
        .map(|e| e.code)
        .collect()
}

fn handled(runner: &KopfRunner) -> bool {
    runner
        .cluster()
        .get(KEX, "default", "kopf-example-1")
        .is_some_and(|o| o["status"]["create_fn"] == json!({"message": "hello world"}))
}

fn said(runner: &KopfRunner, text: &str) -> usize {
    runner
        .log()
        .iter()
        .filter(|l| l.message.contains(text))
        .count()
}

/// Three 503s, backoffs 1, 2, 4 s: the fourth attempt stores the result,
/// after 7 s of (virtual) time, each failure logged as Kopf logs it.
#[tokio::test(start_paused = true)]
async fn server_errors_should_be_retried_on_the_backoff_sequence() {
    let mut runner = runner(&[1, 2, 4]);
    patch_fault(&runner, status(503, None), 3);
    let start = tokio::time::Instant::now();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(handled(&runner), "{}", runner.output());
    assert_eq!(patches(&runner)[..4], [503, 503, 503, 200]);
    assert!(
        start.elapsed() >= Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    for attempt in ["#1/4", "#2/4", "#3/4"] {
        assert_eq!(
            said(
                &runner,
                &format!("Request attempt {attempt} failed; will retry: PATCH ")
            ),
            1,
            "{}",
            runner.output()
        );
    }
    assert_eq!(said(&runner, "Request attempt #4/4 succeeded: PATCH "), 1);
    assert_eq!(said(&runner, "escalating"), 0);
    runner.stop().await.unwrap();
}

/// A 429 asking for 30 s is waited out even though the backoff is 1 s.
#[tokio::test(start_paused = true)]
async fn a_429_retry_after_should_be_obeyed() {
    let mut runner = runner(&[1]);
    patch_fault(&runner, status(429, Some(30)), 1);
    let start = tokio::time::Instant::now();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(handled(&runner));
    assert_eq!(patches(&runner)[..2], [429, 200]);
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        said(
            &runner,
            "Overriding the backoff 1s with the retry-after 30s from the server"
        ),
        1,
        "{}",
        runner.output()
    );
    runner.stop().await.unwrap();
}

/// More failures than backoffs: the last one escalates to the framework,
/// which retries the object later (its own throttling); a 4xx other than
/// 429 escalates at once.
#[tokio::test(start_paused = true)]
async fn failures_beyond_the_backoffs_and_4xx_should_escalate() {
    let mut runner = runner(&[1]);
    patch_fault(&runner, status(500, None), 2);
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(handled(&runner), "{}", runner.output());
    assert_eq!(
        said(&runner, "Request attempt #2/2 failed; escalating: PATCH "),
        1
    );

    let mut runner = self::runner(&[1, 1, 1]);
    patch_fault(&runner, status(422, None), 1);
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert_eq!(patches(&runner)[0], 422);
    assert_eq!(said(&runner, "Request attempt"), 0, "{}", runner.output());
    runner.stop().await.unwrap();
}

/// A dropped connection is a transport error: retried.
#[tokio::test(start_paused = true)]
async fn dropped_connections_should_be_retried() {
    let mut runner = runner(&[1, 1]);
    patch_fault(&runner, FaultAction::DropBefore, 1);
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(handled(&runner), "{}", runner.output());
    assert_eq!(
        said(&runner, "Request attempt #1/3 failed; will retry: PATCH "),
        1
    );
    runner.stop().await.unwrap();
}

/// A patch that hangs for 10 minutes is cut at the 30 s request timeout
/// and tried again.
#[tokio::test(start_paused = true)]
async fn a_request_over_its_timeout_should_be_cut_and_retried() {
    let mut runner = runner(&[1]);
    runner.settings_mut().networking.request_timeout = Some(Duration::from_secs(30));
    patch_fault(&runner, FaultAction::Delay { millis: 600_000 }, 1);
    let start = tokio::time::Instant::now();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(handled(&runner), "{}", runner.output());
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "not waited out: {:?}",
        start.elapsed()
    );
    assert_eq!(
        said(&runner, "the request timed out after 30s"),
        1,
        "{}",
        runner.output()
    );
    runner.stop().await.unwrap();
}
