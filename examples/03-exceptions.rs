//! 03-exceptions: what handler errors do. A permanent error stops a handler
//! at once; a temporary one retries after its delay; other errors follow the
//! handler's errors mode, retries and backoff.
//!
//! ```text
//! cargo run --example 03-exceptions -- --kubeconfig /tmp/kc -A --standalone --verbose
//! ```

use std::time::Duration;

use kopf::{Context, ErrorsMode, HandlerError, HandlerResult, Operator, Resource, Settings};

/// An error the handlers did not expect.
#[derive(Debug, thiserror::Error)]
#[error("An error that is supposed to be recoverable.")]
struct MyException;

async fn instant_failure_with_only_a_message(_ctx: Context) -> HandlerResult {
    Err(HandlerError::permanent("Fail once and for all."))
}

async fn eventual_success_with_a_few_messages(ctx: Context) -> HandlerResult {
    if ctx.retry < 3 {
        return Err(HandlerError::temporary(
            "Expected recoverable error.",
            Duration::from_secs(1),
        ));
    }
    Ok(None)
}

async fn eventual_failure_with_tracebacks(_ctx: Context) -> HandlerResult {
    Err(MyException.into())
}

async fn instant_failure_with_traceback(_ctx: Context) -> HandlerResult {
    Err(MyException.into())
}

/// The example's operator.
pub(crate) fn operator() -> Operator {
    let examples = Resource::new("kopf.dev", "v1", "kopfexamples");
    let mut operator = Operator::new();
    operator.on_create(&examples, instant_failure_with_only_a_message);
    operator.on_create(&examples, eventual_success_with_a_few_messages);
    operator
        .on_create(&examples, eventual_failure_with_tracebacks)
        .retries(3)
        .backoff(Duration::from_secs(1));
    operator
        .on_create(&examples, instant_failure_with_traceback)
        .errors(ErrorsMode::Permanent)
        .backoff(Duration::from_secs(1));
    operator
}

#[allow(dead_code)] // reason: the integration tests include this file for `operator()` and do not call main.
#[tokio::main]
async fn main() -> Result<(), kopf::RunError> {
    kopf::run(operator(), Settings::default()).await
}
