//! The single writer of a SQLite store: a dedicated OS thread that owns the only read-write
//! connection, allocates revisions, and commits writes. Callers send commands over a channel and
//! wait on a oneshot reply, so no two writers ever contend for the SQLite lock and 200 concurrent
//! clients never see `database is locked`.
//!
//! Group commit: the thread drains every command already queued (up to `max_batch`) into one
//! `BEGIN IMMEDIATE` transaction and acknowledges each only after `COMMIT` returned, so an
//! acknowledged write is as durable as the configured `synchronous` level makes it. A logical
//! rejection (conflict, already exists, not found) writes nothing; a SQLite error rolls the whole
//! transaction back, fails that one command, and re-runs the others in a fresh transaction (none
//! of them had been acknowledged). After each commit the new events are published on the
//! broadcast channel in revision order.
//!
//! It also owns history retention and compaction (chunked deletes from `events`, then a WAL
//! checkpoint). It must never be bypassed: no other connection writes.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, oneshot};

use super::Retention;
use super::conn::{clone_sql_error, db_err};
use crate::{Deleted, EventKind, KeyValue, StoreError, WatchEvent};

/// Deleted history rows per compaction transaction, so a large prune never stalls writers long.
const COMPACT_CHUNK: u64 = 5_000;
/// How often retention is checked when the store is idle or busy.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) const KIND_ADDED: i64 = 0;
pub(crate) const KIND_MODIFIED: i64 = 1;
pub(crate) const KIND_DELETED: i64 = 2;

pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        expected: u64,
        value: Bytes,
    },
    Delete {
        key: String,
        expected: Option<u64>,
    },
}

pub(crate) enum Outcome {
    Revision(u64),
    Deleted(Deleted),
}

pub(crate) enum Cmd {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<Outcome, StoreError>>,
    },
    Compact {
        revision: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub(crate) type EventBatch = Arc<[WatchEvent]>;

/// Result of applying one op inside the open transaction.
enum Applied {
    Written(Outcome, WatchEvent),
    Rejected(StoreError),
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    pub(crate) current: u64,
    pub(crate) compacted: u64,
    pub(crate) shared_current: Arc<AtomicU64>,
    pub(crate) events: broadcast::Sender<EventBatch>,
    pub(crate) retention: Retention,
    pub(crate) max_batch: usize,
    pub(crate) busy_timeout: Duration,
    /// Held for the writer's lifetime: one process per database.
    pub(crate) _lock: File,
    pub(crate) last_ts: i64,
}

impl Writer {
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut next_maintenance = Instant::now() + MAINTENANCE_INTERVAL;
        loop {
            let wait = next_maintenance.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                while batch.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                self.process(batch);
            }
            if Instant::now() >= next_maintenance {
                let behind = self.enforce_retention();
                next_maintenance = Instant::now()
                    + if behind {
                        Duration::ZERO
                    } else {
                        MAINTENANCE_INTERVAL
                    };
            }
        }
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(path = %self.path.display(), error = %e, "final WAL checkpoint failed");
        }
    }

    fn process(&mut self, batch: Vec<Cmd>) {
        let mut writes = Vec::new();
        for cmd in batch {
            match cmd {
                Cmd::Write { op, reply } => writes.push((op, reply)),
                Cmd::Compact { revision, reply } => {
                    // Keep the order callers observed: writes queued before the compaction
                    // commit first.
                    self.commit_group(std::mem::take(&mut writes));
                    let _ = reply.send(self.compact_explicit(revision));
                }
            }
        }
        self.commit_group(writes);
    }

    fn now_ms(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // Keep timestamps monotonic in revision order even if the wall clock steps back.
        self.last_ts = self.last_ts.max(now);
        self.last_ts
    }

    fn commit_group(&mut self, writes: Vec<(Op, oneshot::Sender<Result<Outcome, StoreError>>)>) {
        let mut pending: VecDeque<_> = writes.into();
        while !pending.is_empty() {
            let ts = self.now_ms();
            if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
                for (_, reply) in pending.drain(..) {
                    let _ = reply.send(Err(db_err(
                        &self.path,
                        "begin write transaction",
                        clone_sql_error(&e),
                    )));
                }
                return;
            }
            let mut rev = self.current;
            let mut done = Vec::with_capacity(pending.len());
            let mut failed = None;
            while let Some((op, reply)) = pending.pop_front() {
                match apply(&self.conn, &op, rev + 1, ts) {
                    Ok(Applied::Written(outcome, event)) => {
                        rev += 1;
                        done.push((op, reply, Ok(outcome), Some(event)));
                    }
                    Ok(Applied::Rejected(err)) => done.push((op, reply, Err(err), None)),
                    Err(e) => {
                        failed = Some((reply, e));
                        break;
                    }
                }
            }
            if let Some((reply, e)) = failed {
                self.rollback();
                let _ = reply.send(Err(db_err(&self.path, "write", e)));
                for (op, reply, _, _) in done.into_iter().rev() {
                    pending.push_front((op, reply));
                }
                continue;
            }
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                self.rollback();
                for (_, reply, _, _) in done {
                    let _ = reply.send(Err(db_err(
                        &self.path,
                        "commit write transaction",
                        clone_sql_error(&e),
                    )));
                }
                continue;
            }
            self.current = rev;
            self.shared_current.store(rev, Ordering::Release);
            let mut events = Vec::with_capacity(done.len());
            for (_, reply, result, event) in done {
                events.extend(event);
                let _ = reply.send(result);
            }
            if !events.is_empty() {
                // No receivers is fine: nobody is watching.
                let _ = self.events.send(events.into());
            }
        }
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(path = %self.path.display(), error = %e, "rollback failed");
        }
    }

    fn compact_explicit(&mut self, revision: u64) -> Result<(), StoreError> {
        if revision > self.current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current,
            });
        }
        while self.compacted < revision {
            self.compact_chunk(revision)?;
        }
        // Push deleted history (and its secure-deleted pages) out of the WAL as well.
        self.checkpoint_truncate();
        Ok(())
    }

    /// Delete history up to `target` (at most one chunk); returns after one transaction.
    fn compact_chunk(&mut self, target: u64) -> Result<(), StoreError> {
        let upto = target.min(self.compacted.saturating_add(COMPACT_CHUNK));
        let result = (|| -> rusqlite::Result<()> {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.conn
                .prepare_cached("DELETE FROM events WHERE rev <= ?1")?
                .execute([upto])?;
            self.conn
                .prepare_cached("UPDATE meta SET compact_rev = ?1 WHERE id = 1")?
                .execute([upto])?;
            self.conn.execute_batch("COMMIT")
        })();
        if let Err(e) = result {
            self.rollback();
            return Err(db_err(&self.path, "compact history", e));
        }
        self.compacted = upto;
        Ok(())
    }

    fn checkpoint_truncate(&self) {
        // Never wait long for readers here: the writer thread must stay responsive.
        let _ = self.conn.busy_timeout(Duration::from_millis(100));
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            }) {
            Ok(0) => {}
            Ok(_) => tracing::debug!(
                path = %self.path.display(),
                "WAL checkpoint incomplete (readers active); it completes on a later checkpoint"
            ),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "WAL checkpoint failed")
            }
        }
        let _ = self.conn.busy_timeout(self.busy_timeout);
    }

    /// Apply the retention window; returns true when more pruning is due right away.
    fn enforce_retention(&mut self) -> bool {
        let by_revisions = self.current.saturating_sub(self.retention.max_revisions);
        let mut target = by_revisions.max(self.compacted);
        if let Some(max_age) = self.retention.max_age {
            let cutoff = self.now_ms() - max_age.as_millis() as i64;
            let oldest_young: rusqlite::Result<Option<u64>> = self
                .conn
                .prepare_cached(
                    "SELECT rev FROM events WHERE rev > ?1 AND ts >= ?2 ORDER BY rev LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![target, cutoff], |r| r.get(0))
                        .optional()
                });
            match oldest_young {
                Ok(Some(rev)) => target = target.max(rev - 1),
                Ok(None) => target = self.current,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "retention check failed");
                    return false;
                }
            }
        }
        if target <= self.compacted {
            return false;
        }
        if let Err(e) = self.compact_chunk(target) {
            tracing::warn!(error = %e, "history retention pruning failed; retrying later");
            return false;
        }
        self.compacted < target
    }
}

fn current_mod_rev(conn: &Connection, key: &str) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT mod_rev FROM kv WHERE key = ?1")?
        .query_row([key.as_bytes()], |r| r.get(0))
        .optional()
}

fn apply(conn: &Connection, op: &Op, rev: u64, ts: i64) -> rusqlite::Result<Applied> {
    match op {
        Op::Create { key, value } => {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?3)
                     ON CONFLICT(key) DO NOTHING",
                )?
                .execute(params![key.as_bytes(), value.as_ref(), rev])?;
            if inserted == 0 {
                let revision = current_mod_rev(conn, key)?.unwrap_or(0);
                return Ok(Applied::Rejected(StoreError::AlreadyExists {
                    key: key.clone(),
                    revision,
                }));
            }
            conn.prepare_cached(
                "INSERT INTO events (rev, key, kind, value, create_rev, ts) VALUES (?1, ?2, 0, ?3, ?1, ?4)",
            )?
            .execute(params![rev, key.as_bytes(), value.as_ref(), ts])?;
            Ok(Applied::Written(
                Outcome::Revision(rev),
                WatchEvent {
                    kind: EventKind::Added,
                    key: key.clone(),
                    value: value.clone(),
                    revision: rev,
                },
            ))
        }
        Op::Update {
            key,
            expected,
            value,
        } => {
            // Record the event (copying the previous value inside SQLite) only if the CAS holds.
            let matched = conn
                .prepare_cached(
                    "INSERT INTO events (rev, key, kind, value, create_rev, prev_mod_rev, prev_value, ts)
                     SELECT ?1, key, 1, ?2, create_rev, mod_rev, value, ?3 FROM kv
                     WHERE key = ?4 AND mod_rev = ?5",
                )?
                .execute(params![rev, value.as_ref(), ts, key.as_bytes(), expected])?;
            if matched == 0 {
                return Ok(Applied::Rejected(match current_mod_rev(conn, key)? {
                    Some(current) => StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current,
                    },
                    None => StoreError::NotFound { key: key.clone() },
                }));
            }
            conn.prepare_cached("UPDATE kv SET value = ?1, mod_rev = ?2 WHERE key = ?3")?
                .execute(params![value.as_ref(), rev, key.as_bytes()])?;
            Ok(Applied::Written(
                Outcome::Revision(rev),
                WatchEvent {
                    kind: EventKind::Modified,
                    key: key.clone(),
                    value: value.clone(),
                    revision: rev,
                },
            ))
        }
        Op::Delete { key, expected } => {
            let removed: Option<(Vec<u8>, u64, u64)> = conn
                .prepare_cached(
                    "DELETE FROM kv WHERE key = ?1 AND (?2 IS NULL OR mod_rev = ?2)
                     RETURNING value, create_rev, mod_rev",
                )?
                .query_row(params![key.as_bytes(), expected], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((value, create_rev, mod_rev)) = removed else {
                return Ok(Applied::Rejected(match current_mod_rev(conn, key)? {
                    Some(current) => StoreError::Conflict {
                        key: key.clone(),
                        expected: expected.unwrap_or(0),
                        current,
                    },
                    None => StoreError::NotFound { key: key.clone() },
                }));
            };
            conn.prepare_cached(
                "INSERT INTO events (rev, key, kind, value, create_rev, prev_mod_rev, ts)
                 VALUES (?1, ?2, 2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![rev, key.as_bytes(), value, create_rev, mod_rev, ts])?;
            let value = Bytes::from(value);
            Ok(Applied::Written(
                Outcome::Deleted(Deleted {
                    item: KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: create_rev,
                        mod_revision: mod_rev,
                    },
                    revision: rev,
                }),
                WatchEvent {
                    kind: EventKind::Deleted,
                    key: key.clone(),
                    value,
                    revision: rev,
                },
            ))
        }
    }
}
