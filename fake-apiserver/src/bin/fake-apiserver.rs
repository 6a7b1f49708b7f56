//! `fake-apiserver`: the fake Kubernetes API server as a standalone process.
//!
//! ```text
//! fake-apiserver --port 6443 --kubeconfig /tmp/fake.kubeconfig --load manifests/
//! KUBECONFIG=/tmp/fake.kubeconfig kubectl get namespaces
//! ```

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use fake_apiserver::FakeApiServer;

/// A fast, faithful fake Kubernetes API server.
#[derive(Debug, Parser)]
#[command(name = "fake-apiserver", version, about)]
struct Args {
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
    /// Seed for uids and generated names.
    #[arg(long, default_value_t = 0x6b6f_7066)]
    seed: u64,
    /// Log filter (e.g. `debug`), also read from RUST_LOG.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    log: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let server = FakeApiServer::builder()
        .history(args.history)
        .seed(args.seed)
        .build();
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
    let serving = match server.serve((args.bind, args.port).into()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "fake-apiserver: cannot listen on {}:{}: {e}",
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
    println!("{}", serving.url());
    if !args.bind.is_loopback() {
        tracing::warn!("serving on a non-loopback address without authentication");
    }
    shutdown_signal().await;
    serving.shutdown().await;
    ExitCode::SUCCESS
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
