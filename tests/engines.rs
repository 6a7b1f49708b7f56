//! Daemons and timers, end to end against the in-process fake on virtual
//! time: the ported examples 14 and 15, stopping on deletion before the
//! finalizer goes, cancellation of daemons that ignore their stop signal,
//! and timers' `idle` and `sharp` schedules.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use kopf::{Context, HandlerResult, Operator, Resource};
use kopf_harness::{KopfRunner, Scenario};
use serde_json::json;

#[path = "../examples/14-daemons.rs"]
mod daemons;

#[path = "../examples/15-timers.rs"]
mod timers;

const CRD: &str = include_str!("../examples/crd.yaml");
const OBJ: &str = include_str!("../examples/obj.yaml");
const KEX: &str = "kopfexamples.kopf.dev";
const NAME: &str = "kopf-example-1";

fn examples() -> Resource {
    Resource::new("kopf.dev", "v1", "kopfexamples")
}

fn position(log: &[String], needle: &str) -> usize {
    log.iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{}", log.join("\n")))
}

fn all_lines(runner: &KopfRunner) -> Vec<String> {
    runner.log().into_iter().map(|l| l.message).collect()
}

/// 14-daemons: three failures each, then pings; on deletion the blocking
/// daemon exits on request, the async one is cancelled after its
/// `cancellation_backoff`, and only then is the finalizer released.
#[tokio::test(start_paused = true)]
async fn example_14_daemons_should_stop_before_the_finalizer_is_released() {
    let mut runner = KopfRunner::new(daemons::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(
            &Scenario::new()
                .apply(OBJ)
                .settle()
                .advance(Duration::from_secs(12))
                .settle(),
        )
        .await
        .unwrap();
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(obj["status"]["message"], "Failed 3 times.");
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["kopf.zalando.org/KopfFinalizerMarker"]),
        "daemons hold the finalizer"
    );
    let output = runner.output();
    for daemon in ["background_sync", "background_async"] {
        assert_eq!(
            output
                .matches(&format!(
                    "Daemon '{daemon}' failed temporarily: Simulated failure."
                ))
                .count(),
            3,
            "{output}"
        );
    }
    assert!(output.contains(r#"=> Ping from a sync daemon: field="value", retry=3"#));
    assert!(output.contains(r#"=> Ping from an async daemon: field="value""#));

    let deleted_at = tokio::time::Instant::now();
    runner
        .play(
            &Scenario::new()
                .delete(KEX, NAME)
                .settle()
                .expect_absent(KEX, NAME, ""),
        )
        .await
        .unwrap();
    let log = all_lines(&runner);
    let graceful = position(
        &log,
        "Daemon 'background_async' is signalled to exit gracefully.",
    );
    let cancelled = position(
        &log,
        "Daemon 'background_async' is cancelled. Will escalate.",
    );
    let exited = position(
        &log,
        "Daemon 'background_sync' has exited on request and will not be retried or restarted.",
    );
    let released = position(
        &log,
        "Removing the finalizer, thus allowing the actual deletion.",
    );
    assert!(graceful < cancelled && cancelled < released, "{log:#?}");
    assert!(exited < released, "{log:#?}");
    assert!(
        deleted_at.elapsed() >= Duration::from_secs(1),
        "the async daemon had its 1 s of cancellation_backoff"
    );
    let outcome = runner.outcome();
    let finished = outcome
        .writes
        .iter()
        .position(|w| {
            w.body.as_ref().and_then(|b| b.pointer("/status/message"))
                == Some(&json!("Accompanying is finished."))
        })
        .expect("the sync daemon's last patch");
    let unfinalized = outcome
        .writes
        .iter()
        .position(|w| {
            w.body
                .as_ref()
                .and_then(|b| b.pointer("/metadata/finalizers"))
                == Some(&json!([]))
        })
        .expect("the finalizer's removal");
    assert!(finished < unfinalized);
    runner.stop().await.unwrap();
}

/// A daemon that never looks at its stop signal: cancelled once its
/// `cancellation_backoff` is over; a blocking one, which cannot be
/// cancelled, is left orphaned after `cancellation_timeout` more.
#[tokio::test(start_paused = true)]
async fn daemons_ignoring_their_stop_signal_should_be_cancelled_or_orphaned() {
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let factory = move || {
        let mut op = Operator::new();
        op.on_daemon(&examples(), |_ctx: Context| async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .id("stubborn")
        .cancellation_backoff(Duration::from_secs(5))
        .cancellation_timeout(Duration::from_secs(1));
        let r = r.clone();
        op.on_daemon_blocking(&examples(), move |ctx: Context| {
            while !r.load(Ordering::SeqCst) {
                if ctx.stopped.wait_blocking(Duration::from_secs(1)) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Ok(None)
        })
        .id("stuck")
        .cancellation_backoff(Duration::from_secs(2))
        .cancellation_timeout(Duration::from_secs(3));
        op
    };
    let mut runner = KopfRunner::new(factory);
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    let deleted_at = tokio::time::Instant::now();
    runner
        .play(
            &Scenario::new()
                .delete(KEX, NAME)
                .settle()
                .expect_absent(KEX, NAME, ""),
        )
        .await
        .unwrap();
    let took = deleted_at.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "held for the longer of 5 s (backoff, then cancelled) and 2 + 3 s (orphaned): {took:?}"
    );
    let log = all_lines(&runner);
    let cancelled = position(&log, "Daemon 'stubborn' is cancelled. Will escalate.");
    let forced = position(&log, "Daemon 'stuck' is signalled to exit by force.");
    let orphaned = position(
        &log,
        "Daemon 'stuck' did not exit in time. Leaving it orphaned.",
    );
    let released = position(
        &log,
        "Removing the finalizer, thus allowing the actual deletion.",
    );
    assert!(forced < orphaned);
    assert!(cancelled < released && orphaned < released);
    release.store(true, Ordering::SeqCst);
    runner.stop().await.unwrap();
}

/// Records the virtual times of a timer's runs, relative to `origin`.
fn recording_timer(
    interval: u64,
    work: u64,
    sharp: bool,
    idle: Option<u64>,
    runs: Arc<Mutex<Vec<f64>>>,
    origin: tokio::time::Instant,
) -> impl Fn() -> Operator + Send + Sync + 'static {
    move || {
        let runs = runs.clone();
        let mut op = Operator::new();
        let timer = op
            .on_timer(
                &examples(),
                Duration::from_secs(interval),
                move |_ctx: Context| {
                    let runs = runs.clone();
                    async move {
                        runs.lock().unwrap().push(origin.elapsed().as_secs_f64());
                        tokio::time::sleep(Duration::from_secs(work)).await;
                        HandlerResult::Ok(Some(json!("ran")))
                    }
                },
            )
            .id("tick")
            .sharp(sharp);
        if let Some(idle) = idle {
            timer.idle(Duration::from_secs(idle));
        }
        op
    }
}

async fn timer_runs(interval: u64, work: u64, sharp: bool, for_secs: u64) -> Vec<f64> {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let origin = tokio::time::Instant::now();
    let mut runner = KopfRunner::new(recording_timer(
        interval,
        work,
        sharp,
        None,
        runs.clone(),
        origin,
    ));
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(
            &Scenario::new()
                .apply(OBJ)
                .settle()
                .advance(Duration::from_secs(for_secs)),
        )
        .await
        .unwrap();
    runner.stop().await.unwrap();
    let runs = runs.lock().unwrap().clone();
    let first = runs[0];
    runs.iter().map(|t| t - first).collect()
}

fn close(actual: &[f64], expected: &[f64]) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| (a - e).abs() < 0.01)
}

/// Intervals run from the end of one run (3 s of work) to the start of the
/// next; `sharp` aligns them to the interval instead.
#[tokio::test(start_paused = true)]
async fn timers_should_run_every_interval_or_sharply() {
    let relaxed = timer_runs(10, 3, false, 35).await;
    assert!(close(&relaxed, &[0.0, 13.0, 26.0]), "{relaxed:?}");
    let sharp = timer_runs(10, 3, true, 35).await;
    assert!(close(&sharp, &[0.0, 10.0, 20.0, 30.0]), "{sharp:?}");
}

/// `idle`: the first run waits for 5 s without changes; a change of the
/// spec postpones the next run until 5 s after it; status changes (the
/// timer's own result) do not count.
#[tokio::test(start_paused = true)]
async fn idle_timers_should_wait_for_quiet() {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let origin = tokio::time::Instant::now();
    let mut runner = KopfRunner::new(recording_timer(2, 0, false, Some(5), runs.clone(), origin));
    runner.cluster().apply(CRD).unwrap();
    let created = origin.elapsed().as_secs_f64();
    runner
        .play(
            &Scenario::new()
                .apply(OBJ)
                .advance(Duration::from_secs(3))
                .patch(KEX, NAME, json!({"spec": {"field": "changed"}}))
                .advance(Duration::from_secs(9))
                .patch(KEX, NAME, json!({"spec": {"field": "again"}}))
                .advance(Duration::from_secs(8)),
        )
        .await
        .unwrap();
    runner.stop().await.unwrap();
    let runs: Vec<f64> = runs.lock().unwrap().iter().map(|t| t - created).collect();
    // Changes at ~3 s and ~12 s: runs 5 s after the first, every 2 s, then
    // 5 s after the second.
    let expected = [8.1, 10.1, 12.1, 17.1, 19.1];
    assert!(
        runs.len() == expected.len()
            && runs.iter().zip(expected).all(|(a, e)| (a - e).abs() < 0.15),
        "{runs:?}"
    );
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(obj["status"]["tick"], "ran", "results go to status");
}

/// 15-timers: quiet for 10 s, both timers ping; nothing before 5 s.
#[tokio::test(start_paused = true)]
async fn example_15_timers_should_ping_once_idle() {
    let mut runner = KopfRunner::new(timers::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(
            &Scenario::new()
                .apply(OBJ)
                .settle()
                .advance(Duration::from_secs(4)),
        )
        .await
        .unwrap();
    assert!(
        !runner.output().contains("Ping from"),
        "{}",
        runner.output()
    );
    runner
        .play(&Scenario::new().advance(Duration::from_secs(8)))
        .await
        .unwrap();
    let output = runner.output();
    let sync = output
        .matches(r#"Ping from a sync timer: field="value""#)
        .count();
    let asynch = output
        .matches(r#"Ping from an async timer: field="value""#)
        .count();
    assert!((3..=4).contains(&sync), "{output}");
    assert_eq!(asynch, 1, "{output}");
    assert!(output.contains("Timer 'every_few_seconds_sync' succeeded."));
    runner
        .play(
            &Scenario::new()
                .delete(KEX, NAME)
                .settle()
                .expect_absent(KEX, NAME, ""),
        )
        .await
        .unwrap();
    runner.stop().await.unwrap();
}

#[path = "../examples/07-subhandlers.rs"]
mod subhandlers;

/// 07-subhandlers: one sub-handler per item, each succeeding once; the
/// parent succeeds after them; only the parent counts in the summary.
#[tokio::test(start_paused = true)]
async fn example_07_subhandlers_should_run_once_each() {
    let mut runner = KopfRunner::new(subhandlers::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    let outcome = runner.outcome();
    for id in ["create_fn", "create_fn/item1", "create_fn/item2"] {
        assert_eq!(
            outcome.count(id, "succeeded"),
            1,
            "{id}: {:#?}",
            outcome.log
        );
    }
    let log = outcome.log.clone();
    let item1 = position(&log, "=== Handling creation for item1. ===");
    let item2 = position(&log, "=== Handling creation for item2. ===");
    let parent = position(&log, "Handler 'create_fn' succeeded.");
    assert!(item1 < item2 && item2 < parent);
    assert!(log
        .iter()
        .any(|l| l.ends_with("Creation is processed: 1 succeeded; 0 failed.")));
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    let annotations = obj["metadata"]["annotations"].as_object().unwrap();
    assert!(
        annotations
            .keys()
            .all(|k| !k.starts_with("kopf.zalando.org/create_fn")),
        "progress of the parent and sub-handlers purged: {annotations:?}"
    );
    runner.stop().await.unwrap();
}

/// A sub-handler that fails temporarily: the parent is invoked again after
/// the delay, the finished sibling is not, and the failing one retries.
#[tokio::test(start_paused = true)]
async fn subhandlers_should_retry_on_their_own() {
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let c = calls.clone();
    let factory = move || {
        let c = c.clone();
        let mut op = Operator::new();
        op.on_create(&examples(), move |ctx: Context| {
            let c = c.clone();
            async move {
                c.lock().unwrap().push(format!("parent#{}", ctx.retry));
                for item in ["steady", "flaky"] {
                    let c = c.clone();
                    ctx.subhandler(item, move |ctx: Context| {
                        let c = c.clone();
                        async move {
                            c.lock().unwrap().push(format!("{item}#{}", ctx.retry));
                            if item == "flaky" && ctx.retry == 0 {
                                return Err(kopf::HandlerError::temporary(
                                    "not yet",
                                    Duration::from_secs(30),
                                ));
                            }
                            Ok(Some(json!(item)))
                        }
                    })?;
                }
                Ok(Some(json!("all done")))
            }
        })
        .id("parent");
        op
    };
    let mut runner = KopfRunner::new(factory);
    runner.cluster().apply(CRD).unwrap();
    let started = tokio::time::Instant::now();
    runner
        .play(&Scenario::new().apply(OBJ).settle())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        *calls.lock().unwrap(),
        ["parent#0", "steady#0", "flaky#0", "parent#1", "flaky#1"]
    );
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(obj["status"]["parent"], "all done");
    assert_eq!(obj["status"]["parent/steady"], "steady");
    assert_eq!(obj["status"]["parent/flaky"], "flaky");
    let output = runner.output();
    assert!(output.contains("Handler 'parent/flaky' failed temporarily: not yet"));
    assert_eq!(runner.outcome().count("parent", "succeeded"), 1);
    runner.stop().await.unwrap();
}

#[path = "../examples/11-filtering-handlers.rs"]
mod filtering;

/// 11-filtering-handlers, as Kopf's own test of it: created, the field
/// changed, deleted; the matching handlers ran, the others did not, and
/// the field-bound daemon stopped when the field changed.
#[tokio::test(start_paused = true)]
async fn example_11_filters_should_select_handlers() {
    let mut runner = KopfRunner::new(filtering::operator);
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(
            &Scenario::new()
                .apply(OBJ)
                .settle()
                .advance(Duration::from_secs(5))
                .patch(KEX, NAME, json!({"spec": {"field": "changed"}}))
                .settle()
                .advance(Duration::from_secs(2))
                .delete(KEX, NAME)
                .settle()
                .expect_absent(KEX, NAME, ""),
        )
        .await
        .unwrap();
    let output = runner.output();
    for ran in [
        "Label is matching.",
        "Label is present.",
        "Label is absent.",
        "Label callback matching.",
        "Annotation is matching.",
        "Annotation is present.",
        "Annotation is absent.",
        "Filter satisfied.",
        "Field value is satisfied.",
        "Field presence is satisfied.",
        "Field change is satisfied.",
        "Field daemon is satisfied.",
    ] {
        assert!(
            output.contains(&format!("[default/kopf-example-1] {ran}")),
            "{ran}\n{output}"
        );
    }
    for skipped in [
        "Annotation callback mismatch.",
        "Filter not satisfied.",
        "Field value is not satisfied.",
        "Field presence is not satisfied.",
    ] {
        assert!(!output.contains(skipped), "{skipped}\n{output}");
    }
    let outcome = runner.outcome();
    assert_eq!(
        outcome.count("create_with_field_value_satisfied/spec.field", "succeeded"),
        1
    );
    assert_eq!(
        outcome.count("update_with_field_change_satisfied/spec.field", "succeeded"),
        1
    );
    // The daemon ran about once a second for ~5 s, then stopped on the change.
    let pings = output.matches("Field daemon is satisfied.").count();
    assert!((5..=7).contains(&pings), "{pings}\n{output}");
    assert_eq!(
        outcome.count("daemon_with_field/spec.field", "succeeded"),
        1,
        "it exited when its filter stopped matching"
    );
    runner.stop().await.unwrap();
}

#[path = "../examples/16-indexing.rs"]
mod indexing;

/// Pods in several namespaces, running or not.
fn seed_pods(runner: &KopfRunner) {
    runner
        .cluster()
        .apply("{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"other\"}}")
        .unwrap();
    for (ns, name, app, phase) in [
        ("default", "web-1", "web", "Running"),
        ("default", "db-1", "db", "Pending"),
        ("kube-system", "sys-1", "sys", "Running"),
        ("other", "other-1", "web", "Running"),
    ] {
        runner
            .cluster()
            .apply(&format!(
                "{{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"{ns}\", \"labels\": {{\"app\": \"{app}\"}}}},
                  \"spec\": {{\"containers\": [{{\"name\": \"main\", \"image\": \"busybox\"}}]}}}}"
            ))
            .unwrap();
        let server = runner.cluster().server().unwrap();
        let target = fake_apiserver::registry::rest::Target {
            kind: server
                .api()
                .resources
                .get(&fake_apiserver::apimachinery::resource_key::parse_resource(
                    "pods",
                ))
                .unwrap(),
            version: "v1".into(),
            namespace: ns.into(),
            name: name.into(),
        };
        server
            .api()
            .patch(
                &target,
                fake_apiserver::registry::patch::PatchType::Merge,
                json!({"status": {"phase": phase}}).to_string().as_bytes(),
                fake_apiserver::registry::semantics::Endpoint::Status,
                false,
            )
            .unwrap();
    }
}

/// A GET over a plain TCP connection: status code and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// 16-indexing: the pod indices feed the probes on the liveness endpoint
/// and the timer's status; deleting a pod takes it out of the indices.
#[tokio::test(start_paused = true)]
async fn example_16_indices_should_feed_probes_and_timers() {
    let mut runner = KopfRunner::new(indexing::operator);
    let addr = free_addr();
    runner.settings_mut().liveness = Some(kopf::Liveness {
        addr,
        path: "/healthz".into(),
    });
    runner.cluster().apply(CRD).unwrap();
    seed_pods(&runner);
    runner
        .play(
            &Scenario::new()
                .apply(OBJ)
                .settle()
                .advance(Duration::from_secs(6))
                .settle(),
        )
        .await
        .unwrap();
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(
        obj["status"]["running-pods"],
        json!(["default::web-1", "kube-system::sys-1"])
    );
    assert!(runner
        .output()
        .contains(r#"{["app","db"]: ["db-1"], ["app","sys"]: ["sys-1"], ["app","web"]: ["web-1","other-1"]}"#)
        || runner
            .output()
            .contains(r#"{["app","db"]: ["db-1"], ["app","sys"]: ["sys-1"], ["app","web"]: ["other-1","web-1"]}"#),
        "{}", runner.output());
    let (code, body) = http_get(addr, "/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"pod_count": 4, "pod_names": ["db-1", "web-1", "sys-1", "other-1"]})
    );
    assert_eq!(http_get(addr, "/other").await.0, 404);
    runner
        .play(
            &Scenario::new()
                .delete("pods", "web-1")
                .settle()
                .advance(Duration::from_secs(11))
                .settle(),
        )
        .await
        .unwrap();
    let (_, body) = http_get(addr, "/healthz").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["pod_count"],
        3,
        "the deleted pod left the index"
    );
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(obj["status"]["running-pods"], json!(["kube-system::sys-1"]));
    runner.stop().await.unwrap();
}

/// Nothing is handled before the indexed resources are listed and indexed:
/// a creation handler sees every pod that existed when the operator started.
#[tokio::test(start_paused = true)]
async fn handlers_should_wait_for_the_initial_indexing() {
    let factory = || {
        let mut op = Operator::new();
        op.on_index(
            &Resource::new("", "v1", "pods"),
            |ctx: Context| async move { Ok(kopf::Indexed::One(json!(ctx.name()))) },
        )
        .id("names");
        op.on_create(&examples(), |ctx: Context| async move {
            Ok(Some(json!(ctx
                .index("names")
                .map(|i| i.get(&serde_json::Value::Null)))))
        })
        .id("seen");
        op
    };
    let mut runner = KopfRunner::new(factory);
    runner.cluster().apply(CRD).unwrap();
    seed_pods(&runner);
    runner.cluster().apply(OBJ).unwrap();
    runner.play(&Scenario::new().settle()).await.unwrap();
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(
        obj["status"]["seen"].as_array().map(Vec::len),
        Some(4),
        "{}",
        obj["status"]
    );
    runner.stop().await.unwrap();
}

#[path = "../examples/13-hooks.rs"]
mod hooks;

/// 13-hooks: startup retried three times, one background task per pod
/// (reported by the probes), and the cleanup stopping them all.
#[tokio::test(start_paused = true)]
async fn example_13_hooks_should_start_probe_and_clean_up() {
    let mut runner = KopfRunner::new(hooks::operator);
    let addr = free_addr();
    runner.settings_mut().liveness = Some(kopf::Liveness {
        addr,
        path: "/healthz".into(),
    });
    seed_pods(&runner);
    let started = tokio::time::Instant::now();
    runner
        .play(&Scenario::new().settle().advance(Duration::from_secs(11)))
        .await
        .unwrap();
    let output = runner.output();
    for left in [3, 2, 1] {
        assert!(
            output.contains(&format!(
                "Activity 'startup_fn_retried' failed temporarily: Going to succeed in {left}s"
            )),
            "{output}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(output.contains("Starting retried..."));
    assert!(output.contains("Served by the background task."));
    let (code, body) = http_get(addr, "/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"tasks_count": 4, "monitored_objects": {
            "default": ["db-1", "web-1"], "kube-system": ["sys-1"], "other": ["other-1"]}})
    );
    runner.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let output = runner.output();
    let cleaning = output.find("Cleaning up...").unwrap();
    let requested = output
        .find("All pod-tasks are requested to stop...")
        .unwrap();
    assert!(cleaning < requested);
    assert_eq!(output.matches("Serving is finished by request.").count(), 4);
    let outcome = runner.outcome();
    for id in ["startup_fn_simple", "startup_fn_retried", "cleanup_fn"] {
        assert_eq!(outcome.count(id, "succeeded"), 1, "{id}");
    }
}

/// Serving named namespaces, each listed on its own: every namespace's
/// objects stay in the index when the other's listing ends.
#[tokio::test(start_paused = true)]
async fn indices_should_hold_every_served_namespace() {
    let factory = || {
        let mut op = Operator::new();
        op.on_index(
            &Resource::new("", "v1", "pods"),
            |ctx: Context| async move { Ok(kopf::Indexed::One(json!(ctx.name()))) },
        )
        .id("names");
        op.on_probe(|ctx: Context| async move {
            Ok(Some(json!(ctx
                .index("names")
                .map(|i| i.get(&serde_json::Value::Null).len()))))
        })
        .id("count");
        op.on_create(&examples(), |ctx: Context| async move {
            Ok(Some(json!(ctx
                .index("names")
                .map(|i| i.get(&serde_json::Value::Null).len()))))
        })
        .id("seen");
        op
    };
    let mut runner = KopfRunner::new(factory);
    runner.settings_mut().watching.namespaces = vec!["default".into(), "other".into()];
    runner.cluster().apply(CRD).unwrap();
    seed_pods(&runner);
    runner.play(&Scenario::new().settle()).await.unwrap();
    runner.cluster().apply(OBJ).unwrap();
    runner.play(&Scenario::new().settle()).await.unwrap();
    let obj = runner.cluster().get(KEX, "default", NAME).unwrap();
    assert_eq!(
        obj["status"]["seen"], 3,
        "two pods in default, one in other (kube-system is not served)"
    );
    runner.stop().await.unwrap();
}
