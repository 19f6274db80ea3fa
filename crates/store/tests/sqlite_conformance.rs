//! Runs the storage conformance suite against the SQLite backend, each case on a fresh database
//! in its own temporary directory.

use std::sync::Arc;

use store::Storage;
use store::sqlite::{SqliteConfig, SqliteStore};
use store::suite::{Backend, BoxFuture};

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }
}

impl Backend for Sqlite {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Storage>> {
        let config = SqliteConfig::new(self.dir.path().join("state.db"));
        Box::pin(async move {
            Arc::new(SqliteStore::open(config).expect("open sqlite store")) as Arc<dyn Storage>
        })
    }
}

store::conformance_tests!(Sqlite::new());
