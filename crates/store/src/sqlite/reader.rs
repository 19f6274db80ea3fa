//! The read side of a SQLite store: a small pool of read connections (WAL readers never block
//! the writer or each other) and the read queries: get, snapshot list at a revision, and watch
//! history replay. Each multi-statement read runs in one read transaction so it sees one
//! consistent snapshot. It must never write.
//!
//! The pool is hand-written (a mutex-guarded stack plus a semaphore) because the pooling crates
//! pin their own rusqlite versions; it needs nothing more than "at most N connections, reused".

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Semaphore, broadcast};

use super::SqliteConfig;
use super::conn::{db_err, open_reader, read_meta};
use super::writer::{EventBatch, KIND_ADDED, KIND_DELETED, KIND_MODIFIED};
use crate::range::{decode_continue, encode_continue, prefix_range};
use crate::{EventKind, KeyValue, ListOptions, ListResult, StoreError, WatchEvent};

pub(crate) struct ReadSide {
    pub(crate) config: SqliteConfig,
    pub(crate) idle: Mutex<Vec<Connection>>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) current: Arc<AtomicU64>,
    pub(crate) events: broadcast::WeakSender<EventBatch>,
}

impl ReadSide {
    fn path(&self) -> PathBuf {
        self.config.path.clone()
    }

    /// Run `f` on a pooled read connection in the blocking thread pool.
    pub(crate) async fn with_conn<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &ReadSide) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&this.config)?,
            };
            let result = f(&mut conn, &this);
            if !conn.is_autocommit() {
                // A failed read left its transaction open; do not pool a connection in that state.
                return result;
            }
            this.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    pub(crate) fn get(&self, conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
        conn.prepare_cached("SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row([key.as_bytes()], |r| {
                    Ok(KeyValue {
                        key: key.to_owned(),
                        value: Bytes::from(r.get::<_, Vec<u8>>(0)?),
                        create_revision: r.get(1)?,
                        mod_revision: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(|e| db_err(&self.path(), "get", e))
    }

    pub(crate) fn list(
        &self,
        conn: &mut Connection,
        prefix: &str,
        opts: &ListOptions,
    ) -> Result<ListResult, StoreError> {
        let path = self.path();
        let (from_key, requested) = match &opts.continue_token {
            Some(token) => {
                let (rev, start) = decode_continue(prefix, token)?;
                (start, Some(rev))
            }
            None => (prefix.to_owned(), opts.revision),
        };
        let (_, end) = prefix_range(prefix);
        let limit = opts.limit.filter(|l| *l > 0);
        let fetch = limit.map_or(-1i64, |l| l.saturating_add(1).min(i64::MAX as u64) as i64);

        let tx = conn
            .transaction()
            .map_err(|e| db_err(&path, "begin read", e))?;
        let (_, compacted, current) = read_meta(&tx).map_err(|e| db_err(&path, "read meta", e))?;
        let revision = requested.unwrap_or(current);
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision < compacted {
            return Err(StoreError::Expired {
                requested: revision,
                compacted,
            });
        }
        let map_row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<KeyValue> {
            let key: Vec<u8> = r.get(0)?;
            Ok(KeyValue {
                key: String::from_utf8(key).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Blob,
                        e.into(),
                    )
                })?,
                value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                create_revision: r.get(2)?,
                mod_revision: r.get(3)?,
            })
        };
        let mut items: Vec<KeyValue> = if revision == current {
            tx.prepare_cached(
                "SELECT key, value, create_rev, mod_rev FROM kv
                 WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(params![from_key.as_bytes(), end, fetch], map_row)?
                    .collect()
            })
        } else {
            // The state at `revision`: keys untouched since then come from kv; keys written later
            // are rebuilt from the first event after `revision` (its "before" image).
            tx.prepare_cached(
                "SELECT key, value, create_rev, mod_rev FROM (
                     SELECT key, value, create_rev, mod_rev FROM kv
                     WHERE key >= ?1 AND key < ?2 AND mod_rev <= ?3
                     UNION ALL
                     SELECT e.key,
                            CASE e.kind WHEN 2 THEN e.value ELSE e.prev_value END,
                            e.create_rev, e.prev_mod_rev
                     FROM events e
                     WHERE e.key >= ?1 AND e.key < ?2 AND e.rev > ?3 AND e.kind != 0
                       AND e.rev = (SELECT MIN(e2.rev) FROM events e2
                                    WHERE e2.key = e.key AND e2.rev > ?3)
                 ) ORDER BY key LIMIT ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![from_key.as_bytes(), end, revision, fetch], map_row)?
                    .collect()
            })
        }
        .map_err(|e| db_err(&path, "list", e))?;
        tx.commit().map_err(|e| db_err(&path, "end read", e))?;

        let continue_token = match limit {
            Some(limit) if items.len() as u64 > limit => {
                items.truncate(limit as usize);
                let last = &items[items.len() - 1].key;
                Some(encode_continue(prefix, last, revision))
            }
            _ => None,
        };
        Ok(ListResult {
            items,
            revision,
            continue_token,
        })
    }

    /// Up to `limit` retained events under `[start, end)` after `cursor`, and the revision the
    /// caller has now seen everything up to.
    pub(crate) fn history(
        &self,
        conn: &mut Connection,
        start: &[u8],
        end: &[u8],
        cursor: u64,
        limit: usize,
    ) -> Result<(Vec<WatchEvent>, u64), StoreError> {
        let path = self.path();
        let tx = conn
            .transaction()
            .map_err(|e| db_err(&path, "begin read", e))?;
        let (_, compacted, current) = read_meta(&tx).map_err(|e| db_err(&path, "read meta", e))?;
        if cursor < compacted {
            return Err(StoreError::Expired {
                requested: cursor,
                compacted,
            });
        }
        let events: Vec<WatchEvent> = tx
            .prepare_cached(
                "SELECT rev, key, kind, value FROM events
                 WHERE rev > ?1 AND key >= ?2 AND key < ?3 ORDER BY rev LIMIT ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![cursor, start, end, limit as i64], |r| {
                    let key: Vec<u8> = r.get(1)?;
                    let kind = match r.get::<_, i64>(2)? {
                        KIND_ADDED => EventKind::Added,
                        KIND_MODIFIED => EventKind::Modified,
                        KIND_DELETED => EventKind::Deleted,
                        other => {
                            return Err(rusqlite::Error::IntegralValueOutOfRange(2, other));
                        }
                    };
                    Ok(WatchEvent {
                        kind,
                        key: String::from_utf8(key).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                1,
                                rusqlite::types::Type::Blob,
                                e.into(),
                            )
                        })?,
                        value: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                        revision: r.get(0)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| db_err(&path, "read watch history", e))?;
        tx.commit().map_err(|e| db_err(&path, "end read", e))?;
        let seen = if events.len() < limit {
            current
        } else {
            events.last().map_or(current, |e| e.revision)
        };
        Ok((events, seen))
    }
}
