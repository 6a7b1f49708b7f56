//! Real kubectl against `fake-apiserver --tls --token-auth-file F
//! --authorization-mode=RBAC` (issue 14): who am I, what may a
//! ServiceAccount do, a 403 for a user lacking a grant, a RoleBinding
//! created, then success; and the binary's refusals.

mod support;

use support::Standalone;

/// Starts the binary over TLS with RBAC and a token file holding `alice`
/// (in group `dev`); returns it with the path of alice's kubeconfig.
fn start() -> (Standalone, tempfile::TempDir, std::path::PathBuf) {
    let files = tempfile::tempdir().unwrap();
    let tokens = files.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,1001,\"dev\"\n").unwrap();
    let alice = files.path().join("alice.kubeconfig");
    let c = Standalone::start(&[
        "--tls",
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authorization-mode=RBAC",
        "--kubeconfig-user",
        &format!("alice={}", alice.display()),
    ]);
    (c, files, alice)
}

#[test]
fn kubectl_should_meet_rbac_over_tls() {
    let (c, _files, alice) = start();
    assert!(c.url.starts_with("https://"), "{}", c.url);
    // The written kubeconfig is the administrator.
    let (ok, out, err) = c.kubectl(&["auth", "whoami"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("system:admin") && out.contains("system:masters"),
        "{out}"
    );
    // What a ServiceAccount may do, asked as it (impersonation).
    let (ok, out, err) = c.kubectl(&["auth", "can-i", "--list", "--as=system:serviceaccount:x:y"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{out}"
    );
    assert!(
        !out.contains("*.*"),
        "a ServiceAccount is no administrator: {out}"
    );
    // alice, from the token file, has no grant yet.
    let as_alice = |args: &[&str]| {
        let out = c
            .command(args)
            .env("KUBECONFIG", &alice)
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = as_alice(&["auth", "whoami"]);
    assert!(ok && out.contains("alice") && out.contains("dev"), "{out}");
    let (ok, _, err) = as_alice(&["get", "configmaps"]);
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "default""#),
        "{err}"
    );
    let (ok, _, err) = c.kubectl(&[
        "create",
        "rolebinding",
        "dev-edit",
        "--clusterrole=edit",
        "--group=dev",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = as_alice(&["create", "configmap", "made-by-alice", "--from-literal=a=b"]);
    assert!(ok, "{err}");
    let (ok, out, _) = as_alice(&["get", "configmaps", "-o", "name"]);
    assert!(ok && out.contains("configmap/made-by-alice"), "{out}");
    // edit does not let alice grant herself more.
    let (ok, _, err) = as_alice(&[
        "create",
        "rolebinding",
        "mine",
        "--clusterrole=admin",
        "--user=alice",
    ]);
    assert!(!ok);
    assert!(err.contains("forbidden"), "{err}");
    // A token nobody issued.
    let (ok, _, err) = c.kubectl(&["get", "configmaps", "--token", "forged"]);
    assert!(!ok);
    assert!(err.contains("Unauthorized"), "{err}");
}

/// kubectl sends the kubeconfig's credentials over TLS only: over plain
/// HTTP the binary defaults to AlwaysAllow, and refuses to serve anyone
/// everything on a non-loopback address.
#[test]
fn the_binary_should_refuse_an_open_non_loopback_bind() {
    let out = std::process::Command::new(support::binary())
        .args(["--port", "0", "--bind", "0.0.0.0"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve 0.0.0.0:0"), "{err}");
}

/// `--tls-cert-file`/`--tls-private-key-file`: the server presents your
/// certificate, the kubeconfig trusts it, and a key that does not match
/// is refused at start.
#[test]
fn the_binary_should_serve_your_own_certificate() {
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "my own server");
    let cert = params.self_signed(&key).unwrap();
    let cert_file = write("cert.pem", &cert.pem());
    let key_file = write("key.pem", &key.serialize_pem());
    let c = Standalone::start(&[
        "--tls",
        "--tls-cert-file",
        &cert_file,
        "--tls-private-key-file",
        &key_file,
    ]);
    assert!(c.url.starts_with("https://"), "{}", c.url);
    // kubectl trusts only what the kubeconfig says: your certificate.
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        cert.pem()
    )));
    let (ok, out, err) = c.kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(ok, "{err}");
    assert!(out.contains("namespace/default"), "{out}");
    // Another key: refused at start, with rustls' reason.
    let other = write(
        "other.pem",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let out = std::process::Command::new(support::binary())
        .args(["--port", "0", "--tls", "--tls-cert-file", &cert_file])
        .args(["--tls-private-key-file", &other])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot configure TLS"), "{stderr}");
}
