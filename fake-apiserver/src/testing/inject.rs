//! Fault injection: synthetic events in live watch streams, and fault rules
//! that answer matching requests with an error, a delay or a dropped
//! connection, for the next N of them or with a seeded probability.
//!
//! The public face is one [`Injector`] handle. Injected watch events travel
//! the same fan-out path as real ones (`watch::Hub`), so clients cannot tell
//! them apart; `store` never knows any of this exists; `http` consults the
//! injector before and after handling each request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    api::{Api, Target},
    error::ApiError,
    resources::ResourceKey,
    selector::LabelSelector,
    semantics::Endpoint,
    store::{event_line, Change, Stored},
    watch::{InjectAction, Injection, Narrow},
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

/// Parses `plural` or `plural.group` (`configmaps`, `deployments.apps`,
/// `widgets.example.com`).
pub fn parse_resource(s: &str) -> ResourceKey {
    match s.split_once('.') {
        Some((plural, group)) => ResourceKey::new(group, plural),
        None => ResourceKey::new("", s),
    }
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

/// What a fault rule does when it fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FaultAction {
    /// Answer a `Status` with this code (409, 429, 500, 503, 504, ...)
    /// instead of handling the request.
    Status {
        /// HTTP code.
        code: u16,
        /// Message (a fitting default when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `Retry-After` seconds (default 1 for 429).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u32>,
    },
    /// Wait this long (server clock: tokio time) before handling.
    Delay {
        /// Milliseconds.
        millis: u64,
    },
    /// Drop the connection without handling the request.
    DropBefore,
    /// Handle the request (the write happens), then drop the connection
    /// instead of answering.
    DropAfter,
}

/// A fault rule: which requests it matches, what it does, how often.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultRule {
    /// Verbs matched (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`); empty = all.
    pub verbs: Vec<String>,
    /// `plural` or `plural.group`; none = all.
    pub resource: Option<String>,
    /// Subresource (`status`); `""` = only the main resource; none = any.
    pub subresource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// Substring of the `User-Agent`.
    pub user_agent: Option<String>,
    /// Substring of the `Content-Type`.
    pub content_type: Option<String>,
    /// What to do.
    pub action: Option<FaultAction>,
    /// Fire for the next N matching requests only.
    pub times: Option<u64>,
    /// Fire with this probability (seeded, so a run replays).
    pub probability: Option<f64>,
}

impl FaultRule {
    /// A rule firing `action` on `verbs` of `resource`.
    pub fn new(verbs: &[&str], resource: &str, action: FaultAction) -> Self {
        FaultRule {
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            resource: Some(resource.into()),
            action: Some(action),
            ..Default::default()
        }
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Only with probability `p`.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    fn matches(&self, r: &RequestInfo) -> bool {
        let opt = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| got == Some(w))
        };
        (self.verbs.is_empty() || self.verbs.iter().any(|v| v == &r.verb))
            && opt(&self.resource, r.resource.as_deref())
            && match self.subresource.as_deref() {
                None => true,
                Some("") => r.subresource.is_none(),
                Some(s) => r.subresource.as_deref() == Some(s),
            }
            && opt(&self.namespace, r.namespace.as_deref())
            && opt(&self.name, r.name.as_deref())
            && opt(&self.field_manager, r.field_manager.as_deref())
            && self
                .user_agent
                .as_deref()
                .is_none_or(|u| r.user_agent.contains(u))
            && self
                .content_type
                .as_deref()
                .is_none_or(|c| r.content_type.contains(c))
    }
}

/// What a request is, as fault rules see it.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    /// Kubernetes verb.
    pub verb: String,
    /// `plural` or `plural.group`.
    pub resource: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `User-Agent`.
    pub user_agent: String,
    /// `Content-Type`.
    pub content_type: String,
}

/// A rule with its id and how often it fired.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstalledRule {
    /// Id, for removal.
    pub id: u64,
    /// The rule.
    pub rule: FaultRule,
    /// Times it fired.
    pub fired: u64,
}

/// One firing of a rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Firing {
    /// The rule's id.
    pub rule: u64,
    /// The request's verb.
    pub verb: String,
    /// The request's resource.
    pub resource: Option<String>,
    /// The request's object name.
    pub name: Option<String>,
}

/// What `http` must do with a request.
#[derive(Debug, Default)]
pub struct Decision {
    /// Wait this long first.
    pub delay: Duration,
    /// The terminal action and the rule that chose it.
    pub terminal: Option<(u64, Terminal)>,
    /// Rules that fired (delays included).
    pub fired: Vec<u64>,
}

/// A terminal fault.
#[derive(Debug)]
pub enum Terminal {
    /// Answer this error.
    Status(ApiError),
    /// Drop the connection without handling.
    DropBefore,
    /// Handle, then drop the connection.
    DropAfter,
}

#[derive(Default)]
struct Rules {
    next_id: u64,
    rules: Vec<InstalledRule>,
    firings: Vec<Firing>,
    rng: u64,
}

impl Rules {
    fn random(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The injection handle of a server.
pub struct Injector {
    api: Arc<Api>,
    rules: Mutex<Rules>,
    /// How many rules are installed, readable without the lock.
    installed: std::sync::atomic::AtomicUsize,
    expire_next: Mutex<HashMap<ResourceKey, usize>>,
}

impl Injector {
    /// An injector for `api`, its random draws seeded with `seed`.
    pub fn new(api: Arc<Api>, seed: u64) -> Self {
        Injector {
            api,
            rules: Mutex::new(Rules {
                rng: seed ^ 0x5EED_FA17,
                ..Default::default()
            }),
            installed: std::sync::atomic::AtomicUsize::new(0),
            expire_next: Mutex::new(HashMap::new()),
        }
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
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
        let event = crate::store::latest(
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

    /// Consumes a pending forced expiry of `key`; `http` asks on every resume.
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
        let mut rules = self.rules();
        rules.next_id += 1;
        let id = rules.next_id;
        rules.rules.push(InstalledRule { id, rule, fired: 0 });
        self.installed
            .store(rules.rules.len(), std::sync::atomic::Ordering::Relaxed);
        id
    }

    /// Whether any rule is installed (cheap; no lock).
    pub fn has_rules(&self) -> bool {
        self.installed.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Removes a rule; false if there was none with that id.
    pub fn remove_fault(&self, id: u64) -> bool {
        let mut rules = self.rules();
        let before = rules.rules.len();
        rules.rules.retain(|r| r.id != id);
        self.installed
            .store(rules.rules.len(), std::sync::atomic::Ordering::Relaxed);
        rules.rules.len() != before
    }

    /// Removes every rule.
    pub fn clear_faults(&self) {
        self.rules().rules.clear();
        self.installed
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The installed rules with their firing counts.
    pub fn faults(&self) -> Vec<InstalledRule> {
        self.rules().rules.clone()
    }

    /// Every firing so far, in order.
    pub fn firings(&self) -> Vec<Firing> {
        self.rules().firings.clone()
    }

    /// Decides what happens to a request: rules are tried in order; delays
    /// add up, the first status or drop ends the search.
    pub fn decide(&self, request: &RequestInfo) -> Decision {
        let mut decision = Decision::default();
        let mut rules = self.rules();
        if rules.rules.is_empty() {
            return decision;
        }
        for i in 0..rules.rules.len() {
            let (matches, exhausted, probability) = {
                let r = &rules.rules[i];
                (
                    r.rule.matches(request),
                    r.rule.times.is_some_and(|t| r.fired >= t),
                    r.rule.probability,
                )
            };
            if !matches || exhausted {
                continue;
            }
            if let Some(p) = probability {
                if rules.random() >= p {
                    continue;
                }
            }
            rules.rules[i].fired += 1;
            let id = rules.rules[i].id;
            let action = rules.rules[i].rule.action.clone();
            rules.firings.push(Firing {
                rule: id,
                verb: request.verb.clone(),
                resource: request.resource.clone(),
                name: request.name.clone(),
            });
            decision.fired.push(id);
            match action {
                None => {}
                Some(FaultAction::Delay { millis }) => {
                    decision.delay += Duration::from_millis(millis)
                }
                Some(FaultAction::Status {
                    code,
                    message,
                    retry_after,
                }) => {
                    decision.terminal = Some((
                        id,
                        Terminal::Status(fault_status(request, code, message, retry_after)),
                    ));
                    break;
                }
                Some(FaultAction::DropBefore) => {
                    decision.terminal = Some((id, Terminal::DropBefore));
                    break;
                }
                Some(FaultAction::DropAfter) => {
                    decision.terminal = Some((id, Terminal::DropAfter));
                    break;
                }
            }
        }
        decision
    }
}

/// The `Status` kube-apiserver would send for `code` on this request.
fn fault_status(
    r: &RequestInfo,
    code: u16,
    message: Option<String>,
    retry_after: Option<u32>,
) -> ApiError {
    let resource = parse_resource(r.resource.as_deref().unwrap_or_default());
    let name = r.name.clone().unwrap_or_default();
    let mut err = match code {
        409 => ApiError::stale(&resource.group, &resource.plural, &name),
        429 => {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            e.retry_after = Some(retry_after.unwrap_or(1));
            e
        }
        500 => ApiError::internal("Internal error occurred: injected fault"),
        503 => ApiError::new(
            503,
            "ServiceUnavailable",
            "The server is currently unable to handle the request",
        ),
        504 => ApiError::new(
            504,
            "Timeout",
            "Timeout: request did not complete within the allowed duration",
        ),
        410 => ApiError::expired("The resourceVersion for the provided list is too old."),
        404 => ApiError::not_found(&resource.group, &resource.plural, &name),
        other => ApiError::new(other, "", format!("injected fault ({other})")),
    };
    if let Some(m) = message {
        err.message = m;
    }
    if let Some(s) = retry_after {
        err.retry_after = Some(s);
    }
    err
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

    #[test]
    fn resources_should_parse_plural_and_group() {
        assert_eq!(
            parse_resource("configmaps"),
            ResourceKey::new("", "configmaps")
        );
        assert_eq!(
            parse_resource("widgets.example.com"),
            ResourceKey::new("example.com", "widgets")
        );
    }
}
