//! Objects fully handled per second in a burst: N objects created at once in
//! the in-process fake API server, one create handler each, done when every
//! object has its status written and its progress purged. Also counts
//! duplicate handler invocations (expected: zero) and peak RSS.
//!
//! Run: `cargo bench -p kopf --bench burst` (bursts), and
//! `cargo bench -p kopf --bench burst -- idle` (memory per idle handled object).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use kopf::{Context, Operator, Resource, Settings};
use serde_json::json;

mod support;

use support::{cluster, create_examples, peak_rss_mib, rss_kib};

async fn burst(n: usize) {
    let server = cluster(0, 4 * n + 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut operator = Operator::new();
    operator
        .on_create(
            &Resource::new("kopf.dev", "v1", "kopfexamples"),
            move |_ctx: Context| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    Ok(Some(json!({"message": "hello world"})))
                }
            },
        )
        .id("create_fn");
    let mut settings = Settings::default();
    settings.posting.enabled = false;
    settings.batching.batch_window = Duration::from_millis(10);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(operator.run(server.client(), settings, async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let api = server.api().clone();
    let start = Instant::now();
    create_examples(&server, n);
    let key = support::examples(&server).kind.key.clone();
    loop {
        let page = api.store.list(&key, None, None, None, 0, &|o| {
            let text = std::str::from_utf8(&o.bytes).unwrap_or_default();
            text.contains("hello world")
                && text.contains("last-handled-configuration")
                && !text.contains("kopf.zalando.org/create_fn")
        });
        if page.map(|p| p.items.len()).unwrap_or(0) == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let invocations = calls.load(Ordering::Relaxed);
    println!(
        "burst of {n}: fully handled in {:.2} s = {:.0} objects/s; handler invocations {invocations} (duplicates {}); peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        invocations.saturating_sub(n),
        peak_rss_mib()
    );
    let _ = stop.send(());
    let _ = task.await;
}

fn main() {
    let which: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let sizes = if which.is_empty() {
        vec![1_000, 10_000]
    } else {
        which
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().any(|a| a == "idle") {
        // Alone in its process, so that memory freed by bursts is not reused.
        rt.block_on(idle_memory(10_000));
        return;
    }
    for n in sizes {
        rt.block_on(burst(n));
    }
}

/// Memory per idle handled object: N objects created first, RSS measured,
/// then the operator started and left to finish and idle; the RSS growth per
/// object is an upper bound (it includes the fake server's own growth from
/// the operator's patches, reported separately from the store's bytes).
async fn idle_memory(n: usize) {
    let server = cluster(n, 64);
    let api = server.api().clone();
    let key = support::examples(&server).kind.key.clone();
    let stored_bytes = |api: &fake_apiserver::registry::generic::Api| -> usize {
        api.store
            .list(&key, None, None, None, 0, &|_| true)
            .map(|p| p.items.iter().map(|o| o.bytes.len()).sum())
            .unwrap_or(0)
    };
    let bytes_before = stored_bytes(&api);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut operator = Operator::new();
    operator
        .on_create(
            &Resource::new("kopf.dev", "v1", "kopfexamples"),
            |_ctx: Context| async move { Ok(Some(json!({"message": "hello world"}))) },
        )
        .id("create_fn");
    let mut settings = Settings::default();
    settings.posting.enabled = false;
    settings.batching.batch_window = Duration::from_millis(10);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(operator.run(server.client(), settings, async {
        let _ = stopped.await;
    }));
    loop {
        let page = api.store.list(&key, None, None, None, 0, &|o| {
            let text = std::str::from_utf8(&o.bytes).unwrap_or_default();
            text.contains("last-handled-configuration")
                && !text.contains("kopf.zalando.org/create_fn")
        });
        if page.map(|p| p.items.len()).unwrap_or(0) == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib();
    let bytes_after = stored_bytes(&api);
    // What a watch cache of these objects costs: each latest body parsed and
    // held, as every worker holds its object's.
    let cache: Vec<serde_json::Value> = api
        .store
        .list(&key, None, None, None, 0, &|_| true)
        .map(|p| p.items.iter().map(|o| o.value()).collect())
        .unwrap_or_default();
    let with_cache = rss_kib();
    let total = (after - before) / n as f64;
    let cached = (with_cache - after) / n as f64;
    println!(
        "idle memory, {n} handled objects: RSS +{total:.2} KiB per object in all; a parsed copy of each body (the watch cache) costs {cached:.2} KiB; beyond it {:.2} KiB per object (an upper bound: it includes the fake server's growth, whose objects grew by {:.2} KiB each from the operator's patches)",
        total - cached,
        (bytes_after.saturating_sub(bytes_before)) as f64 / 1024.0 / n as f64,
    );
    drop(cache);
    let _ = stop.send(());
    let _ = task.await;
}
