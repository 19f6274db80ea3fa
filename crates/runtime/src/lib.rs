//! runtime: runs prepared root filesystems as OCI containers with runc.
//!
//! It owns a state root (`<root>/containers/<id>/`: the bundle with `config.json`, the rootfs
//! mount point, `/etc` files, the CRI-format `log`, `state.json`) and runc's own state directory
//! (`<root>/runc`). It generates runtime specs from image configs, drives runc (create, start,
//! run, kill, delete), copies detached containers' output into logs from a shim process, and
//! records exit codes. It must never pull or unpack images, never touch containers it did not
//! create (its runc root is private), and never hide runc's own error message.

pub mod cgroups;
mod container;
mod error;
pub mod logs;
pub mod runc;
mod shim;
pub mod spec;
pub mod state;
pub mod user;

pub use cgroups::{CgroupDriver, CgroupMode, CgroupSetup};
pub use container::{
    CreateOptions, ForegroundIo, MountFn, RootfsSource, Runtime, RuntimeInfo, ShimCommand,
    container_id_of_rootfs, parse_signal,
};
pub use error::{Error, Result};
pub use logs::LogOptions;
pub use shim::{exit_if_shim, shim_main};
pub use spec::{EtcFiles, Overrides, SpecInput, build_spec};
pub use state::{Attach, ContainerState, Status};
pub use user::{ExecUser, UserError, resolve_user};
