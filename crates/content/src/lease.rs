//! lease: gc protection for content a pull has fetched but not yet recorded in an image.
//!
//! A lease is the file `leases/<id>`, exclusively flocked by its owner for its whole life,
//! listing one digest per line. gc treats a lease whose lock is held as live (its digests are
//! roots) and deletes lease files whose lock can be taken (their owner is gone), so a crashed
//! pull never pins content forever. Adding a digest takes the gc lock shared, so an add either
//! completes before a gc starts (and is seen) or waits until that gc ends. The file is created
//! and locked in `tmp/` and renamed into `leases/`, so gc never sees an unlocked live lease.
//! This module must never let a lease outlive the process that holds it.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::{LockFile, Mode};
use crate::store::Store;

/// A held lease. Cheap to clone; released when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Lease {
    inner: Arc<LeaseInner>,
}

#[derive(Debug)]
struct LeaseInner {
    store: Store,
    id: String,
    path: PathBuf,
    state: Mutex<LeaseState>,
}

#[derive(Debug)]
struct LeaseState {
    lock: Option<LockFile>,
    digests: HashSet<Digest>,
}

impl Store {
    /// Take a new lease. Hold it for the duration of a pull: add each digest before writing
    /// it (or let [`Store::acquire`] do it) and drop the lease after the image record is put.
    pub fn lease(&self) -> Result<Lease> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = fsutil::tmp_path(&self.dir("tmp"), "lease");
        let lock = LockFile::lock(&tmp, Mode::Exclusive, false)?;
        let id = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            tmp.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').nth(1))
                .unwrap_or("0")
        );
        let path = self.dir("leases").join(&id);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("create lease", path)(e));
        }
        Ok(Lease {
            inner: Arc::new(LeaseInner {
                store: self.clone(),
                id,
                path,
                state: Mutex::new(LeaseState {
                    lock: Some(lock),
                    digests: HashSet::new(),
                }),
            }),
        })
    }

    /// Digests held by live leases; lease files of dead owners are removed on the way.
    pub(crate) fn leased(&self) -> Result<HashSet<Digest>> {
        let dir = self.dir("leases");
        let mut out = HashSet::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let path = entry.path();
            if let Some(dead) = LockFile::try_lock(&path, Mode::Exclusive, true)? {
                drop(dead); // unlinks the lease of a dead owner
                continue;
            }
            let mut text = String::new();
            match fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut text)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read lease", path)(e)),
            }
            for line in text.lines() {
                match line.parse::<Digest>() {
                    Ok(d) => {
                        out.insert(d);
                    }
                    Err(_) if line.is_empty() => {}
                    Err(e) => {
                        return Err(Error::InvalidFile {
                            path: path.clone(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Lease {
    /// The lease id (its file name under `leases/`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Protect `digest` from gc until the lease is dropped. Waits for a running gc.
    pub fn add(&self, digest: &Digest) -> Result<()> {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.digests.contains(digest) {
            return Ok(());
        }
        let _gc = self.inner.store.gc_lock(Mode::Shared)?;
        let lock = state.lock.as_ref().ok_or_else(|| Error::InvalidFile {
            path: self.inner.path.clone(),
            reason: "lease already released".into(),
        })?;
        let mut file = lock.file();
        file.write_all(format!("{digest}\n").as_bytes())
            .map_err(Error::io("write lease", &self.inner.path))?;
        state.digests.insert(digest.clone());
        Ok(())
    }

    /// Digests protected by this lease.
    pub fn digests(&self) -> Vec<Digest> {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut v: Vec<_> = state.digests.iter().cloned().collect();
        v.sort();
        v
    }
}

impl Drop for LeaseInner {
    fn drop(&mut self) {
        // Unlink while holding the lock, then release it.
        let _ = fs::remove_file(&self.path);
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.lock.take();
    }
}
