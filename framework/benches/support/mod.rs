//! Shared by the framework's benchmarks: the process's memory, and an
//! in-process fake cluster with the examples' CRD and objects.
#![allow(dead_code)] // reason: each benchmark uses a part of it.

use fake_apiserver::{registry::rest::Target, FakeApiServer};
use serde_json::json;

const CRD: &str = include_str!("../../../examples/crd.yaml");

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Resident memory now, in KiB.
pub(crate) fn rss_kib() -> f64 {
    status_kib("VmRSS:")
}

/// Peak resident memory, in MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

/// Where KopfExamples of the default namespace are created.
pub(crate) fn examples(server: &FakeApiServer) -> Target {
    Target {
        kind: server
            .api()
            .resources
            .lookup("kopf.dev", "v1", "kopfexamples")
            .expect("the examples' CRD is loaded"),
        version: "v1".into(),
        namespace: "default".into(),
        name: String::new(),
    }
}

/// Creates `ex-00000`... in the default namespace.
pub(crate) fn create_examples(server: &FakeApiServer, n: usize) {
    let t = examples(server);
    for i in 0..n {
        let body = json!({"apiVersion": "kopf.dev/v1", "kind": "KopfExample",
                          "metadata": {"name": format!("ex-{i:05}")}, "spec": {"field": i}});
        server
            .api()
            .create(&t, body, false)
            .expect("an example object is created");
    }
}

/// A server keeping `history` events, its journal off, with the examples'
/// CRD and `n` example objects.
pub(crate) fn cluster(n: usize, history: usize) -> FakeApiServer {
    let server = FakeApiServer::builder()
        .history(history)
        .journal_limit(1)
        .build();
    server.journal().set_enabled(false);
    server
        .load_str(CRD, "crd")
        .expect("the examples' CRD loads");
    create_examples(&server, n);
    server
}
