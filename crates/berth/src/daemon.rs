//! `berth daemon`: opens the engine and serves the Docker Engine API on a unix socket
//! until SIGTERM or SIGINT; then stops accepting, lets in-flight requests finish and
//! removes the socket.

use std::io::IsTerminal as _;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use berth_engine::config::DEFAULT_CONFIG_FILE;
use berth_engine::{DaemonConfig, Engine};
use clap::{Args, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::client::parse_unix_host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
#[command(
    about = "Run the berth daemon",
    long_about = "Run the berth daemon: the engine, serving the Docker Engine API on a unix socket.\n\n\
                  Settings come from the config file (/etc/berth/config.toml when present; keys: \
                  root, host, socket_group, preserve_setuid, max_layer_bytes, \
                  max_compression_ratio, min_free_bytes, allow_bind_sources, [policy] allow and \
                  require_digest, and more: docs/OPERATOR.md); flags \
                  override it."
)]
pub struct DaemonArgs {
    /// Daemon configuration file (TOML) [default: /etc/berth/config.toml, if present]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Root directory of persistent berth state [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Socket to serve the API on [default: unix:///run/berth/berth.sock]
    #[arg(short = 'H', long, value_name = "unix://PATH")]
    pub host: Option<String>,
    /// Group owning the API socket (mode 0660); members may use berth
    #[arg(short = 'G', long, value_name = "NAME")]
    pub group: Option<String>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter like
    /// "info,berth_store=debug"
    #[arg(short = 'l', long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Log format, to stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Allow images from this registry or repository pattern (repeatable; added to
    /// [policy] allow): `127.0.0.1:5000`, `registry.example:5000/team/*`. With none,
    /// pulls are refused
    #[arg(long = "allow-registry", value_name = "PATTERN")]
    pub allow_registry: Vec<String>,
    /// The default bridge network's interface [default: berth0]; `none`: no default
    /// network (containers that name no network get none)
    #[arg(short = 'b', long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// Remap containers' root to an unprivileged host id range: `default` (the user
    /// dockremap, created with 65536 ids when missing) or USER[:GROUP] (their first
    /// /etc/subuid and /etc/subgid ranges)
    #[arg(long = "userns-remap", value_name = "default|USER[:GROUP]")]
    pub userns_remap: Option<String>,
}

pub(crate) fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let directive = match level {
        "fatal" | "panic" => "error",
        "warning" => "warn",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(directive)
        .with_context(|| format!("invalid --log-level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("setting up logging: {e}"))
}

/// The daemon's settings: the config file, then the flags over it.
fn load_config(args: &DaemonArgs) -> anyhow::Result<DaemonConfig> {
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let mut config = DaemonConfig::load(&path, required)?;
    if let Some(root) = &args.root {
        config.root = root.clone();
    }
    if let Some(host) = &args.host {
        config.host = host.clone();
    }
    if let Some(group) = &args.group {
        config.socket_group = Some(group.clone());
    }
    if let Some(bridge) = &args.bridge {
        config.bridge = bridge.clone();
        config.validate()?;
    }
    if let Some(remap) = &args.userns_remap {
        config.userns_remap = Some(remap.clone());
        config.validate()?;
    }
    config
        .policy
        .allow
        .extend(args.allow_registry.iter().cloned());
    Ok(config)
}

/// Makes way for the socket: creates its directory; removes a stale socket that
/// nothing answers on; refuses when a daemon answers, or when the path is not a socket.
fn prepare_socket_path(path: &Path, host: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("create socket directory {}", parent.display()))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket: refusing to replace it",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "another daemon is already serving {host}: refusing to start (stop it, or give this daemon another --host)"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            info!(socket = %path.display(), "removing stale socket: nothing answers on it");
            std::fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("check whether a daemon answers on {}", path.display())),
    }
}

/// A group name (or number) to its gid.
fn lookup_gid(name: &str) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let cname = std::ffi::CString::new(name).with_context(|| format!("socket group {name:?}"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    loop {
        // SAFETY: an all-zero `group` is a valid value of this plain C struct.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is to a live value of the right type; `buf` is writable
        // for `buf.len()` bytes; the strings getgrnam_r stores point into `buf`, and we
        // read only `gr_gid` (a plain integer) after the call.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            bail!(
                "looking up socket group {name:?}: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        if result.is_null() {
            bail!("socket group {name:?} does not exist");
        }
        return Ok(grp.gr_gid);
    }
}

/// Binds the socket with mode 0600 from the start (no window where others may
/// connect), then hands it to the group with mode 0660.
fn bind_socket(path: &Path, gid: Option<u32>) -> anyhow::Result<tokio::net::UnixListener> {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.with_context(|| format!("bind {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("give socket {} to group {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// How often the heap trimmer looks at glibc's free memory.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// Free heap memory (bytes) from which the trimmer gives it back to the kernel.
const TRIM_FROM: usize = 16 << 20;

/// glibc keeps what its arenas freed: after a burst (200 concurrent `rm -f`, each request
/// on a blocking thread with an arena of its own) the daemon's RSS stayed at 2.5 times
/// its size before, measured (bench/soak.sh). Every [`TRIM_EVERY`], when the arenas hold
/// more than [`TRIM_FROM`] free, `malloc_trim` returns it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn spawn_heap_trimmer() {
    let spawned = std::thread::Builder::new()
        .name("heap-trim".into())
        .stack_size(64 * 1024)
        .spawn(|| loop {
            std::thread::sleep(TRIM_EVERY);
            // SAFETY: mallinfo2 only reads the allocator's statistics (under its locks).
            let free = unsafe { libc::mallinfo2() }.fordblks;
            if free >= TRIM_FROM {
                // SAFETY: malloc_trim releases free memory of the allocator's own arenas
                // (under their locks); it touches no memory in use.
                unsafe {
                    libc::malloc_trim(0);
                }
                // SAFETY: as above.
                let after = unsafe { libc::mallinfo2() }.fordblks;
                tracing::debug!(free_bytes = free, free_after_bytes = after, "heap trimmed");
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the heap trimmer");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn spawn_heap_trimmer() {}

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level, args.log_format)?;
    let config = load_config(&args)?;
    let host = config.host.clone();
    let socket = parse_unix_host(&host)?;
    let gid = config.socket_group.as_deref().map(lookup_gid).transpose()?;
    let root = config.root.clone();

    prepare_socket_path(&socket, &host)?;
    let engine = tokio::task::spawn_blocking(move || Engine::open(config))
        .await
        .context("opening the engine")?
        .with_context(|| format!("cannot open state root {}", root.display()))?;
    let listener = bind_socket(&socket, gid)?;
    spawn_heap_trimmer();

    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let socket_for_exit = socket.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(
            signal = name,
            "shutting down: no new connections, waiting for requests in flight"
        );
        let _ = stop_tx.send(());
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        warn!("second signal: exiting without waiting for requests in flight");
        let _ = std::fs::remove_file(&socket_for_exit);
        std::process::exit(130);
    });

    info!(
        version = env!("CARGO_PKG_VERSION"),
        api_version = berth_api::API_VERSION,
        root = %root.display(),
        host = %host,
        "berth daemon serving the API"
    );
    let settle = engine.clone();
    let served = berth_api::serve(engine, listener, async {
        let _ = stop_rx.await;
    })
    .await;
    // The exits already recorded are handled and exited containers' interfaces and
    // namespaces, which the engine deletes in the background, are gone: none outlives
    // the daemon (`Engine::close`).
    let _ =
        tokio::task::spawn_blocking(move || settle.close(std::time::Duration::from_secs(30))).await;
    if let Err(e) = std::fs::remove_file(&socket) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(socket = %socket.display(), error = %e, "could not remove the socket");
        }
    }
    served.with_context(|| format!("serving the API on {host}"))?;
    info!("berth daemon stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            "root = \"/srv/berth\"\nhost = \"unix:///tmp/a.sock\"\nsocket_group = \"docker\"\n\n[policy]\nallow = [\"reg.example:5000/team/*\"]\n",
        )
        .unwrap();
        let args = DaemonArgs {
            config: Some(cfg),
            root: None,
            host: Some("unix:///tmp/b.sock".into()),
            group: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            allow_registry: vec!["127.0.0.1:5000".into()],
            bridge: None,
            userns_remap: None,
        };
        let c = load_config(&args).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/berth"));
        assert_eq!(c.host, "unix:///tmp/b.sock");
        assert_eq!(c.socket_group.as_deref(), Some("docker"));
        assert_eq!(
            c.policy.allow,
            ["reg.example:5000/team/*", "127.0.0.1:5000"]
        );
    }

    #[test]
    fn explicit_config_must_exist() {
        let args = DaemonArgs {
            config: Some("/nonexistent/berth.toml".into()),
            root: None,
            host: None,
            group: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            allow_registry: Vec::new(),
            bridge: None,
            userns_remap: None,
        };
        assert!(load_config(&args).is_err());
    }

    #[test]
    fn stale_sockets_are_removed_live_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/d.sock");
        prepare_socket_path(&path, "unix://x").unwrap();
        assert!(path.parent().unwrap().is_dir());

        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = prepare_socket_path(&path, "unix://x").unwrap_err();
        assert!(e.to_string().contains("another daemon"), "{e}");
        drop(live);
        // The file stays after the listener closes: stale now.
        assert!(path.exists());
        prepare_socket_path(&path, "unix://x").unwrap();
        assert!(!path.exists());

        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert!(prepare_socket_path(&file, "unix://x").is_err());
        assert!(file.exists());
    }

    #[test]
    fn groups_resolve() {
        assert_eq!(lookup_gid("0").unwrap(), 0);
        assert_eq!(lookup_gid("root").unwrap(), 0);
        assert!(lookup_gid("no-such-group-berth").is_err());
    }

    #[tokio::test]
    async fn socket_mode_is_0660() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _l = bind_socket(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }
}
