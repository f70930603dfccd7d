//! `berth image copy` to and from archives, without the store and without unpacking
//! anything: `docker-archive:PATH[:REF]` (`docker save`'s layout) and
//! `oci-archive:PATH[:REF]` (a tar of an OCI image layout), as skopeo spells them.
//!
//! **Archive → registry.** The archive is read once, front to back. Both layouts name
//! their blobs only in a member that comes late (`manifest.json` is the last member of a
//! `docker save`, `index.json` the last of most OCI archives), so every member is hashed
//! while it is read; small members (≤ 1 MiB, up to 64 MiB in all) stay in memory and the
//! others — the layers — are spooled to a private temporary directory (under `$TMPDIR`),
//! removed when the copy ends. Memory stays bounded; disk use is at most the archive's
//! size. Then every blob is checked against the digest its manifest or config gives it and
//! uploaded from the spool (skipped when the registry has it). A `docker save` archive
//! has no registry manifest: one is made from its config, OCI media types
//! (`application/vnd.oci.image.layer.v1.tar` for its uncompressed layers, whose digests
//! must equal the config's `diff_ids`). An OCI archive's manifests are sent as they are,
//! an index with every platform.
//!
//! **Registry → archive.** Manifest, config and blobs are fetched and verified as they
//! stream. An OCI archive receives the blobs as they are (every platform of an index);
//! its `index.json` names the image `REF` (`org.opencontainers.image.ref.name`) when one
//! is given, as skopeo does. A docker archive holds one platform (the host's, from an
//! index) with uncompressed layers: each layer is decompressed into the spool (a tar
//! member's size must be known before its bytes), checked against its `diff_id`, then
//! written. The archive is written to `PATH.tmp-…` and renamed into place at the end.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use berth_types::{media, Digest, Reference, Sha256Writer};
use serde_json::json;
use tracing::info;

use super::copy::{CopyEvent, Verified};
use super::RegistryClient;
use crate::error::{ImageError, Result};
use crate::layer::{sniff, Compression};
use crate::model::{
    host_platform, platform_matches, Descriptor, DockerSaveEntry, ImageConfig, Index, Manifest,
    MAX_JSON_BYTES,
};

/// Members up to this size are kept in memory…
const SMALL_MEMBER: u64 = 1 << 20;
/// …up to this much in all; the rest is spooled to disk.
const MEMORY_BUDGET: u64 = 64 << 20;

/// One end of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Registry(Reference),
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    OciArchive {
        path: PathBuf,
        reference: Option<String>,
    },
}

impl Endpoint {
    /// An archive endpoint's path, image reference and whether it is a docker-save
    /// archive (else OCI); an error naming `role` for a registry.
    fn archive(&self, role: &str) -> Result<(&PathBuf, &Option<String>, bool)> {
        match self {
            Endpoint::DockerArchive { path, reference } => Ok((path, reference, true)),
            Endpoint::OciArchive { path, reference } => Ok((path, reference, false)),
            Endpoint::Registry(_) => Err(ImageError::Invalid(format!(
                "{role} is a registry, not an archive"
            ))),
        }
    }

    /// Parses skopeo's spellings: `docker://REF` or a plain reference,
    /// `docker-archive:PATH[:REF]`, `oci-archive:PATH[:REF]`.
    pub fn parse(s: &str) -> Result<Endpoint> {
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            // PATH may not contain ':' when a REF follows (skopeo's rule too).
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
                _ => (PathBuf::from(rest.trim_end_matches(':')), None),
            }
        };
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, reference) = split(rest);
            return Ok(Endpoint::DockerArchive { path, reference });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, reference) = split(rest);
            return Ok(Endpoint::OciArchive { path, reference });
        }
        if s.starts_with("oci:") || s.starts_with("dir:") || s.starts_with("containers-storage:") {
            return Err(ImageError::Invalid(format!(
                "{s}: transport not supported by image copy (use docker://, docker-archive: or oci-archive:)"
            )));
        }
        let r = s.strip_prefix("docker://").unwrap_or(s);
        Reference::parse_with_default_tag(r)
            .map(Endpoint::Registry)
            .map_err(|e| ImageError::Invalid(format!("invalid reference {r}: {e}")))
    }
}

// ---------------------------------------------------------------------------------------
// Reading an archive once.

enum Body {
    Memory(Vec<u8>),
    File(PathBuf),
}

struct Member {
    body: Body,
    digest: Digest,
    size: u64,
}

/// The members of an archive read once: digests, small ones in memory, big ones on disk.
struct Spool {
    dir: PathBuf,
    members: HashMap<String, Member>,
    links: HashMap<String, String>,
    archive: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spool_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!("berth-copy-{}-{nanos:x}-{i}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ImageError::io(format!("create {}", dir.display()), e)),
        }
    }
    Err(ImageError::Invalid("no free spool directory name".into()))
}

/// `a/./b/../c` → `a/c`, without a leading `./` or `/`.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

impl Spool {
    fn read(archive: &Path) -> Result<Spool> {
        let f = File::open(archive)
            .map_err(|e| ImageError::io(format!("open {}", archive.display()), e))?;
        let mut spool = Spool {
            dir: spool_dir()?,
            members: HashMap::new(),
            links: HashMap::new(),
            archive: archive.to_path_buf(),
        };
        let bad = |e: io::Error| ImageError::io(format!("read archive {}", archive.display()), e);
        let mut in_memory = 0u64;
        let mut tar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
        for (n, entry) in tar.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let target = if kind.is_symlink() {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize(&format!("{dir}/{target}"))
                } else {
                    normalize(&target)
                };
                spool.links.insert(name, target);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            let mut hasher = Sha256Writer::new();
            let body = if size <= SMALL_MEMBER && in_memory + size <= MEMORY_BUDGET {
                in_memory += size;
                let mut b = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut b).map_err(bad)?;
                hasher.update(&b);
                Body::Memory(b)
            } else {
                let path = spool.dir.join(format!("{n}"));
                let mut out = File::create(&path)
                    .map_err(|e| ImageError::io(format!("create {}", path.display()), e))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let k = entry.read(&mut buf).map_err(bad)?;
                    if k == 0 {
                        break;
                    }
                    hasher.update(&buf[..k]);
                    out.write_all(&buf[..k])
                        .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
                }
                Body::File(path)
            };
            spool.members.insert(
                name,
                Member {
                    body,
                    digest: hasher.finish(),
                    size,
                },
            );
        }
        Ok(spool)
    }

    fn member(&self, name: &str) -> Result<&Member> {
        let mut name = normalize(name);
        for _ in 0..16 {
            if let Some(m) = self.members.get(&name) {
                return Ok(m);
            }
            match self.links.get(&name) {
                Some(t) => name = t.clone(),
                None => break,
            }
        }
        Err(ImageError::Invalid(format!(
            "archive {}: no member {name}",
            self.archive.display()
        )))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let m = self.member(name)?;
        Ok(match &m.body {
            Body::Memory(b) => Box::new(io::Cursor::new(b.clone())),
            Body::File(p) => {
                Box::new(BufReader::new(File::open(p).map_err(|e| {
                    ImageError::io(format!("open {}", p.display()), e)
                })?))
            }
        })
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        let m = self.member(name)?;
        if m.size > MAX_JSON_BYTES {
            return Err(ImageError::Invalid(format!(
                "archive {}: {name} is larger than {MAX_JSON_BYTES} bytes",
                self.archive.display()
            )));
        }
        let mut b = Vec::new();
        self.open(name)?
            .read_to_end(&mut b)
            .map_err(|e| ImageError::io(format!("read {name}"), e))?;
        Ok(b)
    }

    /// The blob `d` of an OCI layout, its content checked against its name.
    fn blob(&self, d: &Digest) -> Result<&Member> {
        let name = format!("blobs/{}", d.to_string().replacen(':', "/", 1));
        let m = self.member(&name)?;
        if m.digest != *d {
            return Err(ImageError::Invalid(format!(
                "archive {}: {name} has content digest {}",
                self.archive.display(),
                m.digest
            )));
        }
        Ok(m)
    }
}

fn upload(
    spool: &Spool,
    dst: &RegistryClient,
    repo: &str,
    member: &str,
    digest: &Digest,
    size: u64,
    progress: &dyn Fn(CopyEvent),
) -> Result<()> {
    if dst.has_blob(repo, digest)? {
        progress(CopyEvent::Exists { digest: *digest });
        return Ok(());
    }
    let open = || -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(Verified::new(spool.open(member)?, *digest)))
    };
    dst.put_blob(repo, digest, size, &open)?;
    progress(CopyEvent::Copied {
        digest: *digest,
        size,
    });
    Ok(())
}

fn same_name(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        Reference::parse_with_default_tag(a),
        Reference::parse_with_default_tag(b),
    ) {
        (Ok(x), Ok(y)) => x.to_string() == y.to_string(),
        _ => false,
    }
}

fn target_of(dst: &Reference, digest: &Digest) -> String {
    dst.tag()
        .map(str::to_string)
        .unwrap_or_else(|| digest.to_string())
}

/// Pushes a `docker save` archive's image to `dst`; returns the manifest's digest.
fn docker_archive_to_registry(
    spool: &Spool,
    reference: Option<&str>,
    dst: &RegistryClient,
    dst_ref: &Reference,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let what = spool.archive.display().to_string();
    let entries: Vec<DockerSaveEntry> = serde_json::from_slice(&spool.bytes("manifest.json")?)
        .map_err(|e| ImageError::Invalid(format!("archive {what}: manifest.json: {e}")))?;
    let entry = match reference {
        Some(r) => entries
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| same_name(t, r)))
            .ok_or_else(|| ImageError::NotFound(format!("archive {what}: no image tagged {r}")))?,
        None if entries.len() == 1 => &entries[0],
        None => {
            return Err(ImageError::Invalid(format!(
                "archive {what} holds {} images: name one (docker-archive:PATH:REF)",
                entries.len()
            )))
        }
    };
    let config_bytes = spool.bytes(&entry.config)?;
    let config_digest = Digest::of(&config_bytes);
    let config = ImageConfig::parse(&config_bytes)
        .map_err(|e| ImageError::Invalid(format!("archive {what}: {}: {e}", entry.config)))?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ImageError::Invalid(format!(
            "archive {what}: config lists {} diff_ids but manifest.json {} layers",
            config.rootfs.diff_ids.len(),
            entry.layers.len()
        )));
    }
    let repo = dst_ref.path();
    let mut layers = Vec::new();
    for (i, (path, diff_id)) in entry.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let m = spool.member(path)?;
        let mut head = [0u8; 512];
        let n = read_head(spool.open(path)?, &mut head)?;
        let compression = sniff(&head[..n]).unwrap_or(Compression::None);
        let media_type = match compression {
            Compression::None => media::OCI_LAYER,
            Compression::Gzip => media::OCI_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        };
        let got_diff = match compression {
            Compression::None => m.digest,
            c => uncompressed_digest(spool.open(path)?, c)?,
        };
        if got_diff != *diff_id {
            return Err(ImageError::Invalid(format!(
                "archive {what} layer {} ({path}): content has diff_id {got_diff}, the config says {diff_id}",
                i + 1
            )));
        }
        upload(spool, dst, repo, path, &m.digest, m.size, progress)?;
        layers.push(descriptor(media_type, m.digest, m.size));
    }
    upload(
        spool,
        dst,
        repo,
        &entry.config,
        &config_digest,
        config_bytes.len() as u64,
        progress,
    )?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_string()),
        config: descriptor(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let digest = Digest::of(&bytes);
    let got = dst.put_manifest(
        repo,
        &target_of(dst_ref, &digest),
        &bytes,
        media::OCI_MANIFEST,
    )?;
    progress(CopyEvent::Manifest { digest: got });
    Ok(got)
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    }
}

fn read_head(mut r: impl Read, head: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < head.len() {
        let k = r
            .read(&mut head[n..])
            .map_err(|e| ImageError::io("read layer", e))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn decompressor(r: Box<dyn Read + Send>, c: Compression) -> Result<Box<dyn Read + Send>> {
    Ok(match c {
        Compression::None => r,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(r))),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(r).map_err(|e| ImageError::io("zstd", e))?)
        }
    })
}

fn uncompressed_digest(r: Box<dyn Read + Send>, c: Compression) -> Result<Digest> {
    let mut d = decompressor(r, c)?;
    let mut h = Sha256Writer::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = d
            .read(&mut buf)
            .map_err(|e| ImageError::io("decompress layer", e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(h.finish())
}

fn is_foreign(d: &Descriptor) -> bool {
    matches!(
        d.media_type.as_str(),
        media::OCI_LAYER_NONDIST | media::OCI_LAYER_NONDIST_GZIP | media::DOCKER_LAYER_FOREIGN_GZIP
    ) && d.urls.is_some()
}

/// Pushes an image manifest of an OCI layout and its blobs under `target`.
fn oci_manifest_to_registry(
    spool: &Spool,
    d: &Descriptor,
    dst: &RegistryClient,
    repo: &str,
    target: &str,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let bytes = spool_blob_bytes(spool, &d.digest)?;
    let m = Manifest::parse(&bytes)
        .map_err(|e| ImageError::Invalid(format!("manifest {}: {e}", d.digest)))?;
    for b in m.layers.iter().chain(std::iter::once(&m.config)) {
        if is_foreign(b) {
            continue;
        }
        let member = spool.blob(&b.digest)?;
        if member.size != b.size {
            return Err(ImageError::Invalid(format!(
                "blob {}: {} bytes in the archive, the manifest says {}",
                b.digest, member.size, b.size
            )));
        }
        let name = format!("blobs/{}", b.digest.to_string().replacen(':', "/", 1));
        upload(spool, dst, repo, &name, &b.digest, b.size, progress)?;
    }
    let got = dst.put_manifest(repo, target, &bytes, &d.media_type)?;
    progress(CopyEvent::Manifest { digest: got });
    Ok(got)
}

fn spool_blob_bytes(spool: &Spool, d: &Digest) -> Result<Vec<u8>> {
    spool.blob(d)?;
    spool.bytes(&format!("blobs/{}", d.to_string().replacen(':', "/", 1)))
}

fn oci_archive_to_registry(
    spool: &Spool,
    reference: Option<&str>,
    dst: &RegistryClient,
    dst_ref: &Reference,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let what = spool.archive.display().to_string();
    let index = Index::parse(&spool.bytes("index.json")?)
        .map_err(|e| ImageError::Invalid(format!("archive {what}: index.json: {e}")))?;
    let name_of = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned())
    };
    let top = match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| name_of(d).is_some_and(|n| n == r || same_name(&n, r)))
            .ok_or_else(|| ImageError::NotFound(format!("archive {what}: no image named {r}")))?,
        None if index.manifests.len() == 1 => &index.manifests[0],
        None => {
            return Err(ImageError::Invalid(format!(
                "archive {what} holds {} images: name one (oci-archive:PATH:REF)",
                index.manifests.len()
            )))
        }
    };
    let repo = dst_ref.path();
    let target = target_of(dst_ref, &top.digest);
    if media::is_index(&top.media_type) {
        let bytes = spool_blob_bytes(spool, &top.digest)?;
        let idx = Index::parse(&bytes)
            .map_err(|e| ImageError::Invalid(format!("index {}: {e}", top.digest)))?;
        for child in &idx.manifests {
            if media::is_manifest(&child.media_type) {
                oci_manifest_to_registry(
                    spool,
                    child,
                    dst,
                    repo,
                    &child.digest.to_string(),
                    progress,
                )?;
            }
        }
        let got = dst.put_manifest(repo, &target, &bytes, &top.media_type)?;
        progress(CopyEvent::Manifest { digest: got });
        Ok(got)
    } else {
        oci_manifest_to_registry(spool, top, dst, repo, &target, progress)
    }
}

/// Copies an image from an archive into a registry; returns the digest the destination
/// now holds.
pub fn copy_from_archive(
    src: &Endpoint,
    dst: &RegistryClient,
    dst_ref: &Reference,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let (path, reference, docker) = src.archive("copy_from_archive: the source")?;
    let spool = Spool::read(path)?;
    let digest = if docker {
        docker_archive_to_registry(&spool, reference.as_deref(), dst, dst_ref, progress)?
    } else {
        oci_archive_to_registry(&spool, reference.as_deref(), dst, dst_ref, progress)?
    };
    info!(source = %path.display(), destination = %dst_ref, %digest, "image copied from archive");
    Ok(digest)
}

// ---------------------------------------------------------------------------------------
// Writing an archive.

type Builder<'a> = tar::Builder<&'a mut dyn Write>;

fn append(b: &mut Builder<'_>, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .map_err(|e| ImageError::io(format!("write archive member {path}"), e))
}

fn append_dir(b: &mut Builder<'_>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, io::empty())
        .map_err(|e| ImageError::io(format!("write archive member {path}"), e))
}

/// Streams blob `d` (of `size` bytes) from the registry into the archive, verified.
fn fetch_into(
    src: &RegistryClient,
    repo: &str,
    d: &Digest,
    size: u64,
    b: &mut Builder<'_>,
    path: &str,
    progress: &dyn Fn(CopyEvent),
) -> Result<()> {
    let (resp, _) = src.get_blob(repo, d)?;
    let mut r = Verified::new(Box::new(resp.take(size)), *d);
    append(b, path, size, &mut r)?;
    progress(CopyEvent::Copied { digest: *d, size });
    Ok(())
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}", d.to_string().replacen(':', "/", 1))
}

fn write_oci(
    src: &RegistryClient,
    src_ref: &Reference,
    reference: Option<&str>,
    b: &mut Builder<'_>,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let repo = src_ref.path();
    let (bytes, media_type, digest) = src.get_manifest(src_ref)?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(b, "oci-layout", layout.len() as u64, &mut &layout[..])?;
    append_dir(b, "blobs/")?;
    append_dir(b, "blobs/sha256/")?;
    let mut written = std::collections::HashSet::new();
    let mut image = |b: &mut Builder<'_>, mbytes: &[u8], mdigest: &Digest| -> Result<()> {
        let m = Manifest::parse(mbytes)
            .map_err(|e| ImageError::Invalid(format!("manifest {mdigest}: {e}")))?;
        for d in m.layers.iter().chain(std::iter::once(&m.config)) {
            if is_foreign(d) || !written.insert(d.digest) {
                continue;
            }
            fetch_into(
                src,
                repo,
                &d.digest,
                d.size,
                b,
                &blob_path(&d.digest),
                progress,
            )?;
        }
        if written.insert(*mdigest) {
            append(
                b,
                &blob_path(mdigest),
                mbytes.len() as u64,
                &mut &mbytes[..],
            )?;
        }
        progress(CopyEvent::Manifest { digest: *mdigest });
        Ok(())
    };
    if media::is_index(&media_type) {
        let idx = Index::parse(&bytes)
            .map_err(|e| ImageError::Invalid(format!("index {digest}: {e}")))?;
        for child in &idx.manifests {
            if !media::is_manifest(&child.media_type) {
                continue;
            }
            let (cb, _, cd) =
                src.get_manifest_at(repo, &child.digest.to_string(), Some(&child.digest))?;
            image(b, &cb, &cd)?;
        }
        append(
            b,
            &blob_path(&digest),
            bytes.len() as u64,
            &mut bytes.as_slice(),
        )?;
    } else if media::is_manifest(&media_type) {
        image(b, &bytes, &digest)?;
    } else {
        return Err(ImageError::Invalid(format!(
            "{src_ref}: manifest media type {media_type:?} is not an image manifest or index"
        )));
    }
    let mut top = descriptor(&media_type, digest, bytes.len() as u64);
    if let Some(r) = reference {
        top.annotations = Some(
            [(
                "org.opencontainers.image.ref.name".to_string(),
                r.to_string(),
            )]
            .into_iter()
            .collect(),
        );
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.to_string()),
        manifests: vec![top],
        annotations: None,
    };
    let ib = serde_json::to_vec(&index).map_err(|e| ImageError::Invalid(e.to_string()))?;
    append(b, "index.json", ib.len() as u64, &mut ib.as_slice())?;
    Ok(digest)
}

fn write_docker(
    src: &RegistryClient,
    src_ref: &Reference,
    reference: Option<&str>,
    b: &mut Builder<'_>,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let repo = src_ref.path();
    let (top_bytes, top_type, top_digest) = src.get_manifest(src_ref)?;
    let (bytes, mdigest) = if media::is_index(&top_type) {
        let want = host_platform();
        let idx = Index::parse(&top_bytes)
            .map_err(|e| ImageError::Invalid(format!("index {top_digest}: {e}")))?;
        let chosen = idx
            .manifests
            .iter()
            .find(|m| {
                media::is_manifest(&m.media_type)
                    && m.platform.as_ref().is_some_and(|p| platform_matches(p, &want))
            })
            .ok_or_else(|| {
                ImageError::NotFound(format!(
                    "{src_ref}: index {top_digest} has no manifest for {}/{} (a docker archive holds one platform)",
                    want.os, want.architecture
                ))
            })?;
        let (cb, _, cd) =
            src.get_manifest_at(repo, &chosen.digest.to_string(), Some(&chosen.digest))?;
        (cb, cd)
    } else {
        (top_bytes, top_digest)
    };
    let m = Manifest::parse(&bytes)
        .map_err(|e| ImageError::Invalid(format!("manifest {mdigest}: {e}")))?;
    // Config: small, verified.
    let config_bytes = {
        let (resp, _) = src.get_blob(repo, &m.config.digest)?;
        let mut v = Vec::new();
        Verified::new(
            Box::new(resp.take(m.config.size.min(MAX_JSON_BYTES))),
            m.config.digest,
        )
        .read_to_end(&mut v)
        .map_err(|e| ImageError::Invalid(format!("config {}: {e}", m.config.digest)))?;
        v
    };
    let config = ImageConfig::parse(&config_bytes)
        .map_err(|e| ImageError::Invalid(format!("config {}: {e}", m.config.digest)))?;
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(ImageError::Invalid(format!(
            "manifest {mdigest}: {} layers but the config lists {} diff_ids",
            m.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let dir = spool_dir()?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let mut layer_paths = Vec::new();
    for (i, (l, diff_id)) in m.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let (resp, _) = src.get_blob(repo, &l.digest)?;
        let mut verified = Verified::new(Box::new(resp.take(l.size)), l.digest);
        let mut head = [0u8; 512];
        let n = read_head(&mut verified, &mut head)?;
        let c = sniff(&head[..n]).unwrap_or(Compression::None);
        let chained: Box<dyn Read + Send> =
            Box::new(io::Cursor::new(head[..n].to_vec()).chain(verified));
        let mut plain = decompressor(chained, c)?;
        let spooled = dir.join(format!("{i}"));
        let mut out = File::create(&spooled)
            .map_err(|e| ImageError::io(format!("create {}", spooled.display()), e))?;
        let mut h = Sha256Writer::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let k = plain
                .read(&mut buf)
                .map_err(|e| ImageError::io(format!("fetch layer {}", l.digest), e))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            out.write_all(&buf[..k])
                .map_err(|e| ImageError::io(format!("write {}", spooled.display()), e))?;
            size += k as u64;
        }
        drop(plain);
        let got = h.finish();
        if got != *diff_id {
            return Err(ImageError::Invalid(format!(
                "layer {} ({}): uncompressed digest {got}, the config says {diff_id}",
                i + 1,
                l.digest
            )));
        }
        let dirname = diff_id.hex();
        let path = format!("{dirname}/layer.tar");
        if !layer_paths.contains(&path) {
            append_dir(b, &format!("{dirname}/"))?;
            append(b, &format!("{dirname}/VERSION"), 3, &mut &b"1.0"[..])?;
            let mut f = File::open(&spooled)
                .map_err(|e| ImageError::io(format!("open {}", spooled.display()), e))?;
            append(b, &path, size, &mut f)?;
        }
        let _ = std::fs::remove_file(&spooled);
        progress(CopyEvent::Copied {
            digest: l.digest,
            size: l.size,
        });
        layer_paths.push(path);
    }
    let config_name = format!("{}.json", m.config.digest.hex());
    append(
        b,
        &config_name,
        config_bytes.len() as u64,
        &mut config_bytes.as_slice(),
    )?;
    let tag = reference
        .map(str::to_string)
        .or_else(|| src_ref.familiar_tagged());
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": tag.map(|t| vec![t]),
        "Layers": layer_paths,
    }]);
    let mb = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;
    append(b, "manifest.json", mb.len() as u64, &mut mb.as_slice())?;
    progress(CopyEvent::Manifest { digest: mdigest });
    Ok(mdigest)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies an image from a registry into an archive (written whole, then renamed into
/// place); returns the digest of the manifest (or index) the archive's top entry names.
pub fn copy_to_archive(
    src: &RegistryClient,
    src_ref: &Reference,
    dst: &Endpoint,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let (path, reference, docker) = dst.archive("copy_to_archive: the destination")?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _cleanup = RemoveFileOnDrop(tmp.clone());
    let file =
        File::create(&tmp).map_err(|e| ImageError::io(format!("create {}", tmp.display()), e))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let digest = {
        let w: &mut dyn Write = &mut out;
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        let d = if docker {
            write_docker(src, src_ref, reference.as_deref(), &mut b, progress)?
        } else {
            write_oci(src, src_ref, reference.as_deref(), &mut b, progress)?
        };
        b.finish()
            .map_err(|e| ImageError::io("finish archive", e))?;
        d
    };
    let file = out
        .into_inner()
        .map_err(|e| ImageError::io(format!("write {}", tmp.display()), e.into_error()))?;
    file.sync_all()
        .map_err(|e| ImageError::io(format!("sync {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| ImageError::io(format!("rename to {}", path.display()), e))?;
    info!(source = %src_ref, destination = %path.display(), %digest, "image copied to archive");
    Ok(digest)
}

struct RemoveFileOnDrop(PathBuf);

impl Drop for RemoveFileOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_skopeo() {
        assert_eq!(
            Endpoint::parse("docker-archive:/tmp/a.tar:app:1").expect("parse"),
            Endpoint::DockerArchive {
                path: "/tmp/a.tar".into(),
                reference: Some("app:1".into())
            }
        );
        assert_eq!(
            Endpoint::parse("oci-archive:out.tar").expect("parse"),
            Endpoint::OciArchive {
                path: "out.tar".into(),
                reference: None
            }
        );
        assert!(matches!(
            Endpoint::parse("docker://127.0.0.1:5000/team/app:1").expect("parse"),
            Endpoint::Registry(_)
        ));
        assert!(Endpoint::parse("oci:dir").is_err());
        assert_eq!(normalize("./a/../b/./c"), "b/c");
    }
}
