//! Copying an image between registries (promotion: dev → int → prod) without storing or
//! unpacking it: every platform of an index, every blob streamed from the source's
//! `GET` into the destination's `PUT`, each hashed on the way and refused on a digest
//! mismatch. Blobs the destination has are skipped (`HEAD`).

use std::io::{self, Read};

use berth_types::{media, Digest, Reference, Sha256Writer};
use tracing::info;

use super::RegistryClient;
use crate::error::{ImageError, Result};
use crate::model::{Index, Manifest};

/// Progress of a copy: one line per blob.
#[derive(Debug, Clone)]
pub enum CopyEvent {
    Exists { digest: Digest },
    Copied { digest: Digest, size: u64 },
    Manifest { digest: Digest },
}

/// Hashes what passes and fails at the end when the digest is not the expected one
/// (the destination then never sees a complete, wrong blob).
pub(super) struct Verified<R> {
    inner: R,
    hasher: Option<Sha256Writer>,
    want: Digest,
}

impl<R: Read> Verified<R> {
    pub(super) fn new(inner: R, want: Digest) -> Self {
        Verified {
            inner,
            hasher: Some(Sha256Writer::new()),
            want,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
        } else if let Some(h) = self.hasher.take() {
            let got = h.finish();
            if got != self.want {
                return Err(io::Error::other(format!(
                    "blob {} has content digest {got}",
                    self.want
                )));
            }
        }
        Ok(n)
    }
}

fn copy_blob(
    src: &RegistryClient,
    src_repo: &str,
    dst: &RegistryClient,
    dst_repo: &str,
    digest: &Digest,
    size: u64,
    progress: &dyn Fn(CopyEvent),
) -> Result<()> {
    if dst.has_blob(dst_repo, digest)? {
        progress(CopyEvent::Exists { digest: *digest });
        return Ok(());
    }
    let open = || -> Result<Box<dyn Read + Send>> {
        let (resp, _) = src.get_blob(src_repo, digest)?;
        Ok(Box::new(Verified {
            inner: resp.take(size),
            hasher: Some(Sha256Writer::new()),
            want: *digest,
        }))
    };
    dst.put_blob(dst_repo, digest, size, &open)?;
    progress(CopyEvent::Copied {
        digest: *digest,
        size,
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn copy_manifest(
    src: &RegistryClient,
    src_repo: &str,
    dst: &RegistryClient,
    dst_repo: &str,
    bytes: &[u8],
    media_type: &str,
    target: &str,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let m = Manifest::parse(bytes)
        .map_err(|e| ImageError::Invalid(format!("manifest {}: {e}", Digest::of(bytes))))?;
    for d in m.layers.iter().chain(std::iter::once(&m.config)) {
        // Foreign layers live elsewhere (their `urls`); registries do not hold them.
        let foreign = matches!(
            d.media_type.as_str(),
            media::OCI_LAYER_NONDIST
                | media::OCI_LAYER_NONDIST_GZIP
                | media::DOCKER_LAYER_FOREIGN_GZIP
        );
        if foreign && d.urls.is_some() {
            continue;
        }
        copy_blob(src, src_repo, dst, dst_repo, &d.digest, d.size, progress)?;
    }
    let digest = dst.put_manifest(dst_repo, target, bytes, media_type)?;
    progress(CopyEvent::Manifest { digest });
    Ok(digest)
}

/// Copies `src_ref` to `dst_ref` (a tag, or no tag to keep only the digest); returns the
/// digest of what the destination now holds, which equals the source's.
pub fn copy(
    src: &RegistryClient,
    src_ref: &Reference,
    dst: &RegistryClient,
    dst_ref: &Reference,
    progress: &dyn Fn(CopyEvent),
) -> Result<Digest> {
    let (bytes, media_type, digest) = src.get_manifest(src_ref)?;
    let (src_repo, dst_repo) = (src_ref.path(), dst_ref.path());
    let target = dst_ref
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| digest.to_string());
    if media::is_index(&media_type) {
        let idx = Index::parse(&bytes)
            .map_err(|e| ImageError::Invalid(format!("index {digest}: {e}")))?;
        for child in &idx.manifests {
            let (cb, ct, cd) =
                src.get_manifest_at(src_repo, &child.digest.to_string(), Some(&child.digest))?;
            copy_manifest(
                src,
                src_repo,
                dst,
                dst_repo,
                &cb,
                &ct,
                &cd.to_string(),
                progress,
            )?;
        }
        let got = dst.put_manifest(dst_repo, &target, &bytes, &media_type)?;
        progress(CopyEvent::Manifest { digest: got });
    } else {
        copy_manifest(
            src,
            src_repo,
            dst,
            dst_repo,
            &bytes,
            &media_type,
            &target,
            progress,
        )?;
    }
    info!(source = %src_ref, destination = %dst_ref, %digest, "image copied");
    Ok(digest)
}
