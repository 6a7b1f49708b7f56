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
    /// Namespace patterns to serve; empty = the whole cluster. Each is a
    /// name or Kopf's pattern: globs (`team-*`, `ns-?`, `ns-[0-9]`),
    /// negations (`!kube-*`) and comma-combined lists (`a-*,!*-pr-*`); see
    /// [`match_namespace`](crate::references::match_namespace). Namespaces
    /// are watched one by one as they come and go (see [`Scanning`]).
    pub namespaces: Vec<String>,
}

/// How the cluster is scanned at runtime (Kopf's `settings.scanning`).
#[derive(Clone, Debug, Default)]
pub struct Scanning {
    /// Do not observe CRDs and namespaces: resources are resolved once at
    /// start, and the namespaces served are only the plain names among the
    /// patterns (no warning is logged for this restricted mode).
    pub disabled: bool,
}

/// Talking to the API (Kopf's `settings.networking`).
#[derive(Clone, Debug)]
pub struct Networking {
    /// How long one attempt of a request may take until its answer starts
    /// (watches excepted); `None`: no bound. Kopf's default: 5 minutes.
    pub request_timeout: Option<Duration>,
    /// The pauses between attempts of a request that failed with a 5xx, a
    /// 429 or a transport error; after the last, the error escalates.
    /// Empty: no retries. Kopf's default: 1, 1, 2, 3, 5, 8, 13, 21 s.
    pub error_backoffs: Vec<Duration>,
    /// Use a 429's `Retry-After` even when it is shorter than the backoff
    /// (it is always used when longer).
    pub enforce_retry_after: bool,
}

impl Default for Networking {
    fn default() -> Self {
        Networking {
            request_timeout: Some(Duration::from_secs(300)),
            error_backoffs: [1, 1, 2, 3, 5, 8, 13, 21].map(Duration::from_secs).to_vec(),
            enforce_retry_after: false,
        }
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
    /// Runtime scanning of resources and namespaces.
    pub scanning: Scanning,
    /// Retries and timeouts of API requests.
    pub networking: Networking,
    /// The time source.
    pub clock: Clock,
    /// Where to collect this operator's log lines, besides `tracing`.
    pub log_sink: Option<crate::handling::LogSink>,
    /// Where to report pending work (for embedders and test harnesses).
    pub observer: Option<crate::observing::Observer>,
    /// Serve the probes' results here (`--liveness`).
    pub liveness: Option<Liveness>,
    /// Coordination with other instances of the operator.
    pub peering: Peering,
    /// Admission webhooks: where they are served, and the managed
    /// webhook configurations.
    pub admission: Admission,
}

/// Admission webhooks' settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Where the webhooks are served (required when there are webhooks).
    pub server: Option<WebhookServer>,
    /// The name of the Validating/MutatingWebhookConfiguration objects to
    /// keep in sync with the webhooks (e.g. `auto.kopf.dev`); `None`: the
    /// configurations are managed by someone else.
    pub managed: Option<String>,
}

/// The webhook server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookServer {
    /// Where to listen (port 0: any free port).
    pub addr: std::net::SocketAddr,
    /// The path prefix of the webhooks (each webhook is `<path>/<id>`).
    pub path: String,
    /// HTTPS with a self-signed certificate generated at start (its CA
    /// goes into the managed configurations' `caBundle`); else plain HTTP.
    pub tls: bool,
    /// The host name the API server reaches the server at (certificate
    /// and URL); default: the listening IP.
    pub host: Option<String>,
    /// The URL the API server calls instead (a tunnel to this server).
    pub url: Option<String>,
}

impl WebhookServer {
    /// Plain HTTP on loopback, on any free port (the fake API server and
    /// the operator on one machine).
    pub fn local() -> Self {
        WebhookServer {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            path: "/".into(),
            tls: false,
            host: None,
            url: None,
        }
    }

    /// HTTPS with a self-signed certificate, on loopback, any free port.
    pub fn local_tls() -> Self {
        WebhookServer {
            tls: true,
            host: Some("localhost".into()),
            ..Self::local()
        }
    }
}

/// How an operator coordinates with other instances of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peering {
    /// Kopf-compatible peering: the name of the `ClusterKopfPeering` (when
    /// serving the whole cluster) or `KopfPeering` objects (per namespace).
    pub name: String,
    /// This instance's priority: instances with a lower one pause while a
    /// higher one is alive; equal ones all pause.
    pub priority: i64,
    /// How long this instance's record counts as alive without renewal.
    pub lifetime: Duration,
    /// `--peering NAME`: paused until the peering object exists and shows
    /// no conflicts (otherwise, peering is skipped when its CRD is absent).
    pub mandatory: bool,
    /// `--standalone`: no peering at all.
    pub standalone: bool,
    /// This instance's id in peering records (`$POD_ID`, or
    /// `user@host/timestamp/xyz` when empty).
    pub identity: String,
    /// Instead of Kopf's peering: Lease-based leader election
    /// (coordination.k8s.io/v1) on this Lease; non-leaders pause.
    pub lease: Option<LeaseElection>,
}

impl Default for Peering {
    fn default() -> Self {
        Peering {
            name: "default".into(),
            priority: 0,
            lifetime: Duration::from_secs(60),
            mandatory: false,
            standalone: false,
            identity: String::new(),
            lease: None,
        }
    }
}

/// Leader election on a Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseElection {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// How long a leader's claim lasts without renewal (renewed every third of it).
    pub duration: Duration,
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
            scanning: Scanning::default(),
            networking: Networking::default(),
            clock: Clock::default(),
            log_sink: None,
            observer: None,
            liveness: None,
            peering: Peering::default(),
            admission: Admission::default(),
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

/// Where the liveness endpoint listens: `http://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// The address to listen on.
    pub addr: std::net::SocketAddr,
    /// The path answered (anything else is 404).
    pub path: String,
}

impl std::str::FromStr for Liveness {
    type Err = String;

    /// Parses Kopf's `--liveness` URL: `http` only; host `localhost` and
    /// port 80 when absent; path `/` when absent.
    fn from_str(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("Unsupported scheme: {url} (only http:// is served)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("invalid port in {url}"))?,
            ),
            None => (authority, 80),
        };
        let host = match host {
            "" | "localhost" => "127.0.0.1",
            h => h.trim_start_matches('[').trim_end_matches(']'),
        };
        let ip = host
            .parse()
            .map_err(|_| format!("the liveness host must be an IP address or localhost: {host}"))?;
        Ok(Liveness {
            addr: std::net::SocketAddr::new(ip, port),
            path: path.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_urls_should_parse_as_kopf_does() {
        let l: Liveness = "http://0.0.0.0:8080/healthz".parse().unwrap();
        assert_eq!(l.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(l.path, "/healthz");
        let l: Liveness = "http://localhost".parse().unwrap();
        assert_eq!(l.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(l.path, "/");
        assert!("https://0.0.0.0:8080/healthz"
            .parse::<Liveness>()
            .unwrap_err()
            .contains("Unsupported scheme"));
        assert!("http://0.0.0.0:port/x".parse::<Liveness>().is_err());
    }
}
