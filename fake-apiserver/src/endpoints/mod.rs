//! HTTP: the only layer that knows hyper and `http`. A tower `Service` that
//! routes `/api`, `/apis`, discovery, `/version`, `/openapi/v3` and health
//! endpoints, decodes bodies (JSON or YAML, 3 MiB at most), calls [`Api`],
//! and turns every error into a `Status` body in one place.

mod control;
mod discovery;
mod openapi;
mod route;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use serde_json::{json, Value};

use crate::{
    admission::{Admission, Attributes},
    api::{Api, Reply, Target},
    error::ApiError,
    inject::{Injector, RequestInfo, Terminal},
    journal::{Journal, Record},
    patch::{self, PatchType},
    semantics::Endpoint,
    table,
};
use route::{Query, Route};

/// The body of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// The largest request body accepted, as kube-apiserver's default.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The boxed error the service fails with: only for an injected dropped
/// connection (hyper then closes it; an in-process client sees a transport error).
pub type ServiceError = Box<dyn std::error::Error + Send + Sync>;

/// The injected "connection dropped" failure.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault (rule {0})")]
pub struct Dropped(pub u64);

/// Control API settings: enabled or not, and the bearer token it requires.
#[derive(Clone, Debug, Default)]
pub struct ControlSettings {
    /// Whether `/_fake/v1/...` is served.
    pub enabled: bool,
    /// The bearer token required, if any.
    pub token: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) admission: crate::admission::Admission,
    pub(crate) api: Arc<Api>,
    pub(crate) injector: Arc<Injector>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) control: ControlSettings,
}

/// The fake API server as a tower `Service`. Cheap to clone.
#[derive(Clone)]
pub struct ApiService {
    shared: Arc<Shared>,
    server_address: Arc<str>,
}

impl ApiService {
    pub(crate) fn new(shared: Arc<Shared>, server_address: &str) -> Self {
        ApiService {
            shared,
            server_address: server_address.into(),
        }
    }
}

impl<B> tower::Service<Request<B>> for ApiService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = ServiceError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ServiceError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { service.handle(req).await })
    }
}

fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(code: u16, body: Bytes, content_type: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A response still in pieces, so the journal can see its body.
pub(crate) enum Answer {
    Json(u16, Bytes, &'static str),
    Text(&'static str),
    Error(ApiError),
    Watch(tokio::sync::mpsc::Receiver<Bytes>),
    /// An answer with `Warning` headers (from admission webhooks).
    Warned(Box<Answer>, Vec<String>),
}

impl Answer {
    fn value(v: Value) -> Self {
        Answer::Json(200, Bytes::from(v.to_string()), "application/json")
    }

    fn reply(r: Reply) -> Self {
        Answer::Json(r.code, r.body, "application/json")
    }

    fn code(&self) -> u16 {
        match self {
            Answer::Json(code, ..) => *code,
            Answer::Text(_) | Answer::Watch(_) => 200,
            Answer::Error(e) => e.code,
            Answer::Warned(a, _) => a.code(),
        }
    }

    fn body_for_journal(&self) -> Option<Bytes> {
        match self {
            Answer::Json(_, body, _) => Some(body.clone()),
            Answer::Error(e) => Some(Bytes::from(e.to_status().to_string())),
            Answer::Text(t) => Some(Bytes::from_static(t.as_bytes())),
            Answer::Watch(_) => None,
            Answer::Warned(a, _) => a.body_for_journal(),
        }
    }

    fn into_response(self) -> Response<ResponseBody> {
        match self {
            Answer::Json(code, body, ct) => json_response(code, body, ct),
            Answer::Text(t) => {
                let mut r = Response::new(full(t));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
            Answer::Error(err) => {
                let mut resp = json_response(
                    err.code,
                    Bytes::from(err.to_status().to_string()),
                    "application/json",
                );
                if let Some(secs) = err.retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                resp
            }
            Answer::Watch(lines) => watch_response(lines),
            Answer::Warned(answer, warnings) => {
                let mut resp = answer.into_response();
                for w in warnings {
                    // RFC 7234 warn-code 299, agent "-", as kube-apiserver writes them.
                    let text = format!("299 - {}", serde_json::Value::from(w));
                    if let Ok(v) = HeaderValue::from_str(&text) {
                        resp.headers_mut().append(header::WARNING, v);
                    }
                }
                resp
            }
        }
    }
}

fn header_of(parts: &http::request::Parts, name: header::HeaderName) -> String {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The method's name, for the journal.
fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The Kubernetes verb of a request on a resource.
fn verb_of(method: &Method, collection: bool, watch: bool) -> &'static str {
    match (method, collection) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        _ => "unknown",
    }
}

impl ApiService {
    async fn handle<B>(&self, req: Request<B>) -> Result<Response<ResponseBody>, ServiceError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        tracing::debug!(method = %parts.method, uri = %parts.uri, "request");
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(e) => return Ok(Answer::Error(e).into_response()),
        };
        if let Some(rest) = path.strip_prefix("/_fake/v1") {
            return Ok(control::handle(&self.shared, &parts, rest, &body).into_response());
        }
        let query = parts.uri.query().unwrap_or_default().to_string();
        let mut entry = self.shared.journal.is_enabled().then(|| {
            let header = |name| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(String::from)
            };
            Record {
                time: self.shared.api.clock.now(),
                method: method_name(&parts.method),
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| path.clone(), |pq| pq.as_str().to_string()),
                content_type: header(header::CONTENT_TYPE),
                user_agent: header(header::USER_AGENT),
                request_body: Bytes::copy_from_slice(&body),
                ..Default::default()
            }
        });
        let outcome = self
            .route(&parts, &path, &query, body, entry.as_mut())
            .await;
        let (answer, dropped) = match outcome {
            Ok(answer) => (Some(answer), None),
            Err(Dropped(rule)) => (None, Some(rule)),
        };
        if let Some(mut e) = entry {
            if let Some(a) = &answer {
                e.code = a.code();
                if self.shared.journal.captures_responses() {
                    e.response_body = a.body_for_journal();
                }
            }
            self.shared.journal.record(e);
        }
        match (answer, dropped) {
            (Some(a), _) => Ok(a.into_response()),
            (None, Some(rule)) => Err(Box::new(Dropped(rule))),
            (None, None) => Err(Box::new(Dropped(0))),
        }
    }

    /// Routes a request, applying fault rules to resource requests.
    async fn route(
        &self,
        parts: &http::request::Parts,
        path: &str,
        query: &str,
        body: Bytes,
        entry: Option<&mut Record>,
    ) -> Result<Answer, Dropped> {
        let route = match route::parse(path, &self.shared.api.resources) {
            Ok(r) => r,
            Err(e) => return Ok(Answer::Error(e)),
        };
        let accept = header_of(parts, header::ACCEPT);
        let read_only = |a: Answer| {
            if parts.method == Method::GET || parts.method == Method::HEAD {
                a
            } else {
                Answer::Error(ApiError::method_not_allowed())
            }
        };
        let resources = &self.shared.api.resources;
        let or_error = |r: Result<Value, ApiError>| r.map_or_else(Answer::Error, Answer::value);
        let answer = match route {
            Route::Version => read_only(Answer::value(discovery::version())),
            Route::Health => read_only(Answer::Text("ok")),
            Route::CoreVersions => read_only(if discovery::wants_aggregated(&accept) {
                aggregated(discovery::aggregated_core(resources))
            } else {
                Answer::value(discovery::core_versions(&self.server_address))
            }),
            Route::Groups => read_only(if discovery::wants_aggregated(&accept) {
                aggregated(discovery::aggregated_groups(resources))
            } else {
                Answer::value(discovery::groups(resources))
            }),
            Route::Group(g) => read_only(or_error(discovery::group(resources, &g))),
            Route::GroupVersion(g, v) => {
                read_only(or_error(discovery::resource_list(resources, &g, &v)))
            }
            Route::OpenApiV3Index => read_only(Answer::value(openapi::index(resources))),
            Route::OpenApiV3(g, v) => read_only(or_error(openapi::document(resources, &g, &v))),
            Route::Resource(target, sub) => {
                return self.resource(parts, query, body, target, sub, entry).await;
            }
        };
        Ok(answer)
    }

    async fn resource(
        &self,
        parts: &http::request::Parts,
        query: &str,
        body: Bytes,
        t: Target,
        sub: Option<String>,
        mut entry: Option<&mut Record>,
    ) -> Result<Answer, Dropped> {
        let q = match route::parse_query(query, t.kind.field_labels) {
            Ok(q) => q,
            Err(e) => return Ok(Answer::Error(e)),
        };
        let verb = verb_of(&parts.method, t.name.is_empty(), q.watch);
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
        if let Some(e) = entry.as_deref_mut() {
            e.verb = Some(verb);
            e.kind = Some(t.kind.clone());
            e.status = sub.is_some();
            e.fault = decision.fired.last().copied();
        }
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        let drop_after = match decision.terminal {
            Some((_, Terminal::Status(err))) => return Ok(Answer::Error(err)),
            Some((rule, Terminal::DropBefore)) => return Err(Dropped(rule)),
            Some((rule, Terminal::DropAfter)) => Some(rule),
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
            && Admission::configured(&self.shared.api);
        let answer = if admitted {
            self.admitted(parts, &q, body, &t, sub.as_deref())
                .await
                .unwrap_or_else(Answer::Error)
        } else {
            self.verb(parts, &q, body, &t, sub.is_some())
                .unwrap_or_else(Answer::Error)
        };
        if let Some(e) = entry {
            e.namespace = t.namespace;
            e.name = t.name;
        }
        match drop_after {
            Some(rule) => Err(Dropped(rule)),
            None => Ok(answer),
        }
    }

    /// A write through the admission webhooks: the object as it would be
    /// stored (a dry run), then the webhooks, then the write of what they
    /// let through (with the precondition of the version they saw).
    async fn admitted(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: Bytes,
        t: &Target,
        sub: Option<&str>,
    ) -> Result<Answer, ApiError> {
        // A patch names no version: when the object changed while the
        // webhooks were asked, kube-apiserver tries again, and so does this.
        let mut attempts = if parts.method == Method::PATCH { 5 } else { 1 };
        loop {
            attempts -= 1;
            match self.admitted_once(parts, q, body.clone(), t, sub).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && attempts > 0 => continue,
                other => return other,
            }
        }
    }

    async fn admitted_once(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: Bytes,
        t: &Target,
        sub: Option<&str>,
    ) -> Result<Answer, ApiError> {
        let api = &self.shared.api;
        let endpoint = if sub == Some("status") {
            Endpoint::Status
        } else {
            Endpoint::Main
        };
        let content_type = header_of(parts, header::CONTENT_TYPE);
        let parse = |r: &crate::api::Reply| serde_json::from_slice::<Value>(&r.body).ok();
        let (operation, trial, old) = match parts.method {
            Method::POST => {
                let obj = decode_object(&body, &content_type)?;
                (
                    "CREATE",
                    Some(api.create_as(t, obj, true, q.field_manager.as_deref())?),
                    None,
                )
            }
            Method::PUT => {
                let old = parse(&api.get(t)?);
                let obj = decode_object(&body, &content_type)?;
                (
                    "UPDATE",
                    Some(api.update_as(t, obj, endpoint, true, q.field_manager.as_deref())?),
                    old,
                )
            }
            Method::PATCH => {
                let ptype = patch_type(t, &content_type)?;
                // Server-side apply creates what is missing.
                let old = match api.get(t) {
                    Ok(r) => parse(&r),
                    Err(e) if ptype == PatchType::Apply && e.code == 404 => None,
                    Err(e) => return Err(e),
                };
                (
                    if old.is_none() { "CREATE" } else { "UPDATE" },
                    Some(if ptype == PatchType::Apply {
                        api.apply_patch(
                            t,
                            &body,
                            q.field_manager.as_deref(),
                            q.force,
                            endpoint,
                            true,
                        )?
                    } else {
                        api.patch_as(t, ptype, &body, endpoint, true, q.field_manager.as_deref())?
                    }),
                    old,
                )
            }
            Method::DELETE => ("DELETE", None, parse(&api.get(t)?)),
            _ => return Err(ApiError::method_not_allowed()),
        };
        let code = trial.as_ref().map_or(200, |r| r.code);
        // The trial recorded field ownership already (an apply's, or the
        // manager's update): the final write keeps it as it is.
        let manager = Some(crate::api::APPLIED);
        if let Some(trial) = trial.as_ref().filter(|_| q.strict) {
            strict(trial)?;
        }
        let admitted = self
            .shared
            .admission
            .admit(
                api,
                Attributes {
                    operation,
                    target: t,
                    subresource: sub,
                    object: trial.as_ref().and_then(parse),
                    old_object: old.clone(),
                    dry_run: q.dry_run,
                },
            )
            .await?;
        let reply = match (operation, admitted.object) {
            ("DELETE", _) => api.delete(t, &delete_options(&body, q)?)?,
            (_, Some(obj)) if q.dry_run => Reply {
                code,
                body: Bytes::from(obj.to_string()),
                unknown_fields: trial
                    .as_ref()
                    .map(|r| r.unknown_fields.clone())
                    .unwrap_or_default(),
            },
            ("CREATE", Some(mut obj)) => {
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    for generated in ["uid", "resourceVersion", "creationTimestamp"] {
                        meta.remove(generated);
                    }
                }
                api.create_as(t, obj, false, manager)?
            }
            (_, Some(mut obj)) => {
                // The version the webhooks saw, or a conflict.
                if let Some(rv) = old
                    .as_ref()
                    .and_then(|o| o.pointer("/metadata/resourceVersion"))
                {
                    obj["metadata"]["resourceVersion"] = rv.clone();
                }
                api.update_as(t, obj, endpoint, false, manager)?
            }
            (_, None) => return Err(ApiError::internal("admission lost the object")),
        };
        Ok(warned(reply, q, admitted.warnings))
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
                    list.fields = crate::selector::FieldSelector::parse(
                        &format!("metadata.name={}", t.name),
                        &[],
                    )?;
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
                    let requested = crate::api::parse_rv(rv)?;
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    let err = ApiError::too_old_resource_version(requested, api.store.current_rv());
                    let _ = tx.try_send(crate::watch::error_line(&err));
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

/// The patch type of a `Content-Type`, or 415 listing what the kind accepts.
fn patch_type(t: &Target, content_type: &str) -> Result<PatchType, ApiError> {
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
fn checked(
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

fn strict(reply: &Reply) -> Result<(), ApiError> {
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
fn warned(reply: Reply, q: &Query, mut more: Vec<String>) -> Answer {
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

fn aggregated(v: Value) -> Answer {
    Answer::Json(
        200,
        Bytes::from(v.to_string()),
        discovery::AGGREGATED_CONTENT_TYPE,
    )
}

fn watch_response(mut lines: tokio::sync::mpsc::Receiver<Bytes>) -> Response<ResponseBody> {
    let stream = futures::stream::poll_fn(move |cx| {
        lines
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok::<_, Infallible>(Frame::data(l))))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Decodes a JSON or YAML request body into an object.
fn decode_object(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let base = content_type.split(';').next().unwrap_or_default().trim();
    match base {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}"))),
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(
            other,
            &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
        )),
    }
}

/// Reads `DeleteOptions` from the body (if any) over the query's options.
fn delete_options(body: &[u8], q: &Query) -> Result<crate::api::DeleteOptions, ApiError> {
    let mut opts = q.delete.clone();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(opts);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
    if let Some(uid) = s("/preconditions/uid") {
        opts.uid = Some(uid);
    }
    if let Some(rv) = s("/preconditions/resourceVersion") {
        opts.resource_version = Some(rv);
    }
    if let Some(p) = s("/propagationPolicy") {
        opts.propagation = Some(p);
    }
    if let Some(dry) = v.get("dryRun").and_then(Value::as_array) {
        for d in dry {
            match d.as_str() {
                Some("All") => opts.dry_run = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {}: supported values: \"All\"",
                        other.map_or_else(|| d.to_string(), |s| format!("{s:?}"))
                    )))
                }
            }
        }
    }
    Ok(opts)
}
