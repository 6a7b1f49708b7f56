//! The RBAC authorizer (`--authorization-mode=RBAC`): Roles, ClusterRoles,
//! RoleBindings and ClusterRoleBindings read from the store, as
//! kube-apiserver's RBAC authorizer reads them from its informers.
//!
//! The bindings are indexed by subject (user or group; a ServiceAccount
//! subject is its user `system:serviceaccount:NS:NAME`), and the index is
//! rebuilt only when one of the four kinds changed, so a request costs a
//! few hash lookups and the rules of the user's roles, whatever the number
//! of roles in the store. Members of `system:masters` are allowed
//! everything before RBAC is asked, as kube-apiserver's privileged-group
//! authorizer does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::Value;

use crate::{
    apimachinery::{hash::Fnv, resource_key::ResourceKey},
    auth::{aggregation::Changes, rules::Rule, Attributes, Authorizer, Decision, Rules, UserInfo},
    registry::rest::Objects,
};

/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

/// The RBAC authorizer over the objects of a server.
pub struct Rbac {
    objects: Arc<dyn Objects + Send + Sync>,
    changes: Changes,
    index: Mutex<Option<Arc<Index>>>,
}

impl std::fmt::Debug for Rbac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rbac")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Group(String),
}

// FNV-1a: the index's keys are short names, hashed several times per
// request, where SipHash's cost showed.
type Names<V> = HashMap<String, V, std::hash::BuildHasherDefault<Fnv>>;

/// Grants by subject: users' and groups' apart, so that a request's user
/// and groups are looked up by reference.
#[derive(Default)]
struct BySubject {
    users: Names<Vec<Grant>>,
    groups: Names<Vec<Grant>>,
}

impl BySubject {
    fn add(&mut self, subject: Subject, grant: Grant) {
        let (map, name) = match subject {
            Subject::User(n) => (&mut self.users, n),
            Subject::Group(n) => (&mut self.groups, n),
        };
        map.entry(name).or_default().push(grant);
    }

    fn of<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = &'a Grant> + 'a {
        let own = self.users.get(&user.username).into_iter().flatten();
        let groups = user
            .groups
            .iter()
            .flat_map(|g| self.groups.get(g).into_iter().flatten());
        own.chain(groups)
    }
}

/// One binding of a role to a subject, its role's rules resolved.
struct Grant {
    /// The reason of a decision it allows, as kube-apiserver words it:
    /// `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to ...`.
    reason: String,
    rules: Arc<Vec<Rule>>,
    /// Why the role could not be resolved, if it could not.
    error: Option<String>,
    /// Whether the rules come from a namespaced binding (which never
    /// grants non-resource URLs).
    namespaced: bool,
}

#[derive(Default)]
struct Index {
    /// The count of RBAC writes it was built at.
    stamp: u64,
    cluster: BySubject,
    namespaced: Names<BySubject>,
}

fn keys() -> [ResourceKey; 4] {
    [
        ResourceKey::new("rbac.authorization.k8s.io", "roles"),
        ResourceKey::new("rbac.authorization.k8s.io", "clusterroles"),
        ResourceKey::new("rbac.authorization.k8s.io", "rolebindings"),
        ResourceKey::new("rbac.authorization.k8s.io", "clusterrolebindings"),
    ]
}

impl Rbac {
    /// The RBAC authorizer of the objects `objects` holds, re-indexed
    /// when `changes` (counted by the [`Aggregator`] hook) moves on.
    ///
    /// [`Aggregator`]: crate::auth::aggregation::Aggregator
    pub fn new(objects: Arc<dyn Objects + Send + Sync>, changes: Changes) -> Self {
        Rbac {
            objects,
            changes,
            index: Mutex::new(None),
        }
    }

    fn index(&self) -> Arc<Index> {
        let stamp = self.changes.get();
        let mut cached = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = cached.as_ref().filter(|i| i.stamp == stamp) {
            return index.clone();
        }
        let index = Arc::new(self.build(stamp));
        *cached = Some(index.clone());
        index
    }

    fn all(&self, key: &ResourceKey) -> Vec<(String, String, Value)> {
        let page = self
            .objects
            .store()
            .list(key, None, None, None, 0, &|_| true);
        page.map(|p| {
            p.items
                .iter()
                .map(|o| (o.namespace().to_string(), o.name().to_string(), o.value()))
                .collect()
        })
        .unwrap_or_default()
    }

    fn build(&self, stamp: u64) -> Index {
        let [roles_key, cluster_roles_key, bindings_key, cluster_bindings_key] = keys();
        let roles: HashMap<(String, String), Arc<Vec<Rule>>> = self
            .all(&roles_key)
            .into_iter()
            .map(|(ns, name, v)| ((ns, name), Arc::new(Rule::all_of(&v))))
            .collect();
        let cluster_roles: HashMap<String, Arc<Vec<Rule>>> = self
            .all(&cluster_roles_key)
            .into_iter()
            .map(|(_, name, v)| (name, Arc::new(Rule::all_of(&v))))
            .collect();
        let resolve = |binding_ns: &str, role_ref: &Value| {
            let kind = role_ref["kind"].as_str().unwrap_or_default();
            let name = role_ref["name"].as_str().unwrap_or_default().to_string();
            let found = match kind {
                "ClusterRole" => cluster_roles.get(&name).cloned(),
                "Role" => roles.get(&(binding_ns.to_string(), name.clone())).cloned(),
                _ => None,
            };
            match found {
                Some(rules) => (rules, None),
                None => (
                    Arc::new(Vec::new()),
                    Some(format!(
                        "{}.rbac.authorization.k8s.io {name:?} not found",
                        kind.to_ascii_lowercase()
                    )),
                ),
            }
        };
        let mut index = Index {
            stamp,
            ..Default::default()
        };
        for (_, name, binding) in self.all(&cluster_bindings_key) {
            let role_ref = &binding["roleRef"];
            let (rules, error) = resolve("", role_ref);
            for (subject, shown) in subjects(&binding, "") {
                index.cluster.add(
                    subject,
                    Grant {
                        reason: format!(
                            "RBAC: allowed by ClusterRoleBinding {name:?} of {} {:?} to {shown}",
                            role_ref["kind"].as_str().unwrap_or_default(),
                            role_ref["name"].as_str().unwrap_or_default()
                        ),
                        rules: rules.clone(),
                        error: error.clone(),
                        namespaced: false,
                    },
                );
            }
        }
        for (ns, name, binding) in self.all(&bindings_key) {
            let role_ref = &binding["roleRef"];
            let (rules, error) = resolve(&ns, role_ref);
            for (subject, shown) in subjects(&binding, &ns) {
                index.namespaced.entry(ns.clone()).or_default().add(
                    subject,
                    Grant {
                        reason: format!(
                            "RBAC: allowed by RoleBinding \"{name}/{ns}\" of {} {:?} to {shown}",
                            role_ref["kind"].as_str().unwrap_or_default(),
                            role_ref["name"].as_str().unwrap_or_default()
                        ),
                        rules: rules.clone(),
                        error: error.clone(),
                        namespaced: true,
                    },
                );
            }
        }
        index
    }

    /// The grants that apply to `user` in `namespace` (cluster-wide ones
    /// first).
    fn grants<'a>(
        index: &'a Index,
        user: &'a UserInfo,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        let local = (!namespace.is_empty())
            .then(|| index.namespaced.get(namespace))
            .flatten();
        index
            .cluster
            .of(user)
            .chain(local.into_iter().flat_map(move |l| l.of(user)))
    }
}

/// The subjects of a binding, with how kube describes each.
fn subjects(binding: &Value, binding_ns: &str) -> Vec<(Subject, String)> {
    let Some(list) = binding["subjects"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            match s["kind"].as_str().unwrap_or_default() {
                "User" => Some((Subject::User(name.into()), format!("User {name:?}"))),
                "Group" => Some((Subject::Group(name.into()), format!("Group {name:?}"))),
                "ServiceAccount" => {
                    let ns = s["namespace"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(binding_ns);
                    (!ns.is_empty()).then(|| {
                        (
                            Subject::User(format!("system:serviceaccount:{ns}:{name}")),
                            format!("ServiceAccount \"{name}/{ns}\""),
                        )
                    })
                }
                _ => None,
            }
        })
        .collect()
}

impl Authorizer for Rbac {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let index = self.index();
        let mut errors = Vec::new();
        for grant in Rbac::grants(&index, user, &attrs.namespace) {
            if let Some(e) = &grant.error {
                errors.push(e.clone());
                continue;
            }
            if grant.namespaced && attrs.resource.is_empty() {
                continue;
            }
            if grant.rules.iter().any(|r| r.allows(attrs)) {
                return Decision {
                    allowed: true,
                    reason: grant.reason.clone(),
                };
            }
        }
        // As kube's error aggregate prints them: one alone, several in
        // brackets, in the order met.
        let reason = match errors.as_slice() {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        };
        Decision {
            allowed: false,
            reason,
        }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules {
        let index = self.index();
        let mut rules = Rules::default();
        let mut masters = user.groups.iter().any(|g| g == MASTERS);
        for grant in Rbac::grants(&index, user, namespace) {
            if grant.error.is_some() {
                rules.incomplete = true;
            }
            for rule in grant.rules.iter() {
                if !rule.non_resource_urls.is_empty() {
                    rules.non_resource_rules.push(rule.clone());
                } else if !rule.resources.is_empty() {
                    rules.resource_rules.push(rule.clone());
                }
            }
            masters = false;
        }
        if masters {
            // No binding of system:masters in the store any more: it is
            // still allowed everything.
            return crate::auth::AlwaysAllow.rules_for(user, namespace);
        }
        rules.resource_rules.dedup();
        rules.non_resource_rules.dedup();
        rules
    }
}
