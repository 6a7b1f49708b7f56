//! Daemons and timers at scale, against the in-process fake API server:
//!
//! - timer firings per second across 10,000 objects (virtual time: each
//!   10-second tick fires every timer; the wall time of a tick is the cost),
//!   with a timer that returns nothing and one that writes its result;
//! - daemon start and stop cost per object (real time: from operator start
//!   until every daemon runs; from the stop request until all have exited);
//! - memory per idle daemon (`-- memory`, alone in its process).
//!
//! Run: `cargo bench -p kopf --bench engines` and
//! `cargo bench -p kopf --bench engines -- memory`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use kopf::{Context, HandlerResult, Operator, Resource, Settings};
use serde_json::json;

mod support;

use support::{cluster, rss_kib};

const N: usize = 10_000;

fn examples() -> Resource {
    Resource::new("kopf.dev", "v1", "kopfexamples")
}

fn settings(virtual_time: bool) -> Settings {
    let mut settings = Settings::default();
    settings.posting.enabled = false;
    settings.batching.batch_window = Duration::from_millis(10);
    if virtual_time {
        settings.clock = kopf::Clock::tokio_from(1_700_000_000);
    }
    settings
}

async fn until(counter: &AtomicUsize, target: usize) {
    while counter.load(Ordering::Relaxed) < target {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Timers on N objects, in virtual time: the wall time of each tick.
async fn timers(writes: bool) {
    let server = cluster(N, 4 * N + 100);
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = fired.clone();
    let mut operator = Operator::new();
    operator
        .on_timer(
            &examples(),
            Duration::from_secs(10),
            move |_ctx: Context| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    HandlerResult::Ok(writes.then(|| json!("checked")))
                }
            },
        )
        .id("tick");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(operator.run(server.client(), settings(true), async {
        let _ = stopped.await;
    }));
    // The first round fires as the timers start (with the finalizers added).
    until(&fired, N).await;
    let start = Instant::now();
    let ticks = 5;
    for tick in 1..=ticks {
        tokio::time::sleep(Duration::from_secs(10)).await;
        until(&fired, N * (tick + 1)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "timers on {N} objects ({}): {ticks} ticks of {N} firings in {wall:.2} s wall = {:.0} firings/s",
        if writes { "each writing its result" } else { "returning nothing" },
        (ticks * N) as f64 / wall
    );
    let _ = stop.send(());
    let _ = task.await;
}

/// Daemons on N objects, in real time: start until all run, stop until all exited.
async fn daemons() {
    let server = cluster(N, 4 * N + 100);
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let mut operator = Operator::new();
    operator
        .on_daemon(&examples(), move |ctx: Context| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                ctx.stopped.wait().await;
                HandlerResult::Ok(None)
            }
        })
        .id("accompany");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let begin = Instant::now();
    let task = tokio::spawn(operator.run(server.client(), settings(false), async {
        let _ = stopped.await;
    }));
    until(&started, N).await;
    let up = begin.elapsed().as_secs_f64();
    let end = Instant::now();
    let _ = stop.send(());
    let _ = task.await;
    let down = end.elapsed().as_secs_f64();
    println!(
        "daemons on {N} objects: all started in {up:.2} s = {:.1} µs per object (listing, finalizer, spawn); all stopped in {down:.2} s = {:.1} µs per object",
        up * 1e6 / N as f64,
        down * 1e6 / N as f64
    );
}

/// RSS per object once every object has an idle daemon, against the same
/// objects handled by a plain creation handler.
async fn memory(with_daemons: bool) -> f64 {
    let server = cluster(N, 4 * N + 100);
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let mut operator = Operator::new();
    if with_daemons {
        operator
            .on_daemon(&examples(), move |ctx: Context| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    ctx.stopped.wait().await;
                    HandlerResult::Ok(None)
                }
            })
            .id("accompany");
    } else {
        operator
            .on_create(&examples(), move |_ctx: Context| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    HandlerResult::Ok(None)
                }
            })
            .id("create_fn");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(operator.run(server.client(), settings(false), async {
        let _ = stopped.await;
    }));
    until(&started, N).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_object = (rss_kib() - before) / N as f64;
    let _ = stop.send(());
    let _ = task.await;
    per_object
}

fn main() {
    if std::env::args().any(|a| a == "memory") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let kind = std::env::args().any(|a| a == "baseline");
        let per = rt.block_on(memory(!kind));
        println!(
            "{N} objects {}: RSS +{per:.2} KiB per object",
            if kind {
                "handled by a creation handler (baseline)"
            } else {
                "each with an idle daemon"
            }
        );
        return;
    }
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(timers(false));
    paused.block_on(timers(true));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(daemons());
}
