//! The write path against its recorded figures (`benches/recorded.txt`):
//! get, create and merge patch of a ConfigMap through `kube::Api`,
//! in-process, each the median of 15 rounds of 2,000 calls. A call that
//! costs more than 1.5 times its recorded figure prints a `REGRESSION`
//! line and the run exits with status 1.
//!
//! `cargo bench -p fake-apiserver --bench writes`

use std::{collections::BTreeMap, future::Future, time::Instant};

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};

const RECORDED: &str = include_str!("recorded.txt");
const TOLERANCE: f64 = 1.5;
const ROUNDS: usize = 15;
const CALLS: u64 = 2_000;

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

fn cm(name: String) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name);
    cm.metadata.labels = Some(BTreeMap::from([("app".into(), "bench".into())]));
    cm.data = Some(BTreeMap::from([("key".into(), "value".repeat(20))]));
    cm
}

fn main() {
    let recorded: BTreeMap<&str, f64> = RECORDED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, figure) = l.split_once(' ')?;
            Some((name, figure.trim().parse().ok()?))
        })
        .collect();
    // `cargo bench` passes `--bench`; a word (`get`, `create`, `patch`)
    // measures that one only.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let measured = rt.block_on(async {
        let server = FakeApiServer::new();
        let api: Api<ConfigMap> = Api::default_namespaced(server.client());
        api.create(&PostParams::default(), &cm("cm-0".into()))
            .await
            .unwrap();
        let mut measured = Vec::new();
        if runs("get") {
            let get = median(|_| async { drop(api.get("cm-0").await.unwrap()) }).await;
            measured.push(("get", get));
        }
        if runs("create") {
            let create = median(|n| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &cm(format!("new-{n}")))
                        .await
                        .unwrap();
                }
            })
            .await;
            measured.push(("create", create));
        }
        if runs("merge-patch") {
            let patch = median(|n| {
                let api = api.clone();
                async move {
                    let patch = serde_json::json!({"data": {"n": n.to_string()}});
                    api.patch("cm-0", &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .unwrap();
                }
            })
            .await;
            measured.push(("merge-patch", patch));
        }
        measured
    });
    let mut regressed = false;
    for (name, now) in measured {
        match recorded.get(name) {
            Some(&figure) if now > figure * TOLERANCE => {
                regressed = true;
                println!(
                    "REGRESSION: {name} costs {now:.2} µs, more than {TOLERANCE}× its recorded {figure} µs"
                );
            }
            Some(&figure) => println!("{name}: {now:.2} µs (recorded {figure} µs)"),
            None => println!("{name}: {now:.2} µs (no recorded figure)"),
        }
    }
    if regressed {
        std::process::exit(1);
    }
}
