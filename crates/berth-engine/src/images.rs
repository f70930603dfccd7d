//! Images: load, save, import, list, inspect, history, tag, remove, prune, disk usage.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};

use berth_image::model::{History, ImageConfig, Platform, RunConfig};
use berth_image::{LoadEvent, LoadOptions, SaveFormat, SaveItem};
use berth_store::{ExtraRoots, ImageRecord};
use berth_types::{Digest, Reference};
use tracing::{info, instrument, warn};

use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::Engine;

/// A row of the image list.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub id: Digest,
    /// Familiar `repo:tag` names, sorted.
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Seconds since the epoch, from the config's `created`.
    pub created: i64,
    /// Bytes of unpacked layer content.
    pub size: u64,
    /// Bytes of layers this image shares with other images.
    pub shared_size: u64,
    pub labels: BTreeMap<String, String>,
    /// Containers using the image.
    pub containers: u64,
}

/// Everything `image inspect` shows.
#[derive(Debug, Clone)]
pub struct ImageDetails {
    pub summary: ImageSummary,
    pub config: ImageConfig,
    pub record: ImageRecord,
    /// Snapshot directories of the layers, bottom first.
    pub layer_dirs: Vec<std::path::PathBuf>,
}

/// One history row, newest first (as Docker lists it).
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The image ID for the top row, `<missing>` for the others (as Docker).
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub comment: String,
}

/// What `rmi` and prune did, in Docker's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(Digest),
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub deleted: Vec<DeleteItem>,
    pub space_reclaimed: u64,
}

/// An entry of the build cache: a build's intermediate image.
#[derive(Debug, Clone)]
pub struct BuildCacheEntry {
    pub id: Digest,
    pub parent: Option<Digest>,
    /// The step that made it (its history's `created_by`).
    pub description: String,
    /// A container uses it.
    pub in_use: bool,
    /// Another image is built on it.
    pub shared: bool,
    /// Bytes of the layer it added.
    pub size: u64,
    /// RFC 3339.
    pub created: String,
}

#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Bytes of all unpacked layers.
    pub layers_size: u64,
    /// Bytes of all blobs in the content store.
    pub blobs_size: u64,
    pub images: Vec<ImageSummary>,
}

/// A loaded image and the tags the archive gave it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    pub tags: Vec<String>,
}

/// Options of `import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `repo[:tag]` to tag the new image with.
    pub reference: Option<String>,
    /// Dockerfile instructions: `CMD ["x"]`, `ENV A=b`, …
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Option<String>,
}

fn created_unix(cfg: &ImageConfig) -> i64 {
    cfg.created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

impl Engine {
    pub(crate) fn load_options(&self) -> LoadOptions {
        let c = self.config();
        LoadOptions {
            unpack: berth_image::unpack::UnpackOptions {
                preserve_privileged_bits: c.preserve_setuid,
                max_tar_bytes: c.max_layer_bytes,
                min_free_bytes: self.min_free_bytes(),
                ..Default::default()
            },
            max_compression_ratio: c.max_compression_ratio,
            admit: Some(self.load_admit()),
        }
    }

    /// Loads a `docker save` or OCI layout archive. All its images are stored, or none.
    #[instrument(skip_all)]
    pub fn load(
        &self,
        input: &mut dyn Read,
        progress: &mut dyn FnMut(LoadEvent),
    ) -> Result<Vec<Loaded>> {
        let loaded =
            berth_image::load_archive(self.store(), input, &self.load_options(), progress)?;
        let out: Vec<Loaded> = loaded
            .into_iter()
            .map(|l| Loaded {
                id: l.id,
                tags: l.tags.iter().filter_map(|t| t.familiar_tagged()).collect(),
            })
            .collect();
        for l in &out {
            info!(image.id = %l.id, tags = ?l.tags, "image loaded");
        }
        Ok(out)
    }

    /// Imports a rootfs tarball as a one-layer image.
    #[instrument(skip_all)]
    pub fn import(&self, input: &mut dyn Read, opts: &ImportOptions) -> Result<Digest> {
        let reference = match opts.reference.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => Some(Reference::parse_with_default_tag(r)?),
            None => None,
        };
        let platform = match opts.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(parse_platform(p)?),
            None => None,
        };
        let req = berth_image::ImportRequest {
            tag: reference,
            changes: opts.changes.clone(),
            message: opts.message.clone(),
            platform,
        };
        let id = berth_image::import_rootfs(self.store(), input, &req, &self.load_options())?;
        info!(image.id = %id, "rootfs imported");
        Ok(id)
    }

    /// Writes the named images to an archive. Names are references or IDs; a reference
    /// keeps only that tag in the archive, an ID keeps all the image's tags.
    #[instrument(skip_all)]
    pub fn save(&self, names: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<()> {
        if names.is_empty() {
            return Err(EngineError::invalid("save: no image named"));
        }
        let mut items: Vec<SaveItem> = Vec::new();
        for name in names {
            let (rec, by_ref) = self.resolve(name)?;
            // As Docker: an image named by tag is saved with that tag; by digest or by
            // ID, with none (`docker save ID` then `docker load` gives an untagged image).
            let mut item_tags: Vec<Reference> = match &by_ref {
                Some(r) if r.tag().is_some() => vec![r.clone()],
                _ => Vec::new(),
            };
            if let Some(existing) = items.iter_mut().find(|i| i.image.id == rec.id) {
                for t in item_tags.drain(..) {
                    if !existing.tags.contains(&t) {
                        existing.tags.push(t);
                    }
                }
            } else {
                item_tags.sort();
                items.push(SaveItem {
                    image: rec,
                    tags: item_tags,
                });
            }
        }
        berth_image::save_archive(self.store(), &items, format, out)?;
        Ok(())
    }

    /// Finds an image by ID, ID prefix, tag or digest reference. Returns the reference
    /// when the name was one.
    pub fn resolve(&self, name: &str) -> Result<(ImageRecord, Option<Reference>)> {
        let meta = &self.store().meta;
        let not_found = || EngineError::not_found(format!("No such image: {name}"));
        let hexpart = name.strip_prefix("sha256:").unwrap_or(name);
        if hexpart.len() == 64 {
            if let Ok(d) = Digest::from_hex(hexpart) {
                return meta.image(&d)?.map(|r| (r, None)).ok_or_else(not_found);
            }
        }
        if let Ok(r) = Reference::parse_with_default_tag(name) {
            if let Some(d) = r.digest() {
                let want = format!("{}@{d}", r.repository());
                for img in meta.images()? {
                    if img.repo_digests.contains(&want) {
                        return Ok((img, Some(r)));
                    }
                }
            } else if let Some(id) = meta.resolve_tag(&r)? {
                if let Some(img) = meta.image(&id)? {
                    return Ok((img, Some(r)));
                }
            }
        }
        let is_hex = !hexpart.is_empty() && hexpart.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let lower = hexpart.to_ascii_lowercase();
            let matches: Vec<ImageRecord> = meta
                .images()?
                .into_iter()
                .filter(|i| i.id.hex().starts_with(&lower))
                .collect();
            match matches.len() {
                0 => {}
                1 => return Ok((matches.into_iter().next().ok_or_else(not_found)?, None)),
                _ => {
                    return Err(EngineError::invalid(format!(
                        "image ID prefix {name} is ambiguous: it matches {} images",
                        matches.len()
                    )))
                }
            }
        }
        Err(not_found())
    }

    pub(crate) fn config_of(&self, rec: &ImageRecord) -> Result<ImageConfig> {
        let bytes = self
            .store()
            .content
            .read_blob(&rec.config.digest, berth_image::model::MAX_JSON_BYTES)?;
        ImageConfig::parse(&bytes).map_err(|e| {
            EngineError::internal(format!(
                "image {}: stored config does not parse: {e}",
                rec.id
            ))
        })
    }

    fn snapshot_sizes(&self) -> Result<HashMap<Digest, u64>> {
        Ok(self
            .store()
            .meta
            .snapshots()?
            .into_iter()
            .map(|s| (s.diff_id, s.size))
            .collect())
    }

    fn summaries(&self) -> Result<Vec<(ImageSummary, ImageConfig)>> {
        let images = self.store().meta.images()?;
        let tags = self.store().meta.tags()?;
        let sizes = self.snapshot_sizes()?;
        let mut layer_users: HashMap<Digest, usize> = HashMap::new();
        for img in &images {
            let uniq: HashSet<Digest> = img.layers.iter().map(|l| l.diff_id).collect();
            for d in uniq {
                *layer_users.entry(d).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for img in images {
            let cfg = self.config_of(&img)?;
            let mut repo_tags: Vec<String> = tags
                .iter()
                .filter(|(_, id)| *id == img.id)
                .filter_map(|(r, _)| r.familiar_tagged())
                .collect();
            repo_tags.sort();
            let uniq: HashSet<Digest> = img.layers.iter().map(|l| l.diff_id).collect();
            let size = uniq
                .iter()
                .map(|d| sizes.get(d).copied().unwrap_or(0))
                .sum();
            let shared_size = uniq
                .iter()
                .filter(|d| layer_users.get(d).copied().unwrap_or(0) > 1)
                .map(|d| sizes.get(d).copied().unwrap_or(0))
                .sum();
            let repo_digests = img
                .repo_digests
                .iter()
                .map(|d| {
                    d.split_once('@')
                        .and_then(|(repo, dg)| {
                            Reference::parse(repo)
                                .ok()
                                .map(|r| format!("{}@{dg}", r.familiar_repository()))
                        })
                        .unwrap_or_else(|| d.clone())
                })
                .collect();
            let labels = cfg
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            out.push((
                ImageSummary {
                    id: img.id,
                    repo_tags,
                    repo_digests,
                    created: created_unix(&cfg),
                    size,
                    shared_size,
                    labels,
                    containers: 0,
                },
                cfg,
            ));
        }
        out.sort_by(|a, b| b.0.created.cmp(&a.0.created).then(a.0.id.cmp(&b.0.id)));
        Ok(out)
    }

    /// Lists images, newest first. Filters: `dangling`, `label`, `before`, `since`,
    /// `reference` (a glob over `repo` or `repo:tag`). Without `all`, an untagged image
    /// that is the parent of another (a build's intermediate image) is left out, as
    /// Docker leaves it out.
    pub fn list_images(&self, filters: &Filters, all: bool) -> Result<Vec<ImageSummary>> {
        filters.check(&["dangling", "label", "before", "since", "reference", "until"])?;
        let dangling = filters.bool("dangling")?;
        let parents: HashSet<Digest> = if all {
            HashSet::new()
        } else {
            self.store()
                .meta
                .images()?
                .into_iter()
                .filter_map(|r| r.parent)
                .collect()
        };
        let all = self.summaries()?;
        let created_of = |name: &str| -> Result<i64> {
            let (rec, _) = self.resolve(name)?;
            Ok(created_unix(&self.config_of(&rec)?))
        };
        let before = filters
            .get("before")
            .iter()
            .map(|n| created_of(n))
            .collect::<Result<Vec<_>>>()?;
        let since = filters
            .get("since")
            .iter()
            .map(|n| created_of(n))
            .collect::<Result<Vec<_>>>()?;
        let until = filters
            .get("until")
            .iter()
            .map(|u| parse_until(u))
            .collect::<Result<Vec<_>>>()?;
        let refs = filters.get("reference");
        Ok(all
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| !s.repo_tags.is_empty() || !parents.contains(&s.id))
            .filter(|s| match dangling {
                Some(true) => s.repo_tags.is_empty(),
                Some(false) => !s.repo_tags.is_empty(),
                None => true,
            })
            .filter(|s| filters.labels_match("label", &s.labels))
            .filter(|s| before.iter().all(|b| s.created < *b))
            .filter(|s| since.iter().all(|b| s.created > *b))
            .filter(|s| until.iter().all(|u| s.created < *u))
            .filter(|s| {
                refs.is_empty()
                    || refs.iter().any(|pat| {
                        s.repo_tags.iter().any(|t| {
                            glob_match(pat, t)
                                || t.rsplit_once(':')
                                    .is_some_and(|(repo, _)| glob_match(pat, repo))
                        })
                    })
            })
            .collect())
    }

    /// Details of one image.
    pub fn inspect_image(&self, name: &str) -> Result<ImageDetails> {
        let (rec, _) = self.resolve(name)?;
        let summary = self
            .summaries()?
            .into_iter()
            .map(|(s, _)| s)
            .find(|s| s.id == rec.id)
            .ok_or_else(|| EngineError::not_found(format!("No such image: {name}")))?;
        let config = self.config_of(&rec)?;
        let layer_dirs = rec
            .layers
            .iter()
            .map(|l| self.store().snapshots.path(&l.diff_id))
            .collect();
        Ok(ImageDetails {
            summary,
            config,
            record: rec,
            layer_dirs,
        })
    }

    /// The image's history, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let (rec, _) = self.resolve(name)?;
        let cfg = self.config_of(&rec)?;
        let sizes = self.snapshot_sizes()?;
        let tags: Vec<String> = self
            .store()
            .meta
            .tags()?
            .into_iter()
            .filter(|(_, id)| *id == rec.id)
            .filter_map(|(r, _)| r.familiar_tagged())
            .collect();
        let mut layer_iter = rec.layers.iter();
        let hist: Vec<History> = if cfg.history.is_empty() {
            rec.layers.iter().map(|_| History::default()).collect()
        } else {
            cfg.history.clone()
        };
        let mut rows = Vec::new();
        for h in &hist {
            let size = if h.empty_layer {
                0
            } else {
                layer_iter
                    .next()
                    .and_then(|l| sizes.get(&l.diff_id).copied())
                    .unwrap_or(0)
            };
            rows.push(HistoryRow {
                id: "<missing>".to_string(),
                created: h
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| t.timestamp())
                    .unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = rec.id.to_string();
            top.tags = tags;
        }
        Ok(rows)
    }

    /// Points `repo[:tag]` at the image named `source`.
    #[instrument(skip_all, fields(source = %source))]
    pub fn tag(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<String> {
        let (rec, _) = self.resolve(source)?;
        let target = Reference::from_repo_tag(repo, tag)?;
        if target.digest().is_some() {
            return Err(EngineError::invalid(format!(
                "refusing to create a tag with a digest reference: {}",
                target.familiar()
            )));
        }
        self.store().meta.set_tag(&target, &rec.id)?;
        let name = target.familiar();
        info!(image.id = %rec.id, tag = %name, "image tagged");
        Ok(name)
    }

    /// Containers using an image, each with whether it runs.
    fn users_of(&self, id: &Digest) -> Result<Vec<(String, bool)>> {
        self.containers_of_image(id)?
            .into_iter()
            .map(|c| {
                let running = matches!(
                    self.container_state(&c)?,
                    crate::containers::ContainerState::Running { .. }
                );
                Ok((c, running))
            })
            .collect()
    }

    /// GC roots beyond images: the layers of every container (so a forced `rmi` of an
    /// image a container uses keeps the container's rootfs).
    fn gc_roots(&self) -> berth_store::Result<ExtraRoots> {
        self.container_roots()
            .map_err(|e| berth_store::Error::Corrupt(format!("container records: {e}")))
    }

    /// `docker rmi`: untags, and deletes the image once nothing names it.
    #[instrument(skip_all, fields(image = %name))]
    /// Without `noprune`, the image's untagged parents that nothing else uses go with
    /// it (a build's intermediate images), as Docker's `imageDeleteHelper` does.
    pub fn remove_image(&self, name: &str, force: bool, noprune: bool) -> Result<Vec<DeleteItem>> {
        let (rec, by_ref) = self.resolve(name)?;
        let meta = &self.store().meta;
        let tags: Vec<Reference> = meta
            .tags()?
            .into_iter()
            .filter(|(_, id)| *id == rec.id)
            .map(|(r, _)| r)
            .collect();
        let users = self.users_of(&rec.id)?;
        let mut out = Vec::new();
        match by_ref {
            Some(r) if r.digest().is_none() && tags.len() > 1 => {
                self.with_space_reserve(|| meta.remove_tag(&r))?;
                out.push(DeleteItem::Untagged(r.familiar()));
                return Ok(out);
            }
            Some(r) if r.digest().is_some() && (tags.len() + rec.repo_digests.len()) > 1 => {
                let mut rec2 = rec.clone();
                let key = format!(
                    "{}@{}",
                    r.repository(),
                    r.digest().map(|d| d.to_string()).unwrap_or_default()
                );
                rec2.repo_digests.retain(|d| *d != key);
                self.with_space_reserve(|| meta.put_image(&rec2, &[]))?;
                out.push(DeleteItem::Untagged(r.familiar()));
                return Ok(out);
            }
            None if tags.len() > 1 && !force => {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    rec.id.short()
                )));
            }
            _ => {}
        }
        // An image another was committed upon (Docker's parent link): deleting it by
        // name only untags it; by ID it is a conflict even with force, as Docker says.
        let has_children = meta.images()?.iter().any(|i| i.parent == Some(rec.id));
        if has_children {
            if let Some(r) = by_ref.as_ref().filter(|r| r.digest().is_none()) {
                self.with_space_reserve(|| meta.remove_tag(r))?;
                out.push(DeleteItem::Untagged(r.familiar()));
                return Ok(out);
            }
            return Err(EngineError::conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
                rec.id.short()
            )));
        }
        let running: Vec<&str> = users
            .iter()
            .filter(|(_, r)| *r)
            .map(|(c, _)| &c[..12])
            .collect();
        if !running.is_empty() {
            return Err(EngineError::conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                rec.id.short(),
                running.join(", ")
            )));
        }
        if !users.is_empty() && !force {
            return Err(EngineError::conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                rec.id.short(),
                users
                    .iter()
                    .map(|(c, _)| &c[..12])
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // One transaction: the image and its tags go together, or nothing does. On a
        // full disk it may use the space reserve (removing an image is how space is
        // freed).
        for t in self.with_space_reserve(|| meta.delete_image(&rec.id))? {
            out.push(DeleteItem::Untagged(t.familiar()));
        }
        for d in &rec.repo_digests {
            out.push(DeleteItem::Untagged(d.clone()));
        }
        out.push(DeleteItem::Deleted(rec.id));
        if !noprune {
            self.remove_unused_parents(rec.parent, &mut out)?;
        }
        // The deletion is committed and answered as done; what it frees is collected
        // now, or by the next collection if this one fails (a full disk).
        self.collect_after_delete();
        info!(image.id = %rec.id, "image deleted");
        Ok(out)
    }

    /// Deletes `parent` and its own parents, up to the first one that is tagged, has a
    /// repo digest, another child or a container.
    fn remove_unused_parents(
        &self,
        mut parent: Option<Digest>,
        out: &mut Vec<DeleteItem>,
    ) -> Result<()> {
        let meta = &self.store().meta;
        while let Some(p) = parent {
            let Some(prec) = meta.image(&p)? else {
                break;
            };
            let tagged = meta.tags()?.iter().any(|(_, id)| *id == p);
            let has_children = meta.images()?.iter().any(|i| i.parent == Some(p));
            if tagged
                || has_children
                || !prec.repo_digests.is_empty()
                || !self.users_of(&p)?.is_empty()
            {
                break;
            }
            self.with_space_reserve(|| meta.delete_image(&p))?;
            out.push(DeleteItem::Deleted(p));
            parent = prec.parent;
        }
        Ok(())
    }

    /// `docker image prune`: deletes dangling images (all unused ones with
    /// `dangling=false`), then collects unreferenced blobs and snapshots.
    #[instrument(skip_all)]
    pub fn prune_images(&self, filters: &Filters) -> Result<PruneReport> {
        filters.check(&["dangling", "until", "label", "label!"])?;
        let dangling_only = filters.bool("dangling")?.unwrap_or(true);
        let until = filters
            .get("until")
            .iter()
            .map(|u| parse_until(u))
            .collect::<Result<Vec<_>>>()?;
        let mut report = PruneReport::default();
        // Dangling, as Docker means it: untagged and no image's parent (a build's
        // intermediate images stay while the image built on them does). A pass that
        // removed an image may have left its parent dangling: passes go on until one
        // removes nothing.
        loop {
            let parents: HashSet<Digest> = self
                .store()
                .meta
                .images()?
                .into_iter()
                .filter_map(|r| r.parent)
                .collect();
            let before = report.deleted.len();
            for (s, _) in self.summaries()? {
                if dangling_only && (!s.repo_tags.is_empty() || parents.contains(&s.id)) {
                    continue;
                }
                if !self.users_of(&s.id)?.is_empty() {
                    continue;
                }
                if !until.iter().all(|u| s.created < *u)
                    || !filters.labels_match("label", &s.labels)
                {
                    continue;
                }
                if filters.get("label!").iter().any(|f| {
                    Filters(BTreeMap::from([("l".to_string(), vec![f.clone()])]))
                        .labels_match("l", &s.labels)
                }) {
                    continue;
                }
                for t in self.store().meta.delete_image(&s.id)? {
                    report.deleted.push(DeleteItem::Untagged(t.familiar()));
                }
                report.deleted.push(DeleteItem::Deleted(s.id));
            }
            if !dangling_only || report.deleted.len() == before {
                break;
            }
        }
        report.space_reclaimed = self.collect_after_delete();
        info!(
            images = report.deleted.len(),
            bytes_freed = report.space_reclaimed,
            "images pruned"
        );
        Ok(report)
    }

    /// The build cache (`docker system df`'s Build Cache): the intermediate images of
    /// builds here, untagged, each with the size of the layer it added (0 for a step that
    /// changed the config only) and the step that made it.
    pub fn build_cache(&self) -> Result<Vec<BuildCacheEntry>> {
        let images = self.store().meta.images()?;
        let tagged: HashSet<Digest> = self
            .store()
            .meta
            .tags()?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let sizes = self.snapshot_sizes()?;
        let by_id: HashMap<Digest, &ImageRecord> = images.iter().map(|r| (r.id, r)).collect();
        let children: HashSet<Digest> = images.iter().filter_map(|r| r.parent).collect();
        let mut out = Vec::new();
        for rec in &images {
            if rec.source != "build" || tagged.contains(&rec.id) {
                continue;
            }
            let parent_layers = rec
                .parent
                .and_then(|p| by_id.get(&p))
                .map_or(0, |p| p.layers.len());
            let size = rec
                .layers
                .get(parent_layers..)
                .unwrap_or(&[])
                .iter()
                .map(|l| sizes.get(&l.diff_id).copied().unwrap_or(0))
                .sum();
            let cfg = self.config_of(rec)?;
            out.push(BuildCacheEntry {
                id: rec.id,
                parent: rec.parent,
                description: cfg
                    .history
                    .last()
                    .and_then(|h| h.created_by.clone())
                    .unwrap_or_default(),
                in_use: !self.users_of(&rec.id)?.is_empty(),
                shared: children.contains(&rec.id),
                size,
                created: cfg.created.clone().unwrap_or_default(),
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// `docker builder prune`: removes the build cache (see [`Engine::build_cache`]) that
    /// no container uses; with `all` false, only the entries no other image is built on
    /// (in passes, so a chain of them goes); and the kept build contexts no build holds
    /// (with `all` false, those whose image is gone). Returns the IDs removed and the
    /// bytes freed.
    pub fn prune_build_cache(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        loop {
            let before = removed.len();
            for e in self.build_cache()? {
                if e.in_use || (!all && e.shared) {
                    continue;
                }
                self.store().meta.delete_image(&e.id)?;
                removed.push(e.id);
            }
            if removed.len() == before {
                break;
            }
        }
        let freed = self.collect_after_delete();
        let (contexts, context_bytes) = self.prune_kept_contexts(all)?;
        let mut ids: Vec<String> = removed.iter().map(|d| d.to_string()).collect();
        ids.extend(contexts);
        let freed = freed + context_bytes;
        info!(
            entries = ids.len(),
            bytes_freed = freed,
            "build cache pruned"
        );
        Ok((ids, freed))
    }

    /// Disk usage of images and layers (`docker system df`).
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let layers_size = self.snapshot_sizes()?.values().sum();
        let mut blobs_size = 0;
        for d in self.store().content.list()? {
            blobs_size += self.store().content.size(&d).unwrap_or(0);
        }
        let images = self.summaries()?.into_iter().map(|(s, _)| s).collect();
        Ok(DiskUsage {
            layers_size,
            blobs_size,
            images,
        })
    }

    /// Collects what deleted images leave (bytes freed): a failure is logged, not
    /// returned, since the deletions it follows are committed (the next collection, at
    /// the latest at daemon start, takes what this one could not). Then the space
    /// reserve is taken again if it was used.
    fn collect_after_delete(&self) -> u64 {
        let freed = match self.store().gc_with_roots(|| self.gc_roots()) {
            Ok(gc) => gc.bytes_freed,
            Err(e) => {
                warn!(error = %e, "collecting unreferenced blobs and layers failed; the next collection retries");
                0
            }
        };
        self.inner.reserve.ensure();
        freed
    }

    /// Runs a metadata write that frees space; on a full disk, frees the space reserve
    /// and runs it once more.
    pub(crate) fn with_space_reserve<T>(
        &self,
        mut f: impl FnMut() -> berth_store::Result<T>,
    ) -> berth_store::Result<T> {
        match f() {
            Err(e) if e.is_no_space() && self.inner.reserve.release() => f(),
            r => r,
        }
    }

    /// Runs garbage collection (for `system prune` and tests).
    pub fn collect_garbage(&self) -> Result<u64> {
        Ok(self.store().gc_with_roots(|| self.gc_roots())?.bytes_freed)
    }

    /// Counts for `/info`.
    pub fn image_count(&self) -> Result<usize> {
        Ok(self.store().meta.images()?.len())
    }

    /// The runtime config of an image (for containers, later).
    pub fn run_config(&self, name: &str) -> Result<RunConfig> {
        let (rec, _) = self.resolve(name)?;
        Ok(self.config_of(&rec)?.config.unwrap_or_default())
    }
}

/// `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        }),
        _ => Err(EngineError::invalid(format!(
            "platform {s:?}: expected os/arch[/variant]"
        ))),
    }
}

/// `until` values: a Unix timestamp, an RFC 3339 time, or a duration like `24h`, `90m`.
pub(crate) fn parse_until(s: &str) -> Result<i64> {
    let now = chrono::Utc::now().timestamp();
    if let Ok(n) = s.parse::<f64>() {
        return Ok(n as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        EngineError::invalid(format!(
            "invalid filter 'until={s}': not a time or duration"
        ))
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => {
            return Err(EngineError::invalid(format!(
                "invalid filter 'until={s}': unit must be s, m or h"
            )))
        }
    };
    Ok(now - secs)
}

/// Shell-style glob with `*` and `?` (`*` does not cross `/`, as Docker's path.Match).
pub fn glob_match(pat: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pat.as_bytes(), s.as_bytes())
}
