//! The layer applier: one streaming pass over a layer blob that hashes the compressed bytes,
//! decompresses (gzip, zstd or none), hashes the uncompressed tar stream, and applies each tar
//! entry to one snapshot directory through a beneath-root handle ([`crate::fsops::Root`]).
//!
//! It owns path normalisation, whiteout translation (OCI `.wh.` names to overlay whiteouts),
//! metadata preservation and the limits. It must never write, chmod, chown or delete anything
//! outside the snapshot directory, never follow a symlink it did not resolve beneath the root,
//! and never open an existing path for writing (duplicates are removed and recreated).
//!
//! The `tar` crate (>= 0.4.45) parses headers (PAX, GNU long names, PAX size precedence); its
//! `unpack`/`unpack_in` are never used. Extension headers are read into memory by the parser,
//! so the reader below caps the bytes read between two entries (`Limits::max_header_bytes`).

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

use oci::media_type::Compression;
use oci::{Digest, Digester};
use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::error::{Error, Result};
use crate::fsops::{self, Root, cstr};

/// Buffer size for reading blobs and copying file data.
pub(crate) const BUF_SIZE: usize = 256 * 1024;
/// Largest zstd window accepted (2^27 = 128 MiB), bounding decoder memory.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of OCI whiteout files.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The overlay xattr marking an opaque directory.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Limits that stop decompression bombs and absurd archives. Defaults are generous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed bytes per layer (the whole tar stream, headers included). Default 64 GiB.
    pub max_uncompressed_bytes: u64,
    /// Tar entries per layer (extension headers not counted). Default 10 million.
    pub max_entries: u64,
    /// Bytes of one entry path or link target. Default 4096.
    pub max_path_len: usize,
    /// Bytes read between two entries: PAX headers, GNU long names, sparse maps. Default 1 MiB.
    pub max_header_bytes: u64,
    /// Directory depth of one entry path. Default 1024.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uncompressed_bytes: 64 << 30,
            max_entries: 10_000_000,
            max_path_len: 4096,
            max_header_bytes: 1 << 20,
            max_depth: 1024,
        }
    }
}

/// How entries are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Write overlay whiteouts (char 0/0) and `trusted.overlay.opaque=y` into the snapshot.
    /// Needs CAP_MKNOD and trusted xattr support; without it whiteouts are only recorded in
    /// [`LayerChanges`] (enough for the native snapshotter).
    pub overlay_markers: bool,
    /// Create block and character devices (real root outside a user namespace only).
    pub devices: bool,
    /// Apply ownership from the archive (lchown). Needs CAP_CHOWN.
    pub ownership: bool,
}

impl ApplyOptions {
    /// Options for the current process: markers, devices and ownership when running as root.
    pub fn for_current_process() -> ApplyOptions {
        let dev = fsops::can_create_devices();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        ApplyOptions {
            overlay_markers: dev,
            devices: dev,
            ownership: root,
        }
    }
}

/// What a layer removes from the layers below it (paths relative to the root, `/`-joined),
/// plus hardlinks whose targets live in a lower layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerChanges {
    /// Paths whited out by `.wh.<name>` entries.
    pub whiteouts: Vec<String>,
    /// Directories made opaque by `.wh..wh..opq` entries ("" is the root).
    pub opaques: Vec<String>,
    /// Whether overlay markers were written into the snapshot tree.
    pub overlay_markers: bool,
    /// `(link, target)` hardlinks whose target was not in this layer (resolved against lower
    /// layers once they are complete, as overlayfs copy-up would).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lower_links: Vec<(String, String)>,
    /// Parent directories created without an entry of their own; the snapshotter copies their
    /// attributes from the same directory in a lower layer (as containerd's `mkparent`), so an
    /// upper layer does not reset a lower directory's mode or owner to 0755 root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implicit_dirs: Vec<String>,
}

/// Outcome of applying one layer.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The diffID computed over the uncompressed stream (verified against the expected one).
    pub diff_id: Digest,
    /// Uncompressed bytes read.
    pub uncompressed_bytes: u64,
    /// Entries applied.
    pub entries: u64,
    /// Whiteouts, opaque directories and lower hardlinks of this layer.
    pub changes: LayerChanges,
    /// Entries skipped with a warning (devices without privilege, refused xattrs).
    pub warnings: Vec<String>,
}

/// The layer being applied and what its content must hash to.
#[derive(Debug, Clone)]
pub struct LayerSpec<'a> {
    /// The layer descriptor digest (compressed bytes).
    pub digest: &'a Digest,
    /// The compression, from the media type.
    pub compression: Compression,
    /// The diffID from the image config (`rootfs.diff_ids[i]`).
    pub diff_id: &'a Digest,
}

struct HashRead<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

type Compressed<R> = BufReader<HashRead<R>>;

enum Decoder<R: Read> {
    None(Box<Compressed<R>>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<Compressed<R>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, Compressed<R>>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decoder<R> {
    fn into_inner(self) -> Compressed<R> {
        match self {
            Decoder::None(r) => *r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trip {
    Budget,
    Header,
}

/// The uncompressed stream: hashes, counts, and enforces the byte budget and the cap on bytes
/// read between entries (extension headers).
struct Guard<R: Read> {
    inner: Decoder<R>,
    digester: Digester,
    total: u64,
    pos: Rc<Cell<u64>>,
    budget: u64,
    header_cap: u64,
    header_start: Rc<Cell<Option<u64>>>,
    tripped: Rc<Cell<Option<Trip>>>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut want = buf.len() as u64;
        let room = self.budget.saturating_sub(self.total);
        if room == 0 && !buf.is_empty() {
            // One more byte would pass the budget: probe whether the stream has any.
            let mut probe = [0u8; 1];
            let n = self.inner.read(&mut probe)?;
            if n == 0 {
                return Ok(0);
            }
            self.tripped.set(Some(Trip::Budget));
            return Err(io::Error::other("uncompressed byte budget exceeded"));
        }
        want = want.min(room);
        if let Some(start) = self.header_start.get() {
            let used = self.total - start;
            if used >= self.header_cap {
                self.tripped.set(Some(Trip::Header));
                return Err(io::Error::other("tar header bytes limit exceeded"));
            }
            want = want.min(self.header_cap - used);
        }
        let n = self.inner.read(&mut buf[..want as usize])?;
        self.digester.update(&buf[..n]);
        self.total += n as u64;
        self.pos.set(self.total);
        Ok(n)
    }
}

/// A cleaned, relative entry path.
struct EntryPath {
    components: Vec<Vec<u8>>,
}

impl EntryPath {
    fn parent(&self) -> Vec<&[u8]> {
        self.components[..self.components.len().saturating_sub(1)]
            .iter()
            .map(|c| c.as_slice())
            .collect()
    }
    fn name(&self) -> Option<&[u8]> {
        self.components.last().map(|c| c.as_slice())
    }
    fn joined(&self) -> String {
        String::from_utf8_lossy(&self.components.join(&b'/')).into_owned()
    }
}

enum Clean {
    Ok(EntryPath),
    Escapes,
    Invalid(&'static str),
}

/// Lexically clean an archive path: leading `/` dropped (absolute names are re-rooted),
/// `.` and empty components dropped, `..` pops, and `..` above the root is an escape.
fn clean(raw: &[u8], limits: &Limits) -> Clean {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Clean::Escapes;
                }
            }
            c => {
                if c.len() > 255 {
                    return Clean::Invalid("a path component is longer than 255 bytes");
                }
                out.push(c.to_vec());
            }
        }
    }
    if out.len() > limits.max_depth {
        return Clean::Invalid("path is deeper than Limits::max_depth");
    }
    Clean::Ok(EntryPath { components: out })
}

/// Apply one layer blob (`reader` yields the compressed bytes) into the directory `dest`.
///
/// Verifies the compressed digest and the diffID after the last byte; on any error the caller
/// must discard `dest` (the snapshotter builds into a temporary directory for that reason).
pub fn apply_layer<R: Read>(
    reader: R,
    layer: &LayerSpec<'_>,
    dest: &Path,
    limits: &Limits,
    opts: ApplyOptions,
) -> Result<Applied> {
    let root = Root::open(dest).map_err(Error::io("open snapshot directory", dest))?;
    let compressed = BufReader::with_capacity(
        BUF_SIZE,
        HashRead {
            inner: reader,
            digester: Digester::new(layer.digest.algorithm()),
        },
    );
    let lerr = |e: io::Error| Error::Archive {
        layer: layer.digest.clone(),
        path: String::new(),
        source: e,
    };
    let decoder = match layer.compression {
        Compression::None => Decoder::None(Box::new(compressed)),
        Compression::Gzip => {
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(compressed)))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(compressed).map_err(lerr)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(lerr)?;
            Decoder::Zstd(Box::new(d))
        }
    };
    let header_start = Rc::new(Cell::new(None));
    let stream_pos = Rc::new(Cell::new(0u64));
    let tripped = Rc::new(Cell::new(None));
    let guard = Guard {
        inner: decoder,
        digester: Digester::new(layer.diff_id.algorithm()),
        total: 0,
        pos: stream_pos.clone(),
        budget: limits.max_uncompressed_bytes,
        header_cap: limits.max_header_bytes.saturating_add(4 * 512),
        header_start: header_start.clone(),
        tripped: tripped.clone(),
    };
    let mut archive = tar::Archive::new(guard);
    let mut applier = Applier {
        root,
        layer: layer.digest,
        limits,
        opts,
        changes: LayerChanges {
            overlay_markers: opts.overlay_markers,
            ..LayerChanges::default()
        },
        dir_times: Vec::new(),
        parent_cache: None,
        buf: vec![0u8; BUF_SIZE],
        warnings: Vec::new(),
        skipped_devices: 0,
        refused_xattrs: HashSet::new(),
        seen_whiteouts: HashSet::new(),
        seen_opaques: HashSet::new(),
        explicit_dirs: HashSet::new(),
        entries: 0,
    };
    let limit_err = |trip: Trip, path: &str| match trip {
        Trip::Budget => Error::Limit {
            layer: layer.digest.clone(),
            what: "uncompressed size",
            field: "max_uncompressed_bytes",
            limit: limits.max_uncompressed_bytes,
            path: path.to_string(),
        },
        Trip::Header => Error::Limit {
            layer: layer.digest.clone(),
            what: "tar extension header size (PAX, GNU long name, sparse map)",
            field: "max_header_bytes",
            limit: limits.max_header_bytes,
            path: path.to_string(),
        },
    };
    {
        let mut entries = archive.entries().map_err(lerr)?;
        let mut last_path = String::new();
        loop {
            // Bytes read from here until the next entry is yielded are headers.
            header_start.set(Some(stream_pos.get()));
            let next = entries.next();
            header_start.set(None);
            let mut entry = match next {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    if let Some(t) = tripped.get() {
                        return Err(limit_err(t, &last_path));
                    }
                    return Err(Error::Archive {
                        layer: layer.digest.clone(),
                        path: last_path,
                        source: e,
                    });
                }
            };
            last_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            match applier.apply_entry(&mut entry) {
                Ok(()) => {}
                Err(e) => {
                    if let Some(t) = tripped.get() {
                        return Err(limit_err(t, &last_path));
                    }
                    return Err(e);
                }
            }
        }
    }
    applier.finish_dirs()?;
    // Hash what follows the end-of-archive marker too: the diffID covers the whole stream.
    let mut guard = archive.into_inner();
    if let Err(e) = io::copy(&mut guard, &mut io::sink()) {
        if let Some(t) = tripped.get() {
            return Err(limit_err(t, "<end of archive>"));
        }
        return Err(lerr(e));
    }
    let total = guard.total;
    let diff_id = guard.digester.finish();
    let mut compressed = guard.inner.into_inner();
    io::copy(&mut compressed, &mut io::sink()).map_err(lerr)?;
    let actual = compressed.into_inner().digester.finish();
    if &actual != layer.digest {
        return Err(Error::LayerDigest {
            layer: layer.digest.clone(),
            actual,
        });
    }
    if &diff_id != layer.diff_id {
        return Err(Error::DiffId {
            layer: layer.digest.clone(),
            expected: layer.diff_id.clone(),
            actual: diff_id,
        });
    }
    let mut warnings = applier.warnings;
    if applier.skipped_devices > 0 {
        let msg = format!(
            "layer {}: skipped {} device node(s): creating devices needs real root outside a user namespace",
            layer.digest, applier.skipped_devices
        );
        tracing::warn!("{msg}");
        warnings.push(msg);
    }
    if !applier.refused_xattrs.is_empty() {
        let mut keys: Vec<_> = applier.refused_xattrs.into_iter().collect();
        keys.sort();
        let msg = format!(
            "layer {}: dropped xattrs outside the allow-list (security.capability, user.*): {}",
            layer.digest,
            keys.join(", ")
        );
        tracing::warn!("{msg}");
        warnings.push(msg);
    }
    Ok(Applied {
        diff_id,
        uncompressed_bytes: total,
        entries: applier.entries,
        changes: applier.changes,
        warnings,
    })
}

/// A numeric tar header field read as GNU tar and Go's `archive/tar` (containerd) read it:
/// base-256 (two's complement) when the first byte has its high bit set, otherwise octal text
/// with leading and trailing NULs and spaces trimmed and cut at the first NUL left; a field that
/// is empty after trimming (all NULs or spaces, as some image builders write) is 0. The `tar`
/// crate refuses empty fields, hence this reader. Anything else (non-octal text, a base-256
/// value beyond 64 bits, a negative value where the field cannot be negative) is an
/// `InvalidData` error naming the field and its bytes.
fn header_number(field: &[u8], name: &'static str) -> io::Result<i64> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "tar header field {name} {why}: {:?}; the layer is corrupt, rebuild and re-push the image",
                String::from_utf8_lossy(field)
            ),
        )
    };
    let value = if field.first().is_some_and(|b| b & 0x80 != 0) {
        let negative = field[0] & 0x40 != 0;
        let inv = if negative { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let mut c = b ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return Err(bad("overflows 64 bits"));
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 != 0 {
            return Err(bad("overflows 64 bits"));
        }
        // Two's complement: the bits of a negative value were inverted above.
        if negative { !(x as i64) } else { x as i64 }
    } else {
        let is_pad = |b: &u8| *b == 0 || *b == b' ';
        let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
        let end = field
            .iter()
            .rposition(|b| !is_pad(b))
            .map_or(start, |i| i + 1);
        let text = &field[start..end];
        let text = match text.iter().position(|b| *b == 0) {
            Some(i) => &text[..i],
            None => text,
        };
        if text.is_empty() {
            return Ok(0);
        }
        if !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return Err(bad("is not an octal number"));
        }
        let x = u64::from_str_radix(
            std::str::from_utf8(text).map_err(|_| bad("is not text"))?,
            8,
        )
        .map_err(|_| bad("overflows 64 bits"))?;
        i64::try_from(x).map_err(|_| bad("overflows 63 bits"))?
    };
    if value < 0 && name != "mtime" {
        return Err(bad("is negative"));
    }
    Ok(value)
}

struct Times {
    atime: libc::timespec,
    mtime: libc::timespec,
}

impl Times {
    fn pair(&self) -> [libc::timespec; 2] {
        [self.atime, self.mtime]
    }
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Times,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Applier<'a> {
    root: Root,
    layer: &'a Digest,
    limits: &'a Limits,
    opts: ApplyOptions,
    changes: LayerChanges,
    /// Directories whose times are set after all entries (writing children changes mtime).
    dir_times: Vec<(Vec<Vec<u8>>, Times)>,
    /// The last parent directory resolved, reused while consecutive entries share it.
    /// Dropped whenever anything is removed, so a replaced directory is never written through.
    parent_cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
    buf: Vec<u8>,
    warnings: Vec<String>,
    skipped_devices: u64,
    refused_xattrs: HashSet<String>,
    /// Dedupe sets for the recorded changes (linear time however many whiteouts a layer has).
    seen_whiteouts: HashSet<String>,
    seen_opaques: HashSet<String>,
    /// Directories that had their own entry (never treated as implicit parents).
    explicit_dirs: HashSet<String>,
    entries: u64,
}

fn parse_pax_time(v: &[u8]) -> Option<libc::timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        nsec = format!("{digits:0<9}").parse().ok()?;
        if sec < 0 && nsec > 0 {
            return Some(fsops::timespec(sec - 1, 1_000_000_000 - nsec));
        }
    }
    Some(fsops::timespec(sec, nsec))
}

/// xattrs an image may set: file capabilities and the user namespace. `trusted.*` (overlay
/// whiteout state), `security.selinux` (the runtime labels) and `system.*` are refused.
fn xattr_allowed(key: &str) -> bool {
    key == "security.capability" || key.starts_with("user.")
}

impl<'a> Applier<'a> {
    fn entry_err(&self, path: &str, op: &'static str) -> impl FnOnce(io::Error) -> Error + use<'a> {
        let layer = self.layer.clone();
        let path = path.to_string();
        move |source| Error::Entry {
            layer,
            path,
            op,
            source,
        }
    }

    fn breakout(&self, path: &str, reason: impl Into<String>) -> Error {
        Error::Breakout {
            layer: self.layer.clone(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    fn limit(&self, what: &'static str, field: &'static str, limit: u64, path: &str) -> Error {
        Error::Limit {
            layer: self.layer.clone(),
            what,
            field,
            limit,
            path: path.to_string(),
        }
    }

    /// Resolve (creating if needed) the parent directory of an entry, reusing the cached fd.
    fn parent(&mut self, comps: &[&[u8]], raw: &str) -> Result<RawFd> {
        if let Some((p, fd)) = &self.parent_cache
            && p.len() == comps.len()
            && p.iter().zip(comps).all(|(a, b)| a.as_slice() == *b)
        {
            return Ok(fd.as_raw_fd());
        }
        let mut created = Vec::new();
        let r = self.root.create_dir_all(comps, &mut created);
        for c in created {
            if self.explicit_dirs.contains(&c) {
                continue;
            }
            self.changes.implicit_dirs.push(c);
        }
        let fd = match r {
            Ok(fd) => fd,
            Err(e) if fsops::is_escape_any(&e) => {
                return Err(self.breakout(
                    raw,
                    format!("a parent directory resolves outside the snapshot: {e}"),
                ));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                return Err(self.breakout(
                    raw,
                    format!("a parent path is not a directory inside the snapshot: {e}"),
                ));
            }
            Err(e) => return Err(self.entry_err(raw, "resolve parent directory")(e)),
        };
        self.parent_cache = Some((comps.iter().map(|c| c.to_vec()).collect(), fd));
        Ok(self
            .parent_cache
            .as_ref()
            .map(|(_, fd)| fd.as_raw_fd())
            .unwrap_or(-1))
    }

    fn drain<R: Read>(&mut self, entry: &mut R, raw: &str) -> Result<()> {
        loop {
            match entry.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Archive {
                        layer: self.layer.clone(),
                        path: raw.to_string(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Remove whatever is at `name` (unless `keep_dir` and it is a directory). Returns true
    /// when a directory is present and kept.
    fn clear_slot(
        &mut self,
        pfd: RawFd,
        name: &CString,
        keep_dir: bool,
        raw: &str,
    ) -> Result<bool> {
        let st = fsops::lstat_at(pfd, name).map_err(self.entry_err(raw, "lstat"))?;
        let Some(st) = st else { return Ok(false) };
        if keep_dir && fsops::is_dir(&st) {
            return Ok(true);
        }
        // Removing may replace a directory some cached fd points into.
        let keep = self.parent_cache.take();
        fsops::remove_all_at(pfd, name).map_err(self.entry_err(raw, "remove existing entry"))?;
        if let Some((p, fd)) = keep
            && fd.as_raw_fd() == pfd
        {
            // The parent itself was not removed (we removed a child of it); keep it cached.
            self.parent_cache = Some((p, fd));
        }
        Ok(false)
    }

    fn read_meta<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &str) -> Result<Meta> {
        let h = entry.header();
        let aerr = |e: io::Error| Error::Archive {
            layer: self.layer.clone(),
            path: raw.to_string(),
            source: e,
        };
        let old = h.as_old();
        let mode = (header_number(&old.mode, "mode").map_err(aerr)? & 0o7777) as u32;
        let uid = header_number(&old.uid, "uid").map_err(aerr)?;
        let gid = header_number(&old.gid, "gid").map_err(aerr)?;
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(Error::Unsupported {
                layer: self.layer.clone(),
                path: raw.to_string(),
                reason: format!("uid {uid} or gid {gid} does not fit in 32 bits"),
            });
        };
        let mtime = header_number(&old.mtime, "mtime").map_err(aerr)?;
        let mut mtime = fsops::timespec(mtime, 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(aerr)? {
            for ext in pax {
                let ext = ext.map_err(aerr)?;
                let Ok(key) = ext.key() else { continue };
                match key {
                    "mtime" => {
                        if let Some(t) = parse_pax_time(ext.value_bytes()) {
                            mtime = t;
                        }
                    }
                    "atime" => atime = parse_pax_time(ext.value_bytes()),
                    k if k.starts_with("SCHILY.xattr.") => {
                        let name = &k["SCHILY.xattr.".len()..];
                        if xattr_allowed(name) {
                            xattrs.push((
                                cstr(name.as_bytes()).map_err(aerr)?,
                                ext.value_bytes().to_vec(),
                            ));
                        } else {
                            self.refused_xattrs.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            times: Times {
                atime: atime.unwrap_or(mtime),
                mtime,
            },
            xattrs,
        })
    }

    fn set_xattrs_fd(&mut self, fd: RawFd, meta: &Meta, raw: &str) -> Result<()> {
        for (k, v) in &meta.xattrs {
            if let Err(e) = fsops::fsetxattr(fd, k, v) {
                self.xattr_failed(e, k, raw)?;
            }
        }
        Ok(())
    }

    fn xattr_failed(&mut self, e: io::Error, key: &CString, raw: &str) -> Result<()> {
        // As containerd: unsupported xattrs (ENOTSUP) and user.* on special files (EPERM) are
        // skipped with a warning; anything else fails the layer.
        match e.raw_os_error() {
            Some(libc::ENOTSUP) | Some(libc::EPERM) => {
                let msg = format!(
                    "layer {}: entry {raw:?}: xattr {} not applied: {e}",
                    self.layer,
                    key.to_string_lossy()
                );
                tracing::warn!("{msg}");
                self.warnings.push(msg);
                Ok(())
            }
            _ => Err(self.entry_err(raw, "set xattr")(e)),
        }
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let path_bytes = entry.path_bytes().into_owned();
        let raw = String::from_utf8_lossy(&path_bytes).into_owned();
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.limit("entry count", "max_entries", self.limits.max_entries, &raw));
        }
        if path_bytes.len() > self.limits.max_path_len {
            return Err(self.limit(
                "entry path length",
                "max_path_len",
                self.limits.max_path_len as u64,
                &raw,
            ));
        }
        let kind = entry.header().entry_type();
        let path = match clean(&path_bytes, self.limits) {
            Clean::Ok(p) => p,
            Clean::Escapes => {
                return Err(self.breakout(&raw, "the name climbs above the root with \"..\""));
            }
            Clean::Invalid(reason) => {
                return Err(Error::InvalidName {
                    layer: self.layer.clone(),
                    path: raw,
                    reason: reason.to_string(),
                });
            }
        };
        match kind {
            EntryType::XGlobalHeader => return self.drain(entry, &raw),
            EntryType::GNUSparse => {
                return Err(Error::Unsupported {
                    layer: self.layer.clone(),
                    path: raw,
                    reason:
                        "sparse entries not supported (image-spec: sparse files SHOULD NOT be used)"
                            .into(),
                });
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Link
            | EntryType::Symlink
            | EntryType::Char
            | EntryType::Block
            | EntryType::Directory
            | EntryType::Fifo => {}
            other => {
                return Err(Error::Unsupported {
                    layer: self.layer.clone(),
                    path: raw,
                    reason: format!("unsupported tar entry type {:?}", other.as_byte() as char),
                });
            }
        }
        let Some(name) = path.name().map(|n| n.to_vec()) else {
            // The root itself ("./" or "/"): only a directory may describe it.
            if kind != EntryType::Directory {
                return Err(self.breakout(&raw, "a non-directory entry names the snapshot root"));
            }
            let meta = self.read_meta(entry, &raw)?;
            self.drain(entry, &raw)?;
            let fd = fsops::dup(self.root.fd()).map_err(self.entry_err(&raw, "open root"))?;
            self.finish_dir_meta(fd, &meta, Vec::new(), &raw)?;
            return Ok(());
        };
        let name_str = String::from_utf8_lossy(&name).into_owned();
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            self.drain(entry, &raw)?;
            return self.whiteout(&path, target, &raw);
        }
        let parent_comps = path.parent();
        let owned_parent: Vec<Vec<u8>> = parent_comps.iter().map(|c| c.to_vec()).collect();
        let parent_refs: Vec<&[u8]> = owned_parent.iter().map(|c| c.as_slice()).collect();
        let pfd = self.parent(&parent_refs, &raw)?;
        let cname = cstr(&name).map_err(self.entry_err(&raw, "name"))?;
        match kind {
            EntryType::Directory => {
                let meta = self.read_meta(entry, &raw)?;
                self.drain(entry, &raw)?;
                let kept = self.clear_slot(pfd, &cname, true, &raw)?;
                if !kept {
                    fsops::mkdirat(pfd, &cname, 0o700).map_err(self.entry_err(&raw, "mkdir"))?;
                }
                let fd = fsops::open_dir_nofollow(pfd, &cname)
                    .map_err(self.entry_err(&raw, "open directory"))?;
                let rel = path.joined();
                self.explicit_dirs.insert(rel.clone());
                if !kept && self.seen_whiteouts.contains(&rel) {
                    // Whited out and recreated in the same layer: the new directory replaces the
                    // lower one instead of merging with it (what overlayfs does for a directory
                    // created over a whiteout).
                    self.mark_opaque(fd.as_raw_fd(), rel, &raw)?;
                }
                self.finish_dir_meta(fd, &meta, path.components.clone(), &raw)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let meta = self.read_meta(entry, &raw)?;
                self.clear_slot(pfd, &cname, false, &raw)?;
                let fd = fsops::openat(
                    pfd,
                    &cname,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(self.entry_err(&raw, "create file"))?;
                let mut file = File::from(fd);
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(Error::Archive {
                                layer: self.layer.clone(),
                                path: raw,
                                source: e,
                            });
                        }
                    };
                    file.write_all(&self.buf[..n])
                        .map_err(self.entry_err(&raw, "write file"))?;
                }
                let fd = file.as_raw_fd();
                // chown before chmod: chown clears setuid/setgid bits.
                if self.opts.ownership {
                    fsops::fchown(fd, meta.uid, meta.gid).map_err(self.entry_err(&raw, "chown"))?;
                }
                fsops::fchmod(fd, meta.mode).map_err(self.entry_err(&raw, "chmod"))?;
                self.set_xattrs_fd(fd, &meta, &raw)?;
                fsops::futimens(fd, &meta.times.pair())
                    .map_err(self.entry_err(&raw, "set times"))?;
            }
            EntryType::Symlink => {
                let meta = self.read_meta(entry, &raw)?;
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.drain(entry, &raw)?;
                if target.len() > self.limits.max_path_len {
                    return Err(self.limit(
                        "symlink target length",
                        "max_path_len",
                        self.limits.max_path_len as u64,
                        &raw,
                    ));
                }
                self.clear_slot(pfd, &cname, false, &raw)?;
                let ctarget = cstr(&target).map_err(self.entry_err(&raw, "symlink target"))?;
                fsops::symlinkat(&ctarget, pfd, &cname).map_err(self.entry_err(&raw, "symlink"))?;
                if self.opts.ownership {
                    fsops::lchown_at(pfd, &cname, meta.uid, meta.gid)
                        .map_err(self.entry_err(&raw, "lchown"))?;
                }
                for (k, v) in &meta.xattrs {
                    if let Err(e) = fsops::lsetxattr_at(pfd, &cname, k, v) {
                        self.xattr_failed(e, k, &raw)?;
                    }
                }
                fsops::lutimens_at(pfd, &cname, &meta.times.pair())
                    .map_err(self.entry_err(&raw, "set times"))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.drain(entry, &raw)?;
                self.hardlink(pfd, &cname, &path, &target, &raw)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let meta = self.read_meta(entry, &raw)?;
                let h = entry.header();
                // Version 7 headers have no device fields: 0/0, as Go's archive/tar reads them.
                let dev_fields = match (h.as_ustar(), h.as_gnu()) {
                    (Some(u), _) => Some((u.dev_major, u.dev_minor)),
                    (None, Some(g)) => Some((g.dev_major, g.dev_minor)),
                    (None, None) => None,
                };
                let (major, minor) = match dev_fields {
                    Some((ma, mi)) => {
                        let num = |f: &[u8], name| {
                            header_number(f, name)
                                .and_then(|v| {
                                    u32::try_from(v).map_err(|_| {
                                        io::Error::new(
                                            io::ErrorKind::InvalidData,
                                            format!("tar header field {name} {v} does not fit in 32 bits"),
                                        )
                                    })
                                })
                                .map_err(|e| Error::Archive {
                                    layer: self.layer.clone(),
                                    path: raw.clone(),
                                    source: e,
                                })
                        };
                        (num(&ma, "devmajor")?, num(&mi, "devminor")?)
                    }
                    None => (0, 0),
                };
                self.drain(entry, &raw)?;
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                if fmt != libc::S_IFIFO && !self.opts.devices {
                    self.skipped_devices += 1;
                    return Ok(());
                }
                if fmt == libc::S_IFCHR && major == 0 && minor == 0 {
                    return Err(Error::Unsupported {
                        layer: self.layer.clone(),
                        path: raw,
                        reason: "character device 0/0 is an overlay whiteout and cannot be image content; use a .wh. entry".into(),
                    });
                }
                self.clear_slot(pfd, &cname, false, &raw)?;
                let dev = libc::makedev(major, minor);
                fsops::mknodat(pfd, &cname, fmt | (meta.mode & 0o777), dev)
                    .map_err(self.entry_err(&raw, "mknod"))?;
                if self.opts.ownership {
                    fsops::lchown_at(pfd, &cname, meta.uid, meta.gid)
                        .map_err(self.entry_err(&raw, "lchown"))?;
                }
                fsops::chmod_node_at(pfd, &cname, meta.mode)
                    .map_err(self.entry_err(&raw, "chmod"))?;
                fsops::lutimens_at(pfd, &cname, &meta.times.pair())
                    .map_err(self.entry_err(&raw, "set times"))?;
            }
            _ => unreachable!("entry types filtered above"),
        }
        Ok(())
    }

    fn finish_dir_meta(
        &mut self,
        fd: OwnedFd,
        meta: &Meta,
        comps: Vec<Vec<u8>>,
        raw: &str,
    ) -> Result<()> {
        let fd = fd.as_raw_fd();
        if self.opts.ownership {
            fsops::fchown(fd, meta.uid, meta.gid).map_err(self.entry_err(raw, "chown"))?;
        }
        fsops::fchmod(fd, meta.mode).map_err(self.entry_err(raw, "chmod"))?;
        self.set_xattrs_fd(fd, meta, raw)?;
        self.dir_times.push((
            comps,
            Times {
                atime: meta.times.atime,
                mtime: meta.times.mtime,
            },
        ));
        Ok(())
    }

    fn hardlink(
        &mut self,
        pfd: RawFd,
        cname: &CString,
        path: &EntryPath,
        target: &[u8],
        raw: &str,
    ) -> Result<()> {
        let target_str = String::from_utf8_lossy(target).into_owned();
        let bad = |reason: &str| Error::InvalidHardlink {
            layer: self.layer.clone(),
            path: raw.to_string(),
            target: target_str.clone(),
            reason: reason.to_string(),
        };
        if target.len() > self.limits.max_path_len {
            return Err(bad("target longer than Limits::max_path_len"));
        }
        let tpath = match clean(target, self.limits) {
            Clean::Ok(p) => p,
            Clean::Escapes => return Err(bad("target climbs above the root with \"..\"")),
            Clean::Invalid(r) => return Err(bad(r)),
        };
        let Some(tname) = tpath.name() else {
            return Err(bad("target is the root directory"));
        };
        if tpath.components == path.components {
            return Err(bad("target is the entry itself"));
        }
        let tname = cstr(tname).map_err(self.entry_err(raw, "hardlink target"))?;
        let tfd = match self.root.open_dir(&tpath.parent()) {
            Ok(fd) => Some(fd),
            Err(e) if fsops::is_escape_any(&e) => {
                return Err(bad(
                    "target resolves outside the snapshot through a symlink",
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                return Err(bad(
                    "a parent of the target is not a directory inside the snapshot",
                ));
            }
            Err(e) => return Err(self.entry_err(raw, "resolve hardlink target")(e)),
        };
        let tst = match &tfd {
            Some(fd) => fsops::lstat_at(fd.as_raw_fd(), &tname)
                .map_err(self.entry_err(raw, "lstat hardlink target"))?,
            None => None,
        };
        let Some(tst) = tst else {
            // Not in this layer: a link into a lower layer. overlayfs (and so containerd, which
            // applies layers on an overlay mount) copies the target up and links the copy; the
            // snapshotter does the same once the lower layers are complete.
            self.clear_slot(pfd, cname, false, raw)?;
            self.changes
                .lower_links
                .push((path.joined(), tpath.joined()));
            return Ok(());
        };
        if fsops::is_dir(&tst) {
            return Err(bad("target is a directory"));
        }
        if let Some(st) = fsops::lstat_at(pfd, cname).map_err(self.entry_err(raw, "lstat"))?
            && st.st_ino == tst.st_ino
            && st.st_dev == tst.st_dev
        {
            return Ok(());
        }
        self.clear_slot(pfd, cname, false, raw)?;
        let tfd = tfd.expect("target stat implies its directory");
        fsops::linkat(tfd.as_raw_fd(), &tname, pfd, cname).map_err(self.entry_err(raw, "link"))?;
        Ok(())
    }

    fn whiteout(&mut self, path: &EntryPath, target: &str, raw: &str) -> Result<()> {
        let invalid = |reason: &str| Error::InvalidWhiteout {
            layer: self.layer.clone(),
            path: raw.to_string(),
            reason: reason.to_string(),
        };
        let parent = path.parent();
        let owned_parent: Vec<Vec<u8>> = parent.iter().map(|c| c.to_vec()).collect();
        let parent_refs: Vec<&[u8]> = owned_parent.iter().map(|c| c.as_slice()).collect();
        let parent_str = String::from_utf8_lossy(&owned_parent.join(&b'/')).into_owned();
        if format!("{WHITEOUT_PREFIX}{target}") == OPAQUE_MARKER {
            let pfd = self.parent(&parent_refs, raw)?;
            return self.mark_opaque(pfd, parent_str, raw);
        }
        if target.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are aufs metadata (e.g. `.wh..wh.plnk`); skipped as
            // containerd does.
            return Ok(());
        }
        match target {
            "" => {
                return Err(invalid(
                    "\".wh.\" names nothing (image-spec: bare whiteouts are invalid)",
                ));
            }
            "." | ".." => return Err(invalid("the whiteout target escapes its directory")),
            _ => {}
        }
        let pfd = self.parent(&parent_refs, raw)?;
        let cname = cstr(target.as_bytes()).map_err(self.entry_err(raw, "whiteout name"))?;
        let rel = if parent_str.is_empty() {
            target.to_string()
        } else {
            format!("{parent_str}/{target}")
        };
        let existing = fsops::lstat_at(pfd, &cname).map_err(self.entry_err(raw, "lstat"))?;
        if existing.is_none() && self.opts.overlay_markers {
            fsops::mknodat(pfd, &cname, libc::S_IFCHR, libc::makedev(0, 0))
                .map_err(self.entry_err(raw, "create overlay whiteout"))?;
        }
        // A whiteout only hides lower layers; an entry of this layer with that name stays.
        if self.seen_whiteouts.insert(rel.clone()) {
            self.changes.whiteouts.push(rel);
        }
        Ok(())
    }

    fn mark_opaque(&mut self, dirfd: RawFd, rel: String, raw: &str) -> Result<()> {
        if self.opts.overlay_markers {
            let key =
                cstr(OVERLAY_OPAQUE_XATTR.as_bytes()).map_err(self.entry_err(raw, "xattr"))?;
            fsops::fsetxattr(dirfd, &key, b"y")
                .map_err(self.entry_err(raw, "mark directory opaque"))?;
        }
        if self.seen_opaques.insert(rel.clone()) {
            self.changes.opaques.push(rel);
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        self.parent_cache = None;
        let explicit = &self.explicit_dirs;
        self.changes.implicit_dirs.retain(|d| !explicit.contains(d));
        let dirs = std::mem::take(&mut self.dir_times);
        for (comps, times) in dirs.iter().rev() {
            let refs: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
            let raw = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            // The directory may have been replaced by a later entry; then its times are gone too.
            let fd = match self.root.open_dir(&refs) {
                Ok(fd) => fd,
                Err(_) => continue,
            };
            fsops::futimens(fd.as_raw_fd(), &times.pair())
                .map_err(self.entry_err(&raw, "set directory times"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_reroots_absolute_and_refuses_climbing() {
        let l = Limits::default();
        assert!(matches!(clean(b"/etc/passwd", &l), Clean::Ok(p) if p.joined() == "etc/passwd"));
        assert!(matches!(clean(b"./a//b/./c/", &l), Clean::Ok(p) if p.joined() == "a/b/c"));
        assert!(matches!(clean(b"a/../b", &l), Clean::Ok(p) if p.joined() == "b"));
        assert!(matches!(clean(b"../x", &l), Clean::Escapes));
        assert!(matches!(clean(b"/../victim/x", &l), Clean::Escapes));
        assert!(matches!(clean(b"a/../../x", &l), Clean::Escapes));
        assert!(matches!(clean(&[b'a'; 256], &l), Clean::Invalid(_)));
    }

    #[test]
    fn empty_numeric_fields_read_as_zero_and_garbage_is_refused() {
        // Cases checked against Go's archive/tar parseNumeric/parseOctal.
        let ok: &[(&[u8], &str, i64)] = &[
            (&[0; 8], "uid", 0),
            (b"        ", "gid", 0),
            (b" \0 \0\0\0 \0", "gid", 0),
            (b"0000644\0", "mode", 0o644),
            (b" 644  \0", "mode", 0o644),
            (b"\x00\x00\x00644\x00", "mode", 0o644),
            (b"0001750 ", "uid", 0o1750),
            (b"12\x0034\0\0\0", "uid", 0o12),
            (b"00000000000\0", "mtime", 0),
            (&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00], "uid", 256),
            (&[0xff; 12], "mtime", -1),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
                "mtime",
                -2,
            ),
        ];
        for (field, name, want) in ok {
            assert_eq!(
                header_number(field, name).unwrap(),
                *want,
                "{name} {:?}",
                String::from_utf8_lossy(field)
            );
        }
        let bad: &[(&[u8], &str, &str)] = &[
            (b"abcdefg\0", "uid", "not an octal number"),
            (b"0000 644", "mode", "not an octal number"),
            (b"00000009", "gid", "not an octal number"),
            (b"+0000644", "mode", "not an octal number"),
            (&[0xff; 8], "uid", "negative"),
            (
                &[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "mtime",
                "overflows",
            ),
        ];
        for (field, name, why) in bad {
            let e = header_number(field, name).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(why), "{e}");
        }
    }

    #[test]
    fn pax_times_parse_fractions_and_negatives() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time(b"x").is_none());
    }

    #[test]
    fn xattr_allow_list_refuses_overlay_and_selinux() {
        assert!(xattr_allowed("security.capability"));
        assert!(xattr_allowed("user.foo"));
        assert!(!xattr_allowed("trusted.overlay.opaque"));
        assert!(!xattr_allowed("security.selinux"));
        assert!(!xattr_allowed("system.posix_acl_access"));
    }
}
