//! Pod network namespaces: the pod "sandbox" that all containers of a non-hostNetwork Pod join, so they share
//! `localhost` as in Kubernetes. Each is a fresh network namespace with only the loopback interface (up), kept
//! alive by a bind mount at `<root>/netns/<pod uid>` so it outlives the agent (a restarted agent re-adopts it).
//! There is no CNI: the pod has no address beyond loopback.
//!
//! Written by hand because no maintained crate creates a persistent namespace without shelling out to `ip
//! netns`: a dedicated thread unshares its network namespace, brings `lo` up with two ioctls, and the
//! namespace file of that thread is bind-mounted; the thread then exits. It must never change the namespace of
//! any other thread, and never unmount anything outside `<root>/netns`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The namespace file of a pod.
pub(crate) fn path(root: &Path, uid: &str) -> PathBuf {
    root.join("netns").join(uid)
}

fn is_nsfs(p: &Path) -> bool {
    match nix::sys::statfs::statfs(p) {
        Ok(s) => s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Create the pod's namespace unless it exists already (re-adoption); returns its path.
pub(crate) fn ensure(root: &Path, uid: &str) -> Result<PathBuf, String> {
    let p = path(root, uid);
    if p.exists() && is_nsfs(&p) {
        return Ok(p);
    }
    let dir = root.join("netns");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if !p.exists() {
        fs::File::create(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    }
    let target = p.clone();
    let made = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> Result<(), String> {
            // SAFETY: unshare(2) only changes the calling thread's namespace; this thread does
            // nothing else and exits right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "unshare(CLONE_NEWNET): {}",
                    std::io::Error::last_os_error()
                ));
            }
            loopback_up()?;
            let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
            mount(
                Some(own.as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting {own} on {}: {e}", target.display()))
        })
        .map_err(|e| format!("spawning the namespace thread: {e}"))?
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?;
    if let Err(e) = made {
        let _ = fs::remove_file(&p);
        return Err(format!(
            "cannot create the pod network namespace {}: {e}",
            p.display()
        ));
    }
    Ok(p)
}

/// `ip link set lo up` inside the calling thread's namespace.
fn loopback_up() -> Result<(), String> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq whose name is NUL-terminated; the fd is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let result = (|| {
            if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
                return Err(format!(
                    "SIOCGIFFLAGS lo: {}",
                    std::io::Error::last_os_error()
                ));
            }
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) < 0 {
                return Err(format!(
                    "SIOCSIFFLAGS lo: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        })();
        libc::close(fd);
        result
    }
}

/// Remove the pod's namespace (absent is fine). The namespace itself goes away once no container uses it.
pub(crate) fn remove(root: &Path, uid: &str) -> Result<(), String> {
    let p = path(root, uid);
    if !p.exists() {
        return Ok(());
    }
    // Only our own bind mount: the file must be a nsfs mount under <root>/netns.
    if is_nsfs(&p) {
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(format!("unmounting {}: {e}", p.display())),
        }
    }
    fs::remove_file(&p).map_err(|e| format!("removing {}: {e}", p.display()))
}

/// Pod uids with a namespace file (for garbage collection of pods that no longer exist).
pub(crate) fn list(root: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root.join("netns")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.is_file() || m.ino() != 0))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_namespace_has_loopback_up_and_is_removed_cleanly() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test creates network namespaces and must run as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = ensure(dir.path(), "pod-a").unwrap();
        assert!(is_nsfs(&p));
        // Idempotent: the same namespace is re-adopted.
        let ino = fs::metadata(&p).unwrap().ino();
        assert_eq!(ensure(dir.path(), "pod-a").unwrap(), p);
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
        // Its namespace differs from ours.
        let ours = fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_ne!(ino, ours);
        assert_eq!(list(dir.path()), vec!["pod-a".to_string()]);
        remove(dir.path(), "pod-a").unwrap();
        assert!(!p.exists());
        remove(dir.path(), "pod-a").unwrap();
    }
}
