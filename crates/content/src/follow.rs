//! follow: reading a blob while its single writer may still be downloading it, so another node can stream
//! the bytes as they arrive instead of waiting for the commit (peer-to-peer layer sharing).
//!
//! [`Store::follow`] opens the committed blob if there is one, else the data file of an ingest whose writer
//! holds its digest lock. [`Following`] then reads what is on disk, waits for growth at the end, and ends at
//! the declared size. It fails (never hangs) when the writer gives up: the digest lock is free while the blob is
//! still not committed, the ingest was truncated (a writer `reset`) or replaced by a fresh ingest, or nothing
//! was written for the stall timeout. Readers take no lock a writer waits on except for the instant of a
//! shared-lock probe, and never create a lock file.
//!
//! Bytes read from an ingest are NOT verified: whoever consumes them must check the digest (the content store
//! does at commit). This module must never write anything, and never report an ingest as complete because it
//! reached its declared size (only the consumer's digest check says that).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::writer::IngestMeta;

/// How long a reader at the end of an ingest sleeps before looking again.
const POLL: Duration = Duration::from_millis(10);

/// Default time without a new byte after which a follow fails.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A blob opened by [`Store::follow`]: committed, or still being written by another writer.
#[derive(Debug)]
pub struct Following {
    store: Store,
    digest: Digest,
    size: u64,
    file: File,
    /// Device and inode of `file` (to notice a replaced ingest or switch to the committed blob).
    id: (u64, u64),
    /// Absolute offset of the next byte `read` returns.
    pos: u64,
    committed: bool,
    data_path: PathBuf,
    stall_timeout: Duration,
    last_growth: Instant,
}

/// Whether the digest lock of an ingest is held by a writer (probing takes the shared lock for an instant).
fn writer_active(store: &Store, digest: &Digest) -> Result<bool> {
    let path = store.lock_path(digest);
    let file = match OpenOptions::new().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("open lock file", &path)(e)),
    };
    match file.try_lock_shared() {
        // Nobody holds it exclusively; dropping `file` releases our shared lock at once.
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &path)(e)),
    }
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

impl Store {
    /// Open `digest` for reading while it may still be written: the committed blob if there is one, else the
    /// data of an ingest whose writer is active. `Ok(None)` when neither exists (or the ingest's writer is
    /// gone). Bytes of an ingest are unverified; see the module doc. Blocking.
    pub fn follow(&self, digest: &Digest) -> Result<Option<Following>> {
        match self.open_blob(digest) {
            Ok(blob) => {
                let size = blob.size();
                let file = blob.into_file();
                let path = self.blob_path(digest);
                let m = file.metadata().map_err(Error::io("stat", &path))?;
                return Ok(Some(Following {
                    store: self.clone(),
                    digest: digest.clone(),
                    size,
                    id: file_id(&m),
                    file,
                    pos: 0,
                    committed: true,
                    data_path: path,
                    stall_timeout: DEFAULT_STALL_TIMEOUT,
                    last_growth: Instant::now(),
                }));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let dir = self.ingest_dir(digest);
        let Some(meta) = IngestMeta::load(&dir.join("meta.json")) else {
            return Ok(None);
        };
        if &meta.digest != digest {
            return Ok(None);
        }
        let data_path = dir.join("data");
        let file = match File::open(&data_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Committed between the two looks, or discarded.
                return self.follow_committed_only(digest);
            }
            Err(e) => return Err(Error::io("open ingest", &data_path)(e)),
        };
        if !writer_active(self, digest)? {
            // A resumable leftover nobody is writing: it may never complete.
            return self.follow_committed_only(digest);
        }
        let m = file
            .metadata()
            .map_err(Error::io("stat ingest", &data_path))?;
        Ok(Some(Following {
            store: self.clone(),
            digest: digest.clone(),
            size: meta.size,
            id: file_id(&m),
            file,
            pos: 0,
            committed: false,
            data_path,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            last_growth: Instant::now(),
        }))
    }

    fn follow_committed_only(&self, digest: &Digest) -> Result<Option<Following>> {
        if self.exists(digest)? {
            self.follow(digest)
        } else {
            Ok(None)
        }
    }
}

impl Following {
    /// The blob's (declared) size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when the blob was committed (verified) when it was opened.
    pub fn was_committed(&self) -> bool {
        self.committed
    }

    /// The next offset `read` returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Fail a read after this long without a new byte (default [`DEFAULT_STALL_TIMEOUT`]).
    pub fn set_stall_timeout(&mut self, timeout: Duration) {
        self.stall_timeout = timeout;
    }

    /// Start reading at `offset` (at most the size); bytes not yet written are waited for.
    pub fn start_at(&mut self, offset: u64) -> io::Result<()> {
        if offset > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "offset {offset} is past the end of blob {} ({} bytes)",
                    self.digest, self.size
                ),
            ));
        }
        self.file.seek(SeekFrom::Start(offset))?;
        self.pos = offset;
        Ok(())
    }

    fn failed(&self, why: &str) -> io::Error {
        io::Error::other(format!(
            "blob {} at offset {} of {}: {why}",
            self.digest, self.pos, self.size
        ))
    }

    /// At the end of what is on disk: decide whether to wait, switch to the committed blob, or fail.
    fn at_end(&mut self) -> io::Result<()> {
        let blob_path = self.store.blob_path(&self.digest);
        match std::fs::metadata(&blob_path) {
            Ok(m) if file_id(&m) == self.id => {
                // Our ingest was renamed into place: everything up to the size is there.
                self.committed = true;
                return Ok(());
            }
            Ok(m) if m.len() == self.size => {
                // Committed from another ingest than the one we read: continue from the verified blob.
                let mut file = File::open(&blob_path)?;
                file.seek(SeekFrom::Start(self.pos))?;
                self.file = file;
                self.id = file_id(&m);
                self.committed = true;
                self.data_path = blob_path;
                return Ok(());
            }
            Ok(_) => return Err(self.failed("the committed blob has another size")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let len = self.file.metadata()?.len();
        if len < self.pos {
            return Err(self.failed("the writer truncated the ingest (it restarted the download)"));
        }
        match std::fs::metadata(&self.data_path) {
            Ok(m) if file_id(&m) == self.id => {}
            Ok(_) => return Err(self.failed("the ingest was replaced by a new download")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Renamed into place (checked again on the next look) or discarded.
                if !self.store.exists(&self.digest).map_err(io::Error::other)? {
                    return Err(self.failed("the writer discarded the ingest"));
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if !writer_active(&self.store, &self.digest).map_err(io::Error::other)? {
            // The lock is released after the rename, so look for the blob once more before failing.
            if self.store.exists(&self.digest).map_err(io::Error::other)? {
                return Ok(());
            }
            return Err(self.failed("the writer stopped before the blob was complete"));
        }
        if self.last_growth.elapsed() >= self.stall_timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "blob {} at offset {} of {}: no new bytes for {:?}",
                    self.digest, self.pos, self.size, self.stall_timeout
                ),
            ));
        }
        std::thread::sleep(POLL);
        Ok(())
    }
}

impl Read for Following {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.size - self.pos;
            if left == 0 || buf.is_empty() {
                return Ok(0);
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match self.file.read(&mut buf[..want]) {
                Ok(0) if self.committed => {
                    return Err(self.failed("the committed blob is shorter than its size"));
                }
                Ok(0) => self.at_end()?,
                Ok(n) => {
                    self.pos += n as u64;
                    self.last_growth = Instant::now();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Descriptor, Digester};

    fn desc(bytes: &[u8]) -> Descriptor {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(bytes);
        Descriptor::new("application/octet-stream", d.finish(), bytes.len() as u64)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[test]
    fn follow_of_an_unknown_digest_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = desc(b"nothing here");
        assert!(store.follow(&d.digest).unwrap().is_none());
    }

    #[test]
    fn follow_of_a_committed_blob_reads_it_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(5000);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes).unwrap();
        w.commit().unwrap();
        let mut f = store.follow(&d.digest).unwrap().unwrap();
        assert!(f.was_committed());
        f.start_at(1234).unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        assert_eq!(out, bytes[1234..]);
    }

    #[test]
    fn a_follower_streams_an_ingest_as_it_grows_and_ends_at_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(3 << 20);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..100_000]).unwrap();
        w.flush().unwrap();
        let mut f = store.follow(&d.digest).unwrap().unwrap();
        assert!(!f.was_committed());
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            f.read_to_end(&mut out).map(|_| out)
        });
        for c in bytes[100_000..].chunks(256 * 1024) {
            w.write_all(c).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        w.commit().unwrap();
        let out = reader.join().unwrap().unwrap();
        assert!(out == bytes, "the follower read exactly the blob");
    }

    #[test]
    fn a_follower_fails_when_the_writer_abandons_the_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(10_000);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..4000]).unwrap();
        w.flush().unwrap();
        let mut f = store.follow(&d.digest).unwrap().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            f.read_to_end(&mut out)
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(w); // the download failed: partial data kept for a resume, lock released
        let err = reader.join().unwrap().unwrap_err();
        assert!(
            err.to_string()
                .contains("stopped before the blob was complete"),
            "{err}"
        );
        assert!(err.to_string().contains(&d.digest.to_string()), "{err}");
        // Nobody writes it now: there is nothing to follow.
        assert!(store.follow(&d.digest).unwrap().is_none());
    }

    #[test]
    fn a_follower_fails_when_the_writer_resets_the_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(10_000);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..4000]).unwrap();
        w.flush().unwrap();
        let mut f = store.follow(&d.digest).unwrap().unwrap();
        let mut first = vec![0u8; 4000];
        f.read_exact(&mut first).unwrap();
        w.reset().unwrap();
        w.flush().unwrap();
        let err = f.read(&mut [0u8; 10]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_stalled_writer_times_the_follower_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = data(1000);
        let d = desc(&bytes);
        let mut w = store.writer("k", &d).unwrap();
        w.write_all(&bytes[..10]).unwrap();
        w.flush().unwrap();
        let mut f = store.follow(&d.digest).unwrap().unwrap();
        f.set_stall_timeout(Duration::from_millis(100));
        let mut out = Vec::new();
        let err = f.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(out.len(), 10);
        drop(w);
    }
}
