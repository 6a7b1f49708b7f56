//! The CronJob controller, on the cluster's clock: at each scheduled time
//! (`cron`) a Job `NAME-<minutes since the epoch>` from the job template,
//! unless `suspend`; `concurrencyPolicy` `Allow`, `Forbid` (skipped while
//! one runs) or `Replace` (the running one goes); a run later than
//! `startingDeadlineSeconds` is missed; finished Jobs beyond the history
//! limits go. Status: `active`, `lastScheduleTime`, `lastSuccessfulTime`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    apimachinery::clock::{format_time, parse_time},
    controllers::{
        condition, controller_ref,
        cron::Schedule,
        int, is_deleting,
        resources::{key_of, Res},
        selection::Ctl,
        sim::{Identity, Sim},
    },
};

const WHO: Identity = Identity::ControllerManager("cronjob-controller");

fn seconds(v: &Value) -> Option<i64> {
    v.as_str().and_then(parse_time).map(|t| t.as_second())
}

fn finished(job: &Value) -> Option<&'static str> {
    ["Complete", "Failed"]
        .into_iter()
        .find(|k| condition(job, k).is_some_and(|c| c["status"] == "True"))
}

fn reference(job: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
           "namespace": job["metadata"]["namespace"], "uid": job["metadata"]["uid"],
           "resourceVersion": job["metadata"]["resourceVersion"]})
}

/// Syncs one CronJob.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(cj) = sim.get(Res::CronJobs, key) else {
        return Ok(());
    };
    if is_deleting(&cj) {
        return Ok(());
    }
    let Some(schedule) = cj["spec"]["schedule"].as_str().and_then(Schedule::parse) else {
        return Ok(());
    };
    let now = sim.clock.now().as_second();
    let uid = cj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let jobs = sim.owned(Res::Jobs, &uid);
    let mut active: Vec<_> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && !is_deleting(j))
        .cloned()
        .collect();
    let since = seconds(&cj["status"]["lastScheduleTime"])
        .or_else(|| seconds(&cj["metadata"]["creationTimestamp"]))
        .unwrap_or(now);
    // The latest time due (earlier ones missed while we were away are skipped, as kube does).
    let mut due = None;
    let mut t = since;
    while let Some(next) = schedule.next_after(t) {
        if next > now {
            break;
        }
        due = Some(next);
        t = next;
    }
    let mut status = json!({});
    if let Some(at) = due {
        let late = now - at;
        let missed = cj["spec"]["startingDeadlineSeconds"]
            .as_i64()
            .is_some_and(|d| late > d);
        let suspended = cj["spec"]["suspend"] == true;
        let policy = cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow");
        let blocked = policy == "Forbid" && !active.is_empty();
        if !(missed || suspended || blocked) {
            if policy == "Replace" {
                for job in active.drain(..) {
                    sim.delete(WHO, Res::Jobs, &key_of(&job), None).await?;
                }
            }
            let name = format!(
                "{}-{}",
                cj["metadata"]["name"].as_str().unwrap_or_default(),
                at / 60
            );
            let template = &cj["spec"]["jobTemplate"];
            let mut meta = json!({"name": name, "namespace": cj["metadata"]["namespace"],
                "ownerReferences": [controller_ref(&cj)],
                "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": format_time(jiff::Timestamp::from_second(at).unwrap_or_default())}});
            for field in ["labels", "annotations"] {
                if let Some(m) = template["metadata"][field].as_object() {
                    for (k, v) in m {
                        meta[field][k] = v.clone();
                    }
                }
            }
            let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]});
            match sim.create(WHO, Res::Jobs, job).await {
                Ok(created) => {
                    sim.event(
                        WHO,
                        "cronjob-controller",
                        &cj,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created job {name}"),
                    )
                    .await;
                    active.push(std::sync::Arc::new(created));
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        status["lastScheduleTime"] = json!(format_time(
            jiff::Timestamp::from_second(at).unwrap_or_default()
        ));
    }
    status["active"] = json!(active.iter().map(|j| reference(j)).collect::<Vec<_>>());
    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| seconds(&j["status"]["completionTime"]))
        .max();
    if let Some(at) = last_success {
        status["lastSuccessfulTime"] = json!(format_time(
            jiff::Timestamp::from_second(at).unwrap_or_default()
        ));
    }
    let differs = status.as_object().into_iter().flatten().any(|(k, v)| {
        let current = &cj["status"][k];
        current != v && !(current.is_null() && v.as_array().is_some_and(Vec::is_empty))
    });
    if differs {
        sim.patch_status(WHO, Res::CronJobs, key, status).await?;
    }
    // History: the oldest finished Jobs beyond the limits go.
    for (outcome, limit) in [
        (
            "Complete",
            int(&cj["spec"]["successfulJobsHistoryLimit"], 3),
        ),
        ("Failed", int(&cj["spec"]["failedJobsHistoryLimit"], 1)),
    ] {
        let mut done: Vec<_> = jobs
            .iter()
            .filter(|j| finished(j) == Some(outcome) && !is_deleting(j))
            .collect();
        done.sort_by_key(|j| j["metadata"]["name"].as_str().map(String::from));
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        for job in done.into_iter().take(extra) {
            sim.delete(WHO, Res::Jobs, &key_of(job), None).await?;
        }
    }
    // The next run: a steady timer (a schedule never ends).
    if let Some(next) = schedule.next_after(now) {
        sim.after(
            Duration::from_secs((next - now).max(1) as u64),
            Ctl::CronJob,
            key,
            true,
        );
    }
    Ok(())
}
