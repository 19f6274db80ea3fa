//! A berth cluster on this machine for the benchmarks that apply Deployments (`bench-apply`, `bench-fleet`):
//! [`Cluster`] starts `berth server` on a fresh data directory and a free loopback port, either with its
//! embedded agent or with `--no-agent` plus N `berth agent` processes (each with its own root, node name,
//! agent port and the extra flags the benchmark asks for), waits for the API server and every node to be
//! Ready, drives it with kubectl through the admin kubeconfig, trusts the benchmark registry and creates its
//! pull Secret, writes and tracks Deployments, deletes them and waits for their pods to be gone, and on
//! shutdown stops every process and checks that no mount or process is left under its work directory (with
//! `BENCH_KEEP_LOGS=DIR` in the environment, their logs are copied into DIR first). What a
//! benchmark measures (watching a rollout, counting downloads) stays in the benchmark. It must never talk to
//! anything but loopback, never time anything itself, and never leave a process it started running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::fixture::{BenchRegistry, Layout, build_image, runnable_image};
use crate::measure::{Run, measure, settle};
use crate::process::{Proc, free_port, leftovers, mentions, tail};

/// The command-line options of every cluster benchmark (bench-apply, bench-fleet; `#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// The berth binary to measure (a release build)
    #[arg(long, default_value = "target/release/berth")]
    pub berth: PathBuf,
    /// kubectl to drive the cluster with
    #[arg(long, default_value = "/usr/bin/kubectl")]
    pub kubectl: PathBuf,
    /// Uncompressed size of the realistic image, MiB
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Realistic layers (a small busybox layer is added on top to make it runnable)
    #[arg(long, default_value_t = 8)]
    pub layers: usize,
    /// Where built images are cached
    #[arg(long, default_value = "target/bench-cache")]
    pub cache: PathBuf,
    /// Longest wait for a rollout, seconds
    #[arg(long, default_value_t = 1200)]
    pub timeout_secs: u64,
}

/// The benchmark registry with the runnable image pushed to it.
pub struct BenchImage {
    /// The runtime the registry's async helpers run on.
    pub rt: tokio::runtime::Runtime,
    pub reg: BenchRegistry,
    pub layout: Layout,
    /// The repository, e.g. `bench/apply`.
    pub repo: String,
    /// `<registry>/<repo>:<size>m`.
    pub image: String,
}

impl BenchArgs {
    /// Checks the berth binary, starts the registry (its work directory named after `prefix`), builds (or
    /// takes from the cache) the realistic image plus its busybox layer and pushes it as `repo`.
    pub fn prepare(&self, prefix: &str, repo: &str) -> anyhow::Result<BenchImage> {
        ensure!(
            self.berth.exists(),
            "{} not found: build it with `cargo build --release -p berth`",
            self.berth.display()
        );
        let rt = tokio::runtime::Runtime::new()?;
        let reg = rt.block_on(BenchRegistry::start(prefix))?;
        let base = build_image(&self.cache, self.size_mib, self.layers)?;
        let layout = runnable_image(&base)?;
        let image = format!("{}/{repo}:{}m", reg.host_port(), self.size_mib);
        reg.push(&layout, &image)?;
        Ok(BenchImage {
            rt,
            reg,
            layout,
            repo: repo.to_string(),
            image,
        })
    }

    /// The longest wait for a rollout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

impl BenchImage {
    /// 2xx blob GETs of the image's repository in the registry's access log so far, per blob path.
    pub fn blob_downloads(&self) -> std::collections::BTreeMap<String, usize> {
        self.rt.block_on(self.reg.blob_downloads(&self.repo))
    }

    /// The reference the rollouts are compared with: one plain `berth pull` (fetch, verify, commit, unpack)
    /// into a fresh root after a `sync`, timed; then `inspect` looks at the root, the pull is checked for
    /// leftover mounts and processes, and the root is removed.
    pub fn reference_pull<T>(
        &self,
        berth: &Path,
        inspect: impl FnOnce(&Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<(Run, T)> {
        let root = self.reg.work.join("pull-root");
        settle();
        let pull = measure(
            Command::new(berth)
                .arg("pull")
                .arg(&self.image)
                .arg("--secret")
                .arg(&self.reg.secret)
                .arg("--ca-file")
                .arg(&self.reg.ca_file)
                .arg("--root")
                .arg(&root)
                .stderr(Stdio::null()),
        )
        .context("running the reference berth pull")?;
        let seen = inspect(&root)?;
        let left = leftovers(&root);
        ensure!(
            left.is_empty(),
            "berth pull left behind: {}",
            left.join("; ")
        );
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
        Ok((pull, seen))
    }
}

/// Which processes run the cluster's nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nodes {
    /// One node: the agent built into `berth server`.
    Embedded,
    /// `berth server --no-agent` and this many `berth agent` processes.
    Agents(usize),
}

impl Nodes {
    /// How many nodes the cluster has.
    pub fn count(self) -> usize {
        match self {
            Nodes::Embedded => 1,
            Nodes::Agents(n) => n,
        }
    }
}

/// What differs between the benchmarks' clusters.
#[derive(Clone, Debug)]
pub struct Config {
    /// The berth binary (server, agents and `berth trust`).
    pub berth: PathBuf,
    /// kubectl, run with the cluster's admin kubeconfig.
    pub kubectl: PathBuf,
    /// The work directory; removed first, and at shutdown when nothing is left under it.
    pub dir: PathBuf,
    /// Which processes run the nodes.
    pub nodes: Nodes,
    /// Node `i` is named `{node_prefix}-{i}`.
    pub node_prefix: String,
    /// Extra arguments for every `berth agent` process (not the embedded agent), e.g. `--no-peer-blobs`.
    pub agent_args: Vec<String>,
}

/// One `berth server` and its nodes on this machine, with fresh data dir and roots under [`Config::dir`].
pub struct Cluster {
    config: Config,
    data: PathBuf,
    home: PathBuf,
    roots: Vec<PathBuf>,
    server: Proc,
    agents: Vec<Proc>,
    deployments: Vec<String>,
}

impl Cluster {
    /// Starts the server, waits until it is ready, starts the agents and waits until every node is Ready.
    pub fn start(config: Config) -> anyhow::Result<Cluster> {
        if let Nodes::Agents(n) = config.nodes {
            ensure!(n > 0, "a cluster of separate agents needs at least one");
        }
        let dir = config.dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        let home = dir.join("home");
        let roots: Vec<PathBuf> = (0..config.nodes.count())
            .map(|i| dir.join(format!("node-{i}")))
            .collect();
        std::fs::create_dir_all(&home)?;
        let port = free_port()?;
        let agent_port = match config.nodes {
            Nodes::Embedded => Some(free_port()?),
            Nodes::Agents(_) => None,
        };
        let server = Proc::spawn(
            "berth server",
            &mut server_command(&config, &data, &roots, port, agent_port),
            dir.join("server.log"),
        )?;
        let mut cluster = Cluster {
            config,
            data,
            home,
            roots,
            server,
            agents: Vec::new(),
            deployments: Vec::new(),
        };
        cluster.wait_ready()?;
        if let Nodes::Agents(n) = cluster.config.nodes {
            for i in 0..n {
                let mut cmd = agent_command(
                    &cluster.config,
                    &cluster.data,
                    &cluster.roots[i],
                    i,
                    port,
                    free_port()?,
                );
                let agent = Proc::spawn(
                    &format!("berth agent {}", node_name(&cluster.config, i)),
                    &mut cmd,
                    dir.join(format!("agent-{i}.log")),
                )?;
                cluster.agents.push(agent);
            }
        }
        cluster.wait_nodes_ready()?;
        Ok(cluster)
    }

    /// The work directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Each node's root, in node order.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The admin kubeconfig the server writes into its data directory.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("admin.kubeconfig")
    }

    /// kubectl with the admin kubeconfig and a private HOME (no `KUBECONFIG` from the environment), for
    /// callers that need the process itself (a watch).
    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.config.kubectl);
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd.env_remove("KUBECONFIG").env("HOME", &self.home);
        cmd
    }

    /// Runs kubectl; its standard output, or an error with its standard error.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.config.kubectl.display()))?;
        ensure!(
            out.status.success(),
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get pods -l SELECTOR -o wide`, or the error, for timeout messages.
    pub fn pod_summary(&self, selector: &str) -> String {
        self.kubectl(&["get", "pods", "-l", selector, "-o", "wide"])
            .unwrap_or_else(|e| format!("{e:#}"))
    }

    /// An error with the log's tail if the server or an agent has exited.
    pub fn alive(&mut self) -> anyhow::Result<()> {
        self.server.check_alive()?;
        for a in &mut self.agents {
            a.check_alive()?;
        }
        Ok(())
    }

    /// Polls `done` every `every` until it holds (`Ok(true)`) or `limit` has passed (`Ok(false)`); an error
    /// from `done` counts as not yet, an exited server or agent fails at once.
    pub fn poll(
        &mut self,
        limit: Duration,
        every: Duration,
        mut done: impl FnMut(&Cluster) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            self.alive()?;
            if done(self).unwrap_or(false) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(every);
        }
    }

    /// [`Cluster::poll`] every 200 ms, failing with "timed out after LIMIT waiting for WHAT".
    pub fn wait(
        &mut self,
        limit: Duration,
        what: &str,
        done: impl FnMut(&Cluster) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        ensure!(
            self.poll(limit, Duration::from_millis(200), done)?,
            "timed out after {limit:?} waiting for {what}"
        );
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let ready = self.poll(Duration::from_secs(120), Duration::from_millis(200), |c| {
            Ok(c.kubeconfig().exists()
                && c.kubectl(&["get", "--raw", "/readyz"])
                    .is_ok_and(|s| s.trim() == "ok"))
        })?;
        ensure!(
            ready,
            "berth server not ready after 120 s; log tail:\n{}",
            tail(&self.server.log, 30)
        );
        Ok(())
    }

    fn wait_nodes_ready(&mut self) -> anyhow::Result<()> {
        let n = self.config.nodes.count();
        let mut ready = 0;
        let all = self.poll(Duration::from_secs(120), Duration::from_millis(250), |c| {
            let list: Value = serde_json::from_str(&c.kubectl(&["get", "nodes", "-o", "json"])?)?;
            ready = ready_nodes(&list);
            Ok(ready == n)
        })?;
        ensure!(all, "{ready} of {n} nodes Ready after 120 s");
        Ok(())
    }

    /// Trusts the registry's CA cluster-wide, waits for every node to write it into its hosts directory, and
    /// creates the pull Secret `bench`.
    pub fn prepare(&mut self, reg: &BenchRegistry) -> anyhow::Result<()> {
        let host = reg.host_port();
        let out = Command::new(&self.config.berth)
            .args(["trust", "add", "--cluster", &host, "--ca-file"])
            .arg(&reg.ca_file)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env("HOME", &self.home)
            .output()
            .context("running berth trust add --cluster")?;
        ensure!(
            out.status.success(),
            "berth trust add --cluster {host} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut missing = None;
        let trusted = self.poll(Duration::from_secs(60), Duration::from_millis(100), |c| {
            missing = c
                .roots
                .iter()
                .find(|r| !mentions(&r.join("cluster-hosts"), &host))
                .cloned();
            Ok(missing.is_none())
        })?;
        if !trusted {
            let root = missing.unwrap_or_default();
            bail!(
                "the node with root {} did not write the trust for {host} under {} within 60 s",
                root.display(),
                root.join("cluster-hosts").display()
            );
        }
        self.kubectl(&["apply", "-f", &reg.secret.display().to_string()])?;
        Ok(())
    }

    /// Writes the Deployment `name` ([`deployment`]) to `DIR/NAME.json` and records it for deletion at
    /// shutdown; the caller applies the file (`kubectl apply -f`) when its clock is running.
    pub fn deployment_file(
        &mut self,
        name: &str,
        image: &str,
        replicas: usize,
    ) -> anyhow::Result<PathBuf> {
        let file = self.config.dir.join(format!("{name}.json"));
        std::fs::write(&file, deployment(name, image, replicas).to_string())
            .with_context(|| format!("writing {}", file.display()))?;
        if !self.deployments.iter().any(|d| d == name) {
            self.deployments.push(name.to_string());
        }
        Ok(file)
    }

    /// Deletes a Deployment and waits until none of its pods is left.
    pub fn delete(&mut self, name: &str) -> anyhow::Result<()> {
        self.kubectl(&[
            "delete",
            "deployment",
            name,
            "--ignore-not-found",
            "--wait=true",
        ])?;
        let selector = format!("app={name}");
        let mut left = 0;
        let gone = self.poll(Duration::from_secs(300), Duration::from_millis(250), |c| {
            let list: Value =
                serde_json::from_str(&c.kubectl(&["get", "pods", "-l", &selector, "-o", "json"])?)?;
            left = list["items"].as_array().map_or(0, Vec::len);
            Ok(left == 0)
        })?;
        ensure!(
            gone,
            "{left} pods of {name} still present 300 s after deleting it"
        );
        self.deployments.retain(|d| d != name);
        Ok(())
    }

    /// Deletes the Deployments still recorded, stops the agents and the server, and removes the work
    /// directory after checking that no mount or process is left under it.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for d in self.deployments.clone() {
            if let Err(e) = self.delete(&d) {
                eprintln!("warning: cleaning up deployment {d}: {e:#}");
                result = Err(e);
            }
        }
        for a in &mut self.agents {
            a.stop();
        }
        self.server.stop();
        let dir = &self.config.dir;
        if let Some(keep) = std::env::var_os("BENCH_KEEP_LOGS") {
            keep_logs(dir, Path::new(&keep));
        }
        let left = leftovers(dir);
        if !left.is_empty() {
            bail!(
                "left behind under {} (not removed; clean up by hand): {}",
                dir.display(),
                left.join("; ")
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        result
    }
}

/// Copies the server's and agents' logs (`*.log` in the work directory) into `keep/<work dir name>-<unix
/// time>/`, for reading a run's traces (`BERTH_LOG=debug`) after the work directory is removed.
fn keep_logs(dir: &Path, keep: &Path) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = dir
        .file_name()
        .map_or_else(|| "cluster".into(), |n| n.to_string_lossy().into_owned());
    let to = keep.join(format!("{name}-{stamp}"));
    let copied = std::fs::create_dir_all(&to).and_then(|()| {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
            }
        }
        Ok(())
    });
    match copied {
        Ok(()) => eprintln!("logs kept in {}", to.display()),
        Err(e) => eprintln!("warning: keeping the logs in {}: {e}", to.display()),
    }
}

fn node_name(config: &Config, i: usize) -> String {
    format!("{}-{i}", config.node_prefix)
}

/// `berth server` on `127.0.0.1:port`: with the embedded agent on `agent_port` and the first root, or
/// `--no-agent`.
fn server_command(
    config: &Config,
    data: &Path,
    roots: &[PathBuf],
    port: u16,
    agent_port: Option<u16>,
) -> Command {
    let mut cmd = Command::new(&config.berth);
    cmd.args(["server", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    match (config.nodes, agent_port) {
        (Nodes::Embedded, Some(agent_port)) => {
            cmd.arg("--root")
                .arg(&roots[0])
                .args(["--node-name", &node_name(config, 0)])
                .args(["--agent-listen", &format!("127.0.0.1:{agent_port}")]);
        }
        _ => {
            cmd.arg("--no-agent");
        }
    }
    cmd
}

/// `berth agent` number `i` joining the server on `127.0.0.1:server_port` with the server's bootstrap token
/// and CA, serving on `agent_port`, plus [`Config::agent_args`].
fn agent_command(
    config: &Config,
    data: &Path,
    root: &Path,
    i: usize,
    server_port: u16,
    agent_port: u16,
) -> Command {
    let mut cmd = Command::new(&config.berth);
    cmd.args([
        "agent",
        "--server",
        &format!("https://127.0.0.1:{server_port}"),
    ])
    .arg("--token-file")
    .arg(data.join("node.token"))
    .arg("--ca-file")
    .arg(data.join("pki/ca.crt"))
    .args(["--node-name", &node_name(config, i)])
    .arg("--root")
    .arg(root)
    .args(["--agent-listen", &format!("127.0.0.1:{agent_port}")])
    .args(&config.agent_args);
    cmd
}

/// The nodes of a `kubectl get nodes -o json` list whose `Ready` condition is `True`.
pub fn ready_nodes(list: &Value) -> usize {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

/// A Deployment `name` of `replicas` pods labelled `app=NAME`, each one container `app` running `image`
/// pulled with the Secret `bench`, stopped within 1 s on delete.
pub fn deployment(name: &str, image: &str, replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "imagePullSecrets": [{"name": "bench"}],
                    "containers": [{"name": "app", "image": image}]
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(nodes: Nodes, agent_args: &[&str]) -> Config {
        Config {
            berth: PathBuf::from("/b/berth"),
            kubectl: PathBuf::from("/usr/bin/kubectl"),
            dir: PathBuf::from("/w"),
            nodes,
            node_prefix: "bench-node".into(),
            agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn embedded_node_runs_in_the_server_with_the_first_root_and_its_own_port() {
        let c = config(Nodes::Embedded, &["--no-peer-blobs"]);
        let cmd = server_command(
            &c,
            Path::new("/w/data"),
            &[PathBuf::from("/w/node-0")],
            5000,
            Some(5001),
        );
        assert_eq!(cmd.get_program(), "/b/berth");
        assert_eq!(
            args(&cmd),
            [
                "server",
                "--data-dir",
                "/w/data",
                "--listen",
                "127.0.0.1:5000",
                "--root",
                "/w/node-0",
                "--node-name",
                "bench-node-0",
                "--agent-listen",
                "127.0.0.1:5001"
            ]
        );
    }

    #[test]
    fn separate_agents_mean_a_server_without_agent() {
        let c = config(Nodes::Agents(3), &[]);
        let cmd = server_command(&c, Path::new("/w/data"), &[], 5000, None);
        assert_eq!(
            args(&cmd),
            [
                "server",
                "--data-dir",
                "/w/data",
                "--listen",
                "127.0.0.1:5000",
                "--no-agent"
            ]
        );
    }

    #[test]
    fn agent_joins_with_the_servers_token_and_ca_and_gets_the_extra_flags_last() {
        let mut c = config(Nodes::Agents(2), &["--no-peer-blobs"]);
        c.node_prefix = "fleet-node".into();
        let cmd = agent_command(
            &c,
            Path::new("/w/data"),
            Path::new("/w/node-1"),
            1,
            5000,
            5002,
        );
        assert_eq!(
            args(&cmd),
            [
                "agent",
                "--server",
                "https://127.0.0.1:5000",
                "--token-file",
                "/w/data/node.token",
                "--ca-file",
                "/w/data/pki/ca.crt",
                "--node-name",
                "fleet-node-1",
                "--root",
                "/w/node-1",
                "--agent-listen",
                "127.0.0.1:5002",
                "--no-peer-blobs"
            ]
        );
        let plain = agent_command(
            &config(Nodes::Agents(2), &[]),
            Path::new("/w/data"),
            Path::new("/w/node-0"),
            0,
            5000,
            5003,
        );
        assert_eq!(args(&plain).last().unwrap(), "127.0.0.1:5003");
    }

    #[test]
    fn only_nodes_with_a_true_ready_condition_count() {
        let list = json!({"items": [
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            {"status": {"conditions": [{"type": "MemoryPressure", "status": "True"}]}},
            {"status": {}},
            {"status": {"conditions": [
                {"type": "DiskPressure", "status": "False"}, {"type": "Ready", "status": "True"}
            ]}}
        ]});
        assert_eq!(ready_nodes(&list), 2);
        assert_eq!(ready_nodes(&json!({})), 0);
    }

    #[test]
    fn deployment_selects_its_own_pods_and_pulls_with_the_bench_secret() {
        let d = deployment("fleet", "127.0.0.1:5000/bench/fleet:32m", 4);
        assert_eq!(d["metadata"]["name"], "fleet");
        assert_eq!(d["spec"]["replicas"], 4);
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            d["spec"]["template"]["metadata"]["labels"]
        );
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "fleet");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["imagePullSecrets"][0]["name"], "bench");
        assert_eq!(
            pod["containers"][0]["image"],
            "127.0.0.1:5000/bench/fleet:32m"
        );
        assert_eq!(pod["terminationGracePeriodSeconds"], 1);
    }

    #[test]
    fn nodes_count_one_for_the_embedded_agent() {
        assert_eq!(Nodes::Embedded.count(), 1);
        assert_eq!(Nodes::Agents(3).count(), 3);
    }
}
