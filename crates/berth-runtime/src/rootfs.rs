//! The root filesystem of a container: an overlayfs mount of the image's layer snapshots
//! (read-only, shared by every container of the image) under a per-container upper dir.
//!
//! Lifecycle: [`OverlayRootfs::mount`] when the container is created (or started again
//! after a reboot), [`unmount`] when it is removed. The layout under the container's
//! directory is:
//!
//! ```text
//! STATE/containers/<id>/
//!   upper/   the container's writes (overlay upperdir)
//!   work/    overlay's scratch directory (same filesystem as upper)
//!   empty/   the only lower dir of an image with no layers (overlay needs one)
//!   rootfs/  the mount point
//! ```
//!
//! Lower dirs are given top layer first, as overlayfs stacks them. An image listing one
//! layer twice (the same diff_id at two positions) is legal in OCI, but overlayfs refuses
//! a repeated lower dir; the topmost occurrence is kept, which is exact: the lower copy is
//! entirely shadowed by the identical one above it (the same files and the same
//! whiteouts, higher in the stack).
//!
//! Length limits: mount(2) takes its options as one string of at most a page (4096
//! bytes), about 40 snapshot paths. The new mount API (`fsopen`/`fsconfig`, Linux 6.8+ for
//! `lowerdir+`) passes each lower dir separately, so only overlay's own limit of 500
//! lower dirs ([`MAX_LOWER_DIRS`]) remains. It is tried first; on older kernels the
//! option string is used, and one too long is refused with an error saying so.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

/// overlayfs refuses more lower dirs than this (`OVL_MAX_STACK`).
pub const MAX_LOWER_DIRS: usize = 500;
/// mount(2) copies at most one page of option data.
pub const MAX_MOUNT_DATA: usize = 4095;

/// An error preparing, mounting or unmounting a container's rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("container rootfs {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("container rootfs {path}: {rule}")]
    Rule { path: PathBuf, rule: String },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The overlay of one container.
#[derive(Debug, Clone)]
pub struct OverlayRootfs {
    /// Layer snapshot directories, **bottom first** (the order of the image's diff_ids).
    pub layers: Vec<PathBuf>,
    /// The container's directory (`STATE/containers/<id>`).
    pub container_dir: PathBuf,
    /// Mount with overlayfs's `volatile` option: the overlay never syncs its upper dir
    /// (no `syncfs` of the whole state filesystem at unmount, which costs tens of
    /// milliseconds on a busy host). After a host crash such an upper dir cannot be
    /// mounted again; berth uses it only for `--rm` containers, which are removed then.
    pub volatile: bool,
    /// With user-namespace remapping: the container's kept user namespace and its
    /// mapping. Each lower dir is then an idmapped mount of its snapshot under
    /// `lower/N` (files of the image owned by id N appear as the container's N), and the
    /// upper dir is owned by the container's root.
    pub idmap: Option<(PathBuf, crate::userns::IdMap)>,
}

impl OverlayRootfs {
    pub fn new(layers: Vec<PathBuf>, container_dir: &Path) -> OverlayRootfs {
        OverlayRootfs {
            layers,
            container_dir: container_dir.to_path_buf(),
            volatile: false,
            idmap: None,
        }
    }

    /// The mount point: `<container_dir>/rootfs`.
    pub fn target(&self) -> PathBuf {
        self.container_dir.join("rootfs")
    }

    /// Lower dirs for overlayfs: top layer first, each directory once (the topmost
    /// occurrence kept), or the container's empty dir for an image without layers.
    pub fn lower_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::with_capacity(self.layers.len());
        for l in self.layers.iter().rev() {
            if !out.contains(l) {
                out.push(l.clone());
            }
        }
        if out.is_empty() {
            out.push(self.container_dir.join("empty"));
        }
        out
    }

    /// Creates upper, work, the mount point and (for an image without layers) empty,
    /// then mounts the overlay on [`target`](Self::target) unless it is mounted already.
    /// Returns the mount point.
    pub fn mount(&self) -> Result<PathBuf, RootfsError> {
        let target = self.target();
        let empty = self.layers.is_empty().then_some("empty");
        for d in ["upper", "work", "rootfs"].into_iter().chain(empty) {
            let p = self.container_dir.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p, "create directory"))?;
        }
        if is_mount_point(&target)? {
            return Ok(target);
        }
        let lowers = self.lower_dirs();
        if lowers.len() > MAX_LOWER_DIRS {
            return Err(RootfsError::Rule {
                path: target,
                rule: format!(
                    "the image has {} distinct layers; overlayfs stacks at most {MAX_LOWER_DIRS}",
                    lowers.len()
                ),
            });
        }
        for l in &lowers {
            if !l.is_dir() {
                return Err(RootfsError::Rule {
                    path: target,
                    rule: format!("layer snapshot {} is missing", l.display()),
                });
            }
            if l.to_str().is_none_or(|s| s.contains([':', ','])) {
                return Err(RootfsError::Rule {
                    path: target,
                    rule: format!(
                        "layer snapshot path {} contains ':' or ',' (overlay option separators)",
                        l.display()
                    ),
                });
            }
        }
        let upper = self.container_dir.join("upper");
        let work = self.container_dir.join("work");
        let lowers = match &self.idmap {
            None => lowers,
            Some((userns, map)) => self.idmapped_lowers(&lowers, userns, map, &upper)?,
        };
        match mount_fsconfig(&lowers, &upper, &work, &target, self.volatile) {
            Ok(()) => Ok(target),
            // ENOSYS: no new mount API; EINVAL: a kernel before 6.8 without `lowerdir+`.
            Err(e)
                if matches!(e.raw_os_error(), Some(c)
                    if c == rustix::io::Errno::NOSYS.raw_os_error()
                        || c == rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                mount_legacy(&lowers, &upper, &work, &target)?;
                Ok(target)
            }
            Err(e) => Err(RootfsError::Io {
                path: target,
                action: "mount overlay (fsconfig)",
                source: e,
            }),
        }
    }
}

impl OverlayRootfs {
    /// Idmapped mounts of `lowers` under `lower/N` (made unless mounted already), and
    /// the upper dir chowned to the container's root.
    fn idmapped_lowers(
        &self,
        lowers: &[PathBuf],
        userns: &Path,
        map: &crate::userns::IdMap,
        upper: &Path,
    ) -> Result<Vec<PathBuf>, RootfsError> {
        let ns = crate::userns::open(userns).map_err(|e| RootfsError::Rule {
            path: self.target(),
            rule: e.to_string(),
        })?;
        crate::userns::chown_to_root(upper, map)
            .map_err(io_err(upper, "chown to the container's root"))?;
        let base = self.container_dir.join("lower");
        let mut out = Vec::with_capacity(lowers.len());
        for (i, l) in lowers.iter().enumerate() {
            let at = base.join(i.to_string());
            fs::create_dir_all(&at).map_err(io_err(&at, "create directory"))?;
            if !is_mount_point(&at)? {
                crate::userns::idmap_mount(l, &at, &ns).map_err(|source| RootfsError::Io {
                    path: at.clone(),
                    action: "idmapped mount of a layer (open_tree, mount_setattr MOUNT_ATTR_IDMAP, move_mount)",
                    source,
                })?;
            }
            out.push(at);
        }
        Ok(out)
    }
}

/// Unmounts the idmapped lower dirs of a remapped container (`lower/N`) and removes them.
fn unmount_lowers(container_dir: &Path) {
    let base = container_dir.join("lower");
    let Ok(entries) = fs::read_dir(&base) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let _ = rustix::mount::unmount(&p, UnmountFlags::DETACH);
        let _ = fs::remove_dir(&p);
    }
    let _ = fs::remove_dir(&base);
}

/// The new mount API: each lower dir is its own `lowerdir+` key, so no page limit.
fn mount_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&fs, "source", "berth")?;
    if volatile {
        rustix::mount::fsconfig_set_flag(&fs, "volatile")?;
    }
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    fsconfig_set_string(&fs, "upperdir", upper)?;
    fsconfig_set_string(&fs, "workdir", work)?;
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// mount(2) with an option string; refused when longer than a page.
fn mount_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    let lower = lowers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::Rule {
            path: target.to_path_buf(),
            rule: format!(
                "the overlay options of {} layers are {} bytes, over mount(2)'s limit of {MAX_MOUNT_DATA}, and this kernel lacks fsconfig lowerdir+ (Linux 6.8+)",
                lowers.len(),
                data.len()
            ),
        });
    }
    let data = std::ffi::CString::new(data).map_err(|_| RootfsError::Rule {
        path: target.to_path_buf(),
        rule: "overlay options contain a NUL byte".into(),
    })?;
    rustix::mount::mount(
        "berth",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| RootfsError::Io {
        path: target.to_path_buf(),
        action: "mount overlay",
        source: e.into(),
    })
}

/// Whether `path` is the root of a mount (its mount ID differs from its parent's, or it
/// is an overlay whose device differs from the parent's).
pub fn is_mount_point(path: &Path) -> Result<bool, RootfsError> {
    use std::os::unix::fs::MetadataExt;
    let me = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, "stat")(e)),
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let pm = fs::symlink_metadata(parent).map_err(io_err(parent, "stat"))?;
    if me.dev() != pm.dev() {
        return Ok(true);
    }
    // Same device: a bind mount of the same filesystem, or no mount point. The mount
    // IDs tell (Linux 5.8); mountinfo on older kernels (read whole, it costs about a
    // millisecond per hundred mounts, on the path of every start and removal).
    if let (Some(mine), Some(parents)) = (mount_id(path), mount_id(parent)) {
        return Ok(mine != parents);
    }
    let want = path.to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err(Path::new("/proc/self/mountinfo"), "read"))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want))
}

/// The ID of the mount `path` is on (not following a last symlink); None where statx
/// has no `STATX_MNT_ID` (before Linux 5.8).
fn mount_id(path: &Path) -> Option<u64> {
    use rustix::fs::{AtFlags, StatxFlags, CWD};
    let st = rustix::fs::statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::MNT_ID,
    )
    .ok()?;
    StatxFlags::from_bits_retain(st.stx_mask)
        .contains(StatxFlags::MNT_ID)
        .then_some(st.stx_mnt_id)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts a container's rootfs (`<container_dir>/rootfs`); nothing to do when it is not
/// mounted. A busy mount is detached lazily (`MNT_DETACH`) so removal never hangs on a
/// process that still holds a file open in it.
pub fn unmount(container_dir: &Path) -> Result<(), RootfsError> {
    let target = container_dir.join("rootfs");
    // EINVAL: not a mount point (any more). Two unmounts may race (the end of a start
    // and the removal of a container that exited at once): the one that finds it gone
    // has nothing left to do.
    while is_mount_point(&target)? {
        match rustix::mount::unmount(&target, UnmountFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::BUSY) => {
                match rustix::mount::unmount(&target, UnmountFlags::DETACH) {
                    Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                    Err(e) => {
                        return Err(RootfsError::Io {
                            path: target.clone(),
                            action: "unmount (detach)",
                            source: e.into(),
                        })
                    }
                }
            }
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => {
                return Err(RootfsError::Io {
                    path: target,
                    action: "unmount",
                    source: e.into(),
                })
            }
        }
    }
    unmount_lowers(container_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_dirs_are_top_first_and_deduplicated_keeping_the_topmost() {
        let r = OverlayRootfs::new(
            vec!["/s/a".into(), "/s/b".into(), "/s/a".into(), "/s/c".into()],
            Path::new("/c/x"),
        );
        assert_eq!(
            r.lower_dirs(),
            vec![PathBuf::from("/s/c"), "/s/a".into(), "/s/b".into()]
        );
    }

    #[test]
    fn an_image_without_layers_gets_the_empty_lower_dir() {
        let r = OverlayRootfs::new(vec![], Path::new("/c/x"));
        assert_eq!(r.lower_dirs(), vec![PathBuf::from("/c/x/empty")]);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn layer(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let p = dir.join(name);
        fs::create_dir_all(&p).unwrap();
        for (f, c) in files {
            fs::write(p.join(f), c).unwrap();
        }
        p
    }

    #[test]
    fn mounts_the_stack_with_a_repeated_layer_and_unmounts() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let a = layer(t.path(), "a", &[("f", "a"), ("only-a", "1")]);
        let b = layer(t.path(), "b", &[("f", "b")]);
        let r = OverlayRootfs::new(vec![a.clone(), b, a], &t.path().join("c"));
        let target = r.mount().unwrap();
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "a");
        assert!(target.join("only-a").exists());
        fs::write(target.join("new"), "x").unwrap();
        assert!(t.path().join("c/upper/new").exists());
        // Mounting again is a no-op.
        r.mount().unwrap();
        unmount(&r.container_dir).unwrap();
        assert!(!is_mount_point(&target).unwrap());
        assert!(!target.join("f").exists());
    }

    #[test]
    fn a_bind_mount_of_the_same_filesystem_is_a_mount_point() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (src, at) = (t.path().join("src"), t.path().join("at"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&at).unwrap();
        assert!(!is_mount_point(&at).unwrap());
        assert!(!is_mount_point(&t.path().join("missing")).unwrap());
        rustix::mount::mount_bind(&src, &at).unwrap();
        // Same device as its parent: told by the mount IDs (or mountinfo).
        let is = is_mount_point(&at);
        rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH).unwrap();
        assert!(is.unwrap());
        assert!(!is_mount_point(&at).unwrap());
    }

    #[test]
    fn mounts_more_layers_than_fit_in_a_page_of_options() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let long = t.path().join("x".repeat(150));
        let layers: Vec<PathBuf> = (0..60)
            .map(|i| layer(&long, &format!("{i:03}"), &[(&format!("f{i}"), "")]))
            .collect();
        let r = OverlayRootfs::new(layers, &t.path().join("c"));
        let target = r.mount().unwrap();
        assert!(target.join("f0").exists() && target.join("f59").exists());
        unmount(&r.container_dir).unwrap();
    }

    #[test]
    fn empty_image_mounts_an_empty_rootfs() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let r = OverlayRootfs::new(vec![], &t.path().join("c"));
        let target = r.mount().unwrap();
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
        unmount(&r.container_dir).unwrap();
    }
}
