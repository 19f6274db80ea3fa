//! Breakout cases ported as data from containerd `pkg/archive/tar_test.go` (TestBreakouts)
//! and moby `pkg/archive/archive_test.go` / `archive_unix_test.go` (TestUntarInvalidFilenames,
//! TestUntarInvalidHardlink, TestUntarInvalidSymlink, TestUntarHardlinkToSymlink), plus the
//! Rust tar advisories (RUSTSEC-2018-0002, CVE-2026-33056). Each malicious layer is applied
//! into `<tmp>/root` beside a canary directory `<tmp>/victim`; the canary must stay identical.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::E;
use oci::media_type::Compression;
use unpack::{Error, Limits};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// The layer is refused with this kind of error.
    Breakout,
    Hardlink,
    Whiteout,
    /// The layer applies; the check closure inspects the snapshot.
    Ok,
}

struct Case {
    name: &'static str,
    entries: fn(&str) -> Vec<E<'static>>,
    want: Want,
    check: fn(&Path),
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn none(_: &Path) {}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "dotdot_name",
            entries: |_| vec![E::File("../victim/dotdot", b"x", 0o644)],
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "slash_dotdot_name",
            entries: |_| vec![E::File("/../victim/slash-dotdot", b"x", 0o644)],
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "dotdot_inside_then_out",
            entries: |_| {
                vec![
                    E::Dir("a/", 0o755),
                    E::File("a/../../victim/x", b"x", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "absolute_name_is_rerooted",
            entries: |_| vec![E::File("/victim/abs", b"inside", 0o644)],
            want: Want::Ok,
            check: |root| assert_eq!(fs::read(root.join("victim/abs")).unwrap(), b"inside"),
        },
        Case {
            name: "symlink_relative_escape_then_write",
            entries: |_| {
                vec![
                    E::Symlink("loophole", "../victim"),
                    E::File("loophole/file", b"x", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "symlink_nested_escape_then_mkdir",
            entries: |_| {
                vec![
                    E::Dir("dir/", 0o755),
                    E::Symlink("dir/loophole", "../../victim"),
                    E::File("dir/loophole/newdir/newfile", b"x", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "symlink_absolute_then_write",
            entries: |victim| {
                vec![
                    E::Symlink("link", leak(victim.to_string())),
                    E::File("link/passwd", b"x", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "symlink_up_and_out_many_levels",
            entries: |_| {
                vec![
                    E::Dir("d/", 0o755),
                    E::Symlink("d/up", "../../../../../.."),
                    E::File("d/up/tmp/x", b"x", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "symlink_inside_root_is_followed",
            entries: |_| {
                vec![
                    E::Dir("b/", 0o755),
                    E::Symlink("a", "b"),
                    E::File("a/c", b"in", 0o644),
                ]
            },
            want: Want::Ok,
            check: |root| assert_eq!(fs::read(root.join("b/c")).unwrap(), b"in"),
        },
        Case {
            name: "symlink_overrides_directory_then_write",
            entries: |_| {
                vec![
                    E::Dir("d/", 0o755),
                    E::Symlink("d", "../victim"),
                    E::File("d/f", b"x", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "file_replaces_symlink_instead_of_writing_through",
            entries: |victim| {
                vec![
                    E::Symlink("x", leak(format!("{victim}/hello"))),
                    E::File("x", b"replaced", 0o644),
                ]
            },
            want: Want::Ok,
            check: |root| {
                let m = fs::symlink_metadata(root.join("x")).unwrap();
                assert!(m.file_type().is_file());
                assert_eq!(fs::read(root.join("x")).unwrap(), b"replaced");
            },
        },
        Case {
            name: "directory_entry_over_symlink_does_not_chmod_target",
            entries: |victim| {
                vec![
                    E::Symlink("x", leak(victim.to_string())),
                    E::Dir("x/", 0o777),
                ]
            },
            want: Want::Ok,
            check: |root| {
                let m = fs::symlink_metadata(root.join("x")).unwrap();
                assert!(m.is_dir());
                assert_eq!(m.permissions().mode() & 0o7777, 0o777);
            },
        },
        Case {
            name: "hardlink_dotdot_target",
            entries: |_| vec![E::Hardlink("dotdot", "../victim/hello")],
            want: Want::Hardlink,
            check: none,
        },
        Case {
            name: "hardlink_through_escaping_symlink",
            entries: |_| {
                vec![
                    E::Symlink("loophole-victim", "../victim"),
                    E::Hardlink("hl", "loophole-victim/hello"),
                ]
            },
            want: Want::Hardlink,
            check: none,
        },
        Case {
            name: "hardlink_through_absolute_symlink",
            entries: |victim| {
                vec![
                    E::Symlink("lv", leak(victim.to_string())),
                    E::Hardlink("hl", "lv/hello"),
                ]
            },
            want: Want::Hardlink,
            check: none,
        },
        Case {
            name: "hardlink_into_symlinked_parent_is_refused",
            entries: |_| {
                vec![
                    E::File("f", b"data", 0o644),
                    E::Symlink("loophole", "../victim"),
                    E::Hardlink("loophole/hl", "f"),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "hardlink_to_escaping_symlink_links_the_symlink",
            entries: |_| {
                vec![
                    E::Symlink("symlink", "../victim/hello"),
                    E::Hardlink("hardlink", "symlink"),
                ]
            },
            want: Want::Ok,
            check: |root| {
                let m = fs::symlink_metadata(root.join("hardlink")).unwrap();
                assert!(m.file_type().is_symlink());
                assert_eq!(m.nlink(), 2);
            },
        },
        Case {
            name: "hardlink_to_directory_refused",
            entries: |_| vec![E::Dir("d/", 0o755), E::Hardlink("hl", "d")],
            want: Want::Hardlink,
            check: none,
        },
        Case {
            name: "hardlink_same_layer_shares_inode",
            entries: |_| vec![E::File("a", b"same", 0o644), E::Hardlink("b", "a")],
            want: Want::Ok,
            check: |root| {
                let (a, b) = (
                    fs::metadata(root.join("a")).unwrap(),
                    fs::metadata(root.join("b")).unwrap(),
                );
                assert_eq!(a.ino(), b.ino());
            },
        },
        Case {
            name: "whiteout_root_parent",
            entries: |_| vec![E::File(".wh...", b"", 0o644)],
            want: Want::Whiteout,
            check: none,
        },
        Case {
            name: "whiteout_current_directory",
            entries: |_| vec![E::Dir("etc/", 0o755), E::File("etc/.wh..", b"", 0o644)],
            want: Want::Whiteout,
            check: none,
        },
        Case {
            name: "whiteout_bare",
            entries: |_| vec![E::File(".wh.", b"", 0o644)],
            want: Want::Whiteout,
            check: none,
        },
        Case {
            name: "whiteout_parent_dotdot",
            entries: |_| vec![E::File("../.wh.victim", b"", 0o644)],
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "whiteout_under_escaping_symlink",
            entries: |_| {
                vec![
                    E::Symlink("sym", "../victim"),
                    E::File("sym/.wh.hello", b"", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "whiteout_under_absolute_symlink",
            entries: |victim| {
                vec![
                    E::Symlink("sym", leak(victim.to_string())),
                    E::File("sym/.wh.hello", b"", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "whiteout_under_dead_symlink_parent",
            entries: |_| {
                vec![
                    E::Symlink("dead", "../nonexistent/dir"),
                    E::File("dead/.wh.x", b"", 0o644),
                ]
            },
            want: Want::Breakout,
            check: none,
        },
        Case {
            name: "whiteout_relative_path_stays_inside",
            entries: |_| vec![E::Dir("d/", 0o755), E::File("d/../.wh.victim", b"", 0o644)],
            want: Want::Ok,
            check: |root| assert!(!root.join(".wh.victim").exists()),
        },
        Case {
            name: "device_node_outside_refused",
            entries: |_| vec![E::Char("/../victim/dev", 1, 3)],
            want: Want::Breakout,
            check: none,
        },
    ]
}

fn run(case: &Case, c: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let victim = tmp.path().join("victim");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("hello"), b"canary").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o750)).unwrap();
    let before = common::tree_with_times(tmp.path());
    let before_victim_mode = fs::metadata(&victim).unwrap().permissions().mode();
    let tar = common::tar_of(&(case.entries)(victim.to_str().unwrap()));
    let r = common::apply(&tar, c, &root, &Limits::default());
    let got = match &r {
        Ok(_) => Want::Ok,
        Err(Error::Breakout { .. }) => Want::Breakout,
        Err(Error::InvalidHardlink { .. }) => Want::Hardlink,
        Err(Error::InvalidWhiteout { .. }) => Want::Whiteout,
        Err(e) => panic!("{}: unexpected error {e}", case.name),
    };
    assert_eq!(
        got,
        case.want,
        "{}: {:?}",
        case.name,
        r.err().map(|e| e.to_string())
    );
    if let Err(e) = &r {
        let msg = e.to_string();
        assert!(
            msg.contains("layer sha256:"),
            "{}: error names the layer: {msg}",
            case.name
        );
    }
    // Nothing outside the snapshot changed: same names, contents, modes and mtimes.
    let after = common::tree_with_times(tmp.path());
    let outside = |t: &std::collections::BTreeMap<String, String>| {
        t.iter()
            .filter(|(k, _)| !k.starts_with("root"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outside(&before),
        outside(&after),
        "{}: something outside the snapshot changed",
        case.name
    );
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode(),
        before_victim_mode
    );
    assert!(!tmp.path().join("tmp").exists() && !Path::new("/victim").exists());
    if r.is_ok() {
        (case.check)(&root);
    }
}

#[test]
fn breakout_table_uncompressed() {
    for case in cases() {
        run(&case, Compression::None);
    }
}

#[test]
fn breakout_table_gzip_and_zstd() {
    for case in cases() {
        run(&case, Compression::Gzip);
        run(&case, Compression::Zstd);
    }
}

#[test]
fn breakout_errors_name_the_entry_and_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = common::tar_of(&[E::File("../victim/dotdot", b"x", 0o644)]);
    let e = common::apply(&tar, Compression::None, tmp.path(), &Limits::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"../victim/dotdot\""), "{msg}");
    assert!(msg.contains("escapes the snapshot root"), "{msg}");
}
