//! unpack: safe, streaming, parallel application of OCI/Docker image layers into snapshot
//! directories, and root filesystems for containers built from them (overlay or native copy).
//!
//! It owns everything under its root directory (`<berth root>/snapshots`-style layout, see
//! [`Snapshotter`]) and reads layer blobs from the content store. It must never write outside
//! a snapshot directory whatever an archive says, never make a partially applied or unverified
//! layer look complete, and never talk to a registry.

mod apply;
mod error;
mod fsops;
mod native;
mod overlay;
mod snapshot;

pub use apply::{
    Applied, ApplyOptions, LayerChanges, LayerSpec, Limits, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX, ZSTD_WINDOW_LOG_MAX, apply_layer,
};
pub use error::{Error, Result};
pub use fsops::openat2_supported;
pub use native::flatten;
pub use overlay::{OverlaySupport, detect_overlay, mount_overlay, unmount};
pub use snapshot::{Mode, Rootfs, SnapshotId, SnapshotInfo, Snapshotter, chain_ids};
