//! Writing images out: `docker save` archives (Docker's legacy layout, which every
//! version of Docker, skopeo and podman reads) and OCI image layout archives.
//! Blobs are streamed from the content store; layer bytes are verified as they go out.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};

use berth_store::{ImageRecord, Store};
use berth_types::{media, Digest, Reference, Sha256Writer};
use serde_json::json;

use crate::error::{ImageError, Result};
use crate::layer::{sniff, Compression};
use crate::model::{Descriptor, Index, Manifest, MAX_JSON_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`'s layout: `manifest.json`, `<config>.json`, `<layer>/layer.tar`.
    Docker,
    /// OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/…`.
    Oci,
}

/// An image to save with the tags to record for it.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: ImageRecord,
    pub tags: Vec<Reference>,
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append(
    b: &mut tar::Builder<&mut dyn Write>,
    path: &str,
    size: u64,
    data: &mut dyn Read,
) -> Result<()> {
    let mut h = header(size, 0o644);
    b.append_data(&mut h, path, data)
        .map_err(|e| ImageError::io(format!("write archive member {path}"), e))
}

fn append_dir(b: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut h = header(0, 0o755);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, io::empty())
        .map_err(|e| ImageError::io(format!("write archive member {path}"), e))
}

/// Reads a blob while checking it still has its digest; fails at the end otherwise.
struct Verified<R> {
    inner: R,
    hasher: Sha256Writer,
    want: Digest,
    what: String,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            let got = self.hasher.clone().finish();
            if got != self.want {
                return Err(io::Error::other(format!(
                    "{}: stored content has digest {got}, expected {} (store corrupted?)",
                    self.what, self.want
                )));
            }
        }
        Ok(n)
    }
}

fn compression_of(store: &Store, digest: &Digest) -> Result<Compression> {
    let mut f = store.content.open_blob(digest)?;
    let mut head = vec![0u8; 512];
    let n = f
        .read(&mut head)
        .map_err(|e| ImageError::io(format!("read blob {digest}"), e))?;
    head.truncate(n);
    sniff(&head).ok_or_else(|| ImageError::Invalid(format!("blob {digest} is not a layer")))
}

/// Writes the images as one archive.
pub fn save_archive(
    store: &Store,
    items: &[SaveItem],
    format: SaveFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    match format {
        SaveFormat::Docker => save_docker(store, items, &mut b)?,
        SaveFormat::Oci => save_oci(store, items, &mut b)?,
    }
    b.finish()
        .map_err(|e| ImageError::io("finish archive", e))?;
    Ok(())
}

fn save_docker(
    store: &Store,
    items: &[SaveItem],
    b: &mut tar::Builder<&mut dyn Write>,
) -> Result<()> {
    let mut written: HashSet<Digest> = HashSet::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in items {
        let img = &item.image;
        let config_name = format!("{}.json", img.id.hex());
        let mut layer_paths = Vec::new();
        for l in &img.layers {
            let dir = l.diff_id.hex();
            let path = format!("{dir}/layer.tar");
            layer_paths.push(path.clone());
            if !written.insert(l.diff_id) {
                continue;
            }
            append_dir(b, &format!("{dir}/"))?;
            append(b, &format!("{dir}/VERSION"), 3, &mut &b"1.0"[..])?;
            let c = compression_of(store, &l.blob.digest)?;
            let blob = store.content.open_blob(&l.blob.digest)?;
            let what = format!("image {} layer {}", img.id, l.diff_id);
            if c == Compression::None {
                let size = store.content.size(&l.blob.digest)?;
                let mut r = Verified {
                    inner: blob,
                    hasher: Sha256Writer::new(),
                    want: l.diff_id,
                    what,
                };
                append(b, &path, size, &mut r)?;
            } else {
                let size = store
                    .meta
                    .snapshot(&l.diff_id)?
                    .map(|s| s.tar_size)
                    .ok_or_else(|| {
                        ImageError::NotFound(format!("{what}: uncompressed size unknown"))
                    })?;
                let dec: Box<dyn Read> = match c {
                    Compression::Gzip => {
                        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(blob)))
                    }
                    _ => Box::new(
                        zstd::stream::read::Decoder::new(blob)
                            .map_err(|e| ImageError::io("zstd", e))?,
                    ),
                };
                let mut r = Verified {
                    inner: dec,
                    hasher: Sha256Writer::new(),
                    want: l.diff_id,
                    what,
                };
                append(b, &path, size, &mut r)?;
            }
        }
        let config = store
            .content
            .read_blob(&img.config.digest, MAX_JSON_BYTES)?;
        if written.insert(img.config.digest) {
            append(b, &config_name, config.len() as u64, &mut config.as_slice())?;
        }
        let tags: Vec<String> = item
            .tags
            .iter()
            .filter_map(|t| t.familiar_tagged())
            .collect();
        for t in &item.tags {
            if let (Some(tag), Some(top)) = (t.tag(), img.layers.last()) {
                repositories
                    .entry(t.familiar_repository())
                    .or_default()
                    .insert(tag.to_string(), top.diff_id.hex());
            }
        }
        manifest.push(json!({"Config": config_name, "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { json!(tags) }, "Layers": layer_paths}));
    }
    let m = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;
    append(b, "manifest.json", m.len() as u64, &mut m.as_slice())?;
    if !repositories.is_empty() {
        let r =
            serde_json::to_vec(&repositories).map_err(|e| ImageError::Invalid(e.to_string()))?;
        append(b, "repositories", r.len() as u64, &mut r.as_slice())?;
    }
    Ok(())
}

/// The manifest of an image: the stored one, or one made for it (OCI media types).
pub(crate) fn manifest_of(store: &Store, img: &ImageRecord) -> Result<(Vec<u8>, String)> {
    if let Some(m) = &img.manifest {
        return Ok((
            store.content.read_blob(&m.digest, MAX_JSON_BYTES)?,
            m.media_type.clone(),
        ));
    }
    let mut layers = Vec::new();
    for l in &img.layers {
        let mt = match l.blob.media_type.as_str() {
            media::DOCKER_LAYER => media::OCI_LAYER,
            media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
            other => other,
        };
        layers.push(Descriptor {
            media_type: mt.to_string(),
            digest: l.blob.digest,
            size: l.blob.size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        });
    }
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: media::OCI_CONFIG.to_string(),
            digest: img.config.digest,
            size: img.config.size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| ImageError::Invalid(e.to_string()))?;
    Ok((bytes, media::OCI_MANIFEST.to_string()))
}

fn put_blob(
    store: &Store,
    written: &mut HashSet<Digest>,
    b: &mut tar::Builder<&mut dyn Write>,
    d: &Digest,
    what: &str,
) -> Result<()> {
    if !written.insert(*d) {
        return Ok(());
    }
    let size = store.content.size(d)?;
    let f = store.content.open_blob(d)?;
    let mut r = Verified {
        inner: f,
        hasher: Sha256Writer::new(),
        want: *d,
        what: what.to_string(),
    };
    append(b, &format!("blobs/sha256/{}", d.hex()), size, &mut r)
}

fn save_oci(store: &Store, items: &[SaveItem], b: &mut tar::Builder<&mut dyn Write>) -> Result<()> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(b, "oci-layout", layout.len() as u64, &mut &layout[..])?;
    append_dir(b, "blobs/")?;
    append_dir(b, "blobs/sha256/")?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: None,
    };
    for item in items {
        let img = &item.image;
        let what = format!("image {}", img.id);
        put_blob(store, &mut written, b, &img.config.digest, &what)?;
        for l in &img.layers {
            put_blob(store, &mut written, b, &l.blob.digest, &what)?;
        }
        let (mbytes, mtype) = manifest_of(store, img)?;
        let mdigest = Digest::of(&mbytes);
        if written.insert(mdigest) {
            append(
                b,
                &format!("blobs/sha256/{}", mdigest.hex()),
                mbytes.len() as u64,
                &mut mbytes.as_slice(),
            )?;
        }
        let mut top = Descriptor {
            media_type: mtype,
            digest: mdigest,
            size: mbytes.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        // Keep the original index when every blob it names came along.
        if let Some(idx) = &img.index {
            let extras_ok = store
                .content
                .read_blob(&idx.digest, MAX_JSON_BYTES)
                .ok()
                .and_then(|bytes| {
                    let parsed = Index::parse(&bytes).ok()?;
                    parsed
                        .manifests
                        .iter()
                        .all(|m| store.content.exists(&m.digest))
                        .then_some(())
                });
            if extras_ok.is_some() {
                for e in &img.extra_blobs {
                    put_blob(store, &mut written, b, &e.digest, &what)?;
                }
                put_blob(store, &mut written, b, &idx.digest, &what)?;
                top = Descriptor {
                    media_type: idx.media_type.clone(),
                    digest: idx.digest,
                    size: idx.size,
                    ..top
                };
            }
        }
        if item.tags.is_empty() {
            index.manifests.push(top);
        } else {
            for t in &item.tags {
                let mut ann = BTreeMap::new();
                ann.insert("io.containerd.image.name".to_string(), t.to_string());
                if let Some(f) = t.familiar_tagged() {
                    ann.insert("org.opencontainers.image.ref.name".to_string(), f);
                }
                index.manifests.push(Descriptor {
                    annotations: Some(ann),
                    ..top.clone()
                });
            }
        }
    }
    let bytes = serde_json::to_vec(&index).map_err(|e| ImageError::Invalid(e.to_string()))?;
    append(b, "index.json", bytes.len() as u64, &mut bytes.as_slice())?;
    Ok(())
}
