//! Serves the Docker API on a unix socket over an engine rooted in a directory, for
//! trying real clients by hand:
//!
//! ```text
//! cargo run -p berth-api --example serve -- --root /tmp/berth-root --sock /tmp/berth.sock
//! DOCKER_HOST=unix:///tmp/berth.sock docker version
//! ```
//!
//! Logs go to stderr (`RUST_LOG=debug` for one line per request). Ctrl-C stops it.

use std::path::PathBuf;

use berth_engine::{DaemonConfig, Engine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut root = None;
    let mut sock = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = args.next().map(PathBuf::from),
            "--sock" => sock = args.next().map(PathBuf::from),
            other => {
                return Err(
                    format!("unknown argument {other:?} (use --root DIR --sock PATH)").into(),
                )
            }
        }
    }
    let (Some(root), Some(sock)) = (root, sock) else {
        return Err("usage: serve --root DIR --sock PATH".into());
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let engine = Engine::open(DaemonConfig {
        // No networking here: leave the host's alone.
        bridge: "none".into(),
        root,
        min_free_bytes: Some(0),
        ..Default::default()
    })?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock)?;
        eprintln!("serving the Docker API on unix://{}", sock.display());
        berth_api::serve(engine, listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}
