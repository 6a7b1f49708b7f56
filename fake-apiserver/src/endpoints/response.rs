//! Answers: JSON bodies, `Status` errors (with `Retry-After`), `Warning`
//! headers, plain text and watch streams, kept in pieces ([`Answer`]) until
//! the journal has seen them.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::Value;

use crate::{
    apimachinery::errors::ApiError,
    endpoints::{discovery, ResponseBody},
    registry::rest::Reply,
};

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
    pub(super) fn value(v: Value) -> Self {
        Answer::Json(200, Bytes::from(v.to_string()), "application/json")
    }

    pub(super) fn reply(r: Reply) -> Self {
        Answer::Json(r.code, r.body, "application/json")
    }

    pub(super) fn code(&self) -> u16 {
        match self {
            Answer::Json(code, ..) => *code,
            Answer::Text(_) | Answer::Watch(_) => 200,
            Answer::Error(e) => e.code,
            Answer::Warned(a, _) => a.code(),
        }
    }

    pub(super) fn body_for_journal(&self) -> Option<Bytes> {
        match self {
            Answer::Json(_, body, _) => Some(body.clone()),
            Answer::Error(e) => Some(Bytes::from(e.to_status().to_string())),
            Answer::Text(t) => Some(Bytes::from_static(t.as_bytes())),
            Answer::Watch(_) => None,
            Answer::Warned(a, _) => a.body_for_journal(),
        }
    }

    pub(super) fn into_response(self) -> Response<ResponseBody> {
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

pub(super) fn header_of(parts: &http::request::Parts, name: header::HeaderName) -> String {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The method's name, for the journal.
pub(super) fn method_name(m: &Method) -> &'static str {
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

pub(super) fn aggregated(v: Value) -> Answer {
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
