//! Load and soak figures (issue 15), printed for docs/BENCHMARKS.md:
//!
//! 1. 100 watchers × 100,000 writes: every watcher must see every event,
//!    in resourceVersion order; resident memory sampled as the writes go
//!    (it must level off once the watch history window is full).
//! 2. 1,000 connections open at once, each with a request.
//! 3. Slow clients: 100 connections trickling their headers and 10
//!    watchers that never read, during 20,000 writes of 1 KiB objects;
//!    memory, and a normal client's latency meanwhile.
//! 4. The in-flight limit: 1,000 concurrent GETs, each held 100 ms.
//! 5. `--data-dir`: creates with every write flushed, one writer and eight.
//!
//! `cargo bench -p fake-apiserver --bench soak` (`SOAK_WRITES` overrides
//! the 100,000 of the first part). Figures, not assertions: a lost or
//! reordered event is printed as `LOST`/`REORDERED` and fails the run.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use fake_apiserver::{
    endpoints::inflight::Limits,
    testing::faults::{FaultAction, FaultRule},
    FakeApiServer,
};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

fn cm(name: &str, size: usize) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("v".to_string(), "x".repeat(size))].into());
    cm
}

/// A watch of configmaps in `default` from `rv`, as an anonymous client.
async fn open_watch(server: &FakeApiServer, rv: &str) -> fake_apiserver::ResponseBody {
    let req = http::Request::get(format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
    ))
    .body(Full::new(Bytes::new()))
    .unwrap();
    server.service().oneshot(req).await.unwrap().into_body()
}

struct Tally {
    seen: AtomicUsize,
    reordered: AtomicUsize,
}

/// Reads a watch, counting events and any resourceVersion out of order.
async fn count(mut body: fake_apiserver::ResponseBody, tally: Arc<Tally>, want: usize) {
    let (mut buf, mut last, mut seen) = (Vec::<u8>::new(), 0u64, 0usize);
    while seen < want {
        let Some(Ok(frame)) = body.frame().await else {
            return;
        };
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + i];
            start += i + 1;
            // The resourceVersion, without parsing the whole event.
            let rv = find_rv(line);
            if rv <= last {
                tally.reordered.fetch_add(1, Ordering::Relaxed);
            }
            last = rv;
            seen += 1;
            tally.seen.fetch_add(1, Ordering::Relaxed);
        }
        buf.drain(..start);
    }
}

fn find_rv(line: &[u8]) -> u64 {
    let key = b"\"resourceVersion\":\"";
    line.windows(key.len())
        .position(|w| w == key)
        .map(|at| {
            line[at + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
        })
        .unwrap_or(0)
}

async fn watchers_and_writes(writes: usize) -> bool {
    const WATCHERS: usize = 100;
    const OBJECTS: usize = 1000;
    let server = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..OBJECTS {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}"), 100))
            .await
            .unwrap();
    }
    let rv = server.api().store.current_rv().to_string();
    let tally = Arc::new(Tally {
        seen: AtomicUsize::new(0),
        reordered: AtomicUsize::new(0),
    });
    let mut readers = Vec::new();
    for _ in 0..WATCHERS {
        let body = open_watch(&server, &rv).await;
        readers.push(tokio::spawn(count(body, tally.clone(), writes)));
    }
    let rss_start = rss_mib();
    let start = Instant::now();
    let mut samples = Vec::new();
    for n in 0..writes {
        let patch = serde_json::json!({"data": {"n": n.to_string()}});
        api.patch(
            &format!("cm-{}", n % OBJECTS),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
        if (n + 1) % (writes / 10).max(1) == 0 {
            samples.push(format!("{:.0}", rss_mib()));
        }
    }
    let written = start.elapsed();
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(120), r).await;
    }
    let delivered = start.elapsed();
    let seen = tally.seen.load(Ordering::Relaxed);
    let lost = WATCHERS * writes - seen.min(WATCHERS * writes);
    let reordered = tally.reordered.load(Ordering::Relaxed);
    println!("## {WATCHERS} watchers x {writes} writes (merge patches of {OBJECTS} configmaps)");
    println!(
        "writes: {:.0}/s; deliveries: {seen} in {:.1} s ({:.0}/s); lost: {lost}; reordered: {reordered}",
        writes as f64 / written.as_secs_f64(),
        delivered.as_secs_f64(),
        seen as f64 / delivered.as_secs_f64()
    );
    println!(
        "RSS: {rss_start:.0} MiB before; every {} writes: {} MiB",
        writes / 10,
        samples.join(", ")
    );
    if lost > 0 {
        println!("LOST: {lost} events");
    }
    if reordered > 0 {
        println!("REORDERED: {reordered} events");
    }
    lost == 0 && reordered == 0
}

async fn thousand_connections() {
    let server = FakeApiServer::new();
    let serving = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = serving.local_addr();
    let start = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let connected = start.elapsed();
    let answers = futures::future::join_all(streams.into_iter().map(|mut s| async move {
        s.write_all(
            b"GET /api/v1/namespaces/default HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.ok()?;
        answer.get(9..12).map(str::to_string)
    }))
    .await;
    let ok = answers
        .iter()
        .filter(|a| a.as_deref() == Some("200"))
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.as_deref() == Some("429"))
        .count();
    println!("## 1,000 connections at once (anonymous GETs, default in-flight limit)");
    println!(
        "connected in {:.0} ms; all answered in {:.0} ms: {ok} × 200, {refused} × 429, {} other; RSS {:.0} MiB",
        connected.as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3,
        1000 - ok - refused,
        rss_mib()
    );
}

async fn slow_clients() {
    let server = FakeApiServer::builder()
        .limits(Limits {
            request_header_timeout: Duration::from_secs(2),
            ..Limits::default()
        })
        .build();
    let serving = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = serving.local_addr();
    let rss_before = rss_mib();
    // 100 slowloris connections: a header line every 200 ms, never done.
    let cut = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s
                .write_all(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n")
                .await;
            for i in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                let mut b = [0u8; 64];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
                {
                    break;
                }
            }
            cut.fetch_add(1, Ordering::Relaxed);
        });
    }
    // 10 watchers that never read.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    // 20,000 writes of 1 KiB objects, and a normal client's GETs meanwhile.
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let prober = {
        let latencies = latencies.clone();
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                let t = Instant::now();
                let _ = api.get_opt("cm-0").await;
                latencies
                    .lock()
                    .unwrap()
                    .push(t.elapsed().as_secs_f64() * 1e6);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let start = Instant::now();
    for i in 0..20_000 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}"), 1024))
            .await
            .unwrap();
    }
    let wrote = start.elapsed();
    tokio::time::sleep(Duration::from_secs(7)).await;
    prober.abort();
    let rss_after = rss_mib();
    // Are the stalled watches ended? Drain what the socket holds, then see EOF.
    let mut ended = 0;
    let mut held = 0usize;
    for mut s in stalled {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    ended += 1;
                    break;
                }
                Ok(Ok(n)) => held += n,
                _ => break,
            }
        }
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    println!(
        "## slow clients: 100 trickling headers, 10 watchers never reading, 20,000 writes of 1 KiB"
    );
    println!(
        "writes: {:.0}/s; slowloris connections cut off: {}/100; unread watches ended: {ended}/10 ({:.1} MiB were buffered in their sockets); \
         RSS {rss_before:.0} → {rss_after:.0} MiB; a GET meanwhile: median {:.0} µs, p99 {:.0} µs ({} samples)",
        20_000.0 / wrote.as_secs_f64(),
        cut.load(Ordering::Relaxed),
        held as f64 / (1024.0 * 1024.0),
        l.get(l.len() / 2).copied().unwrap_or_default(),
        l.get(l.len() * 99 / 100).copied().unwrap_or_default(),
        l.len()
    );
}

async fn inflight_limit() {
    let server = FakeApiServer::new();
    server.injector().add_fault(FaultRule::new(
        &["list"],
        "configmaps",
        FaultAction::Delay { millis: 100 },
    ));
    let codes = futures::future::join_all((0..1000).map(|_| {
        let svc = server.service();
        async move {
            let req = http::Request::get("/api/v1/namespaces/default/configmaps")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = svc.oneshot(req).await.unwrap();
            let retry = resp.headers().get("retry-after").cloned();
            (resp.status().as_u16(), retry)
        }
    }))
    .await;
    let ok = codes.iter().filter(|(c, _)| *c == 200).count();
    let refused = codes
        .iter()
        .filter(|(c, r)| *c == 429 && r.as_ref().is_some_and(|r| r == "1"))
        .count();
    println!("## in-flight limit (400 non-mutating): 1,000 concurrent GETs, each held 100 ms");
    println!("{ok} × 200, {refused} × 429 with Retry-After: 1");
}

async fn data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let durable = FakeApiServer::builder().data_dir(dir.path()).build();
    let memory = FakeApiServer::new();
    let mut line = Vec::new();
    for (label, server) in [("memory only", &memory), ("--data-dir", &durable)] {
        let api: Api<ConfigMap> = Api::default_namespaced(server.client());
        let start = Instant::now();
        for i in 0..2000 {
            api.create(&PostParams::default(), &cm(&format!("one-{i}"), 100))
                .await
                .unwrap();
        }
        let one = 2000.0 / start.elapsed().as_secs_f64();
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let api = api.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    for i in 0..500 {
                        api.create(&PostParams::default(), &cm(&format!("w{w}-{i}"), 100))
                            .await
                            .unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let eight = 4000.0 / start.elapsed().as_secs_f64();
        line.push(format!(
            "{label}: {one:.0} creates/s with one writer, {eight:.0}/s with eight"
        ));
    }
    println!("## creates with every write flushed to disk");
    println!("{}", line.join("; "));
}

fn main() {
    let writes: usize = std::env::var("SOAK_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // `cargo bench` passes `--bench`; a filter word runs one part.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| filter.as_deref().is_none_or(|f| part.contains(f));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut clean = true;
    rt.block_on(async {
        if runs("watchers") {
            clean &= watchers_and_writes(writes).await;
        }
        if runs("connections") {
            thousand_connections().await;
        }
        if runs("slow") {
            slow_clients().await;
        }
        if runs("inflight") {
            inflight_limit().await;
        }
        if runs("datadir") {
            data_dir().await;
        }
    });
    if !clean {
        std::process::exit(1);
    }
}
