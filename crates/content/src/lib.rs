//! content: berth's verified content-addressable store (blobs by digest, resumable ingest,
//! image records, leases, garbage collection).
//!
//! It owns everything under its root directory and knows nothing about registries or
//! unpacking. It must never make unverified bytes visible as a blob.
//!
//! # On-disk layout (under the store root, e.g. `<berth root>/content`)
//!
//! ```text
//! blobs/<alg>/<hex>          committed blobs, verified, mode 0444 (sha256, sha384, sha512)
//! ingest/<alg>-<hex>/meta.json   partial download: key, digest, size, media type, start time
//! ingest/<alg>-<hex>/data        partial download: the bytes received so far
//! locks/<alg>-<hex>.lock     flock held by the single writer of that digest
//! locks/gc.lock              flock: gc exclusive, lease additions shared
//! locks/images.lock          flock serialising image record updates
//! images/<sha256(name)>.json image records (format in [`images`](crate::ImageRecord))
//! leases/<id>                live leases: flocked by the owner, one digest per line
//! tmp/<pid>.<n>.<what>       temp files of atomic writes, owned by process <pid>
//! quarantine/<alg>-<hex>.<t> blobs that failed `verify`, never served
//! ```
//!
//! # Invariants
//!
//! - **Nothing unverified is visible.** The only way into `blobs/` is [`Writer::commit`]:
//!   the size and digest of the bytes written are checked first, then the data file is
//!   fsynced, made read-only, renamed (atomic) onto `blobs/<alg>/<hex>` and the directory is
//!   fsynced. A mismatch deletes the ingest and names both digests and sizes. A write that
//!   would pass the declared size fails at once (size + 1) and deletes the ingest.
//! - **Crash safety.** Every step before the rename touches only `ingest/`, `tmp/` or
//!   `locks/`; the rename is atomic, so after a crash `blobs/<alg>/<hex>` is either absent or
//!   complete and verified. Image records and leases are written to `tmp/` and renamed. On
//!   [`Store::open`], temp files of dead processes, unresumable ingests (missing metadata or
//!   data), ingests of already committed blobs, stale locks and dead leases are removed;
//!   resumable ingests are kept and [`Store::acquire`] continues them (re-hashing the partial
//!   data to rebuild the hash state). A partial tail lost or garbled by power loss is caught by
//!   the digest check at commit and re-downloaded.
//! - **Single flight.** Writers are exclusive per digest across threads and processes (flock
//!   on `locks/<alg>-<hex>.lock`; the kernel drops it if the holder dies). A second caller of
//!   [`Store::acquire`] waits, then finds the blob committed ([`Acquired::Exists`]) or, if the
//!   first writer gave up, resumes its partial data.
//! - **gc never removes what is in use.** Roots are image records (walked through index,
//!   manifest, config, layers) and live leases; a pull holds a [`Lease`] from its first blob
//!   until its image record is written. Image records are only written once their content is
//!   committed ([`Store::put_image`] checks).
//!
//! Performance: writes go through a 1 MiB buffer with no per-chunk fsync and are hashed on
//! the way in; nothing is read back except to resume. Memory per writer is about 1 MiB.
//!
//! Blocking: every call does filesystem IO and may block (acquire waits on a lock); from async
//! code use `spawn_blocking` or [`Store::acquire_async`].

mod digest;
mod error;
mod follow;
mod fsutil;
mod gc;
mod images;
mod lease;
mod lock;
pub mod refs;
mod store;
mod writer;

use std::path::PathBuf;

pub use digest::{Algorithm, Descriptor, Digest, DigestError, Digester};
pub use error::{Error, Result};
pub use follow::{DEFAULT_STALL_TIMEOUT, Following};
pub use gc::{GcOptions, GcReport};
pub use images::ImageRecord;
pub use lease::Lease;
pub use store::{Blob, Info, Store, VerifyReport};
pub use writer::{Acquired, IngestStatus, Writer};

/// Directory name of the content store under berth's state root.
pub const CONTENT_DIR: &str = "content";

/// berth's default state root: `/var/lib/berth` when running as root, else
/// `$XDG_DATA_HOME/berth` (usually `~/.local/share/berth`). The content store lives in
/// `<root>/`[`CONTENT_DIR`].
pub fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    default_root_for(euid, dirs::data_dir())
}

fn default_root_for(euid: u32, data_dir: Option<PathBuf>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/var/lib/berth");
    }
    match data_dir {
        Some(d) => d.join("berth"),
        None => std::env::temp_dir().join(format!("berth-{euid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_is_var_lib_for_root_and_data_dir_otherwise() {
        assert_eq!(
            default_root_for(0, Some("/home/x/.local/share".into())),
            PathBuf::from("/var/lib/berth")
        );
        assert_eq!(
            default_root_for(1000, Some("/home/x/.local/share".into())),
            PathBuf::from("/home/x/.local/share/berth")
        );
        assert!(default_root_for(1000, None).ends_with("berth-1000"));
    }
}
