//! A request on a resource: the fault rules decide first (delay, error,
//! dropped connection), then writes go through the admission webhooks
//! when any are configured, and everything else straight to the verb;
//! `fieldValidation` and `Warning`s around the writes.

use bytes::Bytes;
use http::{header, Method};
use serde_json::{json, Value};

use crate::{
    admission::webhooks::Admission,
    apimachinery::errors::ApiError,
    auth::{gate::Mode, Attributes, UserInfo},
    endpoints::{
        decode::{decode_object, delete_options},
        response::{header_of, Answer},
        route::{parse_query, Query},
        table, ApiService, Dropped,
    },
    registry::{
        generic::Api,
        patch::{self, PatchType},
        rest::{parse_rv, Reply, Target},
        semantics::Endpoint,
    },
    storage::{selector::FieldSelector, watch::error_line},
    testing::{
        faults::{RequestInfo, Terminal},
        journal::Record,
    },
};

impl ApiService {
    /// A request on a resource: fault rules first, then the webhooks (for a
    /// write of one object, when any are configured) or the verb.
    pub(super) async fn resource(
        &self,
        parts: &http::request::Parts,
        query: &str,
        body: Bytes,
        (t, sub): (Target, Option<String>),
        mut entry: Option<&mut Record>,
        user: &UserInfo,
    ) -> Result<Answer, Dropped> {
        let mut q = match parse_query(query, t.kind.field_labels) {
            Ok(q) => q,
            Err(e) => return Ok(Answer::Error(e)),
        };
        // Without a fieldManager, a write is managed by its client's name:
        // the User-Agent up to the first '/' (apply must name one).
        let applying =
            header_of(parts, header::CONTENT_TYPE).starts_with("application/apply-patch");
        if q.field_manager.is_none() && !applying {
            let agent = header_of(parts, header::USER_AGENT);
            let name: String = agent
                .split('/')
                .next()
                .unwrap_or_default()
                .chars()
                .take(128)
                .collect();
            q.field_manager = Some(name).filter(|m| !m.is_empty());
        }
        if let Some(accept) = parts.headers.get(header::ACCEPT) {
            let served = served_media_types(&t);
            if !acceptable(accept.to_str().unwrap_or_default(), served) {
                return Ok(Answer::Error(ApiError::not_acceptable(served)));
            }
        }
        let verb = verb_of(&parts.method, t.name.is_empty(), q.watch);
        if let Some(e) = entry.as_deref_mut() {
            e.verb = Some(verb);
            e.kind = Some(t.kind.clone());
            e.status = sub.as_deref() == Some("status");
            e.subresource = sub.clone();
            e.namespace = t.namespace.clone();
            e.name = t.name.clone();
        }
        // AlwaysAllow needs no attributes: skip building them.
        if self.shared.gate.mode() != Mode::AlwaysAllow {
            let attrs = attributes(&parts.method, &q, &t, sub.as_deref());
            if let Err(denied) = self.shared.gate.authorize(user, &attrs) {
                return Ok(Answer::Error(denied));
            }
        }
        let decision = if self.shared.injector.has_rules() {
            self.shared.injector.decide(&RequestInfo {
                verb: verb.to_string(),
                resource: Some(t.kind.key.to_string()),
                subresource: sub.clone(),
                namespace: Some(t.namespace.clone()).filter(|n| !n.is_empty()),
                name: Some(t.name.clone()).filter(|n| !n.is_empty()),
                field_manager: q.field_manager.clone(),
                user_agent: header_of(parts, header::USER_AGENT),
                content_type: header_of(parts, header::CONTENT_TYPE),
            })
        } else {
            Default::default()
        };
        if let Some(e) = entry {
            e.fault = decision.fired.last().copied();
        }
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        let drop_after = match decision.terminal {
            Some((_, Terminal::Status(err))) => return Ok(Answer::Error(err)),
            Some((rule, Terminal::DropBefore)) => return Err(Dropped(rule)),
            Some((rule, Terminal::DropAfter)) => Some(rule),
            Some((rule, Terminal::Panic)) => panic!("fault rule {rule} panics in the handler"),
            None => None,
        };
        // Writes of one object (not reads, not deletecollection), except
        // of the webhook configurations themselves, as kube-apiserver does.
        let one_write = match parts.method {
            Method::POST | Method::PUT | Method::PATCH => true,
            Method::DELETE => !t.name.is_empty(),
            _ => false,
        };
        let admitted = one_write
            && t.kind.key.group != "admissionregistration.k8s.io"
            && Admission::configured(&self.shared.api.store);
        let answer = if let Err(e) = self.fresh_enough(&q).await {
            Answer::Error(e)
        } else if let Err(e) = self.escalation(parts, &q, &body, &t, sub.as_deref(), user) {
            Answer::Error(e)
        } else if t.kind.create_only {
            self.review(parts, &body, &t, user)
                .unwrap_or_else(Answer::Error)
        } else if sub.as_deref() == Some("token") {
            self.token_request(parts, &body, &t)
                .unwrap_or_else(Answer::Error)
        } else if sub.as_deref() == Some("scale") {
            self.scale(parts, &q, &body, &t)
                .unwrap_or_else(Answer::Error)
        } else if matches!(sub.as_deref(), Some("binding" | "eviction")) {
            self.action(parts, &q, &body, &t, sub.as_deref().unwrap_or_default())
                .unwrap_or_else(Answer::Error)
        } else if admitted {
            self.admitted(parts, &q, body, &t, sub.as_deref(), user)
                .await
                .unwrap_or_else(Answer::Error)
        } else {
            self.verb(parts, &q, body, &t, sub.is_some())
                .unwrap_or_else(Answer::Error)
        };
        match drop_after {
            Some(rule) => Err(Dropped(rule)),
            None => Ok(answer),
        }
    }

    /// A watch at a resourceVersion the server has not reached yet waits a
    /// little for it, as kube-apiserver's watch cache does, then is refused
    /// (504, retry after 1 s) rather than left hanging.
    async fn fresh_enough(&self, q: &Query) -> Result<(), ApiError> {
        let Some(requested) = q
            .list
            .resource_version
            .as_deref()
            .filter(|_| q.watch)
            .and_then(|rv| rv.parse::<u64>().ok())
        else {
            return Ok(());
        };
        let store = &self.shared.api.store;
        let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
        while store.current_rv() < requested {
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::too_large_resource_version(
                    requested,
                    store.current_rv(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The review APIs: a POST is answered by the authorizer for the
    /// request's identity, and nothing is stored; no other verb exists.
    fn review(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        t: &Target,
        user: &UserInfo,
    ) -> Result<Answer, ApiError> {
        if parts.method != Method::POST || !t.name.is_empty() {
            return Err(ApiError::method_not_allowed());
        }
        let mut review = decode_object(body, &header_of(parts, header::CONTENT_TYPE))?;
        Api::default_body_kind(t, &mut review);
        let gate = &self.shared.gate;
        let api = &self.shared.api;
        let now = api.clock.now().as_second();
        let tokens = |token: &str, audiences: &[String]| {
            gate.authn()
                .token_user(token, audiences, &**api, now)
                .map_err(|e| e.to_string())
        };
        let answered = crate::auth::reviews::answer(
            t.kind.plural(),
            &t.namespace,
            &review,
            user,
            gate.authorizer(),
            &tokens,
        )
        .map_err(|causes| ApiError::invalid(t.kind.group(), &t.kind.kind, "", causes))?;
        Ok(Answer::reply(Reply {
            code: 201,
            body: answered.to_string().into(),
            unknown_fields: Vec::new(),
        }))
    }

    /// `pods/NAME/binding` and `pods/NAME/eviction`: POST a Binding or an
    /// Eviction.
    fn action(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: &Bytes,
        t: &Target,
        sub: &str,
    ) -> Result<Answer, ApiError> {
        if parts.method != Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        let posted = decode_object(body, &header_of(parts, header::CONTENT_TYPE))?;
        let api = &self.shared.api;
        Ok(Answer::reply(match sub {
            "binding" => api.bind(t, &posted, q.dry_run)?,
            _ => api.evict(t, &posted)?,
        }))
    }

    /// `/scale`: GET, PUT or PATCH an `autoscaling/v1` Scale.
    fn scale(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: &Bytes,
        t: &Target,
    ) -> Result<Answer, ApiError> {
        let api = &self.shared.api;
        let content_type = header_of(parts, header::CONTENT_TYPE);
        let reply = match parts.method {
            Method::GET => api.get_scale(t)?,
            Method::PUT => {
                let scale = decode_object(body, &content_type)?;
                api.update_scale(t, &scale, q.dry_run)?
            }
            Method::PATCH => {
                let ptype = patch_type(t, &content_type)?;
                api.patch_scale(t, ptype, body, q.dry_run)?
            }
            _ => return Err(ApiError::method_not_allowed()),
        };
        Ok(Answer::reply(reply))
    }

    fn verb(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: Bytes,
        t: &Target,
        status_sub: bool,
    ) -> Result<Answer, ApiError> {
        let endpoint = if status_sub {
            Endpoint::Status
        } else {
            Endpoint::Main
        };
        let content_type = header_of(parts, header::CONTENT_TYPE);
        let api = &self.shared.api;
        let collection = t.name.is_empty();
        match (&parts.method, collection) {
            (&Method::GET, _) if q.watch => {
                let (t, list) = if collection {
                    (t.clone(), q.list.clone())
                } else {
                    // A watch of one object, as the deprecated /watch/ paths offered.
                    let mut list = q.list.clone();
                    list.fields = FieldSelector::parse(&format!("metadata.name={}", t.name), &[])?;
                    (
                        Target {
                            name: String::new(),
                            ..t.clone()
                        },
                        list,
                    )
                };
                let resumes = list.send_initial_events != Some(true)
                    && list
                        .resource_version
                        .as_deref()
                        .is_some_and(|rv| !rv.is_empty() && rv != "0");
                if resumes && self.shared.injector.take_expiry(&t.kind.key) {
                    let rv = list.resource_version.as_deref().unwrap_or_default();
                    let requested = parse_rv(rv)?;
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    let err = ApiError::too_old_resource_version(requested, api.store.current_rv());
                    let _ = tx.try_send(error_line(&err));
                    return Ok(Answer::Watch(rx));
                }
                Ok(Answer::Watch(api.watch(&t, &list)?))
            }
            (&Method::GET, collection)
                if parts
                    .headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(table::wanted) =>
            {
                let reply = if collection {
                    api.list(t, &q.list)?
                } else {
                    api.get(t)?
                };
                let body: Value = serde_json::from_slice(&reply.body)
                    .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))?;
                let (items, meta) = if collection {
                    (
                        body["items"].as_array().cloned().unwrap_or_default(),
                        body.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    )
                } else {
                    let rv = body.pointer("/metadata/resourceVersion").cloned();
                    (vec![body], json!({"resourceVersion": rv}))
                };
                Ok(Answer::value(table::table(
                    &t.kind,
                    &t.version,
                    &items,
                    meta,
                    q.include_object.as_deref(),
                    api.clock.now(),
                )))
            }
            (&Method::GET, true) => Ok(Answer::reply(api.list(t, &q.list)?)),
            (&Method::GET, false) => Ok(Answer::reply(api.get(t)?)),
            (&Method::POST, true) => {
                let mut body = decode_object(&body, &content_type)?;
                let manager = q.field_manager.as_deref();
                checked(q, |dry, trial| {
                    let body = if trial {
                        body.clone()
                    } else {
                        std::mem::take(&mut body)
                    };
                    api.create_as(t, body, dry, manager)
                })
            }
            (&Method::PUT, false) => {
                let mut body = decode_object(&body, &content_type)?;
                let manager = q.field_manager.as_deref();
                checked(q, |dry, trial| {
                    let body = if trial {
                        body.clone()
                    } else {
                        std::mem::take(&mut body)
                    };
                    api.update_as(t, body, endpoint, dry, manager)
                })
            }
            (&Method::PATCH, false) => {
                let ptype = patch_type(t, &content_type)?;
                let manager = q.field_manager.as_deref();
                if ptype == PatchType::Apply {
                    return checked(q, |dry, _| {
                        api.apply_patch(t, &body, manager, q.force, endpoint, dry)
                    });
                }
                checked(q, |dry, _| {
                    api.patch_as(t, ptype, &body, endpoint, dry, manager)
                })
            }
            (&Method::DELETE, false) => {
                let opts = delete_options(&body, q)?;
                Ok(Answer::reply(api.delete(t, &opts)?))
            }
            (&Method::DELETE, true) => {
                let opts = delete_options(&body, q)?;
                Ok(Answer::reply(api.delete_collection(t, &q.list, &opts)?))
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }
}

/// What a request on a resource asks, in authorizer terms, as
/// kube-apiserver's RequestInfo reads it: GET and HEAD of one object are
/// `get` (even with `watch`), of a collection `list` or `watch`, with the
/// name a `metadata.name=` field selector requires; a namespace's own
/// requests are in that namespace.
fn attributes(method: &Method, q: &Query, t: &Target, sub: Option<&str>) -> Attributes {
    let reading = *method == Method::GET || *method == Method::HEAD;
    let collection = t.name.is_empty();
    let verb = match (reading, collection) {
        (true, false) => "get",
        (true, true) if q.watch => "watch",
        (true, true) => "list",
        (false, _) => verb_of(method, collection, false),
    };
    let mut name = t.name.clone();
    if reading && collection {
        if let Some(exact) = q.list.fields.exact_name() {
            name = exact.to_string();
        }
    }
    let namespace = if t.kind.key.group.is_empty() && t.kind.key.plural == "namespaces" {
        name.clone()
    } else {
        t.namespace.clone()
    };
    Attributes {
        verb: verb.to_string(),
        group: t.kind.key.group.clone(),
        resource: t.kind.key.plural.clone(),
        subresource: sub.unwrap_or_default().to_string(),
        namespace,
        name,
        path: String::new(),
    }
}

/// The Kubernetes verb of a request on a resource.
fn verb_of(method: &Method, collection: bool, watch: bool) -> &'static str {
    match (method, collection) {
        (&Method::GET | &Method::HEAD, _) if watch => "watch",
        (&Method::GET | &Method::HEAD, true) => "list",
        (&Method::GET | &Method::HEAD, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        _ => "unknown",
    }
}

/// How long a watch at a resourceVersion ahead of the server waits for it
/// (kube-apiserver's watch cache `blockTimeout`).
const FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The media types a kind is served in, as kube-apiserver lists them
/// (custom resources have no protobuf).
fn served_media_types(t: &Target) -> &'static [&'static str] {
    if t.kind.custom {
        &["application/json", "application/yaml"]
    } else {
        &[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ]
    }
}

/// Whether an `Accept` header admits one of `served` (wildcards and
/// parameters such as `;as=Table` or `;stream=watch` included). An empty
/// header accepts anything.
fn acceptable(accept: &str, served: &[&str]) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            let media = media.to_ascii_lowercase();
            media == "*/*" || media == "application/*" || served.contains(&media.as_str())
        })
}

/// The patch type of a `Content-Type`, or 415 listing what the kind accepts.
pub(super) fn patch_type(t: &Target, content_type: &str) -> Result<PatchType, ApiError> {
    let accepted = if t.kind.custom {
        patch::CUSTOM_PATCH_TYPES
    } else {
        patch::BUILTIN_PATCH_TYPES
    };
    PatchType::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type, accepted))
}

/// A write with the request's `fieldValidation`: with `Strict`, unknown
/// fields refuse the write (tried as a dry run first); by default they are
/// pruned with a `Warning` each; with `Ignore`, silently. `write(dry_run,
/// trial)` is called once, or twice (the trial first) under `Strict`.
pub(super) fn checked(
    q: &Query,
    mut write: impl FnMut(bool, bool) -> Result<Reply, ApiError>,
) -> Result<Answer, ApiError> {
    if q.strict && !q.dry_run {
        strict(&write(true, true)?)?;
    }
    let reply = write(q.dry_run, false)?;
    if q.strict {
        strict(&reply)?;
    }
    Ok(warned(reply, q, Vec::new()))
}

pub(super) fn strict(reply: &Reply) -> Result<(), ApiError> {
    if reply.unknown_fields.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = reply
        .unknown_fields
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    Err(ApiError::bad_request(format!(
        "strict decoding error: {}",
        fields.join(", ")
    )))
}

/// The reply, with `Warning`s for pruned fields (unless ignored) and `more`.
pub(super) fn warned(reply: Reply, q: &Query, mut more: Vec<String>) -> Answer {
    if !q.ignore_unknown {
        more.extend(
            reply
                .unknown_fields
                .iter()
                .map(|f| format!("unknown field {f:?}")),
        );
    }
    let answer = Answer::reply(reply);
    if more.is_empty() {
        answer
    } else {
        Answer::Warned(Box::new(answer), more)
    }
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    const BUILT_IN: &[&str] = &[
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
    ];

    /// Regression test for issue 15: what kubectl and clients send is
    /// accepted; a type nobody serves is not.
    #[test]
    fn accept_headers_should_be_negotiated() {
        for ok in [
            "",
            "*/*",
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            "application/vnd.kubernetes.protobuf,application/json",
            "application/json;stream=watch",
            "application/*;q=0.8",
            "text/html, application/JSON",
        ] {
            assert!(acceptable(ok, BUILT_IN), "{ok}");
        }
        for refused in ["application/xml", "text/html", "image/png, text/plain"] {
            assert!(!acceptable(refused, BUILT_IN), "{refused}");
        }
        assert!(!acceptable(
            "application/vnd.kubernetes.protobuf",
            &["application/json", "application/yaml"]
        ));
    }
}
