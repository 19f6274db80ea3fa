//! bench-apply: time from `kubectl apply -f` of a Deployment of N replicas (default 20, with
//! `imagePullSecrets`, image in the local TLS + htpasswd registry of `bench::fixture`) until all N pods are
//! Running, watched with `kubectl get pods --watch -o json`; with one node (the embedded agent of `berth
//! server`) and with three (`berth server --no-agent` plus three `berth agent` processes on this machine, each
//! with its own root, node name and port), the image first uncached (fresh roots) and then cached (the same
//! cluster after the uncached Deployment and its pods are gone). The same run times one plain `berth pull` of
//! the image into a fresh root as the reference, and counts the registry's blob downloads from its access log.
//! It owns nothing berth ships; it must never talk to anything but loopback, and it must never leave a process
//! or mount behind: it deletes its Deployments and waits for their pods to be gone before stopping the agents
//! and the server, then checks for leftover mounts and processes under its work directory.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bench::cluster::{BenchArgs, BenchImage, Cluster, Config, Nodes};
use bench::fixture::Layout;
use bench::measure::{loadavg, settle};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: BenchArgs,
    /// Replicas of the Deployment
    #[arg(long, default_value_t = 20)]
    replicas: usize,
    /// Node counts to test (1 = the embedded agent; more = `--no-agent` plus that many `berth agent`s)
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// Rounds (each: reference pull, then every node count uncached and cached); ratios are per round
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// The longest pull time in the `Pulled` Events of the default namespace ("Successfully pulled image
/// ... in 12.345s (12.4s including waiting)": the first figure), if any.
fn longest_pull(cluster: &Cluster) -> anyhow::Result<Option<Duration>> {
    let out = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=Pulled",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ])?;
    Ok(out.lines().filter_map(pull_time).max())
}

/// Applies a Deployment of `replicas` pods of `image` and returns when all are Running.
fn rollout(
    cluster: &mut Cluster,
    name: &str,
    image: &str,
    replicas: usize,
    timeout: Duration,
) -> anyhow::Result<Rollout> {
    let file = cluster.deployment_file(name, image, replicas)?;
    let selector = format!("app={name}");
    // The watch lists, then watches from the list's resourceVersion: nothing is missed even if it
    // connects after the apply.
    let mut watch = cluster
        .kubectl_cmd()
        .args([
            "get",
            "pods",
            "-l",
            &selector,
            "--watch",
            "--output-watch-events",
        ])
        .args(["-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting kubectl get pods --watch")?;
    let (tx, rx) = mpsc::channel::<(Instant, Value)>();
    let out = watch.stdout.take().context("kubectl watch stdout")?;
    let reader = std::thread::spawn(move || {
        let stream = serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter();
        for v in stream {
            let Ok(v) = v else { break };
            if tx.send((Instant::now(), v)).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let applied = cluster.kubectl(&["apply", "-f", &file.display().to_string()]);
    let apply_returned = start.elapsed();
    let result = applied.and_then(|_| {
        let mut pods: HashMap<String, (String, String, bool)> = HashMap::new();
        let mut first = None;
        let mut watching = true;
        let mut last_poll = Instant::now();
        loop {
            let now = Instant::now();
            ensure!(
                now - start < timeout,
                "{} of {replicas} pods Running after {timeout:?}: {}",
                running(&pods),
                cluster.pod_summary(&selector)
            );
            let mut events: Vec<(Instant, Value)> = Vec::new();
            if watching {
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(ev) => events.push(ev),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        eprintln!("note: kubectl watch ended; polling every 100 ms instead");
                        watching = false;
                    }
                }
                cluster.alive()?;
            } else {
                // fallback: poll `kubectl get pods -o json` every 100 ms
                let wait = Duration::from_millis(100).saturating_sub(last_poll.elapsed());
                std::thread::sleep(wait);
                last_poll = Instant::now();
                cluster.alive()?;
                let list: Value = serde_json::from_str(
                    &cluster.kubectl(&["get", "pods", "-l", &selector, "-o", "json"])?,
                )?;
                pods.clear();
                for p in list["items"].as_array().into_iter().flatten() {
                    events.push((Instant::now(), json!({"type": "MODIFIED", "object": p})));
                }
            }
            for (at, ev) in events {
                let pod = &ev["object"];
                let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
                if ev["type"] == "DELETED" {
                    pods.remove(&pod_name);
                    continue;
                }
                let phase = pod["status"]["phase"].as_str().unwrap_or("").to_string();
                let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
                let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
                pods.insert(pod_name, (phase, node, deleting));
                let n = running(&pods);
                if n > 0 && first.is_none() {
                    first = Some(at - start);
                }
                if n >= replicas {
                    let mut per_node = BTreeMap::new();
                    for (phase, node, deleting) in pods.values() {
                        if phase == "Running" && !deleting {
                            *per_node.entry(node.clone()).or_insert(0) += 1;
                        }
                    }
                    return Ok(Rollout {
                        all_running: at - start,
                        first_running: first.unwrap_or_default(),
                        apply_returned,
                        per_node,
                    });
                }
            }
        }
    });
    // SAFETY: kill on the pid of the kubectl watch this function spawned and has not reaped yet.
    unsafe { libc::kill(watch.id() as libc::pid_t, libc::SIGTERM) };
    let _ = watch.wait();
    let _ = reader.join();
    result
}

fn running(pods: &HashMap<String, (String, String, bool)>) -> usize {
    pods.values()
        .filter(|(phase, _, deleting)| phase == "Running" && !deleting)
        .count()
}

struct Rollout {
    all_running: Duration,
    first_running: Duration,
    apply_returned: Duration,
    per_node: BTreeMap<String, usize>,
}

/// Blob downloads of the layers during one case, and whether every node's store holds every layer.
struct Downloads {
    per_layer: Vec<usize>,
    config: usize,
    nodes_holding_all: usize,
}

impl Downloads {
    fn of(
        layout: &Layout,
        before: &BTreeMap<String, usize>,
        after: &BTreeMap<String, usize>,
        roots: &[PathBuf],
    ) -> Downloads {
        let delta = |d: &str| after.get(d).unwrap_or(&0) - before.get(d).unwrap_or(&0);
        let nodes_holding_all = roots
            .iter()
            .filter(|r| {
                layout.layers.iter().all(|l| {
                    r.join("content/blobs/sha256")
                        .join(l.trim_start_matches("sha256:"))
                        .exists()
                })
            })
            .count();
        Downloads {
            per_layer: layout.layers.iter().map(|l| delta(l)).collect(),
            config: delta(&layout.config),
            nodes_holding_all,
        }
    }

    fn describe(&self, nodes: usize) -> String {
        let total: usize = self.per_layer.iter().sum();
        let (min, max) = (
            self.per_layer.iter().min().copied().unwrap_or(0),
            self.per_layer.iter().max().copied().unwrap_or(0),
        );
        format!(
            "{total} layer GETs for {} layers x {nodes} node(s) (per layer {min}-{max}), config {}; \
             {}/{nodes} node stores hold every layer",
            self.per_layer.len(),
            self.config,
            self.nodes_holding_all
        )
    }
}

struct Case {
    nodes: usize,
    cached: bool,
    rollout: Rollout,
    /// The longest pull time any node's `Pulled` Event reports (uncached cases).
    pulled: Option<Duration>,
    downloads: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bench = args.common.prepare("berth-bench-apply", "bench/apply")?;
    let load_before = loadavg();
    eprintln!("load before: {load_before}");

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round} of {}", args.rounds);
        rounds.push(one_round(&args, &bench)?);
    }
    let load_after = loadavg();

    println!(
        "load before {load_before}, after {load_after}; image {} MiB in {} layers + busybox layer, {:.0} MiB compressed; {} round(s)",
        args.common.size_mib,
        args.common.layers,
        bench.layout.compressed as f64 / 1048576.0,
        args.rounds
    );
    println!();
    println!(
        "| round | nodes | image | all {} Running | first Running | agent's pull (Pulled Event) | apply returned | pods per node | vs `berth pull` | registry downloads |",
        args.replicas
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (r, round) in rounds.iter().enumerate() {
        println!(
            "| {} | - | `berth pull` (reference) | {:.2} s | | | | | 1x | {} |",
            r + 1,
            round.pull.as_secs_f64(),
            round.pull_downloads
        );
        for c in &round.cases {
            println!(
                "| {} | {} | {} | {:.2} s | {:.2} s | {} | {:.2} s | {} | {} | {} |",
                r + 1,
                c.nodes,
                if c.cached { "cached" } else { "uncached" },
                c.rollout.all_running.as_secs_f64(),
                c.rollout.first_running.as_secs_f64(),
                c.pulled
                    .map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into()),
                c.rollout.apply_returned.as_secs_f64(),
                c.rollout
                    .per_node
                    .values()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                if c.cached {
                    "-".to_string()
                } else {
                    format!(
                        "{:.2}x",
                        c.rollout.all_running.as_secs_f64() / round.pull.as_secs_f64()
                    )
                },
                c.downloads
            );
        }
    }
    println!();
    for &nodes in &args.nodes {
        let ratios: Vec<f64> = rounds
            .iter()
            .flat_map(|round| {
                round
                    .cases
                    .iter()
                    .filter(|c| c.nodes == nodes && !c.cached)
                    .map(|c| c.rollout.all_running.as_secs_f64() / round.pull.as_secs_f64())
            })
            .collect();
        let cached: Vec<f64> = rounds
            .iter()
            .flat_map(|round| {
                round
                    .cases
                    .iter()
                    .filter(|c| c.nodes == nodes && c.cached)
                    .map(|c| c.rollout.all_running.as_secs_f64())
            })
            .collect();
        println!(
            "{nodes} node(s): uncached all Running / `berth pull` of the same round, median {:.2}x (goal <= 1.2x); cached all Running, median {:.2} s (goal <= 5 s)",
            median(&ratios),
            median(&cached)
        );
    }
    Ok(())
}

/// The pull time in kubelet's "Successfully pulled image \"X\" in 12.345s (12.4s including waiting)...".
fn pull_time(message: &str) -> Option<Duration> {
    let rest = message.strip_prefix("Successfully pulled image ")?;
    let (_, after) = rest.split_once("\" in ")?;
    go_duration(after.split_whitespace().next()?)
}

/// A Go `time.Duration` string as kubelet prints it: `850ms`, `12.345s`, `1m5.2s`, `1h2m3s`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, tail) = rest.split_at(split);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic() && c != 'µ')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let value: f64 = number.parse().ok()?;
        total += value
            * match unit {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => return None,
            };
        rest = next;
    }
    (!text.is_empty()).then(|| Duration::from_secs_f64(total))
}

/// The median of a few samples (the mean of the middle two for an even count); 0 when empty.
fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One round: the reference `berth pull`, then for each node count a fresh cluster, the uncached and the
/// cached rollout.
struct Round {
    pull: Duration,
    pull_downloads: String,
    cases: Vec<Case>,
}

fn one_round(args: &Args, bench: &BenchImage) -> anyhow::Result<Round> {
    let BenchImage {
        reg, layout, image, ..
    } = bench;
    let before = bench.blob_downloads();
    let (pull, pull_dl) = bench.reference_pull(&args.common.berth, |root| {
        let after = bench.blob_downloads();
        Ok(Downloads::of(
            layout,
            &before,
            &after,
            &[root.to_path_buf()],
        ))
    })?;
    eprintln!(
        "berth pull: {:.2} s; {}",
        pull.wall.as_secs_f64(),
        pull_dl.describe(1)
    );

    let timeout = args.common.timeout();
    let mut cases = Vec::new();
    for &nodes in &args.nodes {
        let dir = reg.work.join(format!("cluster-{nodes}"));
        let mut cluster = Cluster::start(Config {
            berth: args.common.berth.clone(),
            kubectl: args.common.kubectl.clone(),
            dir,
            nodes: if nodes == 1 {
                Nodes::Embedded
            } else {
                Nodes::Agents(nodes)
            },
            node_prefix: "bench-node".into(),
            agent_args: Vec::new(),
        })?;
        let outcome = (|| -> anyhow::Result<()> {
            cluster.prepare(reg)?;
            for cached in [false, true] {
                let name = if cached {
                    "bench-cached"
                } else {
                    "bench-uncached"
                };
                let before = bench.blob_downloads();
                eprintln!(
                    "{nodes} node(s), {}: applying (load {})",
                    if cached { "cached" } else { "uncached" },
                    loadavg()
                );
                settle();
                let rollout = rollout(&mut cluster, name, image, args.replicas, timeout)?;
                // The agents' own account of the pull (kubelet's Pulled Event), to tell the pull from
                // scheduling and container start.
                let pulled = if cached {
                    None
                } else {
                    longest_pull(&cluster)?
                };
                let after = bench.blob_downloads();
                let downloads =
                    Downloads::of(layout, &before, &after, cluster.roots()).describe(nodes);
                eprintln!(
                    "  all {} Running after {:.2} s (first {:.2} s, apply returned {:.2} s, agent's pull {:?}); pods per node {:?}; {downloads}",
                    args.replicas,
                    rollout.all_running.as_secs_f64(),
                    rollout.first_running.as_secs_f64(),
                    rollout.apply_returned.as_secs_f64(),
                    pulled,
                    rollout.per_node
                );
                cases.push(Case {
                    nodes,
                    cached,
                    rollout,
                    pulled,
                    downloads,
                });
                // cleanup, outside the timing
                cluster.delete(name)?;
            }
            Ok(())
        })();
        let stopped = cluster.shutdown();
        outcome?;
        stopped?;
    }
    Ok(Round {
        pull: pull.wall,
        pull_downloads: pull_dl.describe(1),
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/nonexistent"),
            manifest: "sha256:m".into(),
            config: "sha256:c".into(),
            layers: vec!["sha256:aa".into(), "sha256:bb".into()],
            compressed: 0,
        }
    }

    fn store_with(root: &std::path::Path, hexes: &[&str]) {
        let blobs = root.join("content/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for h in hexes {
            std::fs::write(blobs.join(h), b"x").unwrap();
        }
    }

    #[test]
    fn downloads_are_counted_per_case_and_stores_holding_every_layer_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (full, partial) = (dir.path().join("n0"), dir.path().join("n1"));
        store_with(&full, &["aa", "bb"]);
        store_with(&partial, &["aa"]);
        let before = BTreeMap::from([("sha256:aa".to_string(), 1)]);
        let after = BTreeMap::from([
            ("sha256:aa".to_string(), 3),
            ("sha256:bb".to_string(), 1),
            ("sha256:c".to_string(), 2),
        ]);
        let d = Downloads::of(&layout(), &before, &after, &[full, partial]);
        assert_eq!(d.per_layer, vec![2, 1]);
        assert_eq!(d.config, 2);
        assert_eq!(d.nodes_holding_all, 1);
        assert_eq!(
            d.describe(2),
            "3 layer GETs for 2 layers x 2 node(s) (per layer 1-2), config 2; 1/2 node stores hold every layer"
        );
    }

    #[test]
    fn only_running_pods_not_being_deleted_count() {
        let pods = HashMap::from([
            (
                "a".to_string(),
                ("Running".to_string(), "n0".to_string(), false),
            ),
            (
                "b".to_string(),
                ("Running".to_string(), "n0".to_string(), true),
            ),
            (
                "c".to_string(),
                ("Pending".to_string(), "n1".to_string(), false),
            ),
        ]);
        assert_eq!(running(&pods), 1);
    }

    #[test]
    fn pull_time_reads_kubelets_pulled_message_with_go_durations() {
        let msg = |d: &str| {
            format!(
                "Successfully pulled image \"127.0.0.1:5000/a:b\" in {d} ({d} including waiting). Image size: 1 bytes."
            )
        };
        assert_eq!(
            pull_time(&msg("19.781s")),
            Some(Duration::from_millis(19781))
        );
        assert_eq!(
            pull_time(&msg("1m5.5s")),
            Some(Duration::from_millis(65500))
        );
        assert_eq!(pull_time(&msg("850ms")), Some(Duration::from_millis(850)));
        assert_eq!(
            pull_time("Container image \"a\" already present on machine"),
            None
        );
        assert_eq!(go_duration("12x"), None);
        assert_eq!(go_duration(""), None);
    }
}
