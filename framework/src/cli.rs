//! `kopf::run(operator)`: a Kopf-like command line for operator binaries.
//!
//! ```text
//! my-operator [--kubeconfig PATH] [--context NAME] [-n NS]... [-A]
//!             [--standalone | --peering NAME | --lease NAME [--lease-namespace NS]]
//!             [--priority N | --dev] [--liveness URL]
//!             [--verbose | --debug | --quiet] [--log-format plain|full|json]
//! ```
//! Stops gracefully on SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::Parser;

use crate::{
    formatting::{KopfFormat, LogFormat},
    operator::Operator,
    settings::Settings,
};

/// The command line of a kopf operator.
#[derive(Debug, Parser)]
#[command(about = "Run a kopf operator.")]
struct Args {
    /// The kubeconfig file (default: $KUBECONFIG or ~/.kube/config, else in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// Namespaces to serve (repeatable): a name or a pattern of
    /// comma-separated globs, negated with `!`, e.g. `-n 'team-*,!team-test'`.
    #[arg(short, long = "namespace", value_name = "PATTERN")]
    namespaces: Vec<String>,
    /// Serve all namespaces (the default when no namespace is given).
    #[arg(short = 'A', long, conflicts_with = "namespaces")]
    all_namespaces: bool,
    /// Run without peering (no pausing in favour of other instances).
    #[arg(long)]
    standalone: bool,
    /// The peering object to use; makes peering mandatory (paused until it exists).
    #[arg(short = 'P', long, value_name = "NAME", env = "KOPF_RUN_PEERING")]
    peering: Option<String>,
    /// This instance's priority among its peers.
    #[arg(short, long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i64,
    /// A developer's instance: priority 666, above deployed ones.
    #[arg(long, conflicts_with = "priority")]
    dev: bool,
    /// Instead of peering objects, leader election on this Lease.
    #[arg(long, value_name = "NAME", conflicts_with = "standalone")]
    lease: Option<String>,
    /// The Lease's namespace (default: $POD_NAMESPACE, else the first served namespace, else default).
    #[arg(long, value_name = "NS", requires = "lease")]
    lease_namespace: Option<String>,
    /// Serve the probes' results at this URL (`http://host:port/path`).
    #[arg(short = 'L', long, value_name = "URL")]
    liveness: Option<crate::settings::Liveness>,
    /// Debug-level logs (as --debug, as in Kopf).
    #[arg(long, short)]
    verbose: bool,
    /// Debug-level logs.
    #[arg(long, short)]
    debug: bool,
    /// Warnings and errors only.
    #[arg(long, short)]
    quiet: bool,
    /// Log format: Kopf's `full` (time, logger, level), `plain`, or `json`.
    #[arg(long, value_enum, default_value = "full")]
    log_format: LogFormat,
    /// Start messages about an object with `[namespace/name]` (the
    /// default for the text formats).
    #[arg(long, overrides_with = "no_log_prefix")]
    log_prefix: bool,
    /// No `[namespace/name]` prefix (the default for JSON).
    #[arg(long, overrides_with = "log_prefix")]
    no_log_prefix: bool,
    /// The JSON key of the object's reference (default `object`).
    #[arg(long, value_name = "KEY")]
    log_refkey: Option<String>,
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command line is wrong.
    #[error("{0}")]
    Args(String),
    /// The kubeconfig could not be read or used.
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    /// The operator stopped with an error.
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorError),
}

/// Parses the command line, connects, and runs `operator` until SIGINT or
/// SIGTERM.
///
/// # Errors
/// [`RunError`] when the cluster is unreachable or the operator fails to start.
pub async fn run(operator: Operator, settings: Settings) -> Result<(), RunError> {
    run_with(operator, settings, std::env::args(), shutdown_signal()).await
}

/// As [`run`], with the command line given and stopped by `stop` instead of
/// a signal (for embedding and tests).
///
/// # Errors
/// [`RunError`] when the arguments are wrong, the cluster is unreachable, or
/// the operator fails to start.
pub async fn run_with(
    operator: Operator,
    settings: Settings,
    args: impl IntoIterator<Item = String>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return Ok(());
        }
        Err(e) => return Err(RunError::Args(e.to_string())),
    };
    // Kopf: 'DEBUG' if debug or verbose else 'WARNING' if quiet else 'INFO'.
    let level = if args.debug || args.verbose {
        "debug"
    } else if args.quiet {
        "warn"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The libraries' own debug lines are not the operator's (Kopf
        // keeps only its own too).
        tracing_subscriber::EnvFilter::new(format!(
            "{level},kube=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,rustls=warn,\
             rustls_platform_verifier=warn"
        ))
    });
    let prefix = match (args.log_prefix, args.no_log_prefix) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(KopfFormat::new(
            args.log_format,
            prefix,
            args.log_refkey.clone(),
        ))
        .try_init();
    if let Some(login) = operator.login().await {
        let config =
            login.map_err(|e| RunError::Config(format!("the login handler failed: {e}")))?;
        let client = kube::Client::try_from(config).map_err(|e| RunError::Config(e.to_string()))?;
        operator.run(client, args.settings(settings), stop).await?;
        return Ok(());
    }
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Config(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| RunError::Config(e.to_string()))?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| RunError::Config(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| RunError::Config(e.to_string()))?,
    };
    let client = kube::Client::try_from(config).map_err(|e| RunError::Config(e.to_string()))?;
    operator.run(client, args.settings(settings), stop).await?;
    Ok(())
}

impl Args {
    /// The settings with what the command line says.
    fn settings(&self, mut settings: Settings) -> Settings {
        if !self.all_namespaces && !self.namespaces.is_empty() {
            settings.watching.namespaces.clone_from(&self.namespaces);
        }
        if self.liveness.is_some() {
            settings.liveness.clone_from(&self.liveness);
        }
        let peering = &mut settings.peering;
        peering.standalone |= self.standalone;
        if let Some(name) = &self.peering {
            peering.name.clone_from(name);
            peering.mandatory = true;
        }
        if self.dev {
            peering.priority = 666;
        } else if self.priority != 0 {
            peering.priority = self.priority;
        }
        if let Some(name) = &self.lease {
            let namespace = self
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .or_else(|| self.namespaces.first().cloned())
                .unwrap_or_else(|| "default".into());
            peering.lease = Some(crate::settings::LeaseElection {
                namespace,
                name: name.clone(),
                duration: std::time::Duration::from_secs(15),
            });
        }
        settings
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
    tracing::info!("Stop-signal received. Stopping the operator.");
}
