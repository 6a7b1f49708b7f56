//! Who a request is, and what it asks to do, in authorizer terms: the
//! bearer token (or a verified client certificate's identity) through the
//! authenticator, then the impersonation headers; and the attributes of a
//! non-resource request.

use std::{collections::BTreeMap, sync::Arc};

use http::{header, request::Parts, Method};

use crate::{
    apimachinery::errors::ApiError,
    auth::{impersonation, Attributes, UserInfo},
    endpoints::Shared,
};

/// What the TLS client certificate of a connection says (put in each of
/// its requests' extensions by the TLS accept loop): the user its CN and
/// O's name, or `None` for a certificate no trusted CA signed.
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Option<UserInfo>);

/// The user a request acts as.
///
/// # Errors
/// 401 when its credentials authenticate no one; 403 (or 500) for an
/// impersonation it may not do.
pub(super) fn identify(shared: &Shared, parts: &Parts) -> Result<Arc<UserInfo>, ApiError> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let gate = &shared.gate;
    // As kube-apiserver's authenticators go: a valid client certificate
    // first, then a bearer token; one that authenticates no one is a 401
    // (a bad certificate with a good token is the token's user).
    let cert = parts.extensions.get::<ClientCertificate>();
    let user = match (cert, bearer) {
        (Some(ClientCertificate(Some(user))), _) => Arc::new(user.clone()),
        (Some(ClientCertificate(None)), None) => return Err(ApiError::unauthorized()),
        (_, bearer) => {
            let now = || shared.api.clock.now().as_second();
            gate.authn()
                .authenticate(bearer, &*shared.api, &now)
                .ok_or_else(ApiError::unauthorized)?
        }
    };
    // Most requests impersonate no one: one look at the header names.
    let impersonating = parts
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("impersonate-"));
    if !impersonating {
        return Ok(user);
    }
    let wanted = impersonation_headers(parts);
    if wanted.is_empty() {
        return Ok(user);
    }
    impersonation::impersonate(gate.authorizer(), &user, &wanted).map(Arc::new)
}

fn impersonation_headers(parts: &Parts) -> impersonation::Request {
    let text = |v: &http::HeaderValue| v.to_str().unwrap_or_default().to_string();
    let one = |name: &str| parts.headers.get(name).map(text).filter(|v| !v.is_empty());
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key: String = form_urlencoded::parse(format!("k={key}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| key.to_string());
            extra
                .entry(key.to_ascii_lowercase())
                .or_default()
                .push(text(value));
        }
    }
    impersonation::Request {
        user: one("impersonate-user"),
        uid: one("impersonate-uid"),
        groups: parts
            .headers
            .get_all("impersonate-group")
            .iter()
            .map(text)
            .collect(),
        extra,
    }
}

/// The attributes of a request for a non-resource URL: its path, and its
/// method in lower case as the verb, as kube-apiserver reads them.
pub(super) fn non_resource(method: &Method, path: &str) -> Attributes {
    Attributes {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
        ..Default::default()
    }
}
