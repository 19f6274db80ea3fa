//! Beneath-root filesystem primitives: a directory handle ([`Root`]) that resolves every
//! parent path inside itself, and `*at` helpers that act on one final component without ever
//! following it.
//!
//! Written by hand on `libc` because no maintained crate offers openat2-based, create-as-you-go
//! resolution with the exact error mapping unpacking needs (cap-std resolves in user space
//! and would add a large dependency for a few calls).
//!
//! Resolution strategy: a parent path is first opened with one `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` call relative to the root fd. The kernel then follows symlinks that
//! stay inside the root and fails with `EXDEV` on any escape (`..` above the root, absolute
//! symlinks, magic links), atomically, so a racing rename cannot redirect it. When a component
//! is missing it is created by a component-by-component walk (`openat(O_NOFOLLOW |
//! O_DIRECTORY)` + `mkdirat`); a symlink met on that walk is resolved again with openat2 from
//! the root. On kernels without openat2 (< 5.6, `ENOSYS`) the walk alone is used and a
//! symlinked parent is refused (`EXDEV`): stricter than the kernel path, never looser.
//!
//! This module must never call a path-based function that follows the final component, and
//! never resolve anything relative to the process's working directory or `/`.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

const OPENAT2_UNKNOWN: u8 = 0;
const OPENAT2_YES: u8 = 1;
const OPENAT2_NO: u8 = 2;
static OPENAT2: AtomicU8 = AtomicU8::new(OPENAT2_UNKNOWN);

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// `EXDEV`: the error used for "resolution would leave the root".
pub(crate) fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV))
}

fn escape_error(msg: &str) -> io::Error {
    io::Error::new(
        io::Error::from_raw_os_error(libc::EXDEV).kind(),
        EscapeError(msg.to_string()),
    )
}

#[derive(Debug)]
struct EscapeError(String);
impl std::fmt::Display for EscapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for EscapeError {}

/// True when the error came from a refused escape (kernel `EXDEV` or our own walk).
pub(crate) fn is_escape_any(e: &io::Error) -> bool {
    is_escape(e) || e.get_ref().is_some_and(|inner| inner.is::<EscapeError>())
}

/// Whether this kernel has openat2 (probed once).
pub fn openat2_supported() -> bool {
    match OPENAT2.load(Ordering::Relaxed) {
        OPENAT2_YES => true,
        OPENAT2_NO => false,
        _ => {
            let root = c"/";
            let r = openat2_raw(libc::AT_FDCWD, root, libc::O_PATH | libc::O_CLOEXEC, 0);
            let ok = !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENOSYS));
            OPENAT2.store(if ok { OPENAT2_YES } else { OPENAT2_NO }, Ordering::Relaxed);
            ok
        }
    }
}

fn openat2_raw(dirfd: RawFd, path: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: valid pointers to a NUL-terminated path and an open_how of the given size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel returned a new owned descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) || e.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Err(e);
    }
}

/// `openat(dirfd, name, flags)` with `O_CLOEXEC` added.
pub(crate) fn openat(
    dirfd: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: valid NUL-terminated name.
        let r = unsafe {
            libc::openat(
                dirfd,
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if r >= 0 {
            // SAFETY: new owned descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Err(e);
    }
}

/// Open a directory child without following a symlink.
pub(crate) fn open_dir_nofollow(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        dirfd,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; `Ok(None)` when absent.
pub(crate) fn lstat_at(dirfd: RawFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid name and out pointer.
    let r = unsafe {
        libc::fstatat(
            dirfd,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: fstatat succeeded and initialised st.
    Ok(Some(unsafe { st.assume_init() }))
}

pub(crate) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd and out pointer.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub(crate) fn mkdirat(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: valid name.
    cvt(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) }).map(|_| ())
}

pub(crate) fn unlinkat(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: valid name.
    cvt(unsafe { libc::unlinkat(dirfd, name.as_ptr(), flags) }).map(|_| ())
}

pub(crate) fn symlinkat(target: &CStr, dirfd: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid names.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) }).map(|_| ())
}

/// `linkat` without `AT_SYMLINK_FOLLOW`: a link to a symlink links the symlink itself.
pub(crate) fn linkat(odir: RawFd, oname: &CStr, ndir: RawFd, nname: &CStr) -> io::Result<()> {
    // SAFETY: valid names.
    cvt(unsafe { libc::linkat(odir, oname.as_ptr(), ndir, nname.as_ptr(), 0) }).map(|_| ())
}

pub(crate) fn mknodat(
    dirfd: RawFd,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: valid name.
    cvt(unsafe { libc::mknodat(dirfd, name.as_ptr(), mode, dev) }).map(|_| ())
}

/// `fchownat(.., AT_SYMLINK_NOFOLLOW)` (lchown relative to a directory fd).
pub(crate) fn lchown_at(dirfd: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid name.
    cvt(unsafe { libc::fchownat(dirfd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(|_| ())
}

pub(crate) fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchown(fd, uid, gid) }).map(|_| ())
}

pub(crate) fn fchmod(fd: RawFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchmod(fd, mode) }).map(|_| ())
}

/// chmod of a node just created by this process under `dirfd` (device or FIFO, which cannot
/// be opened safely). Goes through an `O_PATH | O_NOFOLLOW` fd and its `/proc/self/fd` link so
/// that a symlink at that name is never followed.
pub(crate) fn chmod_node_at(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    let fd = openat(dirfd, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(());
    }
    let p = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    // SAFETY: valid path.
    cvt(unsafe { libc::chmod(p.as_ptr(), mode) }).map(|_| ())
}

pub(crate) fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    // SAFETY: timespec is plain data.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    t.tv_sec = sec as libc::time_t;
    t.tv_nsec = nsec as _;
    t
}

pub(crate) fn futimens(fd: RawFd, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: pointer to two timespecs.
    cvt(unsafe { libc::futimens(fd, times.as_ptr()) }).map(|_| ())
}

/// `utimensat(.., AT_SYMLINK_NOFOLLOW)`: sets the times of a symlink itself.
pub(crate) fn lutimens_at(
    dirfd: RawFd,
    name: &CStr,
    times: &[libc::timespec; 2],
) -> io::Result<()> {
    // SAFETY: valid name, two timespecs.
    cvt(unsafe {
        libc::utimensat(
            dirfd,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(|_| ())
}

pub(crate) fn fsetxattr(fd: RawFd, key: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid key and value buffer.
    cvt(unsafe { libc::fsetxattr(fd, key.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(|_| ())
}

/// `lsetxattr` on `name` under `dirfd`: the final component is not followed.
pub(crate) fn lsetxattr_at(dirfd: RawFd, name: &CStr, key: &CStr, value: &[u8]) -> io::Result<()> {
    let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    let p = cstr(&p)?;
    // SAFETY: valid path, key and value buffer.
    cvt(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

/// All xattrs of an open fd (names and values).
pub(crate) fn flistxattrs(fd: RawFd) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let p = cstr(format!("/proc/self/fd/{fd}").as_bytes())?;
    listxattrs_path(&p)
}

/// All xattrs of `name` under `dirfd`, not following a final symlink.
pub(crate) fn llistxattrs_at(dirfd: RawFd, name: &CStr) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    listxattrs_path(&cstr(&p)?)
}

fn listxattrs_path(p: &CStr) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        // SAFETY: buffer of the given length.
        let r = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let key = cstr(key)?;
        let mut val = vec![0u8; 256];
        loop {
            // SAFETY: buffer of the given length.
            let r = unsafe {
                libc::lgetxattr(p.as_ptr(), key.as_ptr(), val.as_mut_ptr().cast(), val.len())
            };
            if r >= 0 {
                val.truncate(r as usize);
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if val.len() < 1 << 20 => val.resize(val.len() * 4, 0),
                Some(libc::ENODATA) => {
                    val.clear();
                    break;
                }
                _ => return Err(e),
            }
        }
        out.push((key, val));
    }
    Ok(out)
}

/// Read a symlink `name` under `dirfd`.
pub(crate) fn readlinkat(dirfd: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: buffer of the given length.
        let r =
            unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if (r as usize) < buf.len() {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// One directory entry.
pub(crate) struct DirEntry {
    pub name: CString,
}

/// List a directory given by fd (the fd itself is not consumed). `.` and `..` are skipped.
pub(crate) fn read_dir(fd: RawFd) -> io::Result<Vec<DirEntry>> {
    // SAFETY: dup of a valid fd.
    let dup = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: dup is a fresh owned fd; fdopendir takes ownership on success.
    let dir = unsafe { libc::fdopendir(dup) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so dup is still ours.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: rewind a valid DIR (the dup shares the offset with `fd`).
    unsafe { libc::rewinddir(dir) };
    let mut out = Vec::new();
    let result = loop {
        // SAFETY: errno reset, then readdir on a valid DIR.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        out.push(DirEntry {
            name: name.to_owned(),
        });
    };
    // SAFETY: closes the DIR and its fd.
    unsafe { libc::closedir(dir) };
    result.map(|_| out)
}

/// Remove `name` under `dirfd` whatever it is (directories recursively), never following a
/// symlink. Absent is fine.
pub(crate) fn remove_all_at(dirfd: RawFd, name: &CStr) -> io::Result<()> {
    let Some(st) = lstat_at(dirfd, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        return match unlinkat(dirfd, name, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        };
    }
    let fd = open_dir_nofollow(dirfd, name)?;
    clear_dir(fd.as_raw_fd())?;
    drop(fd);
    match unlinkat(dirfd, name, libc::AT_REMOVEDIR) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// Remove every child of the directory `fd`.
pub(crate) fn clear_dir(fd: RawFd) -> io::Result<()> {
    for ent in read_dir(fd)? {
        remove_all_at(fd, &ent.name)?;
    }
    Ok(())
}

/// Remove a whole tree given by an absolute path (our own directories), never following
/// symlinks inside it.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove a root path",
        ));
    };
    let pfd = match File::open(parent) {
        Ok(f) => OwnedFd::from(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_all_at(pfd.as_raw_fd(), &cstr(name.as_bytes())?)
}

/// A directory handle that every entry path is resolved beneath.
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Open an existing directory as a root (the path itself is trusted: it is ours).
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let p = cstr(path.as_os_str().as_bytes())?;
        let fd = openat(libc::AT_FDCWD, &p, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Ok(Root { fd })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Open the directory at `components` (already cleaned: no `.`, `..` or empty parts)
    /// beneath the root, without creating anything. Fails with `EXDEV` on an escape.
    pub(crate) fn open_dir(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        if components.is_empty() {
            return dup(self.fd());
        }
        if openat2_supported() {
            let path = cstr(&components.join(&b'/'))?;
            return openat2_raw(
                self.fd(),
                &path,
                libc::O_RDONLY | libc::O_DIRECTORY,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            );
        }
        self.walk(components, false)
    }

    /// Like [`Root::open_dir`] but creates missing directories (mode 0755, as containerd's
    /// implicit parents).
    /// `created` receives the paths (`/`-joined) of the directories this call created.
    pub(crate) fn create_dir_all(
        &self,
        components: &[&[u8]],
        created: &mut Vec<String>,
    ) -> io::Result<OwnedFd> {
        match self.open_dir(components) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.walk_inner(components, true, created)
            }
            r => r,
        }
    }

    fn walk(&self, components: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
        self.walk_inner(components, create, &mut Vec::new())
    }

    fn walk_inner(
        &self,
        components: &[&[u8]],
        create: bool,
        created: &mut Vec<String>,
    ) -> io::Result<OwnedFd> {
        let mut cur = dup(self.fd())?;
        for (i, comp) in components.iter().enumerate() {
            let name = cstr(comp)?;
            let next = match open_dir_nofollow(cur.as_raw_fd(), &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    match mkdirat(cur.as_raw_fd(), &name, 0o755) {
                        Ok(()) => created.push(
                            String::from_utf8_lossy(&components[..=i].join(&b'/')).into_owned(),
                        ),
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    open_dir_nofollow(cur.as_raw_fd(), &name)?
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                    let st = lstat_at(cur.as_raw_fd(), &name)?;
                    let is_link = st.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    if !is_link {
                        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                    }
                    if !openat2_supported() {
                        return Err(escape_error(
                            "a parent directory is a symlink and openat2 is unavailable",
                        ));
                    }
                    let prefix = cstr(&components[..=i].join(&b'/'))?;
                    openat2_raw(
                        self.fd(),
                        &prefix,
                        libc::O_RDONLY | libc::O_DIRECTORY,
                        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
                    )?
                }
                Err(e) => return Err(e),
            };
            cur = next;
        }
        Ok(cur)
    }
}

pub(crate) fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: dup of a valid fd.
    let r = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: new owned fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `syncfs` on the filesystem holding `fd`.
pub(crate) fn syncfs(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::syncfs(fd) }).map(|_| ())
}

/// fsync a directory by path (our own directories).
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// True when running as real root outside a user namespace (device nodes can be created).
pub(crate) fn can_create_devices() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let f: Vec<&str> = map.split_whitespace().collect();
            f.len() == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dir_refuses_symlinks_that_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("real", root.join("inside")).unwrap();
        let r = Root::open(&root).unwrap();
        for bad in [&b"up"[..], b"abs"] {
            let e = r.open_dir(&[bad]).unwrap_err();
            assert!(is_escape_any(&e), "{e}");
            let e = r.create_dir_all(&[bad, b"x"], &mut Vec::new()).unwrap_err();
            assert!(
                is_escape_any(&e) || e.raw_os_error() == Some(libc::ENOENT),
                "{e}"
            );
        }
        if openat2_supported() {
            assert!(
                r.open_dir(&[b"inside"]).is_ok(),
                "in-root symlinks are followed by openat2"
            );
        }
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn fallback_walk_refuses_any_symlinked_parent_and_reports_created_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", tmp.path().join("abs")).unwrap();
        let r = Root::open(tmp.path()).unwrap();
        assert!(r.walk(&[b"abs", b"etc"], true).is_err());
        let mut created = Vec::new();
        r.walk_inner(&[b"a", b"b"], true, &mut created).unwrap();
        assert_eq!(created, vec!["a".to_string(), "a/b".to_string()]);
    }

    #[test]
    fn remove_all_at_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d/link")).unwrap();
        let r = Root::open(&root).unwrap();
        remove_all_at(r.fd(), c"d").unwrap();
        assert!(!root.join("d").exists());
        assert!(outside.join("keep").exists());
    }
}
