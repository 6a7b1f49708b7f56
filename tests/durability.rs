//! `fake-apiserver --data-dir` (issue 15): killed with SIGKILL in the middle
//! of a load of creates, patches and deletes, three times over, the
//! restarted server still holds every write it acknowledged, with the same
//! uid and resourceVersion; and a watch from before a restart gets 410.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use support::Standalone;

/// What the server acknowledged last for one object.
#[derive(Clone, Debug, PartialEq)]
enum Acked {
    Present {
        uid: String,
        rv: u64,
        value: String,
    },
    /// Present as acknowledged, with its deletion sent: either outcome.
    Deleting {
        uid: String,
        rv: u64,
        value: String,
    },
    Deleted,
}

type Ledger = Arc<Mutex<BTreeMap<String, Acked>>>;

fn client(server: &Standalone) -> kube::Client {
    let config = kube::Config::new(server.url.parse().expect("the server's URL"));
    kube::Client::try_from(config).expect("a client")
}

/// Every ConfigMap in `default` by name, and the list's resourceVersion.
async fn listed_by_name(api: &Api<ConfigMap>) -> (BTreeMap<String, ConfigMap>, u64) {
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion");
    let by_name = list
        .items
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().unwrap(), cm))
        .collect();
    (by_name, rv)
}

fn rv_of(cm: &ConfigMap) -> u64 {
    cm.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion")
}

/// One writer: creates its objects, patches each twice, deletes every
/// third; records each acknowledged answer; stops at the first error (the
/// server is gone).
async fn writer(
    api: Api<ConfigMap>,
    round: usize,
    id: usize,
    ledger: Ledger,
    acks: Arc<AtomicUsize>,
) {
    for i in 0.. {
        let name = format!("r{round}-w{id}-{i}");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.clone());
        cm.data = Some([("v".to_string(), "0".to_string())].into());
        let Ok(made) = api.create(&PostParams::default(), &cm).await else {
            return;
        };
        let uid = made.metadata.uid.clone().expect("a uid");
        let record = |acked: Acked| {
            ledger.lock().unwrap().insert(name.clone(), acked);
            acks.fetch_add(1, Ordering::SeqCst);
        };
        record(Acked::Present {
            uid: uid.clone(),
            rv: rv_of(&made),
            value: "0".into(),
        });
        for v in ["1", "2"] {
            let patch = serde_json::json!({"data": {"v": v}});
            let Ok(patched) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            else {
                return;
            };
            record(Acked::Present {
                uid: uid.clone(),
                rv: rv_of(&patched),
                value: v.into(),
            });
        }
        if i % 3 == 0 {
            {
                let mut entries = ledger.lock().unwrap();
                if let Some(Acked::Present { uid, rv, value }) = entries.remove(&name) {
                    entries.insert(name.clone(), Acked::Deleting { uid, rv, value });
                }
            }
            if api.delete(&name, &DeleteParams::default()).await.is_err() {
                return;
            }
            record(Acked::Deleted);
        }
    }
}

/// Every acknowledged write is there: a deleted object is gone; a present
/// one has its uid, and either the acknowledged version or a later one (a
/// write that reached the disk but whose answer was cut off by the kill).
fn check(ledger: &BTreeMap<String, Acked>, stored: &BTreeMap<String, ConfigMap>) {
    for (name, acked) in ledger {
        match (acked, stored.get(name)) {
            (Acked::Deleted, None) => {}
            (Acked::Deleted, Some(cm)) => {
                panic!("{name} was deleted (acknowledged) but is back: {cm:?}")
            }
            (Acked::Present { .. }, None) => panic!("{name} was acknowledged but is lost"),
            (Acked::Deleting { .. }, None) => {}
            (Acked::Present { uid, rv, value } | Acked::Deleting { uid, rv, value }, Some(cm)) => {
                assert_eq!(
                    cm.metadata.uid.as_deref(),
                    Some(uid.as_str()),
                    "{name}: uid"
                );
                let now = rv_of(cm);
                assert!(
                    now >= *rv,
                    "{name}: acknowledged at rv {rv}, restored at {now}"
                );
                if now == *rv {
                    let data = cm.data.as_ref().and_then(|d| d.get("v"));
                    assert_eq!(data, Some(value), "{name} at rv {rv}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_should_survive_kill_9_at_any_moment() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let args = ["--data-dir", dir.as_str(), "--controllers="];
    let ledger: Ledger = Arc::default();
    let mut last_rv = 0;
    // Kill points, in acknowledged writes: early, mid-load, and later.
    for (round, kill_after) in [37usize, 211, 503].into_iter().enumerate() {
        let mut server = Standalone::start(&args);
        let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
        // What earlier rounds acknowledged is all there after the restart.
        let (stored, listed) = listed_by_name(&api).await;
        check(&ledger.lock().unwrap(), &stored);
        // The store resumed at its resourceVersion, not from zero.
        assert!(
            listed >= last_rv,
            "round {round}: resumed at {listed}, had acknowledged {last_rv}"
        );
        let acks = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|id| tokio::spawn(writer(api.clone(), round, id, ledger.clone(), acks.clone())))
            .collect();
        while acks.load(Ordering::SeqCst) < kill_after {
            tokio::task::yield_now().await;
        }
        server.kill();
        for w in writers {
            w.await.unwrap();
        }
        last_rv = ledger
            .lock()
            .unwrap()
            .values()
            .filter_map(|a| match a {
                Acked::Present { rv, .. } | Acked::Deleting { rv, .. } => Some(*rv),
                Acked::Deleted => None,
            })
            .max()
            .unwrap_or(last_rv);
    }
    let server = Standalone::start(&args);
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let (stored, _) = listed_by_name(&api).await;
    let ledger = ledger.lock().unwrap().clone();
    assert!(ledger.len() > 100, "the load made {} objects", ledger.len());
    check(&ledger, &stored);
}

#[test]
fn a_restarted_server_should_keep_kinds_tokens_and_refuse_old_resume_points() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    // Over TLS, where kubectl sends bearer tokens.
    let args = ["--data-dir", dir.as_str(), "--controllers=", "--tls"];
    let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
      "metadata":{"name":"widgets.example.com"},
      "spec":{"group":"example.com","scope":"Namespaced",
        "names":{"plural":"widgets","singular":"widget","kind":"Widget"},
        "versions":[{"name":"v1","served":true,"storage":true,
          "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;
    let widget = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":3}}"#;
    let (rv, token) = {
        let mut server = Standalone::start(&args);
        let files = tempfile::tempdir().unwrap();
        for (name, text) in [("crd.json", crd), ("widget.json", widget)] {
            let path = files.path().join(name);
            std::fs::write(&path, text).unwrap();
            let (ok, _, err) = server.kubectl(&["create", "-f", path.to_str().unwrap()]);
            assert!(ok, "{err}");
        }
        let (ok, _, err) = server.kubectl(&["create", "serviceaccount", "robot"]);
        assert!(ok, "{err}");
        let (ok, token, err) = server.kubectl(&["create", "token", "robot"]);
        assert!(ok, "{err}");
        let (ok, rv, err) = server.kubectl(&[
            "get",
            "widget",
            "w",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]);
        assert!(ok, "{err}");
        server.kill();
        (rv, token.trim().to_string())
    };
    let server = Standalone::start(&args);
    // The custom resource is served again, at its resourceVersion.
    let (ok, out, err) = server.kubectl(&[
        "get",
        "widget",
        "w",
        "-o",
        "jsonpath={.metadata.resourceVersion} {.spec.size}",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("{rv} 3"));
    // The ServiceAccount's token is still valid (the signing key is kept).
    let (ok, out, err) = server.kubectl(&[
        "auth",
        "whoami",
        "--token",
        &token,
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "system:serviceaccount:default:robot");
    // A watch from before the restart is told to relist (410 Expired).
    let (ok, out, err) = server.kubectl(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets?watch=true&resourceVersion=1&timeoutSeconds=1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(r#""code":410"#) && out.contains(r#""reason":"Expired""#),
        "{out}"
    );
    // A second server on the same directory is refused.
    let out = std::process::Command::new(support::binary())
        .args(["--port", "0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the data directory is in use by another fake-apiserver"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
