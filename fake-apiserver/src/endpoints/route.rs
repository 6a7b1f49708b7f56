//! URL grammar: a request path and query become a typed [`Route`] and
//! options, or the `Status` kube-apiserver answers for a bad one.

use std::time::Duration;

use crate::{
    apimachinery::errors::ApiError,
    registry::{
        resources::Resources,
        rest::{DeleteOptions, ListOptions, Target},
    },
    storage::selector::{FieldSelector, LabelSelector},
};

/// What a path addresses.
#[derive(Debug)]
pub(crate) enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion(String, String),
    OpenApiV3Index,
    OpenApiV3(String, String),
    Resource(Target, Option<String>),
}

/// Parses a request path.
pub(crate) fn parse(path: &str, resources: &Resources) -> Result<Route, ApiError> {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let route = match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", "v1"] => Route::GroupVersion(String::new(), "v1".into()),
        ["apis", group, version] => Route::GroupVersion(group.to_string(), version.to_string()),
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", "v1"] => Route::OpenApiV3(String::new(), "v1".into()),
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiV3(group.to_string(), version.to_string())
        }
        ["api", "v1", rest @ ..] => resource(resources, "", "v1", rest)?,
        ["apis", group, version, rest @ ..] => resource(resources, group, version, rest)?,
        _ => return Err(ApiError::no_route()),
    };
    Ok(route)
}

fn resource(
    resources: &Resources,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Route, ApiError> {
    // /namespaces/{ns}/{plural}[/{name}[/{sub}]], unless it is the namespace's own subresource.
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced_path {
        (rest[1], &rest[2..])
    } else {
        ("", rest)
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, "", None),
        [plural, name] => (*plural, *name, None),
        [plural, name, sub] => (*plural, *name, Some(sub.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    let kind = resources
        .lookup(group, version, plural)
        .ok_or_else(ApiError::no_route)?;
    if !kind.namespaced && !namespace.is_empty() {
        return Err(ApiError::no_route());
    }
    if kind.namespaced && namespace.is_empty() && !name.is_empty() {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &sub {
        let served = match sub.as_str() {
            "status" => kind.has_status(version),
            "scale" => kind.version(version).is_some_and(|v| v.scale.is_some()),
            other => kind.actions().iter().any(|a| a.name == other),
        };
        if !served {
            return Err(ApiError::no_route());
        }
    }
    if name.is_empty() && sub.is_none() && namespaced_path && namespace.is_empty() {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource(
        Target {
            kind,
            version: version.into(),
            namespace: namespace.into(),
            name: name.into(),
        },
        sub,
    ))
}

/// The query parameters the verbs understand.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) watch: bool,
    pub(crate) list: ListOptions,
    pub(crate) dry_run: bool,
    pub(crate) delete: DeleteOptions,
    pub(crate) include_object: Option<String>,
    pub(crate) field_manager: Option<String>,
    /// `fieldValidation=Strict`: unknown fields are refused (not pruned).
    pub(crate) strict: bool,
    /// `fieldValidation=Ignore`: unknown fields are pruned silently.
    pub(crate) ignore_unknown: bool,
    /// `force=true` (server-side apply takes conflicting fields over).
    pub(crate) force: bool,
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "failed to parse {name}: strconv.ParseBool: parsing {value:?}: invalid syntax"
        ))),
    }
}

/// Parses the query string, checking selectors against the kind's field labels.
pub(crate) fn parse_query(query: &str, field_labels: &[&str]) -> Result<Query, ApiError> {
    let mut q = Query::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "watch" => q.watch = parse_bool("watch", &value)?,
            "labelSelector" => q.list.labels = LabelSelector::parse(&value)?,
            "fieldSelector" => q.list.fields = FieldSelector::parse(&value, field_labels)?,
            "limit" => {
                let n: i64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid value for limit: {value:?}"))
                })?;
                q.list.limit = n.max(0) as usize;
            }
            "continue" if !value.is_empty() => q.list.continue_token = Some(value.into_owned()),
            "resourceVersion" => q.list.resource_version = Some(value.into_owned()),
            "resourceVersionMatch" if !value.is_empty() => {
                q.list.resource_version_match = Some(value.into_owned())
            }
            "allowWatchBookmarks" => q.list.bookmarks = parse_bool("allowWatchBookmarks", &value)?,
            "sendInitialEvents" => {
                q.list.send_initial_events = Some(parse_bool("sendInitialEvents", &value)?)
            }
            "timeoutSeconds" => {
                let secs: u64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid value for timeoutSeconds: {value:?}"))
                })?;
                q.list.timeout = Some(Duration::from_secs(secs));
            }
            "dryRun" => {
                if value != "All" {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {value:?}: supported values: \"All\""
                    )));
                }
                q.dry_run = true;
                q.delete.dry_run = true;
            }
            "propagationPolicy" => q.delete.propagation = Some(value.into_owned()),
            "includeObject" => q.include_object = Some(value.into_owned()),
            "fieldManager" => q.field_manager = Some(value.into_owned()),
            "force" => q.force = parse_bool("force", &value)?,
            "fieldValidation" => match value.as_ref() {
                "Strict" => q.strict = true,
                "Ignore" => q.ignore_unknown = true,
                "Warn" | "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
                    )))
                }
            },
            "gracePeriodSeconds" => {
                q.delete.grace_period = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "failed to parse gracePeriodSeconds: strconv.ParseInt: parsing {value:?}: invalid syntax"
                    ))
                })?)
            }
            // Accepted and not needed here: pretty printing.
            _ => {}
        }
    }
    if q.list.continue_token.is_some()
        && q.list
            .resource_version
            .as_deref()
            .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Result<Route, ApiError> {
        parse(path, &Resources::with_builtins())
    }

    #[test]
    fn paths_should_parse_like_kube_apiserver() {
        match route("/api/v1/namespaces/default/configmaps/x").unwrap() {
            Route::Resource(t, None) => {
                assert_eq!(
                    (t.namespace.as_str(), t.name.as_str(), t.kind.kind.as_str()),
                    ("default", "x", "ConfigMap")
                )
            }
            other => panic!("{other:?}"),
        }
        match route("/api/v1/namespaces/default/status").unwrap() {
            Route::Resource(t, Some(sub)) => {
                assert_eq!(
                    (t.kind.kind.as_str(), t.name.as_str(), sub.as_str()),
                    ("Namespace", "default", "status")
                )
            }
            other => panic!("{other:?}"),
        }
        match route("/apis/apps/v1/deployments").unwrap() {
            Route::Resource(t, None) => assert!(t.namespace.is_empty() && t.name.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(route("/apis/apps/v1").unwrap(), Route::GroupVersion(g, v) if g == "apps" && v == "v1")
        );
        for bad in [
            "/api/v1/nothings",
            "/api/v1/configmaps/x",
            "/api/v1/namespaces/a/nodes",
            "/api/v1/namespaces/a/configmaps/x/status",
            "/x",
        ] {
            assert_eq!(route(bad).unwrap_err().code, 404, "{bad}");
        }
    }

    #[test]
    fn queries_should_reject_bad_values() {
        assert!(
            parse_query("watch=true&limit=5&labelSelector=a%3Db", &[])
                .unwrap()
                .watch
        );
        assert_eq!(parse_query("limit=x", &[]).unwrap_err().code, 400);
        assert_eq!(parse_query("watch=maybe", &[]).unwrap_err().code, 400);
        assert_eq!(parse_query("dryRun=Some", &[]).unwrap_err().code, 400);
        assert_eq!(
            parse_query("fieldSelector=spec.x%3Dy", &[])
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            parse_query("continue=abc&resourceVersion=5", &[])
                .unwrap_err()
                .code,
            400
        );
    }
}
