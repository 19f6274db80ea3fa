//! bench-pull: times `berth pull` (fetch, verify, store) against `skopeo copy docker://… dir:…` on
//! the same image from the same local TLS registry, alternating the two in one run, and reports
//! wall time, peak RSS and their ratios. The image is realistic: several gzip (level 6) layers of
//! many small files, about the requested uncompressed size, built once and cached under
//! `target/bench-cache`. It owns nothing berth ships; it must never talk to anything but loopback.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use sha2::{Digest, Sha256};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

#[derive(Parser)]
struct Args {
    /// The berth binary to measure (a release build)
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Uncompressed image sizes to test, in MiB (several show whether memory stays flat)
    #[arg(long, value_delimiter = ',', default_value = "1024")]
    sizes_mib: Vec<u64>,
    /// Layers per image
    #[arg(long, default_value_t = 8)]
    layers: usize,
    /// Rounds; each round runs berth and skopeo once, alternating which goes first
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where built images are cached
    #[arg(long, default_value = "target/bench-cache")]
    cache: PathBuf,
}

const PASSWORD: &str = "bench-password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.berth.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p berth`",
            args.berth.display()
        );
    }
    let pki = TestPki::named("bench")?;
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"])?, pki.ca_pem())
            .htpasswd([User::new("bench", PASSWORD)]),
    )
    .await?;
    let work = tempfile_dir("berth-bench")?;
    let certs = work.join("certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::write(certs.join("ca.crt"), pki.ca_pem())?;
    let host = registry.host_port();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("bench:{PASSWORD}"));
    let authfile = work.join("auth.json");
    std::fs::write(
        &authfile,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )?;
    let secret = work.join("secret.json");
    let dockerconfig = format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#);
    std::fs::write(
        &secret,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bench"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(dockerconfig)}
        })
        .to_string(),
    )?;

    println!("| image | layers | compressed | tool | wall (median) | peak RSS (max) |");
    println!("|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &mib in &args.sizes_mib {
        let layout = build_image(&args.cache, mib, args.layers)?;
        let compressed = dir_size(&layout.join("blobs"))?;
        let repo = format!("{host}/bench/app:{mib}m");
        let status = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(&certs)
            .arg("--dest-authfile")
            .arg(&authfile)
            .arg(format!("oci:{}:bench", layout.display()))
            .arg(format!("docker://{repo}"))
            .status()
            .context("running skopeo to push the benchmark image")?;
        if !status.success() {
            bail!("skopeo push failed: {status}");
        }
        let mut berth_runs = Vec::new();
        let mut skopeo_runs = Vec::new();
        for round in 0..args.rounds {
            let order: [&str; 2] = if round % 2 == 0 {
                ["berth", "skopeo"]
            } else {
                ["skopeo", "berth"]
            };
            for tool in order {
                let dest = work.join(format!("dest-{tool}"));
                let _ = std::fs::remove_dir_all(&dest);
                let mut cmd = match tool {
                    "berth" => {
                        let mut c = Command::new(&args.berth);
                        c.arg("pull").arg(&repo).arg("--secret").arg(&secret);
                        c.arg("--ca-file")
                            .arg(certs.join("ca.crt"))
                            .arg("--root")
                            .arg(&dest);
                        c.args(["-o", "json"]);
                        c
                    }
                    _ => {
                        let mut c = Command::new("skopeo");
                        c.args(["copy", "--quiet", "--src-cert-dir"]).arg(&certs);
                        c.arg("--src-authfile").arg(&authfile);
                        c.arg(format!("docker://{repo}"))
                            .arg(format!("dir:{}", dest.display()));
                        c
                    }
                };
                cmd.stdout(std::process::Stdio::null());
                let run = measure(&mut cmd).with_context(|| format!("running {tool}"))?;
                if tool == "berth" {
                    berth_runs.push(run)
                } else {
                    skopeo_runs.push(run)
                }
                let _ = std::fs::remove_dir_all(&dest);
            }
        }
        let b = Stats::of(&berth_runs);
        let s = Stats::of(&skopeo_runs);
        for (tool, st) in [("berth pull", &b), ("skopeo copy", &s)] {
            println!(
                "| {mib} MiB | {} | {:.0} MiB | {tool} | {:.2} s | {:.1} MiB |",
                args.layers,
                compressed as f64 / 1048576.0,
                st.median.as_secs_f64(),
                st.max_rss_kib as f64 / 1024.0
            );
        }
        summary.push((
            mib,
            s.median.as_secs_f64() / b.median.as_secs_f64(),
            b.max_rss_kib,
        ));
    }
    println!();
    for (mib, speedup, rss) in summary {
        println!(
            "{mib} MiB image: berth is {speedup:.2}x as fast as skopeo; berth peak RSS {:.1} MiB",
            rss as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

struct Run {
    wall: Duration,
    max_rss_kib: i64,
}

struct Stats {
    median: Duration,
    max_rss_kib: i64,
}

impl Stats {
    fn of(runs: &[Run]) -> Stats {
        let mut walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
        walls.sort();
        Stats {
            median: walls[walls.len() / 2],
            max_rss_kib: runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0),
        }
    }
}

/// Runs a command to completion and reads its own peak RSS from `wait4` (not its children's).
fn measure(cmd: &mut Command) -> anyhow::Result<Run> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we just spawned and reaped here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    std::mem::forget(child);
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{cmd:?} failed with status {status}");
    }
    Ok(Run {
        wall,
        max_rss_kib: usage.ru_maxrss,
    })
}

fn tempfile_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
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

/// Builds (once) an OCI layout of `layers` gzip-6 layers holding about `mib` MiB of files of
/// 1-64 KiB whose bytes are half noise, half text (about 2:1 compressible, like binaries and
/// libraries), and returns its directory.
fn build_image(cache: &Path, mib: u64, layers: usize) -> anyhow::Result<PathBuf> {
    let dir = cache.join(format!("pull-{mib}m-{layers}l"));
    if dir.join("index.json").exists() {
        return Ok(dir);
    }
    let tmp = cache.join(format!("pull-{mib}m-{layers}l.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let blobs = tmp.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
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
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
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
