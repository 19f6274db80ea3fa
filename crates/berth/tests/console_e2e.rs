//! The web console's end-to-end scenario with a REAL node agent: the built `berth server` with its embedded agent
//! (Debian's runc), two real TLS + htpasswd docker-registries whose CAs nobody trusts (A on 127.0.0.1 and B on
//! 127.0.0.2, each with its own test PKI and the same image), and Debian's Chromium driven by playwright-core
//! through `crates/console/e2e/agent.test.mjs`: log in, trust A through "Fetch certificate" (the fingerprint the
//! test hands over stands for the one a registry's administrator confirms out of band), create registry secrets
//! with "Test connection" (Rejected, Accepted, and B's untrusted certificate with its host), a Deployment with
//! Secret Authentication whose pod reaches Running, a Deployment on B warned about before "Create", then open its
//! failing pod (unknown CA), trust the certificate from the page and watch the pod recover. Then the same
//! `RegistryCheck` API with the real kubectl: typed credentials (never echoed) and, as the viewer, the secret by
//! reference. Runs as root; a
//! missing node, Chromium or playwright-core FAILS with the command that installs it. Screenshots land in
//! `<target>/tmp/console-screenshots/agent-*.png`.

#[path = "kubectl_harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::Server;
use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const CHROMIUM: &str = "/usr/bin/chromium";
const USER: &str = "janedoe";
const PASSWORD: &str = "console-e2e-pw-7f3a";
const REPO: &str = "janedoe/awesomeapp:v1";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/e2e")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Panics (never skips) when node, Chromium or playwright-core is missing and cannot be installed.
fn require_browser_tools() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "MISSING DEPENDENCY: `node` is not runnable ({node:?}); the console browser test needs Node.js >= 20 \
         (Debian: apt-get install -y nodejs npm, or run scripts/install-deps)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "MISSING DEPENDENCY: {CHROMIUM} does not exist; the console browser test drives Debian's Chromium \
         (apt-get install -y chromium, or run scripts/install-deps)"
    );
    let dir = e2e_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .expect("run npm ci in crates/console/e2e (is npm installed? run scripts/install-deps)");
    assert!(
        out.status.success(),
        "npm ci in {} failed: {}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn awesomeapp() -> testkit::image::Image {
    ImageBuilder::new()
        .cmd(["sh", "-c", "echo hello from awesomeapp; exec sleep 3600"])
        .env("PATH=/bin")
        .layer(
            testkit::image::busybox_rootfs(&["sh", "echo", "sleep"]),
            Compression::Gzip,
        )
        .layer(
            vec![Entry::file("etc/motd", "awesome\n")],
            Compression::Gzip,
        )
        .build()
        .unwrap()
}

/// A TLS + htpasswd registry on `ip` with its own PKI (nobody trusts it), holding [`REPO`].
async fn registry_on(
    ip: [u8; 4],
    name: &str,
    image: &testkit::image::Image,
) -> (TestPki, Registry) {
    let pki = TestPki::named(name).unwrap();
    let ip = std::net::IpAddr::from(ip);
    let registry = Registry::start(
        RegistryOptions::new()
            .ip(ip)
            .tls(pki.server([ip.to_string()]).unwrap(), pki.ca_pem())
            .htpasswd([User::new(USER, PASSWORD)]),
    )
    .await
    .unwrap();
    image
        .push(&registry, REPO, Some(&Credentials::new(USER, PASSWORD)))
        .await
        .unwrap();
    (pki, registry)
}

/// The bearer token of a kubeconfig the server wrote (`token: ...` under `users[0].user`).
fn kubeconfig_token(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches(['"', '\'']).to_string())
        .unwrap_or_else(|| panic!("no token in {}", path.display()))
}

fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, contents.as_bytes()).unwrap();
}

/// Polls the API (as kubectl) until one node is Ready.
fn wait_ready_node(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.kubectl(&[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        if r.code == 0 && r.stdout.trim() == "True" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no Ready node after 60s:\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `node <script>` with `env`, failing with its output when it fails or exceeds `limit`.
fn run_node(script: &Path, env: &[(&str, String)], limit: Duration, s: &Server) {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(e2e_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start node");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{} did not finish within {limit:?}:\n{}\n{}\nserver log:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                s.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if !out.status.success() {
        let pods = s.kubectl(&["get", "pods", "-o", "wide"]);
        let events = s.kubectl(&["get", "events"]);
        let logs = s.logs();
        let tail: Vec<&str> = logs.lines().rev().take(80).collect();
        panic!(
            "{} failed ({}):\n{stdout}\n{stderr}\npods:\n{}\nevents:\n{}\nserver log (tail):\n{}",
            script.display(),
            out.status,
            pods.stdout,
            events.stdout,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_a_real_agent_tests_credentials_trusts_by_fingerprint_and_heals_a_pod() {
    assert!(
        is_root(),
        "this test runs containers with runc and must run as root"
    );
    require_browser_tools();
    let image = awesomeapp();
    let (pki_a, reg_a) = registry_on([127, 0, 0, 1], "registry a", &image).await;
    let (pki_b, reg_b) = registry_on([127, 0, 0, 2], "registry b", &image).await;

    // Pull back-off 2 s doubling to at most 4 s, so a trust fix shows within seconds.
    let node_root = tempfile::tempdir().unwrap();
    let s = Server::start_with(&[
        "--root",
        node_root.path().to_str().unwrap(),
        "--image-pull-backoff",
        "2s",
        "--image-pull-backoff-max",
        "4s",
    ]);
    wait_ready_node(&s);

    let secrets = tempfile::tempdir().unwrap();
    let admin_file = secrets.path().join("admin.token");
    write_private(&admin_file, &kubeconfig_token(&s.kubeconfig()));
    let password_file = secrets.path().join("registry.password");
    write_private(&password_file, PASSWORD);
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    // The anchor "Fetch certificate" proposes is the top CA each registry sends: its intermediate.
    let anchor = |pki: &TestPki| format!("sha256:{}", pki.intermediate.fingerprint_sha256());
    let env = vec![
        ("BERTH_URL", format!("https://127.0.0.1:{}", s.port)),
        ("BERTH_ADMIN_TOKEN_FILE", admin_file.display().to_string()),
        (
            "BERTH_REGISTRY_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        ("BERTH_REGISTRY_USER", USER.to_string()),
        ("BERTH_REGISTRY_A", reg_a.host_port()),
        ("BERTH_REGISTRY_B", reg_b.host_port()),
        ("BERTH_ANCHOR_A", anchor(&pki_a)),
        ("BERTH_ANCHOR_B", anchor(&pki_b)),
        ("BERTH_IMAGE_PATH", REPO.to_string()),
        ("BERTH_CHROMIUM", CHROMIUM.to_string()),
        ("BERTH_SCREENSHOTS", screenshots.display().to_string()),
        (
            "NODE_EXTRA_CA_CERTS",
            s.data.path().join("pki/ca.crt").display().to_string(),
        ),
    ];
    let script = e2e_dir().join("agent.test.mjs");
    run_node(&script, &env, Duration::from_secs(150), &s);

    // The same API with the real kubectl and the real agent: typed credentials (never echoed back), and the
    // viewer testing the browser-made secret by reference (it may read Secrets, so it may test them).
    let typed = format!(
        "apiVersion: berth.dev/v1\nkind: RegistryCheck\nmetadata: {{name: cli}}\nspec: {{server: \"{}\", username: {USER}, password: {PASSWORD}}}\n",
        reg_a.host_port()
    );
    let out = s
        .kubectl_stdin(&["create", "-f", "-", "-o", "json"], &typed)
        .ok()
        .to_string();
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"]["result"], "Accepted", "{out}");
    assert!(
        !out.contains(PASSWORD),
        "the password is never echoed: {out}"
    );
    let by_ref = format!(
        "apiVersion: berth.dev/v1\nkind: RegistryCheck\nmetadata: {{name: by-ref}}\nspec: {{image: \"{}/{REPO}\", secretRef: {{namespace: default, name: regcred}}}}\n",
        reg_a.host_port()
    );
    let out = s.kubectl_as(
        &s.viewer_kubeconfig(),
        &["create", "-f", "-", "-o", "json"],
        Some(&by_ref),
    );
    let answer: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(answer["status"]["result"], "Accepted", "{}", out.stdout);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("regcred"),
        "{}",
        out.stdout
    );

    // What the browser did is what the cluster holds: both hosts trusted with the confirmed anchors, and no
    // password in the server's log.
    let hosts = s
        .kubectl(&[
            "get",
            "registryhosts",
            "-o",
            "jsonpath={.items[*].spec.host}",
        ])
        .ok()
        .to_string();
    assert!(
        hosts.contains(&reg_a.host_port()) && hosts.contains(&reg_b.host_port()),
        "{hosts}"
    );
    assert!(
        !s.logs().contains(PASSWORD),
        "the registry password never reaches the server log"
    );
    // Leave no container behind (an agent keeps its containers running across its own shutdown): delete the
    // workloads, wait for their pods to be gone, then stop the server.
    s.kubectl(&[
        "delete",
        "deployments,statefulsets",
        "--all",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=90s",
    ])
    .ok();
    s.kubectl(&["delete", "pods", "--all", "--wait=true", "--timeout=90s"])
        .ok();
    let root = node_root.path().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !shims_under(&root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the agent left containers of deleted pods running: {:?}",
            shims_under(&root)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(s);
}

/// The container shims (`berth __shim ROOT/runtime ID`) still running under the agent root `root`.
fn shims_under(root: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("__shim") && c.contains(root))
        .collect()
}
