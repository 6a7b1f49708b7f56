//! Probing (an engine): the liveness endpoint (Kopf's `--liveness`),
//! answering with the results of the probe handlers as one JSON object,
//! `{"<probe id>": <result>, ...}` (probes returning nothing are left out),
//! recomputed at most every 10 seconds; 500 when a probe fails for good.

use std::{sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, Request, Response, StatusCode};
use serde_json::{Map, Value};
use tokio::{net::TcpListener, sync::Mutex, time::Instant};

use crate::{
    handling::{attempt, Context, Events, Limits, Logger, Memo, Outcome},
    indices::Indices,
    references::{Reason, Resource},
    registry::Handler,
    settings::Settings,
};

/// How long probe results are reused.
const CACHE: Duration = Duration::from_secs(10);

/// What probes need.
pub(crate) struct Prober {
    pub(crate) probes: Vec<Handler>,
    pub(crate) client: kube::Client,
    pub(crate) memo: Memo,
    pub(crate) indices: Indices,
    pub(crate) settings: Settings,
    cache: Mutex<Option<(Instant, Result<Value, String>)>>,
}

impl Prober {
    pub(crate) fn new(
        probes: Vec<Handler>,
        client: kube::Client,
        memo: Memo,
        indices: Indices,
        settings: Settings,
    ) -> Self {
        Prober {
            probes,
            client,
            memo,
            indices,
            settings,
            cache: Mutex::new(None),
        }
    }

    /// The probes' results (cached for 10 seconds); a permanent failure's
    /// message as the error.
    pub(crate) async fn results(&self) -> Result<Value, String> {
        let mut cache = self.cache.lock().await;
        if let Some((at, results)) = cache.as_ref() {
            if at.elapsed() < CACHE {
                return results.clone();
            }
        }
        let results = self.compute().await;
        *cache = Some((Instant::now(), results.clone()));
        results
    }

    async fn compute(&self) -> Result<Value, String> {
        let logger = Logger::operator(self.settings.log_sink.clone());
        let mut out = Map::new();
        for probe in &self.probes {
            let started = self.settings.clock.now();
            let mut retry = 0;
            loop {
                let mut ctx = Context::new(
                    Value::Null,
                    probe.id.clone(),
                    Reason::Probe,
                    Resource::new("", "", ""),
                    started,
                    logger.clone(),
                    self.memo.clone(),
                    self.client.clone(),
                    Events::default(),
                );
                ctx.retry = retry;
                ctx.param.clone_from(&probe.param);
                ctx.indices = self.indices.clone();
                let limits = Limits {
                    retries: probe.retries,
                    timeout: probe.timeout,
                    backoff: probe
                        .backoff
                        .unwrap_or(self.settings.execution.default_backoff),
                    errors: probe.errors,
                };
                let label = format!("Activity '{}'", probe.id);
                match attempt(&probe.func, ctx, &limits, &label).await {
                    Outcome::Success(Some(v)) => {
                        out.insert(probe.id.clone(), v);
                        break;
                    }
                    Outcome::Success(None) => break,
                    Outcome::Failure(message) => return Err(format!("{label}: {message}")),
                    Outcome::Retry { delay, .. } => {
                        retry += 1;
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        drop(logger.drain());
        Ok(Value::Object(out))
    }

    async fn answer(&self, path: &str, endpoint: &str) -> Response<Full<Bytes>> {
        let (code, body) = if path != endpoint {
            (StatusCode::NOT_FOUND, "404: Not Found".to_string())
        } else {
            match self.results().await {
                Ok(v) => (StatusCode::OK, v.to_string()),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = code;
        if code == StatusCode::OK {
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
        }
        response
    }
}

/// Serves the liveness endpoint until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    path: String,
    prober: Arc<Prober>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let logger = Logger::operator(prober.settings.log_sink.clone());
    if let Ok(addr) = listener.local_addr() {
        logger.debug(format!("Serving health status at http://{addr}{path}"));
    }
    drop(logger.drain());
    let path = Arc::new(path);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let (prober, path) = (prober.clone(), path.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (prober, path) = (prober.clone(), path.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(prober.answer(req.uri().path(), &path).await)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
