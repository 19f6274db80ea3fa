//! Test fixtures built in code: raw tar archives (names written straight into the header so
//! malicious paths survive), compression, a content store with committed layers, and tree
//! snapshots used to prove that nothing outside a snapshot changed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci::media_type::{self, Compression};
use oci::{Descriptor, Digest, ImageConfig};

/// One tar entry; names and link names are written raw.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
}

pub fn raw_header(
    kind: tar::EntryType,
    name: &str,
    link: &str,
    size: u64,
    mode: u32,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    let old = h.as_old_mut();
    assert!(
        name.len() < 100 && link.len() < 100,
        "fixture names must fit the header"
    );
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname = [0; 100];
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    h
}

pub fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        append(&mut b, e);
    }
    b.into_inner().unwrap()
}

pub fn append(b: &mut tar::Builder<Vec<u8>>, e: &E<'_>) {
    use tar::EntryType as T;
    match *e {
        E::Dir(n, m) => b
            .append(&raw_header(T::Directory, n, "", 0, m), &[][..])
            .unwrap(),
        E::File(n, d, m) => b
            .append(&raw_header(T::Regular, n, "", d.len() as u64, m), d)
            .unwrap(),
        E::Symlink(n, t) => b
            .append(&raw_header(T::Symlink, n, t, 0, 0o777), &[][..])
            .unwrap(),
        E::Hardlink(n, t) => b
            .append(&raw_header(T::Link, n, t, 0, 0o644), &[][..])
            .unwrap(),
        E::Char(n, maj, min) => {
            let mut h = raw_header(T::Char, n, "", 0, 0o666);
            h.set_device_major(maj).unwrap();
            h.set_device_minor(min).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap()
        }
        E::Fifo(n) => b
            .append(&raw_header(T::Fifo, n, "", 0, 0o644), &[][..])
            .unwrap(),
    }
}

pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 1).unwrap(),
    }
}

pub fn media_type_of(c: Compression) -> &'static str {
    match c {
        Compression::None => media_type::OCI_LAYER_TAR,
        Compression::Gzip => media_type::OCI_LAYER_TAR_GZIP,
        Compression::Zstd => media_type::OCI_LAYER_TAR_ZSTD,
    }
}

/// Apply `tar` (compressed with `c`) into `dest` with correct digests.
pub fn apply(
    tar: &[u8],
    c: Compression,
    dest: &Path,
    limits: &unpack::Limits,
) -> unpack::Result<unpack::Applied> {
    let blob = compress(tar, c);
    let digest = Digest::sha256(&blob);
    let diff_id = Digest::sha256(tar);
    let spec = unpack::LayerSpec {
        digest: &digest,
        compression: c,
        diff_id: &diff_id,
    };
    unpack::apply_layer(
        &blob[..],
        &spec,
        dest,
        limits,
        unpack::ApplyOptions::for_current_process(),
    )
}

/// Commit `blob` to the store and return its descriptor.
pub fn commit(store: &content::Store, media_type: &str, blob: &[u8]) -> Descriptor {
    let desc = Descriptor::new(media_type, Digest::sha256(blob), blob.len() as u64);
    match store.acquire("test", &desc, None).unwrap() {
        content::Acquired::Writer(mut w) => {
            w.write_all(blob).unwrap();
            w.commit().unwrap();
        }
        content::Acquired::Exists(_) => {}
    }
    desc
}

pub fn config_for(diff_ids: &[Digest]) -> ImageConfig {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    let json = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    );
    oci::parse_config(json.as_bytes()).unwrap()
}

/// Commit layers (tar bytes, compression) and return (config, descriptors).
pub fn image(
    store: &content::Store,
    layers: &[(Vec<u8>, Compression)],
) -> (ImageConfig, Vec<Descriptor>) {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, c) in layers {
        descs.push(commit(store, media_type_of(*c), &compress(tar, *c)));
        diff_ids.push(Digest::sha256(tar));
    }
    (config_for(&diff_ids), descs)
}

/// A comparable description of a tree: path -> (kind, mode, uid, gid, size, content or
/// link target, rdev). Never follows symlinks.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, false);
    out
}

/// Like [`tree`] but with mtimes (for unchanged-canary checks).
pub fn tree_with_times(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, true);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, times: bool) {
    let mut ents: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!("link:{}", fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_file() {
            format!("file:{}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
        } else {
            format!("node:{:x}", m.rdev())
        };
        let mut desc = format!("{what} mode={:o} uid={} gid={}", m.mode(), m.uid(), m.gid());
        if times && !ft.is_dir() {
            desc.push_str(&format!(" mtime={}", m.mtime()));
        }
        out.insert(rel, desc);
        if ft.is_dir() {
            walk(root, &p, out, times);
        }
    }
}
