//! Scanning the cluster at runtime (Kopf's `settings.scanning`): which of
//! the declared resources are served, at which version, and which
//! namespaces match the operator's patterns (an engine).
//!
//! Two observers keep the [`Insights`] current:
//!
//! - resources: resolved through discovery at start, then again whenever
//!   a CustomResourceDefinition is added, changed or deleted, so a CRD
//!   created after the operator starts gets its watches, and one deleted
//!   loses them. A resource that is not served is logged and waited for;
//!   it never stops the operator.
//! - namespaces: with namespace patterns, the namespaces are listed and
//!   watched, and those matching a pattern are served as they come and go.
//!
//! Without permission to watch CRDs, the resources are scanned once; without
//! permission to list namespaces, the plain names among the patterns are
//! served as if they existed. Both are logged as warnings, unless
//! `settings.scanning.disabled` declares this restricted mode on purpose.

use std::collections::{BTreeSet, HashMap};

use futures::{FutureExt, StreamExt};
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::APIResource,
};
use kube::{
    api::{ApiResource, PartialObjectMeta},
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tokio::sync::watch;

use crate::{
    forbidden::{explain, explain_watch},
    handling::Logger,
    references::{match_namespace, specific_namespaces, Resource},
    settings::Settings,
};

/// A declared resource as the cluster serves it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Served {
    /// The resource resolved (group, version, plural).
    pub(crate) resource: Resource,
    /// Its kind, as discovery names it.
    pub(crate) api_resource: ApiResource,
    /// Whether it has a `/status` subresource.
    pub(crate) status_subresource: bool,
    /// Whether its objects live in namespaces.
    pub(crate) namespaced: bool,
}

/// What the operator serves now. `None` until first known.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Insights {
    /// The declared resources that are served, with how.
    pub(crate) resources: Option<HashMap<Resource, Served>>,
    /// The namespaces served; `{None}` for the whole cluster.
    pub(crate) namespaces: Option<BTreeSet<Option<String>>>,
}

/// Resolves a `Resource::named` through discovery: the first served
/// resource (core first, then groups in the server's order, each at its
/// preferred version) whose kind, plural, singular or short name matches.
pub(crate) async fn resolve(client: &Client, resource: &Resource) -> Result<Resource, kube::Error> {
    let Some(name) = &resource.lookup else {
        return Ok(resource.clone());
    };
    let (name, group_hint) = match name.split_once('.') {
        Some((n, g)) => (n.to_string(), Some(g.to_string())),
        None => (name.clone(), None),
    };
    let lower = name.to_lowercase();
    let matches = |r: &APIResource| {
        !r.name.contains('/')
            && (r.name == lower
                || r.kind == name
                || r.singular_name == lower
                || r.short_names.as_ref().is_some_and(|s| s.contains(&lower)))
    };
    let mut candidates: Vec<(String, String)> = Vec::new();
    if group_hint.is_none() {
        candidates.push((String::new(), "v1".into()));
    }
    for group in client.list_api_groups().await?.groups {
        if group_hint.as_ref().is_some_and(|g| *g != group.name) {
            continue;
        }
        if let Some(preferred) = group
            .preferred_version
            .or_else(|| group.versions.first().cloned())
        {
            candidates.push((group.name.clone(), preferred.version));
        }
    }
    for (group, version) in candidates {
        let list = match resources_of(client, &group, &version).await {
            Ok(list) => list,
            // A group listed a moment ago may be gone (a CRD deleted).
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        };
        if let Some(found) = list.iter().find(|r| matches(r)) {
            return Ok(Resource::new(&group, &version, &found.name));
        }
    }
    Err(missing(name))
}

fn missing(name: String) -> kube::Error {
    kube::Error::Discovery(kube::error::DiscoveryError::MissingResource(name))
}

/// The resources a group version serves (the core group as `""`).
async fn resources_of(
    client: &Client,
    group: &str,
    version: &str,
) -> Result<Vec<APIResource>, kube::Error> {
    let list = if group.is_empty() {
        client.list_core_api_resources(version).await?
    } else {
        client
            .list_api_group_resources(&format!("{group}/{version}"))
            .await?
    };
    Ok(list.resources)
}

/// How the cluster serves `resource` (already resolved), through discovery.
///
/// # Errors
/// A discovery error naming the resource when it is not served, or when
/// it cannot be both listed and watched; the API's error otherwise.
pub(crate) async fn discover(client: &Client, resource: &Resource) -> Result<Served, kube::Error> {
    let list = match resources_of(client, &resource.group, &resource.version).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        other => other?,
    };
    let Some(main) = list.iter().find(|r| r.name == resource.plural) else {
        return Err(missing(resource.plural.clone()));
    };
    if !["list", "watch"]
        .iter()
        .all(|v| main.verbs.iter().any(|have| have == v))
    {
        return Err(kube::Error::Discovery(
            kube::error::DiscoveryError::MissingResource(format!(
                "{resource} (not watchable: verbs {:?})",
                main.verbs
            )),
        ));
    }
    let status = list
        .iter()
        .any(|r| r.name == format!("{}/status", resource.plural));
    Ok(Served {
        resource: resource.clone(),
        api_resource: ApiResource {
            group: resource.group.clone(),
            version: resource.version.clone(),
            api_version: resource.api_version(),
            kind: main.kind.clone(),
            plural: resource.plural.clone(),
        },
        status_subresource: status,
        namespaced: main.namespaced,
    })
}

/// One resource's scan: served, not served, or unknown (an API error:
/// whatever was known before stays).
enum Scanned {
    Served(Served),
    Missing,
    Failed(kube::Error),
}

async fn scan_one(client: &Client, declared: &Resource) -> Scanned {
    let resolved = match resolve(client, declared).await {
        Ok(r) => r,
        Err(kube::Error::Discovery(_)) => return Scanned::Missing,
        Err(e) => return Scanned::Failed(e),
    };
    match discover(client, &resolved).await {
        Ok(served) => Scanned::Served(served),
        Err(kube::Error::Discovery(_)) => Scanned::Missing,
        Err(e) => Scanned::Failed(e),
    }
}

/// Scans every declared resource; updates `served` and reports which are
/// unresolved now.
async fn scan(
    logger: &Logger,
    client: &Client,
    declared: &[Resource],
    served: &mut HashMap<Resource, Served>,
) -> BTreeSet<String> {
    let mut unresolved = BTreeSet::new();
    for resource in declared {
        match scan_one(client, resource).await {
            Scanned::Served(s) => {
                served.insert(resource.clone(), s);
            }
            Scanned::Missing => {
                served.remove(resource);
                unresolved.insert(resource.to_string());
            }
            Scanned::Failed(e) => {
                logger.warn(format!(
                    "Scanning the cluster for {resource} failed; keeping what was known: {}",
                    explain(&e)
                ));
                if !served.contains_key(resource) {
                    unresolved.insert(resource.to_string());
                }
            }
        }
    }
    unresolved
}

/// Keeps `insights.resources` current until `stop` fires.
pub(crate) async fn observe_resources(
    client: Client,
    settings: std::sync::Arc<Settings>,
    declared: Vec<Resource>,
    insights: std::sync::Arc<watch::Sender<Insights>>,
    mut stop: watch::Receiver<bool>,
) {
    let logger = Logger::operator(settings.log_sink.clone());
    let mut served = HashMap::new();
    let mut reported = BTreeSet::new();
    let mut publish = |served: &HashMap<Resource, Served>, unresolved: BTreeSet<String>| {
        if !unresolved.is_empty() && unresolved != reported {
            let names: Vec<&str> = unresolved.iter().map(String::as_str).collect();
            logger.warn(format!(
                "Unresolved resources cannot be served (try creating their CRDs): {}",
                names.join(", ")
            ));
        }
        reported = unresolved;
        insights.send_if_modified(|i| {
            let changed = i.resources.as_ref() != Some(served);
            i.resources = Some(served.clone());
            changed
        });
    };
    let unresolved = scan(&logger, &client, &declared, &mut served).await;
    publish(&served, unresolved);
    if settings.scanning.disabled {
        return;
    }
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
    // A scan in progress is work in progress to the observer, so that a
    // harness waits for the watches a new CRD calls for.
    let observe = |f: &dyn Fn(&crate::observing::Observer)| {
        if let Some(o) = &settings.observer {
            f(o);
        }
    };
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(event) = event else { return };
        observe(&|o| o.detached(1));
        let mut events = vec![event];
        // Several CRDs applied at once: one scan for all of them.
        while let Some(Some(more)) = stream.next().now_or_never() {
            events.push(more);
        }
        let mut rescan = false;
        for event in events {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                // A listing (the first, or after a broken watch) may show
                // what changed since the last scan.
                Ok(watcher::Event::InitDone) => rescan = true,
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => rescan = true,
                Err(e) if crate::forbidden::is_forbidden(&e) => {
                    logger.warn(format!(
                        "Not enough permissions to watch for resources: changes \
                         (creation/deletion/updates) will not be noticed; the resources \
                         are only refreshed on operator restarts. {}",
                        explain_watch(&e)
                    ));
                    observe(&|o| o.detached(-1));
                    return;
                }
                Err(e) => logger.warn(format!(
                    "Watching CustomResourceDefinitions failed; retrying: {}",
                    explain_watch(&e)
                )),
            }
        }
        if rescan {
            let unresolved = scan(&logger, &client, &declared, &mut served).await;
            publish(&served, unresolved);
        }
        observe(&|o| o.detached(-1));
    }
}

/// Whether a namespace is gone for good: deleted, or terminating with
/// nothing left to block it (Kopf's rule: a terminating namespace is
/// served until its conditions show it can go).
fn is_gone(logger: &Logger, ns: &Namespace) -> bool {
    let conditions = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .filter(|c| !c.is_empty());
    match (&ns.metadata.deletion_timestamp, conditions) {
        (Some(_), Some(conditions)) => {
            let blockers: Vec<String> = conditions
                .iter()
                .filter(|c| c.status == "True")
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.reason.as_deref().unwrap_or_default(),
                        c.message.as_deref().unwrap_or_default()
                    )
                })
                .collect();
            if blockers.is_empty() {
                true
            } else {
                logger.debug(format!(
                    "Namespace {:?} termination pending: {}",
                    ns.metadata.name.as_deref().unwrap_or_default(),
                    blockers.join("; ")
                ));
                false
            }
        }
        _ => false,
    }
}

/// Keeps `insights.namespaces` current until `stop` fires.
pub(crate) async fn observe_namespaces(
    client: Client,
    settings: std::sync::Arc<Settings>,
    insights: std::sync::Arc<watch::Sender<Insights>>,
    mut stop: watch::Receiver<bool>,
) {
    let logger = Logger::operator(settings.log_sink.clone());
    let patterns = settings.watching.namespaces.clone();
    let set = |names: BTreeSet<Option<String>>| {
        insights.send_if_modified(|i| {
            let changed = i.namespaces.as_ref() != Some(&names);
            i.namespaces = Some(names);
            changed
        });
    };
    let specific = || -> BTreeSet<Option<String>> {
        specific_namespaces(&patterns)
            .into_iter()
            .map(Some)
            .collect()
    };
    if patterns.is_empty() {
        return set(BTreeSet::from([None]));
    }
    if settings.scanning.disabled {
        return set(specific());
    }
    let serves = |name: &str| patterns.iter().any(|p| match_namespace(name, p));

    let api: Api<Namespace> = Api::all(client);
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
    // Namespaces served now, and (while listing) the ones listed so far.
    let mut current: BTreeSet<Option<String>> = BTreeSet::new();
    let mut listing: Option<BTreeSet<Option<String>>> = None;
    let mut known = false;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Init) => listing = Some(BTreeSet::new()),
            Ok(watcher::Event::InitApply(ns)) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                if serves(&name) && !is_gone(&logger, &ns) {
                    listing.get_or_insert_default().insert(Some(name));
                }
            }
            Ok(watcher::Event::InitDone) => {
                current = listing.take().unwrap_or_default();
                known = true;
                set(current.clone());
            }
            Ok(watcher::Event::Apply(ns)) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                if is_gone(&logger, &ns) {
                    current.remove(&Some(name));
                } else if serves(&name) {
                    current.insert(Some(name));
                }
                set(current.clone());
            }
            Ok(watcher::Event::Delete(ns)) => {
                current.remove(&ns.metadata.name.clone());
                set(current.clone());
            }
            Err(e) if crate::forbidden::is_forbidden(&e) => {
                if known {
                    logger.warn(format!(
                        "Not enough permissions to watch for namespaces: changes \
                         (deletion/creation) will not be noticed; the namespaces are \
                         only refreshed on operator restarts. {}",
                        explain_watch(&e)
                    ));
                } else {
                    let names = specific_namespaces(&patterns);
                    logger.warn(format!(
                        "Not enough permissions to list namespaces. Falling back to a list \
                         of namespaces which are assumed to exist: {names:?}. {}",
                        explain_watch(&e)
                    ));
                    set(specific());
                }
                return;
            }
            Err(e) => logger.warn(format!(
                "Watching namespaces failed; retrying: {}",
                explain_watch(&e)
            )),
        }
    }
}
