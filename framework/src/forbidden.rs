//! API errors as a person reads them: a 403 from RBAC spelled out as the
//! permission that is missing, and the rule that would grant it.

/// `e` for a log line: for a 403 with kube-apiserver's RBAC message, what
/// the operator may not do and the rule to grant; else `e` itself.
pub(crate) fn explain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            missing(&s.message).unwrap_or_else(|| e.to_string())
        }
        other => other.to_string(),
    }
}

/// A watcher's error for a log line, a 403 explained as [`explain`] does.
pub(crate) fn explain_watch(e: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error;
    match e {
        Error::InitialListFailed(api) | Error::WatchStartFailed(api) | Error::WatchFailed(api) => {
            explain(api)
        }
        other => other.to_string(),
    }
}

/// Whether a watcher's error is the API's 403 (RBAC denied it).
pub(crate) fn is_forbidden(e: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error;
    matches!(
        e,
        Error::InitialListFailed(kube::Error::Api(s))
            | Error::WatchStartFailed(kube::Error::Api(s))
            | Error::WatchFailed(kube::Error::Api(s)) if s.code == 403
    )
}

/// Reads kube-apiserver's `User "U" cannot VERB resource "R" in API group
/// "G" in the namespace "NS"` (or `at the cluster scope`).
fn missing(message: &str) -> Option<String> {
    let rest = &message[message.find("User \"")? + 6..];
    let (user, rest) = rest.split_once("\" cannot ")?;
    let (verb, rest) = rest.split_once(" resource \"")?;
    let (resource, rest) = rest.split_once("\" in API group \"")?;
    let (group, scope) = rest.split_once("\" ")?;
    let rule = format!("{{apiGroups: [{group:?}], resources: [{resource:?}], verbs: [{verb}]}}");
    let (scope, grant) = match scope.strip_prefix("in the namespace \"") {
        Some(ns) => {
            let ns = ns.split('"').next().unwrap_or_default();
            (
                format!("in the namespace {ns:?}"),
                format!("a Role in {ns:?} (or a ClusterRole) bound to it with {rule}"),
            )
        }
        None => (
            "at the cluster scope".to_string(),
            format!("a ClusterRole bound to it with {rule}"),
        ),
    };
    let group_shown = if group.is_empty() {
        "the core API group".to_string()
    } else {
        format!("API group {group:?}")
    };
    Some(format!(
        "Forbidden: {user} may not {verb} {resource} ({group_shown}) {scope}; grant {grant}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_should_name_the_missing_rule() {
        let said = missing(
            r#"events is forbidden: User "system:serviceaccount:ops:op" cannot create resource "events" in API group "" in the namespace "default""#,
        );
        assert_eq!(
            said.as_deref(),
            Some(
                r#"Forbidden: system:serviceaccount:ops:op may not create events (the core API group) in the namespace "default"; grant a Role in "default" (or a ClusterRole) bound to it with {apiGroups: [""], resources: ["events"], verbs: [create]}"#
            )
        );
        let said = missing(
            r#"clusterkopfpeerings.kopf.dev is forbidden: User "op" cannot list resource "clusterkopfpeerings" in API group "kopf.dev" at the cluster scope"#,
        );
        assert_eq!(
            said.as_deref(),
            Some(
                r#"Forbidden: op may not list clusterkopfpeerings (API group "kopf.dev") at the cluster scope; grant a ClusterRole bound to it with {apiGroups: ["kopf.dev"], resources: ["clusterkopfpeerings"], verbs: [list]}"#
            )
        );
        assert_eq!(missing("something else"), None);
    }
}
