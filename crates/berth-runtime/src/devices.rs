//! Host devices passed to a container (`--device`) and extra device cgroup rules
//! (`--device-cgroup-rule`), as Docker 20.10 turns them into the OCI spec.
//!
//! - A mapping `PathOnHost:PathInContainer:CgroupPermissions` becomes a node in the
//!   container's /dev (`linux.devices`, made by the runtime with the host node's type,
//!   numbers, mode and owner) and an allow rule for its numbers with the permissions
//!   (`linux.resources.devices`). A host symlink is followed; a directory passes every
//!   device node below it (Docker's walk: nodes only, symlinks inside are not followed).
//! - A rule `TYPE MAJOR:MINOR ACCESS` (`c 1:3 rwm`, `b *:* m`) is an allow rule only.
//!
//! berth checks both at create (Docker only when the container starts), so a bad device
//! or rule creates nothing; the spec generation at create resolves the host nodes.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};
use serde::{Deserialize, Serialize};

/// One `--device`, as Docker's `DeviceMapping` (and inspect's `HostConfig.Devices`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// A device or rule berth refuses. Messages are Docker's where Docker has words.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Docker's `DevicesFromPath` error: a host path that is missing, unreadable, or
    /// neither a device node nor a directory holding some.
    #[error("error gathering device information while adding custom device {path:?}: {reason}")]
    Gather { path: String, reason: String },
    /// Docker's CLI words for permissions other than a combination of r, w and m.
    #[error("bad mode specified: {mode} (device {path:?}: the permissions are r, w and m, each at most once)")]
    Mode { path: String, mode: String },
    #[error("device {path:?}: the path in the container ({container:?}) {rule}")]
    ContainerPath {
        path: String,
        container: String,
        rule: &'static str,
    },
    /// Docker's words (`oci.AppendDevicePermissionsFromCgroupRules`).
    #[error("invalid device cgroup rule format: '{0}'")]
    RuleFormat(String),
    #[error("invalid {which} value in device cgroup rule format: '{rule}'")]
    RuleNumber { which: &'static str, rule: String },
}

/// The largest major and minor numbers of a Linux device (12 and 20 bits).
const MAX_MAJOR: i64 = (1 << 12) - 1;
const MAX_MINOR: i64 = (1 << 20) - 1;

/// Go's text of an errno (`no such file or directory`): Rust's without the
/// `(os error N)` suffix, lowercased as Go's syscall package words them.
fn errno_words(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(at) => &s[..at],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Whether `mode` is Docker's valid device mode: r, w and m, each at most once, not empty.
pub fn valid_mode(mode: &str) -> bool {
    !mode.is_empty()
        && mode.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && ["r", "w", "m"].iter().all(|c| mode.matches(c).count() <= 1)
}

/// The container path, lexically cleaned (`/dev/./x` → `/dev/x`; `..` pops).
fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Checks a mapping's permissions and container path (what can be checked without the
/// host's nodes). The container path must be absolute and below /dev: the runtime
/// (youki's libcontainer) creates device nodes only there, where Docker's runc makes
/// them anywhere in the rootfs; so another path is refused by name.
pub fn check_mapping(m: &DeviceMapping) -> Result<(), DeviceError> {
    if !valid_mode(&m.cgroup_permissions) {
        return Err(DeviceError::Mode {
            path: m.path_on_host.clone(),
            mode: m.cgroup_permissions.clone(),
        });
    }
    if m.path_on_host.is_empty() {
        return Err(DeviceError::Gather {
            path: String::new(),
            reason: "no such file or directory".into(),
        });
    }
    let container_path = if m.path_in_container.is_empty() {
        &m.path_on_host
    } else {
        &m.path_in_container
    };
    let err = |rule| DeviceError::ContainerPath {
        path: m.path_on_host.clone(),
        container: container_path.clone(),
        rule,
    };
    if !container_path.starts_with('/') {
        return Err(err("is not an absolute path"));
    }
    if container_path.contains('\0') {
        return Err(err("holds a NUL byte"));
    }
    let cleaned = clean(container_path);
    if !cleaned.starts_with("/dev") || cleaned == Path::new("/dev") {
        return Err(err(
            "must be below /dev: berth's runtime creates device nodes only there (a path elsewhere is not supported yet)",
        ));
    }
    Ok(())
}

/// The device node at `path` (not followed): Docker's `DeviceFromPath`. `None` when it
/// is not a character or block device.
fn node(path: &Path) -> Result<Option<(LinuxDeviceType, fs::Metadata)>, std::io::Error> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    Ok(Some((typ, md)))
}

fn spec_device(
    container_path: &Path,
    typ: LinuxDeviceType,
    md: &fs::Metadata,
) -> Option<LinuxDevice> {
    let rdev = md.rdev();
    LinuxDeviceBuilder::default()
        .path(container_path)
        .typ(typ)
        .major(rustix::fs::major(rdev) as i64)
        .minor(rustix::fs::minor(rdev) as i64)
        .file_mode(md.mode() & 0o7777)
        .uid(md.uid())
        .gid(md.gid())
        .build()
        .ok()
}

fn allow(dev: &LinuxDevice, access: &str) -> Option<LinuxDeviceCgroup> {
    LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(dev.typ())
        .major(dev.major())
        .minor(dev.minor())
        .access(access)
        .build()
        .ok()
}

/// The nodes and allow rules of one mapping, from the host's /dev now (Docker's
/// `DevicesFromPath`): the node itself, or every node below a directory, in lexical
/// order, at the same place below the container path.
pub fn resolve(
    m: &DeviceMapping,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), DeviceError> {
    let (nodes, rules) = resolve_nodes(m)?;
    Ok((nodes.into_iter().map(|n| n.device).collect(), rules))
}

/// A device node a mapping gives the container: its node in the spec and the host's
/// node it is (what a user-namespaced container gets bind-mounted: it cannot mknod).
#[derive(Debug, Clone)]
pub struct MappedNode {
    pub host: PathBuf,
    pub device: LinuxDevice,
}

/// [`resolve`], keeping each node's host path.
pub fn resolve_nodes(
    m: &DeviceMapping,
) -> Result<(Vec<MappedNode>, Vec<LinuxDeviceCgroup>), DeviceError> {
    check_mapping(m)?;
    let gather = |reason: String| DeviceError::Gather {
        path: m.path_on_host.clone(),
        reason,
    };
    let container_path = clean(if m.path_in_container.is_empty() {
        &m.path_on_host
    } else {
        &m.path_in_container
    });
    let mut host = PathBuf::from(&m.path_on_host);
    if fs::symlink_metadata(&host).is_ok_and(|md| md.file_type().is_symlink()) {
        if let Ok(resolved) = fs::canonicalize(&host) {
            host = resolved;
        }
    }
    let (mut devs, mut rules) = (Vec::new(), Vec::new());
    match node(&host) {
        Err(e) => return Err(gather(errno_words(&e))),
        Ok(Some((typ, md))) => {
            if let Some(d) = spec_device(&container_path, typ, &md) {
                rules.extend(allow(&d, &m.cgroup_permissions));
                devs.push(MappedNode {
                    host: host.clone(),
                    device: d,
                });
            }
        }
        Ok(None) => {
            if fs::metadata(&host).is_ok_and(|md| md.is_dir()) {
                walk(&host, &host, &container_path, &mut devs);
                rules = devs
                    .iter()
                    .filter_map(|n| allow(&n.device, &m.cgroup_permissions))
                    .collect();
            }
        }
    }
    if devs.is_empty() {
        // Docker's text of runc's ErrNotADevice.
        return Err(gather("not a device node".into()));
    }
    Ok((devs, rules))
}

/// Every device node below `dir` (symlinks are not followed), depth first in lexical
/// order as Go's `filepath.WalkDir`; unreadable entries are skipped, as Docker does.
fn walk(root: &Path, dir: &Path, container_root: &Path, out: &mut Vec<MappedNode>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        if md.is_dir() {
            walk(root, &path, container_root, out);
            continue;
        }
        if let Ok(Some((typ, md))) = node(&path) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            if let Some(d) = spec_device(&container_root.join(rel), typ, &md) {
                out.push(MappedNode {
                    host: path.clone(),
                    device: d,
                });
            }
        }
    }
}

/// One `--device-cgroup-rule`, as Docker 20.10 parses it: `^([acb]) ([0-9]+|\*):([0-9]+|\*)
/// ([rwm]{1,3})$`, an allow rule. (`a` means every device, whatever follows, as the
/// kernel reads it.)
pub fn parse_rule(rule: &str) -> Result<LinuxDeviceCgroup, DeviceError> {
    let bad = || DeviceError::RuleFormat(rule.to_string());
    let mut parts = rule.split(' ');
    let (Some(typ), Some(numbers), Some(access), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let typ = match typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |s: &str, which: &'static str, max: i64| -> Result<Option<i64>, DeviceError> {
        if s == "*" {
            return Ok(None);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match s.parse::<i64>() {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(DeviceError::RuleNumber {
                which,
                rule: rule.to_string(),
            }),
        }
    };
    let major = number(major, "major", MAX_MAJOR)?;
    let minor = number(minor, "minor", MAX_MINOR)?;
    if access.is_empty()
        || access.len() > 3
        || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
    {
        return Err(bad());
    }
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(|_| bad())
}

/// The devices and rules a container gets beyond the defaults: `defaults` with every node
/// a mapping replaces (same container path) taken out, the mappings' nodes (the first
/// mapping to a path wins, as runc keeps the first node), and the rules: the mappings'
/// then the user's.
pub fn apply(
    defaults: Vec<LinuxDevice>,
    mappings: &[DeviceMapping],
    rules: &[String],
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), DeviceError> {
    let a = apply_nodes(defaults, mappings, rules)?;
    let mut out = a.defaults;
    out.extend(a.mapped.into_iter().map(|n| n.device));
    Ok((out, a.allow))
}

/// What [`apply_nodes`] gives: the mapped nodes apart from the defaults.
#[derive(Debug, Clone)]
pub struct AppliedDevices {
    /// The default nodes no mapping replaces.
    pub defaults: Vec<LinuxDevice>,
    /// The nodes the mappings give, with their host paths.
    pub mapped: Vec<MappedNode>,
    /// The device cgroup's allow rules for them and for `--device-cgroup-rule`.
    pub allow: Vec<LinuxDeviceCgroup>,
}

/// [`apply`] with the mapped nodes apart.
pub fn apply_nodes(
    defaults: Vec<LinuxDevice>,
    mappings: &[DeviceMapping],
    rules: &[String],
) -> Result<AppliedDevices, DeviceError> {
    let mut nodes: Vec<MappedNode> = Vec::new();
    let mut allow = Vec::new();
    for m in mappings {
        let (devs, r) = resolve_nodes(m)?;
        for d in devs {
            if !nodes.iter().any(|n| n.device.path() == d.device.path()) {
                nodes.push(d);
            }
        }
        allow.extend(r);
    }
    for r in rules {
        allow.push(parse_rule(r)?);
    }
    let kept: Vec<LinuxDevice> = defaults
        .into_iter()
        .filter(|d| !nodes.iter().any(|n| n.device.path() == d.path()))
        .collect();
    Ok(AppliedDevices {
        defaults: kept,
        mapped: nodes,
        allow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(host: &str, container: &str, perms: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: host.into(),
            path_in_container: container.into(),
            cgroup_permissions: perms.into(),
        }
    }

    #[test]
    fn modes_are_subsets_of_rwm() {
        for ok in ["r", "w", "m", "rw", "rwm", "mwr", "wm"] {
            assert!(valid_mode(ok), "{ok}");
        }
        for bad in ["", "rr", "rwx", "a", "rwmr", " r"] {
            assert!(!valid_mode(bad), "{bad}");
        }
    }

    #[test]
    fn a_missing_device_has_dockers_words() {
        let e = resolve(&map("/dev/berth-no-such", "/dev/x", "rwm")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error gathering device information while adding custom device \"/dev/berth-no-such\": no such file or directory"
        );
        let e = resolve(&map("/etc/hostname", "/dev/x", "rwm")).unwrap_err();
        assert!(e.to_string().ends_with(": not a device node"), "{e}");
    }

    #[test]
    fn a_device_keeps_its_numbers_under_the_new_path() {
        let (devs, rules) = resolve(&map("/dev/null", "/dev/mynull", "rw")).unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
        assert_eq!((devs[0].major(), devs[0].minor()), (1, 3));
        assert_eq!(devs[0].typ(), LinuxDeviceType::C);
        assert_eq!(rules[0].to_string(), "c 1:3 rw");
    }

    #[test]
    fn a_directory_passes_the_nodes_below_it() {
        let d = tempfile::tempdir().unwrap();
        // A directory without nodes is Docker's "not a device node".
        let e = resolve(&map(d.path().to_str().unwrap(), "/dev/x", "r")).unwrap_err();
        assert!(e.to_string().ends_with(": not a device node"), "{e}");
        // /dev itself has nodes: take a known one's relative place.
        let (devs, _) = resolve(&map("/dev", "/dev/hostdev", "r")).unwrap();
        assert!(devs
            .iter()
            .any(|x| x.path() == Path::new("/dev/hostdev/null") && x.minor() == 3));
    }

    #[test]
    fn container_paths_must_be_below_dev() {
        for (p, ok) in [
            ("/dev/x", true),
            ("/dev/a/b", true),
            ("/dev/./x", true),
            ("/mynull", false),
            ("/dev", false),
            ("/dev/../etc/x", false),
            ("dev/x", false),
            ("/devices/x", false),
        ] {
            assert_eq!(
                check_mapping(&map("/dev/null", p, "rwm")).is_ok(),
                ok,
                "{p}"
            );
        }
        let e = check_mapping(&map("/dev/null", "/dev/null", "rwx")).unwrap_err();
        assert!(e.to_string().starts_with("bad mode specified: rwx"), "{e}");
    }

    #[test]
    fn rules_parse_as_docker_does() {
        assert_eq!(parse_rule("c 1:3 rwm").unwrap().to_string(), "c 1:3 rwm");
        assert_eq!(parse_rule("b *:* m").unwrap().to_string(), "b *:* m");
        assert_eq!(parse_rule("c 4000:* r").unwrap().to_string(), "c 4000:* r");
        assert_eq!(
            parse_rule("a *:* rwm").unwrap().typ(),
            Some(LinuxDeviceType::A)
        );
        for bad in [
            "",
            "c",
            "c 1:3",
            "x 1:3 rwm",
            "c 1:3 rwx",
            "c 1:3 rwmr",
            "c 1 rwm",
            "c a:3 r",
            "c 1:3  r",
            " c 1:3 r",
            "c -1:3 r",
            "c 1:3 ",
        ] {
            assert_eq!(
                parse_rule(bad).unwrap_err().to_string(),
                format!("invalid device cgroup rule format: '{bad}'"),
            );
        }
        assert_eq!(
            parse_rule("c 4096:1 r").unwrap_err().to_string(),
            "invalid major value in device cgroup rule format: 'c 4096:1 r'"
        );
    }

    #[test]
    fn mappings_replace_defaults_and_the_first_wins() {
        let defaults = vec![LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .build()
            .unwrap()];
        let (devs, rules) = apply(
            defaults,
            &[
                map("/dev/zero", "/dev/null", "r"),
                map("/dev/full", "/dev/null", "r"),
            ],
            &["c 5:1 rw".into()],
        )
        .unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(
            devs[0].minor(),
            5,
            "the first mapping's node, not the default"
        );
        let rules: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(rules, ["c 1:5 r", "c 1:7 r", "c 5:1 rw"]);
    }
}
