//! Copying stored records from one backend to another ([`copy_prefix`]), the storage half of
//! `berth migrate`. It owns reading the source as one snapshot (paged lists at a single revision)
//! and making each target key hold exactly the source's bytes: missing keys are created, equal
//! ones are left alone, different ones are replaced with compare-and-swap, so a copy interrupted
//! at any point can simply be run again. Values are copied as stored: give it the *unwrapped*
//! backends so that encrypted records stay ciphertext end to end. It must never decode, decrypt
//! or log a value, and never delete a key in the target.

use std::collections::BTreeMap;

use crate::{ListOptions, Storage, StoreError};

/// Records read per source page.
const PAGE: u64 = 500;

/// What [`copy_prefix`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The source revision the copy is a snapshot of.
    pub source_revision: u64,
    /// Keys that did not exist in the target and were created.
    pub created: u64,
    /// Keys the target already held with the same bytes (left untouched).
    pub unchanged: u64,
    /// Keys the target held with other bytes, replaced by the source's.
    pub replaced: u64,
    /// Records per group of keys: the key up to its `group_depth`-th `/`-separated segment
    /// (`/registry/core/secrets` at depth 3), created, unchanged and replaced together.
    pub per_group: BTreeMap<String, u64>,
}

impl CopyReport {
    /// Every record of the source snapshot.
    pub fn total(&self) -> u64 {
        self.created + self.unchanged + self.replaced
    }
}

/// The first `depth` segments of `key` (`/registry/core/secrets/ns/a`, 3 -> `/registry/core/secrets`).
fn group_of(key: &str, depth: usize) -> String {
    let mut end = key.len();
    let mut seen = 0;
    for (i, c) in key.char_indices().skip(1) {
        if c == '/' {
            seen += 1;
            if seen == depth {
                end = i;
                break;
            }
        }
    }
    key[..end].to_owned()
}

/// Makes every key under `prefix` in `to` hold the bytes it has in `from`, as of one snapshot
/// of `from`. Keys only in `to` are kept. Counts are grouped by the first `group_depth` key
/// segments. Safe to run again after a failure or on a finished copy (then everything is
/// `unchanged`); concurrent writers to the target make it retry the affected key.
pub async fn copy_prefix(
    from: &dyn Storage,
    to: &dyn Storage,
    prefix: &str,
    group_depth: usize,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    let mut token = None;
    let mut snapshot = None;
    loop {
        let page = from
            .list(
                prefix,
                ListOptions {
                    limit: Some(PAGE),
                    continue_token: token.take(),
                    revision: snapshot,
                },
            )
            .await?;
        snapshot = Some(page.revision);
        report.source_revision = page.revision;
        for item in page.items {
            loop {
                match to.get(&item.key).await? {
                    None => match to.create(&item.key, item.value.clone()).await {
                        Ok(_) => report.created += 1,
                        // Written in between: compare again.
                        Err(StoreError::AlreadyExists { .. }) => continue,
                        Err(e) => return Err(e),
                    },
                    Some(existing) if existing.value == item.value => report.unchanged += 1,
                    Some(existing) => {
                        match to
                            .update(&item.key, existing.mod_revision, item.value.clone())
                            .await
                        {
                            Ok(_) => report.replaced += 1,
                            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                break;
            }
            *report
                .per_group
                .entry(group_of(&item.key, group_depth))
                .or_insert(0) += 1;
        }
        match page.continue_token {
            Some(next) => token = Some(next),
            None => return Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{SqliteConfig, SqliteStore};
    use bytes::Bytes;

    fn open(dir: &std::path::Path, name: &str) -> SqliteStore {
        SqliteStore::open(SqliteConfig::new(dir.join(name))).unwrap()
    }

    #[test]
    fn group_is_the_leading_key_segments() {
        assert_eq!(
            group_of("/registry/core/secrets/ns/a", 3),
            "/registry/core/secrets"
        );
        assert_eq!(group_of("/registry/nodes", 3), "/registry/nodes");
    }

    #[tokio::test]
    async fn copy_creates_missing_keeps_equal_replaces_different_and_keeps_extra_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (open(dir.path(), "a.db"), open(dir.path(), "b.db"));
        for i in 0..1200 {
            src.create(
                &format!("/registry/core/configmaps/ns/c{i:04}"),
                Bytes::from(format!("v{i}")),
            )
            .await
            .unwrap();
        }
        src.create(
            "/registry/core/secrets/ns/s",
            Bytes::from_static(b"k8s:enc:aesgcm:v1:key-1:xx"),
        )
        .await
        .unwrap();
        dst.create("/registry/core/configmaps/ns/c0000", Bytes::from("v0"))
            .await
            .unwrap();
        dst.create("/registry/core/configmaps/ns/c0001", Bytes::from("stale"))
            .await
            .unwrap();
        dst.create("/registry/core/configmaps/ns/extra", Bytes::from("mine"))
            .await
            .unwrap();

        let report = copy_prefix(&src, &dst, "/registry/", 3).await.unwrap();
        assert_eq!(
            (report.created, report.unchanged, report.replaced),
            (1199, 1, 1)
        );
        assert_eq!(report.per_group["/registry/core/configmaps"], 1200);
        assert_eq!(report.per_group["/registry/core/secrets"], 1);
        assert_eq!(
            report.source_revision,
            src.current_revision().await.unwrap()
        );
        let secret = dst
            .get("/registry/core/secrets/ns/s")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            secret.value,
            Bytes::from_static(b"k8s:enc:aesgcm:v1:key-1:xx")
        );
        let c1 = dst
            .get("/registry/core/configmaps/ns/c0001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c1.value, Bytes::from("v1"));
        assert!(
            dst.get("/registry/core/configmaps/ns/extra")
                .await
                .unwrap()
                .is_some()
        );

        // A second run finds everything in place.
        let again = copy_prefix(&src, &dst, "/registry/", 3).await.unwrap();
        assert_eq!(
            (again.created, again.unchanged, again.replaced),
            (0, 1201, 0)
        );
    }
}
