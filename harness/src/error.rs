//! The harness's errors: what a step, a start or a stop can fail with, and
//! why `settle` gave up. The lowest module: everyone returns these.

use std::{fmt, time::Duration};

/// Why `settle` gave up: what was still pending when the budget ran out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettleError {
    /// Virtual time spent.
    pub waited: Duration,
    /// Objects with events not yet taken by their workers.
    pub queued: Vec<String>,
    /// Objects being processed.
    pub busy: Vec<String>,
    /// Why each queued, busy or delayed object is still pending: the latest
    /// event queued for it (type and resourceVersion) and what the
    /// operator last did with it.
    pub notes: Vec<(String, String)>,
    /// Event handlers still running.
    pub detached: usize,
    /// Delayed handlers: object and time until due.
    pub wakeups: Vec<(String, Duration)>,
    /// Timers running their code.
    pub running: Vec<String>,
    /// Watches behind the server: resource, delivered and latest resourceVersion.
    pub behind: Vec<(String, u64, u64)>,
    /// Whether startup (activities, initial listings) finished.
    pub ready: bool,
    /// Whether the wall-clock guard stopped it (the operator kept busy)
    /// rather than the virtual-time budget.
    pub wall_clock: bool,
    /// Whether the simulated cluster's controllers still had work.
    pub cluster_busy: bool,
    /// The operator's requests RBAC denied since the last settle (under
    /// `KopfRunner::service_account`), each with the rule that would have
    /// allowed it. `settle` stops at the first quiet moment once there are
    /// any, instead of waiting out the operator's retries.
    pub forbidden: Vec<crate::rbac::Denied>,
}

impl SettleError {
    fn note(&self, f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
        for (_, note) in self.notes.iter().filter(|(k, _)| k == key) {
            writeln!(f, "      {note}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SettleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.forbidden.is_empty() {
            writeln!(f, "the operator was denied by RBAC:")?;
            for d in &self.forbidden {
                writeln!(f, "  - {}", d.message)?;
                writeln!(f, "    grant {}", d.grant)?;
            }
            if self.queued.is_empty()
                && self.busy.is_empty()
                && self.wakeups.is_empty()
                && self.behind.is_empty()
            {
                return Ok(());
            }
            writeln!(
                f,
                "and it has not settled ({:?} of virtual time):",
                self.waited
            )?;
        } else if self.wall_clock {
            writeln!(
                f,
                "the operator did not settle: it kept busy for the whole wall-clock guard ({:?} of virtual time passed):",
                self.waited
            )?;
        } else {
            writeln!(
                f,
                "the operator did not settle within {:?} of virtual time:",
                self.waited
            )?;
        }
        if !self.ready {
            writeln!(
                f,
                "  - startup is not finished (activities or initial listings)"
            )?;
        }
        for q in &self.queued {
            writeln!(f, "  - queued: {q}")?;
            self.note(f, q)?;
        }
        for b in &self.busy {
            writeln!(f, "  - in progress: {b}")?;
            self.note(f, b)?;
        }
        for r in &self.running {
            writeln!(f, "  - running: {r}")?;
        }
        if self.detached > 0 {
            writeln!(f, "  - event handlers running: {}", self.detached)?;
        }
        for (w, d) in &self.wakeups {
            writeln!(f, "  - delayed handlers of {w} due in {d:?}")?;
            self.note(f, w)?;
        }
        if self.cluster_busy {
            writeln!(
                f,
                "  - the simulated cluster's controllers are still at work"
            )?;
        }
        for (r, seen, latest) in &self.behind {
            writeln!(
                f,
                "  - the watch of {r} delivered up to {seen}, the server is at {latest}"
            )?;
        }
        Ok(())
    }
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server refused something the test asked for.
    #[error("refused: {0}")]
    Refused(String),
    /// The operator stopped (or did not stop) unexpectedly.
    #[error("the operator stopped: {0}")]
    Stopped(String),
    /// The operator returned an error.
    #[error("the operator failed: {0}")]
    Operator(String),
    /// The operator panicked.
    #[error("the operator panicked: {0}")]
    Panicked(String),
    /// The operator did not settle.
    #[error(transparent)]
    Settle(Box<SettleError>),
    /// An `expect` step failed.
    #[error("expectation failed: {0}")]
    Expectation(String),
    /// The scenario text is malformed.
    #[error("malformed scenario: {0}")]
    Scenario(String),
    /// A step failed.
    #[error("step {0}: {1}")]
    Step(usize, Box<HarnessError>),
}
