//! The command line: `berth daemon` and the client verbs, spelled like docker's.

pub mod build;
pub mod containers;
pub mod distribution;
pub mod inspect;
pub mod list;
pub mod login;
pub mod manage;
pub mod network;
pub mod opts;
pub mod progress;
pub mod run;
pub mod service;
pub mod stack;
pub mod stdio;
pub mod system;
pub mod transfer;
pub mod volume;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::client::Client;
use crate::daemon::DaemonArgs;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Whoever reads our stdout went away (a closed pipe).
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The command ends with this exit status: a container's exit code (`run`, `start -a`,
/// `exec`), or docker's 125/126 for a `run` that failed before or at the start. With a
/// message, it is printed to stderr first.
#[derive(Debug)]
pub struct StatusError {
    pub code: i32,
    pub message: Option<String>,
}

impl StatusError {
    /// An exit status with nothing to print (the container's own exit code).
    pub fn silent(code: i32) -> StatusError {
        StatusError {
            code,
            message: None,
        }
    }

    /// An error printed as usual, with a given exit status.
    pub fn with_message(code: i32, e: anyhow::Error) -> anyhow::Error {
        if e.is::<StatusError>() {
            return e;
        }
        anyhow::Error::new(StatusError {
            code,
            message: Some(format!("{e:#}")),
        })
    }
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for StatusError {}

/// Maps a write error on stdout: a closed pipe becomes [`StdoutClosed`].
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("write to stdout")
    }
}

/// An I/O error as Go words it: `no such file or directory`, without Rust's
/// `(os error 2)`.
pub fn os_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match (e.raw_os_error(), s.rfind(" (os error ")) {
        (Some(_), Some(i)) => s[..i].to_string(),
        _ => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// Writes command output to stdout.
pub fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes()).map_err(stdout_error)?;
    o.flush().map_err(stdout_error)
}

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    about = "A container engine that speaks the Docker Engine API",
    long_about = "A container engine that speaks the Docker Engine API.\n\n\
                  `berth daemon` runs the engine; every other verb is a client of its API \
                  on a unix socket, like the docker CLI.",
    disable_version_flag = true
)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long, env = "BERTH_HOST", default_value = DEFAULT_HOST, value_name = "unix://PATH")]
    pub host: String,
    /// Print version information and quit
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Verb>,
}

impl Cli {
    /// Whether the verb serves (the daemon, the registry) rather than calls a daemon.
    pub fn is_server(&self) -> bool {
        matches!(
            self.command,
            Some(Verb::Daemon(_) | Verb::Registry(crate::registry::RegistryVerb::Serve(_)))
        )
    }
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Verb {
    /// Run the berth daemon
    Daemon(DaemonArgs),
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Execute a command in a running container
    Exec(run::ExecArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::NamesArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
    /// Pause all processes within one or more containers
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(containers::CpArgs),
    /// Get real time events from the server
    Events(containers::EventsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerVerb),
    /// Run berth's OCI registry
    #[command(subcommand)]
    Registry(crate::registry::RegistryVerb),
    /// List images
    Images(list::ImagesArgs),
    /// Load an image from a tar archive or STDIN
    Load(transfer::LoadArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(transfer::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(transfer::ImportArgs),
    /// Create a new image from a container's changes
    Commit(transfer::CommitArgs),
    /// Return low-level information on containers and images
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(inspect::HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(manage::TagArgs),
    /// Remove one or more images
    Rmi(manage::RmiArgs),
    /// Download an image from a registry
    Pull(distribution::PullArgs),
    /// Upload an image to a registry
    Push(distribution::PushArgs),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageVerb),
    /// Manage berth
    #[command(subcommand)]
    System(SystemVerb),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeVerb),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkVerb),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Manage Swarm
    #[command(subcommand)]
    Swarm(service::SwarmVerb),
    /// Manage Swarm services
    #[command(subcommand)]
    Service(service::ServiceVerb),
    /// Manage Swarm stacks
    #[command(subcommand)]
    Stack(stack::StackVerb),
    /// Show the berth version information
    Version(system::VersionArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ContainerVerb {
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(containers::CpArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Execute a command in a running container
    Exec(run::ExecArgs),
    /// Display detailed information on one or more containers
    Inspect(inspect::InspectArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(containers::PsArgs),
    /// Pause all processes within one or more containers
    Pause(containers::NamesArgs),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(containers::RmArgs),
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::NamesArgs),
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImageVerb {
    /// List images
    #[command(visible_alias = "list")]
    Ls(list::ImagesArgs),
    /// List the images built here whose base image has a newer digest in its registry
    Outdated(build::OutdatedArgs),
    /// Display detailed information on one or more images
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(inspect::HistoryArgs),
    /// Load an image from a tar archive or STDIN
    Load(transfer::LoadArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(transfer::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(transfer::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(manage::TagArgs),
    /// Remove one or more images
    #[command(visible_aliases = ["rmi", "remove"])]
    Rm(manage::RmiArgs),
    /// Remove unused images
    Prune(manage::PruneArgs),
    /// Download an image from a registry
    Pull(distribution::PullArgs),
    /// Upload an image to a registry
    Push(distribution::PushArgs),
    /// Copy an image between registries without unpacking it
    Copy(distribution::CopyArgs),
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SystemVerb {
    /// Show berth disk usage
    Df(system::DfArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
}

/// Runs one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.version {
        out(&format!("berth version {}\n", system::VERSION))?;
        return Ok(());
    }
    let Some(verb) = cli.command else {
        Cli::command().print_help()?;
        return Ok(());
    };
    if let Verb::Daemon(args) = verb {
        return crate::daemon::run(args).await;
    }
    if let Verb::Registry(verb) = verb {
        return crate::registry::run(verb).await;
    }
    if let Verb::Logout(a) = verb {
        return login::logout(a).await;
    }
    if let Verb::Image(ImageVerb::Copy(a)) = verb {
        return distribution::copy(a).await;
    }
    let client = Client::new(&cli.host)?;
    let c = &client;
    match verb {
        Verb::Daemon(_) | Verb::Registry(_) | Verb::Logout(_) | Verb::Image(ImageVerb::Copy(_)) => {
            unreachable!("handled above")
        }
        Verb::Pull(a) | Verb::Image(ImageVerb::Pull(a)) => distribution::pull(c, a).await,
        Verb::Push(a) | Verb::Image(ImageVerb::Push(a)) => distribution::push(c, a).await,
        Verb::Login(a) => login::login(c, a).await,
        Verb::Images(a) | Verb::Image(ImageVerb::Ls(a)) => list::images(c, a).await,
        Verb::Load(a) | Verb::Image(ImageVerb::Load(a)) => transfer::load(c, a).await,
        Verb::Build(a) | Verb::Image(ImageVerb::Build(a)) => build::build(c, a).await,
        Verb::Image(ImageVerb::Outdated(a)) => build::outdated(c, a).await,
        Verb::Save(a) | Verb::Image(ImageVerb::Save(a)) => transfer::save(c, a).await,
        Verb::Import(a) | Verb::Image(ImageVerb::Import(a)) => transfer::import(c, a).await,
        Verb::Commit(a) => transfer::commit(c, a).await,
        Verb::Inspect(a) => inspect::inspect(c, a, inspect::Scope::Any).await,
        Verb::Image(ImageVerb::Inspect(a)) => inspect::inspect(c, a, inspect::Scope::Image).await,
        Verb::Container(ContainerVerb::Inspect(a)) => {
            inspect::inspect(c, a, inspect::Scope::Container).await
        }
        Verb::Run(a) | Verb::Container(ContainerVerb::Run(a)) => run::run(c, a).await,
        Verb::Create(a) | Verb::Container(ContainerVerb::Create(a)) => run::create(c, a).await,
        Verb::Start(a) | Verb::Container(ContainerVerb::Start(a)) => run::start(c, a).await,
        Verb::Attach(a) | Verb::Container(ContainerVerb::Attach(a)) => run::attach(c, a).await,
        Verb::Exec(a) | Verb::Container(ContainerVerb::Exec(a)) => run::exec(c, a).await,
        Verb::Ps(a) | Verb::Container(ContainerVerb::Ls(a)) => containers::ps(c, a).await,
        Verb::Stop(a) | Verb::Container(ContainerVerb::Stop(a)) => {
            containers::stop(c, a, false).await
        }
        Verb::Restart(a) | Verb::Container(ContainerVerb::Restart(a)) => {
            containers::stop(c, a, true).await
        }
        Verb::Kill(a) | Verb::Container(ContainerVerb::Kill(a)) => containers::kill(c, a).await,
        Verb::Rm(a) | Verb::Container(ContainerVerb::Rm(a)) => containers::rm(c, a).await,
        Verb::Wait(a) | Verb::Container(ContainerVerb::Wait(a)) => containers::wait(c, a).await,
        Verb::Rename(a) | Verb::Container(ContainerVerb::Rename(a)) => {
            containers::rename(c, a).await
        }
        Verb::Logs(a) | Verb::Container(ContainerVerb::Logs(a)) => containers::logs(c, a).await,
        Verb::Top(a) | Verb::Container(ContainerVerb::Top(a)) => containers::top(c, a).await,
        Verb::Stats(a) | Verb::Container(ContainerVerb::Stats(a)) => containers::stats(c, a).await,
        Verb::Pause(a) | Verb::Container(ContainerVerb::Pause(a)) => {
            containers::pause(c, a, "/pause").await
        }
        Verb::Unpause(a) | Verb::Container(ContainerVerb::Unpause(a)) => {
            containers::pause(c, a, "/unpause").await
        }
        Verb::Update(a) | Verb::Container(ContainerVerb::Update(a)) => {
            containers::update(c, a).await
        }
        Verb::Cp(a) | Verb::Container(ContainerVerb::Cp(a)) => containers::cp(c, a).await,
        Verb::Container(ContainerVerb::Prune(a)) => containers::prune(c, a).await,
        Verb::Events(a) => containers::events(c, a).await,
        Verb::History(a) | Verb::Image(ImageVerb::History(a)) => inspect::history(c, a).await,
        Verb::Tag(a) | Verb::Image(ImageVerb::Tag(a)) => manage::tag(c, a).await,
        Verb::Rmi(a) | Verb::Image(ImageVerb::Rm(a)) => manage::rmi(c, a).await,
        Verb::Image(ImageVerb::Prune(a)) => manage::prune(c, a).await,
        Verb::System(SystemVerb::Df(a)) => system::df(c, a).await,
        Verb::Info(a) | Verb::System(SystemVerb::Info(a)) => system::info(c, a).await,
        Verb::Version(a) => system::version(c, a).await,
        Verb::Volume(v) => volume::run(c, v).await,
        Verb::Network(v) => network::run(c, v).await,
        Verb::Port(a) | Verb::Container(ContainerVerb::Port(a)) => network::port(c, a).await,
        Verb::Swarm(v) => service::swarm(c, v).await,
        Verb::Service(v) => service::run(c, v).await,
        Verb::Stack(v) => stack::run(c, v).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_docker_spellings() {
        let cli = Cli::try_parse_from([
            "berth",
            "-H",
            "unix:///tmp/x.sock",
            "images",
            "-a",
            "-q",
            "--digests",
            "--no-trunc",
            "-f",
            "dangling=true",
            "--filter",
            "label=a",
            "fixture/*",
        ])
        .unwrap();
        assert_eq!(cli.host, "unix:///tmp/x.sock");
        let Some(Verb::Images(a)) = cli.command else {
            panic!("not images")
        };
        assert!(a.all && a.quiet && a.digests && a.no_trunc);
        assert_eq!(a.filters, ["dangling=true", "label=a"]);
        assert_eq!(a.reference.as_deref(), Some("fixture/*"));

        let cli = Cli::try_parse_from([
            "berth",
            "import",
            "-c",
            "ENV A=b",
            "--change",
            "CMD [\"sh\"]",
            "-m",
            "msg",
            "-",
            "x:1",
        ])
        .unwrap();
        let Some(Verb::Import(a)) = cli.command else {
            panic!("not import")
        };
        assert_eq!(a.changes.len(), 2);
        assert_eq!(a.file, "-");
        assert_eq!(a.reference.as_deref(), Some("x:1"));

        let cli = Cli::try_parse_from(["berth", "image", "rm", "-f", "a", "b"]).unwrap();
        assert!(
            matches!(cli.command, Some(Verb::Image(ImageVerb::Rm(ref a))) if a.force && a.images.len() == 2)
        );
        let cli = Cli::try_parse_from(["berth", "history", "--human=false", "x"]).unwrap();
        assert!(matches!(cli.command, Some(Verb::History(ref a)) if !a.human));
        let cli =
            Cli::try_parse_from(["berth", "save", "--format", "oci", "-o", "/tmp/x.tar", "a"])
                .unwrap();
        assert!(
            matches!(cli.command, Some(Verb::Save(ref a)) if a.format == transfer::SaveFormat::Oci)
        );
        assert!(Cli::try_parse_from(["berth", "save"]).is_err());
        let cli = Cli::try_parse_from([
            "berth", "volume", "create", "-d", "local", "--label", "a=b", "-o", "x=y", "v1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Some(Verb::Volume(volume::VolumeVerb::Create(ref a))) if a.labels == ["a=b"] && a.volume.as_deref() == Some("v1"))
        );
        let cli = Cli::try_parse_from([
            "berth", "volume", "prune", "-a", "-f", "--filter", "label=x",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Some(Verb::Volume(volume::VolumeVerb::Prune(ref a))) if a.all && a.force && a.filters == ["label=x"])
        );
        assert!(Cli::try_parse_from(["berth", "volume", "list", "-q"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "volume", "remove", "-f", "a", "b"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "volume", "rm"]).is_err());
        let cli = Cli::try_parse_from([
            "berth",
            "daemon",
            "--root",
            "/tmp/r",
            "--host",
            "unix:///tmp/d.sock",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Verb::Daemon(_))));
    }
}
