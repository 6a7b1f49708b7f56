//! Who a request is, and what it may do (kube-apiserver's
//! `authentication` and `authorization`), and the review APIs that ask
//! them.
//!
//! Layout, lowest first:
//!
//! - this file: the vocabulary ([`UserInfo`], [`Attributes`],
//!   [`Decision`], the [`Authorizer`] trait, [`AlwaysAllow`]) and
//!   kube-apiserver's 403 ([`forbidden`]);
//! - `rules`: one RBAC `PolicyRule`: matching, covering, printing;
//! - `authn`: tokens (the administrator's, a static token file's,
//!   ServiceAccount JWTs) and the anonymous user; `pki`: the CA of
//!   `--tls`, client certificates;
//! - `aggregation`: ClusterRole aggregation and the count of RBAC writes;
//!   `rbac`: the RBAC authorizer over the store; `escalation`: what a
//!   role or binding write may grant; `impersonation`: `Impersonate-*`;
//! - `gate`: the server's authenticator and current authorizer together;
//!   `reviews`: the review APIs; `bootstrap.yaml`: kube-apiserver's
//!   bootstrap RBAC policy.
//!
//! Uses `apimachinery`, `storage` and `registry` (`rest::Objects`); used
//! by `endpoints` and `server`.

pub mod aggregation;
pub mod authn;
pub mod escalation;
pub mod gate;
pub mod impersonation;
pub mod pki;
pub mod rbac;
pub mod reviews;
pub mod rules;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::apimachinery::errors::ApiError;

pub use rules::Rule;

/// An authenticated identity (`authentication.k8s.io/v1` UserInfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// `username`.
    pub username: String,
    /// `uid` (empty when none).
    pub uid: String,
    /// `groups`.
    pub groups: Vec<String>,
    /// `extra`.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The administrator every request is today: the identity of the
    /// written kubeconfig, in `system:masters`.
    pub fn admin() -> Self {
        UserInfo {
            username: "system:admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// As a `UserInfo` object.
    pub fn to_value(&self) -> Value {
        let mut v = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = Value::String(self.uid.clone());
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }
}

/// What a request wants to do: kube-apiserver's authorizer attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `create`, ... (or an HTTP verb for non-resource URLs).
    pub verb: String,
    /// API group of the resource (empty for core).
    pub group: String,
    /// The resource's plural, empty for a non-resource request.
    pub resource: String,
    /// The subresource, if any.
    pub subresource: String,
    /// The namespace, if any.
    pub namespace: String,
    /// The object's name, if any.
    pub name: String,
    /// The URL path of a non-resource request.
    pub path: String,
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why, in the authorizer's words (may be empty).
    pub reason: String,
}

/// The rules a user holds, as `SelfSubjectRulesReview` lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Resource rules (`verbs`, `apiGroups`, `resources`, `resourceNames`).
    pub resource_rules: Vec<Rule>,
    /// Non-resource rules (`verbs`, `nonResourceURLs`).
    pub non_resource_rules: Vec<Rule>,
    /// Whether the list may be missing rules.
    pub incomplete: bool,
}

/// Decides whether a user may do something, and lists what it may do.
pub trait Authorizer: Send + Sync {
    /// Whether `user` may do `attrs`.
    fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision;

    /// What `user` may do in `namespace`.
    fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules;
}

/// Everything is allowed, as kube-apiserver's `AlwaysAllow` mode answers
/// (with no reason).
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _user: &UserInfo, _attrs: &Attributes) -> Decision {
        Decision {
            allowed: true,
            reason: String::new(),
        }
    }

    fn rules_for(&self, _user: &UserInfo, _namespace: &str) -> Rules {
        let all = || vec!["*".to_string()];
        Rules {
            resource_rules: vec![Rule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                ..Default::default()
            }],
            non_resource_rules: vec![Rule {
                verbs: all(),
                non_resource_urls: all(),
                ..Default::default()
            }],
            incomplete: false,
        }
    }
}

/// The strings of the JSON array at `key` of `v` (non-strings skipped;
/// empty when missing).
pub(crate) fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The 403 kube-apiserver answers when `user` may not do `attrs`:
/// `configmaps is forbidden: User "u" cannot list resource "configmaps" in
/// API group "" in the namespace "default"` (with the authorizer's reason
/// appended, if any).
pub fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let mut why = if attrs.resource.is_empty() {
        format!(
            "User {:?} cannot {} path {:?}",
            user.username, attrs.verb, attrs.path
        )
    } else {
        let resource = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        let scope = if attrs.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", attrs.namespace)
        };
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.username, attrs.verb, attrs.group
        )
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    ApiError::forbidden(&attrs.group, &attrs.resource, &attrs.name, &why)
}
