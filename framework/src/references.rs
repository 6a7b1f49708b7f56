//! References: which resource, and why a handler runs. Plain data at the
//! bottom of the layers (with `structs`), used by every layer above.

use std::fmt;

/// A resource to handle: `group/version/plural` (group "" for the core
/// API), or a name (kind, plural, singular or short name) resolved through
/// discovery when the operator starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// A name to resolve through discovery (`Resource::named`).
    pub(crate) lookup: Option<String>,
}

impl Resource {
    /// `group/version/plural`.
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            lookup: None,
        }
    }

    /// A resource known by its kind, plural, singular or short name
    /// (`KopfExample`, `kopfexamples`, `kex`), optionally `name.group`;
    /// resolved through discovery at start (the preferred version).
    pub fn named(name: &str) -> Self {
        Resource {
            group: String::new(),
            version: String::new(),
            plural: String::new(),
            lookup: Some(name.into()),
        }
    }

    /// The resource of a typed kube object, e.g. a `#[derive(CustomResource)]` struct.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Resource::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    /// `apiVersion` of the resource.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.lookup {
            return f.write_str(name);
        }
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.plural)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.plural)
        }
    }
}

/// Why a handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The object is new (no diff-base).
    Create,
    /// The object's essence changed.
    Update,
    /// The object is being deleted.
    Delete,
    /// The operator (re)started and found the object unchanged.
    Resume,
    /// Any watch event (fire-and-forget handlers).
    Event,
    /// Once when the operator starts, before it handles anything.
    Startup,
    /// Once when the operator stops, after it handled everything.
    Cleanup,
    /// A long-running task per object.
    Daemon,
    /// A periodic handler per object.
    Timer,
    /// Builds an in-memory index across objects.
    Index,
    /// Reports the operator's health (on the liveness endpoint).
    Probe,
    /// Admits or denies API requests (a validating admission webhook).
    Validate,
    /// Changes objects before they are stored (a mutating admission webhook).
    Mutate,
}

impl Reason {
    /// `create`, `update`, `delete`, `resume` (Kopf's purpose names).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Create => "create",
            Reason::Update => "update",
            Reason::Delete => "delete",
            Reason::Resume => "resume",
            Reason::Event => "event",
            Reason::Startup => "startup",
            Reason::Cleanup => "cleanup",
            Reason::Daemon => "daemon",
            Reason::Timer => "timer",
            Reason::Index => "index",
            Reason::Probe => "probe",
            Reason::Validate => "validate",
            Reason::Mutate => "mutate",
        }
    }

    /// `creation`, `updating`, `deletion`, `resuming` (Kopf's cause titles).
    pub fn title(self) -> &'static str {
        match self {
            Reason::Create => "creation",
            Reason::Update => "updating",
            Reason::Delete => "deletion",
            Reason::Resume => "resuming",
            Reason::Event => "event",
            Reason::Startup => "startup",
            Reason::Cleanup => "cleanup",
            Reason::Daemon => "daemon",
            Reason::Timer => "timer",
            Reason::Index => "indexing",
            Reason::Probe => "probe",
            Reason::Validate => "validation",
            Reason::Mutate => "mutation",
        }
    }

    /// Whether the handler answers admission requests (not watch events).
    pub fn is_admission(self) -> bool {
        matches!(self, Reason::Validate | Reason::Mutate)
    }

    /// Whether the handler runs beside the object, for as long as it
    /// exists (daemons and timers).
    pub fn is_spawning(self) -> bool {
        matches!(self, Reason::Daemon | Reason::Timer)
    }

    /// Whether handlers of this reason belong to a resource.
    pub fn is_resource_bound(self) -> bool {
        !matches!(
            self,
            Reason::Startup | Reason::Cleanup | Reason::Probe | Reason::Validate | Reason::Mutate
        )
    }
}
