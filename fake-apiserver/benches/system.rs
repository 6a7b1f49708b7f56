//! Whole-system figures, printed (not asserted):
//!
//! 1. HTTP on loopback: single-object GET req/s of the fake server against a
//!    hello-world hyper server answering a body of the same size, under the
//!    same `wrk` load, in the same run.
//! 2. Start-up: time from exec of the `fake-apiserver` binary to its answer
//!    on `/version`.
//! 3. Memory: 100,000 ConfigMaps of 1 KiB each, RSS against their total JSON size.
//!
//! Run: `cargo bench -p fake-apiserver --bench system` (needs `wrk` for part 1).

use std::{
    convert::Infallible,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Instant,
};

use bytes::Bytes;
use fake_apiserver::{registry::rest::Target, FakeApiServer};
use http_body_util::Full;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::json;

fn wrk(url: &str) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t1", "-c16", "-d5s", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

async fn hello_server(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut resp = hyper::Response::new(Full::new(body));
                        resp.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn http_ratio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = FakeApiServer::new();
    let api = server.api().clone();
    let t = Target {
        kind: api.resources.lookup("", "v1", "configmaps").unwrap(),
        version: "v1".into(),
        namespace: "default".into(),
        name: String::new(),
    };
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench", "labels": {"app": "bench"}},
                      "data": {"key": "v".repeat(200)}});
    api.create(&t, body, false).unwrap();
    let t = Target {
        name: "bench".into(),
        ..t
    };
    let object = api.get(&t).unwrap().body;
    let (fake_url, hello_url, _serving) = rt.block_on(async {
        let serving = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let hello = hello_server(object.clone()).await;
        (
            format!(
                "{}/api/v1/namespaces/default/configmaps/bench",
                serving.url()
            ),
            format!("http://{hello}/"),
            serving,
        )
    });
    let Some(fake) = wrk(&fake_url) else {
        println!("http: wrk not found, skipping the HTTP comparison (apt-get install wrk)");
        return;
    };
    let hello = wrk(&hello_url).unwrap_or(f64::NAN);
    println!(
        "http: GET one ConfigMap ({} bytes): fake-apiserver {fake:.0} req/s, hello-world hyper {hello:.0} req/s, ratio {:.0}%  (wrk -t1 -c16 -d5s, server on 1 worker thread)",
        object.len(),
        100.0 * fake / hello
    );
}

fn binary_startup() {
    let bin = env!("CARGO_BIN_EXE_fake-apiserver");
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let mut child = Command::new(bin)
            .args(["--port", "0", "--log", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        stream.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        times.push(start.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    println!(
        "startup: exec -> /version answered: median {:.1} ms, max {:.1} ms (20 runs)",
        times[10].as_secs_f64() * 1e3,
        times[19].as_secs_f64() * 1e3
    );
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn memory_child() {
    const COUNT: usize = 100_000;
    let before = status_kib("VmRSS:");
    let server = FakeApiServer::builder().history(4096).build();
    let api = server.api().clone();
    let t = Target {
        kind: api.resources.lookup("", "v1", "configmaps").unwrap(),
        version: "v1".into(),
        namespace: "default".into(),
        name: String::new(),
    };
    let mut total_json = 0usize;
    let start = Instant::now();
    for i in 0..COUNT {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:06}")},
                          "data": {"payload": "x".repeat(1024)}});
        let reply = api.create(&t, body, false).unwrap();
        total_json += reply.body.len();
    }
    let elapsed = start.elapsed();
    let after = status_kib("VmRSS:");
    let peak = status_kib("VmHWM:");
    let held = (after - before) as f64 * 1024.0;
    println!(
        "memory: {COUNT} ConfigMaps of 1 KiB, {:.1} MiB of JSON: RSS grew {:.1} MiB ({:.2}x), peak RSS {:.1} MiB ({:.2}x of JSON); created in {:.2} s ({:.0}/s, direct API)",
        total_json as f64 / 1048576.0,
        held / 1048576.0,
        held / total_json as f64,
        peak as f64 / 1024.0,
        peak as f64 * 1024.0 / total_json as f64,
        elapsed.as_secs_f64(),
        COUNT as f64 / elapsed.as_secs_f64(),
    );
    drop(server);
}

fn main() {
    if std::env::args().any(|a| a == "--memory-child") {
        memory_child();
        return;
    }
    // Cargo passes `--bench`; a filter argument may follow. Run everything.
    http_ratio();
    binary_startup();
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--memory-child")
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
}
