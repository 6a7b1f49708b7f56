//! How a simulated pod's containers live, in the spirit of KWOK's Stage
//! rules: how long each step takes and what goes wrong, from a
//! cluster-wide stages file and per-pod annotations (which win); and the
//! pure timeline that says what a pod's status is at any instant.
//!
//! The stages file (`--stages FILE`, YAML):
//!
//! ```yaml
//! stages:
//! - match: {namespace: db, labels: {app: postgres}, image: "postgres*"}
//!   startAfter: 2s        # ContainerCreating, then Running
//!   readyAfter: 5s        # Running, then Ready (besides a readiness probe)
//!   runFor: 30s           # then the container exits...
//!   exitCode: 1           # ...with this code
//!   fail: CrashLoopBackOff  # or ImagePullBackOff, ErrImagePull, OOMKilled, NeverReady
//!   stopAfter: 3s         # how long it takes to stop on deletion (capped by the grace period)
//! ```
//!
//! The first rule that matches a pod applies; each field may be given per
//! pod by an annotation `stages.fake.kopf.dev/<field>` (`startAfter` is
//! `stages.fake.kopf.dev/start-after`, and so on).

use std::{collections::HashMap, time::Duration};

use serde::Deserialize;
use serde_json::Value;

/// The annotation prefix of per-pod stage fields.
pub const ANNOTATION_PREFIX: &str = "stages.fake.kopf.dev/";

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// What goes wrong with a pod's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Failure {
    /// Each run exits with `exitCode` (1 unless given); restarts back off.
    CrashLoopBackOff,
    /// Like a crash loop, but killed for memory (exit code 137).
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// The image never pulls; the pod stays Pending in ImagePullBackOff.
    ImagePullBackOff,
    /// The image never pulls; the pod stays Pending in ErrImagePull.
    ErrImagePull,
    /// The containers run and never become ready.
    NeverReady,
}

impl Failure {
    fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// How a pod's containers behave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// ContainerCreating before Running (default 1 s).
    pub start_after: Option<Duration>,
    /// Running before Ready, besides a readiness probe's initial delay.
    pub ready_after: Option<Duration>,
    /// How long a run lasts before the container exits (default: forever;
    /// 1 s for a Job's pods; none for a crash loop).
    pub run_for: Option<Duration>,
    /// The exit code when a run ends.
    pub exit_code: Option<i32>,
    /// What goes wrong.
    pub fail: Option<Failure>,
    /// How long the containers take to stop once the pod is deleted
    /// (default 0: at once; never more than the grace period).
    pub stop_after: Option<Duration>,
}

/// One rule of the stages file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Which pods it applies to.
    #[serde(default, rename = "match")]
    pub selector: Match,
    #[serde(default, with = "humantime")]
    start_after: Option<Duration>,
    #[serde(default, with = "humantime")]
    ready_after: Option<Duration>,
    #[serde(default, with = "humantime")]
    run_for: Option<Duration>,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    fail: Option<Failure>,
    #[serde(default, with = "humantime")]
    stop_after: Option<Duration>,
}

/// Which pods a rule applies to (all of the given ones must hold).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The pod's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels the pod has (equal values).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// A glob (`*`) over any container's image.
    #[serde(default)]
    pub image: Option<String>,
}

impl Match {
    fn matches(&self, pod: &Value) -> bool {
        let meta = &pod["metadata"];
        if self
            .namespace
            .as_deref()
            .is_some_and(|ns| meta["namespace"] != ns)
        {
            return false;
        }
        if !self
            .labels
            .iter()
            .all(|(k, v)| meta["labels"][k].as_str() == Some(v))
        {
            return false;
        }
        match &self.image {
            None => true,
            Some(glob) => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| glob_match(glob, c["image"].as_str().unwrap_or_default())),
        }
    }
}

/// The cluster-wide stages: rules, first match wins.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// The rules.
    #[serde(default)]
    pub stages: Vec<Rule>,
}

/// A stages file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("stages file: {0}")]
pub struct StagesError(String);

impl Stages {
    /// Parses a stages file (YAML or JSON).
    ///
    /// # Errors
    /// When it is not a valid stages document.
    pub fn parse(text: &str) -> Result<Self, StagesError> {
        serde_yaml::from_str(text).map_err(|e| StagesError(e.to_string()))
    }

    /// The profile of a pod: the first matching rule, then the pod's
    /// annotations over it.
    pub fn profile(&self, pod: &Value) -> Profile {
        let mut p = Profile::default();
        if let Some(rule) = self.stages.iter().find(|r| r.selector.matches(pod)) {
            p = Profile {
                start_after: rule.start_after,
                ready_after: rule.ready_after,
                run_for: rule.run_for,
                exit_code: rule.exit_code,
                fail: rule.fail,
                stop_after: rule.stop_after,
            };
        }
        if let Some(annotations) = pod["metadata"]["annotations"].as_object() {
            let get = |field: &str| {
                annotations
                    .get(&format!("{ANNOTATION_PREFIX}{field}"))
                    .and_then(Value::as_str)
            };
            let duration = |field: &str| get(field).and_then(parse_duration);
            if let Some(d) = duration("start-after") {
                p.start_after = Some(d);
            }
            if let Some(d) = duration("ready-after") {
                p.ready_after = Some(d);
            }
            if let Some(d) = duration("run-for") {
                p.run_for = Some(d);
            }
            if let Some(d) = duration("stop-after") {
                p.stop_after = Some(d);
            }
            if let Some(code) = get("exit-code").and_then(|c| c.parse().ok()) {
                p.exit_code = Some(code);
            }
            if let Some(fail) = get("fail").and_then(Failure::parse) {
                p.fail = Some(fail);
            }
        }
        p
    }
}

pub use crate::apimachinery::duration::parse_duration;

mod humantime {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            super::parse_duration(&t)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {t:?}")))
        })
        .transpose()
    }
}

/// What one container is doing at an instant (times in seconds since the
/// Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running: `reason` is ContainerCreating, ErrImagePull,
    /// ImagePullBackOff or CrashLoopBackOff.
    Waiting {
        /// Why.
        reason: &'static str,
    },
    /// Running since `since`; `ready` from `ready_at` on, if ever.
    Running {
        /// Start of this run.
        since: i64,
        /// When it becomes ready, if it does.
        ready_at: Option<i64>,
    },
    /// Exited, for good.
    Terminated(Exit),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code.
    pub code: i32,
    /// Completed, Error or OOMKilled.
    pub reason: &'static str,
    /// When the run started.
    pub started: i64,
    /// When it ended.
    pub finished: i64,
}

/// The containers' state at an instant: the state, the restart count, the
/// last run's end (while restarting), and when anything next changes
/// (`steady`: only a crash loop's repeats are left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moment {
    /// The current state.
    pub state: State,
    /// Restarts so far.
    pub restarts: i64,
    /// The previous run's end.
    pub last: Option<Exit>,
    /// When the state next changes.
    pub next: Option<i64>,
    /// Whether that change only repeats a crash loop.
    pub steady: bool,
}

/// The longest a crash loop's back-off grows to, as the kubelet's.
const MAX_BACKOFF: i64 = 300;

/// The containers' state at `now`, for a run that began at `epoch`
/// (`pulled`: the image was there already, so no ContainerCreating).
pub fn moment(
    profile: &Profile,
    restart_policy: &str,
    job_pod: bool,
    probe_delay: i64,
    epoch: i64,
    now: i64,
    restarts_before: i64,
) -> Moment {
    let secs = |d: Option<Duration>, default: i64| d.map_or(default, |d| d.as_secs() as i64);
    let start = epoch + secs(profile.start_after, 1);
    let waiting = |reason, next: Option<i64>| Moment {
        state: State::Waiting { reason },
        restarts: restarts_before,
        last: None,
        next,
        steady: false,
    };
    match profile.fail {
        Some(Failure::ErrImagePull) if now >= start => return waiting("ErrImagePull", None),
        Some(Failure::ImagePullBackOff) if now > start => return waiting("ImagePullBackOff", None),
        Some(Failure::ImagePullBackOff) if now >= start => {
            return waiting("ErrImagePull", Some(start + 1))
        }
        _ if now < start => return waiting("ContainerCreating", Some(start)),
        _ => {}
    }
    let crashing = matches!(
        profile.fail,
        Some(Failure::CrashLoopBackOff | Failure::OomKilled)
    );
    let run_for = match profile.run_for {
        Some(d) => Some(d.as_secs() as i64),
        None if crashing => Some(0),
        None if job_pod => Some(1),
        None => None,
    };
    let (code, reason) = match profile.fail {
        Some(Failure::OomKilled) => (137, "OOMKilled"),
        _ => {
            let code = profile.exit_code.unwrap_or(if crashing { 1 } else { 0 });
            (code, if code == 0 { "Completed" } else { "Error" })
        }
    };
    let ready_delay = probe_delay.max(secs(profile.ready_after, 0));
    let never_ready = profile.fail == Some(Failure::NeverReady);
    let mut since = start;
    let mut crashes = 0i64;
    let mut last = None;
    for restarts in (restarts_before..).take(100_000) {
        let ready_at = (!never_ready).then_some(since + ready_delay);
        let end = run_for.map(|r| since + r);
        if end.is_none_or(|end| now < end) {
            let next = [ready_at.filter(|r| *r > now), end]
                .into_iter()
                .flatten()
                .min();
            return Moment {
                state: State::Running { since, ready_at },
                restarts,
                last,
                next,
                steady: crashes > 1 && ready_at.is_none_or(|r| r <= now),
            };
        }
        let end = end.unwrap_or(since);
        let exit = Exit {
            code,
            reason,
            started: since,
            finished: end,
        };
        let restarts_again = match restart_policy {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if !restarts_again {
            return Moment {
                state: State::Terminated(exit),
                restarts,
                last,
                next: None,
                steady: false,
            };
        }
        // The first restart is at once; then 10 s, 20 s, ... up to 5 min.
        let backoff = if crashes == 0 {
            0
        } else {
            (10i64 << (crashes - 1).min(10)).min(MAX_BACKOFF)
        };
        crashes += 1;
        let back = end + backoff;
        if now < back {
            return Moment {
                state: State::Waiting {
                    reason: "CrashLoopBackOff",
                },
                restarts,
                last: Some(exit),
                next: Some(back),
                steady: crashes > 1,
            };
        }
        last = Some(exit);
        since = back;
    }
    waiting("CrashLoopBackOff", None)
}

/// What a kubelet remembers of the pods it runs, by uid.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    pub(crate) runs: HashMap<String, Run>,
    /// The uid each pod key had, so that a gone pod's run is forgotten.
    pub(crate) uid_of: HashMap<String, String>,
    /// Next free address per node.
    pub(crate) next_ip: HashMap<String, u32>,
}

#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// When this run of the timeline began (seconds since the epoch).
    pub(crate) epoch: i64,
    pub(crate) profile: Profile,
    pub(crate) restarts_before: i64,
    pub(crate) ip: String,
    /// The moment last posted (events are told on changes).
    pub(crate) posted: Option<Moment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_should_match_runs_of_characters() {
        assert!(glob_match("postgres*", "postgres:16"));
        assert!(glob_match("*/nginx:*", "docker.io/nginx:1"));
        assert!(glob_match("a*b*c", "aXbYc") && !glob_match("a*b*c", "aXcYb"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn durations_should_parse_like_go() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn annotations_should_win_over_the_file() {
        let stages = Stages::parse(
            "stages:\n- match: {labels: {app: db}}\n  startAfter: 3s\n  fail: NeverReady\n",
        )
        .unwrap();
        let pod = json!({"metadata": {"labels": {"app": "db"},
            "annotations": {"stages.fake.kopf.dev/fail": "CrashLoopBackOff"}}});
        let p = stages.profile(&pod);
        assert_eq!(
            (p.start_after, p.fail),
            (
                Some(Duration::from_secs(3)),
                Some(Failure::CrashLoopBackOff)
            )
        );
        assert!(Stages::parse("stages:\n- startAfter: soon\n").is_err());
        assert!(Stages::parse("stages:\n- typo: 1\n").is_err());
    }

    #[test]
    fn a_healthy_pod_should_create_run_and_get_ready() {
        let p = Profile::default();
        let at = |now| moment(&p, "Always", false, 5, 100, now, 0);
        assert_eq!(
            at(100).state,
            State::Waiting {
                reason: "ContainerCreating"
            }
        );
        assert_eq!(at(100).next, Some(101));
        assert_eq!(
            at(103).state,
            State::Running {
                since: 101,
                ready_at: Some(106)
            }
        );
        assert_eq!(at(103).next, Some(106));
        assert_eq!(at(200).next, None);
    }

    #[test]
    fn a_crash_loop_should_back_off_doubling_up_to_five_minutes() {
        let p = Profile {
            fail: Some(Failure::CrashLoopBackOff),
            ..Profile::default()
        };
        let at = |now| moment(&p, "Always", false, 0, 0, now, 0);
        // Starts at 1, exits at once, restarts at once (restart 1), exits,
        // backs off 10 s (to 11), 20 s (to 31), 40 s (to 71)...
        let m = at(5);
        assert_eq!(
            (m.state.clone(), m.restarts, m.next),
            (
                State::Waiting {
                    reason: "CrashLoopBackOff"
                },
                1,
                Some(11)
            )
        );
        assert_eq!(m.last.unwrap().code, 1);
        assert_eq!((at(12).restarts, at(12).next), (2, Some(31)));
        assert!(at(12).steady);
        let late = at(100_000);
        assert!(late.restarts > 300 && late.next.unwrap() - 100_000 <= 300);
    }

    #[test]
    fn a_job_pod_should_complete_and_an_image_failure_should_stay() {
        let p = Profile::default();
        let done = moment(&p, "Never", true, 0, 0, 10, 0);
        assert!(matches!(
            done.state,
            State::Terminated(Exit {
                code: 0,
                reason: "Completed",
                ..
            })
        ));
        let oom = Profile {
            fail: Some(Failure::OomKilled),
            ..Profile::default()
        };
        assert_eq!(
            moment(&oom, "Never", false, 0, 0, 10, 0).state,
            State::Terminated(Exit {
                code: 137,
                reason: "OOMKilled",
                started: 1,
                finished: 1
            })
        );
        let pull = Profile {
            fail: Some(Failure::ImagePullBackOff),
            ..Profile::default()
        };
        assert_eq!(
            moment(&pull, "Always", false, 0, 0, 1, 0).state,
            State::Waiting {
                reason: "ErrImagePull"
            }
        );
        let stuck = moment(&pull, "Always", false, 0, 0, 50, 0);
        assert_eq!(
            (stuck.state, stuck.next),
            (
                State::Waiting {
                    reason: "ImagePullBackOff"
                },
                None
            )
        );
    }
}
