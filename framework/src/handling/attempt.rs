//! One attempt at a handler: how its outcome becomes a success, a retry
//! or a failure (retries, timeouts, backoff, errors mode, panics).

use std::{panic::AssertUnwindSafe, time::Duration};

use futures::FutureExt;
use serde_json::Value;

use super::{
    context::{Context, HandlerFn},
    errors::{ErrorsMode, HandlerError},
};

/// The outcome of one attempt, decided with the handler's options.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Done; the value goes to `status.<id>`.
    Success(Option<Value>),
    /// Try again in this long.
    Retry { delay: Duration, message: String },
    /// Done for good, failed.
    Failure(String),
}

/// Limits that apply to one handler.
pub(crate) struct Limits {
    pub(crate) retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backoff: Duration,
    pub(crate) errors: ErrorsMode,
}

/// Invokes `func` once (catching panics) and decides the outcome, logging
/// Kopf's messages with `label` (e.g. `Handler 'create_fn'`).
pub(crate) async fn attempt(
    func: &HandlerFn,
    ctx: Context,
    limits: &Limits,
    label: &str,
) -> Outcome {
    let logger = ctx.logger.clone();
    let retries_done = ctx.retry;
    let runtime = ctx.runtime;
    if let Some(limit) = limits.retries {
        if retries_done >= limit {
            logger.error(format!("{label} has exceeded {limit} retries."));
            return Outcome::Failure(format!("{label} has exceeded {limit} retries."));
        }
    }
    if let Some(timeout) = limits.timeout {
        if runtime >= timeout {
            logger.error(format!(
                "{label} has timed out after {}.",
                fmt_duration(runtime)
            ));
            return Outcome::Failure(format!(
                "{label} has timed out after {}.",
                fmt_duration(runtime)
            ));
        }
    }
    logger.debug(format!("{label} is invoked."));
    let children = ctx.children.clone();
    let result = match AssertUnwindSafe(func(ctx)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(HandlerError::Other(format!("panicked: {what}")))
        }
    };
    let exceeds = |delay: Duration| -> Option<String> {
        if let Some(limit) = limits.retries {
            if retries_done + 1 >= limit {
                return Some(format!("exceed {limit} retries"));
            }
        }
        if let Some(timeout) = limits.timeout {
            if runtime + delay >= timeout {
                return Some(format!("time out in {} seconds", py_seconds(timeout)));
            }
        }
        None
    };
    match result {
        Ok(value) => {
            // A parent with sub-handlers succeeds once they all have.
            let parent = children
                .as_ref()
                .is_some_and(|c| !c.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
            if !parent {
                logger.info(format!("{label} succeeded."));
            }
            Outcome::Success(value)
        }
        Err(HandlerError::Permanent(e) | HandlerError::Admission { message: e, .. }) => {
            logger.error(format!("{label} failed permanently: {e}"));
            Outcome::Failure(e)
        }
        Err(HandlerError::Temporary { message, delay }) => {
            let delay = delay.unwrap_or(limits.backoff);
            match exceeds(delay) {
                Some(why) => {
                    logger.error(format!(
                        "{label} failed temporarily but will {why}: {message}"
                    ));
                    Outcome::Failure(message)
                }
                None => {
                    logger.error(format!("{label} failed temporarily: {message}"));
                    Outcome::Retry { delay, message }
                }
            }
        }
        Err(HandlerError::Other(e)) => match limits.errors {
            ErrorsMode::Ignored => {
                logger.error(format!(
                    "{label} failed with an exception and will ignore it: {e}"
                ));
                Outcome::Success(None)
            }
            ErrorsMode::Permanent => {
                logger.error(format!(
                    "{label} failed with an exception and will stop now: {e}"
                ));
                Outcome::Failure(e)
            }
            ErrorsMode::Temporary => match exceeds(limits.backoff) {
                Some(why) => {
                    logger.error(format!(
                        "{label} failed with an exception and will stop now (it would {why} on the next attempt): {e}"
                    ));
                    Outcome::Failure(e)
                }
                None => {
                    logger.error(format!(
                        "{label} failed with an exception and will try again in {} seconds: {e}",
                        py_seconds(limits.backoff)
                    ));
                    Outcome::Retry {
                        delay: limits.backoff,
                        message: e,
                    }
                }
            },
        },
    }
}

/// Formats seconds like Python prints a float: `1.0`, `60.0`, `0.5`.
pub(crate) fn py_seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.1}")
    } else {
        format!("{secs}")
    }
}

/// Formats a duration like Python's timedelta: `0:01:00.123456`.
fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let micros = d.subsec_micros();
    let base = format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jiff::Timestamp;

    use super::*;
    use crate::{
        handling::{Events, HandlerResult, Logger, Memo},
        references::{Reason, Resource},
    };

    fn ctx(retry: u32, runtime: Duration) -> Context {
        let mut ctx = Context::new(
            serde_json::json!({"metadata": {"name": "x", "namespace": "ns"}}),
            "h".into(),
            Reason::Create,
            Resource::new("", "v1", "configmaps"),
            Timestamp::UNIX_EPOCH,
            Logger::new("ns", "x"),
            Memo::default(),
            fake_apiserver::FakeApiServer::new().client(),
            Events::default(),
        );
        ctx.retry = retry;
        ctx.runtime = runtime;
        ctx
    }

    fn limits(retries: Option<u32>, errors: ErrorsMode) -> Limits {
        Limits {
            retries,
            timeout: None,
            backoff: Duration::from_secs(60),
            errors,
        }
    }

    fn handler(f: impl Fn() -> HandlerResult + Send + Sync + 'static) -> HandlerFn {
        let f = Arc::new(f);
        Arc::new(move |_ctx| {
            let f = f.clone();
            Box::pin(async move { f() })
        })
    }

    #[tokio::test]
    async fn outcomes_should_follow_kopf_rules() {
        let ok = handler(|| Ok(Some(serde_json::json!({"m": 1}))));
        assert_eq!(
            attempt(
                &ok,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Success(Some(serde_json::json!({"m": 1})))
        );
        let other = handler(|| Err(HandlerError::Other("boom".into())));
        assert_eq!(
            attempt(
                &other,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Retry {
                delay: Duration::from_secs(60),
                message: "boom".into()
            }
        );
        assert_eq!(
            attempt(
                &other,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Permanent),
                "Handler 'h'"
            )
            .await,
            Outcome::Failure("boom".into())
        );
        assert_eq!(
            attempt(
                &other,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Ignored),
                "Handler 'h'"
            )
            .await,
            Outcome::Success(None)
        );
        assert_eq!(
            attempt(
                &other,
                ctx(2, Duration::ZERO),
                &limits(Some(3), ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Failure("boom".into())
        );
        assert!(matches!(
            attempt(
                &ok,
                ctx(3, Duration::ZERO),
                &limits(Some(3), ErrorsMode::Temporary),
                "Handler 'h'"
            )
            .await,
            Outcome::Failure(_)
        ));
        let temp = handler(|| Err(HandlerError::temporary("later", Duration::from_secs(5))));
        assert_eq!(
            attempt(
                &temp,
                ctx(0, Duration::ZERO),
                &limits(None, ErrorsMode::Permanent),
                "Handler 'h'"
            )
            .await,
            Outcome::Retry {
                delay: Duration::from_secs(5),
                message: "later".into()
            }
        );
    }

    #[tokio::test]
    async fn panics_should_be_errors_not_crashes() {
        let boom = handler(|| panic!("kaboom"));
        let c = ctx(0, Duration::ZERO);
        let logger = c.logger.clone();
        let outcome = attempt(
            &boom,
            c,
            &limits(None, ErrorsMode::Temporary),
            "Handler 'h'",
        )
        .await;
        assert!(
            matches!(outcome, Outcome::Retry { ref message, .. } if message.contains("kaboom"))
        );
        assert!(logger.drain().iter().any(|l| l.message.starts_with(
            "Handler 'h' failed with an exception and will try again in 60.0 seconds"
        )));
    }

    #[test]
    fn durations_should_print_like_timedelta() {
        assert_eq!(
            fmt_duration(Duration::from_micros(60_123_456)),
            "0:01:00.123456"
        );
        assert_eq!(fmt_duration(Duration::from_secs(3601)), "1:00:01");
    }
}
