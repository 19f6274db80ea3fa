//! Shared by the kubectl integration tests of this crate: runs the real kubectl (`/usr/bin/kubectl`, or
//! `$KUBECTL`) with a given kubeconfig and a private discovery cache directory (so no stale cache hides a change),
//! on a blocking thread so the in-process server keeps serving. It talks only to the server in the kubeconfig.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "kubectl failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "kubectl unexpectedly succeeded: {}",
            self.stdout
        );
        &self.stderr
    }
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs kubectl with `stdin` (when given) on a blocking thread.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
        let mut cmd = Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let input = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn().expect("kubectl runs");
            let mut pipe = child.stdin.take().unwrap();
            if let Some(input) = input {
                pipe.write_all(input.as_bytes()).unwrap();
            }
            drop(pipe);
            let out = child.wait_with_output().unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }
}
