//! overlayfs plumbing: mounting a container root from snapshot directories, unmounting, and
//! a one-time probe of whether overlay can be used here (mount privilege, `trusted.*` xattrs,
//! whiteout device nodes).
//!
//! It must never mount anything but overlay, never mount onto a path it was not given, and
//! never leave a probe mount behind.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::fsops::{self, cstr};

/// Largest overlay option string the kernel accepts in one mount call (one page, less NUL).
const MAX_MOUNT_DATA: usize = 4095;

/// Result of [`detect_overlay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySupport {
    /// True when snapshots can carry overlay whiteouts and container roots can be overlay mounts.
    pub usable: bool,
    /// Why overlay is not usable (empty when it is).
    pub reason: String,
}

fn check_path(p: &Path, target: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| Error::Mount {
        op: "mount",
        target: target.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} is not UTF-8", p.display()),
        ),
    })?;
    if s.contains([',', ':', '\\']) {
        return Err(Error::Mount {
            op: "mount",
            target: target.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {s:?} contains ',', ':' or '\\', which overlay options cannot carry"),
            ),
        });
    }
    Ok(s.to_string())
}

/// Mount an overlay at `target`. `lowers` are given top-most first (overlay `lowerdir` order).
/// Without `upper`/`work` the mount is read-only (and needs at least two lowers).
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<&Path>,
    work: Option<&Path>,
    target: &Path,
) -> Result<()> {
    if lowers.is_empty() {
        return Err(Error::Mount {
            op: "mount",
            target: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no lower directories"),
        });
    }
    let lower: Vec<String> = lowers
        .iter()
        .map(|p| check_path(p, target))
        .collect::<Result<_>>()?;
    let mut opts = format!("lowerdir={}", lower.join(":"));
    let mut flags = MsFlags::empty();
    match (upper, work) {
        (Some(u), Some(w)) => {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                check_path(u, target)?,
                check_path(w, target)?
            ));
        }
        _ => flags |= MsFlags::MS_RDONLY,
    }
    if opts.len() > MAX_MOUNT_DATA {
        return Err(Error::Mount {
            op: "mount",
            target: target.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "overlay options are {} bytes, over the kernel's {MAX_MOUNT_DATA}: too many layers, use the native snapshotter",
                    opts.len()
                ),
            ),
        });
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(opts.as_str()),
    )
    .map_err(|e| Error::Mount {
        op: "mount",
        target: target.to_path_buf(),
        source: io::Error::from(e),
    })
}

/// Unmount `target` (lazily when busy). Not mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|e| Error::Mount {
                op: "unmount",
                target: target.to_path_buf(),
                source: io::Error::from(e),
            })
        }
        Err(e) => Err(Error::Mount {
            op: "unmount",
            target: target.to_path_buf(),
            source: io::Error::from(e),
        }),
    }
}

/// Probe overlay support with a test mount in a fresh directory under `scratch`: a lower with
/// a whiteout (char 0/0) and an opaque directory (`trusted.overlay.opaque`), mounted and
/// checked, then unmounted and removed.
pub fn detect_overlay(scratch: &Path) -> OverlaySupport {
    let dir = scratch.join(format!(
        "probe-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let r = probe(&dir);
    let _ = unmount(&dir.join("merged"));
    let _ = fsops::remove_tree(&dir);
    match r {
        Ok(()) => OverlaySupport {
            usable: true,
            reason: String::new(),
        },
        Err(reason) => OverlaySupport {
            usable: false,
            reason,
        },
    }
}

fn probe(dir: &Path) -> std::result::Result<(), String> {
    if !fsops::can_create_devices() {
        return Err("not real root outside a user namespace: overlay whiteouts (char 0/0) cannot be created".into());
    }
    let l1 = dir.join("l1");
    let l2 = dir.join("l2");
    for d in [
        &l1,
        &l2,
        &dir.join("upper"),
        &dir.join("work"),
        &dir.join("merged"),
    ] {
        fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    fs::create_dir(l1.join("d")).map_err(|e| e.to_string())?;
    fs::write(l1.join("d/hidden"), b"x").map_err(|e| e.to_string())?;
    fs::write(l1.join("gone"), b"x").map_err(|e| e.to_string())?;
    fs::create_dir(l2.join("d")).map_err(|e| e.to_string())?;
    let d = fs::File::open(l2.join("d")).map_err(|e| e.to_string())?;
    let key = cstr(crate::apply::OVERLAY_OPAQUE_XATTR.as_bytes()).map_err(|e| e.to_string())?;
    fsops::fsetxattr(d.as_raw_fd(), &key, b"y")
        .map_err(|e| format!("trusted.* xattrs unsupported: {e}"))?;
    let l2fd = fs::File::open(&l2).map_err(|e| e.to_string())?;
    fsops::mknodat(
        l2fd.as_raw_fd(),
        c"gone",
        libc::S_IFCHR,
        libc::makedev(0, 0),
    )
    .map_err(|e| format!("cannot create whiteout device: {e}"))?;
    let merged = dir.join("merged");
    mount_overlay(
        &[l2.clone(), l1.clone()],
        Some(&dir.join("upper")),
        Some(&dir.join("work")),
        &merged,
    )
    .map_err(|e| e.to_string())?;
    let ok = merged.join("d").is_dir()
        && !merged.join("d/hidden").exists()
        && !merged.join("gone").exists();
    unmount(&merged).map_err(|e| e.to_string())?;
    if !ok {
        return Err("overlay mount does not honour whiteouts or opaque directories".into());
    }
    Ok(())
}
