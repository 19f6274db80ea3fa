//! SQLite connection setup for the store: pragmas (WAL, synchronous, secure_delete, busy timeout),
//! the schema, and the mapping of SQLite failures to [`StoreError`] (corruption becomes a refusal
//! with a backup hint, never a silent re-initialisation). It must never run data queries; those
//! live in the writer and reader modules.
//!
//! Schema (one global revision counter, no separate counter row):
//! - `kv(key BLOB PRIMARY KEY, value, create_rev, mod_rev)`: the current state.
//! - `events(rev INTEGER PRIMARY KEY, key, kind, value, create_rev, prev_mod_rev, prev_value, ts)`:
//!   one row per write, retained for a window. `value` is the new value (for deletes: the last
//!   value); `prev_*` is the state just before a modification, so the state of any key at any
//!   retained revision R can be rebuilt from `kv` plus the first event after R.
//! - `meta(compact_rev)`: history at or below `compact_rev` is gone. The current revision is
//!   `max(compact_rev, max(events.rev))`, so writes never touch `meta`.
//!
//! Keys are stored as BLOBs of their UTF-8 bytes so prefix ranges compare byte-wise.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Durability, SqliteConfig};
use crate::StoreError;

pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Wrap a rusqlite error with the database path and what was being done; corruption is reported
/// as [`StoreError::Corrupt`].
pub(crate) fn db_err(path: &Path, context: &'static str, source: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(e, _) = &source
        && matches!(e.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    {
        return StoreError::Corrupt {
            path: path.to_owned(),
            detail: source.to_string(),
        };
    }
    StoreError::Database {
        path: path.to_owned(),
        context,
        source,
    }
}

/// A copy of a rusqlite error, for answering every writer of a failed group commit.
pub(crate) fn clone_sql_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

fn open_raw(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, "open", e))?;
    conn.busy_timeout(busy)
        .map_err(|e| db_err(path, "set busy timeout", e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Open the single writer connection, switch to WAL, create or check the schema, and return it
/// with the (current, compacted) revisions.
pub(crate) fn open_writer(cfg: &SqliteConfig) -> Result<(Connection, u64, u64), StoreError> {
    let path = cfg.path.as_path();
    let conn = open_raw(path, cfg.busy_timeout)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| db_err(path, "enable WAL journal mode", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database {
            path: path.to_owned(),
            context: "enable WAL journal mode",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "journal mode is {mode:?}, WAL is required (is the file on a network filesystem?)"
                )),
            ),
        });
    }
    let sync = match cfg.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync};
         PRAGMA secure_delete=ON;
         PRAGMA journal_size_limit=67108864;
         PRAGMA foreign_keys=OFF;"
    ))
    .map_err(|e| db_err(path, "configure connection", e))?;

    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS meta (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             schema_version INTEGER NOT NULL,
             compact_rev INTEGER NOT NULL
         );
         INSERT INTO meta (id, schema_version, compact_rev) VALUES (1, 1, 0)
             ON CONFLICT(id) DO NOTHING;
         CREATE TABLE IF NOT EXISTS kv (
             key BLOB PRIMARY KEY,
             value BLOB NOT NULL,
             create_rev INTEGER NOT NULL,
             mod_rev INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS events (
             rev INTEGER PRIMARY KEY,
             key BLOB NOT NULL,
             kind INTEGER NOT NULL,
             value BLOB NOT NULL,
             create_rev INTEGER NOT NULL,
             prev_mod_rev INTEGER,
             prev_value BLOB,
             ts INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS events_key_rev ON events (key, rev);
         COMMIT;",
    )
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        db_err(path, "create schema", e)
    })?;

    if cfg.check_integrity_on_open {
        quick_check(&conn, path)?;
    }
    let (version, compact, current) = read_meta(&conn).map_err(|e| db_err(path, "read meta", e))?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!(
                "schema version {version} is not supported by this berth (expects {SCHEMA_VERSION})"
            ),
        });
    }
    Ok((conn, current, compact))
}

/// `PRAGMA quick_check`: refuse a damaged file at startup instead of failing requests later.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|e| db_err(path, "check database integrity", e))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| db_err(path, "check database integrity", e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("integrity check failed: {}", problems.join("; ")),
    })
}

/// Open one read-only-by-convention connection for the read pool.
pub(crate) fn open_reader(cfg: &SqliteConfig) -> Result<Connection, StoreError> {
    let conn = open_raw(&cfg.path, cfg.busy_timeout)?;
    conn.execute_batch("PRAGMA query_only=ON;")
        .map_err(|e| db_err(&cfg.path, "configure read connection", e))?;
    Ok(conn)
}

/// (schema_version, compact_rev, current_rev) as seen by `conn`'s current snapshot.
pub(crate) fn read_meta(conn: &Connection) -> rusqlite::Result<(i64, u64, u64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT schema_version, compact_rev, COALESCE((SELECT MAX(rev) FROM events), 0) FROM meta WHERE id = 1",
    )?;
    stmt.query_row([], |r| {
        let version: i64 = r.get(0)?;
        let compact: u64 = r.get(1)?;
        let max_event: u64 = r.get(2)?;
        Ok((version, compact, compact.max(max_event)))
    })
}
