//! What an operator's RBAC must allow, read from the fake's journal: every
//! request the operator made (allowed or denied) as an access, the
//! requests RBAC denied with the rule that would have allowed each, and
//! the minimal ClusterRole and Roles that cover exactly what it did.
//!
//! Accesses are (verb, API group, resource or `resource/subresource`,
//! namespace). Names are left out (`resourceNames` would tie a role to
//! one scenario's objects), and so are the discovery paths every
//! authenticated user may get (`system:discovery`).

use std::collections::{BTreeMap, BTreeSet};

use fake_apiserver::testing::journal::{Entry, Filter, Journal};
use serde::Serialize;
use serde_json::{json, Value};

/// One kind of request the operator made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Access {
    /// The namespace ("" for the cluster scope: cluster-scoped kinds, and
    /// lists and watches across all namespaces).
    namespace: String,
    group: String,
    /// `plural` or `plural/subresource`.
    resource: String,
    verb: String,
}

impl Access {
    fn of(e: &Entry) -> Option<Access> {
        let resource = e.resource.as_deref()?;
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        let resource = match &e.subresource {
            Some(sub) => format!("{plural}/{sub}"),
            None => plural.to_string(),
        };
        Some(Access {
            namespace: e.namespace.clone().unwrap_or_default(),
            group: group.to_string(),
            resource,
            verb: e.verb.clone(),
        })
    }

    /// The rule that allows it, in YAML flow style.
    fn rule(&self) -> String {
        format!(
            "{{apiGroups: [{:?}], resources: [{:?}], verbs: [{:?}]}}",
            self.group, self.resource, self.verb
        )
    }

    fn scope(&self) -> String {
        if self.namespace.is_empty() {
            "in a ClusterRole (cluster scope)".to_string()
        } else {
            format!(
                "in a Role of namespace {:?} (or a ClusterRole)",
                self.namespace
            )
        }
    }
}

/// A request RBAC denied, and what would have allowed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denied {
    /// kube-apiserver's message, e.g. `configmaps is forbidden: User
    /// "system:serviceaccount:ops:op" cannot list resource "configmaps" in
    /// API group "" in the namespace "default"`.
    pub message: String,
    /// The rule that would have allowed it, and where, e.g.
    /// `{apiGroups: [""], resources: ["configmaps"], verbs: ["list"]} in a
    /// Role of namespace "default" (or a ClusterRole)`.
    pub grant: String,
}

/// The operator's requests in the journal: those of `user`, after entry
/// `after`.
pub(crate) fn entries(journal: &Journal, user: &str, after: u64) -> Vec<Entry> {
    journal.entries_since(
        after,
        &Filter {
            user: Some(user.to_string()),
            ..Default::default()
        },
    )
}

/// The denied requests among `entries`, each once, in order.
pub(crate) fn denied(entries: &[Entry]) -> Vec<Denied> {
    let mut seen = BTreeSet::new();
    entries
        .iter()
        .filter(|e| e.code == 403)
        .filter_map(|e| {
            let access = Access::of(e)?;
            // RBAC's denials only: a terminating namespace or an
            // escalation refusal is a 403 too, but no grant would help.
            let message = e
                .response_body
                .as_ref()
                .and_then(|b| b["message"].as_str())
                .filter(|m| m.contains(" cannot ") && m.contains("User \""))?
                .to_string();
            seen.insert(access.clone()).then(|| Denied {
                message,
                grant: format!("{} {}", access.rule(), access.scope()),
            })
        })
        .collect()
}

/// The minimal ClusterRole (named `name`) and Roles that allow every
/// access in `entries`: one rule per API group and resource, with the
/// verbs used; Roles per namespace, the ClusterRole for the cluster scope.
pub(crate) fn required(entries: &[Entry], name: &str) -> Vec<Value> {
    let mut scopes: BTreeMap<String, BTreeMap<(String, String), BTreeSet<String>>> =
        BTreeMap::new();
    for access in entries.iter().filter_map(Access::of) {
        scopes
            .entry(access.namespace)
            .or_default()
            .entry((access.group, access.resource))
            .or_default()
            .insert(access.verb);
    }
    scopes
        .into_iter()
        .map(|(namespace, rules)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|((group, resource), verbs)| {
                    json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
                })
                .collect();
            if namespace.is_empty() {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                       "metadata": {"name": name}, "rules": rules})
            } else {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                       "metadata": {"name": name, "namespace": namespace}, "rules": rules})
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(verb: &str, resource: &str, sub: Option<&str>, ns: Option<&str>, code: u16) -> Entry {
        Entry {
            seq: 1,
            time: String::new(),
            verb: verb.into(),
            path: String::new(),
            query: String::new(),
            resource: Some(resource.into()),
            subresource: sub.map(String::from),
            namespace: ns.map(String::from),
            name: None,
            content_type: None,
            user_agent: None,
            field_manager: None,
            user: Some("op".into()),
            request_body: None,
            code,
            response_body: None,
            fault: None,
        }
    }

    fn denied_entry(verb: &str, resource: &str, ns: &str) -> Entry {
        let message = format!(
            "{resource} is forbidden: User \"op\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"{ns}\""
        );
        Entry {
            response_body: Some(json!({"message": message})),
            ..entry(verb, resource, None, Some(ns), 403)
        }
    }

    #[test]
    fn required_rules_should_cover_exactly_what_was_done() {
        let entries = [
            entry("list", "kopfexamples.kopf.dev", None, None, 200),
            entry("watch", "kopfexamples.kopf.dev", None, None, 200),
            entry("patch", "kopfexamples.kopf.dev", None, Some("default"), 200),
            entry(
                "patch",
                "kopfexamples.kopf.dev",
                Some("status"),
                Some("default"),
                200,
            ),
            denied_entry("create", "events", "default"),
            denied_entry("create", "events", "default"),
            // Not RBAC's: no grant would help.
            Entry {
                response_body: Some(
                    json!({"message": "pods \"p\" is forbidden: unable to create new content in namespace gone because it is being terminated"}),
                ),
                ..entry("create", "pods", None, Some("gone"), 403)
            },
        ];
        let yaml = serde_yaml::to_string(&required(&entries, "op")).unwrap();
        insta::assert_snapshot!(yaml);
        let denied = denied(&entries);
        assert_eq!(denied.len(), 1, "each denied access once");
        assert_eq!(
            denied[0].grant,
            r#"{apiGroups: [""], resources: ["events"], verbs: ["create"]} in a Role of namespace "default" (or a ClusterRole)"#
        );
    }
}
