//! `docker import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image
//! whose config is built from `--change` instructions.

use std::io::{self, Read};

use berth_store::{BlobRef, ImageRecord, LayerRecord, SnapshotRecord, Store};
use berth_types::{media, Digest, Reference};

use crate::archive::LoadOptions;
use crate::changes::apply_change;
use crate::error::{ImageError, Result};
use crate::layer::{ingest_layer, sniff, LayerError};
use crate::model::{host_platform, History, ImageConfig, Platform, RootFs, RunConfig};

#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub tag: Option<Reference>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Option<Platform>,
}

/// Imports a rootfs tarball; returns the new image ID.
pub fn import_rootfs(
    store: &Store,
    input: &mut dyn Read,
    req: &ImportRequest,
    opts: &LoadOptions,
) -> Result<Digest> {
    // Check the changes before reading a byte of the tarball.
    let mut run = RunConfig::default();
    for c in &req.changes {
        apply_change(&mut run, c).map_err(ImageError::Invalid)?;
    }
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        let n = input
            .read(&mut head[got..])
            .map_err(|e| ImageError::io("read rootfs tarball", e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    let compression = sniff(&head).ok_or_else(|| {
        ImageError::Invalid("import: input is not a tar archive (plain, gzip or zstd)".into())
    })?;
    let writeback = store.background_writeback();
    let layer = ingest_layer(store, &head, input, compression, true, &opts.ingest()).map_err(
        |e| match e {
            e if e.is_no_space() => ImageError::NoSpace(format!("import: {e}")),
            LayerError::Io(e) => ImageError::io("import: read rootfs tarball", e),
            e => ImageError::Invalid(format!("import: rootfs tarball: {e}")),
        },
    )?;
    let platform = req.platform.clone().unwrap_or_else(host_platform);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let comment = req.message.clone().filter(|m| !m.is_empty());
    let config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        created: Some(now.clone()),
        comment: comment.clone(),
        config: Some(run),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id],
        },
        history: vec![History {
            created: Some(now),
            comment: Some(comment.unwrap_or_else(|| "Imported from -".to_string())),
            ..Default::default()
        }],
        ..Default::default()
    };
    drop(writeback);
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let lease = store.leases.acquire();
    let mut w = store.content.writer()?;
    io::Write::write_all(&mut w, &config_bytes)
        .map_err(|e| ImageError::io("write config blob", e))?;
    let config_blob = w.finish(None)?;
    let id = config_blob.digest();
    store.sync_all()?;
    let snap = SnapshotRecord {
        diff_id: layer.diff_id,
        size: layer.stats.content_bytes,
        tar_size: layer.tar_size,
        entries: layer.stats.entries,
    };
    let blob_size = layer.blob.size();
    layer.snapshot.publish(&layer.diff_id, &lease)?;
    let blob_digest = layer.blob.publish(&lease)?;
    config_blob.publish(&lease)?;
    store.content.sync_dir()?;
    store.snapshots.sync_dir()?;
    store.meta.put_snapshot(&snap)?;
    let rec = ImageRecord {
        id,
        config: BlobRef {
            digest: id,
            media_type: media::DOCKER_CONFIG.into(),
            size: config_bytes.len() as u64,
        },
        manifest: None,
        index: None,
        layers: vec![LayerRecord {
            blob: BlobRef {
                digest: blob_digest,
                media_type: media::DOCKER_LAYER.into(),
                size: blob_size,
            },
            diff_id: snap.diff_id,
        }],
        extra_blobs: Vec::new(),
        repo_digests: Vec::new(),
        stored_at: chrono::Utc::now().to_rfc3339(),
        source: "import".into(),
        parent: None,
    };
    let tags: Vec<Reference> = req.tag.iter().cloned().collect();
    store.meta.put_image(&rec, &tags)?;
    Ok(id)
}
