//! berth's container runtime.
//!
//! This crate turns an image config and the options of a `docker run` into an OCI runtime
//! spec with production-safe defaults ([`spec::generate`]). The libcontainer driver, the
//! per-container shim and cgroup statistics come next, in this crate and `berth-shim`.
//!
//! Modules:
//! - [`spec`]: the entry point and the process, namespaces, sysctls, rlimits;
//! - [`caps`]: capabilities (Podman's default set, add/drop, privileged);
//! - [`seccomp`]: moby's default profile and Docker-format profile files;
//! - [`mounts`]: default mounts, user mounts, sensitive bind sources, in-rootfs resolution;
//! - [`user`]: `--user` against the rootfs's /etc/passwd and /etc/group, read safely;
//! - [`resources`]: cgroup limits and the device cgroup.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod caps;
pub mod mounts;
pub mod resources;
pub mod seccomp;
pub mod spec;
pub mod user;

pub use mounts::{resolve_in_rootfs, MountSpec};
pub use resources::{Resources, ThrottleDevice};
pub use spec::{generate, ContainerOptions, NetworkMode, SpecError, Ulimit};
