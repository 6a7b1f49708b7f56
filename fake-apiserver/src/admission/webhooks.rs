//! Admission webhooks: the call-outs kube-apiserver makes, for the
//! `MutatingWebhookConfiguration` and `ValidatingWebhookConfiguration`
//! objects stored in the fake.
//!
//! For a write (create, update, patch, delete) the HTTP layer first computes
//! the object as it would be stored (a dry run), then asks here: every
//! matching mutating webhook (rules, namespace and object selectors) gets an
//! `AdmissionReview` v1 in turn and may answer with a JSON patch; then every
//! matching validating webhook sees the final object. A denial becomes the
//! error kube-apiserver returns (`admission webhook "..." denied the
//! request: ...`); an unreachable webhook fails the request or is skipped,
//! as its `failurePolicy` says; `timeoutSeconds` bounds each call;
//! `sideEffects` decides whether dry-run requests may be sent.
//!
//! Plain `http://` webhook URLs are called directly; `https://` ones are
//! called with TLS, trusting the configuration's `caBundle`.

use std::{sync::Arc, time::Duration};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::{
    apimachinery::{
        errors::ApiError,
        resource_key::{parse_resource, ResourceKey},
    },
    registry::rest::Target,
    storage::{
        selector::{format_label_selector, LabelSelector},
        store::Store,
    },
};

const MUTATING: &str = "mutatingwebhookconfigurations.admissionregistration.k8s.io";
const VALIDATING: &str = "validatingwebhookconfigurations.admissionregistration.k8s.io";

/// What is being admitted.
pub(crate) struct Attributes<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub(crate) operation: &'static str,
    pub(crate) target: &'a Target,
    /// `status` for the status subresource.
    pub(crate) subresource: Option<&'a str>,
    /// The object as it would be stored (none for DELETE).
    pub(crate) object: Option<Value>,
    /// The stored object (none for CREATE).
    pub(crate) old_object: Option<Value>,
    pub(crate) dry_run: bool,
    /// Who asks for the write (`userInfo`).
    pub(crate) user: &'a crate::auth::UserInfo,
}

/// The outcome of admission: the (possibly mutated) object and warnings.
pub(crate) struct Admitted {
    pub(crate) object: Option<Value>,
    pub(crate) warnings: Vec<String>,
}

/// The webhook caller.
#[derive(Clone)]
pub(crate) struct Admission {
    plain: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            plain:
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http(),
        }
    }
}

fn webhooks(store: &Store, resource: &str) -> Vec<(String, Value)> {
    store
        .list(&parse_resource(resource), None, None, None, 0, &|_| true)
        .map(|page| {
            let mut configs: Vec<Value> = page.items.iter().map(|o| o.value()).collect();
            configs.sort_by(|a, b| {
                let name = |v: &Value| {
                    v.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(String::from)
                };
                name(a).cmp(&name(b))
            });
            configs
                .into_iter()
                .flat_map(|c| {
                    c.get("webhooks")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|w| {
                    let name = w
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    (name, w)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A `metav1.LabelSelector` as a selector; `None` (absent) matches all.
fn selector(v: Option<&Value>) -> Option<LabelSelector> {
    let v = v.filter(|v| !v.is_null())?;
    // A malformed selector matches nothing rather than everything.
    Some(
        format_label_selector(v)
            .and_then(|s| LabelSelector::parse(&s).ok())
            .unwrap_or_else(|| {
                LabelSelector::parse("!kopf-rs.invalid/selector,kopf-rs.invalid/selector")
                    .unwrap_or_default()
            }),
    )
}

fn labels_of(obj: Option<&Value>) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| {
        obj.and_then(|o| o.pointer("/metadata/labels"))
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(String::from)
    }
}

fn any_is(list: Option<&Value>, what: &str, wildcard: &str) -> bool {
    list.and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == what || v == wildcard))
}

/// Whether one of the webhook's rules covers the request.
fn rules_match(webhook: &Value, a: &Attributes<'_>) -> bool {
    let kind = &a.target.kind;
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", kind.key.plural),
        None => kind.key.plural.clone(),
    };
    webhook
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|rule| {
            let resources_ok = rule
                .get("resources")
                .and_then(Value::as_array)
                .is_some_and(|rs| {
                    rs.iter().filter_map(Value::as_str).any(|r| {
                        r == resource
                            || r == "*/*"
                            || (r == "*" && a.subresource.is_none())
                            || r.strip_suffix("/*") == Some(kind.key.plural.as_str())
                                && a.subresource.is_some()
                            || (a.subresource.is_some() && r.strip_prefix("*/") == a.subresource)
                    })
                });
            let scope_ok = match rule.get("scope").and_then(Value::as_str) {
                Some("Cluster") => !kind.namespaced,
                Some("Namespaced") => kind.namespaced,
                _ => true,
            };
            any_is(rule.get("apiGroups"), &kind.key.group, "*")
                && any_is(rule.get("apiVersions"), &a.target.version, "*")
                && any_is(rule.get("operations"), a.operation, "*")
                && resources_ok
                && scope_ok
        })
}

/// Whether the webhook applies: rules, then the namespace and object selectors.
fn applies(store: &Store, webhook: &Value, a: &Attributes<'_>) -> bool {
    if !rules_match(webhook, a) {
        return false;
    }
    if let Some(sel) = selector(webhook.get("namespaceSelector")) {
        let kind = &a.target.kind;
        let namespace_obj = if kind.key.group.is_empty() && kind.key.plural == "namespaces" {
            a.object.clone().or_else(|| a.old_object.clone())
        } else if kind.namespaced {
            store
                .get(&parse_resource("namespaces"), "", &a.target.namespace)
                .map(|n| n.value())
        } else {
            None
        };
        if (kind.namespaced || namespace_obj.is_some())
            && !sel.matches(&labels_of(namespace_obj.as_ref()))
        {
            return false;
        }
    }
    if let Some(sel) = selector(webhook.get("objectSelector")) {
        if !sel.matches(&labels_of(a.object.as_ref()))
            && !sel.matches(&labels_of(a.old_object.as_ref()))
        {
            return false;
        }
    }
    true
}

/// The body of an `AdmissionReview` request.
fn review(uid: &str, a: &Attributes<'_>) -> Value {
    let kind = &a.target.kind;
    let gvk = json!({"group": kind.key.group, "version": a.target.version, "kind": kind.kind});
    let gvr =
        json!({"group": kind.key.group, "version": a.target.version, "resource": kind.key.plural});
    let name = a
        .object
        .as_ref()
        .or(a.old_object.as_ref())
        .and_then(|o| o.pointer("/metadata/name"))
        .cloned()
        .unwrap_or_else(|| json!(a.target.name));
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": name,
        "operation": a.operation,
        "userInfo": a.user.to_value(),
        "object": a.object,
        "oldObject": a.old_object,
        "dryRun": a.dry_run,
        "options": match a.operation {
            "CREATE" => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
            "UPDATE" => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
            _ => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
        },
    });
    if let Some(sub) = a.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    if !a.target.namespace.is_empty() {
        request["namespace"] = json!(a.target.namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// A webhook that could not be called: kube-apiserver's internal error.
fn failed(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "Internal error occurred: failed calling webhook \"{name}\": {why}"
    ))
}

/// Why a call failed, as Go's HTTP client words the common cases; else the
/// innermost cause.
fn transport_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    if let Some(io) = inner.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return "connect: connection refused".into();
        }
    }
    let text = inner.to_string();
    if text.contains("UnknownIssuer") {
        "tls: failed to verify certificate: x509: certificate signed by unknown authority".into()
    } else if text.contains("NotValidForName") || text.contains("not valid for") {
        "tls: failed to verify certificate: x509: certificate is not valid for this host".into()
    } else if text.contains("Expired") || text.contains("expired") {
        "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
            .into()
    } else if text.contains("certificate") {
        format!("tls: failed to verify certificate: {text}")
    } else {
        text
    }
}

impl Admission {
    /// Whether any webhook configuration exists (the fast path skips the rest).
    pub(crate) fn configured(store: &Store) -> bool {
        // Asked on every write: the keys are made once.
        static KEYS: std::sync::OnceLock<[ResourceKey; 2]> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| [parse_resource(MUTATING), parse_resource(VALIDATING)])
            .iter()
            .any(|key| store.count(key, None) > 0)
    }

    /// Runs the mutating, then the validating webhooks for `a`.
    pub(crate) async fn admit(
        &self,
        store: &Store,
        mut a: Attributes<'_>,
    ) -> Result<Admitted, ApiError> {
        let mut warnings = Vec::new();
        for (mutating, resource) in [(true, MUTATING), (false, VALIDATING)] {
            for (name, webhook) in webhooks(store, resource) {
                if !applies(store, &webhook, &a) {
                    continue;
                }
                let side_effects = webhook
                    .get("sideEffects")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown");
                if a.dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
                    return Err(ApiError::bad_request(format!(
                        "admission webhook \"{name}\" does not support dry run"
                    )));
                }
                let uid = store.new_uid();
                let ignore = webhook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
                let response = match self.call(&name, &webhook, &review(&uid, &a)).await {
                    Ok(r) => r,
                    Err(_) if ignore => continue,
                    Err(e) => return Err(e),
                };
                let response = &response["response"];
                if let Some(ws) = response.get("warnings").and_then(Value::as_array) {
                    warnings.extend(ws.iter().filter_map(Value::as_str).map(String::from));
                }
                if response.get("allowed").and_then(Value::as_bool) != Some(true) {
                    return Err(denied(&name, response.get("status")));
                }
                if mutating {
                    if let Some(patch) = response.get("patch").and_then(Value::as_str) {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(patch)
                            .map_err(|e| failed(&name, format!("the patch is not base64: {e}")))?;
                        let patch: json_patch::Patch =
                            serde_json::from_slice(&bytes).map_err(|e| {
                                failed(&name, format!("the patch is not a JSON patch: {e}"))
                            })?;
                        if let Some(obj) = a.object.as_mut() {
                            json_patch::patch(obj, &patch).map_err(|e| {
                                failed(&name, format!("the patch does not apply: {e}"))
                            })?;
                        }
                    }
                }
            }
        }
        Ok(Admitted {
            object: a.object,
            warnings,
        })
    }

    async fn call(&self, name: &str, webhook: &Value, review: &Value) -> Result<Value, ApiError> {
        let config = webhook.get("clientConfig").cloned().unwrap_or_default();
        let url = match (config.get("url"), config.get("service")) {
            (Some(Value::String(url)), _) => url.clone(),
            (_, Some(service)) => {
                let s = |k: &str| {
                    service
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let port = service.get("port").and_then(Value::as_u64).unwrap_or(443);
                format!(
                    "https://{}.{}.svc:{port}{}",
                    s("name"),
                    s("namespace"),
                    s("path")
                )
            }
            _ => return Err(failed(name, "the webhook has no clientConfig")),
        };
        let timeout = Duration::from_secs(
            webhook
                .get("timeoutSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .clamp(1, 30),
        );
        // As kube-apiserver, the webhook is told its deadline in the URL.
        let url = format!(
            "{url}{}timeout={}s",
            if url.contains('?') { '&' } else { '?' },
            timeout.as_secs()
        );
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "kube-apiserver-admission")
            .body(Full::new(Bytes::from(review.to_string())))
            .map_err(|e| failed(name, e))?;
        let send = async {
            let response = if url.starts_with("https://") {
                let ca = config
                    .get("caBundle")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tls::client(ca)
                    .map_err(|e| failed(name, e))?
                    .request(request)
                    .await
            } else {
                self.plain.request(request).await
            }
            .map_err(|e| {
                failed(
                    name,
                    format!(
                        "failed to call webhook: Post \"{url}\": {}",
                        transport_error(&e)
                    ),
                )
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(name, e))?
                .to_bytes();
            if !status.is_success() {
                return Err(failed(
                    name,
                    format!(
                        "received invalid webhook response: {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                ));
            }
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| failed(name, format!("received invalid webhook response: {e}")))
        };
        tokio::time::timeout(timeout, send).await.map_err(|_| {
            failed(
                name,
                format!("failed to call webhook: Post \"{url}\": context deadline exceeded"),
            )
        })?
    }
}

/// kube-apiserver's error for a denial: at least 400, the webhook's name
/// and its message.
fn denied(name: &str, status: Option<&Value>) -> ApiError {
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let message = status
        .and_then(|s| s.get("message").or_else(|| s.get("reason")))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    let by = format!("admission webhook \"{name}\" denied the request");
    let text = match message {
        Some(m) => format!("{by}: {m}"),
        None => format!("{by} without explanation"),
    };
    ApiError::new(code, "", text)
}

/// HTTPS webhooks, trusting the configuration's CA bundle.
mod tls {
    use super::*;

    pub(super) type Client = hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >;

    pub(super) fn client(ca_bundle: &str) -> Result<Client, String> {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_bundle)
            .map_err(|e| format!("the caBundle is not base64: {e}"))?;
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("the caBundle is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the caBundle has a bad certificate: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let bundle: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("the caBundle cannot verify: {e}"))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(BundleVerifier { inner, bundle }))
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https),
        )
    }

    use rustls::{
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime},
        DigitallySignedStruct, SignatureScheme,
    };

    /// Verifies a webhook's certificate as Go's crypto/x509 does for
    /// kube-apiserver: by a chain to the caBundle, or, failing that, by
    /// being one of the caBundle's certificates itself. Go accepts such a
    /// leaf even with `CA:TRUE`, as the self-signed certificates of Kopf
    /// and many development setups are, where webpki refuses a CA as an end
    /// entity. The leaf must still be valid now, name the host, and allow
    /// server authentication.
    #[derive(Debug)]
    pub(super) struct BundleVerifier {
        inner: Arc<rustls::client::WebPkiServerVerifier>,
        bundle: Vec<CertificateDer<'static>>,
    }

    impl ServerCertVerifier for BundleVerifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Ok(verified) => Ok(verified),
                Err(e)
                    if self
                        .bundle
                        .iter()
                        .any(|c| c.as_ref() == end_entity.as_ref()) =>
                {
                    trusted_leaf(end_entity, server_name, now)
                        .map(|()| ServerCertVerified::assertion())
                        .map_err(|why| {
                            rustls::Error::General(format!("{e}; as a caBundle certificate: {why}"))
                        })
                }
                Err(e) => Err(e),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    /// The checks Go makes of a leaf found in the root pool: validity
    /// period, server authentication if the certificate restricts its use,
    /// and the host among its subject alternative names.
    fn trusted_leaf(
        der: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), String> {
        use x509_parser::{extensions::GeneralName, time::ASN1Time};
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("unreadable: {e}"))?;
        let at = ASN1Time::from_timestamp(now.as_secs() as i64).map_err(|e| e.to_string())?;
        if !cert.validity().is_valid_at(at) {
            return Err("expired or not yet valid".into());
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            if !eku.value.any && !eku.value.server_auth {
                return Err("not for server authentication".into());
            }
        }
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| san.value.general_names.clone())
            .unwrap_or_default();
        let matches = names.iter().any(|name| match (name, server_name) {
            (GeneralName::DNSName(dns), ServerName::DnsName(host)) => {
                dns_matches(dns, host.as_ref())
            }
            (GeneralName::IPAddress(ip), ServerName::IpAddress(host)) => {
                let host: std::net::IpAddr = (*host).into();
                match host {
                    std::net::IpAddr::V4(v4) => *ip == v4.octets().as_slice(),
                    std::net::IpAddr::V6(v6) => *ip == v6.octets().as_slice(),
                }
            }
            _ => false,
        });
        if matches {
            Ok(())
        } else {
            Err(format!("not valid for {}", server_name.to_str()))
        }
    }

    /// A SAN DNS name against a host: case-insensitive, `*.` for one label.
    fn dns_matches(pattern: &str, host: &str) -> bool {
        let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
        match pattern.strip_prefix("*.") {
            Some(rest) => host
                .split_once('.')
                .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
            None => pattern == host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_should_read_as_kube_apiserver_writes_them() {
        let e = denied(
            "v.example.dev",
            Some(&json!({"message": "no", "code": 555})),
        );
        assert_eq!(e.code, 555);
        assert_eq!(
            e.message,
            "admission webhook \"v.example.dev\" denied the request: no"
        );
        let e = denied("v.example.dev", Some(&json!({"code": 200})));
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"v.example.dev\" denied the request without explanation"
        );
    }

    #[test]
    fn rules_should_match_resources_subresources_and_operations() {
        let resources = crate::registry::resources::Resources::with_builtins();
        let kind = resources
            .get(&parse_resource("configmaps"))
            .expect("configmaps are built in");
        let target = Target {
            kind,
            version: "v1".into(),
            namespace: "default".into(),
            name: "x".into(),
        };
        let admin = crate::auth::UserInfo::admin();
        let attrs = |operation, subresource| Attributes {
            operation,
            target: &target,
            subresource,
            object: None,
            old_object: None,
            dry_run: false,
            user: &admin,
        };
        let hook = |resources: Value, operations: Value| json!({"rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": resources, "operations": operations}]});
        assert!(rules_match(
            &hook(json!(["configmaps"]), json!(["CREATE"])),
            &attrs("CREATE", None)
        ));
        assert!(!rules_match(
            &hook(json!(["configmaps"]), json!(["CREATE"])),
            &attrs("UPDATE", None)
        ));
        assert!(!rules_match(
            &hook(json!(["secrets"]), json!(["*"])),
            &attrs("CREATE", None)
        ));
        assert!(!rules_match(
            &hook(json!(["configmaps"]), json!(["*"])),
            &attrs("UPDATE", Some("status"))
        ));
        assert!(rules_match(
            &hook(json!(["configmaps/*"]), json!(["*"])),
            &attrs("UPDATE", Some("status"))
        ));
        assert!(rules_match(
            &hook(json!(["*/status"]), json!(["*"])),
            &attrs("UPDATE", Some("status"))
        ));
        assert!(!rules_match(
            &hook(json!(["*/status"]), json!(["*"])),
            &attrs("UPDATE", None)
        ));
        assert!(rules_match(
            &hook(json!(["*"]), json!(["*"])),
            &attrs("DELETE", None)
        ));
    }

    #[test]
    fn selectors_should_read_match_labels_and_expressions() {
        let s = selector(Some(&json!({"matchLabels": {"a": "1"},
            "matchExpressions": [{"key": "b", "operator": "In", "values": ["x", "y"]},
                                 {"key": "c", "operator": "DoesNotExist"}]})))
        .unwrap();
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(s.matches(&labels(&[("a", "1"), ("b", "y")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "z")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "x"), ("c", "")])));
        assert!(selector(None).is_none());
        assert!(selector(Some(&Value::Null)).is_none());
    }
}
