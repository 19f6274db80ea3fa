//! The on-disk container records: `<root>/containers/<id>/state.json` (written atomically by
//! rename), id generation, name validation and lookup by name, id or unique id prefix, and the
//! root-wide lock that makes name allocation and removal exclusive. It must never delete
//! anything outside `<root>/containers`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Lifecycle of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Bundle written, process not started.
    Created,
    /// The process is running (or was when last observed).
    Running,
    /// The process exited; `exit_code` holds its status when it was recorded.
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

/// How the container's output is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// stdout/stderr go to the caller; the caller records the exit.
    Foreground,
    /// stdout/stderr go to the log file through the shim; the shim records the exit.
    Detached,
}

/// Everything berth records about one container (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// 64 lowercase hex characters; also the runc container id.
    pub id: String,
    pub name: String,
    /// The image reference the container was created from (display only).
    pub image: String,
    /// The process argv.
    pub command: Vec<String>,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished: Option<OffsetDateTime>,
    /// Host pid of the container's init process while it runs.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Start time of that process (`/proc/<pid>/stat` field 22, clock ticks after boot): with `pid` it
    /// identifies the process, so liveness is read from `/proc` without asking runc (and a reused pid is
    /// not mistaken for the container). Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// Exit status: the code, or 128 + signal number when killed by a signal.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the container ended abnormally or its exit could not be recorded.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub attach: Option<Attach>,
    /// Delete the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// The signal `stop` sends first (image `StopSignal`, default SIGTERM), as a number.
    pub stop_signal: i32,
    /// The rootfs path runc uses.
    pub rootfs: PathBuf,
    /// Whether berth mounted the rootfs (it then unmounts it on delete).
    pub rootfs_mounted: bool,
    /// The cgroup path given to runc.
    pub cgroups_path: String,
    /// Caller-defined key/value metadata recorded at create time (e.g. the agent's pod uid,
    /// container name and image id), never interpreted by the runtime.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ContainerState {
    /// The first 12 characters of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// The container directory layout under a state root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn state_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("state.json")
    }
    pub fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    /// Take the root-wide lock (released when the guard drops).
    pub fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("opening lock file", &path, e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("locking", &path, std::io::Error::from(errno)))
    }

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        let path = self.state_file(id);
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(id.to_string())
            } else {
                Error::io("reading", &path, e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    /// Write the state atomically (temp file, fsync, rename in the same directory).
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        self.write(state, true)
    }

    /// [`Layout::save`] without the fsync, for writes made under the root lock: the record is visible
    /// to every process at once, and the caller makes it durable with [`Layout::sync`] after releasing
    /// the lock, so containers created at the same time do not queue for each other's fsync.
    pub fn save_unsynced(&self, state: &ContainerState) -> Result<()> {
        self.write(state, false)
    }

    /// Flush a record written by [`Layout::save_unsynced`] to disk.
    pub fn sync(&self, id: &str) -> Result<()> {
        let path = self.state_file(id);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("syncing", &path, e))
    }

    fn write(&self, state: &ContainerState, sync: bool) -> Result<()> {
        let path = self.state_file(&state.id);
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            if sync {
                f.sync_all()?;
            }
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("writing", &path, e)
        })
    }

    /// Re-read, apply `f`, save; a container removed meanwhile is reported as `NotFound`.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut ContainerState)) -> Result<ContainerState> {
        let mut st = self.load(id)?;
        f(&mut st);
        self.save(&st)?;
        Ok(st)
    }

    /// [`Layout::update`] with [`Layout::save_unsynced`].
    pub fn update_unsynced(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerState),
    ) -> Result<ContainerState> {
        let mut st = self.load(id)?;
        f(&mut st);
        self.save_unsynced(&st)?;
        Ok(st)
    }

    /// Every readable container record (unreadable ones are skipped with a warning).
    pub fn all(&self) -> Result<Vec<ContainerState>> {
        let dir = self.containers();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            match self.load(&id) {
                Ok(st) => out.push(st),
                Err(Error::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "skipping unreadable container record")
                }
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Find a container by exact name, exact id, or unique id prefix.
    pub fn resolve(&self, key: &str) -> Result<ContainerState> {
        // A full id names its directory: read that record alone instead of every record.
        if key.len() == 64
            && key.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(st) = self.load(key)
        {
            return Ok(st);
        }
        let all = self.all()?;
        if let Some(st) = all.iter().find(|s| s.name == key || s.id == key) {
            return Ok(st.clone());
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&ContainerState> =
                all.iter().filter(|s| s.id.starts_with(key)).collect();
            match matches.len() {
                0 => {}
                1 => return Ok(matches[0].clone()),
                n => {
                    return Err(Error::Ambiguous {
                        prefix: key.into(),
                        count: n,
                    });
                }
            }
        }
        Err(Error::NotFound(key.to_string()))
    }
}

/// A fresh random container id (64 lowercase hex characters).
pub(crate) fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: name.into() })
    }
}

/// Remove a container directory (only ever below `<root>/containers`).
pub(crate) fn remove_dir(layout: &Layout, id: &str) -> Result<()> {
    let dir = layout.dir(id);
    debug_assert!(dir.starts_with(layout.containers()) && Path::new(id).components().count() == 1);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", &dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, name: &str) -> ContainerState {
        ContainerState {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            command: vec!["sh".into()],
            status: Status::Created,
            created: OffsetDateTime::now_utc(),
            started: None,
            finished: None,
            pid: None,
            pid_start: None,
            exit_code: None,
            error: None,
            attach: None,
            auto_remove: false,
            stop_signal: 15,
            rootfs: "/r".into(),
            rootfs_mounted: false,
            cgroups_path: "/berth/x".into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn names_follow_the_docker_rule() {
        for ok in ["a", "web-1", "A.b_c", "0x"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn state_round_trips_and_resolves_by_name_id_and_unique_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: dir.path().to_path_buf(),
        };
        for (id, name) in [("abc1", "one"), ("abc2", "two")] {
            fs::create_dir_all(layout.dir(id)).unwrap();
            layout.save(&state(id, name)).unwrap();
        }
        assert_eq!(layout.load("abc1").unwrap().name, "one");
        assert_eq!(layout.resolve("two").unwrap().id, "abc2");
        assert_eq!(layout.resolve("abc1").unwrap().name, "one");
        assert_eq!(layout.resolve("abc2").unwrap().name, "two");
        assert!(matches!(
            layout.resolve("abc"),
            Err(Error::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(layout.resolve("ffff"), Err(Error::NotFound(_))));
        let updated = layout
            .update("abc1", |s| s.status = Status::Exited)
            .unwrap();
        assert_eq!(layout.load("abc1").unwrap(), updated);
        assert_eq!(layout.all().unwrap().len(), 2);
        // A full id is read from its own directory; a name that is not an id still resolves.
        let full = "cd".repeat(32);
        fs::create_dir_all(layout.dir(&full)).unwrap();
        layout.save(&state(&full, "three")).unwrap();
        assert_eq!(layout.resolve(&full).unwrap().name, "three");
        assert_eq!(layout.resolve("three").unwrap().id, full);
        assert!(matches!(
            layout.resolve(&"ef".repeat(32)),
            Err(Error::NotFound(_))
        ));
        fs::remove_dir_all(layout.dir(&full)).unwrap();
        fs::write(layout.state_file("abc2"), "{").unwrap();
        assert!(matches!(
            layout.load("abc2"),
            Err(Error::CorruptState { .. })
        ));
        assert_eq!(
            layout.all().unwrap().len(),
            1,
            "corrupt records are skipped in listings"
        );
    }
}
