//! SQLite-specific behaviour beyond the conformance suite: 200 concurrent clients without
//! `database is locked`, lagging watchers that catch up from history or expire, history
//! retention, acknowledged writes surviving kill -9 of the process, refusal of a corrupt or
//! already-open database.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use store::sqlite::{Retention, SqliteConfig, SqliteStore};
use store::suite::next_events;
use store::{ListOptions, Storage, StoreError};

fn config(dir: &tempfile::TempDir) -> SqliteConfig {
    SqliteConfig::new(dir.path().join("state.db"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_clients_never_see_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStore::open(config(&dir)).unwrap());
    let mut tasks = Vec::new();
    for c in 0..200 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let key = format!("/registry/core/configmaps/load/c{c:03}");
            let mut rev = s.create(&key, Bytes::from("0")).await?;
            for i in 1..=5 {
                rev = s.update(&key, rev, Bytes::from(i.to_string())).await?;
                s.get(&key).await?;
            }
            s.list(
                "/registry/core/configmaps/load/",
                ListOptions {
                    limit: Some(50),
                    ..ListOptions::default()
                },
            )
            .await?;
            Ok::<_, StoreError>(rev)
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(
            t.await
                .unwrap()
                .expect("no client sees an error under load"),
        );
    }
    let list = s
        .list("/registry/core/configmaps/load/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 200);
    assert!(list.items.iter().all(|kv| kv.value == "5"));
    assert_eq!(s.current_revision().await.unwrap(), 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_catches_up_from_history_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.watch_buffer = 2;
    cfg.max_batch = 1;
    let s = SqliteStore::open(cfg).unwrap();
    let mut watch = s.watch("/w/", 0).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..300 {
        expected.push(
            s.create(&format!("/w/{i:03}"), Bytes::from("v"))
                .await
                .unwrap(),
        );
    }
    let got: Vec<u64> = next_events(&mut watch, 300)
        .await
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_behind_compaction_ends_with_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.watch_buffer = 2;
    cfg.max_batch = 1;
    let s = SqliteStore::open(cfg).unwrap();
    let mut watch = s.watch("/w/", 0).await.unwrap();
    for i in 0..50 {
        s.create(&format!("/w/{i:02}"), Bytes::from("v"))
            .await
            .unwrap();
    }
    s.compact(s.current_revision().await.unwrap())
        .await
        .unwrap();
    let mut delivered = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch answers")
        {
            Some(Ok(_)) => delivered += 1,
            Some(Err(e)) => break e,
            None => panic!("watch ended without an error after {delivered} events"),
        }
    };
    assert!(matches!(err, StoreError::Expired { .. }), "{err}");
    assert!(delivered < 50);
    assert!(
        watch.next().await.is_none(),
        "the stream ends after Expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_revision_count_prunes_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.retention = Retention {
        max_revisions: 10,
        max_age: None,
    };
    let s = SqliteStore::open(cfg).unwrap();
    for i in 0..50 {
        s.create(&format!("/r/{i:02}"), Bytes::from("v"))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.watch("/r/", 1).await {
            Err(StoreError::Expired { compacted, .. }) => {
                assert!(
                    compacted <= 40,
                    "keeps the last 10 revisions, compacted {compacted}"
                );
                break;
            }
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("history was not pruned within 10 s"),
            Err(e) => panic!("{e}"),
        }
    }
    let mut recent = s.watch("/r/", 45).await.unwrap();
    assert_eq!(next_events(&mut recent, 5).await.len(), 5);
    let list = s.list("/r/", ListOptions::default()).await.unwrap();
    assert_eq!(
        list.items.len(),
        50,
        "pruning history never touches current values"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_prunes_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.retention = Retention {
        max_revisions: 1_000_000,
        max_age: Some(Duration::from_millis(300)),
    };
    let s = SqliteStore::open(cfg).unwrap();
    for i in 0..5 {
        s.create(&format!("/a/{i}"), Bytes::from("v"))
            .await
            .unwrap();
    }
    let mut young = s.watch("/a/", 0).await.unwrap();
    assert_eq!(
        next_events(&mut young, 5).await.len(),
        5,
        "young history replays"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.watch("/a/", 0).await {
            Err(StoreError::Expired { .. }) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("old history was not pruned within 10 s"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn corrupt_database_is_refused_with_a_backup_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("backup") && text.contains("state.db"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "never re-initialised"
    );
}

#[tokio::test]
async fn damaged_page_is_found_by_the_integrity_check_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
        for i in 0..400 {
            s.create(&format!("/d/{i:04}"), Bytes::from(vec![b'v'; 300]))
                .await
                .unwrap();
        }
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "database spans many pages");
    // Overwrite the middle of the file (b-tree pages of kv/events), leaving the header intact.
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 8192] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("backup"), "{err}");
}

#[tokio::test]
async fn second_open_of_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(config(&dir)).unwrap();
    let err = SqliteStore::open(config(&dir)).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(first);
    SqliteStore::open(config(&dir)).expect("reopens once the first store is closed");
}

#[tokio::test]
async fn empty_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(config(&dir)).unwrap();
    let err = s.create("", Bytes::from("v")).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
}

const CHILD_DB_ENV: &str = "BERTH_STORE_KILL9_CHILD_DB";

/// Child process of `acknowledged_writes_survive_kill_9`: writes until killed, printing each
/// acknowledged revision.
#[test]
#[ignore = "helper process started by acknowledged_writes_survive_kill_9"]
fn kill9_child_writer() {
    let path = std::env::var(CHILD_DB_ENV).expect("run by acknowledged_writes_survive_kill_9");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = Arc::new(SqliteStore::open(SqliteConfig::new(path)).unwrap());
        let mut tasks = Vec::new();
        for w in 0..4 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/k9/{w}-{i:06}");
                    let rev = s.create(&key, Bytes::from(key.clone())).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {rev}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill9_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    let mut line = String::new();
    while acked.len() < 300 {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("child exited after {} acknowledgements", acked.len());
        }
        if let Some(rest) = line.trim().strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').unwrap();
            acked.push((key.to_owned(), rev.parse::<u64>().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements already in the pipe also count.
    for line in reader.lines() {
        if let Some(rest) = line.unwrap().trim().strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').unwrap();
            acked.push((key.to_owned(), rev.parse().unwrap()));
        }
    }

    let s = SqliteStore::open(SqliteConfig::new(&path)).expect("reopens after kill -9");
    for (key, rev) in &acked {
        let kv = s
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *rev);
        assert_eq!(kv.value, Bytes::from(key.clone()));
    }
    let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
    assert!(s.current_revision().await.unwrap() >= max_acked);
    let next = s.create("/k9/after", Bytes::from("x")).await.unwrap();
    assert!(next > max_acked);
}
