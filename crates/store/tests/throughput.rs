//! Create throughput of the SQLite store against the raw SQLite insert rate with the same
//! durability settings (WAL, synchronous=FULL, one transaction per insert). Timing-based, so it
//! is ignored by default; run it on a quiet machine with
//! `cargo test -p store --release --test throughput -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use store::Storage;
use store::sqlite::{SqliteConfig, SqliteStore};

const N: usize = 2_000;

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{{\"metadata\":{{\"name\":\"obj-{i}\"}},\"data\":\"").into_bytes();
    v.resize(1_000, b'x');
    v.extend_from_slice(b"\"}");
    v
}

fn raw_inserts_per_second(dir: &std::path::Path) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE t (key BLOB PRIMARY KEY, value BLOB NOT NULL);",
    )
    .unwrap();
    let start = Instant::now();
    for i in 0..N {
        conn.prepare_cached("INSERT INTO t (key, value) VALUES (?1, ?2)")
            .unwrap()
            .execute(rusqlite::params![
                format!("/registry/core/configmaps/default/obj-{i}").as_bytes(),
                value(i)
            ])
            .unwrap();
    }
    N as f64 / start.elapsed().as_secs_f64()
}

async fn store_creates_per_second(dir: &std::path::Path, clients: usize) -> f64 {
    let s = Arc::new(
        SqliteStore::open(SqliteConfig::new(dir.join(format!("store-{clients}.db")))).unwrap(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for i in (c..N).step_by(clients) {
                s.create(
                    &format!("/registry/core/configmaps/default/obj-{i}"),
                    Bytes::from(value(i)),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    N as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing benchmark; run explicitly with --ignored on a quiet machine"]
async fn create_throughput_is_at_least_half_the_raw_insert_rate() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_inserts_per_second(dir.path());
    let sequential = store_creates_per_second(dir.path(), 1).await;
    let concurrent = store_creates_per_second(dir.path(), 32).await;
    println!(
        "raw insert {raw:.0}/s, store create sequential {sequential:.0}/s ({:.0}%), 32 clients {concurrent:.0}/s ({:.0}%)",
        100.0 * sequential / raw,
        100.0 * concurrent / raw
    );
    assert!(
        sequential >= 0.5 * raw,
        "sequential creates below 50% of raw inserts"
    );
    assert!(
        concurrent >= 0.5 * raw,
        "concurrent creates below 50% of raw inserts"
    );
}
