//! HTTP: the only layer that knows hyper and `http`. A tower `Service` that
//! routes `/api`, `/apis`, discovery, `/version`, `/openapi/v3` and health
//! endpoints, decodes bodies (JSON or YAML, 3 MiB at most), calls [`Api`],
//! and turns every error into a `Status` body in one place.

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
use serde_json::Value;

use crate::{
    api::{Api, Reply, Target},
    error::ApiError,
    patch::{self, PatchType},
    semantics::Endpoint,
};
use route::{Query, Route};

/// The body of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// The largest request body accepted, as kube-apiserver's default.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The fake API server as a tower `Service`. Cheap to clone.
#[derive(Clone)]
pub struct ApiService {
    api: Arc<Api>,
    server_address: Arc<str>,
}

impl ApiService {
    /// A service over `api`; `server_address` is what `/api` reports.
    pub fn new(api: Arc<Api>, server_address: &str) -> Self {
        ApiService {
            api,
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
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.handle(req).await) })
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

fn reply(r: Reply) -> Response<ResponseBody> {
    json_response(r.code, r.body, "application/json")
}

fn value(v: Value) -> Response<ResponseBody> {
    json_response(200, Bytes::from(v.to_string()), "application/json")
}

/// The one place an error becomes a response.
fn status(err: ApiError) -> Response<ResponseBody> {
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

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

impl ApiService {
    async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        tracing::debug!(%method, uri = %req.uri(), "request");
        let route = match route::parse(&path, &self.api.resources) {
            Ok(r) => r,
            Err(e) => return status(e),
        };
        let accept = header_str(&req, header::ACCEPT);
        let read_only = |resp: Response<ResponseBody>| {
            if method == Method::GET || method == Method::HEAD {
                resp
            } else {
                status(ApiError::method_not_allowed())
            }
        };
        let resources = &self.api.resources;
        match route {
            Route::Version => read_only(value(discovery::version())),
            Route::Health => read_only({
                let mut r = Response::new(full("ok"));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }),
            Route::CoreVersions => read_only(if discovery::wants_aggregated(&accept) {
                aggregated(discovery::aggregated_core(resources))
            } else {
                value(discovery::core_versions(&self.server_address))
            }),
            Route::Groups => read_only(if discovery::wants_aggregated(&accept) {
                aggregated(discovery::aggregated_groups(resources))
            } else {
                value(discovery::groups(resources))
            }),
            Route::Group(g) => {
                read_only(discovery::group(resources, &g).map_or_else(status, value))
            }
            Route::GroupVersion(g, v) => {
                read_only(discovery::resource_list(resources, &g, &v).map_or_else(status, value))
            }
            Route::OpenApiV3Index => read_only(value(openapi::index(resources))),
            Route::OpenApiV3(g, v) => {
                read_only(openapi::document(resources, &g, &v).map_or_else(status, value))
            }
            Route::Resource(target, sub) => self
                .resource(req, target, sub.is_some())
                .await
                .unwrap_or_else(status),
        }
    }

    async fn resource<B>(
        &self,
        req: Request<B>,
        t: Target,
        status_sub: bool,
    ) -> Result<Response<ResponseBody>, ApiError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let q = route::parse_query(req.uri().query().unwrap_or_default(), t.kind.field_labels)?;
        let endpoint = if status_sub {
            Endpoint::Status
        } else {
            Endpoint::Main
        };
        let content_type = header_str(&req, header::CONTENT_TYPE);
        let method = req.method().clone();
        let api = &self.api;
        let collection = t.name.is_empty();
        match (method, collection) {
            (Method::GET, true) if q.watch => Ok(watch_response(api.watch(&t, &q.list)?)),
            (Method::GET, true) => Ok(reply(api.list(&t, &q.list)?)),
            (Method::GET, false) if q.watch => {
                // A watch of one object, as the deprecated /watch/ paths offered.
                let mut list = q.list.clone();
                list.fields = crate::selector::FieldSelector::parse(
                    &format!("metadata.name={}", t.name),
                    &[],
                )?;
                let coll = Target {
                    name: String::new(),
                    ..t
                };
                Ok(watch_response(api.watch(&coll, &list)?))
            }
            (Method::GET, false) => Ok(reply(api.get(&t)?)),
            (Method::POST, true) => {
                let body = read_object(req, &content_type).await?;
                Ok(reply(api.create(&t, body, q.dry_run)?))
            }
            (Method::PUT, false) => {
                let body = read_object(req, &content_type).await?;
                Ok(reply(api.update(&t, body, endpoint, q.dry_run)?))
            }
            (Method::PATCH, false) => {
                let accepted = if t.kind.custom {
                    patch::CUSTOM_PATCH_TYPES
                } else {
                    patch::BUILTIN_PATCH_TYPES
                };
                let ptype = PatchType::from_content_type(&content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(&content_type, accepted))?;
                let body = read_body(req).await?;
                Ok(reply(api.patch(&t, ptype, &body, endpoint, q.dry_run)?))
            }
            (Method::DELETE, false) => {
                let opts = delete_options(req, q).await?;
                Ok(reply(api.delete(&t, &opts)?))
            }
            (Method::DELETE, true) => {
                let list = q.list.clone();
                let opts = delete_options(req, q).await?;
                Ok(reply(api.delete_collection(&t, &list, &opts)?))
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }
}

fn aggregated(v: Value) -> Response<ResponseBody> {
    json_response(
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

async fn read_body<B>(req: Request<B>) -> Result<Bytes, ApiError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Decodes a JSON or YAML request body into an object.
async fn read_object<B>(req: Request<B>, content_type: &str) -> Result<Value, ApiError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let base = content_type.split(';').next().unwrap_or_default().trim();
    let body = read_body(req).await?;
    match base {
        "" | "application/json" | "*/*" => serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}"))),
        other => Err(ApiError::unsupported_media_type(
            other,
            &["application/json", "application/yaml"],
        )),
    }
}

/// Reads `DeleteOptions` from the body (if any) over the query's options.
async fn delete_options<B>(req: Request<B>, q: Query) -> Result<crate::api::DeleteOptions, ApiError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut opts = q.delete;
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(opts);
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
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
