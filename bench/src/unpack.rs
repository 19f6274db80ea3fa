//! bench-unpack: times pull + unpack of the realistic image from the local TLS registry by
//! `berth pull` (which unpacks every layer into its own snapshot), by containerd 1.6 (`ctr image
//! pull`, which fetches and then unpacks into the overlayfs snapshotter of a daemon this benchmark
//! starts with its own root, state and socket) and by a floor of C tools (per layer, two at a time:
//! `curl | tee (sha256sum) | tar -xz`), alternating the three in one run, each from an empty store
//! with cleanup outside the timing. It reports wall-time medians and minimums, the fetch/unpack split
//! seen in the tools' own output, the peak RSS of berth, of ctr and of the containerd daemon, and the
//! ratios against the goals of the unpack issue.
//!
//! It owns nothing berth ships. It must never talk to anything but loopback and never leave a
//! process behind: the containerd daemon is stopped after every round, killed on any early exit
//! (`Drop`) and dies with this process (`PR_SET_PDEATHSIG`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::fixture::{BenchRegistry, Layout, PASSWORD, USER, build_image};
use bench::measure::{Mark, Run, Stats, loadavg, measure, measure_marked, median_min, settle};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The berth binary to measure (a release build)
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Uncompressed image size, in MiB
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Layers of the image
    #[arg(long, default_value_t = 8)]
    layers: usize,
    /// Rounds; each round runs berth, containerd and the floor once, rotating which goes first
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Layers the floor downloads and unpacks at once
    #[arg(long, default_value_t = 2)]
    floor_parallel: usize,
    /// Where built images are cached
    #[arg(long, default_value = "target/bench-cache")]
    cache: PathBuf,
}

const TOOLS: [Tool; 3] = [Tool::Berth, Tool::Containerd, Tool::Floor];

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Berth,
    Containerd,
    Floor,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Berth => "berth pull",
            Tool::Containerd => "containerd 1.6 (ctr image pull)",
            Tool::Floor => "C-tool floor (curl, sha256sum, tar -xz)",
        }
    }
}

/// One timed run plus what the tool's output told about its phases.
struct Sample {
    run: Run,
    /// When the last blob was in the store (berth: last `done` event; ctr: `unpacking` line).
    fetched: Option<Duration>,
    /// Peak RSS of the containerd daemon over the round, KiB.
    daemon_rss_kib: Option<i64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.berth.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p berth`",
            args.berth.display()
        );
    }
    for (program, package) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("curl", "curl"),
    ] {
        if Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            bail!(
                "{program} not found: install the Debian package {package} (bench/unpack.sh does)"
            );
        }
    }
    let load_before = loadavg();
    let reg = BenchRegistry::start("berth-bench-unpack").await?;
    let host = reg.host_port();
    let layout = build_image(&args.cache, args.size_mib, args.layers)?;
    let tag = format!("{}m", args.size_mib);
    let repo = format!("{host}/bench/app:{tag}");
    reg.push(&layout, &repo)?;

    // containerd's per-host trust: a hosts directory as `ctr --hosts-dir` (and CRI's config_path) reads it
    let hosts_dir = reg.work.join("containerd-hosts");
    std::fs::create_dir_all(hosts_dir.join(&host))?;
    std::fs::write(
        hosts_dir.join(&host).join("hosts.toml"),
        format!(
            "server = \"https://{host}\"\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = {:?}\n",
            reg.ca_file.display().to_string()
        ),
    )?;
    // curl reads the credential and CA from a config file so the password is not in its arguments
    let curl_conf = reg.work.join("curl.conf");
    std::fs::write(
        &curl_conf,
        format!(
            "user = \"{USER}:{PASSWORD}\"\ncacert = {:?}\n",
            reg.ca_file.display().to_string()
        ),
    )?;
    let floor_script = reg.work.join("floor.sh");
    std::fs::write(&floor_script, FLOOR_SCRIPT)?;

    eprintln!(
        "image {repo}: {} layers, {:.0} MiB compressed; load average before: {load_before}",
        layout.layers.len(),
        layout.compressed as f64 / 1048576.0
    );
    let mut samples: Vec<Vec<Sample>> = TOOLS.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for k in 0..TOOLS.len() {
            let tool = TOOLS[(round + k) % TOOLS.len()];
            let dest = reg.work.join(format!("dest-{round}-{k}"));
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::create_dir_all(&dest)?;
            settle();
            let sample = match tool {
                Tool::Berth => berth_round(&args, &reg, &repo, &dest),
                Tool::Containerd => containerd_round(&hosts_dir, &repo, &dest, layout.layers.len()),
                Tool::Floor => floor_round(
                    &args,
                    &floor_script,
                    &curl_conf,
                    &host,
                    &tag,
                    &layout,
                    &dest,
                ),
            }
            .with_context(|| format!("round {}: {}", round + 1, tool.name()))?;
            // cleanup, outside the timing
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("removing {}", dest.display()))?;
            eprintln!(
                "round {} {:<36} {:>7.2} s  fetched at {:>7}  peak RSS {:.1} MiB{}  load {}",
                round + 1,
                tool.name(),
                sample.run.wall.as_secs_f64(),
                sample
                    .fetched
                    .map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into()),
                sample.run.max_rss_kib as f64 / 1024.0,
                sample
                    .daemon_rss_kib
                    .map(|k| format!(" (daemon {:.1} MiB)", k as f64 / 1024.0))
                    .unwrap_or_default(),
                loadavg()
            );
            samples[TOOLS.iter().position(|t| *t == tool).expect("tool")].push(sample);
        }
    }
    report(&args, &layout, &samples, &load_before);
    Ok(())
}

fn berth_round(
    args: &Args,
    reg: &BenchRegistry,
    repo: &str,
    root: &Path,
) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(&args.berth);
    cmd.arg("pull")
        .arg(repo)
        .arg("--secret")
        .arg(&reg.secret)
        .arg("--ca-file")
        .arg(&reg.ca_file)
        .arg("--root")
        .arg(root)
        .args(["-o", "json"]);
    let run = measure_marked(
        &mut cmd,
        &[
            Mark {
                needle: r#""event":"done""#,
                last: true,
            },
            Mark {
                needle: r#""snapshots":["sha256:"#,
                last: false,
            },
        ],
    )?;
    if run.marks[1].is_none() {
        bail!(
            "berth pull reported no snapshots: it did not unpack (is this a berth that unpacks by default?)"
        );
    }
    Ok(Sample {
        fetched: run.marks[0],
        run,
        daemon_rss_kib: None,
    })
}

fn containerd_round(
    hosts_dir: &Path,
    repo: &str,
    dir: &Path,
    layers: usize,
) -> anyhow::Result<Sample> {
    let daemon = Containerd::start(dir)?;
    let mut cmd = daemon.ctr();
    // The password on ctr's command line is this benchmark's throwaway registry credential (see
    // bench::fixture::PASSWORD), never a real one: ctr has no other way to take it non-interactively.
    cmd.args(["image", "pull", "--user"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg("--hosts-dir")
        .arg(hosts_dir)
        .arg(repo);
    let run = measure_marked(
        &mut cmd,
        &[Mark {
            needle: "unpacking ",
            last: false,
        }],
    );
    let daemon_rss_kib = daemon.peak_rss_kib();
    let snapshots = daemon.snapshot_count();
    daemon.stop()?;
    let run = run?;
    if snapshots != layers {
        bail!(
            "containerd holds {snapshots} overlayfs snapshots after the pull, expected {layers}: it did not unpack"
        );
    }
    Ok(Sample {
        fetched: run.marks[0],
        run,
        daemon_rss_kib,
    })
}

/// Fetches manifest and config, then each layer (`xargs -P`) streamed through a fifo to
/// `sha256sum` (the waitable form of `tee >(sha256sum)`) and into `tar -xz` in its own directory.
const FLOOR_SCRIPT: &str = r#"#!/bin/bash
# usage: floor.sh PARALLEL CURL_CONFIG BASE_URL DEST TAG CONFIG_DIGEST LAYER_DIGEST...
set -euo pipefail
parallel=$1 conf=$2 base=$3 dest=$4 tag=$5 config=$6
shift 6
curl -sSf -K "$conf" -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o "$dest/manifest.json" "$base/manifests/$tag"
curl -sSf -K "$conf" -o "$dest/config.json" "$base/blobs/$config"
layer() {
  set -euo pipefail
  local d=$dest/${1#sha256:}
  mkdir "$d"
  mkfifo "$d.fifo"
  sha256sum < "$d.fifo" > "$d.sha256" &
  curl -sSf -K "$conf" "$base/blobs/$1" | tee "$d.fifo" | tar -xz -C "$d"
  wait $!
}
export -f layer
export conf base dest
printf '%s\n' "$@" | xargs -P "$parallel" -n 1 bash -c 'layer "$1"' layer
"#;

fn floor_round(
    args: &Args,
    script: &Path,
    curl_conf: &Path,
    host: &str,
    tag: &str,
    layout: &Layout,
    dest: &Path,
) -> anyhow::Result<Sample> {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg(args.floor_parallel.to_string())
        .arg(curl_conf)
        .arg(format!("https://{host}/v2/bench/app"))
        .arg(dest)
        .arg(tag)
        .arg(&layout.config)
        .args(&layout.layers);
    let run = measure(&mut cmd)?;
    // the floor must have done the work it is credited with: every layer hashed to its digest
    for layer in &layout.layers {
        let hex = layer.trim_start_matches("sha256:");
        let sum = std::fs::read_to_string(dest.join(format!("{hex}.sha256")))
            .with_context(|| format!("the floor wrote no sha256 of layer {layer}"))?;
        if !sum.starts_with(hex) {
            bail!("the floor's sha256 of layer {layer} is {sum:?}");
        }
    }
    Ok(Sample {
        run,
        fetched: None,
        daemon_rss_kib: None,
    })
}

/// A containerd daemon with its own root, state, sockets and log under one directory.
struct Containerd {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Containerd {
    /// Starts the daemon (the CRI plugin disabled: only content, snapshots, diff and images are
    /// used) and waits until it answers `ctr version`.
    fn start(dir: &Path) -> anyhow::Result<Containerd> {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let path = |p: &str| format!("{:?}", dir.join(p).display().to_string());
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {}\nstate = {}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
                 [grpc]\n  address = {}\n\n[ttrpc]\n  address = {}\n\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}\n",
                path("root"),
                path("state"),
                path("containerd.sock"),
                path("containerd.sock.ttrpc"),
                path("opt"),
            ),
        )?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the daemon is killed if this process dies first.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting containerd")?;
        let mut daemon = Containerd {
            child: Some(child),
            dir: dir.to_path_buf(),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                daemon.child = None;
                bail!(
                    "containerd exited during start-up ({status}); its log: {}",
                    daemon.log_tail()
                );
            }
            if daemon.socket.exists()
                && daemon
                    .ctr()
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not answer on {} within 30 s; its log: {}",
                    daemon.socket.display(),
                    daemon.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket);
        cmd
    }

    /// The daemon's peak RSS so far (`VmHWM`), KiB.
    fn peak_rss_kib(&self) -> Option<i64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Committed snapshots in the overlayfs snapshotter.
    fn snapshot_count(&self) -> usize {
        std::fs::read_dir(
            self.dir
                .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots"),
        )
        .map(|d| d.count())
        .unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 20 s; always reaps the daemon.
    fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("containerd did not stop within 20 s of SIGTERM and was killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: i64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn report(args: &Args, layout: &Layout, samples: &[Vec<Sample>], load_before: &str) {
    let stats: Vec<Stats> = samples
        .iter()
        .map(|s| Stats::of(s.iter().map(|x| &x.run)))
        .collect();
    let phases = |s: &[Sample]| -> String {
        let fetched: Vec<Duration> = s.iter().filter_map(|x| x.fetched).collect();
        if fetched.len() != s.len() {
            return "-".into();
        }
        let unpack: Vec<Duration> = s
            .iter()
            .map(|x| x.run.wall.saturating_sub(x.fetched.unwrap_or_default()))
            .collect();
        format!(
            "{} + {}",
            secs(median_min(&fetched).0),
            secs(median_min(&unpack).0)
        )
    };
    let daemon_rss = samples[1].iter().filter_map(|x| x.daemon_rss_kib).max();
    println!(
        "{} MiB image, {} gzip-6 layers, {:.0} MiB compressed; {} rounds; load average before {load_before}, after {}",
        args.size_mib,
        layout.layers.len(),
        layout.compressed as f64 / 1048576.0,
        args.rounds,
        loadavg()
    );
    println!();
    println!(
        "| tool | wall (median) | wall (min) | fetch + unpack (medians) | peak RSS (max over rounds) |"
    );
    println!("|---|---|---|---|---|");
    for (i, tool) in TOOLS.iter().enumerate() {
        let rss = match tool {
            Tool::Berth => mib(stats[i].max_rss_kib),
            Tool::Containerd => format!(
                "daemon {} + ctr {}",
                daemon_rss.map(mib).unwrap_or_else(|| "unknown".into()),
                mib(stats[i].max_rss_kib)
            ),
            Tool::Floor => "n/a (several processes)".into(),
        };
        println!(
            "| {} | {} | {} | {} | {rss} |",
            tool.name(),
            secs(stats[i].median),
            secs(stats[i].min),
            phases(&samples[i])
        );
    }
    let (b, c, f) = (&stats[0], &stats[1], &stats[2]);
    let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!();
    let speedup = ratio(c.median, b.median);
    println!(
        "containerd / berth: {speedup:.2}x (min {:.2}x); goal >= 2x: {}",
        ratio(c.min, b.min),
        verdict(speedup >= 2.0)
    );
    let to_floor = ratio(b.median, f.median);
    println!(
        "berth / floor: {to_floor:.2}x (min {:.2}x); goal <= 1.2x: {}",
        ratio(b.min, f.min),
        verdict(to_floor <= 1.2)
    );
    println!(
        "berth peak RSS: {}; goal < 128 MiB: {}",
        mib(b.max_rss_kib),
        verdict(b.max_rss_kib < 128 * 1024)
    );
}
