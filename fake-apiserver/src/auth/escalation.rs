//! RBAC's escalation prevention, as kube-apiserver's RBAC storage applies
//! it to writes of roles and bindings: nobody grants what they do not
//! hold. Writing a Role or ClusterRole needs the `escalate` verb on it or
//! every rule it grants; binding a role needs the `bind` verb on it or
//! every rule of the role, in the binding's namespace; an
//! `aggregationRule` needs `escalate`.

use serde_json::Value;

use crate::{
    apimachinery::{errors::ApiError, resource_key::ResourceKey},
    auth::{rules::not_covered, Attributes, Authorizer, Rule, UserInfo},
    registry::rest::Objects,
};

const RBAC: &str = "rbac.authorization.k8s.io";

/// Whether `user` may write `obj` (a Role, ClusterRole, RoleBinding or
/// ClusterRoleBinding, as `resource` in `namespace`): `Ok` for any other
/// resource.
///
/// # Errors
/// kube-apiserver's 403 naming the permissions not held, or 404 when a
/// binding's role does not exist.
pub fn check(
    authorizer: &dyn Authorizer,
    objects: &dyn Objects,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let allowed = |verb: &str, resource: &str, name: &str| {
        authorizer
            .authorize(
                user,
                &Attributes {
                    verb: verb.into(),
                    group: RBAC.into(),
                    resource: resource.into(),
                    namespace: namespace.into(),
                    name: name.into(),
                    ..Default::default()
                },
            )
            .allowed
    };
    let wanted = match resource {
        "roles" | "clusterroles" => {
            if allowed("escalate", resource, name) {
                return Ok(());
            }
            if obj.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                return Err(ApiError::forbidden(
                    RBAC,
                    resource,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule",
                ));
            }
            Rule::all_of(obj)
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &obj["roleRef"];
            let role = role_ref["name"].as_str().unwrap_or_default();
            let plural = match role_ref["kind"].as_str() {
                Some("Role") => "roles",
                _ => "clusterroles",
            };
            if allowed("bind", plural, role) {
                return Ok(());
            }
            let role_ns = if plural == "roles" { namespace } else { "" };
            let found = objects
                .store()
                .get(&ResourceKey::new(RBAC, plural), role_ns, role)
                .ok_or_else(|| ApiError::not_found(RBAC, plural, role))?;
            Rule::all_of(&found.value())
        }
        _ => return Ok(()),
    };
    let owned = authorizer.rules_for(user, namespace);
    let owned: Vec<Rule> = owned
        .resource_rules
        .into_iter()
        .chain(owned.non_resource_rules)
        .collect();
    let missing = not_covered(&owned, &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    Err(ApiError::forbidden(
        RBAC,
        resource,
        name,
        &format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.username,
            groups.join(" "),
            missing.join("\n")
        ),
    ))
}
