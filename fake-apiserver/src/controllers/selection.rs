//! Which controllers run: kube-controller-manager's `--controllers` syntax
//! (`*` for the defaults, `name` to add one, `-name` to remove one, an
//! empty list for none), over the simulated cluster's controllers.

use crate::controllers::resources::Res;

/// One simulated controller (some stand for several of kube's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ctl {
    /// Nodes at boot, and their lifecycle (taints and not-ready pods).
    Nodes,
    /// kube-scheduler.
    Scheduler,
    /// The kubelets of the simulated nodes.
    Kubelet,
    /// ReplicaSets make pods.
    ReplicaSet,
    /// Deployments make ReplicaSets.
    Deployment,
    /// Services get Endpoints and EndpointSlices.
    Endpoints,
    /// Namespaces get their `default` ServiceAccount.
    Namespaces,
    /// Jobs run pods to completion (and go after their TTL).
    Job,
    /// StatefulSets make ordered pods and their claims.
    StatefulSet,
    /// Claims are bound to volumes the default StorageClass provisions.
    Volumes,
    /// PodDisruptionBudgets get their status (what evictions read).
    Disruption,
    /// DaemonSets run a pod on every eligible node.
    DaemonSet,
    /// CronJobs make Jobs on schedule.
    CronJob,
}

/// The names accepted in `--controllers`, and what each turns on.
pub const NAMES: &[(&str, Option<Ctl>)] = &[
    ("nodelifecycle", Some(Ctl::Nodes)),
    ("scheduler", Some(Ctl::Scheduler)),
    ("kubelet", Some(Ctl::Kubelet)),
    ("replicaset", Some(Ctl::ReplicaSet)),
    ("deployment", Some(Ctl::Deployment)),
    ("endpoint", Some(Ctl::Endpoints)),
    ("endpointslice", Some(Ctl::Endpoints)),
    ("serviceaccount", Some(Ctl::Namespaces)),
    ("job", Some(Ctl::Job)),
    ("statefulset", Some(Ctl::StatefulSet)),
    ("persistentvolume-binder", Some(Ctl::Volumes)),
    ("disruption", Some(Ctl::Disruption)),
    ("daemonset", Some(Ctl::DaemonSet)),
    ("cronjob", Some(Ctl::CronJob)),
    // Runs inside the API server's verbs, at once.
    ("garbagecollector", None),
];

/// A parse error of `--controllers`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not in the list of known controllers (known: {known})", known = known())]
pub struct UnknownController(pub String);

fn known() -> String {
    NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The controllers that run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    on: Vec<&'static str>,
}

impl Selection {
    /// No controller: a pure store (the garbage collector aside, which
    /// only `-garbagecollector` turns off).
    pub fn none() -> Self {
        Selection {
            on: vec!["garbagecollector"],
        }
    }

    /// Every controller (`*`).
    pub fn all() -> Self {
        Selection {
            on: NAMES.iter().map(|(n, _)| *n).collect(),
        }
    }

    /// Parses `--controllers`: comma-separated names, `*`, `-name`.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(spec: &str) -> Result<Self, UnknownController> {
        let mut on: Vec<&'static str> = Vec::new();
        let items: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Selection::none());
        }
        let lookup = |name: &str| {
            NAMES
                .iter()
                .map(|(n, _)| *n)
                .find(|n| *n == name)
                .ok_or_else(|| UnknownController(name.to_string()))
        };
        if items.contains(&"*") {
            on = Selection::all().on;
        }
        for item in &items {
            match item.strip_prefix('-') {
                _ if *item == "*" => {}
                Some(name) => {
                    let name = lookup(name)?;
                    on.retain(|n| *n != name);
                }
                None => {
                    let name = lookup(item)?;
                    if !on.contains(&name) {
                        on.push(name);
                    }
                }
            }
        }
        Ok(Selection { on })
    }

    /// Whether `ctl` runs.
    pub fn runs(&self, ctl: Ctl) -> bool {
        NAMES
            .iter()
            .any(|(name, c)| *c == Some(ctl) && self.on.contains(name))
    }

    /// Whether the garbage collector runs.
    pub fn collects_garbage(&self) -> bool {
        self.on.contains(&"garbagecollector")
    }

    /// Whether any simulated controller runs.
    pub fn any(&self) -> bool {
        NAMES
            .iter()
            .any(|(name, c)| c.is_some() && self.on.contains(name))
    }

    /// What the running controllers watch.
    pub(crate) fn watched(&self) -> Vec<Res> {
        let mut watched: Vec<Res> = Vec::new();
        let mut add = |list: &[Res]| {
            for r in list {
                if !watched.contains(r) {
                    watched.push(*r);
                }
            }
        };
        for (name, ctl) in NAMES {
            if !self.on.contains(name) {
                continue;
            }
            match ctl {
                Some(Ctl::Nodes | Ctl::Scheduler | Ctl::Kubelet) => add(&[Res::Nodes, Res::Pods]),
                Some(Ctl::ReplicaSet) => add(&[Res::ReplicaSets, Res::Pods]),
                Some(Ctl::Deployment) => add(&[Res::Deployments, Res::ReplicaSets, Res::Pods]),
                Some(Ctl::Endpoints) => add(&[
                    Res::Services,
                    Res::Pods,
                    Res::Endpoints,
                    Res::EndpointSlices,
                ]),
                Some(Ctl::Namespaces) => add(&[Res::Namespaces, Res::ServiceAccounts]),
                Some(Ctl::Job) => add(&[Res::Jobs, Res::Pods]),
                Some(Ctl::StatefulSet) => {
                    add(&[Res::StatefulSets, Res::Pods, Res::PersistentVolumeClaims])
                }
                Some(Ctl::CronJob) => add(&[Res::CronJobs, Res::Jobs]),
                Some(Ctl::DaemonSet) => add(&[Res::DaemonSets, Res::Nodes, Res::Pods]),
                Some(Ctl::Disruption) => add(&[Res::PodDisruptionBudgets, Res::Pods]),
                Some(Ctl::Volumes) => add(&[
                    Res::PersistentVolumeClaims,
                    Res::PersistentVolumes,
                    Res::StorageClasses,
                    Res::Pods,
                ]),
                None => {}
            }
        }
        watched.sort();
        watched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_should_read_like_kube_controller_managers() {
        let all = Selection::parse("*").unwrap();
        assert!(all.runs(Ctl::Deployment) && all.runs(Ctl::Kubelet) && all.collects_garbage());
        let some = Selection::parse("*,-deployment,-garbagecollector").unwrap();
        assert!(!some.runs(Ctl::Deployment) && some.runs(Ctl::ReplicaSet));
        assert!(!some.collects_garbage());
        let none = Selection::parse("").unwrap();
        assert!(!none.any() && none.collects_garbage());
        let one = Selection::parse("replicaset").unwrap();
        assert!(one.runs(Ctl::ReplicaSet) && !one.runs(Ctl::Scheduler));
        assert_eq!(one.watched(), vec![Res::Pods, Res::ReplicaSets]);
        // endpoint and endpointslice are one simulated controller: either runs it.
        assert!(Selection::parse("*,-endpoint")
            .unwrap()
            .runs(Ctl::Endpoints));
        assert_eq!(
            Selection::parse("*,-jobs").unwrap_err(),
            UnknownController("jobs".into())
        );
    }
}
