//! The real `kubectl` against the standalone `fake-apiserver` binary.
//!
//! Covered here (part 1): apply of a CRD and a custom resource, `wait
//! --for=condition=established`, `get` by plural and short name, `-o yaml`,
//! `-o jsonpath`, `label`, `annotate`, `patch --type merge` and `--type
//! json`, `delete --wait` held by a finalizer, `get -w` seeing a change,
//! client-side `apply` of a built-in removing a field on the second apply,
//! `replace -f`, `api-resources` and `api-versions`.
//!
//! Part 2: `get` as Tables (built-in columns for pods, namespaces, events;
//! CRD printer columns; `-o wide`; `--show-labels`), `describe` of a custom
//! resource and of a pod with its Events, `explain` of a custom resource,
//! `wait --for=delete`, strict field validation of `create` and pruning
//! with a warning on `patch`. Admission webhooks called on kubectl's writes
//! are in `tests/admission.rs`.
//!
//! Also: `apply --server-side` (ownership, conflicts, `--force-conflicts`),
//! and `kubectl create <generator>` and `kubectl run`, which send protobuf.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

mod support;
use support::binary;

/// The binary serving on a free port, with kubectl helpers that assert.
struct Cluster {
    inner: support::Standalone,
    url: String,
}

impl Cluster {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let inner = support::Standalone::start(extra);
        let url = inner.url.clone();
        Cluster { inner, url }
    }

    fn command(&self, args: &[&str]) -> Command {
        self.inner.command(args)
    }

    /// Runs kubectl, asserting success; returns stdout.
    fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, "")
    }

    /// Runs kubectl with `stdin`, whatever its exit status.
    fn output_stdin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The lines a long-running kubectl (`get -w`) prints, as they come.
    fn lines(&self, args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.output_stdin(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&full)).unwrap()
    }
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
"#;

/// kubectl manages a CRD and its custom resources end to end.
#[test]
fn kubectl_should_manage_custom_resources() {
    let c = Cluster::start();
    assert!(c
        .kubectl(&["version"])
        .contains("Server Version: v1.33.0-fake"));
    c.kubectl_stdin(&["apply", "-f", "-"], CRD);
    c.kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=10s",
        "crd/widgets.example.com",
    ]);
    assert!(c.kubectl(&["api-resources"]).contains("widgets"));
    assert!(c.kubectl(&["api-versions"]).contains("example.com/v1"));

    let widget =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n";
    assert!(c
        .kubectl_stdin(&["apply", "-f", "-"], widget)
        .contains("widget.example.com/w1 created"));
    assert!(c.kubectl(&["get", "widgets"]).contains("w1"));
    assert!(c
        .kubectl(&["get", "wd", "w1", "-o", "yaml"])
        .contains("size: 3"));
    assert_eq!(
        c.kubectl(&["get", "wd", "w1", "-o", "jsonpath={.spec.size}"]),
        "3"
    );

    c.kubectl(&["label", "wd", "w1", "tier=gold"]);
    c.kubectl(&["annotate", "wd", "w1", "note=hello"]);
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/color","value":"red"}]"#,
    ]);
    // Client-side apply of a custom resource, twice: the field left out of
    // the second configuration is removed (three-way merge).
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {size: 3, color: red}\n",
    );
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {size: 4}\n",
    );
    let w3 = c.json(&["get", "wd", "w3"]);
    assert_eq!(w3["spec"], serde_json::json!({"size": 4}), "{w3}");
    c.kubectl(&["delete", "wd", "w3"]);
    // A field the schema does not know: `kubectl create` asks for strict
    // validation and is refused; `kubectl patch` does not, and the field is
    // pruned with a warning.
    let shaped = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 3, shape: round}\n";
    let refused = c.output_stdin(&["create", "-f", "-"], shaped);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.shape""#),
        "{err}"
    );
    let pruned = c
        .command(&[
            "patch",
            "wd",
            "w1",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"shape":"round"}}"#,
        ])
        .output()
        .unwrap();
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let warning = String::from_utf8_lossy(&pruned.stderr);
    assert!(
        warning.contains(r#"Warning: unknown field "spec.shape""#),
        "{warning}"
    );
    let w = c.json(&["get", "wd", "w1"]);
    assert!(w["spec"].get("shape").is_none(), "{w}");
    assert_eq!(w["metadata"]["labels"]["tier"], "gold");
    assert_eq!(w["metadata"]["annotations"]["note"], "hello");
    assert_eq!(w["spec"]["size"], 5);
    assert_eq!(w["spec"]["color"], "red");
    assert_eq!(w["metadata"]["generation"], 3);
    assert!(c
        .kubectl(&["get", "wd", "-l", "tier=gold", "-o", "name"])
        .contains("widget.example.com/w1"));

    // get -w sees a change made by another client.
    let (mut watch, rx) = c.lines(&[
        "get",
        "wd",
        "w1",
        "-w",
        "-o",
        "jsonpath={.spec.size}{\"\\n\"}",
    ]);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "5");
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":8}}"#,
    ]);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "8");
    let _ = watch.kill();
    let _ = watch.wait();

    // delete --wait blocks until the finalizer is removed.
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let mut delete = c
        .command(&["delete", "wd", "w1", "--wait=true", "--timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut held = false;
    for _ in 0..100 {
        let w = c.json(&["get", "wd", "w1"]);
        if w["metadata"]["deletionTimestamp"].is_string() {
            held = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(held, "deletion should be held by the finalizer");
    assert!(
        delete.try_wait().unwrap().is_none(),
        "delete --wait must still be waiting"
    );
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = delete.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted"));
    assert!(c.kubectl(&["get", "wd", "-o", "name"]).trim().is_empty());
}

/// Client-side apply of a built-in kind removes a field on the second apply;
/// replace -f swaps the whole object; selectors and -A work.
#[test]
fn kubectl_should_apply_and_replace_built_ins() {
    let c = Cluster::start();
    let first = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, labels: {app: demo}}\ndata: {a: '1', b: '2'}\n";
    let second = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, labels: {app: demo}}\ndata: {a: '1'}\n";
    c.kubectl_stdin(&["apply", "-f", "-"], first);
    assert!(c
        .kubectl_stdin(&["apply", "-f", "-"], second)
        .contains("configmap/cfg configured"));
    let cm = c.json(&["get", "configmap", "cfg"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1"}));

    let mut replaced = cm.clone();
    replaced["data"] = serde_json::json!({"c": "3"});
    c.kubectl_stdin(&["replace", "-f", "-"], &replaced.to_string());
    assert_eq!(
        c.json(&["get", "cm", "cfg"])["data"],
        serde_json::json!({"c": "3"})
    );

    assert!(c
        .kubectl(&["get", "cm", "-A", "-l", "app=demo", "-o", "name"])
        .contains("configmap/cfg"));
    assert!(c
        .kubectl(&["get", "namespaces", "-o", "name"])
        .contains("namespace/kube-system"));
    c.kubectl(&["delete", "cm", "cfg"]);
    assert!(c.kubectl(&["get", "cm", "-o", "name"]).trim().is_empty());
}

/// Runs a `fake-apiserver` control subcommand against the cluster.
fn control(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .args(["--server", &c.url])
        .output()
        .expect("run fake-apiserver subcommand")
}

fn control_ok(c: &Cluster, args: &[&str]) -> String {
    let out = control(c, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The control API, driven by the binary's subcommands while kubectl watches:
/// an injected event reaches `kubectl get -w`, a 409 rule makes `kubectl
/// patch` fail once, the journal shows the writes, and a cut ends the watch.
#[test]
fn control_subcommands_should_drive_faults_while_kubectl_watches() {
    let c = Cluster::start_with(&["--control"]);
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {v: '1'}\n",
    );
    let (mut watch, rx) = c.lines(&[
        "get",
        "configmaps",
        "-w",
        "-o",
        "jsonpath={.metadata.name}{\"\\n\"}",
    ]);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "watched");

    // A synthetic event, never stored, reaches the live watch.
    let ghost = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ghost","namespace":"default","resourceVersion":"1"}}"#;
    let out = control_ok(
        &c,
        &[
            "inject",
            "--resource",
            "configmaps",
            "--type",
            "ADDED",
            "--object",
            ghost,
        ],
    );
    assert!(out.contains("\"watches\":1"), "{out}");
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "ghost");
    assert!(c.kubectl(&["get", "cm", "-o", "name"]).contains("watched"));
    assert!(
        !c.kubectl(&["get", "cm", "-o", "name"]).contains("ghost"),
        "a lie is not stored"
    );

    // A 409 for the next patch only.
    let id = control_ok(
        &c,
        &[
            "fault",
            "add",
            "--verb",
            "patch",
            "--resource",
            "configmaps",
            "--status",
            "409",
            "--times",
            "1",
        ],
    );
    assert!(id.contains("\"id\":1"), "{id}");
    let refused = c
        .command(&["label", "cm", "watched", "a=b"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the object has been modified"));
    c.kubectl(&["label", "cm", "watched", "a=b"]);
    let rules = control_ok(&c, &["fault", "list"]);
    assert!(rules.contains("\"fired\":1"), "{rules}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "watched",
        "the label change is seen"
    );

    // The journal holds the writes, with the fault marked.
    let journal = control_ok(
        &c,
        &[
            "journal",
            "--writes",
            "--normalized",
            "--resource",
            "configmaps",
        ],
    );
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let patches: Vec<_> = entries.iter().filter(|e| e["verb"] == "patch").collect();
    assert_eq!(patches.len(), 2, "{journal}");
    assert_eq!(patches[0]["code"], 409);
    assert_eq!(patches[0]["fault"], 1);
    assert_eq!(patches[1]["code"], 200);

    // Cutting the watch ends kubectl's watch.
    control_ok(
        &c,
        &["inject", "--resource", "configmaps", "--action", "cut"],
    );
    let mut ended = false;
    for _ in 0..100 {
        if watch.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    assert!(ended, "kubectl get -w should end when its watch is cut");

    // Bad requests get clear errors.
    let out = control(
        &c,
        &[
            "inject",
            "--resource",
            "nothings",
            "--type",
            "ADDED",
            "--object",
            "{}",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not served"));
}

/// The control API is off unless asked for, and needs its token when one is set.
#[test]
fn control_api_should_be_off_by_default_and_guarded_by_its_token() {
    let plain = Cluster::start();
    let out = control(&plain, &["fault", "list"]);
    assert!(!out.status.success(), "no control API without --control");
    let guarded = Cluster::start_with(&["--control", "--control-token", "s3cret"]);
    assert!(!control(&guarded, &["fault", "list"]).status.success());
    let out = control(&guarded, &["fault", "list", "--token", "s3cret"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// --load applies manifests (CRDs first) before serving.
#[test]
fn load_should_apply_manifests_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b-crd.yaml"), CRD).unwrap();
    std::fs::write(
        dir.path().join("a-objects.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: loaded}\nspec: {size: 1}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: kube-system}\n",
    )
    .unwrap();
    let c = Cluster::start_with(&["--load", dir.path().to_str().unwrap()]);
    assert!(c
        .kubectl(&["get", "widgets", "-o", "name"])
        .contains("widget.example.com/loaded"));
    assert!(c
        .kubectl(&["get", "cm", "-n", "kube-system", "-o", "name"])
        .contains("configmap/cfg"));
}

/// What `kubectl get` prints comes from the server's Table: built-in
/// columns, CRD printer columns, `-o wide` and `--show-labels`; `describe`
/// shows an object's Events; `explain` reads the CRD schema; `wait
/// --for=delete` sees an object go.
#[test]
fn kubectl_should_print_tables_describe_and_wait() {
    // A pure store: the pod stays as it was posted (no kubelet runs it).
    let c = Cluster::start_with(&["--load", "examples/crd.yaml", "--controllers="]);
    c.kubectl(&["apply", "-f", "examples/obj.yaml"]);
    let kex = c.kubectl(&["get", "kex"]);
    let header: Vec<&str> = kex.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DURATION", "MESSAGE"], "{kex}");
    assert!(
        kex.lines()
            .nth(1)
            .unwrap()
            .starts_with("kopf-example-1   1m"),
        "{kex}"
    );
    let labelled = c.kubectl(&["get", "kex", "--show-labels"]);
    assert!(labelled.contains("somelabel=somevalue"), "{labelled}");

    let namespaces = c.kubectl(&["get", "ns"]);
    assert!(namespaces.starts_with("NAME"), "{namespaces}");
    assert!(
        namespaces.contains("STATUS") && namespaces.contains("default           Active"),
        "{namespaces}"
    );

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {app: web}}\nspec:\n  nodeName: node-1\n  containers: [{name: main, image: nginx}]\n",
    );
    let pods = c.kubectl(&["get", "pods"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert!(pods.contains("web    0/1     Pending   0"), "{pods}");
    let wide = c.kubectl(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("NODE") && wide.contains("node-1"),
        "{wide}"
    );

    // An Event about the pod: listed by `get events`, shown by `describe`.
    let uid = c.json(&["get", "pod", "web"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: web.1, namespace: default}}\ninvolvedObject: {{kind: Pod, name: web, namespace: default, apiVersion: v1, uid: {uid}}}\nreason: Scheduled\nmessage: assigned to node-1\ntype: Normal\nsource: {{component: scheduler}}\ncount: 1\n"
        ),
    );
    let events = c.kubectl(&["get", "events"]);
    let header: Vec<&str> = events.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events}"
    );
    assert!(
        events.contains("Normal   Scheduled   pod/web   assigned to node-1"),
        "{events}"
    );
    let described = c.kubectl(&["describe", "pod", "web"]);
    assert!(
        described.contains("Normal  Scheduled") && described.contains("assigned to node-1"),
        "{described}"
    );
    // An events.k8s.io/v1 Event (what kube-rs's recorder posts) shows in
    // the core listing and in describe too: one storage, two APIs.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: web.2, namespace: default}}\nregarding: {{kind: Pod, name: web, namespace: default, apiVersion: v1, uid: {uid}}}\nreason: Pulled\nnote: image pulled\ntype: Normal\naction: Pull\nreportingController: kubelet\nreportingInstance: node-1\neventTime: \"2026-01-01T00:00:00.000000Z\"\n"
        ),
    );
    let events = c.kubectl(&["get", "events"]);
    assert!(
        events.contains("Normal   Pulled      pod/web   image pulled"),
        "{events}"
    );
    let described = c.kubectl(&["describe", "pod", "web"]);
    assert!(
        described.contains("Normal  Pulled") && described.contains("image pulled"),
        "{described}"
    );
    let core = c.json(&["get", "events.v1.", "web.2"]);
    assert_eq!(core["message"], "image pulled", "{core}");
    let described = c.kubectl(&["describe", "kex", "kopf-example-1"]);
    assert!(
        described.contains("Kind:         KopfExample"),
        "{described}"
    );
    assert!(described.contains("Duration:  1m"), "{described}");

    let explained = c.kubectl(&["explain", "kex"]);
    assert!(explained.contains("KIND:       KopfExample"), "{explained}");

    // wait --for=delete returns once the object is gone.
    c.kubectl(&["delete", "kex", "kopf-example-1", "--wait=false"]);
    let waited = c.kubectl(&[
        "wait",
        "--for=delete",
        "kex/kopf-example-1",
        "--timeout=10s",
    ]);
    assert!(
        waited.contains("condition met") || waited.is_empty(),
        "{waited}"
    );
    let gone = c
        .command(&["get", "kex", "kopf-example-1"])
        .output()
        .unwrap();
    assert!(!gone.status.success());
}

/// `kubectl apply --server-side`: ownership per field manager, conflicts
/// reported by kubectl, `--force-conflicts`, and fields an applier drops.
#[test]
fn kubectl_should_apply_server_side() {
    let c = Cluster::start();
    let first = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default, labels: {a: \"1\"}}\ndata: {alpha: \"1\", beta: \"2\"}\n";
    let out = c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], first);
    assert!(out.contains("configmap/cfg serverside-applied"), "{out}");
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default}\ndata: {alpha: \"9\"}\n";
    let refused = c.output_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        other,
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.alpha"#
        ),
        "{err}"
    );
    c.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        other,
    );
    let cm = c.json(&["get", "cm", "cfg", "--show-managed-fields"]);
    assert_eq!(cm["data"], serde_json::json!({"alpha": "9", "beta": "2"}));
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(managers, ["kubectl", "other"]);
    // The first applier drops both keys: beta goes (its alone), alpha stays.
    c.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default, labels: {a: \"1\"}}\ndata: {}\n",
    );
    let cm = c.json(&["get", "cm", "cfg"]);
    assert_eq!(cm["data"], serde_json::json!({"alpha": "9"}));
}

/// `kubectl create <generator>` and `kubectl run` send protobuf bodies;
/// what they create is stored as kubectl meant it.
#[test]
fn kubectl_generators_should_create_through_protobuf() {
    let c = Cluster::start();
    for args in [
        &["create", "configmap", "cfg", "--from-literal=a=b"][..],
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=password=hunter2",
        ],
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1",
            "--replicas=2",
            "--port=80",
        ],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        &["create", "namespace", "team"],
        &["create", "job", "once", "--image=busybox"],
        &[
            "create",
            "cronjob",
            "often",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        &[
            "create",
            "rolebinding",
            "readers",
            "--role=reader",
            "--user=bob",
        ],
        &["create", "serviceaccount", "robot"],
        &["create", "quota", "small", "--hard=pods=5,cpu=1"],
        &["create", "priorityclass", "high", "--value=1000"],
        &[
            "create",
            "pdb",
            "keep",
            "--selector=app=web",
            "--min-available=1",
        ],
        &[
            "create",
            "ingress",
            "front",
            "--rule=example.com/api=web:80",
        ],
        &[
            "run",
            "shell",
            "--image=busybox",
            "--labels=app=shell",
            "--env=MODE=test",
            "--",
            "sleep",
            "3600",
        ],
    ] {
        let out = c.kubectl(args);
        assert!(out.contains("created"), "{args:?}: {out}");
    }
    assert_eq!(
        c.json(&["get", "cm", "cfg"])["data"],
        serde_json::json!({"a": "b"})
    );
    let secret = c.json(&["get", "secret", "pw"]);
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    // kube-apiserver defaults the type; kubectl's table shows it.
    assert_eq!(secret["type"], "Opaque");
    let table = c.kubectl(&["get", "secret", "pw"]);
    assert!(table.contains("Opaque"), "{table}");
    // stringData is write-only: merged into data, base64-encoded.
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sd}\nstringData: {user: admin}\n",
    );
    let sd = c.json(&["get", "secret", "sd"]);
    assert_eq!(sd["data"]["user"], "YWRtaW4=");
    assert!(sd.get("stringData").is_none(), "{sd}");
    assert_eq!(sd["type"], "Opaque");
    let deploy = c.json(&["get", "deploy", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    let svc = c.json(&["get", "svc", "web"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    let pod = c.json(&["get", "pod", "shell"]);
    assert_eq!(pod["metadata"]["labels"]["app"], "shell");
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep", "3600"])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"][0],
        serde_json::json!({"name": "MODE", "value": "test"})
    );
    let role = c.json(&["get", "role", "reader"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    let ingress = c.json(&["get", "ingress", "front"]);
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 80,
        "embedded structs are inlined: {ingress}"
    );
    assert_eq!(
        c.json(&["get", "quota", "small"])["spec"]["hard"]["cpu"],
        "1"
    );
    let explained = c.kubectl(&["explain", "pods"]);
    assert!(explained.contains("KIND:       Pod"), "{explained}");
}

/// `kubectl scale` goes through `/scale` (issue 13): for a Deployment, and
/// for a custom resource whose CRD declares `subresources.scale`.
#[test]
fn kubectl_should_scale_deployments_and_custom_resources() {
    let c = Cluster::start();
    c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    let out = c.kubectl(&["scale", "deploy", "web", "--replicas=5"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(c.json(&["get", "deploy", "web"])["spec"]["replicas"], 5);
    let scale: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    // A stale resourceVersion on the Scale is a conflict, as on the object.
    let out = c.output_stdin(
        &[
            "replace",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            "-f",
            "-",
        ],
        r#"{"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"}, "spec": {"replicas": 1}}"#,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the object has been modified"), "{stderr}");
    let discovery = c.kubectl(&["api-resources", "--api-group=apps", "-o", "name"]);
    assert!(discovery.contains("deployments.apps"), "{discovery}");

    c.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: workers.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: workers, singular: worker, kind: Worker}
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {}
        scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size, labelSelectorPath: .status.selector}
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    );
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Worker\nmetadata: {name: w}\nspec: {size: 1}\n",
    );
    let out = c.kubectl(&["scale", "worker", "w", "--replicas=3"]);
    assert!(out.contains("worker.example.com/w scaled"), "{out}");
    assert_eq!(c.json(&["get", "worker", "w"])["spec"]["size"], 3);
}

/// `kubectl auth can-i` and `kubectl auth whoami` are answered by the review
/// APIs (issue 13): over HTTPS kubectl sends the kubeconfig's token, and
/// the administrator may do everything (`system:masters`, bound to
/// cluster-admin by the bootstrap policy).
#[test]
fn kubectl_auth_should_ask_the_review_apis() {
    let c = Cluster::start_with(&["--tls"]);
    assert_eq!(
        c.kubectl(&["auth", "can-i", "create", "configmaps"]).trim(),
        "yes"
    );
    assert_eq!(
        c.kubectl(&["auth", "can-i", "delete", "nodes", "--all-namespaces"])
            .trim(),
        "yes"
    );
    let whoami = c.kubectl(&["auth", "whoami"]);
    assert!(whoami.contains("system:admin"), "{whoami}");
    assert!(whoami.contains("system:masters"), "{whoami}");
    let list = c.kubectl(&["auth", "can-i", "--list"]);
    assert!(list.contains("*.*"), "{list}");
    // Reviews are answered, not stored: there is nothing to get.
    let out = c.output_stdin(&["get", "selfsubjectaccessreviews"], "");
    assert!(!out.status.success());
}

/// Over plain HTTP kubectl sends no credentials, so it is
/// `system:anonymous`; the binary's default there is AlwaysAllow, so it
/// may still do everything.
#[test]
fn kubectl_over_plain_http_should_be_anonymous_and_allowed() {
    let c = Cluster::start();
    let whoami = c.kubectl(&["auth", "whoami"]);
    assert!(whoami.contains("system:anonymous"), "{whoami}");
    assert!(whoami.contains("system:unauthenticated"), "{whoami}");
    assert_eq!(
        c.kubectl(&["auth", "can-i", "delete", "nodes"]).trim(),
        "yes"
    );
}
