//! The simulated cluster (issue 17): nodes, the scheduler, kubelets and
//! workload controllers, as clients of the in-process server, on tokio's
//! paused clock. Expected values are kube's documented behaviour.

use std::time::Duration;

use fake_apiserver::{controllers::selection::Selection, Clock, FakeApiServer};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Endpoints, Node, Pod, ServiceAccount},
    discovery::v1::EndpointSlice,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn cluster(nodes: usize) -> FakeApiServer {
    FakeApiServer::builder()
        .seed(1)
        .clock(Clock::tokio_from(1_700_000_000))
        .controllers(Selection::all())
        .nodes(nodes)
        .build()
}

/// Waits (virtual time) until `check` holds, at most `limit`.
async fn until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn writes_so_far(server: &FakeApiServer) -> usize {
    let writes = fake_apiserver::testing::journal::Filter {
        writes: true,
        ..Default::default()
    };
    server.journal().entries(&writes).len()
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": image,
                                                        "ports": [{"name": "http", "containerPort": 8080}]}]}}}
    }))
    .unwrap()
}

/// The images of the pods in `default` that are not being deleted.
async fn live_images(client: &kube::Client) -> Vec<String> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap()
        })
        .collect()
}

async fn available(api: &Api<Deployment>, name: &str, replicas: i32) -> bool {
    let d = api.get(name).await.unwrap();
    let s = d.status.unwrap_or_default();
    s.available_replicas == Some(replicas)
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.observed_generation == d.metadata.generation
}

#[tokio::test(start_paused = true)]
async fn a_deployment_should_become_available_with_running_pods_on_nodes() {
    let server = cluster(2);
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(
        until(Duration::from_secs(5), || async {
            nodes
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len()
                == 2
        })
        .await
    );
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1.27"))
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(60), || available(
            &deployments,
            "web",
            3
        ))
        .await
    );

    let d = serde_json::to_value(deployments.get("web").await.unwrap()).unwrap();
    let reason = |t: &str| {
        d["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()["reason"]
            .clone()
    };
    assert_eq!(reason("Available"), "MinimumReplicasAvailable");
    assert_eq!(reason("Progressing"), "NewReplicaSetAvailable");

    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rs = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 1);
    let hash = rs[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs[0].metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pods = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(pod
            .spec
            .as_ref()
            .unwrap()
            .node_name
            .as_deref()
            .is_some_and(|n| n.starts_with("node-")));
        assert!(status
            .pod_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.244.")));
        let c = &status.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready && c.started == Some(true) && c.restart_count == 0);
        assert!(pod
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with(&format!("web-{hash}-")));
    }
    // The scheduler spreads them.
    let on_first = pods
        .iter()
        .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("node-1"))
        .count();
    assert!((1..=2).contains(&on_first), "{on_first} of 3 on node-1");
}

#[tokio::test(start_paused = true)]
async fn a_new_template_should_roll_out_and_undo_should_bump_the_revision() {
    let server = cluster(1);
    let client = server.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment("web", 4, "nginx:1.27"))
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(60), || available(
            &deployments,
            "web",
            4
        ))
        .await
    );
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(120), || available(
            &deployments,
            "web",
            4
        ))
        .await
    );
    let images = live_images(&client).await;
    assert_eq!(images, vec!["nginx:1.28"; 4]);
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let mut revisions: Vec<(String, i32)> = sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|rs| serde_json::to_value(rs).unwrap())
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(revisions, vec![("1".to_string(), 0), ("2".to_string(), 4)]);
}

#[tokio::test(start_paused = true)]
async fn a_service_should_get_endpoints_of_its_ready_pods() {
    let server = cluster(1);
    let client = server.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment("web", 2, "nginx:1.27"))
        .await
        .unwrap();
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::default_namespaced(client.clone());
    services.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })).unwrap()).await.unwrap();
    assert!(
        until(Duration::from_secs(60), || available(
            &deployments,
            "web",
            2
        ))
        .await
    );
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    assert!(
        until(Duration::from_secs(10), || async {
            endpoints
                .get_opt("web")
                .await
                .unwrap()
                .and_then(|e| e.subsets)
                .is_some_and(|s| s[0].addresses.as_ref().is_some_and(|a| a.len() == 2))
        })
        .await
    );
    let e = endpoints.get("web").await.unwrap();
    assert_eq!(e.subsets.unwrap()[0].ports.as_ref().unwrap()[0].port, 8080);
    let slice = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(slice.len(), 1);
    let slice = serde_json::to_value(&slice[0]).unwrap();
    let endpoints = slice["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert!(
        endpoints.iter().all(|e| e["conditions"]["ready"] == true),
        "{slice}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unschedulable_pod_should_say_why_and_not_loop() {
    let server = cluster(1);
    let client = server.client();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "64"}}}]}
    })).unwrap()).await.unwrap();
    assert!(
        until(Duration::from_secs(10), || async {
            pods.get("big")
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.reason.as_deref() == Some("Unschedulable"))
                })
        })
        .await
    );
    let pod = pods.get("big").await.unwrap();
    let c = pod
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(c.status, "False");
    assert_eq!(c.message.as_deref(), Some("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."));
    let writes = writes_so_far(&server);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        writes_so_far(&server),
        writes,
        "a pod that fits nowhere is not retried in a loop"
    );
}

#[tokio::test(start_paused = true)]
async fn namespaces_should_get_a_default_service_account() {
    let server = cluster(1);
    let client = server.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    assert!(
        until(Duration::from_secs(5), || async {
            accounts.get_opt("default").await.unwrap().is_some()
        })
        .await
    );
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(5), || async {
            accounts.get_opt("default").await.unwrap().is_some()
        })
        .await
    );
}

async fn get(client: &kube::Client, path: &str) -> serde_json::Value {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    client
        .request::<serde_json::Value>(req)
        .await
        .unwrap_or(serde_json::Value::Null)
}

async fn post(client: &kube::Client, path: &str, body: serde_json::Value) {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap();
    client.request::<serde_json::Value>(req).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_job_should_run_its_completions_and_say_complete() {
    let server = cluster(1);
    let client = server.client();
    post(&client, "/apis/batch/v1/namespaces/default/jobs", json!({
        "metadata": {"name": "once"},
        "spec": {"completions": 3, "parallelism": 2, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36",
                            "command": ["true"]}]}}}
    })).await;
    assert!(
        until(Duration::from_secs(60), || async {
            let job = get(&client, "/apis/batch/v1/namespaces/default/jobs/once").await;
            job["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
        })
        .await
    );
    let job = get(&client, "/apis/batch/v1/namespaces/default/jobs/once").await;
    assert_eq!(
        (
            job["status"]["succeeded"].clone(),
            job["status"]["active"].clone()
        ),
        (json!(3), json!(0))
    );
    let types: Vec<_> = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].clone())
        .collect();
    assert_eq!(types, vec![json!("SuccessCriteriaMet"), json!("Complete")]);
    assert!(job["status"]["completionTime"].is_string());
    let pods = get(
        &client,
        "/api/v1/namespaces/default/pods?labelSelector=job-name%3Donce",
    )
    .await;
    let phases: Vec<_> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"]["phase"].clone())
        .collect();
    assert_eq!(phases, vec![json!("Succeeded"); 3]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_should_back_off_and_fail_past_its_limit() {
    let server = cluster(1);
    let client = server.client();
    post(&client, "/apis/batch/v1/namespaces/default/jobs", json!({
        "metadata": {"name": "broken"},
        "spec": {"backoffLimit": 2, "template": {
            "metadata": {"annotations": {"stages.fake.kopf.dev/exit-code": "3"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    })).await;
    assert!(
        until(Duration::from_secs(600), || async {
            let job = get(&client, "/apis/batch/v1/namespaces/default/jobs/broken").await;
            job["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"))
        })
        .await
    );
    let job = get(&client, "/apis/batch/v1/namespaces/default/jobs/broken").await;
    assert_eq!(job["status"]["failed"], 3);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()
        .clone();
    assert_eq!(
        (failed["reason"].as_str(), failed["message"].as_str()),
        (
            Some("BackoffLimitExceeded"),
            Some("Job has reached the specified backoff limit")
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_stateful_set_should_start_its_pods_in_order_with_bound_claims() {
    let server = cluster(1);
    let client = server.client();
    post(&client, "/apis/apps/v1/namespaces/default/statefulsets", json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    })).await;
    assert!(
        until(Duration::from_secs(120), || async {
            let s = get(&client, "/apis/apps/v1/namespaces/default/statefulsets/db").await;
            s["status"]["readyReplicas"] == 3
                && s["status"]["currentRevision"] == s["status"]["updateRevision"]
        })
        .await
    );
    let pods = get(
        &client,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Ddb",
    )
    .await;
    let mut created: Vec<(String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["status"]["startTime"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    created.sort();
    let names: Vec<_> = created.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        ["db-0", "db-1", "db-2"],
        "each starts after the previous is ready"
    );
    assert!(
        created[0].0 < created[1].0 && created[1].0 < created[2].0,
        "{created:?}"
    );
    let claims = get(&client, "/api/v1/namespaces/default/persistentvolumeclaims").await;
    let bound: Vec<_> = claims["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap().to_string(),
                c["status"]["phase"].clone(),
                c["spec"]["storageClassName"].clone(),
            )
        })
        .collect();
    assert_eq!(
        bound,
        vec![
            ("data-db-0".to_string(), json!("Bound"), json!("standard")),
            ("data-db-1".to_string(), json!("Bound"), json!("standard")),
            ("data-db-2".to_string(), json!("Bound"), json!("standard")),
        ]
    );
    // Down to one: the highest ordinals go; the claims stay.
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::default_namespaced(client.clone());
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    assert!(
        until(Duration::from_secs(120), || async {
            get(
                &client,
                "/api/v1/namespaces/default/pods?labelSelector=app%3Ddb",
            )
            .await["items"]
                .as_array()
                .is_some_and(|i| i.len() == 1)
        })
        .await
    );
    let left = get(
        &client,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Ddb",
    )
    .await;
    assert_eq!(left["items"][0]["metadata"]["name"], "db-0");
    let claims = get(&client, "/api/v1/namespaces/default/persistentvolumeclaims").await;
    assert_eq!(claims["items"].as_array().unwrap().len(), 3);
}

/// Injected faults while a rollout is in progress: refused pod creations
/// (a 500 on half of them), status writes that conflict, and every watch
/// cut and then expired (410 Gone on resume): the controllers retry and
/// relist, as real ones do, and the rollout still completes.
#[tokio::test(start_paused = true)]
async fn a_rollout_should_complete_through_injected_faults() {
    use fake_apiserver::testing::{
        faults::{FaultAction, FaultRule},
        inject::InjectRequest,
    };
    let server = cluster(2);
    let client = server.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment("web", 4, "nginx:1.27"))
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(60), || available(
            &deployments,
            "web",
            4
        ))
        .await
    );

    let injector = server.injector();
    let mut refused = FaultRule::new(
        &["create"],
        "pods",
        FaultAction::Status {
            code: 500,
            message: None,
            retry_after: None,
        },
    );
    refused.probability = Some(0.5);
    refused.times = Some(6);
    injector.add_fault(refused);
    injector.add_fault(
        FaultRule::new(
            &["patch"],
            "replicasets.apps",
            FaultAction::Status {
                code: 409,
                message: None,
                retry_after: None,
            },
        )
        .times(3),
    );
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for resource in ["pods", "replicasets.apps"] {
        injector
            .apply(&InjectRequest {
                action: Some("expire-next-resume".into()),
                resource: Some(resource.into()),
                ..Default::default()
            })
            .unwrap();
        injector
            .apply(&InjectRequest {
                action: Some("cut".into()),
                resource: Some(resource.into()),
                ..Default::default()
            })
            .unwrap();
    }
    assert!(
        until(Duration::from_secs(300), || available(
            &deployments,
            "web",
            4
        ))
        .await
    );
    let live = live_images(&client).await;
    assert_eq!(
        live,
        vec!["nginx:1.28"; 4],
        "exactly the new pods, none duplicated by a missed watch event"
    );
    let entries = server.journal().entries(&Default::default());
    let fired = entries.iter().filter(|e| e.fault.is_some()).count();
    assert!(fired >= 4, "the faults fired ({fired})");
    let relists = entries
        .iter()
        .filter(|e| e.verb == "list" && e.resource.as_deref() == Some("pods"))
        .count();
    assert!(
        relists >= 2,
        "the pod informer relisted after 410 Gone ({relists} lists)"
    );
}

/// `pods/eviction` honours a PodDisruptionBudget, as `kubectl drain` needs:
/// allowed while a disruption is left, then 429 with kube's message.
#[tokio::test(start_paused = true)]
async fn evictions_should_respect_disruption_budgets() {
    let server = cluster(1);
    let client = server.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1.27"))
        .await
        .unwrap();
    post(&client, "/apis/policy/v1/namespaces/default/poddisruptionbudgets", json!({
        "metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
    })).await;
    assert!(
        until(Duration::from_secs(60), || available(
            &deployments,
            "web",
            3
        ))
        .await
    );
    assert!(
        until(Duration::from_secs(10), || async {
            get(
                &client,
                "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web",
            )
            .await["status"]["disruptionsAllowed"]
                == 1
        })
        .await
    );
    let pdb = get(
        &client,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web",
    )
    .await;
    assert_eq!(
        (
            pdb["status"]["expectedPods"].clone(),
            pdb["status"]["currentHealthy"].clone(),
            pdb["status"]["desiredHealthy"].clone()
        ),
        (json!(3), json!(3), json!(2))
    );
    let pods = get(
        &client,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb",
    )
    .await;
    let names: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let evict = |name: &str| {
        let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/eviction"))
            .header("content-type", "application/json")
            .body(json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}).to_string().into_bytes())
            .unwrap();
        let client = client.clone();
        async move { client.request::<serde_json::Value>(req).await }
    };
    evict(&names[0]).await.unwrap();
    match evict(&names[1]).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
            assert_eq!(
                e.message,
                "Cannot evict pod as it would violate the pod's disruption budget."
            );
        }
        other => panic!("a second eviction within the budget's window: {other:?}"),
    }
    // Once the replacement is ready, the budget allows one again.
    assert!(
        until(Duration::from_secs(60), || available(
            &deployments,
            "web",
            3
        ))
        .await
    );
    assert!(
        until(Duration::from_secs(10), || async {
            get(
                &client,
                "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web",
            )
            .await["status"]["disruptionsAllowed"]
                == 1
        })
        .await
    );
    evict(&names[1]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_daemon_set_should_run_one_pod_per_eligible_node() {
    let server = cluster(3);
    let client = server.client();
    post(&client, "/apis/apps/v1/namespaces/kube-system/daemonsets", json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}}
    })).await;
    let ds = || {
        get(
            &client,
            "/apis/apps/v1/namespaces/kube-system/daemonsets/agent",
        )
    };
    assert!(
        until(Duration::from_secs(60), || async {
            ds().await["status"]["numberReady"] == 3
        })
        .await
    );
    let pods = get(
        &client,
        "/api/v1/namespaces/kube-system/pods?labelSelector=app%3Dagent",
    )
    .await;
    let mut nodes: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    // A node the daemon does not tolerate loses its pod; a cordoned one keeps it.
    let nodes_api: Api<Node> = Api::all(client.clone());
    nodes_api
        .patch(
            "node-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}})),
        )
        .await
        .unwrap();
    nodes_api
        .patch(
            "node-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(60), || async {
            let s = ds().await["status"].clone();
            s["desiredNumberScheduled"] == 2
                && s["numberReady"] == 2
                && s["numberMisscheduled"] == 0
        })
        .await
    );
}

/// A CronJob on the cluster's clock: an hour of virtual time runs its
/// twelve five-minute Jobs in no wall time, and only the history limits'
/// worth of finished Jobs stays.
#[tokio::test(start_paused = true)]
async fn a_cron_job_should_run_on_schedule_in_virtual_time() {
    let server = cluster(1);
    let client = server.client();
    post(&client, "/apis/batch/v1/namespaces/default/cronjobs", json!({
        "metadata": {"name": "tick"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}
    })).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let cj = get(&client, "/apis/batch/v1/namespaces/default/cronjobs/tick").await;
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
    assert!(cj["status"]["lastSuccessfulTime"].is_string(), "{cj}");
    let created = server
        .journal()
        .entries(&fake_apiserver::testing::journal::Filter {
            verb: Some("create".into()),
            resource: Some("jobs.batch".into()),
            ..Default::default()
        });
    assert_eq!(created.len(), 12, "one Job every five minutes for an hour");
    let jobs = get(&client, "/apis/batch/v1/namespaces/default/jobs").await;
    let left = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["deletionTimestamp"].is_null())
        .count();
    assert!(
        left <= 4,
        "three successful Jobs kept (and at most the one running): {left}"
    );
}
