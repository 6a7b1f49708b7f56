//! Persistence, compatible with Kopf: per-handler progress records and the
//! diff-base ("last handled configuration"), kept in annotations under a
//! prefix (`kopf.zalando.org` by default), with Kopf's key forming (v2 and v1
//! keys, shortened with a blake2b suffix when too long), so that an operator
//! migrated from Kopf resumes where Kopf stopped.
//!
//! The progress storage and the diff-base storage are independent of each
//! other; both only read bodies and write into a [`Patch`].

use base64::Engine;
use blake2::{
    digest::{Update, VariableOutput},
    Blake2bVar,
};
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::structs::Patch;

/// Kopf's default annotation prefix.
pub const DEFAULT_PREFIX: &str = "kopf.zalando.org";

/// The diff-base key (under the prefix).
pub const DIFFBASE_KEY: &str = "last-handled-configuration";

fn suffix(key: &str) -> String {
    let mut hasher = Blake2bVar::new(4).expect("4 is a valid blake2b output size");
    hasher.update(key.as_bytes());
    let mut digest = [0u8; 4];
    hasher
        .finalize_variable(&mut digest)
        .expect("the buffer has the requested size");
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(digest)
        .replace('+', "-")
        .replace('/', ".");
    format!("-{encoded}")
        .trim_end_matches(['=', '-', '.'])
        .to_string()
}

fn safe(key: &str) -> String {
    key.replace('/', ".").replace(['‹', '>'], "_")
}

/// The annotation keys for `id` under `prefix`: the v2 key first, then the
/// v1 key when it differs (reads try both; writes set both).
pub fn keys(prefix: &str, id: &str) -> Vec<String> {
    let safe_key = safe(id);
    let v2 = if id.len() > 63 {
        let sfx = suffix(id);
        let limit = 63usize.saturating_sub(sfx.len());
        format!("{prefix}/{}{sfx}", truncate(&safe_key, limit))
    } else {
        format!("{prefix}/{safe_key}")
    };
    let v1 = if prefix.len() + 1 + safe_key.len() > 63 {
        let sfx = suffix(&safe_key);
        let limit = 63usize.saturating_sub(prefix.len() + 1 + sfx.len());
        format!("{prefix}/{}{sfx}", truncate(&safe_key, limit))
    } else {
        format!("{prefix}/{safe_key}")
    };
    if v1 == v2 {
        vec![v2]
    } else {
        vec![v2, v1]
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Formats a time the way Kopf writes it: `2024-05-01T10:00:00.123456+00:00`.
pub fn format_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6f+00:00").to_string()
}

/// Parses a time as Kopf reads it: with `Z`, an offset, or none (taken as UTC).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    let civil: jiff::civil::DateTime = s.parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The state of one handler for one cause.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgressRecord {
    /// When the handler was first seen for this cause.
    pub started: Option<Timestamp>,
    /// When it finished (success or permanent failure).
    pub stopped: Option<Timestamp>,
    /// When the next attempt is due.
    pub delayed: Option<Timestamp>,
    /// The cause: `create`, `update`, `delete`, `resume`.
    pub purpose: Option<String>,
    /// Attempts finished so far.
    pub retries: u32,
    /// Finished successfully.
    pub success: bool,
    /// Finished with a permanent failure.
    pub failure: bool,
    /// The last failure's message.
    pub message: Option<String>,
    /// Sub-handler ids.
    pub subrefs: Vec<String>,
}

impl ProgressRecord {
    /// Whether the handler is done (either way).
    pub fn finished(&self) -> bool {
        self.success || self.failure
    }

    /// The record as Kopf serializes it (field order and omissions included).
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("started", self.started.map(|t| json!(format_time(t))));
        put("stopped", self.stopped.map(|t| json!(format_time(t))));
        put("delayed", self.delayed.map(|t| json!(format_time(t))));
        put("purpose", self.purpose.clone().map(Value::String));
        put("retries", Some(json!(self.retries)));
        put("success", Some(json!(self.success)));
        put("failure", Some(json!(self.failure)));
        put("message", self.message.clone().map(Value::String));
        if !self.subrefs.is_empty() {
            let mut refs = self.subrefs.clone();
            refs.sort();
            put("subrefs", Some(json!(refs)));
        }
        // serde_json keeps insertion order only with `preserve_order`; write it by hand.
        let fields = [
            "started", "stopped", "delayed", "purpose", "retries", "success", "failure", "message",
            "subrefs",
        ];
        let parts: Vec<String> = fields
            .iter()
            .filter_map(|f| m.get(*f).map(|v| format!("{}:{}", json!(f), v)))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// Reads a record from its JSON (annotation string or status object).
    pub fn from_value(v: &Value) -> Option<Self> {
        let v = match v {
            Value::String(s) => serde_json::from_str(s).ok()?,
            other => other.clone(),
        };
        let obj = v.as_object()?;
        let time = |k: &str| obj.get(k).and_then(Value::as_str).and_then(parse_time);
        Some(ProgressRecord {
            started: time("started"),
            stopped: time("stopped"),
            delayed: time("delayed"),
            purpose: obj.get("purpose").and_then(Value::as_str).map(String::from),
            retries: obj.get("retries").and_then(Value::as_u64).unwrap_or(0) as u32,
            success: obj.get("success").and_then(Value::as_bool).unwrap_or(false),
            failure: obj.get("failure").and_then(Value::as_bool).unwrap_or(false),
            message: obj.get("message").and_then(Value::as_str).map(String::from),
            subrefs: obj
                .get("subrefs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Where progress records live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressLocation {
    /// Annotations, reading `status.kopf.progress` too (Kopf's default "smart" storage).
    #[default]
    Annotations,
    /// `status.kopf.progress.<id>` only.
    Status,
    /// Both: written to each, read from annotations first.
    Both,
}

/// The progress storage: per-handler records.
#[derive(Clone, Debug)]
pub struct ProgressStorage {
    /// Annotation prefix.
    pub prefix: String,
    /// Where records are written.
    pub location: ProgressLocation,
}

impl Default for ProgressStorage {
    fn default() -> Self {
        ProgressStorage {
            prefix: DEFAULT_PREFIX.into(),
            location: ProgressLocation::Annotations,
        }
    }
}

fn annotations(body: &Value) -> Option<&Map<String, Value>> {
    body.pointer("/metadata/annotations")
        .and_then(Value::as_object)
}

impl ProgressStorage {
    /// The record of handler `id` in `body`, if any.
    pub fn fetch(&self, body: &Value, id: &str) -> Option<ProgressRecord> {
        if self.location != ProgressLocation::Status {
            if let Some(ann) = annotations(body) {
                for key in keys(&self.prefix, id) {
                    if let Some(r) = ann.get(&key).and_then(ProgressRecord::from_value) {
                        return Some(r);
                    }
                }
            }
        }
        body.get("status")
            .and_then(|s| s.get("kopf"))
            .and_then(|k| k.get("progress"))
            .and_then(|p| p.get(id))
            .and_then(ProgressRecord::from_value)
    }

    /// Writes `record` for `id` into `patch`.
    pub fn store(&self, patch: &mut Patch, id: &str, record: &ProgressRecord) {
        if self.location != ProgressLocation::Status {
            let text = Value::String(record.to_json());
            for key in keys(&self.prefix, id) {
                patch.set(&["metadata", "annotations", &key], text.clone());
            }
        }
        if self.location != ProgressLocation::Annotations {
            let v: Value = serde_json::from_str(&record.to_json()).unwrap_or(Value::Null);
            patch.set(&["status", "kopf", "progress", id], v);
        }
    }

    /// Removes the records of `ids` (found in `body` or pending in `patch`).
    pub fn purge(&self, body: &Value, patch: &mut Patch, ids: &[String]) {
        let ann = annotations(body);
        for id in ids {
            for key in keys(&self.prefix, id) {
                if ann.is_some_and(|a| a.contains_key(&key)) {
                    patch.set(&["metadata", "annotations", &key], Value::Null);
                } else if patch.get(&["metadata", "annotations", &key]).is_some() {
                    patch.remove(&["metadata", "annotations", &key]);
                }
            }
            let in_status = body
                .get("status")
                .and_then(|s| s.get("kopf"))
                .and_then(|k| k.get("progress"))
                .and_then(|p| p.get(id))
                .is_some();
            if in_status {
                patch.set(&["status", "kopf", "progress", id], Value::Null);
            } else if patch.get(&["status", "kopf", "progress", id]).is_some() {
                patch.remove(&["status", "kopf", "progress", id]);
            }
        }
    }

    /// Removes this storage's own traces from an essence (before diffing).
    fn clear(&self, essence: &mut Value) {
        let prefix = format!("{}/", self.prefix);
        if let Some(ann) = essence
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            ann.retain(|k, _| !k.starts_with(&prefix));
        }
        if let Some(kopf) = essence
            .pointer_mut("/status")
            .and_then(Value::as_object_mut)
        {
            if let Some(k) = kopf.get_mut("kopf").and_then(Value::as_object_mut) {
                k.remove("progress");
            }
        }
        remove_empty(essence);
    }
}

/// The diff-base storage: the last handled essence of each object.
#[derive(Clone, Debug)]
pub struct DiffBaseStorage {
    /// Annotation prefix.
    pub prefix: String,
}

impl Default for DiffBaseStorage {
    fn default() -> Self {
        DiffBaseStorage {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

fn remove_empty(v: &mut Value) {
    for path in [
        &["metadata", "annotations"][..],
        &["metadata", "labels"],
        &["metadata"],
        &["status"],
    ] {
        let empty = {
            let mut cur = Some(&*v);
            for p in path {
                cur = cur.and_then(|c| c.get(*p));
            }
            cur.is_some_and(|c| c.as_object().is_some_and(Map::is_empty))
        };
        if empty {
            let (last, parents) = path.split_last().expect("non-empty path");
            let mut cur = &mut *v;
            for p in parents {
                cur = &mut cur[*p];
            }
            if let Some(o) = cur.as_object_mut() {
                o.remove(*last);
            }
        }
    }
}

impl DiffBaseStorage {
    /// The essence of `body`: what a change must touch to be a change
    /// (everything but apiVersion, kind, status and system metadata; labels
    /// and annotations kept, minus Kopf's own and kubectl's last-applied).
    pub fn essence(&self, body: &Value, extra_fields: &[Vec<String>]) -> Value {
        let mut essence = body.clone();
        if let Some(o) = essence.as_object_mut() {
            o.remove("apiVersion");
            o.remove("kind");
            o.remove("status");
            let meta = o.remove("metadata");
            let mut kept = Map::new();
            if let Some(meta) = meta {
                for field in ["labels", "annotations"] {
                    if let Some(v) = meta.get(field).filter(|v| v.is_object()) {
                        kept.insert(field.into(), v.clone());
                    }
                }
            }
            o.insert("metadata".into(), Value::Object(kept));
        }
        let managed: Vec<String> = annotations(body)
            .map(|a| {
                a.keys()
                    .filter_map(|k| k.strip_suffix("/kopf-managed").map(|p| format!("{p}/")))
                    .collect()
            })
            .unwrap_or_default();
        let own = format!("{}/", self.prefix);
        let own_suffix = format!(".{}/", self.prefix);
        let base_keys = keys(&self.prefix, DIFFBASE_KEY);
        if let Some(ann) = essence
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            ann.retain(|k, _| {
                let prefix_end = k.find('/').map(|i| &k[..=i]).unwrap_or("");
                !(k.starts_with(&own)
                    || (!prefix_end.is_empty() && prefix_end.ends_with(&own_suffix))
                    || managed.iter().any(|m| k.starts_with(m.as_str()))
                    || k == "kubectl.kubernetes.io/last-applied-configuration"
                    || base_keys.contains(k))
            });
        }
        for field in extra_fields {
            let path: Vec<&str> = field.iter().map(String::as_str).collect();
            if let Some(v) = crate::structs::resolve(body, &path) {
                let mut p = Patch::new();
                p.set(&path, v.clone());
                crate::structs::apply_patch(&mut essence, &p.to_value());
            }
        }
        remove_empty(&mut essence);
        essence
    }

    /// The stored essence, cleared of progress traces, if any.
    pub fn fetch(&self, body: &Value, progress: &ProgressStorage) -> Option<Value> {
        let ann = annotations(body)?;
        let text = keys(&self.prefix, DIFFBASE_KEY)
            .into_iter()
            .find_map(|k| ann.get(&k).and_then(Value::as_str).map(String::from))?;
        let mut essence: Value = serde_json::from_str(text.trim()).ok()?;
        progress.clear(&mut essence);
        Some(essence)
    }

    /// Writes `essence` as the new diff-base.
    pub fn store(&self, patch: &mut Patch, essence: &Value) {
        let text = format!("{}\n", serde_json::to_string(essence).unwrap_or_default());
        for key in keys(&self.prefix, DIFFBASE_KEY) {
            patch.set(
                &["metadata", "annotations", &key],
                Value::String(text.clone()),
            );
        }
    }

    /// The current essence, cleared the same way as the stored one.
    pub fn current(&self, body: &Value, progress: &ProgressStorage) -> Value {
        let mut essence = self.essence(body, &[]);
        progress.clear(&mut essence);
        essence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_should_match_kopf() {
        assert_eq!(suffix(&"x".repeat(64)), "-SItAqA");
        assert_eq!(suffix(&"x".repeat(40)), "-tEokcg");
    }

    #[test]
    fn keys_should_follow_kopf_v1_and_v2_rules() {
        assert_eq!(
            keys(DEFAULT_PREFIX, "create_fn"),
            vec!["kopf.zalando.org/create_fn"]
        );
        assert_eq!(
            keys(DEFAULT_PREFIX, "parent/child"),
            vec!["kopf.zalando.org/parent.child"]
        );
        assert_eq!(
            keys("my-operator.example.com", &"x".repeat(40)),
            vec![
                format!("my-operator.example.com/{}", "x".repeat(40)),
                format!("my-operator.example.com/{}-tEokcg", "x".repeat(32)),
            ]
        );
        let long = keys(DEFAULT_PREFIX, &"x".repeat(64));
        assert_eq!(
            long[0],
            format!("kopf.zalando.org/{}-SItAqA", "x".repeat(56))
        );
        assert!(long
            .iter()
            .all(|k| k.split('/').nth(1).unwrap().len() <= 63));
    }

    #[test]
    fn records_should_serialize_like_kopf() {
        let t = "2024-05-01T10:00:00.123456+00:00";
        let record = ProgressRecord {
            started: parse_time(t),
            purpose: Some("create".into()),
            retries: 1,
            success: true,
            ..Default::default()
        };
        assert_eq!(
            record.to_json(),
            r#"{"started":"2024-05-01T10:00:00.123456+00:00","purpose":"create","retries":1,"success":true,"failure":false}"#
        );
        assert_eq!(
            ProgressRecord::from_value(&Value::String(record.to_json())).unwrap(),
            record
        );
        let naive =
            ProgressRecord::from_value(&json!({"started": "2020-12-31T23:59:59.123456"})).unwrap();
        assert_eq!(
            naive.started.unwrap().to_string(),
            "2020-12-31T23:59:59.123456Z"
        );
    }

    #[test]
    fn essence_should_drop_system_fields_and_own_annotations() {
        let body = json!({
            "apiVersion": "kopf.dev/v1", "kind": "KopfExample",
            "metadata": {"name": "x", "uid": "u", "resourceVersion": "5", "labels": {"a": "b"},
                         "annotations": {"kopf.zalando.org/create_fn": "{}", "kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}},
            "spec": {"size": 1}, "status": {"create_fn": {}}
        });
        let essence = DiffBaseStorage::default().current(&body, &ProgressStorage::default());
        assert_eq!(
            essence,
            json!({"metadata": {"labels": {"a": "b"}, "annotations": {"keep": "me"}}, "spec": {"size": 1}})
        );
    }

    #[test]
    fn purge_should_null_existing_keys_and_drop_pending_ones() {
        let storage = ProgressStorage::default();
        let body = json!({"metadata": {"annotations": {"kopf.zalando.org/a": "{}"}}});
        let mut patch = Patch::new();
        storage.store(&mut patch, "b", &ProgressRecord::default());
        storage.purge(&body, &mut patch, &["a".to_string(), "b".to_string()]);
        assert_eq!(
            patch.to_value(),
            json!({"metadata": {"annotations": {"kopf.zalando.org/a": null}}})
        );
    }
}
