//! What handlers return: results and errors (permanent, temporary with a
//! delay, admission refusals), and the errors mode for everything else.

use std::{fmt, time::Duration};

use serde_json::Value;

/// What to do with errors other than `Permanent` and `Temporary`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorsMode {
    /// Retry after the backoff (the default).
    #[default]
    Temporary,
    /// Fail for good.
    Permanent,
    /// Log and treat as done.
    Ignored,
}

/// What a handler returns: `Ok(Some(value))` stores `value` under
/// `status.<handler id>`; `Ok(None)` stores nothing.
pub type HandlerResult = Result<Option<Value>, HandlerError>;

/// Why a handler did not succeed.
///
/// Any `std::error::Error` converts into [`HandlerError::Other`] with `?`,
/// which the handler's errors mode then treats (temporary by default).
#[derive(Debug)]
pub enum HandlerError {
    /// Stop this handler for good.
    Permanent(String),
    /// Try again after `delay` (default: the handler's backoff).
    Temporary {
        /// What went wrong.
        message: String,
        /// When to try again.
        delay: Option<Duration>,
    },
    /// An unexpected error; follows the handler's errors mode.
    Other(String),
    /// For admission webhooks: deny the request with this message and
    /// HTTP code (Kopf's `AdmissionError`); elsewhere, a permanent failure.
    Admission {
        /// Why the request is denied.
        message: String,
        /// The code the API server answers with (500 when not given).
        code: u16,
    },
}

impl HandlerError {
    /// A permanent failure.
    pub fn permanent(message: impl fmt::Display) -> Self {
        HandlerError::Permanent(message.to_string())
    }

    /// A temporary failure, retried after `delay`.
    pub fn temporary(message: impl fmt::Display, delay: Duration) -> Self {
        HandlerError::Temporary {
            message: message.to_string(),
            delay: Some(delay),
        }
    }

    /// Denies an admission request (Kopf's `AdmissionError`).
    pub fn admission(message: impl fmt::Display, code: u16) -> Self {
        HandlerError::Admission {
            message: message.to_string(),
            code,
        }
    }

    fn message(&self) -> &str {
        match self {
            HandlerError::Permanent(m) | HandlerError::Other(m) => m,
            HandlerError::Temporary { message, .. } | HandlerError::Admission { message, .. } => {
                message
            }
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::Other(e.to_string())
    }
}
