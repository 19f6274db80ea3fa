//! The default storage backend: one SQLite database file in WAL mode. It owns opening (with a
//! per-database lock file so only one process writes), the writer thread, the read pool and the
//! [`Storage`] implementation; it must never interpret values and never write outside its writer
//! thread.
//!
//! Durability: the default is `synchronous=FULL` with WAL: every commit fsyncs the WAL before the
//! write is acknowledged, so an acknowledged write survives kill -9 *and* power loss.
//! [`Durability::Normal`] (`synchronous=NORMAL` + WAL) still survives kill -9 of the process
//! (the WAL is written before the acknowledgement; the OS keeps it) but the last transactions
//! before a power loss or kernel crash may roll back; choose it only when that window is
//! acceptable. Group commit (see the writer module) amortises the fsync over concurrent writers.
//!
//! History retention: the `events` table keeps the last [`Retention::max_revisions`] revisions
//! and, when [`Retention::max_age`] is set, only those younger than it; older history is
//! compacted in chunks by the writer. Watches or continue tokens older than the retained history
//! get [`StoreError::Expired`] (HTTP 410) and the client re-lists. Lagging watch receivers replay
//! from the database instead of ending, while that history is retained.

mod conn;
mod reader;
mod watch;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, broadcast, oneshot};

use crate::{Deleted, KeyValue, ListOptions, ListResult, Storage, StoreError, WatchStream};
use reader::ReadSide;
use writer::{Cmd, Op, Outcome, Writer};

/// How a commit reaches the disk; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: acknowledged writes survive power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: acknowledged writes survive a process crash, not power loss.
    Normal,
}

/// How much watch history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many most recent revisions of history.
    pub max_revisions: u64,
    /// Also drop history older than this (`None`: no time bound).
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_revisions: 10_000,
            max_age: Some(Duration::from_secs(15 * 60)),
        }
    }
}

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file; its directory is created if missing. `-wal`, `-shm` and `.lock`
    /// files live beside it.
    pub path: PathBuf,
    pub durability: Durability,
    pub retention: Retention,
    /// Maximum concurrent read connections.
    pub read_connections: usize,
    /// Live watch buffer in commit groups; a watcher further behind replays from the database.
    pub watch_buffer: usize,
    /// Maximum writes committed in one transaction (group commit).
    pub max_batch: usize,
    /// SQLite busy timeout for every connection (only checkpoints and external tools contend).
    pub busy_timeout: Duration,
    /// Run `PRAGMA quick_check` when opening (reads the whole file once; refuses a damaged
    /// database at startup rather than failing requests later).
    pub check_integrity_on_open: bool,
}

impl SqliteConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            durability: Durability::Full,
            retention: Retention::default(),
            read_connections: 4,
            watch_buffer: 1024,
            max_batch: 256,
            busy_timeout: Duration::from_secs(5),
            check_integrity_on_open: true,
        }
    }
}

/// A [`Storage`] backed by one SQLite file.
pub struct SqliteStore {
    commands: Option<mpsc::Sender<Cmd>>,
    writer: Option<JoinHandle<()>>,
    reads: Arc<ReadSide>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.reads.config.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the database. Blocking: call it at startup. Refuses a corrupt file with
    /// [`StoreError::Corrupt`] and a database another process holds with [`StoreError::Locked`].
    pub fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        if config.read_connections == 0 || config.watch_buffer == 0 || config.max_batch == 0 {
            return Err(StoreError::InvalidArgument(
                "sqlite read_connections, watch_buffer and max_batch must be at least 1".into(),
            ));
        }
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                context: "create database directory",
                source,
            })?;
        }
        let lock = acquire_lock(&config.path)?;
        let (conn, current, compacted) = conn::open_writer(&config)?;
        let shared_current = Arc::new(AtomicU64::new(current));
        let (events, _) = broadcast::channel(config.watch_buffer);
        let reads = Arc::new(ReadSide {
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(config.read_connections)),
            current: Arc::clone(&shared_current),
            events: events.downgrade(),
        });
        let writer = Writer {
            conn,
            path: config.path.clone(),
            current,
            compacted,
            shared_current,
            events,
            retention: config.retention,
            max_batch: config.max_batch,
            busy_timeout: config.busy_timeout,
            _lock: lock,
            last_ts: 0,
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Io {
                path: config.path.clone(),
                context: "start the writer thread for",
                source,
            })?;
        Ok(SqliteStore {
            commands: Some(tx),
            writer: Some(handle),
            reads,
        })
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.reads.config.path
    }

    async fn write(&self, op: Op) -> Result<Outcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Cmd::Write { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn acquire_lock(db: &std::path::Path) -> Result<File, StoreError> {
    let mut lock_path = db.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::Io {
            path: lock_path.clone(),
            context: "open lock file",
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: db.to_owned(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
            path: lock_path,
            context: "lock",
            source,
        }),
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after it drained every queued write; joining
        // releases the database lock before a reopen in the same process.
        self.commands.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument(
            "storage key must not be empty".into(),
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Storage for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.reads
            .with_conn(move |conn, reads| reads.get(conn, &key))
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_owned();
        self.reads
            .with_conn(move |conn, reads| reads.list(conn, &prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        check_key(key)?;
        match self
            .write(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Outcome::Revision(rev) => Ok(rev),
            Outcome::Deleted(_) => unreachable!("create answers with a revision"),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected_mod_revision: u64,
        value: Bytes,
    ) -> Result<u64, StoreError> {
        check_key(key)?;
        match self
            .write(Op::Update {
                key: key.to_owned(),
                expected: expected_mod_revision,
                value,
            })
            .await?
        {
            Outcome::Revision(rev) => Ok(rev),
            Outcome::Deleted(_) => unreachable!("update answers with a revision"),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<Deleted, StoreError> {
        check_key(key)?;
        match self
            .write(Op::Delete {
                key: key.to_owned(),
                expected: expected_mod_revision,
            })
            .await?
        {
            Outcome::Deleted(deleted) => Ok(deleted),
            Outcome::Revision(_) => unreachable!("delete answers with the deleted item"),
        }
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, StoreError> {
        watch::watch(Arc::clone(&self.reads), prefix, from_revision).await
    }

    async fn current_revision(&self) -> Result<u64, StoreError> {
        Ok(self.reads.current.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Cmd::Compact { revision, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}
