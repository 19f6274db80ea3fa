//! fsutil: durable filesystem primitives shared by the store (directory fsync, atomic file
//! replacement, process-tagged temporary names, liveness of the process that made a temp file).
//!
//! Hand-written because each is a few lines over `std` with store-specific naming; a crate
//! such as `tempfile` cannot name files by owning pid, which the crash clean-up relies on.
//! This module must never leave a partially written file under a final name.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Create `path` (and parents) with mode 0700 if missing.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(Error::io("create directory", path))
}

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", path))
}

/// A fresh temporary path in `tmp_dir` named `<pid>.<counter>.<what>`; clean-up on open removes
/// such files only when process `<pid>` is gone.
pub(crate) fn tmp_path(tmp_dir: &Path, what: &str) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_dir.join(format!("{}.{}.{}", std::process::id(), n, what))
}

/// Owning pid of a temp file name made by [`tmp_path`], if it parses.
pub(crate) fn tmp_owner(name: &str) -> Option<u32> {
    name.split('.').next()?.parse().ok()
}

/// True when process `pid` exists (signal 0 probe). Errors other than ESRCH count as alive,
/// so we never delete a file that might still be in use.
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Write `data` to `dest` atomically and durably: temp file in `tmp_dir`, fsync, rename,
/// fsync the destination directory. `tmp_dir` must be on the same filesystem as `dest`.
pub(crate) fn atomic_write(tmp_dir: &Path, dest: &Path, data: &[u8], durable: bool) -> Result<()> {
    let tmp = tmp_path(tmp_dir, "write");
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io("create", &tmp))?;
        f.write_all(data).map_err(Error::io("write", &tmp))?;
        if durable {
            f.sync_all().map_err(Error::io("fsync", &tmp))?;
        }
        drop(f);
        fs::rename(&tmp, dest).map_err(Error::io("rename into place", dest))?;
        if durable {
            sync_dir(dest.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Remove a file or directory tree, treating "already gone" as success.
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path)(e)),
    }
}

/// Total size of regular files under `path` (for reporting what gc freed).
pub(crate) fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_carry_the_owning_pid() {
        let p = tmp_path(Path::new("/x"), "write");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(tmp_owner(name), Some(std::process::id()));
        assert_eq!(tmp_owner("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_impossible_pid_is_not() {
        assert!(process_alive(std::process::id()));
        // pid_max is at most 2^22 on Linux.
        assert!(!process_alive(999_999_999));
        assert!(!process_alive(0));
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        create_dir(&tmp).unwrap();
        let dest = dir.path().join("f.json");
        atomic_write(&tmp, &dest, b"one", true).unwrap();
        atomic_write(&tmp, &dest, b"two", true).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
