//! Processes the benchmark binaries start and must not leave behind: [`Proc`] (a child with its output in a log
//! file, stopped with SIGTERM and then SIGKILL when dropped), [`free_port`], [`tail`] of a log for error
//! messages, [`leftovers`] (mounts and processes still naming a work directory) and [`mentions`] (a text in any
//! file under a directory, to wait for a node to write its configuration). It never signals a process it did
//! not spawn.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process stopped with SIGTERM (then SIGKILL after 60 s) when dropped.
pub struct Proc {
    /// What the benchmark calls it in messages.
    pub name: String,
    child: Option<Child>,
    /// Its standard output and error.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with standard output and error going to the file `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    /// An error with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            self.child = None;
            bail!(
                "{} exited early ({status}); log tail:\n{}",
                self.name,
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 60 s; reaps it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill on the pid of a child this process spawned and has not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("note: {} exited with {status} on SIGTERM", self.name);
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    eprintln!(
                        "warning: {} ignored SIGTERM for 60 s; killing it",
                        self.name
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of the file at `path` (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Mounts and processes that still reference `dir`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        if let Some(point) = line.split(' ').nth(4)
            && point.starts_with(&needle)
        {
            found.push(format!("mount {point}"));
        }
    }
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(format!("process {pid}: {}", cmdline.trim()));
            }
        }
    }
    found
}

/// Whether any file under `dir` contains `text`.
pub fn mentions(dir: &Path, text: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            mentions(&p, text)
        } else {
            std::fs::read_to_string(&p).is_ok_and(|s| s.contains(text))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_searches_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!mentions(dir.path(), "127.0.0.1:5000"));
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(
            dir.path().join("a/b/hosts.toml"),
            "server = \"https://127.0.0.1:5000\"\n",
        )
        .unwrap();
        assert!(mentions(dir.path(), "127.0.0.1:5000"));
        assert!(!mentions(dir.path(), "127.0.0.1:5001"));
    }

    #[test]
    fn leftovers_names_a_process_whose_command_line_holds_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(leftovers(dir.path()).is_empty());
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30; :"])
            .arg(dir.path())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let found = leftovers(dir.path());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found
                .iter()
                .any(|f| f.starts_with(&format!("process {}", child.id()))),
            "{found:?}"
        );
    }
}
