//! Fuzz targets on stable Rust (issue 15), driven by proptest: body
//! decoding (JSON, YAML, protobuf), the patch engines (JSON, merge,
//! strategic merge, apply), label and field selectors, continue tokens and
//! query parameters, and whole HTTP requests against the in-process
//! service.
//!
//! Every input must end in a well-formed answer: an `Err` with a 4xx code
//! from the engines, or a response whose error body is a `Status` with the
//! response's code. No panic (the server's panic recovery would turn one
//! into a 500, so any 500 fails), and memory bounded: the process's peak
//! resident memory, all targets together, must stay under [`PEAK_MEMORY`]
//! after every case (a single bomb, such as the exponential JSON patch of
//! issue 15, goes far past it).
//!
//! Inputs come from grammars (the words and shapes these parsers expect,
//! recombined) mixed with raw bytes and mutations of valid samples, from a
//! fixed seed. `FUZZ_CASES` sets the cases per target (default 256, a few
//! seconds in all); the long run is documented in docs/BENCHMARKS.md.

use std::{
    cell::{Cell, RefCell},
    time::Duration,
};

use base64::Engine;
use bytes::Bytes;
use fake_apiserver::{
    endpoints::protobuf,
    registry::patch::{apply_json_patch, apply_merge_patch, apply_strategic_patch},
    storage::selector::{FieldSelector, LabelSelector},
    ApiError, FakeApiServer,
};
use http_body_util::{BodyExt, Full};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The most the test process may hold at its peak, every target running.
const PEAK_MEMORY: u64 = 1024 * 1024 * 1024;

// ---- memory ----

/// The process's peak resident memory so far (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---- the runner ----

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Runs `test` on `cases()` inputs of `strategy`, from a fixed seed per
/// target; prints how many ran.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl FnMut(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seed: [u8; 32] = *seed_of(name);
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let ran = Cell::new(0u64);
    let test = RefCell::new(test);
    let result = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        let outcome = (test.borrow_mut())(input);
        if let Some(peak) = peak_rss() {
            prop_assert!(
                peak < PEAK_MEMORY,
                "the process's memory peaked at {peak} bytes"
            );
        }
        outcome
    });
    println!(
        "fuzz target {name}: {} executions; process peak RSS {} MiB",
        ran.get(),
        peak_rss().unwrap_or_default() / (1024 * 1024)
    );
    if let Err(e) = result {
        panic!("fuzz target {name}: {e}");
    }
}

/// A 32-byte seed spelled from the target's name (fixed per target).
fn seed_of(name: &str) -> Box<[u8; 32]> {
    let mut seed = [0x5au8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] = seed[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    Box::new(seed)
}

/// An engine's error must be the client's fault (4xx), never the server's.
fn client_error(e: &ApiError) -> Result<(), TestCaseError> {
    prop_assert!(
        (400..500).contains(&e.code),
        "a {} ({}) from an engine: {}",
        e.code,
        e.reason,
        e.message
    );
    Ok(())
}

// ---- grammars ----

const WORDS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "status",
    "data",
    "kind",
    "apiVersion",
    "items",
    "replicas",
    "containers",
    "ports",
    "containerPort",
    "image",
    "env",
    "value",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generateName",
    "selector",
    "matchLabels",
    "template",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "op",
    "path",
    "from",
    "a",
    "b",
    "",
    "~1",
    "~0",
    "-",
    "0",
    "1",
    "x/y",
    "app",
    "deletionTimestamp",
    "managedFields",
    "creationTimestamp",
    "type",
    "stringData",
    "binaryData",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[a-z0-9./~$-]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        word().prop_map(Value::String),
        Just(json!("delete")),
        Just(json!("replace")),
        Just(json!("merge")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(word(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON patch made of plausible operations (and some implausible ones).
fn pointer() -> impl Strategy<Value = String> {
    proptest::collection::vec(word(), 0..5)
        .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect::<String>())
}

fn json_patch() -> impl Strategy<Value = Value> {
    let op = proptest::sample::select(
        &["add", "remove", "replace", "move", "copy", "test", "bogus"][..],
    );
    let operation = (op, pointer(), pointer(), value()).prop_map(
        |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
    );
    proptest::collection::vec(operation, 0..12).prop_map(Value::Array)
}

/// Bytes: raw, a serialized value, or a valid text cut or mutated.
fn bytes_like(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let samples = proptest::sample::select(valid);
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..256),
        3 => value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => value().prop_map(|v| serde_yaml::to_string(&v).unwrap().into_bytes()),
        3 => (samples.clone(), any::<proptest::sample::Index>())
            .prop_map(|(s, at)| s[..at.index(s.len() + 1)].to_vec()),
        3 => (samples, proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6))
            .prop_map(|(mut s, edits)| {
                for (at, byte) in edits {
                    if s.is_empty() {
                        s.push(byte);
                    } else {
                        let i = at.index(s.len());
                        s[i] = byte;
                    }
                }
                s
            }),
    ]
}

fn configmap() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "seed", "namespace": "default", "labels": {"app": "x"}},
           "data": {"a": "b"}})
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "finalizers": ["a/b"]},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx",
                                          "ports": [{"containerPort": 80}],
                                          "env": [{"name": "A", "value": "1"}]}]}}}})
}

// ---- the in-process service ----

struct Service {
    server: FakeApiServer,
    rt: tokio::runtime::Runtime,
    /// How many answers of each code (printed, to see what was reached).
    codes: RefCell<std::collections::BTreeMap<u16, usize>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        println!("answers by code: {:?}", self.codes.borrow());
    }
}

impl Service {
    /// A server with a ConfigMap, a Deployment and a custom resource.
    fn new() -> Service {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let server = FakeApiServer::new();
        server
            .load_str(
                r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}, scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: default}
spec: {replicas: 1}
"#,
                "fuzz seed",
            )
            .unwrap();
        let service = Service {
            server,
            rt,
            codes: RefCell::default(),
        };
        for (uri, body) in [
            ("/api/v1/namespaces/default/configmaps", configmap()),
            ("/apis/apps/v1/namespaces/default/deployments", deployment()),
        ] {
            let (code, _) = service.send(
                "POST",
                uri,
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            );
            assert_eq!(code, 201);
        }
        service
    }

    /// Puts the sample ConfigMap and Deployment back as they were.
    fn reset(&self) {
        for (uri, body) in [
            ("/api/v1/namespaces/default/configmaps/seed", configmap()),
            (
                "/apis/apps/v1/namespaces/default/deployments/web",
                deployment(),
            ),
        ] {
            // Finalizers first (the Deployment has one), so the delete is whole.
            self.send(
                "PATCH",
                uri,
                &[("content-type", "application/merge-patch+json")],
                br#"{"metadata":{"finalizers":null}}"#.to_vec(),
            );
            self.send("DELETE", uri, &[], Vec::new());
            let collection = &uri[..uri.rfind('/').unwrap_or_default()];
            self.send(
                "POST",
                collection,
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            );
        }
    }

    /// One request; the code and the body (a watch's for a virtual moment).
    fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Bytes) {
        self.rt.block_on(async {
            let mut req = http::Request::builder().method(method).uri(uri);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .expect("a well-formed request");
            let resp = self.server.service().oneshot(req).await.expect("an answer");
            let code = resp.status().as_u16();
            // Watches stream: read what comes within a few virtual seconds.
            let mut body = resp.into_body();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        out.extend_from_slice(data);
                    }
                }
            })
            .await;
            (code, Bytes::from(out))
        })
    }

    /// Sends, and checks the answer: no 500, and an error is a `Status`
    /// of the same code.
    fn check(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<u16, TestCaseError> {
        let (code, bytes) = self.send(method, uri, headers, body);
        *self.codes.borrow_mut().entry(code).or_default() += 1;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
        // The one 500 kube-apiserver gives for a client's input: an object
        // grown past etcd's limit (patches here accumulate on the samples).
        let too_large = code == 500 && text.contains("etcdserver: request is too large");
        prop_assert!(
            (code != 500 || too_large) && code < 600,
            "{method} {uri}: {code} {text}"
        );
        if code >= 400 && method != "HEAD" {
            let status: Value = serde_json::from_slice(&bytes).map_err(|e| {
                TestCaseError::fail(format!(
                    "{method} {uri}: {code} with a body that is no JSON ({e}): {text}"
                ))
            })?;
            prop_assert_eq!(&status["kind"], "Status", "{} {}: {}", method, uri, text);
            prop_assert_eq!(
                status["code"].as_u64(),
                Some(u64::from(code)),
                "{} {}: {}",
                method,
                uri,
                text
            );
        }
        Ok(code)
    }
}

/// A length-delimited protobuf field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
    out
}

/// ConfigMap `seed` with `a: b`, as kubectl sends it: the `k8s\0` envelope
/// (runtime.Unknown: typeMeta, raw) around the typed message.
fn protobuf_configmap() -> Vec<u8> {
    let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
    let meta = field(1, b"seed");
    let entry = [field(1, b"a"), field(2, b"b")].concat();
    let configmap = [field(1, &meta), field(2, &entry)].concat();
    let unknown = [field(1, &type_meta), field(2, &configmap)].concat();
    [b"k8s\0".to_vec(), unknown].concat()
}

// ---- targets ----

#[test]
fn fuzz_body_decoding() {
    let service = Service::new();
    let proto = protobuf_configmap();
    assert_eq!(
        protobuf::decode(&proto).unwrap()["metadata"]["name"],
        "seed",
        "a valid protobuf sample"
    );
    let samples = vec![
        serde_json::to_vec(&configmap()).unwrap(),
        serde_yaml::to_string(&deployment()).unwrap().into_bytes(),
        b"{a: [1, {b: c}], d: &x e, f: *x}".to_vec(),
        proto,
    ];
    let types = proptest::sample::select(
        &[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ][..],
    );
    fuzz(
        "body decoding",
        (bytes_like(samples), types),
        |(body, ct)| {
            // The decoders alone: errors, never panics.
            let _ = fake_apiserver::apimachinery::yaml::from_slice(&body);
            if let Err(e) = protobuf::decode(&body) {
                client_error(&e)?;
            }
            // And as a create and an update of each kind.
            for uri in [
                "/api/v1/namespaces/default/configmaps",
                "/apis/apps/v1/namespaces/default/deployments",
                "/apis/example.com/v1/namespaces/default/widgets",
            ] {
                service.check("POST", uri, &[("content-type", ct)], body.clone())?;
            }
            service.check(
                "PUT",
                "/api/v1/namespaces/default/configmaps/seed",
                &[("content-type", ct)],
                body,
            )?;
            Ok(())
        },
    );
}

#[test]
fn fuzz_patch_engines() {
    let service = Service::new();
    let docs = prop_oneof![Just(configmap()), Just(deployment()), value()];
    let patches = prop_oneof![
        json_patch().prop_map(|p| serde_json::to_vec(&p).unwrap()),
        bytes_like(vec![
            br#"{"metadata":{"labels":{"a":null}},"spec":{"replicas":3}}"#.to_vec(),
            br#"{"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"}]}}}}"#
                .to_vec(),
            br#"[{"op":"copy","from":"/spec","path":"/spec/x"}]"#.to_vec(),
        ]),
    ];
    let cases = Cell::new(0u32);
    fuzz("patch engines", (docs, patches), |(doc, patch)| {
        // Patches pile up on the samples (up to etcd's limit, which is
        // worth reaching); every 500 cases they start again from scratch.
        cases.set(cases.get() + 1);
        if cases.get().is_multiple_of(500) {
            service.reset();
        }
        for result in [
            apply_json_patch(&doc, &patch),
            apply_merge_patch(&doc, &patch),
            apply_strategic_patch(&doc, &patch),
        ] {
            if let Err(e) = result {
                client_error(&e)?;
            }
        }
        for (ct, uri) in [
            (
                "application/json-patch+json",
                "/api/v1/namespaces/default/configmaps/seed",
            ),
            (
                "application/merge-patch+json",
                "/apis/apps/v1/namespaces/default/deployments/web",
            ),
            (
                "application/strategic-merge-patch+json",
                "/apis/apps/v1/namespaces/default/deployments/web",
            ),
            (
                "application/apply-patch+yaml",
                "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=fuzz",
            ),
            (
                "application/apply-patch+yaml",
                "/apis/example.com/v1/namespaces/default/widgets/w?fieldManager=fuzz&force=true",
            ),
            (
                "application/merge-patch+json",
                "/apis/example.com/v1/namespaces/default/widgets/w/status",
            ),
        ] {
            service.check("PATCH", uri, &[("content-type", ct)], patch.clone())?;
        }
        Ok(())
    });
}

#[test]
fn fuzz_selectors() {
    let service = Service::new();
    let token = prop_oneof![
        "[a-z0-9./_-]{0,10}",
        proptest::sample::select(
            &[
                "=",
                "==",
                "!=",
                " in ",
                " notin ",
                "(",
                ")",
                ",",
                "!",
                " ",
                "metadata.name",
                "metadata.namespace",
                "status.phase",
                "spec.nodeName",
                "app",
                "x"
            ][..]
        )
        .prop_map(str::to_string),
        any::<char>().prop_map(String::from),
    ];
    let selector = proptest::collection::vec(token, 0..12).prop_map(|t| t.concat());
    fuzz("selectors", selector, |s| {
        let stored = fake_apiserver::storage::object::Stored::loose(&configmap());
        if let Ok(l) = LabelSelector::parse(&s) {
            let _ = l.matches_stored(&stored);
        } else if let Err(e) = LabelSelector::parse(&s) {
            client_error(&e)?;
        }
        match FieldSelector::parse(&s, &["metadata.name", "metadata.namespace"]) {
            Ok(f) => {
                let _ = f.matches_stored(&stored);
            }
            Err(e) => client_error(&e)?,
        }
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("labelSelector", &s)
            .finish();
        service.check("GET", &format!("/api/v1/pods?{q}"), &[], Vec::new())?;
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("fieldSelector", &s)
            .append_pair("watch", "true")
            .append_pair("timeoutSeconds", "1")
            .finish();
        service.check(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?{q}"),
            &[],
            Vec::new(),
        )?;
        Ok(())
    });
}

const PARAMS: &[&str] = &[
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "watch",
    "timeoutSeconds",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "labelSelector",
    "fieldSelector",
    "pretty",
    "dryRun",
    "fieldManager",
    "fieldValidation",
    "force",
    "propagationPolicy",
    "gracePeriodSeconds",
    "orphanDependents",
    "includeObject",
    "as",
    "bogus",
];

fn param_value() -> impl Strategy<Value = String> {
    let token = (any::<u64>(), "[a-z/.-]{0,10}").prop_map(|(rv, start)| {
        base64::engine::general_purpose::URL_SAFE
            .encode(json!({"v": "meta.k8s.io/v1", "rv": rv % 1000, "start": start}).to_string())
    });
    prop_oneof![
        proptest::sample::select(
            &[
                "",
                "0",
                "1",
                "-1",
                "500",
                "true",
                "false",
                "All",
                "Exact",
                "NotOlderThan",
                "Foreground",
                "Orphan",
                "Background",
                "Strict",
                "Warn",
                "Ignore",
                "18446744073709551616",
                "9999999999"
            ][..]
        )
        .prop_map(str::to_string),
        token,
        any::<u32>().prop_map(|n| n.to_string()),
        any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

#[test]
fn fuzz_query_and_continue_tokens() {
    let service = Service::new();
    let pairs = proptest::collection::vec((proptest::sample::select(PARAMS), param_value()), 0..6);
    let method = proptest::sample::select(&["GET", "GET", "DELETE", "PATCH", "POST"][..]);
    fuzz("query parameters", (pairs, method), |(pairs, method)| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        let q = q.finish();
        let json = [("content-type", "application/merge-patch+json")];
        let uri = match method {
            "GET" | "POST" => format!("/api/v1/namespaces/default/configmaps?{q}"),
            _ => format!("/api/v1/namespaces/default/configmaps/seed?{q}"),
        };
        let body = match method {
            "POST" => serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "q-"}})).unwrap(),
            "PATCH" => br#"{"data":{"q":"1"}}"#.to_vec(),
            _ => Vec::new(),
        };
        let headers: &[(&str, &str)] = if method == "POST" {
            &[("content-type", "application/json")]
        } else {
            &json
        };
        service.check(method, &uri, headers, body)?;
        if method == "DELETE" {
            // Put the sample back for the next case.
            service.send(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                &[("content-type", "application/json")],
                configmap().to_string().into_bytes(),
            );
        }
        Ok(())
    });
}

const SEGMENTS: &[&str] = &[
    "api",
    "apis",
    "v1",
    "apps",
    "example.com",
    "namespaces",
    "default",
    "kube-system",
    "configmaps",
    "secrets",
    "pods",
    "services",
    "deployments",
    "widgets",
    "events",
    "serviceaccounts",
    "token",
    "binding",
    "eviction",
    "scale",
    "status",
    "seed",
    "web",
    "w",
    "customresourcedefinitions",
    "apiextensions.k8s.io",
    "authorization.k8s.io",
    "selfsubjectaccessreviews",
    "version",
    "openapi",
    "v2",
    "v3",
    "healthz",
    "readyz",
    "",
    "..",
    "%2F",
    "a b",
    "*",
];

#[test]
fn fuzz_whole_requests() {
    let service = Service::new();
    // Mostly the shape of real resource paths, sometimes anything.
    let served = proptest::sample::select(
        &[
            ("/api/v1", "configmaps"),
            ("/api/v1", "pods"),
            ("/api/v1", "secrets"),
            ("/api/v1", "services"),
            ("/api/v1", "namespaces"),
            ("/api/v1", "serviceaccounts"),
            ("/api/v1", "events"),
            ("/api/v1", "nodes"),
            ("/apis/apps/v1", "deployments"),
            ("/apis/apps/v1", "replicasets"),
            ("/apis/example.com/v1", "widgets"),
            ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions"),
            ("/apis/authorization.k8s.io/v1", "selfsubjectaccessreviews"),
            ("/apis/coordination.k8s.io/v1", "leases"),
            ("/api/v1", "x"),
            ("/apis/apps/v1", "pods"),
        ][..],
    );
    let namespace = proptest::option::weighted(
        0.7,
        proptest::sample::select(&["default", "default", "kube-system", "nope", ""][..]),
    );
    let name = proptest::option::weighted(
        0.6,
        proptest::sample::select(
            &[
                "seed",
                "web",
                "w",
                "default",
                "widgets.example.com",
                "missing",
                "a.b",
                "UPPER",
            ][..],
        ),
    );
    let sub = proptest::option::weighted(
        0.3,
        proptest::sample::select(
            &[
                "status", "scale", "binding", "eviction", "token", "log", "x",
            ][..],
        ),
    );
    let shaped = (served, namespace, name, sub).prop_map(|((prefix, resource), ns, name, sub)| {
        let mut path = prefix.to_string();
        if let Some(ns) = ns {
            path.push_str(&format!("/namespaces/{ns}"));
        }
        path.push_str(&format!("/{resource}"));
        if let Some(name) = name {
            path.push_str(&format!("/{name}"));
            if let Some(sub) = sub {
                path.push_str(&format!("/{sub}"));
            }
        }
        path
    });
    let anything = proptest::collection::vec(
        prop_oneof![4 => proptest::sample::select(SEGMENTS).prop_map(str::to_string), 1 => "[a-z0-9.%-]{0,8}"],
        0..8,
    )
    .prop_map(|segments| format!("/{}", segments.join("/")));
    let path = prop_oneof![3 => shaped, 1 => anything];
    let method = proptest::sample::select(
        &[
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
        ][..],
    );
    let content_type = proptest::sample::select(
        &[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
            "text/plain",
            "application/json; charset=utf-16",
            "",
        ][..],
    );
    let accept = proptest::sample::select(
        &[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/json;as=Table;g=meta.k8s.io;v=v1",
            "application/xml",
            "*/*",
            "",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        ][..],
    );
    let body = bytes_like(vec![
        serde_json::to_vec(&configmap()).unwrap(),
        serde_json::to_vec(&deployment()).unwrap(),
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#.to_vec(),
        br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"x"}}"#.to_vec(),
    ]);
    fuzz(
        "whole requests",
        (method, path, content_type, accept, body),
        |(method, path, ct, accept, body)| {
            let mut headers = Vec::new();
            if !ct.is_empty() {
                headers.push(("content-type", ct));
            }
            if !accept.is_empty() {
                headers.push(("accept", accept));
            }
            // A path the HTTP layer itself refuses is not the server's to answer.
            if http::Uri::try_from(path.as_str()).is_err() {
                return Ok(());
            }
            service.check(method, &path, &headers, body)?;
            Ok(())
        },
    );
}
