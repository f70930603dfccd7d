//! Linux capabilities: the default set, `--cap-add` / `--cap-drop`, `--privileged`.
//!
//! The default set is Podman's (11 capabilities), narrower than Docker's 14: no
//! `NET_RAW` (raw sockets: ARP/ICMP spoofing), `MKNOD` and `AUDIT_WRITE`.
//! Names are accepted case-insensitively, with or without the `CAP_` prefix; `ALL`
//! stands for every capability. Drops apply before adds, as in Docker, except that
//! `--cap-drop ALL --cap-add X` yields exactly `{X}` and `--cap-add ALL --cap-drop X`
//! yields everything but `X`.

use std::collections::BTreeSet;

use oci_spec::runtime::Capability;

/// Every capability Linux knows (as of 6.x), with its bit number.
pub const ALL_CAPABILITIES: [(&str, u8, Capability); 41] = [
    ("CHOWN", 0, Capability::Chown),
    ("DAC_OVERRIDE", 1, Capability::DacOverride),
    ("DAC_READ_SEARCH", 2, Capability::DacReadSearch),
    ("FOWNER", 3, Capability::Fowner),
    ("FSETID", 4, Capability::Fsetid),
    ("KILL", 5, Capability::Kill),
    ("SETGID", 6, Capability::Setgid),
    ("SETUID", 7, Capability::Setuid),
    ("SETPCAP", 8, Capability::Setpcap),
    ("LINUX_IMMUTABLE", 9, Capability::LinuxImmutable),
    ("NET_BIND_SERVICE", 10, Capability::NetBindService),
    ("NET_BROADCAST", 11, Capability::NetBroadcast),
    ("NET_ADMIN", 12, Capability::NetAdmin),
    ("NET_RAW", 13, Capability::NetRaw),
    ("IPC_LOCK", 14, Capability::IpcLock),
    ("IPC_OWNER", 15, Capability::IpcOwner),
    ("SYS_MODULE", 16, Capability::SysModule),
    ("SYS_RAWIO", 17, Capability::SysRawio),
    ("SYS_CHROOT", 18, Capability::SysChroot),
    ("SYS_PTRACE", 19, Capability::SysPtrace),
    ("SYS_PACCT", 20, Capability::SysPacct),
    ("SYS_ADMIN", 21, Capability::SysAdmin),
    ("SYS_BOOT", 22, Capability::SysBoot),
    ("SYS_NICE", 23, Capability::SysNice),
    ("SYS_RESOURCE", 24, Capability::SysResource),
    ("SYS_TIME", 25, Capability::SysTime),
    ("SYS_TTY_CONFIG", 26, Capability::SysTtyConfig),
    ("MKNOD", 27, Capability::Mknod),
    ("LEASE", 28, Capability::Lease),
    ("AUDIT_WRITE", 29, Capability::AuditWrite),
    ("AUDIT_CONTROL", 30, Capability::AuditControl),
    ("SETFCAP", 31, Capability::Setfcap),
    ("MAC_OVERRIDE", 32, Capability::MacOverride),
    ("MAC_ADMIN", 33, Capability::MacAdmin),
    ("SYSLOG", 34, Capability::Syslog),
    ("WAKE_ALARM", 35, Capability::WakeAlarm),
    ("BLOCK_SUSPEND", 36, Capability::BlockSuspend),
    ("AUDIT_READ", 37, Capability::AuditRead),
    ("PERFMON", 38, Capability::Perfmon),
    ("BPF", 39, Capability::Bpf),
    ("CHECKPOINT_RESTORE", 40, Capability::CheckpointRestore),
];

/// Podman's default capability set (`containers.conf` `default_capabilities`).
pub const DEFAULT_CAPABILITIES: [&str; 11] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// An error in `--cap-add` / `--cap-drop`.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error(
        "{flag} {name:?}: unknown capability (names are like NET_ADMIN or CAP_NET_ADMIN, or ALL)"
    )]
    Unknown { flag: &'static str, name: String },
}

/// A set of capabilities, by their canonical names without `CAP_` (e.g. `NET_ADMIN`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapSet(BTreeSet<&'static str>);

impl CapSet {
    /// Podman's default set.
    pub fn default_set() -> CapSet {
        CapSet(DEFAULT_CAPABILITIES.iter().copied().collect())
    }

    /// Every capability.
    pub fn all() -> CapSet {
        CapSet(ALL_CAPABILITIES.iter().map(|c| c.0).collect())
    }

    /// Every capability this host can give a container: [`CapSet::all`] within the
    /// calling process's bounding set (a daemon in a restricted sandbox or a user
    /// namespace may lack some; asking for them would fail the container's start).
    pub fn all_available() -> CapSet {
        let bnd = bounding_set();
        CapSet(
            ALL_CAPABILITIES
                .iter()
                .filter(|c| bnd.is_none_or(|b| b & (1u64 << c.1) != 0))
                .map(|c| c.0)
                .collect(),
        )
    }

    /// Whether the set holds `name` (canonical, without `CAP_`).
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// Canonical names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().copied()
    }

    /// The bitmask as /proc/PID/status shows it in `CapEff`.
    pub fn mask(&self) -> u64 {
        ALL_CAPABILITIES
            .iter()
            .filter(|c| self.0.contains(c.0))
            .fold(0u64, |m, c| m | (1u64 << c.1))
    }

    /// The set in oci-spec's type.
    pub fn to_oci(&self) -> oci_spec::runtime::Capabilities {
        ALL_CAPABILITIES
            .iter()
            .filter(|c| self.0.contains(c.0))
            .map(|c| c.2)
            .collect()
    }
}

enum Parsed {
    All,
    One(&'static str),
}

fn parse_name(flag: &'static str, raw: &str) -> Result<Parsed, CapError> {
    let upper = raw.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(Parsed::All);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .find(|c| c.0 == bare)
        .map(|c| Parsed::One(c.0))
        .ok_or_else(|| CapError::Unknown {
            flag,
            name: raw.to_string(),
        })
}

/// The calling process's capability bounding set (`CapBnd` in /proc/self/status).
fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Computes the capability set of a container: the default set (or all of them when
/// privileged), then `cap_drop`, then `cap_add`. Every name is validated, even when
/// privileged.
pub fn compute(
    privileged: bool,
    cap_add: &[String],
    cap_drop: &[String],
) -> Result<CapSet, CapError> {
    let adds = cap_add
        .iter()
        .map(|n| parse_name("--cap-add", n))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = cap_drop
        .iter()
        .map(|n| parse_name("--cap-drop", n))
        .collect::<Result<Vec<_>, _>>()?;
    if privileged {
        return Ok(CapSet::all_available());
    }
    let mut set = CapSet::default_set();
    let add_all = adds.iter().any(|p| matches!(p, Parsed::All));
    if add_all {
        set = CapSet::all_available();
    }
    for d in &drops {
        match d {
            Parsed::All => set.0.clear(),
            Parsed::One(n) => {
                set.0.remove(n);
            }
        }
    }
    if !add_all {
        for a in &adds {
            if let Parsed::One(n) = a {
                set.0.insert(n);
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_is_podmans_set_without_dangerous_caps() {
        let set = compute(false, &[], &[]).unwrap();
        assert_eq!(set, CapSet::default_set());
        for bad in [
            "NET_RAW",
            "MKNOD",
            "AUDIT_WRITE",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "NET_ADMIN",
        ] {
            assert!(!set.contains(bad), "{bad} must not be in the default set");
        }
        assert_eq!(set.mask(), 0x8004_05fb);
    }

    #[test]
    fn names_are_case_insensitive_with_or_without_prefix() {
        let set = compute(
            false,
            &s(&["net_admin", "CAP_sys_ptrace", "Cap_Mknod"]),
            &s(&["cap_chown", "kill"]),
        )
        .unwrap();
        assert!(set.contains("NET_ADMIN") && set.contains("SYS_PTRACE") && set.contains("MKNOD"));
        assert!(!set.contains("CHOWN") && !set.contains("KILL"));
    }

    #[test]
    fn drop_all_then_add() {
        let set = compute(false, &s(&["NET_BIND_SERVICE"]), &s(&["ALL"])).unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), vec!["NET_BIND_SERVICE"]);
    }

    #[test]
    fn add_all_then_drop() {
        let set = compute(false, &s(&["all"]), &s(&["SYS_ADMIN"])).unwrap();
        assert!(!set.contains("SYS_ADMIN"));
        assert_eq!(
            set.names().count(),
            CapSet::all_available().names().count() - 1
        );
    }

    #[test]
    fn unknown_names_are_refused_with_the_flag() {
        let e = compute(false, &s(&["NET_ADMN"]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cap-add") && e.contains("NET_ADMN"), "{e}");
        let e = compute(true, &[], &s(&["CAP_FOO"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cap-drop") && e.contains("CAP_FOO"), "{e}");
    }

    #[test]
    fn privileged_has_every_capability_the_host_allows() {
        let set = compute(true, &[], &s(&["SYS_ADMIN"])).unwrap();
        assert_eq!(set, CapSet::all_available());
        let bnd = bounding_set().unwrap_or(u64::MAX);
        assert_eq!(set.mask(), ((1u64 << 41) - 1) & bnd);
        assert_eq!(CapSet::all().mask(), (1u64 << 41) - 1);
        assert_eq!(CapSet::all().to_oci().len(), 41);
    }
}
