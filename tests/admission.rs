//! Admission end to end, with no cluster: kubectl writes to the standalone
//! fake API server, which calls the operator's webhooks (over HTTPS, with
//! the CA from the managed configuration) before storing anything.

use std::time::Duration;

use kopf_harness::{Cluster, KopfRunner};
use serde_json::Value;

mod support;

#[path = "../examples/17-admission.rs"]
mod admission;

const KEX: &str = "kopfexamples.kopf.dev";

fn object(name: &str, field: &str, labelled: bool) -> String {
    let labels = if labelled {
        "\n  labels: {somelabel: somevalue}"
    } else {
        ""
    };
    format!(
        "apiVersion: kopf.dev/v1\nkind: KopfExample\nmetadata:\n  name: {name}{labels}\nspec:\n  field: {field}\n"
    )
}

/// Writes `text` to a file in `dir` and returns its path as a string.
fn file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_should_deny_and_mutate_kubectl_writes() {
    // The examples' CRD, with the status subresource the webhooks guard.
    let dir = tempfile::tempdir().unwrap();
    let crd = include_str!("../examples/crd.yaml").replace(
        "storage: true\n",
        "storage: true\n      subresources:\n        status: {}\n",
    );
    assert!(crd.contains("subresources"));
    let crd = file(dir.path(), "crd.yaml", &crd);
    let fake = support::Standalone::start(&["--load", &crd]);
    let cluster = Cluster::connect(Some(&fake.kubeconfig())).await.unwrap();
    let mut runner = KopfRunner::with_cluster(cluster, admission::operator);
    *runner.settings_mut() = kopf::Settings {
        log_sink: runner.settings_mut().log_sink.clone(),
        observer: runner.settings_mut().observer.clone(),
        ..admission::settings()
    };
    runner.start().await.unwrap();

    // The managed configurations point at the webhooks, with the CA.
    let config = runner
        .cluster()
        .get(
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            "",
            "auto.kopf.dev",
        )
        .expect("the validating configuration");
    let names: Vec<&str> = config["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "authhook.auto.kopf.dev",
            "validate1.auto.kopf.dev",
            "validate2.spec.field.auto.kopf.dev",
            "validate-subresources.auto.kopf.dev"
        ]
    );
    let first = &config["webhooks"][0];
    assert!(first["clientConfig"]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://localhost:"));
    assert!(first["clientConfig"]["caBundle"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(
        config["webhooks"][3]["rules"][0]["resources"],
        serde_json::json!(["kopfexamples/*"])
    );

    let kubectl = |args: Vec<String>| {
        let fake = &fake;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fake.kubectl(&args)
    };

    // Denied by validate1.
    let wrong = file(
        dir.path(),
        "wrong.yaml",
        &object("wrong-one", "wrong", false),
    );
    let (ok, _, err) = kubectl(vec!["create".into(), "-f".into(), wrong.clone()]);
    assert!(!ok);
    assert!(
        err.contains(r#"admission webhook "validate1.auto.kopf.dev" denied the request: Meh! I don't like it. Change the field."#),
        "{err}"
    );
    assert!(
        runner.cluster().get(KEX, "default", "wrong-one").is_none(),
        "nothing stored"
    );

    // A dry run passes validate1 (it lets dry runs through), stores nothing.
    let (ok, out, err) = kubectl(vec![
        "create".into(),
        "--dry-run=server".into(),
        "-f".into(),
        wrong,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("created (server dry run)"), "{out}");
    assert!(runner.cluster().get(KEX, "default", "wrong-one").is_none());

    // Denied by validate2, with its own code.
    let lazy = file(
        dir.path(),
        "lazy.yaml",
        &object("lazy-one", "not-allowed", false),
    );
    let (ok, _, err) = kubectl(vec!["create".into(), "-f".into(), lazy]);
    assert!(!ok);
    assert!(err.contains("I'm too lazy anyway. Go away!"), "{err}");

    // Admitted and mutated (labelled), with the validators' warnings.
    let good = file(dir.path(), "good.yaml", &object("good-one", "value", true));
    let (ok, out, err) = kubectl(vec!["create".into(), "-f".into(), good]);
    assert!(ok, "{err}");
    assert!(
        out.contains("kopfexample.kopf.dev/good-one created"),
        "{out}"
    );
    assert!(
        err.contains("Warning: Accessing as user-agent: kube-apiserver-admission"),
        "{err}"
    );
    assert!(
        err.contains("Warning: SSL peer is not identified."),
        "{err}"
    );
    // `kopfexamples/*` covers the subresources only (as in kube-apiserver),
    // so the status checker is not asked about the main resource.
    assert!(!err.contains("Also update status.field"), "{err}");
    let stored = runner.cluster().get(KEX, "default", "good-one").unwrap();
    assert_eq!(stored["spec"]["injected"], 123, "{stored}");

    // Not labelled: not mutated.
    let plain = file(
        dir.path(),
        "plain.yaml",
        &object("plain-one", "value", false),
    );
    let (ok, _, err) = kubectl(vec!["create".into(), "-f".into(), plain]);
    assert!(ok, "{err}");
    let stored = runner.cluster().get(KEX, "default", "plain-one").unwrap();
    assert!(stored["spec"].get("injected").is_none(), "{stored}");

    // The status subresource: a mismatch is denied, a match admitted.
    let (ok, _, err) = kubectl(
        [
            "patch",
            "kex",
            "plain-one",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"field":"other"}}"#,
        ]
        .map(String::from)
        .to_vec(),
    );
    assert!(!ok);
    assert!(
        err.contains("status.field MUST be equal to spec.field!"),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        [
            "patch",
            "kex",
            "plain-one",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"field":"value"}}"#,
        ]
        .map(String::from)
        .to_vec(),
    );
    assert!(ok, "{err}");

    // An update can be denied too.
    let (ok, _, err) = kubectl(
        [
            "patch",
            "kex",
            "plain-one",
            "--type=merge",
            "-p",
            r#"{"spec":{"field":"wrong"}}"#,
        ]
        .map(String::from)
        .to_vec(),
    );
    assert!(!ok);
    assert!(err.contains("Meh! I don't like it."), "{err}");
    let stored = runner.cluster().get(KEX, "default", "plain-one").unwrap();
    assert_eq!(
        stored["spec"]["field"], "value",
        "the denied update is not stored"
    );

    // On exit the managed configurations keep only persistent webhooks.
    runner.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let cluster = Cluster::connect(Some(&fake.kubeconfig())).await.unwrap();
    let config = cluster
        .get(
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            "",
            "auto.kopf.dev",
        )
        .unwrap();
    assert_eq!(config["webhooks"], Value::Array(vec![]), "{config}");
    let (ok, _, err) = kubectl(
        [
            "patch",
            "kex",
            "plain-one",
            "--type=merge",
            "-p",
            r#"{"spec":{"field":"wrong"}}"#,
        ]
        .map(String::from)
        .to_vec(),
    );
    assert!(ok, "no webhooks anymore: {err}");
}
