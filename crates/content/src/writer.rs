//! writer: resumable, size-bounded, single-flight ingest and the verified commit.
//!
//! An ingest for digest `D` lives in `ingest/<alg>-<hex>/` (`meta.json` written first, then
//! `data`) and is only touched while holding the exclusive flock `locks/<alg>-<hex>.lock`, so
//! one thread in one process writes a digest at a time; others wait and then find it
//! committed. Bytes are hashed as they are written; a reopened ingest re-hashes its data to
//! rebuild the hash state. Commit order: flush, check size and digest, fsync the data, make it
//! read-only, rename into `blobs/<alg>/<hex>`, fsync that directory, drop the ingest dir.
//! This module must never rename unverified bytes into `blobs/`, and never accept a byte past
//! the declared size.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::digest::{self, Descriptor, Digest, Digester};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::lease::Lease;
use crate::lock::{LockFile, Mode};
use crate::store::{Info, Store};

/// Write buffer: large enough that the kernel sees few, big writes.
const WRITE_BUF: usize = 1 << 20;

/// Start kernel write-back of every this many bytes while downloading, so the disk works in
/// parallel with the network and the fsync at commit has little left to do.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Metadata of an ingest (`ingest/<alg>-<hex>/meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IngestMeta {
    /// The key of the writer that started the ingest (e.g. the image reference).
    pub key: String,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started: time::OffsetDateTime,
}

impl IngestMeta {
    /// Load, treating a missing or unparsable file as "no ingest".
    pub(crate) fn load(path: &Path) -> Option<IngestMeta> {
        let bytes = fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Progress of an ingest, as reported by [`Store::ingests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// Key of the writer that started it.
    pub key: String,
    /// Digest being written.
    pub digest: Digest,
    /// Bytes on disk so far.
    pub offset: u64,
    /// Declared total size.
    pub total: u64,
    /// When the ingest started.
    pub started: SystemTime,
    /// Last write (data file modification time).
    pub updated: SystemTime,
}

/// Outcome of [`Store::acquire`]: either this caller must write the blob, or it is already
/// committed (possibly by the writer we waited for).
// One value per blob fetch, matched at once: boxing the writer would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Acquired {
    /// Write the blob (starting at [`Writer::offset`]) and commit it.
    Writer(Writer),
    /// The blob is committed; nothing to download.
    Exists(Info),
}

/// An exclusive, resumable writer for one digest. Dropping it without committing keeps the
/// partial data for a later resume and releases the lock.
pub struct Writer {
    store: Store,
    key: String,
    expected: Descriptor,
    dir: PathBuf,
    data_path: PathBuf,
    file: Option<BufWriter<File>>,
    digester: Option<Digester>,
    offset: u64,
    resumed_from: u64,
    /// Offset up to which write-back was started.
    written_back: u64,
    _lock: LockFile,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("key", &self.key)
            .field("digest", &&self.expected.digest.to_string())
            .field("offset", &self.offset)
            .field("size", &self.expected.size)
            .finish()
    }
}

impl Store {
    /// Block until this caller may write `expected`, or until it is committed.
    ///
    /// If `lease` is given the digest is added to it first, so gc cannot remove the blob
    /// between this call and the image record being written. Blocking (flock and, on resume,
    /// re-hashing the partial data): call from `spawn_blocking`, or use
    /// [`Store::acquire_async`]. A thread must not call it while itself holding a writer for
    /// the same digest (it would wait for itself).
    pub fn acquire(
        &self,
        key: &str,
        expected: &Descriptor,
        lease: Option<&Lease>,
    ) -> Result<Acquired> {
        self.acquire_inner(key, expected, lease, true)
            .map(|a| a.expect("blocking acquire always returns"))
    }

    /// Like [`Store::acquire`] but returns `Ok(None)` at once when another writer (thread or
    /// process) holds the digest.
    pub fn try_acquire(
        &self,
        key: &str,
        expected: &Descriptor,
        lease: Option<&Lease>,
    ) -> Result<Option<Acquired>> {
        self.acquire_inner(key, expected, lease, false)
    }

    /// [`Store::acquire`] that waits at most `timeout`, polling with back-off
    /// (10 ms doubling to 250 ms). Fails with [`Error::LockTimeout`].
    pub fn acquire_timeout(
        &self,
        key: &str,
        expected: &Descriptor,
        lease: Option<&Lease>,
        timeout: Duration,
    ) -> Result<Acquired> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            if let Some(a) = self.try_acquire(key, expected, lease)? {
                return Ok(a);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                let digest = expected.digest.clone();
                return Err(Error::LockTimeout {
                    lock: self.lock_path(&digest),
                    digest,
                    waited_ms: waited.as_millis(),
                });
            }
            std::thread::sleep(delay.min(timeout - waited));
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Async form of [`Store::acquire`]: polls [`Store::try_acquire`] on the blocking pool
    /// and sleeps with back-off on the runtime in between, so dropping the future cancels
    /// the wait. Needs a tokio runtime.
    pub async fn acquire_async(
        &self,
        key: String,
        expected: Descriptor,
        lease: Option<Lease>,
    ) -> Result<Acquired> {
        let mut delay = Duration::from_millis(10);
        loop {
            let (store, k, e, l) = (self.clone(), key.clone(), expected.clone(), lease.clone());
            let got = tokio::task::spawn_blocking(move || store.try_acquire(&k, &e, l.as_ref()))
                .await
                .map_err(|e| Error::Io {
                    op: "run blocking acquire for",
                    path: self.root().to_path_buf(),
                    source: io::Error::other(e),
                })??;
            if let Some(a) = got {
                return Ok(a);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// An exclusive writer for `expected`, resuming a partial ingest of the same digest if
    /// one exists (see [`Writer::offset`]). Blocks while another writer holds the digest;
    /// returns [`Error::AlreadyExists`] if the blob is committed.
    pub fn writer(&self, key: &str, expected: &Descriptor) -> Result<Writer> {
        match self.acquire(key, expected, None)? {
            Acquired::Writer(w) => Ok(w),
            Acquired::Exists(info) => Err(Error::AlreadyExists {
                path: self.blob_path(&info.digest),
                digest: info.digest,
            }),
        }
    }

    fn acquire_inner(
        &self,
        key: &str,
        expected: &Descriptor,
        lease: Option<&Lease>,
        blocking: bool,
    ) -> Result<Option<Acquired>> {
        let digest = &expected.digest;
        if let Some(lease) = lease {
            lease.add(digest)?;
        }
        if let Some(info) = self.existing(expected)? {
            return Ok(Some(Acquired::Exists(info)));
        }
        let lock_path = self.lock_path(digest);
        let lock = if blocking {
            LockFile::lock(&lock_path, Mode::Exclusive, true)?
        } else {
            match LockFile::try_lock(&lock_path, Mode::Exclusive, true)? {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        // The writer we may have waited for has committed it.
        if let Some(info) = self.existing(expected)? {
            return Ok(Some(Acquired::Exists(info)));
        }
        Writer::open(self.clone(), key, expected, lock).map(|w| Some(Acquired::Writer(w)))
    }

    fn existing(&self, expected: &Descriptor) -> Result<Option<Info>> {
        let digest = &expected.digest;
        match self.info(digest) {
            Ok(info) => {
                let declared = expected.size;
                if info.size != declared {
                    return Err(Error::DescriptorSize {
                        path: self.blob_path(digest),
                        digest: digest.clone(),
                        declared,
                        stored: info.size,
                    });
                }
                Ok(Some(info))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Partial downloads currently on disk (active or resumable).
    pub fn ingests(&self) -> Result<Vec<IngestStatus>> {
        let dir = self.dir("ingest");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let Some(meta) = IngestMeta::load(&entry.path().join("meta.json")) else {
                continue;
            };
            let Ok(data) = fs::metadata(entry.path().join("data")) else {
                continue;
            };
            out.push(IngestStatus {
                key: meta.key,
                digest: meta.digest,
                offset: data.len(),
                total: meta.size,
                started: meta.started.into(),
                updated: data.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }
}

impl Writer {
    fn open(store: Store, key: &str, expected: &Descriptor, lock: LockFile) -> Result<Writer> {
        let digest = expected.digest.clone();
        let size = expected.size;
        let dir = store.ingest_dir(&digest);
        let meta_path = dir.join("meta.json");
        let data_path = dir.join("data");

        let resumable = IngestMeta::load(&meta_path)
            .filter(|m| m.digest == digest && m.size == size)
            .and_then(|_| fs::metadata(&data_path).ok())
            .is_some_and(|d| d.is_file() && d.len() <= size);

        let (file, digester, offset) = if resumable {
            // A process killed between the chmod and the rename of a commit leaves a read-only
            // (complete) ingest behind: make it writable again before reopening it.
            fs::set_permissions(&data_path, Permissions::from_mode(0o600))
                .map_err(Error::io("chmod ingest", &data_path))?;
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&data_path)
                .map_err(Error::io("open ingest", &data_path))?;
            let len = file
                .metadata()
                .map_err(Error::io("stat ingest", &data_path))?
                .len();
            // Rebuild the hash state by re-hashing what is on disk (one sequential read).
            let digester = rehash_live(&digest, &mut file, len)
                .map_err(Error::io("re-hash ingest", &data_path))?;
            (file, digester, len)
        } else {
            (
                Self::start_fresh(&store, key, expected, &dir, &meta_path, &data_path)?,
                digest::digester_for(&digest),
                0,
            )
        };
        let mut file = file;
        file.seek(SeekFrom::Start(offset))
            .map_err(Error::io("seek ingest", &data_path))?;
        if offset > 0 {
            tracing::debug!(%digest, offset, size, "resuming ingest");
        }
        Ok(Writer {
            store,
            key: key.to_owned(),
            expected: expected.clone(),
            dir,
            data_path,
            file: Some(BufWriter::with_capacity(WRITE_BUF, file)),
            digester: Some(digester),
            offset,
            resumed_from: offset,
            written_back: offset,
            _lock: lock,
        })
    }

    fn start_fresh(
        store: &Store,
        key: &str,
        expected: &Descriptor,
        dir: &Path,
        meta_path: &Path,
        data_path: &Path,
    ) -> Result<File> {
        fsutil::remove_all(dir)?;
        fsutil::create_dir(dir)?;
        let meta = IngestMeta {
            key: key.to_owned(),
            digest: expected.digest.clone(),
            size: expected.size,
            media_type: expected.media_type.clone(),
            started: time::OffsetDateTime::now_utc(),
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::InvalidFile {
            path: meta_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // Metadata need not be durable: an ingest whose metadata is lost is discarded.
        fsutil::atomic_write(&store.dir("tmp"), meta_path, &json, false)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(data_path)
            .map_err(Error::io("create ingest", data_path))
    }

    /// Bytes already written (including those found on disk when resuming). A download
    /// resumes from here (`Range: bytes=<offset>-`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The offset this writer found on disk when it was opened (0 for a fresh ingest).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// The descriptor being written.
    pub fn expected(&self) -> &Descriptor {
        &self.expected
    }

    /// The key given when the writer was opened.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn digest(&self) -> &Digest {
        &self.expected.digest
    }

    /// Append `buf`. Fails with [`Error::ExceedsSize`] (and discards the ingest) as soon as
    /// the total would pass the declared size; nothing past the size is written.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        let size = self.expected.size;
        let (Some(file), Some(digester)) = (self.file.as_mut(), self.digester.as_mut()) else {
            return Err(Error::Discarded {
                digest: self.digest().clone(),
            });
        };
        let received = self.offset + buf.len() as u64;
        if received > size {
            let err = Error::ExceedsSize {
                digest: self.digest().clone(),
                expected: size,
                received,
            };
            self.discard_in_place();
            return Err(err);
        }
        digester.update(buf);
        if let Err(e) = file.write_all(buf) {
            let path = self.data_path.clone();
            // The position of the file is now unknown: drop the buffered state so nothing
            // half-written is committed; the data on disk is re-hashed on the next resume.
            self.file = None;
            self.digester = None;
            return Err(Error::io("write ingest", path)(e));
        }
        self.offset = received;
        if self.offset - self.written_back >= WRITEBACK_EVERY {
            self.start_writeback();
        }
        Ok(())
    }

    /// Ask the kernel to start writing out what was written since the last call, without
    /// waiting (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`). Purely a performance hint:
    /// durability still comes from the fsync in `commit`, so failures are ignored.
    fn start_writeback(&mut self) {
        let Some(buf) = self.file.as_mut() else {
            return;
        };
        if buf.flush().is_err() {
            return;
        }
        let from = self.written_back;
        let len = self.offset - from;
        self.written_back = self.offset;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(off), Ok(n)) = (libc::off64_t::try_from(from), libc::off64_t::try_from(len))
            else {
                return;
            };
            // SAFETY: the descriptor is owned by `buf` and open for the duration of the call;
            // sync_file_range reads no memory of ours.
            let rc = unsafe {
                libc::sync_file_range(
                    buf.get_ref().as_raw_fd(),
                    off,
                    n,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if rc != 0 {
                tracing::trace!(error = %io::Error::last_os_error(), "sync_file_range hint failed");
            }
        }
    }

    /// Push buffered bytes to the kernel so a later resume sees them (no fsync).
    pub fn flush(&mut self) -> Result<()> {
        match self.file.as_mut() {
            Some(f) => f
                .flush()
                .map_err(Error::io("write ingest", &self.data_path)),
            None => Err(Error::Discarded {
                digest: self.digest().clone(),
            }),
        }
    }

    /// Throw away what was written and start again at offset 0 (for a server that ignored
    /// a `Range` request).
    pub fn reset(&mut self) -> Result<()> {
        let digest = self.digest().clone();
        let Some(buf) = self.file.take() else {
            return Err(Error::Discarded { digest });
        };
        let mut file = buf.into_parts().0;
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .map_err(Error::io("truncate ingest", &self.data_path))?;
        self.file = Some(BufWriter::with_capacity(WRITE_BUF, file));
        self.digester = Some(digest::digester_for(&digest));
        self.offset = 0;
        self.written_back = 0;
        Ok(())
    }

    /// Verify size and digest, then make the blob visible atomically and durably.
    /// On a mismatch the ingest is discarded and [`Error::Mismatch`] names both digests and
    /// both sizes. If the blob was committed meanwhile (by a writer that did not lock), the
    /// verified ingest is dropped and the existing blob is returned.
    pub fn commit(mut self) -> Result<Info> {
        let expected = self.digest().clone();
        let size = self.expected.size;
        let (Some(buf), Some(digester)) = (self.file.take(), self.digester.take()) else {
            return Err(Error::Discarded { digest: expected });
        };
        let file = match buf.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let err = Error::io("write ingest", &self.data_path)(e.into_error());
                return Err(err);
            }
        };
        let actual = digester.finish();
        if actual != expected || self.offset != size {
            drop(file);
            self.discard_in_place();
            return Err(Error::Mismatch {
                expected,
                expected_size: size,
                actual,
                actual_size: self.offset,
            });
        }
        file.sync_all()
            .map_err(Error::io("fsync ingest", &self.data_path))?;
        file.set_permissions(Permissions::from_mode(0o444))
            .map_err(Error::io("chmod ingest", &self.data_path))?;
        drop(file);
        let target = self.store.blob_path(&expected);
        fs::rename(&self.data_path, &target).map_err(Error::io("commit blob to", &target))?;
        fsutil::sync_dir(target.parent().unwrap_or(self.store.root()))?;
        // The blob is committed; a leftover ingest directory is only litter that the next
        // open or gc removes, so it must not turn a successful commit into an error.
        if let Err(e) = fsutil::remove_all(&self.dir) {
            tracing::warn!(error = %e, "cannot remove ingest after commit");
        }
        tracing::debug!(digest = %expected, size, "blob committed");
        self.store.info(&expected)
    }

    /// Drop the partial data (it will not be resumed).
    pub fn discard(mut self) -> Result<()> {
        self.file = None;
        self.digester = None;
        fsutil::remove_all(&self.dir)
    }

    fn discard_in_place(&mut self) {
        self.file = None;
        self.digester = None;
        if let Err(e) = fsutil::remove_all(&self.dir) {
            tracing::warn!(error = %e, "cannot remove discarded ingest");
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Writer::flush(self).map_err(io::Error::other)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Keep the partial data for a resume; the lock is released after this.
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.flush()
        {
            tracing::debug!(error = %e, path = %self.data_path.display(), "flush of partial ingest failed");
        }
    }
}

/// Hash exactly `len` bytes from `r`, returning the live hasher state.
fn rehash_live(digest: &Digest, r: &mut File, len: u64) -> io::Result<Digester> {
    use std::io::Read;
    let mut d = digest::digester_for(digest);
    let mut buf = vec![0u8; crate::store::HASH_BUF];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let k = r.read(&mut buf[..want])?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "partial ingest shrank while re-hashing",
            ));
        }
        d.update(&buf[..k]);
        left -= k as u64;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use std::sync::{Arc, Barrier};

    fn desc(bytes: &[u8]) -> Descriptor {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(bytes);
        Descriptor::new("application/octet-stream", d.finish(), bytes.len() as u64)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn blob_files(store: &Store) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for alg in crate::digest::ALGORITHMS {
            for e in fs::read_dir(store.root().join("blobs").join(alg.as_str())).unwrap() {
                v.push(e.unwrap().path());
            }
        }
        v
    }

    #[test]
    fn blob_is_visible_only_after_commit_verifies_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(3 << 20);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..1000]).unwrap();
        w.write_all(&bytes[1000..]).unwrap();
        w.flush().unwrap();
        assert!(
            !store.exists(&d.digest).unwrap(),
            "not visible before commit"
        );
        assert!(blob_files(&store).is_empty());
        let info = w.commit().unwrap();
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(fs::read(store.blob_path(&d.digest)).unwrap(), bytes);
        let mode = fs::metadata(store.blob_path(&d.digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        assert!(
            store.ingests().unwrap().is_empty(),
            "ingest removed after commit"
        );
        assert!(!store.ingest_dir(&d.digest).exists());
    }

    #[test]
    fn flipped_byte_is_rejected_naming_both_digests_and_nothing_lands_in_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(4096);
        let d = desc(&bytes);
        let mut bad = bytes.clone();
        bad[1234] ^= 0x01;
        let bad_digest = desc(&bad).digest;
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bad).unwrap();
        let err = w.commit().unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::Mismatch { actual, actual_size: 4096, expected_size: 4096, .. } if *actual == bad_digest),
            "{err:?}"
        );
        assert!(msg.contains(&d.digest.to_string()), "{msg}");
        assert!(msg.contains(&bad_digest.to_string()), "{msg}");
        assert!(msg.contains("4096 bytes"), "{msg}");
        assert!(blob_files(&store).is_empty());
        assert!(!store.ingest_dir(&d.digest).exists(), "ingest discarded");
        // A retry downloads afresh.
        let w = store.writer("k", &d).unwrap();
        assert_eq!(w.offset(), 0);
    }

    #[test]
    fn short_content_is_rejected_with_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(100);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..99]).unwrap();
        let err = w.commit().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Mismatch {
                    expected_size: 100,
                    actual_size: 99,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("(100 bytes)") && err.to_string().contains("(99 bytes)"));
        assert!(blob_files(&store).is_empty());
    }

    #[test]
    fn write_past_declared_size_fails_at_size_plus_one_and_discards_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(1000);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes).unwrap(); // exactly the size is fine
        let err = w.write_all(&[0]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ExceedsSize {
                    expected: 1000,
                    received: 1001,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("exceeds declared size 1000"));
        assert!(!store.ingest_dir(&d.digest).exists(), "ingest deleted");
        assert!(matches!(w.write_all(b"x"), Err(Error::Discarded { .. })));
        assert!(matches!(w.commit(), Err(Error::Discarded { .. })));
        assert!(blob_files(&store).is_empty());
    }

    #[test]
    fn oversized_single_chunk_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(10);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        let big = vec![7u8; 1 << 20];
        assert!(matches!(
            w.write_all(&big),
            Err(Error::ExceedsSize {
                received: 1_048_576,
                ..
            })
        ));
        assert_eq!(fsutil::tree_size(&store.dir("ingest")), 0);
    }

    #[test]
    fn dropped_writer_resumes_at_its_offset_and_commits_correct_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(2_500_000);
        let d = desc(&bytes);
        let mut w = store.writer("ref-a", &d).unwrap();
        w.write_all(&bytes[..1_234_567]).unwrap();
        drop(w);
        let ingests = store.ingests().unwrap();
        assert_eq!(ingests.len(), 1);
        assert_eq!(ingests[0].offset, 1_234_567);
        assert_eq!(ingests[0].key, "ref-a");

        let mut w = store.writer("ref-b", &d).unwrap();
        assert_eq!(w.offset(), 1_234_567);
        assert_eq!(w.resumed_from(), 1_234_567);
        w.write_all(&bytes[1_234_567..]).unwrap();
        w.commit().unwrap();
        assert_eq!(fs::read(store.blob_path(&d.digest)).unwrap(), bytes);
    }

    #[test]
    fn complete_read_only_ingest_left_by_a_crash_during_commit_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(777);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes).unwrap();
        drop(w);
        // State after a kill between chmod and rename in `commit`.
        let p = store.ingest_dir(&d.digest).join("data");
        fs::set_permissions(&p, Permissions::from_mode(0o444)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let w = store.writer("k", &d).unwrap();
        assert_eq!(w.offset(), 777);
        w.commit().unwrap();
        assert_eq!(fs::read(store.blob_path(&d.digest)).unwrap(), bytes);
    }

    #[test]
    fn blob_spanning_writeback_hints_and_a_resume_commits_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(2 * WRITEBACK_EVERY as usize + 12_345);
        let d = desc(&bytes);
        let cut = WRITEBACK_EVERY as usize + 777;
        let mut w = store.writer("k", &d).unwrap();
        for c in bytes[..cut].chunks(64 * 1024) {
            w.write_all(c).unwrap();
        }
        drop(w);
        let mut w = store.writer("k", &d).unwrap();
        assert_eq!(w.offset(), cut as u64);
        for c in bytes[cut..].chunks(64 * 1024) {
            w.write_all(c).unwrap();
        }
        w.commit().unwrap();
        assert!(fs::read(store.blob_path(&d.digest)).unwrap() == bytes);
    }

    #[test]
    fn resumed_ingest_with_wrong_prefix_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(5000);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..2000]).unwrap();
        drop(w);
        // Corrupt the partial data on disk: the re-hash on reopen must include it.
        let p = store.ingest_dir(&d.digest).join("data");
        let mut on_disk = fs::read(&p).unwrap();
        on_disk[10] ^= 0xff;
        fs::write(&p, &on_disk).unwrap();
        let mut w = store.writer("k", &d).unwrap();
        assert_eq!(w.offset(), 2000);
        w.write_all(&bytes[2000..]).unwrap();
        assert!(matches!(w.commit(), Err(Error::Mismatch { .. })));
        assert!(!store.exists(&d.digest).unwrap());
    }

    #[test]
    fn reset_restarts_the_ingest_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(300);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(b"garbage that is not the blob").unwrap();
        w.reset().unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(&bytes).unwrap();
        w.commit().unwrap();
        assert!(store.verify(&d.digest).is_ok());
    }

    #[test]
    fn writer_for_committed_blob_reports_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(10);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes).unwrap();
        w.commit().unwrap();
        assert!(matches!(
            store.writer("k", &d),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.acquire("k", &d, None).unwrap(),
            Acquired::Exists(Info { size: 10, .. })
        ));
        let lying = Descriptor::new("x", d.digest.clone(), 11);
        assert!(matches!(
            store.acquire("k", &lying, None),
            Err(Error::DescriptorSize {
                declared: 11,
                stored: 10,
                ..
            })
        ));
    }

    #[test]
    fn try_acquire_returns_none_while_another_writer_holds_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(10);
        let d = desc(&bytes);
        let w = store.writer("k", &d).unwrap();
        assert!(store.try_acquire("k2", &d, None).unwrap().is_none());
        let err = store
            .acquire_timeout("k2", &d, None, Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
        drop(w);
        assert!(matches!(
            store.try_acquire("k2", &d, None).unwrap(),
            Some(Acquired::Writer(_))
        ));
    }

    #[test]
    fn two_threads_writing_same_digest_download_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = Arc::new(data(1 << 20));
        let d = desc(&bytes);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (store, bytes, d, writes, barrier) = (
                    store.clone(),
                    bytes.clone(),
                    d.clone(),
                    writes.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    match store.acquire(&format!("t{i}"), &d, None).unwrap() {
                        Acquired::Writer(mut w) => {
                            writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            for c in bytes.chunks(64 * 1024) {
                                w.write_all(c).unwrap();
                                std::thread::yield_now();
                            }
                            w.commit().unwrap().size
                        }
                        Acquired::Exists(info) => info.size,
                    }
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 1 << 20);
        }
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(store.verify(&d.digest).is_ok());
    }

    #[tokio::test]
    async fn acquire_async_waits_for_the_holder_then_sees_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(1000);
        let d = desc(&bytes);
        let mut w = store.writer("first", &d).unwrap();
        let waiter = tokio::spawn({
            let (store, d) = (store.clone(), d.clone());
            async move { store.acquire_async("second".into(), d, None).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        w.write_all(&bytes).unwrap();
        w.commit().unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert!(matches!(got, Acquired::Exists(Info { size: 1000, .. })));
    }
}
