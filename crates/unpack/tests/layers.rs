//! Single-layer behaviour of `apply_layer`: metadata preservation (modes, setuid, ownership,
//! times, xattrs, hardlinks, devices), duplicates, whiteout translation, limits (gzip/zstd
//! bombs, PAX header size, entry count, path length), sparse refusal and digest checks.
//! Runs as root (the agent does).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::E;
use oci::Digest;
use oci::media_type::Compression;
use unpack::{ApplyOptions, Error, LayerSpec, Limits};

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn getxattr(path: &std::path::Path, key: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    let r = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

#[test]
fn metadata_is_preserved() {
    assert!(is_root(), "these tests run as root, like the node agent");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = common::raw_header(tar::EntryType::Directory, "d/", "", 0, 0o2775);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(1_000_000_000);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let mut h = common::raw_header(tar::EntryType::Regular, "d/suid", "", 3, 0o4755);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(1_100_000_000);
    h.set_cksum();
    b.append_pax_extensions([
        ("SCHILY.xattr.user.note", &b"hello"[..]),
        ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
        ("mtime", &b"1100000000.25"[..]),
    ])
    .unwrap();
    b.append(&h, &b"bin"[..]).unwrap();
    common::append(&mut b, &E::Hardlink("d/suid-link", "d/suid"));
    let mut h = common::raw_header(tar::EntryType::Symlink, "d/sym", "/etc/passwd", 0, 0o777);
    h.set_uid(42);
    h.set_gid(43);
    h.set_mtime(1_200_000_000);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    common::append(&mut b, &E::Char("d/null", 1, 3));
    common::append(&mut b, &E::Fifo("d/fifo"));
    let tar = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let applied = common::apply(&tar, Compression::Gzip, tmp.path(), &Limits::default()).unwrap();
    assert_eq!(applied.entries, 6);
    assert!(
        applied
            .warnings
            .iter()
            .any(|w| w.contains("trusted.overlay.opaque")),
        "{:?}",
        applied.warnings
    );
    let d = fs::symlink_metadata(tmp.path().join("d")).unwrap();
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o2775, 1234, 5678));
    assert_eq!(
        d.mtime(),
        1_000_000_000,
        "directory mtime is fixed up after its content"
    );
    let f = fs::symlink_metadata(tmp.path().join("d/suid")).unwrap();
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid()),
        (0o4755, 1234, 5678),
        "setuid survives chown"
    );
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_100_000_000, 250_000_000));
    assert_eq!(f.nlink(), 2);
    assert_eq!(
        fs::metadata(tmp.path().join("d/suid-link")).unwrap().ino(),
        f.ino()
    );
    assert_eq!(
        getxattr(&tmp.path().join("d/suid"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        getxattr(&tmp.path().join("d/suid"), "trusted.overlay.opaque"),
        None
    );
    let s = fs::symlink_metadata(tmp.path().join("d/sym")).unwrap();
    assert!(s.file_type().is_symlink());
    assert_eq!((s.uid(), s.gid(), s.mtime()), (42, 43, 1_200_000_000));
    assert_eq!(
        fs::read_link(tmp.path().join("d/sym")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    let n = fs::symlink_metadata(tmp.path().join("d/null")).unwrap();
    if unpack::ApplyOptions::for_current_process().devices {
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), libc::makedev(1, 3));
    }
    assert!(
        fs::symlink_metadata(tmp.path().join("d/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn duplicates_last_wins_and_types_replace_each_other() {
    let tar = common::tar_of(&[
        E::File("a", b"first", 0o644),
        E::File("a", b"second", 0o600),
        E::Dir("b/", 0o755),
        E::File("b/child", b"x", 0o644),
        E::File("b", b"file now", 0o644),
        E::File("c", b"file", 0o644),
        E::Dir("c/", 0o700),
        E::File("c/inner", b"in", 0o644),
        E::Dir("m/", 0o755),
        E::File("m/keep", b"k", 0o644),
        E::Dir("m/", 0o711),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    common::apply(&tar, Compression::None, tmp.path(), &Limits::default()).unwrap();
    let a = fs::metadata(tmp.path().join("a")).unwrap();
    assert_eq!(fs::read(tmp.path().join("a")).unwrap(), b"second");
    assert_eq!(a.permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read(tmp.path().join("b")).unwrap(), b"file now");
    assert!(fs::metadata(tmp.path().join("c")).unwrap().is_dir());
    assert_eq!(fs::read(tmp.path().join("c/inner")).unwrap(), b"in");
    assert_eq!(
        fs::read(tmp.path().join("m/keep")).unwrap(),
        b"k",
        "dir over dir merges"
    );
    assert_eq!(
        fs::metadata(tmp.path().join("m"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o711
    );
}

#[test]
fn whiteouts_become_overlay_markers_and_are_recorded() {
    let tar = common::tar_of(&[
        E::Dir("etc/", 0o755),
        E::File("etc/.wh.passwd", b"", 0o644),
        E::Dir("opq/", 0o755),
        E::File("opq/mine", b"same layer", 0o644),
        E::File("opq/.wh..wh..opq", b"", 0o644),
        E::File(".wh..wh.plnk", b"", 0o644),
        E::File("kept", b"x", 0o644),
        E::File(".wh.kept", b"", 0o644),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let applied = common::apply(&tar, Compression::None, tmp.path(), &Limits::default()).unwrap();
    assert_eq!(
        applied.changes.whiteouts,
        vec!["etc/passwd".to_string(), "kept".to_string()]
    );
    assert_eq!(applied.changes.opaques, vec!["opq".to_string()]);
    assert!(!tmp.path().join(".wh..wh.plnk").exists());
    assert!(
        !tmp.path().join("etc/.wh.passwd").exists(),
        "whiteout files are never materialised"
    );
    assert_eq!(
        fs::read(tmp.path().join("opq/mine")).unwrap(),
        b"same layer",
        "opaque keeps same-layer files"
    );
    assert_eq!(
        fs::read(tmp.path().join("kept")).unwrap(),
        b"x",
        "a whiteout only hides lower layers"
    );
    if applied.changes.overlay_markers {
        let w = fs::symlink_metadata(tmp.path().join("etc/passwd")).unwrap();
        assert!(w.file_type().is_char_device());
        assert_eq!(w.rdev(), 0);
        assert_eq!(
            getxattr(&tmp.path().join("opq"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
    }
}

#[test]
fn many_whiteouts_finish_within_budget() {
    let mut b = tar::Builder::new(Vec::new());
    common::append(&mut b, &E::Dir("d/", 0o755));
    for i in 0..100_000 {
        common::append(
            &mut b,
            &E::File(
                Box::leak(format!("d/.wh.f{i}").into_boxed_str()),
                b"",
                0o644,
            ),
        );
    }
    let tar = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let applied = common::apply(&tar, Compression::Gzip, tmp.path(), &Limits::default()).unwrap();
    assert_eq!(applied.changes.whiteouts.len(), 100_000);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}

fn bomb(c: Compression) -> Vec<u8> {
    // One 512 MiB file of zeros; compressed it is a few hundred KiB.
    let size: u64 = 512 << 20;
    let h = common::raw_header(tar::EntryType::Regular, "zeros", "", size, 0o644);
    let mut raw = Vec::new();
    raw.extend_from_slice(h.as_bytes());
    let chunk = vec![0u8; 1 << 20];
    match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).unwrap();
            for _ in 0..512 {
                e.write_all(&chunk).unwrap();
            }
            e.finish().unwrap()
        }
        _ => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            e.write_all(&raw).unwrap();
            for _ in 0..512 {
                e.write_all(&chunk).unwrap();
            }
            e.finish().unwrap()
        }
    }
}

#[test]
fn gzip_and_zstd_bombs_stop_at_the_budget_quickly() {
    for c in [Compression::Gzip, Compression::Zstd] {
        let blob = bomb(c);
        let digest = Digest::sha256(&blob);
        let diff_id = Digest::sha256(b"unknown");
        let spec = LayerSpec {
            digest: &digest,
            compression: c,
            diff_id: &diff_id,
        };
        let limits = Limits {
            max_uncompressed_bytes: 16 << 20,
            ..Limits::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let e = unpack::apply_layer(
            &blob[..],
            &spec,
            tmp.path(),
            &limits,
            ApplyOptions::for_current_process(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Limit {
                    field: "max_uncompressed_bytes",
                    ..
                }
            ),
            "{c:?}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&digest.to_string()) && msg.contains("16777216"),
            "{msg}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{c:?} took {:?}",
            start.elapsed()
        );
        let written = fs::metadata(tmp.path().join("zeros"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(written <= 16 << 20);
    }
}

#[test]
fn huge_pax_header_is_refused() {
    let mut b = tar::Builder::new(Vec::new());
    let big = vec![b'a'; 2 << 20];
    b.append_pax_extensions([("comment", &big[..])]).unwrap();
    common::append(&mut b, &E::File("f", b"x", 0o644));
    let tar = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let e = common::apply(&tar, Compression::None, tmp.path(), &Limits::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                field: "max_header_bytes",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn entry_count_and_path_length_limits() {
    let tar = common::tar_of(&[
        E::File("a", b"", 0o644),
        E::File("b", b"", 0o644),
        E::File("c", b"", 0o644),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let e = common::apply(&tar, Compression::None, tmp.path(), &limits).unwrap_err();
    assert!(
        matches!(e, Error::Limit { field: "max_entries", ref path, .. } if path == "c"),
        "{e}"
    );
    let limits = Limits {
        max_path_len: 8,
        ..Limits::default()
    };
    let tar = common::tar_of(&[E::File("a/very/long/name", b"", 0o644)]);
    let e = common::apply(&tar, Compression::None, tmp.path(), &limits).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                field: "max_path_len",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn sparse_entries_are_refused() {
    // A 1 GiB sparse file with one 512-byte data chunk at its end.
    let mut h = common::raw_header(tar::EntryType::GNUSparse, "sparse", "", 512, 0o644);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(1 << 30);
    gnu.set_is_extended(false);
    let octal = |v: u64| {
        let s = format!("{v:011o}\0");
        let mut a = [0u8; 12];
        a.copy_from_slice(s.as_bytes());
        a
    };
    gnu.sparse[0].offset = octal((1 << 30) - 512);
    gnu.sparse[0].numbytes = octal(512);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[7u8; 512]);
    tar.extend_from_slice(&[0u8; 1024]);
    let tmp = tempfile::tempdir().unwrap();
    let e = common::apply(&tar, Compression::None, tmp.path(), &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("sparse entries not supported"),
        "{e}"
    );
}

#[test]
fn diff_id_and_digest_mismatches_name_both_digests() {
    let tar = common::tar_of(&[E::File("f", b"x", 0o644)]);
    let blob = common::compress(&tar, Compression::Gzip);
    let digest = Digest::sha256(&blob);
    let wrong = Digest::sha256(b"other");
    let tmp = tempfile::tempdir().unwrap();
    let spec = LayerSpec {
        digest: &digest,
        compression: Compression::Gzip,
        diff_id: &wrong,
    };
    let e = unpack::apply_layer(
        &blob[..],
        &spec,
        tmp.path(),
        &Limits::default(),
        ApplyOptions::for_current_process(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::DiffId { .. }));
    assert!(
        msg.contains(&digest.to_string())
            && msg.contains(&wrong.to_string())
            && msg.contains(&Digest::sha256(&tar).to_string()),
        "{msg}"
    );
    let spec = LayerSpec {
        digest: &wrong,
        compression: Compression::Gzip,
        diff_id: &wrong,
    };
    let e = unpack::apply_layer(
        &blob[..],
        &spec,
        tmp.path(),
        &Limits::default(),
        ApplyOptions::for_current_process(),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::LayerDigest { ref actual, .. } if *actual == digest),
        "{e}"
    );
}

#[test]
fn trailing_bytes_after_the_archive_count_toward_the_diff_id() {
    let mut tar = common::tar_of(&[E::File("f", b"x", 0o644)]);
    tar.extend_from_slice(&[0u8; 4096]);
    let tmp = tempfile::tempdir().unwrap();
    let applied = common::apply(&tar, Compression::Zstd, tmp.path(), &Limits::default()).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256(&tar));
}

#[test]
fn root_entry_sets_root_metadata_only() {
    let tar = common::tar_of(&[E::Dir("./", 0o751), E::File("./f", b"x", 0o644)]);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    fs::create_dir(&root).unwrap();
    common::apply(&tar, Compression::None, &root, &Limits::default()).unwrap();
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o751
    );
    let tar = common::tar_of(&[E::File("./", b"", 0o644)]);
    assert!(matches!(
        common::apply(&tar, Compression::None, &root, &Limits::default()),
        Err(Error::Breakout { .. })
    ));
}

/// A GNU header whose uid, gid and mtime are left as NUL (and mode as spaces), as some image
/// builders write them.
fn empty_numeric_fields_tar(uid: [u8; 8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("etc/empty-owner").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(2);
    let g = h.as_gnu_mut().unwrap();
    g.uid = uid;
    g.gid = [0; 8];
    g.mtime = [0; 12];
    g.mode = *b"   644 \0";
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"ok"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn empty_numeric_header_fields_read_as_zero_like_gnu_tar_and_containerd() {
    let tar = empty_numeric_fields_tar([0; 8]);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        fs::create_dir(&root).unwrap();
        common::apply(&tar, c, &root, &Limits::default()).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        let m = fs::symlink_metadata(root.join("etc/empty-owner")).unwrap();
        assert_eq!(fs::read(root.join("etc/empty-owner")).unwrap(), b"ok");
        assert_eq!((m.uid(), m.gid(), m.mtime()), (0, 0, 0), "{c:?}");
        assert_eq!(m.permissions().mode() & 0o7777, 0o644, "{c:?}");
    }
}

#[test]
fn garbage_numeric_header_field_is_refused_naming_the_entry_and_field() {
    let tar = empty_numeric_fields_tar(*b"12x4567\0");
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let e = common::apply(&tar, c, tmp.path(), &Limits::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Archive { .. }), "{c:?}: {msg}");
        assert!(
            msg.contains("etc/empty-owner") && msg.contains("uid") && msg.contains("12x4567"),
            "{c:?}: {msg}"
        );
        assert!(!tmp.path().join("etc/empty-owner").exists());
    }
}
