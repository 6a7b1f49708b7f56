//! The control API under `/_fake/v1` (a prefix kube-apiserver never uses):
//! watch injection, fault rules and the journal, for tests in any language
//! and for the `fake-apiserver inject|fault|journal` subcommands.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | POST | `/_fake/v1/inject` | an `InjectRequest` | `{"watches": n}` and the like |
//! | GET | `/_fake/v1/faults` | | installed rules with firing counts |
//! | POST | `/_fake/v1/faults` | a `FaultRule` | `{"id": n}` |
//! | DELETE | `/_fake/v1/faults[/{id}]` | | removes one rule, or all |
//! | GET | `/_fake/v1/firings` | | every firing, in order |
//! | GET | `/_fake/v1/journal` | `verb`, `resource`, `name`, `namespace`, `manager`, `writes`, `normalized` | JSON lines |
//! | DELETE | `/_fake/v1/journal` | | clears it |
//! | POST | `/_fake/v1/nodes/{name}/down`, `/up` | | the node's `Ready` becomes `Unknown`, or `True` |
//! | POST | `/_fake/v1/namespaces/{ns}/pods/{name}/fail` | `{"failure": "CrashLoopBackOff", "exitCode": 1}` | the pod's containers fail from now on |
//!
//! Served only when enabled; when a token is set, every call needs
//! `Authorization: Bearer <token>` or the administrator's credentials;
//! under RBAC without a token, only the administrator (`system:masters`)
//! may call it.

use bytes::Bytes;
use http::{header, Method};
use serde_json::{json, Value};

use crate::{
    apimachinery::errors::ApiError,
    auth::{gate::Mode, rbac::MASTERS, UserInfo},
    endpoints::{
        response::{header_of, Answer},
        Shared,
    },
    testing::{
        faults::FaultRule,
        inject::{InjectError, InjectRequest},
        journal::Filter,
    },
};

pub(super) fn handle(
    shared: &Shared,
    parts: &http::request::Parts,
    path: &str,
    body: &Bytes,
    user: Option<&UserInfo>,
) -> Answer {
    if !shared.control.enabled {
        return Answer::Error(ApiError::no_route());
    }
    // Its own token, or the administrator; under RBAC nobody else.
    let own_token = shared.control.token.as_deref().is_some_and(|token| {
        header_of(parts, header::AUTHORIZATION).strip_prefix("Bearer ") == Some(token)
    });
    let admin = user.is_some_and(|u| u.groups.iter().any(|g| g == MASTERS));
    let open = shared.control.token.is_none() && shared.gate.mode() == Mode::AlwaysAllow;
    if !(own_token || admin || open) {
        return Answer::Error(match user {
            Some(u) if shared.control.token.is_none() => crate::auth::forbidden(
                u,
                &crate::auth::Attributes {
                    verb: parts.method.as_str().to_ascii_lowercase(),
                    path: parts.uri.path().to_string(),
                    ..Default::default()
                },
                "",
            ),
            _ => ApiError::unauthorized(),
        });
    }
    route(
        shared,
        &parts.method,
        path,
        parts.uri.query().unwrap_or_default(),
        body,
    )
    .unwrap_or_else(Answer::Error)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Answer, ApiError> {
    let inj = &shared.injector;
    match (method, path.trim_end_matches('/')) {
        (&Method::POST, "/inject") => {
            let req: InjectRequest = parse(body)?;
            let out = inj.apply(&req).map_err(|e| match e {
                InjectError::UnknownResource(_) => ApiError::new(404, "NotFound", e.to_string()),
                InjectError::Refused(api) => *api,
                other => ApiError::bad_request(other.to_string()),
            })?;
            Ok(Answer::value(out))
        }
        (&Method::GET, "/faults") => Ok(Answer::value(
            serde_json::to_value(inj.faults()).unwrap_or_default(),
        )),
        (&Method::POST, "/faults") => {
            let rule: FaultRule = parse(body)?;
            if rule.action.is_none() {
                return Err(ApiError::bad_request("a fault rule needs an action"));
            }
            if rule.probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                return Err(ApiError::bad_request("probability must be between 0 and 1"));
            }
            Ok(Answer::value(json!({"id": inj.add_fault(rule)})))
        }
        (&Method::DELETE, "/faults") => {
            inj.clear_faults();
            Ok(Answer::value(json!({"removed": "all"})))
        }
        (&Method::DELETE, p) if p.starts_with("/faults/") => {
            let id: u64 = p["/faults/".len()..]
                .parse()
                .map_err(|_| ApiError::bad_request("fault ids are numbers"))?;
            if inj.remove_fault(id) {
                Ok(Answer::value(json!({"removed": id})))
            } else {
                Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("no fault rule {id}"),
                ))
            }
        }
        (&Method::GET, "/firings") => Ok(Answer::value(
            serde_json::to_value(inj.firings()).unwrap_or_default(),
        )),
        (&Method::GET, "/journal") => {
            let mut filter = Filter::default();
            let mut normalized = false;
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                let v = Some(v.into_owned()).filter(|v| !v.is_empty());
                match k.as_ref() {
                    "verb" => filter.verb = v,
                    "resource" => filter.resource = v,
                    "name" => filter.name = v,
                    "namespace" => filter.namespace = v,
                    "manager" => filter.manager = v,
                    "user" => filter.user = v,
                    "writes" => filter.writes = v.as_deref() == Some("true"),
                    "normalized" => normalized = v.as_deref() == Some("true"),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unknown journal filter {other:?}"
                        )))
                    }
                }
            }
            let lines = if normalized {
                shared.journal.normalized(&filter)
            } else {
                shared.journal.json_lines(&filter)
            };
            Ok(Answer::Json(
                200,
                Bytes::from(lines),
                "application/x-ndjson",
            ))
        }
        (&Method::DELETE, "/journal") => {
            shared.journal.clear();
            Ok(Answer::value(Value::Object(Default::default())))
        }
        (&Method::POST, p) if p.starts_with("/nodes/") => {
            let rest = &p["/nodes/".len()..];
            let (node, up) = match rest.rsplit_once('/') {
                Some((node, "down")) => (node, false),
                Some((node, "up")) => (node, true),
                _ => return Err(ApiError::no_route()),
            };
            let now = shared.api.clock.rfc3339();
            crate::controllers::incidents::set_node_ready(&*shared.api, node, up, &now)?;
            Ok(Answer::value(json!({"node": node, "ready": up})))
        }
        (&Method::POST, p) if p.starts_with("/namespaces/") && p.ends_with("/fail") => {
            let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            let [_, ns, "pods", pod, "fail"] = parts.as_slice() else {
                return Err(ApiError::no_route());
            };
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Fail {
                failure: String,
                #[serde(default)]
                exit_code: Option<i32>,
            }
            let fail: Fail = parse(body)?;
            crate::controllers::incidents::fail_pod(
                &*shared.api,
                ns,
                pod,
                &fail.failure,
                fail.exit_code,
            )?;
            Ok(Answer::value(
                json!({"pod": format!("{ns}/{pod}"), "failure": fail.failure}),
            ))
        }
        _ => Err(ApiError::no_route()),
    }
}
