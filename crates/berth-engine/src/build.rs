//! `POST /build`: Docker's classic builder (the protocol of `DOCKER_BUILDKIT=0 docker
//! build`, the Docker SDK's `images.build` and docker-compose 1.29's `build:`).
//!
//! The client's context (a tar) is extracted with the `docker cp` extractor (hostile
//! names, links and devices refused) into a private directory of the state root. A
//! tagged build uses the context kept for its first tag (`builds/contexts/<key>`, the
//! daemon's `build_contexts_kept` most recent, each locked while a build uses it): the
//! extraction then keeps the files whose content has not changed and removes what the new
//! context no longer has, so a rebuild writes only what changed. Any other build (or one
//! whose kept context another build holds) extracts into `builds/<random>/context`,
//! removed after the build (in the background after a success). A kept context has a
//! record (`builds/contexts/<key>.json`) only once a build from it succeeded; at daemon
//! start, work directories and kept contexts without a record are removed. The
//! Dockerfile is parsed by `berth-build`; then, as Docker's classic builder does, every
//! stage up to the target is built step by step, each step's result an image whose
//! parent is the previous one (untagged: `docker images -a` lists them, `docker images`
//! does not):
//!
//! - RUN runs in a container of the current image with berth's defaults (seccomp,
//!   capabilities, no-new-privileges), **no network** unless the build asks for one
//!   (`networkmode`), the image's health check off, the build args in scope in its
//!   environment; its output is streamed; a non-zero exit ends the build in Docker's
//!   words. Its changes are committed (`commit_build_step`).
//! - COPY and ADD select their sources in the context (or a previous stage's or an
//!   image's root filesystem with `--from`) without ever leaving it, write them as a tar
//!   with the owner and mode asked, and extract it into a created (never started)
//!   container of the current image, whose changes are committed.
//! - Every other instruction changes the config only: an image with an empty-layer
//!   history entry.
//!
//! The cache is Docker's: a step whose parent image has a child built from the same
//! instruction (its `container_config`, with COPY's content checksum in it) reuses that
//! child (`---> Using cache`). Removing images removes the cache with them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_build::dockerfile::{
    self, ArgDecl, Command, CopySpec, Dockerfile, Health, Instruction, Stage,
};
use berth_build::ignore::Matcher;
use berth_build::{context, lex};
use berth_image::model::{HealthConfig, RunConfig};
use berth_image::registry::RegistryAuth;
use berth_store::ImageRecord;
use berth_types::{Digest, ErrorKind, Reference};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::containers::CreateOptions;
use crate::error::{EngineError, Result};
use crate::Engine;

/// What `POST /build` asks (Docker's query parameters).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (`Dockerfile` when empty).
    pub dockerfile: String,
    /// `t`: names to tag the result with.
    pub tags: Vec<String>,
    /// `buildargs`: a value of None takes the daemon's environment's (Docker) — berth
    /// takes none from its own environment: such an arg stays unset.
    pub build_args: BTreeMap<String, Option<String>>,
    /// The stage to build (the last one when empty).
    pub target: String,
    /// `labels`: set on the result.
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Pull every base image even when it is present.
    pub pull: bool,
    /// `networkmode`: RUN steps' network (`""`, `default` and `none`: none).
    pub network: String,
    pub platform: String,
    /// Images whose steps may serve as cache (Docker's `cachefrom`).
    pub cache_from: Vec<String>,
    /// Remove intermediate containers after a successful build (Docker's default).
    pub remove: bool,
    /// Remove them whatever happens.
    pub force_remove: bool,
    /// Credentials by registry (`X-Registry-Config`, keys as [`RegistryAuths::new`]
    /// takes them), for the base images the build pulls.
    pub registry_auth: RegistryAuths,
}

/// Credentials for several registries (Docker's `X-Registry-Config`: what the client
/// has stored), each used only for images of its own registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryAuths(BTreeMap<String, RegistryAuth>);

impl RegistryAuths {
    /// `auths` keyed by server as a login names it (`127.0.0.1:5000`,
    /// `https://index.docker.io/v1/`).
    pub fn new(auths: impl IntoIterator<Item = (String, RegistryAuth)>) -> RegistryAuths {
        RegistryAuths(
            auths
                .into_iter()
                .map(|(server, a)| (crate::distribution::registry_of_server(&server), a))
                .collect(),
        )
    }

    /// The credentials for images of `domain` (anonymous when none).
    pub fn for_domain(&self, domain: &str) -> RegistryAuth {
        self.0.get(domain).cloned().unwrap_or_default()
    }
}

/// Where a build's progress goes (Docker's JSON message stream).
pub trait BuildProgress {
    /// Text as Docker's `{"stream": ...}`.
    fn stream(&mut self, text: &str) -> std::io::Result<()>;
    /// The result's ID (Docker's `{"aux": {"ID": ...}}`).
    fn result(&mut self, id: &str) -> std::io::Result<()>;
}

/// Build args Docker knows without an ARG (proxies), kept out of the image's history.
const PREDEFINED_ARGS: [&str; 11] = [
    "SOURCE_DATE_EPOCH",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The labels that name the base image of a build (OCI's annotation keys for it).
pub const BASE_NAME_LABEL: &str = "org.opencontainers.image.base.name";
pub const BASE_DIGEST_LABEL: &str = "org.opencontainers.image.base.digest";

/// A base image as recorded: its name (normalized, with its tag) and the digest of the
/// registry's manifest it was pulled by, else its image ID (an image loaded from an
/// archive).
fn base_record(rec: &ImageRecord, name: &str) -> (String, String) {
    let Ok(r) = Reference::parse_with_default_tag(name) else {
        return (name.to_string(), rec.id.to_string());
    };
    let prefix = format!("{}@", r.repository());
    let digest = rec
        .repo_digests
        .iter()
        .find_map(|d| d.strip_prefix(&prefix))
        .map_or_else(|| rec.id.to_string(), str::to_string);
    (r.familiar(), digest)
}

/// A row of `berth image outdated`.
#[derive(Debug, Clone)]
pub struct OutdatedRow {
    /// The image's ID.
    pub id: String,
    /// The image's names (or its short ID when untagged).
    pub image: String,
    pub base: String,
    pub recorded: String,
    /// What the registry has now (empty when it could not be asked).
    pub current: String,
    /// `outdated`, `up to date`, or why it is unknown.
    pub status: String,
}

/// The largest Dockerfile or `.dockerignore` read.
const MAX_DOCKERFILE_BYTES: u64 = 4 << 20;

fn build_err(msg: impl Into<String>) -> EngineError {
    EngineError::invalid(msg.into())
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..12.min(hex.len())]
}

/// Docker's Go duration (`1m30s`, `500ms`) from the parser, as nanoseconds.
fn nanos(d: Option<std::time::Duration>) -> Option<i64> {
    d.and_then(|d| i64::try_from(d.as_nanos()).ok())
        .filter(|n| *n > 0)
}

/// The state of the stage being built.
struct StageState {
    /// The current image; None while a `FROM scratch` stage has no step yet.
    image: Option<ImageRecord>,
    config: RunConfig,
    author: Option<String>,
    /// ARGs declared in this stage, with their values (None: declared, no value).
    args: BTreeMap<String, Option<String>>,
}

impl StageState {
    fn env_value(&self, key: &str) -> Option<String> {
        self.config.env.iter().flatten().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    /// A variable as a step sees it: the image's environment over the ARGs in scope.
    fn lookup(&self, key: &str) -> Option<String> {
        self.env_value(key)
            .or_else(|| self.args.get(key).cloned().flatten())
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    /// The build args in scope that RUN sees in its environment (those the image's ENV
    /// does not set), sorted, as `KEY=value`.
    fn run_args(&self) -> Vec<String> {
        self.args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .filter(|(k, _)| self.env_value(k).is_none())
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    fn workdir(&self) -> String {
        self.config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// `/a/b/../c` → `/a/c`; a path that is not absolute is taken from `/`.
fn clean_abs(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// A path of the step, relative ones from the working directory; a trailing `/` kept.
fn in_workdir(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{workdir}/{path}")
    };
    let mut cleaned = clean_abs(&joined);
    if (path.ends_with('/') || path.ends_with("/.") || path == ".") && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// The text Docker shows for a command in history (`/bin/sh -c #(nop) …`).
fn nop(shell: &[String], text: &str) -> Vec<String> {
    let mut v = shell.to_vec();
    v.push(format!("#(nop) {text}"));
    v
}

/// A build: its work directory is removed when it ends (by a thread of its own after a
/// success, so that the client does not wait for a large context's removal).
struct Work {
    dir: PathBuf,
    in_background: bool,
}

fn remove_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(dir = %dir.display(), error = %e, "build: cannot remove a work directory");
        }
    }
}

/// Removes `dir` in a thread of its own (inline when no thread can be started).
fn remove_dir_later(dir: PathBuf) {
    let d = dir.clone();
    if std::thread::Builder::new()
        .name("berth-build-rm".into())
        .spawn(move || remove_dir(&d))
        .is_err()
    {
        remove_dir(&dir);
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if self.in_background {
            remove_dir_later(std::mem::take(&mut self.dir));
        } else {
            remove_dir(&self.dir);
        }
    }
}

/// A context kept for a tag (see the module docs), locked while this build uses it.
struct KeptContext {
    dir: PathBuf,
    record: PathBuf,
    /// The directory's fd, holding its `flock`.
    _lock: rustix::fd::OwnedFd,
}

/// A kept build context as `system df` shows it.
#[derive(Debug, Clone)]
pub struct KeptContextUsage {
    /// Its directory's name under `builds/contexts`.
    pub id: String,
    pub description: String,
    /// A build holds it.
    pub in_use: bool,
    /// The image last built from it is gone.
    pub dangling: bool,
    /// Bytes of its files.
    pub size: u64,
    /// When a build from it last succeeded (RFC 3339; for one in progress, when its
    /// directory last changed).
    pub created: String,
}

/// Bytes of the regular files beneath `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// What the record of a kept context says.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptRecord {
    /// The build's first tag.
    tag: String,
    /// The image built from it last.
    image: String,
    /// When (RFC 3339).
    built: String,
    /// What that build asked (to build it again: `rebuild_outdated`).
    #[serde(default)]
    options: KeptOptions,
}

/// The parts of [`BuildOptions`] a rebuild repeats (not credentials, not cache flags).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct KeptOptions {
    dockerfile: String,
    tags: Vec<String>,
    build_args: BTreeMap<String, Option<String>>,
    target: String,
    labels: BTreeMap<String, String>,
    network: String,
    platform: String,
}

impl KeptOptions {
    fn of(o: &BuildOptions) -> KeptOptions {
        KeptOptions {
            dockerfile: o.dockerfile.clone(),
            tags: o.tags.clone(),
            build_args: o.build_args.clone(),
            target: o.target.clone(),
            labels: o.labels.clone(),
            network: o.network.clone(),
            platform: o.platform.clone(),
        }
    }

    /// The options of a rebuild: every base pulled again, intermediate containers
    /// removed.
    fn rebuild(&self, registry_auth: RegistryAuths) -> BuildOptions {
        BuildOptions {
            dockerfile: self.dockerfile.clone(),
            tags: self.tags.clone(),
            build_args: self.build_args.clone(),
            target: self.target.clone(),
            labels: self.labels.clone(),
            network: self.network.clone(),
            platform: self.platform.clone(),
            pull: true,
            remove: true,
            force_remove: true,
            registry_auth,
            ..Default::default()
        }
    }
}

/// Takes the exclusive `flock` of directory `dir` without waiting (None when another
/// build holds it, or when `dir` was replaced meanwhile).
fn lock_dir(dir: &Path) -> Result<Option<rustix::fd::OwnedFd>> {
    use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
    let fd = rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| crate::containers::io_err(dir, "open", e.into()))?;
    match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
        Err(e) => return Err(crate::containers::io_err(dir, "lock", e.into())),
    }
    // An eviction renamed it away between the open and the lock: not the kept one.
    let same = match (rfs::fstat(&fd), rfs::lstat(dir)) {
        (Ok(a), Ok(b)) => a.st_ino == b.st_ino && a.st_dev == b.st_dev,
        _ => false,
    };
    Ok(same.then_some(fd))
}

/// The build's containers, removed as Docker's `rm` and `forcerm` say.
#[derive(Default)]
struct Intermediates {
    done: Vec<String>,
}

/// A build in progress.
struct Build<'a> {
    engine: &'a Engine,
    opts: &'a BuildOptions,
    out: &'a mut dyn BuildProgress,
    context: PathBuf,
    /// The build's own directory (temporary files).
    work: PathBuf,
    ignore: Option<std::rc::Rc<Matcher>>,
    escape: char,
    containers: Intermediates,
    /// Build args some ARG consumed.
    used_args: BTreeSet<String>,
    /// Each stage's result by index, and names to indexes.
    stage_images: Vec<Option<ImageRecord>>,
    stage_names: BTreeMap<String, usize>,
    /// Images the build pulled or resolved by name (a base used twice resolves once).
    step: usize,
    steps_total: usize,
    /// `SOURCE_DATE_EPOCH` (a build arg, as BuildKit takes it): the images' times, and
    /// later file times clamped to it, so that the same context gives the same ID.
    epoch: Option<u64>,
    /// `cachefrom` images, with their configs.
    cache_sources: Vec<(ImageRecord, berth_image::model::ImageConfig)>,
}

/// Seconds since the epoch as the RFC 3339 time of a config.
pub(crate) fn epoch_rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Engine {
    /// Removes what interrupted builds left (their work directories); at daemon start.
    /// Kept contexts stay when a build from them succeeded (they have a record).
    pub(crate) fn sweep_builds(&self) {
        let dir = self.store().root().join("builds");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name() != "contexts" {
                remove_dir(&e.path());
            }
        }
        let kept = dir.join("contexts");
        let Ok(entries) = fs::read_dir(&kept) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let recorded = path.with_extension("json");
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !recorded.is_file() {
                remove_dir(&path);
            } else if !is_dir && !path.with_extension("").is_dir() {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// The kept build contexts (`docker system df`'s Build Cache, type `source.local`).
    pub fn kept_contexts(&self) -> Result<Vec<KeptContextUsage>> {
        let dir = self.store().root().join("builds").join("contexts");
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let record: Option<KeptRecord> = fs::read(path.with_extension("json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let in_use = match lock_dir(&path) {
                Ok(Some(lock)) => {
                    drop(lock);
                    false
                }
                _ => true,
            };
            let image_exists = record.as_ref().is_some_and(|r| {
                r.image
                    .parse::<Digest>()
                    .ok()
                    .and_then(|d| self.store().meta.image(&d).ok().flatten())
                    .is_some()
            });
            out.push(KeptContextUsage {
                id: e.file_name().to_string_lossy().into_owned(),
                description: match &record {
                    Some(r) => format!("local source for context of {}", r.tag),
                    None => "local source for context (a build in progress)".into(),
                },
                in_use,
                dangling: !image_exists,
                size: tree_size(&path),
                created: record.map(|r| r.built).unwrap_or_else(|| {
                    let t: chrono::DateTime<chrono::Utc> = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH)
                        .into();
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Removes the kept contexts no build holds (`all`), or only those whose image is
    /// gone; returns their IDs and the bytes freed.
    pub(crate) fn prune_kept_contexts(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let dir = self.store().root().join("builds").join("contexts");
        let mut removed = Vec::new();
        let mut freed = 0;
        for c in self.kept_contexts()? {
            if c.in_use || !(all || c.dangling) {
                continue;
            }
            let path = dir.join(&c.id);
            // Held while it goes: a build starting now makes a new one.
            let Ok(Some(_lock)) = lock_dir(&path) else {
                continue;
            };
            let _ = fs::remove_file(path.with_extension("json"));
            remove_dir(&path);
            freed += c.size;
            removed.push(c.id);
        }
        Ok((removed, freed))
    }

    /// The kept context of `tag`, locked (None when contexts are not kept, or another
    /// build holds it). Its record is removed until this build succeeds.
    fn kept_context(&self, builds: &Path, tag: &str) -> Result<Option<KeptContext>> {
        if self.config().build_contexts_kept == 0 {
            return Ok(None);
        }
        let key = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(tag.as_bytes()))
        };
        let kept = builds.join("contexts");
        let dir = kept.join(key.get(..32).unwrap_or(&key));
        fs::create_dir_all(&dir).map_err(|e| crate::containers::io_err(&dir, "create", e))?;
        let Some(lock) = lock_dir(&dir)? else {
            return Ok(None);
        };
        let record = dir.with_extension("json");
        if let Err(e) = fs::remove_file(&record) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(crate::containers::io_err(&record, "remove", e));
            }
        }
        Ok(Some(KeptContext {
            dir,
            record,
            _lock: lock,
        }))
    }

    /// Records a kept context after a successful build, then removes the least recently
    /// used ones past `build_contexts_kept` (those no build holds).
    fn keep_context(&self, kept: &KeptContext, tag: &str, image: &str, opts: &BuildOptions) {
        let rec = KeptRecord {
            tag: tag.to_string(),
            image: image.to_string(),
            built: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            options: KeptOptions::of(opts),
        };
        let written = serde_json::to_vec(&rec)
            .map_err(std::io::Error::other)
            .and_then(|b| fs::write(&kept.record, b));
        if let Err(e) = written {
            warn!(file = %kept.record.display(), error = %e, "build: the kept context is not recorded");
        }
        let Some(parent) = kept.dir.parent() else {
            return;
        };
        let mut records: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(parent)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .map(|p| {
                        let t = fs::metadata(&p)
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        (t, p)
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, record) in records.into_iter().skip(self.config().build_contexts_kept) {
            let dir = record.with_extension("");
            // One a build holds stays (it is the most recent then, anyway).
            let Ok(Some(lock)) = lock_dir(&dir) else {
                continue;
            };
            let _ = fs::remove_file(&record);
            let gone = parent.with_file_name(format!(
                "evicted-{}",
                crate::swarm::base36(16).unwrap_or_default()
            ));
            if fs::rename(&dir, &gone).is_ok() {
                drop(lock);
                debug!(context = %dir.display(), "build: kept context evicted");
                remove_dir_later(gone);
            }
        }
    }

    /// `POST /build` (see the module docs): builds the context `input` (a tar, plain or
    /// compressed) and returns the image's ID.
    pub fn build_image(
        &self,
        input: &mut dyn Read,
        opts: &BuildOptions,
        out: &mut dyn BuildProgress,
    ) -> Result<String> {
        if !opts.platform.is_empty() {
            let want = crate::images::parse_platform(&opts.platform)?;
            let host = berth_image::model::host_platform();
            if want.os != host.os || want.architecture != host.architecture {
                return Err(EngineError::new(
                    ErrorKind::NotImplemented,
                    format!(
                        "platform {}: berth builds for this host's platform only ({}/{})",
                        opts.platform, host.os, host.architecture
                    ),
                ));
            }
        }
        let builds = self.store().root().join("builds");
        fs::create_dir_all(&builds).map_err(|e| crate::containers::io_err(&builds, "create", e))?;
        let id = crate::swarm::base36(16)?;
        let mut work = Work {
            dir: builds.join(&id),
            in_background: false,
        };
        fs::create_dir_all(&work.dir)
            .map_err(|e| crate::containers::io_err(&work.dir, "create", e))?;
        let first_tag = match opts.tags.first() {
            Some(t) => Some(Reference::parse_with_default_tag(t)?.familiar()),
            None => None,
        };
        let kept = match &first_tag {
            Some(tag) => self.kept_context(&builds, tag)?,
            None => None,
        };
        let context = match &kept {
            Some(k) => k.dir.clone(),
            None => work.dir.join("context"),
        };
        fs::create_dir_all(&context)
            .map_err(|e| crate::containers::io_err(&context, "create", e))?;
        if let Err(e) = self.extract_context(input, &context, kept.is_some()) {
            // What a failed extraction left of a kept context is not kept.
            if let Some(k) = &kept {
                remove_dir(&k.dir);
            }
            return Err(e);
        }
        let id = self.build_in(&context, &work.dir, opts, out)?;
        if let (Some(k), Some(tag)) = (&kept, &first_tag) {
            self.keep_context(k, tag, &id, opts);
        }
        work.in_background = true;
        Ok(id)
    }

    /// Builds what `opts` asks from the extracted `context`, with temporary files in
    /// `work`; returns the image's ID.
    fn build_in(
        &self,
        context: &Path,
        work: &Path,
        opts: &BuildOptions,
        out: &mut dyn BuildProgress,
    ) -> Result<String> {
        let dockerfile_name = if opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            opts.dockerfile.as_str()
        };
        let text = read_in_context(context, dockerfile_name)?.ok_or_else(|| {
            build_err(format!(
                "Cannot locate specified Dockerfile: {dockerfile_name}"
            ))
        })?;
        let text = String::from_utf8(text)
            .map_err(|_| build_err(format!("{dockerfile_name}: not UTF-8 text")))?;
        let ignore = match read_in_context(context, ".dockerignore")? {
            Some(bytes) => Some(std::rc::Rc::new(
                Matcher::parse(&String::from_utf8_lossy(&bytes))
                    .map_err(|e| build_err(format!(".dockerignore: {e}")))?,
            )),
            None => None,
        };
        let df = dockerfile::parse(&text).map_err(|e| build_err(e.to_string()))?;
        let epoch = match opts.build_args.get("SOURCE_DATE_EPOCH") {
            Some(Some(v)) if !v.is_empty() => Some(v.parse::<u64>().map_err(|_| {
                build_err(format!(
                    "SOURCE_DATE_EPOCH={v}: a number of seconds since 1970-01-01 is expected"
                ))
            })?),
            _ => None,
        };
        let mut b = Build {
            engine: self,
            opts,
            out,
            context: context.to_path_buf(),
            work: work.to_path_buf(),
            ignore,
            escape: df.escape,
            containers: Intermediates::default(),
            used_args: BTreeSet::new(),
            stage_images: Vec::new(),
            stage_names: BTreeMap::new(),
            step: 0,
            steps_total: 0,
            epoch,
            cache_sources: Vec::new(),
        };
        // `cachefrom`: images of this host (a pull, a load) whose history serves as cache
        // where a step's parent has no child made by the same instruction (Docker's
        // `imageCache`). Images built here serve already; one that is missing is named.
        for name in &opts.cache_from {
            match self.resolve(name) {
                Ok((rec, _)) => {
                    let cfg = self.config_of(&rec)?;
                    b.cache_sources.push((rec, cfg));
                }
                Err(_) => b.say(&format!(
                    "[Warning] cache-from {name}: no such image here (pull it first); not used\n"
                ))?,
            }
        }
        let result = b.run(&df);
        // The failed step's containers: removed with `forcerm` only (Docker leaves them
        // for a look at what went wrong).
        if result.is_err() && opts.force_remove {
            b.remove_intermediates();
        }
        let image = result?;
        let id = image.to_string();
        let unused: Vec<&String> = opts
            .build_args
            .keys()
            .filter(|k| !b.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            b.out
                .stream(&format!(
                    "[Warning] One or more build-args [{}] were not consumed\n",
                    names.join(" ")
                ))
                .map_err(gone)?;
        }
        b.out.result(&id).map_err(gone)?;
        b.out
            .stream(&format!("Successfully built {}\n", short(&id)))
            .map_err(gone)?;
        for t in &opts.tags {
            let r = Reference::parse_with_default_tag(t)?;
            let repo = r.familiar_repository();
            self.tag(&id, &repo, r.tag())?;
            b.out
                .stream(&format!("Successfully tagged {}\n", r.familiar()))
                .map_err(gone)?;
        }
        info!(image.id = %id, tags = ?opts.tags, "image built");
        Ok(id)
    }

    /// Extracts the client's context into `dir` (see the module docs); with `sync`,
    /// `dir` holds an earlier context: identical files are kept and what the new one
    /// does not have is removed.
    fn extract_context(&self, input: &mut dyn Read, dir: &Path, sync: bool) -> Result<()> {
        use rustix::fs::{self as rfs, Mode, OFlags};
        let root = rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| crate::containers::io_err(dir, "open", e.into()))?;
        let dest = berth_image::cp::CtrPath::parse("/")
            .map_err(|e| EngineError::internal(format!("build context: {e}")))?;
        let opts = berth_image::cp::ExtractOptions {
            min_free_bytes: self.min_free_bytes(),
            reuse_identical: sync,
            record_paths: sync,
            ..Default::default()
        };
        let limit = self.config().max_layer_bytes;
        let input = berth_image::cp::decompressed(input)
            .map_err(|e| build_err(format!("build context: {e}")))?;
        // A context is held to the daemon's layer limit (`max_layer_bytes`), counted
        // after decompression.
        let input = Limited {
            inner: input,
            left: limit,
            limit,
        };
        let stats = berth_image::cp::extract_archive(root.as_fd(), &dest, input, &opts)
            .map_err(|e| EngineError::new(e.kind(), format!("build context: {e}")))?;
        if sync {
            let removed = berth_image::cp::remove_unlisted(root.as_fd(), &stats.paths)
                .map_err(|e| crate::containers::io_err(dir, "clean up", e))?;
            debug!(
                entries = stats.entries,
                kept = stats.reused,
                removed,
                "build: kept context brought up to date"
            );
        }
        Ok(())
    }
}

impl Engine {
    /// `berth image outdated`: every tagged image built here on a base from a registry,
    /// with its base's recorded digest and the registry's now (the manifest's digest, or
    /// for a base loaded from an archive its config digest on this platform). The
    /// registry is asked anonymously, through the trust policy like a pull.
    pub fn outdated_images(&self, auths: &RegistryAuths) -> Result<Vec<OutdatedRow>> {
        let tags = self.store().meta.tags()?;
        let mut rows = Vec::new();
        for rec in self.store().meta.images()? {
            let names: Vec<String> = tags
                .iter()
                .filter(|(_, id)| *id == rec.id)
                .map(|(r, _)| r.familiar())
                .collect();
            if names.is_empty() {
                continue;
            }
            let labels = self
                .config_of(&rec)?
                .config
                .and_then(|c| c.labels)
                .unwrap_or_default();
            let (Some(base), Some(recorded)) =
                (labels.get(BASE_NAME_LABEL), labels.get(BASE_DIGEST_LABEL))
            else {
                continue;
            };
            let (current, status) = match self.base_now(base, recorded, auths) {
                Ok((current, same)) => {
                    let status = if same { "up to date" } else { "outdated" };
                    (current, status.to_string())
                }
                Err(e) => (String::new(), format!("unknown: {}", e.message)),
            };
            rows.push(OutdatedRow {
                id: rec.id.to_string(),
                image: names.join(", "),
                base: base.clone(),
                recorded: recorded.clone(),
                current,
                status,
            });
        }
        rows.sort_by(|a, b| a.image.cmp(&b.image));
        Ok(rows)
    }

    /// `berth build --rebuild-outdated`: builds again, from the context kept for it, every
    /// image [`Engine::outdated_images`] says is outdated, pulling its base anew, with the
    /// options it was built with (its tags move to the new image). An outdated image
    /// whose context is not kept is named in a warning line. Returns how many were
    /// rebuilt; an error after trying them all when one failed.
    pub fn rebuild_outdated(
        &self,
        auths: &RegistryAuths,
        out: &mut dyn BuildProgress,
    ) -> Result<usize> {
        let kept_dir = self.store().root().join("builds").join("contexts");
        let records: Vec<(PathBuf, KeptRecord)> = fs::read_dir(&kept_dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .filter_map(|p| {
                        let rec = serde_json::from_slice(&fs::read(&p).ok()?).ok()?;
                        Some((p, rec))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut rebuilt = 0;
        let mut failed = Vec::new();
        for row in self.outdated_images(auths)? {
            if row.status != "outdated" {
                continue;
            }
            let Some((record_path, rec)) = records
                .iter()
                .find(|(_, r)| r.image == row.id && !r.options.tags.is_empty())
            else {
                out.stream(&format!(
                    "[Warning] {}: its build context is not kept (built untagged, by another tag, or evicted: build_contexts_kept); build it again with berth build\n",
                    row.image
                ))
                .map_err(gone)?;
                continue;
            };
            out.stream(&format!(
                "Rebuilding {}: its base {} moved ({} -> {})\n",
                row.image, row.base, row.recorded, row.current
            ))
            .map_err(gone)?;
            match self.rebuild_kept(record_path, rec, auths, out) {
                Ok(id) => {
                    rebuilt += 1;
                    info!(image = %row.image, image.id = %id, "outdated image rebuilt");
                }
                Err(e) => {
                    out.stream(&format!("Rebuilding {} failed: {}\n", row.image, e.message))
                        .map_err(gone)?;
                    failed.push(row.image.clone());
                }
            }
        }
        if !failed.is_empty() {
            return Err(build_err(format!(
                "rebuilding outdated images failed for: {}",
                failed.join("; ")
            )));
        }
        Ok(rebuilt)
    }

    /// Builds the kept context of `record` again (see [`Engine::rebuild_outdated`]).
    fn rebuild_kept(
        &self,
        record: &Path,
        rec: &KeptRecord,
        auths: &RegistryAuths,
        out: &mut dyn BuildProgress,
    ) -> Result<String> {
        let builds = self.store().root().join("builds");
        let dir = record.with_extension("");
        let Some(lock) = lock_dir(&dir)? else {
            return Err(EngineError::conflict(format!(
                "the build context of {} is in use by another build",
                rec.tag
            )));
        };
        let kept = KeptContext {
            dir,
            record: record.to_path_buf(),
            _lock: lock,
        };
        let mut work = Work {
            dir: builds.join(crate::swarm::base36(16)?),
            in_background: false,
        };
        fs::create_dir_all(&work.dir)
            .map_err(|e| crate::containers::io_err(&work.dir, "create", e))?;
        let opts = rec.options.rebuild(auths.clone());
        let id = self.build_in(&kept.dir, &work.dir, &opts, out)?;
        self.keep_context(&kept, &rec.tag, &id, &opts);
        work.in_background = true;
        Ok(id)
    }

    /// The registry's digest of `base` now, and whether it is the `recorded` one.
    fn base_now(
        &self,
        base: &str,
        recorded: &str,
        auths: &RegistryAuths,
    ) -> Result<(String, bool)> {
        let r = Reference::parse_with_default_tag(base)?;
        self.check_policy(crate::policy::Operation::Pull, &r)?;
        let client = berth_image::registry::RegistryClient::connect(
            r.domain(),
            auths.for_domain(r.domain()),
            &[],
        )?;
        let (bytes, media_type, digest) = client.get_manifest(&r)?;
        if digest.to_string() == recorded {
            return Ok((digest.to_string(), true));
        }
        // Recorded as an image ID: the config digest of this platform's manifest.
        let manifest = if media_type.contains("index") || media_type.contains("manifest.list") {
            let index = berth_image::model::Index::parse(&bytes).map_err(build_err)?;
            let host = berth_image::model::host_platform();
            let Some(d) = index.manifests.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
            }) else {
                return Ok((digest.to_string(), false));
            };
            let (bytes, _, _) =
                client.get_manifest_at(r.path(), &d.digest.to_string(), Some(&d.digest))?;
            berth_image::model::Manifest::parse(&bytes).map_err(build_err)?
        } else {
            berth_image::model::Manifest::parse(&bytes).map_err(build_err)?
        };
        let config = manifest.config.digest.to_string();
        Ok((
            if config == recorded {
                config.clone()
            } else {
                digest.to_string()
            },
            config == recorded,
        ))
    }
}

/// A reader that fails once more than `limit` bytes came through.
struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other(format!(
                "the build context is larger than {} bytes (daemon setting max_layer_bytes)",
                self.limit
            ))
        })?;
        Ok(n)
    }
}

/// A file of the context (resolved inside it, never outside); None when absent.
fn read_in_context(context: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let rel = clean_abs(name);
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(None);
    }
    match berth_runtime::user::open_in_root(context, Path::new(rel)) {
        Ok(Some(f)) => {
            let mut buf = Vec::new();
            f.take(MAX_DOCKERFILE_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| build_err(format!("{name}: {e}")))?;
            if buf.len() as u64 > MAX_DOCKERFILE_BYTES {
                return Err(build_err(format!(
                    "{name}: larger than {MAX_DOCKERFILE_BYTES} bytes"
                )));
            }
            Ok(Some(buf))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(build_err(format!("{name}: {e}"))),
    }
}

fn gone(e: std::io::Error) -> EngineError {
    EngineError::internal(format!("build: the client went away: {e}"))
}

impl Build<'_> {
    fn say(&mut self, text: &str) -> Result<()> {
        self.out.stream(text).map_err(gone)
    }

    fn run(&mut self, df: &Dockerfile) -> Result<Digest> {
        if let Some(s) = &df.syntax {
            self.say(&format!(
                "[Warning] the syntax directive ({s}) is ignored: berth builds with its own Dockerfile frontend\n"
            ))?;
        }
        let target = if self.opts.target.is_empty() {
            df.stages.len().saturating_sub(1)
        } else {
            let t = self.opts.target.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
                .ok_or_else(|| {
                    build_err(format!(
                        "failed to reach build target {} in Dockerfile",
                        self.opts.target
                    ))
                })?
        };
        let stages = &df.stages[..=target];
        // The build's labels are one more LABEL step at the end (Docker's classic builder).
        self.steps_total = stages.iter().map(|s| 1 + s.steps.len()).sum::<usize>()
            + usize::from(!self.opts.labels.is_empty());
        // Global ARGs: their values for FROM lines.
        let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
        for a in &df.args {
            let v = self.arg_value(a, &|k| globals.get(k).cloned().flatten())?;
            globals.insert(a.name.clone(), v);
        }
        let mut last = None;
        for (i, stage) in stages.iter().enumerate() {
            let img = self.build_stage(i, stage, &globals, i + 1 == stages.len())?;
            if let Some(n) = &stage.name {
                self.stage_names.insert(n.clone(), i);
            }
            last = img.as_ref().map(|r| r.id);
            self.stage_images.push(img);
        }
        last.ok_or_else(|| build_err("No image was generated. Is your Dockerfile empty?"))
    }

    /// An ARG's value: the build's, else its default expanded.
    fn arg_value(
        &mut self,
        a: &ArgDecl,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>> {
        if let Some(v) = self.opts.build_args.get(&a.name) {
            self.used_args.insert(a.name.clone());
            if v.is_some() {
                return Ok(v.clone());
            }
        }
        match &a.default {
            Some(d) => Ok(Some(
                lex::expand(d, self.escape, lookup).map_err(|e| build_err(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// A step succeeded: its containers go (`rm`, Docker's default), else they stay.
    fn step_done(&mut self) {
        if self.opts.remove || self.opts.force_remove {
            self.remove_intermediates();
        } else {
            self.containers.done.clear();
        }
    }

    fn remove_intermediates(&mut self) {
        for c in std::mem::take(&mut self.containers.done) {
            let _ = self
                .out
                .stream(&format!("Removing intermediate container {}\n", short(&c)));
            if let Err(e) = self.engine.remove_container(&c, true) {
                warn!(container.id = %c, error = %e, "build: cannot remove an intermediate container");
            }
        }
    }

    fn begin_step(&mut self, original: &str) -> Result<()> {
        self.step += 1;
        let (n, total) = (self.step, self.steps_total);
        self.say(&format!("Step {n}/{total} : {original}\n"))
    }

    fn build_stage(
        &mut self,
        index: usize,
        stage: &Stage,
        globals: &BTreeMap<String, Option<String>>,
        last: bool,
    ) -> Result<Option<ImageRecord>> {
        self.begin_step(&stage.original)?;
        let base = lex::expand(&stage.base, self.escape, &|k| {
            globals.get(k).cloned().flatten()
        })
        .map_err(|e| build_err(e.to_string()))?;
        if let Some(p) = &stage.platform {
            let p = lex::expand(p, self.escape, &|k| globals.get(k).cloned().flatten())
                .map_err(|e| build_err(e.to_string()))?;
            let host = berth_image::model::host_platform();
            if !p.is_empty() && p != format!("{}/{}", host.os, host.architecture) {
                return Err(EngineError::new(
                    ErrorKind::NotImplemented,
                    format!(
                        "FROM --platform={p}: berth builds for this host's platform only ({}/{})",
                        host.os, host.architecture
                    ),
                ));
            }
        }
        let image = self.base_image(&base, index)?;
        let mut config = match &image {
            Some(rec) => self.engine.config_of(rec)?.config.unwrap_or_default(),
            None => RunConfig::default(),
        };
        // The base an image is built on, by name and digest (the OCI annotations' keys):
        // what `berth image outdated` checks against the registry. A stage built on a
        // stage keeps that stage's.
        let from_stage = self.stage_names.contains_key(&base.to_ascii_lowercase());
        if let (Some(rec), false) = (&image, from_stage) {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            let (name, digest) = base_record(rec, &base);
            labels.insert(BASE_NAME_LABEL.into(), name);
            labels.insert(BASE_DIGEST_LABEL.into(), digest);
        }
        if let Some(rec) = &image {
            self.say(&format!(
                " ---> {}
",
                short(&rec.id.to_string())
            ))?;
        }
        let mut st = StageState {
            image,
            config,
            author: None,
            args: BTreeMap::new(),
        };
        // The base's ONBUILD triggers run first, and are not inherited.
        let triggers = st.config.on_build.take().unwrap_or_default();
        if !triggers.is_empty() {
            self.say(&format!("# Executing {} build trigger", triggers.len()))?;
            self.say(if triggers.len() == 1 { "\n" } else { "s\n" })?;
        }
        for t in &triggers {
            let step = dockerfile::parse_onbuild(t, self.escape)
                .map_err(|e| build_err(format!("ONBUILD trigger {t:?}: {e}")))?;
            self.step_in(&mut st, &step.instruction)?;
            self.step_done();
        }
        for step in &stage.steps {
            self.begin_step(&step.original)?;
            self.step_in(&mut st, &step.instruction)?;
            self.step_done();
        }
        if last && !self.opts.labels.is_empty() {
            let pairs: Vec<(String, String)> = self
                .opts
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let text: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                .collect();
            self.begin_step(&format!("LABEL {}", text.join(" ")))?;
            let labels = st.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k, v);
            }
            self.config_step(&mut st, &format!("LABEL {}", text.join(" ")))?;
        }
        Ok(st.image)
    }

    /// The image a FROM names: `scratch`, an earlier stage, or an image (pulled when
    /// missing or when the build asks to pull).
    fn base_image(&mut self, base: &str, index: usize) -> Result<Option<ImageRecord>> {
        if base.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        if let Some(&i) = self.stage_names.get(&base.to_ascii_lowercase()) {
            if i < index {
                return Ok(self.stage_images[i].clone());
            }
        }
        self.image_named(base, self.opts.pull).map(Some)
    }

    fn image_named(&mut self, name: &str, pull: bool) -> Result<ImageRecord> {
        if !pull {
            if let Ok((rec, _)) = self.engine.resolve(name) {
                return Ok(rec);
            }
        }
        let reference = Reference::parse_with_default_tag(name)
            .map_err(|e| build_err(format!("invalid reference format: {name}: {e}")))?;
        self.say(&format!("Pulling {}\n", reference.familiar()))?;
        self.engine
            .pull(
                &reference,
                (!self.opts.platform.is_empty()).then_some(self.opts.platform.as_str()),
                self.opts.registry_auth.for_domain(reference.domain()),
                &|_| {},
            )
            .map_err(|e| {
                EngineError::new(
                    e.kind,
                    format!("base image {}: {}", reference.familiar(), e.message),
                )
            })?;
        Ok(self.engine.resolve(&reference.familiar())?.0)
    }

    /// Expands a word with the step's variables.
    fn expand(&self, st: &StageState, word: &str) -> Result<String> {
        lex::expand(word, self.escape, &|k| st.lookup(k)).map_err(|e| build_err(e.to_string()))
    }

    /// A step whose result is cached: a child of the current image made from the same
    /// `container_config`.
    fn cached(&self, st: &StageState, container_config: &RunConfig) -> Result<Option<ImageRecord>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        let want = serde_json::to_value(container_config).unwrap_or(Value::Null);
        let parent = st.image.as_ref().map(|r| r.id);
        let mut best: Option<(ImageRecord, String)> = None;
        for rec in self.engine.store().meta.images()? {
            if rec.parent != parent || rec.source != "build" {
                continue;
            }
            let cfg = self.engine.config_of(&rec)?;
            if cfg.other.get("container_config") != Some(&want) {
                continue;
            }
            // A reproducible build takes only steps made with its epoch (their times
            // are part of the image).
            if let Some(e) = self.epoch {
                if cfg.created.as_deref() != Some(epoch_rfc3339(e).as_str()) {
                    continue;
                }
            }
            let created = cfg.created.clone().unwrap_or_default();
            if best.as_ref().is_none_or(|(_, c)| created > *c) {
                best = Some((rec, created));
            }
        }
        match best {
            Some((r, _)) => Ok(Some(r)),
            None => self.cached_from_sources(st, container_config),
        }
    }

    /// A step found in a `cachefrom` image (Docker's `imageCache.GetCache`): one whose
    /// history begins with the parent's history and layers and goes on with an entry made
    /// by this step's instruction. When that entry is the image's last, the image itself
    /// is the result (recorded as the parent's child); else an image of the parent plus
    /// that entry and its layer (already stored) is made.
    fn cached_from_sources(&self, st: &StageState, cc: &RunConfig) -> Result<Option<ImageRecord>> {
        if self.cache_sources.is_empty() {
            return Ok(None);
        }
        let (p_hist, p_diffs) = match &st.image {
            Some(p) => {
                let c = self.engine.config_of(p)?;
                (c.history, c.rootfs.diff_ids)
            }
            None => (Vec::new(), Vec::new()),
        };
        let want = cc.cmd.as_ref().map(|c| c.join(" "));
        for (target, tcfg) in &self.cache_sources {
            let valid_parent = tcfg.history.len() > p_hist.len()
                && tcfg.rootfs.diff_ids.len() >= p_diffs.len()
                && tcfg.history.get(..p_hist.len()) == Some(p_hist.as_slice())
                && tcfg.rootfs.diff_ids.get(..p_diffs.len()) == Some(p_diffs.as_slice());
            if !valid_parent {
                continue;
            }
            let Some(h) = tcfg.history.get(p_hist.len()) else {
                continue;
            };
            if h.created_by != want {
                continue;
            }
            if let Some(e) = self.epoch {
                if h.created.as_deref() != Some(epoch_rfc3339(e).as_str()) {
                    continue;
                }
            }
            if tcfg.history.len() == p_hist.len() + 1 {
                let mut rec = target.clone();
                if let (None, Some(p)) = (rec.parent, &st.image) {
                    rec.parent = Some(p.id);
                    self.engine.store().meta.put_image(&rec, &[])?;
                }
                return Ok(Some(rec));
            }
            let layer = if h.empty_layer {
                None
            } else {
                let index = tcfg.history[..p_hist.len()]
                    .iter()
                    .filter(|h| !h.empty_layer)
                    .count();
                match target.layers.get(index) {
                    Some(l) if tcfg.rootfs.diff_ids.get(index) == Some(&l.diff_id) => {
                        Some(l.clone())
                    }
                    _ => continue,
                }
            };
            let mut extra = serde_json::Map::new();
            extra.insert(
                "container_config".into(),
                serde_json::to_value(cc).unwrap_or(Value::Null),
            );
            let id = berth_image::derive::derive_image(
                self.engine.store(),
                berth_image::derive::Derivation {
                    base: st.image.clone(),
                    steps: vec![berth_image::derive::Step {
                        layer: None,
                        stored: layer,
                        history: h.clone(),
                    }],
                    config: st.config.clone(),
                    author: st.author.clone(),
                    extra,
                    tags: Vec::new(),
                    source: "build".into(),
                    created: h.created.clone(),
                },
            )?;
            return Ok(Some(self.image_record(&id)?));
        }
        Ok(None)
    }

    /// Runs one instruction on the stage's state.
    fn step_in(&mut self, st: &mut StageState, ins: &Instruction) -> Result<()> {
        match ins {
            Instruction::Run {
                command,
                heredocs,
                network,
                security,
                mounts,
            } => {
                if !mounts.is_empty() {
                    return Err(not_supported("RUN --mount"));
                }
                if security.is_some() {
                    return Err(not_supported("RUN --security"));
                }
                let argv = match command {
                    Command::Exec(v) => {
                        if !heredocs.is_empty() {
                            return Err(not_supported("a heredoc in an exec form RUN"));
                        }
                        v.clone()
                    }
                    Command::Shell(s) => {
                        let mut v = st.shell();
                        match heredocs.as_slice() {
                            [] => v.push(s.clone()),
                            [h] if s.trim() == format!("<<{}", h.name)
                                || s.trim() == format!("<<-{}", h.name)
                                || s.trim() == format!("<<\"{}\"", h.name)
                                || s.trim() == format!("<<'{}'", h.name) =>
                            {
                                // The heredoc is the script, run by the shell.
                                let body = if h.expand {
                                    lex::expand_heredoc(&h.body(), &|k| st.lookup(k))
                                        .map_err(|e| build_err(e.to_string()))?
                                } else {
                                    h.body()
                                };
                                v.push(body);
                            }
                            _ => {
                                return Err(not_supported(
                                    "a heredoc given to a RUN command as its input (only `RUN <<EOF` alone is supported)",
                                ))
                            }
                        }
                        v
                    }
                };
                let network = match network {
                    Some(n) => n.clone(),
                    None => self.opts.network.clone(),
                };
                self.run_step(st, argv, &network)
            }
            Instruction::Copy(spec) => self.copy_step(st, spec, false),
            Instruction::Add(spec) => self.copy_step(st, spec, true),
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(st, k)?, self.expand(st, v)?));
                }
                for (k, v) in &expanded {
                    if k.is_empty() {
                        return Err(build_err("ENV names can not be blank"));
                    }
                    st.set_env(k, v);
                }
                let text: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.config_step(st, &format!("ENV {}", text.join(" ")))
            }
            Instruction::Arg(decls) => {
                let mut text = Vec::new();
                for a in decls {
                    let v = self.arg_value(a, &|k| st.lookup(k))?;
                    text.push(match &a.default {
                        Some(d) => format!("{}={d}", a.name),
                        None => a.name.clone(),
                    });
                    st.args.insert(a.name.clone(), v);
                }
                // An image of its own, as Docker's classic builder makes (the values
                // reach RUN steps, and their cache keys, not the config).
                self.config_step(st, &format!("ARG {}", text.join(" ")))
            }
            Instruction::Workdir(w) => {
                let w = self.expand(st, w)?;
                let dir = in_workdir(&st.workdir(), &w);
                let dir = dir.trim_end_matches('/');
                st.config.working_dir = Some(if dir.is_empty() {
                    "/".into()
                } else {
                    dir.into()
                });
                self.workdir_step(st)
            }
            Instruction::User(u) => {
                st.config.user = Some(self.expand(st, u)?);
                self.config_step(
                    st,
                    &format!("USER {}", st.config.user.clone().unwrap_or_default()),
                )
            }
            Instruction::Expose(ports) => {
                let mut words = Vec::new();
                for p in ports {
                    for w in lex::expand_words(p, self.escape, &|k| st.lookup(k))
                        .map_err(|e| build_err(e.to_string()))?
                    {
                        words.push(w);
                    }
                }
                let map = st.config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for w in &words {
                    for p in expose_ports(w)? {
                        map.insert(p, json!({}));
                    }
                }
                let mut all: Vec<String> = map.keys().cloned().collect();
                all.sort();
                self.config_step(st, &format!("EXPOSE {}", words.join(" ")))
            }
            Instruction::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, v)?;
                    if v.trim().is_empty() {
                        return Err(build_err("VOLUME specified can not be an empty string"));
                    }
                    list.push(v);
                }
                let map = st.config.volumes.get_or_insert_with(BTreeMap::new);
                for v in &list {
                    map.insert(v.clone(), json!({}));
                }
                self.config_step(st, &format!("VOLUME {list:?}"))
            }
            Instruction::Label(pairs) => {
                let mut text = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (self.expand(st, k)?, self.expand(st, v)?);
                    if k.is_empty() {
                        return Err(build_err("LABEL names can not be blank"));
                    }
                    text.push(format!("{k}={v}"));
                    st.config
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                self.config_step(st, &format!("LABEL {}", text.join(" ")))
            }
            Instruction::Entrypoint(c) => {
                let argv = self.argv(st, c);
                // An inherited CMD does not survive a new ENTRYPOINT (Docker).
                st.config.cmd = None;
                st.config.entrypoint = Some(argv.clone());
                self.config_step(st, &format!("ENTRYPOINT {}", json_list(&argv)))
            }
            Instruction::Cmd(c) => {
                let argv = self.argv(st, c);
                st.config.cmd = Some(argv.clone());
                self.config_step(st, &format!("CMD {}", json_list(&argv)))
            }
            Instruction::Healthcheck(h) => {
                st.config.healthcheck = Some(match h {
                    Health::None => HealthConfig {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    },
                    Health::Check {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => HealthConfig {
                        test: Some(match test {
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        }),
                        interval: nanos(*interval),
                        timeout: nanos(*timeout),
                        start_period: nanos(*start_period),
                        start_interval: nanos(*start_interval),
                        retries: retries.map(i64::from).filter(|r| *r > 0),
                    },
                });
                let test = st
                    .config
                    .healthcheck
                    .as_ref()
                    .and_then(|h| h.test.clone())
                    .unwrap_or_default();
                self.config_step(st, &format!("HEALTHCHECK {}", json_list(&test)))
            }
            Instruction::Shell(sh) => {
                if sh.is_empty() {
                    return Err(build_err("SHELL requires at least one argument"));
                }
                st.config.shell = Some(sh.clone());
                self.config_step(st, &format!("SHELL {}", json_list(sh)))
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(st, s)?;
                if crate::lifecycle::parse_signal(&s).is_none() {
                    return Err(build_err(format!("Invalid signal: {s}")));
                }
                st.config.stop_signal = Some(s.clone());
                self.config_step(st, &format!("STOPSIGNAL {s}"))
            }
            Instruction::OnBuild(text) => {
                st.config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(text.clone());
                self.config_step(st, &format!("ONBUILD {text}"))
            }
            Instruction::Maintainer(m) => {
                st.author = Some(self.expand(st, m)?);
                self.config_step(
                    st,
                    &format!("MAINTAINER {}", st.author.clone().unwrap_or_default()),
                )
            }
        }
    }

    /// CMD and ENTRYPOINT: the exec form as written, the shell form through SHELL.
    fn argv(&self, st: &StageState, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// A step that changes the config only: an image with an empty-layer history entry,
    /// or the cached one.
    fn config_step(&mut self, st: &mut StageState, text: &str) -> Result<()> {
        let mut cc = st.config.clone();
        cc.cmd = Some(nop(&st.shell(), &format!(" {text}")));
        if let Some(hit) = self.cached(st, &cc)? {
            self.say(" ---> Using cache\n")?;
            return self.advance(st, hit);
        }
        let base = st.image.clone();
        let mut extra = serde_json::Map::new();
        extra.insert(
            "container_config".into(),
            serde_json::to_value(&cc).unwrap_or(Value::Null),
        );
        let id = berth_image::derive::derive_image(
            self.engine.store(),
            berth_image::derive::Derivation {
                base,
                steps: vec![berth_image::derive::Step {
                    layer: None,
                    stored: None,
                    history: berth_image::model::History {
                        created_by: cc.cmd.as_ref().map(|c| c.join(" ")),
                        ..Default::default()
                    },
                }],
                config: st.config.clone(),
                author: st.author.clone(),
                extra,
                tags: Vec::new(),
                source: "build".into(),
                created: self.epoch.map(epoch_rfc3339),
            },
        )?;
        let rec = self.image_record(&id)?;
        self.advance(st, rec)
    }

    /// WORKDIR: the directory is made in the image when it is missing (a layer with
    /// the directories made, owned by root, 0755), else the config changes alone.
    fn workdir_step(&mut self, st: &mut StageState) -> Result<()> {
        let dir = st.workdir();
        let text = format!("WORKDIR {dir}");
        let mut cc = st.config.clone();
        cc.cmd = Some(nop(&st.shell(), &text));
        if let Some(hit) = self.cached(st, &cc)? {
            self.say(" ---> Using cache\n")?;
            return self.advance(st, hit);
        }
        if st.image.is_none() && dir == "/" {
            return self.config_step(st, &text);
        }
        let cid = self.step_container(st, None, "none")?;
        self.containers.done.push(cid.clone());
        if !self.make_missing_dirs(&cid, &dir, None)? {
            return self.config_step(st, &text);
        }
        self.commit_step(st, &cid, &cc)
    }

    /// The time of a directory the build makes: the epoch of a reproducible build,
    /// else now.
    fn dir_mtime(&self) -> u64 {
        self.epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }

    /// Commits the step's container (`cc`: the cache key it is found by) and makes the
    /// result the current image.
    fn commit_step(&mut self, st: &mut StageState, cid: &str, cc: &RunConfig) -> Result<()> {
        let id = self.engine.commit_build_step(
            cid,
            st.config.clone(),
            cc,
            cc.cmd.clone().unwrap_or_default().join(" "),
            st.author.clone(),
            self.epoch,
        )?;
        let rec = self.image_record(&id)?;
        self.advance(st, rec)
    }

    /// Makes the components of `dir` that the container's filesystem lacks (0755, owned
    /// by `owner` or root); existing ones keep their owner and mode. Returns whether it
    /// made any.
    fn make_missing_dirs(&self, cid: &str, dir: &str, owner: Option<(u32, u32)>) -> Result<bool> {
        let mut missing = Vec::new();
        let mut path = String::new();
        for c in dir.split('/').filter(|c| !c.is_empty()) {
            path.push('/');
            path.push_str(c);
            match self.engine.stat_path(cid, &path) {
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::NotFound => missing.push(path.clone()),
                Err(e) => return Err(e),
            }
        }
        if missing.is_empty() {
            return Ok(false);
        }
        let tar_err = |e: std::io::Error| EngineError::internal(format!("build: {e}"));
        let mut t = tar::Builder::new(tempfile_in(&self.work)?);
        let (uid, gid) = owner.unwrap_or((0, 0));
        for m in &missing {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(self.dir_mtime());
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
            h.set_size(0);
            t.append_data(
                &mut h,
                format!("{}/", m.trim_start_matches('/')),
                std::io::empty(),
            )
            .map_err(tar_err)?;
        }
        let mut f = t.into_inner().map_err(tar_err)?;
        f.rewind().map_err(tar_err)?;
        self.engine.put_archive(cid, "/", &mut f, false, false)?;
        Ok(true)
    }

    fn image_record(&self, id: &Digest) -> Result<ImageRecord> {
        self.engine
            .store()
            .meta
            .image(id)?
            .ok_or_else(|| EngineError::internal(format!("build: image {id} vanished")))
    }

    /// The step's result becomes the current image.
    fn advance(&mut self, st: &mut StageState, rec: ImageRecord) -> Result<()> {
        let cfg = self.engine.config_of(&rec)?;
        // The image's config is the truth (a cached step's carries what it set).
        let args = std::mem::take(&mut st.args);
        st.config = cfg.config.unwrap_or_default();
        st.config.on_build = st.config.on_build.take().filter(|v| !v.is_empty());
        st.args = args;
        self.say(&format!(" ---> {}\n", short(&rec.id.to_string())))?;
        st.image = Some(rec);
        Ok(())
    }

    /// The step's container: of the current image (`FROM scratch` with no step yet has
    /// none: an empty image is made first).
    fn step_container(
        &mut self,
        st: &mut StageState,
        argv: Option<Vec<String>>,
        network: &str,
    ) -> Result<String> {
        let image = match &st.image {
            Some(rec) => rec.id.to_string(),
            None => {
                let id = berth_image::derive::derive_image(
                    self.engine.store(),
                    berth_image::derive::Derivation {
                        base: None,
                        steps: Vec::new(),
                        config: st.config.clone(),
                        author: None,
                        extra: serde_json::Map::new(),
                        tags: Vec::new(),
                        source: "build".into(),
                        created: self.epoch.map(epoch_rfc3339),
                    },
                )?;
                st.image = Some(self.image_record(&id)?);
                id.to_string()
            }
        };
        let mut env = st.config.env.clone().unwrap_or_default();
        env.extend(st.run_args());
        let mut opts = CreateOptions::default();
        opts.runtime.args_override = argv;
        opts.runtime.entrypoint_override = Some(Vec::new());
        opts.runtime.env = env;
        opts.runtime.workdir = st.config.working_dir.clone().filter(|w| !w.is_empty());
        opts.runtime.user = st.config.user.clone().filter(|u| !u.is_empty());
        opts.net.mode = match network {
            "" | "default" | "none" => "none".into(),
            other => other.to_string(),
        };
        opts.settings.healthcheck = Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
        opts.labels.insert("com.berth.build".into(), "step".into());
        let created = self.engine.create_container(&image, &opts)?;
        Ok(created.id)
    }

    fn run_step(&mut self, st: &mut StageState, argv: Vec<String>, network: &str) -> Result<()> {
        // Docker's cache key: the command with the build args it ran with (`|N k=v …`).
        let run_args = st.run_args();
        let mut key = Vec::new();
        if !run_args.is_empty() {
            key.push(format!("|{}", run_args.len()));
            key.extend(run_args.iter().cloned());
        }
        key.extend(argv.iter().cloned());
        let mut cc = st.config.clone();
        cc.cmd = Some(key);
        if let Some(hit) = self.cached(st, &cc)? {
            self.say(" ---> Using cache\n")?;
            return self.advance(st, hit);
        }
        let cid = self.step_container(st, Some(argv.clone()), network)?;
        self.containers.done.push(cid.clone());
        self.say(&format!(" ---> Running in {}\n", short(&cid)))?;
        self.engine.start_container(&cid)?;
        let q = crate::logs::LogQuery {
            stdout: true,
            stderr: true,
            follow: true,
            ..Default::default()
        };
        let mut sink = StepOutput {
            out: &mut *self.out,
        };
        self.engine.read_logs(&cid, &q, &mut sink)?;
        let code = self.engine.wait_container(&cid)?;
        if code != 0 {
            return Err(EngineError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "The command '{}' returned a non-zero code: {code}",
                    argv.join(" ")
                ),
            ));
        }
        self.commit_step(st, &cid, &cc)
    }

    fn copy_step(&mut self, st: &mut StageState, spec: &CopySpec, add: bool) -> Result<()> {
        let what = if add { "ADD" } else { "COPY" };
        if spec.link {
            return Err(not_supported(&format!("{what} --link")));
        }
        if spec.parents {
            return Err(not_supported(&format!("{what} --parents")));
        }
        if !spec.exclude.is_empty() {
            return Err(not_supported(&format!("{what} --exclude")));
        }
        if spec.checksum.is_some() || spec.keep_git_dir {
            return Err(not_supported(&format!(
                "{what} --checksum / --keep-git-dir"
            )));
        }
        if !spec.heredocs.is_empty() {
            return Err(not_supported(&format!("{what} of a heredoc")));
        }
        let mut sources = Vec::new();
        for s in &spec.sources {
            let s = self.expand(st, s)?;
            if add
                && (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@"))
            {
                return Err(not_supported(
                    "ADD from a URL (berth builds from the context only)",
                ));
            }
            sources.push(s);
        }
        let dest = self.expand(st, &spec.dest)?;
        let dest = in_workdir(&st.workdir(), &dest);
        let chmod = match &spec.chmod {
            Some(m) => {
                let m = self.expand(st, m)?;
                Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|v| *v <= 0o7777)
                        .ok_or_else(|| {
                            build_err(format!(
                                "invalid chmod parameter {m}: an octal mode is expected"
                            ))
                        })?,
                )
            }
            None => None,
        };
        let chown = match &spec.chown {
            Some(c) => Some(self.expand(st, c)?),
            None => None,
        };
        // Where the sources are: the context, or a stage's or an image's filesystem.
        let from = match &spec.from {
            Some(f) => Some(self.expand(st, f)?),
            None => None,
        };
        let mut from_container = None;
        let source_root: PathBuf = match &from {
            None => self.context.clone(),
            Some(f) => {
                let image = match self.stage_image(f) {
                    Some(rec) => rec,
                    None => self.image_named(f, false)?,
                };
                let mut o = CreateOptions::default();
                o.net.mode = "none".into();
                o.labels.insert("com.berth.build".into(), "source".into());
                let c = self.engine.create_container(&image.id.to_string(), &o)?;
                self.containers.done.push(c.id.clone());
                let rec = self.engine.container(&c.id)?;
                let (path, hold) = self.engine.hold_rootfs(&rec)?;
                from_container = Some(hold);
                path
            }
        };
        let ignore = if from.is_none() {
            self.ignore.clone()
        } else {
            None
        };
        let ignore = ignore.as_deref();
        // ADD: local archives named as such are unpacked, not copied.
        let mut archives = Vec::new();
        if add && from.is_none() {
            let mut rest = Vec::new();
            for s in sources {
                if !has_wildcard(&s) && is_archive(&self.context, &s)? {
                    archives.push(s);
                } else {
                    rest.push(s);
                }
            }
            sources = rest;
            if !archives.is_empty() && !dest.ends_with('/') {
                return Err(build_err(format!(
                    "ADD {}: an archive is unpacked into a directory: end the destination {dest} with /",
                    archives.join(" ")
                )));
            }
        }
        // The cache key: the sources' checksum as they would land in an image with
        // nothing at the destination, and the `--chown` as written. What the parent
        // image has at the destination, and whom its passwd names, the parent (part of
        // the key) decides; so a hit needs no container.
        let mut key = String::new();
        if !sources.is_empty() {
            let req = context::CopyRequest {
                context: &source_root,
                sources: &sources,
                dest: &dest,
                dest_state: context::DestState::default(),
                owner: None,
                chmod,
                ignore,
            };
            let sum = context::copy_checksum(&req)
                .map_err(|e| build_err(format!("{what} failed: {e}")))?;
            key.push_str(&sum.checksum);
        }
        for a in &archives {
            key.push_str(&format!(" archive:{}", self.file_digest(a)?));
        }
        if let Some(c) = &chown {
            key.push_str(&format!(" chown:{c}"));
        }
        let hex = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        };
        let text = format!(
            "{what} {}:{hex} in {dest} ",
            if sources.len() + archives.len() == 1 {
                "file"
            } else {
                "multi"
            }
        );
        let mut cc = st.config.clone();
        cc.cmd = Some(nop(&st.shell(), &text));
        if let Some(hit) = self.cached(st, &cc)? {
            self.say(" ---> Using cache\n")?;
            return self.advance(st, hit);
        }
        let cid = self.step_container(st, None, "none")?;
        self.containers.done.push(cid.clone());
        let owner = match &chown {
            Some(c) => Some(self.resolve_owner(&cid, c)?),
            None => None,
        };
        // What of the destination exists already: the copy makes only what is missing
        // (an existing directory keeps its owner and mode).
        let dest_state = {
            use rustix::fs::{self as rfs, Mode, OFlags};
            let rec = self.engine.container(&cid)?;
            let (root, _hold) = self.engine.hold_rootfs(&rec)?;
            let fd = rfs::open(
                &root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| crate::containers::io_err(&root, "open", e.into()))?;
            context::probe_dest(fd.as_fd(), &dest)
                .map_err(|e| build_err(format!("{what} failed: {e}")))?
        };
        let req = context::CopyRequest {
            context: &source_root,
            sources: &sources,
            dest: &dest,
            dest_state,
            owner,
            chmod,
            ignore,
        };
        if !sources.is_empty() {
            let mut tmp = tempfile_in(&self.work)?;
            context::copy_archive(&req, &mut tmp)
                .map_err(|e| build_err(format!("{what} failed: {e}")))?;
            tmp.rewind()
                .map_err(|e| EngineError::internal(format!("build: {e}")))?;
            self.engine.put_archive(&cid, "/", &mut tmp, false, false)?;
        }
        drop(from_container);
        self.add_archives(&cid, &archives, &dest, owner)?;
        self.commit_step(st, &cid, &cc)
    }

    /// ADD of local tar archives (plain, gzip or zstd): each is unpacked in the
    /// destination directory (what is missing of it made, owned by `owner`), with the archive's
    /// owners and modes, by the `docker cp` extractor (Docker unpacks them too).
    fn add_archives(
        &mut self,
        cid: &str,
        archives: &[String],
        dest: &str,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        if archives.is_empty() {
            return Ok(());
        }
        self.make_missing_dirs(cid, dest, owner)?;
        for a in archives {
            let f = berth_runtime::user::open_in_root(
                &self.context,
                Path::new(a.trim_start_matches('/')),
            )
            .map_err(|e| build_err(format!("ADD {a}: {e}")))?
            .ok_or_else(|| {
                build_err(format!("ADD failed: file not found in build context: {a}"))
            })?;
            let mut input =
                berth_image::cp::decompressed(f).map_err(|e| build_err(format!("ADD {a}: {e}")))?;
            self.engine
                .put_archive(cid, dest, &mut input, false, false)
                .map_err(|e| EngineError::new(e.kind, format!("ADD {a}: {}", e.message)))?;
        }
        Ok(())
    }

    /// A context file's sha256 (an ADD archive's part of the cache key).
    fn file_digest(&self, name: &str) -> Result<String> {
        use sha2::Digest as _;
        let mut f = berth_runtime::user::open_in_root(
            &self.context,
            Path::new(name.trim_start_matches('/')),
        )
        .map_err(|e| build_err(format!("ADD {name}: {e}")))?
        .ok_or_else(|| {
            build_err(format!(
                "ADD failed: file not found in build context: {name}"
            ))
        })?;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| build_err(format!("ADD {name}: {e}")))?;
        Ok(hex::encode(h.finalize()))
    }

    fn stage_image(&self, name: &str) -> Option<ImageRecord> {
        let idx = match name.parse::<usize>() {
            Ok(i) => Some(i),
            Err(_) => self.stage_names.get(&name.to_ascii_lowercase()).copied(),
        }?;
        self.stage_images.get(idx).cloned().flatten()
    }

    /// `--chown=user[:group]` against the step container's /etc/passwd and /etc/group;
    /// a user alone gives the same number as the group (Docker).
    fn resolve_owner(&self, cid: &str, spec: &str) -> Result<(u32, u32)> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let rec = self.engine.container(cid)?;
        let (root, _hold) = self.engine.hold_rootfs(&rec)?;
        let uid = match user.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                berth_runtime::user::resolve(&root, user, &[])
                    .map_err(|e| build_err(format!("--chown={spec}: {e}")))?
                    .uid
            }
        };
        let gid = match group {
            None => uid,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    berth_runtime::user::resolve(&root, &format!("0:{g}"), &[])
                        .map_err(|e| build_err(format!("--chown={spec}: {e}")))?
                        .gid
                }
            },
        };
        Ok((uid, gid))
    }
}

/// A RUN step's output, as the stream's text.
struct StepOutput<'a> {
    out: &'a mut dyn BuildProgress,
}

impl crate::logs::LogSink for StepOutput<'_> {
    fn record(&mut self, r: &crate::logs::LogRecord) -> std::io::Result<()> {
        self.out.stream(&r.log)
    }
}

fn not_supported(what: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotImplemented,
        format!("{what} is not supported by berth's builder"),
    )
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// EXPOSE's word: `80`, `80/udp`, `8000-8002` as `N/proto` keys.
fn expose_ports(word: &str) -> Result<Vec<String>> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(build_err(format!("invalid proto: {proto}")));
    }
    let bad = || build_err(format!("invalid containerPort: {ports}"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A regular file of the context that is a tar archive (plain, gzip, zstd, bzip2, xz:
/// the last two are refused when unpacked, by name).
fn is_archive(context: &Path, name: &str) -> Result<bool> {
    let rel = clean_abs(name);
    let Ok(Some(mut f)) =
        berth_runtime::user::open_in_root(context, Path::new(rel.trim_start_matches('/')))
    else {
        return Ok(false);
    };
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Ok(false);
    }
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(build_err(format!("ADD {name}: {e}"))),
        }
    }
    let head = &head[..n];
    Ok(head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || (n == 512 && &head[257..262] == b"ustar"))
}

/// An anonymous file in the build's directory (the context's filesystem).
fn tempfile_in(dir: &Path) -> Result<fs::File> {
    let path = dir.join(format!("copy-{}", std::process::id()));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| crate::containers::io_err(&path, "create", e))?;
    let _ = fs::remove_file(&path);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_a_step_are_taken_from_the_working_directory() {
        assert_eq!(in_workdir("/app", "src"), "/app/src");
        assert_eq!(in_workdir("/app", "src/"), "/app/src/");
        assert_eq!(in_workdir("/app", "."), "/app/");
        assert_eq!(in_workdir("/app", "../x"), "/x");
        assert_eq!(in_workdir("/", "/etc/../../opt/"), "/opt/");
        assert_eq!(clean_abs("a//b/./c/.."), "/a/b");
    }

    #[test]
    fn expose_takes_ports_ranges_and_protocols() {
        assert_eq!(expose_ports("80").expect("ports"), ["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").expect("ports"), ["53/udp"]);
        assert_eq!(
            expose_ports("8000-8002").expect("ports"),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expose_ports("http").is_err());
        assert!(expose_ports("80/icmp").is_err());
        assert!(expose_ports("9-1").is_err());
    }
}
