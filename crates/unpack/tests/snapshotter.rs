//! Snapshotter behaviour end to end with a real content store: chainID identity and sharing,
//! parallel unpack, diffID mismatch discards, native flattening equals the overlay view,
//! lower-layer hardlinks, refcounts and gc, and crash safety (a child process killed mid-unpack).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::E;
use oci::Digest;
use oci::media_type::Compression;
use unpack::{Error, Limits, Mode, Rootfs, Snapshotter};

fn setup() -> (tempfile::TempDir, content::Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = content::Store::open(tmp.path().join("content")).unwrap();
    (tmp, store)
}

fn base_layers() -> Vec<(Vec<u8>, Compression)> {
    let l1 = common::tar_of(&[
        E::Dir("etc/", 0o755),
        E::File("etc/passwd", b"root:x:0:0", 0o644),
        E::File("etc/hosts", b"127.0.0.1", 0o644),
        E::Dir("opq/", 0o755),
        E::File("opq/lower-a", b"a", 0o644),
        E::Dir("opq/sub/", 0o755),
        E::File("opq/sub/lower-b", b"b", 0o644),
        E::Dir("gone/", 0o755),
        E::File("gone/x", b"x", 0o644),
        E::File("bin-sh", b"#!", 0o755),
        E::Symlink("lib", "usr/lib"),
        E::Dir("srv/", 0o750),
    ]);
    let l2 = common::tar_of(&[
        E::File("etc/.wh.hosts", b"", 0o644),
        E::File(".wh.gone", b"", 0o644),
        E::Dir("opq/", 0o755),
        E::File("opq/upper", b"u", 0o644),
        E::File("opq/.wh..wh..opq", b"", 0o644),
        E::Hardlink("sh-link", "bin-sh"),
        E::Dir("lib/", 0o755),
        E::File("lib/libc.so", b"elf", 0o755),
        E::File("srv/data", b"d", 0o644),
    ]);
    let l3 = common::tar_of(&[
        E::File("etc/hosts", b"back again", 0o600),
        E::Dir("gone/", 0o700),
    ]);
    let l4 = common::tar_of(&[
        E::File("opq/.wh.upper", b"", 0o644),
        E::File("new", b"n", 0o644),
        E::File(".wh.etc", b"", 0o644),
        E::Dir("etc/", 0o755),
        E::File("etc/only", b"fresh", 0o644),
    ]);
    vec![
        (l1, Compression::Gzip),
        (l2, Compression::Zstd),
        (l3, Compression::None),
        (l4, Compression::Gzip),
    ]
}

fn expected_view(view: &std::collections::BTreeMap<String, String>) {
    let keys: Vec<&str> = view.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "bin-sh",
            "etc",
            "etc/only",
            "gone",
            "lib",
            "lib/libc.so",
            "new",
            "opq",
            "sh-link",
            "srv",
            "srv/data"
        ],
        "{view:#?}"
    );
    assert!(
        view["etc/only"].starts_with("file:fresh"),
        "whited out then recreated: lower content hidden"
    );
    assert!(view["sh-link"].starts_with("file:#!"));
    assert!(
        view["lib"].starts_with("dir"),
        "an upper directory replaces a lower symlink"
    );
    assert!(
        view["srv"].starts_with("dir mode=40750"),
        "implicit parent keeps the lower attributes: {}",
        view["srv"]
    );
}

#[test]
fn parallel_unpack_native_view_and_sharing() {
    let (tmp, store) = setup();
    let (config, layers) = common::image(&store, &base_layers());
    let snap = Snapshotter::open(tmp.path().join("snap"))
        .unwrap()
        .with_parallelism(4)
        .with_mode(Mode::Native);
    let chain = snap
        .unpack_image(&store, &config, &layers, &Limits::default(), "image:a")
        .unwrap();
    assert_eq!(chain, unpack::chain_ids(&config.rootfs.diff_ids));
    assert_eq!(snap.list().unwrap().len(), 4);
    // The hardlink into a lower layer was copied up and linked, as overlay copy-up does.
    let l2 = snap.snapshot_fs(&chain[1]);
    assert_eq!(
        fs::metadata(l2.join("sh-link")).unwrap().ino(),
        fs::metadata(l2.join("bin-sh")).unwrap().ino()
    );
    let Rootfs::Native { path } = snap.prepare_rootfs(&chain, "c1").unwrap() else {
        panic!("native mode builds a native rootfs")
    };
    expected_view(&common::tree(&path));

    // A second image sharing the first two layers reuses those snapshots.
    let mut other = base_layers();
    other.truncate(2);
    other.push((
        common::tar_of(&[E::File("third", b"3", 0o644)]),
        Compression::Gzip,
    ));
    let (config2, layers2) = common::image(&store, &other);
    let chain2 = snap
        .unpack_image(&store, &config2, &layers2, &Limits::default(), "image:b")
        .unwrap();
    assert_eq!(&chain2[..2], &chain[..2]);
    assert_ne!(chain2[2], chain[2]);
    assert_eq!(snap.list().unwrap().len(), 5);
    let mut users = snap.users(&chain[0]).unwrap();
    users.sort();
    assert_eq!(users, vec!["container:c1", "image:a", "image:b"]);

    // gc removes only what nothing uses.
    assert!(snap.gc().unwrap().is_empty());
    snap.release(&chain, "image:a").unwrap();
    assert!(
        snap.gc().unwrap().is_empty(),
        "container c1 still uses the chain"
    );
    snap.remove_rootfs("c1").unwrap();
    assert!(!path.exists());
    let mut removed = snap.gc().unwrap();
    removed.sort();
    let mut want = vec![chain[2].clone(), chain[3].clone()];
    want.sort();
    assert_eq!(removed, want);
    assert!(snap.info(&chain[0]).unwrap().is_some() && snap.info(&chain[3]).unwrap().is_none());
}

#[test]
fn native_flattening_matches_the_overlay_view() {
    let (tmp, store) = setup();
    let (config, layers) = common::image(&store, &base_layers());
    let snap = Snapshotter::open(tmp.path().join("snap")).unwrap();
    if !snap.overlay_support().usable {
        // Overlay is unavailable here; the native view is still checked against the spec.
        eprintln!("overlay unusable: {}", snap.overlay_support().reason);
    }
    let chain = snap
        .unpack_image(&store, &config, &layers, &Limits::default(), "image:a")
        .unwrap();
    let native = Snapshotter::open(tmp.path().join("snap"))
        .unwrap()
        .with_mode(Mode::Native);
    let Rootfs::Native { path } = native.prepare_rootfs(&chain, "native").unwrap() else {
        panic!()
    };
    let native_view = common::tree(&path);
    expected_view(&native_view);
    let rootfs = snap.prepare_rootfs(&chain, "ovl").unwrap();
    if let Rootfs::Overlay { .. } = &rootfs {
        let target = tmp.path().join("merged");
        fs::create_dir(&target).unwrap();
        rootfs.mount(&target).unwrap();
        let overlay_view = common::tree(&target);
        unpack::unmount(&target).unwrap();
        assert_eq!(overlay_view, native_view);
    } else {
        assert!(!snap.overlay_support().usable);
    }
    snap.remove_rootfs("ovl").unwrap();
    snap.remove_rootfs("native").unwrap();
}

#[test]
fn diff_id_mismatch_discards_the_snapshot() {
    let (tmp, store) = setup();
    let tar = common::tar_of(&[E::File("f", b"x", 0o644)]);
    let blob = common::compress(&tar, Compression::Gzip);
    let desc = common::commit(&store, common::media_type_of(Compression::Gzip), &blob);
    let wrong = Digest::sha256(b"not the layer");
    let config = common::config_for(std::slice::from_ref(&wrong));
    let snap = Snapshotter::open(tmp.path().join("snap")).unwrap();
    let e = snap
        .unpack_image(
            &store,
            &config,
            std::slice::from_ref(&desc),
            &Limits::default(),
            "image:x",
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::DiffId { .. }), "{msg}");
    assert!(
        msg.contains(&desc.digest.to_string()) && msg.contains(&wrong.to_string()),
        "{msg}"
    );
    assert!(snap.list().unwrap().is_empty());
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("snap/snapshots"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "staging removed: {leftovers:?}");
}

#[test]
fn breakout_in_a_later_layer_leaves_no_snapshot_of_it() {
    let (tmp, store) = setup();
    let good = common::tar_of(&[E::File("ok", b"ok", 0o644)]);
    let evil = common::tar_of(&[E::Hardlink("x", "/etc/shadow")]);
    let (config, layers) = common::image(
        &store,
        &[(good, Compression::Gzip), (evil, Compression::Gzip)],
    );
    let snap = Snapshotter::open(tmp.path().join("snap")).unwrap();
    let e = snap
        .unpack_image(&store, &config, &layers, &Limits::default(), "image:x")
        .unwrap_err();
    assert!(matches!(e, Error::InvalidHardlink { .. }), "{e}");
    let ids = unpack::chain_ids(&config.rootfs.diff_ids);
    assert!(snap.info(&ids[1]).unwrap().is_none());
}

#[test]
fn mismatched_layer_count_and_media_type_are_refused() {
    let (tmp, store) = setup();
    let (config, mut layers) = common::image(&store, &base_layers()[..1]);
    let snap = Snapshotter::open(tmp.path().join("snap")).unwrap();
    let e = snap
        .unpack_image(&store, &config, &[], &Limits::default(), "i")
        .unwrap_err();
    assert!(matches!(
        e,
        Error::LayerCount {
            diff_ids: 1,
            layers: 0
        }
    ));
    layers[0].media_type = "application/vnd.example.unknown".into();
    let e = snap
        .unpack_image(&store, &config, &layers, &Limits::default(), "i")
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedMediaType { .. }), "{e}");
}

const CHILD_ENV: &str = "UNPACK_KILL_TEST_ROOT";

/// Child half of `killed_unpack_never_looks_complete`: unpacks a large layer slowly enough
/// to be killed mid-way. Does nothing unless started by that test.
#[test]
fn child_process_for_kill_test() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let store = content::Store::open(root.join("content")).unwrap();
    let config: oci::ImageConfig =
        oci::parse_config(&fs::read(root.join("config.json")).unwrap()).unwrap();
    let layers: Vec<oci::Descriptor> =
        serde_json::from_slice(&fs::read(root.join("layers.json")).unwrap()).unwrap();
    let snap = Snapshotter::open(root.join("snap")).unwrap();
    fs::write(root.join("started"), b"").unwrap();
    let _ = snap.unpack_image(&store, &config, &layers, &Limits::default(), "image:k");
    fs::write(root.join("finished"), b"").unwrap();
}

#[test]
fn killed_unpack_never_looks_complete() {
    let (tmp, store) = setup();
    // Many files so the unpack takes a while.
    let mut b = tar::Builder::new(Vec::new());
    let data = vec![b'z'; 8 * 1024];
    for i in 0..20_000 {
        common::append(
            &mut b,
            &E::File(Box::leak(format!("f{i}").into_boxed_str()), &data, 0o644),
        );
    }
    let tar = b.into_inner().unwrap();
    let (config, layers) = common::image(&store, &[(tar, Compression::Gzip)]);
    let ids: Vec<String> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect();
    fs::write(
        tmp.path().join("config.json"),
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#, ids.join(",")),
    )
    .unwrap();
    fs::write(
        tmp.path().join("layers.json"),
        serde_json::to_vec(&layers).unwrap(),
    )
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_for_kill_test", "--nocapture"])
        .env(CHILD_ENV, tmp.path())
        .spawn()
        .unwrap();
    let started = tmp.path().join("started");
    for _ in 0..600 {
        if started.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.exists(), "child started");
    // Wait until the staging directory has some files, then kill.
    let snaps = tmp.path().join("snap/snapshots");
    for _ in 0..600 {
        let busy = fs::read_dir(&snaps)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                fs::read_dir(e.path().join("fs"))
                    .map(|d| d.count() > 100)
                    .unwrap_or(false)
            });
        if busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !tmp.path().join("finished").exists(),
        "the child was killed before finishing"
    );
    let snap = Snapshotter::open(tmp.path().join("snap")).unwrap();
    assert!(
        snap.list().unwrap().is_empty(),
        "no complete-looking snapshot"
    );
    let left: Vec<_> = fs::read_dir(&snaps).unwrap().collect();
    assert!(
        left.is_empty(),
        "leftover staging removed on open: {left:?}"
    );
    // A fresh unpack then succeeds.
    let chain = snap
        .unpack_image(&store, &config, &layers, &Limits::default(), "image:k")
        .unwrap();
    assert_eq!(snap.list().unwrap().len(), 1);
    assert!(snap.snapshot_fs(&chain[0]).join("f19999").exists());
}

/// The base image unpacked as `image:a` into a snapshotter at `<tmp>/snap` (returned as the root).
fn base_image_unpacked() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Snapshotter,
    Vec<unpack::SnapshotId>,
) {
    let (tmp, store) = setup();
    let (config, layers) = common::image(&store, &base_layers());
    let root = tmp.path().join("snap");
    let snap = Snapshotter::open(&root).unwrap();
    let chain = snap
        .unpack_image(&store, &config, &layers, &Limits::default(), "image:a")
        .unwrap();
    (tmp, root, snap, chain)
}

#[test]
fn a_container_holds_its_snapshots_through_its_chain_file_not_the_refs_lock() {
    let (_tmp, root, snap, chain) = base_image_unpacked();
    let refs = || -> Vec<String> {
        chain
            .iter()
            .map(|id| {
                fs::read_to_string(root.join("refs").join(format!("sha256-{}", id.0.hex())))
                    .unwrap()
            })
            .collect()
    };
    let refs_before = refs();
    snap.prepare_rootfs(&chain, "c1").unwrap();
    assert_eq!(refs_before, refs(), "preparing a root writes no refs file");
    assert_eq!(
        snap.users(&chain[0]).unwrap(),
        vec!["container:c1", "image:a"]
    );

    snap.release(&chain, "image:a").unwrap();
    assert!(
        snap.gc().unwrap().is_empty(),
        "c1's chain file keeps every layer"
    );
    snap.remove_rootfs("c1").unwrap();
    assert_eq!(snap.gc().unwrap().len(), chain.len());
}

#[test]
fn container_users_recorded_in_refs_by_older_versions_are_still_honoured_and_released() {
    let (_tmp, _root, snap, chain) = base_image_unpacked();
    snap.prepare_rootfs(&chain, "old").unwrap();
    // What an older version wrote besides the chain file.
    snap.retain(&chain, "container:old").unwrap();
    snap.release(&chain, "image:a").unwrap();
    assert!(snap.gc().unwrap().is_empty());
    snap.remove_rootfs("old").unwrap();
    assert!(snap.users(&chain[0]).unwrap().is_empty());
    assert_eq!(snap.gc().unwrap().len(), chain.len());
}

#[test]
fn an_unreadable_container_chain_stops_gc_and_names_the_file() {
    let (_tmp, root, snap, chain) = base_image_unpacked();
    snap.prepare_rootfs(&chain, "c1").unwrap();
    snap.release(&chain, "image:a").unwrap();
    let chain_file = root.join("containers/c1/chain.json");
    fs::write(&chain_file, b"{not json").unwrap();
    let err = snap.gc().unwrap_err().to_string();
    assert!(err.contains(&chain_file.display().to_string()), "{err}");
    assert_eq!(
        snap.list().unwrap().len(),
        chain.len(),
        "nothing was removed"
    );
}
