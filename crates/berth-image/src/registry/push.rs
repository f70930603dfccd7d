//! Pushing an image: its blobs exactly as stored (a `HEAD` first skips what the
//! repository has), then its manifest — the stored one, or for images from `docker save`
//! archives the OCI manifest `berth save --format oci` would write — and, when the image
//! keeps a complete index (every platform's manifest, config and layers stored), the
//! index under the tag.

use std::io::{self, Read};

use berth_store::{ImageRecord, Store};
use berth_types::{media, Digest, Reference};
use tracing::info;

use super::RegistryClient;
use crate::error::{ImageError, Result};
use crate::export::manifest_of;
use crate::model::{Index, Manifest, MAX_JSON_BYTES};

/// Progress of a push, for Docker's JSON messages. `id` is a blob's short digest.
#[derive(Debug, Clone)]
pub enum PushEvent {
    Preparing {
        id: String,
    },
    Exists {
        id: String,
    },
    Pushing {
        id: String,
        current: u64,
        total: u64,
    },
    Pushed {
        id: String,
    },
}

/// What a push wrote under the tag.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

struct Counting<R> {
    inner: R,
    id: String,
    current: u64,
    last: u64,
    total: u64,
    progress: std::sync::Arc<dyn Fn(PushEvent) + Send + Sync>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.current += n as u64;
        if self.current - self.last >= 512 << 10 || (n == 0 && self.current != self.last) {
            self.last = self.current;
            (self.progress)(PushEvent::Pushing {
                id: self.id.clone(),
                current: self.current,
                total: self.total,
            });
        }
        Ok(n)
    }
}

/// Uploads one stored blob unless the repository has it.
fn push_blob(
    store: &Store,
    client: &RegistryClient,
    repo: &str,
    digest: &Digest,
    progress: &std::sync::Arc<dyn Fn(PushEvent) + Send + Sync>,
) -> Result<()> {
    let id = short(digest);
    if client.has_blob(repo, digest)? {
        progress(PushEvent::Exists { id });
        return Ok(());
    }
    let size = store.content.size(digest)?;
    let open = || -> Result<Box<dyn Read + Send>> {
        let f = store.content.open_blob(digest)?;
        Ok(Box::new(Counting {
            inner: f,
            id: id.clone(),
            current: 0,
            last: 0,
            total: size,
            progress: progress.clone(),
        }))
    };
    client.put_blob(repo, digest, size, &open)?;
    progress(PushEvent::Pushed { id });
    Ok(())
}

/// Pushes `image` to `target` (a tagged reference on `client`'s registry).
pub fn push(
    store: &Store,
    client: &RegistryClient,
    image: &ImageRecord,
    target: &Reference,
    progress: std::sync::Arc<dyn Fn(PushEvent) + Send + Sync>,
) -> Result<Pushed> {
    let repo = target.path();
    let tag = target.tag().unwrap_or(berth_types::reference::DEFAULT_TAG);
    let (m_bytes, m_type) = manifest_of(store, image)?;
    let manifest = Manifest::parse(&m_bytes)
        .map_err(|e| ImageError::Invalid(format!("image {}: manifest: {e}", image.id)))?;
    for l in &manifest.layers {
        progress(PushEvent::Preparing {
            id: short(&l.digest),
        });
    }
    for l in &manifest.layers {
        push_blob(store, client, repo, &l.digest, &progress)?;
    }
    push_blob(store, client, repo, &manifest.config.digest, &progress)?;

    // A complete index goes up too, so the tag keeps every platform.
    if let Some(index) = complete_index(store, image)? {
        let (i_bytes, i_type, idx) = index;
        let m_digest = Digest::of(&m_bytes);
        for child in &idx.manifests {
            if child.digest == m_digest {
                client.put_manifest(repo, &m_digest.to_string(), &m_bytes, &m_type)?;
                continue;
            }
            let c_bytes = store.content.read_blob(&child.digest, MAX_JSON_BYTES)?;
            if let Ok(cm) = Manifest::parse(&c_bytes) {
                for d in cm.layers.iter().chain(std::iter::once(&cm.config)) {
                    push_blob(store, client, repo, &d.digest, &progress)?;
                }
            }
            client.put_manifest(repo, &child.digest.to_string(), &c_bytes, &child.media_type)?;
        }
        let digest = client.put_manifest(repo, tag, &i_bytes, &i_type)?;
        info!(image.id = %image.id, reference = %target, %digest, "image pushed with its index");
        return Ok(Pushed {
            digest,
            size: i_bytes.len() as u64,
        });
    }
    let digest = client.put_manifest(repo, tag, &m_bytes, &m_type)?;
    info!(image.id = %image.id, reference = %target, %digest, "image pushed");
    Ok(Pushed {
        digest,
        size: m_bytes.len() as u64,
    })
}

/// The image's index, when every manifest it lists is stored with its config and
/// layers (a pulled index names platforms berth did not fetch: those are not pushed).
fn complete_index(store: &Store, image: &ImageRecord) -> Result<Option<(Vec<u8>, String, Index)>> {
    let Some(ir) = &image.index else {
        return Ok(None);
    };
    if !store.content.exists(&ir.digest) {
        return Ok(None);
    }
    let bytes = store.content.read_blob(&ir.digest, MAX_JSON_BYTES)?;
    let Ok(idx) = Index::parse(&bytes) else {
        return Ok(None);
    };
    for child in &idx.manifests {
        if !media::is_manifest(&child.media_type) || !store.content.exists(&child.digest) {
            return Ok(None);
        }
        let c = store.content.read_blob(&child.digest, MAX_JSON_BYTES)?;
        let Ok(m) = Manifest::parse(&c) else {
            return Ok(None);
        };
        if !std::iter::once(&m.config)
            .chain(m.layers.iter())
            .all(|d| store.content.exists(&d.digest))
        {
            return Ok(None);
        }
    }
    Ok(Some((bytes, ir.media_type.clone(), idx)))
}
