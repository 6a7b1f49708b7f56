//! Indexes over the simulation's cache, kept up to date on every change
//! so that no sync scans a whole kind: objects by their controller's uid,
//! objects with no controller by namespace (adoption), and pods by node
//! with each node's requested resources (the scheduler's arithmetic).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::controllers::{
    controller_of, pod_finished,
    quantity::pod_requests,
    resources::{key_of, Res},
};

/// What the pods bound to a node ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Pods that have not finished.
    pub(crate) pods: usize,
    /// Their requests, by resource, in thousandths.
    pub(crate) requests: BTreeMap<String, i128>,
}

/// The indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    owned: HashMap<String, BTreeSet<(Res, String)>>,
    orphans: HashMap<(Res, String), BTreeSet<String>>,
    by_node: HashMap<String, BTreeSet<String>>,
    usage: HashMap<String, Usage>,
}

fn uid_of_controller(obj: &Value) -> Option<String> {
    controller_of(obj)
        .and_then(|r| r["uid"].as_str())
        .map(String::from)
}

fn namespace(obj: &Value) -> String {
    obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn node_of(pod: &Value) -> Option<String> {
    pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(String::from)
}

impl Index {
    /// An object changed from `old` to `new` (`None`: absent).
    pub(crate) fn update(&mut self, res: Res, old: Option<&Value>, new: Option<&Value>) {
        if let Some(old) = old {
            self.remove(res, old);
        }
        if let Some(new) = new {
            self.add(res, new);
        }
    }

    fn add(&mut self, res: Res, obj: &Value) {
        let key = key_of(obj);
        match uid_of_controller(obj) {
            Some(uid) => {
                self.owned
                    .entry(uid)
                    .or_default()
                    .insert((res, key.clone()));
            }
            None => {
                self.orphans
                    .entry((res, namespace(obj)))
                    .or_default()
                    .insert(key.clone());
            }
        }
        if res == Res::Pods {
            if let Some(node) = node_of(obj) {
                self.by_node.entry(node.clone()).or_default().insert(key);
                if !pod_finished(obj) {
                    let usage = self.usage.entry(node).or_default();
                    usage.pods += 1;
                    for (r, v) in pod_requests(obj) {
                        *usage.requests.entry(r).or_default() += v;
                    }
                }
            }
        }
    }

    fn remove(&mut self, res: Res, obj: &Value) {
        let key = key_of(obj);
        match uid_of_controller(obj) {
            Some(uid) => {
                if let Some(set) = self.owned.get_mut(&uid) {
                    set.remove(&(res, key.clone()));
                    if set.is_empty() {
                        self.owned.remove(&uid);
                    }
                }
            }
            None => {
                if let Some(set) = self.orphans.get_mut(&(res, namespace(obj))) {
                    set.remove(&key);
                }
            }
        }
        if res == Res::Pods {
            if let Some(node) = node_of(obj) {
                if let Some(set) = self.by_node.get_mut(&node) {
                    set.remove(&key);
                }
                if !pod_finished(obj) {
                    if let Some(usage) = self.usage.get_mut(&node) {
                        usage.pods = usage.pods.saturating_sub(1);
                        for (r, v) in pod_requests(obj) {
                            *usage.requests.entry(r).or_default() -= v;
                        }
                    }
                }
            }
        }
    }

    /// Keys of the objects of `res` whose controller has this uid.
    pub(crate) fn owned(&self, uid: &str, res: Res) -> Vec<String> {
        self.owned
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|(r, _)| *r == res)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Keys of the objects of `res` in `namespace` with no controller.
    pub(crate) fn orphans(&self, res: Res, namespace: &str) -> Vec<String> {
        self.orphans
            .get(&(res, namespace.to_string()))
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Keys of the pods bound to `node`.
    pub(crate) fn on_node(&self, node: &str) -> Vec<String> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// What the unfinished pods on `node` ask for.
    pub(crate) fn usage(&self, node: &str) -> Usage {
        self.usage.get(node).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_should_follow_pods_coming_going_and_finishing() {
        let mut index = Index::default();
        let pod = |phase: &str| {
            json!({"metadata": {"name": "p", "namespace": "ns", "ownerReferences": [{"uid": "rs", "controller": true}]},
            "spec": {"nodeName": "n", "containers": [{"resources": {"requests": {"cpu": "250m"}}}]}, "status": {"phase": phase}})
        };
        index.update(Res::Pods, None, Some(&pod("Running")));
        assert_eq!(index.usage("n").pods, 1);
        assert_eq!(index.usage("n").requests["cpu"], 250);
        assert_eq!(index.owned("rs", Res::Pods), ["ns/p"]);
        index.update(Res::Pods, Some(&pod("Running")), Some(&pod("Succeeded")));
        assert_eq!(index.usage("n").pods, 0);
        assert_eq!(index.on_node("n"), ["ns/p"]);
        index.update(Res::Pods, Some(&pod("Succeeded")), None);
        assert!(index.on_node("n").is_empty() && index.owned("rs", Res::Pods).is_empty());
    }
}
