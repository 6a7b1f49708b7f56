//! Indexing (an engine): index handlers run for every watch event of their
//! resource, before anything else handles it, and keep the operator's
//! in-memory indices up to date (values replaced on changes, discarded on
//! deletion or when the object stops passing the handler's filters).
//!
//! Errors follow Kopf: by default they are ignored and the object's old
//! values stay; a permanent failure discards them and leaves the object out
//! of that index; a temporary one discards them until its delay is over.

use std::collections::HashMap;

use serde_json::Value;
use tokio::time::Instant;

use crate::{
    handling::{attempt, Context, Events, Limits, Logger, Memo, Outcome},
    indices::{Indexed, Indices},
    references::Resource,
    registry::Handler,
    settings::Settings,
};

/// Encodes what an index function returned, to travel as a handler result.
pub(crate) fn encode(indexed: Indexed) -> Option<Value> {
    match indexed {
        Indexed::Keep => None,
        Indexed::One(v) => Some(serde_json::json!({"one": v})),
        Indexed::Entries(e) => Some(serde_json::json!({
            "entries": e.into_iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>()
        })),
    }
}

fn decode(v: Option<Value>) -> Indexed {
    let Some(v) = v else { return Indexed::Keep };
    if let Some(one) = v.get("one") {
        return Indexed::One(one.clone());
    }
    Indexed::Entries(
        v.get("entries")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|pair| Some((pair.get(0)?.clone(), pair.get(1)?.clone())))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Objects left out of an index: (index id, object) → until when (`None`:
/// for good).
#[derive(Default)]
pub(crate) struct Exclusions(HashMap<(String, String), Option<Instant>>);

/// What index handlers need.
pub(crate) struct Indexer<'a> {
    /// The resource's handlers (the index handlers among them run).
    pub(crate) handlers: &'a [Handler],
    pub(crate) indices: &'a Indices,
    pub(crate) resource: &'a Resource,
    pub(crate) client: &'a kube::Client,
    pub(crate) settings: &'a Settings,
    pub(crate) memo: &'a Memo,
}

impl Indexer<'_> {
    fn index_handlers(&self) -> impl Iterator<Item = &Handler> {
        self.handlers
            .iter()
            .filter(|h| h.reason == crate::references::Reason::Index)
    }

    /// Re-indexes `body` (the object `key`, `namespace/name`).
    pub(crate) async fn index(&self, key: &str, body: &Value, excluded: &mut Exclusions) {
        for h in self.index_handlers() {
            let Some(index) = self.indices.get(&h.id) else {
                continue;
            };
            if !h.matches(body) {
                index.discard(key);
                continue;
            }
            let slot = (h.id.clone(), key.to_string());
            match excluded.0.get(&slot) {
                Some(None) => continue,
                Some(Some(until)) if *until > Instant::now() => continue,
                _ => {}
            }
            let logger = Logger::for_body(body, self.settings.log_sink.clone());
            let mut ctx = Context::new(
                body.clone(),
                h.id.clone(),
                h.reason,
                self.resource.clone(),
                self.settings.clock.now(),
                logger.clone(),
                self.memo.child(),
                self.client.clone(),
                Events::default(),
            );
            ctx.param.clone_from(&h.param);
            ctx.indices = self.indices.clone();
            let limits = Limits {
                retries: None,
                timeout: None,
                backoff: h.backoff.unwrap_or(self.settings.execution.default_backoff),
                errors: h.errors,
            };
            let outcome = attempt(&h.func, ctx, &limits, &format!("Indexer '{}'", h.id)).await;
            // Index handlers' lines are logged, not posted as Events.
            drop(logger.drain());
            match outcome {
                Outcome::Success(v) => {
                    excluded.0.remove(&slot);
                    index.replace(key, decode(v));
                }
                Outcome::Failure(_) => {
                    index.discard(key);
                    excluded.0.insert(slot, None);
                }
                Outcome::Retry { delay, .. } => {
                    index.discard(key);
                    excluded.0.insert(slot, Instant::now().checked_add(delay));
                }
            }
        }
    }

    /// The object `key` is gone: its values go from every index.
    pub(crate) fn discard(&self, key: &str, excluded: &mut Exclusions) {
        for h in self.index_handlers() {
            if let Some(index) = self.indices.get(&h.id) {
                index.discard(key);
            }
            excluded.0.remove(&(h.id.clone(), key.to_string()));
        }
    }

    /// After a re-listing of `namespace` (`None`: all of them): objects of
    /// it that were not listed are gone.
    pub(crate) fn keep_only(
        &self,
        listed: &std::collections::HashSet<String>,
        namespace: Option<&str>,
    ) {
        let covered =
            |object: &str| namespace.is_none_or(|ns| object.split('/').next() == Some(ns));
        for h in self.index_handlers() {
            if let Some(index) = self.indices.get(&h.id) {
                for object in index.objects() {
                    if covered(&object) && !listed.contains(&object) {
                        index.discard(&object);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_should_survive_the_encoding() {
        for indexed in [
            Indexed::Keep,
            Indexed::One(json!({"entries": 1})),
            Indexed::Entries(vec![
                (json!(["a", "b"]), json!(null)),
                (json!(null), json!(2)),
            ]),
        ] {
            assert_eq!(decode(encode(indexed.clone())), indexed);
        }
    }
}
