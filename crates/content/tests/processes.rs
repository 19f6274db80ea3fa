//! Cross-process tests: the test binary re-runs itself as a child (the ignored
//! `child_process_entry` test, selected with `--ignored --exact`) to prove single-flight
//! across processes, resume after a writer process is killed, and that a dead process's
//! lease stops protecting content.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::*;
use content::{Acquired, GcOptions, Store};

const ROLE: &str = "BERTH_CONTENT_TEST_ROLE";
const ROOT: &str = "BERTH_CONTENT_TEST_ROOT";
const BLOB_LEN: usize = 3 << 20;
const HALF: usize = BLOB_LEN / 2 + 12_345;

struct ChildProc {
    child: Child,
    lines: Receiver<String>,
}

impl ChildProc {
    fn spawn(role: &str, root: &Path) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_process_entry", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(ROLE, role)
            .env(ROOT, root)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                // libtest may print "test child_process_entry ... " before it on the line.
                if let Some((_, msg)) = line.split_once("CHILD: ") {
                    let _ = tx.send(msg.to_owned());
                }
            }
        });
        ChildProc { child, lines }
    }

    fn expect(&self, want: &str) {
        let got = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("child did not say {want:?}: {e}"));
        assert_eq!(got, want);
    }

    fn no_message_within(&self, d: Duration) {
        if let Ok(m) = self.lines.recv_timeout(d) {
            panic!("child said {m:?} too early");
        }
    }

    fn wait_success(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL: no destructors run
        self.child.wait().unwrap();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Never leave a hanging child behind when a test fails; harmless after exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn say(msg: &str) {
    println!("CHILD: {msg}");
}

/// Entry point of the child process; does nothing useful unless spawned by a test below.
#[test]
#[ignore = "helper: run in a child process by the other tests in this file"]
fn child_process_entry() {
    let role = std::env::var(ROLE).expect("spawned by a test with a role");
    let store = Store::open(std::env::var(ROOT).unwrap()).unwrap();
    let bytes = data(BLOB_LEN, 1);
    let d = desc(LAYER, &bytes);
    match role.as_str() {
        // Wait for the parent's writer, then find the blob committed.
        "second-writer" => {
            assert!(store.try_acquire("child", &d, None).unwrap().is_none());
            say("busy");
            match store.acquire("child", &d, None).unwrap() {
                Acquired::Exists(info) => say(&format!("exists {}", info.size)),
                Acquired::Writer(w) => say(&format!("writer at {}", w.offset())),
            }
        }
        // Write half the blob, push it to the kernel, then hang until killed.
        "partial-then-hang" => {
            let mut w = store.writer("child", &d).unwrap();
            w.write_all(&bytes[..HALF]).unwrap();
            w.flush().unwrap();
            say("ready");
            std::thread::sleep(Duration::from_secs(300));
        }
        // Hold a lease on a committed blob, then hang until killed.
        "lease-then-hang" => {
            let lease = store.lease().unwrap();
            match store.acquire("child", &d, Some(&lease)).unwrap() {
                Acquired::Writer(mut w) => {
                    w.write_all(&bytes).unwrap();
                    w.commit().unwrap();
                }
                Acquired::Exists(_) => {}
            }
            say("ready");
            std::thread::sleep(Duration::from_secs(300));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn second_process_waits_for_the_writer_and_finds_the_blob_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = data(BLOB_LEN, 1);
    let d = desc(LAYER, &bytes);
    let Acquired::Writer(mut w) = store.acquire("parent", &d, None).unwrap() else {
        panic!("fresh store")
    };
    let mut child = ChildProc::spawn("second-writer", dir.path());
    child.expect("busy");
    child.no_message_within(Duration::from_millis(300)); // blocked on the lock
    w.write_all(&bytes).unwrap();
    w.commit().unwrap();
    child.expect(&format!("exists {BLOB_LEN}"));
    child.wait_success();
    assert_eq!(store.blobs().unwrap().len(), 1);
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn ingest_of_a_killed_writer_process_resumes_to_a_correct_blob() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(BLOB_LEN, 1);
    let d = desc(LAYER, &bytes);
    let mut child = ChildProc::spawn("partial-then-hang", dir.path());
    child.expect("ready");
    child.kill();

    // Restart: the partial ingest is kept, nothing is visible under blobs/.
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.exists(&d.digest).unwrap());
    assert!(store.blobs().unwrap().is_empty());
    let ingests = store.ingests().unwrap();
    assert_eq!(ingests.len(), 1);
    assert_eq!(ingests[0].offset, HALF as u64);

    let Acquired::Writer(mut w) = store.acquire("parent", &d, None).unwrap() else {
        panic!("not committed")
    };
    assert_eq!(
        w.offset(),
        HALF as u64,
        "resumes where the killed process stopped"
    );
    w.write_all(&bytes[HALF..]).unwrap();
    let info = w.commit().unwrap();
    assert_eq!(info.size, BLOB_LEN as u64);
    assert!(store.verify(&d.digest).is_ok());
}

#[test]
fn lease_of_another_process_protects_until_that_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let d = desc(LAYER, &data(BLOB_LEN, 1));
    let mut child = ChildProc::spawn("lease-then-hang", dir.path());
    child.expect("ready");
    assert!(store.gc(&GcOptions::default()).unwrap().removed.is_empty());
    assert!(store.exists(&d.digest).unwrap(), "leased by a live process");
    child.kill();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.removed, vec![d.digest.clone()]);
    assert_eq!(report.bytes, BLOB_LEN as u64);
}
