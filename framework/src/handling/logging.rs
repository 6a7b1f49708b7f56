//! Per-object logging: log lines, the sink that captures them, the logger
//! handlers write to, and Kubernetes Events posted about objects.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use serde_json::Value;

/// A log line of an object, as handlers and the framework write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The message (without the `[namespace/name]` prefix).
    pub message: String,
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd.
    Warning,
    /// A failure.
    Error,
}

/// Collects an operator's log lines (`[namespace/name] message`), per
/// operator rather than process-wide: set it in `Settings::log_sink`.
#[derive(Clone, Debug, Default)]
pub struct LogSink(Arc<Mutex<Vec<LogLine>>>);

impl LogSink {
    /// Every line so far, in order.
    pub fn lines(&self) -> Vec<LogLine> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The messages so far, as `[namespace/name] message`.
    pub fn messages(&self) -> Vec<String> {
        self.lines().into_iter().map(|l| l.message).collect()
    }

    fn push(&self, line: LogLine) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

/// The per-object logger: writes `[namespace/name] message` through
/// `tracing` (and to the operator's [`LogSink`], if any) and keeps the lines
/// for posting as Kubernetes Events.
#[derive(Clone)]
pub struct Logger {
    prefix: Arc<str>,
    /// The object's namespace, name and reference (`apiVersion`, `kind`,
    /// `name`, `uid`, `namespace`) as JSON; `None` for operator lines.
    object: Option<Arc<(String, String, String)>>,
    lines: Arc<Mutex<Vec<LogLine>>>,
    sink: Option<LogSink>,
    /// Takes each line at once instead of keeping it for `drain`.
    hook: Option<LineHook>,
}

/// Takes log lines as they are logged.
pub(crate) type LineHook = Arc<dyn Fn(&LogLine) + Send + Sync>;

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Logger {
    #[cfg(test)]
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        Self::with_sink(namespace, name, None)
    }

    pub(crate) fn with_sink(namespace: &str, name: &str, sink: Option<LogSink>) -> Self {
        let reference = serde_json::json!({"name": name, "namespace": namespace});
        Self::about(namespace, name, reference, sink)
    }

    fn about(namespace: &str, name: &str, reference: Value, sink: Option<LogSink>) -> Self {
        let prefix = if namespace.is_empty() {
            format!("[{name}]")
        } else {
            format!("[{namespace}/{name}]")
        };
        Logger {
            prefix: prefix.into(),
            object: Some(Arc::new((
                namespace.to_string(),
                name.to_string(),
                reference.to_string(),
            ))),
            lines: Arc::default(),
            sink,
            hook: None,
        }
    }

    /// The same logger, handing its lines to `hook` as they come (for
    /// long-running daemons, whose lines cannot wait for the end).
    pub(crate) fn with_hook(mut self, hook: LineHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// A logger for the object `body` (`[namespace/name]`).
    pub(crate) fn for_body(body: &Value, sink: Option<LogSink>) -> Self {
        let s = |p: &str| body.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (namespace, name) = (s("/metadata/namespace"), s("/metadata/name"));
        let mut reference = serde_json::json!({
            "apiVersion": s("/apiVersion"),
            "kind": s("/kind"),
            "name": name,
            "uid": s("/metadata/uid"),
        });
        if !namespace.is_empty() {
            reference["namespace"] = namespace.into();
        }
        Self::about(namespace, name, reference, sink)
    }

    /// A logger for operator-level messages (no object prefix).
    pub(crate) fn operator(sink: Option<LogSink>) -> Self {
        Logger {
            prefix: "".into(),
            object: None,
            lines: Arc::default(),
            sink,
            hook: None,
        }
    }

    fn log(&self, level: Level, message: String) {
        let full = if self.prefix.is_empty() {
            message.clone()
        } else {
            format!("{} {message}", self.prefix)
        };
        // The object goes as fields: the command line's formatter prefixes
        // it (or not), and JSON lines carry its reference.
        match (&self.object, level) {
            (Some(o), Level::Debug) => {
                tracing::debug!(target: "kopf.objects", k8s_namespace = o.0, k8s_name = o.1, k8s_ref = o.2, "{message}")
            }
            (Some(o), Level::Info) => {
                tracing::info!(target: "kopf.objects", k8s_namespace = o.0, k8s_name = o.1, k8s_ref = o.2, "{message}")
            }
            (Some(o), Level::Warning) => {
                tracing::warn!(target: "kopf.objects", k8s_namespace = o.0, k8s_name = o.1, k8s_ref = o.2, "{message}")
            }
            (Some(o), Level::Error) => {
                tracing::error!(target: "kopf.objects", k8s_namespace = o.0, k8s_name = o.1, k8s_ref = o.2, "{message}")
            }
            (None, Level::Debug) => tracing::debug!(target: "kopf.operator", "{message}"),
            (None, Level::Info) => tracing::info!(target: "kopf.operator", "{message}"),
            (None, Level::Warning) => tracing::warn!(target: "kopf.operator", "{message}"),
            (None, Level::Error) => tracing::error!(target: "kopf.operator", "{message}"),
        }
        if let Some(sink) = &self.sink {
            sink.push(LogLine {
                level,
                message: full,
            });
        }
        let line = LogLine { level, message };
        match &self.hook {
            Some(hook) => hook(&line),
            None => self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line),
        }
    }

    /// Logs at debug level.
    pub fn debug(&self, message: impl fmt::Display) {
        self.log(Level::Debug, message.to_string());
    }

    /// Logs at info level.
    pub fn info(&self, message: impl fmt::Display) {
        self.log(Level::Info, message.to_string());
    }

    /// Logs a warning.
    pub fn warn(&self, message: impl fmt::Display) {
        self.log(Level::Warning, message.to_string());
    }

    /// Logs an error.
    pub fn error(&self, message: impl fmt::Display) {
        self.log(Level::Error, message.to_string());
    }

    /// Takes the lines logged so far.
    pub(crate) fn drain(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// An event to post about an object.
#[derive(Clone, Debug)]
pub(crate) struct Posting {
    pub(crate) involved: Value,
    pub(crate) type_: String,
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// Posts Kubernetes Events about an object (Kopf's `kopf.event`, `info`,
/// `warn`, `exception`), whatever the posting settings for log lines.
#[derive(Clone, Debug, Default)]
pub struct Events {
    tx: Option<tokio::sync::mpsc::UnboundedSender<Posting>>,
    involved: Value,
}

/// What an Event needs of its object: kind and identity, not the body.
pub(crate) fn reference(body: &Value) -> Value {
    let meta = &body["metadata"];
    serde_json::json!({
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": meta.get("name"), "uid": meta.get("uid"), "namespace": meta.get("namespace")},
    })
}

impl Events {
    pub(crate) fn new(
        tx: Option<tokio::sync::mpsc::UnboundedSender<Posting>>,
        involved: Value,
    ) -> Self {
        Events {
            tx,
            involved: reference(&involved),
        }
    }

    /// The same poster, about another object (e.g. a child).
    pub fn about(&self, body: &Value) -> Events {
        Events::new(self.tx.clone(), body.clone())
    }

    /// Posts an event of type `type_` (`Normal`, `Warning`, ...).
    pub fn event(&self, type_: &str, reason: &str, message: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Posting {
                involved: self.involved.clone(),
                type_: type_.into(),
                reason: reason.into(),
                message: message.into(),
            });
        }
    }

    /// Posts a `Normal` event.
    pub fn info(&self, reason: &str, message: &str) {
        self.event("Normal", reason, message);
    }

    /// Posts a `Warning` event.
    pub fn warn(&self, reason: &str, message: &str) {
        self.event("Warning", reason, message);
    }

    /// Posts an `Error` event: `message`, then the error.
    pub fn exception(&self, reason: &str, message: &str, error: &dyn fmt::Display) {
        self.event("Error", reason, &format!("{message} {error}"));
    }
}
