//! The snapshotter: one directory per layer, identified by the layer's chainID (image-spec
//! `ChainID`), so images sharing a layer prefix share snapshots; parallel unpack; container
//! root filesystems (overlay or native copy); reference counting and garbage collection.
//!
//! On-disk layout under the snapshotter root:
//!
//! ```text
//! lock                        flock: shared while unpacking/preparing, exclusive for gc
//! refs.lock                   flock serialising refs updates
//! snapshots/<chainID hex>/fs          the layer's tree (an overlay lowerdir)
//! snapshots/<chainID hex>/meta.json   SnapshotInfo, written and fsynced last
//! snapshots/tmp-<random>/     a layer being unpacked (holds a flocked `.lock`)
//! refs/<chainID hex>          users of a snapshot ("image:<name>"), one a line
//! containers/<id>/            upper + work (overlay) or rootfs (native), chain.json
//! ```
//!
//! A container uses the snapshots its `chain.json` lists: that file (written and fsynced before
//! [`Snapshotter::prepare_rootfs`] returns) is the container's reference, so preparing twenty
//! containers at once writes twenty small files in parallel instead of queueing on the refs lock
//! for an fsync per layer each. `refs/` holds image users (and `container:` users written by older
//! versions, still honoured and released).
//!
//! Crash safety: a snapshot becomes visible only by renaming its finished temp directory,
//! whose `meta.json` was written and fsynced after the tree was flushed with one `syncfs`.
//! One `syncfs` per layer replaces an fsync per file: the kernel writes back the whole
//! filesystem in one batch (far fewer journal commits), at the price of also flushing other
//! dirty data on that filesystem. Leftover temp directories whose lock is free are removed on
//! [`Snapshotter::open`]; a directory without `meta.json` is never treated as a snapshot.
//!
//! It must never hand out a snapshot that is not complete, never delete a snapshot that has
//! users, and never write outside its root.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use oci::{Descriptor, Digest, ImageConfig};
use serde::{Deserialize, Serialize};

use crate::apply::{self, Applied, ApplyOptions, LayerChanges, LayerSpec, Limits};
use crate::error::{Error, Result};
use crate::fsops::{self, Root, cstr};
use crate::native;
use crate::overlay::{self, OverlaySupport};

const META: &str = "meta.json";
const FS: &str = "fs";
const TMP_PREFIX: &str = "tmp-";

/// A snapshot's identity: the chainID of the layers up to and including it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(pub Digest);

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl SnapshotId {
    fn dir_name(&self) -> String {
        format!("{}-{}", self.0.algorithm().as_str(), self.0.hex())
    }
}

/// ChainIDs per image-spec: `ChainID(L0) = DiffID(L0)`,
/// `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<SnapshotId> {
    let mut out: Vec<SnapshotId> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256(format!("{} {}", prev.0, d).as_bytes()),
        };
        out.push(SnapshotId(id));
    }
    out
}

/// Metadata of a complete snapshot (`meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub parent: Option<SnapshotId>,
    /// The layer blob digest.
    pub layer: Digest,
    pub media_type: String,
    pub diff_id: Digest,
    pub uncompressed_bytes: u64,
    pub entries: u64,
    /// Whiteouts and opaque directories (used by the native snapshotter).
    pub changes: LayerChanges,
}

/// A container root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// Mount with [`mount_overlay`](crate::mount_overlay): `lowers` top-most first.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A flattened private copy; use `path` directly.
    Native { path: PathBuf },
}

impl Rootfs {
    /// Make the root filesystem appear at `target`: an overlay mount, or a bind mount of the
    /// native copy.
    pub fn mount(&self, target: &Path) -> Result<()> {
        match self {
            Rootfs::Overlay {
                lowers,
                upper,
                work,
            } => overlay::mount_overlay(lowers, Some(upper), Some(work), target),
            Rootfs::Native { path } => nix::mount::mount(
                Some(path.as_path()),
                target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::Mount {
                op: "bind mount",
                target: target.to_path_buf(),
                source: io::Error::from(e),
            }),
        }
    }
}

/// Which kind of container root filesystem to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Overlay when the probe succeeded, else native.
    Auto,
    /// Always build flattened copies.
    Native,
}

/// Layer snapshots and container root filesystems under one root directory.
pub struct Snapshotter {
    root: PathBuf,
    overlay: OverlaySupport,
    opts: ApplyOptions,
    mode: Mode,
    parallelism: usize,
    refs_mutex: Mutex<()>,
}

/// A held flock; released when dropped.
struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn lock(path: &Path, op: libc::c_int) -> Result<FileLock> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(Error::io("open lock", path))?;
        loop {
            // SAFETY: flock on a valid fd.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(FileLock(f));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("flock", path)(e));
            }
        }
    }
    fn try_lock(path: &Path) -> io::Result<bool> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        // SAFETY: flock on a valid fd; released when f is dropped.
        Ok(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0)
    }
}

fn mkdir_private(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(Error::io("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(Error::io("chmod", path))
}

fn validate_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 512 || user.contains(['\n', '\0']) {
        return Err(Error::InvalidId {
            what: "snapshot user",
            value: user.to_string(),
            reason: "must be 1..512 bytes without newlines",
        });
    }
    Ok(())
}

fn validate_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && !id.starts_with(TMP_PREFIX)
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId {
            what: "container id",
            value: id.to_string(),
            reason: "use 1..128 characters of [A-Za-z0-9_.-], not \".\", \"..\" or tmp-*",
        })
    }
}

struct Staged {
    tmp: PathBuf,
    applied: Applied,
    _lock: FileLock,
}

impl Snapshotter {
    /// Open (creating) the snapshotter at `root`, remove leftovers of interrupted unpacks and
    /// probe overlay support once.
    pub fn open(root: impl Into<PathBuf>) -> Result<Snapshotter> {
        let root = root.into();
        for d in ["", "snapshots", "refs", "containers", "tmp"] {
            mkdir_private(&root.join(d))?;
        }
        let overlay = overlay::detect_overlay(&root.join("tmp"));
        let mut opts = ApplyOptions::for_current_process();
        opts.overlay_markers = overlay.usable;
        let s = Snapshotter {
            root,
            overlay,
            opts,
            mode: Mode::Auto,
            parallelism: 3,
            refs_mutex: Mutex::new(()),
        };
        s.clean_leftovers()?;
        Ok(s)
    }

    /// Choose the root filesystem kind ([`Mode::Auto`] by default).
    pub fn with_mode(mut self, mode: Mode) -> Snapshotter {
        self.mode = mode;
        self
    }

    /// How many layers unpack at once (default 3, at least 1).
    pub fn with_parallelism(mut self, n: usize) -> Snapshotter {
        self.parallelism = n.max(1);
        self
    }

    /// The snapshotter root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Result of the overlay probe done at open.
    pub fn overlay_support(&self) -> &OverlaySupport {
        &self.overlay
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn snapshot_dir(&self, id: &SnapshotId) -> PathBuf {
        self.snapshots_dir().join(id.dir_name())
    }

    /// The tree of a snapshot (an overlay lowerdir).
    pub fn snapshot_fs(&self, id: &SnapshotId) -> PathBuf {
        self.snapshot_dir(id).join(FS)
    }

    fn clean_leftovers(&self) -> Result<()> {
        for dir in [self.snapshots_dir(), self.root.join("tmp")] {
            for ent in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
                let ent = ent.map_err(Error::io("read directory", &dir))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let path = ent.path();
                let stale = if name.starts_with(TMP_PREFIX) {
                    match FileLock::try_lock(&path.join(".lock")) {
                        Ok(free) => free,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                        Err(e) => return Err(Error::io("lock", path)(e)),
                    }
                } else if name.starts_with("probe-") {
                    overlay::unmount(&path.join("merged"))?;
                    true
                } else {
                    dir == self.snapshots_dir() && !path.join(META).exists()
                };
                if stale {
                    fsops::remove_tree(&path).map_err(Error::io("remove leftover", &path))?;
                }
            }
        }
        Ok(())
    }

    /// Metadata of a complete snapshot, or `None`.
    pub fn info(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>> {
        let path = self.snapshot_dir(id).join(META);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Metadata {
                path,
                reason: e.to_string(),
            })
    }

    /// All complete snapshots.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let dir = self.snapshots_dir();
        let mut out = Vec::new();
        for ent in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let ent = ent.map_err(Error::io("read directory", &dir))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let path = ent.path().join(META);
            if let Ok(bytes) = fs::read(&path) {
                out.push(serde_json::from_slice(&bytes).map_err(|e| Error::Metadata {
                    path,
                    reason: e.to_string(),
                })?);
            }
        }
        out.sort_by(|a: &SnapshotInfo, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Unpack the layers of an image (skipping snapshots already present), up to
    /// `parallelism` at once, and record `user` (e.g. `image:<name>`) as a user of every
    /// snapshot of the chain. Returns the chain, bottom-most first.
    pub fn unpack_image(
        &self,
        store: &content::Store,
        config: &ImageConfig,
        layers: &[Descriptor],
        limits: &Limits,
        user: &str,
    ) -> Result<Vec<SnapshotId>> {
        let (tx, ready) = mpsc::channel();
        for i in 0..layers.len() {
            let _ = tx.send(i);
        }
        drop(tx);
        self.unpack_image_as_ready(store, config, layers, limits, user, ready)
    }

    /// [`Snapshotter::unpack_image`] for a pull still in progress: a layer is read from `store`
    /// only once its index (into `layers`) arrives on `ready`, which the caller sends after the
    /// layer's blob is committed (verified). Layers are applied as they become ready, in any
    /// order, and committed in chain order. When `ready` closes before every missing layer
    /// arrived, the layers received are still unpacked and [`Error::Incomplete`] names the
    /// first layer that never arrived. Indices out of range or sent twice are ignored.
    pub fn unpack_image_as_ready(
        &self,
        store: &content::Store,
        config: &ImageConfig,
        layers: &[Descriptor],
        limits: &Limits,
        user: &str,
        ready: mpsc::Receiver<usize>,
    ) -> Result<Vec<SnapshotId>> {
        validate_user(user)?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != layers.len() {
            return Err(Error::LayerCount {
                diff_ids: diff_ids.len(),
                layers: layers.len(),
            });
        }
        let chain = chain_ids(diff_ids);
        let _gc = FileLock::lock(&self.root.join("lock"), libc::LOCK_SH)?;
        let mut pending = Vec::new();
        for (i, id) in chain.iter().enumerate() {
            if self.info(id)?.is_none() {
                let compression = oci::media_type::layer_compression(&oci::media_type::essence(
                    &layers[i].media_type,
                ))
                .ok_or_else(|| Error::UnsupportedMediaType {
                    layer: layers[i].digest.clone(),
                    media_type: layers[i].media_type.clone(),
                })?;
                pending.push((i, compression));
            }
        }
        if !pending.is_empty() {
            self.unpack_pending(store, diff_ids, layers, &pending, limits, ready)?;
        }
        self.retain(&chain, user)?;
        Ok(chain)
    }

    fn unpack_pending(
        &self,
        store: &content::Store,
        diff_ids: &[Digest],
        layers: &[Descriptor],
        pending: &[(usize, oci::media_type::Compression)],
        limits: &Limits,
        ready: mpsc::Receiver<usize>,
    ) -> Result<()> {
        let chain = chain_ids(diff_ids);
        let chain = &chain[..];
        let cancel = AtomicBool::new(false);
        // Layer index -> position in `pending` (None: already complete, or taken).
        let mut slots: Vec<Option<usize>> = vec![None; layers.len()];
        for (k, (i, _)) in pending.iter().enumerate() {
            slots[*i] = Some(k);
        }
        // Workers take the next ready layer that still needs unpacking.
        let next = Mutex::new((ready, slots));
        let (tx, rx) = mpsc::channel::<(usize, Result<Staged>)>();
        std::thread::scope(|scope| {
            for _ in 0..self.parallelism.min(pending.len()) {
                let tx = tx.clone();
                let (cancel, next) = (&cancel, &next);
                scope.spawn(move || {
                    loop {
                        let k = {
                            let mut guard = next.lock().unwrap_or_else(|p| p.into_inner());
                            let (ready, slots) = &mut *guard;
                            loop {
                                if cancel.load(Ordering::Relaxed) {
                                    return;
                                }
                                let Ok(i) = ready.recv() else { return };
                                if let Some(k) = slots.get_mut(i).and_then(Option::take) {
                                    break k;
                                }
                            }
                        };
                        let (i, compression) = pending[k];
                        let spec = LayerSpec {
                            digest: &layers[i].digest,
                            compression,
                            diff_id: &diff_ids[i],
                        };
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.stage(store, &spec, limits)
                        }))
                        .unwrap_or_else(|_| {
                            Err(Error::Panicked {
                                layer: layers[i].digest.clone(),
                            })
                        });
                        if tx.send((k, r)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            // Commit in chain order: a layer's lower hardlinks need its parents complete.
            let mut results: Vec<Option<Result<Staged>>> =
                (0..pending.len()).map(|_| None).collect();
            let mut first_err = None;
            let mut committed = 0;
            for (k, r) in rx.iter() {
                results[k] = Some(r);
                while committed < pending.len() && first_err.is_none() {
                    let Some(r) = results[committed].take() else {
                        break;
                    };
                    let (i, _) = pending[committed];
                    let outcome = r.and_then(|staged| {
                        let tmp = staged.tmp.clone();
                        self.commit(chain, layers, i, staged).inspect_err(|_| {
                            let _ = fsops::remove_tree(&tmp);
                        })
                    });
                    if let Err(e) = outcome {
                        cancel.store(true, Ordering::Relaxed);
                        first_err = Some(e);
                    }
                    committed += 1;
                }
            }
            if first_err.is_none() && committed < pending.len() {
                first_err = Some(Error::Incomplete {
                    layer: layers[pending[committed].0].digest.clone(),
                });
            }
            // Discard whatever was staged but not committed.
            for staged in results.into_iter().flatten().flatten() {
                let _ = fsops::remove_tree(&staged.tmp);
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }

    fn stage(
        &self,
        store: &content::Store,
        spec: &LayerSpec<'_>,
        limits: &Limits,
    ) -> Result<Staged> {
        let tmp = self.snapshots_dir().join(format!(
            "{TMP_PREFIX}{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        ));
        mkdir_private(&tmp)?;
        let lock = FileLock::lock(&tmp.join(".lock"), libc::LOCK_EX)?;
        let r = (|| {
            let fs_dir = tmp.join(FS);
            fs::create_dir(&fs_dir).map_err(Error::io("create directory", &fs_dir))?;
            fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &fs_dir))?;
            let blob = store
                .open_blob(spec.digest)
                .map_err(|source| Error::Content {
                    layer: spec.digest.clone(),
                    source: Box::new(source),
                })?;
            apply::apply_layer(blob.into_file(), spec, &fs_dir, limits, self.opts)
        })();
        match r {
            Ok(applied) => Ok(Staged {
                tmp,
                applied,
                _lock: lock,
            }),
            Err(e) => {
                let _ = fsops::remove_tree(&tmp);
                Err(e)
            }
        }
    }

    fn commit(
        &self,
        chain: &[SnapshotId],
        layers: &[Descriptor],
        i: usize,
        staged: Staged,
    ) -> Result<()> {
        let fs_dir = staged.tmp.join(FS);
        let mut changes = staged.applied.changes.clone();
        if !changes.lower_links.is_empty() {
            self.materialise_lower_links(&chain[..i], &fs_dir, &changes, &layers[i].digest)?;
            changes.lower_links.clear();
        }
        if !changes.implicit_dirs.is_empty() {
            self.inherit_implicit_dirs(&chain[..i], &fs_dir, &changes.implicit_dirs)?;
            changes.implicit_dirs.clear();
        }
        let info = SnapshotInfo {
            id: chain[i].clone(),
            parent: i.checked_sub(1).map(|p| chain[p].clone()),
            layer: layers[i].digest.clone(),
            media_type: layers[i].media_type.clone(),
            diff_id: staged.applied.diff_id.clone(),
            uncompressed_bytes: staged.applied.uncompressed_bytes,
            entries: staged.applied.entries,
            changes,
        };
        let dir_fd = File::open(&staged.tmp).map_err(Error::io("open", &staged.tmp))?;
        fsops::syncfs(dir_fd.as_raw_fd()).map_err(Error::io("syncfs", &staged.tmp))?;
        let meta = staged.tmp.join(META);
        let mut f = File::create(&meta).map_err(Error::io("create", &meta))?;
        let bytes = serde_json::to_vec(&info).map_err(|e| Error::Metadata {
            path: meta.clone(),
            reason: e.to_string(),
        })?;
        f.write_all(&bytes).map_err(Error::io("write", &meta))?;
        f.sync_all().map_err(Error::io("fsync", &meta))?;
        dir_fd.sync_all().map_err(Error::io("fsync", &staged.tmp))?;
        let dest = self.snapshot_dir(&chain[i]);
        match fs::rename(&staged.tmp, &dest) {
            Ok(()) => {}
            Err(e) if dest.join(META).exists() => {
                // Another process committed the same snapshot first.
                let _ = e;
                let _ = fsops::remove_tree(&staged.tmp);
            }
            Err(e) => return Err(Error::io("rename snapshot into place", dest)(e)),
        }
        fsops::sync_dir(&self.snapshots_dir()).map_err(Error::io("fsync", self.snapshots_dir()))?;
        Ok(())
    }

    /// Hardlinks to files of lower layers: copy the target up into this snapshot and link it,
    /// as overlayfs copy-up does when containerd applies a layer on an overlay mount.
    fn materialise_lower_links(
        &self,
        lowers: &[SnapshotId],
        fs_dir: &Path,
        changes: &LayerChanges,
        layer: &Digest,
    ) -> Result<()> {
        let mut infos = Vec::new();
        for id in lowers {
            let info = self.info(id)?.ok_or_else(|| Error::NotFound {
                id: id.to_string(),
                root: self.root.clone(),
            })?;
            infos.push(info);
        }
        let droot = Root::open(fs_dir).map_err(Error::io("open", fs_dir))?;
        for (link, target) in &changes.lower_links {
            let bad = |reason: &str| Error::InvalidHardlink {
                layer: layer.clone(),
                path: link.clone(),
                target: target.clone(),
                reason: reason.to_string(),
            };
            let eerr = |op: &'static str| {
                let layer = layer.clone();
                let path = link.clone();
                move |source| Error::Entry {
                    layer,
                    path,
                    op,
                    source,
                }
            };
            let tc: Vec<&[u8]> = target.split('/').map(str::as_bytes).collect();
            let (tname, tparent) = tc.split_last().ok_or_else(|| bad("empty target"))?;
            let tname = cstr(tname).map_err(eerr("name"))?;
            let mut found = None;
            'layers: for info in infos.iter().rev() {
                let lroot = Root::open(&self.snapshot_fs(&info.id))
                    .map_err(Error::io("open", self.snapshot_fs(&info.id)))?;
                if let Some(pfd) = native::open_dir_strict(lroot.fd(), tparent)
                    .map_err(eerr("resolve lower target"))?
                    && let Some(st) = fsops::lstat_at(pfd.as_raw_fd(), &tname)
                        .map_err(eerr("lstat lower target"))?
                {
                    if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0 {
                        break 'layers;
                    }
                    found = Some((pfd, st));
                    break;
                }
                let hidden = info
                    .changes
                    .whiteouts
                    .iter()
                    .chain(info.changes.opaques.iter())
                    .any(|w| target == w || target.starts_with(&format!("{w}/")) || w.is_empty());
                if hidden {
                    break;
                }
            }
            let Some((spfd, st)) = found else {
                return Err(bad(
                    "target is neither an earlier entry of this layer nor a file of a lower layer",
                ));
            };
            if fsops::is_dir(&st) {
                return Err(bad("target is a directory"));
            }
            let lc: Vec<&[u8]> = link.split('/').map(str::as_bytes).collect();
            let (lname, lparent) = lc.split_last().ok_or_else(|| bad("empty link"))?;
            let lname = cstr(lname).map_err(eerr("name"))?;
            let lpfd = droot
                .create_dir_all(lparent, &mut Vec::new())
                .map_err(eerr("resolve link parent"))?;
            let tpfd = droot
                .create_dir_all(tparent, &mut Vec::new())
                .map_err(eerr("resolve target parent"))?;
            let present = fsops::lstat_at(tpfd.as_raw_fd(), &tname)
                .map_err(eerr("lstat"))?
                .is_some();
            if present {
                // This layer later wrote its own file at the target path: the link keeps the
                // lower content, as a private copy.
                native::copy_node(spfd.as_raw_fd(), &tname, &st, lpfd.as_raw_fd(), &lname)
                    .map_err(eerr("copy lower file"))?;
            } else {
                native::copy_node(spfd.as_raw_fd(), &tname, &st, tpfd.as_raw_fd(), &tname)
                    .map_err(eerr("copy up lower file"))?;
                fsops::remove_all_at(lpfd.as_raw_fd(), &lname).map_err(eerr("remove"))?;
                fsops::linkat(tpfd.as_raw_fd(), &tname, lpfd.as_raw_fd(), &lname)
                    .map_err(eerr("link"))?;
            }
        }
        Ok(())
    }

    /// Give parent directories created implicitly (no entry of their own) the attributes of
    /// the visible directory at the same path in the lower layers, parents first.
    fn inherit_implicit_dirs(
        &self,
        lowers: &[SnapshotId],
        fs_dir: &Path,
        dirs: &[String],
    ) -> Result<()> {
        let mut infos = Vec::new();
        for id in lowers.iter().rev() {
            if let Some(info) = self.info(id)? {
                let root = Root::open(&self.snapshot_fs(id))
                    .map_err(Error::io("open", self.snapshot_fs(id)))?;
                infos.push((info, root));
            }
        }
        let droot = Root::open(fs_dir).map_err(Error::io("open", fs_dir))?;
        for dir in dirs {
            let comps: Vec<&[u8]> = dir.split('/').map(str::as_bytes).collect();
            for (info, lroot) in &infos {
                if let Some(src) = native::open_dir_strict(lroot.fd(), &comps)
                    .map_err(Error::io("open", fs_dir.join(dir)))?
                {
                    if let Some(dst) = native::open_dir_strict(droot.fd(), &comps)
                        .map_err(Error::io("open", fs_dir.join(dir)))?
                    {
                        let st = fsops::fstat(src.as_raw_fd())
                            .map_err(Error::io("stat", fs_dir.join(dir)))?;
                        native::copy_dir_meta(src.as_raw_fd(), dst.as_raw_fd(), &st)
                            .map_err(Error::io("copy directory attributes", fs_dir.join(dir)))?;
                    }
                    break;
                }
                let hidden = info
                    .changes
                    .whiteouts
                    .iter()
                    .chain(info.changes.opaques.iter())
                    .any(|w| w.is_empty() || dir == w || dir.starts_with(&format!("{w}/")));
                if hidden {
                    break;
                }
            }
        }
        Ok(())
    }

    fn refs_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("refs").join(id.dir_name())
    }

    fn read_refs(&self, id: &SnapshotId) -> Result<BTreeSet<String>> {
        let path = self.refs_path(id);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(Error::io("read", path)(e)),
        }
    }

    fn write_refs(&self, id: &SnapshotId, users: &BTreeSet<String>) -> Result<()> {
        let path = self.refs_path(id);
        if users.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
                _ => Ok(()),
            };
        }
        let tmp = self.root.join("tmp").join(format!(
            "refs-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        let mut text = String::new();
        for u in users {
            text.push_str(u);
            text.push('\n');
        }
        f.write_all(text.as_bytes())
            .map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
        Ok(())
    }

    fn update_refs(&self, chain: &[SnapshotId], f: impl Fn(&mut BTreeSet<String>)) -> Result<()> {
        let _g = self.refs_mutex.lock().unwrap_or_else(|p| p.into_inner());
        let _l = FileLock::lock(&self.root.join("refs.lock"), libc::LOCK_EX)?;
        let mut changed = false;
        for id in chain {
            let mut users = self.read_refs(id)?;
            let before = users.clone();
            f(&mut users);
            if users != before {
                self.write_refs(id, &users)?;
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        fsops::sync_dir(&self.root.join("refs")).map_err(Error::io("fsync", self.root.join("refs")))
    }

    /// The chain of every container root filesystem (`containers/<id>/chain.json`), by container id.
    fn container_chains(&self) -> Result<Vec<(String, Vec<SnapshotId>)>> {
        let dir = self.root.join("containers");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("read directory", &dir))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Some(chain) = self.read_chain(&entry.path().join("chain.json"))? {
                out.push((id, chain));
            }
        }
        Ok(out)
    }

    /// A container's `chain.json`; `None` when it does not exist (a container being removed).
    fn read_chain(&self, path: &Path) -> Result<Option<Vec<SnapshotId>>> {
        match fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Metadata {
                    path: path.to_owned(),
                    reason: format!(
                        "{e} (a container's snapshot list; remove the container with `berth rm` or delete its directory)"
                    ),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path)(e)),
        }
    }

    /// Record `user` as a user of every snapshot in `chain`.
    pub fn retain(&self, chain: &[SnapshotId], user: &str) -> Result<()> {
        validate_user(user)?;
        self.update_refs(chain, |u| {
            u.insert(user.to_string());
        })
    }

    /// Drop `user` from every snapshot in `chain`; [`Snapshotter::gc`] removes what is unused.
    pub fn release(&self, chain: &[SnapshotId], user: &str) -> Result<()> {
        self.update_refs(chain, |u| {
            u.remove(user);
        })
    }

    /// The users of a snapshot: images and other holders from `refs/`, and every container whose root
    /// filesystem is built on it (`container:<id>`).
    pub fn users(&self, id: &SnapshotId) -> Result<Vec<String>> {
        let mut users = self.read_refs(id)?;
        for (container, chain) in self.container_chains()? {
            if chain.contains(id) {
                users.insert(format!("container:{container}"));
            }
        }
        Ok(users.into_iter().collect())
    }

    /// Build a container root filesystem from `chain` (bottom-most first) and record the
    /// container as a user of its snapshots.
    pub fn prepare_rootfs(&self, chain: &[SnapshotId], container_id: &str) -> Result<Rootfs> {
        validate_container_id(container_id)?;
        let _gc = FileLock::lock(&self.root.join("lock"), libc::LOCK_SH)?;
        let mut infos = Vec::new();
        for id in chain {
            infos.push(self.info(id)?.ok_or_else(|| Error::NotFound {
                id: id.to_string(),
                root: self.root.clone(),
            })?);
        }
        let cdir = self.root.join("containers").join(container_id);
        mkdir_private(&cdir)?;
        // The container's reference to its snapshots: durable before anything is built on them.
        let chain_file = cdir.join("chain.json");
        let bytes = serde_json::to_vec(chain).map_err(|e| Error::Metadata {
            path: chain_file.clone(),
            reason: e.to_string(),
        })?;
        let tmp = cdir.join(format!("{TMP_PREFIX}chain-{:016x}", rand::random::<u64>()));
        let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(&bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        fs::rename(&tmp, &chain_file).map_err(Error::io("rename", &chain_file))?;
        fsops::sync_dir(&cdir).map_err(Error::io("fsync", &cdir))?;
        let overlay = self.mode == Mode::Auto
            && self.overlay.usable
            && !chain.is_empty()
            && infos.iter().all(|i| i.changes.overlay_markers);
        if overlay {
            let upper = cdir.join("upper");
            let work = cdir.join("work");
            for d in [&upper, &work] {
                if !d.exists() {
                    fs::create_dir(d).map_err(Error::io("create directory", d))?;
                }
            }
            fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &upper))?;
            let lowers = chain.iter().rev().map(|id| self.snapshot_fs(id)).collect();
            return Ok(Rootfs::Overlay {
                lowers,
                upper,
                work,
            });
        }
        let path = cdir.join("rootfs");
        if path.exists() {
            return Ok(Rootfs::Native { path });
        }
        let tmp = cdir.join(format!("{TMP_PREFIX}rootfs-{:016x}", rand::random::<u64>()));
        fs::create_dir(&tmp).map_err(Error::io("create directory", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
            .map_err(Error::io("chmod", &tmp))?;
        let dirs: Vec<PathBuf> = chain.iter().map(|id| self.snapshot_fs(id)).collect();
        let layers: Vec<(&Path, &LayerChanges)> = dirs
            .iter()
            .map(|d| d.as_path())
            .zip(infos.iter().map(|i| &i.changes))
            .collect();
        if let Err(e) = native::flatten(&layers, &tmp) {
            let _ = fsops::remove_tree(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
        Ok(Rootfs::Native { path })
    }

    /// Remove a container's root filesystem (unmounting `<containers>/<id>/rootfs` if it is a
    /// mount point) and drop it as a user of its snapshots.
    pub fn remove_rootfs(&self, container_id: &str) -> Result<()> {
        validate_container_id(container_id)?;
        let cdir = self.root.join("containers").join(container_id);
        let chain = self
            .read_chain(&cdir.join("chain.json"))?
            .unwrap_or_default();
        fsops::remove_tree(&cdir).map_err(Error::io("remove container root", &cdir))?;
        // Roots prepared by older versions also recorded the container in `refs/`.
        self.release(&chain, &format!("container:{container_id}"))
    }

    /// Remove every snapshot that has no users. Returns the removed ids.
    pub fn gc(&self) -> Result<Vec<SnapshotId>> {
        let _gc = FileLock::lock(&self.root.join("lock"), libc::LOCK_EX)?;
        let in_containers: BTreeSet<SnapshotId> = self
            .container_chains()?
            .into_iter()
            .flat_map(|(_, chain)| chain)
            .collect();
        let mut removed = Vec::new();
        for info in self.list()? {
            if in_containers.contains(&info.id) || !self.read_refs(&info.id)?.is_empty() {
                continue;
            }
            let dir = self.snapshot_dir(&info.id);
            // Rename first so the snapshot disappears atomically, then delete.
            let doomed = self
                .snapshots_dir()
                .join(format!("{TMP_PREFIX}gc-{:016x}", rand::random::<u64>()));
            fs::rename(&dir, &doomed).map_err(Error::io("rename", &dir))?;
            fsops::remove_tree(&doomed).map_err(Error::io("remove", &doomed))?;
            removed.push(info.id);
        }
        fsops::sync_dir(&self.snapshots_dir()).map_err(Error::io("fsync", self.snapshots_dir()))?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec_formula() {
        let a = Digest::sha256(b"a");
        let b = Digest::sha256(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0].0, a);
        assert_eq!(ids[1].0, Digest::sha256(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn container_ids_that_could_escape_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "tmp-x", "a\nb"] {
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_container_id("web-1_a.b").is_ok());
    }
}
