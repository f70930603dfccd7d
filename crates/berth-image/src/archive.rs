//! Loading `docker save` archives and OCI image layout archives.
//!
//! The archive is read once, as a stream: entries can come in any order (Docker writes
//! `manifest.json` last), so every file that looks like a layer is ingested the moment it
//! passes (blob written, digest computed, unpacked into staging) and every small file is
//! kept in memory. Only then are the manifests read and every digest checked against
//! them. If all images of the archive check out, everything is synced with one `syncfs`,
//! published under a lease and recorded in one metadata transaction per image; if any
//! check fails, nothing is published and the staged files are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufReader, Read};

use berth_store::{BlobRef, ImageRecord, LayerRecord, PendingBlob, Store};
use berth_types::{media, Digest, Reference};
use tracing::{debug, warn};

use crate::commit::{commit_images, StagedSnapshot};
use crate::error::{ImageError, Result};
use crate::layer::{
    ingest_layer, sniff, Compression, IngestOptions, IngestedLayer, LayerError, ProgressRead,
};
use crate::model::{
    host_platform, platform_matches, Descriptor, DockerSaveEntry, ImageConfig, Index, Manifest,
    MAX_JSON_BYTES,
};
use crate::unpack::UnpackOptions;

/// Limits and policy for loading.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub unpack: UnpackOptions,
    /// Refuse compressed layers expanding more than this many times (past 1 GiB); 0: no check.
    pub max_compression_ratio: u64,
    /// Asked for every name an archive gives an image before anything is published; an
    /// `Err` (the rule broken) refuses the whole archive.
    pub admit: Option<NameCheck>,
}

/// A check of an image name against the daemon's policy.
#[derive(Clone)]
pub struct NameCheck(pub std::sync::Arc<NameCheckFn>);

/// Whether a name may be stored: `Err` carries the rule it breaks.
pub type NameCheckFn = dyn Fn(&Reference) -> std::result::Result<(), String> + Send + Sync;

impl std::fmt::Debug for NameCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCheck")
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            unpack: UnpackOptions::default(),
            max_compression_ratio: 1000,
            admit: None,
        }
    }
}

impl LoadOptions {
    /// The options of the layer ingest these load options imply.
    pub fn ingest(&self) -> IngestOptions {
        IngestOptions {
            unpack: self.unpack.clone(),
            max_compression_ratio: self.max_compression_ratio,
        }
    }
}

/// Progress of a load, for progress bars.
#[derive(Debug, Clone)]
pub enum LoadEvent {
    /// Bytes of one archive member read so far.
    File {
        name: String,
        current: u64,
        total: u64,
    },
    /// A layer finished unpacking.
    LayerDone { name: String, diff_id: Digest },
}

/// An image the archive held, now stored.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    pub tags: Vec<Reference>,
}

/// A member of the archive after it streamed past.
enum Staged {
    /// A small file that is not a layer, in memory.
    Small(Vec<u8>),
    /// A layer, ingested.
    Layer(Box<IngestedLayer>),
    /// A large file that is not a layer, written as a blob.
    Blob(PendingBlob),
    /// Looked like a layer but could not be ingested.
    Failed(String),
    /// An OCI blob berth already stores (with its snapshot, if it is a layer).
    Present(Digest),
}

/// Cleans an archive member path: no leading `./` or `/`, no `.` components; `None` if
/// it climbs above the archive root.
fn clean_member(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn read_head(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = r.read(&mut head[got..])?;
        if k == 0 {
            break;
        }
        got += k;
    }
    head.truncate(got);
    Ok(head)
}

/// Loads every image of a `docker save` or OCI layout archive (optionally gzip- or
/// zstd-compressed) into the store. All images are stored, or none.
pub fn load_archive(
    store: &Store,
    input: &mut dyn Read,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<Vec<LoadedImage>> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = read_head(&mut input, 4).map_err(|e| ImageError::io("read archive", e))?;
    let chained = io::Cursor::new(head.clone()).chain(input);
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(chained))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::new(chained)
                .map_err(|e| ImageError::io("read archive", e))?,
        )
    } else {
        Box::new(chained)
    };
    let started = std::time::Instant::now();
    // Overlap the disk's writeback with the stream; the one syncfs at the end stays short.
    let writeback = store.background_writeback();
    let lease = store.leases.acquire();
    let known_layers = known_layer_blobs(store)?;
    let mut files: HashMap<String, Staged> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| ImageError::Invalid(format!("archive is not a tar file: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| ImageError::Invalid(format!("archive is not a valid tar file: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = clean_member(&raw) else {
            warn!(member = %raw, "archive member climbs above the archive root; ignored");
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            // Docker writes repeated layers as `ID/layer.tar -> ../OTHER/layer.tar`.
            let base = if kind.is_symlink() {
                name.rsplit_once('/')
                    .map(|(d, _)| format!("{d}/"))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            if let Some(t) = clean_member(&format!("{base}{target}")) {
                links.insert(name, t);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let total = entry.size();
        let mut pr = ProgressRead::new(&mut entry, 4 << 20, |current| {
            progress(LoadEvent::File {
                name: name.clone(),
                current,
                total,
            })
        });
        let head = read_head(&mut pr, 512)
            .map_err(|e| ImageError::io(format!("read archive member {name}"), e))?;
        let named_digest = name
            .strip_prefix("blobs/sha256/")
            .and_then(|h| Digest::from_hex(h).ok());
        if let Some(d) = named_digest {
            if let Some(diff_id) = known_layers.get(&d) {
                lease.add_blob(d);
                lease.add_snapshot(*diff_id);
                if store.content.exists(&d) && store.snapshots.exists(diff_id) {
                    debug!(blob = %d, "layer already stored; skipping its bytes");
                    files.insert(name, Staged::Present(d));
                    continue;
                }
            }
        }
        let staged = match sniff(&head) {
            Some(compression) => {
                match ingest_layer(store, &head, &mut pr, compression, false, &opts.ingest()) {
                    Ok(layer) => {
                        progress(LoadEvent::LayerDone {
                            name: name.clone(),
                            diff_id: layer.diff_id,
                        });
                        Staged::Layer(Box::new(layer))
                    }
                    Err(e) if e.is_no_space() => {
                        return Err(ImageError::NoSpace(format!("archive member {name}: {e}")))
                    }
                    Err(LayerError::Io(e)) => {
                        return Err(ImageError::io(format!("read archive member {name}"), e))
                    }
                    Err(e) => Staged::Failed(e.to_string()),
                }
            }
            None if total <= MAX_JSON_BYTES => {
                let mut bytes = head;
                pr.read_to_end(&mut bytes)
                    .map_err(|e| ImageError::io(format!("read archive member {name}"), e))?;
                Staged::Small(bytes)
            }
            None => {
                let mut w = store.content.writer()?;
                io::Write::write_all(&mut w, &head).map_err(|e| ImageError::io("write blob", e))?;
                io::copy(&mut pr, &mut w)
                    .map_err(|e| ImageError::io(format!("read archive member {name}"), e))?;
                Staged::Blob(w.finish(None)?)
            }
        };
        files.insert(name, staged);
    }
    let mut archive = Archive {
        files,
        links,
        store,
        lease: &lease,
    };
    let plans = if archive.files.contains_key("oci-layout")
        && archive.files.contains_key("index.json")
    {
        archive.plan_oci()?
    } else if archive.files.contains_key("manifest.json") {
        archive.plan_docker()?
    } else {
        return Err(ImageError::Invalid(
            "archive has neither manifest.json (docker save) nor oci-layout and index.json (OCI image layout)"
                .into(),
        ));
    };
    if plans.is_empty() {
        return Err(ImageError::Invalid("archive holds no image".into()));
    }
    if let Some(check) = &opts.admit {
        for t in plans.iter().flat_map(|p| &p.tags) {
            (check.0)(t).map_err(ImageError::Forbidden)?;
        }
    }
    let streamed_ms = started.elapsed().as_millis() as u64;
    drop(writeback);
    let out = archive.commit(plans)?;
    tracing::info!(
        images = out.len(),
        streamed_ms,
        duration_ms = started.elapsed().as_millis() as u64,
        "archive loaded"
    );
    Ok(out)
}

/// Blob digest -> diff_id of every layer of every stored image.
fn known_layer_blobs(store: &Store) -> Result<HashMap<Digest, Digest>> {
    let mut m = HashMap::new();
    for img in store.meta.images()? {
        for l in img.layers {
            m.insert(l.blob.digest, l.diff_id);
        }
    }
    Ok(m)
}

/// One image of the archive, checked and ready to commit.
struct Plan {
    config: Vec<u8>,
    config_digest: Digest,
    config_media_type: String,
    manifest: Option<(Vec<u8>, String)>,
    index: Option<(Vec<u8>, String)>,
    extra: Vec<String>,
    /// Archive member and its descriptor-level facts, bottom layer first.
    layers: Vec<PlannedLayer>,
    tags: Vec<Reference>,
    source: &'static str,
}

struct PlannedLayer {
    member: String,
    media_type: String,
    diff_id: Digest,
}

struct Archive<'a> {
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
    store: &'a Store,
    lease: &'a berth_store::Lease,
}

impl Archive<'_> {
    fn resolve(&self, member: &str) -> Option<String> {
        let mut name = clean_member(member)?;
        for _ in 0..16 {
            if self.files.contains_key(&name) {
                return Some(name);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn small(&self, member: &str, what: &str) -> Result<&[u8]> {
        let name = self.resolve(member).ok_or_else(|| {
            ImageError::Invalid(format!("{what}: file {member} is not in the archive"))
        })?;
        match self.files.get(&name) {
            Some(Staged::Small(b)) => Ok(b),
            Some(Staged::Present(d)) => Err(ImageError::Invalid(format!(
                "{what}: file {member} (blob {d}) is a layer of a stored image, not JSON"
            ))),
            _ => Err(ImageError::Invalid(format!(
                "{what}: file {member} is not a JSON document of at most {MAX_JSON_BYTES} bytes"
            ))),
        }
    }

    /// Digest of a staged member as it came in the archive.
    fn digest_of(&self, name: &str) -> Option<Digest> {
        match self.files.get(name)? {
            Staged::Small(b) => Some(Digest::of(b)),
            Staged::Layer(l) => Some(l.blob.digest()),
            Staged::Blob(b) => Some(b.digest()),
            Staged::Present(d) => Some(*d),
            Staged::Failed(_) => None,
        }
    }

    /// Checks the layers of an image against its config; returns their plans.
    fn check_layers(
        &self,
        image: &str,
        config: &ImageConfig,
        members: &[(String, Option<&Descriptor>)],
    ) -> Result<Vec<PlannedLayer>> {
        if config.rootfs.diff_ids.len() != members.len() {
            return Err(ImageError::Invalid(format!(
                "image {image}: config lists {} diff_ids but the manifest has {} layers",
                config.rootfs.diff_ids.len(),
                members.len()
            )));
        }
        let mut out = Vec::new();
        for (i, ((member, desc), want)) in members.iter().zip(&config.rootfs.diff_ids).enumerate() {
            let n = i + 1;
            let name = self.resolve(member).ok_or_else(|| {
                ImageError::Invalid(format!(
                    "image {image} layer {n}: file {member} is not in the archive"
                ))
            })?;
            if let Some(d) = desc {
                if !media::is_layer(&d.media_type) {
                    return Err(ImageError::Invalid(format!(
                        "image {image} layer {n} ({}): media type {:?} is not a layer type berth can unpack",
                        d.digest, d.media_type
                    )));
                }
            }
            let (blob_digest, diff_id, compression) = match self.files.get(&name) {
                Some(Staged::Layer(l)) => (l.blob.digest(), l.diff_id, Some(l.compression)),
                Some(Staged::Present(d)) => {
                    let rec = self
                        .store
                        .meta
                        .images()?
                        .into_iter()
                        .flat_map(|i| i.layers)
                        .find(|l| l.blob.digest == *d);
                    match rec {
                        Some(l) => (*d, l.diff_id, None),
                        None => {
                            return Err(ImageError::Invalid(format!(
                                "image {image} layer {n} ({member}): stored blob {d} is no longer a layer"
                            )))
                        }
                    }
                }
                Some(Staged::Failed(e)) => {
                    return Err(ImageError::Invalid(format!(
                        "image {image} layer {n} ({member}): {e}"
                    )))
                }
                _ => {
                    return Err(ImageError::Invalid(format!(
                    "image {image} layer {n} ({member}): not a tar archive (plain, gzip or zstd)"
                )))
                }
            };
            if let Some(d) = desc {
                if d.digest != blob_digest {
                    return Err(ImageError::Invalid(format!(
                        "image {image} layer {n} ({member}): content has digest {blob_digest} but the manifest says {}",
                        d.digest
                    )));
                }
            }
            if diff_id != *want {
                return Err(ImageError::Invalid(format!(
                    "image {image} layer {n} ({member}): uncompressed content has diff_id {diff_id} but the config says {want}"
                )));
            }
            let media_type = match (desc, compression) {
                (Some(d), _) => d.media_type.clone(),
                (None, Some(c)) => c.docker_media_type().to_string(),
                (None, None) => Compression::None.docker_media_type().to_string(),
            };
            out.push(PlannedLayer {
                member: name,
                media_type,
                diff_id,
            });
        }
        Ok(out)
    }

    fn plan_docker(&mut self) -> Result<Vec<Plan>> {
        let bytes = self.small("manifest.json", "docker save archive")?;
        let entries: Vec<DockerSaveEntry> = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Invalid(format!("docker save archive: manifest.json: {e}")))?;
        let mut plans = Vec::new();
        for entry in entries {
            let config_bytes = self.small(&entry.config, "docker save archive")?.to_vec();
            let config_digest = Digest::of(&config_bytes);
            let mut tags = Vec::new();
            for t in entry.repo_tags.iter().flatten() {
                let r = Reference::parse(t).map_err(|e| {
                    ImageError::Invalid(format!("image {config_digest}: RepoTags entry {t:?}: {e}"))
                })?;
                if r.tag().is_none() {
                    return Err(ImageError::Invalid(format!(
                        "image {config_digest}: RepoTags entry {t:?} has no tag"
                    )));
                }
                tags.push(r);
            }
            let image = tags
                .first()
                .map(|t| t.familiar())
                .unwrap_or_else(|| config_digest.to_string());
            if let Some(hex) = entry.config.trim_end_matches(".json").rsplit('/').next() {
                if let Ok(named) = Digest::from_hex(hex) {
                    if named != config_digest {
                        return Err(ImageError::Invalid(format!(
                            "image {image}: config file {} has digest {config_digest}, not the one its name says",
                            entry.config
                        )));
                    }
                }
            }
            let config = ImageConfig::parse(&config_bytes).map_err(|e| {
                ImageError::Invalid(format!("image {image}: config {}: {e}", entry.config))
            })?;
            let members: Vec<(String, Option<&Descriptor>)> =
                entry.layers.iter().map(|l| (l.clone(), None)).collect();
            let layers = self.check_layers(&image, &config, &members)?;
            plans.push(Plan {
                config: config_bytes,
                config_digest,
                config_media_type: media::DOCKER_CONFIG.to_string(),
                manifest: None,
                index: None,
                extra: Vec::new(),
                layers,
                tags,
                source: "docker-archive",
            });
        }
        Ok(plans)
    }

    fn blob_member(&self, d: &Descriptor, what: &str) -> Result<String> {
        let name = format!("blobs/sha256/{}", d.digest.hex());
        if !self.files.contains_key(&name) {
            return Err(ImageError::Invalid(format!(
                "{what}: blob {} is not in the archive",
                d.digest
            )));
        }
        match self.digest_of(&name) {
            Some(got) if got == d.digest => Ok(name),
            Some(got) => Err(ImageError::Invalid(format!(
                "{what}: blob {} has content digest {got}",
                d.digest
            ))),
            None => Err(ImageError::Invalid(format!(
                "{what}: blob {} could not be read",
                d.digest
            ))),
        }
    }

    fn plan_oci(&mut self) -> Result<Vec<Plan>> {
        let layout: serde_json::Value =
            serde_json::from_slice(self.small("oci-layout", "OCI layout")?)
                .map_err(|e| ImageError::Invalid(format!("OCI layout: oci-layout: {e}")))?;
        if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(ImageError::Invalid(
                "OCI layout: oci-layout: imageLayoutVersion must be \"1.0.0\"".into(),
            ));
        }
        let index = Index::parse(self.small("index.json", "OCI layout")?)
            .map_err(|e| ImageError::Invalid(format!("OCI layout: index.json: {e}")))?;
        let host = host_platform();
        let mut plans: Vec<Plan> = Vec::new();
        for top in &index.manifests {
            let name = ref_name(top);
            let what = name
                .as_ref()
                .map(|r| r.familiar())
                .unwrap_or_else(|| top.digest.to_string());
            if let Some(p) = &top.platform {
                if !platform_matches(p, &host) {
                    debug!(image = %what, "skipping manifest for another platform");
                    continue;
                }
            }
            let (manifest_desc, index_blob, extra) = if media::is_index(&top.media_type) {
                let member = self.blob_member(top, &format!("image {what} index"))?;
                let idx_bytes = self
                    .small(&member, &format!("image {what} index"))?
                    .to_vec();
                let idx = Index::parse(&idx_bytes).map_err(|e| {
                    ImageError::Invalid(format!("image {what}: index {}: {e}", top.digest))
                })?;
                let chosen = idx
                    .manifests
                    .iter()
                    .find(|m| {
                        m.platform
                            .as_ref()
                            .is_some_and(|p| platform_matches(p, &host))
                            && media::is_manifest(&m.media_type)
                    })
                    .or_else(|| {
                        idx.manifests
                            .iter()
                            .find(|m| m.platform.is_none() && media::is_manifest(&m.media_type))
                    })
                    .ok_or_else(|| {
                        ImageError::Invalid(format!(
                            "image {what}: index {} has no manifest for {}/{}",
                            top.digest, host.os, host.architecture
                        ))
                    })?
                    .clone();
                let extra = self.reachable_extras(&idx, &chosen);
                (chosen, Some((idx_bytes, top.media_type.clone())), extra)
            } else if media::is_manifest(&top.media_type) {
                (top.clone(), None, Vec::new())
            } else {
                debug!(image = %what, media_type = %top.media_type, "skipping non-image entry of index.json");
                continue;
            };
            let member = self.blob_member(&manifest_desc, &format!("image {what} manifest"))?;
            let m_bytes = self
                .small(&member, &format!("image {what} manifest"))?
                .to_vec();
            let manifest = Manifest::parse(&m_bytes).map_err(|e| {
                ImageError::Invalid(format!(
                    "image {what}: manifest {}: {e}",
                    manifest_desc.digest
                ))
            })?;
            let cmember = self.blob_member(&manifest.config, &format!("image {what} config"))?;
            let config_bytes = self
                .small(&cmember, &format!("image {what} config"))?
                .to_vec();
            let config = ImageConfig::parse(&config_bytes).map_err(|e| {
                ImageError::Invalid(format!(
                    "image {what}: config {}: {e}",
                    manifest.config.digest
                ))
            })?;
            let members: Vec<(String, Option<&Descriptor>)> = manifest
                .layers
                .iter()
                .map(|l| (format!("blobs/sha256/{}", l.digest.hex()), Some(l)))
                .collect();
            let layers = self.check_layers(&what, &config, &members)?;
            let config_digest = manifest.config.digest;
            if let Some(existing) = plans.iter_mut().find(|p| p.config_digest == config_digest) {
                existing.tags.extend(name);
                continue;
            }
            plans.push(Plan {
                config: config_bytes,
                config_digest,
                config_media_type: manifest.config.media_type.clone(),
                manifest: Some((m_bytes, manifest_desc.media_type.clone())),
                index: index_blob,
                extra,
                layers,
                tags: name.into_iter().collect(),
                source: "oci-archive",
            });
        }
        Ok(plans)
    }

    /// Members of the archive reachable from an index other than through `chosen`.
    fn reachable_extras(&self, idx: &Index, chosen: &Descriptor) -> Vec<String> {
        let mut out = Vec::new();
        for m in idx.manifests.iter().filter(|m| m.digest != chosen.digest) {
            let name = format!("blobs/sha256/{}", m.digest.hex());
            if self.digest_of(&name) != Some(m.digest) {
                continue;
            }
            out.push(name.clone());
            if let Some(Staged::Small(b)) = self.files.get(&name) {
                if let Ok(man) = Manifest::parse(b) {
                    for d in std::iter::once(&man.config).chain(man.layers.iter()) {
                        let n = format!("blobs/sha256/{}", d.digest.hex());
                        if self.digest_of(&n) == Some(d.digest) {
                            out.push(n);
                        }
                    }
                }
            }
        }
        out
    }

    /// Takes a member out as a pending blob (writing small ones to ingest first).
    fn take_blob(&mut self, member: &str) -> Result<Option<(PendingBlob, Option<StagedSnapshot>)>> {
        match self.files.remove(member) {
            Some(Staged::Small(b)) => {
                let mut w = self.store.content.writer()?;
                io::Write::write_all(&mut w, &b).map_err(|e| ImageError::io("write blob", e))?;
                Ok(Some((w.finish(None)?, None)))
            }
            Some(Staged::Blob(p)) => Ok(Some((p, None))),
            Some(Staged::Layer(l)) => {
                let l = *l;
                let rest = StagedSnapshot {
                    diff_id: l.diff_id,
                    tar_size: l.tar_size,
                    snapshot: l.snapshot,
                    stats: l.stats,
                };
                Ok(Some((l.blob, Some(rest))))
            }
            Some(other) => {
                self.files.insert(member.to_string(), other);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn commit(mut self, plans: Vec<Plan>) -> Result<Vec<LoadedImage>> {
        let store = self.store;
        let lease = self.lease;
        let mut blobs: Vec<PendingBlob> = Vec::new();
        let mut snapshots: Vec<(Digest, StagedSnapshot)> = Vec::new();
        let mut seen_snap: HashSet<Digest> = HashSet::new();
        // Members already taken, for layers an archive uses more than once.
        let mut taken: HashMap<String, Digest> = HashMap::new();
        let mut records = Vec::new();
        for plan in &plans {
            let mut w = store.content.writer()?;
            io::Write::write_all(&mut w, &plan.config)
                .map_err(|e| ImageError::io("write blob", e))?;
            blobs.push(w.finish(Some(&plan.config_digest))?);
            let mut put_json = |bytes: &[u8], media_type: &str| -> Result<BlobRef> {
                let mut w = store.content.writer()?;
                io::Write::write_all(&mut w, bytes).map_err(|e| ImageError::io("write blob", e))?;
                let p = w.finish(None)?;
                let r = BlobRef {
                    digest: p.digest(),
                    media_type: media_type.to_string(),
                    size: p.size(),
                };
                blobs.push(p);
                Ok(r)
            };
            let manifest = plan
                .manifest
                .as_ref()
                .map(|(b, mt)| put_json(b, mt))
                .transpose()?;
            let index = plan
                .index
                .as_ref()
                .map(|(b, mt)| put_json(b, mt))
                .transpose()?;
            let mut layers = Vec::new();
            for l in &plan.layers {
                let blob_digest = match self.files.get(&l.member) {
                    Some(Staged::Present(d)) => {
                        lease.add_blob(*d);
                        lease.add_snapshot(l.diff_id);
                        *d
                    }
                    _ => match self.take_blob(&l.member)? {
                        Some((blob, rest)) => {
                            let d = blob.digest();
                            taken.insert(l.member.clone(), d);
                            blobs.push(blob);
                            if let Some(rest) = rest {
                                if seen_snap.insert(rest.diff_id) {
                                    snapshots.push((rest.diff_id, rest));
                                }
                            }
                            d
                        }
                        // Taken already: used twice by this image, or by an earlier one.
                        None => *taken.get(&l.member).ok_or_else(|| {
                            ImageError::Invalid(format!("layer {} vanished", l.member))
                        })?,
                    },
                };
                let size = blobs
                    .iter()
                    .find(|b| b.digest() == blob_digest)
                    .map(|b| b.size())
                    .or_else(|| store.content.size(&blob_digest).ok())
                    .unwrap_or(0);
                layers.push((
                    l.member.clone(),
                    LayerRecord {
                        blob: BlobRef {
                            digest: blob_digest,
                            media_type: l.media_type.clone(),
                            size,
                        },
                        diff_id: l.diff_id,
                    },
                ));
            }
            let mut extra_blobs = Vec::new();
            for member in &plan.extra {
                if let Some((blob, _rest)) = self.take_blob(member)? {
                    extra_blobs.push(BlobRef {
                        digest: blob.digest(),
                        media_type: String::new(),
                        size: blob.size(),
                    });
                    blobs.push(blob);
                }
            }
            // Archives carry no registry digests: RepoDigests come from pull and push.
            let repo_digests = Vec::new();
            records.push((
                ImageRecord {
                    id: plan.config_digest,
                    config: BlobRef {
                        digest: plan.config_digest,
                        media_type: plan.config_media_type.clone(),
                        size: plan.config.len() as u64,
                    },
                    manifest,
                    index,
                    layers: layers.iter().map(|(_, l)| l.clone()).collect(),
                    extra_blobs,
                    repo_digests,
                    stored_at: chrono::Utc::now().to_rfc3339(),
                    source: plan.source.to_string(),
                    parent: None,
                },
                layers.into_iter().map(|(m, _)| m).collect::<Vec<String>>(),
                plan.tags.clone(),
            ));
        }
        // Staged layers no image uses are dropped here (their staging dirs removed).
        self.files.clear();
        let snapshots = snapshots.into_iter().map(|(_, s)| s).collect();
        let images = records
            .into_iter()
            .map(|(rec, _, tags)| (rec, tags))
            .collect();
        commit_images(store, lease, blobs, snapshots, images)
    }
}

/// The reference an OCI index entry names: containerd's full-name annotation, or the
/// OCI ref name when it is a whole reference (not just a tag).
fn ref_name(d: &Descriptor) -> Option<Reference> {
    let ann: &BTreeMap<String, String> = d.annotations.as_ref()?;
    if let Some(n) = ann.get("io.containerd.image.name") {
        if let Ok(r) = Reference::parse_with_default_tag(n) {
            return Some(r);
        }
    }
    let n = ann.get("org.opencontainers.image.ref.name")?;
    if n.contains('/') || n.contains(':') {
        Reference::parse_with_default_tag(n)
            .ok()
            .filter(|r| r.tag().is_some())
    } else {
        None
    }
}
