//! Mounts of a container create (`HostConfig.Binds`, `HostConfig.Mounts`,
//! `HostConfig.Tmpfs`, `Config.Volumes`) into the engine's [`MountOptions`], and the
//! container's mount points back into Docker's JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_engine::{
    ContainerRecord, MountConfig, MountOptions, MountPoint, MountRequest, VolumesFrom,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use berth_engine::config::parse_size;

fn not_supported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported yet by berth"))
}

/// Docker's `invalid mount config` error for a mount of type `kind`.
fn mount_config_err(kind: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid mount config for type \"{kind}\": {why}"))
}

/// A container path must be absolute (Docker's words).
fn check_target(kind: &str, target: &str) -> Result<(), ApiError> {
    if target.is_empty() {
        return Err(mount_config_err(kind, "field Target must not be empty"));
    }
    if !target.starts_with('/') {
        return Err(mount_config_err(
            kind,
            format!("invalid mount path: '{target}' mount path must be absolute"),
        ));
    }
    Ok(())
}

/// `-v SRC:DST[:MODE]` (`HostConfig.Binds`): an absolute SRC is a host path, any other a
/// volume name; a lone `DST` is an anonymous volume. MODE is a comma list of `ro`/`rw`,
/// `nocopy` (volumes), `rprivate` (binds; the default), and `consistent`/`cached`/
/// `delegated` (no effect on Linux, as in Docker), `idmap` (binds of a remapped
/// container: an idmapped mount, as Podman's option). SELinux relabeling (`z`, `Z`) and
/// other propagation modes are refused as not supported yet.
fn parse_bind(b: &str) -> Result<MountRequest, ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid volume specification: '{b}'"));
    let parts: Vec<&str> = b.splitn(4, ':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(invalid()),
    };
    if dst.is_empty() {
        return Err(invalid());
    }
    let bind = src.starts_with('/');
    let kind = if bind { "bind" } else { "volume" };
    check_target(kind, dst).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid volume specification: '{b}': {}",
            e.message
        ))
    })?;
    let (mut read_only, mut nocopy) = (false, false);
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" if bind => {
                return Err(mount_config_err(
                    "bind",
                    "field VolumeOptions must not be specified",
                ))
            }
            "nocopy" => nocopy = true,
            "rprivate" if !bind => {
                return Err(mount_config_err(
                    "volume",
                    "field BindOptions must not be specified",
                ))
            }
            "rprivate" | "consistent" | "cached" | "delegated" => {}
            // berth's (and Podman's): the bind is an idmapped mount in a remapped
            // container (the engine refuses it without remapping).
            "idmap" if bind => {}
            "z" | "Z" => {
                return Err(not_supported(&format!(
                    "SELinux relabeling ({m:?} in {b:?})"
                )))
            }
            "private" | "shared" | "rshared" | "slave" | "rslave" => {
                return Err(not_supported(&format!(
                    "mount propagation {m:?} (in {b:?}; berth mounts binds rprivate)"
                )))
            }
            _ => return Err(ApiError::bad_request(format!("invalid mode: {mode}"))),
        }
    }
    if bind {
        return Ok(MountRequest::Bind {
            source: PathBuf::from(src),
            target: dst.to_string(),
            read_only,
            create_source: true,
            mode: mode.to_string(),
        });
    }
    Ok(MountRequest::Volume {
        name: Some(src.to_string()).filter(|s| !s.is_empty()),
        target: dst.to_string(),
        read_only,
        nocopy,
        labels: BTreeMap::new(),
        mode: if mode.is_empty() {
            "z".into()
        } else {
            mode.to_string()
        },
    })
}

/// Docker's `mount.Mount` (`--mount`, `HostConfig.Mounts`); serialized as Go marshals
/// it (empty fields omitted), for inspect's echo of what was asked.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    target: String,
    #[serde(skip_serializing_if = "is_false")]
    read_only: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    consistency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind_options: Option<BindOptionsBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_options: Option<VolumeOptionsBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tmpfs_options: Option<TmpfsOptionsBody>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A `HostConfig.Mounts` entry as Docker echoes it: its keys as Docker spells them
/// whatever case the client used, empty fields left out (the raw entry if it does not
/// decode: it is refused anyway).
fn canonical_mount(raw: &serde_json::Value) -> serde_json::Value {
    crate::decode::from_value::<MountBody>(raw.clone())
        .ok()
        .and_then(|m| serde_json::to_value(m).ok())
        .unwrap_or_else(|| raw.clone())
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct BindOptionsBody {
    #[serde(skip_serializing_if = "String::is_empty")]
    propagation: String,
    #[serde(skip_serializing_if = "is_false")]
    non_recursive: bool,
    #[serde(skip_serializing_if = "is_false")]
    create_mountpoint: bool,
    #[serde(skip_serializing_if = "is_false")]
    read_only_non_recursive: bool,
    #[serde(skip_serializing_if = "is_false")]
    read_only_force_recursive: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeOptionsBody {
    #[serde(skip_serializing_if = "is_false")]
    no_copy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    subpath: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver_config: Option<DriverConfigBody>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct DriverConfigBody {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct TmpfsOptionsBody {
    #[serde(skip_serializing_if = "is_zero")]
    size_bytes: i64,
    #[serde(skip_serializing_if = "is_zero")]
    mode: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<Vec<Vec<String>>>,
}

/// One `HostConfig.Mounts` entry.
fn parse_mount(raw: &serde_json::Value) -> Result<MountRequest, ApiError> {
    let m: MountBody = crate::decode::value_as(raw.clone(), &format!("mount {raw}"))?;
    let kind = m.kind.as_str();
    if !matches!(kind, "bind" | "volume" | "tmpfs") {
        return Err(not_supported(&format!("mount type {kind:?}")));
    }
    check_target(kind, &m.target)?;
    if !matches!(
        m.consistency.as_str(),
        "" | "default" | "consistent" | "cached" | "delegated"
    ) {
        return Err(mount_config_err(
            kind,
            format!("invalid consistency {:?}", m.consistency),
        ));
    }
    let extra =
        |field: &str| mount_config_err(kind, format!("field {field} must not be specified"));
    match kind {
        "bind" => {
            if m.volume_options.is_some() {
                return Err(extra("VolumeOptions"));
            }
            if m.tmpfs_options.is_some() {
                return Err(extra("TmpfsOptions"));
            }
            if m.source.is_empty() {
                return Err(mount_config_err(kind, "field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(mount_config_err(
                    kind,
                    format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
            let bo = m.bind_options.unwrap_or_default();
            if !matches!(bo.propagation.as_str(), "" | "rprivate") {
                return Err(not_supported(&format!(
                    "mount propagation {:?} (berth mounts binds rprivate)",
                    bo.propagation
                )));
            }
            if bo.non_recursive || bo.read_only_non_recursive || bo.read_only_force_recursive {
                return Err(not_supported(
                    "bind-recursive other than enabled (NonRecursive, ReadOnlyNonRecursive, ReadOnlyForceRecursive)",
                ));
            }
            Ok(MountRequest::Bind {
                source: PathBuf::from(&m.source),
                target: m.target,
                read_only: m.read_only,
                create_source: bo.create_mountpoint,
                mode: String::new(),
            })
        }
        "volume" => {
            if m.bind_options.is_some() {
                return Err(extra("BindOptions"));
            }
            if m.tmpfs_options.is_some() {
                return Err(extra("TmpfsOptions"));
            }
            if m.source.is_empty() && m.read_only {
                return Err(mount_config_err(
                    kind,
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            let vo = m.volume_options.unwrap_or_default();
            if !vo.subpath.is_empty() {
                return Err(not_supported("volume-subpath"));
            }
            if let Some(dc) = &vo.driver_config {
                if !matches!(dc.name.as_str(), "" | "local") {
                    return Err(not_supported(&format!("volume driver {:?}", dc.name)));
                }
                if dc.options.as_ref().is_some_and(|o| !o.is_empty()) {
                    return Err(not_supported("volume driver options (volume-opt)"));
                }
            }
            Ok(MountRequest::Volume {
                name: Some(m.source).filter(|s| !s.is_empty()),
                target: m.target,
                read_only: m.read_only,
                nocopy: vo.no_copy,
                labels: vo.labels.unwrap_or_default(),
                mode: "z".into(),
            })
        }
        _ => {
            if !m.source.is_empty() {
                return Err(extra("Source"));
            }
            if m.bind_options.is_some() {
                return Err(extra("BindOptions"));
            }
            if m.volume_options.is_some() {
                return Err(extra("VolumeOptions"));
            }
            if m.read_only {
                return Err(not_supported("a read-only tmpfs mount"));
            }
            let to = m.tmpfs_options.unwrap_or_default();
            if to.size_bytes < 0 {
                return Err(mount_config_err(kind, "invalid tmpfs size"));
            }
            let mut exec = false;
            for o in to.options.unwrap_or_default() {
                match o.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["exec"] => exec = true,
                    ["noexec"] => exec = false,
                    other => {
                        return Err(not_supported(&format!(
                            "tmpfs option {:?}",
                            other.join("=")
                        )))
                    }
                }
            }
            Ok(MountRequest::Tmpfs {
                target: m.target,
                size_bytes: (to.size_bytes > 0).then_some(to.size_bytes as u64),
                mode: (to.mode != 0).then_some(to.mode & 0o7777),
                exec,
            })
        }
    }
}

/// One `HostConfig.Tmpfs` entry (`--tmpfs /p:size=64m,mode=1777,exec`). Mounted
/// `nosuid,nodev,noexec` unless `exec`; `rw`, `nosuid`, `nodev`, `noexec` are the
/// defaults; other options (`ro`, `uid`, `gid`, `nr_inodes`, ...) are refused.
fn parse_tmpfs(target: &str, opts: &str) -> Result<MountRequest, ApiError> {
    check_target("tmpfs", target)?;
    let (mut size_bytes, mut mode, mut exec) = (None, None, false);
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                size_bytes = Some(parse_size(v).filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_request(format!("invalid tmpfs size {v:?} for {target}"))
                })?)
            }
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "invalid tmpfs mode {v:?} for {target}: expected octal"
                            ))
                        })?,
                )
            }
            None if o == "exec" => exec = true,
            None if o == "noexec" => exec = false,
            None if matches!(o, "rw" | "nosuid" | "nodev") => {}
            _ => return Err(not_supported(&format!("tmpfs option {o:?} (on {target})"))),
        }
    }
    Ok(MountRequest::Tmpfs {
        target: target.to_string(),
        size_bytes,
        mode,
        exec,
    })
}

/// The mounts of a create body: Binds, Mounts, Tmpfs, Config.Volumes.
pub(crate) fn mount_options(
    binds: Option<Vec<String>>,
    mounts: Option<Vec<serde_json::Value>>,
    tmpfs: Option<BTreeMap<String, String>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    volumes_from: Option<Vec<String>>,
    volume_driver: &str,
) -> Result<MountOptions, ApiError> {
    // The driver of the volumes this create makes: refused only if one is made with it
    // (as Docker, a driver named while no volume uses it changes nothing).
    let foreign_driver = !matches!(volume_driver, "" | "local");
    let mut requests = Vec::new();
    for b in binds.iter().flatten() {
        requests.push(parse_bind(b)?);
    }
    for m in mounts.iter().flatten() {
        requests.push(parse_mount(m)?);
    }
    for (t, o) in tmpfs.iter().flatten() {
        requests.push(parse_tmpfs(t, o)?);
    }
    let config_volumes: Vec<String> = volumes.unwrap_or_default().into_keys().collect();
    for v in &config_volumes {
        check_target("volume", v)?;
    }
    let uses_volumes = !config_volumes.is_empty()
        || requests
            .iter()
            .any(|r| matches!(r, MountRequest::Volume { .. }));
    if foreign_driver && uses_volumes {
        return Err(not_supported(&format!("volume driver {volume_driver:?}")));
    }
    let from = volumes_from
        .iter()
        .flatten()
        .map(|v| parse_volumes_from(v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MountOptions {
        requests,
        config_volumes,
        volumes_from: from,
        echo: MountConfig {
            volumes_from: volumes_from.filter(|v| !v.is_empty()),
            binds,
            mounts: mounts
                .filter(|m| !m.is_empty())
                .map(|m| m.iter().map(canonical_mount).collect()),
            tmpfs: tmpfs.filter(|t| !t.is_empty()),
            volumes: Vec::new(),
        },
    })
}

/// `CONTAINER[:MODE]` of `--volumes-from`, with Docker's rules (`ParseVolumesFrom`): the
/// mode is `ro` or `rw` with SELinux and consistency words, never a propagation or
/// `nocopy`.
fn parse_volumes_from(spec: &str) -> Result<VolumesFrom, ApiError> {
    if spec.is_empty() {
        return Err(ApiError::bad_request(
            "volumes-from specification cannot be an empty string",
        ));
    }
    let (container, mode) = spec.split_once(':').unwrap_or((spec, "rw"));
    let invalid = || ApiError::bad_request(format!("invalid mode: {mode}"));
    let (mut rw, mut label) = (0, 0);
    for w in mode.split(',') {
        match w {
            "ro" | "rw" => rw += 1,
            "z" | "Z" => label += 1,
            "consistent" | "cached" | "delegated" => {}
            _ => return Err(invalid()),
        }
    }
    if rw > 1 || label > 1 {
        return Err(invalid());
    }
    Ok(VolumesFrom {
        container: container.to_string(),
        read_only: mode.split(',').any(|w| w == "ro"),
    })
}

/// Docker's `MountPoint` (inspect's and the list's `Mounts`).
fn mount_point_json(m: &MountPoint) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("Type".into(), json!(m.kind));
    if !m.name.is_empty() {
        v.insert("Name".into(), json!(m.name));
    }
    v.insert("Source".into(), json!(m.source));
    v.insert("Destination".into(), json!(m.destination));
    if !m.driver.is_empty() {
        v.insert("Driver".into(), json!(m.driver));
    }
    v.insert("Mode".into(), json!(m.mode));
    v.insert("RW".into(), json!(m.rw));
    v.insert("Propagation".into(), json!(m.propagation));
    Value::Object(v)
}

/// `Mounts` of inspect and ps. As Docker 20.10: `--tmpfs` mounts (`HostConfig.Tmpfs`) are
/// not listed, `--mount type=tmpfs` ones are.
pub(crate) fn mounts_json(rec: &ContainerRecord) -> Value {
    let tmpfs = rec.mount_config.tmpfs.as_ref();
    Value::Array(
        rec.mounts
            .iter()
            .filter(|m| {
                !(m.kind == "tmpfs" && tmpfs.is_some_and(|t| t.contains_key(&m.destination)))
            })
            .map(mount_point_json)
            .collect(),
    )
}

/// `Config.Volumes`: `{"/p": {}}`, or null.
pub(crate) fn config_volumes_json(rec: &ContainerRecord) -> Value {
    if rec.mount_config.volumes.is_empty() {
        return Value::Null;
    }
    Value::Object(
        rec.mount_config
            .volumes
            .iter()
            .map(|v| (v.clone(), json!({})))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_like_docker() {
        let v = parse_bind("data:/srv:ro,nocopy").expect("ok");
        assert_eq!(
            v,
            MountRequest::Volume {
                name: Some("data".into()),
                target: "/srv".into(),
                read_only: true,
                nocopy: true,
                labels: BTreeMap::new(),
                mode: "ro,nocopy".into(),
            }
        );
        assert!(matches!(
            parse_bind("/data").expect("ok"),
            MountRequest::Volume { name: None, .. }
        ));
        assert!(matches!(
            parse_bind("/h:/c").expect("ok"),
            MountRequest::Bind {
                create_source: true,
                ..
            }
        ));
        for (bad, why) in [
            ("v:/p:z", "not supported yet"),
            ("/h:/p:shared", "not supported yet"),
            ("/h:/p:nocopy", "VolumeOptions"),
            ("v:rel", "must be absolute"),
            ("v:/p:bogus", "invalid mode"),
            ("a:b:c:d", "invalid volume specification"),
        ] {
            let e = parse_bind(bad).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        let m = parse_mount(&json!({"Type":"bind","Source":"/x","Target":"/y",
            "BindOptions":{"CreateMountpoint":true}}))
        .expect("ok");
        assert!(matches!(
            m,
            MountRequest::Bind {
                create_source: true,
                ..
            }
        ));
        let e = parse_mount(&json!({"Type":"volume","Source":"v","Target":"y"})).expect_err("rel");
        assert!(
            e.message.contains("'y' mount path must be absolute"),
            "{}",
            e.message
        );
        let t = parse_mount(&json!({"Type":"tmpfs","Target":"/t",
            "TmpfsOptions":{"SizeBytes":1048576,"Mode":1023}}))
        .expect("ok");
        assert_eq!(
            t,
            MountRequest::Tmpfs {
                target: "/t".into(),
                size_bytes: Some(1 << 20),
                mode: Some(0o1777),
                exec: false
            }
        );
        let t = parse_tmpfs("/t", "size=2m,mode=700,exec").expect("ok");
        assert_eq!(
            t,
            MountRequest::Tmpfs {
                target: "/t".into(),
                size_bytes: Some(2 << 20),
                mode: Some(0o700),
                exec: true
            }
        );
        assert!(parse_tmpfs("/t", "uid=1000")
            .expect_err("uid")
            .message
            .contains("not supported yet"));
    }
}
