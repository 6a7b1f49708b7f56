//! The fake's own certificate authority (`--tls`): a CA made at start, the
//! serving certificate it signs for the server's addresses, client
//! certificates for users (CN the user, O each group, as kube-apiserver
//! reads them), and the identity a verified client certificate carries.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::{authn::AUTHENTICATED, UserInfo};

/// Why TLS material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating a key or certificate failed.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no certificate, or a bad one.
    #[error("cannot read certificates: {0}")]
    Read(String),
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate authority.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority")
    }
}

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

impl Authority {
    /// A new self-signed CA.
    ///
    /// # Errors
    /// When the key or certificate cannot be made.
    pub fn new(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM (a kubeconfig's `certificate-authority-data`).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A serving certificate for `hosts` (names or IP addresses).
    ///
    /// # Errors
    /// When it cannot be made.
    pub fn serving(&self, hosts: &[String]) -> Result<Pem, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "fake-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A client certificate for `user` (CN), in `group` (O) if any. The
    /// certificates made here carry one group at most (certificates from
    /// other CAs may carry several); give a user more groups with a token.
    ///
    /// # Errors
    /// When it cannot be made.
    pub fn client(&self, user: &str, group: Option<&str>) -> Result<Pem, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A rustls server configuration serving `serving`, offering h2 and
    /// http/1.1, asking clients for a certificate; and the verifier that
    /// then decides whether the certificate a client sent was signed by
    /// this CA or one in `client_cas` (PEM). As kube-apiserver does, the
    /// handshake accepts any certificate, and one from another CA
    /// authenticates no one (401) instead of failing the connection.
    ///
    /// # Errors
    /// When a certificate cannot be read or rustls refuses them.
    pub fn server_config(
        &self,
        serving: &Pem,
        client_cas: Option<&str>,
    ) -> Result<(rustls::ServerConfig, ClientCerts), PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .map_err(|e| PkiError::Read(e.to_string()))?;
        if let Some(pem) = client_cas {
            for cert in certificates(pem)? {
                roots.add(cert).map_err(|e| PkiError::Read(e.to_string()))?;
            }
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Read(e.to_string()))?;
        let checker = ClientCerts(verifier);
        let key = key(&serving.key)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(checker.clone()))
            .with_single_cert(certificates(&serving.cert)?, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((config, checker))
    }
}

/// Client certificates: asked for in the handshake, any accepted there
/// (the client proves it holds the key), and verified against the trusted
/// CAs afterwards, by [`ClientCerts::identity`].
#[derive(Clone, Debug)]
pub struct ClientCerts(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl ClientCerts {
    /// Who a client's certificate chain says it is: `None` without one,
    /// `Some(None)` for one the trusted CAs did not sign (or without a
    /// CN), `Some(Some(user))` for a valid one.
    pub fn identity(&self, chain: &[CertificateDer<'_>]) -> Option<Option<UserInfo>> {
        let (leaf, intermediates) = chain.split_first()?;
        let now = rustls::pki_types::UnixTime::now();
        Some(
            self.0
                .verify_client_cert(leaf, intermediates, now)
                .ok()
                .and_then(|_| identity_of(leaf)),
        )
    }
}

impl rustls::server::danger::ClientCertVerifier for ClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Decided after the handshake (`identity`), as kube-apiserver's
        // x509 authenticator does.
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The certificates of a PEM text.
///
/// # Errors
/// When it holds none, or a malformed one.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Read(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Read("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Read(e.to_string()))
}

/// The user a (verified) client certificate is: its CN, in the groups its
/// O's name, and `system:authenticated`; `None` without a CN.
pub fn identity_of(cert: &[u8]) -> Option<UserInfo> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let subject = parsed.subject();
    let username = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    if !groups.iter().any(|g| g == AUTHENTICATED) {
        groups.push(AUTHENTICATED.into());
    }
    Some(UserInfo {
        username,
        uid: String::new(),
        groups,
        extra: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_should_carry_user_and_groups() {
        let ca = Authority::new("test CA").unwrap();
        let pem = ca.client("alice", Some("dev")).unwrap();
        let der = certificates(&pem.cert).unwrap().remove(0);
        let user = identity_of(&der).unwrap();
        assert_eq!(user.username, "alice");
        assert_eq!(user.groups, ["dev", AUTHENTICATED]);
        let serving = ca
            .serving(&["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let (_, checker) = ca.server_config(&serving, None).unwrap();
        assert_eq!(checker.identity(&[der]), Some(Some(user)));
        let other = Authority::new("another CA").unwrap();
        let stranger = other.client("mallory", None).unwrap();
        let stranger = certificates(&stranger.cert).unwrap().remove(0);
        assert_eq!(
            checker.identity(std::slice::from_ref(&stranger)),
            Some(None),
            "another CA's"
        );
        assert_eq!(checker.identity(&[]), None);
        // With that CA given as a client CA (`--client-ca-file`), its
        // certificates are trusted too.
        let (_, trusting) = ca.server_config(&serving, Some(other.pem())).unwrap();
        assert_eq!(
            trusting.identity(&[stranger]).flatten().map(|u| u.username),
            Some("mallory".to_string())
        );
    }
}
