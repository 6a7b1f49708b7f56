//! Operator settings, grouped as Kopf groups them: posting, batching,
//! execution, persistence, watching.

use std::time::Duration;

use crate::{
    handling::Level,
    storage::{DiffBaseStorage, ProgressStorage},
};

/// Where the operator's time comes from (progress timestamps, delays).
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The wall clock.
    #[default]
    System,
    /// A wall-clock anchor moved by tokio's clock (for paused-time tests).
    Tokio(i64, tokio::time::Instant),
}

impl Clock {
    /// A clock that starts at `epoch_seconds` now and follows tokio's clock.
    pub fn tokio_from(epoch_seconds: i64) -> Self {
        Clock::Tokio(epoch_seconds, tokio::time::Instant::now())
    }

    /// The current time.
    pub fn now(&self) -> jiff::Timestamp {
        match self {
            Clock::System => jiff::Timestamp::now(),
            Clock::Tokio(epoch, anchor) => {
                let elapsed = anchor.elapsed();
                jiff::Timestamp::new(
                    *epoch + elapsed.as_secs() as i64,
                    elapsed.subsec_nanos() as i32,
                )
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            }
        }
    }
}

/// Posting log lines as Kubernetes Events.
#[derive(Clone, Debug)]
pub struct Posting {
    /// Whether to post at all.
    pub enabled: bool,
    /// The lowest level posted.
    pub level: Level,
}

/// Batching of events per object.
#[derive(Clone, Debug)]
pub struct Batching {
    /// How long to wait for more events of an object before processing it.
    pub batch_window: Duration,
    /// How long to wait for the watch to show the operator's own patch.
    pub patch_wait: Duration,
}

/// Handler execution.
#[derive(Clone, Debug)]
pub struct Execution {
    /// Delay before retrying a handler after an unexpected error.
    pub default_backoff: Duration,
    /// Delay before processing an object again after an unexpected API error.
    pub error_throttle: Duration,
    /// At most this many objects processed at the same time (operator-wide);
    /// `None` = no bound.
    pub max_workers: Option<usize>,
}

/// Where state is kept on the objects.
#[derive(Clone, Debug)]
pub struct Persistence {
    /// Progress records.
    pub progress: ProgressStorage,
    /// The last handled essence.
    pub diffbase: DiffBaseStorage,
    /// The finalizer added for delete handlers.
    pub finalizer: String,
}

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct Watching {
    /// Namespaces to watch; empty = the whole cluster. Entries may be globs
    /// (`*` any run of characters, `?` one character), e.g. `team-*`.
    pub namespaces: Vec<String>,
}

/// Whether `name` matches the glob `pattern` (`*` and `?`).
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Watching {
    /// Whether any namespace entry is a glob.
    pub(crate) fn has_globs(&self) -> bool {
        self.namespaces.iter().any(|n| n.contains(['*', '?']))
    }

    /// Whether objects in `namespace` are served.
    pub(crate) fn serves(&self, namespace: &str) -> bool {
        self.namespaces.is_empty()
            || namespace.is_empty()
            || self.namespaces.iter().any(|p| glob_match(p, namespace))
    }
}

/// All settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Events posting.
    pub posting: Posting,
    /// Batching.
    pub batching: Batching,
    /// Execution.
    pub execution: Execution,
    /// Persistence.
    pub persistence: Persistence,
    /// Watching.
    pub watching: Watching,
    /// The time source.
    pub clock: Clock,
    /// Where to collect this operator's log lines, besides `tracing`.
    pub log_sink: Option<crate::handling::LogSink>,
    /// Where to report pending work (for embedders and test harnesses).
    pub observer: Option<crate::observing::Observer>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            posting: Posting {
                enabled: true,
                level: Level::Info,
            },
            batching: Batching {
                batch_window: Duration::from_millis(100),
                patch_wait: Duration::from_secs(10),
            },
            execution: Execution {
                default_backoff: Duration::from_secs(60),
                error_throttle: Duration::from_secs(10),
                max_workers: None,
            },
            persistence: Persistence {
                progress: ProgressStorage::default(),
                diffbase: DiffBaseStorage::default(),
                finalizer: "kopf.zalando.org/KopfFinalizerMarker".into(),
            },
            watching: Watching::default(),
            clock: Clock::default(),
            log_sink: None,
            observer: None,
        }
    }
}

impl Settings {
    /// Uses another annotation prefix for progress, diff-base and finalizer.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.persistence.progress.prefix = prefix.into();
        self.persistence.diffbase.prefix = prefix.into();
        self.persistence.finalizer = format!("{prefix}/KopfFinalizerMarker");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_should_match_like_shell_patterns() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("team-*", "team-"));
        assert!(!glob_match("team-*", "other"));
        assert!(glob_match("t?am-*-x", "team-blue-x"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("a?c", "ac"));
        let w = Watching {
            namespaces: vec!["team-*".into(), "default".into()],
        };
        assert!(
            w.has_globs() && w.serves("team-x") && w.serves("default") && !w.serves("kube-system")
        );
    }
}
