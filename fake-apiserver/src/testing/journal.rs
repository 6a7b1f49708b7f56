//! The request journal: every request and its response, in order, queryable,
//! exportable as JSON lines, and in a normalized form whose uids, timestamps
//! and resourceVersions are replaced by stable placeholders (numbered in
//! order of first appearance) so that it can be snapshotted.
//!
//! Filled by `endpoints` (the only place that sees whole requests); read by tests,
//! the harness and the control API.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use serde::Serialize;
use serde_json::{Map, Value};

/// One request and its response.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Position in the journal, from 1.
    pub seq: u64,
    /// When the request arrived (server clock, RFC 3339 with microseconds).
    pub time: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`, `deletecollection`), or the HTTP method in lower
    /// case for non-resource paths.
    pub verb: String,
    /// The request path.
    pub path: String,
    /// The query string ("" when none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// `plural` or `plural.group`, for resource requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Subresource (`status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Namespace, for namespaced requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name, for requests on one object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Content-Type` of the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `User-Agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `fieldManager` query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    /// The user the request acted as (none when it authenticated no one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The request body (JSON when it parses, else text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<Value>,
    /// The response status code (0 when the connection was dropped).
    pub code: u16,
    /// The response body, when response capture is on (not for watches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<Value>,
    /// The id of the fault rule that fired on this request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<u64>,
}

/// A request as the journal keeps it: cheap to fill (shared handles, raw
/// bytes, a timestamp), turned into an [`Entry`] only when read.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Arrival time.
    pub time: jiff::Timestamp,
    /// HTTP method.
    pub method: &'static str,
    /// Kubernetes verb, for resource requests.
    pub verb: Option<&'static str>,
    /// Path and query, as received.
    pub path_and_query: String,
    /// The kind addressed, for resource requests.
    pub kind: Option<std::sync::Arc<crate::registry::resources::Kind>>,
    /// Whether the `/status` subresource was addressed.
    pub status: bool,
    /// Namespace ("" when none).
    pub namespace: String,
    /// Name ("" when none).
    pub name: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// The user the request acted as (none when it authenticated no one).
    pub user: Option<String>,
    /// The subresource addressed, if any.
    pub subresource: Option<String>,
    /// Request body.
    pub request_body: bytes::Bytes,
    /// Status code (0 = connection dropped).
    pub code: u16,
    /// Response body, when captured.
    pub response_body: Option<bytes::Bytes>,
    /// The fault rule that fired.
    pub fault: Option<u64>,
}

fn body_value(b: &[u8]) -> Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
}

impl Record {
    fn entry(&self, seq: u64) -> Entry {
        let (path, query) = match self.path_and_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (self.path_and_query.clone(), String::new()),
        };
        let field_manager = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "fieldManager")
            .map(|(_, v)| v.into_owned());
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Entry {
            seq,
            time: self.time.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            verb: self
                .verb
                .map_or_else(|| self.method.to_lowercase(), String::from),
            path,
            query,
            resource: self.kind.as_ref().map(|k| k.key.to_string()),
            subresource: self
                .subresource
                .clone()
                .or_else(|| self.status.then(|| "status".to_string())),
            namespace: some(&self.namespace),
            name: some(&self.name),
            content_type: self.content_type.clone(),
            user_agent: self.user_agent.clone(),
            field_manager,
            user: self.user.clone(),
            request_body: (!self.request_body.is_empty()).then(|| body_value(&self.request_body)),
            code: self.code,
            response_body: self.response_body.as_deref().map(body_value),
            fault: self.fault,
        }
    }
}

/// Which entries to return.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Filter {
    /// Only this verb.
    pub verb: Option<String>,
    /// Only this resource (`plural` or `plural.group`).
    pub resource: Option<String>,
    /// Only this object name.
    pub name: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this field manager.
    pub manager: Option<String>,
    /// Only this user's requests.
    pub user: Option<String>,
    /// Only requests that changed something (create, update, patch, delete, deletecollection).
    pub writes: bool,
}

impl Filter {
    fn accepts(&self, e: &Entry) -> bool {
        let eq = |want: &Option<String>, got: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| got.as_deref() == Some(w.as_str()))
        };
        self.verb.as_ref().is_none_or(|v| *v == e.verb)
            && eq(&self.resource, &e.resource)
            && eq(&self.name, &e.name)
            && eq(&self.namespace, &e.namespace)
            && eq(&self.manager, &e.field_manager)
            && eq(&self.user, &e.user)
            && (!self.writes || is_write(&e.verb))
    }
}

/// Whether a verb changes state.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// The journal. Cheap when idle; bounded.
pub struct Journal {
    enabled: AtomicBool,
    responses: AtomicBool,
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    entries: std::collections::VecDeque<(u64, Record)>,
}

/// The default number of entries kept (oldest dropped first).
pub const DEFAULT_LIMIT: usize = 10_000;

impl Default for Journal {
    fn default() -> Self {
        Journal::new(DEFAULT_LIMIT)
    }
}

impl Journal {
    /// An enabled journal keeping at most `limit` entries, without response bodies.
    pub fn new(limit: usize) -> Self {
        Journal {
            enabled: AtomicBool::new(true),
            responses: AtomicBool::new(false),
            limit: limit.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns recording on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns capture of response bodies on or off.
    pub fn capture_responses(&self, on: bool) {
        self.responses.store(on, Ordering::Relaxed);
    }

    /// Whether response bodies are captured.
    pub fn captures_responses(&self) -> bool {
        self.responses.load(Ordering::Relaxed)
    }

    /// Appends a record (its `seq` is assigned here).
    pub fn record(&self, record: Record) {
        let mut inner = self.lock();
        inner.next += 1;
        let seq = inner.next;
        inner.entries.push_back((seq, record));
        while inner.entries.len() > self.limit {
            inner.entries.pop_front();
        }
    }

    /// Entries accepted by `filter`, in order.
    pub fn entries(&self, filter: &Filter) -> Vec<Entry> {
        self.entries_since(0, filter)
    }

    /// The entries after position `after` that `filter` accepts, oldest
    /// first (only those are copied out of the journal).
    pub fn entries_since(&self, after: u64, filter: &Filter) -> Vec<Entry> {
        // What can be told from the record is sorted out before copying.
        let records: Vec<(u64, Record)> = self
            .lock()
            .entries
            .iter()
            .filter(|(seq, r)| {
                *seq > after
                    && filter
                        .user
                        .as_ref()
                        .is_none_or(|u| r.user.as_deref() == Some(u.as_str()))
            })
            .cloned()
            .collect();
        records
            .iter()
            .map(|(seq, r)| r.entry(*seq))
            .filter(|e| filter.accepts(e))
            .collect()
    }

    /// The position of the latest entry (0 when none was ever recorded).
    pub fn last_seq(&self) -> u64 {
        self.lock().next
    }

    /// Removes every entry (numbering continues).
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// Entries as JSON lines.
    pub fn json_lines(&self, filter: &Filter) -> String {
        to_json_lines(&self.entries(filter))
    }

    /// Entries as JSON lines with uids, timestamps, resourceVersions and
    /// continue tokens replaced by placeholders; byte-identical for runs that
    /// made the same requests in the same order.
    pub fn normalized(&self, filter: &Filter) -> String {
        to_json_lines(&normalize(&self.entries(filter)))
    }
}

fn to_json_lines(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Stable placeholders, numbered in order of first appearance.
#[derive(Default)]
struct Placeholders {
    seen: HashMap<(&'static str, String), usize>,
    counts: HashMap<&'static str, usize>,
}

impl Placeholders {
    fn get(&mut self, class: &'static str, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        let key = (class, value.to_string());
        if let Some(n) = self.seen.get(&key) {
            return format!("<{class}-{n}>");
        }
        let n = self.counts.entry(class).or_insert(0);
        *n += 1;
        let n = *n;
        self.seen.insert(key, n);
        format!("<{class}-{n}>")
    }
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with('Z')
        && b[..4].iter().all(u8::is_ascii_digit)
}

fn normalize_value(v: &mut Value, p: &mut Placeholders) {
    match v {
        Value::Object(map) => normalize_map(map, p),
        Value::Array(items) => items.iter_mut().for_each(|i| normalize_value(i, p)),
        Value::String(s) if is_timestamp(s) => *s = p.get("time", s),
        _ => {}
    }
}

fn normalize_map(map: &mut Map<String, Value>, p: &mut Placeholders) {
    for (k, v) in map.iter_mut() {
        match (k.as_str(), &*v) {
            ("uid", Value::String(s)) => *v = Value::String(p.get("uid", s)),
            ("resourceVersion", Value::String(s)) => *v = Value::String(p.get("rv", s)),
            ("continue", Value::String(s)) => *v = Value::String(p.get("continue", s)),
            _ => normalize_value(v, p),
        }
    }
}

fn normalize_query(query: &str, p: &mut Placeholders) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = match k.as_ref() {
            "resourceVersion" if v != "0" && !v.is_empty() => p.get("rv", &v),
            "continue" => p.get("continue", &v),
            _ => v.into_owned(),
        };
        out.append_pair(&k, &v);
    }
    out.finish()
}

/// The normalized form of `entries`.
pub fn normalize(entries: &[Entry]) -> Vec<Entry> {
    let mut p = Placeholders::default();
    let first = entries.first().map_or(0, |e| e.seq.saturating_sub(1));
    entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.seq -= first;
            e.time = p.get("time", &e.time);
            e.query = normalize_query(&e.query, &mut p);
            if let Some(b) = e.request_body.as_mut() {
                normalize_value(b, &mut p);
            }
            if let Some(b) = e.response_body.as_mut() {
                normalize_value(b, &mut p);
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(verb: &'static str, body: Value) -> Record {
        let resources = crate::registry::resources::Resources::with_builtins();
        Record {
            time: jiff::Timestamp::UNIX_EPOCH,
            method: "GET",
            verb: Some(verb),
            path_and_query: "/api/v1/namespaces/default/configmaps?resourceVersion=17&watch=true"
                .into(),
            kind: resources.lookup("", "v1", "configmaps"),
            namespace: "default".into(),
            request_body: body.to_string().into(),
            code: 200,
            ..Default::default()
        }
    }

    #[test]
    fn normalize_should_number_placeholders_by_first_appearance() {
        let j = Journal::new(10);
        j.record(entry("create", json!({"metadata": {"uid": "u-9", "resourceVersion": "17", "creationTimestamp": "2026-11-23T10:00:00Z"}})));
        j.record(entry(
            "patch",
            json!({"metadata": {"uid": "u-9", "resourceVersion": "20"}}),
        ));
        let lines = j.normalized(&Filter::default());
        let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(first["query"], "resourceVersion=%3Crv-1%3E&watch=true");
        assert_eq!(first["requestBody"]["metadata"]["uid"], "<uid-1>");
        assert_eq!(
            first["requestBody"]["metadata"]["resourceVersion"],
            "<rv-1>"
        );
        assert_eq!(
            first["requestBody"]["metadata"]["creationTimestamp"],
            "<time-2>"
        );
        let second: Value = serde_json::from_str(lines.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["requestBody"]["metadata"]["uid"], "<uid-1>");
        assert_eq!(
            second["requestBody"]["metadata"]["resourceVersion"],
            "<rv-2>"
        );
        assert_eq!(second["seq"], 2);
    }

    #[test]
    fn journal_should_filter_and_stay_bounded() {
        let j = Journal::new(2);
        for verb in ["get", "create", "patch"] {
            j.record(entry(verb, json!({})));
        }
        let all = j.entries(&Filter::default());
        assert_eq!(
            all.iter().map(|e| e.verb.as_str()).collect::<Vec<_>>(),
            ["create", "patch"]
        );
        assert_eq!(all[1].seq, 3);
        let writes = j.entries(&Filter {
            verb: Some("patch".into()),
            ..Default::default()
        });
        assert_eq!(writes.len(), 1);
    }
}
