//! What an operator did, as one serializable, snapshot-stable value: the
//! final objects, the Events posted, the operator's write requests (patch
//! bodies and content types), handler outcomes in order, and its log; with
//! uids, timestamps and resourceVersions redacted.

use kopf::{Level, LogSink, Observer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    cluster::Cluster,
    rbac::{self, Denied},
    records::{EventRecord, WriteRecord},
};

/// Everything a scenario's snapshot shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// The final objects of the resources the operator watches.
    pub objects: Vec<Value>,
    /// Events posted (core/v1), oldest first.
    pub events: Vec<EventRecord>,
    /// The operator's write requests, in order (Events excluded).
    pub writes: Vec<WriteRecord>,
    /// Handler, activity, daemon and timer outcomes, in order.
    pub handlers: Vec<String>,
    /// The operator's log at info level and above.
    pub log: Vec<String>,
    /// The operator's requests RBAC denied, each with the rule that would
    /// have allowed it (only under [`KopfRunner::service_account`]).
    ///
    /// [`KopfRunner::service_account`]: crate::KopfRunner::service_account
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Denied>,
    /// The minimal ClusterRole and Roles for what the operator did.
    #[serde(skip)]
    required: Vec<Value>,
    /// Where more objects come from ([`Outcome::with_objects`]).
    #[serde(skip)]
    source: Source,
}

/// Who the operator is to the cluster, for its requests in the journal.
#[derive(Clone, Debug)]
pub(crate) struct OperatorUser {
    /// Its user name (`system:admin` unless it runs as a ServiceAccount).
    pub(crate) username: String,
    /// What to name the required roles.
    pub(crate) role_name: String,
    /// Whether RBAC decides its requests.
    pub(crate) enforced: bool,
}

impl Default for OperatorUser {
    fn default() -> Self {
        OperatorUser {
            username: "system:admin".into(),
            role_name: "operator".into(),
            enforced: false,
        }
    }
}

/// The cluster an outcome was collected from; not part of its value.
#[derive(Clone, Default)]
struct Source(Option<Cluster>);

impl PartialEq for Source {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Source")
    }
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn timestamp_len(s: &[u8]) -> usize {
    // 2023-11-14T22:13:20 then optional .ffffff, then Z or +00:00
    let digits =
        |r: std::ops::Range<usize>| s.len() >= r.end && s[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && s.get(4) == Some(&b'-')
        && digits(5..7)
        && s.get(7) == Some(&b'-')
        && digits(8..10))
        || s.get(10) != Some(&b'T')
        || !(digits(11..13)
            && s.get(13) == Some(&b':')
            && digits(14..16)
            && s.get(16) == Some(&b':')
            && digits(17..19))
    {
        return 0;
    }
    let mut n = 19;
    if s.get(n) == Some(&b'.') {
        n += 1;
        while s.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    match s.get(n) {
        Some(b'Z') => n + 1,
        Some(b'+') | Some(b'-') if s.len() >= n + 6 => n + 6,
        _ => n,
    }
}

/// Replaces uuids and timestamps inside a string.
pub fn redact_str(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b.len() - i >= 36 && is_uuid(&b[i..i + 36]) {
            out.push_str("[uid]");
            i += 36;
            continue;
        }
        let t = timestamp_len(&b[i..]);
        if t > 0 {
            out.push_str("[time]");
            i += t;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Redacts a JSON value: resourceVersions, uids and timestamps anywhere.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let redacted = match (k.as_str(), v) {
                    ("resourceVersion", Value::String(_)) => Value::String("[rv]".into()),
                    ("managedFields", _) => continue,
                    _ => redact(v),
                };
                out.insert(k.clone(), redacted);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_str(s)),
        other => other.clone(),
    }
}

/// apiVersion, kind, namespace and name: what tells two objects apart.
fn identity(v: &Value) -> (String, String, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (
        s("/apiVersion"),
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name"),
    )
}

fn rv(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Outcome {
    pub(crate) fn collect(
        cluster: &Cluster,
        observer: &Observer,
        sink: &LogSink,
        operator: &OperatorUser,
    ) -> Self {
        let mut resources: Vec<String> = observer.watched().into_iter().map(|(r, _)| r).collect();
        resources.sort();
        let objects = resources
            .iter()
            .flat_map(|r| cluster.list(r))
            .map(|o| redact(&o))
            .collect();
        let mut events = cluster.list("events");
        events.sort_by_key(rv);
        let events = events
            .iter()
            .map(|e| {
                let s = |p: &str| {
                    e.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let ns = s("/involvedObject/namespace");
                let name = s("/involvedObject/name");
                EventRecord {
                    object: format!(
                        "{} {}",
                        s("/involvedObject/kind"),
                        if ns.is_empty() {
                            name
                        } else {
                            format!("{ns}/{name}")
                        }
                    ),
                    type_: s("/type"),
                    reason: s("/reason"),
                    message: redact_str(&s("/message")),
                }
            })
            .collect();
        let writes = cluster
            .writes()
            .into_iter()
            .filter(|w| w.resource != "events")
            .map(|w| WriteRecord {
                body: w.body.as_ref().map(redact),
                ..w
            })
            .collect();
        let lines = sink.lines();
        let handlers = lines
            .iter()
            .filter(|l| {
                l.level >= Level::Info
                    && ["Handler '", "Activity '", "Daemon '", "Timer '"]
                        .iter()
                        .any(|what| l.message.contains(what))
            })
            .map(|l| redact_str(&l.message))
            .collect();
        let log = lines
            .iter()
            .filter(|l| l.level >= Level::Info)
            .map(|l| redact_str(&l.message))
            .collect();
        let requests = cluster
            .journal()
            .map(|j| rbac::entries(j, &operator.username, 0))
            .unwrap_or_default();
        let denied = if operator.enforced {
            rbac::denied(&requests)
        } else {
            Vec::new()
        };
        Outcome {
            objects,
            events,
            writes,
            handlers,
            log,
            denied,
            required: rbac::required(&requests, &operator.role_name),
            source: Source(Some(cluster.clone())),
        }
    }

    /// The minimal ClusterRole (cluster-scoped kinds, and lists and watches
    /// across namespaces) and Roles (one per namespace) that allow exactly
    /// the requests the operator made, allowed or denied: one rule per API
    /// group and resource (subresources apart), with the verbs used, and no
    /// `resourceNames`. Snapshot it as YAML ([`Outcome::required_rbac_yaml`])
    /// and compare it with the RBAC you ship, to see what is missing and
    /// what was never used.
    pub fn required_rbac(&self) -> &[Value] {
        &self.required
    }

    /// [`Outcome::required_rbac`] as a multi-document YAML manifest.
    pub fn required_rbac_yaml(&self) -> String {
        self.required
            .iter()
            .map(|o| serde_yaml::to_string(o).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// The same outcome, with the final objects of more resources (`plural`
    /// or `plural.group`, e.g. `deployments.apps`, `services`): the
    /// children an operator made, with whatever status they reached. Each
    /// resource's objects follow the handled ones, in key order; a resource
    /// already shown is not repeated.
    ///
    /// ```no_run
    /// # fn doc(runner: &kopf_harness::KopfRunner) {
    /// let outcome = runner.outcome().with_objects(["deployments.apps", "services"]);
    /// # }
    /// ```
    #[must_use]
    pub fn with_objects<S: AsRef<str>>(mut self, resources: impl IntoIterator<Item = S>) -> Self {
        let Some(cluster) = self.source.0.clone() else {
            return self;
        };
        let mut shown: std::collections::HashSet<(String, String, String, String)> =
            self.objects.iter().map(identity).collect();
        for resource in resources {
            for object in cluster.list(resource.as_ref()) {
                let object = redact(&object);
                if shown.insert(identity(&object)) {
                    self.objects.push(object);
                }
            }
        }
        self
    }

    /// The same outcome, with the final objects of every resource the
    /// operator wrote to (Events aside), as [`Outcome::with_objects`].
    #[must_use]
    pub fn with_written_objects(self) -> Self {
        let mut written: Vec<String> = self.writes.iter().map(|w| w.resource.clone()).collect();
        written.sort();
        written.dedup();
        self.with_objects(written)
    }

    /// The outcome as YAML (what the snapshots hold).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// How many times each handler reported `what` (`succeeded`, `failed permanently`...).
    pub fn count(&self, id: &str, what: &str) -> usize {
        let needle = format!("'{id}' {what}");
        self.handlers.iter().filter(|h| h.contains(&needle)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_should_hide_uids_times_and_rvs() {
        let v = serde_json::json!({"metadata": {"uid": "f3313653-38bf-4cad-9833-d0a3f322e577", "resourceVersion": "12",
            "creationTimestamp": "2023-11-14T22:13:20Z", "managedFields": []},
            "status": {"m": "at 2024-05-01T10:00:00.123456+00:00 by f3313653-38bf-4cad-9833-d0a3f322e577."}});
        assert_eq!(
            redact(&v),
            serde_json::json!({"metadata": {"uid": "[uid]", "resourceVersion": "[rv]", "creationTimestamp": "[time]"},
                "status": {"m": "at [time] by [uid]."}})
        );
        assert_eq!(redact_str("no 2023-13 times"), "no 2023-13 times");
    }
}
