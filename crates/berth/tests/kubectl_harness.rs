//! Shared harness of the kubectl end-to-end tests: starts the built `berth server` on a free loopback port with a
//! temporary data dir, waits for `/readyz`, and runs the real kubectl (`/usr/bin/kubectl`, or `$KUBECTL`) with
//! the generated admin kubeconfig. Included by each `kubectl_*.rs` test through `#[path]`; compiled alone it
//! checks its own start/stop cycle. It must never talk to anything but 127.0.0.1.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `berth server`; stopped with SIGTERM on drop.
pub struct Server {
    child: Option<Child>,
    pub data: tempfile::TempDir,
    logs: tempfile::TempDir,
    pub port: u16,
    /// Extra `berth server` arguments, kept across restarts.
    args: Vec<String>,
}

/// What one kubectl run printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "kubectl failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
    /// Asserts failure and returns stderr.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "kubectl unexpectedly succeeded\nstdout: {}",
            self.stdout
        );
        &self.stderr
    }
}

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// The API server alone (`--api-only`): no controllers, no node agent.
    pub fn start() -> Server {
        Self::start_with(&["--api-only"])
    }

    /// `berth server` with extra arguments (e.g. `--root DIR` for the embedded agent).
    pub fn start_with(args: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        Self::start_in(data, logs, args.iter().map(|a| a.to_string()).collect())
    }

    /// Stops the server (SIGTERM) and starts it again on the same data dir and a new port.
    pub fn restart(mut self) -> Server {
        let status = self.stop();
        assert!(status.success(), "server exit status {status}");
        let data = tempfile::tempdir().unwrap();
        let data = std::mem::replace(&mut self.data, data);
        let logs = std::mem::replace(&mut self.logs, tempfile::tempdir().unwrap());
        Self::start_in(data, logs, std::mem::take(&mut self.args))
    }

    /// Starts a server again on the data dir of a stopped one.
    pub fn restart_stopped(mut self) -> Server {
        assert!(self.child.is_none(), "stop the server first");
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        let logs = std::mem::replace(&mut self.logs, tempfile::tempdir().unwrap());
        Self::start_in(data, logs, std::mem::take(&mut self.args))
    }

    fn start_in(data: tempfile::TempDir, logs: tempfile::TempDir, args: Vec<String>) -> Server {
        let port = free_port();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.path().join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["server", "--data-dir"])
            .arg(data.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(&args)
            .env("BERTH_LOG", "info,apiserver=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start berth server");
        let mut server = Server {
            child: Some(child),
            data,
            logs,
            port,
            args,
        };
        server.wait_ready();
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("admin.kubeconfig")
    }

    pub fn viewer_kubeconfig(&self) -> PathBuf {
        self.data.path().join("viewer.kubeconfig")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berth server exited early ({status}):\n{}", self.logs());
            }
            if self.kubeconfig().exists() {
                let r = self.kubectl(&["get", "--raw", "/readyz"]);
                if r.code == 0 && r.stdout.trim() == "ok" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready after 60s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's stderr so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.logs.path().join("server.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_as(&self.kubeconfig(), args, None)
    }

    /// Runs kubectl with stdin.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.kubectl_as(&self.kubeconfig(), args, Some(stdin))
    }

    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        cmd.env_remove("KUBECONFIG").env("HOME", self.logs.path());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// The scratch dir (not the data dir): kubectl's HOME, test files, the server's log.
    pub fn scratch(&self) -> &Path {
        self.logs.path()
    }

    /// Writes `content` to a file in the (non-data) scratch dir and returns its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.logs.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "server did not stop within 20s of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every byte of the data dir's files whose name starts with `state.db` (database, WAL, shm).
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(self.data.path()).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("state.db") {
                all.extend(std::fs::read(e.path()).unwrap());
            }
        }
        all
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The seed Pod of the acceptance list.
pub const SEED_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: foo
  namespace: default
spec:
  containers:
    - name: foo
      image: www.3rdregistry.com/janedoe/awesomeapp:v1
  imagePullSecrets:
    - name: myregistrykey
";

#[test]
fn harness_server_starts_writes_private_kubeconfigs_and_stops_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Server::start();
    for f in [
        "admin.kubeconfig",
        "viewer.kubeconfig",
        "tokens.json",
        "pki/ca.key",
        "pki/serving.key",
    ] {
        let mode = std::fs::metadata(s.data.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["kubeconfig", "--data-dir"])
        .arg(s.data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(s.kubeconfig()).unwrap()
    );
    let status = s.stop();
    assert!(status.success(), "exit status {status}");
}
