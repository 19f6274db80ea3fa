//! The benchmark fixture shared by bench-pull, bench-unpack and bench-apply: a realistic image (several gzip
//! level-6 layers of many small files, about the requested uncompressed size, built once and cached
//! as an OCI layout) and Debian's docker-registry from testkit on 127.0.0.1 with TLS from a test CA
//! and htpasswd auth, plus the files each tool reads its trust and credentials from (CA file, Docker
//! certs dir, skopeo authfile, a kubernetes.io/dockerconfigjson Secret for berth), a runnable variant of
//! the image (a busybox layer on top) and blob download counts from the registry's access log. It must never
//! bind or contact anything but loopback, and the credential it makes is a throwaway test password
//! that exists only for the life of the registry.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use base64::Engine;
use sha2::{Digest, Sha256};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

/// The registry user of every benchmark.
pub const USER: &str = "bench";
/// Its password: a throwaway credential of the benchmark's own registry, never a real one.
pub const PASSWORD: &str = "bench-password";

/// The benchmark registry and the files that let each tool reach it. The registry process is killed
/// and the work directory removed when this is dropped.
pub struct BenchRegistry {
    registry: Registry,
    _pki: TestPki,
    /// Scratch directory of the run (credential files, destinations); removed on drop.
    pub work: PathBuf,
    /// A Docker-style certs directory holding `ca.crt` (skopeo's `--*-cert-dir`).
    pub cert_dir: PathBuf,
    /// The registry's CA certificate (PEM).
    pub ca_file: PathBuf,
    /// A Docker `config.json`-format authfile for the registry (skopeo's `--*-authfile`).
    pub authfile: PathBuf,
    /// A `kubernetes.io/dockerconfigjson` Secret for the registry (berth's `--secret`).
    pub secret: PathBuf,
}

impl BenchRegistry {
    /// Starts the TLS registry with htpasswd auth on 127.0.0.1 and writes the trust and credential
    /// files under a fresh work directory named after `prefix` and this process.
    pub async fn start(prefix: &str) -> anyhow::Result<BenchRegistry> {
        let pki = TestPki::named("bench")?;
        let registry = Registry::start(
            RegistryOptions::new()
                .tls(pki.server(["127.0.0.1"])?, pki.ca_pem())
                .htpasswd([User::new(USER, PASSWORD)]),
        )
        .await?;
        let work = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)
            .with_context(|| format!("creating the work directory {}", work.display()))?;
        let cert_dir = work.join("certs");
        std::fs::create_dir_all(&cert_dir)?;
        let ca_file = cert_dir.join("ca.crt");
        std::fs::write(&ca_file, pki.ca_pem())?;
        let host = registry.host_port();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let dockerconfig = format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#);
        let authfile = work.join("auth.json");
        std::fs::write(&authfile, &dockerconfig)?;
        let secret = work.join("secret.json");
        std::fs::write(
            &secret,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "bench"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(&dockerconfig)}
            })
            .to_string(),
        )?;
        Ok(BenchRegistry {
            registry,
            _pki: pki,
            work,
            cert_dir,
            ca_file,
            authfile,
            secret,
        })
    }

    /// `127.0.0.1:PORT` of the registry.
    pub fn host_port(&self) -> String {
        self.registry.host_port()
    }

    /// How many times the registry answered `GET /v2/<repo>/blobs/<digest>` with the blob (2xx), per digest,
    /// read from its access log once the log has been quiet for 200 ms.
    pub async fn blob_downloads(&self, repo: &str) -> std::collections::BTreeMap<String, usize> {
        let prefix = format!("/v2/{repo}/blobs/");
        let mut counts = std::collections::BTreeMap::new();
        for e in self.registry.access_log_settled().await {
            if e.method == "GET"
                && (200..300).contains(&e.status)
                && let Some(digest) = e.path().strip_prefix(&prefix)
            {
                *counts.entry(digest.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Pushes the OCI layout (its `bench` tag) to `repo` (`host:port/name:tag`) with skopeo.
    pub fn push(&self, layout: &Layout, repo: &str) -> anyhow::Result<()> {
        let status = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(&self.cert_dir)
            .arg("--dest-authfile")
            .arg(&self.authfile)
            .arg(format!("oci:{}:bench", layout.dir.display()))
            .arg(format!("docker://{repo}"))
            .status()
            .context(
                "running skopeo to push the benchmark image (is the skopeo package installed?)",
            )?;
        if !status.success() {
            bail!(
                "skopeo push of {} to {repo} failed: {status}",
                layout.dir.display()
            );
        }
        Ok(())
    }
}

impl Drop for BenchRegistry {
    fn drop(&mut self) {
        self.registry.stop();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A built benchmark image as an OCI layout.
pub struct Layout {
    /// The layout directory (`index.json`, `blobs/sha256/...`).
    pub dir: PathBuf,
    /// Digest (`sha256:...`) of the image manifest.
    pub manifest: String,
    /// Digest of the image config.
    pub config: String,
    /// Digests of the layers, bottom-most first.
    pub layers: Vec<String>,
    /// Total size of the blobs (layers, config, manifest) in bytes.
    pub compressed: u64,
}

/// Builds (once, cached under `cache`) an OCI layout of `layers` gzip-6 layers holding about `mib`
/// MiB of files of 1-64 KiB whose bytes are half noise, half text (about 2:1 compressible, like
/// binaries and libraries).
pub fn build_image(cache: &Path, mib: u64, layers: usize) -> anyhow::Result<Layout> {
    let dir = cache.join(format!("pull-{mib}m-{layers}l"));
    let stamp = dir.join(GENERATOR_STAMP);
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(GENERATOR) {
        // missing, or cached by an older generator: rebuild
        let _ = std::fs::remove_dir_all(&dir);
        write_image(cache, &dir, mib, layers)?;
        std::fs::write(&stamp, GENERATOR)?;
    }
    read_layout(&dir)
}

/// File in a cached layout naming the generator that wrote it.
const GENERATOR_STAMP: &str = "bench-generator";
/// Version of the generator; change it whenever the bytes of the layers change.
const GENERATOR: &str = "2: gnu headers with uid/gid 0";

fn write_image(cache: &Path, dir: &Path, mib: u64, layers: usize) -> anyhow::Result<()> {
    let tmp = cache.join(format!("pull-{mib}m-{layers}l.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let blobs = tmp.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("creating the image cache {}", blobs.display()))?;
    let per_layer = mib * 1048576 / layers as u64;
    let built: Vec<anyhow::Result<(String, u64, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..layers)
            .map(|i| {
                let blobs = blobs.clone();
                s.spawn(move || write_layer(&blobs, i, per_layer))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("layer thread"))
            .collect()
    });
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for b in built {
        let (digest, size, diff_id) = b?;
        descs.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{digest}"), "size": size}),
        );
        diff_ids.push(format!("sha256:{diff_id}"));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string();
    let config_digest = put_blob(&blobs, config.as_bytes())?;
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": descs})
    .to_string();
    let manifest_digest = put_blob(&blobs, manifest.as_bytes())?;
    std::fs::write(tmp.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(
        tmp.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "bench"}}]})
        .to_string(),
    )?;
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

/// Makes (once, cached beside `base`) a runnable variant of a [`build_image`] layout: the same layers plus a
/// small top layer with a static busybox (`/bin/busybox` of this machine, Debian's busybox-static) as `sh` and
/// `sleep`, `/etc/passwd` and `/etc/group`, and a config whose command is `sleep 3600`. The realistic layers
/// are hard-linked (or copied) from `base`, so the 1 GiB of layer bytes is shared with it.
pub fn runnable_image(base: &Layout) -> anyhow::Result<Layout> {
    let name = base
        .dir
        .file_name()
        .context("the base layout has no directory name")?
        .to_string_lossy()
        .into_owned();
    let dir = base.dir.with_file_name(format!("{name}-runnable"));
    let stamp = dir.join(GENERATOR_STAMP);
    let want = format!("{GENERATOR}; runnable over {}", base.manifest);
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        write_runnable(base, &dir)?;
        std::fs::write(&stamp, &want)?;
    }
    read_layout(&dir)
}

/// Where a static busybox for [`runnable_image`] is read from.
pub const BUSYBOX: &str = "/bin/busybox";

fn write_runnable(base: &Layout, dir: &Path) -> anyhow::Result<()> {
    use testkit::image::{Entry, build_tar};
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let blobs = tmp.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("creating the image cache {}", blobs.display()))?;
    let base_blobs = base.dir.join("blobs/sha256");
    let blob_of = |d: &str| base_blobs.join(d.trim_start_matches("sha256:"));
    for layer in &base.layers {
        let (from, to) = (
            blob_of(layer),
            blobs.join(layer.trim_start_matches("sha256:")),
        );
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    let busybox = std::fs::read(BUSYBOX).with_context(|| {
        format!(
            "reading {BUSYBOX}: install a static busybox with `apt-get install -y busybox-static`"
        )
    })?;
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::dir("etc"),
        Entry::dir("tmp").mode(0o1777),
        Entry::file("bin/busybox", busybox).mode(0o755),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        Entry::file("etc/group", "root:x:0:\n"),
    ];
    entries.extend(["sh", "sleep"].map(|a| Entry::symlink(format!("bin/{a}"), "busybox")));
    let tar = build_tar(&entries).context("building the busybox layer")?;
    let diff_id = hex::encode(Sha256::digest(&tar));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    let top = put_blob(&blobs, &gz)?;

    let read_json = |path: PathBuf| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    };
    let mut manifest = read_json(blob_of(&base.manifest))?;
    let mut config = read_json(blob_of(&base.config))?;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("the base config has no rootfs.diff_ids")?
        .push(format!("sha256:{diff_id}").into());
    config["config"] = serde_json::json!({"Cmd": ["sleep", "3600"], "Env": ["PATH=/bin"]});
    let config = config.to_string();
    let config_digest = put_blob(&blobs, config.as_bytes())?;
    manifest["config"]["digest"] = format!("sha256:{config_digest}").into();
    manifest["config"]["size"] = config.len().into();
    manifest["layers"]
        .as_array_mut()
        .context("the base manifest has no layers")?
        .push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{top}"), "size": gz.len()}),
        );
    let manifest = manifest.to_string();
    let manifest_digest = put_blob(&blobs, manifest.as_bytes())?;
    std::fs::write(tmp.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(
        tmp.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "bench"}}]})
        .to_string(),
    )?;
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

/// Reads the manifest, config and layer digests of a layout written by [`build_image`].
fn read_layout(dir: &Path) -> anyhow::Result<Layout> {
    let read_json = |path: PathBuf| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    };
    let digest_of = |v: &serde_json::Value, what: &str| -> anyhow::Result<String> {
        v["digest"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{what} of the layout {} has no digest", dir.display()))
    };
    let blob_path = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read_json(dir.join("index.json"))?;
    let manifest = digest_of(&index["manifests"][0], "index.json manifests[0]")?;
    let m = read_json(blob_path(&manifest))?;
    let config = digest_of(&m["config"], "manifest config")?;
    let layers = m["layers"]
        .as_array()
        .with_context(|| format!("the manifest in {} has no layers", dir.display()))?
        .iter()
        .map(|l| digest_of(l, "manifest layer"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Layout {
        compressed: dir_size(&dir.join("blobs"))?,
        dir: dir.to_path_buf(),
        manifest,
        config,
        layers,
    })
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn put_blob(blobs: &Path, data: &[u8]) -> anyhow::Result<String> {
    let digest = hex::encode(Sha256::digest(data));
    std::fs::write(blobs.join(&digest), data)?;
    Ok(digest)
}

fn write_layer(blobs: &Path, index: usize, bytes: u64) -> anyhow::Result<(String, u64, String)> {
    let tmp = blobs.join(format!("layer-{index}.tmp"));
    let file = Hashing {
        inner: BufWriter::new(File::create(&tmp)?),
        hash: Sha256::new(),
        n: 0,
    };
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::new(6));
    let tar_out = Hashing {
        inner: gz,
        hash: Sha256::new(),
        n: 0,
    };
    let mut tar = tar::Builder::new(tar_out);
    let text = b"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor ";
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ ((index as u64 + 1) * 0x9e37_79b9);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut written = 0u64;
    let mut n = 0;
    let mut buf = Vec::new();
    while written < bytes {
        let size = 1024 + (next() % (63 * 1024)) as usize;
        buf.clear();
        while buf.len() < size {
            if next() % 2 == 0 {
                buf.extend_from_slice(&next().to_le_bytes());
            } else {
                buf.extend_from_slice(&text[..8]);
            }
        }
        buf.truncate(size);
        let mut header = tar::Header::new_gnu();
        header.set_size(size as u64);
        header.set_mode(0o644);
        // uid/gid written out as every image builder does (`new_gnu` leaves them all NUL)
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            format!("layer{index}/dir{}/file{n}", n / 256),
            &buf[..],
        )?;
        written += size as u64;
        n += 1;
    }
    let tar_out = tar.into_inner()?;
    let diff_id = hex::encode(tar_out.hash.finalize());
    let mut file = tar_out.inner.finish()?;
    file.flush()?;
    let digest = hex::encode(file.hash.clone().finalize());
    let size = file.n;
    drop(file);
    std::fs::rename(&tmp, blobs.join(&digest))?;
    Ok((digest, size, diff_id))
}
