//! Runtime scanning (issue 18, Kopf's `settings.scanning`): resources and
//! namespaces come and go while the operator runs. A CRD missing at start
//! is waited for; namespace patterns (globs, negations, comma lists) start
//! and stop per-namespace watches; without permission to list namespaces,
//! the plain names among the patterns are served, as Kopf falls back.

use kopf_harness::{KopfRunner, Scenario};
use serde_json::{json, Value};

#[path = "../examples/01-minimal.rs"]
mod minimal;

const CRD: &str = include_str!("../examples/crd.yaml");
const KEX: &str = "kopfexamples.kopf.dev";
const CRD_NAME: &str = "kopfexamples.kopf.dev";
const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

fn object(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: kopf.dev/v1\nkind: KopfExample\n\
         metadata: {{name: {name}, namespace: {namespace}}}\nspec: {{field: value}}\n"
    )
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

fn handled(runner: &KopfRunner, namespace: &str, name: &str) -> bool {
    runner
        .cluster()
        .get(KEX, namespace, name)
        .is_some_and(|o| o["status"]["create_fn"] == json!({"message": "hello world"}))
}

fn lines_with(runner: &KopfRunner, text: &str) -> usize {
    runner
        .log()
        .iter()
        .filter(|l| l.message.contains(text))
        .count()
}

const UNRESOLVED: &str =
    "Unresolved resources cannot be served (try creating their CRDs): kopf.dev/v1/kopfexamples";

/// The operator starts without its CRD, says what it waits for, and serves
/// the resource once the CRD is created; deleted, the CRD's watch stops (the
/// warning comes back); created again, the resource is served again.
#[tokio::test(start_paused = true)]
async fn a_crd_missing_at_start_should_be_waited_for_then_served() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.play(&Scenario::new().settle()).await.unwrap();
    assert_eq!(lines_with(&runner, UNRESOLVED), 1, "{}", runner.output());

    runner.cluster().apply(CRD).unwrap();
    runner
        .play(&Scenario::new().apply(&object("default", "first")).settle())
        .await
        .unwrap();
    assert!(handled(&runner, "default", "first"), "{}", runner.output());

    runner.cluster().delete(KEX, "default", "first").unwrap();
    runner.play(&Scenario::new().settle()).await.unwrap();
    runner.cluster().delete(CRDS, "", CRD_NAME).unwrap();
    runner.play(&Scenario::new().settle()).await.unwrap();
    assert_eq!(lines_with(&runner, UNRESOLVED), 2, "{}", runner.output());

    runner.cluster().apply(CRD).unwrap();
    runner
        .play(&Scenario::new().apply(&object("default", "second")).settle())
        .await
        .unwrap();
    assert!(handled(&runner, "default", "second"), "{}", runner.output());
    runner.stop().await.unwrap();
}

/// A resource named by kind that is not served yet is resolved when its
/// CRD appears (the name is looked up again on every scan).
#[tokio::test(start_paused = true)]
async fn a_named_resource_should_resolve_when_its_crd_appears() {
    let mut runner = KopfRunner::new(|| {
        let mut op = kopf::Operator::new();
        op.on_create(&kopf::Resource::named("KopfExample"), |_| async {
            Ok(Some(json!({"message": "hello world"})))
        })
        .id("create_fn");
        op
    });
    runner.play(&Scenario::new().settle()).await.unwrap();
    assert_eq!(
        lines_with(
            &runner,
            "Unresolved resources cannot be served (try creating their CRDs): KopfExample"
        ),
        1,
        "{}",
        runner.output()
    );
    runner.cluster().apply(CRD).unwrap();
    runner
        .play(&Scenario::new().apply(&object("default", "late")).settle())
        .await
        .unwrap();
    assert!(handled(&runner, "default", "late"), "{}", runner.output());
    runner.stop().await.unwrap();
}

/// `team-*,!team-b`: team-a is served, team-b and other are not; team-c,
/// created later, is served from then on; team-a deleted and created again
/// is served again.
#[tokio::test(start_paused = true)]
async fn namespace_patterns_should_follow_namespaces_as_they_come_and_go() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.settings_mut().watching.namespaces = vec!["team-*, !team-b".into()];
    runner.cluster().apply(CRD).unwrap();
    for ns in ["team-a", "team-b", "other"] {
        runner.cluster().apply(&namespace(ns)).unwrap();
    }
    let mut scenario = Scenario::new();
    for ns in ["team-a", "team-b", "other"] {
        scenario = scenario.apply(&object(ns, "x"));
    }
    runner.play(&scenario.settle()).await.unwrap();
    assert!(handled(&runner, "team-a", "x"), "{}", runner.output());
    assert!(!handled(&runner, "team-b", "x"), "team-b is excluded");
    assert!(!handled(&runner, "other", "x"), "other does not match");

    runner.cluster().apply(&namespace("team-c")).unwrap();
    runner
        .play(&Scenario::new().apply(&object("team-c", "y")).settle())
        .await
        .unwrap();
    assert!(handled(&runner, "team-c", "y"), "{}", runner.output());

    // Deleted, team-a's watch stops; created again, it starts again.
    runner.cluster().delete("namespaces", "", "team-a").unwrap();
    runner.play(&Scenario::new().settle()).await.unwrap();
    assert!(runner.cluster().get("namespaces", "", "team-a").is_none());
    runner.cluster().apply(&namespace("team-a")).unwrap();
    runner
        .play(&Scenario::new().apply(&object("team-a", "z")).settle())
        .await
        .unwrap();
    assert!(handled(&runner, "team-a", "z"), "{}", runner.output());
    let stops = lines_with(
        &runner,
        "Stopped watching kopf.dev/v1/kopfexamples in team-a",
    );
    let starts = lines_with(&runner, "Watching kopf.dev/v1/kopfexamples in team-a");
    assert_eq!((starts, stops), (2, 1), "{}", runner.output());
    assert_eq!(lines_with(&runner, "in team-b"), 0, "{}", runner.output());
    runner.stop().await.unwrap();
}

/// Without permission to list namespaces, the plain names among the
/// patterns are served as if they existed, and the operator says so.
#[tokio::test(start_paused = true)]
async fn without_namespace_listing_the_plain_names_should_be_served() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.settings_mut().watching.namespaces = vec!["team-a".into(), "team-*".into()];
    runner.cluster().apply(CRD).unwrap();
    for ns in ["team-a", "team-b"] {
        runner.cluster().apply(&namespace(ns)).unwrap();
    }
    // The operator's own namespaces only: no cluster-wide grants at all.
    let mut rbac = String::new();
    for ns in ["team-a", "team-b"] {
        rbac.push_str(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n\
             metadata: {{name: op, namespace: {ns}}}\nrules:\n\
             - apiGroups: [kopf.dev]\n  resources: [kopfexamples]\n  verbs: [list, watch, patch]\n\
             - apiGroups: [\"\"]\n  resources: [events]\n  verbs: [create]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {{name: op, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: op}}\n\
             subjects: [{{kind: ServiceAccount, name: op, namespace: team-a}}]\n---\n"
        ));
    }
    runner
        .service_account("team-a", "op")
        .rbac(&rbac)
        .unwrap()
        .tolerate_forbidden(true);
    runner
        .play(
            &Scenario::new()
                .apply(&object("team-a", "x"))
                .apply(&object("team-b", "x"))
                .settle(),
        )
        .await
        .unwrap();
    assert!(handled(&runner, "team-a", "x"), "{}", runner.output());
    assert!(
        !handled(&runner, "team-b", "x"),
        "only plain names are served"
    );
    assert_eq!(
        lines_with(
            &runner,
            "Not enough permissions to list namespaces. Falling back to a list of \
             namespaces which are assumed to exist: [\"team-a\"]"
        ),
        1,
        "{}",
        runner.output()
    );
    let denied: Vec<Value> = runner.denied().iter().map(|d| json!(d.message)).collect();
    assert!(
        denied.iter().any(|m| m
            .as_str()
            .unwrap()
            .contains("cannot list resource \"namespaces\"")),
        "{denied:?}"
    );
    runner.stop().await.unwrap();
}

/// `settings.scanning.disabled`: no CRD or namespace observation at all,
/// and no warning for it; the plain names are served.
#[tokio::test(start_paused = true)]
async fn disabled_scanning_should_serve_plain_names_without_observing() {
    let mut runner = KopfRunner::new(minimal::operator);
    runner.settings_mut().watching.namespaces = vec!["team-a".into(), "team-*".into()];
    runner.settings_mut().scanning.disabled = true;
    runner.cluster().apply(CRD).unwrap();
    for ns in ["team-a", "team-b"] {
        runner.cluster().apply(&namespace(ns)).unwrap();
    }
    runner
        .play(
            &Scenario::new()
                .apply(&object("team-a", "x"))
                .apply(&object("team-b", "x"))
                .settle(),
        )
        .await
        .unwrap();
    assert!(handled(&runner, "team-a", "x"));
    assert!(!handled(&runner, "team-b", "x"));
    assert_eq!(lines_with(&runner, "Not enough permissions"), 0);
    let journal = runner.cluster().journal().unwrap();
    let observed: Vec<String> = journal
        .entries(&fake_apiserver::testing::journal::Filter::default())
        .iter()
        .map(|e| e.path.clone())
        .filter(|p| p == "/api/v1/namespaces" || p.contains("customresourcedefinitions"))
        .collect();
    assert_eq!(observed, Vec::<String>::new(), "nothing observed");
    runner.stop().await.unwrap();
}
