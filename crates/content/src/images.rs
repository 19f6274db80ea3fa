//! images: image records, the mapping from a normalised reference to the manifest it
//! resolved to, stored one JSON file per image and replaced atomically.
//!
//! File: `images/<sha256 hex of the name>.json` (hashing keeps any reference within
//! NAME_MAX and free of path characters), format version 1:
//!
//! ```json
//! {
//!   "schemaVersion": 1,
//!   "name": "docker.io/library/busybox:1.36",
//!   "target": {"mediaType": "application/vnd.oci.image.index.v1+json",
//!              "digest": "sha256:…", "size": 9000},
//!                                // an OCI descriptor: annotations, platform... are kept
//!   "manifest": "sha256:…",      // platform-selected manifest, optional
//!   "totalSize": 2200000,        // optional
//!   "created": "2026-01-01T00:00:00Z",
//!   "updated": "2026-01-01T00:00:00Z"
//! }
//! ```
//!
//! Writes are temp file + fsync + rename + fsync(dir), serialised by `locks/images.lock` so a
//! record's `created` time survives concurrent re-pulls. A record is only written once its
//! target (and the selected manifest with its config and layers) is committed (INT-10).
//! This module must never write a record that points at content the store does not hold.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::digest::{Descriptor, Digest};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::{LockFile, Mode};
use crate::store::Store;

/// An image known to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Normalised reference (e.g. `docker.io/library/busybox:1.36`).
    pub name: String,
    /// What the reference resolved to (manifest or index).
    pub target: Descriptor,
    /// The platform-selected manifest when `target` is an index.
    pub manifest: Option<Digest>,
    /// Total size of the selected image (manifest, config, layers), if known.
    pub total_size: Option<u64>,
    /// When the record was first written.
    pub created: SystemTime,
    /// When the record was last written.
    pub updated: SystemTime,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordFile {
    schema_version: u32,
    name: String,
    target: Descriptor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total_size: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    created: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated: time::OffsetDateTime,
}

const SCHEMA_VERSION: u32 = 1;

impl Store {
    fn image_path(&self, name: &str) -> PathBuf {
        let h = sha2::Sha256::digest(name.as_bytes());
        self.dir("images").join(format!("{}.json", hex::encode(h)))
    }

    fn images_lock(&self) -> Result<LockFile> {
        LockFile::lock(
            &self.dir("locks").join("images.lock"),
            Mode::Exclusive,
            false,
        )
    }

    /// Record (or replace) image `name` -> `target`. `manifest` is the platform-selected
    /// manifest when `target` is an index. Fails with [`Error::IncompleteImage`] unless the
    /// target, the selected manifest and its config and layers are all committed.
    pub fn put_image(
        &self,
        name: &str,
        target: &Descriptor,
        manifest: Option<&Digest>,
        total_size: Option<u64>,
    ) -> Result<ImageRecord> {
        self.check_complete(name, target, manifest)?;
        let _lock = self.images_lock()?;
        let now = SystemTime::now();
        let created = self.get_image(name)?.map_or(now, |r| r.created);
        let record = ImageRecord {
            name: name.to_owned(),
            target: target.clone(),
            manifest: manifest.cloned(),
            total_size,
            created,
            updated: now,
        };
        let file = RecordFile {
            schema_version: SCHEMA_VERSION,
            name: record.name.clone(),
            target: target.clone(),
            manifest: record.manifest.clone(),
            total_size,
            created: created.into(),
            updated: now.into(),
        };
        let path = self.image_path(name);
        let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::InvalidFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fsutil::atomic_write(&self.dir("tmp"), &path, &json, true)?;
        Ok(record)
    }

    /// The record for `name`, if any.
    pub fn get_image(&self, name: &str) -> Result<Option<ImageRecord>> {
        let path = self.image_path(name);
        match self.load_record(&path)? {
            Some(r) if r.name == name => Ok(Some(r)),
            Some(r) => Err(Error::InvalidFile {
                path,
                reason: format!("holds image {:?}, expected {name:?}", r.name),
            }),
            None => Ok(None),
        }
    }

    /// All image records, sorted by name.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.dir("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            if let Some(r) = self.load_record(&path)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Remove the record for `name`; returns false when there was none. Blobs stay until gc.
    pub fn remove_image(&self, name: &str) -> Result<bool> {
        let _lock = self.images_lock()?;
        let path = self.image_path(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                fsutil::sync_dir(&self.dir("images"))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", path)(e)),
        }
    }

    fn load_record(&self, path: &std::path::Path) -> Result<Option<ImageRecord>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path)(e)),
        };
        let invalid = |reason: String| Error::InvalidFile {
            path: path.to_path_buf(),
            reason,
        };
        let f: RecordFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if f.schema_version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schemaVersion {} is not supported (this version reads {SCHEMA_VERSION})",
                f.schema_version
            )));
        }
        Ok(Some(ImageRecord {
            name: f.name,
            target: f.target,
            manifest: f.manifest,
            total_size: f.total_size,
            created: f.created.into(),
            updated: f.updated.into(),
        }))
    }

    /// INT-10: the target and, for the selected manifest (or the target when it is a
    /// manifest), its config and layers must be committed before a record points at them.
    fn check_complete(
        &self,
        name: &str,
        target: &Descriptor,
        manifest: Option<&Digest>,
    ) -> Result<()> {
        let missing = |d: &Digest, by: String| Error::IncompleteImage {
            name: name.to_owned(),
            missing: d.clone(),
            referenced_by: by,
        };
        let mut roots = vec![(target.digest.clone(), target.media_type.clone(), false)];
        roots.extend(manifest.map(|m| (m.clone(), String::new(), true)));
        self.walk_image(name, roots, |d, optional, parent| {
            let required = !optional || manifest == Some(d);
            if required && !self.exists(d)? {
                let by = parent.map_or_else(|| "the image record".to_owned(), ToString::to_string);
                return Err(missing(d, by));
            }
            Ok(())
        })?;
        Ok(())
    }
}
