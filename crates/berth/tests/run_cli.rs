//! `berth run`, `ps`, `stop`, `rm`, `logs` as a user runs them, as root with Debian's runc,
//! against the real docker-registry (TLS + htpasswd) with a dockerconfigjson Secret file. The
//! image is built in code around the host's static busybox (apt-get install busybox-static
//! runc); nothing is skipped when they are missing: the tests fail and say what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testkit::image::{Compression, Credentials, Entry, ImageBuilder};
use testkit::pki::TestPki;
use testkit::registry::{Registry, RegistryOptions, User};

const PASSWORD: &str = "run-canary-8b4e";
const APPLETS: &[&str] = &[
    "sh", "echo", "ls", "stat", "readlink", "test", "sleep", "cat",
];

struct Env {
    _pki: TestPki,
    _registry: Registry,
    dir: tempfile::TempDir,
    image: String,
    secret: PathBuf,
    ca: PathBuf,
}

impl Env {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `berth SUB --root ROOT ARGS...` (the root first: everything after IMAGE is the command).
    fn berth(&self, sub: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg(sub)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .expect("run berth")
    }

    /// `berth run` with the registry flags.
    fn run(&self, args: &[&str], command: &[&str]) -> Output {
        let mut all: Vec<&str> = vec![
            "--secret",
            self.secret.to_str().unwrap(),
            "--ca-file",
            self.ca.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        all.push(&self.image);
        if !command.is_empty() {
            all.push("--");
            all.extend_from_slice(command);
        }
        self.berth("run", &all)
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn secret_yaml(host: &str, user: &str, password: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = format!(
        r#"{{"auths":{{"{host}":{{"username":"{user}","password":"{password}","auth":"{}"}}}}}}"#,
        b64(&format!("{user}:{password}"))
    );
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\n  namespace: default\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        b64(&config)
    )
}

/// Layer 1: busybox with applet symlinks, /etc files (one of them deleted by layer 2).
/// Layer 2: a whiteout, a setuid file, a hardlinked pair.
fn busybox_image() -> testkit::image::Image {
    let mut base = testkit::image::busybox_rootfs(APPLETS);
    base.extend([
        Entry::file("etc/doomed", "removed by the upper layer\n"),
        Entry::file("etc/kept", "still here\n"),
    ]);
    ImageBuilder::new()
        .cmd(["sh"])
        .env("PATH=/bin")
        .layer(base, Compression::Gzip)
        .layer(
            vec![
                Entry::whiteout("etc/doomed"),
                Entry::file("bin/suid", "#!/bin/sh\n").mode(0o4755),
                Entry::dir("data"),
                Entry::file("data/orig", "linked\n").mode(0o640),
                Entry::hardlink("data/link", "data/orig"),
            ],
            Compression::Zstd,
        )
        .build()
        .unwrap()
}

async fn env(repo_tag: &str) -> Env {
    assert!(is_root(), "these tests run containers and must run as root");
    let pki = TestPki::new().unwrap();
    let registry = Registry::start(
        RegistryOptions::new()
            .tls(pki.server(["127.0.0.1"]).unwrap(), pki.ca_pem())
            .htpasswd([User::new("alice", PASSWORD)]),
    )
    .await
    .unwrap();
    busybox_image()
        .push(
            &registry,
            repo_tag,
            Some(&Credentials::new("alice", PASSWORD)),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let secret = dir.path().join("regcred.yaml");
    std::fs::write(
        &secret,
        secret_yaml(&registry.host_port(), "alice", PASSWORD),
    )
    .unwrap();
    let image = format!("{}/{repo_tag}", registry.host_port());
    Env {
        _pki: pki,
        _registry: registry,
        dir,
        image,
        secret,
        ca,
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Container directories the snapshotter still holds.
fn rootfs_holders(root: &Path) -> Vec<String> {
    match std::fs::read_dir(root.join("unpack/containers")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pulls_unpacks_and_returns_the_containers_exit_code_with_layers_applied() {
    let env = env("team/busybox:v1").await;

    let out = env.run(&[], &["sh", "-c", "echo hello; exit 3"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(stdout, "hello\n", "{stderr}");
    assert!(
        stderr.contains("Unable to find image"),
        "first run pulls: {stderr}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // The image is now local: no pull; the layers as the container sees them.
    let script = "test ! -e /etc/doomed && echo whiteout-applied; cat /etc/kept; \
                  stat -c '%n %a %h %i' /bin/suid /data/orig /data/link; readlink /bin/sh; \
                  ls -l /bin/suid";
    let out = env.run(&["--rm", "-e", "GREETING=hi"], &["sh", "-c", script]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("Unable to find image"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "whiteout-applied", "{stdout}");
    assert_eq!(lines[1], "still here");
    let stat = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        stat(2)[..3],
        ["/bin/suid", "4755", "1"],
        "setuid kept: {stdout}"
    );
    assert_eq!(
        stat(3)[..3],
        ["/data/orig", "640", "2"],
        "hardlink: {stdout}"
    );
    assert_eq!(
        stat(4)[..3],
        ["/data/link", "640", "2"],
        "hardlink: {stdout}"
    );
    assert_eq!(stat(3)[3], stat(4)[3], "one inode for both names: {stdout}");
    assert_eq!(lines[5], "busybox", "symlink kept");
    assert!(lines[6].starts_with("-rwsr-xr-x"), "{stdout}");

    // `-e` reaches the process.
    let out = env.run(
        &["--rm", "-e", "GREETING=hi"],
        &["sh", "-c", "echo $GREETING"],
    );
    assert_eq!(text(&out).0, "hi\n", "{}", text(&out).1);

    // `--rm` containers are gone, with their rootfs; the first one is listed as exited.
    let out = env.berth("ps", &["-a"]);
    let (ps, _) = text(&out);
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{ps}");
    assert!(rows[0].contains("Exited (3)"), "{ps}");
    assert!(rows[0].contains(&env.image), "{ps}");
    assert_eq!(
        rootfs_holders(&env.root()).len(),
        1,
        "only the kept container holds a rootfs"
    );

    let id = rows[0].split_whitespace().next().unwrap().to_string();
    let out = env.berth("rm", &[&id]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        rootfs_holders(&env.root()).is_empty(),
        "rm released the rootfs"
    );
    let (ps, _) = text(&env.berth("ps", &["-a"]));
    assert_eq!(ps.lines().count(), 1, "{ps}");
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_containers_log_stop_and_are_removed() {
    let env = env("team/busybox:v2").await;

    let out = env.run(
        &["-d", "--name", "web"],
        &["sh", "-c", "echo started; echo oops >&2; sleep 300"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let id = stdout.trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d prints the id: {stdout:?}"
    );

    let logs = wait_for("the log", Duration::from_secs(20), || {
        let out = env.berth("logs", &["web"]);
        let (o, e) = text(&out);
        (o.contains("started") && e.contains("oops")).then_some(o)
    });
    assert_eq!(logs, "started\n");

    let (ps, _) = text(&env.berth("ps", &[]));
    let row = ps
        .lines()
        .find(|l| l.ends_with("web"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(row.starts_with(&id[..12]) && row.contains("Up "), "{ps}");

    // sh as PID 1 ignores SIGTERM: stop kills it after the grace period.
    let started = Instant::now();
    let out = env.berth("stop", &["-t", "1", "web"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let (ps, _) = text(&env.berth("ps", &[]));
    assert!(
        !ps.contains("web"),
        "stopped containers are hidden without -a: {ps}"
    );
    let (ps, _) = text(&env.berth("ps", &["-a"]));
    assert!(ps.contains("Exited (137)"), "{ps}");

    // A running container needs -f to be removed.
    let out = env.run(&["-d", "--name", "busy"], &["sleep", "300"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = env.berth("rm", &["busy"]);
    assert!(
        !out.status.success(),
        "rm of a running container without -f fails"
    );
    let out = env.berth("rm", &["-f", "busy", "web"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (ps, _) = text(&env.berth("ps", &["-a"]));
    assert_eq!(ps.lines().count(), 1, "{ps}");
    assert!(rootfs_holders(&env.root()).is_empty());

    // logs -f returns once the container exits; a detached --rm container cleans up after itself.
    let out = env.run(
        &["-d", "--name", "brief"],
        &["sh", "-c", "echo one; sleep 1; echo two"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let out = env.berth("logs", &["-f", "brief"]);
    assert_eq!(text(&out).0, "one\ntwo\n");
    let out = env.run(&["-d", "--rm"], &["sh", "-c", "exit 0"]);
    assert!(out.status.success(), "{:?}", text(&out));
    wait_for("the --rm container to go", Duration::from_secs(20), || {
        (rootfs_holders(&env.root()).len() == 1).then(String::new)
    });
    let (ps, _) = text(&env.berth("ps", &["-a"]));
    assert_eq!(ps.lines().count(), 2, "only `brief` is left: {ps}");
    assert!(env.berth("rm", &["brief"]).status.success());
}

/// A SIGTERM sent to a foreground `berth run` (as a service manager or `kill` would) reaches the
/// container, whose handler decides the exit code, which becomes berth's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_foreground_run_reaches_the_container() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let env = env("team/busybox:term").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["run", "--root"])
        .arg(env.root())
        .args(["--rm", "--secret", env.secret.to_str().unwrap()])
        .args(["--ca-file", env.ca.to_str().unwrap(), &env.image, "--"])
        .args([
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A session of its own: the signal reaches berth only, not runc through the group.
        .process_group(0)
        .spawn()
        .expect("run berth");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(
        status.code(),
        Some(7),
        "the container's exit code is berth's"
    );
    assert!(rootfs_holders(&env.root()).is_empty(), "--rm cleaned up");
}

/// `berth pull` unpacks the layers (a later `run` finds the snapshots), `--no-unpack` only fetches,
/// and `rmi` releases the image's snapshots along with its blobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpacks_unless_told_not_to_and_rmi_releases_the_snapshots() {
    let env = env("team/busybox:unpack").await;
    let pull = |extra: &[&str]| {
        let mut args = vec![
            "--secret",
            env.secret.to_str().unwrap(),
            "--ca-file",
            env.ca.to_str().unwrap(),
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(&env.image);
        let out = env.berth("pull", &args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let last = stdout.lines().last().unwrap().to_string();
        serde_json::from_str::<serde_json::Value>(&last).unwrap()
    };
    let snapshots_dir = env.root().join("unpack").join("snapshots");
    let fetched = pull(&["--no-unpack"]);
    assert_eq!(fetched["snapshots"], serde_json::json!([]));
    let count = || std::fs::read_dir(&snapshots_dir).map_or(0, |d| d.count());
    assert_eq!(count(), 0, "--no-unpack leaves no snapshot");

    let unpacked = pull(&[]);
    let chain = unpacked["snapshots"].as_array().unwrap().len();
    assert_eq!(chain, 2, "both layers unpacked: {unpacked}");
    assert_eq!(count(), 2);

    let out = env.berth("rmi", &[&env.image]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(count(), 0, "rmi removed the snapshots: {stdout}");
    assert!(stdout.contains("Deleted snapshot: "), "{stdout}");
}
