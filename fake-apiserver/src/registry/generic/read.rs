//! The reads: GET, LIST (consistent at a resourceVersion, paginated with
//! continue tokens) and WATCH (a channel of ready-to-send event lines).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::{
    apimachinery::errors::{ApiError, Cause},
    registry::{
        generic::Api,
        rest::{parse_rv, ListOptions, Reply, Target},
    },
    storage::{
        object::{StoreError, Stored},
        watch::{self, Start, WatchSpec},
    },
};

impl Api {
    /// GET one object.
    pub fn get(&self, t: &Target) -> Result<Reply, ApiError> {
        let obj = self
            .store
            .get(&t.kind.key, &t.namespace, &t.name)
            .ok_or_else(|| self.not_found(t))?;
        Ok(Reply::ok(self.render(t, &obj)))
    }

    /// LIST a collection.
    pub fn list(&self, t: &Target, opts: &ListOptions) -> Result<Reply, ApiError> {
        let namespace = (!t.namespace.is_empty()).then_some(t.namespace.as_str());
        let (at, after) = match &opts.continue_token {
            Some(token) => {
                let (rv, after) = decode_continue(token)?;
                // kube-apiserver's keys are relative to the listed prefix, so a
                // token cannot reach outside it: refuse one that tries.
                if namespace.is_some_and(|ns| {
                    !after
                        .strip_prefix(ns)
                        .is_some_and(|rest| rest.starts_with('/'))
                }) {
                    return Err(ApiError::bad_request(format!(
                        "continue key is not valid: {after}"
                    )));
                }
                (Some(rv), Some(after))
            }
            None => (self.list_rv(opts)?, None),
        };
        let keep = |o: &Stored| opts.labels.matches_stored(o) && opts.fields.matches_stored(o);
        let page = match self.store.list(
            &t.kind.key,
            namespace,
            at,
            after.as_deref(),
            opts.limit,
            &keep,
        ) {
            Ok(page) => page,
            Err(StoreError::Gone { .. }) if opts.continue_token.is_some() => {
                return Err(ApiError::continue_expired())
            }
            Err(e) => return Err(e.into()),
        };
        let mut meta = json!({"resourceVersion": page.rv.to_string()});
        if let Some(next) = &page.next {
            meta["continue"] = Value::String(encode_continue(page.rv, next));
            if opts.labels.is_empty() && opts.fields.is_empty() {
                if let Some(n) = page.remaining {
                    meta["remainingItemCount"] = Value::from(n);
                }
            }
        }
        let head = json!({"kind": t.kind.list_kind, "apiVersion": t.kind.api_version(&t.version), "metadata": meta});
        let items: Vec<Bytes> = page.items.iter().map(|o| self.render(t, o)).collect();
        Ok(Reply::ok(list_body(&head, &items)))
    }

    /// The resourceVersion a list must be consistent at, from its options.
    fn list_rv(&self, opts: &ListOptions) -> Result<Option<u64>, ApiError> {
        let Some(rv) = opts.resource_version.as_deref().filter(|s| !s.is_empty()) else {
            if opts.resource_version_match.is_some() {
                return Err(list_options_invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            return Ok(None);
        };
        let n = parse_rv(rv)?;
        match opts.resource_version_match.as_deref() {
            Some("Exact") => {
                if n == 0 {
                    return Err(list_options_invalid(
                        "resourceVersionMatch",
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                let current = self.store.current_rv();
                if n > current {
                    return Err(too_large(n, current));
                }
                Ok(Some(n))
            }
            None | Some("NotOlderThan") | Some("") => {
                let current = self.store.current_rv();
                if n > current {
                    return Err(too_large(n, current));
                }
                Ok(None)
            }
            Some(other) => Err(list_options_invalid(
                "resourceVersionMatch",
                &format!("Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""),
            )),
        }
    }

    /// WATCH a collection: a channel of ready-to-send event lines.
    pub fn watch(&self, t: &Target, opts: &ListOptions) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let rv = opts.resource_version.as_deref().filter(|s| !s.is_empty());
        let start = match opts.send_initial_events {
            Some(true) => {
                if opts.resource_version_match.as_deref() != Some("NotOlderThan") {
                    return Err(list_options_invalid(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    ));
                }
                if !opts.bookmarks {
                    return Err(list_options_invalid(
                        "allowWatchBookmarks",
                        "sendInitialEvents requires setting allowWatchBookmarks to true",
                    ));
                }
                if let Some(rv) = rv {
                    let n = parse_rv(rv)?;
                    let current = self.store.current_rv();
                    if n > current {
                        return Err(too_large(n, current));
                    }
                }
                Start::InitialEvents
            }
            _ => match rv {
                None | Some("0") => Start::Current,
                Some(rv) => {
                    if opts.resource_version_match.is_some() {
                        return Err(list_options_invalid(
                            "resourceVersionMatch",
                            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                        ));
                    }
                    Start::After(parse_rv(rv)?)
                }
            },
        };
        let render: Option<watch::Render> = if t.kind.storage_version().name == t.version {
            None
        } else {
            let api_version = t.kind.api_version(&t.version);
            Some(Arc::new(move |obj: &Stored| {
                let mut value = obj.value();
                value["apiVersion"] = Value::String(api_version.clone());
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }))
        };
        let spec = WatchSpec {
            key: t.kind.key.clone(),
            namespace: (!t.namespace.is_empty()).then(|| t.namespace.clone()),
            labels: opts.labels.clone(),
            fields: opts.fields.clone(),
            start,
            bookmarks: opts.bookmarks,
            bookmark_interval: self.bookmark_interval,
            timeout: opts.timeout,
            api_version: t.kind.api_version(&t.version),
            kind: t.kind.kind.clone(),
            render,
        };
        Ok(watch::start(self.store.clone(), self.hub.clone(), spec))
    }
}

/// A list's JSON: `head` (kind, apiVersion, metadata) with `items` spliced
/// in from their already-serialized bytes.
pub(super) fn list_body(head: &Value, items: &[Bytes]) -> Bytes {
    let head = head.to_string();
    let mut buf =
        BytesMut::with_capacity(head.len() + 16 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    buf.put_slice(&head.as_bytes()[..head.len() - 1]);
    buf.put_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(item);
    }
    buf.put_slice(b"]}");
    buf.freeze()
}

fn too_large(requested: u64, current: u64) -> ApiError {
    let mut err = ApiError::new(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {requested}, current: {current}"),
    );
    err.causes = vec![Cause {
        reason: "ResourceVersionTooLarge".into(),
        message: "Too large resource version".into(),
        field: String::new(),
    }];
    err.retry_after = Some(1);
    err
}

fn list_options_invalid(field: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "ListOptions",
        "",
        vec![Cause::forbidden(field, detail)],
    )
}

fn encode_continue(rv: u64, after: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{after}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine;
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let v: Value =
        serde_json::from_slice(&raw).map_err(|_| invalid("the continue token is not JSON"))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(invalid("server does not recognize this encoded version"));
    }
    let rv = v
        .get("rv")
        .and_then(Value::as_u64)
        .filter(|rv| *rv > 0)
        .ok_or_else(|| {
            invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("encoded start key is missing"))?;
    Ok((rv, start.trim_end_matches('\u{0}').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_should_round_trip_and_reject_garbage() {
        let token = encode_continue(42, "ns/name");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, "ns/name".to_string())
        );
        assert_eq!(decode_continue("!!!").unwrap_err().code, 400);
        assert_eq!(decode_continue("e30=").unwrap_err().code, 400);
    }
}
