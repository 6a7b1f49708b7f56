//! ClusterRole aggregation, as kube-controller-manager's
//! `clusterrole-aggregation` controller keeps it: a ClusterRole with an
//! `aggregationRule` gets, as its `rules`, the rules of every other
//! ClusterRole its `clusterRoleSelectors` select, in name order and
//! without repeats. Done at once after each ClusterRole write, and written
//! through the registry's update rules like any client's update.
//!
//! The same hook counts the writes of the four RBAC kinds ([`Changes`]),
//! which tells the RBAC authorizer when its index is stale, at the cost of
//! one atomic read per request.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use serde_json::{json, Value};

use crate::{
    apimachinery::resource_key::ResourceKey,
    registry::rest::{Controller, Objects, Target},
    storage::selector::{format_label_selector, LabelSelector},
};

/// How many writes of Roles, ClusterRoles and their bindings there were.
#[derive(Clone, Debug, Default)]
pub struct Changes(Arc<AtomicU64>);

impl Changes {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The aggregation controller, registered with the API by the server.
#[derive(Clone, Debug, Default)]
pub struct Aggregator {
    changes: Changes,
}

impl Aggregator {
    /// An aggregator counting RBAC writes in `changes`.
    pub fn new(changes: Changes) -> Self {
        Aggregator { changes }
    }
}

impl Controller for Aggregator {
    fn written(&self, api: &dyn Objects, key: &ResourceKey) {
        if key.group != "rbac.authorization.k8s.io" {
            return;
        }
        self.changes.0.fetch_add(1, Ordering::AcqRel);
        if key.plural == "clusterroles" {
            aggregate(api);
        }
    }
}

/// Whether the metav1 `LabelSelector` `selector` selects `labels` (an
/// empty one selects everything, as `LabelSelectorAsSelector` makes it).
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(text) = format_label_selector(selector) else {
        return false;
    };
    LabelSelector::parse(&text)
        .is_ok_and(|s| s.matches(&|k| labels.get(k).and_then(Value::as_str).map(String::from)))
}

/// Brings every aggregated ClusterRole's rules up to date.
pub fn aggregate(api: &dyn Objects) {
    let key = ResourceKey::new("rbac.authorization.k8s.io", "clusterroles");
    let Ok(page) = api.store().list(&key, None, None, None, 0, &|_| true) else {
        return;
    };
    let roles: Vec<(String, Value)> = page
        .items
        .iter()
        .map(|o| (o.name().to_string(), o.value()))
        .collect();
    let Some(kind) = api
        .resources()
        .lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
    else {
        return;
    };
    for (name, role) in &roles {
        let Some(selectors) = role
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
        else {
            continue;
        };
        let mut rules: Vec<Value> = Vec::new();
        for (other, source) in &roles {
            if other == name {
                continue;
            }
            let labels = &source["metadata"]["labels"];
            if selectors.iter().any(|s| selects(s, labels)) {
                for rule in source["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(rule) {
                        rules.push(rule.clone());
                    }
                }
            }
        }
        if role["rules"]
            .as_array()
            .map_or(rules.is_empty(), |r| *r == rules)
        {
            continue;
        }
        let target = Target {
            kind: kind.clone(),
            version: "v1".into(),
            namespace: String::new(),
            name: name.clone(),
        };
        let result = api.update_with(&target, &|cur| {
            let mut new = cur.clone();
            new["rules"] = json!(rules);
            new
        });
        if let Err(e) = result {
            tracing::warn!(role = %name, "cannot aggregate the ClusterRole: {e}");
        }
    }
}
