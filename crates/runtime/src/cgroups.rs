//! Cgroup detection: which hierarchy layout the host has (unified v2, legacy v1, or hybrid v1
//! with a v2 mount at `/sys/fs/cgroup/unified`), which runc cgroup driver to use (systemd only
//! when systemd is PID 1, booted as init and reachable over D-Bus; otherwise cgroupfs), and the
//! `linux.cgroupsPath` a container gets so it can be found and killed.
//!
//! It only reads `/sys/fs/cgroup` and `/proc/1/comm`; it must never create, move or delete
//! cgroups itself (runc does that).

use std::fmt;
use std::path::Path;

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, FsType, TMPFS_MAGIC, statfs};

use crate::error::{Error, Result};

/// `CGROUP_SUPER_MAGIC` (v1 hierarchies); not exported by nix.
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// The parent cgroup (cgroupfs) or slice prefix (systemd) every berth container lives under.
pub const CGROUP_PARENT: &str = "berth";

/// How the host's cgroup hierarchies are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// cgroup v2 mounted at `/sys/fs/cgroup`.
    Unified,
    /// cgroup v1 controllers under `/sys/fs/cgroup/<controller>` plus cgroup v2 at
    /// `/sys/fs/cgroup/unified` (systemd's hybrid layout); runc uses the v1 controllers.
    Hybrid,
    /// cgroup v1 controllers only.
    Legacy,
}

/// Which runc cgroup manager is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// runc `--systemd-cgroup`: transient scopes created over D-Bus.
    Systemd,
    /// runc writes the cgroup filesystem directly.
    Cgroupfs,
}

/// The detected cgroup setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CgroupSetup {
    pub mode: CgroupMode,
    pub driver: CgroupDriver,
}

impl fmt::Display for CgroupSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            CgroupMode::Unified => "cgroup v2 (unified)",
            CgroupMode::Hybrid => "cgroup v1 (hybrid, v2 at /sys/fs/cgroup/unified)",
            CgroupMode::Legacy => "cgroup v1 (legacy)",
        };
        let driver = match self.driver {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        };
        write!(f, "{mode}, {driver} driver")
    }
}

impl CgroupSetup {
    /// Detect the host's setup from `/sys/fs/cgroup` and PID 1.
    pub fn detect() -> Result<Self> {
        Self::detect_at(Path::new("/sys/fs/cgroup"), Path::new("/"))
    }

    fn detect_at(cgroup_root: &Path, host_root: &Path) -> Result<Self> {
        let fs_type = |p: &Path| statfs(p).map(|s| s.filesystem_type());
        let root_type = fs_type(cgroup_root).map_err(|e| {
            Error::Cgroups(format!(
                "cannot inspect {}: {e}: mount the cgroup filesystem (mount -t cgroup2 none /sys/fs/cgroup)",
                cgroup_root.display()
            ))
        })?;
        let mode = if root_type == CGROUP2_SUPER_MAGIC {
            CgroupMode::Unified
        } else if root_type == TMPFS_MAGIC {
            let has_v1 = ["memory", "pids", "devices", "freezer", "cpu"]
                .iter()
                .any(|c| fs_type(&cgroup_root.join(c)) == Ok(FsType(CGROUP_SUPER_MAGIC as _)));
            if !has_v1 {
                return Err(Error::Cgroups(format!(
                    "{} is a tmpfs without cgroup v1 controllers mounted under it: mount cgroup2 there \
                     (mount -t cgroup2 none /sys/fs/cgroup) or the v1 controllers, then retry",
                    cgroup_root.display()
                )));
            }
            if fs_type(&cgroup_root.join("unified")) == Ok(CGROUP2_SUPER_MAGIC) {
                CgroupMode::Hybrid
            } else {
                CgroupMode::Legacy
            }
        } else {
            return Err(Error::Cgroups(format!(
                "{} is neither cgroup2 nor a tmpfs of cgroup v1 controllers (filesystem magic {:#x}): \
                 mount cgroup2 there (mount -t cgroup2 none /sys/fs/cgroup)",
                cgroup_root.display(),
                root_type.0
            )));
        };
        let driver = if systemd_usable(host_root) {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        };
        Ok(CgroupSetup { mode, driver })
    }

    /// The `linux.cgroupsPath` for container `id`: `/berth/<id>` for cgroupfs (absolute, so it
    /// does not depend on the caller's own cgroup), `system.slice:berth:<id>` for systemd.
    pub fn cgroups_path(&self, id: &str) -> String {
        match self.driver {
            CgroupDriver::Cgroupfs => format!("/{CGROUP_PARENT}/{id}"),
            CgroupDriver::Systemd => format!("system.slice:{CGROUP_PARENT}:{id}"),
        }
    }
}

/// systemd manages cgroups only when it is PID 1, was booted as init (`/run/systemd/system`,
/// like `sd_booted(3)`) and its D-Bus socket exists (runc's systemd driver talks D-Bus).
fn systemd_usable(host_root: &Path) -> bool {
    let comm = std::fs::read_to_string(host_root.join("proc/1/comm")).unwrap_or_default();
    comm.trim() == "systemd"
        && host_root.join("run/systemd/system").is_dir()
        && (host_root.join("run/dbus/system_bus_socket").exists()
            || host_root.join("run/systemd/private").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path_is_absolute_for_cgroupfs_and_slice_form_for_systemd() {
        let fs = CgroupSetup {
            mode: CgroupMode::Hybrid,
            driver: CgroupDriver::Cgroupfs,
        };
        assert_eq!(fs.cgroups_path("abc"), "/berth/abc");
        let sd = CgroupSetup {
            mode: CgroupMode::Unified,
            driver: CgroupDriver::Systemd,
        };
        assert_eq!(sd.cgroups_path("abc"), "system.slice:berth:abc");
        assert_eq!(sd.to_string(), "cgroup v2 (unified), systemd driver");
    }

    #[test]
    fn systemd_driver_needs_systemd_as_pid1_booted_and_dbus() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(root.path().join("proc/1/comm"), "init\n").unwrap();
        assert!(!systemd_usable(root.path()));
        std::fs::write(root.path().join("proc/1/comm"), "systemd\n").unwrap();
        assert!(!systemd_usable(root.path()), "not booted with systemd");
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        assert!(!systemd_usable(root.path()), "no D-Bus");
        std::fs::create_dir_all(root.path().join("run/dbus")).unwrap();
        std::fs::write(root.path().join("run/dbus/system_bus_socket"), "").unwrap();
        assert!(systemd_usable(root.path()));
    }

    #[test]
    fn detection_matches_the_mounts_of_this_host() {
        let setup = CgroupSetup::detect().expect("a cgroup filesystem is mounted on the test host");
        let unified = statfs("/sys/fs/cgroup").unwrap().filesystem_type() == CGROUP2_SUPER_MAGIC;
        assert_eq!(setup.mode == CgroupMode::Unified, unified);
        if !unified {
            let hybrid = statfs("/sys/fs/cgroup/unified")
                .is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
            assert_eq!(setup.mode == CgroupMode::Hybrid, hybrid);
        }
        let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap();
        if pid1.trim() != "systemd" {
            assert_eq!(setup.driver, CgroupDriver::Cgroupfs);
        }
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup_root() {
        let dir = tempfile::tempdir().unwrap();
        let e = CgroupSetup::detect_at(dir.path(), Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("mount"), "{e}");
    }
}
