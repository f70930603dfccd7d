//! `berth build`: docker's `build` verb (the classic builder's flags). The context
//! directory is sent as a tar without what its `.dockerignore` excludes (the Dockerfile
//! and the `.dockerignore` itself always go, as docker sends them), through
//! `POST /build`; the daemon's messages are shown as they come.

use std::io::{IsTerminal as _, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use berth_build::ignore::Matcher;
use clap::Args;

use super::progress::Progress;
use crate::cli::transfer::{upload, Reader};
use crate::client::{Client, Query};

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: 'PATH/Dockerfile'; '-' reads it from STDIN)
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<String>,
    /// Set build-time variables (KEY=VALUE; KEY alone takes this shell's value)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pub pull: bool,
    /// The networking mode for the RUN instructions (default none)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Images to consider as cache sources
    #[arg(long = "cache-from", value_name = "IMAGE")]
    pub cache_from: Vec<String>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long)]
    pub force_rm: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Build reproducibly: image and file times at SOURCE_DATE_EPOCH (this shell's, else 0)
    #[arg(long)]
    pub reproducible: bool,
    /// Build again, from the contexts the daemon kept, every image whose base image
    /// has moved in its registry (see `berth image outdated`), pulling the new base
    #[arg(long, conflicts_with = "context")]
    pub rebuild_outdated: bool,
    /// The context: a directory, or '-' for a tar on STDIN
    #[arg(value_name = "PATH", required_unless_present = "rebuild_outdated")]
    pub context: Option<String>,
}

/// The stored credentials as `X-Registry-Config` (for base images of registries that
/// want them).
fn registry_config() -> Vec<(&'static str, String)> {
    crate::cli::login::registry_config_header()
        .map(|v| ("X-Registry-Config", v))
        .into_iter()
        .collect()
}

/// `berth build --rebuild-outdated`.
async fn rebuild_outdated(client: &Client) -> anyhow::Result<()> {
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let resp = client
        .request_with(
            hyper::Method::POST,
            "/images/outdated/rebuild",
            crate::client::empty(),
            None,
            &registry_config(),
        )
        .await?;
    progress.show_stream(resp).await
}

/// `KEY=VALUE` list as a JSON object (`KEY` alone: this shell's value, else unset).
fn pairs(list: &[String], from_env: bool, what: &str) -> anyhow::Result<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for item in list {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k.to_string(), v.into());
            }
            None if from_env && !item.is_empty() => {
                m.insert(
                    item.clone(),
                    std::env::var(item).map_or(serde_json::Value::Null, Into::into),
                );
            }
            _ => bail!("invalid {what} {item:?}: KEY=VALUE expected"),
        }
    }
    Ok(serde_json::Value::Object(m))
}

/// The context directory as a tar in a temporary file, without what `.dockerignore`
/// excludes; the Dockerfile read from STDIN is added under `stdin_name`.
/// The context as a tar stream, written by a thread of its own while it is sent (as the
/// docker CLI streams it): the reader, and the thread (its error explains a truncated
/// upload best).
fn context_stream(
    dir: &Path,
    dockerfile: Option<String>,
    stdin: Option<(String, Vec<u8>)>,
) -> anyhow::Result<(Reader, std::thread::JoinHandle<anyhow::Result<()>>)> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Matcher::parse(&text).context(".dockerignore")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Matcher::default(),
        Err(e) => return Err(e).context(".dockerignore"),
    };
    let (reader, writer) = std::io::pipe().context("a pipe for the context")?;
    let dir = dir.to_path_buf();
    let producer = std::thread::Builder::new()
        .name("context-tar".into())
        .spawn(move || -> anyhow::Result<()> {
            let mut t = tar::Builder::new(std::io::BufWriter::with_capacity(256 << 10, writer));
            t.follow_symlinks(false);
            let keep: Vec<&str> = [Some(".dockerignore"), dockerfile.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            walk(&mut t, &dir, "", &ignore, &keep)?;
            if let Some((name, bytes)) = stdin {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(0);
                t.append_data(&mut h, name, bytes.as_slice())?;
            }
            t.into_inner()?.flush()?;
            Ok(())
        })
        .context("start the context writer")?;
    let file = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
    Ok((Box::new(tokio::fs::File::from_std(file)), producer))
}

fn walk<W: Write>(
    t: &mut tar::Builder<W>,
    dir: &Path,
    rel: &str,
    ignore: &Matcher,
    keep: &[&str],
) -> anyhow::Result<()> {
    let path = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
        .with_context(|| format!("read {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: not a UTF-8 name", p.display()))?;
        let r = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&p)?;
        let excluded = ignore.excluded(&r) && !keep.contains(&r.as_str());
        if meta.is_dir() {
            // An excluded directory is still entered for an exception below it, or for
            // the Dockerfile (always sent).
            let holds_kept = keep.iter().any(|k| k.starts_with(&format!("{r}/")));
            if !excluded || holds_kept {
                t.append_dir(&r, &p)?;
            }
            if !excluded || holds_kept || ignore.may_descend(&r) {
                walk(t, dir, &r, ignore, keep)?;
            }
        } else if !excluded {
            t.append_path_with_name(&p, &r)
                .with_context(|| format!("add {} to the context", p.display()))?;
        }
    }
    Ok(())
}

pub async fn build(client: &Client, args: BuildArgs) -> anyhow::Result<()> {
    if args.rebuild_outdated {
        return rebuild_outdated(client).await;
    }
    let context = args.context.clone().unwrap_or_default();
    let mut stdin_dockerfile = None;
    type Input = (
        Reader,
        Option<u64>,
        Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    );
    let (input, dockerfile): (Input, Option<String>) = if context == "-" {
        if args.file.as_deref() == Some("-") {
            bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        let mut f = tempfile::tempfile()?;
        std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
        f.seek(SeekFrom::Start(0))?;
        let size = f.metadata().ok().map(|m| m.len());
        let reader: Reader = Box::new(tokio::fs::File::from_std(f));
        ((reader, size, None), args.file.clone())
    } else {
        let dir = Path::new(&context);
        if !dir.is_dir() {
            bail!("unable to prepare context: path {:?} not found", context);
        }
        let dockerfile = match args.file.as_deref() {
            Some("-") => {
                let mut text = Vec::new();
                std::io::stdin().read_to_end(&mut text)?;
                stdin_dockerfile = Some(text);
                Some(format!(".dockerfile.{:x}", std::process::id()))
            }
            Some(f) => {
                // A Dockerfile is named relative to the context (docker also takes one
                // outside it; berth asks for it inside).
                let p = Path::new(f);
                let rel = if p.is_absolute() {
                    p.strip_prefix(dir.canonicalize()?)
                        .or_else(|_| p.strip_prefix(dir))
                        .map(|r| r.to_string_lossy().into_owned())
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "the Dockerfile ({f}) must be within the build context ({})",
                                context
                            )
                        })?
                } else {
                    f.to_string()
                };
                Some(rel)
            }
            None => None,
        };
        let stdin = dockerfile.clone().zip(stdin_dockerfile);
        let (reader, producer) = context_stream(
            dir,
            Some(dockerfile.clone().unwrap_or_else(|| "Dockerfile".into())),
            stdin,
        )?;
        ((reader, None, Some(producer)), dockerfile)
    };
    let mut q = Query::new("/build")
        .opt("dockerfile", dockerfile.as_deref())
        .opt("target", args.target.as_deref())
        .opt("networkmode", args.network.as_deref())
        .opt("platform", args.platform.as_deref())
        .flag("nocache", args.no_cache)
        .flag("pull", args.pull)
        .flag("forcerm", args.force_rm)
        .flag("q", args.quiet)
        .arg("rm", if args.rm { "1" } else { "0" });
    for t in &args.tags {
        q = q.arg("t", t);
    }
    let mut build_args = pairs(&args.build_args, true, "--build-arg")?;
    // SOURCE_DATE_EPOCH in this shell reaches the build (as docker buildx passes it);
    // `--reproducible` without it builds at the epoch 0.
    if let Some(m) = build_args.as_object_mut() {
        if !m.contains_key("SOURCE_DATE_EPOCH") {
            match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) if !v.is_empty() => {
                    m.insert("SOURCE_DATE_EPOCH".into(), v.into());
                }
                _ if args.reproducible => {
                    m.insert("SOURCE_DATE_EPOCH".into(), "0".into());
                }
                _ => {}
            }
        }
    }
    if build_args.as_object().is_some_and(|m| !m.is_empty()) {
        q = q.arg("buildargs", build_args.to_string());
    }
    if !args.labels.is_empty() {
        q = q.arg("labels", pairs(&args.labels, false, "--label")?.to_string());
    }
    if !args.cache_from.is_empty() {
        q = q.arg("cachefrom", &serde_json::to_string(&args.cache_from)?);
    }
    let mut progress = Progress::new(std::io::stderr().is_terminal() && !args.quiet);
    std::io::stderr().flush().ok();
    let headers = registry_config();
    let (reader, size, producer) = input;
    let sent = upload(
        client,
        &q.build(),
        reader,
        size,
        "Sending build context",
        &mut progress,
        &headers,
    )
    .await;
    // The writer's failure (an unreadable file) explains a failed upload best, unless
    // it only saw the daemon stop reading (a refusal, explained by `sent`).
    if let Some(p) = producer {
        match p.join() {
            Ok(Err(e)) => {
                let broken_pipe = e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
                if !broken_pipe || sent.is_ok() {
                    return Err(e.context("the build context"));
                }
            }
            Err(_) => bail!("the build context's writer panicked"),
            Ok(Ok(())) => {}
        }
    }
    sent
}

#[derive(Debug, Clone, Args)]
pub struct OutdatedArgs {
    /// Exit with status 1 when an image is outdated (for scripts and CI)
    #[arg(long)]
    pub exit_code: bool,
}

/// `berth image outdated`: a table of the images built here, their base image, the
/// digest recorded at build time and the registry's now.
pub async fn outdated(client: &Client, args: OutdatedArgs) -> anyhow::Result<()> {
    let headers = registry_config();
    let resp = client
        .request_with(
            hyper::Method::GET,
            "/images/outdated",
            crate::client::empty(),
            None,
            &headers,
        )
        .await?;
    let bytes = crate::client::read_all(resp).await?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&bytes)
        .context("the daemon's answer to GET /images/outdated is not the expected JSON")?;
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    let short = |d: String| {
        let hex = d.strip_prefix("sha256:").unwrap_or(&d).to_string();
        hex.chars().take(12).collect::<String>()
    };
    let mut table = vec![[
        "IMAGE".to_string(),
        "BASE".to_string(),
        "RECORDED".to_string(),
        "CURRENT".to_string(),
        "STATUS".to_string(),
    ]];
    let mut outdated = false;
    for r in &rows {
        outdated |= field(r, "Status") == "outdated";
        table.push([
            field(r, "Image"),
            field(r, "Base"),
            short(field(r, "Recorded")),
            short(field(r, "Current")),
            field(r, "Status"),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    if args.exit_code && outdated {
        std::process::exit(1);
    }
    Ok(())
}
