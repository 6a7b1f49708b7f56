//! `KopfRunner`: an operator running in the background of a test, against
//! an in-process fake cluster, on virtual time, with its log captured per
//! runner; `settle` waits (in virtual time) until it has nothing left to do.

use std::{sync::Arc, time::Duration};

use kopf::{LogLine, LogSink, Observer, Operator, Settings};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    cluster::Cluster,
    error::{HarnessError, SettleError},
    outcome::{OperatorUser, Outcome},
    rbac::{self, Denied},
};

/// A running operator: its stop signal and its task.
type Running = (
    oneshot::Sender<()>,
    JoinHandle<Result<(), kopf::OperatorError>>,
);

/// Builds the operator (again, on `restart`).
pub type OperatorFactory = Arc<dyn Fn() -> Operator + Send + Sync>;

/// How long, in virtual time, the operator may show no change while work
/// is pending before `settle` stops stepping and waits for its next change.
const STUCK_AFTER: Duration = Duration::from_secs(1);

/// An operator under test.
///
/// ```no_run
/// # async fn doc() {
/// use kopf_harness::KopfRunner;
/// let mut runner = KopfRunner::new(|| kopf::Operator::new());
/// runner.cluster().apply(include_str!("../../examples/crd.yaml")).unwrap();
/// runner.start().await.unwrap();
/// runner.settle().await.unwrap();
/// let outcome = runner.outcome();
/// # }
/// ```
pub struct KopfRunner {
    cluster: Cluster,
    factory: OperatorFactory,
    settings: Settings,
    sink: LogSink,
    observer: Observer,
    running: Option<Running>,
    budget: Duration,
    wall_budget: Duration,
    stop_timeout: Duration,
    /// The ServiceAccount the operator runs as, if not the administrator.
    account: Option<(String, String)>,
    operator: OperatorUser,
    tolerate_forbidden: bool,
    /// The journal entry up to which denied requests were reported.
    reported: std::sync::atomic::AtomicU64,
}

impl KopfRunner {
    /// A runner for the operator `factory` builds, against a fresh cluster.
    /// Call inside a tokio runtime, best with a paused clock
    /// (`#[tokio::test(start_paused = true)]`).
    pub fn new(factory: impl Fn() -> Operator + Send + Sync + 'static) -> Self {
        Self::with_cluster(Cluster::new(), factory)
    }

    /// A runner against a given cluster: a fake one, or one reached through
    /// a kubeconfig (`Cluster::connect`), where time is real and `settle`
    /// waits for the watches to see the test's own writes.
    pub fn with_cluster(
        cluster: Cluster,
        factory: impl Fn() -> Operator + Send + Sync + 'static,
    ) -> Self {
        let sink = LogSink::default();
        let observer = Observer::default();
        // The fake's clock follows tokio's; a remote cluster has real time.
        let clock = if cluster.is_fake() {
            kopf::Clock::tokio_from(crate::cluster::EPOCH)
        } else {
            kopf::Clock::System
        };
        let settings = Settings {
            clock,
            log_sink: Some(sink.clone()),
            observer: Some(observer.clone()),
            ..Default::default()
        };
        KopfRunner {
            cluster,
            factory: Arc::new(factory),
            settings,
            sink,
            observer,
            running: None,
            budget: Duration::from_secs(3600),
            wall_budget: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(60),
            account: None,
            operator: OperatorUser::default(),
            tolerate_forbidden: false,
            reported: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs the operator as the ServiceAccount `namespace/name` (created
    /// if missing), with RBAC enforced as on a real cluster: every request
    /// it makes needs a grant (see [`KopfRunner::rbac_from`]). A denied
    /// request fails `settle`, naming the rule that would allow it, and
    /// [`Outcome::required_rbac`] gives the minimal roles for what it did.
    ///
    /// ```no_run
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
    /// # fn operator() -> kopf::Operator { kopf::Operator::new() }
    /// let mut runner = kopf_harness::KopfRunner::new(operator);
    /// runner
    ///     .service_account("ops", "my-operator")
    ///     .rbac_from("deploy/rbac.yaml")?;
    /// runner.start().await?;
    /// runner.settle().await?;
    /// # Ok(()) }
    /// ```
    pub fn service_account(&mut self, namespace: &str, name: &str) -> &mut Self {
        self.account = Some((namespace.to_string(), name.to_string()));
        self.operator = OperatorUser {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            role_name: name.to_string(),
            enforced: true,
        };
        self
    }

    /// Applies an RBAC manifest (your project's own: ClusterRoles, Roles,
    /// their bindings, ServiceAccounts) to the cluster, as the
    /// administrator.
    ///
    /// # Errors
    /// When the file cannot be read or an object is refused.
    pub fn rbac_from(
        &mut self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<&mut Self, HarnessError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| HarnessError::Refused(format!("cannot read {}: {e}", path.display())))?;
        self.rbac(&text)
    }

    /// Applies an RBAC manifest given as YAML text, as [`KopfRunner::rbac_from`].
    ///
    /// # Errors
    /// When an object is refused.
    pub fn rbac(&mut self, manifest: &str) -> Result<&mut Self, HarnessError> {
        self.cluster.apply(manifest)?;
        Ok(self)
    }

    /// Whether `settle` lets the operator carry on after RBAC denied it
    /// something (default: no, `settle` fails naming the missing grant).
    /// Turn it on to test how the operator degrades without a permission.
    pub fn tolerate_forbidden(&mut self, tolerate: bool) -> &mut Self {
        self.tolerate_forbidden = tolerate;
        self
    }

    /// The operator's requests RBAC denied so far, each once, with the rule
    /// that would have allowed it.
    pub fn denied(&self) -> Vec<Denied> {
        self.denied_between(0, u64::MAX)
    }

    fn denied_between(&self, after: u64, until: u64) -> Vec<Denied> {
        match (self.operator.enforced, self.cluster.journal()) {
            (true, Some(journal)) => {
                let mut entries = rbac::entries(journal, &self.operator.username, after);
                entries.retain(|e| e.seq <= until);
                rbac::denied(&entries)
            }
            _ => Vec::new(),
        }
    }

    /// Denied requests not reported by an earlier `settle` (all reported
    /// from now on).
    fn newly_denied(&self) -> Vec<Denied> {
        use std::sync::atomic::Ordering;
        let Some(journal) = self.cluster.journal() else {
            return Vec::new();
        };
        let after = self.reported.load(Ordering::Relaxed);
        let latest = journal.last_seq();
        let denied = self.denied_between(after, latest);
        self.reported.store(latest, Ordering::Relaxed);
        denied
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The operator's settings (change them before `start`).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// How much virtual time `settle` may spend (default one hour): delayed
    /// handlers due later than this are reported instead of waited for.
    /// A stuck operator costs no wall time for it: `settle` waits for the
    /// operator's next change, and the paused clock jumps to the budget's
    /// end when nothing else is due.
    pub fn settle_budget(&mut self, budget: Duration) -> &mut Self {
        self.budget = budget;
        self
    }

    /// How much wall-clock time one `settle` may spend (default 20 s): the
    /// guard against an operator that never stops working (a hot retry
    /// loop), which virtual time alone cannot end.
    pub fn settle_wall_budget(&mut self, budget: Duration) -> &mut Self {
        self.wall_budget = budget;
        self
    }

    /// Starts the operator and waits until it is ready (startup activities
    /// done, initial listings dispatched).
    ///
    /// # Errors
    /// When it stops before being ready (e.g. a resource is not served).
    pub async fn start(&mut self) -> Result<(), HarnessError> {
        if self.running.is_some() {
            return Ok(());
        }
        let client = match &self.account {
            None => self.cluster.client()?,
            Some((namespace, name)) => {
                self.cluster.enforce_rbac()?;
                let token = self.cluster.service_account_token(namespace, name)?;
                self.cluster
                    .fake("running the operator as a ServiceAccount")?
                    .client_with_token(&token)
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let operator = (self.factory)();
        let task = tokio::spawn(operator.run(client, self.settings.clone(), async {
            let _ = stopped.await;
        }));
        self.running = Some((stop, task));
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut steps = 0u64;
        while !self.observer.is_ready() {
            steps += 1;
            // A denied request keeps startup retrying: say so at once
            // (looked for once per virtual second).
            let denied_now = steps.is_multiple_of(200)
                && self.operator.enforced
                && !self.tolerate_forbidden
                && !self.denied().is_empty();
            if self.running.as_ref().is_some_and(|(_, t)| t.is_finished()) {
                return Err(self.stop().await.err().unwrap_or(HarnessError::Stopped(
                    "the operator stopped before it was ready".into(),
                )));
            }
            if tokio::time::Instant::now() >= deadline || denied_now {
                let denied: String = self
                    .denied()
                    .iter()
                    .map(|d| format!("\n  - {}\n    grant {}", d.message, d.grant))
                    .collect();
                let why = if denied.is_empty() {
                    String::new()
                } else {
                    format!("; RBAC denied it:{denied}")
                };
                return Err(HarnessError::Stopped(format!(
                    "the operator did not get ready{why}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    fn behind(&self) -> Vec<(String, u64, u64)> {
        self.observer
            .watched()
            .into_iter()
            .filter_map(|(resource, seen)| {
                let namespaces = self.observer.watched_namespaces(&resource);
                let latest = self.cluster.latest_rv(&resource, namespaces.as_deref());
                (seen < latest).then_some((resource, seen, latest))
            })
            .collect()
    }

    /// Waits, in virtual time, until the operator has nothing left to do:
    /// no queued or running work, watches caught up with the server, and no
    /// delayed handler due (delays are waited out: a 60-second backoff costs
    /// nothing under a paused clock).
    ///
    /// It looks again every millisecond of virtual time while the operator
    /// works; after a second of virtual time with no change it waits for
    /// the next change instead, so a stuck operator is reported as soon as
    /// the paused clock reaches the budget.
    ///
    /// # Errors
    /// A [`SettleError`] reporting what is still pending, and why, when the
    /// budget (default one hour of virtual time) or the wall-clock guard
    /// (default 20 s) runs out.
    pub async fn settle(&self) -> Result<(), SettleError> {
        let start = tokio::time::Instant::now();
        let wall = std::time::Instant::now();
        let deadline = start + self.budget;
        let mut changes = self.observer.changes();
        let mut last_generation = self.observer.generation();
        let mut still_since = start;
        loop {
            // Let every ready task run before looking.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            let quiet = self.observer.is_ready()
                && self.observer.is_idle()
                && self.behind().is_empty()
                && self.cluster.controllers_quiet();
            if quiet && self.operator.enforced && !self.tolerate_forbidden {
                let forbidden = self.newly_denied();
                if !forbidden.is_empty() {
                    return Err(self.settle_error(start, wall, forbidden));
                }
            }
            if quiet {
                match self.next_wakeup() {
                    None => {
                        // Quiet: confirm after one more batch window.
                        tokio::time::sleep(
                            self.settings.batching.batch_window + Duration::from_millis(1),
                        )
                        .await;
                        if self.observer.is_idle()
                            && self.behind().is_empty()
                            && self.cluster.controllers_quiet()
                            && self.next_wakeup().is_none()
                        {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(at) if at <= deadline => {
                        // At least a millisecond, so that paused time moves on.
                        let at = at.max(tokio::time::Instant::now() + Duration::from_millis(1));
                        tokio::time::sleep_until(at).await;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let out_of_wall_time = wall.elapsed() >= self.wall_budget;
            if tokio::time::Instant::now() >= deadline
                || out_of_wall_time
                || (quiet && self.next_wakeup().is_some_and(|at| at > deadline))
            {
                let forbidden = if self.tolerate_forbidden {
                    Vec::new()
                } else {
                    self.newly_denied()
                };
                return Err(self.settle_error(start, wall, forbidden));
            }
            // Look again in a millisecond of virtual time, as the operator's
            // work moves on (the steps keep a run deterministic: time never
            // jumps past work in progress). Once nothing has changed for a
            // whole second of virtual time, the operator is stuck: wait for
            // its next change or the budget's end, so that giving up costs
            // no wall time. A remote cluster's server
            // moves on without telling the observer: look again soon there.
            let generation = self.observer.generation();
            if generation != last_generation {
                last_generation = generation;
                still_since = tokio::time::Instant::now();
            }
            let stuck = still_since.elapsed() >= STUCK_AFTER;
            let poll = if !self.cluster.is_fake() {
                tokio::time::Instant::now() + Duration::from_millis(20)
            } else if stuck {
                deadline
            } else {
                tokio::time::Instant::now() + Duration::from_millis(1)
            };
            tokio::select! {
                _ = changes.changed(), if stuck => {}
                _ = tokio::time::sleep_until(poll.min(deadline)) => {}
            }
        }
    }

    fn settle_error(
        &self,
        start: tokio::time::Instant,
        wall: std::time::Instant,
        forbidden: Vec<Denied>,
    ) -> SettleError {
        let pending = self.observer.pending();
        SettleError {
            waited: start.elapsed(),
            queued: pending.queued,
            busy: pending.busy,
            notes: pending.notes,
            detached: pending.detached,
            wakeups: pending.wakeups,
            running: pending.running,
            behind: self.behind(),
            ready: self.observer.is_ready(),
            wall_clock: wall.elapsed() >= self.wall_budget,
            cluster_busy: !self.cluster.controllers_quiet(),
            forbidden,
        }
    }

    /// The next delayed work of the operator or of the simulated cluster.
    fn next_wakeup(&self) -> Option<tokio::time::Instant> {
        match (
            self.observer.next_wakeup(),
            self.cluster.controllers_next_wakeup(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves virtual time forward (timers and delays fire as they would).
    pub async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    /// Stops the operator and starts a new one (from the factory) against the
    /// same cluster, as after a redeployment.
    ///
    /// # Errors
    /// When the old operator failed, or the new one does not get ready.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop().await?;
        self.observer = Observer::default();
        self.settings.observer = Some(self.observer.clone());
        self.start().await
    }

    /// Stops the operator (waiting, in virtual time, for its cleanup).
    ///
    /// # Errors
    /// The operator's own error or panic, or a timeout if it did not stop.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        let Some((stop, task)) = self.running.take() else {
            return Ok(());
        };
        let _ = stop.send(());
        match tokio::time::timeout(self.stop_timeout, task).await {
            Err(_) => Err(HarnessError::Stopped(format!(
                "the operator did not stop within {:?}",
                self.stop_timeout
            ))),
            Ok(Err(join)) if join.is_panic() => {
                Err(HarnessError::Panicked(panic_message(join.into_panic())))
            }
            Ok(Err(join)) => Err(HarnessError::Stopped(join.to_string())),
            Ok(Ok(Err(e))) => Err(HarnessError::Operator(e.to_string())),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }

    /// The operator's log lines so far (all levels), in order.
    pub fn log(&self) -> Vec<LogLine> {
        self.sink.lines()
    }

    /// The operator's log output as text, one line each.
    pub fn output(&self) -> String {
        self.sink.messages().join("\n")
    }

    /// What the operator did: objects, events, writes, handler outcomes, log.
    pub fn outcome(&self) -> Outcome {
        Outcome::collect(&self.cluster, &self.observer, &self.sink, &self.operator)
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

impl Drop for KopfRunner {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}
