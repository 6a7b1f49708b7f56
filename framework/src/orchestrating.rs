//! Orchestrating the watches: one per served resource and served
//! namespace, started and stopped as the scanning's [`Insights`] change.
//!
//! A cluster-scoped resource is watched once, whatever the namespaces. A
//! resource whose resolution changes (another preferred version, say) has
//! its watches restarted; one no longer served has them stopped, with its
//! workers, daemons and timers.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{atomic::Ordering, Arc},
};

use tokio::{sync::watch, task::JoinSet};

use crate::{
    reactor::{watch_resource, Shared},
    references::Resource,
    scanning::{Insights, Served},
};

/// One watch: its resource's shared state and its own stop signal.
struct Running {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// The watches of the operator, keyed by declared resource and namespace.
#[derive(Default)]
struct Ensemble {
    running: BTreeMap<(String, Option<String>), Running>,
    /// Per declared resource: how it was served when its state was made.
    shared: HashMap<Resource, (Served, Arc<Shared>)>,
    tasks: JoinSet<()>,
}

/// Runs the watches the insights call for until `stop` fires; then stops
/// them all and waits for them (and their workers) to finish.
pub(crate) async fn orchestrate(
    mut insights: watch::Receiver<Insights>,
    make_shared: impl Fn(&Resource, &Served) -> Arc<Shared>,
    observer: Option<crate::observing::Observer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ensemble = Ensemble::default();
    let mut first = true;
    loop {
        let now = insights.borrow_and_update().clone();
        if let (Some(resources), Some(namespaces)) = (&now.resources, &now.namespaces) {
            ensemble.adjust(resources, namespaces, &make_shared, &observer);
            if std::mem::take(&mut first) {
                // Ready once the first watches listed (at once if none).
                if let Some((_, shared)) = ensemble.shared.values().next() {
                    if shared.listings.load(Ordering::SeqCst) == 0 {
                        shared.observe(|o| o.set_ready());
                    }
                } else if let Some(o) = &observer {
                    o.set_ready();
                }
            }
        }
        while ensemble.tasks.try_join_next().is_some() {}
        tokio::select! {
            changed = insights.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for running in ensemble.running.values() {
        let _ = running.stop.send(true);
    }
    while ensemble.tasks.join_next().await.is_some() {}
}

impl Ensemble {
    fn adjust(
        &mut self,
        resources: &HashMap<Resource, Served>,
        namespaces: &std::collections::BTreeSet<Option<String>>,
        make_shared: &impl Fn(&Resource, &Served) -> Arc<Shared>,
        observer: &Option<crate::observing::Observer>,
    ) {
        let mut wanted: BTreeMap<(String, Option<String>), (&Resource, &Served)> = BTreeMap::new();
        for (declared, served) in resources {
            for ns in namespaces {
                let ns = ns.clone().filter(|_| served.namespaced);
                wanted.insert((key_of(declared), ns), (declared, served));
            }
        }
        // A resource served differently gets a fresh state (and watches).
        self.shared
            .retain(|declared, (served, _)| resources.get(declared) == Some(served));
        // Stop what is no longer wanted, or wanted differently.
        let stale: Vec<_> = self
            .running
            .iter()
            .filter(|(k, r)| {
                wanted.get(*k).is_none_or(|(declared, _)| {
                    self.shared
                        .get(*declared)
                        .is_none_or(|(_, s)| !Arc::ptr_eq(s, &r.shared))
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(running) = self.running.remove(&key) {
                logger(&running.shared).debug(format!(
                    "Stopped watching {} {}",
                    running.shared.resource,
                    scope(key.1.as_deref())
                ));
                let _ = running.stop.send(true);
                if let Some(o) = observer {
                    o.unwatched(&running.shared.resource_key(), key.1.as_deref());
                }
            }
        }
        // Count every new watch before any starts, so that readiness waits
        // for all of them.
        let mut starting = Vec::new();
        for (key, (declared, served)) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let shared = self
                .shared
                .entry(declared.clone())
                .or_insert_with(|| (served.clone(), make_shared(declared, served)))
                .1
                .clone();
            shared.listings.fetch_add(1, Ordering::SeqCst);
            if shared.is_indexed() {
                shared.indexing.send_modify(|n| *n += 1);
            }
            let (tx, rx) = watch::channel(false);
            self.running.insert(
                key.clone(),
                Running {
                    shared: shared.clone(),
                    stop: tx,
                },
            );
            starting.push((shared, key.1, rx));
        }
        for (shared, ns, rx) in starting {
            logger(&shared).debug(format!(
                "Watching {} {}",
                shared.resource,
                scope(ns.as_deref())
            ));
            // Known to the observer at once: a harness waits for it.
            shared.observe(|o| o.watching(&shared.resource_key(), ns.as_deref()));
            self.tasks.spawn(watch_resource(shared, ns, rx));
        }
    }
}

/// A declared resource as a sortable key.
fn key_of(resource: &Resource) -> String {
    resource.to_string()
}

fn logger(shared: &Shared) -> crate::handling::Logger {
    crate::handling::Logger::operator(shared.settings.log_sink.clone())
}

/// `in NS`, or `cluster-wide`.
fn scope(namespace: Option<&str>) -> String {
    namespace.map_or_else(|| "cluster-wide".into(), |ns| format!("in {ns}"))
}
