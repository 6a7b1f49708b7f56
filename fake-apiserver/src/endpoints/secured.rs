//! What authentication and authorization add to the verbs: the
//! TokenRequest API (`serviceaccounts/NAME/token`, what `kubectl create
//! token` posts), and RBAC's escalation check of writes of roles and
//! bindings (on the object as it would be stored, so patches included).

use bytes::Bytes;
use http::{header, Method};
use serde_json::{json, Value};

use crate::{
    apimachinery::{
        clock::format_time,
        errors::{ApiError, Cause},
    },
    auth::{authn::ServiceAccount, escalation, gate::Mode, UserInfo},
    endpoints::{
        decode::decode_object,
        handlers::patch_type,
        response::{header_of, Answer},
        route::Query,
        ApiService,
    },
    registry::{
        patch::PatchType,
        rest::{Reply, Target},
        semantics::Endpoint,
    },
};

/// The shortest and longest lifetimes a TokenRequest may ask for.
const MIN_TOKEN_SECONDS: i64 = 10 * 60;
const MAX_TOKEN_SECONDS: i64 = 1 << 32;

impl ApiService {
    /// `POST serviceaccounts/NAME/token`: a token for the ServiceAccount,
    /// for the audiences and lifetime asked (an hour by default),
    /// optionally bound to a Pod or Secret.
    pub(super) fn token_request(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        t: &Target,
    ) -> Result<Answer, ApiError> {
        if parts.method != Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        let api = &self.shared.api;
        let account: Value = serde_json::from_slice(&api.get(t)?.body)
            .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))?;
        let mut request = decode_object(body, &header_of(parts, header::CONTENT_TYPE))?;
        let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
        let seconds = spec["expirationSeconds"].as_i64().unwrap_or(3600);
        let mut causes = Vec::new();
        if seconds < MIN_TOKEN_SECONDS {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                &json!(seconds),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if seconds > MAX_TOKEN_SECONDS {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                &json!(seconds),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let audiences = crate::auth::strings(&spec, "audiences");
        let bound = self.bound_object(t, &spec["boundObjectRef"], &mut causes)?;
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                &t.name,
                causes,
            ));
        }
        let now = api.clock.now();
        let issued = ServiceAccount {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            uid: account["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .into(),
        };
        let authn = self.shared.gate.authn();
        let token = authn.issue(
            &issued,
            &audiences,
            now.as_second(),
            seconds,
            bound
                .as_ref()
                .map(|(k, n, u)| (k.as_str(), n.as_str(), u.as_str())),
        );
        let expires = jiff::Timestamp::from_second(now.as_second() + seconds).unwrap_or(now);
        request["apiVersion"] = json!("authentication.k8s.io/v1");
        request["kind"] = json!("TokenRequest");
        request["metadata"] = json!({
            "name": t.name, "namespace": t.namespace, "creationTimestamp": format_time(now),
        });
        request["spec"] = json!({
            "audiences": if audiences.is_empty() { vec![crate::auth::authn::ISSUER.to_string()] } else { audiences },
            "expirationSeconds": seconds,
            "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
        });
        request["status"] = json!({"token": token, "expirationTimestamp": format_time(expires)});
        Ok(Answer::reply(Reply {
            code: 201,
            body: request.to_string().into(),
            unknown_fields: Vec::new(),
        }))
    }

    /// The Pod or Secret a token is bound to: (kind, name, uid).
    fn bound_object(
        &self,
        t: &Target,
        bound: &Value,
        causes: &mut Vec<Cause>,
    ) -> Result<Option<(String, String, String)>, ApiError> {
        if bound.is_null() {
            return Ok(None);
        }
        let kind = bound["kind"].as_str().unwrap_or_default();
        let name = bound["name"].as_str().unwrap_or_default();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                causes.push(Cause::not_supported(
                    "spec.boundObjectRef.kind",
                    &json!(other),
                    &["Pod", "Secret"],
                ));
                return Ok(None);
            }
        };
        let key = crate::apimachinery::resource_key::ResourceKey::new("", plural);
        let found = self
            .shared
            .api
            .store
            .get(&key, &t.namespace, name)
            .ok_or_else(|| ApiError::not_found("", plural, name))?
            .value();
        let uid = found["metadata"]["uid"].as_str().unwrap_or_default();
        if kind == "Pod" {
            let runs_as = found
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if runs_as != t.name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {:?} to pod running with different serviceaccount name.",
                    t.name
                )));
            }
        }
        if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty() && *u != uid) {
            return Err(ApiError::conflict(
                "",
                plural,
                name,
                &format!("the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
        Ok(Some((kind.to_string(), name.to_string(), uid.to_string())))
    }

    /// Under RBAC, a write of a role or binding that would grant more than
    /// `user` holds is refused (403), as kube-apiserver's RBAC storage does.
    pub(super) fn escalation(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: &Bytes,
        t: &Target,
        sub: Option<&str>,
        user: &UserInfo,
    ) -> Result<(), ApiError> {
        let gate = &self.shared.gate;
        if gate.mode() != Mode::Rbac
            || sub.is_some()
            || t.kind.key.group != "rbac.authorization.k8s.io"
            || t.kind.custom
        {
            return Ok(());
        }
        let api = &self.shared.api;
        let content_type = header_of(parts, header::CONTENT_TYPE);
        let manager = q.field_manager.as_deref();
        let obj = match parts.method {
            Method::POST | Method::PUT => decode_object(body, &content_type)?,
            Method::PATCH => {
                // The object as the patch would leave it: a dry run.
                let preview = match patch_type(t, &content_type)? {
                    PatchType::Apply => {
                        api.apply_patch(t, body, manager, q.force, Endpoint::Main, true)?
                    }
                    other => api.patch_as(t, other, body, Endpoint::Main, true, manager)?,
                };
                serde_json::from_slice(&preview.body)
                    .map_err(|e| ApiError::internal(format!("a patched object is not JSON: {e}")))?
            }
            _ => return Ok(()),
        };
        escalation::check(
            gate.authorizer(),
            &**api,
            user,
            t.kind.plural(),
            &t.namespace,
            &obj,
        )
    }
}
