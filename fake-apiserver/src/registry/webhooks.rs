//! Mutating and validating webhook configurations
//! (`admissionregistration.k8s.io/v1`): kube-apiserver's defaults and
//! validation, with its messages, so that a configuration a real cluster
//! refuses is refused here too (and one it accepts is stored as it would
//! store it).

use serde_json::{json, Value};

use crate::apimachinery::errors::Cause;

/// The supported `sideEffects` of v1 webhooks.
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
/// The `admissionReviewVersions` the server speaks.
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];
/// The supported `failurePolicy` values.
const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];

/// Whether `(group, plural)` is a webhook configuration kind, and whether
/// it is the mutating one.
pub fn configuration_kind(group: &str, plural: &str) -> Option<bool> {
    match (group, plural) {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => Some(true),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => Some(false),
        _ => None,
    }
}

/// Fills in what kube-apiserver defaults in each webhook (`SetDefaults_*`
/// of admissionregistration/v1).
pub fn default(config: &mut Value, mutating: bool) {
    let Some(webhooks) = config.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for webhook in webhooks.iter_mut().filter_map(Value::as_object_mut) {
        let mut set = |key: &str, value: Value| {
            if webhook.get(key).is_none_or(Value::is_null) {
                webhook.insert(key.into(), value);
            }
        };
        set("failurePolicy", json!("Fail"));
        set("matchPolicy", json!("Equivalent"));
        set("namespaceSelector", json!({}));
        set("objectSelector", json!({}));
        set("timeoutSeconds", json!(10));
        if mutating {
            set("reinvocationPolicy", json!("Never"));
        }
        if let Some(rules) = webhook.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                rule.entry("scope").or_insert_with(|| json!("*"));
            }
        }
        if let Some(service) = webhook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            service.entry("port").or_insert_with(|| json!(443));
        }
    }
}

/// Every problem kube-apiserver's validation finds in a configuration.
pub fn validate(config: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let webhooks = config
        .get("webhooks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut names = std::collections::HashSet::new();
    for (i, webhook) in webhooks.iter().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        let name = webhook
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(&at("name"), ""));
        } else if name.split('.').filter(|s| !s.is_empty()).count() < 3 {
            causes.push(Cause::invalid(
                &at("name"),
                &json!(name),
                "should be a domain with at least three segments separated by dots",
            ));
        } else if !names.insert(name) {
            causes.push(Cause::duplicate(&at("name"), &json!(name)));
        }
        validate_client_config(
            webhook.get("clientConfig"),
            &at("clientConfig"),
            &mut causes,
        );
        match webhook.get("sideEffects").and_then(Value::as_str) {
            None => causes.push(Cause::required(
                &at("sideEffects"),
                &format!("must specify one of {}", SIDE_EFFECTS.join(", ")),
            )),
            Some(s) if !SIDE_EFFECTS.contains(&s) => causes.push(Cause::not_supported(
                &at("sideEffects"),
                &json!(s),
                SIDE_EFFECTS,
            )),
            Some(_) => {}
        }
        let versions: Vec<&str> = webhook
            .get("admissionReviewVersions")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            causes.push(Cause::required(
                &at("admissionReviewVersions"),
                &format!("must specify one of {}", REVIEW_VERSIONS.join(", ")),
            ));
        } else if !versions.iter().any(|v| REVIEW_VERSIONS.contains(v)) {
            causes.push(Cause::invalid(
                &at("admissionReviewVersions"),
                &json!(versions),
                &format!(
                    "must include at least one of {}",
                    REVIEW_VERSIONS.join(", ")
                ),
            ));
        }
        if let Some(timeout) = webhook.get("timeoutSeconds").filter(|t| !t.is_null()) {
            if !timeout.as_i64().is_some_and(|t| (1..=30).contains(&t)) {
                causes.push(Cause::invalid(
                    &at("timeoutSeconds"),
                    timeout,
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
        if let Some(policy) = webhook.get("failurePolicy").and_then(Value::as_str) {
            if !FAILURE_POLICIES.contains(&policy) {
                causes.push(Cause::not_supported(
                    &at("failurePolicy"),
                    &json!(policy),
                    FAILURE_POLICIES,
                ));
            }
        }
    }
    causes
}

/// `clientConfig`: exactly one of `url` (https, with a host, no user,
/// query or fragment) or `service` (name, namespace, a valid port).
fn validate_client_config(config: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let url = config.and_then(|c| c.get("url")).and_then(Value::as_str);
    let service = config
        .and_then(|c| c.get("service"))
        .filter(|s| s.is_object());
    match (url, service) {
        (Some(url), None) => validate_url(url, &format!("{at}.url"), causes),
        (None, Some(service)) => {
            for key in ["name", "namespace"] {
                if service
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(&format!("{at}.service.{key}"), ""));
                }
            }
            if let Some(port) = service.get("port").filter(|p| !p.is_null()) {
                if !port.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
                    causes.push(Cause::invalid(
                        &format!("{at}.service.port"),
                        port,
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        _ => causes.push(Cause::required(
            at,
            "exactly one of url or service is required",
        )),
    }
}

/// A webhook URL as kube-apiserver's `ValidateWebhookURL` checks it (but
/// for the scheme, see below).
fn validate_url(url: &str, at: &str, causes: &mut Vec<Cause>) {
    const FORM: &str = "; desired format: https://host[/path]";
    // kube-apiserver also refuses any scheme but https. The fake still calls
    // http:// webhooks, which the framework's default (plain) webhook
    // server and these tests register; that check waits for TLS webhook
    // serving to be the framework's default.
    let (_scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    if host.is_empty() {
        causes.push(Cause::invalid(
            at,
            &json!(host),
            &format!("host must be specified{FORM}"),
        ));
    }
    if let Some(user) = user {
        causes.push(Cause::invalid(
            at,
            &json!(user),
            "user information is not permitted in the URL",
        ));
    }
    let (before_fragment, fragment) = tail.split_once('#').unwrap_or((tail, ""));
    if !fragment.is_empty() {
        causes.push(Cause::invalid(
            at,
            &json!(fragment),
            "fragments are not permitted in the URL",
        ));
    }
    if let Some((_, query)) = before_fragment
        .split_once('?')
        .filter(|(_, q)| !q.is_empty())
    {
        causes.push(Cause::invalid(
            at,
            &json!(query),
            "query parameters are not permitted in the URL",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(extra: Value) -> Value {
        let mut w = json!({"name": "check.example.com", "clientConfig": {"url": "https://127.0.0.1:9443/validate"},
                           "sideEffects": "None", "admissionReviewVersions": ["v1"]});
        for (k, v) in extra.as_object().unwrap() {
            w[k] = v.clone();
        }
        json!({"webhooks": [w]})
    }

    fn messages(config: &Value) -> Vec<String> {
        validate(config)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    /// The cases kube-apiserver's own validation tests name, with its words.
    #[test]
    fn configurations_should_be_validated_as_kube_apiserver_does() {
        assert!(messages(&webhook(json!({}))).is_empty());
        assert_eq!(
            messages(&webhook(json!({"timeoutSeconds": 31}))),
            ["webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"]
        );
        assert_eq!(
            messages(&webhook(json!({"timeoutSeconds": 0}))),
            ["webhooks[0].timeoutSeconds: Invalid value: 0: the timeout value must be between 1 and 30 seconds"]
        );
        assert_eq!(
            messages(&webhook(json!({"clientConfig": {"url": "https:///x"}}))),
            ["webhooks[0].clientConfig.url: Invalid value: \"\": host must be specified; desired format: https://host[/path]"]
        );
        assert_eq!(
            messages(&webhook(json!({"sideEffects": null, "admissionReviewVersions": null}))),
            [
                "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
                "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            ]
        );
        assert_eq!(
            messages(&webhook(json!({"sideEffects": "Some", "failurePolicy": "other"}))),
            [
                "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
                "webhooks[0].failurePolicy: Unsupported value: \"other\": supported values: \"Fail\", \"Ignore\"",
            ]
        );
        assert_eq!(
            messages(&webhook(json!({"name": "k8s.io", "clientConfig": {}}))),
            [
                "webhooks[0].name: Invalid value: \"k8s.io\": should be a domain with at least three segments separated by dots",
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
            ]
        );
        assert_eq!(
            messages(&webhook(json!({"clientConfig": {"url": "https://harry@example.com/?a=b#frag"}}))),
            [
                "webhooks[0].clientConfig.url: Invalid value: \"harry\": user information is not permitted in the URL",
                "webhooks[0].clientConfig.url: Invalid value: \"frag\": fragments are not permitted in the URL",
                "webhooks[0].clientConfig.url: Invalid value: \"a=b\": query parameters are not permitted in the URL",
            ]
        );
    }

    #[test]
    fn webhooks_should_get_kube_apiserver_defaults() {
        let mut config = json!({"webhooks": [{"name": "m.example.com", "rules": [{"operations": ["CREATE"]}],
                                              "clientConfig": {"service": {"name": "s", "namespace": "n"}}}]});
        default(&mut config, true);
        let w = &config["webhooks"][0];
        assert_eq!(
            (
                &w["failurePolicy"],
                &w["matchPolicy"],
                &w["timeoutSeconds"],
                &w["reinvocationPolicy"]
            ),
            (
                &json!("Fail"),
                &json!("Equivalent"),
                &json!(10),
                &json!("Never")
            )
        );
        assert_eq!(w["rules"][0]["scope"], "*");
        assert_eq!(w["clientConfig"]["service"]["port"], 443);
        assert_eq!(
            (&w["namespaceSelector"], &w["objectSelector"]),
            (&json!({}), &json!({}))
        );
    }
}
