//! bench-fleet: a fleet of `berth agent`s on this machine pulls one realistic image at the same moment, for a
//! Deployment with one replica per node (berth's scheduler spreads by fewest pods), and the run reports the
//! registry's egress for the image as a multiple of the image's size (from its access log: blob GETs answered
//! with bytes, times each blob's size) and the fleet's wall time (from `kubectl apply` until every pod is Running)
//! against one plain `berth pull` of the same image into a fresh root. The goals of issue 8: egress at most 1.5x
//! the image size, fleet time at most 2x one pull. With `--without-peers` the same fleet runs again with
//! `--no-peer-blobs` for comparison. Image and registry come from `bench::fixture` (TLS + htpasswd, the image
//! cached under `target/bench-cache`).
//!
//! It owns nothing berth ships; it must never talk to anything but loopback, and never leave a process or
//! mount behind: it deletes its Deployment, waits for the pods to be gone, stops the agents and the server,
//! and checks its work directory for leftovers before removing it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bench::cluster::{BenchArgs, BenchImage, Cluster, Config, Nodes};
use bench::fixture::Layout;
use bench::measure::{loadavg, settle};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: BenchArgs,
    /// Agents in the fleet (one replica each)
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Also run the fleet with `--no-peer-blobs` (every node from the registry) for comparison
    #[arg(long)]
    without_peers: bool,
}

/// Applies the Deployment `fleet` of one replica per node and returns the time until all are Running (polled
/// every 200 ms), with the number of pods per node.
fn rollout(
    fleet: &mut Cluster,
    image: &str,
    timeout: Duration,
) -> anyhow::Result<(Duration, BTreeMap<String, usize>)> {
    let n = fleet.roots().len();
    let file = fleet.deployment_file("fleet", image, n)?;
    let start = Instant::now();
    fleet.kubectl(&["apply", "-f", &file.display().to_string()])?;
    let mut per_node = BTreeMap::new();
    fleet.wait(timeout, "every pod of the fleet to be Running", |f| {
        let pods: Value =
            serde_json::from_str(&f.kubectl(&["get", "pods", "-l", "app=fleet", "-o", "json"])?)?;
        per_node.clear();
        for p in pods["items"].as_array().into_iter().flatten() {
            if p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null() {
                let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
                *per_node.entry(node).or_insert(0) += 1;
            }
        }
        Ok(per_node.values().sum::<usize>() >= n)
    })?;
    Ok((start.elapsed(), per_node))
}

/// Size in bytes of every blob of the layout, by digest.
fn blob_sizes(layout: &Layout) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for d in layout
        .layers
        .iter()
        .chain([&layout.config, &layout.manifest])
    {
        let path = layout
            .dir
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        let size = std::fs::metadata(&path)
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        out.insert(d.clone(), size);
    }
    Ok(out)
}

/// Registry bytes served for the image's blobs between two access-log counts.
fn egress(
    sizes: &BTreeMap<String, u64>,
    before: &BTreeMap<String, usize>,
    after: &BTreeMap<String, usize>,
) -> (u64, Vec<usize>) {
    let mut bytes = 0;
    let mut gets = Vec::new();
    for (digest, size) in sizes {
        let n = after.get(digest).unwrap_or(&0) - before.get(digest).unwrap_or(&0);
        bytes += n as u64 * size;
        gets.push(n);
    }
    (bytes, gets)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.nodes >= 2, "a fleet needs at least 2 nodes");
    let bench = args.common.prepare("berth-bench-fleet", "bench/fleet")?;
    let BenchImage {
        reg, layout, image, ..
    } = &bench;
    let sizes = blob_sizes(layout)?;
    let image_bytes: u64 = sizes
        .iter()
        .filter(|(d, _)| **d != layout.manifest)
        .map(|(_, s)| s)
        .sum();
    eprintln!("load before: {}", loadavg());

    let (pull, ()) = bench.reference_pull(&args.common.berth, |_| Ok(()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every node verifies, decompresses and unpacks the whole image itself: on one machine the fleet cannot
    // finish before the nodes' summed CPU time has run on its cores, whatever the network does.
    let cpu_bound = pull.cpu.as_secs_f64() * args.nodes as f64 / cores as f64;
    eprintln!(
        "one berth pull: {:.2} s wall, {:.2} s CPU (user + system); {} nodes on {cores} cores need at least \
         {cpu_bound:.1} s = {:.1}x one pull of CPU alone",
        pull.wall.as_secs_f64(),
        pull.cpu.as_secs_f64(),
        args.nodes,
        cpu_bound / pull.wall.as_secs_f64()
    );

    println!(
        "| nodes | peer sharing | image (layers + config) | registry egress | x image | fleet wall | one pull | x one pull | pods per node |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let modes: &[bool] = if args.without_peers {
        &[true, false]
    } else {
        &[true]
    };
    let mut failed = Vec::new();
    for &peers in modes {
        let dir = reg
            .work
            .join(format!("fleet-{}", if peers { "p2p" } else { "registry" }));
        let mut fleet = Cluster::start(Config {
            berth: args.common.berth.clone(),
            kubectl: args.common.kubectl.clone(),
            dir,
            nodes: Nodes::Agents(args.nodes),
            node_prefix: "fleet-node".into(),
            agent_args: if peers {
                Vec::new()
            } else {
                vec!["--no-peer-blobs".into()]
            },
        })?;
        let before = bench.blob_downloads();
        let outcome = fleet.prepare(reg).and_then(|_| {
            settle();
            rollout(&mut fleet, image, args.common.timeout())
        });
        let after = bench.blob_downloads();
        let stopped = fleet.shutdown();
        let (wall, per_node) = outcome?;
        stopped?;
        let (bytes, gets) = egress(&sizes, &before, &after);
        let times_image = bytes as f64 / image_bytes as f64;
        let times_pull = wall.as_secs_f64() / pull.wall.as_secs_f64();
        println!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {times_image:.2}x | {:.1} s | {:.1} s | {times_pull:.2}x | {} |",
            args.nodes,
            if peers { "on" } else { "off (--no-peer-blobs)" },
            image_bytes as f64 / 1048576.0,
            bytes as f64 / 1048576.0,
            wall.as_secs_f64(),
            pull.wall.as_secs_f64(),
            per_node
                .values()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        eprintln!(
            "registry GETs per blob ({}): {gets:?}",
            if peers { "p2p" } else { "registry" }
        );
        if peers && (times_image > 1.5 || times_pull > 2.0) {
            failed.push(format!(
                "egress {times_image:.2}x the image (goal <= 1.5x), fleet {times_pull:.2}x one pull (goal <= 2x)"
            ));
        }
    }
    eprintln!("load after: {}", loadavg());
    if !failed.is_empty() {
        bail!("goals missed: {}", failed.join("; "));
    }
    Ok(())
}
