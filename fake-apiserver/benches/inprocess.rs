//! In-process benchmarks through `kube::Api` on a current-thread runtime:
//! start-up, create, GET, merge patch, LIST of 100 / 2,000 / 10,000 objects,
//! watch fan-out to 100 watchers, and what the journal and authorization
//! add to a request.
//!
//! Run: `cargo bench -p fake-apiserver --bench inprocess`

use std::{collections::BTreeMap, time::Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(BTreeMap::from([("app".into(), "bench".into())]));
    cm.data = Some(BTreeMap::from([("key".into(), "value".repeat(20))]));
    cm
}

async fn filled(n: usize) -> (FakeApiServer, Api<ConfigMap>) {
    filled_on(FakeApiServer::new(), n).await
}

async fn filled_on(server: FakeApiServer, n: usize) -> (FakeApiServer, Api<ConfigMap>) {
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..n {
        api.create(&PostParams::default(), &cm(&format!("cm-{i:05}")))
            .await
            .unwrap();
    }
    (server, api)
}

fn startup(c: &mut Criterion) {
    c.bench_function("startup/in-process server ready", |b| {
        b.iter(FakeApiServer::new)
    });
}

fn crud(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("kube::Api<ConfigMap>");
    group.throughput(Throughput::Elements(1));
    let (_server, api) = rt.block_on(filled(1));
    group.bench_function("get", |b| {
        b.to_async(&rt)
            .iter(|| async { api.get("cm-00000").await.unwrap() })
    });
    let mut n = 0u64;
    group.bench_function("create", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let obj = cm(&format!("new-{n}"));
            let api = api.clone();
            async move { api.create(&PostParams::default(), &obj).await.unwrap() }
        })
    });
    let mut v = 0u64;
    group.bench_function("merge patch", |b| {
        b.to_async(&rt).iter(|| {
            v += 1;
            let patch = json!({"data": {"n": v.to_string()}});
            let api = api.clone();
            async move {
                api.patch("cm-00000", &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .unwrap()
            }
        })
    });
    group.finish();
}

fn list(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("kube::Api<ConfigMap> list");
    for n in [100usize, 2_000, 10_000] {
        let (_server, api) = rt.block_on(filled(n));
        group.throughput(Throughput::Elements(1));
        if n >= 2_000 {
            group.sample_size(20);
        }
        group.bench_function(format!("list of {n}"), |b| {
            b.to_async(&rt)
                .iter(|| async { api.list(&ListParams::default()).await.unwrap() })
        });
    }
    group.finish();
}

/// Events delivered per second to 100 watchers: each writes is serialized
/// once and its bytes shared; every watcher decodes every event with kube.
fn watch_fanout(c: &mut Criterion) {
    const WATCHERS: usize = 100;
    const WRITES: usize = 200;
    let rt = runtime();
    let mut group = c.benchmark_group("watch fan-out");
    group.sample_size(10);
    group.throughput(Throughput::Elements((WATCHERS * WRITES) as u64));
    group.bench_function("100 kube watchers x 200 writes (deliveries)", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (_server, api) = filled(1).await;
                let rv = api
                    .get("cm-00000")
                    .await
                    .unwrap()
                    .metadata
                    .resource_version
                    .unwrap();
                let mut tasks = Vec::new();
                for _ in 0..WATCHERS {
                    let stream = api.watch(&WatchParams::default(), &rv).await.unwrap();
                    tasks.push(tokio::spawn(async move {
                        let mut stream = stream.boxed();
                        let mut seen = 0;
                        while let Some(ev) = stream.try_next().await.unwrap() {
                            if matches!(ev, WatchEvent::Modified(_)) {
                                seen += 1;
                                if seen == WRITES {
                                    break;
                                }
                            }
                        }
                    }));
                }
                let start = Instant::now();
                for i in 0..WRITES {
                    let patch = json!({"data": {"n": i.to_string()}});
                    api.patch("cm-00000", &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .unwrap();
                }
                for t in tasks {
                    t.await.unwrap();
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function(
        "100 raw watchers x 200 writes (deliveries, server side)",
        |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let (server, api) = filled(1).await;
                    let core = server.api().clone();
                    let t = fake_apiserver::registry::rest::Target {
                        kind: core.resources.lookup("", "v1", "configmaps").unwrap(),
                        version: "v1".into(),
                        namespace: "default".into(),
                        name: String::new(),
                    };
                    let rv = core.store.current_rv().to_string();
                    let opts = fake_apiserver::registry::rest::ListOptions {
                        resource_version: Some(rv),
                        ..Default::default()
                    };
                    let mut tasks = Vec::new();
                    for _ in 0..WATCHERS {
                        let mut rx = core.watch(&t, &opts).unwrap();
                        tasks.push(tokio::spawn(async move {
                            let mut seen = 0;
                            while let Some(line) = rx.recv().await {
                                seen += usize::from(!line.is_empty());
                                if seen == WRITES {
                                    break;
                                }
                            }
                        }));
                    }
                    let start = Instant::now();
                    for i in 0..WRITES {
                        let patch = json!({"data": {"n": i.to_string()}});
                        api.patch("cm-00000", &PatchParams::default(), &Patch::Merge(patch))
                            .await
                            .unwrap();
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        },
    );
    group.finish();
}

/// What the journal and the fault-rule check cost per request: GET and
/// merge patch with the journal off, on, and on with an installed rule that
/// never matches.
fn journal_overhead(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("journal overhead");
    group.throughput(Throughput::Elements(1));
    for (label, journal, limit, rule) in [
        ("journal off", false, 1, false),
        (
            "journal on",
            true,
            fake_apiserver::testing::journal::DEFAULT_LIMIT,
            false,
        ),
        ("journal on (limit 100000)", true, 100_000, false),
        (
            "journal on + 1 rule",
            true,
            fake_apiserver::testing::journal::DEFAULT_LIMIT,
            true,
        ),
    ] {
        let server = FakeApiServer::builder().journal_limit(limit).build();
        let (server, api) = rt.block_on(filled_on(server, 1));
        server.journal().set_enabled(journal);
        if rule {
            server
                .injector()
                .add_fault(fake_apiserver::testing::faults::FaultRule::new(
                    &["delete"],
                    "secrets",
                    fake_apiserver::testing::faults::FaultAction::DropBefore,
                ));
        }
        group.bench_function(format!("get, {label}"), |b| {
            b.to_async(&rt)
                .iter(|| async { api.get("cm-00000").await.unwrap() })
        });
        let mut v = 0u64;
        group.bench_function(format!("merge patch, {label}"), |b| {
            b.to_async(&rt).iter(|| {
                v += 1;
                let patch = json!({"data": {"n": v.to_string()}});
                let api = api.clone();
                async move {
                    api.patch("cm-00000", &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .unwrap()
                }
            })
        });
        server.journal().clear();
    }
    group.finish();
}

/// What authorization costs per request: GET and merge patch under
/// AlwaysAllow (the in-process default), and under RBAC as the
/// administrator and as a ServiceAccount whose grant is one RoleBinding
/// among 500 Roles and 500 RoleBindings.
fn rbac_overhead(c: &mut Criterion) {
    use fake_apiserver::auth::{gate::Mode, UserInfo};
    let rt = runtime();
    let mut group = c.benchmark_group("authorization");
    group.throughput(Throughput::Elements(1));
    for (label, mode, as_account) in [
        ("AlwaysAllow", Mode::AlwaysAllow, false),
        ("RBAC, administrator", Mode::Rbac, false),
        (
            "RBAC, ServiceAccount, 500 roles + 500 bindings",
            Mode::Rbac,
            true,
        ),
    ] {
        let _runtime = rt.enter();
        let server = FakeApiServer::builder().authorization(mode).build();
        let mut manifest: String = (0..50)
            .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{n}}}\n---\n"))
            .collect();
        for i in 0..500 {
            manifest.push_str(&format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: role-{i}, namespace: ns-{}}}\nrules: [{{apiGroups: [''], resources: [configmaps, secrets], verbs: [get, list]}}]\n---\n\
                 apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: binding-{i}, namespace: ns-{}}}\n\
                 roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-{i}}}\nsubjects: [{{kind: ServiceAccount, name: sa-{i}, namespace: ns-{}}}]\n---\n",
                i % 50, i % 50, i % 50
            ));
        }
        manifest.push_str(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: cm-writer, namespace: default}\n\
             rules: [{apiGroups: [''], resources: [configmaps], verbs: [get, create, patch]}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: op, namespace: default}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-writer}\nsubjects: [{kind: ServiceAccount, name: op, namespace: ops}]\n",
        );
        server.load_str(&manifest, "bench").unwrap();
        let client = if as_account {
            server.client_with_token(&server.token_for(UserInfo {
                username: "system:serviceaccount:ops:op".into(),
                uid: String::new(),
                groups: fake_apiserver::auth::authn::service_account_groups("ops"),
                extra: Default::default(),
            }))
        } else {
            server.client()
        };
        let api: Api<ConfigMap> = Api::default_namespaced(client);
        rt.block_on(api.create(&PostParams::default(), &cm("cm-00000")))
            .unwrap();
        server.journal().set_enabled(false);
        if as_account {
            // The decision alone, without the request around it.
            // Nothing changes while it runs: the index is built once.
            let rbac = fake_apiserver::auth::rbac::Rbac::new(
                server.api().clone(),
                fake_apiserver::auth::aggregation::Changes::default(),
            );
            let user = UserInfo {
                username: "system:serviceaccount:ops:op".into(),
                uid: String::new(),
                groups: fake_apiserver::auth::authn::service_account_groups("ops"),
                extra: Default::default(),
            };
            let attrs = fake_apiserver::auth::Attributes {
                verb: "get".into(),
                resource: "configmaps".into(),
                namespace: "default".into(),
                name: "cm-00000".into(),
                ..Default::default()
            };
            group.bench_function("one RBAC decision, 500 roles + 500 bindings", |b| {
                b.iter(|| {
                    use fake_apiserver::auth::Authorizer;
                    assert!(rbac.authorize(&user, &attrs).allowed)
                })
            });
        }
        group.bench_function(format!("get, {label}"), |b| {
            b.to_async(&rt)
                .iter(|| async { api.get("cm-00000").await.unwrap() })
        });
        let mut v = 0u64;
        group.bench_function(format!("merge patch, {label}"), |b| {
            b.to_async(&rt).iter(|| {
                v += 1;
                let patch = json!({"data": {"n": v.to_string()}});
                let api = api.clone();
                async move {
                    api.patch("cm-00000", &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .unwrap()
                }
            })
        });
    }
    group.finish();
}

/// A Deployment with three containers, each with a few env vars.
fn deployment() -> serde_json::Value {
    let containers: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            json!({"name": format!("c{i}"), "image": "nginx:1",
                   "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                   "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}]})
        })
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": containers}}}})
}

fn patches(c: &mut Criterion) {
    use k8s_openapi::api::apps::v1::Deployment;
    let rt = runtime();
    let _inside = rt.enter();
    let server = FakeApiServer::new();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    rt.block_on(async {
        let d: Deployment = serde_json::from_value(deployment()).unwrap();
        api.create(&PostParams::default(), &d).await.unwrap();
    });
    let mut group = c.benchmark_group("kube::Api<Deployment> patches");
    group.throughput(Throughput::Elements(1));
    let mut v = 0u64;
    group.bench_function("strategic merge patch (one container's image and env, merged by name)", |b| {
        b.to_async(&rt).iter(|| {
            v += 1;
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "c1", "image": format!("nginx:{v}"), "env": [{"name": "B", "value": v.to_string()}]}]}}}});
            let api = api.clone();
            async move {
                api.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .unwrap()
            }
        })
    });
    let mut w = 0u64;
    group.bench_function("client-side apply (strategic merge with last-applied-configuration)", |b| {
        b.to_async(&rt).iter(|| {
            w += 1;
            let mut applied = deployment();
            applied["spec"]["replicas"] = json!(1 + w % 3);
            let mut patch = json!({"spec": {"replicas": 1 + w % 3},
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()}}});
            patch["spec"]["template"] = applied["spec"]["template"].clone();
            let api = api.clone();
            async move {
                api.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .unwrap()
            }
        })
    });
    let mut x = 0u64;
    group.bench_function(
        "server-side apply (the whole Deployment, one field manager)",
        |b| {
            b.to_async(&rt).iter(|| {
                x += 1;
                let mut applied = deployment();
                applied["spec"]["replicas"] = json!(1 + x % 3);
                let api = api.clone();
                async move {
                    api.patch(
                        "web",
                        &PatchParams::apply("bench").force(),
                        &Patch::Apply(applied),
                    )
                    .await
                    .unwrap()
                }
            })
        },
    );
    group.finish();
}

fn namespace_deletion(c: &mut Criterion) {
    use k8s_openapi::api::core::v1::Namespace;
    let rt = runtime();
    let mut group = c.benchmark_group("namespace deletion");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("a namespace of 10,000 ConfigMaps, until it is gone", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let server = FakeApiServer::builder().history(30_000).build();
                server
                    .load_str(
                        "apiVersion: v1\nkind: Namespace\nmetadata: {name: doomed}\n",
                        "ns",
                    )
                    .unwrap();
                let api = server.api().clone();
                let kind = api.resources.lookup("", "v1", "configmaps").unwrap();
                let t = fake_apiserver::registry::rest::Target {
                    kind,
                    version: "v1".into(),
                    namespace: "doomed".into(),
                    name: String::new(),
                };
                for i in 0..10_000 {
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i:05}")}, "data": {"k": "v"}});
                    api.create(&t, body, false).unwrap();
                }
                server
            },
            |server| async move {
                let namespaces: Api<Namespace> = Api::all(server.client());
                namespaces
                    .delete("doomed", &Default::default())
                    .await
                    .unwrap();
                assert!(namespaces.get_opt("doomed").await.unwrap().is_none());
                server
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    startup,
    crud,
    list,
    watch_fanout,
    journal_overhead,
    rbac_overhead,
    patches,
    namespace_deletion
);
criterion_main!(benches);
