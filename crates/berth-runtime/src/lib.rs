//! berth's container runtime.
//!
//! This crate turns an image config and the options of a `docker run` into an OCI runtime
//! spec with production-safe defaults ([`spec::generate`]), mounts the container's
//! overlay rootfs ([`rootfs`]) and, with the `driver` feature, runs containers through
//! youki's libcontainer ([`driver`], used only by the per-container shim `berth-shim`).
//!
//! Modules:
//! - [`spec`]: the entry point and the process, namespaces, sysctls, rlimits;
//! - [`caps`]: capabilities (Podman's default set, add/drop, privileged);
//! - [`seccomp`]: moby's default profile and Docker-format profile files;
//! - [`mounts`]: default mounts, user mounts, sensitive bind sources, in-rootfs resolution;
//! - [`user`]: `--user` against the rootfs's /etc/passwd and /etc/group, read safely;
//! - [`host`]: what the host can do (cgroup layout and limits, kernel features), probed once;
//! - [`placement`]: the container's cgroup in the hierarchies libcgroups leaves alone;
//! - [`resources`]: cgroup limits, fitted to the host, and the device cgroup;
//! - [`devices`]: `--device` host nodes and `--device-cgroup-rule`, checked and resolved;
//! - [`rootfs`]: the overlayfs rootfs over the image's layer snapshots;
//! - [`shim_protocol`]: the files and control socket shared by the engine and the shim;
//! - `driver` (feature `driver`): create/start/kill/delete/state through libcontainer;
//!   `driver_exec`: a process joining a running container (`docker exec`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod caps;
pub mod devices;
#[cfg(feature = "driver")]
pub mod driver;
#[cfg(feature = "driver")]
pub mod driver_exec;
pub mod host;
pub mod mounts;
pub mod placement;
pub mod resources;
pub mod rootfs;
pub mod seccomp;
pub mod shim_protocol;
pub mod spec;
pub mod user;
pub mod userns;

pub use mounts::{resolve_in_rootfs, MountSpec};
/// The OCI spec types, for the engine (which reads and rewrites bundles).
pub use oci_spec;
pub use resources::{Resources, ThrottleDevice};
pub use rootfs::{OverlayRootfs, RootfsError};
pub use spec::{generate, ContainerOptions, NetworkMode, SpecError, Ulimit};
