//! Activities: operator-level handlers that run once at startup (before any
//! object is handled) and once at cleanup (after the operator stopped
//! handling), retried like handlers until they succeed or fail for good.
//!
//! An engine: it only invokes handlers with an operator-level context.

use std::time::Duration;

use kube::Client;
use serde_json::Value;

use crate::{
    handling::{attempt, Context, Events, Limits, Logger, Memo, Outcome},
    references::{Reason, Resource},
    registry::Handler,
    settings::Settings,
};

/// Runs every activity of `reason` in order; returns the first permanent
/// failure as `(id, message)`.
pub(crate) async fn run(
    activities: &[Handler],
    reason: Reason,
    client: &Client,
    memo: &Memo,
    settings: &Settings,
) -> Result<(), (String, String)> {
    let logger = Logger::operator(settings.log_sink.clone());
    for handler in activities {
        let started = settings.clock.now();
        let mut retry = 0;
        loop {
            let now = settings.clock.now();
            let mut ctx = Context::new(
                Value::Null,
                handler.id.clone(),
                reason,
                Resource::new("", "", ""),
                started,
                logger.clone(),
                memo.clone(),
                client.clone(),
                Events::default(),
            );
            ctx.retry = retry;
            ctx.runtime = Duration::try_from(now.duration_since(started)).unwrap_or_default();
            ctx.param.clone_from(&handler.param);
            let limits = Limits {
                retries: handler.retries,
                timeout: handler.timeout,
                backoff: handler
                    .backoff
                    .unwrap_or(settings.execution.default_backoff),
                errors: handler.errors,
            };
            match attempt(
                &handler.func,
                ctx,
                &limits,
                &format!("Activity '{}'", handler.id),
            )
            .await
            {
                Outcome::Success(_) => break,
                Outcome::Failure(message) => return Err((handler.id.clone(), message)),
                Outcome::Retry { delay, .. } => {
                    retry += 1;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    Ok(())
}
