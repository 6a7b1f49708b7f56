//! Who a request is (kube-apiserver's authenticators, in its order): the
//! administrator's token of the written kubeconfig, bearer tokens from a
//! static token file (`--token-auth-file`, kube's CSV format),
//! ServiceAccount tokens issued by the TokenRequest API, an identity a
//! verified client certificate carries; and, without credentials, the
//! anonymous user when anonymous requests are allowed.
//!
//! ServiceAccount tokens are JWTs with kube's claims (`iss`, `sub`, `aud`,
//! `exp`, `iat`, `nbf`, `kubernetes.io`), signed with an HMAC key drawn
//! when the server starts. A forged, truncated or expired token, one for
//! another audience, and one whose ServiceAccount (or bound object) is
//! gone, all authenticate no one: 401.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::{hmac, rand::SecureRandom};
use serde_json::{json, Value};

use crate::{apimachinery::resource_key::ResourceKey, auth::UserInfo, registry::rest::Objects};

/// The issuer, and the audience the API server accepts, of its tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";

/// Authenticates requests.
pub struct Authenticator {
    tokens: RwLock<HashMap<String, Arc<UserInfo>>>,
    admin_token: String,
    admin: Arc<UserInfo>,
    anonymous: Option<Arc<UserInfo>>,
    key: hmac::Key,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "static_tokens",
                &self.tokens.read().map(|t| t.len()).unwrap_or_default(),
            )
            .field("anonymous", &self.anonymous.is_some())
            .finish_non_exhaustive()
    }
}

/// A random token: 32 bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // Without the system's randomness no credential is safe: stop.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random number generator works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a token authenticates no one (logged; the client sees only 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Unknown, forged or truncated.
    #[error("invalid bearer token")]
    Invalid,
    /// Past its `exp`.
    #[error("service account token has expired")]
    Expired,
    /// Issued for other audiences.
    #[error("token audiences {0:?} is invalid for the target audiences")]
    Audience(Vec<String>),
    /// Its ServiceAccount or bound object is gone (or replaced).
    #[error("{0}")]
    Gone(String),
}

impl Authenticator {
    /// An authenticator knowing the admin token, the static tokens,
    /// whether requests without credentials are the anonymous user, and
    /// the key ServiceAccount tokens are signed with (default: a random
    /// one, so tokens die with the server).
    pub fn new(
        admin_token: String,
        tokens: HashMap<String, UserInfo>,
        anonymous: bool,
        signing_key: Option<Vec<u8>>,
    ) -> Self {
        let secret = signing_key.unwrap_or_else(|| {
            let mut secret = vec![0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut secret)
                .expect("the system's random number generator works");
            secret
        });
        Authenticator {
            tokens: RwLock::new(tokens.into_iter().map(|(t, u)| (t, Arc::new(u))).collect()),
            admin_token,
            admin: Arc::new(UserInfo::admin()),
            anonymous: anonymous.then(|| Arc::new(self::anonymous())),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// A new bearer token for `user` (the simulated cluster's components,
    /// a test's operator), valid as long as the server runs.
    pub fn token_for(&self, user: UserInfo) -> String {
        let token = random_token();
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.insert(token.clone(), Arc::new(user));
        }
        token
    }

    /// The administrator's token (in `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Whether requests without credentials are allowed in as
    /// `system:anonymous`.
    pub fn allows_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The user a request's bearer token (if any) is, at `now()` (Unix
    /// seconds, asked only for a token that expires); `None` when it is no
    /// one (401). Without a token: the anonymous user, if allowed.
    pub fn authenticate(
        &self,
        bearer: Option<&str>,
        objects: &dyn Objects,
        now: &dyn Fn() -> i64,
    ) -> Option<Arc<UserInfo>> {
        let Some(token) = bearer else {
            return self.anonymous.clone();
        };
        // The common cases first, without allocating.
        if !self.admin_token.is_empty() && token == self.admin_token {
            return Some(self.admin.clone());
        }
        if let Some(user) = self.tokens.read().ok().and_then(|t| t.get(token).cloned()) {
            return Some(user);
        }
        match self.service_account_token(token, &[ISSUER.to_string()], objects, now()) {
            Ok((user, _)) => Some(Arc::new(user)),
            Err(e) => {
                tracing::debug!("unable to authenticate the request: {e}");
                None
            }
        }
    }

    /// The user a token is (TokenReview), for any of `audiences`; with the
    /// audiences it is valid for.
    ///
    /// # Errors
    /// Why it is no one.
    pub fn token_user(
        &self,
        token: &str,
        audiences: &[String],
        objects: &dyn Objects,
        now: i64,
    ) -> Result<(UserInfo, Vec<String>), TokenError> {
        // The administrator's and the token file's tokens are valid for
        // the API server's audience only (kube wraps such authenticators
        // in `WrapAudienceAgnosticToken`).
        let api_audience = || {
            let valid: Vec<String> = audiences.iter().filter(|a| *a == ISSUER).cloned().collect();
            if valid.is_empty() {
                Err(TokenError::Audience(vec![ISSUER.to_string()]))
            } else {
                Ok(valid)
            }
        };
        if !self.admin_token.is_empty() && token == self.admin_token {
            return Ok((UserInfo::admin(), api_audience()?));
        }
        let known = self.tokens.read().ok().and_then(|t| t.get(token).cloned());
        if let Some(user) = known {
            return Ok(((*user).clone(), api_audience()?));
        }
        self.service_account_token(token, audiences, objects, now)
    }

    /// Issues a ServiceAccount token (TokenRequest): valid for `audiences`
    /// (the API server's when empty) from `now` for `seconds`, optionally
    /// bound to an object (`kind`, `name`, `uid`) whose deletion revokes it.
    pub fn issue(
        &self,
        account: &ServiceAccount,
        audiences: &[String],
        now: i64,
        seconds: i64,
        bound: Option<(&str, &str, &str)>,
    ) -> String {
        let audiences: Vec<String> = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences.to_vec()
        };
        let mut k8s = json!({
            "namespace": account.namespace,
            "serviceaccount": {"name": account.name, "uid": account.uid},
        });
        if let Some((kind, name, uid)) = bound {
            k8s[kind.to_ascii_lowercase()] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "aud": audiences,
            "exp": now + seconds,
            "iat": now,
            "iss": ISSUER,
            "jti": random_token()[..36].to_string(),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": format!("system:serviceaccount:{}:{}", account.namespace, account.name),
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{payload}");
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn service_account_token(
        &self,
        token: &str,
        audiences: &[String],
        objects: &dyn Objects,
        now: i64,
    ) -> Result<(UserInfo, Vec<String>), TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Invalid)?;
        hmac::verify(
            &self.key,
            format!("{header}.{payload}").as_bytes(),
            &signature,
        )
        .map_err(|_| TokenError::Invalid)?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Invalid)?;
        if claims["iss"] != ISSUER {
            return Err(TokenError::Invalid);
        }
        let exp = claims["exp"].as_i64().ok_or(TokenError::Invalid)?;
        let nbf = claims["nbf"].as_i64().unwrap_or(0);
        // kube allows a minute of clock skew either side.
        if now > exp + 60 {
            return Err(TokenError::Expired);
        }
        if now + 60 < nbf {
            return Err(TokenError::Invalid);
        }
        let token_audiences = crate::auth::strings(&claims, "aud");
        let valid: Vec<String> = audiences
            .iter()
            .filter(|a| token_audiences.contains(a))
            .cloned()
            .collect();
        if valid.is_empty() {
            return Err(TokenError::Audience(token_audiences));
        }
        let k8s = &claims["kubernetes.io"];
        let namespace = k8s["namespace"].as_str().ok_or(TokenError::Invalid)?;
        let name = k8s["serviceaccount"]["name"]
            .as_str()
            .ok_or(TokenError::Invalid)?;
        let uid = k8s["serviceaccount"]["uid"].as_str().unwrap_or_default();
        let store = objects.store();
        let alive = |key: ResourceKey, name: &str, uid: &str, what: &str| {
            let found = store.get(&key, namespace, name).map(|o| o.value());
            match found {
                Some(o) if uid.is_empty() || o["metadata"]["uid"] == uid => {
                    // Still valid while it goes, until a minute past its
                    // deletionTimestamp (a pod's grace period), as in kube.
                    let deleted_at = o["metadata"]["deletionTimestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map(|t| t.as_second());
                    match deleted_at {
                        Some(at) if at < now - 60 => Err(TokenError::Gone(format!(
                            "{what} {namespace}/{name} has been deleted"
                        ))),
                        _ => Ok(()),
                    }
                }
                Some(_) => Err(TokenError::Gone(format!(
                    "{what} UID ({uid}) does not match claim"
                ))),
                None => Err(TokenError::Gone(format!(
                    "{what} {namespace}/{name} has been deleted"
                ))),
            }
        };
        alive(
            ResourceKey::new("", "serviceaccounts"),
            name,
            uid,
            "service account",
        )?;
        for (kind, plural) in [("pod", "pods"), ("secret", "secrets")] {
            if let Some(bound) = k8s.get(kind) {
                alive(
                    ResourceKey::new("", plural),
                    bound["name"].as_str().unwrap_or_default(),
                    bound["uid"].as_str().unwrap_or_default(),
                    kind,
                )?;
            }
        }
        let mut extra = BTreeMap::new();
        if let Some(jti) = claims["jti"].as_str() {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec![format!("JTI={jti}")],
            );
        }
        if let Some(pod) = k8s["pod"]["name"].as_str() {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec![pod.to_string()],
            );
        }
        Ok((
            UserInfo {
                username: format!("system:serviceaccount:{namespace}:{name}"),
                uid: uid.to_string(),
                groups: service_account_groups(namespace),
                extra,
            },
            valid,
        ))
    }
}

/// A ServiceAccount a token is issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// The namespace and name of a ServiceAccount's user name
/// (`system:serviceaccount:NS:NAME`, each part a valid name, as kube's
/// `SplitUsername` requires); `None` for any other user.
pub fn service_account_of(username: &str) -> Option<(&str, &str)> {
    let (ns, name) = username
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    (valid(ns) && valid(name)).then_some((ns, name))
}

/// The groups of a ServiceAccount's user.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        AUTHENTICATED.to_string(),
    ]
}

/// `system:anonymous`, in `system:unauthenticated`.
pub fn anonymous() -> UserInfo {
    UserInfo {
        username: "system:anonymous".into(),
        uid: String::new(),
        groups: vec!["system:unauthenticated".into()],
        extra: BTreeMap::new(),
    }
}

/// The users of a static token file, kube-apiserver's CSV format: one
/// `token,user,uid,"group1,group2"` per line (groups optional; blank
/// lines and `#` comments skipped). Each user is also in
/// `system:authenticated`.
///
/// # Errors
/// The line that is not of that form.
pub fn parse_token_file(text: &str) -> Result<HashMap<String, UserInfo>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
            return Err(format!(
                "token file: line {}: want token,user,uid[,\"groups\"], got {} field(s)",
                i + 1,
                fields.len()
            ));
        }
        let mut groups: Vec<String> = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        users.insert(
            fields[0].clone(),
            UserInfo {
                username: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                extra: BTreeMap::new(),
            },
        );
    }
    Ok(users)
}

/// The fields of one CSV line (double quotes group, `""` is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(f) = fields.last_mut() {
                    f.push('"');
                }
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_should_be_read_as_kube_apiserver_reads_them() {
        let users =
            parse_token_file("# comment\nt1,alice,1001,\"dev,ops\"\n\nt2,bob,1002\n").unwrap();
        assert_eq!(users["t1"].username, "alice");
        assert_eq!(users["t1"].uid, "1001");
        assert_eq!(users["t1"].groups, ["dev", "ops", AUTHENTICATED]);
        assert_eq!(users["t2"].groups, [AUTHENTICATED]);
        assert!(parse_token_file("just-a-token\n")
            .unwrap_err()
            .contains("line 1"));
    }
}
