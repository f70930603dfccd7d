//! Deriving an image from another: a base image's layers plus new ones, a new runtime
//! config and one history entry per step (`docker commit`, and each step of a
//! Dockerfile build).
//!
//! The new config blob is Docker's child image: the base's platform, rootfs diff_ids
//! and history followed by the new ones, `created` now, the given author and config, and
//! the caller's extra fields (`container`, `container_config` for a commit). A step
//! whose layer has no entry (diff_id [`EMPTY_LAYER_DIFF_ID`]) adds no layer, its history
//! entry says `empty_layer`, as Docker does. The image record names the base as its
//! `parent` (shown by inspect, and what makes `rmi` of the base a conflict).
//!
//! Publishing follows the store's write protocol through [`commit_images`]: one sync,
//! lease, rename, directory fsync, then the snapshot records and one metadata
//! transaction for the image and its tags. The base's layers are held by the same lease
//! from the start, so a concurrent `rmi` of the base cannot collect what the new image
//! references.

use berth_store::{BlobRef, ImageRecord, LayerRecord, Store};
use berth_types::{media, Digest, Reference};
use serde_json::{Map, Value};

use crate::commit::{commit_images, StagedSnapshot};
use crate::diff::EMPTY_LAYER_DIFF_ID;
use crate::error::{ImageError, Result};
use crate::layer::IngestedLayer;
use crate::model::{host_platform, History, ImageConfig, RootFs, RunConfig, MAX_JSON_BYTES};

/// One step of a derivation: what it added to the filesystem (None for a step that only
/// changes the config) and its history entry.
pub struct Step {
    pub layer: Option<IngestedLayer>,
    /// A layer already in the store (another image's) that the step adds, when `layer`
    /// is None: a build step restored from a `--cache-from` image.
    pub stored: Option<LayerRecord>,
    pub history: History,
}

/// What [`derive_image`] makes.
pub struct Derivation {
    /// The image built upon; None for `FROM scratch`.
    pub base: Option<ImageRecord>,
    pub steps: Vec<Step>,
    /// The new image's runtime config, final.
    pub config: RunConfig,
    /// The image's `author` (a commit's `--author`; the message goes in the history).
    pub author: Option<String>,
    /// Further top-level config fields (`container`, `container_config`, …).
    pub extra: Map<String, Value>,
    pub tags: Vec<Reference>,
    /// How the image arrived (`commit`, `build`), kept in its record.
    pub source: String,
    /// The time written as the config's `created` and the new history entries' (RFC
    /// 3339); now when None (a reproducible build gives `SOURCE_DATE_EPOCH`'s).
    pub created: Option<String>,
}

/// Stores the derived image (see the module docs); returns its ID.
pub fn derive_image(store: &Store, d: Derivation) -> Result<Digest> {
    let lease = store.leases.acquire();
    let empty: Digest = EMPTY_LAYER_DIFF_ID
        .parse()
        .map_err(|e| ImageError::Invalid(format!("empty layer digest: {e}")))?;
    let mut base_cfg = ImageConfig::default();
    let mut layers: Vec<LayerRecord> = Vec::new();
    if let Some(base) = &d.base {
        lease.add_blob(base.config.digest);
        for l in &base.layers {
            lease.add_blob(l.blob.digest);
            lease.add_snapshot(l.diff_id);
        }
        // Held now: what is still there stays until the new image is recorded.
        for l in &base.layers {
            if !store.content.exists(&l.blob.digest) || !store.snapshots.exists(&l.diff_id) {
                return Err(ImageError::NotFound(format!(
                    "base image {}: layer {} is no longer stored (the image was removed)",
                    base.id, l.diff_id
                )));
            }
        }
        let bytes = store
            .content
            .read_blob(&base.config.digest, MAX_JSON_BYTES)?;
        base_cfg = ImageConfig::parse(&bytes)
            .map_err(|e| ImageError::Invalid(format!("base image {}: config: {e}", base.id)))?;
        layers = base.layers.clone();
    } else {
        let p = host_platform();
        base_cfg.architecture = p.architecture;
        base_cfg.os = p.os;
        base_cfg.rootfs.kind = "layers".into();
    }
    let mut diff_ids = base_cfg.rootfs.diff_ids.clone();
    let mut history = base_cfg.history.clone();
    let mut blobs = Vec::new();
    let mut snapshots = Vec::new();
    let now = d
        .created
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    for step in d.steps {
        let mut h = step.history;
        if h.created.is_none() {
            h.created = Some(now.clone());
        }
        match step.layer {
            Some(l) if l.diff_id != empty => {
                diff_ids.push(l.diff_id);
                layers.push(LayerRecord {
                    blob: BlobRef {
                        digest: l.blob.digest(),
                        media_type: l.compression.docker_media_type().into(),
                        size: l.blob.size(),
                    },
                    diff_id: l.diff_id,
                });
                snapshots.push(StagedSnapshot {
                    diff_id: l.diff_id,
                    tar_size: l.tar_size,
                    snapshot: l.snapshot,
                    stats: l.stats,
                });
                blobs.push(l.blob);
                h.empty_layer = false;
            }
            Some(_) => h.empty_layer = true,
            None => match step.stored {
                Some(l) if l.diff_id != empty => {
                    lease.add_blob(l.blob.digest);
                    lease.add_snapshot(l.diff_id);
                    if !store.content.exists(&l.blob.digest) || !store.snapshots.exists(&l.diff_id)
                    {
                        return Err(ImageError::NotFound(format!(
                            "layer {} is no longer stored (its image was removed)",
                            l.diff_id
                        )));
                    }
                    diff_ids.push(l.diff_id);
                    layers.push(l);
                    h.empty_layer = false;
                }
                // Nothing changed (or a config-only step): no layer.
                _ => h.empty_layer = true,
            },
        }
        history.push(h);
    }
    let config = ImageConfig {
        architecture: base_cfg.architecture,
        os: base_cfg.os,
        variant: base_cfg.variant,
        os_version: base_cfg.os_version,
        created: Some(now),
        author: d.author.filter(|a| !a.is_empty()),
        comment: None,
        docker_version: None,
        config: Some(d.config),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        history,
        other: d.extra,
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let mut w = store.content.writer()?;
    std::io::Write::write_all(&mut w, &config_bytes)
        .map_err(|e| ImageError::io("write config blob", e))?;
    let config_blob = w.finish(None)?;
    let id = config_blob.digest();
    blobs.push(config_blob);
    let rec = ImageRecord {
        id,
        config: BlobRef {
            digest: id,
            media_type: media::DOCKER_CONFIG.into(),
            size: config_bytes.len() as u64,
        },
        manifest: None,
        index: None,
        layers,
        extra_blobs: Vec::new(),
        repo_digests: Vec::new(),
        stored_at: chrono::Utc::now().to_rfc3339(),
        source: d.source,
        parent: d.base.as_ref().map(|b| b.id),
    };
    commit_images(store, &lease, blobs, snapshots, vec![(rec, d.tags)])?;
    Ok(id)
}
