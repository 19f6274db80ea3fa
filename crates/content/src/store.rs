//! store: the store handle, its on-disk layout, start-up clean-up and the read side
//! (info, open, exists, verify, delete, listing).
//!
//! Paths are only ever built from validated [`Digest`]s. This module must never serve a file
//! that is not under `blobs/<alg>/<hex>`, and never put anything there except by the verified
//! rename in [`crate::writer`].

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::{LockFile, Mode};

/// Read buffer size for hashing (resume and verify).
pub(crate) const HASH_BUF: usize = 1 << 20;

/// A content-addressable store rooted at one directory. Cheap to clone; safe to share across
/// threads and to open from several processes at once.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
}

/// What the store knows about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The verified digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// When it was committed (file modification time).
    pub committed: SystemTime,
}

/// An open committed blob: `Read + Seek` over verified content.
#[derive(Debug)]
pub struct Blob {
    file: File,
    info: Info,
}

impl Blob {
    /// Digest, size and commit time.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.info.size
    }

    /// The underlying read-only file (e.g. for `tokio::fs::File::from_std`).
    pub fn into_file(self) -> File {
        self.file
    }
}

impl Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for Blob {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Result of [`Store::verify_all`].
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Blobs that hashed correctly.
    pub ok: usize,
    /// Blobs that were corrupt and moved to quarantine (each a [`Error::Corrupt`]).
    pub corrupt: Vec<Error>,
}

impl Store {
    /// Open (creating if needed) the store at `root`, then clean up after any crash:
    /// stale temp files of dead processes are removed, unlocked ingests without metadata or
    /// data (or whose blob is already committed) are removed, resumable ingests are kept,
    /// stale digest locks and leases of dead processes are removed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let fresh = !root.join("blobs").exists();
        fsutil::create_dir(&root)?;
        for alg in digest::ALGORITHMS {
            fsutil::create_dir(&root.join("blobs").join(alg.as_str()))?;
        }
        for d in ["ingest", "locks", "images", "leases", "tmp", "quarantine"] {
            fsutil::create_dir(&root.join(d))?;
        }
        if fresh {
            fsutil::sync_dir(&root.join("blobs"))?;
            fsutil::sync_dir(&root)?;
        }
        let store = Store {
            inner: Arc::new(Inner { root }),
        };
        store.clean_tmp()?;
        store.clean_ingests(None)?;
        store.clean_locks()?;
        store.clean_leases()?;
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.inner.root.join(name)
    }

    /// Path of the committed blob for `digest` (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let (alg, hex) = digest::components(digest);
        self.inner.root.join("blobs").join(alg).join(hex)
    }

    pub(crate) fn ingest_dir(&self, digest: &Digest) -> PathBuf {
        let (alg, hex) = digest::components(digest);
        self.dir("ingest").join(format!("{alg}-{hex}"))
    }

    pub(crate) fn lock_path(&self, digest: &Digest) -> PathBuf {
        let (alg, hex) = digest::components(digest);
        self.dir("locks").join(format!("{alg}-{hex}.lock"))
    }

    pub(crate) fn gc_lock(&self, mode: Mode) -> Result<LockFile> {
        LockFile::lock(&self.dir("locks").join("gc.lock"), mode, false)
    }

    /// Information about a committed blob, or [`Error::NotFound`].
    pub fn info(&self, digest: &Digest) -> Result<Info> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(info_from(digest.clone(), &m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                digest: digest.clone(),
                path,
            }),
            Err(e) => Err(Error::io("stat", path)(e)),
        }
    }

    /// True when `digest` is committed.
    pub fn exists(&self, digest: &Digest) -> Result<bool> {
        match self.info(digest) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Open a committed blob for reading. Content was verified at commit; use
    /// [`Store::verify`] to re-hash on demand.
    pub fn open_blob(&self, digest: &Digest) -> Result<Blob> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    digest: digest.clone(),
                    path,
                });
            }
            Err(e) => return Err(Error::io("open", path)(e)),
        };
        let m = file.metadata().map_err(Error::io("stat", &path))?;
        Ok(Blob {
            file,
            info: info_from(digest.clone(), &m),
        })
    }

    /// Read a whole committed blob into memory, refusing blobs larger than `limit` bytes
    /// (for manifests and configs).
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let blob = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        if blob.size() > limit {
            return Err(Error::TooLarge {
                digest: digest.clone(),
                size: blob.size(),
                limit,
            });
        }
        let mut out = Vec::with_capacity(blob.size() as usize);
        blob.into_file()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(Error::io("read", &path))?;
        Ok(out)
    }

    /// Re-hash a committed blob. A blob that no longer matches its name is moved to
    /// `quarantine/` (never served again) and [`Error::Corrupt`] is returned.
    pub fn verify(&self, digest: &Digest) -> Result<Info> {
        let mut blob = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let actual = hash_reader(digest::digester_for(digest), &mut blob.file)
            .map_err(Error::io("read", &path))?
            .0;
        if &actual == digest {
            return Ok(blob.info);
        }
        let (alg, hex) = digest::components(digest);
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let quarantined = self.dir("quarantine").join(format!("{alg}-{hex}.{stamp}"));
        fs::rename(&path, &quarantined).map_err(Error::io("quarantine", &path))?;
        fsutil::sync_dir(path.parent().unwrap_or(self.root()))?;
        tracing::warn!(%digest, %actual, quarantined = %quarantined.display(), "corrupt blob quarantined");
        Err(Error::Corrupt {
            digest: digest.clone(),
            actual,
            quarantined,
        })
    }

    /// Re-hash every committed blob (fsck); corrupt ones are quarantined and reported.
    pub fn verify_all(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for info in self.blobs()? {
            match self.verify(&info.digest) {
                Ok(_) => report.ok += 1,
                Err(e @ Error::Corrupt { .. }) => report.corrupt.push(e),
                // Deleted concurrently: nothing to check.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Delete a committed blob. Returns false when it was not present.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {
                fsutil::sync_dir(path.parent().unwrap_or(self.root()))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", path)(e)),
        }
    }

    /// Every committed blob. Files under `blobs/` whose names are not valid digests are
    /// skipped (they cannot have been written by this store).
    pub fn blobs(&self) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        for &alg in digest::ALGORITHMS {
            let dir = self.dir("blobs").join(alg.as_str());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list", dir)(e)),
            };
            for entry in rd {
                let entry = entry.map_err(Error::io("list", &dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(digest) = Digest::from_parts(alg, name) else {
                    continue;
                };
                match entry.metadata() {
                    Ok(m) if m.is_file() => out.push(info_from(digest, &m)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("stat", entry.path())(e)),
                }
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    fn clean_tmp(&self) -> Result<()> {
        let dir = self.dir("tmp");
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let name = entry.file_name();
            let owner = name.to_str().and_then(fsutil::tmp_owner);
            if owner.is_some_and(fsutil::process_alive) {
                continue;
            }
            tracing::debug!(path = %entry.path().display(), "removing stale temp file");
            fsutil::remove_all(&entry.path())?;
        }
        Ok(())
    }

    /// Remove ingests nobody is writing that cannot be resumed, whose blob is committed, or
    /// (when `older_than` is given) that were last written before it. Returns (count, bytes).
    pub(crate) fn clean_ingests(&self, older_than: Option<SystemTime>) -> Result<(usize, u64)> {
        let dir = self.dir("ingest");
        let (mut count, mut bytes) = (0, 0);
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let path = entry.path();
            let digest = entry.file_name().to_str().and_then(digest::from_file_stem);
            let Some(digest) = digest else {
                bytes += fsutil::tree_size(&path);
                fsutil::remove_all(&path)?;
                count += 1;
                continue;
            };
            let Some(_guard) = LockFile::try_lock(&self.lock_path(&digest), Mode::Exclusive, true)?
            else {
                continue; // a writer is active
            };
            let meta = crate::writer::IngestMeta::load(&path.join("meta.json"));
            let data = fs::metadata(path.join("data")).ok();
            let stale = match (&meta, &data) {
                (Some(m), Some(d)) => {
                    m.digest != digest
                        || self.exists(&digest)?
                        || older_than.is_some_and(|t| d.modified().is_ok_and(|m| m < t))
                }
                _ => true,
            };
            if stale {
                tracing::debug!(path = %path.display(), "removing stale ingest");
                bytes += fsutil::tree_size(&path);
                fsutil::remove_all(&path)?;
                count += 1;
            }
        }
        Ok((count, bytes))
    }

    fn clean_locks(&self) -> Result<()> {
        let dir = self.dir("locks");
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_digest_lock = name
                .strip_suffix(".lock")
                .and_then(digest::from_file_stem)
                .is_some();
            if is_digest_lock {
                // Taking and dropping an unlink-on-drop lock removes it if nobody holds it.
                drop(LockFile::try_lock(&entry.path(), Mode::Exclusive, true)?);
            }
        }
        Ok(())
    }

    pub(crate) fn clean_leases(&self) -> Result<()> {
        let dir = self.dir("leases");
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            // A lease file whose lock can be taken belongs to a dead owner.
            drop(LockFile::try_lock(&entry.path(), Mode::Exclusive, true)?);
        }
        Ok(())
    }
}

fn info_from(digest: Digest, m: &fs::Metadata) -> Info {
    Info {
        digest,
        size: m.len(),
        committed: m.modified().unwrap_or_else(|_| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(m.mtime()).unwrap_or(0))
        }),
    }
}

/// Hash everything `r` yields; returns the digest and the byte count.
pub(crate) fn hash_reader(
    mut digester: digest::Digester,
    r: &mut impl Read,
) -> io::Result<(Digest, u64)> {
    let mut buf = vec![0u8; HASH_BUF];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                digester.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((digester.finish(), n))
}
