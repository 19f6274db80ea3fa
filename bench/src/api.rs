//! bench-api: measures `berth server` the way its clients use it, all over loopback on one machine.
//! It starts the given (release) `berth` binary with a fresh data dir on a free 127.0.0.1 port,
//! reads the admin kubeconfig it writes (bearer token and CA), and times: Pod create throughput
//! with 1 and many concurrent clients against the raw SQLite insert rate under the same durability
//! settings (the floor), single-Pod GET latency, listing 1000 Pods as a server-side Table the way
//! kubectl asks for it (plus one real `kubectl get pods`), and watch fan-out delay to 100
//! watchers. It prints a Markdown table with goals and ratios, then stops the server. With `--etcd` it
//! then starts a real etcd cluster on loopback (Debian's etcd-server, one or three members, data in
//! the work dir), runs a second `berth server --datastore etcd://...` and repeats the create and
//! watch runs there, printing both datastores side by side in one table.
//!
//! It owns nothing berth ships and measures only what it started: it must never talk to anything
//! but loopback, never print the bearer token, and never leave the server or etcd running (each
//! process is stopped with SIGTERM at the end and killed on any early exit). Every wait is bounded.

use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use base64::Engine;
use clap::Parser;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode, Version};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The Accept header kubectl sends for `get` (Table first, then the v1beta1 Table, then plain JSON).
const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// kubectl's page size for `get`.
const KUBECTL_PAGE: usize = 500;
/// Per-request timeout for every non-watch request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server gets to become ready, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long watchers may still deliver after the last write before missing events are counted.
const WATCH_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Benchmark berth's API server: create, get, list as Table, watch fan-out")]
struct Args {
    /// The berth binary to measure (a release build)
    #[arg(long, default_value = "target/release/berth")]
    berth: PathBuf,
    /// Pods created per throughput run
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Concurrent clients of the create runs (one run each; every client has its own connection)
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Pods in the namespace that is listed
    #[arg(long, default_value_t = 1000)]
    list_pods: usize,
    /// Timed list runs per variant
    #[arg(long, default_value_t = 20)]
    list_runs: usize,
    /// Timed single-Pod GETs
    #[arg(long, default_value_t = 1000)]
    gets: usize,
    /// Concurrent watchers (each on its own connection)
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Pods created while the watchers watch
    #[arg(long, default_value_t = 200)]
    watch_writes: usize,
    /// Pause between two watched writes, in milliseconds
    #[arg(long, default_value_t = 10)]
    watch_interval_ms: u64,
    /// kubectl binary for the end-to-end `kubectl get pods` reference run
    #[arg(long, default_value = "kubectl")]
    kubectl: PathBuf,
    /// Parent of the temporary work dir (server data dir and floor databases; pick the disk under test)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work dir (server data, logs, floor databases) instead of deleting it
    #[arg(long)]
    keep: bool,
    /// Also run the create and watch measurements with the server on etcd (started here on
    /// 127.0.0.1, data in the work dir) and print SQLite and etcd side by side
    #[arg(long)]
    etcd: bool,
    /// etcd members with --etcd: 1, or 3 for a quorum cluster as in production
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    etcd_members: u16,
    /// The etcd binary with --etcd (Debian: apt-get install etcd-server)
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Run the whole `berth server` (controllers and the embedded node agent, which schedule and try to
    /// run every created Pod) instead of `berth server --api-only`, the API server alone that issue 5's
    /// goals are about
    #[arg(long)]
    with_controllers: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.pods > 0 && args.list_pods > 0 && args.list_runs > 0,
        "--pods, --list-pods and --list-runs must be positive"
    );
    ensure!(
        args.watchers > 0 && args.watch_writes > 0 && args.gets > 0,
        "--watchers, --watch-writes and --gets must be positive"
    );
    ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|c| *c > 0),
        "--concurrency needs positive values"
    );
    if args.etcd && !args.etcd_bin.exists() {
        bail!(
            "{} not found: install etcd (apt-get install etcd-server) or pass --etcd-bin",
            args.etcd_bin.display()
        );
    }
    if !args.berth.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p berth` or pass --berth",
            args.berth.display()
        );
    }
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("berth-bench-api-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work dir under {}", parent.display()))?;
    let load_start = loadavg();
    let report = run(&args, work.path()).await;
    if args.keep {
        let kept = work.keep();
        eprintln!("work dir kept: {}", kept.display());
    }
    let report = report?;
    report.print(&args, load_start, loadavg());
    Ok(())
}

async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    // The floor runs twice, before the server starts and after it stopped (the machine is shared:
    // the better of the two is the floor), on the same disk as the server's data dir.
    let rows = pod_rows("floor", args.pods);
    let mut per_txn: Vec<usize> = std::iter::once(1)
        .chain(args.concurrency.iter().copied())
        .collect();
    per_txn.sort_unstable();
    per_txn.dedup();
    let before = floor_round(work, "before", &rows, &per_txn)?;

    let data_dir = work.join("server");
    let mut server = Server::spawn(
        &args.berth,
        &data_dir,
        &work.join("server.log"),
        !args.with_controllers,
        &[],
    )?;
    let result = measure(args, &mut server, work).await;
    let stopped = server.stop();
    let mut report =
        result.map_err(|e| e.context(format!("server log: {}", server.log.display())))?;
    report.shutdown = Some(stopped?);

    let after = floor_round(work, "after", &rows, &per_txn)?;
    report.floors = per_txn
        .iter()
        .zip(before.into_iter().zip(after))
        .map(|(&per_txn, (before, after))| Floor {
            per_txn,
            before,
            after,
        })
        .collect();
    if args.etcd {
        report.etcd = Some(etcd_round(args, work).await?);
    }
    Ok(report)
}

/// The create and watch runs against a server on a fresh etcd cluster.
async fn etcd_round(args: &Args, work: &Path) -> anyhow::Result<EtcdRound> {
    let members = usize::from(args.etcd_members);
    eprintln!("etcd: starting {members} member(s)");
    let mut cluster = EtcdCluster::start(&args.etcd_bin, &work.join("etcd"), members)?;
    cluster.wait_healthy().await?;
    let version = etcd_version(&args.etcd_bin);
    let data_dir = work.join("server-etcd");
    let url = cluster.url();
    let mut server = Server::spawn(
        &args.berth,
        &data_dir,
        &work.join("server-etcd.log"),
        !args.with_controllers,
        &["--datastore", &url],
    )?;
    let result = async {
        let ep = server.wait_ready().await?;
        eprintln!("berth server on {url} ready at {}", ep.base);
        let admin = ep.client(Some(REQUEST_TIMEOUT))?;
        let creates = create_runs(args, &admin, &ep).await?;
        eprintln!(
            "watch on etcd: {} watchers, {} writes",
            args.watchers, args.watch_writes
        );
        let watch = watch_run(
            &ep,
            args.watchers,
            args.watch_writes,
            Duration::from_millis(args.watch_interval_ms),
        )
        .await?;
        anyhow::Ok((creates, watch))
    }
    .await;
    let stopped = server.stop();
    let (creates, watch) =
        result.map_err(|e| e.context(format!("server log: {}", server.log.display())))?;
    stopped?;
    cluster.stop();
    Ok(EtcdRound {
        members,
        version,
        creates,
        watch,
    })
}

/// Creates the namespaces of every run, warms the server up, then times the create runs.
async fn create_runs(args: &Args, admin: &Client, ep: &Endpoint) -> anyhow::Result<Vec<CreateRun>> {
    for ns in ["bench-warm", "bench-list", "bench-watch"]
        .into_iter()
        .map(str::to_string)
        .chain(args.concurrency.iter().map(|c| format!("bench-c{c}")))
    {
        create_namespace(admin, ep, &ns).await?;
    }

    // Warm the server (allocator, page cache, prepared statements) before anything is timed.
    eprintln!("warm-up: 100 creates");
    create_run(ep, "bench-warm", Arc::new(pod_bodies("warm", 100)), 4).await?;

    let mut creates = Vec::new();
    for &c in &args.concurrency {
        eprintln!("create: {} pods with {c} concurrent clients", args.pods);
        let run = create_run(
            ep,
            &format!("bench-c{c}"),
            Arc::new(pod_bodies("pod", args.pods)),
            c,
        )
        .await?;
        creates.push(run);
    }
    Ok(creates)
}

/// One floor measurement per batch size, each into a fresh database file; rates in inserts/s.
fn floor_round(
    work: &Path,
    round: &str,
    rows: &[(String, Vec<u8>)],
    per_txn: &[usize],
) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::new();
    for &n in per_txn {
        eprintln!(
            "floor ({round} the server): {} raw SQLite inserts, {n} per transaction",
            rows.len()
        );
        let path = work.join(format!("floor-{round}-{n}.db"));
        let elapsed = sqlite_floor(&path, rows, n)?;
        rates.push(rows.len() as f64 / elapsed.as_secs_f64());
    }
    Ok(rates)
}

async fn measure(args: &Args, server: &mut Server, work: &Path) -> anyhow::Result<Report> {
    let ep = server.wait_ready().await?;
    eprintln!("berth server ready at {}", ep.base);
    let admin = ep.client(Some(REQUEST_TIMEOUT))?;
    let version = check_version(&admin, &ep).await?;
    let creates = create_runs(args, &admin, &ep).await?;

    eprintln!("list setup: {} pods", args.list_pods);
    create_run(
        &ep,
        "bench-list",
        Arc::new(pod_bodies("pod", args.list_pods)),
        16,
    )
    .await?;

    eprintln!("get: {} single-pod reads", args.gets);
    let gets = get_run(&admin, &ep, "bench-list", args.list_pods, args.gets).await?;

    eprintln!(
        "list: {} runs each, paged as kubectl and in one request",
        args.list_runs
    );
    let paged = list_run(
        &admin,
        &ep,
        "bench-list",
        args.list_pods,
        Some(KUBECTL_PAGE),
        args.list_runs,
    )
    .await?;
    let whole = list_run(
        &admin,
        &ep,
        "bench-list",
        args.list_pods,
        None,
        args.list_runs,
    )
    .await?;

    eprintln!("kubectl get pods: cold and warm discovery cache");
    let kubectl = kubectl_runs(
        &args.kubectl,
        &server.data_dir.join("admin.kubeconfig"),
        &work.join("kube-cache"),
        "bench-list",
        args.list_pods,
    )
    .await?;

    eprintln!(
        "watch: {} watchers, {} writes",
        args.watchers, args.watch_writes
    );
    let watch = watch_run(
        &ep,
        args.watchers,
        args.watch_writes,
        Duration::from_millis(args.watch_interval_ms),
    )
    .await?;

    Ok(Report {
        version,
        floors: Vec::new(),
        creates,
        gets,
        paged,
        whole,
        kubectl,
        watch,
        shutdown: None,
        etcd: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The floor: raw SQLite inserts

/// The connection settings of berth's SQLite store (crates/store/src/sqlite/conn.rs) with its
/// default durability (`Durability::Full`).
const STORE_PRAGMAS: &str = "PRAGMA synchronous=FULL;
     PRAGMA secure_delete=ON;
     PRAGMA journal_size_limit=67108864;
     PRAGMA foreign_keys=OFF;";

/// Rows inserted before the clock starts, at least (the server gets 100 warm-up creates as well)
/// and at most (bounding the wait for the WAL to reach its working size).
const FLOOR_WARMUP: usize = 100;
const FLOOR_WARMUP_MAX: usize = 20_000;

/// Inserts every row into a fresh database at `path` over one connection, `per_txn` rows per
/// transaction, and returns the time the timed inserts took. Untimed warm-up inserts come first
/// until the WAL has reached its working size (the auto-checkpoint threshold): appends that grow
/// the WAL file cost a journal commit of the file system on every fsync, while a WAL being
/// reused after a checkpoint does not, and the server's WAL is past that point when it is timed.
fn sqlite_floor(
    path: &Path,
    rows: &[(String, Vec<u8>)],
    per_txn: usize,
) -> anyhow::Result<Duration> {
    let conn =
        rusqlite::Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "{}: journal mode is {mode}, WAL is required",
        path.display()
    );
    conn.execute_batch(STORE_PRAGMAS)?;
    conn.execute_batch("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL)")?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let autocheckpoint: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?;
    let working_size = u64::try_from(page_size * autocheckpoint).unwrap_or(0);
    let mut wal_name = path.as_os_str().to_owned();
    wal_name.push("-wal");
    let wal = PathBuf::from(wal_name);
    let insert = |chunk: &[(String, Vec<u8>)]| -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        {
            let mut insert = conn.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
            for (key, value) in chunk {
                insert.execute(rusqlite::params![key.as_bytes(), value])?;
            }
        }
        conn.execute_batch("COMMIT")
    };
    let mut warm = 0;
    while warm < FLOOR_WARMUP_MAX {
        let wal_size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if warm >= FLOOR_WARMUP && wal_size >= working_size {
            break;
        }
        let chunk: Vec<(String, Vec<u8>)> = (warm..warm + per_txn)
            .map(|k| {
                let (key, value) = &rows[k % rows.len()];
                (format!("{key}-warm-{k}"), value.clone())
            })
            .collect();
        insert(&chunk)?;
        warm += per_txn;
    }
    let start = Instant::now();
    for chunk in rows.chunks(per_txn) {
        insert(chunk)?;
    }
    let elapsed = start.elapsed();
    let count: i64 = conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?;
    let want = rows.len() + warm;
    ensure!(
        count as usize == want,
        "{}: {count} rows after {want} inserts",
        path.display()
    );
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// Pods

fn pod_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

/// A realistic Pod as `kubectl create -f` would send it (about 600 bytes of JSON).
fn pod_body(name: &str, i: usize) -> Vec<u8> {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "tier": "web", "shard": format!("s{}", i % 16)},
            "annotations": {"bench.berth.dev/run": "api"}
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.bench.internal:5000/team/app:1.4.2",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "INDEX", "value": i.to_string()}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
            }],
            "imagePullSecrets": [{"name": "regcred"}],
            "restartPolicy": "Always"
        }
    })
    .to_string()
    .into_bytes()
}

fn pod_bodies(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| pod_body(&pod_name(prefix, i), i)).collect()
}

/// The same bodies keyed as the store keys them.
fn pod_rows(ns: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let name = pod_name("pod", i);
            (
                format!("/registry/core/pods/{ns}/{name}"),
                pod_body(&name, i),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Server process and client

/// The bearer token; never printed.
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What a client needs to reach the server (from its admin kubeconfig).
#[derive(Debug)]
struct Endpoint {
    base: String,
    ca_pem: String,
    token: Token,
}

impl Endpoint {
    fn from_kubeconfig(path: &Path) -> anyhow::Result<Endpoint> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let field = |v: Option<&serde_yaml::Value>, what: &str| -> anyhow::Result<String> {
            v.and_then(serde_yaml::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{}: {what} missing", path.display()))
        };
        let cluster = doc
            .get("clusters")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("cluster"));
        let base = field(
            cluster.and_then(|c| c.get("server")),
            "clusters[0].cluster.server",
        )?;
        let ca = field(
            cluster.and_then(|c| c.get("certificate-authority-data")),
            "certificate-authority-data",
        )?;
        let ca_pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(ca.trim())
                .with_context(|| {
                    format!(
                        "{}: certificate-authority-data is not base64",
                        path.display()
                    )
                })?,
        )
        .with_context(|| {
            format!(
                "{}: certificate-authority-data is not PEM text",
                path.display()
            )
        })?;
        let user = doc
            .get("users")
            .and_then(|u| u.get(0))
            .and_then(|u| u.get("user"));
        let token = Token(field(
            user.and_then(|u| u.get("token")),
            "users[0].user.token",
        )?);
        Ok(Endpoint {
            base: base.trim_end_matches('/').to_string(),
            ca_pem,
            token,
        })
    }

    /// A client with its own connection pool: TLS 1.2/1.3 via rustls and ring, trusting only the
    /// server's CA, offering HTTP/2 through ALPN, sending the bearer token on every request.
    fn client(&self, timeout: Option<Duration>) -> anyhow::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(cert.context("parsing the kubeconfig CA")?)
                .context("adding the kubeconfig CA")?;
        }
        ensure!(!roots.is_empty(), "the kubeconfig CA holds no certificate");
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.0))
            .context("the kubeconfig token is not a valid header value")?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let mut b = Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().context("building the HTTP client")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The `berth server` child process.
struct Server {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    fn spawn(
        berth: &Path,
        data_dir: &Path,
        log: &Path,
        api_only: bool,
        extra: &[&str],
    ) -> anyhow::Result<Server> {
        // Ask the kernel for a free port; the tiny window before the server binds it is harmless
        // on loopback (a clash shows up as the server failing to start, with its log).
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(berth)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen.to_string())
            .args(api_only.then_some("--api-only"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} server", berth.display()))?;
        Ok(Server {
            child,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until the kubeconfig is written and `/readyz` answers 200.
    async fn wait_ready(&mut self) -> anyhow::Result<Endpoint> {
        let deadline = Instant::now() + START_TIMEOUT;
        let kubeconfig = self.data_dir.join("admin.kubeconfig");
        let mut last = String::from("no kubeconfig yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "berth server exited ({status}) before it was ready; last log lines:\n{}",
                    self.log_tail()
                );
            }
            if kubeconfig.exists() {
                match Endpoint::from_kubeconfig(&kubeconfig) {
                    Ok(ep) => {
                        let client = ep.client(Some(Duration::from_secs(2)))?;
                        match client.get(ep.url("/readyz")).send().await {
                            Ok(r) if r.status() == StatusCode::OK => return Ok(ep),
                            Ok(r) => last = format!("/readyz answered {}", r.status()),
                            Err(e) => last = format!("/readyz: {}", error_chain(&e)),
                        }
                    }
                    Err(e) => last = format!("{e:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "berth server not ready after {}s ({last}); last log lines:\n{}",
            START_TIMEOUT.as_secs(),
            self.log_tail()
        )
    }

    /// SIGTERM, then wait for a graceful exit; kill after [`STOP_TIMEOUT`].
    fn stop(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "berth server had already exited ({status}); last log lines:\n{}",
                self.log_tail()
            );
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("server pid out of range")?;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(None)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Reads a response fully and fails unless it has the expected status.
async fn expect(resp: reqwest::Response, want: StatusCode, what: &str) -> anyhow::Result<Body> {
    let status = resp.status();
    let version = resp.version();
    let server_time = resp
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(server_timing);
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("{what}: reading the response body"))?;
    if status != want {
        let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        bail!("{what}: expected {want}, got {status}: {text}");
    }
    Ok(Body {
        bytes: body.to_vec(),
        version,
        server_time,
    })
}

/// A fully read response body, the HTTP version it came over and the server's own time for it.
struct Body {
    bytes: Vec<u8>,
    version: Version,
    server_time: Option<Duration>,
}

/// The `dur` of the first metric of a `Server-Timing` header (`handler;dur=12.345`, milliseconds).
fn server_timing(value: &str) -> Option<Duration> {
    let first = value.split(',').next()?;
    let dur = first
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("dur="))?;
    let millis: f64 = dur.trim().parse().ok()?;
    (millis.is_finite() && millis >= 0.0).then(|| Duration::from_secs_f64(millis / 1000.0))
}

async fn check_version(client: &Client, ep: &Endpoint) -> anyhow::Result<Version> {
    let resp = client
        .get(ep.url("/version"))
        .send()
        .await
        .context("GET /version")?;
    Ok(expect(resp, StatusCode::OK, "GET /version").await?.version)
}

async fn create_namespace(client: &Client, ep: &Endpoint, ns: &str) -> anyhow::Result<()> {
    let body =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string();
    let resp = client
        .post(ep.url("/api/v1/namespaces"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    expect(
        resp,
        StatusCode::CREATED,
        &format!("creating namespace {ns}"),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurements

struct CreateRun {
    concurrency: usize,
    pods: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// The server's own time per create (`Server-Timing`); empty when the server sent none.
    server_times: Vec<Duration>,
}

impl CreateRun {
    fn rate(&self) -> f64 {
        self.pods as f64 / self.elapsed.as_secs_f64()
    }
}

/// Creates every body in `ns` from `concurrency` clients, each with its own connection; the
/// clients take the next body from a shared counter until none is left.
async fn create_run(
    ep: &Endpoint,
    ns: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> anyhow::Result<CreateRun> {
    let url = Arc::new(ep.url(&format!("/api/v1/namespaces/{ns}/pods")));
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = ep.client(Some(REQUEST_TIMEOUT))?;
        // Open the connection (TLS handshake) before the clock starts.
        let resp = client
            .get(ep.url(&format!("/api/v1/namespaces/{ns}")))
            .send()
            .await?;
        expect(resp, StatusCode::OK, &format!("GET namespace {ns}")).await?;
        clients.push(client);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for client in clients {
        let (next, bodies, url) = (next.clone(), bodies.clone(), url.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut server = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let resp = client
                    .post(url.as_str())
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let body = expect(
                    resp,
                    StatusCode::CREATED,
                    &format!("creating pod #{i} in {url}"),
                )
                .await?;
                lat.push(t.elapsed());
                server.extend(body.server_time);
            }
            anyhow::Ok((lat, server))
        });
    }
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut server_times = Vec::with_capacity(bodies.len());
    while let Some(joined) = tasks.join_next().await {
        let (lat, server) = joined??;
        latencies.extend(lat);
        server_times.extend(server);
    }
    let elapsed = start.elapsed();
    ensure!(
        latencies.len() == bodies.len(),
        "{} of {} creates finished",
        latencies.len(),
        bodies.len()
    );
    Ok(CreateRun {
        concurrency,
        pods: bodies.len(),
        elapsed,
        latencies,
        server_times,
    })
}

/// Sequential GETs of single Pods (JSON), spread over the namespace's Pods.
async fn get_run(
    client: &Client,
    ep: &Endpoint,
    ns: &str,
    pods: usize,
    gets: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(gets);
    for i in 0..(gets + 20) {
        let name = pod_name("pod", (i * 7919) % pods);
        let url = ep.url(&format!("/api/v1/namespaces/{ns}/pods/{name}"));
        let t = Instant::now();
        let resp = client
            .get(&url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let body = expect(resp, StatusCode::OK, &format!("GET {url}")).await?;
        let took = t.elapsed();
        let obj: Value = serde_json::from_slice(&body.bytes)?;
        ensure!(
            obj["metadata"]["name"] == name.as_str(),
            "GET {url} returned another object"
        );
        if i >= 20 {
            lat.push(took); // the first 20 warm up
        }
    }
    Ok(lat)
}

/// Lists the namespace's Pods as a Table with kubectl's Accept header: with `page`, following
/// `continue` like kubectl does; each run's time is the wall time of all its pages, bodies read.
async fn list_run(
    client: &Client,
    ep: &Endpoint,
    ns: &str,
    expect_rows: usize,
    page: Option<usize>,
    runs: usize,
) -> anyhow::Result<ListRun> {
    let mut times = Vec::with_capacity(runs);
    let mut server = Vec::with_capacity(runs);
    let (mut bytes, mut pages) = (0, 0);
    for run in 0..(runs + 2) {
        let t = Instant::now();
        let mut bodies = Vec::new();
        let mut server_time = Some(Duration::ZERO);
        let mut cont: Option<String> = None;
        for _ in 0..=expect_rows {
            let mut req = client
                .get(ep.url(&format!("/api/v1/namespaces/{ns}/pods")))
                .header(ACCEPT, ACCEPT_TABLE);
            if let Some(p) = page {
                req = req.query(&[("limit", p.to_string())]);
            }
            if let Some(c) = &cont {
                req = req.query(&[("continue", c)]);
            }
            let resp = req.send().await.context("listing pods as Table")?;
            let body = expect(resp, StatusCode::OK, "listing pods as Table").await?;
            // Only the continue token is needed before the next page; the rest is checked after
            // the clock stops.
            cont = if page.is_some() {
                continue_token(&body.bytes)?
            } else {
                None
            };
            server_time = server_time.zip(body.server_time).map(|(a, b)| a + b);
            bodies.push(body.bytes);
            if cont.is_none() {
                break;
            }
        }
        let took = t.elapsed();
        let mut rows = 0;
        for b in &bodies {
            let table: Value = serde_json::from_slice(b)?;
            ensure!(
                table["kind"] == "Table",
                "list with Accept {ACCEPT_TABLE} did not return a Table but {}",
                table["kind"]
            );
            rows += table["rows"].as_array().map_or(0, Vec::len);
        }
        ensure!(
            rows == expect_rows,
            "the Table list returned {rows} rows, expected {expect_rows}"
        );
        if run >= 2 {
            times.push(took); // two warm-up runs
            server.extend(server_time);
            bytes = bodies.iter().map(Vec::len).sum();
            pages = bodies.len();
        }
    }
    Ok(ListRun {
        times,
        server,
        bytes,
        pages,
    })
}

fn continue_token(body: &[u8]) -> anyhow::Result<Option<String>> {
    let v: Value = serde_json::from_slice(body).context("parsing a Table page")?;
    Ok(v["metadata"]["continue"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string))
}

struct ListRun {
    /// Client-side wall time of each run.
    times: Vec<Duration>,
    /// Server time of each run (the pages' `Server-Timing` summed); empty when the server sent none.
    server: Vec<Duration>,
    bytes: usize,
    pages: usize,
}

/// `kubectl get pods` end to end, first with an empty discovery cache, then with it filled.
async fn kubectl_runs(
    kubectl: &Path,
    kubeconfig: &Path,
    cache: &Path,
    ns: &str,
    expect_rows: usize,
) -> anyhow::Result<KubectlResult> {
    let mut times = Vec::new();
    for _ in 0..2 {
        let mut cmd = tokio::process::Command::new(kubectl);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--request-timeout=30s", "-n", ns, "get", "pods"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let t = Instant::now();
        let out = match output_within(&mut cmd, Duration::from_secs(90)).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(KubectlResult::Missing(kubectl.display().to_string()));
            }
            r => r.with_context(|| format!("running {} get pods", kubectl.display()))?,
        };
        let took = t.elapsed();
        if !out.status.success() {
            bail!(
                "kubectl get pods failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        ensure!(
            header.starts_with("NAME") && header.contains("STATUS"),
            "kubectl printed no Table header: {header:?}"
        );
        let rows = lines.count();
        ensure!(
            rows == expect_rows,
            "kubectl get pods printed {rows} rows, expected {expect_rows}"
        );
        times.push(took);
    }
    Ok(KubectlResult::Ran {
        cold: times[0],
        warm: times[1],
    })
}

/// `output()` bounded in time (the child is killed on timeout through `kill_on_drop`).
async fn output_within(
    cmd: &mut tokio::process::Command,
    limit: Duration,
) -> std::io::Result<std::process::Output> {
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("did not finish within {}s", limit.as_secs()),
        )),
    }
}

enum KubectlResult {
    Ran { cold: Duration, warm: Duration },
    Missing(String),
}

struct WatchRun {
    watchers: usize,
    writes: usize,
    /// Receipt minus the write's response, per (watcher, event) received.
    delays: Vec<Duration>,
    /// Receipt minus the moment the write request was sent.
    from_send: Vec<Duration>,
    /// Events that reached a watcher before the writer had read its own response.
    early: usize,
    missing: usize,
    write_span: Duration,
}

/// Opens `watchers` watches (each its own connection) from the current resourceVersion of an
/// empty namespace, then creates `writes` Pods there one at a time and measures, for every
/// watcher and event, how long after the create's response the watcher received it.
async fn watch_run(
    ep: &Endpoint,
    watchers: usize,
    writes: usize,
    interval: Duration,
) -> anyhow::Result<WatchRun> {
    let ns = "bench-watch";
    let writer = ep.client(Some(REQUEST_TIMEOUT))?;
    let list = writer
        .get(ep.url(&format!("/api/v1/namespaces/{ns}/pods")))
        .header(ACCEPT, "application/json")
        .send()
        .await?;
    let list: Value = serde_json::from_slice(
        &expect(list, StatusCode::OK, "listing the watch namespace")
            .await?
            .bytes,
    )?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("list has no metadata.resourceVersion"))?
        .to_string();
    let url = ep.url(&format!(
        "/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=600"
    ));

    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(watchers);
    let (done_tx, done_rx) = watch::channel::<Option<tokio::time::Instant>>(None);
    let mut tasks = JoinSet::new();
    for w in 0..watchers {
        // No total timeout on a watch client: the stream is long-lived; waits are bounded below.
        let client = ep.client(None)?;
        let (url, ready, done) = (url.clone(), ready_tx.clone(), done_rx.clone());
        tasks.spawn(async move { (w, watcher(client, url, writes, ready, done).await) });
    }
    drop(ready_tx);
    let ready_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for n in 0..watchers {
        match tokio::time::timeout_at(ready_deadline, ready_rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => {
                // Every sender is gone: some watcher failed before it was ready.
                while let Some(joined) = tasks.join_next().await {
                    if let (w, Err(e)) = joined? {
                        return Err(e.context(format!("watcher {w}")));
                    }
                }
                bail!("only {n} of {watchers} watchers started");
            }
            Err(_) => bail!("only {n} of {watchers} watches were established within 60s"),
        }
    }

    let mut sent = Vec::with_capacity(writes);
    let mut acked = Vec::with_capacity(writes);
    let create_url = ep.url(&format!("/api/v1/namespaces/{ns}/pods"));
    let span_start = Instant::now();
    for j in 0..writes {
        let body = pod_body(&pod_name("w", j), j);
        let t = Instant::now();
        let resp = writer
            .post(&create_url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        expect(resp, StatusCode::CREATED, "creating a watched pod").await?;
        sent.push(t);
        acked.push(Instant::now());
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    let write_span = span_start.elapsed();
    done_tx.send_replace(Some(tokio::time::Instant::now() + WATCH_GRACE));

    let mut run = WatchRun {
        watchers,
        writes,
        delays: Vec::new(),
        from_send: Vec::new(),
        early: 0,
        missing: 0,
        write_span,
    };
    let collect_deadline = tokio::time::Instant::now() + WATCH_GRACE + Duration::from_secs(5);
    while let Ok(joined) = tokio::time::timeout_at(collect_deadline, tasks.join_next()).await {
        let Some(joined) = joined else { break };
        let (w, received) = joined?;
        let received = received.with_context(|| format!("watcher {w}"))?;
        for (j, at) in received.iter().enumerate() {
            match at {
                Some(at) => {
                    if *at < acked[j] {
                        run.early += 1;
                    }
                    run.delays.push(at.saturating_duration_since(acked[j]));
                    run.from_send.push(at.saturating_duration_since(sent[j]));
                }
                None => run.missing += 1,
            }
        }
    }
    ensure!(
        tasks.is_empty(),
        "{} watchers did not end within the grace period",
        tasks.len()
    );
    Ok(run)
}

/// One watcher: reads `{"type","object"}` lines and records when each `w-NNNNN` Pod's ADDED
/// event arrived. Ends when all `writes` arrived, the stream ends, or the grace period after the
/// last write is over.
async fn watcher(
    client: Client,
    url: String,
    writes: usize,
    ready: mpsc::Sender<()>,
    mut done: watch::Receiver<Option<tokio::time::Instant>>,
) -> anyhow::Result<Vec<Option<Instant>>> {
    let resp = client
        .get(&url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .context("opening the watch")?;
    ensure!(
        resp.status() == StatusCode::OK,
        "watch answered {}",
        resp.status()
    );
    ready
        .send(())
        .await
        .map_err(|_| anyhow!("benchmark gave up waiting for watchers"))?;
    drop(ready);
    let mut stream = resp.bytes_stream();
    let mut got = vec![None; writes];
    let mut count = 0;
    let mut buf: Vec<u8> = Vec::new();
    while count < writes {
        let give_up = *done.borrow_and_update();
        let next = match give_up {
            Some(at) => match tokio::time::timeout_at(at, stream.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => tokio::select! {
                n = stream.next() => n,
                changed = done.changed() => {
                    if changed.is_err() { break }
                    continue;
                }
            },
        };
        let chunk = match next {
            None => break,
            Some(c) => c.context("reading the watch stream")?,
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ev: Value = serde_json::from_slice(&line).context("parsing a watch event")?;
            match ev["type"].as_str() {
                Some("ADDED") => {}
                Some("ERROR") => bail!("watch error event: {}", ev["object"]),
                _ => continue,
            }
            let name = ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default();
            if let Some(j) = name
                .strip_prefix("w-")
                .and_then(|n| n.parse::<usize>().ok())
                && j < writes
                && got[j].is_none()
            {
                got[j] = Some(now);
                count += 1;
            }
        }
    }
    Ok(got)
}

// ---------------------------------------------------------------------------------------------
// etcd (--etcd)

/// A local etcd cluster: members `m0`.. on free 127.0.0.1 ports with their data under `dir` (the
/// work dir, the disk SQLite is measured on). Stopped with SIGTERM by [`EtcdCluster::stop`],
/// killed when dropped.
struct EtcdCluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// etcd's `--initial-cluster` for members `m0`, `m1`, ... with these peer ports.
fn initial_cluster(peer_ports: &[u16]) -> String {
    peer_ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("m{i}=http://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `--datastore` URL naming every client port.
fn etcd_url(client_ports: &[u16]) -> String {
    let endpoints: Vec<String> = client_ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    format!("etcd://{}", endpoints.join(","))
}

impl EtcdCluster {
    fn start(bin: &Path, dir: &Path, members: usize) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let client_ports = (0..members)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let peer_ports = (0..members)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let initial = initial_cluster(&peer_ports);
        let mut cluster = EtcdCluster {
            children: Vec::new(),
            client_ports,
            dir: dir.to_path_buf(),
        };
        for (i, peer) in peer_ports.iter().enumerate() {
            let log_path = dir.join(format!("m{i}.log"));
            let log = File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let client_url = format!("http://127.0.0.1:{}", cluster.client_ports[i]);
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(bin)
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "berth-bench"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {} (member m{i})", bin.display()))?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    fn url(&self) -> String {
        etcd_url(&self.client_ports)
    }

    /// Waits until every member answers `/health` with `"health":"true"` (it has a leader).
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        // Plain http on loopback; reqwest still wants a TLS backend, given one that trusts nothing.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the etcd health client")?;
        let deadline = Instant::now() + START_TIMEOUT;
        for (i, port) in self.client_ports.clone().into_iter().enumerate() {
            let log = self.dir.join(format!("m{i}.log"));
            loop {
                if let Some(status) = self.children[i].try_wait()? {
                    bail!("etcd member m{i} exited ({status}); see {}", log.display());
                }
                let healthy = match client
                    .get(format!("http://127.0.0.1:{port}/health"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::OK => r
                        .bytes()
                        .await
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                        .is_some_and(|v| v["health"] == "true"),
                    _ => false,
                };
                if healthy {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "etcd member m{i} on 127.0.0.1:{port} not healthy after {}s; see {}",
                    START_TIMEOUT.as_secs(),
                    log.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// SIGTERM to every member, then wait; kill after [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        for child in &self.children {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for child in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `3.4.23` from `etcd --version`, or "unknown".
fn etcd_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.strip_prefix("etcd Version:")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// Report

/// Floor rates (inserts/s) measured before the server started and after it stopped.
struct Floor {
    per_txn: usize,
    before: f64,
    after: f64,
}

impl Floor {
    /// The better of the two rounds: the floor is what SQLite can do on this disk.
    fn rate(&self) -> f64 {
        self.before.max(self.after)
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} inserts/s (best of {:.0} before and {:.0} after the server ran)",
            self.rate(),
            self.before,
            self.after
        )
    }
}

struct Report {
    version: Version,
    floors: Vec<Floor>,
    creates: Vec<CreateRun>,
    gets: Vec<Duration>,
    paged: ListRun,
    whole: ListRun,
    kubectl: KubectlResult,
    watch: WatchRun,
    shutdown: Option<Option<ExitStatus>>,
    /// The same create and watch runs with the server on etcd (`--etcd`).
    etcd: Option<EtcdRound>,
}

struct EtcdRound {
    members: usize,
    version: String,
    creates: Vec<CreateRun>,
    watch: WatchRun,
}

/// Nearest-rank percentile of an unsorted sample.
fn pct(sample: &[Duration], p: f64) -> Duration {
    let mut s = sample.to_vec();
    s.sort_unstable();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

impl Report {
    fn floor(&self, per_txn: usize) -> &Floor {
        self.floors
            .iter()
            .find(|f| f.per_txn == per_txn)
            .expect("a floor was measured for every batch size")
    }

    /// SQLite and etcd side by side: create throughput and watch delay.
    fn print_datastores(&self, etcd: &EtcdRound) {
        println!();
        println!(
            "| datastore comparison | SQLite | etcd {} ({} member{}) | etcd / SQLite |",
            etcd.version,
            etcd.members,
            if etcd.members == 1 { "" } else { "s" }
        );
        println!("|---|---|---|---|");
        let create = |c: &CreateRun| {
            format!(
                "{:.0} pods/s (p50 {}, p99 {})",
                c.rate(),
                ms(pct(&c.latencies, 50.0)),
                ms(pct(&c.latencies, 99.0))
            )
        };
        for (sqlite, on_etcd) in self.creates.iter().zip(&etcd.creates) {
            println!(
                "| create {} pods, {} client{} | {} | {} | {:.2}x |",
                sqlite.pods,
                sqlite.concurrency,
                if sqlite.concurrency == 1 { "" } else { "s" },
                create(sqlite),
                create(on_etcd),
                on_etcd.rate() / sqlite.rate()
            );
        }
        let watch = |w: &WatchRun| {
            format!(
                "p50 {}, p99 {}, max {}",
                ms(pct(&w.delays, 50.0)),
                ms(pct(&w.delays, 99.0)),
                ms(pct(&w.delays, 100.0))
            )
        };
        let (w, e) = (&self.watch, &etcd.watch);
        let p99 = |w: &WatchRun| pct(&w.delays, 99.0).as_secs_f64();
        println!(
            "| watch fan-out: {} watchers x {} creates, delay after the write's response | {} | {} | {:.2}x (p99) |",
            w.watchers,
            w.writes,
            watch(w),
            watch(e),
            p99(e) / p99(w).max(1e-9)
        );
        println!(
            "| watch events received / expected | {} / {} | {} / {} | |",
            w.delays.len(),
            w.watchers * w.writes,
            e.delays.len(),
            e.watchers * e.writes
        );
    }

    fn print(&self, args: &Args, load_start: String, load_end: String) {
        let single = self.floor(1).rate();
        println!("| measurement | result | goal | verdict |");
        println!("|---|---|---|---|");
        println!(
            "| SQLite floor: {} raw inserts, 1 per transaction | {} | | |",
            args.pods,
            self.floor(1).describe()
        );
        for c in &self.creates {
            let (p50, p99) = (pct(&c.latencies, 50.0), pct(&c.latencies, 99.0));
            let server = if c.server_times.is_empty() {
                String::new()
            } else {
                format!(
                    "; server time p50 {}, p99 {}",
                    ms(pct(&c.server_times, 50.0)),
                    ms(pct(&c.server_times, 99.0))
                )
            };
            println!(
                "| create {} pods, {} client{} | {:.0} pods/s (per create p50 {}, p99 {}{server}) | | |",
                c.pods,
                c.concurrency,
                if c.concurrency == 1 { "" } else { "s" },
                c.rate(),
                ms(p50),
                ms(p99)
            );
            let r = c.rate() / single;
            println!(
                "| ratio: create ({} client{}) / floor (1 per transaction) | {:.0}% | >= 50% | {} |",
                c.concurrency,
                if c.concurrency == 1 { "" } else { "s" },
                r * 100.0,
                verdict(r >= 0.5)
            );
            if c.concurrency > 1 {
                let batched = self.floor(c.concurrency);
                let rb = c.rate() / batched.rate();
                println!(
                    "| SQLite floor, batched: {} per transaction | {} | | |",
                    c.concurrency,
                    batched.describe()
                );
                println!(
                    "| ratio: create ({} clients) / batched floor ({} per transaction), stricter | {:.0}% | >= 50% | {} |",
                    c.concurrency,
                    c.concurrency,
                    rb * 100.0,
                    verdict(rb >= 0.5)
                );
            }
        }
        println!(
            "| get one pod (JSON), {} sequential | p50 {}, p99 {} | | |",
            self.gets.len(),
            ms(pct(&self.gets, 50.0)),
            ms(pct(&self.gets, 99.0))
        );
        println!(
            "| list {} pods as Table like kubectl ({} pages of limit={KUBECTL_PAGE}, {} KiB), {} runs, client side | p50 {}, p99 {} | | |",
            args.list_pods,
            self.paged.pages,
            self.paged.bytes / 1024,
            self.paged.times.len(),
            ms(pct(&self.paged.times, 50.0)),
            ms(pct(&self.paged.times, 99.0)),
        );
        if self.paged.server.is_empty() {
            println!(
                "| list {} pods as Table like kubectl, server time | not reported (no Server-Timing header) | < 100 ms | |",
                args.list_pods
            );
        } else {
            let sp99 = pct(&self.paged.server, 99.0);
            println!(
                "| list {} pods as Table like kubectl, server time (Server-Timing, pages summed) | p50 {}, p99 {} | < 100 ms | {} |",
                args.list_pods,
                ms(pct(&self.paged.server, 50.0)),
                ms(sp99),
                verdict(sp99 < Duration::from_millis(100))
            );
        }
        println!(
            "| list {} pods as Table in one request ({} KiB), {} runs | p50 {}, p99 {} | | |",
            args.list_pods,
            self.whole.bytes / 1024,
            self.whole.times.len(),
            ms(pct(&self.whole.times, 50.0)),
            ms(pct(&self.whole.times, 99.0))
        );
        match &self.kubectl {
            KubectlResult::Ran { cold, warm } => println!(
                "| `kubectl get pods` end to end, {} pods (process start to exit) | cold discovery cache {}, warm {} | reference | |",
                args.list_pods,
                ms(*cold),
                ms(*warm)
            ),
            KubectlResult::Missing(k) => {
                println!("| `kubectl get pods` end to end | not run: {k} not found | reference | |")
            }
        }
        let w = &self.watch;
        let wp99 = pct(&w.delays, 99.0);
        println!(
            "| watch fan-out: {} watchers x {} creates, delay after the write's response | p50 {}, p99 {}, max {} | p99 < 50 ms | {} |",
            w.watchers,
            w.writes,
            ms(pct(&w.delays, 50.0)),
            ms(wp99),
            ms(pct(&w.delays, 100.0)),
            verdict(wp99 < Duration::from_millis(50) && w.missing == 0)
        );
        println!(
            "| watch fan-out, delay after the write was sent | p50 {}, p99 {}, max {} | | |",
            ms(pct(&w.from_send, 50.0)),
            ms(pct(&w.from_send, 99.0)),
            ms(pct(&w.from_send, 100.0))
        );
        println!(
            "| watch events received / expected | {} / {} ({} missing; {} arrived before the writer read its response, counted as 0) | all | {} |",
            w.delays.len(),
            w.watchers * w.writes,
            w.missing,
            w.early,
            verdict(w.missing == 0)
        );
        if let Some(etcd) = &self.etcd {
            self.print_datastores(etcd);
        }
        println!();
        println!("Method:");
        println!(
            "- One machine, {} CPUs, load average {load_start} at start and {load_end} at end; everything over 127.0.0.1. \
             `{} server{}` runs with a fresh data dir; clients use HTTPS ({:?} negotiated through ALPN), \
             rustls with ring, the admin bearer token, one connection per client.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            args.berth.display(),
            if args.with_controllers {
                ""
            } else {
                " --api-only"
            },
            self.version
        );
        println!(
            "- Floor: the same Pod JSON bodies inserted into a fresh SQLite file on the same disk as the server's \
             data dir, one connection, journal_mode=WAL and synchronous=FULL (the store's defaults, with its other \
             pragmas), into one `kv(key PRIMARY KEY, value)` table; 1 insert per transaction, and for C clients also \
             C inserts per transaction, since the store commits concurrent writes as one group (that batched floor is \
             an upper bound for group commit); untimed inserts first until the WAL reached its working size \
             (the auto-checkpoint threshold), as the server's has by then; run before the server starts and again \
             after it stopped, the better round counts. berth writes each object twice (current state and watch history) plus \
             metadata; the floor writes it once."
        );
        println!(
            "- Create: {} Pods per run, C clients each taking the next Pod until none are left; pods/s = Pods / wall time \
             of the run; connections are opened and 100 warm-up creates are done before any clock starts.",
            args.pods
        );
        println!(
            "- Get and list times are client-side wall time from sending the request to the last body byte, so they \
             include loopback and TLS on top of server time; the list's server time is the sum of its pages' \
             `Server-Timing: handler;dur=` headers (request head received to encoded response handed to the \
             connection: body read, authentication, storage, rendering, serialization); list runs use kubectl's \
             exact Table Accept header and \
             follow `continue` like kubectl (p99 of {} runs is close to their maximum). `kubectl get pods` is timed \
             once with an empty discovery cache and once warm, including process start.",
            args.list_runs
        );
        println!(
            "- Watch: {} watchers `?watch=true&resourceVersion=<list RV>` (JSON, own connection each), then one writer \
             creates {} Pods sequentially, {} ms apart ({:.1} s in all); each watcher stamps an event when the chunk \
             holding it arrives; delay = that stamp minus the moment the writer had read the create's response.",
            w.watchers,
            w.writes,
            args.watch_interval_ms,
            w.write_span.as_secs_f64()
        );
        if let Some(etcd) = &self.etcd {
            println!(
                "- Datastores: the create runs (after the same warm-up) and the watch run repeated against a second \
                 fresh `berth server --datastore etcd://...` on etcd {} with {} member(s) on 127.0.0.1 (default \
                 etcd settings: fsync on every commit, heartbeat 100 ms), its data in the work dir on the same disk \
                 as the SQLite data dir. A write on etcd is one gRPC transaction to the member the client picked and \
                 a raft commit (with 3 members, a quorum of 2 fsyncs) before the API server answers.",
                etcd.version, etcd.members
            );
        }
        match self.shutdown {
            Some(Some(status)) if status.success() => {
                println!("- The server stopped cleanly on SIGTERM.")
            }
            Some(Some(status)) => println!("- The server exited with {status} on SIGTERM."),
            Some(None) => println!(
                "- The server did not stop within {}s of SIGTERM and was killed.",
                STOP_TIMEOUT.as_secs()
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn etcd_members_are_named_in_the_initial_cluster_and_the_datastore_url() {
        assert_eq!(
            initial_cluster(&[2380, 2390, 2400]),
            "m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2390,m2=http://127.0.0.1:2400"
        );
        assert_eq!(etcd_url(&[2379]), "etcd://127.0.0.1:2379");
        assert_eq!(
            etcd_url(&[2379, 2389]),
            "etcd://127.0.0.1:2379,127.0.0.1:2389"
        );
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sample: Vec<Duration> = (1..=100).rev().map(d).collect();
        assert_eq!(pct(&sample, 50.0), d(50));
        assert_eq!(pct(&sample, 99.0), d(99));
        assert_eq!(pct(&sample, 100.0), d(100));
        assert_eq!(pct(&[d(7)], 99.0), d(7));
        assert_eq!(pct(&[], 50.0), Duration::ZERO);
        // 20 runs: p99 is the maximum.
        let twenty: Vec<Duration> = (1..=20).map(d).collect();
        assert_eq!(pct(&twenty, 99.0), d(20));
    }

    #[test]
    fn floor_inserts_every_row_in_wal_mode_for_any_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        let rows = pod_rows("ns", 50);
        for per_txn in [1, 7, 64] {
            let path = dir.path().join(format!("f{per_txn}.db"));
            sqlite_floor(&path, &rows, per_txn).unwrap();
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let timed: i64 = conn
                .query_row(
                    "SELECT count(*) FROM kv WHERE CAST(key AS TEXT) NOT LIKE '%-warm-%'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(timed, 50);
            let all: i64 = conn
                .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
                .unwrap();
            let warm = all - timed;
            assert!(warm >= FLOOR_WARMUP as i64, "{warm} warm-up rows");
            // The warm-up ended once the WAL reached the auto-checkpoint size, not at its bound.
            assert!(warm < FLOOR_WARMUP_MAX as i64, "{warm} warm-up rows");
        }
    }

    #[test]
    fn pod_bodies_are_named_pods_with_stable_keys() {
        let rows = pod_rows("bench-c1", 3);
        assert_eq!(rows[2].0, "/registry/core/pods/bench-c1/pod-00002");
        let pod: Value = serde_json::from_slice(&rows[2].1).unwrap();
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["metadata"]["name"], "pod-00002");
        assert_eq!(
            pod_bodies("pod", 3)[2],
            rows[2].1,
            "the floor inserts the bodies the server gets"
        );
    }

    #[test]
    fn server_timing_duration_is_read_from_the_first_metric() {
        assert_eq!(
            server_timing("handler;dur=12.5"),
            Some(Duration::from_micros(12_500))
        );
        assert_eq!(
            server_timing("handler;desc=\"x\"; dur=0.25, db;dur=9"),
            Some(Duration::from_micros(250))
        );
        assert_eq!(server_timing("handler"), None);
        assert_eq!(server_timing("handler;dur=-1"), None);
        assert_eq!(server_timing("handler;dur=abc"), None);
    }

    #[test]
    fn continue_token_is_read_from_table_metadata() {
        let page = json!({"kind": "Table", "metadata": {"continue": "abc", "resourceVersion": "9"}, "rows": []});
        assert_eq!(
            continue_token(page.to_string().as_bytes())
                .unwrap()
                .as_deref(),
            Some("abc")
        );
        let last = json!({"kind": "Table", "metadata": {"continue": ""}, "rows": []});
        assert_eq!(continue_token(last.to_string().as_bytes()).unwrap(), None);
        assert!(continue_token(b"not json").is_err());
    }

    #[test]
    fn kubeconfig_is_parsed_and_the_token_never_shows_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    server: https://127.0.0.1:7443/\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    token: s3cr3t-token\n",
            base64::engine::general_purpose::STANDARD.encode(ca)
        );
        let path = dir.path().join("admin.kubeconfig");
        std::fs::write(&path, text).unwrap();
        let ep = Endpoint::from_kubeconfig(&path).unwrap();
        assert_eq!(ep.base, "https://127.0.0.1:7443");
        assert_eq!(ep.ca_pem, ca);
        assert_eq!(ep.url("/readyz"), "https://127.0.0.1:7443/readyz");
        assert!(!format!("{ep:?}").contains("s3cr3t"));
        std::fs::write(&path, "users: []\n").unwrap();
        let err = Endpoint::from_kubeconfig(&path).unwrap_err().to_string();
        assert!(err.contains("clusters[0].cluster.server"), "{err}");
    }
}
