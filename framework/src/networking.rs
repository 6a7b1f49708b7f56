//! Talking to the API as Kopf does (`settings.networking`): every request
//! the operator makes goes through a client that retries what is presumed
//! temporary and bounds how long a request may take (an engine).
//!
//! - Connection errors, timeouts, 5xx and 429 are retried on the
//!   `error_backoffs` sequence (Kopf's default: 1, 1, 2, 3, 5, 8, 13, 21
//!   seconds, so 9 attempts in about a minute); other 4xx escalate at once.
//!   After the last backoff, the last answer (or error) escalates.
//! - A 429's `Retry-After` header (kube-apiserver sends it with every 429)
//!   is obeyed when it is longer than the backoff, or always with
//!   `enforce_retry_after`.
//! - `request_timeout` bounds each attempt of a request until its answer
//!   starts (watches are exempt: they last as long as they stream).
//!
//! Each retry is logged as Kopf logs it: `Request attempt #1/9 failed; will
//! retry: PATCH https://... -> ...`.

use std::{future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::{client::Body, Client};

use crate::{handling::Logger, settings::Networking};

/// A client whose requests are retried and bounded as `networking` says.
pub(crate) fn resilient(client: Client, networking: &Networking, logger: Logger) -> Client {
    if networking.error_backoffs.is_empty() && networking.request_timeout.is_none() {
        return client;
    }
    let namespace = client.default_namespace().to_string();
    let service = Retrying {
        inner: client,
        networking: networking.clone(),
        logger,
    };
    Client::new(service, namespace)
}

#[derive(Clone)]
struct Retrying {
    inner: Client,
    networking: Networking,
    logger: Logger,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Request<Body>> for Retrying {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.send(request).await })
    }
}

/// What one attempt gave, as far as retrying is concerned.
enum Attempt {
    Done(Response<Body>),
    /// Worth another try; with the server's `Retry-After`, if it gave one.
    Retry(Result<Response<Body>, BoxError>, String, Option<Duration>),
}

impl Retrying {
    async fn send(&self, request: Request<Body>) -> Result<Response<Body>, BoxError> {
        let (parts, body) = request.into_parts();
        let body: Bytes = body.collect().await?.to_bytes();
        let watch = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let what = format!("{} {}", parts.method, parts.uri);
        let backoffs = &self.networking.error_backoffs;
        let attempts = backoffs.len() + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .version(parts.version)
                .body(Body::from(body.to_vec()))?;
            *request.headers_mut() = parts.headers.clone();
            if attempt > 1 {
                self.logger
                    .debug(format!("Request attempt #{attempt}/{attempts}: {what}"));
            }
            let sent = self.inner.send(request);
            let result = match self.networking.request_timeout.filter(|_| !watch) {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(r) => r,
                    Err(_) => Err(kube::Error::Service(
                        format!("the request timed out after {limit:?}").into(),
                    )),
                },
                None => sent.await,
            };
            let (result, error, retry_after) = match classify(result) {
                Attempt::Done(response) => {
                    if attempt > 1 {
                        self.logger.debug(format!(
                            "Request attempt #{attempt}/{attempts} succeeded: {what}"
                        ));
                    }
                    return Ok(response);
                }
                Attempt::Retry(result, error, retry_after) => (result, error, retry_after),
            };
            let Some(backoff) = backoffs.get(attempt - 1).copied() else {
                self.logger.error(format!(
                    "Request attempt #{attempt}/{attempts} failed; escalating: {what} -> {error}"
                ));
                return result;
            };
            let backoff = match retry_after {
                Some(server) if self.networking.enforce_retry_after || server > backoff => {
                    self.logger.debug(format!(
                        "Overriding the backoff {}s with the retry-after {}s from the server: {what}",
                        backoff.as_secs_f64(),
                        server.as_secs_f64()
                    ));
                    server
                }
                _ => backoff,
            };
            self.logger.error(format!(
                "Request attempt #{attempt}/{attempts} failed; will retry: {what} -> {error}"
            ));
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Whether an attempt's outcome is final: 5xx, 429 and transport errors
/// are worth retrying; anything else is the answer.
fn classify(result: Result<Response<Body>, kube::Error>) -> Attempt {
    match result {
        Err(e) => {
            let error = e.to_string();
            Attempt::Retry(Err(Box::new(e)), error, None)
        }
        Ok(response) => {
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs(s as u64));
                let error = format!("HTTP {status}");
                Attempt::Retry(Ok(response), error, retry_after)
            } else {
                Attempt::Done(response)
            }
        }
    }
}
