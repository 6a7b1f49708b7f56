//! Impersonation (`Impersonate-User`, `-Uid`, `-Group`, `-Extra-*`
//! headers, what `kubectl --as` sends), as kube-apiserver's filter does
//! it: each impersonated attribute needs the `impersonate` verb on it
//! (`users`, `serviceaccounts`, `groups`, `authentication.k8s.io`'s `uids`
//! and `userextras/KEY`), and the request is then that user.

use std::collections::BTreeMap;

use crate::{
    apimachinery::errors::ApiError,
    auth::{authn, forbidden, Attributes, Authorizer, UserInfo},
};

/// The impersonation headers of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `Impersonate-User`.
    pub user: Option<String>,
    /// `Impersonate-Uid`.
    pub uid: Option<String>,
    /// Every `Impersonate-Group`.
    pub groups: Vec<String>,
    /// `Impersonate-Extra-KEY` (key unescaped, lowercase), every value.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// Whether the request impersonates anything.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.uid.is_none() && self.groups.is_empty() && self.extra.is_empty()
    }
}

/// The user `user` acts as.
///
/// # Errors
/// 403 for an attribute `user` may not impersonate (kube's message); 500
/// for groups, uid or extras without a user, as kube-apiserver answers.
pub fn impersonate(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    wanted: &Request,
) -> Result<UserInfo, ApiError> {
    let Some(name) = wanted.user.clone() else {
        return Err(ApiError::internal(
            "requested impersonation of groups, a uid or extras without impersonating a user",
        ));
    };
    let check = |attrs: Attributes| {
        let decision = authorizer.authorize(user, &attrs);
        if decision.allowed {
            Ok(())
        } else {
            Err(forbidden(user, &attrs, &decision.reason))
        }
    };
    let impersonate =
        |group: &str, resource: &str, sub: &str, namespace: &str, name: &str| Attributes {
            verb: "impersonate".into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: namespace.into(),
            name: name.into(),
            path: String::new(),
        };
    let account = authn::service_account_of(&name);
    match account {
        Some((ns, sa)) => check(impersonate("", "serviceaccounts", "", ns, sa))?,
        None => check(impersonate("", "users", "", "", &name))?,
    }
    for group in &wanted.groups {
        check(impersonate("", "groups", "", "", group))?;
    }
    if let Some(uid) = &wanted.uid {
        check(impersonate("authentication.k8s.io", "uids", "", "", uid))?;
    }
    for (key, values) in &wanted.extra {
        for value in values {
            check(impersonate(
                "authentication.k8s.io",
                "userextras",
                key,
                "",
                value,
            ))?;
        }
    }
    let mut groups = wanted.groups.clone();
    if let Some((ns, _)) = account {
        if groups.is_empty() {
            groups = authn::service_account_groups(ns);
        }
    }
    let always = if name == "system:anonymous" {
        "system:unauthenticated"
    } else {
        authn::AUTHENTICATED
    };
    if !groups.iter().any(|g| g == always) {
        groups.push(always.into());
    }
    Ok(UserInfo {
        username: name,
        uid: wanted.uid.clone().unwrap_or_default(),
        groups,
        extra: wanted.extra.clone(),
    })
}
