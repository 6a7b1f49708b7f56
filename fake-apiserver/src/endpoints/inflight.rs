//! Connection, concurrency and time limits, as kube-apiserver's generic
//! server sets them: `--max-requests-inflight` and
//! `--max-mutating-requests-inflight` (kube's `WithMaxInFlightLimit`
//! filter, the behaviour with API Priority and Fairness off), the time a
//! request may take (`--request-timeout`, or a shorter `timeout` query
//! parameter), and the time a client has to send its request headers.
//!
//! Long-running requests (watches, and the `log`, `exec`, `attach`,
//! `portforward` and `proxy` subresources) and members of `system:masters`
//! are not counted, as in kube. A request over the limit gets 429 with
//! `Retry-After: 1` at once, not a queue.

use std::{sync::Arc, time::Duration};

use http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{apimachinery::errors::ApiError, auth::UserInfo};

/// The limits (kube-apiserver's defaults by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Non-mutating requests served at once; 0 for no limit (kube: 400).
    pub max_requests_inflight: usize,
    /// Mutating requests (POST, PUT, PATCH, DELETE) served at once; 0 for
    /// no limit (kube: 200).
    pub max_mutating_requests_inflight: usize,
    /// How long a client may take to send a request's headers before its
    /// connection is closed (kube: 32 s, `ReadHeaderTimeout`).
    pub request_header_timeout: Duration,
    /// How long a request other than a long-running one may take before it
    /// is answered 504 (kube's `--request-timeout`: 60 s).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            request_header_timeout: Duration::from_secs(32),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The two pools of in-flight requests.
pub(crate) struct InFlight {
    read: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// The 429 of a saturated server, in kube's words.
pub(crate) fn too_many_requests() -> ApiError {
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
    );
    e.retry_after = Some(1);
    e
}

impl InFlight {
    pub(crate) fn new(limits: &Limits) -> Self {
        let pool = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        InFlight {
            read: pool(limits.max_requests_inflight),
            mutating: pool(limits.max_mutating_requests_inflight),
        }
    }

    /// A place for this request (held until it is answered), none when it
    /// is not counted, or 429 when its pool is full.
    pub(crate) fn admit(
        &self,
        method: &Method,
        long_running: bool,
        user: &UserInfo,
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if long_running || user.groups.iter().any(|g| g == "system:masters") {
            return Ok(None);
        }
        let mutating = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let pool = if mutating { &self.mutating } else { &self.read };
        match pool {
            None => Ok(None),
            Some(pool) => pool
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| too_many_requests()),
        }
    }
}

/// The 504 of a request that ran out of time, in kube's words.
pub(crate) fn timed_out() -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
    )
}

/// How long a request may take: `None` for a long-running one; else the
/// server's limit, or the `timeout` query parameter when shorter. A
/// `timeout` that is no duration is 400, as in kube.
pub(crate) fn deadline(
    limits: &Limits,
    long_running: bool,
    query: &str,
) -> Result<Option<Duration>, ApiError> {
    if long_running {
        return Ok(None);
    }
    let asked = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "timeout");
    match asked {
        None => Ok(Some(limits.request_timeout)),
        Some((_, v)) => match crate::apimachinery::duration::parse_duration(&v) {
            Some(d) if d > Duration::ZERO => Ok(Some(d.min(limits.request_timeout))),
            Some(_) => Ok(Some(limits.request_timeout)),
            None => Err(ApiError::bad_request(
                "invalid timeout specified in the request URL",
            )),
        },
    }
}

/// Whether a request is long-running as kube counts them: a watch, or a
/// streaming subresource.
pub(crate) fn is_long_running(path: &str, query: &str) -> bool {
    let watch = form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let watch_path = segments.get(2) == Some(&"watch")
        || (segments.first() == Some(&"apis") && segments.get(3) == Some(&"watch"));
    let streaming = segments
        .last()
        .is_some_and(|s| matches!(*s, "log" | "exec" | "attach" | "portforward" | "proxy"));
    watch || watch_path || streaming
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            username: "u".into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn a_full_pool_should_answer_429_and_free_places_should_come_back() {
        let limits = Limits {
            max_requests_inflight: 2,
            max_mutating_requests_inflight: 1,
            ..Limits::default()
        };
        let pools = InFlight::new(&limits);
        let anyone = user(&["system:authenticated"]);
        let get = |q: &str| pools.admit(&Method::GET, is_long_running("/api/v1/pods", q), &anyone);
        let a = get("").unwrap();
        let _b = get("").unwrap();
        let e = get("").unwrap_err();
        assert_eq!(
            (e.code, e.reason, e.message.as_str(), e.retry_after),
            (
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                Some(1)
            )
        );
        // The mutating pool is apart.
        let post = pools
            .admit(
                &Method::POST,
                is_long_running("/api/v1/namespaces/d/pods", ""),
                &anyone,
            )
            .unwrap();
        assert!(post.is_some());
        assert!(pools
            .admit(
                &Method::DELETE,
                is_long_running("/api/v1/namespaces/d/pods/x", ""),
                &anyone
            )
            .is_err());
        // Watches, logs and system:masters are not counted.
        assert!(get("watch=true").unwrap().is_none());
        assert!(pools
            .admit(
                &Method::GET,
                is_long_running("/api/v1/watch/pods", ""),
                &anyone
            )
            .unwrap()
            .is_none());
        assert!(pools
            .admit(
                &Method::GET,
                is_long_running("/api/v1/namespaces/d/pods/p/log", ""),
                &anyone
            )
            .unwrap()
            .is_none());
        assert!(pools
            .admit(
                &Method::GET,
                is_long_running("/api/v1/pods", ""),
                &user(&["system:masters"])
            )
            .unwrap()
            .is_none());
        drop(a);
        assert!(get("").unwrap().is_some());
    }

    #[test]
    fn zero_should_mean_no_limit() {
        let pools = InFlight::new(&Limits {
            max_requests_inflight: 0,
            max_mutating_requests_inflight: 0,
            ..Limits::default()
        });
        let anyone = user(&[]);
        let held: Vec<_> = (0..1000)
            .map(|_| {
                pools
                    .admit(&Method::GET, is_long_running("/api/v1/pods", ""), &anyone)
                    .unwrap()
            })
            .collect();
        assert!(held.iter().all(Option::is_none));
    }
}
