//! The simulated cluster's figures, printed (not asserted):
//!
//! 1. Deployments to Available: `N` Deployments of 3 replicas each (default
//!    1,000) created in-process on a paused clock, with every controller
//!    running; wall time until all are Available, and pods per second.
//! 2. The controllers' own cost: the same run's writes (from the journal),
//!    replayed in order against a pure store through the same in-process
//!    client; the simulation's time over the replay's.
//! 3. Memory: RSS after the run, against the number of pods and nodes.
//!
//! Run: `cargo bench -p fake-apiserver --bench cluster` (`N=...` to change
//! the count).

use std::time::{Duration, Instant};

use fake_apiserver::{
    controllers::selection::Selection, testing::journal::Filter, Clock, FakeApiServer,
};
use serde_json::{json, Value};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn request(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Option<Value> {
    request_as(client, method, path, content_type, body, "bench").await
}

/// A request with a User-Agent (whose first segment is the field manager
/// of a write, so the replay records the same managed fields).
async fn request_as(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    agent: &str,
) -> Option<Value> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("user-agent", agent)
        .body(body)
        .ok()?;
    client.request::<Value>(req).await.ok()
}

fn deployment(i: usize) -> Value {
    let name = format!("web-{i}");
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}})
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let nodes = (n * 3).div_ceil(100).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let (writes, simulated) = runtime.block_on(async {
        let server = FakeApiServer::builder()
            .seed(1)
            .clock(Clock::tokio_from(1_700_000_000))
            .journal_limit(usize::MAX)
            .controllers(Selection::all())
            .nodes(nodes)
            .build();
        let client = server.client();
        let wall = Instant::now();
        for i in 0..n {
            let body = deployment(i).to_string().into_bytes();
            request(&client, "POST", "/apis/apps/v1/namespaces/default/deployments", "application/json", body).await;
        }
        let virtual_start = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let list = request(&client, "GET", "/apis/apps/v1/namespaces/default/deployments", "application/json", Vec::new())
                .await
                .unwrap_or_default();
            let available = list["items"]
                .as_array()
                .map_or(0, |items| items.iter().filter(|d| d["status"]["availableReplicas"] == 3).count());
            if available == n {
                break;
            }
            if virtual_start.elapsed() > Duration::from_secs(3600) {
                eprintln!("only {available} of {n} Deployments became Available in an hour of virtual time");
                break;
            }
        }
        let elapsed = wall.elapsed();
        let pods = n * 3;
        println!(
            "{n} Deployments x 3 replicas on {nodes} nodes: all Available in {:.2} s of wall time ({:.0} pods/s), {:.0} s of virtual time",
            elapsed.as_secs_f64(),
            pods as f64 / elapsed.as_secs_f64(),
            virtual_start.elapsed().as_secs_f64()
        );
        println!("RSS after the run: {:.0} MiB for {pods} pods, {nodes} nodes", rss_mib());
        let writes: Vec<(String, String, String, Vec<u8>, String)> = server
            .journal()
            .entries(&Filter { writes: true, ..Default::default() })
            .into_iter()
            .map(|e| {
                let path = if e.query.is_empty() { e.path.clone() } else { format!("{}?{}", e.path, e.query) };
                let body = e.request_body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
                let agent = e.user_agent.unwrap_or_default();
                (e.verb, path, e.content_type.unwrap_or_else(|| "application/json".into()), body, agent)
            })
            .collect();
        (writes, elapsed)
    });
    // The same writes, in order, with no controller: what the API costs.
    let replay = runtime.block_on(async {
        let server = FakeApiServer::builder()
            .seed(1)
            .clock(Clock::tokio_from(1_700_000_000))
            .journal_limit(0)
            .build();
        let client = server.client();
        let wall = Instant::now();
        for (verb, path, content_type, body, agent) in &writes {
            let method = match verb.as_str() {
                "create" => "POST",
                "update" => "PUT",
                "patch" => "PATCH",
                "delete" | "deletecollection" => "DELETE",
                _ => continue,
            };
            request_as(&client, method, path, content_type, body.clone(), agent).await;
        }
        wall.elapsed()
    });
    println!(
        "the run's {} writes replayed with no controller: {:.2} s; the simulation took {:.2} s, {:+.0}% over its API writes",
        writes.len(),
        replay.as_secs_f64(),
        simulated.as_secs_f64(),
        (simulated.as_secs_f64() / replay.as_secs_f64() - 1.0) * 100.0
    );
}
