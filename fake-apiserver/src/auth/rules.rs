//! RBAC's `PolicyRule`: what one rule allows (kube's `rbac/v1` matching:
//! `*` everywhere, `*/subresource`, `resourceNames`, `nonResourceURLs`
//! with a trailing `*`), whether a set of rules covers another (the
//! escalation check), and the compact form kube-apiserver prints missing
//! rules in.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::auth::{strings, Attributes};

/// One `PolicyRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// `verbs`.
    pub verbs: Vec<String>,
    /// `apiGroups`.
    pub api_groups: Vec<String>,
    /// `resources` (`plural` or `plural/subresource`).
    pub resources: Vec<String>,
    /// `resourceNames`.
    pub resource_names: Vec<String>,
    /// `nonResourceURLs`.
    pub non_resource_urls: Vec<String>,
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

impl Rule {
    /// A rule from its JSON form (missing lists are empty).
    pub fn from_value(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// Every rule of a role's `rules`.
    pub fn all_of(role: &Value) -> Vec<Rule> {
        role.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Rule::from_value).collect())
            .unwrap_or_default()
    }

    /// The JSON form, empty lists left out (as kube serializes them).
    pub fn to_value(&self) -> Value {
        let mut v = json!({"verbs": self.verbs});
        for (key, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() {
                v[key] = json!(list);
            }
        }
        v
    }

    /// Whether this rule allows the request `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !(has(&self.verbs, "*") || has(&self.verbs, &a.verb)) {
            return false;
        }
        if a.resource.is_empty() {
            return self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || *u == a.path
                    || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
            });
        }
        (has(&self.api_groups, "*") || has(&self.api_groups, &a.group))
            && self.allows_resource(&a.resource, &a.subresource)
            && (self.resource_names.is_empty() || has(&self.resource_names, &a.name))
    }

    fn allows_resource(&self, resource: &str, subresource: &str) -> bool {
        let combined = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
    }

    /// The rule as kube-apiserver prints it in an escalation error:
    /// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let quoted = |list: &[String]| {
            let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(" "))
        };
        let mut parts = Vec::new();
        for (name, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name}:{}", quoted(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// The rule as single-verb, single-resource (and single-name) rules,
    /// as kube's `BreakdownRule` splits it.
    fn breakdown(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let one = |names: Vec<String>| Rule {
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        verbs: vec![verb.clone()],
                        resource_names: names,
                        non_resource_urls: Vec::new(),
                    };
                    if self.resource_names.is_empty() {
                        out.push(one(Vec::new()));
                    } else {
                        out.extend(self.resource_names.iter().map(|n| one(vec![n.clone()])));
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(Rule {
                    non_resource_urls: vec![url.clone()],
                    verbs: vec![verb.clone()],
                    ..Default::default()
                });
            }
        }
        out
    }

    /// Whether this (owner's) rule covers the single rule `sub`.
    fn covers(&self, sub: &Rule) -> bool {
        let all = |owner: &[String], wanted: &[String]| {
            has(owner, "*") || wanted.iter().all(|w| has(owner, w))
        };
        let resources = has(&self.resources, "*")
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/')
                        .is_some_and(|(_, s)| has(&self.resources, &format!("*/{s}")))
            });
        let urls = sub.non_resource_urls.iter().all(|u| {
            self.non_resource_urls.iter().any(|o| {
                o == u
                    || o.strip_suffix('*')
                        .is_some_and(|prefix| u.starts_with(prefix))
            })
        });
        let names = self.resource_names.is_empty()
            || (!sub.resource_names.is_empty()
                && sub
                    .resource_names
                    .iter()
                    .all(|n| has(&self.resource_names, n)));
        all(&self.verbs, &sub.verbs)
            && (sub.api_groups.is_empty() || all(&self.api_groups, &sub.api_groups))
            && resources
            && urls
            && names
    }
}

/// The parts of `wanted` that `owned` does not cover, compacted as
/// kube-apiserver reports them (one rule per group, resource and name,
/// with their verbs together), each in its compact string, sorted.
pub fn not_covered(owned: &[Rule], wanted: &[Rule]) -> Vec<String> {
    let mut missing: Vec<Rule> = Vec::new();
    for rule in wanted {
        for sub in rule.breakdown() {
            if !owned.iter().any(|o| o.covers(&sub)) {
                missing.push(sub);
            }
        }
    }
    let mut simple: BTreeMap<(String, String, Vec<String>), Rule> = BTreeMap::new();
    let mut other = Vec::new();
    for rule in missing {
        if rule.non_resource_urls.is_empty() {
            let key = (
                rule.api_groups[0].clone(),
                rule.resources[0].clone(),
                rule.resource_names.clone(),
            );
            match simple.get_mut(&key) {
                Some(existing) => existing.verbs.extend(rule.verbs),
                None => {
                    simple.insert(key, rule);
                }
            }
        } else {
            other.push(rule);
        }
    }
    let mut described: Vec<String> = simple
        .into_values()
        .chain(other)
        .map(|r| r.compact_string())
        .collect();
    described.sort();
    described.dedup();
    described
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> Rule {
        Rule::from_value(&v)
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "default".into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rules_should_match_as_rbac_does() {
        let pods =
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(pods.allows(&attrs("get", "", "pods", "", "p")));
        assert!(!pods.allows(&attrs("delete", "", "pods", "", "p")));
        assert!(!pods.allows(&attrs("get", "apps", "pods", "", "p")));
        // A subresource is its own resource.
        assert!(!pods.allows(&attrs("get", "", "pods", "log", "p")));
        let logs = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]}));
        assert!(logs.allows(&attrs("get", "", "pods", "log", "p")));
        assert!(!logs.allows(&attrs("get", "", "pods", "", "p")));
        let named = rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["a"]}),
        );
        assert!(named.allows(&attrs("update", "", "configmaps", "", "a")));
        assert!(!named.allows(&attrs("update", "", "configmaps", "", "b")));
        // A list has no name: resourceNames never allow it.
        assert!(!named.allows(&attrs("list", "", "configmaps", "", "")));
        let urls = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}));
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert!(urls.allows(&path("/healthz")));
        assert!(urls.allows(&path("/apis/apps/v1")));
        assert!(!urls.allows(&path("/apis")));
        assert!(!urls.allows(&path("/version")));
        // Resource rules never allow a URL, URL rules never a resource.
        assert!(!pods.allows(&path("/api")));
        assert!(!urls.allows(&attrs("get", "", "pods", "", "")));
    }

    #[test]
    fn missing_rules_should_be_compacted_as_kube_apiserver_prints_them() {
        let owned = vec![rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/status"]}),
        )];
        let wanted = vec![
            rule(
                json!({"verbs": ["get", "list", "watch", "delete"], "apiGroups": [""], "resources": ["pods", "pods/status"]}),
            ),
            rule(
                json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"]}),
            ),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]})),
        ];
        assert_eq!(
            not_covered(&owned, &wanted),
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["watch" "delete"]}"#,
                r#"{APIGroups:[""], Resources:["pods/status"], Verbs:["watch" "delete"]}"#,
                r#"{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["get"]}"#,
                r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
            ]
        );
        let admin = vec![rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
        )];
        assert_eq!(not_covered(&admin, &wanted).len(), 1, "URLs need URL rules");
    }
}
