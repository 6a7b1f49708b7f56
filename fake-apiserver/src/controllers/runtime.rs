//! The simulated cluster's loop: informers that list and watch through a
//! `kube::Client` (as kube-controller-manager's do) into one cache, the
//! routes from a change to the controllers' syncs, and the loop that runs
//! the work queue and timers on tokio's clock. Work runs one item at a
//! time, so a seed and a paused clock give the same sequence of writes on
//! every run. [`Simulation`] tells observers (the harness's `settle`)
//! whether the cluster is quiet.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use kube::core::{params::ListParams, params::WatchParams, Request, WatchEvent};
use serde_json::{json, Value};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    apimachinery::clock::Clock,
    controllers::{
        controller_of, cronjob, daemonset, deployment, disruption, endpoints, job, kubelet,
        namespaces, nodes, replicaset,
        resources::{key_of, rv_of, Res},
        scheduler,
        selection::Ctl,
        sim::{ClientFactory, Identity, Settings, Sim, Work},
        stages::Memory,
        statefulset, volumes,
    },
    registry::rest::Objects,
};

enum Msg {
    Listed(Res, Vec<Value>, u64),
    Event(Res, &'static str, Value),
    Seen(Res, u64),
}

/// What the loop tells observers (the harness's `settle`).
#[derive(Clone, Debug, Default)]
struct Activity {
    busy: bool,
    next_progress: Option<Instant>,
}

struct Shared {
    objects: Arc<dyn Objects + Send + Sync>,
    seen: Mutex<HashMap<Res, u64>>,
    activity: watch::Sender<Activity>,
}

/// A handle on the running simulation: whether it is quiet, and when it
/// next has something to do. Cheap to clone.
#[derive(Clone)]
pub struct Simulation {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("quiet", &self.is_quiet())
            .finish()
    }
}

impl Simulation {
    /// Whether the controllers have nothing to do now: no queued work, and
    /// every watch caught up with the store.
    pub fn is_quiet(&self) -> bool {
        if self.shared.activity.borrow().busy {
            return false;
        }
        let seen = self.shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        let store = self.shared.objects.store();
        seen.iter()
            .all(|(res, rv)| *rv >= store.latest_rv(&res.key()))
    }

    /// When a pod's next step or a controller's delay is due, if any (not
    /// counting steady repeats such as a crash loop's restarts).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.shared.activity.borrow().next_progress
    }

    /// Changes each time the loop finishes a batch of work.
    pub fn changes(&self) -> watch::Receiver<impl Sized> {
        self.shared.activity.subscribe()
    }
}

/// Starts the simulation's informers and loop on the current runtime.
pub fn start(
    objects: Arc<dyn Objects + Send + Sync>,
    factory: ClientFactory,
    clock: Clock,
    settings: Settings,
) -> Simulation {
    let (activity, _) = watch::channel(Activity::default());
    let shared = Arc::new(Shared {
        objects,
        seen: Mutex::new(HashMap::new()),
        activity,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let watched: Vec<Res> = settings
        .selection
        .watched()
        .into_iter()
        .filter(|r| r.watched())
        .collect();
    {
        let mut seen = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        for res in &watched {
            seen.insert(*res, 0);
        }
    }
    let reader = factory(&Identity::ControllerManager("shared-informers").user_agent());
    for res in watched {
        tokio::spawn(inform(reader.clone(), res, tx.clone()));
    }
    let sim = Sim {
        router: routes,
        clock,
        settings,
        clients: HashMap::new(),
        factory,
        cache: BTreeMap::new(),
        queue: VecDeque::new(),
        queued: BTreeSet::new(),
        timers: BTreeMap::new(),
        timer_seq: 0,
        failures: HashMap::new(),
        event_seq: 0,
        kubelet: Memory::default(),
        unschedulable: BTreeSet::new(),
        index: Default::default(),
        timer_of: HashMap::new(),
    };
    tokio::spawn(run(sim, rx, shared.clone()));
    Simulation { shared }
}

/// Lists, then watches from the list's version; relists after 410 Gone,
/// and retries after errors with a growing delay, as client-go's reflector.
async fn inform(client: kube::Client, res: Res, tx: mpsc::UnboundedSender<Msg>) {
    let request = Request::new(res.collection(""));
    let mut backoff = Duration::from_millis(200);
    let pause = |backoff: &mut Duration| {
        let now = *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(30));
        now
    };
    'relist: loop {
        let lp = ListParams::default();
        let listed = match request.list(&lp) {
            Ok(req) => client.request::<Value>(req).await,
            Err(e) => Err(kube::Error::BuildRequest(e)),
        };
        let list = match listed {
            Ok(list) => list,
            Err(e) => {
                tracing::debug!(?res, error = %e, "simulation: list failed");
                tokio::time::sleep(pause(&mut backoff)).await;
                continue;
            }
        };
        let mut rv = rv_of(&json!({"metadata": list["metadata"].clone()}));
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let kind = res.info();
        let items = items
            .into_iter()
            .map(|mut o| {
                o["apiVersion"] = json!(res.api_version());
                o["kind"] = json!(kind.3);
                o
            })
            .collect();
        if tx.send(Msg::Listed(res, items, rv)).is_err() {
            return;
        }
        loop {
            let wp = WatchParams::default().timeout(290);
            let events = match request.watch(&wp, &rv.to_string()) {
                Ok(req) => client.request_events::<Value>(req).await,
                Err(e) => Err(kube::Error::BuildRequest(e)),
            };
            let mut events = match events {
                Ok(events) => events.boxed(),
                Err(e) => {
                    tracing::debug!(?res, error = %e, "simulation: watch failed");
                    tokio::time::sleep(pause(&mut backoff)).await;
                    continue 'relist;
                }
            };
            loop {
                match events.try_next().await {
                    Ok(Some(event)) => {
                        backoff = Duration::from_millis(200);
                        let msg = match event {
                            WatchEvent::Added(o) => Msg::Event(res, "ADDED", o),
                            WatchEvent::Modified(o) => Msg::Event(res, "MODIFIED", o),
                            WatchEvent::Deleted(o) => Msg::Event(res, "DELETED", o),
                            WatchEvent::Bookmark(b) => {
                                Msg::Seen(res, b.metadata.resource_version.parse().unwrap_or(0))
                            }
                            WatchEvent::Error(e) if e.code == 410 => continue 'relist,
                            WatchEvent::Error(e) => {
                                tracing::debug!(?res, error = %e, "simulation: watch error");
                                tokio::time::sleep(pause(&mut backoff)).await;
                                continue 'relist;
                            }
                        };
                        match &msg {
                            Msg::Event(_, _, o) => rv = rv.max(rv_of(o)),
                            Msg::Seen(_, seen) => rv = rv.max(*seen),
                            Msg::Listed(..) => {}
                        }
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    // The watch timed out or the server closed it: resume.
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(?res, error = %e, "simulation: watch broke");
                        tokio::time::sleep(pause(&mut backoff)).await;
                        break;
                    }
                }
            }
        }
    }
}

async fn run(mut sim: Sim, mut rx: mpsc::UnboundedReceiver<Msg>, shared: Arc<Shared>) {
    if sim.settings.selection.runs(Ctl::Nodes) {
        nodes::boot(&mut sim).await;
    }
    if sim.settings.selection.runs(Ctl::Volumes) {
        volumes::boot(&mut sim).await;
    }
    loop {
        while let Ok(msg) = rx.try_recv() {
            receive(&mut sim, msg, &shared);
        }
        if let Some(work) = sim.queue.pop_front() {
            sim.queued.remove(&work);
            sync(&mut sim, work).await;
            continue;
        }
        let next_progress = sim
            .timers
            .iter()
            .find(|(_, t)| !t.steady)
            .map(|((at, _), _)| *at);
        shared.activity.send_replace(Activity {
            busy: false,
            next_progress,
        });
        let next_timer = sim.timers.keys().next().map(|(at, _)| *at);
        let woken = tokio::select! {
            biased;
            msg = rx.recv() => Some(msg),
            _ = sleep_until(next_timer) => None,
        };
        // Busy before anything is taken in, so that no observer (on
        // another thread) sees the cluster quiet with work just queued.
        shared.activity.send_modify(|a| a.busy = true);
        match woken {
            Some(Some(msg)) => receive(&mut sim, msg, &shared),
            Some(None) => return,
            None => {}
        }
        let now = Instant::now();
        for (ctl, key) in sim.due(now) {
            sim.enqueue(ctl, key);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

fn receive(sim: &mut Sim, msg: Msg, shared: &Shared) {
    let seen = |res: Res, rv: u64| {
        let mut map = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(res).or_insert(0);
        *entry = (*entry).max(rv);
    };
    match msg {
        Msg::Listed(res, items, rv) => {
            let fresh: BTreeMap<String, Arc<Value>> = items
                .into_iter()
                .map(|o| (key_of(&o), Arc::new(o)))
                .collect();
            let old = sim.cache.insert(res, fresh.clone()).unwrap_or_default();
            for (key, obj) in &fresh {
                let before = old.get(key);
                if before.is_none_or(|b| rv_of(b) != rv_of(obj)) {
                    sim.route(res, before.map(|b| &**b), Some(obj));
                }
            }
            for (key, obj) in &old {
                if !fresh.contains_key(key) {
                    sim.route(res, Some(obj), None);
                }
            }
            seen(res, rv);
        }
        Msg::Event(res, kind, obj) => {
            let rv = rv_of(&obj);
            seen(res, rv);
            if kind == "DELETED" {
                sim.forget(res, &obj);
            } else {
                sim.observe(res, obj);
            }
        }
        Msg::Seen(res, rv) => seen(res, rv),
    }
}

async fn sync(sim: &mut Sim, work: Work) {
    let (ctl, key) = (work.0, work.1.clone());
    let result = match ctl {
        Ctl::Nodes => nodes::sync(sim, &key).await,
        Ctl::Scheduler => scheduler::sync(sim, &key).await,
        Ctl::Kubelet => kubelet::sync(sim, &key).await,
        Ctl::ReplicaSet => replicaset::sync(sim, &key).await,
        Ctl::Deployment => deployment::sync(sim, &key).await,
        Ctl::Endpoints => endpoints::sync(sim, &key).await,
        Ctl::Namespaces => namespaces::sync(sim, &key).await,
        Ctl::Job => job::sync(sim, &key).await,
        Ctl::StatefulSet => statefulset::sync(sim, &key).await,
        Ctl::Volumes => volumes::sync(sim, &key).await,
        Ctl::Disruption => disruption::sync(sim, &key).await,
        Ctl::DaemonSet => daemonset::sync(sim, &key).await,
        Ctl::CronJob => cronjob::sync(sim, &key).await,
    };
    match result {
        Ok(()) => {
            sim.failures.remove(&work);
        }
        Err(e) => {
            // Retried with a growing delay, as a workqueue's rate limiter.
            let tries = sim.failures.entry(work).or_insert(0);
            *tries += 1;
            let delay = Duration::from_millis(5 << (*tries).min(12));
            tracing::debug!(?ctl, %key, error = %e, ?delay, "simulation: sync failed");
            sim.after(delay, ctl, key, false);
        }
    }
}

/// The sync of `obj`'s controlling owner, when that is a `kind` (in
/// `obj`'s namespace).
fn to_owner(obj: &Value, kind: &str, ctl: Ctl) -> Option<Work> {
    let owner = controller_of(obj).filter(|o| o["kind"] == kind)?;
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    Some((
        ctl,
        format!("{ns}/{}", owner["name"].as_str().unwrap_or_default()),
    ))
}

/// The syncs a change of one object causes (`old`/`new`: before and after;
/// `None` when created or deleted).
fn routes(sim: &Sim, res: Res, old: Option<&Value>, new: Option<&Value>) -> Vec<Work> {
    let mut work = Vec::new();
    let obj = new.or(old);
    let Some(obj) = obj else {
        return work;
    };
    let key = key_of(obj);
    match res {
        Res::Nodes => {
            work.push((Ctl::Nodes, key.clone()));
            work.extend(scheduler::routes_for_node(sim));
            work.extend(kubelet::routes_for_node(sim, &key));
            work.extend(daemonset::routes_for_node(sim));
        }
        Res::Pods => {
            work.push((Ctl::Scheduler, key.clone()));
            work.push((Ctl::Kubelet, key.clone()));
            if new.is_none() {
                // Room freed on its node.
                work.extend(scheduler::routes_for_node(sim));
            }
            work.extend(replicaset::routes_for_pod(sim, old, new));
            for pod in [old, new].into_iter().flatten() {
                work.extend(to_owner(pod, "Job", Ctl::Job));
                work.extend(to_owner(pod, "StatefulSet", Ctl::StatefulSet));
                work.extend(to_owner(pod, "DaemonSet", Ctl::DaemonSet));
                work.extend(volumes::routes_for_pod(pod));
                work.extend(disruption::routes_for_pod(sim, pod));
            }
            work.extend(endpoints::routes_for_pod(sim, old, new));
        }
        Res::ReplicaSets => {
            work.push((Ctl::ReplicaSet, key.clone()));
            work.extend(deployment::routes_for_replica_set(sim, obj));
        }
        Res::Deployments => work.push((Ctl::Deployment, key)),
        Res::Jobs => {
            work.push((Ctl::Job, key));
            work.extend(to_owner(obj, "CronJob", Ctl::CronJob));
        }
        Res::CronJobs => work.push((Ctl::CronJob, key)),
        Res::StatefulSets => work.push((Ctl::StatefulSet, key)),
        Res::PersistentVolumeClaims => {
            work.push((Ctl::Volumes, key));
            work.extend(kubelet::routes_for_claim(sim, obj));
        }
        Res::PersistentVolumes => work.extend(volumes::routes_for_volume(obj)),
        Res::StorageClasses => {}
        Res::PodDisruptionBudgets => work.push((Ctl::Disruption, key)),
        Res::DaemonSets => work.push((Ctl::DaemonSet, key)),
        Res::Services => work.push((Ctl::Endpoints, key)),
        Res::Endpoints | Res::EndpointSlices => {
            work.extend(endpoints::routes_for_endpoints(res, obj));
        }
        Res::Namespaces => work.push((Ctl::Namespaces, key)),
        Res::ServiceAccounts => {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
            work.push((Ctl::Namespaces, ns.to_string()));
        }
        Res::Events | Res::Leases => {}
    }
    work
}
