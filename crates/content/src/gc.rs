//! gc: mark-and-sweep garbage collection of blobs and stale ingests.
//!
//! Roots are the image records (walked through index -> manifest -> config/layers with
//! [`crate::refs`]) and the digests of live leases. gc holds the gc lock exclusively for the
//! whole run, so lease additions (which take it shared) are either visible to it or happen
//! after it. Blobs are listed before roots are read, so a blob committed during the run is
//! never a candidate. If any referenced manifest cannot be read, gc deletes nothing.
//! This module must never delete a blob reachable from an image record or a live lease.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::lock::Mode;
use crate::refs;
use crate::store::Store;

/// Tuning for [`Store::gc`].
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Ingests not written for this long (and not locked by a writer) are removed.
    pub ingest_max_age: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            ingest_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a gc run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Deleted blobs.
    pub removed: Vec<Digest>,
    /// Bytes of deleted blobs.
    pub bytes: u64,
    /// Deleted stale ingests.
    pub ingests_removed: usize,
    /// Bytes of deleted stale ingests.
    pub ingest_bytes: u64,
}

impl Store {
    /// Walk the content graph of image `image` from `roots` (digest, media type, walk even
    /// without a manifest media type): `visit(digest, optional, parent)` is called for every
    /// root (parent `None`) and every reference; present manifests and indexes are descended.
    pub(crate) fn walk_image(
        &self,
        image: &str,
        roots: Vec<(Digest, String, bool)>,
        mut visit: impl FnMut(&Digest, bool, Option<&Digest>) -> Result<()>,
    ) -> Result<()> {
        let mut queue = Vec::new();
        for (d, media_type, force) in roots {
            visit(&d, false, None)?;
            let walk = force || refs::is_manifest_type(&media_type);
            queue.push((d, media_type, walk));
        }
        let mut walked = HashSet::new();
        while let Some((d, media_type, walk)) = queue.pop() {
            if !walk || !walked.insert(d.clone()) || !self.exists(&d)? {
                continue;
            }
            let unreadable = |reason: String| Error::UnreadableManifest {
                image: image.to_owned(),
                digest: d.clone(),
                reason,
            };
            let bytes = self
                .read_blob(&d, refs::MAX_MANIFEST_SIZE)
                .map_err(|e| unreadable(e.to_string()))?;
            for child in refs::references(&media_type, &bytes).map_err(unreadable)? {
                visit(&child.digest, child.optional, Some(&d))?;
                let walk = child.walkable();
                queue.push((child.digest, child.media_type, walk));
            }
        }
        Ok(())
    }

    /// Every digest reachable from image records and live leases.
    pub fn referenced(&self) -> Result<HashSet<Digest>> {
        let mut marked = self.leased()?;
        for image in self.list_images()? {
            let mut roots = vec![(
                image.target.digest.clone(),
                image.target.media_type.clone(),
                false,
            )];
            // The selected platform manifest is a root even if the index entry is odd.
            roots.extend(image.manifest.clone().map(|m| (m, String::new(), true)));
            self.walk_image(&image.name, roots, |d, _, _| {
                marked.insert(d.clone());
                Ok(())
            })?;
        }
        Ok(marked)
    }

    /// Delete every blob not reachable from an image record or a live lease, and ingests
    /// idle for longer than `opts.ingest_max_age` that no writer holds.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let _gc = self.gc_lock(Mode::Exclusive)?;
        let candidates = self.blobs()?;
        let marked = self.referenced()?;
        let mut report = GcReport::default();
        for info in candidates {
            if marked.contains(&info.digest) {
                continue;
            }
            if self.delete(&info.digest)? {
                tracing::debug!(digest = %info.digest, size = info.size, "gc removed blob");
                report.bytes += info.size;
                report.removed.push(info.digest);
            }
        }
        let cutoff = SystemTime::now()
            .checked_sub(opts.ingest_max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let (n, bytes) = self.clean_ingests(Some(cutoff))?;
        report.ingests_removed = n;
        report.ingest_bytes = bytes;
        self.clean_leases()?;
        Ok(report)
    }
}
