//! The review APIs: `authorization.k8s.io/v1` SelfSubjectAccessReview,
//! SubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectRulesReview, and `authentication.k8s.io/v1` SelfSubjectReview
//! and TokenReview. Each is created, answered from the authorizer and the
//! request's identity, and never stored (`kubectl auth can-i`, `kubectl
//! auth whoami`).

use serde_json::{json, Value};

use crate::{
    apimachinery::errors::Cause,
    auth::{strings, Attributes, Authorizer, UserInfo},
};

/// Who a token is, for any of some audiences (with those it is valid
/// for), or why it is no one: what a TokenReview asks.
pub type TokenReviewer<'a> =
    dyn Fn(&str, &[String]) -> Result<(UserInfo, Vec<String>), String> + 'a;

/// The answered review for a create of `plural` (in `namespace`, for the
/// namespaced LocalSubjectAccessReview) by `user`; the causes when the
/// review itself is invalid.
///
/// # Errors
/// The validation causes, for a 422.
pub fn answer(
    plural: &str,
    namespace: &str,
    body: &Value,
    user: &UserInfo,
    authorizer: &dyn Authorizer,
    tokens: &TokenReviewer<'_>,
) -> Result<Value, Vec<Cause>> {
    let mut review = body.clone();
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match plural {
        "selfsubjectaccessreviews" => access(&spec, user, authorizer, &mut Vec::new())?,
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let mut causes = Vec::new();
            let subject = UserInfo {
                username: s(&spec, "user").to_string(),
                uid: s(&spec, "uid").to_string(),
                groups: strings(&spec, "groups"),
                extra: spec
                    .get("extra")
                    .and_then(|e| serde_json::from_value(e.clone()).ok())
                    .unwrap_or_default(),
            };
            if subject.username.is_empty() && subject.groups.is_empty() {
                causes.push(Cause::invalid(
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            if plural == "localsubjectaccessreviews" {
                let asked = spec
                    .pointer("/resourceAttributes/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if asked != namespace {
                    causes.push(Cause::invalid(
                        "spec.resourceAttributes.namespace",
                        &json!(asked),
                        "must match metadata.namespace",
                    ));
                }
                review["metadata"]["namespace"] = json!(namespace);
            }
            access(&spec, &subject, authorizer, &mut causes)?
        }
        "selfsubjectrulesreviews" => {
            let rules = authorizer.rules_for(user, s(&spec, "namespace"));
            let values = |rules: &[crate::auth::Rule]| -> Vec<Value> {
                rules.iter().map(crate::auth::Rule::to_value).collect()
            };
            json!({"resourceRules": values(&rules.resource_rules),
                   "nonResourceRules": values(&rules.non_resource_rules),
                   "incomplete": rules.incomplete})
        }
        "selfsubjectreviews" => json!({"userInfo": user.to_value()}),
        "tokenreviews" => {
            let token = s(&spec, "token");
            if token.is_empty() {
                return Err(vec![Cause::required("spec.token", "")]);
            }
            let mut audiences = strings(&spec, "audiences");
            if audiences.is_empty() {
                audiences.push(crate::auth::authn::ISSUER.to_string());
            }
            match tokens(token, &audiences) {
                Ok((reviewed, valid)) => json!({
                    "authenticated": true,
                    "user": reviewed.to_value(),
                    "audiences": valid,
                }),
                Err(e) => json!({"user": {}, "error": e}),
            }
        }
        _ => {
            return Err(vec![Cause::invalid(
                "kind",
                &json!(plural),
                "is not a review",
            )])
        }
    };
    if !review.get("metadata").is_some_and(Value::is_object) {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = status;
    Ok(review)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The status of an access review: exactly one of `resourceAttributes` or
/// `nonResourceAttributes`, decided by the authorizer for `user`.
fn access(
    spec: &Value,
    user: &UserInfo,
    authorizer: &dyn Authorizer,
    causes: &mut Vec<Cause>,
) -> Result<Value, Vec<Cause>> {
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let attrs = match (resource, non_resource) {
        (Some(r), None) => Attributes {
            verb: s(r, "verb").into(),
            group: s(r, "group").into(),
            resource: s(r, "resource").into(),
            subresource: s(r, "subresource").into(),
            namespace: s(r, "namespace").into(),
            name: s(r, "name").into(),
            path: String::new(),
        },
        (None, Some(n)) => Attributes {
            verb: s(n, "verb").into(),
            path: s(n, "path").into(),
            ..Default::default()
        },
        (Some(_), Some(n)) => {
            causes.push(Cause::invalid(
                "spec.nonResourceAttributes",
                n,
                "cannot be specified in combination with resourceAttributes",
            ));
            Attributes::default()
        }
        (None, None) => {
            causes.push(Cause::invalid(
                "spec.resourceAttributes",
                &Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
            Attributes::default()
        }
    };
    if !causes.is_empty() {
        return Err(std::mem::take(causes));
    }
    let decision = authorizer.authorize(user, &attrs);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = Value::String(decision.reason);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AlwaysAllow;

    #[test]
    fn can_i_should_be_allowed_by_always_allow() {
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "configmaps"}}});
        let answered = answer(
            "selfsubjectaccessreviews",
            "",
            &review,
            &UserInfo::admin(),
            &AlwaysAllow,
            &|_, _| Err("no tokens here".into()),
        )
        .unwrap();
        assert_eq!(answered["status"], json!({"allowed": true}));
        assert_eq!(answered["spec"], review["spec"]);
    }

    #[test]
    fn reviews_should_be_validated_as_kube_apiserver_does() {
        let causes = answer(
            "subjectaccessreviews",
            "",
            &json!({"spec": {}}),
            &UserInfo::admin(),
            &AlwaysAllow,
            &|_, _| Err("no tokens here".into()),
        )
        .unwrap_err();
        let messages: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            messages,
            [
                "spec.user: Invalid value: \"\": at least one of user or group must be specified",
                "spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ]
        );
    }

    #[test]
    fn whoami_should_answer_the_identity() {
        let answered = answer(
            "selfsubjectreviews",
            "",
            &json!({}),
            &UserInfo::admin(),
            &AlwaysAllow,
            &|_, _| Err("no tokens here".into()),
        )
        .unwrap();
        assert_eq!(
            answered["status"]["userInfo"],
            json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]})
        );
    }
}
