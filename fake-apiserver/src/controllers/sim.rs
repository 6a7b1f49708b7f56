//! The controllers' shared state ([`Sim`]): the cache the informers fill,
//! the work queue and timers, and the writes, each made through a client
//! with its controller's identity and folded into the cache at once (a
//! controller's own writes never wait for their watch event, as kube's
//! controllers track their expectations).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use kube::core::Request;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::{
    apimachinery::clock::Clock,
    controllers::{
        index::Index,
        resources::{key_of, rv_of, split_key, Res},
        selection::{Ctl, Selection},
        stages::{Memory, Stages},
    },
};

/// Whether a request's User-Agent is one of the simulated cluster's
/// components (its controllers, scheduler and kubelets), not a client's.
pub fn is_simulated(user_agent: &str) -> bool {
    ["kube-controller-manager/", "kube-scheduler/", "kubelet/"]
        .iter()
        .any(|p| user_agent.starts_with(p))
        && user_agent.contains("kubernetes/fake")
}

/// Routes a change of one object (before, after) to the work it causes.
pub(crate) type Router = fn(&Sim, Res, Option<&Value>, Option<&Value>) -> Vec<Work>;

/// Who a controller is to the API server: its User-Agent (whose first
/// segment becomes the field manager, as in kube).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Identity {
    /// kube-controller-manager, as one of its controllers' service accounts.
    ControllerManager(&'static str),
    Scheduler,
    Kubelet,
}

impl Identity {
    pub(crate) fn user_agent(self) -> String {
        let v = format!(
            "v{}.{}.0",
            crate::apimachinery::VERSION_MAJOR,
            crate::apimachinery::VERSION_MINOR
        );
        match self {
            Identity::ControllerManager(account) => format!(
                "kube-controller-manager/{v} (linux/amd64) kubernetes/fake/system:serviceaccount:kube-system:{account}"
            ),
            Identity::Scheduler => format!("kube-scheduler/{v} (linux/amd64) kubernetes/fake/scheduler"),
            Identity::Kubelet => format!("kubelet/{v} (linux/amd64) kubernetes/fake"),
        }
    }
}

/// Makes a client that sends the given User-Agent.
pub type ClientFactory = Arc<dyn Fn(&str) -> kube::Client + Send + Sync>;

/// What the simulation is told at start.
#[derive(Clone)]
pub struct Settings {
    /// Which controllers run.
    pub selection: Selection,
    /// How many nodes exist at start.
    pub nodes: usize,
    /// Seed of anything random in the simulation.
    pub seed: u64,
    /// How long each step of a pod takes, and what goes wrong.
    pub stages: Stages,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("selection", &self.selection)
            .field("nodes", &self.nodes)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// One item of work: a controller and the key of the object it syncs.
pub(crate) type Work = (Ctl, String);

/// A timer: work due at an instant; `steady` timers repeat forever (crash
/// loops) and do not keep the cluster from counting as settled.
pub(crate) struct Timer {
    pub(crate) work: Work,
    pub(crate) steady: bool,
}

/// The controllers' shared state, handed to each controller's sync.
pub(crate) struct Sim {
    /// Routes a change of an object to the work it causes.
    pub(crate) router: Router,
    pub(crate) clock: Clock,
    pub(crate) settings: Settings,
    pub(crate) clients: HashMap<Identity, kube::Client>,
    pub(crate) factory: ClientFactory,
    pub(crate) cache: BTreeMap<Res, BTreeMap<String, Arc<Value>>>,
    pub(crate) queue: VecDeque<Work>,
    pub(crate) queued: BTreeSet<Work>,
    pub(crate) timers: BTreeMap<(Instant, u64), Timer>,
    pub(crate) timer_seq: u64,
    pub(crate) failures: HashMap<Work, u32>,
    pub(crate) event_seq: u64,
    /// The kubelet's memory of the pods it runs.
    pub(crate) kubelet: Memory,
    /// The scheduler's pods that fit nowhere (retried when nodes change).
    pub(crate) unschedulable: BTreeSet<String>,
    /// Indexes over the cache.
    pub(crate) index: Index,
    /// The pending timer of each work item.
    pub(crate) timer_of: HashMap<Work, (Instant, u64)>,
}

impl Sim {
    /// Folds a newer version of an object into the cache and routes it.
    pub(crate) fn observe(&mut self, res: Res, obj: Value) {
        let key = key_of(&obj);
        let table = self.cache.entry(res).or_default();
        let old = table.get(&key).cloned();
        if old.as_ref().is_some_and(|o| rv_of(o) >= rv_of(&obj)) {
            return;
        }
        let obj = Arc::new(obj);
        table.insert(key, obj.clone());
        self.route(res, old.as_deref(), Some(&obj));
    }

    /// Puts the controller's own idea of an object in the cache (a pod
    /// assumed bound); the next watch event of the object replaces it.
    pub(crate) fn assume(&mut self, res: Res, obj: Value) {
        let key = key_of(&obj);
        let old = self
            .cache
            .entry(res)
            .or_default()
            .insert(key, Arc::new(obj.clone()));
        self.route(res, old.as_deref(), Some(&obj));
    }

    /// Drops a deleted object from the cache and routes the deletion.
    pub(crate) fn forget(&mut self, res: Res, obj: &Value) {
        let key = key_of(obj);
        if let Some(old) = self.cache.entry(res).or_default().remove(&key) {
            self.route(res, Some(&old), None);
        }
    }

    /// The cached object.
    pub(crate) fn get(&self, res: Res, key: &str) -> Option<Arc<Value>> {
        self.cache.get(&res).and_then(|t| t.get(key)).cloned()
    }

    /// The cached objects of a kind, in key order (in `namespace`, or all).
    pub(crate) fn list(&self, res: Res, namespace: &str) -> Vec<Arc<Value>> {
        let Some(table) = self.cache.get(&res) else {
            return Vec::new();
        };
        if namespace.is_empty() {
            return table.values().cloned().collect();
        }
        let from = format!("{namespace}/");
        table
            .range(from.clone()..)
            .take_while(|(k, _)| k.starts_with(&from))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Queues a controller's sync of an object (once, until it runs).
    pub(crate) fn enqueue(&mut self, ctl: Ctl, key: impl Into<String>) {
        if !self.settings.selection.runs(ctl) {
            return;
        }
        let work = (ctl, key.into());
        if self.queued.insert(work.clone()) {
            self.queue.push_back(work);
        }
    }

    /// Queues a sync after `delay` of the cluster's clock.
    pub(crate) fn after(
        &mut self,
        delay: Duration,
        ctl: Ctl,
        key: impl Into<String>,
        steady: bool,
    ) {
        if !self.settings.selection.runs(ctl) {
            return;
        }
        self.timer_seq += 1;
        let work = (ctl, key.into());
        // One pending timer per work item: the earliest wins.
        let at = Instant::now() + delay;
        if let Some(existing) = self.timer_of.get(&work).copied() {
            if existing.0 <= at {
                return;
            }
            self.timers.remove(&existing);
        }
        let slot = (at, self.timer_seq);
        self.timer_of.insert(work.clone(), slot);
        self.timers.insert(slot, Timer { work, steady });
    }

    /// The work whose timers are due at `now`, taken off the timers.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Work> {
        let mut due = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.timer_of.remove(&timer.work);
            due.push(timer.work);
        }
        due
    }

    /// The cached objects of `res` whose controller has this uid.
    pub(crate) fn owned(&self, res: Res, uid: &str) -> Vec<Arc<Value>> {
        self.index
            .owned(uid, res)
            .iter()
            .filter_map(|k| self.get(res, k))
            .collect()
    }

    /// The cached objects of `res` in `namespace` with no controller.
    pub(crate) fn orphans(&self, res: Res, namespace: &str) -> Vec<Arc<Value>> {
        self.index
            .orphans(res, namespace)
            .iter()
            .filter_map(|k| self.get(res, k))
            .collect()
    }

    /// The cached pods bound to `node`.
    pub(crate) fn pods_on(&self, node: &str) -> Vec<Arc<Value>> {
        self.index
            .on_node(node)
            .iter()
            .filter_map(|k| self.get(Res::Pods, k))
            .collect()
    }

    pub(crate) fn route(&mut self, res: Res, old: Option<&Value>, new: Option<&Value>) {
        self.index.update(res, old, new);
        for (ctl, key) in (self.router)(self, res, old, new) {
            self.enqueue(ctl, key);
        }
    }

    pub(crate) fn client(&mut self, who: Identity) -> kube::Client {
        let factory = self.factory.clone();
        self.clients
            .entry(who)
            .or_insert_with(|| factory(&who.user_agent()))
            .clone()
    }

    fn object_path(res: Res, namespace: &str, name: &str) -> String {
        format!("{}/{name}", res.collection(namespace))
    }

    async fn send(
        &mut self,
        who: Identity,
        req: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<Value, kube::Error> {
        let req = req.map_err(kube::Error::BuildRequest)?;
        self.client(who).request::<Value>(req).await
    }

    /// Creates an object; the answer goes into the cache.
    pub(crate) async fn create(
        &mut self,
        who: Identity,
        res: Res,
        obj: Value,
    ) -> Result<Value, kube::Error> {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        let req = Request::new(res.collection(ns))
            .create(&Default::default(), obj.to_string().into_bytes());
        let created = self.send(who, req).await?;
        if res.watched() {
            self.observe(res, created.clone());
        }
        Ok(created)
    }

    /// Replaces an object (with its resourceVersion as the precondition).
    pub(crate) async fn replace(
        &mut self,
        who: Identity,
        res: Res,
        obj: Value,
    ) -> Result<Value, kube::Error> {
        let (ns, name) = (
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let req = Request::new(res.collection(ns)).replace(
            name,
            &Default::default(),
            obj.to_string().into_bytes(),
        );
        let replaced = self.send(who, req).await?;
        self.observe(res, replaced.clone());
        Ok(replaced)
    }

    /// A merge patch of an object's `/status`.
    pub(crate) async fn patch_status(
        &mut self,
        who: Identity,
        res: Res,
        key: &str,
        status: Value,
    ) -> Result<Value, kube::Error> {
        let (ns, name) = split_key(key);
        let body = json!({ "status": status }).to_string().into_bytes();
        let req = http::Request::patch(format!("{}/status", Self::object_path(res, ns, name)))
            .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(body)
            .map_err(|e| kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e)));
        let patched = self.client(who).request::<Value>(req?).await?;
        self.observe(res, patched.clone());
        Ok(patched)
    }

    /// A merge patch of an object (not its status).
    pub(crate) async fn patch(
        &mut self,
        who: Identity,
        res: Res,
        key: &str,
        patch: Value,
    ) -> Result<Value, kube::Error> {
        let (ns, name) = split_key(key);
        let req = http::Request::patch(Self::object_path(res, ns, name))
            .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(patch.to_string().into_bytes())
            .map_err(|e| kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e)));
        let patched = self.client(who).request::<Value>(req?).await?;
        self.observe(res, patched.clone());
        Ok(patched)
    }

    /// POSTs to a subresource (`pods/NAME/binding`).
    pub(crate) async fn post_subresource(
        &mut self,
        who: Identity,
        res: Res,
        key: &str,
        sub: &str,
        body: Value,
    ) -> Result<Value, kube::Error> {
        let (ns, name) = split_key(key);
        let req = http::Request::post(format!("{}/{sub}", Self::object_path(res, ns, name)))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e)));
        self.client(who).request::<Value>(req?).await
    }

    /// Deletes an object (`grace`: the grace period to ask for). A 404 is
    /// no error: someone else deleted it first.
    pub(crate) async fn delete(
        &mut self,
        who: Identity,
        res: Res,
        key: &str,
        grace: Option<i64>,
    ) -> Result<(), kube::Error> {
        let (ns, name) = split_key(key);
        let mut uri = Self::object_path(res, ns, name);
        if let Some(grace) = grace {
            uri.push_str(&format!("?gracePeriodSeconds={grace}"));
        }
        let req = http::Request::delete(uri)
            .body(Vec::new())
            .map_err(|e| kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e)))?;
        match self.client(who).request::<Value>(req).await {
            Ok(answer) => {
                if answer["kind"] == "Status" {
                    if let Some(old) = self.get(res, key) {
                        self.forget(res, &old);
                    }
                } else {
                    self.observe(res, answer);
                }
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                if let Some(old) = self.get(res, key) {
                    self.forget(res, &old);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Posts a core/v1 Event about `obj`, as the component `who` would
    /// (`reporting`: its name in `source.component`).
    pub(crate) async fn event(
        &mut self,
        who: Identity,
        reporting: &str,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        self.event_seq += 1;
        let meta = &obj["metadata"];
        let ns = meta["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("default");
        let name = meta["name"].as_str().unwrap_or_default();
        let now = self.clock.rfc3339();
        let mut source = json!({"component": reporting});
        if let Some(node) = obj["spec"]["nodeName"]
            .as_str()
            .filter(|_| who == Identity::Kubelet)
        {
            source["host"] = json!(node);
        }
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{:016x}", self.event_seq), "namespace": ns},
            "involvedObject": {
                "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name,
                "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
            },
            "reason": reason, "message": message, "type": type_,
            "source": source, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "reportingComponent": reporting, "reportingInstance": "",
        });
        if let Err(e) = self.create(who, Res::Events, event).await {
            tracing::debug!(error = %e, "simulation: event not posted");
        }
    }
}
