//! lock: advisory whole-file locks (flock(2), through `std::fs::File::lock`) that exclude
//! other threads and other processes, and whose files can be unlinked safely.
//!
//! flock locks belong to an open file description, so two `File`s in one process exclude
//! each other just like two processes do, and the kernel drops the lock when a process dies
//! (no stale-lock recovery needed). A lock file may be unlinked by its holder; a waiter that
//! then wins the lock on the orphaned inode notices (inode of the path differs from the inode
//! it holds) and retries on the new file, so two holders can never coexist.
//! This module must never hand out a lock whose file is no longer reachable at its path.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Lock flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// A held lock; released (and the file unlinked if requested) on drop.
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    path: PathBuf,
    unlink_on_drop: bool,
}

impl LockFile {
    /// Block until the lock is held.
    pub(crate) fn lock(path: &Path, mode: Mode, unlink_on_drop: bool) -> Result<LockFile> {
        Self::acquire(path, mode, unlink_on_drop, true)
            .map(|l| l.expect("blocking lock always returns a lock"))
    }

    /// Take the lock if nobody holds it; `None` when it is held elsewhere.
    pub(crate) fn try_lock(
        path: &Path,
        mode: Mode,
        unlink_on_drop: bool,
    ) -> Result<Option<LockFile>> {
        Self::acquire(path, mode, unlink_on_drop, false)
    }

    fn acquire(
        path: &Path,
        mode: Mode,
        unlink_on_drop: bool,
        blocking: bool,
    ) -> Result<Option<LockFile>> {
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(Error::io("open lock file", path))?;
            let locked = match (blocking, mode) {
                (true, Mode::Exclusive) => file.lock().map(|_| true),
                (true, Mode::Shared) => file.lock_shared().map(|_| true),
                (false, m) => {
                    let r = if m == Mode::Exclusive {
                        file.try_lock()
                    } else {
                        file.try_lock_shared()
                    };
                    match r {
                        Ok(()) => Ok(true),
                        Err(TryLockError::WouldBlock) => Ok(false),
                        Err(TryLockError::Error(e)) => Err(e),
                    }
                }
            }
            .map_err(Error::io("lock", path))?;
            if !locked {
                return Ok(None);
            }
            let held = file.metadata().map_err(Error::io("stat lock file", path))?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Some(LockFile {
                        file,
                        path: path.to_path_buf(),
                        unlink_on_drop,
                    }));
                }
                // The previous holder unlinked the file after we opened it: retry on the
                // current file (dropping `file` releases the orphaned inode).
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat lock file", path)(e)),
            }
        }
    }

    /// The locked file (for appending records under the lock).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            // Unlink while still holding the lock; waiters detect the orphan and retry.
            let _ = fs::remove_file(&self.path);
        }
        // Closing the descriptor releases the flock.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn exclusive_lock_excludes_second_open_in_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.lock");
        let first = LockFile::lock(&p, Mode::Exclusive, false).unwrap();
        assert!(
            LockFile::try_lock(&p, Mode::Exclusive, false)
                .unwrap()
                .is_none()
        );
        assert!(
            LockFile::try_lock(&p, Mode::Shared, false)
                .unwrap()
                .is_none()
        );
        drop(first);
        assert!(
            LockFile::try_lock(&p, Mode::Exclusive, false)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn shared_locks_coexist_and_block_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gc.lock");
        let a = LockFile::lock(&p, Mode::Shared, false).unwrap();
        let b = LockFile::try_lock(&p, Mode::Shared, false).unwrap();
        assert!(b.is_some());
        assert!(
            LockFile::try_lock(&p, Mode::Exclusive, false)
                .unwrap()
                .is_none()
        );
        drop((a, b));
        assert!(
            LockFile::try_lock(&p, Mode::Exclusive, false)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn waiter_on_unlinked_lock_file_retries_on_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.lock");
        let first = LockFile::lock(&p, Mode::Exclusive, true).unwrap();
        let (tx, rx) = mpsc::channel();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || {
            let l = LockFile::lock(&p2, Mode::Exclusive, true).unwrap();
            tx.send(()).unwrap();
            // While the waiter holds its lock, nobody else may get one.
            assert!(
                LockFile::try_lock(&p2, Mode::Exclusive, true)
                    .unwrap()
                    .is_none()
            );
            drop(l);
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first); // unlinks the file, then releases
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
        assert!(!p.exists(), "holder unlinks the lock file on release");
    }
}
