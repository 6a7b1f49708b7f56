//! The Job controller (non-indexed Jobs): up to `parallelism` pods at a
//! time until `completions` succeed (or, without completions, until one
//! succeeds and none runs); a failed pod is replaced after kube's
//! back-off (10 s, doubling, at most 6 min) until more than `backoffLimit`
//! failed; `activeDeadlineSeconds` ends it; `suspend` stops its pods. The
//! status counts active, ready, succeeded and failed pods, with
//! `SuccessCriteriaMet`/`Complete` or `FailureTarget`/`Failed` and kube's
//! reasons. `ttlSecondsAfterFinished` deletes a finished Job (its pods go
//! through the garbage collector).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    apimachinery::clock::parse_time,
    controllers::{
        condition, int, is_deleting, pod_ready,
        replicaset::{create_pod, pod_from_template},
        resources::{key_of, Res},
        selection::Ctl,
        sim::{Identity, Sim},
    },
};

const WHO: Identity = Identity::ControllerManager("job-controller");
const TTL: Identity = Identity::ControllerManager("ttl-after-finished-controller");

fn finished(job: &Value) -> Option<&'static str> {
    ["Complete", "Failed"]
        .into_iter()
        .find(|kind| condition(job, kind).is_some_and(|c| c["status"] == "True"))
}

fn seconds_of(v: &Value) -> Option<i64> {
    v.as_str().and_then(parse_time).map(|t| t.as_second())
}

/// The delay before a new pod after `failed` failures, the last at `last`.
fn backoff_until(failed: i64, last: Option<i64>) -> Option<i64> {
    if failed == 0 {
        return None;
    }
    let delay = (10i64 << (failed - 1).min(10)).min(360);
    last.map(|l| l + delay)
}

fn cond(kind: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now})
}

/// Syncs one Job.
pub(crate) async fn sync(sim: &mut Sim, key: &str) -> Result<(), kube::Error> {
    let Some(job) = sim.get(Res::Jobs, key) else {
        return Ok(());
    };
    if is_deleting(&job) {
        return Ok(());
    }
    let now_s = sim.clock.now().as_second();
    let now = sim.clock.rfc3339();
    if let Some(done) = finished(&job) {
        if let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_i64() {
            let at = condition(&job, done)
                .and_then(|c| seconds_of(&c["lastTransitionTime"]))
                .unwrap_or(now_s)
                + ttl;
            if now_s >= at {
                sim.delete(TTL, Res::Jobs, key, None).await?;
            } else {
                sim.after(
                    Duration::from_secs((at - now_s) as u64),
                    Ctl::Job,
                    key,
                    false,
                );
            }
        }
        return Ok(());
    }
    let uid = job["metadata"]["uid"].clone();
    let pods = sim.owned(Res::Pods, uid.as_str().unwrap_or_default());
    let phase = |p: &Value| {
        p["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let active: Vec<_> = pods
        .iter()
        .filter(|p| !is_deleting(p) && !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .cloned()
        .collect();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
    let failed_pods: Vec<_> = pods.iter().filter(|p| phase(p) == "Failed").collect();
    let failed = failed_pods.len() as i64;
    let terminating = pods
        .iter()
        .filter(|p| is_deleting(p) && !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .count();
    let completions = job["spec"]["completions"].as_i64();
    let parallelism = int(&job["spec"]["parallelism"], 1).max(0);
    let backoff_limit = int(&job["spec"]["backoffLimit"], 6);
    let suspended = job["spec"]["suspend"] == true;
    let start = seconds_of(&job["status"]["startTime"]);
    let mut status = json!({});
    if start.is_none() && !suspended {
        status["startTime"] = json!(now);
    }
    let deadline = job["spec"]["activeDeadlineSeconds"].as_i64();
    let outcome: Option<(&str, &str, &str)> = if completions.is_some_and(|c| succeeded >= c)
        || (completions.is_none() && succeeded > 0 && active.is_empty())
    {
        Some((
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ))
    } else if failed > backoff_limit {
        Some((
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| start.is_some_and(|s| now_s - s >= d)) {
        Some((
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let mut active_now = active.len() as i64;
    if let Some((done, reason, message)) = outcome {
        for pod in &active {
            sim.delete(WHO, Res::Pods, &key_of(pod), None).await?;
        }
        active_now = 0;
        let target = if done == "Complete" {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        };
        let mut conditions = job["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions.push(cond(target, reason, message, &now));
        conditions.push(cond(done, reason, message, &now));
        status["conditions"] = json!(conditions);
        if done == "Complete" {
            status["completionTime"] = json!(now);
        }
        let event = if done == "Complete" {
            ("Normal", "Completed", "Job completed".to_string())
        } else {
            ("Warning", reason, message.to_string())
        };
        sim.event(WHO, "job-controller", &job, event.0, event.1, event.2)
            .await;
    } else if suspended {
        for pod in &active {
            sim.delete(WHO, Res::Pods, &key_of(pod), None).await?;
        }
        active_now = 0;
    } else {
        let remaining = completions.map_or(parallelism, |c| (c - succeeded).max(0));
        let want = parallelism.min(remaining);
        let last_failure = failed_pods
            .iter()
            .filter_map(|p| {
                p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
                    .as_str()
                    .and_then(parse_time)
                    .map(|t| t.as_second())
            })
            .max();
        let wait = backoff_until(failed, last_failure).filter(|at| *at > now_s);
        if active_now < want {
            match wait {
                Some(at) => sim.after(
                    Duration::from_secs((at - now_s) as u64),
                    Ctl::Job,
                    key,
                    false,
                ),
                None => {
                    let missing = want - active_now;
                    for _ in 0..missing {
                        let pod = pod_from_template(&job, &job["spec"]["template"], None);
                        create_pod(sim, WHO, "job-controller", &job, pod).await?;
                        active_now += 1;
                    }
                }
            }
        } else if active_now > want {
            for pod in active.iter().skip(want as usize) {
                sim.delete(WHO, Res::Pods, &key_of(pod), None).await?;
                active_now -= 1;
            }
        }
        if let (Some(d), Some(s)) = (deadline, start) {
            sim.after(
                Duration::from_secs((s + d - now_s).max(1) as u64),
                Ctl::Job,
                key,
                false,
            );
        }
    }
    status["active"] = json!(active_now);
    status["ready"] = json!(active.iter().filter(|p| pod_ready(p)).count());
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["terminating"] = json!(terminating);
    let differs = status.as_object().into_iter().flatten().any(|(k, v)| {
        let current = &job["status"][k];
        current != v && !(current.is_null() && v == 0)
    });
    if differs {
        sim.patch_status(WHO, Res::Jobs, key, status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_pods_should_back_off_doubling_up_to_six_minutes() {
        assert_eq!(backoff_until(0, Some(100)), None);
        assert_eq!(backoff_until(1, Some(100)), Some(110));
        assert_eq!(backoff_until(3, Some(100)), Some(140));
        assert_eq!(backoff_until(9, Some(100)), Some(460));
    }
}
