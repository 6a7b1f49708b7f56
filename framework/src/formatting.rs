//! Log lines laid out as Kopf lays them out (`--log-format`, `--log-prefix`,
//! `--log-refkey`): a `tracing` event formatter for the command line.
//!
//! - `full` (Kopf's default): `[2026-01-01 12:00:00,123] kopf.objects
//!   [INFO    ] [ns/name] message`, the time local, the logger name padded
//!   to 20 and the level to 8, as Python's logging prints them.
//! - `plain`: the message alone (with the object prefix).
//! - `json`: one object per line, `message`, `timestamp`, `severity`, and
//!   the object's reference under the refkey (`object` by default).
//!
//! The object prefix (`[namespace/name] `) is on by default for the text
//! formats and off for JSON, as in Kopf.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
};

/// The log line layouts of `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `[namespace/name] message`.
    Plain,
    /// Kopf's default: `[time] logger [LEVEL] [namespace/name] message`.
    Full,
    /// One JSON object per line, with the object's reference as a field.
    Json,
}

/// Formats events as Kopf does.
#[derive(Clone, Debug)]
pub(crate) struct KopfFormat {
    pub(crate) layout: LogFormat,
    /// Whether messages about objects start with `[namespace/name]`.
    pub(crate) prefix: bool,
    /// The JSON key of the object's reference.
    pub(crate) refkey: String,
}

impl KopfFormat {
    /// Kopf's defaults for `layout`: the prefix for text, none for JSON.
    pub(crate) fn new(layout: LogFormat, prefix: Option<bool>, refkey: Option<String>) -> Self {
        KopfFormat {
            layout,
            prefix: prefix.unwrap_or(layout != LogFormat::Json),
            refkey: refkey.unwrap_or_else(|| "object".into()),
        }
    }

    /// One line for an event at `level` from `target` with `fields`, at
    /// `now` (kept apart from `tracing` so that it can be tested).
    pub(crate) fn line(
        &self,
        level: &tracing::Level,
        target: &str,
        fields: &Fields,
        now: jiff::Timestamp,
    ) -> String {
        let prefix = match (&fields.namespace, &fields.name) {
            (Some(ns), Some(name)) if self.prefix && !ns.is_empty() => format!("[{ns}/{name}] "),
            (_, Some(name)) if self.prefix => format!("[{name}] "),
            _ => String::new(),
        };
        let message = format!("{prefix}{}{}", fields.message, fields.rest);
        let logger = target.replace("::", ".");
        match self.layout {
            LogFormat::Plain => message,
            LogFormat::Full => {
                let local = now.to_zoned(jiff::tz::TimeZone::system());
                format!(
                    "[{},{:03}] {logger:<20.20} [{:<8.8}] {message}",
                    local.strftime("%Y-%m-%d %H:%M:%S"),
                    local.subsec_nanosecond() / 1_000_000,
                    python_level(level),
                )
            }
            LogFormat::Json => {
                let mut out = Map::new();
                out.insert("message".into(), Value::String(message));
                out.insert(
                    "timestamp".into(),
                    Value::String(now.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()),
                );
                out.insert("severity".into(), Value::String(severity(level).into()));
                out.insert("logger".into(), Value::String(logger));
                if let Some(reference) = fields
                    .reference
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                {
                    out.insert(self.refkey.clone(), reference);
                }
                Value::Object(out).to_string()
            }
        }
    }
}

/// Python's level names.
fn python_level(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE | tracing::Level::DEBUG => "DEBUG",
        tracing::Level::INFO => "INFO",
        tracing::Level::WARN => "WARNING",
        tracing::Level::ERROR => "ERROR",
    }
}

/// Kopf's JSON severities.
fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE | tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}

/// An event's fields: the message, the object it is about (the fields
/// `k8s_namespace`, `k8s_name` and `k8s_ref` that the framework's loggers
/// set), and any others as ` key=value`.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) message: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) reference: Option<String>,
    /// The `log` crate's target, for records bridged from `log`.
    pub(crate) log_target: Option<String>,
    pub(crate) rest: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "k8s_namespace" => self.namespace = Some(value.to_string()),
            "k8s_name" => self.name = Some(value.to_string()),
            "k8s_ref" => self.reference = Some(value.to_string()),
            "log.target" => self.log_target = Some(value.to_string()),
            "log.module_path" | "log.file" | "log.line" => {}
            other => self.rest.push_str(&format!(" {other}={value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "k8s_namespace" | "k8s_name" | "k8s_ref" | "log.target" => {
                self.record_str(field, format!("{value:?}").trim_matches('"'));
            }
            "log.module_path" | "log.file" | "log.line" => {}
            other => self.rest.push_str(&format!(" {other}={value:?}")),
        }
    }
}

impl<S, N> FormatEvent<S, N> for KopfFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let target = fields.log_target.clone();
        let target = target.as_deref().unwrap_or(meta.target());
        let line = self.line(meta.level(), target, &fields, jiff::Timestamp::now());
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about_object() -> Fields {
        Fields {
            message: "Handler 'create_fn' succeeded.".into(),
            namespace: Some("default".into()),
            name: Some("kopf-example-1".into()),
            reference: Some(
                r#"{"apiVersion":"kopf.dev/v1","kind":"KopfExample","name":"kopf-example-1","namespace":"default","uid":"u1"}"#
                    .into(),
            ),
            ..Fields::default()
        }
    }

    fn noon() -> jiff::Timestamp {
        "2026-01-01T12:00:00.123456Z".parse().unwrap()
    }

    #[test]
    fn full_should_lay_lines_out_as_kopf() {
        let f = KopfFormat::new(LogFormat::Full, None, None);
        let line = f.line(
            &tracing::Level::INFO,
            "kopf.objects",
            &about_object(),
            noon(),
        );
        // The time is local: only its layout is fixed here.
        let (time, rest) = line.split_once("] ").unwrap();
        assert_eq!(time.len(), "[2026-01-01 12:00:00,123".len(), "{line}");
        assert!(time.ends_with(",123"), "{line}");
        assert_eq!(
            rest,
            "kopf.objects         [INFO    ] [default/kopf-example-1] Handler 'create_fn' succeeded."
        );
        let line = f.line(
            &tracing::Level::WARN,
            "kopf::scanning::deep::module",
            &Fields {
                message: "m".into(),
                ..Fields::default()
            },
            noon(),
        );
        assert!(
            line.ends_with("] kopf.scanning.deep.m [WARNING ] m"),
            "{line}"
        );
    }

    #[test]
    fn the_prefix_should_follow_kopfs_defaults_and_flags() {
        let plain = KopfFormat::new(LogFormat::Plain, None, None);
        assert_eq!(
            plain.line(
                &tracing::Level::INFO,
                "kopf.objects",
                &about_object(),
                noon()
            ),
            "[default/kopf-example-1] Handler 'create_fn' succeeded."
        );
        let bare = KopfFormat::new(LogFormat::Plain, Some(false), None);
        assert_eq!(
            bare.line(
                &tracing::Level::INFO,
                "kopf.objects",
                &about_object(),
                noon()
            ),
            "Handler 'create_fn' succeeded."
        );
        let mut cluster_scoped = about_object();
        cluster_scoped.namespace = Some(String::new());
        assert_eq!(
            plain.line(
                &tracing::Level::INFO,
                "kopf.objects",
                &cluster_scoped,
                noon()
            ),
            "[kopf-example-1] Handler 'create_fn' succeeded."
        );
    }

    #[test]
    fn json_should_carry_the_reference_under_the_refkey() {
        let json = KopfFormat::new(LogFormat::Json, None, Some("k8s".into()));
        let line = json.line(
            &tracing::Level::WARN,
            "kopf.objects",
            &about_object(),
            noon(),
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["message"], "Handler 'create_fn' succeeded.",
            "no prefix in JSON"
        );
        assert_eq!(v["severity"], "warn");
        assert_eq!(v["timestamp"], "2026-01-01T12:00:00.123456+00:00");
        assert_eq!(v["k8s"]["name"], "kopf-example-1");
        assert_eq!(v["k8s"]["uid"], "u1");
        let prefixed = KopfFormat::new(LogFormat::Json, Some(true), None);
        let v: Value = serde_json::from_str(&prefixed.line(
            &tracing::Level::INFO,
            "kopf.objects",
            &about_object(),
            noon(),
        ))
        .unwrap();
        assert_eq!(
            v["message"],
            "[default/kopf-example-1] Handler 'create_fn' succeeded."
        );
        assert_eq!(v["object"]["kind"], "KopfExample");
    }
}
