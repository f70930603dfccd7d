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
    let r = pull_stream(client, &args, false).await?;
    super::out(&format!("{}\n", r))
}

/// `run`/`create`'s pull of a missing image: progress on stderr (bars when stderr is a
/// terminal), nothing on stdout, which belongs to the container.
pub async fn pull_to_stderr(client: &Client, args: PullArgs) -> anyhow::Result<()> {
    pull_stream(client, &args, true).await.map(|_| ())
}

async fn pull_stream(
    client: &Client,
    args: &PullArgs,
    stderr_only: bool,
) -> anyhow::Result<Reference> {
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
    if args.quiet || (stderr_only && !progress.enabled()) {
        // The stream still has to be read to its end (an error comes last).
        let mut silent = Progress::new(false);
        silent.drain_stream(resp).await?;
    } else {
        progress.show_stream(resp).await?;
    }
    Ok(r)
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
    about = "Copy an image with all its blobs between registries and to/from archives",
    long_about = "Copy an image with all its platforms and blobs between registries, or \
                  between a registry and an archive (promotion: dev -> int -> prod), without \
                  storing or unpacking it; every digest verified; blobs the destination \
                  registry has are skipped. SRC and DST are docker://HOST/REPO:TAG (or a \
                  plain reference), docker-archive:PATH[:REF] or oci-archive:PATH[:REF], as \
                  skopeo spells them; one end must be a registry. Credentials come from \
                  `berth login`. The daemon is not involved."
)]
pub struct CopyArgs {
    /// Suppress the per-blob lines
    #[arg(short, long)]
    pub quiet: bool,
    /// Source (docker://REGISTRY/REPO:TAG or @DIGEST, docker-archive:PATH[:REF], oci-archive:PATH[:REF])
    #[arg(value_name = "SRC")]
    pub source: String,
    /// Destination (docker://REGISTRY/REPO[:TAG] (without a tag, the source's),
    /// docker-archive:PATH[:REF], oci-archive:PATH[:REF])
    #[arg(value_name = "DST")]
    pub destination: String,
}

fn auth_for(registry: &str) -> berth_image::registry::RegistryAuth {
    match super::login::credentials(registry) {
        Some((username, password)) => {
            berth_image::registry::RegistryAuth::Basic { username, password }
        }
        None => berth_image::registry::RegistryAuth::Anonymous,
    }
}

fn has_tag_or_digest(s: &str) -> bool {
    s.trim_start_matches("docker://")
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':') || last.contains('@'))
}

pub async fn copy(args: CopyArgs) -> anyhow::Result<()> {
    use berth_image::registry::{CopyEvent, Endpoint, RegistryClient};
    let src = Endpoint::parse(&args.source).context("invalid source")?;
    let mut dst = Endpoint::parse(&args.destination).context("invalid destination")?;
    if let (Endpoint::Registry(s), Endpoint::Registry(d)) = (&src, &mut dst) {
        if !has_tag_or_digest(&args.destination) {
            // No tag given: keep the source's.
            *d = match (s.tag(), s.digest()) {
                (Some(t), None) => d.with_tag(t)?,
                (_, Some(g)) => d.with_digest(*g),
                (None, None) => d.clone(),
            };
        }
    }
    if let (
        Endpoint::DockerArchive { reference, .. } | Endpoint::OciArchive { reference, .. },
        Endpoint::Registry(d),
    ) = (&src, &mut dst)
    {
        if !has_tag_or_digest(&args.destination) {
            // No tag given: the tag of the archive's name for the image (an OCI ref name
            // without ':' is itself the tag, as skopeo reads `oci-archive:PATH:1`), or latest.
            let oci = matches!(src, Endpoint::OciArchive { .. });
            let tag = reference
                .as_deref()
                .and_then(|r| match r.rsplit_once(':') {
                    Some((_, t)) => Some(t.to_string()),
                    None if oci => Some(r.to_string()),
                    None => None,
                })
                .filter(|t| !t.contains('/'))
                .unwrap_or_else(|| "latest".to_string());
            *d = d.with_tag(&tag)?;
        }
    }
    let quiet = args.quiet;
    let (s2, d2) = (src.clone(), dst.clone());
    let digest = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
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
        let connect = |r: &berth_types::Reference| {
            RegistryClient::connect(r.domain(), auth_for(r.domain()), &[])
        };
        Ok(match (&s2, &d2) {
            (Endpoint::Registry(s), Endpoint::Registry(d)) => {
                berth_image::registry::copy(&connect(s)?, s, &connect(d)?, d, &show)?
            }
            (Endpoint::Registry(s), archive) => {
                berth_image::registry::copy_to_archive(&connect(s)?, s, archive, &show)?
            }
            (archive, Endpoint::Registry(d)) => {
                berth_image::registry::copy_from_archive(archive, &connect(d)?, d, &show)?
            }
            _ => anyhow::bail!(
                "image copy between two archives is not supported: one end must be a registry (or use berth load/save)"
            ),
        })
    })
    .await
    .context("copy task failed")??;
    super::out(&format!(
        "Copied {} to {}\ndigest: {digest}\n",
        args.source, args.destination
    ))
}
