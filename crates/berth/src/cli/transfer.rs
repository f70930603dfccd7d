//! `load`, `save`, `import`: archives streamed to and from the daemon, never held in
//! memory.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncWriteExt as _};

use super::progress::Progress;
use crate::client::{stream_body, Client, Query};

#[derive(Debug, Args)]
#[command(about = "Load an image from a tar archive or STDIN")]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN (docker save or OCI layout archive)
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// docker save layout (manifest.json, repositories) plus the OCI index
    Docker,
    /// OCI image layout
    Oci,
}

#[derive(Debug, Args)]
#[command(about = "Save one or more images to a tar archive (streamed to STDOUT by default)")]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive layout
    #[arg(long, value_enum, default_value_t = SaveFormat::Docker)]
    pub format: SaveFormat,
    /// Images to save (names, IDs or ID prefixes)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
#[command(about = "Import the contents from a tarball to create a filesystem image")]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER, VOLUME, WORKDIR, ONBUILD, STOPSIGNAL)
    #[arg(short = 'c', long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Tarball to import (.tar, .tar.gz, .tgz, .tar.zst), or - for STDIN
    #[arg(value_name = "file|-")]
    pub file: String,
    /// Name for the new image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Opens the input: a file (with its size when it is a regular file) or stdin.
async fn open_input(path: Option<&Path>, verb: &str) -> anyhow::Result<(Reader, Option<u64>)> {
    match path {
        Some(p) => {
            let f = tokio::fs::File::open(p)
                .await
                .map_err(|e| anyhow::anyhow!("open {}: {}", p.display(), super::os_message(&e)))?;
            let meta = f
                .metadata()
                .await
                .map_err(|e| anyhow::anyhow!("stat {}: {}", p.display(), super::os_message(&e)))?;
            if meta.is_dir() {
                bail!("{} is a directory, not an archive", p.display());
            }
            let size = meta.is_file().then_some(meta.len());
            Ok((Box::new(f), size))
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested {verb} from stdin, but stdin is empty");
            }
            Ok((Box::new(tokio::io::stdin()), None))
        }
    }
}

/// Streams `reader` as the body of `POST path`, with an upload bar, and shows the
/// daemon's JSON-message answer.
pub async fn upload(
    client: &Client,
    path: &str,
    reader: Reader,
    size: Option<u64>,
    label: &str,
    progress: &mut Progress,
    headers: &[(&str, String)],
) -> anyhow::Result<()> {
    let counter = progress.transfer_bar(label, size);
    let body = stream_body(reader, move |n| {
        if let Some(b) = &counter {
            b.inc(n as u64);
        }
    });
    match client
        .request_with(
            hyper::Method::POST,
            path,
            body,
            Some("application/x-tar"),
            headers,
        )
        .await
    {
        Ok(resp) => progress.show_stream(resp).await,
        Err(e) => {
            progress.settle();
            Err(e)
        }
    }
}

pub async fn load(client: &Client, args: LoadArgs) -> anyhow::Result<()> {
    let (reader, size) = open_input(args.input.as_deref(), "load").await?;
    let mut progress = Progress::new(!args.quiet && std::io::stderr().is_terminal());
    // Per-layer progress only when it is shown, as docker asks.
    let path = Query::new("/images/load")
        .flag("quiet", !progress.enabled())
        .build();
    upload(
        client,
        &path,
        reader,
        size,
        "Sending archive",
        &mut progress,
        &[],
    )
    .await
}

pub async fn import(client: &Client, args: ImportArgs) -> anyhow::Result<()> {
    if args.file.starts_with("http://") || args.file.starts_with("https://") {
        bail!(
            "importing from a URL is not supported: download {} and import the file",
            args.file
        );
    }
    let (repo, tag) = match args.reference.as_deref() {
        Some(r) => split_reference(r)?,
        None => (None, None),
    };
    let input = (args.file != "-").then(|| Path::new(&args.file));
    let (reader, size) = open_input(input, "import").await?;
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut q = Query::new("/images/create")
        .arg("fromSrc", "-")
        .opt("repo", repo.as_deref())
        .opt("tag", tag.as_deref())
        .opt("message", args.message.as_deref())
        .opt("platform", args.platform.as_deref());
    for c in &args.changes {
        q = q.arg("changes", c.as_str());
    }
    upload(
        client,
        &q.build(),
        reader,
        size,
        "Sending tarball",
        &mut progress,
        &[],
    )
    .await
}

/// `repo[:tag]` into the API's `repo` and `tag` parameters.
pub fn split_reference(r: &str) -> anyhow::Result<(Option<String>, Option<String>)> {
    if r.is_empty() {
        return Ok((None, None));
    }
    if r.contains('@') {
        bail!("refusing to create a tag with a digest reference");
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => {
            let (repo, tag) = (&r[..slash + i], &r[slash + i + 1..]);
            if repo.is_empty() || tag.is_empty() {
                bail!("invalid reference format: {r:?}");
            }
            Ok((Some(repo.to_string()), Some(tag.to_string())))
        }
        None => Ok((Some(r.to_string()), None)),
    }
}

/// docker's `ValidateOutputPath`, checked before asking the daemon for anything.
fn validate_output_path(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        bail!(
            "failed to save image: invalid output path: directory {:?} does not exist",
            dir.display().to_string()
        );
    }
    if path.is_dir() {
        bail!(
            "failed to save image: invalid output path: {:?} is a directory",
            path.display().to_string()
        );
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            bail!(
                "failed to save image: invalid output path: {:?} must be a directory or a regular file",
                path.display().to_string()
            );
        }
    }
    Ok(())
}

pub async fn save(client: &Client, args: SaveArgs) -> anyhow::Result<()> {
    match &args.output {
        None if std::io::stdout().is_terminal() => {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        }
        Some(p) => validate_output_path(p)?,
        None => {}
    }
    let mut q = Query::new("/images/get");
    for n in &args.images {
        q = q.arg("names", n.as_str());
    }
    if args.format == SaveFormat::Oci {
        q = q.arg("format", "oci");
    }
    let resp = client.get(&q.build()).await?;
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let bar = progress.transfer_bar("Saving", None);
    let mut body = resp.into_body();

    let result = async {
        match &args.output {
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                // A temp file in the same directory, renamed into place when complete:
                // a failed or interrupted save leaves no partial archive.
                let tmp = tempfile::Builder::new()
                    .prefix(".berth_temp_")
                    .tempfile_in(dir)
                    .with_context(|| {
                        format!("failed to save image: create a file in {}", dir.display())
                    })?;
                let mut file = tokio::fs::File::from_std(
                    tmp.reopen()
                        .with_context(|| format!("open {}", tmp.path().display()))?,
                );
                let copy = async {
                    while let Some(frame) = body.frame().await {
                        let frame =
                            frame.map_err(|e| anyhow::anyhow!("failed to save image: {e}"))?;
                        if let Ok(data) = frame.into_data() {
                            file.write_all(&data)
                                .await
                                .context("failed to save image")?;
                            if let Some(b) = &bar {
                                b.inc(data.len() as u64);
                            }
                        }
                    }
                    file.flush().await.context("failed to save image")?;
                    file.sync_all().await.context("failed to save image")?;
                    anyhow::Ok(())
                };
                tokio::select! {
                    r = copy => r?,
                    _ = tokio::signal::ctrl_c() => bail!("save interrupted"),
                }
                tmp.persist(path).map_err(|e| {
                    anyhow::anyhow!(
                        "failed to save image: rename to {}: {}",
                        path.display(),
                        e.error
                    )
                })?;
                Ok(())
            }
            None => {
                let mut out = tokio::io::stdout();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| anyhow::anyhow!("failed to save image: {e}"))?;
                    if let Ok(data) = frame.into_data() {
                        out.write_all(&data).await.map_err(super::stdout_error)?;
                        if let Some(b) = &bar {
                            b.inc(data.len() as u64);
                        }
                    }
                }
                out.flush().await.map_err(super::stdout_error)?;
                Ok(())
            }
        }
    }
    .await;
    if let Some(b) = bar {
        if result.is_ok() {
            b.finish();
        } else {
            b.abandon();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split() {
        let s = |r: &str| split_reference(r).unwrap();
        assert_eq!(
            s("fixture/x:2"),
            (Some("fixture/x".into()), Some("2".into()))
        );
        assert_eq!(s("fixture/x"), (Some("fixture/x".into()), None));
        assert_eq!(
            s("localhost:5000/x"),
            (Some("localhost:5000/x".into()), None)
        );
        assert_eq!(
            s("localhost:5000/x:v1"),
            (Some("localhost:5000/x".into()), Some("v1".into()))
        );
        assert_eq!(s(""), (None, None));
        assert!(split_reference("x@sha256:abc").is_err());
        assert!(split_reference("x:").is_err());
    }

    #[test]
    fn output_paths() {
        assert!(validate_output_path(Path::new("/nonexistent-dir-berth/x.tar")).is_err());
        assert!(validate_output_path(Path::new("/tmp")).is_err());
        assert!(validate_output_path(Path::new("x.tar")).is_ok());
    }
}

#[derive(Debug, Args)]
#[command(about = "Create a new image from a container's changes")]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    /// The container (name or ID)
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Name for the new image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `berth commit`: prints the new image's ID, as `docker commit` does.
pub async fn commit(client: &Client, args: CommitArgs) -> anyhow::Result<()> {
    let (repo, tag) = match args.reference.as_deref() {
        Some(r) => split_reference(r)?,
        None => (None, None),
    };
    let mut q = Query::new("/commit")
        .arg("container", args.container.as_str())
        .opt("repo", repo.as_deref())
        .opt("tag", tag.as_deref())
        .opt("comment", args.message.as_deref())
        .opt("author", args.author.as_deref())
        .arg("pause", if args.pause { "1" } else { "0" });
    for c in &args.changes {
        q = q.arg("changes", c.as_str());
    }
    let v: serde_json::Value = client.post_json(&q.build()).await?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(())
}
