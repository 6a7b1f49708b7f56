//! A `kube::runtime::watcher` and reflector recover, with a correct final
//! store, from every injected watch fault and every fault rule; seeded fault
//! schedules replay to byte-identical journals; the normalized journal of a
//! small exchange is snapshotted.

use std::{collections::BTreeMap, time::Duration};

use fake_apiserver::{
    storage::watch::Narrow,
    testing::{
        faults::{FaultAction, FaultRule},
        inject::InjectedType,
        journal::Filter,
    },
    FakeApiServer,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{reflector, watcher, WatchStreamExt},
};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some(BTreeMap::from([("v".into(), "0".into())]));
    cm
}

async fn touch_all(cms: &Api<ConfigMap>, round: usize) {
    for c in cms.list(&ListParams::default()).await.unwrap().items {
        let patch = json!({"data": {"v": format!("{round}")}});
        let name = c.metadata.name.unwrap();
        cms.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }
}

fn snapshot(items: impl Iterator<Item = ConfigMap>) -> BTreeMap<String, (String, String)> {
    items
        .map(|c| {
            let v = c
                .data
                .as_ref()
                .and_then(|d| d.get("v").cloned())
                .unwrap_or_default();
            (
                c.metadata.name.unwrap(),
                (c.metadata.resource_version.unwrap(), v),
            )
        })
        .collect()
}

/// Runs a reflector, lets `fault` do its worst mid-stream, keeps writing,
/// and checks the reflector ends equal to a final LIST. Returns whether the
/// watcher had to restart (relist or re-watch).
async fn recovers(server: FakeApiServer, fault: impl FnOnce(&FakeApiServer)) -> usize {
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let (restart_tx, mut restart_rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .default_backoff()
        .inspect(move |ev| match ev {
            Ok(watcher::Event::Init) | Err(_) => {
                let _ = restart_tx.send(());
            }
            _ => {}
        });
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    touch_all(&cms, 1).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    fault(&server);
    touch_all(&cms, 2).await;
    cms.delete("cm-4", &DeleteParams::default()).await.ok();
    cms.create(&PostParams::default(), &cm("cm-5")).await.ok();
    touch_all(&cms, 3).await;
    let expected = snapshot(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter(),
    );
    let mut seen = BTreeMap::new();
    for _ in 0..3000 {
        seen = snapshot(reader.state().iter().map(|a| (**a).clone()));
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert_eq!(
        seen, expected,
        "the reflector did not converge to the final LIST"
    );
    let mut restarts = 0;
    while restart_rx.try_recv().is_ok() {
        restarts += 1;
    }
    restarts
}

fn everything() -> Narrow {
    Narrow::default()
}

/// Cutting every watch makes the watcher re-watch and catch up.
#[tokio::test(start_paused = true)]
async fn watcher_should_recover_from_a_cut() {
    recovers(FakeApiServer::new(), |s| {
        assert!(s.injector().cut("configmaps", everything(), 0).unwrap() >= 1);
    })
    .await;
}

/// Cutting after N more events works too.
#[tokio::test(start_paused = true)]
async fn watcher_should_recover_from_a_delayed_cut() {
    recovers(FakeApiServer::new(), |s| {
        s.injector().cut("configmaps", everything(), 3).unwrap();
    })
    .await;
}

/// A forced 410 on the next resume makes the watcher relist.
#[tokio::test(start_paused = true)]
async fn watcher_should_relist_after_a_forced_410() {
    let restarts = recovers(FakeApiServer::new(), |s| {
        s.injector().expire_next_resume("configmaps").unwrap();
        s.injector().cut("configmaps", everything(), 0).unwrap();
    })
    .await;
    assert!(
        restarts >= 2,
        "expected the cut and the 410 relist, saw {restarts} restarts"
    );
}

/// Compacting the history while the watch is cut makes the resume 410.
#[tokio::test(start_paused = true)]
async fn watcher_should_relist_after_compaction() {
    recovers(FakeApiServer::new(), |s| {
        s.injector().compact(Some("configmaps")).unwrap();
        s.injector().cut("configmaps", everything(), 0).unwrap();
    })
    .await;
}

/// A duplicated event is harmless.
#[tokio::test(start_paused = true)]
async fn watcher_should_survive_a_duplicate() {
    recovers(FakeApiServer::new(), |s| {
        assert!(s.injector().duplicate("configmaps", everything()).unwrap() >= 1);
    })
    .await;
}

/// A stale (older) version is overwritten by later events.
#[tokio::test(start_paused = true)]
async fn watcher_should_survive_a_stale_event() {
    recovers(FakeApiServer::new(), |s| {
        assert!(s.injector().stale("configmaps", everything()).unwrap() >= 1);
    })
    .await;
}

/// Events held back and released later arrive in order.
#[tokio::test(start_paused = true)]
async fn watcher_should_survive_delayed_events() {
    let server = FakeApiServer::new();
    let inj = server.injector().clone();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        inj.release("configmaps", Narrow::default()).unwrap();
    });
    recovers(server, |s| {
        assert!(s.injector().hold("configmaps", everything()).unwrap() >= 1);
    })
    .await;
    releaser.await.unwrap();
}

/// An injected ERROR event (500) makes the watcher back off and re-watch.
#[tokio::test(start_paused = true)]
async fn watcher_should_survive_an_error_event() {
    let restarts = recovers(FakeApiServer::new(), |s| {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "injected", "reason": "InternalError", "code": 500});
        assert!(s.injector().event("configmaps", InjectedType::Error, status, everything()).unwrap() >= 1);
    })
    .await;
    assert!(restarts >= 1);
}

/// A lie (an ADDED event for an object that does not exist) is corrected by a relist.
#[tokio::test(start_paused = true)]
async fn watcher_should_be_corrected_after_a_lie_and_a_relist() {
    recovers(FakeApiServer::new(), |s| {
        let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "ghost", "namespace": "default", "resourceVersion": "1"}});
        s.injector().event("configmaps", InjectedType::Added, ghost, everything()).unwrap();
        s.injector().expire_next_resume("configmaps").unwrap();
        s.injector().cut("configmaps", everything(), 1).unwrap();
    })
    .await;
}

fn rule(verbs: &[&str], action: FaultAction, times: u64) -> FaultRule {
    FaultRule::new(verbs, "configmaps", action).times(times)
}

/// 409s, 429 with Retry-After, 500s and dropped connections on list and
/// watch requests: the watcher retries with backoff and converges.
#[tokio::test(start_paused = true)]
async fn watcher_should_recover_from_fault_rules() {
    let cases = [
        FaultAction::Status {
            code: 409,
            message: None,
            retry_after: None,
        },
        FaultAction::Status {
            code: 429,
            message: None,
            retry_after: Some(2),
        },
        FaultAction::Status {
            code: 500,
            message: None,
            retry_after: None,
        },
        FaultAction::DropBefore,
        FaultAction::DropAfter,
    ];
    for action in cases {
        let server = FakeApiServer::new();
        let id = server
            .injector()
            .add_fault(rule(&["list", "watch"], action.clone(), 3));
        let restarts = recovers(server.clone(), |s| {
            s.injector().cut("configmaps", everything(), 0).unwrap();
        })
        .await;
        let fired = server
            .injector()
            .faults()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap()
            .fired;
        assert_eq!(fired, 3, "{action:?} should have fired 3 times");
        assert!(restarts >= 3, "{action:?}: {restarts} restarts");
    }
}

/// A 429 carries Retry-After both as a header and in the Status details.
#[tokio::test]
async fn too_many_requests_should_carry_retry_after() {
    use tower::ServiceExt;
    let server = FakeApiServer::new();
    server.injector().add_fault(rule(
        &["get"],
        FaultAction::Status {
            code: 429,
            message: None,
            retry_after: Some(7),
        },
        1,
    ));
    let req = http::Request::get("/api/v1/namespaces/default/configmaps/x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = server.service().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let journal = server.journal().entries(&Filter::default());
    assert_eq!(journal.last().unwrap().fault, Some(1));
    assert_eq!(journal.last().unwrap().code, 429);
}

/// Dropping after the write: the client sees a transport error, yet the write happened.
#[tokio::test]
async fn drop_after_should_apply_the_write() {
    let server = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    server
        .injector()
        .add_fault(rule(&["create"], FaultAction::DropAfter, 1));
    let err = cms
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a dropped connection is not an API error: {err:?}"
    );
    assert!(
        cms.get("a").await.is_ok(),
        "the write happened before the drop"
    );
    server
        .injector()
        .add_fault(rule(&["create"], FaultAction::DropBefore, 1));
    cms.create(&PostParams::default(), &cm("b"))
        .await
        .unwrap_err();
    assert!(
        cms.get("b").await.is_err(),
        "nothing was written before the drop"
    );
}

/// Delays use tokio's clock: a 30 s injected latency costs nothing in virtual time.
#[tokio::test(start_paused = true)]
async fn delay_should_follow_virtual_time() {
    let server = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    server
        .injector()
        .add_fault(rule(&["list"], FaultAction::Delay { millis: 30_000 }, 1));
    let start = tokio::time::Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(30));
}

async fn seeded_run(seed: u64) -> String {
    let server = FakeApiServer::builder()
        .seed(seed)
        .clock(fake_apiserver::Clock::Fixed(1_700_000_000))
        .build();
    server.injector().add_fault(
        FaultRule::new(
            &["patch"],
            "configmaps",
            FaultAction::Status {
                code: 409,
                message: None,
                retry_after: None,
            },
        )
        .probability(0.4),
    );
    server.injector().add_fault(
        FaultRule::new(
            &["get"],
            "configmaps",
            FaultAction::Status {
                code: 500,
                message: None,
                retry_after: None,
            },
        )
        .probability(0.2),
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    for round in 0..20 {
        let name = format!("cm-{}", round % 5);
        let _ = cms
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": round.to_string()}})),
            )
            .await;
        let _ = cms.get(&name).await;
    }
    server.journal().normalized(&Filter::default())
}

/// A seeded, probabilistic fault schedule replays to a byte-identical normalized journal.
#[tokio::test]
async fn seeded_fault_schedules_should_replay_identically() {
    let a = seeded_run(11).await;
    let b = seeded_run(11).await;
    assert_eq!(a, b);
    assert!(
        a.contains("\"fault\":1") && a.contains("\"fault\":2"),
        "both rules should have fired"
    );
    let c = seeded_run(12).await;
    assert_ne!(a, c, "another seed fires differently");
}

/// The normalized journal of a create/patch/delete exchange, snapshotted.
#[tokio::test]
async fn normalized_journal_should_match_its_snapshot() {
    let server = FakeApiServer::new();
    server.journal().capture_responses(true);
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &cm("demo"))
        .await
        .unwrap();
    cms.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    cms.delete("demo", &DeleteParams::default()).await.unwrap();
    let journal = server.journal().normalized(&Filter::default());
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    insta::assert_yaml_snapshot!(entries);
}

/// The server's clock can follow tokio's paused clock: timestamps move with
/// virtual time, and the journal's times too.
#[tokio::test(start_paused = true)]
async fn server_clock_should_follow_virtual_time() {
    let server = FakeApiServer::builder()
        .clock(fake_apiserver::Clock::tokio_from(1_700_000_000))
        .build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let a = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let mut b = cm("b");
    b.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let b = cms.create(&PostParams::default(), &b).await.unwrap();
    let stamp = |c: &ConfigMap| c.metadata.creation_timestamp.clone().unwrap().0.to_string();
    assert_eq!(stamp(&a), "2023-11-14T22:13:20Z");
    assert_eq!(stamp(&b), "2023-11-14T23:13:20Z");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let deleting = cms
        .delete("b", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        deleting.metadata.deletion_timestamp.unwrap().0.to_string(),
        "2023-11-14T23:14:20Z"
    );
    let times: Vec<String> = server
        .journal()
        .entries(&Filter::default())
        .into_iter()
        .map(|e| e.time)
        .collect();
    assert_eq!(times[0], "2023-11-14T22:13:20.000000Z");
    assert_eq!(times[2], "2023-11-14T23:14:20.000000Z");
}
