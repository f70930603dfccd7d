//! Pulling an image: manifest (or index, then the platform's manifest), config, layers.
//!
//! Every digest is verified: the manifest against the digest asked for (or announced),
//! the config against the manifest, each layer blob against the manifest and its
//! diff_id against the config. Layers are fetched a few at a time, each on its own
//! thread streaming the HTTP body through [`ingest_layer`]: nothing is buffered whole,
//! nothing unpacked twice.
//!
//! Resuming: a layer is published (durable, under the pull's lease) as soon as it is
//! verified, so a pull interrupted later leaves the finished layers in the store; the
//! next pull finds blob and snapshot present and skips them. Until an image references
//! them they are garbage to a prune, but never while a pull holds them in its lease.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use berth_store::{BlobRef, ImageRecord, LayerRecord, Lease, Store};
use berth_types::{media, Digest, Reference};
use tracing::{debug, info};

use super::RegistryClient;
use crate::archive::LoadOptions;
use crate::commit::{commit_images, StagedSnapshot};
use crate::error::{ImageError, Result};
use crate::layer::{ingest_layer, sniff, LayerError, ProgressRead};
use crate::model::{
    host_platform, platform_matches, ImageConfig, Index, Manifest, Platform, MAX_JSON_BYTES,
};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub load: LoadOptions,
    /// The platform to choose from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Layers fetched at once.
    pub parallel: usize,
}

/// Progress of a pull, for Docker's JSON messages. `id` is a layer's short digest.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The manifest was resolved.
    Resolved { digest: Digest },
    /// A layer will be fetched.
    Waiting { id: String },
    /// A layer is already in the store.
    Exists { id: String },
    Downloading {
        id: String,
        current: u64,
        total: u64,
    },
    /// A layer was verified and stored.
    Complete { id: String },
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: Digest,
    /// The digest of what the reference resolved to (the index, when there was one).
    pub digest: Digest,
    /// Whether the tag now points at a different image than before the pull.
    pub changed: bool,
    /// Layers fetched (not already present).
    pub fetched_layers: usize,
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// Pulls `reference` from `client`'s registry into the store and tags it.
pub fn pull(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PullOptions,
    progress: &(dyn Fn(PullEvent) + Sync),
) -> Result<Pulled> {
    let started = std::time::Instant::now();
    let lease = store.leases.acquire();
    let what = reference.familiar();
    let repo = reference.path();
    let (top_bytes, top_type, top_digest) = client.get_manifest(reference)?;
    let want = opts.platform.clone().unwrap_or_else(host_platform);
    let (m_bytes, m_type, m_digest, index) = if media::is_index(&top_type) {
        let idx = Index::parse(&top_bytes)
            .map_err(|e| ImageError::Invalid(format!("image {what}: index {top_digest}: {e}")))?;
        let chosen = idx
            .manifests
            .iter()
            .find(|m| {
                media::is_manifest(&m.media_type)
                    && m.platform
                        .as_ref()
                        .is_some_and(|p| platform_matches(p, &want))
            })
            .ok_or_else(|| {
                ImageError::NotFound(format!(
                    "image {what}: index {top_digest} has no manifest for {}/{}{}",
                    want.os,
                    want.architecture,
                    want.variant
                        .as_deref()
                        .map(|v| format!("/{v}"))
                        .unwrap_or_default()
                ))
            })?;
        let (b, t, d) =
            client.get_manifest_at(repo, &chosen.digest.to_string(), Some(&chosen.digest))?;
        if !media::is_manifest(&t) {
            return Err(ImageError::Invalid(format!(
                "image {what}: index entry {} is a {t}, not an image manifest",
                chosen.digest
            )));
        }
        (b, t, d, Some((top_bytes, top_type)))
    } else if media::is_manifest(&top_type) {
        (top_bytes, top_type, top_digest, None)
    } else {
        return Err(ImageError::Invalid(format!(
            "image {what}: manifest media type {top_type:?} is not an image manifest or index"
        )));
    };
    progress(PullEvent::Resolved { digest: top_digest });
    let manifest = Manifest::parse(&m_bytes)
        .map_err(|e| ImageError::Invalid(format!("image {what}: manifest {m_digest}: {e}")))?;

    // Config: small JSON, verified against the manifest.
    let config_bytes = {
        let (resp, _) = client.get_blob(repo, &manifest.config.digest)?;
        let mut b = Vec::new();
        resp.take(MAX_JSON_BYTES + 1)
            .read_to_end(&mut b)
            .map_err(|e| ImageError::Unavailable(format!("image {what}: reading config: {e}")))?;
        if b.len() as u64 > MAX_JSON_BYTES {
            return Err(ImageError::Invalid(format!(
                "image {what}: config {} is larger than {MAX_JSON_BYTES} bytes",
                manifest.config.digest
            )));
        }
        let got = Digest::of(&b);
        if got != manifest.config.digest {
            return Err(ImageError::Invalid(format!(
                "image {what}: config blob has digest {got}, the manifest says {}",
                manifest.config.digest
            )));
        }
        b
    };
    let config = ImageConfig::parse(&config_bytes).map_err(|e| {
        ImageError::Invalid(format!(
            "image {what}: config {}: {e}",
            manifest.config.digest
        ))
    })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Invalid(format!(
            "image {what}: config lists {} diff_ids but the manifest has {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    for (i, l) in manifest.layers.iter().enumerate() {
        if !media::is_layer(&l.media_type) {
            return Err(ImageError::Invalid(format!(
                "image {what} layer {} ({}): media type {:?} is not a layer type berth can unpack",
                i + 1,
                l.digest,
                l.media_type
            )));
        }
    }

    // Layers: present ones are leased and skipped; the rest fetched in parallel.
    let mut todo = Vec::new();
    for (i, (l, diff_id)) in manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .enumerate()
    {
        lease.add_blob(l.digest);
        lease.add_snapshot(*diff_id);
        let present = store.content.exists(&l.digest)
            && store.snapshots.exists(diff_id)
            && store.meta.snapshot(diff_id)?.is_some();
        if present {
            progress(PullEvent::Exists {
                id: short(&l.digest),
            });
        } else if !todo.iter().any(|&(_, d, _)| d == l.digest) {
            progress(PullEvent::Waiting {
                id: short(&l.digest),
            });
            todo.push((i, l.digest, l.size));
        }
    }
    // A failed layer does not stop the others: every layer that can be fetched is kept
    // for the next attempt (it resumes from there).
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<ImageError>> = Mutex::new(Vec::new());
    let workers = opts.parallel.clamp(1, 8).min(todo.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, digest, size)) = todo.get(k) else {
                    return;
                };
                let diff_id = config.rootfs.diff_ids[i];
                let res = fetch_layer(
                    store,
                    client,
                    &lease,
                    repo,
                    &what,
                    i + 1,
                    digest,
                    size,
                    diff_id,
                    opts,
                    progress,
                );
                if let Err(e) = res {
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            });
        }
    });
    if let Some(e) = errors
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .next()
    {
        return Err(e);
    }

    // The image: config, manifest and index as blobs, one metadata transaction.
    let mut blobs = Vec::new();
    let mut put = |bytes: &[u8], media_type: &str| -> Result<BlobRef> {
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
    let config_ref = put(&config_bytes, &manifest.config.media_type)?;
    let manifest_ref = put(&m_bytes, &m_type)?;
    let index_ref = index.as_ref().map(|(b, t)| put(b, t)).transpose()?;
    let layers: Vec<LayerRecord> = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(l, d)| LayerRecord {
            blob: BlobRef {
                digest: l.digest,
                media_type: l.media_type.clone(),
                size: store.content.size(&l.digest).unwrap_or(l.size),
            },
            diff_id: *d,
        })
        .collect();
    let id = config_ref.digest;
    let tags: Vec<Reference> = if reference.tag().is_some() && reference.digest().is_none() {
        vec![reference.clone()]
    } else {
        Vec::new()
    };
    let previous = match tags.first() {
        Some(t) => store.meta.resolve_tag(t)?,
        None => None,
    };
    let had_image = store.meta.image(&id)?.is_some();
    let rec = ImageRecord {
        id,
        config: config_ref,
        manifest: Some(manifest_ref),
        index: index_ref,
        layers,
        extra_blobs: Vec::new(),
        repo_digests: vec![format!("{}@{top_digest}", reference.repository())],
        stored_at: chrono::Utc::now().to_rfc3339(),
        source: "pull".to_string(),
        parent: None,
    };
    let untagged = tags.is_empty();
    commit_images(store, &lease, blobs, Vec::new(), vec![(rec, tags)])?;
    info!(
        image.id = %id,
        reference = %reference,
        digest = %top_digest,
        layers_fetched = todo.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "image pulled"
    );
    Ok(Pulled {
        id,
        digest: top_digest,
        changed: if untagged {
            !had_image
        } else {
            previous != Some(id)
        },
        fetched_layers: todo.len(),
    })
}

/// Fetches one layer, streams it through `ingest_layer`, verifies both digests and
/// publishes blob and snapshot at once (so an interrupted pull keeps it).
#[allow(clippy::too_many_arguments)]
fn fetch_layer(
    store: &Store,
    client: &RegistryClient,
    lease: &Lease,
    repo: &str,
    what: &str,
    n: usize,
    digest: Digest,
    size: u64,
    diff_id: Digest,
    opts: &PullOptions,
    progress: &(dyn Fn(PullEvent) + Sync),
) -> Result<()> {
    let id = short(&digest);
    let ctx = format!("image {what} layer {n} ({digest})");
    let (resp, len) = client.get_blob(repo, &digest)?;
    if let Some(len) = len {
        if len != size {
            return Err(ImageError::Invalid(format!(
                "{ctx}: the registry sends {len} bytes, the manifest says {size}"
            )));
        }
    }
    let mut input = ProgressRead::new(resp.take(size), 512 << 10, |current| {
        progress(PullEvent::Downloading {
            id: id.to_string(),
            current,
            total: size,
        })
    });
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        let k = input
            .read(&mut head[got..])
            .map_err(|e| ImageError::Unavailable(format!("{ctx}: {e}")))?;
        if k == 0 {
            break;
        }
        got += k;
    }
    head.truncate(got);
    let compression = sniff(&head)
        .ok_or_else(|| ImageError::Invalid(format!("{ctx}: not a tar, gzip or zstd layer")))?;
    let layer = ingest_layer(
        store,
        &head,
        &mut input,
        compression,
        false,
        &opts.load.ingest(),
    )
    .map_err(|e| match e {
        e if e.is_no_space() => ImageError::NoSpace(format!("{ctx}: {e}")),
        LayerError::Io(e) => ImageError::Unavailable(format!("{ctx}: download broke: {e}")),
        e => ImageError::Invalid(format!("{ctx}: {e}")),
    })?;
    if layer.blob.digest() != digest || layer.blob.size() != size {
        return Err(ImageError::Invalid(format!(
            "{ctx}: downloaded {} bytes with digest {}, the manifest says {size} bytes with digest {digest}",
            layer.blob.size(),
            layer.blob.digest()
        )));
    }
    if layer.diff_id != diff_id {
        return Err(ImageError::Invalid(format!(
            "{ctx}: uncompressed content has digest {}, the config's diff_id is {diff_id}",
            layer.diff_id
        )));
    }
    // Durable before visible; one syncfs covers the blob and the unpacked files.
    store.sync_all()?;
    let staged = StagedSnapshot {
        diff_id,
        tar_size: layer.tar_size,
        snapshot: layer.snapshot,
        stats: layer.stats,
    };
    layer.blob.publish(lease)?;
    store.content.sync_dir()?;
    staged.publish(store, lease)?;
    debug!(blob = %digest, layer.diff_id = %diff_id, "layer pulled");
    progress(PullEvent::Complete { id });
    Ok(())
}
