//! Get, create and merge patch of a ConfigMap through `kube::Api`, against
//! fake-apiserver in-process and against kube-fake-client, interleaved in
//! one run: per call, the median of 15 rounds of 2,000 calls, measured twice
//! on each side alternately (the better of the two kept for each).

use std::{collections::BTreeMap, future::Future, time::Instant};

const ROUNDS: usize = 15;
const CALLS: u64 = 2_000;

/// The median time per call of `ROUNDS` rounds of `CALLS` calls of `f`.
async fn median<F, Fut>(mut f: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut rounds = Vec::new();
    let mut n = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..CALLS {
            n += 1;
            f(n).await;
        }
        rounds.push(start.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

mod ours {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    pub(crate) fn cm(name: String) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name);
        cm.metadata.labels = Some(BTreeMap::from([("app".into(), "bench".into())]));
        cm.data = Some(BTreeMap::from([("key".into(), "value".repeat(20))]));
        cm
    }

    pub(crate) async fn api() -> Api<ConfigMap> {
        let server = fake_apiserver::FakeApiServer::new();
        let api: Api<ConfigMap> = Api::default_namespaced(server.client());
        api.create(&PostParams::default(), &cm("cm-0".into())).await.unwrap();
        api
    }

    pub(crate) async fn get(api: &Api<ConfigMap>) {
        api.get("cm-0").await.unwrap();
    }

    pub(crate) async fn create(api: &Api<ConfigMap>, n: u64) {
        api.create(&PostParams::default(), &cm(format!("new-{n}"))).await.unwrap();
    }

    pub(crate) async fn patch(api: &Api<ConfigMap>, n: u64) {
        let patch = serde_json::json!({"data": {"n": n.to_string()}});
        api.patch("cm-0", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
}

mod peer {
    use super::*;
    use k8s_openapi_028::api::core::v1::ConfigMap;
    use kube4::api::{Api, Patch, PatchParams, PostParams};

    pub(crate) fn cm(name: String) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name);
        cm.metadata.namespace = Some("default".into());
        cm.metadata.labels = Some(BTreeMap::from([("app".into(), "bench".into())]));
        cm.data = Some(BTreeMap::from([("key".into(), "value".repeat(20))]));
        cm
    }

    pub(crate) async fn api() -> Api<ConfigMap> {
        let client = kube_fake_client::ClientBuilder::new().build().await.unwrap();
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        api.create(&PostParams::default(), &cm("cm-0".into())).await.unwrap();
        api
    }

    pub(crate) async fn get(api: &Api<ConfigMap>) {
        api.get("cm-0").await.unwrap();
    }

    pub(crate) async fn create(api: &Api<ConfigMap>, n: u64) {
        api.create(&PostParams::default(), &cm(format!("new-{n}"))).await.unwrap();
    }

    pub(crate) async fn patch(api: &Api<ConfigMap>, n: u64) {
        let patch = serde_json::json!({"data": {"n": n.to_string()}});
        api.patch("cm-0", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (a, b) = (ours::api().await, peer::api().await);
    println!("{:<12} {:>16} {:>18} {:>8}", "operation", "fake-apiserver", "kube-fake-client", "ratio");
    let row = |name: &str, ours: f64, peer: f64| {
        println!("{name:<12} {ours:>13.2} µs {peer:>15.2} µs {:>7.2}×", peer / ours);
    };
    // Each operation twice on each side, alternating; the better of each.
    let mut o = f64::MAX;
    let mut p = f64::MAX;
    for _ in 0..2 {
        o = o.min(median(|_| ours::get(&a)).await);
        p = p.min(median(|_| peer::get(&b)).await);
    }
    row("get", o, p);
    let (mut o, mut p) = (f64::MAX, f64::MAX);
    for i in 0..2u64 {
        o = o.min(median(|n| ours::create(&a, n + i * 1_000_000)).await);
        p = p.min(median(|n| peer::create(&b, n + i * 1_000_000)).await);
    }
    row("create", o, p);
    let (mut o, mut p) = (f64::MAX, f64::MAX);
    for _ in 0..2 {
        o = o.min(median(|n| ours::patch(&a, n)).await);
        p = p.min(median(|n| peer::patch(&b, n)).await);
    }
    row("merge patch", o, p);
}
