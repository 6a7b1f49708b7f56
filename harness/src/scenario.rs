//! Scenarios: steps replayed against an operator and its cluster, written
//! with a Rust builder or in YAML (one format for both):
//!
//! ```yaml
//! steps:
//!   - apply: |
//!       apiVersion: kopf.dev/v1
//!       kind: KopfExample
//!       metadata: {name: kopf-example-1}
//!       spec: {field: value}
//!   - settle
//!   - patch: {resource: kopfexamples.kopf.dev, name: kopf-example-1, patch: {spec: {field: other}}}
//!   - fault: {verbs: [patch], resource: kopfexamples.kopf.dev, action: {type: status, code: 409}, times: 1}
//!   - inject: {action: cut, resource: kopfexamples.kopf.dev}
//!   - advance: 60
//!   - restart
//!   - expect: {resource: kopfexamples.kopf.dev, name: kopf-example-1, path: status.create_fn.message, equals: hello world}
//!   - delete: {resource: kopfexamples.kopf.dev, name: kopf-example-1}
//!   - settle
//!   # On a simulated cluster (`Cluster::simulated`): incidents.
//!   - nodeDown: node-1
//!   - nodeUp: node-1
//!   - failPod: {name: db-1, failure: CrashLoopBackOff, exitCode: 1}
//!   - failPod: {name: web-abc12, failure: ImagePullBackOff}
//! ```
//!
//! `namespace` defaults to `default`; `advance` is in seconds.

use std::time::Duration;

use fake_apiserver::testing::{faults::FaultRule, inject::InjectRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{error::HarnessError, runner::KopfRunner};

fn default_namespace() -> String {
    "default".into()
}

/// An object addressed by a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `plural` or `plural.group`.
    pub resource: String,
    /// Namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A pod made to misbehave (see the fake's stages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailure {
    /// Namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The pod.
    pub name: String,
    /// `CrashLoopBackOff`, `OOMKilled`, `ImagePullBackOff`, `ErrImagePull`
    /// or `NeverReady`.
    pub failure: String,
    /// The exit code of a crash loop's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Apply YAML/JSON documents (created or replaced; CRDs first).
    Apply(String),
    /// Merge-patch an object.
    Patch {
        /// Which object.
        #[serde(flatten)]
        object: ObjectRef,
        /// The merge patch.
        patch: Value,
    },
    /// Delete an object (finalizers hold it).
    Delete(ObjectRef),
    /// Inject into live watches (see the fake server's control API).
    Inject(InjectRequest),
    /// Install a fault rule.
    Fault(FaultRule),
    /// Move virtual time forward by this many seconds.
    Advance(f64),
    /// Wait until the operator has nothing left to do.
    Settle,
    /// Stop the operator and start a new one.
    Restart,
    /// Take a node of the simulated cluster down (`Ready` becomes `Unknown`).
    NodeDown(String),
    /// Bring a node back.
    NodeUp(String),
    /// Make a pod's containers fail from now on.
    FailPod(PodFailure),
    /// Check a field of an object (`equals` a value, or `absent`).
    Expect {
        /// Which object.
        #[serde(flatten)]
        object: ObjectRef,
        /// Dotted path, e.g. `status.create_fn.message`; empty = the object itself.
        #[serde(default)]
        path: String,
        /// The expected value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<Value>,
        /// Expect the field (or object) to be absent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        absent: bool,
    },
}

/// A scenario: steps in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Patches and deletes of absent objects are skipped instead of failing
    /// (for generated scenarios).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lenient: bool,
    /// The steps.
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub steps: Vec<Step>,
}

impl Scenario {
    /// An empty scenario.
    pub fn new() -> Self {
        Scenario::default()
    }

    /// Parses the YAML format.
    ///
    /// # Errors
    /// When the text is not a scenario.
    pub fn from_yaml(text: &str) -> Result<Self, HarnessError> {
        serde_yaml::from_str(text).map_err(|e| HarnessError::Scenario(e.to_string()))
    }

    /// The scenario in the YAML format.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    fn push(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds an `apply` step.
    pub fn apply(self, yaml: &str) -> Self {
        self.push(Step::Apply(yaml.into()))
    }

    /// Adds a `patch` step.
    pub fn patch(self, resource: &str, name: &str, patch: Value) -> Self {
        self.push(Step::Patch {
            object: ObjectRef {
                resource: resource.into(),
                namespace: default_namespace(),
                name: name.into(),
            },
            patch,
        })
    }

    /// Adds a `delete` step.
    pub fn delete(self, resource: &str, name: &str) -> Self {
        self.push(Step::Delete(ObjectRef {
            resource: resource.into(),
            namespace: default_namespace(),
            name: name.into(),
        }))
    }

    /// Adds an `inject` step.
    pub fn inject(self, request: InjectRequest) -> Self {
        self.push(Step::Inject(request))
    }

    /// Adds a `fault` step.
    pub fn fault(self, rule: FaultRule) -> Self {
        self.push(Step::Fault(rule))
    }

    /// Adds an `advance` step.
    pub fn advance(self, by: Duration) -> Self {
        self.push(Step::Advance(by.as_secs_f64()))
    }

    /// Adds a `settle` step.
    pub fn settle(self) -> Self {
        self.push(Step::Settle)
    }

    /// Adds a `restart` step.
    pub fn restart(self) -> Self {
        self.push(Step::Restart)
    }

    /// Adds a `nodeDown` step: a node of the simulated cluster goes down.
    pub fn node_down(self, node: &str) -> Self {
        self.push(Step::NodeDown(node.into()))
    }

    /// Adds a `nodeUp` step: the node comes back.
    pub fn node_up(self, node: &str) -> Self {
        self.push(Step::NodeUp(node.into()))
    }

    /// Adds a `failPod` step: a pod (in `default`) fails as `failure` says
    /// from now on.
    pub fn fail_pod(self, pod: &str, failure: &str, exit_code: Option<i32>) -> Self {
        self.push(Step::FailPod(PodFailure {
            namespace: default_namespace(),
            name: pod.into(),
            failure: failure.into(),
            exit_code,
        }))
    }

    /// Adds an `expect` step for a value.
    pub fn expect(self, resource: &str, name: &str, path: &str, equals: Value) -> Self {
        self.push(Step::Expect {
            object: ObjectRef {
                resource: resource.into(),
                namespace: default_namespace(),
                name: name.into(),
            },
            path: path.into(),
            equals: Some(equals),
            absent: false,
        })
    }

    /// Adds an `expect` step for an absent field or object.
    pub fn expect_absent(self, resource: &str, name: &str, path: &str) -> Self {
        self.push(Step::Expect {
            object: ObjectRef {
                resource: resource.into(),
                namespace: default_namespace(),
                name: name.into(),
            },
            path: path.into(),
            equals: None,
            absent: true,
        })
    }
}

fn is_not_found(e: &HarnessError) -> bool {
    e.to_string().contains("NotFound (404)")
}

fn at_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, k| match v {
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => v.get(k),
    })
}

impl KopfRunner {
    /// In a lenient scenario, edits of absent objects are no-ops.
    fn tolerate(
        &self,
        scenario: &Scenario,
        done: Result<(), HarnessError>,
    ) -> Result<(), HarnessError> {
        match done {
            Err(e) if scenario.lenient && is_not_found(&e) => Ok(()),
            other => other,
        }
    }

    /// Plays `scenario` (starting the operator if needed).
    ///
    /// # Errors
    /// The first step that fails, with its number.
    pub async fn play(&mut self, scenario: &Scenario) -> Result<(), HarnessError> {
        self.start().await?;
        for (i, step) in scenario.steps.iter().enumerate() {
            let n = i + 1;
            let fail = |e: HarnessError| HarnessError::Step(n, Box::new(e));
            match step {
                Step::Apply(text) => {
                    self.cluster().apply(text).map_err(fail)?;
                }
                Step::Patch { object, patch } => {
                    let done = self.cluster().patch(
                        &object.resource,
                        &object.namespace,
                        &object.name,
                        patch,
                    );
                    self.tolerate(scenario, done.map(|_| ())).map_err(fail)?;
                }
                Step::Delete(object) => {
                    let done =
                        self.cluster()
                            .delete(&object.resource, &object.namespace, &object.name);
                    self.tolerate(scenario, done).map_err(fail)?;
                }
                Step::Inject(request) => {
                    let injector = self.cluster().injector().map_err(fail)?;
                    let done = injector.apply(request).map(|_| ());
                    match done {
                        Err(fake_apiserver::testing::inject::InjectError::NothingToDeliver {
                            ..
                        }) if scenario.lenient => {}
                        other => other.map_err(|e| fail(HarnessError::Refused(e.to_string())))?,
                    }
                }
                Step::Fault(rule) => {
                    self.cluster()
                        .injector()
                        .map_err(fail)?
                        .add_fault(rule.clone());
                }
                Step::Advance(secs) => self.advance(Duration::from_secs_f64(secs.max(0.0))).await,
                Step::Settle => self
                    .settle()
                    .await
                    .map_err(|e| fail(HarnessError::Settle(Box::new(e))))?,
                Step::Restart => self.restart().await.map_err(fail)?,
                Step::NodeDown(node) => self.cluster().node_down(node).map_err(fail)?,
                Step::NodeUp(node) => self.cluster().node_up(node).map_err(fail)?,
                Step::FailPod(p) => self
                    .cluster()
                    .fail_pod(&p.namespace, &p.name, &p.failure, p.exit_code)
                    .map_err(fail)?,
                Step::Expect {
                    object,
                    path,
                    equals,
                    absent,
                } => {
                    let obj = self
                        .cluster()
                        .get(&object.resource, &object.namespace, &object.name);
                    let got = obj
                        .as_ref()
                        .and_then(|o| at_path(o, path))
                        .filter(|v| !v.is_null());
                    let ok = if *absent {
                        got.is_none()
                    } else {
                        got == equals.as_ref()
                    };
                    if !ok {
                        return Err(fail(HarnessError::Expectation(format!(
                            "{}/{} {}: expected {}, got {}",
                            object.resource,
                            object.name,
                            if path.is_empty() {
                                "(object)"
                            } else {
                                path.as_str()
                            },
                            if *absent {
                                "nothing".to_string()
                            } else {
                                equals.clone().unwrap_or(Value::Null).to_string()
                            },
                            got.map_or("nothing".to_string(), Value::to_string)
                        ))));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_builder_should_be_one_format() {
        let built = Scenario::new()
            .apply("kind: X\n")
            .settle()
            .patch(
                "kopfexamples.kopf.dev",
                "x",
                serde_json::json!({"spec": {"a": 1}}),
            )
            .advance(Duration::from_secs(60))
            .restart()
            .expect(
                "kopfexamples.kopf.dev",
                "x",
                "status.m",
                serde_json::json!("hi"),
            )
            .delete("kopfexamples.kopf.dev", "x")
            .node_down("node-1")
            .fail_pod("p", "CrashLoopBackOff", Some(2))
            .node_up("node-1");
        let parsed = Scenario::from_yaml(&built.to_yaml()).unwrap();
        assert_eq!(parsed, built);
        let text = "steps:\n  - settle\n  - advance: 1.5\n  - delete: {resource: cm, name: x}\n";
        let s = Scenario::from_yaml(text).unwrap();
        assert_eq!(s.steps[1], Step::Advance(1.5));
        assert!(Scenario::from_yaml("steps: [bogus]").is_err());
    }
}
