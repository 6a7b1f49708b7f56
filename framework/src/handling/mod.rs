//! Invoking handlers: the context they get (Kopf's kwargs), the errors they
//! return, and how one attempt's outcome becomes a retry, a success or a
//! failure (retries, timeouts, backoff, errors mode, panics).
//!
//! Knows `structs`, `references`, `stopping` and `indices` only; the
//! registry and the reactor build on it.
//!
//! - `errors`: results and errors;
//! - `memo`: memory across calls;
//! - `logging`: log lines, sinks, loggers, Events;
//! - `context`: the handler's context;
//! - `attempt`: one attempt and its outcome.

mod attempt;
mod context;
mod errors;
mod logging;
mod memo;

pub(crate) use attempt::*;
pub use context::*;
pub use errors::*;
pub use logging::*;
pub use memo::*;
