//! Serving over TCP: plain HTTP, or HTTPS with a CA made at start
//! ([`FakeApiServer::serve_tls`]), and the kubeconfigs that reach it (the
//! administrator's token, another token, or a client certificate).

use std::{net::SocketAddr, path::Path, sync::Arc};

use base64::Engine;
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    auth::{
        gate::Mode,
        pki::{Authority, ClientCerts},
    },
    endpoints::{self, ApiService},
    server::FakeApiServer,
};

impl FakeApiServer {
    /// Serves HTTP on `addr` (use port 0 for any free port) until the
    /// returned handle is shut down or dropped. A non-loopback address is
    /// refused when anyone could do anything there (anonymous requests
    /// allowed everything), or could reach the control API without a token.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<Serving> {
        self.serve_with(addr, None).await
    }

    /// Serves HTTPS on `addr`, as kube-apiserver does: a CA made now
    /// signs a serving certificate for loopback, `localhost` and `addr`;
    /// clients may present a certificate signed by that CA or by one in
    /// `client_ca_pem` (`--client-ca-file`), whose CN is the user and O's
    /// the groups. The kubeconfigs written trust the CA.
    pub async fn serve_tls(
        &self,
        addr: SocketAddr,
        client_ca_pem: Option<&str>,
    ) -> std::io::Result<Serving> {
        let other = |e: crate::auth::pki::PkiError| std::io::Error::other(e.to_string());
        let authority = Authority::new("fake-apiserver CA").map_err(other)?;
        let mut hosts = vec![
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "localhost".to_string(),
        ];
        if !addr.ip().is_unspecified() && !hosts.contains(&addr.ip().to_string()) {
            hosts.push(addr.ip().to_string());
        }
        let serving = authority.serving(&hosts).map_err(other)?;
        let (config, certs) = authority
            .server_config(&serving, client_ca_pem)
            .map_err(other)?;
        let trusted = authority.pem().to_string();
        self.serve_with(addr, Some((authority, config, certs, trusted)))
            .await
    }

    /// Serves HTTPS on `addr` with your own serving certificate (PEM, the
    /// chain in order) and its key (PKCS#8, PKCS#1 or SEC1), as
    /// kube-apiserver's `--tls-cert-file` and `--tls-private-key-file`.
    /// The kubeconfigs written trust the certificates of `cert_pem` (add
    /// your CA to them if it is not in the file). Client certificates are
    /// still accepted from a CA made now and from `client_ca_pem`.
    ///
    /// # Errors
    /// An unreadable certificate or key, a key that does not match the
    /// certificate, or the address.
    pub async fn serve_tls_with_certificate(
        &self,
        addr: SocketAddr,
        client_ca_pem: Option<&str>,
        cert_pem: &str,
        key_pem: &str,
    ) -> std::io::Result<Serving> {
        let other = |e: crate::auth::pki::PkiError| std::io::Error::other(e.to_string());
        let authority = Authority::new("fake-apiserver CA").map_err(other)?;
        let serving = crate::auth::pki::Pem {
            cert: cert_pem.to_string(),
            key: key_pem.to_string(),
        };
        let (config, certs) = authority
            .server_config(&serving, client_ca_pem)
            .map_err(other)?;
        self.serve_with(addr, Some((authority, config, certs, cert_pem.to_string())))
            .await
    }

    async fn serve_with(
        &self,
        addr: SocketAddr,
        tls: Option<(Authority, rustls::ServerConfig, ClientCerts, String)>,
    ) -> std::io::Result<Serving> {
        if !addr.ip().is_loopback()
            && self.authorization() == Mode::AlwaysAllow
            && self.shared.gate.authn().allows_anonymous()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("refusing to serve {addr}, a non-loopback address, to anyone without credentials: use RBAC, or turn anonymous requests off"),
            ));
        }
        if self.shared.control.enabled
            && self.shared.control.token.is_none()
            && !addr.ip().is_loopback()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("refusing to serve the control API on non-loopback address {addr} without a token"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let service = ApiService::new(self.shared.clone(), &local_addr.to_string());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (authority, trusted, acceptor) = match tls {
            Some((authority, config, certs, trusted)) => (
                Some(Arc::new(authority)),
                Some(trusted),
                Some((tokio_rustls::TlsAcceptor::from(Arc::new(config)), certs)),
            ),
            None => (None, None, None),
        };
        let task = endpoints::serve(listener, service, acceptor, stop_rx);
        Ok(Serving {
            local_addr,
            authority,
            trusted,
            token: self.admin_token().to_string(),
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A server listening on TCP. Dropping it stops serving.
pub struct Serving {
    local_addr: SocketAddr,
    token: String,
    authority: Option<Arc<Authority>>,
    /// What clients should trust (PEM): the CA, or your own certificates.
    trusted: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://host:port`, or `https://` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.trusted.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.local_addr)
    }

    /// What clients should trust (PEM), when serving TLS: the CA that
    /// signed the serving certificate, or the certificates you gave.
    pub fn ca_pem(&self) -> Option<&str> {
        self.trusted.as_deref()
    }

    /// A kubeconfig whose user authenticates with a client certificate
    /// for `user` (CN), in `group` (O) if any, signed by the server's CA
    /// (only when serving TLS).
    ///
    /// # Errors
    /// Without TLS, or when the certificate cannot be made.
    pub fn kubeconfig_with_certificate(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> std::io::Result<String> {
        let authority = self.authority.as_deref().ok_or_else(|| {
            std::io::Error::other("client certificates need a server serving TLS")
        })?;
        let pem = authority
            .client(user, group)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user_entry = serde_json::json!({
            "client-certificate-data": b64(&pem.cert),
            "client-key-data": b64(&pem.key),
        });
        Ok(self.kubeconfig_for(user, user_entry))
    }

    /// A kubeconfig pointing at this server as the administrator
    /// (context `fake`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_with_token("fake", &self.token)
    }

    /// A kubeconfig pointing at this server that authenticates with
    /// `token`, its user named `user` (context `fake`, namespace
    /// `default`).
    pub fn kubeconfig_with_token(&self, user: &str, token: &str) -> String {
        self.kubeconfig_for(user, serde_json::json!({"token": token}))
    }

    fn kubeconfig_for(&self, user: &str, credentials: Value) -> String {
        let mut cluster = serde_json::json!({"server": self.url()});
        if let Some(pem) = self.ca_pem() {
            cluster["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(pem).into();
        }
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": user, "namespace": "default"}}],
            "current-context": "fake",
            "users": [{"name": user, "user": credentials}],
        });
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Writes the kubeconfig to a temporary file, removed when dropped.
    pub fn temp_kubeconfig(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let mut file = tempfile::Builder::new()
            .prefix("fake-kubeconfig-")
            .suffix(".yaml")
            .tempfile()?;
        std::io::Write::write_all(&mut file, self.kubeconfig().as_bytes())?;
        Ok(file)
    }

    /// Stops accepting, closes every connection, and waits for that.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
