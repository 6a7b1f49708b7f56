//! Authentication and RBAC (issue 14), in process: who a request is
//! (tokens, ServiceAccount tokens, anonymous, impersonation, client
//! certificates), what it may do (roles, bindings, aggregation,
//! escalation prevention), and the exact `Status` kube-apiserver answers
//! when it is no one (401) or may not (403). Expected messages are
//! kube-apiserver's wording (`k8s.io/apiserver` `forbiddenMessage`, RBAC's
//! `ConfirmNoEscalation`, the impersonation filter).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use fake_apiserver::{
    auth::{gate::Mode, UserInfo},
    Clock, FakeApiServer,
};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Sends one request, with `token` as its bearer token (if any); the code
/// and the body.
async fn send(
    server: &FakeApiServer,
    token: Option<&str>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| *k == "content-type") {
        req = req.header("content-type", "application/json");
    }
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let resp = server
        .service()
        .oneshot(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn rbac_server() -> FakeApiServer {
    FakeApiServer::builder()
        .authorization(Mode::Rbac)
        .clock(Clock::tokio_from(1_700_000_000))
        .build()
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

/// The administrator creates `obj` at `uri`.
async fn admin_create(server: &FakeApiServer, uri: &str, obj: Value) -> Value {
    let (code, body) = send(server, Some(server.admin_token()), "POST", uri, &[], obj).await;
    assert_eq!(code, 201, "{body}");
    body
}

fn forbidden(message: &str, group: &str, kind: &str, name: &str) -> Value {
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        details.insert("kind".into(), json!(kind));
    }
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Forbidden", "details": details, "code": 403,
    })
}

fn unauthorized() -> Value {
    serde_json::from_str(r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_request_should_get_kube_apiservers_status() {
    let server = rbac_server();
    let op = server.token_for(user(
        "system:serviceaccount:ops:op",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:ops",
            "system:authenticated",
        ],
    ));
    let (code, body) = send(
        &server,
        Some(&op),
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body,
        forbidden(
            r#"configmaps is forbidden: User "system:serviceaccount:ops:op" cannot list resource "configmaps" in API group "" in the namespace "default""#,
            "",
            "configmaps",
            ""
        )
    );
    // A named object, a subresource, a group, the cluster scope.
    let (_, body) = send(
        &server,
        Some(&op),
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(
        body,
        forbidden(
            r#"deployments.apps "web" is forbidden: User "system:serviceaccount:ops:op" cannot get resource "deployments/scale" in API group "apps" in the namespace "default""#,
            "apps",
            "deployments",
            "web"
        )
    );
    let (_, body) = send(
        &server,
        Some(&op),
        "GET",
        "/api/v1/nodes?watch=true",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(
        body["message"],
        r#"nodes is forbidden: User "system:serviceaccount:ops:op" cannot watch resource "nodes" in API group "" at the cluster scope"#
    );
    // Discovery is granted to every authenticated user (system:discovery);
    // not to the anonymous user.
    let (code, _) = send(&server, Some(&op), "GET", "/apis", &[], Value::Null).await;
    assert_eq!(code, 200);
    let (code, body) = send(&server, None, "GET", "/apis", &[], Value::Null).await;
    assert_eq!(code, 403);
    assert_eq!(
        body,
        forbidden(
            r#"forbidden: User "system:anonymous" cannot get path "/apis""#,
            "",
            "",
            ""
        )
    );
    let (code, _) = send(&server, None, "GET", "/version", &[], Value::Null).await;
    assert_eq!(code, 200, "system:public-info-viewer");
}

#[tokio::test(start_paused = true)]
async fn roles_and_bindings_should_grant_exactly_what_they_say() {
    let server = rbac_server();
    let alice = server.token_for(user("alice", &["dev", "system:authenticated"]));
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/roles"),
        json!({"metadata": {"name": "cm-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"], "verbs": ["update", "patch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ]}),
    )
    .await;
    let can = |verb: &'static str, uri: String| {
        let server = server.clone();
        let alice = alice.clone();
        async move {
            let method = match verb {
                "get" | "list" => "GET",
                "patch" => "PATCH",
                _ => "POST",
            };
            let headers: &[(&str, &str)] = if verb == "patch" {
                &[("content-type", "application/merge-patch+json")]
            } else {
                &[]
            };
            let body = if verb == "patch" {
                json!({"data": {"a": "b"}})
            } else if verb == "create" {
                json!({"metadata": {"name": "mine"}})
            } else {
                Value::Null
            };
            send(&server, Some(&alice), method, &uri, headers, body)
                .await
                .0
                != 403
        }
    };
    let cms = "/api/v1/namespaces/default/configmaps".to_string();
    assert!(!can("list", cms.clone()).await, "not bound yet");
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/rolebindings"),
        json!({"metadata": {"name": "alice-reads"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
               "subjects": [{"kind": "Group", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    assert!(can("list", cms.clone()).await, "bound through the group");
    assert!(!can("create", cms.clone()).await);
    assert!(!can("list", "/api/v1/namespaces/kube-system/configmaps".into()).await);
    assert!(
        !can("list", "/api/v1/configmaps".into()).await,
        "all namespaces is the cluster scope"
    );
    admin_create(&server, &cms, json!({"metadata": {"name": "mine"}})).await;
    admin_create(&server, &cms, json!({"metadata": {"name": "theirs"}})).await;
    assert!(can("patch", format!("{cms}/mine")).await);
    assert!(
        !can("patch", format!("{cms}/theirs")).await,
        "resourceNames"
    );
    assert!(can("get", "/api/v1/namespaces/default/pods/p/log".into()).await);
    assert!(!can("get", "/api/v1/namespaces/default/pods/p".into()).await);
    // A ClusterRoleBinding of the bootstrap `view` role: reads everywhere.
    admin_create(
        &server,
        &format!("{rbac}/clusterrolebindings"),
        json!({"metadata": {"name": "alice-views"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    assert!(can("list", "/apis/apps/v1/deployments".into()).await);
    assert!(
        !can("list", "/api/v1/namespaces/default/secrets".into()).await,
        "view has no secrets"
    );
    // SubjectAccessReview names the binding that allowed it.
    let (code, review) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        &[],
        json!({"spec": {"user": "alice", "groups": ["dev"], "resourceAttributes": {
            "namespace": "default", "verb": "get", "resource": "configmaps", "name": "x"}}}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        review["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"alice-views\" of ClusterRole \"view\" to User \"alice\""})
    );
}

#[tokio::test(start_paused = true)]
async fn aggregated_cluster_roles_should_follow_their_sources() {
    let server = rbac_server();
    let roles = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    let view = |server: FakeApiServer| async move {
        send(
            &server,
            Some(server.admin_token()),
            "GET",
            &format!("{roles}/view"),
            &[],
            Value::Null,
        )
        .await
        .1["rules"]
            .clone()
    };
    let widget = json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]});
    assert!(!view(server.clone())
        .await
        .as_array()
        .unwrap()
        .contains(&widget));
    admin_create(
        &server,
        roles,
        json!({"metadata": {"name": "widget-viewer", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
               "rules": [widget]}),
    )
    .await;
    assert!(view(server.clone())
        .await
        .as_array()
        .unwrap()
        .contains(&widget));
    // edit aggregates view's sources too (view is labelled aggregate-to-edit).
    let (_, edit) = send(
        &server,
        Some(server.admin_token()),
        "GET",
        &format!("{roles}/edit"),
        &[],
        Value::Null,
    )
    .await;
    assert!(
        edit["rules"].as_array().unwrap().contains(&widget),
        "{edit}"
    );
    let (code, _) = send(
        &server,
        Some(server.admin_token()),
        "DELETE",
        &format!("{roles}/widget-viewer"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert!(!view(server.clone())
        .await
        .as_array()
        .unwrap()
        .contains(&widget));
}

#[tokio::test(start_paused = true)]
async fn nobody_should_grant_what_they_do_not_hold() {
    let server = rbac_server();
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let bob = server.token_for(user("bob", &["system:authenticated"]));
    // Bob may write roles and bindings in default, and read pods.
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/roles"),
        json!({"metadata": {"name": "rbac-writer"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        ]}),
    )
    .await;
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/rolebindings"),
        json!({"metadata": {"name": "bob"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-writer"},
               "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    let roles = format!("{rbac}/namespaces/default/roles");
    // Granting what he holds is fine.
    let (code, body) = send(&server, Some(&bob), "POST", &roles, &[],
        json!({"metadata": {"name": "pod-reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})).await;
    assert_eq!(code, 201, "{body}");
    // Granting more is not.
    let (code, body) = send(
        &server,
        Some(&bob),
        "POST",
        &roles,
        &[],
        json!({"metadata": {"name": "secret-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get", "delete"]}]}),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body,
        forbidden(
            "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}",
            "rbac.authorization.k8s.io",
            "roles",
            "secret-reader"
        )
    );
    // A patch that would escalate is refused too, and changes nothing.
    let (code, _) = send(
        &server,
        Some(&bob),
        "PATCH",
        &format!("{roles}/pod-reader"),
        &[("content-type", "application/merge-patch+json")],
        json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    )
    .await;
    assert_eq!(code, 403);
    // Binding `edit` needs its rules, or the `bind` verb on it.
    let bindings = format!("{rbac}/namespaces/default/rolebindings");
    let bind_edit = json!({"metadata": {"name": "bob-edits"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "bob"}]});
    let (code, body) = send(
        &server,
        Some(&bob),
        "POST",
        &bindings,
        &[],
        bind_edit.clone(),
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "rolebindings.rbac.authorization.k8s.io \"bob-edits\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"bindings\"], Verbs:[\"get\" \"list\" \"watch\"]}\n{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"create\" \"delete\" \"deletecollection\" \"patch\" \"update\" \"get\" \"list\" \"watch\"]}\n"
        ),
        "{body}"
    );
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/roles"),
        json!({"metadata": {"name": "edit-binder"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["edit"], "verbs": ["bind"]}]}),
    )
    .await;
    admin_create(
        &server,
        &bindings,
        json!({"metadata": {"name": "bob-binds"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edit-binder"},
               "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    let (code, body) = send(&server, Some(&bob), "POST", &bindings, &[], bind_edit).await;
    assert_eq!(code, 201, "{body}");
    // A binding to a role that does not exist.
    let (code, body) = send(&server, Some(&bob), "POST", &bindings, &[],
        json!({"metadata": {"name": "x"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nope"},
               "subjects": [{"kind": "User", "name": "bob"}]})).await;
    assert_eq!(code, 404);
    assert_eq!(
        body["message"],
        "roles.rbac.authorization.k8s.io \"nope\" not found"
    );
}

#[tokio::test(start_paused = true)]
async fn service_account_tokens_should_authenticate_until_they_expire() {
    let server = rbac_server();
    admin_create(
        &server,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "ops"}}),
    )
    .await;
    admin_create(
        &server,
        "/api/v1/namespaces/ops/serviceaccounts",
        json!({"metadata": {"name": "op"}}),
    )
    .await;
    let request = |seconds: i64, audiences: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": seconds, "audiences": audiences}})
    };
    let uri = "/api/v1/namespaces/ops/serviceaccounts/op/token";
    let (code, body) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        uri,
        &[],
        request(599, json!([])),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["message"],
        "TokenRequest.authentication.k8s.io \"op\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    );
    let (code, body) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        uri,
        &[],
        request(600, json!([])),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "TokenRequest");
    assert_eq!(
        body["status"]["expirationTimestamp"],
        "2023-11-14T22:23:20Z"
    );
    let token = body["status"]["token"].as_str().unwrap().to_string();
    let whoami = |token: String| {
        let server = server.clone();
        async move {
            send(
                &server,
                Some(&token),
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                &[],
                json!({}),
            )
            .await
        }
    };
    let (code, body) = whoami(token.clone()).await;
    assert_eq!(code, 201);
    assert_eq!(
        body["status"]["userInfo"]["username"],
        "system:serviceaccount:ops:op"
    );
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:ops",
            "system:authenticated"
        ])
    );
    // Forged, truncated, or for another audience: no one.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        forged,
        token[..token.len() - 10].to_string(),
        "not.a.jwt".into(),
        "garbage".into(),
    ] {
        let (code, body) = whoami(bad).await;
        assert_eq!((code, body), (401, unauthorized()));
    }
    let (_, body) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        uri,
        &[],
        request(3600, json!(["vault"])),
    )
    .await;
    let vault = body["status"]["token"].as_str().unwrap().to_string();
    assert_eq!(whoami(vault.clone()).await.0, 401, "not for the API server");
    // TokenReview says who a token is, for the audiences asked.
    let (_, review) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &[],
        json!({"spec": {"token": vault, "audiences": ["vault"]}}),
    )
    .await;
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(review["status"]["audiences"], json!(["vault"]));
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:ops:op"
    );
    // Ten minutes and a bit later (kube allows a minute of skew), expired.
    tokio::time::advance(Duration::from_secs(600 + 61)).await;
    assert_eq!(whoami(token.clone()).await.0, 401);
    // A token of a deleted ServiceAccount is no one.
    let (_, body) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        uri,
        &[],
        request(3600, json!([])),
    )
    .await;
    let fresh = body["status"]["token"].as_str().unwrap().to_string();
    assert_eq!(whoami(fresh.clone()).await.0, 201);
    send(
        &server,
        Some(server.admin_token()),
        "DELETE",
        "/api/v1/namespaces/ops/serviceaccounts/op",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(whoami(fresh).await.0, 401);
}

#[tokio::test(start_paused = true)]
async fn anonymous_requests_should_be_refused_when_turned_off() {
    let server = FakeApiServer::builder()
        .authorization(Mode::Rbac)
        .anonymous(false)
        .build();
    let (code, body) = send(&server, None, "GET", "/version", &[], Value::Null).await;
    assert_eq!((code, body), (401, unauthorized()));
    let (code, _) = send(
        &server,
        Some(server.admin_token()),
        "GET",
        "/version",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test(start_paused = true)]
async fn impersonation_should_need_the_impersonate_verb() {
    let server = rbac_server();
    let alice = server.token_for(user("alice", &["system:authenticated"]));
    let whoami = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let (code, body) = send(
        &server,
        Some(&alice),
        "POST",
        whoami,
        &[("impersonate-user", "bob")],
        json!({}),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body,
        forbidden(
            r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#,
            "",
            "users",
            "bob"
        )
    );
    // The administrator may impersonate anyone: kubectl --as.
    let (code, body) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        whoami,
        &[("impersonate-user", "system:serviceaccount:ops:op")],
        json!({}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "system:serviceaccount:ops:op",
               "groups": ["system:serviceaccounts", "system:serviceaccounts:ops", "system:authenticated"]})
    );
    let (_, body) = send(
        &server,
        Some(server.admin_token()),
        "POST",
        whoami,
        &[
            ("impersonate-user", "carol"),
            ("impersonate-group", "dev"),
            ("impersonate-extra-scopes", "view"),
        ],
        json!({}),
    )
    .await;
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "carol", "groups": ["dev", "system:authenticated"], "extra": {"scopes": ["view"]}})
    );
    // The impersonated user is then authorized as itself.
    let (code, body) = send(
        &server,
        Some(server.admin_token()),
        "GET",
        "/api/v1/namespaces/default/secrets",
        &[("impersonate-user", "carol")],
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(r#"User "carol" cannot list"#));
}

#[tokio::test(start_paused = true)]
async fn the_control_api_should_need_the_administrator_under_rbac() {
    let server = FakeApiServer::builder()
        .authorization(Mode::Rbac)
        .control(true, None)
        .build();
    let alice = server.token_for(user("alice", &["system:authenticated"]));
    let (code, body) = send(
        &server,
        Some(&alice),
        "GET",
        "/_fake/v1/faults",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"forbidden: User "alice" cannot get path "/_fake/v1/faults""#
    );
    assert_eq!(
        send(&server, None, "GET", "/_fake/v1/faults", &[], Value::Null)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            &server,
            Some("forged"),
            "GET",
            "/_fake/v1/faults",
            &[],
            Value::Null
        )
        .await
        .0,
        401
    );
    let (code, _) = send(
        &server,
        Some(server.admin_token()),
        "GET",
        "/_fake/v1/faults",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test(start_paused = true)]
async fn rules_reviews_should_list_what_a_user_holds() {
    let server = rbac_server();
    let alice = server.token_for(user("alice", &["system:authenticated"]));
    let (code, body) = send(
        &server,
        Some(&alice),
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        &[],
        json!({"spec": {"namespace": "default"}}),
    )
    .await;
    assert_eq!(code, 201);
    let rules = body["status"]["resourceRules"].as_array().unwrap();
    assert!(
        rules.contains(
            &json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]})
        ),
        "{body}"
    );
    assert!(body["status"]["nonResourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["nonResourceURLs"][0] == "/api"));
    assert_eq!(body["status"]["incomplete"], false);
}

/// Over TLS, a client certificate signed by the server's CA is its CN, in
/// its O; a kubeconfig that carries one reaches the server as that user.
#[tokio::test]
async fn client_certificates_should_authenticate_over_tls() {
    let server = FakeApiServer::builder().authorization(Mode::Rbac).build();
    let serving = server
        .serve_tls("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    assert!(serving.url().starts_with("https://127.0.0.1:"));
    let client_of = |kubeconfig: String| async move {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let whoami = |client: kube::Client| async move {
        let req = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
            .header("content-type", "application/json")
            .body(
                br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec(),
            )
            .unwrap();
        let body: Value = client.request(req).await.unwrap();
        body["status"]["userInfo"].clone()
    };
    let admin = client_of(serving.kubeconfig()).await;
    assert_eq!(whoami(admin).await["username"], "system:admin");
    let dave = client_of(
        serving
            .kubeconfig_with_certificate("dave", Some("qa"))
            .unwrap(),
    )
    .await;
    assert_eq!(
        whoami(dave.clone()).await,
        json!({"username": "dave", "groups": ["qa", "system:authenticated"]})
    );
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::default_namespaced(dave);
    let err = cms.list(&Default::default()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"User \"dave\" cannot list resource \"configmaps\""#)
            || err
                .to_string()
                .contains(r#"User "dave" cannot list resource "configmaps""#),
        "{err}"
    );
    // A certificate another CA signed authenticates no one: 401, as
    // kube-apiserver answers (the handshake itself succeeds).
    let other = fake_apiserver::auth::pki::Authority::new("another CA").unwrap();
    let stranger = other.client("mallory", Some("system:masters")).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": serving.url(),
            "certificate-authority-data": b64(serving.ca_pem().unwrap())}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "users": [{"name": "x", "user": {"client-certificate-data": b64(&stranger.cert),
            "client-key-data": b64(&stranger.key)}}],
    });
    let mallory = client_of(serde_yaml::to_string(&kubeconfig).unwrap()).await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::default_namespaced(mallory);
    match cms.list(&Default::default()).await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"))
        }
        other => panic!("{other}"),
    }
    serving.shutdown().await;
}

/// What kube-apiserver's RequestInfo reads beyond the path: a namespace's
/// own requests are in that namespace, and a list or watch narrowed to one
/// name by a field selector is about that name (`resourceNames` apply).
#[tokio::test(start_paused = true)]
async fn namespaces_and_single_name_lists_should_be_authorized_as_kube_does() {
    let server = rbac_server();
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let alice = server.token_for(user("alice", &["system:authenticated"]));
    admin_create(
        &server,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "team"}}),
    )
    .await;
    admin_create(
        &server,
        &format!("{rbac}/namespaces/team/rolebindings"),
        json!({"metadata": {"name": "alice-views"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "alice"}]}),
    )
    .await;
    let (code, _) = send(
        &server,
        Some(&alice),
        "GET",
        "/api/v1/namespaces/team",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "view in a namespace lets one get it");
    let (code, body) = send(
        &server,
        Some(&alice),
        "GET",
        "/api/v1/namespaces/default",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"namespaces "default" is forbidden: User "alice" cannot get resource "namespaces" in API group "" in the namespace "default""#
    );
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/roles"),
        json!({"metadata": {"name": "one-cm"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["list", "watch"]}]}),
    )
    .await;
    admin_create(
        &server,
        &format!("{rbac}/namespaces/default/rolebindings"),
        json!({"metadata": {"name": "alice-one-cm"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
               "subjects": [{"kind": "User", "name": "alice"}]}),
    )
    .await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, _) = send(
        &server,
        Some(&alice),
        "GET",
        &format!("{cms}?fieldSelector=metadata.name%3Da"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = send(
        &server,
        Some(&alice),
        "GET",
        &format!("{cms}?fieldSelector=metadata.name%3Db"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = send(&server, Some(&alice), "GET", cms, &[], Value::Null).await;
    assert_eq!(code, 403);
    // An empty Impersonate-User header impersonates no one.
    let (code, body) = send(
        &server,
        Some(&alice),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &[("impersonate-user", "")],
        json!({}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(body["status"]["userInfo"]["username"], "alice");
}

/// A binding whose role is missing: kube's reason names it, and the
/// administrator's token is valid for the API server's audience only.
#[tokio::test(start_paused = true)]
async fn reviews_should_say_what_kube_says() {
    let server = rbac_server();
    admin_create(
        &server,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        json!({"metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nope"},
               "subjects": [{"kind": "User", "name": "bob"}]}),
    )
    .await;
    let (_, review) = send(&server, Some(server.admin_token()), "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", &[],
        json!({"spec": {"user": "bob", "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}})).await;
    assert_eq!(
        review["status"],
        json!({"allowed": false, "reason": "RBAC: role.rbac.authorization.k8s.io \"nope\" not found"})
    );
    let token_review = |audiences: Value| {
        let server = server.clone();
        async move {
            send(
                &server,
                Some(server.admin_token()),
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                &[],
                json!({"spec": {"token": server.admin_token(), "audiences": audiences}}),
            )
            .await
            .1["status"]
                .clone()
        }
    };
    assert_eq!(token_review(json!([])).await["authenticated"], true);
    let vault = token_review(json!(["vault"])).await;
    assert_eq!(vault["authenticated"], Value::Null, "{vault}");
    assert!(
        vault["error"]
            .as_str()
            .unwrap()
            .contains("invalid for the target audiences"),
        "{vault}"
    );
}
