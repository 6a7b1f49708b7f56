//! `fake-apiserver`: the fake Kubernetes API server as a standalone process,
//! and subcommands that drive a running one through its control API.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/fake.kubeconfig --load manifests/ --control
//! export KUBECONFIG=/tmp/fake.kubeconfig
//! kubectl get namespaces
//! fake-apiserver fault add --verb patch --resource configmaps --status 409 --times 2
//! fake-apiserver inject --resource configmaps --action cut
//! fake-apiserver journal --writes --normalized
//! fake-apiserver node down node-2
//! fake-apiserver pod fail default/db-1 --failure CrashLoopBackOff --exit-code 1
//! ```

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use clap::{Args as ClapArgs, Parser, Subcommand};
use fake_apiserver::{
    auth::{authn, gate::Mode, UserInfo},
    controllers::{selection::Selection, stages::Stages},
    endpoints::inflight::Limits,
    testing::faults::{FaultAction, FaultRule},
    FakeApiServer,
};
use serde_json::{json, Value};

/// A fast, faithful fake Kubernetes API server.
#[derive(Debug, Parser)]
#[command(name = "fake-apiserver", version, about)]
struct Cli {
    #[command(flatten)]
    serve: Serve,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, ClapArgs)]
struct Serve {
    /// Port to listen on (0 = any free port).
    #[arg(long, short, default_value_t = 6443, env = "FAKE_APISERVER_PORT")]
    port: u16,
    /// Address to bind (loopback unless you really mean otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Write a kubeconfig for this server to PATH.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Load objects from a YAML/JSON file or a directory of them (repeatable; CRDs first).
    #[arg(long, value_name = "FILE_OR_DIR")]
    load: Vec<PathBuf>,
    /// Events kept per resource for watch resume (older resume points get 410 Gone).
    #[arg(long, default_value_t = 4096)]
    history: usize,
    /// Keep objects in DIR (a snapshot and a log, each write on disk before
    /// it is answered) and resume from it at start; default: memory only.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Non-mutating requests served at once (watches and system:masters
    /// not counted); more get 429 with Retry-After. 0: no limit.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests served at once; more get 429. 0: no limit.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// How long a request (not a watch) may take before it gets 504; a
    /// request's own `timeout` parameter may only shorten it.
    #[arg(long, default_value = "1m", value_parser = request_timeout)]
    request_timeout: std::time::Duration,
    /// Seed for uids, generated names and fault probabilities.
    #[arg(long, default_value_t = 0x6b6f_7066)]
    seed: u64,
    /// Serve the control API under /_fake/v1 (injection, faults, journal).
    #[arg(long)]
    control: bool,
    /// Bearer token the control API requires (mandatory on non-loopback binds).
    #[arg(long, env = "FAKE_APISERVER_CONTROL_TOKEN")]
    control_token: Option<String>,
    /// Controllers of the simulated cluster, in kube-controller-manager's
    /// syntax: `*` for all, `-name` to leave one out, "" for a pure store
    /// (names: nodelifecycle, scheduler, kubelet, replicaset, deployment,
    /// endpoint, endpointslice, serviceaccount, garbagecollector).
    #[arg(long, default_value = "*")]
    controllers: String,
    /// Nodes of the simulated cluster.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// How simulated pods behave: a stages file (YAML; see docs/fake-apiserver.md).
    #[arg(long, value_name = "FILE")]
    stages: Option<PathBuf>,
    /// Serve HTTPS, as kube-apiserver does: a CA made at start signs the
    /// serving certificate, and the kubeconfigs written trust it.
    #[arg(long)]
    tls: bool,
    /// With --tls, serve this certificate (PEM; the chain in order)
    /// instead of one made at start; the kubeconfigs trust it.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_private_key_file"])]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// With --tls, also accept client certificates signed by these CAs
    /// (PEM); the fake's own CA is always accepted. CN is the user, O the groups.
    #[arg(long, value_name = "FILE", requires = "tls")]
    client_ca_file: Option<PathBuf>,
    /// How requests are authorized: `RBAC`, as a real cluster, or
    /// `AlwaysAllow` [default: RBAC with --tls, else AlwaysAllow, since
    /// kubectl sends no credentials over plain HTTP].
    #[arg(long, value_name = "MODE")]
    authorization_mode: Option<Mode>,
    /// Users known by bearer token, in kube-apiserver's CSV format: one
    /// `token,user,uid,"group1,group2"` per line.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// Whether requests without credentials are `system:anonymous` (else 401).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    anonymous_auth: bool,
    /// Also write a kubeconfig for another user, e.g.
    /// `system:serviceaccount:ops:my-operator=/tmp/op.kubeconfig` or a
    /// user of the token file (repeatable).
    #[arg(long, value_name = "USER=FILE")]
    kubeconfig_user: Vec<String>,
    /// Log filter (e.g. `debug`), also read from RUST_LOG.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    log: String,
}

#[derive(Debug, ClapArgs)]
struct Target {
    /// URL of the running server (default: the kubeconfig's, or
    /// http://127.0.0.1:6443).
    #[arg(long, global = true, env = "FAKE_APISERVER_URL")]
    server: Option<String>,
    /// A kubeconfig whose credentials the control API accepts (the one the
    /// server wrote: its administrator).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Control API token.
    #[arg(long, global = true, env = "FAKE_APISERVER_CONTROL_TOKEN")]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inject into the live watches of a running server.
    Inject {
        #[command(flatten)]
        target: Target,
        /// `plural` or `plural.group`.
        #[arg(long)]
        resource: Option<String>,
        /// event, duplicate, stale, hold, release, cut, expire-next-resume, compact.
        #[arg(long, default_value = "event")]
        action: String,
        /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (for `event`).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// The event's object: inline JSON, `@file` (JSON or YAML), or `-` for stdin.
        #[arg(long)]
        object: Option<String>,
        /// Make the event a real write instead of a lie.
        #[arg(long)]
        write: bool,
        /// Narrow to a namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Narrow to an object name.
        #[arg(long)]
        name: Option<String>,
        /// Narrow with a label selector.
        #[arg(long)]
        selector: Option<String>,
        /// For `cut`: events still delivered first.
        #[arg(long, default_value_t = 0)]
        after: usize,
    },
    /// Take a node of the simulated cluster down (`Ready` becomes Unknown) or bring it back.
    Node {
        #[command(flatten)]
        target: Target,
        /// `down` or `up`.
        #[arg(value_parser = ["down", "up"])]
        state: String,
        /// The node (`node-1`...).
        name: String,
    },
    /// Make a pod's containers fail from now on (the stages annotations).
    Pod {
        #[command(flatten)]
        target: Target,
        /// `fail`.
        #[arg(value_parser = ["fail"])]
        action: String,
        /// `NAMESPACE/NAME` (or `NAME` in `default`).
        pod: String,
        /// CrashLoopBackOff, OOMKilled, ImagePullBackOff, ErrImagePull or NeverReady.
        #[arg(long, default_value = "CrashLoopBackOff")]
        failure: String,
        /// The exit code of a crash loop's runs.
        #[arg(long)]
        exit_code: Option<i32>,
    },
    /// Manage fault rules of a running server.
    Fault {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        op: FaultOp,
    },
    /// Print the request journal of a running server as JSON lines.
    Journal {
        #[command(flatten)]
        target: Target,
        /// Only this verb.
        #[arg(long)]
        verb: Option<String>,
        /// Only this resource.
        #[arg(long)]
        resource: Option<String>,
        /// Only this object name.
        #[arg(long)]
        name: Option<String>,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this field manager.
        #[arg(long)]
        manager: Option<String>,
        /// Only this user's requests (e.g. system:serviceaccount:ops:op).
        #[arg(long)]
        user: Option<String>,
        /// Only writes.
        #[arg(long)]
        writes: bool,
        /// Replace uids, timestamps and resourceVersions by stable placeholders.
        #[arg(long)]
        normalized: bool,
        /// Clear the journal instead of printing it.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FaultOp {
    /// Add a rule; prints its id.
    Add(Box<AddRule>),
    /// List rules with their firing counts.
    List,
    /// Remove a rule by id, or all with --all.
    Remove {
        /// The rule id.
        id: Option<u64>,
        /// Remove every rule.
        #[arg(long)]
        all: bool,
    },
    /// Every firing so far.
    Firings,
}

#[derive(Debug, ClapArgs)]
struct AddRule {
    /// Verb to match (repeatable; none = all).
    #[arg(long = "verb")]
    verbs: Vec<String>,
    /// `plural` or `plural.group`.
    #[arg(long)]
    resource: Option<String>,
    /// Subresource (`status`).
    #[arg(long)]
    subresource: Option<String>,
    /// Namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Object name.
    #[arg(long)]
    name: Option<String>,
    /// Field manager.
    #[arg(long)]
    manager: Option<String>,
    /// Substring of the User-Agent.
    #[arg(long)]
    user_agent: Option<String>,
    /// Substring of the Content-Type.
    #[arg(long)]
    content_type: Option<String>,
    /// Answer this status code.
    #[arg(long, group = "action")]
    status: Option<u16>,
    /// Message of the status.
    #[arg(long, requires = "status")]
    message: Option<String>,
    /// Retry-After seconds of the status.
    #[arg(long, requires = "status")]
    retry_after: Option<u32>,
    /// Delay matching requests by this many milliseconds.
    #[arg(long, group = "action")]
    delay_ms: Option<u64>,
    /// Drop the connection before handling.
    #[arg(long, group = "action")]
    drop_before: bool,
    /// Handle, then drop the connection.
    #[arg(long, group = "action")]
    drop_after: bool,
    /// Fire for the next N matching requests only.
    #[arg(long)]
    times: Option<u64>,
    /// Fire with this probability.
    #[arg(long)]
    probability: Option<f64>,
}

impl AddRule {
    fn into_rule(self: Box<Self>) -> Result<FaultRule, String> {
        let action = if let Some(code) = self.status {
            FaultAction::Status {
                code,
                message: self.message,
                retry_after: self.retry_after,
            }
        } else if let Some(millis) = self.delay_ms {
            FaultAction::Delay { millis }
        } else if self.drop_before {
            FaultAction::DropBefore
        } else if self.drop_after {
            FaultAction::DropAfter
        } else {
            return Err(
                "a rule needs one of --status, --delay-ms, --drop-before, --drop-after".into(),
            );
        };
        Ok(FaultRule {
            verbs: self.verbs,
            resource: self.resource,
            subresource: self.subresource,
            namespace: self.namespace,
            name: self.name,
            field_manager: self.manager,
            user_agent: self.user_agent,
            content_type: self.content_type,
            action: Some(action),
            times: self.times,
            probability: self.probability,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(cmd) => match control(cmd).await {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fake-apiserver: {e}");
                ExitCode::from(1)
            }
        },
    }
}

async fn serve(args: Serve) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let controllers = match Selection::parse(&args.controllers) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-apiserver: --controllers: {e}");
            return ExitCode::from(2);
        }
    };
    let stages = match &args.stages {
        None => Stages::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Stages::parse(&text).map_err(|e| e.to_string()))
        {
            Ok(stages) => stages,
            Err(e) => {
                eprintln!("fake-apiserver: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let tokens = match &args.token_auth_file {
        None => Default::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| authn::parse_token_file(&text))
        {
            Ok(tokens) => tokens,
            Err(e) => {
                eprintln!("fake-apiserver: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let mut users = Vec::new();
    for spec in &args.kubeconfig_user {
        match spec.rsplit_once('=') {
            Some((user, file)) if !user.is_empty() && !file.is_empty() => {
                users.push((user.to_string(), PathBuf::from(file)));
            }
            _ => {
                eprintln!("fake-apiserver: --kubeconfig-user {spec:?}: want USER=FILE");
                return ExitCode::from(2);
            }
        }
    }
    let static_tokens = tokens.clone();
    let client_cas = match &args.client_ca_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                eprintln!("fake-apiserver: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let mode = args.authorization_mode.unwrap_or(if args.tls {
        Mode::Rbac
    } else {
        Mode::AlwaysAllow
    });
    let mut builder = FakeApiServer::builder();
    if let Some(dir) = &args.data_dir {
        builder = builder.data_dir(dir);
    }
    let server = builder
        .limits(Limits {
            max_requests_inflight: args.max_requests_inflight,
            max_mutating_requests_inflight: args.max_mutating_requests_inflight,
            request_timeout: args.request_timeout,
            ..Limits::default()
        })
        .authorization(mode)
        .tokens(tokens)
        .anonymous(args.anonymous_auth)
        .history(args.history)
        .seed(args.seed)
        .control(args.control, args.control_token.clone())
        .controllers(controllers)
        .nodes(args.nodes)
        .stages(stages)
        .try_build();
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-apiserver: {e}");
            return ExitCode::from(1);
        }
    };
    for path in &args.load {
        match server.load_path(path) {
            Ok(loaded) => {
                for what in loaded {
                    tracing::info!("loaded {what}");
                }
            }
            Err(e) => {
                eprintln!("fake-apiserver: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let addr = (args.bind, args.port).into();
    let own = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => {
            match (std::fs::read_to_string(cert), std::fs::read_to_string(key)) {
                (Ok(cert), Ok(key)) => Some((cert, key)),
                (Err(e), _) => {
                    eprintln!("fake-apiserver: {}: {e}", cert.display());
                    return ExitCode::from(2);
                }
                (_, Err(e)) => {
                    eprintln!("fake-apiserver: {}: {e}", key.display());
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let serving = if let Some((cert, key)) = &own {
        server
            .serve_tls_with_certificate(addr, client_cas.as_deref(), cert, key)
            .await
    } else if args.tls {
        server.serve_tls(addr, client_cas.as_deref()).await
    } else {
        server.serve(addr).await
    };
    let serving = match serving {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "fake-apiserver: cannot serve on {}:{}: {e}",
                args.bind, args.port
            );
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &args.kubeconfig {
        if let Err(e) = serving.write_kubeconfig(path) {
            eprintln!(
                "fake-apiserver: cannot write kubeconfig {}: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
        tracing::info!("kubeconfig written to {}", path.display());
    }
    for (user, path) in &users {
        // A user of the token file keeps its token; anyone else gets one.
        let known = static_tokens
            .iter()
            .find(|(_, u)| u.username == *user)
            .map(|(token, _)| token.clone());
        let token = known.unwrap_or_else(|| server.token_for(user_named(user)));
        if let Err(e) = std::fs::write(path, serving.kubeconfig_with_token(user, &token)) {
            eprintln!(
                "fake-apiserver: cannot write kubeconfig {}: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
        tracing::info!("kubeconfig of {user} written to {}", path.display());
    }
    println!("{}", serving.url());
    shutdown_signal().await;
    serving.shutdown().await;
    ExitCode::SUCCESS
}

/// A user by name: a ServiceAccount's user with its groups, or a user in
/// `system:authenticated`.
fn user_named(name: &str) -> UserInfo {
    let account = authn::service_account_of(name);
    UserInfo {
        username: name.to_string(),
        uid: String::new(),
        groups: match account {
            Some((ns, _)) => authn::service_account_groups(ns),
            None => vec![authn::AUTHENTICATED.to_string()],
        },
        extra: Default::default(),
    }
}

fn read_object(spec: &str) -> Result<Value, String> {
    let text = if spec == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else if let Some(path) = spec.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
    } else {
        spec.to_string()
    };
    serde_yaml::from_str(&text).map_err(|e| format!("the object is not JSON or YAML: {e}"))
}

/// Calls the control API of a running server.
async fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<String, String> {
    let mut config = match &target.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => kube::Config::new(http::Uri::from_static("http://127.0.0.1:6443")),
    };
    if let Some(server) = &target.server {
        config.cluster_url = server
            .parse()
            .map_err(|e| format!("bad --server {server}: {e}"))?;
    }
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("/_fake/v1{path}"));
    if let Some(token) = &target.token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = req
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(status) => {
            format!("{} ({}): {}", status.reason, status.code, status.message)
        }
        other => other.to_string(),
    })
}

async fn control(cmd: Command) -> Result<String, String> {
    let line = |s: String| if s.ends_with('\n') { s } else { s + "\n" };
    match cmd {
        Command::Inject {
            target,
            resource,
            action,
            event_type,
            object,
            write,
            namespace,
            name,
            selector,
            after,
        } => {
            let object = object.as_deref().map(read_object).transpose()?;
            let body = json!({
                "action": action, "resource": resource,
                "type": event_type.map(|t| t.to_uppercase()), "object": object, "write": write,
                "namespace": namespace, "name": name, "selector": selector, "after": after,
            });
            call(&target, "POST", "/inject", Some(body)).await.map(line)
        }
        Command::Node {
            target,
            state,
            name,
        } => call(&target, "POST", &format!("/nodes/{name}/{state}"), None)
            .await
            .map(line),
        Command::Pod {
            target,
            pod,
            failure,
            exit_code,
            ..
        } => {
            let (ns, name) = pod.split_once('/').unwrap_or(("default", pod.as_str()));
            let body = json!({"failure": failure, "exitCode": exit_code});
            call(
                &target,
                "POST",
                &format!("/namespaces/{ns}/pods/{name}/fail"),
                Some(body),
            )
            .await
            .map(line)
        }
        Command::Fault { target, op } => match op {
            FaultOp::Add(rule) => {
                let rule = rule.into_rule()?;
                let body = serde_json::to_value(rule).map_err(|e| e.to_string())?;
                call(&target, "POST", "/faults", Some(body)).await.map(line)
            }
            FaultOp::List => call(&target, "GET", "/faults", None).await.map(line),
            FaultOp::Remove {
                id: Some(id),
                all: false,
            } => call(&target, "DELETE", &format!("/faults/{id}"), None)
                .await
                .map(line),
            FaultOp::Remove {
                id: None,
                all: true,
            } => call(&target, "DELETE", "/faults", None).await.map(line),
            FaultOp::Remove { .. } => Err("give either a rule id or --all".into()),
            FaultOp::Firings => call(&target, "GET", "/firings", None).await.map(line),
        },
        Command::Journal {
            target,
            verb,
            resource,
            name,
            namespace,
            manager,
            user,
            writes,
            normalized,
            clear,
        } => {
            if clear {
                return call(&target, "DELETE", "/journal", None).await.map(line);
            }
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("verb", verb),
                ("resource", resource),
                ("name", name),
                ("namespace", namespace),
                ("manager", manager),
                ("user", user),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            if writes {
                q.append_pair("writes", "true");
            }
            if normalized {
                q.append_pair("normalized", "true");
            }
            call(&target, "GET", &format!("/journal?{}", q.finish()), None).await
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `--request-timeout`: a positive Go duration (`1m`, `30s`).
fn request_timeout(s: &str) -> Result<std::time::Duration, String> {
    fake_apiserver::apimachinery::duration::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration such as 1m or 30s"))
}
