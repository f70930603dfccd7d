//! Image formats for berth: Docker and OCI manifests and configs, `docker save` and OCI
//! layout archives in and out, rootfs tarball import, and the safe unpacking of layers
//! into snapshots.

pub mod archive;
pub mod changes;
mod commit;
pub mod cp;
pub mod derive;
pub mod diff;
pub mod error;
pub mod export;
pub mod layer;
pub mod model;
pub mod registry;
pub mod rootfs;
pub mod unpack;

pub use archive::{load_archive, LoadEvent, LoadOptions, LoadedImage, NameCheck};
pub use error::ImageError;
pub use export::{save_archive, SaveFormat, SaveItem};
pub use rootfs::{import_rootfs, ImportRequest};
