//! `kube::runtime::watcher` and a reflector, fed by a writer making random
//! changes, end with a store identical to a final LIST: with list+watch, with
//! streaming lists, and when the history window compacts mid-watch (the
//! watcher relists on 410).

use std::collections::BTreeMap;

use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{reflector, watcher, WatchStreamExt},
};
use serde_json::json;

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn random_writes(cms: &Api<ConfigMap>, seed: u64, count: usize) {
    let mut rng = Rng(seed);
    for _ in 0..count {
        let name = format!("cm-{}", rng.below(12));
        match rng.below(4) {
            0 => {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(name);
                cm.metadata.labels = Some(BTreeMap::from([(
                    "app".into(),
                    format!("a{}", rng.below(3)),
                )]));
                let _ = cms.create(&PostParams::default(), &cm).await;
            }
            1 => {
                let _ = cms.delete(&name, &DeleteParams::default()).await;
            }
            2 => {
                let patch = json!({"metadata": {"labels": {"app": format!("a{}", rng.below(3))}}});
                let _ = cms
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await;
            }
            _ => {
                let patch = json!({"data": {"v": rng.next().to_string()}});
                let _ = cms
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await;
            }
        }
        if rng.below(8) == 0 {
            tokio::task::yield_now().await;
        }
    }
}

type Snapshot = BTreeMap<String, String>;

fn snapshot_of<'a>(items: impl Iterator<Item = &'a ConfigMap>) -> Snapshot {
    items
        .map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect()
}

async fn converge(server: FakeApiServer, config: watcher::Config, seed: u64, labels: Option<&str>) {
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    random_writes(&cms, seed, 50).await;
    let (reader, writer) = reflector::store::<ConfigMap>();
    let config = match labels {
        Some(l) => config.labels(l),
        None => config,
    };
    let stream = reflector(writer, watcher(cms.clone(), config))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    random_writes(&cms, seed + 1, 300).await;
    let mut params = ListParams::default();
    if let Some(l) = labels {
        params = params.labels(l);
    }
    let expected = snapshot_of(cms.list(&params).await.unwrap().items.iter());
    let mut seen = Snapshot::new();
    for _ in 0..2000 {
        seen = snapshot_of(reader.state().iter().map(|a| a.as_ref()));
        if seen == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    task.abort();
    assert_eq!(
        seen, expected,
        "reflector store differs from the final LIST"
    );
}

/// Default list+watch configuration converges.
#[tokio::test(start_paused = true)]
async fn reflector_should_match_final_list_with_list_watch() {
    converge(FakeApiServer::new(), watcher::Config::default(), 1, None).await;
}

/// Streaming lists (sendInitialEvents) converge.
#[tokio::test(start_paused = true)]
async fn reflector_should_match_final_list_with_streaming_lists() {
    converge(
        FakeApiServer::new(),
        watcher::Config::default().streaming_lists(),
        2,
        None,
    )
    .await;
}

/// A label-selected watch converges on the selected subset, seeing objects
/// enter and leave the selection.
#[tokio::test(start_paused = true)]
async fn reflector_should_match_final_list_with_a_label_selector() {
    converge(
        FakeApiServer::new(),
        watcher::Config::default(),
        3,
        Some("app=a1"),
    )
    .await;
}

/// With a history window smaller than the writes, the watch falls behind it,
/// gets 410, relists, and still converges.
#[tokio::test(start_paused = true)]
async fn reflector_should_recover_from_compaction_by_relisting() {
    let server = FakeApiServer::builder().history(8).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let (reader, writer) = reflector::store::<ConfigMap>();
    let mut stream = Box::pin(
        reflector(writer, watcher(cms.clone(), watcher::Config::default())).default_backoff(),
    );
    // Initial list, then stop reading while the writer moves history on.
    while !matches!(stream.next().await, Some(Ok(watcher::Event::InitDone))) {}
    random_writes(&cms, 4, 200).await;
    server.api().store.compact(None);
    let mut restarted = false;
    let expected = snapshot_of(cms.list(&ListParams::default()).await.unwrap().items.iter());
    for _ in 0..5000 {
        match tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await {
            Ok(Some(Ok(watcher::Event::Init))) => restarted = true,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                if snapshot_of(reader.state().iter().map(|a| a.as_ref())) == expected {
                    break;
                }
            }
        }
    }
    assert!(restarted, "the watcher should have relisted after 410");
    assert_eq!(
        snapshot_of(reader.state().iter().map(|a| a.as_ref())),
        expected
    );
}
