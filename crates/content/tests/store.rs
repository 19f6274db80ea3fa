//! Integration tests of the content store's public API: image records, start-up clean-up,
//! verification and quarantine, garbage collection with images and leases.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use content::{Acquired, Error, GcOptions, Store};

#[test]
fn image_records_survive_reopen_and_keep_created_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (m, _, _) = image(&store, 1);
    let name = "registry.example.com:5000/team/app@sha256:".to_string() + &"0".repeat(64);
    let first = store.put_image(&name, &m, None, Some(123)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let second = store
        .put_image(&name, &m, Some(&m.digest), Some(456))
        .unwrap();
    assert_eq!(second.created, first.created, "created kept on update");
    assert!(second.updated > first.updated);
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let got = store.get_image(&name).unwrap().unwrap();
    assert_eq!(got.name, name);
    assert_eq!(got.target, m);
    assert_eq!(got.manifest.as_ref(), Some(&m.digest));
    assert_eq!(got.total_size, Some(456));
    // RFC 3339 keeps nanoseconds, so times round-trip exactly.
    assert_eq!(got.created, first.created);
    assert_eq!(got.updated, second.updated);
    let all = store.list_images().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0], got);

    assert!(store.remove_image(&name).unwrap());
    assert!(!store.remove_image(&name).unwrap());
    assert!(store.get_image(&name).unwrap().is_none());
    assert!(
        Store::open(dir.path())
            .unwrap()
            .list_images()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn image_record_file_is_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (m, _, _) = image(&store, 2);
    store
        .put_image("docker.io/library/app:1", &m, None, None)
        .unwrap();
    let files: Vec<_> = fs::read_dir(dir.path().join("images")).unwrap().collect();
    assert_eq!(files.len(), 1);
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(files[0].as_ref().unwrap().path()).unwrap()).unwrap();
    assert_eq!(v["schemaVersion"], 1);
    assert_eq!(v["name"], "docker.io/library/app:1");
    assert_eq!(v["target"]["digest"], m.digest.to_string());
    assert_eq!(v["target"]["mediaType"], MANIFEST);
    assert_eq!(v["target"]["size"], m.size);
    assert!(v["created"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn image_record_is_refused_until_all_blobs_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config = put(&store, CONFIG, b"{}");
    let layer = desc(LAYER, &data(100, 9)); // never written
    let m = put(&store, MANIFEST, &manifest_json(&config, &[&layer]));
    let err = store.put_image("app:1", &m, None, None).unwrap_err();
    assert!(
        matches!(&err, Error::IncompleteImage { missing, .. } if *missing == layer.digest),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&layer.digest.to_string()) && msg.contains(&m.digest.to_string()));
    assert!(store.get_image("app:1").unwrap().is_none());

    let missing_target = desc(MANIFEST, b"{\"schemaVersion\":2}");
    assert!(matches!(
        store.put_image("app:2", &missing_target, None, None),
        Err(Error::IncompleteImage { .. })
    ));
}

#[test]
fn index_image_needs_only_the_selected_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (amd64, _, _) = image(&store, 3);
    let arm64 = desc(MANIFEST, b"{\"not\":\"pulled\"}");
    let index = put(
        &store,
        INDEX,
        &index_json(&[(&amd64, "amd64"), (&arm64, "arm64")]),
    );
    store
        .put_image("app:multi", &index, Some(&amd64.digest), Some(1))
        .unwrap();
    // Selecting a platform that was not fetched is refused.
    assert!(matches!(
        store.put_image("app:multi", &index, Some(&arm64.digest), None),
        Err(Error::IncompleteImage { .. })
    ));
}

#[test]
fn stale_temp_files_of_dead_processes_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let tmp = dir.path().join("tmp");
    fs::write(tmp.join("999999999.0.write"), b"half a record").unwrap();
    fs::write(tmp.join("not-a-temp-name"), b"x").unwrap();
    let own = tmp.join(format!("{}.77.write", std::process::id()));
    fs::write(&own, b"in flight").unwrap();
    drop(Store::open(dir.path()).unwrap());
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![own], "only the live process's temp file stays");
}

#[test]
fn unresumable_and_already_committed_ingests_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = data(1000, 4);
    let d = desc(LAYER, &bytes);
    // A resumable ingest (dropped writer) survives reopen.
    let mut w = store.writer("k", &d).unwrap();
    w.write_all(&bytes[..400]).unwrap();
    drop(w);
    // Data without metadata: cannot be trusted, removed.
    let orphan = dir
        .path()
        .join("ingest")
        .join(format!("sha256-{}", "ab".repeat(32)));
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join("data"), b"partial").unwrap();
    // Junk that is not a digest directory: removed.
    fs::write(dir.path().join("ingest").join("junk"), b"x").unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let ingests = store.ingests().unwrap();
    assert_eq!(ingests.len(), 1);
    assert_eq!((ingests[0].offset, ingests[0].total), (400, 1000));
    assert!(!orphan.exists());
    assert!(!dir.path().join("ingest").join("junk").exists());
    assert!(
        !store.exists(&d.digest).unwrap(),
        "a partial blob is never visible"
    );

    // Committed elsewhere (e.g. the same digest under another ingest): the ingest goes.
    let other = Store::open(dir.path()).unwrap();
    fs::create_dir_all(other.root().join("blobs/sha256")).unwrap();
    fs::write(other.blob_path(&d.digest), &bytes).unwrap();
    drop((store, other));
    let store = Store::open(dir.path()).unwrap();
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn read_side_reports_info_contents_and_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bytes = data(12_345, 5);
    let d = put(&store, LAYER, &bytes);
    let info = store.info(&d.digest).unwrap();
    assert_eq!((info.digest.clone(), info.size), (d.digest.clone(), 12_345));
    let mut blob = store.open_blob(&d.digest).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut blob, &mut got).unwrap();
    assert_eq!(got, bytes);
    assert!(matches!(
        store.read_blob(&d.digest, 100),
        Err(Error::TooLarge {
            size: 12_345,
            limit: 100,
            ..
        })
    ));
    assert_eq!(store.blobs().unwrap().len(), 1);

    assert!(store.delete(&d.digest).unwrap());
    assert!(!store.delete(&d.digest).unwrap());
    let err = store.info(&d.digest).unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains(&d.digest.to_string()));
    assert!(matches!(
        store.open_blob(&d.digest),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn verify_quarantines_a_corrupted_blob_and_it_is_never_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = put(&store, LAYER, &data(3000, 6));
    let bad = put(&store, LAYER, &data(3000, 7));
    assert!(store.verify(&bad.digest).is_ok());
    let path = store.blob_path(&bad.digest);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[2999] ^= 0x80;
    fs::write(&path, &bytes).unwrap();

    let report = store.verify_all().unwrap();
    assert_eq!(report.ok, 1);
    assert_eq!(report.corrupt.len(), 1);
    let msg = report.corrupt[0].to_string();
    assert!(msg.contains(&bad.digest.to_string()), "{msg}");
    assert!(msg.contains(&digest_of(&bytes).to_string()), "{msg}");
    assert!(!store.exists(&bad.digest).unwrap());
    assert!(store.exists(&good.digest).unwrap());
    assert_eq!(
        fs::read_dir(dir.path().join("quarantine")).unwrap().count(),
        1
    );
    // A re-pull writes it again.
    assert!(matches!(
        store.acquire("again", &bad, None).unwrap(),
        Acquired::Writer(_)
    ));
}

#[test]
fn gc_keeps_referenced_and_leased_blobs_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Image via an index with one platform pulled.
    let (amd64, config, layers) = image(&store, 10);
    let arm64 = desc(MANIFEST, b"{\"other\":1}");
    let index = put(
        &store,
        INDEX,
        &index_json(&[(&amd64, "amd64"), (&arm64, "arm64")]),
    );
    store
        .put_image("docker.io/library/app:1", &index, Some(&amd64.digest), None)
        .unwrap();
    // A second image sharing a layer, then removed: its unique blobs go, the shared one stays.
    let config2 = put(&store, CONFIG, b"{\"two\":2}");
    let only2 = put(&store, LAYER, &data(9_000, 11));
    let m2 = put(
        &store,
        MANIFEST,
        &manifest_json(&config2, &[&layers[0], &only2]),
    );
    store.put_image("app:2", &m2, None, None).unwrap();
    store.remove_image("app:2").unwrap();
    // A blob mid-pull, protected by a lease.
    let lease = store.lease().unwrap();
    let leased_bytes = data(4_000, 12);
    let leased = desc(LAYER, &leased_bytes);
    match store.acquire("pull", &leased, Some(&lease)).unwrap() {
        Acquired::Writer(mut w) => {
            w.write_all(&leased_bytes).unwrap();
            w.commit().unwrap();
        }
        Acquired::Exists(_) => panic!("fresh blob"),
    }
    assert_eq!(lease.digests(), vec![leased.digest.clone()]);
    let garbage = put(&store, LAYER, &data(2_000, 13));

    let report = store.gc(&GcOptions::default()).unwrap();
    let mut expected_removed = vec![
        config2.digest.clone(),
        only2.digest.clone(),
        m2.digest.clone(),
        garbage.digest.clone(),
    ];
    expected_removed.sort();
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(removed, expected_removed);
    assert_eq!(
        report.bytes,
        config2.size + only2.size + m2.size + garbage.size
    );
    for kept in [&index, &amd64, &config, &layers[0], &layers[1], &leased] {
        assert!(store.exists(&kept.digest).unwrap(), "{} kept", kept.digest);
    }

    // Once the lease is gone, the blob it protected is garbage.
    drop(lease);
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.removed, vec![leased.digest.clone()]);
    assert_eq!(fs::read_dir(dir.path().join("leases")).unwrap().count(), 0);
    // Nothing left to collect.
    assert!(store.gc(&GcOptions::default()).unwrap().removed.is_empty());
}

#[test]
fn gc_removes_idle_ingests_but_not_one_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let idle_bytes = data(1000, 20);
    let idle = desc(LAYER, &idle_bytes);
    let mut w = store.writer("idle", &idle).unwrap();
    w.write_all(&idle_bytes[..500]).unwrap();
    drop(w);
    let busy_bytes = data(1000, 21);
    let busy = desc(LAYER, &busy_bytes);
    let mut active = store.writer("busy", &busy).unwrap();
    active.write_all(&busy_bytes[..10]).unwrap();
    active.flush().unwrap();

    // A generous threshold keeps both.
    let r = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(r.ingests_removed, 0);
    std::thread::sleep(Duration::from_millis(20));
    let r = store
        .gc(&GcOptions {
            ingest_max_age: Duration::from_millis(1),
        })
        .unwrap();
    assert_eq!(r.ingests_removed, 1);
    assert!(r.ingest_bytes >= 500);
    let left = store.ingests().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].digest, busy.digest);
    active.write_all(&busy_bytes[10..]).unwrap();
    active.commit().unwrap();
}

#[test]
fn gc_deletes_nothing_when_a_recorded_manifest_cannot_be_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (m, _, _) = image(&store, 30);
    store.put_image("app:1", &m, None, None).unwrap();
    let garbage = put(&store, LAYER, &data(10, 31));
    // Replace the manifest bytes behind the store's back (simulated corruption).
    let path = store.blob_path(&m.digest);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"{ not json").unwrap();
    let err = store.gc(&GcOptions::default()).unwrap_err();
    assert!(matches!(err, Error::UnreadableManifest { .. }), "{err:?}");
    assert!(err.to_string().contains("app:1"));
    assert!(store.exists(&garbage.digest).unwrap(), "nothing deleted");
}
