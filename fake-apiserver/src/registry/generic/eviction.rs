//! `pods/eviction`: a deletion that respects PodDisruptionBudgets (kube's
//! `EvictionREST`), what `kubectl drain` posts. A pod no budget covers is
//! deleted; one covered by a budget whose status allows a disruption is
//! deleted and the budget's `disruptionsAllowed` goes down by one (with the
//! pod in `disruptedPods`), atomically with the check; otherwise 429.

use serde_json::{json, Value};

use crate::{
    apimachinery::errors::{ApiError, Cause},
    registry::{
        generic::{Api, Committed},
        rest::{DeleteOptions, Reply, Target},
        semantics,
    },
    storage::{
        object::Change,
        selector::{format_label_selector, LabelSelector},
    },
};

/// Whether a budget's selector selects the pod (an empty one selects none).
fn covers(pdb: &Value, pod: &Value) -> bool {
    let Some(text) = format_label_selector(&pdb["spec"]["selector"]) else {
        return false;
    };
    if text.is_empty() {
        return false;
    }
    let labels = &pod["metadata"]["labels"];
    LabelSelector::parse(&text)
        .is_ok_and(|s| s.matches(&|k| labels.get(k).and_then(Value::as_str).map(String::from)))
}

impl Api {
    /// POST `pods/NAME/eviction`.
    ///
    /// # Errors
    /// 400 when the names differ, 404 for no pod, 429 when a budget forbids
    /// it, 500 when several budgets cover the pod (as kube), and those of
    /// the deletion.
    pub fn evict(&self, t: &Target, eviction: &Value) -> Result<Reply, ApiError> {
        let name = semantics::meta_str(eviction, "name").unwrap_or_default();
        if name != t.name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let pod = self
            .store
            .get(&t.kind.key, &t.namespace, &t.name)
            .ok_or_else(|| self.not_found(t))?
            .value();
        let mut opts = DeleteOptions::default();
        let delete = &eviction["deleteOptions"];
        opts.grace_period = delete["gracePeriodSeconds"].as_i64();
        opts.uid = delete
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.dry_run = delete["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All"));
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let budgets = self
            .resources
            .lookup("policy", "v1", "poddisruptionbudgets");
        let covering: Vec<Value> = match &budgets {
            Some(kind) if !finished && !semantics::is_deleting(&pod) => self
                .store
                .list(&kind.key, Some(&t.namespace), None, None, 0, &|_| true)
                .map(|p| p.items)
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.value())
                .filter(|pdb| covers(pdb, &pod))
                .collect(),
            _ => Vec::new(),
        };
        if covering.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let (Some(pdb), Some(kind)) = (covering.first(), &budgets) {
            let pdb_name = semantics::meta_str(pdb, "name")
                .unwrap_or_default()
                .to_string();
            let now = self.clock.rfc3339();
            let pod_name = t.name.clone();
            let refused = |pdb: &Value| {
                let status = &pdb["status"];
                let message = format!(
                    "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                    status["desiredHealthy"].as_i64().unwrap_or(0),
                    status["currentHealthy"].as_i64().unwrap_or(0)
                );
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                e.causes = vec![Cause {
                    reason: "DisruptionBudget".into(),
                    message,
                    field: String::new(),
                }];
                e
            };
            let committed =
                self.commit(&kind.key, &t.namespace, &pdb_name, opts.dry_run, |cur| {
                    let cur = cur.ok_or_else(|| {
                        ApiError::not_found("policy", "poddisruptionbudgets", &pdb_name)
                    })?;
                    let mut pdb = cur.value();
                    let observed = pdb["status"]["observedGeneration"].as_i64().unwrap_or(0);
                    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
                    let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
                    if observed < generation || allowed <= 0 {
                        return Err(refused(&pdb));
                    }
                    pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
                    if !pdb["status"]["disruptedPods"].is_object() {
                        pdb["status"]["disruptedPods"] = json!({});
                    }
                    pdb["status"]["disruptedPods"][&pod_name] = json!(now);
                    Ok(Change::Update {
                        new: pdb,
                        old: cur.value(),
                    })
                })?;
            if let Committed::Written(w) = committed {
                w.object
                    .ok_or_else(|| ApiError::internal("the budget went away"))?;
            }
        }
        self.delete(t, &opts)?;
        Ok(Reply {
            code: 201,
            ..Reply::ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
                    .to_string()
                    .into(),
            )
        })
    }
}
