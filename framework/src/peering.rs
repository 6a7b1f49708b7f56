//! Peering (an engine): instances of one operator find each other and the
//! lower-priority ones pause, so that a developer's instance can take over
//! from a deployed one. Two ways:
//!
//! - Kopf-compatible peering objects (`ClusterKopfPeering` when serving
//!   the whole cluster, `KopfPeering` per namespace, group `kopf.dev`):
//!   each instance keeps its record alive in the object's status,
//!   `{<id>: {priority, lifetime, lastseen}}`, and pauses while a live peer
//!   has a higher priority (or the same one: then all pause).
//! - Lease-based leader election (coordination.k8s.io/v1): the holder of
//!   the Lease runs, the others pause until it is released or expires.
//!
//! The result is one flag, `paused`, that the reactor obeys.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    runtime::watcher,
    Client,
};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::{handling::Logger, settings::Settings};

/// A peer's record.
#[derive(Clone, Debug, PartialEq)]
struct Peer {
    id: String,
    priority: i64,
    lifetime: i64,
    lastseen: Timestamp,
}

impl Peer {
    fn parse(id: &str, v: &Value, now: Timestamp) -> Self {
        Peer {
            id: id.to_string(),
            priority: v.get("priority").and_then(Value::as_i64).unwrap_or(0),
            lifetime: v.get("lifetime").and_then(Value::as_i64).unwrap_or(60),
            lastseen: v
                .get("lastseen")
                .and_then(Value::as_str)
                .and_then(parse_time)
                .unwrap_or(now),
        }
    }

    fn deadline(&self) -> Timestamp {
        let lifetime = jiff::SignedDuration::from_secs(self.lifetime.max(0));
        self.lastseen
            .checked_add(lifetime)
            .unwrap_or(Timestamp::MAX)
    }
}

/// Kopf writes `2024-01-01T00:00:00.123456+00:00`; naive times are UTC.
fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>()
        .ok()
        .or_else(|| format!("{s}Z").parse().ok())
}

fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6f+00:00").to_string()
}

fn fmt_peers(peers: &[Peer]) -> String {
    let shown: Vec<String> = peers
        .iter()
        .map(|p| {
            format!(
                "<Peer {}: priority={}, lifetime={}, lastseen='{}'>",
                p.id,
                p.priority,
                p.lifetime,
                fmt_time(p.lastseen)
            )
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

/// This instance's id: `$POD_ID`, else `user@host/YYYYmmddHHMMSS/xyz`.
pub(crate) fn identity(now: Timestamp) -> String {
    if let Ok(pod) = std::env::var("POD_ID") {
        if !pod.is_empty() {
            return pod;
        }
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "kopf".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    const ALPHABET: &[u8] = b"abcdefhijklmnopqrstuvwxyz0123456789";
    let mut seed = u64::from(std::process::id()) ^ now.subsec_nanosecond().unsigned_abs() as u64;
    let suffix: String = (0..3)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ALPHABET[((seed >> 33) % ALPHABET.len() as u64) as usize] as char
        })
        .collect();
    format!("{user}@{host}/{}/{suffix}", now.strftime("%Y%m%d%H%M%S"))
}

/// Pauses or resumes the operator (and tells observers).
fn pause(settings: &Settings, paused: &watch::Sender<bool>, value: bool) {
    if let Some(o) = &settings.observer {
        o.set_paused(value);
    }
    paused.send_replace(value);
}

/// What a peering object's status says about the others.
#[derive(Debug, Default, PartialEq)]
struct Verdict {
    higher: Vec<Peer>,
    same: Vec<Peer>,
    dead: Vec<String>,
    /// The earliest deadline of a live peer that blocks us.
    until: Option<Timestamp>,
}

fn judge(status: &Map<String, Value>, me: &str, priority: i64, now: Timestamp) -> Verdict {
    let mut v = Verdict::default();
    for (id, record) in status {
        if id == me || !record.is_object() {
            continue;
        }
        let peer = Peer::parse(id, record, now);
        if peer.deadline() <= now {
            v.dead.push(peer.id);
            continue;
        }
        if peer.priority >= priority {
            v.until = Some(v.until.map_or(peer.deadline(), |u| u.min(peer.deadline())));
        }
        match peer.priority.cmp(&priority) {
            std::cmp::Ordering::Greater => v.higher.push(peer),
            std::cmp::Ordering::Equal => v.same.push(peer),
            std::cmp::Ordering::Less => {}
        }
    }
    v
}

/// Where the peering record lives.
struct Place {
    api: Api<DynamicObject>,
    name: String,
    /// For log lines: `cluster-wide` or `in 'ns'`.
    scope: String,
}

/// Runs peering for every served namespace (`None`: the whole cluster)
/// until `stop`: the operator is paused while any of them says so. A Lease
/// is one for all.
pub(crate) async fn run_all(
    client: Client,
    settings: Settings,
    namespaces: Vec<Option<String>>,
    paused: Arc<watch::Sender<bool>>,
    stop: watch::Receiver<bool>,
) {
    if namespaces.len() <= 1 || settings.peering.lease.is_some() {
        let namespace = namespaces.into_iter().next().flatten();
        return run(client, settings, namespace, paused, stop).await;
    }
    // One peering per namespace, each with its own flag; observers hear
    // the combined one.
    let mut quiet = settings.clone();
    quiet.observer = None;
    let flags: Vec<Arc<watch::Sender<bool>>> = namespaces
        .iter()
        .map(|_| Arc::new(watch::Sender::new(false)))
        .collect();
    let mut runs = tokio::task::JoinSet::new();
    for (namespace, flag) in namespaces.into_iter().zip(&flags) {
        runs.spawn(run(
            client.clone(),
            quiet.clone(),
            namespace,
            flag.clone(),
            stop.clone(),
        ));
    }
    let mut receivers: Vec<watch::Receiver<bool>> = flags.iter().map(|f| f.subscribe()).collect();
    let mut stop_rx = stop.clone();
    loop {
        let any = receivers.iter_mut().any(|r| *r.borrow_and_update());
        if *paused.borrow() != any {
            pause(&settings, &paused, any);
        }
        let changed =
            futures::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
        tokio::select! {
            _ = changed => {}
            _ = stop_rx.changed() => break,
        }
    }
    while runs.join_next().await.is_some() {}
}

/// Runs peering until `stop`, setting `paused` as the peers decide.
async fn run(
    client: Client,
    settings: Settings,
    namespace: Option<String>,
    paused: Arc<watch::Sender<bool>>,
    stop: watch::Receiver<bool>,
) {
    let peering = &settings.peering;
    let logger = Logger::operator(settings.log_sink.clone());
    if peering.standalone {
        return;
    }
    if let Some(lease) = &peering.lease {
        return run_lease(&client, &settings, lease, &logger, paused, stop).await;
    }
    let plural = if namespace.is_some() {
        "kopfpeerings"
    } else {
        "clusterkopfpeerings"
    };
    let served = client
        .list_api_group_resources("kopf.dev/v1")
        .await
        .is_ok_and(|l| l.resources.iter().any(|r| r.name == plural));
    if !served {
        if peering.mandatory {
            logger.warn(format!(
                "Peering is required, but {plural}.kopf.dev is not served. The operator is paused."
            ));
            pause(&settings, &paused, true);
        } else {
            logger.debug(format!(
                "{plural}.kopf.dev is not served: running without peering."
            ));
        }
        drop(logger.drain());
        return;
    }
    let kind = if namespace.is_some() {
        "KopfPeering"
    } else {
        "ClusterKopfPeering"
    };
    let ar = ApiResource {
        group: "kopf.dev".into(),
        version: "v1".into(),
        api_version: "kopf.dev/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let place = match &namespace {
        Some(ns) => Place {
            api: Api::namespaced_with(client.clone(), ns, &ar),
            name: peering.name.clone(),
            scope: format!("in '{ns}'"),
        },
        None => Place {
            api: Api::all_with(client.clone(), &ar),
            name: peering.name.clone(),
            scope: "cluster-wide".into(),
        },
    };
    let me = if peering.identity.is_empty() {
        identity(settings.clock.now())
    } else {
        peering.identity.clone()
    };
    if peering.mandatory {
        // Paused until the peering object shows no conflicts.
        pause(&settings, &paused, true);
    }
    let keepalive = keep_alive(&place, &me, &settings, &logger, stop.clone());
    let watching = watch_peers(&place, &me, &settings, &logger, &paused, stop);
    tokio::join!(keepalive, watching);
    // Leave: remove our own record.
    let gone = json!({"status": {me.as_str(): null}});
    let _ = place
        .api
        .patch(&place.name, &PatchParams::default(), &Patch::Merge(&gone))
        .await;
    drop(logger.drain());
}

/// Touches our record now and then, until `stop`.
async fn keep_alive(
    place: &Place,
    me: &str,
    settings: &Settings,
    logger: &Logger,
    mut stop: watch::Receiver<bool>,
) {
    // Whole seconds, at least one (a record of lifetime 0 is dead at once).
    let lifetime =
        Duration::from_secs(settings.peering.lifetime.as_secs_f64().ceil().max(1.0) as u64);
    // Renewed well before it expires.
    let every = lifetime
        .saturating_sub(Duration::from_secs(7))
        .max(Duration::from_secs(1))
        .min(lifetime);
    loop {
        let record = json!({"status": {me: {
            "priority": settings.peering.priority,
            "lifetime": lifetime.as_secs(),
            "lastseen": fmt_time(settings.clock.now()),
        }}});
        match place
            .api
            .patch(&place.name, &PatchParams::default(), &Patch::Merge(&record))
            .await
        {
            Ok(_) => logger.debug(format!(
                "Keep-alive in '{}' {}: ok.",
                place.name, place.scope
            )),
            Err(kube::Error::Api(s)) if s.code == 404 => logger.debug(format!(
                "Keep-alive in '{}' {}: not found.",
                place.name, place.scope
            )),
            Err(e) => logger.warn(format!(
                "Keep-alive in '{}' {} failed: {}",
                place.name,
                place.scope,
                crate::forbidden::explain(&e)
            )),
        }
        drop(logger.drain());
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Watches the peering object and decides whether to pause.
async fn watch_peers(
    place: &Place,
    me: &str,
    settings: &Settings,
    logger: &Logger,
    paused: &watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={}", place.name));
    let mut stream = Box::pin(kube::runtime::WatchStreamExt::default_backoff(watcher(
        place.api.clone(),
        config,
    )));
    let mut status = Map::new();
    let mut recheck: Option<tokio::time::Instant> = None;
    loop {
        let wake = async {
            match recheck {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                    status = o.data.get("status").and_then(Value::as_object).cloned().unwrap_or_default();
                }
                Some(Ok(watcher::Event::Delete(_))) => status = Map::new(),
                Some(Ok(_)) => continue,
                Some(Err(_)) => continue,
                None => return,
            },
            _ = wake => {}
            _ = stop.changed() => return,
        }
        let now = settings.clock.now();
        let verdict = judge(&status, me, settings.peering.priority, now);
        if !verdict.dead.is_empty() {
            let mut cleanup = Map::new();
            for id in &verdict.dead {
                cleanup.insert(id.clone(), Value::Null);
            }
            let _ = place
                .api
                .patch(
                    &place.name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": cleanup})),
                )
                .await;
        }
        let was = *paused.borrow();
        if !verdict.higher.is_empty() {
            if !was {
                logger.info(format!(
                    "Pausing operations in favour of {}.",
                    fmt_peers(&verdict.higher)
                ));
                pause(settings, paused, true);
            }
        } else if !verdict.same.is_empty() {
            logger.warn(format!(
                "Possibly conflicting operators with the same priority: {}.",
                fmt_peers(&verdict.same)
            ));
            if !was {
                logger.warn(format!(
                    "Pausing all operators, including self: {}",
                    fmt_peers(&verdict.same)
                ));
                pause(settings, paused, true);
            }
        } else if was {
            logger.info(
                "Resuming operations after the pause. Conflicting operators with the same priority are gone.",
            );
            pause(settings, paused, false);
        }
        drop(logger.drain());
        // Look again when the earliest blocking peer would expire.
        recheck = verdict.until.and_then(|until| {
            let left = Duration::try_from(until.duration_since(now)).unwrap_or_default();
            tokio::time::Instant::now().checked_add(left + Duration::from_millis(1))
        });
    }
}

/// Leader election on a Lease: hold it and run, or pause until it is free.
async fn run_lease(
    client: &Client,
    settings: &Settings,
    lease: &crate::settings::LeaseElection,
    logger: &Logger,
    paused: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    use k8s_openapi::{
        api::coordination::v1::{Lease, LeaseSpec},
        apimachinery::pkg::apis::meta::v1::MicroTime,
    };
    let api: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
    let me = if settings.peering.identity.is_empty() {
        identity(settings.clock.now())
    } else {
        settings.peering.identity.clone()
    };
    let seconds = i32::try_from(lease.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    pause(settings, &paused, true);
    let mut leading = false;
    loop {
        let now = settings.clock.now();
        let micro = |t: Timestamp| MicroTime(t);
        let current = api.get_opt(&lease.name).await;
        let outcome = match current {
            Ok(None) => {
                let fresh = Lease {
                    metadata: kube::api::ObjectMeta {
                        name: Some(lease.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(micro(now)),
                        renew_time: Some(micro(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &fresh)
                    .await
                    .map(|_| true)
            }
            Ok(Some(mut held)) => {
                let spec = held.spec.get_or_insert_with(Default::default);
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let expires = spec.renew_time.as_ref().map(|t| {
                    t.0 + Duration::from_secs(u64::from(
                        spec.lease_duration_seconds
                            .unwrap_or(seconds)
                            .max(0)
                            .unsigned_abs(),
                    ))
                });
                let free = holder.is_empty() || expires.is_none_or(|e| e <= now);
                if holder == me || free {
                    if holder != me {
                        spec.acquire_time = Some(micro(now));
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    spec.holder_identity = Some(me.clone());
                    spec.lease_duration_seconds = Some(seconds);
                    spec.renew_time = Some(micro(now));
                    // Optimistic concurrency: the replace carries the
                    // resourceVersion we read; a concurrent claim wins.
                    api.replace(&lease.name, &PostParams::default(), &held)
                        .await
                        .map(|_| true)
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(e),
        };
        let now_leading = matches!(outcome, Ok(true));
        if now_leading != leading {
            if now_leading {
                logger.info(format!(
                    "Acquired the lease {}/{}: resuming operations.",
                    lease.namespace, lease.name
                ));
            } else {
                logger.info(format!(
                    "Lost the lease {}/{}: pausing operations.",
                    lease.namespace, lease.name
                ));
            }
            leading = now_leading;
            pause(settings, &paused, !leading);
        }
        drop(logger.drain());
        let every = if leading {
            lease.duration / 3
        } else {
            lease.duration / 2
        };
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_millis(100))) => {}
            _ = stop.changed() => break,
        }
    }
    if leading {
        // Release, so that another instance takes over at once.
        if let Ok(Some(mut held)) = api.get_opt(&lease.name).await {
            if let Some(spec) = held.spec.as_mut() {
                if spec.holder_identity.as_deref() == Some(me.as_str()) {
                    spec.holder_identity = None;
                    let _ = api
                        .replace(&lease.name, &PostParams::default(), &held)
                        .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_should_follow_priorities_and_lifetimes() {
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let status = json!({
            "me": {"priority": 10, "lifetime": 60, "lastseen": "2024-01-01T00:00:59+00:00"},
            "boss": {"priority": 100, "lifetime": 60, "lastseen": "2024-01-01T00:00:30.000000+00:00"},
            "twin": {"priority": 10, "lifetime": 60, "lastseen": "2024-01-01T00:00:50"},
            "junior": {"priority": 1, "lifetime": 60, "lastseen": "2024-01-01T00:00:50Z"},
            "ghost": {"priority": 1000, "lifetime": 30, "lastseen": "2024-01-01T00:00:10Z"},
        });
        let v = judge(status.as_object().unwrap(), "me", 10, now);
        assert_eq!(
            v.higher.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["boss"]
        );
        assert_eq!(
            v.same.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["twin"]
        );
        assert_eq!(v.dead, ["ghost"]);
        assert_eq!(v.until, Some("2024-01-01T00:01:30Z".parse().unwrap()));
        assert_eq!(
            fmt_peers(&v.higher),
            "[<Peer boss: priority=100, lifetime=60, lastseen='2024-01-01T00:00:30.000000+00:00'>]"
        );
        let alone = judge(&Map::new(), "me", 0, now);
        assert_eq!(alone, Verdict::default());
    }

    #[test]
    fn identities_should_name_user_host_and_time() {
        let now: Timestamp = "2024-05-06T07:08:09Z".parse().unwrap();
        let id = identity(now);
        if std::env::var("POD_ID").is_err() {
            assert!(id.contains("@") && id.contains("/20240506070809/"), "{id}");
            assert_eq!(id.rsplit('/').next().unwrap().len(), 3);
        }
    }
}
