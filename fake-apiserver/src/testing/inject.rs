//! Watch injection: synthetic events in live watch streams (lies the client
//! must survive, or real writes), duplicates, stale versions, held and cut
//! streams, forced expiry and compaction; and, through [`faults`], fault
//! rules that answer matching requests with an error, a delay or a dropped
//! connection.
//!
//! The public face is one [`Injector`] handle. Injected watch events travel
//! the same fan-out path as real ones (`storage::watch::Hub`), so clients
//! cannot tell them apart; the store never knows any of this exists;
//! `endpoints` consults the injector before and after handling each request.
//!
//! [`faults`]: crate::testing::faults

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    apimachinery::{
        errors::ApiError,
        resource_key::{parse_resource, ResourceKey},
    },
    registry::{generic::Api, rest::Target, semantics::Endpoint},
    storage::{
        object::{event_line, Change, Stored},
        selector::LabelSelector,
        store::latest,
        watch::{InjectAction, Injection, Narrow},
    },
    testing::faults::{Decision, FaultRule, Faults, Firing, InstalledRule, RequestInfo},
};

/// Errors of injection requests.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The resource is not served. Not retryable until a CRD serves it.
    #[error("resource {0:?} is not served")]
    UnknownResource(String),
    /// There is no event to duplicate or older version to deliver.
    #[error("no {what} in the history of {resource} to deliver")]
    NothingToDeliver {
        /// What was missing.
        what: &'static str,
        /// The resource.
        resource: String,
    },
    /// A real write made for an injection was refused.
    #[error("the write was refused: {0}")]
    Refused(#[from] Box<ApiError>),
    /// The request itself is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// The type of an injected watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InjectedType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
    /// `BOOKMARK`.
    Bookmark,
    /// `ERROR` (the object should be a `Status`).
    Error,
}

impl InjectedType {
    fn as_str(self) -> &'static str {
        match self {
            InjectedType::Added => "ADDED",
            InjectedType::Modified => "MODIFIED",
            InjectedType::Deleted => "DELETED",
            InjectedType::Bookmark => "BOOKMARK",
            InjectedType::Error => "ERROR",
        }
    }
}

/// The injection handle of a server.
pub struct Injector {
    api: Arc<Api>,
    faults: Faults,
    expire_next: Mutex<HashMap<ResourceKey, usize>>,
}

impl Injector {
    /// An injector for `api`, its random draws seeded with `seed`.
    pub fn new(api: Arc<Api>, seed: u64) -> Self {
        Injector {
            api,
            faults: Faults::new(seed),
            expire_next: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self, resource: &str) -> Result<ResourceKey, InjectError> {
        let key = parse_resource(resource);
        self.api
            .resources
            .get(&key)
            .map(|_| key)
            .ok_or_else(|| InjectError::UnknownResource(resource.into()))
    }

    // ----- watch injection -----

    /// Sends a synthetic event to the live watches of `resource` without
    /// touching the store (a lie the client must survive). Returns how many
    /// watch streams it reached.
    pub fn event(
        &self,
        resource: &str,
        kind: InjectedType,
        object: Value,
        narrow: Narrow,
    ) -> Result<usize, InjectError> {
        let key = self.known(resource)?;
        let line = event_line(kind.as_str(), object.to_string().as_bytes());
        let object = match kind {
            InjectedType::Added | InjectedType::Modified | InjectedType::Deleted => {
                Some(Stored::loose(&object))
            }
            InjectedType::Bookmark | InjectedType::Error => None,
        };
        Ok(self.api.hub.inject(
            &key,
            Injection {
                narrow,
                action: InjectAction::Send { line, object },
            },
        ))
    }

    /// Makes the change for real (create, replace or delete bypassing
    /// finalizers), so watches see it as a genuine event.
    pub fn write(
        &self,
        resource: &str,
        kind: InjectedType,
        object: Value,
    ) -> Result<(), InjectError> {
        let key = self.known(resource)?;
        let kind_def = self
            .api
            .resources
            .get(&key)
            .ok_or_else(|| InjectError::UnknownResource(resource.into()))?;
        let meta = |f: &str| {
            object
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let namespace = if kind_def.namespaced {
            Some(meta("namespace"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into())
        } else {
            String::new()
        };
        let name = meta("name");
        let target = Target {
            version: kind_def.storage_version().name.clone(),
            kind: kind_def,
            namespace,
            name: String::new(),
        };
        let refused = |e: ApiError| InjectError::Refused(Box::new(e));
        match kind {
            InjectedType::Added => self
                .api
                .create(&target, object, false)
                .map(|_| ())
                .map_err(refused),
            InjectedType::Modified => {
                let mut object = object;
                if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let t = Target { name, ..target };
                self.api
                    .update(&t, object, Endpoint::Main, false)
                    .map(|_| ())
                    .map_err(refused)
            }
            InjectedType::Deleted => {
                let t = Target { name, ..target };
                self.api
                    .store
                    .write::<_, ApiError>(&t.kind.key, &t.namespace, &t.name, |cur| match cur {
                        Some(_) => Ok((Change::Delete, ())),
                        None => Err(ApiError::not_found(
                            t.kind.group(),
                            t.kind.plural(),
                            &t.name,
                        )),
                    })
                    .map(|_| ())
                    .map_err(refused)
            }
            InjectedType::Bookmark | InjectedType::Error => Err(InjectError::Invalid(
                "BOOKMARK and ERROR events cannot be real writes".into(),
            )),
        }
    }

    /// Re-delivers the latest event of `resource` (of one object, if the
    /// narrowing names it) to its live watches: a duplicate.
    pub fn duplicate(&self, resource: &str, narrow: Narrow) -> Result<usize, InjectError> {
        let key = self.known(resource)?;
        let history = self.api.store.history(&key);
        let event = latest(
            &history,
            narrow.namespace.as_deref(),
            narrow.name.as_deref(),
        )
        .ok_or_else(|| InjectError::NothingToDeliver {
            what: "event",
            resource: resource.into(),
        })?;
        let action = InjectAction::Send {
            line: event.line.clone(),
            object: Some(Stored::loose(&event.object.value())),
        };
        Ok(self.api.hub.inject(&key, Injection { narrow, action }))
    }

    /// Delivers the previous version of the latest changed object (or of the
    /// named one) as a MODIFIED event: a stale event.
    pub fn stale(&self, resource: &str, narrow: Narrow) -> Result<usize, InjectError> {
        let key = self.known(resource)?;
        let history = self.api.store.history(&key);
        let prev = history
            .iter()
            .rev()
            .filter(|e| {
                narrow
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| e.object.namespace() == ns)
                    && narrow.name.as_deref().is_none_or(|n| e.object.name() == n)
            })
            .find_map(|e| e.prev.clone())
            .ok_or_else(|| InjectError::NothingToDeliver {
                what: "older version",
                resource: resource.into(),
            })?;
        let action = InjectAction::Send {
            line: event_line("MODIFIED", &prev.bytes),
            object: Some(Stored::loose(&prev.value())),
        };
        Ok(self.api.hub.inject(&key, Injection { narrow, action }))
    }

    /// Holds events in the matching live watches until [`Injector::release`].
    pub fn hold(&self, resource: &str, narrow: Narrow) -> Result<usize, InjectError> {
        let key = self.known(resource)?;
        Ok(self.api.hub.inject(
            &key,
            Injection {
                narrow,
                action: InjectAction::Hold,
            },
        ))
    }

    /// Delivers held events and stops holding.
    pub fn release(&self, resource: &str, narrow: Narrow) -> Result<usize, InjectError> {
        let key = self.known(resource)?;
        Ok(self.api.hub.inject(
            &key,
            Injection {
                narrow,
                action: InjectAction::Release,
            },
        ))
    }

    /// Ends the matching live watches after `after` more events (0 = now).
    pub fn cut(&self, resource: &str, narrow: Narrow, after: usize) -> Result<usize, InjectError> {
        let key = self.known(resource)?;
        Ok(self.api.hub.inject(
            &key,
            Injection {
                narrow,
                action: InjectAction::Cut { after },
            },
        ))
    }

    /// Makes the next watch of `resource` that resumes from a resourceVersion
    /// get a 410 Gone ERROR event, as after a compaction.
    pub fn expire_next_resume(&self, resource: &str) -> Result<(), InjectError> {
        let key = self.known(resource)?;
        *self
            .expire_next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(0) += 1;
        Ok(())
    }

    /// Consumes a pending forced expiry of `key`; `endpoints` asks on every resume.
    pub fn take_expiry(&self, key: &ResourceKey) -> bool {
        let mut pending = self.expire_next.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Compacts the history of `resource` (or of everything) now.
    pub fn compact(&self, resource: Option<&str>) -> Result<(), InjectError> {
        let key = resource.map(|r| self.known(r)).transpose()?;
        self.api.store.compact(key.as_ref());
        Ok(())
    }

    // ----- fault rules -----

    /// Installs a rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.faults.add_fault(rule)
    }

    /// Whether any rule is installed (cheap; no lock).
    pub fn has_rules(&self) -> bool {
        self.faults.has_rules()
    }

    /// Removes a rule; false if there was none with that id.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.faults.remove_fault(id)
    }

    /// Removes every rule.
    pub fn clear_faults(&self) {
        self.faults.clear_faults()
    }

    /// The installed rules with their firing counts.
    pub fn faults(&self) -> Vec<InstalledRule> {
        self.faults.faults()
    }

    /// Every firing so far, in order.
    pub fn firings(&self) -> Vec<Firing> {
        self.faults.firings()
    }

    /// Decides what happens to a request: rules are tried in order; delays
    /// add up, the first status or drop ends the search.
    pub fn decide(&self, request: &RequestInfo) -> Decision {
        self.faults.decide(request)
    }
}

/// A JSON description of an injection request, as the control API takes it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InjectRequest {
    /// `event` (default), `duplicate`, `stale`, `hold`, `release`, `cut`,
    /// `expire-next-resume` or `compact`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `plural` or `plural.group` (optional for `compact`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Event type for `event`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<InjectedType>,
    /// The event's object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// Make it a real write instead of a lie.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub write: bool,
    /// Narrow to a namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Narrow to an object name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Narrow with a label selector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// For `cut`: events still delivered before the cut.
    #[serde(skip_serializing_if = "is_zero")]
    pub after: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Injector {
    /// Performs an [`InjectRequest`]; returns a JSON summary.
    pub fn apply(&self, req: &InjectRequest) -> Result<Value, InjectError> {
        let labels = match &req.selector {
            Some(s) => LabelSelector::parse(s).map_err(|e| InjectError::Invalid(e.message))?,
            None => LabelSelector::default(),
        };
        let narrow = Narrow {
            namespace: req.namespace.clone(),
            name: req.name.clone(),
            labels,
        };
        let action = req.action.as_deref().unwrap_or("event");
        let resource = || {
            req.resource
                .as_deref()
                .ok_or_else(|| InjectError::Invalid(format!("{action}: resource is required")))
        };
        let reached = match action {
            "event" => {
                let kind = req
                    .event_type
                    .ok_or_else(|| InjectError::Invalid("event: type is required".into()))?;
                let object = req.object.clone().unwrap_or_else(|| json!({}));
                if req.write {
                    self.write(resource()?, kind, object)?;
                    return Ok(json!({"written": true}));
                }
                self.event(resource()?, kind, object, narrow)?
            }
            "duplicate" => self.duplicate(resource()?, narrow)?,
            "stale" => self.stale(resource()?, narrow)?,
            "hold" => self.hold(resource()?, narrow)?,
            "release" => self.release(resource()?, narrow)?,
            "cut" => self.cut(resource()?, narrow, req.after)?,
            "expire-next-resume" => {
                self.expire_next_resume(resource()?)?;
                return Ok(json!({"pending": true}));
            }
            "compact" => {
                self.compact(req.resource.as_deref())?;
                return Ok(json!({"compacted": true}));
            }
            other => return Err(InjectError::Invalid(format!("unknown action {other:?}"))),
        };
        Ok(json!({"watches": reached}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::faults::{FaultAction, Terminal};
    use std::time::Duration;

    fn info(verb: &str, resource: &str) -> RequestInfo {
        RequestInfo {
            verb: verb.into(),
            resource: Some(resource.into()),
            ..Default::default()
        }
    }

    #[test]
    fn rules_should_fire_n_times_then_stop() {
        let api = Arc::new(Api::new(Default::default()));
        let inj = Injector::new(api, 1);
        let id = inj.add_fault(
            FaultRule::new(
                &["patch"],
                "configmaps",
                FaultAction::Status {
                    code: 409,
                    message: None,
                    retry_after: None,
                },
            )
            .times(2),
        );
        assert!(inj.decide(&info("get", "configmaps")).terminal.is_none());
        for _ in 0..2 {
            match inj.decide(&info("patch", "configmaps")).terminal {
                Some((rule, Terminal::Status(e))) => assert_eq!((rule, e.code), (id, 409)),
                other => panic!("{other:?}"),
            }
        }
        assert!(inj.decide(&info("patch", "configmaps")).terminal.is_none());
        assert_eq!(inj.faults()[0].fired, 2);
        assert_eq!(inj.firings().len(), 2);
        assert!(inj.remove_fault(id));
        assert!(!inj.remove_fault(id));
    }

    #[test]
    fn probabilities_should_replay_with_the_same_seed() {
        let run = |seed| {
            let inj = Injector::new(Arc::new(Api::new(Default::default())), seed);
            inj.add_fault(
                FaultRule::new(&[], "configmaps", FaultAction::DropBefore).probability(0.3),
            );
            (0..200)
                .map(|_| inj.decide(&info("get", "configmaps")).terminal.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        let fired = run(5).iter().filter(|f| **f).count();
        assert!((30..90).contains(&fired), "{fired}");
    }

    #[test]
    fn delays_should_add_up_before_a_terminal_action() {
        let inj = Injector::new(Arc::new(Api::new(Default::default())), 1);
        inj.add_fault(FaultRule::new(
            &[],
            "configmaps",
            FaultAction::Delay { millis: 100 },
        ));
        inj.add_fault(FaultRule::new(
            &[],
            "configmaps",
            FaultAction::Delay { millis: 50 },
        ));
        inj.add_fault(FaultRule::new(
            &[],
            "configmaps",
            FaultAction::Status {
                code: 429,
                message: None,
                retry_after: None,
            },
        ));
        let d = inj.decide(&info("list", "configmaps"));
        assert_eq!(d.delay, Duration::from_millis(150));
        match d.terminal {
            Some((_, Terminal::Status(e))) => assert_eq!((e.code, e.retry_after), (429, Some(1))),
            other => panic!("{other:?}"),
        }
    }
}
