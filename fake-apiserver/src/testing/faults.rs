//! Fault rules: which requests they match (verb, resource, subresource,
//! namespace, name, field manager, user agent, content type), what they do
//! (a `Status` error, a delay, a dropped connection before or after
//! handling), and how often (the next N matches, or a seeded probability, so
//! a run replays).
//!
//! Pure bookkeeping over `apimachinery`; `inject::Injector` is its public
//! face, and `endpoints` acts on each [`Decision`].

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::apimachinery::{errors::ApiError, resource_key::parse_resource};

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
    /// Panic in the request's handler, before handling: proves that the
    /// server recovers (a 500 `Status`, the panic logged, and the server
    /// serving on), as kube-apiserver's panic recovery does.
    Panic,
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

/// What `endpoints` must do with a request.
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
    /// Panic in the handler.
    Panic,
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

/// The installed fault rules of a server, their firings and their seeded
/// random draws.
pub(crate) struct Faults {
    rules: Mutex<Rules>,
    /// How many rules are installed, readable without the lock.
    installed: AtomicUsize,
}

impl Faults {
    /// No rules yet; random draws seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Faults {
            rules: Mutex::new(Rules {
                rng: seed ^ 0x5EED_FA17,
                ..Default::default()
            }),
            installed: AtomicUsize::new(0),
        }
    }

    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a rule; returns its id.
    pub(crate) fn add_fault(&self, rule: FaultRule) -> u64 {
        let mut rules = self.rules();
        rules.next_id += 1;
        let id = rules.next_id;
        rules.rules.push(InstalledRule { id, rule, fired: 0 });
        self.installed.store(rules.rules.len(), Ordering::Relaxed);
        id
    }

    /// Whether any rule is installed (cheap; no lock).
    pub(crate) fn has_rules(&self) -> bool {
        self.installed.load(Ordering::Relaxed) > 0
    }

    /// Removes a rule; false if there was none with that id.
    pub(crate) fn remove_fault(&self, id: u64) -> bool {
        let mut rules = self.rules();
        let before = rules.rules.len();
        rules.rules.retain(|r| r.id != id);
        self.installed.store(rules.rules.len(), Ordering::Relaxed);
        rules.rules.len() != before
    }

    /// Removes every rule.
    pub(crate) fn clear_faults(&self) {
        self.rules().rules.clear();
        self.installed.store(0, Ordering::Relaxed);
    }

    /// The installed rules with their firing counts.
    pub(crate) fn faults(&self) -> Vec<InstalledRule> {
        self.rules().rules.clone()
    }

    /// Every firing so far, in order.
    pub(crate) fn firings(&self) -> Vec<Firing> {
        self.rules().firings.clone()
    }

    /// Decides what happens to a request: rules are tried in order; delays
    /// add up, the first status or drop ends the search.
    pub(crate) fn decide(&self, request: &RequestInfo) -> Decision {
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
                Some(FaultAction::Panic) => {
                    decision.terminal = Some((id, Terminal::Panic));
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
