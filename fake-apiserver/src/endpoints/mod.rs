//! HTTP (kube's `endpoints` and `endpoints/handlers`): the only layer that
//! serves with hyper and `http`. A tower `Service` ([`ApiService`]) that
//! routes `/api`, `/apis`, discovery, `/version`, `/openapi/v3` and health
//! endpoints, decodes bodies (JSON, YAML or protobuf, 3 MiB at most), calls
//! `registry::generic::Api`, and turns every error into a `Status` body in
//! one place; and the TCP accept loop that serves it.
//!
//! Uses every layer below: the registry for the verbs, `admission` for the
//! webhooks, `testing` for fault rules and the journal (and the control API
//! under `/_fake/v1`, in `control`). Called by `server`.
//!
//! A request reads top to bottom: here (journal, routing) → `handlers`
//! (fault rules, then the verb) → `admitted` (only with webhooks) → the
//! registry; `decode` reads bodies, `response` writes answers, `table` and
//! `protobuf` are the other content types, and `inflight` holds the limits
//! on requests in flight and on header read time.

mod admitted;
mod control;
mod decode;
mod discovery;
mod handlers;
pub mod identity;
pub mod inflight;
mod openapi;
pub mod protobuf;
mod response;
mod route;
mod secured;
pub mod table;

use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::FutureExt;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    admission::webhooks::Admission,
    apimachinery::errors::ApiError,
    endpoints::{
        decode::read_body,
        response::{aggregated, header_of, method_name, Answer},
        route::Route,
    },
    registry::generic::Api,
    testing::{
        inject::Injector,
        journal::{Journal, Record},
    },
};

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
    pub(crate) admission: Admission,
    pub(crate) api: Arc<Api>,
    pub(crate) injector: Arc<Injector>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) control: ControlSettings,
    pub(crate) gate: Arc<crate::auth::gate::Gate>,
    pub(crate) limits: inflight::Limits,
    pub(crate) inflight: inflight::InFlight,
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
        let (method, uri) = (req.method().clone(), req.uri().clone());
        Box::pin(async move {
            // A panic anywhere in a handler answers this request with a 500
            // and leaves the server serving, as kube-apiserver's recovery does.
            let query = uri.query().unwrap_or_default();
            // Asked once: both the deadline and the in-flight limit need it.
            let long_running = inflight::is_long_running(uri.path(), query);
            let deadline = match inflight::deadline(&service.shared.limits, long_running, query) {
                Ok(d) => d,
                Err(e) => return Ok(Answer::Error(e).into_response()),
            };
            let handled = AssertUnwindSafe(service.handle(req, long_running)).catch_unwind();
            let handled = match deadline {
                None => handled.await,
                Some(limit) => match tokio::time::timeout(limit, handled).await {
                    Ok(done) => done,
                    // As kube's timeout filter: the handler is abandoned.
                    Err(_) => return Ok(Answer::Error(inflight::timed_out()).into_response()),
                },
            };
            match handled {
                Ok(answer) => answer,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(%method, %uri, panic = %what, "apiserver panic'd");
                    Ok(Answer::Error(ApiError::internal(
                        "This request caused apiserver to panic. Look in the logs for details.",
                    ))
                    .into_response())
                }
            }
        })
    }
}

impl ApiService {
    async fn handle<B>(
        &self,
        req: Request<B>,
        long_running: bool,
    ) -> Result<Response<ResponseBody>, ServiceError>
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
        let user = identity::identify(&self.shared, &parts);
        if let Some(rest) = path.strip_prefix("/_fake/v1") {
            return Ok(
                control::handle(&self.shared, &parts, rest, &body, user.as_deref().ok())
                    .into_response(),
            );
        }
        let query = parts.uri.query().unwrap_or_default().to_string();
        // A place among the requests in flight, held until this one is answered.
        let place = user.as_ref().ok().map(|user| {
            self.shared
                .inflight
                .admit(&parts.method, long_running, user)
        });
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
                user: user.as_ref().ok().map(|u| u.username.clone()),
                ..Default::default()
            }
        });
        let outcome = match (user, place) {
            (Ok(_), Some(Err(saturated))) => Ok(Answer::Error(saturated)),
            (Ok(user), _place) => {
                self.route(&parts, &path, &query, body, entry.as_mut(), &user)
                    .await
            }
            (Err(e), _) => Ok(Answer::Error(e)),
        };
        let (answer, dropped) = match outcome {
            Ok(answer) => (Some(answer), None),
            Err(Dropped(rule)) => (None, Some(rule)),
        };
        if let Some(mut e) = entry {
            if let Some(a) = &answer {
                e.code = a.code();
                // A denied request keeps its Status: what it was refused.
                if self.shared.journal.captures_responses() || e.code == 403 {
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
        user: &crate::auth::UserInfo,
    ) -> Result<Answer, Dropped> {
        let route = match route::parse(path, &self.shared.api.resources) {
            Ok(r) => r,
            Err(e) => {
                // What is not served is still a URL someone may not get.
                let attrs = identity::non_resource(&parts.method, path);
                if let Err(denied) = self.shared.gate.authorize(user, &attrs) {
                    return Ok(Answer::Error(denied));
                }
                return Ok(Answer::Error(e));
            }
        };
        if !matches!(route, Route::Resource(..)) {
            let attrs = identity::non_resource(&parts.method, path);
            if let Err(denied) = self.shared.gate.authorize(user, &attrs) {
                return Ok(Answer::Error(denied));
            }
        }
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
                return self
                    .resource(parts, query, body, (target, sub), entry, user)
                    .await;
            }
        };
        Ok(answer)
    }
}

/// Serves `service` on every connection `listener` accepts (HTTP/1 and
/// HTTP/2; over TLS with `tls`, where a verified client certificate's
/// identity goes with each request) until `stop` fires or is dropped; then
/// closes every connection.
pub(crate) fn serve(
    listener: TcpListener,
    service: ApiService,
    tls: Option<(tokio_rustls::TlsAcceptor, crate::auth::pki::ClientCerts)>,
    mut stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let service = service.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        // A client that trickles its headers (slowloris) is cut off.
                        builder
                            .http1()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(service.shared.limits.request_header_timeout);
                        let ended = match tls {
                            None => {
                                let svc = TowerToHyperService::new(service);
                                builder.serve_connection(TokioIo::new(stream), svc).await
                            }
                            Some((acceptor, certs)) => {
                                // A handshake that never ends must not hold the task.
                                let handshake = tokio::time::timeout(
                                    std::time::Duration::from_secs(10),
                                    acceptor.accept(stream),
                                );
                                let stream = match handshake.await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::debug!("TLS handshake failed: {e}");
                                        return;
                                    }
                                    Err(_) => return,
                                };
                                let cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|chain| certs.identity(chain))
                                    .map(identity::ClientCertificate);
                                let svc = tower::ServiceBuilder::new()
                                    .map_request(move |mut req: Request<hyper::body::Incoming>| {
                                        if let Some(cert) = &cert {
                                            req.extensions_mut().insert(cert.clone());
                                        }
                                        req
                                    })
                                    .service(service);
                                let svc = TowerToHyperService::new(svc);
                                builder.serve_connection(TokioIo::new(stream), svc).await
                            }
                        };
                        if let Err(e) = ended {
                            tracing::debug!("connection ended: {e}");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut stop => break,
            }
        }
        connections.shutdown().await;
    })
}
