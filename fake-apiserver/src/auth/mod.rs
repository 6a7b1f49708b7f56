//! Who a request is, and what it may do (kube-apiserver's
//! `authentication` and `authorization`), and the review APIs that ask
//! them (`reviews`).
//!
//! Today every request is the cluster's administrator and everything is
//! allowed ([`AlwaysAllow`], what `--authorization-mode=AlwaysAllow`
//! answers); an RBAC authorizer implements [`Authorizer`] next to it.
//!
//! Uses `apimachinery`; used by `endpoints`.

pub mod reviews;

use serde_json::{json, Value};

/// An authenticated identity (`authentication.k8s.io/v1` UserInfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// `username`.
    pub username: String,
    /// `uid` (empty when none).
    pub uid: String,
    /// `groups`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The administrator every request is today: the identity of the
    /// written kubeconfig, in `system:masters`.
    pub fn admin() -> Self {
        UserInfo {
            username: "system:admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// As a `UserInfo` object.
    pub fn to_value(&self) -> Value {
        let mut v = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = Value::String(self.uid.clone());
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

/// A rule a user holds, as `SelfSubjectRulesReview` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Resource rules (`verbs`, `apiGroups`, `resources`, `resourceNames`).
    pub resource_rules: Vec<Value>,
    /// Non-resource rules (`verbs`, `nonResourceURLs`).
    pub non_resource_rules: Vec<Value>,
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
        Rules {
            resource_rules: vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
            non_resource_rules: vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
            incomplete: false,
        }
    }
}
