//! The console's JavaScript, tested for real. `console_in_chromium_...` starts a real in-process API server
//! (`apiserver::spawn`) serving `console::router()` at `/ui` on its HTTPS listener and runs `e2e/console.test.mjs`:
//! playwright-core drives Debian's `/usr/bin/chromium` (headless) to log in, create a registry Secret (form and
//! config.json upload) and a Deployment through the forms and check them through the API, check the matching
//! warning, scale and restart, trust a CA by fingerprint, watch the pod list update live, and see a viewer's
//! forbidden message. The other tests run the view logic, the live-list protocol and the shared keyring table in
//! node. A missing chromium or node FAILS with the command that installs them: nothing here skips silently.
//! Screenshots of each page land in `<target>/tmp/console-screenshots/`. The scenario with a real node agent
//! (Test connection, Fetch certificate, a pod healed by trusting its registry from the page) needs the `berth`
//! binary and lives in `crates/berth/tests/console_e2e.rs`, driving `e2e/agent.test.mjs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

/// Panics (never skips) when node is missing.
fn require_node() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "MISSING DEPENDENCY: `node` is not runnable ({node:?}); the console browser tests need Node.js >= 20 \
         (Debian: apt-get install -y nodejs npm, or run scripts/install-deps)"
    );
}

/// Panics (never skips) when Chromium is missing.
fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "MISSING DEPENDENCY: {CHROMIUM} does not exist; the console browser tests drive Debian's Chromium \
         (apt-get install -y chromium, or run scripts/install-deps)"
    );
}

/// `npm ci` in e2e/ when playwright-core is not installed yet (the only download: the pinned lock file).
fn ensure_node_modules() {
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

fn kubeconfig_token(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["users"][0]["user"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no users[0].user.token in {}", path.display()))
        .to_owned()
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

/// Runs `node <script>` with `env`, failing the test with its output when it fails or exceeds `limit`.
fn run_node(script: &Path, env: &[(&str, String)], limit: Duration) {
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(e2e_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start node");
    let started = std::time::Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{} did not finish within {limit:?}:\n{}\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_logs_in_creates_secret_and_deployment_and_updates_live() {
    require_node();
    require_chromium();
    ensure_node_modules();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = apiserver::CancellationToken::new();
    let config = apiserver::ServerConfig {
        data_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let running = apiserver::spawn(config, Some(console::router()), shutdown.clone())
        .await
        .expect("start the API server");
    let admin = kubeconfig_token(&running.admin_kubeconfig);
    let viewer = kubeconfig_token(&dir.path().join("server/viewer.kubeconfig"));
    let admin_file = dir.path().join("admin.token");
    let viewer_file = dir.path().join("viewer.token");
    write_private(&admin_file, &admin);
    write_private(&viewer_file, &viewer);
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let env = vec![
        ("BERTH_URL", running.url.clone()),
        ("BERTH_ADMIN_TOKEN_FILE", admin_file.display().to_string()),
        ("BERTH_VIEWER_TOKEN_FILE", viewer_file.display().to_string()),
        ("BERTH_CHROMIUM", CHROMIUM.to_owned()),
        ("BERTH_SCREENSHOTS", screenshots.display().to_string()),
        ("NODE_EXTRA_CA_CERTS", running.ca_file.display().to_string()),
    ];
    let script = e2e_dir().join("console.test.mjs");
    tokio::task::spawn_blocking(move || run_node(&script, &env, Duration::from_secs(240)))
        .await
        .unwrap();
    shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

#[test]
fn javascript_keyring_agrees_with_the_shared_table() {
    require_node();
    run_node(
        &e2e_dir().join("keyring.test.mjs"),
        &[],
        Duration::from_secs(60),
    );
}

#[test]
fn javascript_view_logic_matches_kubectl_and_kubelet() {
    require_node();
    run_node(
        &e2e_dir().join("view.test.mjs"),
        &[],
        Duration::from_secs(60),
    );
}

#[test]
fn javascript_live_list_resumes_watches_and_relists_after_410() {
    require_node();
    run_node(
        &e2e_dir().join("watch.test.mjs"),
        &[],
        Duration::from_secs(60),
    );
}
