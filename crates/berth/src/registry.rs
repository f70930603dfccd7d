//! `berth registry`: berth's OCI registry — `serve` (HTTP or HTTPS, with users, tokens,
//! immutable tags and an audit log) and `user add/rm/ls` (the registry's users).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use berth_registry::auth::{self, AccessConfig, HtpasswdSource, Perms, UserPerms};
use berth_registry::config::FileConfig;
use berth_registry::{App, Registry, RegistryConfig};
use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::daemon::{init_logging, LogFormat};

const DEFAULT_ROOT: &str = "/var/lib/berth-registry";
const DEFAULT_ADDR: &str = "127.0.0.1:5000";

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RegistryVerb {
    /// Serve the OCI Distribution API (a private registry)
    Serve(ServeArgs),
    /// Manage the registry's users and their permissions
    #[command(subcommand)]
    User(UserVerb),
}

#[derive(Debug, Args)]
#[command(
    about = "Serve the OCI Distribution API (a private registry)",
    long_about = "Serve the OCI Distribution Spec v1.1 API over the registry state root.\n\n\
                  Every request needs credentials (HTTP Basic or a bearer token from /token) \
                  of a user added with `berth registry user add`, unless anonymous pull is \
                  configured for the repository. Flags override the config file. A \
                  non-loopback address needs TLS (--tls-cert/--tls-key) or \
                  --insecure-listen-any."
)]
pub struct ServeArgs {
    /// Config file (TOML; see docs/REGISTRY.md); flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Registry state root (blobs, repositories, tags, users) [default: /var/lib/berth-registry]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow a non-loopback --addr without TLS (passwords then cross the network in clear)
    #[arg(long)]
    pub insecure_listen_any: bool,
    /// Allow DELETE of blobs and manifests (off: 405 UNSUPPORTED)
    #[arg(long)]
    pub enable_delete: bool,
    /// Run garbage collection online every SECONDS (0: never) [default: 0]
    #[arg(long, value_name = "SECONDS")]
    pub gc_interval: Option<u64>,
    /// Tags of repositories matching PATTERN never move or go away (repeatable)
    #[arg(long = "immutable-tags", value_name = "PATTERN")]
    pub immutable_tags: Vec<String>,
    /// Anyone may pull repositories matching PATTERN without credentials (repeatable)
    #[arg(long = "anonymous-pull", value_name = "PATTERN")]
    pub anonymous_pull: Vec<String>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter
    #[arg(short = 'l', long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Log format, to stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum UserVerb {
    /// Add a user; the password is read from standard input and stored bcrypt-hashed
    Add(UserAddArgs),
    /// Remove a user
    Rm(UserRootArgs),
    /// List users and their permissions
    Ls(UserLsArgs),
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// User name
    pub name: String,
    /// Registry state root
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Read the password from standard input (the only way: never on the command line)
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// May pull repositories matching PATTERN (`*` matches any characters, `/` included)
    #[arg(long, value_name = "PATTERN")]
    pub pull: Vec<String>,
    /// May push to repositories matching PATTERN
    #[arg(long, value_name = "PATTERN")]
    pub push: Vec<String>,
    /// May delete from repositories matching PATTERN (needs a registry with delete enabled)
    #[arg(long, value_name = "PATTERN")]
    pub delete: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UserRootArgs {
    /// User name
    pub name: String,
    /// Registry state root
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct UserLsArgs {
    /// Registry state root
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
}

pub async fn run(verb: RegistryVerb) -> anyhow::Result<()> {
    match verb {
        RegistryVerb::Serve(args) => serve(args).await,
        RegistryVerb::User(v) => tokio::task::spawn_blocking(move || user(v))
            .await
            .context("user command task")?,
    }
}

fn user(verb: UserVerb) -> anyhow::Result<()> {
    match verb {
        UserVerb::Add(a) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("read the password from standard input")?;
            let password = password
                .strip_suffix('\n')
                .map(|p| p.strip_suffix('\r').unwrap_or(p))
                .unwrap_or(&password);
            if password.is_empty() {
                bail!("the password read from standard input is empty");
            }
            if a.pull.is_empty() && a.push.is_empty() && a.delete.is_empty() {
                eprintln!(
                    "warning: user {} has no permissions; give some with --pull/--push/--delete",
                    a.name
                );
            }
            let perms = UserPerms {
                pull: a.pull,
                push: a.push,
                delete: a.delete,
            };
            auth::add_user(&a.root, &a.name, password, &perms)
                .with_context(|| format!("cannot add user {}", a.name))?;
            println!("{}", a.name);
            Ok(())
        }
        UserVerb::Rm(a) => {
            auth::remove_user(&a.root, &a.name)
                .with_context(|| format!("cannot remove user {}", a.name))?;
            println!("{}", a.name);
            Ok(())
        }
        UserVerb::Ls(a) => {
            let users = auth::UsersFile::load(&a.root)?;
            println!("{:<20} {:<24} {:<24} DELETE", "NAME", "PULL", "PUSH");
            for u in users.users {
                let j = |v: &[String]| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.join(",")
                    }
                };
                println!(
                    "{:<20} {:<24} {:<24} {}",
                    u.name,
                    j(&u.pull),
                    j(&u.push),
                    j(&u.delete)
                );
            }
            Ok(())
        }
    }
}

/// Settings after the config file and the flags are merged.
struct Settings {
    root: PathBuf,
    addr: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    insecure_listen_any: bool,
    delete_enabled: bool,
    gc_interval: u64,
    immutable_tags: Vec<String>,
    access: AccessConfig,
}

/// Relative paths in the config file are relative to its directory.
fn relative_to(base: Option<&Path>, p: PathBuf) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    }
}

fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let base = args.config.as_deref().and_then(Path::parent);
    let tls = match (&args.tls_cert, &args.tls_key, &file.tls) {
        (Some(c), Some(k), _) => Some((c.clone(), k.clone())),
        (_, _, Some(t)) => Some((
            relative_to(base, t.cert.clone()),
            relative_to(base, t.key.clone()),
        )),
        _ => None,
    };
    let mut immutable_tags = file.immutable_tags.clone();
    immutable_tags.extend(args.immutable_tags.iter().cloned());
    let mut anonymous_pull = file.anonymous_pull.clone();
    anonymous_pull.extend(args.anonymous_pull.iter().cloned());
    let htpasswd = match &file.htpasswd {
        Some(h) => Some(HtpasswdSource {
            file: relative_to(base, h.file.clone()),
            perms: Perms::from_strings(&h.pull, &h.push, &h.delete)
                .context("[htpasswd] permissions")?,
        }),
        None => None,
    };
    let default_addr: SocketAddr = DEFAULT_ADDR.parse().context("default address")?;
    Ok(Settings {
        root: args
            .root
            .clone()
            .or_else(|| file.root.clone().map(|r| relative_to(base, r)))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
        addr: args.addr.or(file.addr).unwrap_or(default_addr),
        tls,
        insecure_listen_any: args.insecure_listen_any || file.insecure_listen_any.unwrap_or(false),
        delete_enabled: args.enable_delete || file.delete_enabled.unwrap_or(false),
        gc_interval: args.gc_interval.or(file.gc_interval).unwrap_or(0),
        access: AccessConfig {
            anonymous_pull: auth::parse_patterns(&anonymous_pull)
                .context("anonymous pull patterns")?,
            htpasswd,
        },
        immutable_tags,
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level, args.log_format)?;
    let s = settings(&args)?;
    if !s.addr.ip().is_loopback() && s.tls.is_none() {
        if !s.insecure_listen_any {
            bail!(
                "--addr {}: not a loopback address, and no TLS (--tls-cert/--tls-key): passwords and tokens would cross the network in clear. Configure TLS, or pass --insecure-listen-any to serve plain HTTP anyway",
                s.addr
            );
        }
        warn!(addr = %s.addr, "serving plain HTTP on a non-loopback address (--insecure-listen-any)");
    }
    let acceptor = match &s.tls {
        Some((cert, key)) => Some(berth_registry::tls::acceptor(cert, key)?),
        None => None,
    };
    let config = RegistryConfig {
        delete_enabled: s.delete_enabled,
        immutable_tags: auth::parse_patterns(&s.immutable_tags)
            .context("immutable tag patterns")?,
    };
    let root = s.root.clone();
    let access = s.access.clone();
    let tls = acceptor.is_some();
    let app = tokio::task::spawn_blocking(move || -> anyhow::Result<App> {
        let registry = Registry::open(&root, config)
            .with_context(|| format!("cannot open registry root {}", root.display()))?;
        let app = App::open(Arc::new(registry), access, tls)?;
        Ok(app)
    })
    .await
    .context("opening the registry")??;
    let app = Arc::new(app);
    if app.access.user_count() == 0 && app.access.anonymous_pull().is_empty() {
        warn!(root = %s.root.display(), "the registry has no users: every request will be refused; add one with `berth registry user add`");
    }
    let listener = tokio::net::TcpListener::bind(s.addr)
        .await
        .with_context(|| format!("listen on {}", s.addr))?;
    info!(
        addr = %s.addr,
        root = %app.registry.root().display(),
        tls,
        delete_enabled = s.delete_enabled,
        immutable_tags = ?s.immutable_tags,
        users = app.access.user_count(),
        "registry serving"
    );

    if s.gc_interval > 0 {
        let reg = app.registry.clone();
        let every = Duration::from_secs(s.gc_interval);
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
    match acceptor {
        Some(acceptor) => berth_registry::tls::serve_tls(listener, app, acceptor, shutdown).await,
        None => berth_registry::serve(listener, app, shutdown).await,
    }
    .context("serving the registry")
}
