//! bench-pull: times `berth pull --no-unpack` (fetch, verify, store) against `skopeo copy docker://… dir:…` on
//! the same image from the same local TLS registry, alternating the two in one run, and reports
//! wall time, peak RSS and their ratios. The image and registry come from `bench::fixture` (several
//! gzip level-6 layers of many small files, cached under `target/bench-cache`; TLS and htpasswd).
//! It owns nothing berth ships; it must never talk to anything but loopback.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use bench::fixture::{BenchRegistry, build_image};
use bench::measure::{Stats, measure};
use clap::Parser;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.berth.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p berth`",
            args.berth.display()
        );
    }
    let reg = BenchRegistry::start("berth-bench").await?;
    let work = reg.work.clone();
    let host = reg.host_port();
    println!("| image | layers | compressed | tool | wall (median) | peak RSS (max) |");
    println!("|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &mib in &args.sizes_mib {
        let layout = build_image(&args.cache, mib, args.layers)?;
        let compressed = layout.compressed;
        let repo = format!("{host}/bench/app:{mib}m");
        reg.push(&layout, &repo)?;
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
                        c.arg("pull").arg(&repo).arg("--secret").arg(&reg.secret);
                        // fetch-only: this benchmark compares with skopeo, which does not unpack
                        c.arg("--no-unpack");
                        c.arg("--ca-file")
                            .arg(&reg.ca_file)
                            .arg("--root")
                            .arg(&dest);
                        c.args(["-o", "json"]);
                        c
                    }
                    _ => {
                        let mut c = Command::new("skopeo");
                        c.args(["copy", "--quiet", "--src-cert-dir"])
                            .arg(&reg.cert_dir);
                        c.arg("--src-authfile").arg(&reg.authfile);
                        c.arg(format!("docker://{repo}"))
                            .arg(format!("dir:{}", dest.display()));
                        c
                    }
                };
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
    Ok(())
}
