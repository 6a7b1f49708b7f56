//! The simulated cluster (issue 17) through the real `kubectl` against the
//! standalone binary (its default `--controllers=*`, one node): what a kind
//! cluster would do for the same commands. Real time here: a pod takes
//! about a second from ContainerCreating to Running.

mod support;

use support::Standalone;

/// Runs kubectl every 100 ms, for up to 5 s, until its output satisfies
/// `done`; returns the last output (the caller asserts on it).
fn eventually(c: &Standalone, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for _ in 0..50 {
        out = ok(c, args);
        if done(&out) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    out
}

fn ok(c: &Standalone, args: &[&str]) -> String {
    let (success, out, err) = c.kubectl(args);
    assert!(success, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

#[test]
fn kubectl_should_roll_out_scale_and_undo_deployments() {
    let c = Standalone::start(&["--nodes", "2"]);
    let nodes = ok(&c, &["get", "nodes"]);
    assert!(
        nodes.contains("node-1   Ready") && nodes.contains("node-2   Ready"),
        "{nodes}"
    );

    ok(
        &c,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=3",
            "--port=80",
        ],
    );
    let status = ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    let pods = ok(&c, &["get", "pods", "-o", "wide", "-l", "app=web"]);
    assert_eq!(
        pods.lines()
            .filter(|l| l.contains("1/1     Running"))
            .count(),
        3,
        "{pods}"
    );
    assert!(pods.contains("node-1") || pods.contains("node-2"), "{pods}");
    assert!(pods.contains("10.244."), "{pods}");

    ok(&c, &["expose", "deployment", "web", "--port=80"]);
    let ips = [
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[*].endpoints[*].addresses[0]}",
    ];
    let found = eventually(&c, &ips, |out| out.split_whitespace().count() == 3);
    assert_eq!(found.split_whitespace().count(), 3, "{found}");
    assert!(
        found.split_whitespace().all(|ip| ip.starts_with("10.244.")),
        "{found}"
    );

    ok(&c, &["scale", "deploy/web", "--replicas=5"]);
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let ready = ok(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.availableReplicas}",
        ],
    );
    assert_eq!(ready, "5/5");

    ok(&c, &["set", "image", "deploy/web", "nginx=nginx:1.28"]);
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let history = ok(&c, &["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    ok(&c, &["rollout", "undo", "deploy/web"]);
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let image = ok(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "nginx:1.27");
    let revision = ok(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
    );
    assert_eq!(
        revision, "3",
        "undo makes the old template the newest revision"
    );

    ok(&c, &["rollout", "restart", "deploy/web"]);
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);

    ok(&c, &["cordon", "node-2"]);
    let nodes = ok(&c, &["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    let taints = ok(
        &c,
        &[
            "get",
            "node",
            "node-2",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ],
    );
    assert_eq!(taints, "node.kubernetes.io/unschedulable");
    ok(&c, &["uncordon", "node-2"]);

    ok(&c, &["delete", "deploy", "web"]);
    let (_, left, _) = c.kubectl(&[
        "wait",
        "--for=delete",
        "pods",
        "-l",
        "app=web",
        "--timeout=30s",
    ]);
    let _ = left;
    let pods = ok(&c, &["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.trim(), "", "the pods went with their Deployment");
}

#[test]
fn kubectl_should_wait_for_a_job_to_complete() {
    let c = Standalone::start(&[]);
    ok(
        &c,
        &["create", "job", "x", "--image=busybox:1.36", "--", "true"],
    );
    let waited = ok(
        &c,
        &["wait", "--for=condition=complete", "job/x", "--timeout=30s"],
    );
    assert!(waited.contains("job.batch/x condition met"), "{waited}");
    let jobs = ok(
        &c,
        &["get", "job", "x", "-o", "jsonpath={.status.succeeded}"],
    );
    assert_eq!(jobs, "1");
    let pods = ok(&c, &["get", "pods", "-l", "job-name=x"]);
    assert!(pods.contains("Completed"), "{pods}");
}

/// Incidents scripted with kubectl alone: a node's kubelet stops posting
/// (its Ready condition goes Unknown), and a pod starts crash-looping (the
/// stages annotation).
#[test]
fn kubectl_should_script_a_node_down_and_a_crash_loop() {
    let c = Standalone::start(&["--nodes", "2"]);
    ok(
        &c,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
        ],
    );
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    ok(
        &c,
        &[
            "patch",
            "node",
            "node-2",
            "--subresource=status",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status."}]}}"#,
        ],
    );
    let nodes = eventually(
        &c,
        &[
            "get",
            "node",
            "node-2",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ],
        |out| out.contains("unreachable"),
    );
    assert!(nodes.contains("node.kubernetes.io/unreachable"), "{nodes}");
    let status = ok(&c, &["get", "nodes"]);
    assert!(status.contains("node-2   NotReady"), "{status}");

    let pod = ok(
        &c,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "spec.nodeName=node-1",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    ok(
        &c,
        &[
            "annotate",
            "pod",
            &pod,
            "stages.fake.kopf.dev/fail=CrashLoopBackOff",
        ],
    );
    let reason = eventually(
        &c,
        &[
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ],
        |out| out == "CrashLoopBackOff",
    );
    assert_eq!(reason, "CrashLoopBackOff");
    let listed = ok(&c, &["get", "pod", &pod]);
    assert!(listed.contains("CrashLoopBackOff"), "{listed}");
}

/// `kubectl drain` evicts a node's pods through `pods/eviction`, one at a
/// time as the PodDisruptionBudget allows, while the Deployment replaces
/// them on the other node.
#[test]
fn kubectl_should_drain_a_node_within_a_disruption_budget() {
    let c = Standalone::start(&["--nodes", "2"]);
    ok(
        &c,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=4",
        ],
    );
    ok(
        &c,
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=3",
        ],
    );
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let drained = ok(
        &c,
        &["drain", "node-1", "--ignore-daemonsets", "--timeout=90s"],
    );
    assert!(drained.contains("node/node-1 drained"), "{drained}");
    ok(&c, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let nodes = ok(
        &c,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ],
    );
    assert!(nodes.split_whitespace().all(|n| n == "node-2"), "{nodes}");
    assert_eq!(nodes.split_whitespace().count(), 4, "{nodes}");
}

/// The incidents through the control API's subcommands.
#[test]
fn the_subcommands_should_take_a_node_down_and_fail_a_pod() {
    let c = Standalone::start(&["--nodes", "2", "--control"]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::binary())
            .args(args)
            .args(["--server", &c.url])
            .output()
            .expect("the binary runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&c, &["run", "p", "--image=nginx:1.27"]);
    ok(
        &c,
        &["wait", "--for=condition=Ready", "pod/p", "--timeout=30s"],
    );
    run(&["node", "down", "node-2"]);
    let nodes = ok(&c, &["get", "nodes"]);
    assert!(nodes.contains("node-2   NotReady"), "{nodes}");
    run(&["node", "up", "node-2"]);
    let nodes = ok(&c, &["get", "nodes"]);
    assert!(nodes.contains("node-2   Ready"), "{nodes}");
    run(&["pod", "fail", "default/p", "--failure", "OOMKilled"]);
    let reason = eventually(
        &c,
        &[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}",
        ],
        |out| out == "OOMKilled",
    );
    assert_eq!(reason, "OOMKilled");
    let (success, _, err) = c.kubectl(&["get", "pod", "nope"]);
    assert!(!success && err.contains("NotFound"), "{err}");
    let out = std::process::Command::new(support::binary())
        .args([
            "pod",
            "fail",
            "default/p",
            "--failure",
            "Meltdown",
            "--server",
            &c.url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown failure \"Meltdown\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
