//! The native snapshotter's flattening: builds one plain directory tree for a container from
//! a chain of layer snapshots, bottom-up, applying each layer's whiteouts and opaque
//! directories before copying its tree over the result (the view overlayfs would present).
//! Also copies single nodes for hardlinks into lower layers.
//!
//! It walks both trees by directory fds with `O_NOFOLLOW` and acts with `*at` calls only: it
//! must never follow a symlink found in a snapshot or in the destination, and never copy
//! overlay markers (`trusted.overlay.*`, whiteout devices) into the result.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::apply::LayerChanges;
use crate::error::{Error, Result};
use crate::fsops::{self, Root, cstr};

fn is_whiteout_dev(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

fn comps(rel: &str) -> Vec<&[u8]> {
    rel.split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.as_bytes())
        .collect()
}

/// Open the directory at `components` under `root` without following any symlink and without
/// creating anything; `Ok(None)` when a component is missing or not a real directory.
pub(crate) fn open_dir_strict(root: RawFd, components: &[&[u8]]) -> io::Result<Option<OwnedFd>> {
    let mut cur = fsops::dup(root)?;
    for c in components {
        let name = cstr(c)?;
        match fsops::open_dir_nofollow(cur.as_raw_fd(), &name) {
            Ok(fd) => cur = fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(cur))
}

/// Flatten `layers` (bottom-most first: each a snapshot tree and its recorded changes) into
/// the existing empty directory `dest`.
pub fn flatten(layers: &[(&Path, &LayerChanges)], dest: &Path) -> Result<()> {
    let droot = Root::open(dest).map_err(Error::io("open", dest))?;
    for (src, changes) in layers {
        let ioerr = |op: &'static str| Error::io(op, src.to_path_buf());
        for o in &changes.opaques {
            if let Some(fd) =
                open_dir_strict(droot.fd(), &comps(o)).map_err(ioerr("resolve opaque directory"))?
            {
                fsops::clear_dir(fd.as_raw_fd()).map_err(ioerr("clear opaque directory"))?;
            }
        }
        for w in &changes.whiteouts {
            let c = comps(w);
            let Some((name, parent)) = c.split_last() else {
                continue;
            };
            if let Some(fd) =
                open_dir_strict(droot.fd(), parent).map_err(ioerr("resolve whiteout"))?
            {
                let name = cstr(name).map_err(ioerr("whiteout name"))?;
                fsops::remove_all_at(fd.as_raw_fd(), &name).map_err(ioerr("apply whiteout"))?;
            }
        }
        let sroot = Root::open(src).map_err(Error::io("open", src.to_path_buf()))?;
        let mut links = HashMap::new();
        let mut copier = Copier {
            links: &mut links,
            dest_root: droot.fd(),
        };
        copier
            .copy_dir(
                sroot.fd(),
                fsops::dup(droot.fd()).map_err(ioerr("dup"))?.as_raw_fd(),
                &mut Vec::new(),
            )
            .map_err(|e| Error::Io {
                op: "flatten layer",
                path: src.to_path_buf(),
                source: e,
            })?;
        // Root directory metadata of the layer.
        let st = fsops::fstat(sroot.fd()).map_err(ioerr("stat"))?;
        copy_dir_meta(sroot.fd(), droot.fd(), &st).map_err(ioerr("copy root metadata"))?;
    }
    Ok(())
}

struct Copier<'a> {
    /// (dev, ino) of multiply-linked files in the current layer -> first destination path.
    links: &'a mut HashMap<(u64, u64), Vec<CString>>,
    dest_root: RawFd,
}

impl Copier<'_> {
    fn copy_dir(&mut self, sfd: RawFd, dfd: RawFd, path: &mut Vec<CString>) -> io::Result<()> {
        for ent in fsops::read_dir(sfd)? {
            let name = ent.name;
            let Some(st) = fsops::lstat_at(sfd, &name)? else {
                continue;
            };
            if is_whiteout_dev(&st) {
                continue;
            }
            if fsops::is_dir(&st) {
                let keep = matches!(fsops::lstat_at(dfd, &name)?, Some(d) if fsops::is_dir(&d));
                if !keep {
                    fsops::remove_all_at(dfd, &name)?;
                    fsops::mkdirat(dfd, &name, 0o700)?;
                }
                let s = fsops::open_dir_nofollow(sfd, &name)?;
                let d = fsops::open_dir_nofollow(dfd, &name)?;
                path.push(name.clone());
                self.copy_dir(s.as_raw_fd(), d.as_raw_fd(), path)?;
                path.pop();
                copy_dir_meta(s.as_raw_fd(), d.as_raw_fd(), &st)?;
                continue;
            }
            let key = (st.st_dev, st.st_ino);
            if st.st_nlink > 1
                && st.st_mode & libc::S_IFMT == libc::S_IFREG
                && let Some(first) = self.links.get(&key)
            {
                let (fname, fparent) = first.split_last().expect("non-empty path");
                let fparent: Vec<&[u8]> = fparent.iter().map(|c| c.to_bytes()).collect();
                if let Some(pfd) = open_dir_strict(self.dest_root, &fparent)? {
                    fsops::remove_all_at(dfd, &name)?;
                    fsops::linkat(pfd.as_raw_fd(), fname, dfd, &name)?;
                    continue;
                }
            }
            copy_node(sfd, &name, &st, dfd, &name)?;
            if st.st_nlink > 1 && st.st_mode & libc::S_IFMT == libc::S_IFREG {
                let mut p = path.clone();
                p.push(name.clone());
                self.links.insert(key, p);
            }
        }
        Ok(())
    }
}

fn copy_xattrs(
    list: Vec<(CString, Vec<u8>)>,
    mut set: impl FnMut(&CStr, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    for (k, v) in list {
        if k.to_bytes().starts_with(b"trusted.overlay.") {
            continue;
        }
        match set(&k, &v) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn owner_allowed() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) fn copy_dir_meta(sfd: RawFd, dfd: RawFd, st: &libc::stat) -> io::Result<()> {
    if owner_allowed() {
        fsops::fchown(dfd, st.st_uid, st.st_gid)?;
    }
    fsops::fchmod(dfd, st.st_mode & 0o7777)?;
    copy_xattrs(fsops::flistxattrs(sfd)?, |k, v| fsops::fsetxattr(dfd, k, v))?;
    fsops::futimens(dfd, &times(st))
}

fn times(st: &libc::stat) -> [libc::timespec; 2] {
    [
        fsops::timespec(st.st_atime, st.st_atime_nsec),
        fsops::timespec(st.st_mtime, st.st_mtime_nsec),
    ]
}

/// Copy one non-directory node `sname` under `sfd` (described by `st`) to `dname` under
/// `dfd`, replacing whatever is there, with ownership, mode, xattrs and times.
pub(crate) fn copy_node(
    sfd: RawFd,
    sname: &CStr,
    st: &libc::stat,
    dfd: RawFd,
    dname: &CStr,
) -> io::Result<()> {
    fsops::remove_all_at(dfd, dname)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => {
            let src = File::from(fsops::openat(
                sfd,
                sname,
                libc::O_RDONLY | libc::O_NOFOLLOW,
                0,
            )?);
            let dst = fsops::openat(
                dfd,
                dname,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )?;
            let mut dst = File::from(dst);
            // std uses copy_file_range (reflinks or in-kernel copy) where the filesystem can.
            io::copy(&mut &src, &mut dst)?;
            if owner_allowed() {
                fsops::fchown(dst.as_raw_fd(), st.st_uid, st.st_gid)?;
            }
            fsops::fchmod(dst.as_raw_fd(), st.st_mode & 0o7777)?;
            copy_xattrs(fsops::flistxattrs(src.as_raw_fd())?, |k, v| {
                fsops::fsetxattr(dst.as_raw_fd(), k, v)
            })?;
            fsops::futimens(dst.as_raw_fd(), &times(st))
        }
        libc::S_IFLNK => {
            let target = fsops::readlinkat(sfd, sname)?;
            fsops::symlinkat(&cstr(&target)?, dfd, dname)?;
            if owner_allowed() {
                fsops::lchown_at(dfd, dname, st.st_uid, st.st_gid)?;
            }
            copy_xattrs(fsops::llistxattrs_at(sfd, sname)?, |k, v| {
                fsops::lsetxattr_at(dfd, dname, k, v)
            })?;
            fsops::lutimens_at(dfd, dname, &times(st))
        }
        fmt => {
            fsops::mknodat(dfd, dname, fmt | (st.st_mode & 0o777), st.st_rdev)?;
            if owner_allowed() {
                fsops::lchown_at(dfd, dname, st.st_uid, st.st_gid)?;
            }
            fsops::chmod_node_at(dfd, dname, st.st_mode & 0o7777)?;
            fsops::lutimens_at(dfd, dname, &times(st))
        }
    }
}
