//! `berth registry serve`: berth's OCI registry on TCP, over its own state root.
//!
//! No authentication and no TLS yet, so by default it only binds loopback addresses; a
//! non-loopback address needs `--insecure-listen-any`, a visible act.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use berth_registry::{Registry, RegistryConfig};
use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::daemon::{init_logging, LogFormat};

#[derive(Debug, Subcommand)]
pub enum RegistryVerb {
    /// Serve the OCI Distribution API (a private registry)
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
#[command(
    about = "Serve the OCI Distribution API (a private registry)",
    long_about = "Serve the OCI Distribution Spec v1.1 API over the registry state root.\n\n\
                  Authentication and TLS are not implemented yet: only loopback addresses \
                  are served unless --insecure-listen-any is given."
)]
pub struct ServeArgs {
    /// Registry state root (blobs, repositories, tags)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/berth-registry")]
    pub root: PathBuf,
    /// Address to listen on
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,
    /// Allow a non-loopback --addr although the registry has no auth and no TLS yet
    #[arg(long)]
    pub insecure_listen_any: bool,
    /// Allow DELETE of blobs and manifests (off: 405 UNSUPPORTED)
    #[arg(long)]
    pub enable_delete: bool,
    /// Run garbage collection online every SECONDS (0: never)
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub gc_interval: u64,
    /// Log level (error, warn, info, debug, trace) or a tracing filter
    #[arg(short = 'l', long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Log format, to stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub async fn run(verb: RegistryVerb) -> anyhow::Result<()> {
    match verb {
        RegistryVerb::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level, args.log_format)?;
    if !args.addr.ip().is_loopback() {
        if !args.insecure_listen_any {
            bail!(
                "--addr {}: not a loopback address; the registry has no authentication and no TLS yet, so anyone who can reach it could push and pull. Pass --insecure-listen-any to serve it anyway",
                args.addr
            );
        }
        warn!(addr = %args.addr, "serving without authentication or TLS on a non-loopback address (--insecure-listen-any)");
    }
    let config = RegistryConfig {
        delete_enabled: args.enable_delete,
    };
    let root = args.root.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::open(&root, config))
        .await
        .context("opening the registry")?
        .with_context(|| format!("cannot open registry root {}", args.root.display()))?;
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listen on {}", args.addr))?;
    info!(addr = %args.addr, root = %registry.root().display(), delete_enabled = args.enable_delete, "registry serving");

    if args.gc_interval > 0 {
        let reg = registry.clone();
        let every = Duration::from_secs(args.gc_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = reg.clone();
                match tokio::task::spawn_blocking(move || r.gc()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(error = %e, "registry garbage collection failed"),
                    Err(e) => warn!(error = %e, "registry garbage collection task failed"),
                }
            }
        });
    }

    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("registry stopping");
    };
    berth_registry::serve(listener, registry, shutdown)
        .await
        .context("serving the registry")
}
