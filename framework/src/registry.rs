//! The registry: handlers declared by the user, with their resource, reason,
//! filters and options, and the selection of the handlers a cause needs.
//!
//! Knows `references` (resources, reasons) and `handling` (the handler
//! function type, errors modes); never does I/O.

use std::{fmt, sync::Arc, time::Duration};

use serde_json::Value;

use crate::{
    handling::{ErrorsMode, HandlerFn},
    references::{Reason, Resource},
};

/// A predicate over a field's value (`None` when absent).
pub type FieldPredicate = Arc<dyn Fn(Option<&Value>) -> bool + Send + Sync>;

/// A condition on a field's value (Kopf's `value=`, `old=`, `new=`).
#[derive(Clone)]
pub enum FieldFilter {
    /// Must equal this value.
    Equals(Value),
    /// Must be present (not null).
    Present,
    /// Must be absent (or null).
    Absent,
    /// Must satisfy this predicate.
    Predicate(FieldPredicate),
}

impl FieldFilter {
    pub(crate) fn accepts(&self, value: Option<&Value>) -> bool {
        let value = value.filter(|v| !v.is_null());
        match self {
            FieldFilter::Equals(v) => value == Some(v),
            FieldFilter::Present => value.is_some(),
            FieldFilter::Absent => value.is_none(),
            FieldFilter::Predicate(p) => p(value),
        }
    }
}

impl fmt::Debug for FieldFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldFilter::Equals(v) => write!(f, "Equals({v})"),
            FieldFilter::Present => f.write_str("Present"),
            FieldFilter::Absent => f.write_str("Absent"),
            FieldFilter::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// A predicate over a label's or annotation's value (`None` when absent).
pub type ValuePredicate = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// A label or annotation filter.
#[derive(Clone)]
pub enum MetaFilter {
    /// Must have exactly this value.
    Value(String),
    /// Must be present.
    Present,
    /// Must be absent.
    Absent,
    /// Must satisfy this predicate (given the value, if present).
    Predicate(ValuePredicate),
}

impl MetaFilter {
    fn accepts(&self, value: Option<&str>) -> bool {
        match self {
            MetaFilter::Value(v) => value == Some(v.as_str()),
            MetaFilter::Present => value.is_some(),
            MetaFilter::Absent => value.is_none(),
            MetaFilter::Predicate(p) => p(value),
        }
    }
}

impl fmt::Debug for MetaFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaFilter::Value(v) => write!(f, "Value({v:?})"),
            MetaFilter::Present => f.write_str("Present"),
            MetaFilter::Absent => f.write_str("Absent"),
            MetaFilter::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// A predicate over the whole body.
pub(crate) type When = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// The options of daemons and timers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spawning {
    pub(crate) initial_delay: Option<Duration>,
    pub(crate) interval: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) sharp: bool,
    pub(crate) cancellation_backoff: Option<Duration>,
    pub(crate) cancellation_timeout: Option<Duration>,
    /// A blocking daemon (runs on a thread; cannot be cancelled).
    pub(crate) blocking: bool,
}

/// The options of admission webhooks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Webhook {
    pub(crate) operations: Vec<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) persistent: bool,
    pub(crate) side_effects: bool,
    pub(crate) ignore_failures: bool,
}

/// A registered handler and its options. Options are set with the builder
/// methods returned by the `Operator::on_*` calls.
#[derive(Clone)]
pub struct Handler {
    pub(crate) resource: Resource,
    pub(crate) reason: Reason,
    pub(crate) id: String,
    /// The id as given (`id` adds `/<field>` to it, as Kopf does).
    base: String,
    pub(crate) func: HandlerFn,
    pub(crate) retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backoff: Option<Duration>,
    pub(crate) errors: ErrorsMode,
    pub(crate) optional: bool,
    pub(crate) param: Option<Value>,
    pub(crate) labels: Vec<(String, MetaFilter)>,
    pub(crate) annotations: Vec<(String, MetaFilter)>,
    pub(crate) when: Option<When>,
    pub(crate) field: Option<Vec<String>>,
    pub(crate) value: Option<FieldFilter>,
    pub(crate) old: Option<FieldFilter>,
    pub(crate) new: Option<FieldFilter>,
    pub(crate) spawning: Spawning,
    pub(crate) webhook: Webhook,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("resource", &self.resource)
            .field("reason", &self.reason)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Handler {
    pub(crate) fn new(resource: Resource, reason: Reason, id: String, func: HandlerFn) -> Self {
        Handler {
            resource,
            reason,
            base: id.clone(),
            id,
            func,
            retries: None,
            timeout: None,
            backoff: None,
            errors: ErrorsMode::Temporary,
            optional: false,
            param: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            when: None,
            field: None,
            value: None,
            old: None,
            new: None,
            spawning: Spawning::default(),
            webhook: Webhook::default(),
        }
    }

    /// The handler's id (the key of its progress record and status
    /// field); with a [`Handler::field`], the id is `<id>/<field>`.
    pub fn id(&mut self, id: impl Into<String>) -> &mut Self {
        self.base = id.into();
        self.reid();
        self
    }

    fn reid(&mut self) {
        self.id = match &self.field {
            Some(path) => format!("{}/{}", self.base, path.join(".")),
            None => self.base.clone(),
        };
    }

    /// At most this many attempts; then a permanent failure.
    pub fn retries(&mut self, n: u32) -> &mut Self {
        self.retries = Some(n);
        self
    }

    /// Give up (permanently) once this long has passed since the first attempt.
    pub fn timeout(&mut self, t: Duration) -> &mut Self {
        self.timeout = Some(t);
        self
    }

    /// Delay between attempts after an unexpected error (default: the
    /// settings' backoff, 60 s).
    pub fn backoff(&mut self, d: Duration) -> &mut Self {
        self.backoff = Some(d);
        self
    }

    /// What unexpected errors mean.
    pub fn errors(&mut self, mode: ErrorsMode) -> &mut Self {
        self.errors = mode;
        self
    }

    /// For delete handlers: do not add a finalizer for this handler (it runs
    /// only if something else holds the object).
    pub fn optional(&mut self, optional: bool) -> &mut Self {
        self.optional = optional;
        self
    }

    /// A value passed to the handler as `ctx.param`.
    pub fn param(&mut self, param: Value) -> &mut Self {
        self.param = Some(param);
        self
    }

    /// Only objects whose label `key` passes `filter`.
    pub fn label(&mut self, key: &str, filter: MetaFilter) -> &mut Self {
        self.labels.push((key.into(), filter));
        self
    }

    /// Only objects whose annotation `key` passes `filter`.
    pub fn annotation(&mut self, key: &str, filter: MetaFilter) -> &mut Self {
        self.annotations.push((key.into(), filter));
        self
    }

    /// Narrows the handler to the field at `path` (dotted, e.g. `spec.size`):
    /// it runs only when that field is in the diff, and gets the field's
    /// old, new and diff; `value`, `old` and `new` filters apply to it. The
    /// id becomes `<id>/<path>`, as in Kopf.
    pub fn field(&mut self, path: &str) -> &mut Self {
        self.field = Some(path.split('.').map(String::from).collect());
        self.reid();
        self
    }

    /// Only when the field (see [`Handler::field`]) currently passes `filter`.
    pub fn value(&mut self, filter: FieldFilter) -> &mut Self {
        self.value = Some(filter);
        self
    }

    /// Only when the field's old value (before the change) passes `filter`.
    pub fn old(&mut self, filter: FieldFilter) -> &mut Self {
        self.old = Some(filter);
        self
    }

    /// Only when the field's new value (after the change) passes `filter`.
    pub fn new_value(&mut self, filter: FieldFilter) -> &mut Self {
        self.new = Some(filter);
        self
    }

    /// Daemons and timers: wait this long after the object is first seen
    /// (or the operator starts) before the first invocation.
    pub fn initial_delay(&mut self, d: Duration) -> &mut Self {
        self.spawning.initial_delay = Some(d);
        self
    }

    /// Timers: how often to run (from the end of one run to the start of
    /// the next, or aligned to the interval when `sharp`).
    pub fn interval(&mut self, d: Duration) -> &mut Self {
        self.spawning.interval = Some(d);
        self
    }

    /// Timers: run only once the object has been unchanged for this long.
    pub fn idle(&mut self, d: Duration) -> &mut Self {
        self.spawning.idle = Some(d);
        self
    }

    /// Timers: align runs to multiples of the interval since the timer
    /// started, whatever each run took.
    pub fn sharp(&mut self, sharp: bool) -> &mut Self {
        self.spawning.sharp = sharp;
        self
    }

    /// Daemons: once asked to stop, how long they may take to exit
    /// gracefully before they are cancelled (default: cancelled at once if
    /// they have a `cancellation_timeout`).
    pub fn cancellation_backoff(&mut self, d: Duration) -> &mut Self {
        self.spawning.cancellation_backoff = Some(d);
        self
    }

    /// Daemons: cancel them once the `cancellation_backoff` is over, and
    /// give the cancellation this long (a blocking daemon, which cannot be
    /// cancelled, is then left orphaned). Without it, a stopped daemon is
    /// waited for as long as it runs, and so is the object's deletion.
    pub fn cancellation_timeout(&mut self, d: Duration) -> &mut Self {
        self.spawning.cancellation_timeout = Some(d);
        self
    }

    /// Webhooks: the operations the API server sends (`CREATE`, `UPDATE`,
    /// `DELETE`, `CONNECT`; default all).
    pub fn operations(&mut self, operations: &[&str]) -> &mut Self {
        self.webhook.operations = operations.iter().map(|o| o.to_string()).collect();
        self
    }

    /// Webhooks: the subresource addressed (`status`, or `*` for any,
    /// including none); default: the main resource only.
    pub fn subresource(&mut self, subresource: &str) -> &mut Self {
        self.webhook.subresource = Some(subresource.into());
        self
    }

    /// Webhooks: keep this webhook in the managed configuration when the
    /// operator exits (default: removed).
    pub fn persistent(&mut self, persistent: bool) -> &mut Self {
        self.webhook.persistent = persistent;
        self
    }

    /// Webhooks: the handler has side effects (`sideEffects:
    /// NoneOnDryRun`; default `None`).
    pub fn side_effects(&mut self, side_effects: bool) -> &mut Self {
        self.webhook.side_effects = side_effects;
        self
    }

    /// Webhooks: admit requests when the webhook cannot be reached
    /// (`failurePolicy: Ignore`; default `Fail`).
    pub fn ignore_failures(&mut self, ignore: bool) -> &mut Self {
        self.webhook.ignore_failures = ignore;
        self
    }

    /// Only objects for which `when` is true.
    pub fn when(&mut self, when: impl Fn(&Value) -> bool + Send + Sync + 'static) -> &mut Self {
        self.when = Some(Arc::new(when));
        self
    }

    /// Whether the handler's filters accept `body`.
    pub(crate) fn matches(&self, body: &Value) -> bool {
        let meta = |section: &str, key: &str| -> Option<String> {
            body.get("metadata")
                .and_then(|m| m.get(section))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(String::from)
        };
        self.labels
            .iter()
            .all(|(k, f)| f.accepts(meta("labels", k).as_deref()))
            && self
                .annotations
                .iter()
                .all(|(k, f)| f.accepts(meta("annotations", k).as_deref()))
            && self.when.as_ref().is_none_or(|w| w(body))
            && self
                .value
                .as_ref()
                .is_none_or(|f| f.accepts(self.field_in(body)))
    }

    /// The handler's field in `value`, if it has a field and `value` has it.
    pub(crate) fn field_in<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let path = self.field.as_ref()?;
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        crate::structs::resolve(value, &p)
    }

    /// Whether the old/new filters accept the change from `old` to `new`.
    pub(crate) fn matches_change(&self, old: Option<&Value>, new: &Value) -> bool {
        self.old
            .as_ref()
            .is_none_or(|f| f.accepts(old.and_then(|o| self.field_in(o))))
            && self
                .new
                .as_ref()
                .is_none_or(|f| f.accepts(self.field_in(new)))
    }
}

/// The default id for a handler function: the last segment of its Rust path
/// (`my_operator::create_fn` gives `create_fn`); closures have no usable
/// name, so they get `<reason>_handler_<n>` unless given an id.
pub(crate) fn default_id<F>(reason: Reason, n: usize) -> String {
    let name = std::any::type_name::<F>();
    let last = name.rsplit("::").next().unwrap_or(name);
    if name.contains("{{closure}}") || last.contains('{') || last.is_empty() {
        format!("{}_handler_{n}", reason.as_str())
    } else {
        last.to_string()
    }
}

/// All handlers of an operator.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub(crate) handlers: Vec<Handler>,
}

impl Registry {
    /// The resources that have handlers, in registration order.
    pub fn resources(&self) -> Vec<Resource> {
        let mut out: Vec<Resource> = Vec::new();
        for h in self
            .handlers
            .iter()
            .filter(|h| h.reason.is_resource_bound())
        {
            if !out.contains(&h.resource) {
                out.push(h.resource.clone());
            }
        }
        out
    }

    /// The handlers of `resource`.
    pub(crate) fn for_resource(&self, resource: &Resource) -> Vec<Handler> {
        self.handlers
            .iter()
            .filter(|h| h.reason.is_resource_bound() && &h.resource == resource)
            .cloned()
            .collect()
    }

    /// The admission webhooks (validating and mutating).
    pub(crate) fn webhooks(&self) -> Vec<Handler> {
        self.handlers
            .iter()
            .filter(|h| h.reason.is_admission())
            .cloned()
            .collect()
    }

    /// The activities (startup or cleanup handlers) of `reason`.
    pub(crate) fn activities(&self, reason: Reason) -> Vec<Handler> {
        self.handlers
            .iter()
            .filter(|h| h.reason == reason)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create_fn() {}

    #[test]
    fn default_ids_should_come_from_function_names() {
        fn id_of<F>(_: F) -> String {
            default_id::<F>(Reason::Create, 1)
        }
        assert_eq!(id_of(create_fn), "create_fn");
        assert_eq!(id_of(|| ()), "create_handler_1");
    }

    #[test]
    fn filters_should_check_labels_annotations_and_predicates() {
        let f: HandlerFn = Arc::new(|_ctx| Box::pin(async { Ok(None) }));
        let mut h = Handler::new(
            Resource::new("kopf.dev", "v1", "kopfexamples"),
            Reason::Create,
            "x".into(),
            f,
        );
        h.label("app", MetaFilter::Value("web".into()))
            .label("skip", MetaFilter::Absent)
            .annotation("note", MetaFilter::Present)
            .when(|b| b["spec"]["size"].as_i64().unwrap_or(0) > 1);
        let ok = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"note": ""}}, "spec": {"size": 2}});
        assert!(h.matches(&ok));
        let mut bad = ok.clone();
        bad["metadata"]["labels"]["skip"] = json!("1");
        assert!(!h.matches(&bad));
        let mut small = ok.clone();
        small["spec"]["size"] = json!(1);
        assert!(!h.matches(&small));
    }

    #[test]
    fn ids_should_be_given_as_str_or_string() {
        let f: HandlerFn = Arc::new(|_ctx| Box::pin(async { Ok(None) }));
        let resource = Resource::new("kopf.dev", "v1", "kopfexamples");
        let mut h = Handler::new(resource, Reason::Create, "x".into(), f);
        assert_eq!(h.id("literal").id, "literal");
        let owned = format!("made-{}", 1);
        assert_eq!(h.id(owned).id, "made-1");
    }
}
