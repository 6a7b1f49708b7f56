//! Admission (an engine): validating and mutating webhooks. The API server
//! sends an `AdmissionReview` to `<path>/<webhook id>`; the handlers that
//! apply (resource, subresource, filters) run; the answer allows or denies
//! the request, with the handlers' warnings, and for mutating ones a JSON
//! patch built from what they set in `ctx.patch`.
//!
//! Also here: the webhook server (plain HTTP, or HTTPS with a self-signed
//! certificate made at start), and the managed Validating- and
//! MutatingWebhookConfiguration objects that point the API server at it.

use std::{net::SocketAddr, panic::AssertUnwindSafe, sync::Arc};

use base64::Engine;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, Request, Response, StatusCode};
use kube::{
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    Client,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::{
    handling::{AdmissionRequest, Context, ErrorsMode, Events, HandlerError, Logger, Memo},
    indices::Indices,
    references::{Reason, Resource},
    registry::Handler,
    settings::{Settings, WebhookServer},
};

/// A webhook handler with its resource resolved (group, version, plural).
pub(crate) struct Webhook {
    pub(crate) handler: Handler,
    pub(crate) resource: Resource,
}

/// Answers admission reviews.
pub(crate) struct Reviewer {
    pub(crate) webhooks: Vec<Webhook>,
    pub(crate) client: Client,
    pub(crate) memo: Memo,
    pub(crate) indices: Indices,
    pub(crate) settings: Settings,
}

/// Errors rank: an explicit denial first, then permanent, temporary, others.
fn rank(e: &HandlerError) -> u8 {
    match e {
        HandlerError::Admission { .. } => 0,
        HandlerError::Permanent(_) => 1,
        HandlerError::Temporary { .. } => 2,
        HandlerError::Other(_) => 3,
    }
}

impl Reviewer {
    /// The response to one `AdmissionReview` (`hint`: the webhook id from
    /// the URL, if any). Malformed reviews get a 400.
    pub(crate) async fn review(
        &self,
        hint: Option<&str>,
        body: &[u8],
        headers: Vec<(String, String)>,
    ) -> Result<Value, (StatusCode, String)> {
        let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
        let review: Value =
            serde_json::from_slice(body).map_err(|e| bad(&format!("Malformed JSON: {e}")))?;
        let request = review
            .get("request")
            .filter(|r| r.is_object())
            .ok_or_else(|| bad("The AdmissionReview has no request."))?;
        let gvr = &request["resource"];
        let (group, version, plural) = (
            gvr["group"].as_str().unwrap_or_default(),
            gvr["version"].as_str().unwrap_or_default(),
            gvr["resource"].as_str().unwrap_or_default(),
        );
        let subresource = request["subResource"].as_str();
        let operation = request["operation"].as_str().unwrap_or_default();
        let object = request.get("object").filter(|o| !o.is_null()).cloned();
        let old = request.get("oldObject").filter(|o| !o.is_null()).cloned();
        let body = object
            .clone()
            .or_else(|| old.clone())
            .ok_or_else(|| bad("The AdmissionReview request has no object."))?;
        let info = AdmissionRequest::new(&review, headers);
        let namespace = body["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = body["metadata"]["name"]
            .as_str()
            .or(request["name"].as_str())
            .unwrap_or_default();
        let logger = Logger::with_sink(namespace, name, self.settings.log_sink.clone());
        let patch = crate::handling::PatchHandle::default();
        let mut errors: Vec<HandlerError> = Vec::new();
        for w in &self.webhooks {
            let h = &w.handler;
            let r = &w.resource;
            let applies = r.group == group
                && r.plural == plural
                && (r.version.is_empty() || r.version == version)
                && hint.is_none_or(|id| id == h.id)
                && match h.webhook.subresource.as_deref() {
                    Some("*") => true,
                    wanted => wanted == subresource,
                }
                && h.matches(&body)
                && !(h.reason == Reason::Mutate
                    && operation == "DELETE"
                    && h.webhook.operations != ["DELETE"]);
            if !applies {
                continue;
            }
            let mut ctx = Context::new(
                body.clone(),
                h.id.clone(),
                h.reason,
                r.clone(),
                self.settings.clock.now(),
                logger.clone(),
                self.memo.child(),
                self.client.clone(),
                Events::default(),
            );
            ctx.old = old.clone();
            ctx.new = object.clone();
            ctx.param.clone_from(&h.param);
            ctx.patch = patch.clone();
            ctx.indices = self.indices.clone();
            ctx.admission = Some(info.clone());
            let label = format!("Webhook '{}'", h.id);
            logger.debug(format!("{label} is invoked."));
            let result = match AssertUnwindSafe((h.func)(ctx)).catch_unwind().await {
                Ok(r) => r,
                Err(_) => Err(HandlerError::Other("the handler panicked".into())),
            };
            match result {
                Ok(_) => logger.info(format!("{label} succeeded.")),
                Err(HandlerError::Other(e)) if h.errors == ErrorsMode::Ignored => {
                    logger.error(format!(
                        "{label} failed with an exception and will ignore it: {e}"
                    ));
                }
                Err(e) => {
                    logger.error(format!("{label} failed permanently: {e}"));
                    errors.push(e);
                }
            }
        }
        drop(logger.drain());
        let mut response = json!({"uid": request["uid"], "allowed": errors.is_empty()});
        let warnings = info.warnings();
        if !warnings.is_empty() {
            response["warnings"] = json!(warnings);
        }
        errors.sort_by_key(rank);
        if let Some(top) = errors.first() {
            let code = match top {
                HandlerError::Admission { code, .. } => *code,
                _ => 500,
            };
            response["status"] = json!({"message": top.to_string(), "code": code});
        }
        let changes = patch.take();
        if !changes.is_empty() {
            if let Some(original) = &object {
                let mut patched = original.clone();
                json_patch::merge(&mut patched, &changes.to_value());
                let ops = json_patch::diff(original, &patched);
                if !ops.0.is_empty() {
                    let text = serde_json::to_vec(&ops).unwrap_or_default();
                    response["patch"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(text));
                    response["patchType"] = json!("JSONPatch");
                }
            }
        }
        Ok(json!({
            "apiVersion": review.get("apiVersion").cloned().unwrap_or(json!("admission.k8s.io/v1")),
            "kind": review.get("kind").cloned().unwrap_or(json!("AdmissionReview")),
            "response": response,
        }))
    }

    async fn answer(
        &self,
        path: &str,
        prefix: &str,
        body: &[u8],
        headers: Vec<(String, String)>,
    ) -> Response<Full<Bytes>> {
        let rest = path
            .strip_prefix(prefix.trim_end_matches('/'))
            .filter(|r| r.is_empty() || r.starts_with('/'));
        let (code, text) = match rest {
            None => (StatusCode::NOT_FOUND, "404: Not Found".to_string()),
            Some(rest) => {
                let hint = percent_decode(rest.trim_start_matches('/'));
                let hint = Some(hint.as_str()).filter(|h| !h.is_empty());
                match self.review(hint, body, headers).await {
                    Ok(v) => (StatusCode::OK, v.to_string()),
                    Err((code, message)) => (code, message),
                }
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = code;
        if code == StatusCode::OK {
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
        }
        response
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A listening webhook server: its URL for the API server and the CA to
/// trust (for HTTPS).
pub(crate) struct Listening {
    pub(crate) listener: TcpListener,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) url: String,
    pub(crate) ca_bundle: Option<String>,
}

/// A CA and a server certificate it signed, for `hosts`.
fn self_signed(hosts: Vec<String>) -> Result<(rustls::ServerConfig, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kopf-rs webhook CA");
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(hosts).map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kopf-rs webhooks");
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], private)
    .map_err(|e| e.to_string())?;
    Ok((config, ca.pem()))
}

/// Binds the webhook server.
pub(crate) async fn listen(server: &WebhookServer) -> Result<Listening, String> {
    let listener = TcpListener::bind(server.addr)
        .await
        .map_err(|e| format!("cannot listen at {}: {e}", server.addr))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let host = server.host.clone().unwrap_or_else(|| addr.ip().to_string());
    let host_port = if host.contains(':') {
        format!("[{host}]:{}", addr.port())
    } else {
        format!("{host}:{}", addr.port())
    };
    let path = server.path.trim_end_matches('/');
    let (tls, ca_bundle, scheme) = if server.tls {
        let mut hosts = vec![host.clone(), "localhost".into(), addr.ip().to_string()];
        hosts.dedup();
        let (config, ca) = self_signed(hosts)?;
        (
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            Some(base64::engine::general_purpose::STANDARD.encode(ca)),
            "https",
        )
    } else {
        (None, None, "http")
    };
    let url = server
        .url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{host_port}{path}"));
    Ok(Listening {
        listener,
        tls,
        url,
        ca_bundle,
    })
}

/// Serves admission reviews until `stop`.
pub(crate) async fn serve(
    listening: Listening,
    prefix: String,
    reviewer: Arc<Reviewer>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let logger = Logger::operator(reviewer.settings.log_sink.clone());
    logger.debug(format!("Listening for webhooks at {}", listening.url));
    drop(logger.drain());
    let prefix = Arc::new(prefix);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listening.listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let (reviewer, prefix, tls) = (reviewer.clone(), prefix.clone(), listening.tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (reviewer, prefix) = (reviewer.clone(), prefix.clone());
                async move {
                    let path = req.uri().path().to_string();
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                        .collect();
                    let response = if req.method() != hyper::Method::POST {
                        let mut r =
                            Response::new(Full::new(Bytes::from("405: Method Not Allowed")));
                        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                        r
                    } else {
                        match req.into_body().collect().await {
                            Ok(body) => {
                                reviewer
                                    .answer(&path, &prefix, &body.to_bytes(), headers)
                                    .await
                            }
                            Err(_) => Response::new(Full::new(Bytes::new())),
                        }
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// A webhook's name in a configuration: Kopf's rule (`/` to `.`, `_` to
/// `-`, other unusual characters hex-encoded) plus `.<managed>`.
fn webhook_name(id: &str, managed: &str) -> String {
    let mut out = String::new();
    for c in id.chars() {
        match c {
            '/' => out.push('.'),
            '_' => out.push('-'),
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("x{b:02x}"));
                }
            }
        }
    }
    format!("{out}.{managed}")
}

/// The `webhooks` of a managed configuration, for webhooks of `reason`.
pub(crate) fn entries(
    webhooks: &[Webhook],
    reason: Reason,
    managed: &str,
    url: &str,
    ca_bundle: Option<&str>,
    only_persistent: bool,
) -> Vec<Value> {
    webhooks
        .iter()
        .filter(|w| w.handler.reason == reason && (!only_persistent || w.handler.webhook.persistent))
        .map(|w| {
            let h = &w.handler;
            let resources = match &h.webhook.subresource {
                Some(sub) => format!("{}/{sub}", w.resource.plural),
                None => w.resource.plural.clone(),
            };
            let operations = if h.webhook.operations.is_empty() {
                vec!["*".to_string()]
            } else {
                h.webhook.operations.clone()
            };
            let expressions: Vec<Value> = h
                .labels
                .iter()
                .filter_map(|(key, filter)| match filter {
                    crate::registry::MetaFilter::Value(v) => {
                        Some(json!({"key": key, "operator": "In", "values": [v]}))
                    }
                    crate::registry::MetaFilter::Present => {
                        Some(json!({"key": key, "operator": "Exists"}))
                    }
                    crate::registry::MetaFilter::Absent => {
                        Some(json!({"key": key, "operator": "DoesNotExist"}))
                    }
                    crate::registry::MetaFilter::Predicate(_) => None,
                })
                .collect();
            let mut client_config = json!({"url": format!("{}/{}", url.trim_end_matches('/'), percent_encode(&h.id))});
            if let Some(ca) = ca_bundle {
                client_config["caBundle"] = json!(ca);
            }
            json!({
                "name": webhook_name(&h.id, managed),
                "sideEffects": if h.webhook.side_effects { "NoneOnDryRun" } else { "None" },
                "failurePolicy": if h.webhook.ignore_failures { "Ignore" } else { "Fail" },
                "matchPolicy": "Equivalent",
                "rules": [{
                    "apiGroups": [w.resource.group],
                    "apiVersions": [w.resource.version],
                    "resources": [resources],
                    "operations": operations,
                    "scope": "*",
                }],
                "objectSelector": if expressions.is_empty() { Value::Null } else { json!({"matchExpressions": expressions}) },
                "clientConfig": client_config,
                "timeoutSeconds": 30,
                "admissionReviewVersions": ["v1", "v1beta1"],
            })
        })
        .collect()
}

fn configuration_resource(reason: Reason) -> (ApiResource, &'static str) {
    let (kind, plural, what) = match reason {
        Reason::Mutate => (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutating",
        ),
        _ => (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validating",
        ),
    };
    (
        ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        },
        what,
    )
}

/// Creates (if absent) and updates the managed configurations;
/// `only_persistent` when cleaning up at exit.
pub(crate) async fn configure(
    client: &Client,
    webhooks: &[Webhook],
    managed: &str,
    url: &str,
    ca_bundle: Option<&str>,
    only_persistent: bool,
    logger: &Logger,
) {
    for reason in [Reason::Validate, Reason::Mutate] {
        if !webhooks.iter().any(|w| w.handler.reason == reason) {
            continue;
        }
        let (ar, what) = configuration_resource(reason);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = entries(webhooks, reason, managed, url, ca_bundle, only_persistent);
        if only_persistent {
            logger.info(format!("Cleaning up the admission webhook {managed}."));
        } else {
            logger.info(format!("Reconfiguring the {what} webhook {managed}."));
        }
        let fresh = json!({
            "apiVersion": ar.api_version, "kind": ar.kind,
            "metadata": {"name": managed},
            "webhooks": list,
        });
        let created = match serde_json::from_value::<DynamicObject>(fresh) {
            Ok(obj) => api.create(&PostParams::default(), &obj).await,
            Err(e) => {
                logger.error(format!("Cannot build the {what} configuration: {e}"));
                continue;
            }
        };
        match created {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let patch = json!({"webhooks": list});
                if let Err(e) = api
                    .patch(managed, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    logger.error(format!("Cannot update the {what} webhook {managed}: {e}"));
                }
            }
            Err(e @ kube::Error::Api(_)) if matches!(&e, kube::Error::Api(s) if s.code == 403) => {
                logger.error(format!(
                    "Not enough RBAC permissions to create a {}. {}",
                    ar.kind,
                    crate::forbidden::explain(&e)
                ))
            }
            Err(e) => logger.error(format!("Cannot create the {what} webhook {managed}: {e}")),
        }
    }
    drop(logger.drain());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_should_follow_kopf() {
        assert_eq!(
            webhook_name("validate1", "auto.kopf.dev"),
            "validate1.auto.kopf.dev"
        );
        assert_eq!(
            webhook_name("validate2/spec.field", "auto.kopf.dev"),
            "validate2.spec.field.auto.kopf.dev"
        );
        assert_eq!(
            webhook_name("validate_subresources", "auto.kopf.dev"),
            "validate-subresources.auto.kopf.dev"
        );
        assert_eq!(
            percent_encode("validate2/spec.field"),
            "validate2/spec.field"
        );
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
    }

    #[test]
    fn certificates_should_be_made_for_the_hosts() {
        let (_config, ca) = self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
