//! User resolution inside a container rootfs: turns an image `User` (`uid`, `uid:gid`, `name`,
//! `name:group`, `uid:group`, `name:gid`) into numeric ids, supplementary groups and a home
//! directory, reading the rootfs's `/etc/passwd` and `/etc/group` with the semantics of runc's
//! `GetExecUser` (numeric ids need no entry; names must exist; supplementary groups only when no
//! group was given).
//!
//! It must never read a file outside the rootfs: files are opened with `openat2(2)` and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so every symlink (absolute or `..`) is resolved as
//! if the rootfs were `/`, exactly as the container itself would see it, and only regular files
//! are read. The passwd/group parsing is hand-written because the only crates that parse these
//! files (`nix::unistd::User`, `users`) query the host's NSS, never a file under another root.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Largest passwd/group file that is read (bigger files are rejected, not truncated).
const MAX_DB_BYTES: u64 = 4 << 20;

/// The identity the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership when no group was given).
    pub additional_gids: Vec<u32>,
    /// Home directory from the passwd entry, `/` when there is none.
    pub home: String,
    /// The user name when a passwd entry matched.
    pub username: Option<String>,
}

/// Why a user could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "user {spec:?}: unable to find user {name:?}: no matching entry in {file} of the image: use a numeric uid or an existing user"
    )]
    NoSuchUser {
        spec: String,
        name: String,
        file: PathBuf,
    },
    #[error(
        "user {spec:?}: unable to find group {name:?}: no matching entry in {file} of the image: use a numeric gid or an existing group"
    )]
    NoSuchGroup {
        spec: String,
        name: String,
        file: PathBuf,
    },
    #[error("user {spec:?}: {reason}: use uid, uid:gid, name or name:group")]
    Invalid { spec: String, reason: String },
    #[error("reading {file} inside the rootfs {rootfs}: {source}")]
    Read {
        file: &'static str,
        rootfs: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve `spec` (an image or override `User` value; empty means root) inside `rootfs`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ExecUser, UserError> {
    let passwd = read_db(rootfs, "etc/passwd")?;
    let group = read_db(rootfs, "etc/group")?;
    resolve_with(
        spec,
        passwd.as_deref().unwrap_or(""),
        group.as_deref().unwrap_or(""),
    )
}

/// Resolution against the text of passwd and group files (pure; tested against tables).
fn resolve_with(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let spec_owned = spec.to_string();
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_arg.is_some_and(|g| g.contains(':')) {
        return Err(UserError::Invalid {
            spec: spec_owned,
            reason: "more than one ':'".into(),
        });
    }
    if group_arg == Some("") {
        return Err(UserError::Invalid {
            spec: spec_owned,
            reason: "empty group after ':'".into(),
        });
    }
    let users = parse_passwd(passwd);
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };

    let numeric_uid = parse_id(user_arg, &spec_owned, "uid")?;
    let matched = match numeric_uid {
        Some(uid) => users.iter().find(|u| u.uid == uid),
        None => users.iter().find(|u| u.name == user_arg),
    };
    let (uid, mut gid, home, username) = match (numeric_uid, matched) {
        (_, Some(u)) => (u.uid, u.gid, u.home.clone(), Some(u.name.clone())),
        (Some(uid), None) => (uid, 0, "/".to_string(), None),
        (None, None) => {
            return Err(UserError::NoSuchUser {
                spec: spec_owned,
                name: user_arg.to_string(),
                file: "/etc/passwd".into(),
            });
        }
    };

    let groups = parse_group(group);
    let mut additional_gids = Vec::new();
    match group_arg {
        Some(g) => match parse_id(g, &spec_owned, "gid")? {
            Some(n) => gid = n,
            None => match groups.iter().find(|e| e.name == g) {
                Some(e) => gid = e.gid,
                None => {
                    return Err(UserError::NoSuchGroup {
                        spec: spec_owned,
                        name: g.to_string(),
                        file: "/etc/group".into(),
                    });
                }
            },
        },
        None => {
            if let Some(name) = &username {
                for e in groups
                    .iter()
                    .filter(|e| e.members.iter().any(|m| m == name))
                {
                    if e.gid != gid && !additional_gids.contains(&e.gid) {
                        additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
        username,
    })
}

/// `Some(id)` for an all-digit value, `None` for a name; out-of-range numbers are errors.
fn parse_id(value: &str, spec: &str, what: &str) -> Result<Option<u32>, UserError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match value.parse::<u32>() {
        Ok(n) if n < u32::MAX => Ok(Some(n)),
        _ => Err(UserError::Invalid {
            spec: spec.to_string(),
            reason: format!("{what} {value} is out of range (0..{})", u32::MAX - 1),
        }),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with('+')
                || line.starts_with('-')
            {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with('+')
                || line.starts_with('-')
            {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Read `rel` (relative, e.g. `etc/passwd`) resolved inside `rootfs`; `None` when absent.
fn read_db(rootfs: &Path, rel: &'static str) -> Result<Option<String>, UserError> {
    let err = |source| UserError::Read {
        file: rel,
        rootfs: rootfs.to_path_buf(),
        source,
    };
    let mut file = match open_in_root(rootfs, Path::new(rel)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(err(io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_DB_BYTES {
        return Err(err(io::Error::other(format!(
            "larger than {MAX_DB_BYTES} bytes"
        ))));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_DB_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Open `rel` for reading with every path component resolved inside `root` (the kernel treats
/// `root` as `/` for absolute symlinks and `..`; magic links are refused).
pub(crate) fn open_in_root(root: &Path, rel: &Path) -> io::Result<File> {
    let dir = File::open(root)?;
    if !dir.metadata()?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(dir.as_fd(), rel, how).map_err(|e| match e {
        nix::errno::Errno::ENOSYS => io::Error::other(
            "the kernel lacks openat2(2) (Linux 5.6 or newer is needed to read files inside a rootfs safely)",
        ),
        e => io::Error::from(e),
    })?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # comment:x:5:5::/:/bin/sh\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nohome:x:1001:1001\n\
        broken:x:notanumber:1\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:app,daemon\n\
        app:x:1000:\n\
        audio:x:29: app \n\
        staff:x:50:other\n";

    fn user(uid: u32, gid: u32, sgids: &[u32], home: &str, name: Option<&str>) -> ExecUser {
        ExecUser {
            uid,
            gid,
            additional_gids: sgids.to_vec(),
            home: home.into(),
            username: name.map(String::from),
        }
    }

    #[test]
    fn user_specs_resolve_like_runc_get_exec_user() {
        let table: &[(&str, ExecUser)] = &[
            ("", user(0, 0, &[], "/root", Some("root"))),
            ("0", user(0, 0, &[], "/root", Some("root"))),
            ("root", user(0, 0, &[], "/root", Some("root"))),
            (
                "1000",
                user(1000, 1000, &[10, 29], "/home/app", Some("app")),
            ),
            ("app", user(1000, 1000, &[10, 29], "/home/app", Some("app"))),
            ("app:50", user(1000, 50, &[], "/home/app", Some("app"))),
            ("app:staff", user(1000, 50, &[], "/home/app", Some("app"))),
            ("1000:wheel", user(1000, 10, &[], "/home/app", Some("app"))),
            ("4242", user(4242, 0, &[], "/", None)),
            ("4242:4343", user(4242, 4343, &[], "/", None)),
            ("4242:wheel", user(4242, 10, &[], "/", None)),
            ("nohome", user(1001, 1001, &[], "/", Some("nohome"))),
            ("daemon", user(1, 1, &[10], "/usr/sbin", Some("daemon"))),
        ];
        for (spec, want) in table {
            let got = resolve_with(spec, PASSWD, GROUP).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(&got, want, "spec {spec:?}");
        }
    }

    #[test]
    fn unknown_names_and_bad_specs_are_errors_naming_the_problem() {
        let e = resolve_with("nobody", PASSWD, GROUP).unwrap_err();
        assert!(
            matches!(e, UserError::NoSuchUser { ref name, .. } if name == "nobody"),
            "{e}"
        );
        assert!(e.to_string().contains("/etc/passwd"));
        let e = resolve_with("app:nogroup", PASSWD, GROUP).unwrap_err();
        assert!(
            matches!(e, UserError::NoSuchGroup { ref name, .. } if name == "nogroup"),
            "{e}"
        );
        assert!(
            resolve_with("comment", PASSWD, GROUP).is_err(),
            "comment lines are not entries"
        );
        assert!(
            resolve_with("broken", PASSWD, GROUP).is_err(),
            "unparsable lines are skipped"
        );
        assert!(matches!(
            resolve_with("a:b:c", PASSWD, GROUP),
            Err(UserError::Invalid { .. })
        ));
        assert!(matches!(
            resolve_with("app:", PASSWD, GROUP),
            Err(UserError::Invalid { .. })
        ));
        assert!(matches!(
            resolve_with("4294967295", PASSWD, GROUP),
            Err(UserError::Invalid { .. })
        ));
        assert!(matches!(
            resolve_with("99999999999", PASSWD, GROUP),
            Err(UserError::Invalid { .. })
        ));
    }

    #[test]
    fn numeric_user_works_without_passwd_and_group_files() {
        let dir = tempfile::tempdir().unwrap();
        let got = resolve_user(dir.path(), "1000:1000").unwrap();
        assert_eq!(got, user(1000, 1000, &[], "/", None));
        assert!(matches!(
            resolve_user(dir.path(), "app"),
            Err(UserError::NoSuchUser { .. })
        ));
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_rootfs_not_on_the_host() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("real")).unwrap();
        std::fs::write(
            root.path().join("real/passwd"),
            "app:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        // An absolute link pointing at a path that exists on the host: it must be read as
        // <rootfs>/real/passwd, never as the host file of the same name.
        symlink("/real/passwd", root.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_user(root.path(), "app").unwrap().uid, 1000);

        // A link to the host file (absolute or through ..) resolves inside the rootfs, where
        // nothing exists: the user is unknown instead of coming from the host.
        let target = host.path().join("passwd");
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        symlink(&target, root.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(root.path(), "evil"),
            Err(UserError::NoSuchUser { .. })
        ));
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        let dotdots = "../".repeat(64) + target.strip_prefix("/").unwrap().to_str().unwrap();
        symlink(&dotdots, root.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(root.path(), "evil"),
            Err(UserError::NoSuchUser { .. })
        ));
    }

    #[test]
    fn non_regular_passwd_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/passwd")).unwrap();
        let e = resolve_user(root.path(), "0").unwrap_err();
        assert!(matches!(e, UserError::Read { .. }), "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
