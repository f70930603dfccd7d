//! `--user`: resolving `uid`, `uid:gid`, `name`, `name:group` against the image's
//! `/etc/passwd` and `/etc/group`.
//!
//! Both files are read **inside the rootfs**: opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` relative to the rootfs directory, so a symlink in the image
//! (`/etc/passwd -> /etc/shadow` of the host, or `../../..`) resolves within the rootfs and
//! never reaches the host. On kernels without openat2 the path is walked component by
//! component with `O_NOFOLLOW` and a symlink anywhere is refused.
//!
//! Semantics follow runc's `GetExecUser` (which Docker uses): a numeric uid need not exist
//! in /etc/passwd (its gid is then 0); a name must; the primary gid defaults to the
//! passwd entry's; supplementary gids come from /etc/group membership only when no
//! group is given explicitly; ids must be in 0..=2147483647.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The largest /etc/passwd or /etc/group berth reads (an image could ship a huge one).
const MAX_DB_BYTES: u64 = 16 << 20;
const MAX_ID: u32 = i32::MAX as u32;

/// An error resolving a user or group.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {user:?}: no matching entry in {file}")]
    UnknownUser { user: String, file: PathBuf },
    #[error("group {group:?}: no matching entry in {file}")]
    UnknownGroup { group: String, file: PathBuf },
    #[error("user {spec:?}: {what} {id} is out of range (0 to 2147483647)")]
    OutOfRange {
        spec: String,
        what: &'static str,
        id: String,
    },
    #[error("user {spec:?}: empty user name")]
    Empty { spec: String },
    #[error("reading {file} inside the rootfs: {rule}")]
    Unsafe { file: PathBuf, rule: String },
    #[error("reading {file} inside the rootfs: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The process identity a `--user` value resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The passwd name, when there is an entry.
    pub username: Option<String>,
}

#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Opens `path` (absolute or relative, taken relative to `root`) for reading, resolving
/// every component inside `root`. Returns `Ok(None)` when it does not exist.
pub fn open_in_root(root: &Path, path: &Path) -> Result<Option<File>, UserError> {
    let shown = root.join(path.strip_prefix("/").unwrap_or(path));
    let io_err = |e: Errno| UserError::Io {
        file: shown.clone(),
        source: io::Error::from(e),
    };
    let root_fd = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd: OwnedFd = match rfs::openat2(
        &root_fd,
        path,
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::NOSYS) => match walk_nofollow(&root_fd, path, flags) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(UserError::Unsafe {
                    file: shown,
                    rule: "a symlink on the path is refused (this kernel has no openat2 to resolve it safely)".into(),
                })
            }
            Err(e) => return Err(io_err(e)),
        },
        Err(e) => return Err(io_err(e)),
    };
    let st = rfs::fstat(&fd).map_err(io_err)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(UserError::Unsafe {
            file: shown,
            rule: "not a regular file".into(),
        });
    }
    Ok(Some(File::from(fd)))
}

/// The fallback for kernels without openat2: `O_NOFOLLOW` at every step, so any symlink
/// fails with ELOOP; `..` is refused the same way.
fn walk_nofollow(root: &OwnedFd, path: &Path, flags: OFlags) -> Result<Option<OwnedFd>, Errno> {
    let comps: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::ParentDir => Some(Err(())),
            _ => None,
        })
        .collect::<Result<_, _>>()
        .map_err(|()| Errno::LOOP)?;
    let Some((last, dirs)) = comps.split_last() else {
        return Err(Errno::ISDIR);
    };
    let mut cur = rfs::openat(
        root,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for d in dirs {
        cur = match rfs::openat(
            &cur,
            *d,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::NOTDIR) => return Err(Errno::LOOP),
            Err(e) => return Err(e),
        };
    }
    match rfs::openat(&cur, *last, flags | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_db(rootfs: &Path, rel: &str) -> Result<Option<String>, UserError> {
    let Some(f) = open_in_root(rootfs, Path::new(rel))? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    f.take(MAX_DB_BYTES)
        .read_to_end(&mut buf)
        .map_err(|source| UserError::Io {
            file: rootfs.join(rel.trim_start_matches('/')),
            source,
        })?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn parse_id(spec: &str, what: &'static str, s: &str) -> Result<Option<u32>, UserError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id)),
        _ => Err(UserError::OutOfRange {
            spec: spec.into(),
            what,
            id: s.into(),
        }),
    }
}

/// Resolves a `--user` value (or the image's `User`) against the rootfs. `group_add` are
/// extra groups (`--group-add`, names or gids) appended to the supplementary gids.
pub fn resolve(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, UserError> {
    let spec_t = spec.trim();
    let spec_t = if spec_t.is_empty() { "0" } else { spec_t };
    let (user_part, group_part) = match spec_t.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec_t, None),
    };
    if user_part.is_empty() {
        return Err(UserError::Empty { spec: spec.into() });
    }
    let passwd_path = rootfs.join("etc/passwd");
    let group_path = rootfs.join("etc/group");
    let passwd = read_db(rootfs, "/etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let need_groups = group_part.is_some_and(|g| parse_id(spec, "gid", g).ok().flatten().is_none())
        || group_part.is_none()
        || !group_add.is_empty();
    let groups = if need_groups {
        read_db(rootfs, "/etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };

    let entry = match parse_id(spec, "uid", user_part)? {
        Some(uid) => passwd.iter().find(|e| e.uid == uid),
        None => Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            UserError::UnknownUser {
                user: user_part.into(),
                file: passwd_path.clone(),
            }
        })?),
    };
    let uid = match parse_id(spec, "uid", user_part)? {
        Some(uid) => uid,
        None => entry.map(|e| e.uid).unwrap_or(0),
    };
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);
    let mut additional = Vec::new();
    match group_part {
        Some(g) => {
            gid = match parse_id(spec, "gid", g)? {
                Some(id) => id,
                None => lookup_group(&groups, g, &group_path)?,
            };
        }
        None => {
            if let Some(e) = entry {
                for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
                    if !additional.contains(&g.gid) {
                        additional.push(g.gid);
                    }
                }
            }
        }
    }
    for g in group_add {
        let id = match parse_id(spec, "gid", g)? {
            Some(id) => id,
            None => lookup_group(&groups, g, &group_path)?,
        };
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        username: entry.map(|e| e.name.clone()),
    })
}

fn lookup_group(groups: &[GroupEntry], name: &str, file: &Path) -> Result<u32, UserError> {
    groups
        .iter()
        .find(|g| g.name == name)
        .map(|g| g.gid)
        .ok_or_else(|| UserError::UnknownGroup {
            group: name.into(),
            file: file.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nwww:x:33:33::/var/www:/bin/false\napp:x:1000:1001:App:/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\napp:x:1001:\naudio:x:29:app,www\nvideo:x:44:app\nstaff:x:50:\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn numeric_forms() {
        let d = rootfs();
        let u = resolve(d.path(), "1000", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
        assert_eq!(u.additional_gids, vec![29, 44]);
        assert_eq!(u.username.as_deref(), Some("app"));
        let u = resolve(d.path(), "4242", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.username), (4242, 0, None));
        let u = resolve(d.path(), "1000:7", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 7));
        assert!(
            u.additional_gids.is_empty(),
            "explicit group: no supplementary groups"
        );
        let u = resolve(d.path(), "", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn name_forms() {
        let d = rootfs();
        let u = resolve(d.path(), "www", &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (33, 33, vec![29])
        );
        let u = resolve(d.path(), "app:staff", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        let u = resolve(d.path(), "www", &["video".into(), "77".into()]).unwrap();
        assert_eq!(u.additional_gids, vec![29, 44, 77]);
    }

    #[test]
    fn unknown_names_name_the_user_and_file() {
        let d = rootfs();
        let e = resolve(d.path(), "nobody", &[]).unwrap_err().to_string();
        assert!(e.contains("\"nobody\"") && e.contains("etc/passwd"), "{e}");
        let e = resolve(d.path(), "app:wheel", &[]).unwrap_err().to_string();
        assert!(e.contains("\"wheel\"") && e.contains("etc/group"), "{e}");
        let e = resolve(d.path(), "99999999999", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = resolve(empty.path(), "app", &[]).unwrap_err().to_string();
        assert!(e.contains("etc/passwd"), "{e}");
        assert_eq!(resolve(empty.path(), "5:6", &[]).unwrap().uid, 5);
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs_never_on_the_host() {
        // The "host" file an attacker would like berth to read.
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("passwd"), "evil:x:4444:4444::/:/bin/sh\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::create_dir_all(d.path().join("lib")).unwrap();
        fs::write(d.path().join("lib/passwd"), "inner:x:7:7::/:/bin/sh\n").unwrap();
        // Absolute target: resolved against the rootfs, so /lib/passwd of the image.
        std::os::unix::fs::symlink("/lib/passwd", d.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve(d.path(), "inner", &[]).unwrap().uid, 7);
        // A target climbing out: clamped at the rootfs root, never the host file.
        fs::remove_file(d.path().join("etc/passwd")).unwrap();
        let escape = format!("../../../../../../..{}/passwd", host.path().display());
        std::os::unix::fs::symlink(&escape, d.path().join("etc/passwd")).unwrap();
        let e = resolve(d.path(), "evil", &[]).unwrap_err().to_string();
        assert!(e.contains("\"evil\""), "{e}");
        // /etc itself a symlink to the host's /etc: still inside.
        fs::remove_file(d.path().join("etc/passwd")).unwrap();
        fs::remove_dir(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path(), d.path().join("etc")).unwrap();
        assert!(resolve(d.path(), "evil", &[]).is_err());
    }

    #[test]
    fn nofollow_walk_refuses_symlinks() {
        let d = rootfs();
        std::os::unix::fs::symlink("/etc", d.path().join("etc2")).unwrap();
        let root = rfs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(
            walk_nofollow(&root, Path::new("/etc/passwd"), OFlags::RDONLY)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            walk_nofollow(&root, Path::new("/etc2/passwd"), OFlags::RDONLY).unwrap_err(),
            Errno::LOOP
        );
        assert_eq!(
            walk_nofollow(&root, Path::new("/etc/../etc/passwd"), OFlags::RDONLY).unwrap_err(),
            Errno::LOOP
        );
        assert!(
            walk_nofollow(&root, Path::new("/etc/nothing"), OFlags::RDONLY)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn non_regular_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc/passwd")).unwrap();
        let e = resolve(d.path(), "x", &[]).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
