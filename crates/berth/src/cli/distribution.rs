//! `pull` and `push`: the daemon talks to the registry; the CLI sends the credentials
//! `berth login` stored (as `X-Registry-Auth`) and shows the progress stream.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use berth_types::Reference;
use clap::Args;
use hyper::Method;

use super::login::registry_auth_header;
use super::progress::Progress;
use crate::client::{empty, path_escape, Client, Query};

#[derive(Debug, Args)]
#[command(about = "Download an image from a registry")]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to pull
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
}

#[derive(Debug, Args)]
#[command(about = "Upload an image to a registry")]
pub struct PushArgs {
    /// Push all tags of the repository
    #[arg(short, long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to push (`:latest` when no tag is given, unless --all-tags)
    #[arg(value_name = "NAME[:TAG]")]
    pub image: String,
}

fn auth_headers(registry: &str) -> Vec<(&'static str, String)> {
    registry_auth_header(registry)
        .map(|v| vec![("X-Registry-Auth", v)])
        .unwrap_or_default()
}

pub async fn pull(client: &Client, args: PullArgs) -> anyhow::Result<()> {
    let r = Reference::parse_with_default_tag(&args.image)
        .with_context(|| format!("invalid reference format: {}", args.image))?;
    let tag = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let path = Query::new("/images/create")
        .arg("fromImage", r.familiar_repository())
        .arg("tag", tag)
        .opt("platform", args.platform.as_deref())
        .build();
    let mut progress = Progress::new(!args.quiet && std::io::stderr().is_terminal());
    let resp = client
        .request_with(
            Method::POST,
            &path,
            empty(),
            None,
            &auth_headers(r.domain()),
        )
        .await?;
    if args.quiet {
        // The stream still has to be read to its end (an error comes last).
        let mut silent = Progress::new(false);
        silent.drain_stream(resp).await?;
    } else {
        progress.show_stream(resp).await?;
    }
    super::out(&format!("{}\n", r))
}

pub async fn push(client: &Client, args: PushArgs) -> anyhow::Result<()> {
    let r = Reference::parse(&args.image)
        .with_context(|| format!("invalid reference format: {}", args.image))?;
    if args.all_tags && r.tag().is_some() {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let tag = match r.tag() {
        Some(t) => Some(t),
        None if args.all_tags => None,
        None => Some("latest"),
    };
    let path = Query::new(format!(
        "/images/{}/push",
        path_escape(&r.familiar_repository())
    ))
    .opt("tag", tag)
    .build();
    let mut progress = Progress::new(!args.quiet && std::io::stderr().is_terminal());
    let resp = client
        .request_with(
            Method::POST,
            &path,
            empty(),
            None,
            &auth_headers(r.domain()),
        )
        .await?;
    if args.quiet {
        let mut silent = Progress::new(false);
        silent.drain_stream(resp).await?;
        super::out(&format!("{}\n", r))
    } else {
        progress.show_stream(resp).await
    }
}

#[derive(Debug, Args)]
#[command(
    about = "Copy an image with all its platforms and blobs from one registry to another",
    long_about = "Copy an image with all its platforms and blobs from one registry to another \
                  (promotion: dev -> int -> prod), without storing or unpacking it: blobs \
                  stream from the source to the destination, each digest verified; blobs the \
                  destination has are skipped. Credentials come from `berth login`. The \
                  daemon is not involved."
)]
pub struct CopyArgs {
    /// Suppress the per-blob lines
    #[arg(short, long)]
    pub quiet: bool,
    /// Source image (REGISTRY/REPO:TAG or @DIGEST; a docker:// prefix is accepted)
    #[arg(value_name = "SRC")]
    pub source: String,
    /// Destination (REGISTRY/REPO[:TAG]; without a tag, the source's tag)
    #[arg(value_name = "DST")]
    pub destination: String,
}

fn registry_ref(s: &str, what: &str) -> anyhow::Result<Reference> {
    if s.starts_with("docker-archive:") || s.starts_with("oci-archive:") || s.starts_with("oci:") {
        anyhow::bail!(
            "{what} {s}: archives are not supported by image copy yet (use berth load/save, or skopeo copy)"
        );
    }
    let s = s.strip_prefix("docker://").unwrap_or(s);
    Reference::parse_with_default_tag(s).with_context(|| format!("invalid {what} reference: {s}"))
}

fn auth_for(registry: &str) -> berth_image::registry::RegistryAuth {
    match super::login::credentials(registry) {
        Some((username, password)) => {
            berth_image::registry::RegistryAuth::Basic { username, password }
        }
        None => berth_image::registry::RegistryAuth::Anonymous,
    }
}

pub async fn copy(args: CopyArgs) -> anyhow::Result<()> {
    use berth_image::registry::{CopyEvent, RegistryClient};
    let src = registry_ref(&args.source, "source")?;
    let mut dst = registry_ref(&args.destination, "destination")?;
    if !args
        .destination
        .trim_start_matches("docker://")
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':') || last.contains('@'))
    {
        // No tag given: keep the source's.
        dst = match (src.tag(), src.digest()) {
            (Some(t), None) => dst.with_tag(t)?,
            (_, Some(d)) => dst.with_digest(*d),
            (None, None) => dst,
        };
    }
    let quiet = args.quiet;
    let (s2, d2) = (src.clone(), dst.clone());
    let digest = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let sc = RegistryClient::connect(s2.domain(), auth_for(s2.domain()), &[])?;
        let dc = RegistryClient::connect(d2.domain(), auth_for(d2.domain()), &[])?;
        let show = |ev: CopyEvent| {
            if quiet {
                return;
            }
            let line = match ev {
                CopyEvent::Exists { digest } => format!("Blob {digest}: already exists\n"),
                CopyEvent::Copied { digest, size } => {
                    format!("Blob {digest}: copied ({size} bytes)\n")
                }
                CopyEvent::Manifest { digest } => format!("Manifest {digest}: written\n"),
            };
            let _ = super::out(&line);
        };
        Ok(berth_image::registry::copy(&sc, &s2, &dc, &d2, &show)?)
    })
    .await
    .context("copy task failed")??;
    super::out(&format!("Copied {src} to {dst}\ndigest: {digest}\n"))
}
