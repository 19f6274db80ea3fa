//! OCI and Docker images built in code for registry tests: layer tars from declarative entries (files with
//! mode/uid/gid/mtime/xattrs, dirs, symlinks, hardlinks, whiteouts, device nodes, fifos, setuid bits, and
//! hostile names such as `../x` written verbatim), compressed as tar, tar+gzip or tar+zstd; image config
//! with diff_ids; manifests (OCI or Docker media types); multi-platform indexes; OCI layout directories; and
//! pushes with the real `skopeo` (credentials only in a 0600 auth file, never on argv) or raw HTTP for
//! documents skopeo refuses. Tar headers are written by hand on top of `tar::Header` because the `tar`
//! builder refuses the hostile paths unpack tests need. It must never unpack anything or contact any
//! registry other than the fixture it is given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::pki::write_file;
use crate::registry::{Registry, error_chain};
use crate::secret::Secret;

/// OCI manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Which family of media types an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `application/vnd.oci.*`.
    #[default]
    Oci,
    /// `application/vnd.docker.*` (schema 2).
    Docker,
}

/// Layer compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    #[default]
    Gzip,
    /// zstd (OCI media type only; Docker has none).
    Zstd,
}

impl Compression {
    fn media_type(self, format: Format) -> Result<&'static str> {
        Ok(match (format, self) {
            (Format::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Format::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Format::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Format::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (Format::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (Format::Docker, Compression::Zstd) => {
                return Err(Error::Image(
                    "docker schema 2 has no zstd layer media type; use Format::Oci for zstd layers"
                        .into(),
                ));
            }
        })
    }

    fn compress(self, tar: &[u8]) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| Error::Image(format!("compressing layer: {e}"));
        Ok(match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(tar).map_err(io)?;
                enc.finish().map_err(io)?
            }
            Compression::Zstd => zstd::encode_all(tar, 3).map_err(io)?,
        })
    }
}

/// What a tar entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file with content.
    File(Vec<u8>),
    /// Directory.
    Dir,
    /// Symbolic link to a target (written verbatim).
    Symlink(String),
    /// Hard link to another path of the archive (written verbatim).
    Hardlink(String),
    /// Character device node.
    CharDevice { major: u32, minor: u32 },
    /// Block device node.
    BlockDevice { major: u32, minor: u32 },
    /// Named pipe.
    Fifo,
}

/// One tar entry. The path is written exactly as given (no normalisation), so hostile names are possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    /// Kind and payload.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Modification time (Unix seconds).
    pub mtime: u64,
    /// Extended attributes, written as PAX `SCHILY.xattr.*` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Default mtime of entries: a fixed instant so builds are reproducible.
pub const DEFAULT_MTIME: u64 = 1_700_000_000;

impl Entry {
    fn new(path: impl Into<String>, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            xattrs: Vec::new(),
        }
    }

    /// A regular file, mode 0644.
    pub fn file(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Entry {
        Entry::new(path, EntryKind::File(content.into()), 0o644)
    }

    /// A directory, mode 0755.
    pub fn dir(path: impl Into<String>) -> Entry {
        Entry::new(path, EntryKind::Dir, 0o755)
    }

    /// A symlink, mode 0777.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Entry {
        Entry::new(path, EntryKind::Symlink(target.into()), 0o777)
    }

    /// A hard link to `target`, mode 0644.
    pub fn hardlink(path: impl Into<String>, target: impl Into<String>) -> Entry {
        Entry::new(path, EntryKind::Hardlink(target.into()), 0o644)
    }

    /// The whiteout that deletes `path` from lower layers: an empty file `dir/.wh.<name>`.
    pub fn whiteout(path: &str) -> Entry {
        let (dir, name) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n.to_string()),
            None => (String::new(), path.trim_end_matches('/').to_string()),
        };
        Entry::new(
            format!("{dir}.wh.{name}"),
            EntryKind::File(Vec::new()),
            0o644,
        )
    }

    /// The opaque-directory marker `dir/.wh..wh..opq`: hides everything lower layers had in `dir`.
    pub fn opaque(dir: &str) -> Entry {
        let dir = dir.trim_end_matches('/');
        Entry::new(
            format!("{dir}/.wh..wh..opq"),
            EntryKind::File(Vec::new()),
            0o644,
        )
    }

    /// A character device node, mode 0666.
    pub fn char_device(path: impl Into<String>, major: u32, minor: u32) -> Entry {
        Entry::new(path, EntryKind::CharDevice { major, minor }, 0o666)
    }

    /// A block device node, mode 0660.
    pub fn block_device(path: impl Into<String>, major: u32, minor: u32) -> Entry {
        Entry::new(path, EntryKind::BlockDevice { major, minor }, 0o660)
    }

    /// A fifo, mode 0644.
    pub fn fifo(path: impl Into<String>) -> Entry {
        Entry::new(path, EntryKind::Fifo, 0o644)
    }

    /// Sets the permission bits (e.g. `0o4755` for setuid).
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets the modification time.
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }

    /// Adds an extended attribute.
    pub fn xattr(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Entry {
        self.xattrs.push((name.into(), value.into()));
        self
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n" where <len> counts the whole record including its own digits
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    if (base + len.to_string().len()) != len {
        len = base + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn set_field(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// The host's statically linked busybox (`apt-get install busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// A minimal runnable root filesystem for container tests: `/bin/busybox` copied from the host with a symlink per
/// applet in `applets`, `/etc/passwd` and `/etc/group` with root, and a sticky `/tmp`. Panics with the install
/// command when busybox-static is missing, so a test never skips silently.
pub fn busybox_rootfs(applets: &[&str]) -> Vec<Entry> {
    let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e}; install it with `apt-get install -y busybox-static`")
    });
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::dir("etc"),
        Entry::dir("tmp").mode(0o1777),
        Entry::file("bin/busybox", busybox).mode(0o755),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        Entry::file("etc/group", "root:x:0:\n"),
    ];
    entries.extend(
        applets
            .iter()
            .map(|a| Entry::symlink(format!("bin/{a}"), "busybox")),
    );
    entries
}

/// Serialises entries to an uncompressed tar archive, byte for byte as described.
pub fn build_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::Image(format!("writing tar: {e}"));
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (etype, size, link): (tar::EntryType, u64, Option<&str>) = match &e.kind {
            EntryKind::File(c) => (tar::EntryType::Regular, c.len() as u64, None),
            EntryKind::Dir => (tar::EntryType::Directory, 0, None),
            EntryKind::Symlink(t) => (tar::EntryType::Symlink, 0, Some(t)),
            EntryKind::Hardlink(t) => (tar::EntryType::Link, 0, Some(t)),
            EntryKind::CharDevice { .. } => (tar::EntryType::Char, 0, None),
            EntryKind::BlockDevice { .. } => (tar::EntryType::Block, 0, None),
            EntryKind::Fifo => (tar::EntryType::Fifo, 0, None),
        };
        let mut pax = Vec::new();
        if e.path.len() > 100 {
            pax.extend(pax_record("path", e.path.as_bytes()));
        }
        if let Some(l) = link.filter(|l| l.len() > 100) {
            pax.extend(pax_record("linkpath", l.as_bytes()));
        }
        for (k, v) in &e.xattrs {
            pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
        }
        if !pax.is_empty() {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(e.mtime);
            let short: String = e.path.chars().filter(|c| *c != '/').take(80).collect();
            set_field(
                &mut h.as_ustar_mut().expect("ustar").name,
                format!("PaxHeaders/{short}").as_bytes(),
            );
            h.set_cksum();
            b.append(&h, pax.as_slice()).map_err(io)?;
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(etype);
        h.set_size(size);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        if let EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } =
            e.kind
        {
            h.set_device_major(major).map_err(io)?;
            h.set_device_minor(minor).map_err(io)?;
        }
        {
            let u = h.as_ustar_mut().expect("ustar");
            set_field(&mut u.name, e.path.as_bytes());
            if let Some(l) = link {
                set_field(&mut u.linkname, l.as_bytes());
            }
        }
        h.set_cksum();
        let data: &[u8] = match &e.kind {
            EntryKind::File(c) => c,
            _ => &[],
        };
        b.append(&h, data).map_err(io)?;
    }
    b.into_inner().map_err(io)
}

/// A content descriptor as it appears in manifests and indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    fn of(media_type: &str, data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(data),
            size: data.len() as u64,
            platform: None,
            annotations: None,
        }
    }
}

/// An image platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOOS value.
    pub os: String,
    /// GOARCH value.
    pub architecture: String,
    /// CPU variant (`v7`, `v8`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from os/arch and optional variant.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// linux/amd64.
    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }
}

/// A built layer blob.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    /// Descriptor of the (compressed) blob.
    pub descriptor: Descriptor,
    /// `sha256` of the uncompressed tar.
    pub diff_id: String,
    /// The blob bytes.
    pub data: Bytes,
    /// The uncompressed tar.
    pub tar: Bytes,
}

impl LayerBlob {
    /// A layer from entries.
    pub fn from_entries(
        entries: &[Entry],
        compression: Compression,
        format: Format,
    ) -> Result<LayerBlob> {
        Self::from_tar(build_tar(entries)?, compression, format)
    }

    /// A layer from a hand-made tar (for archives the entry model cannot express).
    pub fn from_tar(tar: Vec<u8>, compression: Compression, format: Format) -> Result<LayerBlob> {
        let data = compression.compress(&tar)?;
        Ok(LayerBlob {
            descriptor: Descriptor::of(compression.media_type(format)?, &data),
            diff_id: sha256_digest(&tar),
            data: Bytes::from(data),
            tar: Bytes::from(tar),
        })
    }
}

/// Builder of a single-platform image.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    format: Format,
    platform: Platform,
    layers: Vec<(Vec<Entry>, Compression)>,
    raw_layers: Vec<(usize, Vec<u8>, Compression)>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    annotations: BTreeMap<String, String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder {
            format: Format::Oci,
            platform: Platform::linux_amd64(),
            layers: Vec::new(),
            raw_layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: None,
            user: None,
            annotations: BTreeMap::new(),
        }
    }
}

impl ImageBuilder {
    /// An OCI linux/amd64 image with no layers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Media-type family.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Platform written to the config (and to index entries).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Appends a layer from entries.
    pub fn layer(mut self, entries: Vec<Entry>, compression: Compression) -> Self {
        self.layers.push((entries, compression));
        self
    }

    /// Appends a layer from a hand-made tar.
    pub fn raw_layer(mut self, tar: Vec<u8>, compression: Compression) -> Self {
        let pos = self.layers.len() + self.raw_layers.len();
        self.raw_layers.push((pos, tar, compression));
        self
    }

    /// `config.Entrypoint`.
    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// `config.Cmd`.
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a `config.Env` entry (`KEY=value`).
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// `config.WorkingDir`.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// `config.User`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Adds a manifest annotation (OCI only).
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Builds layers, config and manifest.
    pub fn build(self) -> Result<Image> {
        let total = self.layers.len() + self.raw_layers.len();
        let mut entries_iter = self.layers.into_iter();
        let mut raw_iter = self.raw_layers.into_iter().peekable();
        let mut layers = Vec::with_capacity(total);
        for pos in 0..total {
            if raw_iter.peek().is_some_and(|(p, _, _)| *p == pos) {
                let (_, tar, c) = raw_iter.next().expect("peeked");
                layers.push(LayerBlob::from_tar(tar, c, self.format)?);
            } else {
                let (entries, c) = entries_iter.next().expect("layer count");
                layers.push(LayerBlob::from_entries(&entries, c, self.format)?);
            }
        }
        let mut cfg = serde_json::Map::new();
        cfg.insert("Env".into(), json!(self.env));
        if let Some(e) = &self.entrypoint {
            cfg.insert("Entrypoint".into(), json!(e));
        }
        if let Some(c) = &self.cmd {
            cfg.insert("Cmd".into(), json!(c));
        }
        if let Some(w) = &self.working_dir {
            cfg.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &self.user {
            cfg.insert("User".into(), json!(u));
        }
        let mut config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": layers.iter().map(|_| json!({"created": "2023-11-14T22:13:20Z", "created_by": "testkit"})).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.platform.variant {
            config["variant"] = json!(v);
        }
        let config = Bytes::from(serde_json::to_vec(&config).expect("config serializes"));
        let (manifest_mt, config_mt) = match self.format {
            Format::Oci => (OCI_MANIFEST, OCI_CONFIG),
            Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
        };
        let config_descriptor = Descriptor::of(config_mt, &config);
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_mt,
            "config": config_descriptor,
            "layers": layers.iter().map(|l| l.descriptor.clone()).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            if self.format == Format::Docker {
                return Err(Error::Image(
                    "annotations need Format::Oci (docker schema 2 has none)".into(),
                ));
            }
            manifest["annotations"] = json!(self.annotations);
        }
        let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("manifest serializes"));
        Ok(Image {
            format: self.format,
            platform: self.platform,
            descriptor: Descriptor::of(manifest_mt, &manifest),
            manifest,
            config,
            config_descriptor,
            layers,
        })
    }
}

/// A built single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Media-type family.
    pub format: Format,
    /// Platform (from the config).
    pub platform: Platform,
    /// Descriptor of the manifest.
    pub descriptor: Descriptor,
    /// The exact manifest bytes.
    pub manifest: Bytes,
    /// The exact config bytes.
    pub config: Bytes,
    /// Descriptor of the config.
    pub config_descriptor: Descriptor,
    /// Layers in order.
    pub layers: Vec<LayerBlob>,
}

/// Credentials for a push (redacted in `Debug`).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: Secret,
}

impl Credentials {
    /// Credentials from user and password.
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// What a push stored.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// `host:port/repo:tag`.
    pub reference: String,
    /// Digest of the top-level manifest (or index).
    pub digest: String,
    /// Media type of the top-level document.
    pub media_type: String,
    /// Config descriptor of each image, in order (one for a single image).
    pub configs: Vec<Descriptor>,
    /// Layer descriptors of each image, in order.
    pub layers: Vec<Vec<Descriptor>>,
}

impl Image {
    /// Manifest digest.
    pub fn digest(&self) -> &str {
        &self.descriptor.digest
    }

    /// Layer descriptors in manifest order.
    pub fn layer_descriptors(&self) -> Vec<Descriptor> {
        self.layers.iter().map(|l| l.descriptor.clone()).collect()
    }

    /// Config and layer blobs (digest -> bytes).
    pub fn blobs(&self) -> Vec<(Descriptor, Bytes)> {
        let mut out = vec![(self.config_descriptor.clone(), self.config.clone())];
        out.extend(
            self.layers
                .iter()
                .map(|l| (l.descriptor.clone(), l.data.clone())),
        );
        out
    }

    /// Writes an OCI layout with this image tagged `tag` into `dir`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> Result<()> {
        let mut blobs = self.blobs();
        blobs.push((self.descriptor.clone(), self.manifest.clone()));
        write_layout(dir, &self.descriptor, tag, &blobs)
    }

    /// Pushes with skopeo to `registry` as `repo:tag`, preserving digests; `creds` go to a 0600 auth file.
    pub async fn push(
        &self,
        registry: &Registry,
        repo_tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<Pushed> {
        let (repo, tag) = split_repo_tag(repo_tag)?;
        let work = tempdir()?;
        let source = work.path().join("source");
        let mut files = self.blobs();
        files.push((self.descriptor.clone(), self.manifest.clone()));
        write_dir_transport(&source, &self.manifest, &[], &files)?;
        skopeo_copy(
            registry,
            &work,
            &source,
            repo,
            tag,
            creds,
            false,
            self.digest(),
        )
        .await?;
        Ok(self.pushed(registry, repo, tag))
    }

    /// Pushes over the registry HTTP API (blob uploads, then manifest PUT) without skopeo.
    pub async fn push_raw(
        &self,
        registry: &Registry,
        repo_tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<Pushed> {
        let (repo, tag) = split_repo_tag(repo_tag)?;
        let mut p = RawPusher::new(registry, repo, creds.cloned())?;
        for (_, data) in self.blobs() {
            p.push_blob(&data).await?;
        }
        p.push_manifest(tag, &self.descriptor.media_type, &self.manifest)
            .await?;
        Ok(self.pushed(registry, repo, tag))
    }

    fn pushed(&self, registry: &Registry, repo: &str, tag: &str) -> Pushed {
        Pushed {
            reference: format!("{}/{repo}:{tag}", registry.host_port()),
            digest: self.digest().to_string(),
            media_type: self.descriptor.media_type.clone(),
            configs: vec![self.config_descriptor.clone()],
            layers: vec![self.layer_descriptors()],
        }
    }
}

/// A multi-platform index of images.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    /// The images, in index order.
    pub images: Vec<Image>,
    /// Descriptor of the index.
    pub descriptor: Descriptor,
    /// The exact index bytes.
    pub bytes: Bytes,
}

impl ImageIndex {
    /// An index over `images` (all must share one format; the index uses that family's media type).
    pub fn new(images: Vec<Image>) -> Result<ImageIndex> {
        let format = images
            .first()
            .map(|i| i.format)
            .ok_or_else(|| Error::Image("an index needs at least one image".into()))?;
        if images.iter().any(|i| i.format != format) {
            return Err(Error::Image(
                "all images of an index must use the same format".into(),
            ));
        }
        let mt = match format {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_MANIFEST_LIST,
        };
        let manifests: Vec<Descriptor> = images
            .iter()
            .map(|i| Descriptor {
                platform: Some(i.platform.clone()),
                ..i.descriptor.clone()
            })
            .collect();
        let doc = json!({"schemaVersion": 2, "mediaType": mt, "manifests": manifests});
        let bytes = Bytes::from(serde_json::to_vec(&doc).expect("index serializes"));
        Ok(ImageIndex {
            descriptor: Descriptor::of(mt, &bytes),
            images,
            bytes,
        })
    }

    /// Index digest.
    pub fn digest(&self) -> &str {
        &self.descriptor.digest
    }

    /// Writes an OCI layout whose `index.json` points at this index tagged `tag`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> Result<()> {
        let mut blobs = vec![(self.descriptor.clone(), self.bytes.clone())];
        for i in &self.images {
            blobs.extend(i.blobs());
            blobs.push((i.descriptor.clone(), i.manifest.clone()));
        }
        write_layout(dir, &self.descriptor, tag, &blobs)
    }

    /// Pushes the index and every image with `skopeo copy --all`, preserving digests.
    pub async fn push(
        &self,
        registry: &Registry,
        repo_tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<Pushed> {
        let (repo, tag) = split_repo_tag(repo_tag)?;
        let work = tempdir()?;
        let source = work.path().join("source");
        let mut files = Vec::new();
        let mut instances = Vec::new();
        for i in &self.images {
            files.extend(i.blobs());
            instances.push((i.digest().to_string(), i.manifest.clone()));
        }
        write_dir_transport(&source, &self.bytes, &instances, &files)?;
        skopeo_copy(
            registry,
            &work,
            &source,
            repo,
            tag,
            creds,
            true,
            self.digest(),
        )
        .await?;
        Ok(self.pushed(registry, repo, tag))
    }

    /// Pushes over the HTTP API: every blob, every manifest by digest, then the index by tag.
    pub async fn push_raw(
        &self,
        registry: &Registry,
        repo_tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<Pushed> {
        let (repo, tag) = split_repo_tag(repo_tag)?;
        let mut p = RawPusher::new(registry, repo, creds.cloned())?;
        for i in &self.images {
            for (_, data) in i.blobs() {
                p.push_blob(&data).await?;
            }
            p.push_manifest(i.digest(), &i.descriptor.media_type, &i.manifest)
                .await?;
        }
        p.push_manifest(tag, &self.descriptor.media_type, &self.bytes)
            .await?;
        Ok(self.pushed(registry, repo, tag))
    }

    fn pushed(&self, registry: &Registry, repo: &str, tag: &str) -> Pushed {
        Pushed {
            reference: format!("{}/{repo}:{tag}", registry.host_port()),
            digest: self.digest().to_string(),
            media_type: self.descriptor.media_type.clone(),
            configs: self
                .images
                .iter()
                .map(|i| i.config_descriptor.clone())
                .collect(),
            layers: self.images.iter().map(|i| i.layer_descriptors()).collect(),
        }
    }
}

fn tempdir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("testkit-image-")
        .tempdir()
        .map_err(Error::io("creating temp dir", std::env::temp_dir()))
}

fn split_repo_tag(repo_tag: &str) -> Result<(&str, &str)> {
    let (repo, tag) = match repo_tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (repo_tag, "latest"),
    };
    if repo.is_empty() || repo.contains("//") || repo.starts_with('/') || tag.is_empty() {
        return Err(Error::Option {
            field: "repo_tag",
            message: format!("{repo_tag:?} is not <repository>[:<tag>]"),
        });
    }
    Ok((repo, tag))
}

fn write_layout(
    dir: &Path,
    top: &Descriptor,
    tag: &str,
    blobs: &[(Descriptor, Bytes)],
) -> Result<()> {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).map_err(Error::io("creating", &blob_dir))?;
    for (d, data) in blobs {
        let hex = d
            .digest
            .strip_prefix("sha256:")
            .expect("testkit digests are sha256");
        write_file(&blob_dir, hex, data, 0o644)?;
    }
    write_file(
        dir,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    let mut entry = top.clone();
    entry.annotations = Some(BTreeMap::from([(
        "org.opencontainers.image.ref.name".to_string(),
        tag.to_string(),
    )]));
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]});
    write_file(
        dir,
        "index.json",
        &serde_json::to_vec(&index).expect("index serializes"),
        0o644,
    )?;
    Ok(())
}

/// Writes the containers/image `dir:` transport layout (version 1.1): `manifest.json` (the top-level
/// document), `<hex>.manifest.json` per index instance, and one `<hex>` file per blob. skopeo's `oci:`
/// transport only accepts OCI media types in `index.json`, while `dir:` carries Docker schema 2 as well.
fn write_dir_transport(
    dir: &Path,
    top: &[u8],
    instances: &[(String, Bytes)],
    blobs: &[(Descriptor, Bytes)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    write_file(dir, "version", b"Directory Transport Version: 1.1\n", 0o644)?;
    write_file(dir, "manifest.json", top, 0o644)?;
    for (digest, bytes) in instances {
        let hex = digest
            .strip_prefix("sha256:")
            .expect("testkit digests are sha256");
        write_file(dir, &format!("{hex}.manifest.json"), bytes, 0o644)?;
    }
    for (d, data) in blobs {
        let hex = d
            .digest
            .strip_prefix("sha256:")
            .expect("testkit digests are sha256");
        write_file(dir, hex, data, 0o644)?;
    }
    Ok(())
}

/// Writes a containers-auth.json granting `creds` for `host_port`, mode 0600, and returns its path.
fn write_authfile(
    dir: &Path,
    host_port: &str,
    creds: Option<&Credentials>,
) -> Result<std::path::PathBuf> {
    let auths = match creds {
        Some(c) => {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.user,
                c.password.expose()
            ));
            json!({host_port: {"auth": auth}})
        }
        None => json!({}),
    };
    let text = serde_json::to_vec(&json!({ "auths": auths })).expect("auth file serializes");
    write_file(dir, "auth.json", &text, 0o600)
}

#[allow(clippy::too_many_arguments)]
async fn skopeo_copy(
    registry: &Registry,
    work: &tempfile::TempDir,
    source: &Path,
    repo: &str,
    tag: &str,
    creds: Option<&Credentials>,
    all: bool,
    expect_digest: &str,
) -> Result<()> {
    let private = work.path().join("private");
    std::fs::create_dir_all(&private).map_err(Error::io("creating", &private))?;
    let authfile = write_authfile(&private, &registry.host_port(), creds)?;
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).map_err(Error::io("creating", &certs))?;
    if let Some(ca) = registry.ca_pem() {
        write_file(&certs, "ca.crt", ca.as_bytes(), 0o644)?;
    }
    if let Some(ca) = registry.realm_ca_pem() {
        write_file(&certs, "realm-ca.crt", ca.as_bytes(), 0o644)?;
    }
    if let Some(id) = registry.client_identity() {
        write_file(&certs, "client.cert", id.chain_pem().as_bytes(), 0o644)?;
        write_file(
            &certs,
            "client.key",
            id.key_pem().expose().as_bytes(),
            0o600,
        )?;
    }
    let digestfile = work.path().join("digest");
    let mut cmd = tokio::process::Command::new("skopeo");
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", work.path())
        .env("XDG_RUNTIME_DIR", work.path())
        .env("REGISTRY_AUTH_FILE", &authfile)
        .arg("--insecure-policy")
        .arg("copy")
        .arg("--retry-times=0")
        .arg("--preserve-digests")
        .arg("--digestfile")
        .arg(&digestfile)
        .arg("--dest-authfile")
        .arg(&authfile)
        .arg("--dest-cert-dir")
        .arg(&certs);
    if registry.ca_pem().is_none() {
        cmd.arg("--dest-tls-verify=false");
    }
    if all {
        cmd.arg("--all");
    }
    cmd.arg(format!("dir:{}", source.display()))
        .arg(format!("docker://{}/{repo}:{tag}", registry.host_port()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| Error::Program {
        program: "skopeo".into(),
        message: format!("spawn failed: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Program {
            program: "skopeo".into(),
            message: format!(
                "copy to {}/{repo}:{tag} failed ({}): {}",
                registry.host_port(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let got = std::fs::read_to_string(&digestfile)
        .map_err(Error::io("reading skopeo digest file", &digestfile))?;
    if got.trim() != expect_digest {
        return Err(Error::Program {
            program: "skopeo".into(),
            message: format!(
                "pushed {}/{repo}:{tag} as {} but the built document is {expect_digest}",
                registry.host_port(),
                got.trim()
            ),
        });
    }
    Ok(())
}

/// Pushes blobs and arbitrary manifest bytes over the distribution HTTP API, including documents skopeo or
/// a well-behaved client refuses to produce (no `mediaType`, odd whitespace, unusual descriptors). The
/// registry still validates: distribution 2.8 answers `MANIFEST_INVALID` to an ambiguous manifest/index
/// (CVE-2021-41190); serve such documents with the front proxy's `Fault::Respond` instead. Handles Basic and Bearer challenges (token fetched from the
/// realm with the credentials, scope `repository:<repo>:pull,push`).
pub struct RawPusher {
    client: reqwest::Client,
    base: String,
    repo: String,
    creds: Option<Credentials>,
    authorization: Option<Secret>,
}

impl std::fmt::Debug for RawPusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPusher")
            .field("base", &self.base)
            .field("repo", &self.repo)
            .field("creds", &self.creds)
            .finish()
    }
}

fn http_err(method: &str, url: &str, message: impl ToString) -> Error {
    Error::Http {
        method: method.into(),
        url: url.into(),
        message: message.to_string(),
    }
}

impl RawPusher {
    /// A pusher for `repo` on `registry`.
    pub fn new(registry: &Registry, repo: &str, creds: Option<Credentials>) -> Result<RawPusher> {
        Ok(RawPusher {
            client: registry.http_client()?,
            base: registry.url(),
            repo: repo.to_string(),
            creds,
            authorization: None,
        })
    }

    /// A pusher for `repo` behind any base URL (e.g. a [`crate::front::Front`]), trusting exactly `ca_pems`.
    pub fn to_url(
        base: &str,
        ca_pems: &[&str],
        repo: &str,
        creds: Option<Credentials>,
    ) -> Result<RawPusher> {
        Ok(RawPusher {
            client: crate::tls::reqwest_client(ca_pems, None)?,
            base: base.trim_end_matches('/').to_string(),
            repo: repo.to_string(),
            creds,
            authorization: None,
        })
    }

    async fn send(
        &mut self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        for attempt in 0..2 {
            let mut req = build(&self.client);
            if let Some(a) = &self.authorization {
                req = req.header(http::header::AUTHORIZATION, a.expose());
            }
            let req = req
                .build()
                .map_err(|e| http_err("?", &self.base, error_chain(&e)))?;
            let (method, url) = (req.method().to_string(), redact_query(req.url()));
            let resp = self
                .client
                .execute(req)
                .await
                .map_err(|e| http_err(&method, &url, error_chain(&e)))?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            self.authorize(&challenge, &method, &url).await?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn authorize(&mut self, challenge: &str, method: &str, url: &str) -> Result<()> {
        let creds = self.creds.clone();
        let (scheme, params) = parse_challenge(challenge);
        match scheme.as_str() {
            "basic" => {
                let c = creds.ok_or_else(|| {
                    http_err(method, url, "registry wants basic auth; pass credentials")
                })?;
                let b = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    c.user,
                    c.password.expose()
                ));
                self.authorization = Some(Secret::new(format!("Basic {b}")));
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| http_err(method, url, "bearer challenge without realm"))?;
                let mut u = url::Url::parse(realm)
                    .map_err(|e| http_err(method, url, format!("bad realm {realm:?}: {e}")))?;
                {
                    let mut q = u.query_pairs_mut();
                    if let Some(s) = params.get("service") {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &format!("repository:{}:pull,push", self.repo));
                }
                let mut req = self.client.get(u.clone());
                if let Some(c) = &creds {
                    req = req.basic_auth(&c.user, Some(c.password.expose()));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| http_err("GET", realm, error_chain(&e)))?;
                if !resp.status().is_success() {
                    return Err(http_err(
                        "GET",
                        realm,
                        format!("token endpoint answered {}", resp.status()),
                    ));
                }
                let body: serde_json::Value = resp
                    .json()
                    .await
                    .map_err(|e| http_err("GET", realm, error_chain(&e)))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        http_err(
                            "GET",
                            realm,
                            "token response has neither token nor access_token",
                        )
                    })?;
                self.authorization = Some(Secret::new(format!("Bearer {token}")));
            }
            other => {
                return Err(http_err(
                    method,
                    url,
                    format!("unsupported auth scheme {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Uploads a blob (monolithic POST + PUT) unless the registry already has it; returns its digest.
    pub async fn push_blob(&mut self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let head = format!("{}/v2/{}/blobs/{digest}", self.base, self.repo);
        let resp = self.send(|c| c.head(&head)).await?;
        if resp.status().is_success() {
            return Ok(digest);
        }
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.repo);
        let resp = self.send(|c| c.post(&start)).await?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            return Err(http_err(
                "POST",
                &start,
                format!("expected 202, got {}", resp.status()),
            ));
        }
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| http_err("POST", &start, "202 without Location"))?;
        let mut put = url::Url::parse(&self.base)
            .and_then(|b| b.join(location))
            .map_err(|e| http_err("POST", &start, format!("bad Location {location:?}: {e}")))?;
        put.query_pairs_mut().append_pair("digest", &digest);
        let body = Bytes::copy_from_slice(data);
        let resp = self
            .send(|c| {
                c.put(put.clone())
                    .header(http::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(http_err(
                "PUT",
                &redact_query(&put),
                format!("expected 201, got {status}: {text}"),
            ));
        }
        Ok(digest)
    }

    /// PUTs manifest bytes with a Content-Type under `reference` (tag or digest); returns the registry's
    /// `Docker-Content-Digest`.
    pub async fn push_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repo);
        let body = Bytes::copy_from_slice(bytes);
        let resp = self
            .send(|c| {
                c.put(&url)
                    .header(http::header::CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        let status = resp.status();
        if status != reqwest::StatusCode::CREATED {
            let text = resp.text().await.unwrap_or_default();
            return Err(http_err(
                "PUT",
                &url,
                format!("expected 201, got {status}: {text}"),
            ));
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string())
    }
}

fn redact_query(u: &url::Url) -> String {
    let mut u = u.clone();
    if u.query().is_some() {
        u.set_query(Some("<redacted>"));
    }
    u.to_string()
}

/// Parses `Scheme k=v,k="v"` into a lowercase scheme and its parameters (lowercase keys).
pub fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (scheme.to_ascii_lowercase(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, type, mode, content, link target)
    type TarRow = (String, tar::EntryType, u32, Vec<u8>, Option<String>);

    fn read_tar(data: &[u8]) -> Vec<TarRow> {
        let mut a = tar::Archive::new(data);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap());
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut content).unwrap();
                (
                    path,
                    e.header().entry_type(),
                    e.header().mode().unwrap(),
                    content,
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn tar_preserves_kinds_modes_and_hostile_names() {
        let long = format!("d/{}", "x".repeat(150));
        let tar = build_tar(&[
            Entry::dir("etc"),
            Entry::file("etc/passwd", "root:x:0:0\n"),
            Entry::file("bin/su", "elf").mode(0o4755),
            Entry::symlink("link", "../../etc"),
            Entry::hardlink("hard", "etc/passwd"),
            Entry::whiteout("opt/gone"),
            Entry::opaque("var"),
            Entry::char_device("dev/null", 1, 3),
            Entry::file("../escape", "x"),
            Entry::file(long.clone(), "long"),
        ])
        .unwrap();
        let entries = read_tar(&tar);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/passwd",
                "bin/su",
                "link",
                "hard",
                "opt/.wh.gone",
                "var/.wh..wh..opq",
                "dev/null",
                "../escape",
                long.as_str()
            ]
        );
        assert_eq!(entries[2].2, 0o4755);
        assert_eq!(entries[3].1, tar::EntryType::Symlink);
        assert_eq!(entries[3].4.as_deref(), Some("../../etc"));
        assert_eq!(entries[4].1, tar::EntryType::Link);
        assert_eq!(entries[7].1, tar::EntryType::Char);
        assert_eq!(entries[1].3, b"root:x:0:0\n");
    }

    #[test]
    fn xattrs_are_written_as_pax_records() {
        let tar = build_tar(&[Entry::file("f", "x").xattr("user.k", "v")]).unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let ext: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            ext,
            vec![("SCHILY.xattr.user.k".to_string(), b"v".to_vec())]
        );
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for value in ["a", &"b".repeat(90), &"c".repeat(95)] {
            let r = pax_record("path", value.as_bytes());
            let (len, _) = std::str::from_utf8(&r).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len());
        }
    }

    #[test]
    fn layer_digests_and_diff_ids_match_their_bytes() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let l = LayerBlob::from_entries(&[Entry::file("a", "b")], c, Format::Oci).unwrap();
            assert_eq!(l.descriptor.digest, sha256_digest(&l.data));
            assert_eq!(l.diff_id, sha256_digest(&l.tar));
            assert_eq!(l.descriptor.size, l.data.len() as u64);
        }
        assert!(LayerBlob::from_entries(&[], Compression::Zstd, Format::Docker).is_err());
    }

    #[test]
    fn manifest_references_config_and_layers_with_diff_ids_in_config() {
        let img = ImageBuilder::new()
            .format(Format::Docker)
            .layer(vec![Entry::file("a", "1")], Compression::Gzip)
            .layer(vec![Entry::file("b", "2")], Compression::None)
            .entrypoint(["/bin/sh"])
            .cmd(["-c", "true"])
            .build()
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(m["mediaType"], DOCKER_MANIFEST);
        assert_eq!(m["config"]["digest"], img.config_descriptor.digest.as_str());
        assert_eq!(m["layers"].as_array().unwrap().len(), 2);
        let c: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][1], img.layers[1].diff_id.as_str());
        assert_eq!(c["config"]["Entrypoint"][0], "/bin/sh");
        assert_eq!(img.digest(), sha256_digest(&img.manifest));
    }

    #[test]
    fn index_lists_each_platform() {
        let a = ImageBuilder::new().build().unwrap();
        let b = ImageBuilder::new()
            .platform(Platform::new("linux", "arm64", Some("v8")))
            .build()
            .unwrap();
        let idx = ImageIndex::new(vec![a, b]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&idx.bytes).unwrap();
        assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(v["manifests"][1]["platform"]["variant"], "v8");
    }

    #[test]
    fn oci_layout_has_index_and_blobs() {
        let img = ImageBuilder::new()
            .layer(vec![Entry::file("a", "1")], Compression::Gzip)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        img.write_oci_layout(dir.path(), "v1").unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], img.digest());
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        for (d, data) in img.blobs() {
            let p = dir
                .path()
                .join("blobs/sha256")
                .join(d.digest.trim_start_matches("sha256:"));
            assert_eq!(std::fs::read(p).unwrap(), data);
        }
    }

    #[test]
    fn authfile_is_private_and_holds_base64_credentials() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p =
            write_authfile(dir.path(), "127.0.0.1:1", Some(&Credentials::new("u", "p"))).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["auths"]["127.0.0.1:1"]["auth"], "dTpw");
    }

    #[test]
    fn challenge_parser_handles_quotes_and_escapes() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push",error="he\"llo""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://a/token");
        assert_eq!(p["scope"], "repository:x:pull,push");
        assert_eq!(p["error"], "he\"llo");
        let (s, p) = parse_challenge(r#"Basic realm="x""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("basic", "x"));
    }

    #[test]
    fn repo_tag_splits_on_last_colon_only_when_it_is_a_tag() {
        assert_eq!(split_repo_tag("a/b:v1").unwrap(), ("a/b", "v1"));
        assert_eq!(split_repo_tag("a/b").unwrap(), ("a/b", "latest"));
        assert!(split_repo_tag(":v1").is_err());
    }
}
