//! The runc driver: locates the binary, builds every invocation with berth's private state
//! root (`--root`), the cgroup driver flag and a JSON log file (`--log-format json --log FILE`),
//! and turns a failed invocation into an error carrying runc's own message parsed from that log
//! (falling back to its stderr). It must never run runc against the default `/run/runc` root,
//! so containers of other tools are never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Directories searched after `PATH` (Debian installs runc in /usr/sbin, which is not in the
/// `PATH` of non-root shells).
const FALLBACK_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// A configured runc.
#[derive(Debug, Clone)]
pub struct Runc {
    path: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
}

/// What `runc state` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RuncState {
    pub id: String,
    pub pid: i64,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
}

/// Find runc: `explicit` if given, else `PATH`, else the sbin directories.
pub fn find_runc(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(Error::RuncNotFound)
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("runc"))
        .find(|p| is_executable(p))
        .ok_or(Error::RuncNotFound)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// runc's error text from its JSON log lines (`{"level":"error","msg":...}`), else from stderr.
pub fn runc_message(log: &str, stderr: &str, status: std::process::ExitStatus) -> String {
    let from_log: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal" | "panic")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect();
    if !from_log.is_empty() {
        return from_log.join("; ");
    }
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        return stderr.to_string();
    }
    format!("runc exited with {status} and logged no error")
}

impl Runc {
    /// A runc at `path` keeping its state under `root`.
    pub fn new(path: PathBuf, root: PathBuf, systemd_cgroup: bool) -> Self {
        Runc {
            path,
            root,
            systemd_cgroup,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `runc --version`, first line (e.g. `runc version 1.1.5+ds1`).
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.path)
            .arg("--version")
            .output()
            .map_err(|source| Error::RuncExec {
                path: self.path.clone(),
                command: "--version",
                source,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string())
    }

    /// A command `runc <global flags> <sub>` logging to `log` (truncated first).
    pub fn command(&self, sub: &str, log: &Path) -> Command {
        let _ = fs::write(log, b"");
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(log)
            .args(["--log-format", "json"]);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.arg(sub);
        cmd
    }

    /// Run `cmd` to completion; on failure, return runc's message.
    pub fn run_checked(
        &self,
        mut cmd: Command,
        sub: &'static str,
        id: &str,
        log: &Path,
        hint: &str,
    ) -> Result<String> {
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| Error::RuncExec {
                path: self.path.clone(),
                command: sub,
                source,
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(self.failure(
            sub,
            id,
            log,
            &String::from_utf8_lossy(&out.stderr),
            out.status,
            hint,
        ))
    }

    /// Run `cmd` to completion keeping the stdout/stderr the caller gave it (for `run --detach`,
    /// whose stdio the container inherits: capturing it would wait for the container's EOF);
    /// on failure, return runc's message from its JSON log.
    pub fn run_passthrough(
        &self,
        mut cmd: Command,
        sub: &'static str,
        id: &str,
        log: &Path,
        hint: &str,
    ) -> Result<()> {
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|source| Error::RuncExec {
                path: self.path.clone(),
                command: sub,
                source,
            })?;
        if status.success() {
            return Ok(());
        }
        Err(self.failure(sub, id, log, "", status, hint))
    }

    /// The error for a failed invocation.
    pub fn failure(
        &self,
        sub: &'static str,
        id: &str,
        log: &Path,
        stderr: &str,
        status: std::process::ExitStatus,
        hint: &str,
    ) -> Error {
        let log_text = fs::read_to_string(log).unwrap_or_default();
        Error::Runc {
            command: sub,
            id: id.to_string(),
            message: runc_message(&log_text, stderr, status),
            hint: if hint.is_empty() {
                String::new()
            } else {
                format!("; {hint}")
            },
        }
    }

    /// `runc state`; `None` when runc does not know the container.
    pub fn state(&self, id: &str, log: &Path) -> Result<Option<RuncState>> {
        let out = self
            .command("state", log)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::RuncExec {
                path: self.path.clone(),
                command: "state",
                source,
            })?;
        if !out.status.success() {
            let msg = runc_message(
                &fs::read_to_string(log).unwrap_or_default(),
                &String::from_utf8_lossy(&out.stderr),
                out.status,
            );
            if msg.contains("does not exist") || msg.contains("not exist") {
                return Ok(None);
            }
            return Err(Error::Runc {
                command: "state",
                id: id.into(),
                message: msg,
                hint: String::new(),
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| Error::Runc {
                command: "state",
                id: id.into(),
                message: format!("unparsable output: {e}"),
                hint: String::new(),
            })
    }

    /// `runc kill [--all] <id> <signal>`; a container that is already gone is not an error.
    pub fn kill(&self, id: &str, signal: i32, all: bool, log: &Path) -> Result<()> {
        let mut cmd = self.command("kill", log);
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        match self.run_checked(cmd, "kill", id, log, "") {
            Ok(_) => Ok(()),
            Err(Error::Runc { message, .. }) if gone(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `runc delete [--force] <id>`; a container runc does not know is not an error.
    pub fn delete(&self, id: &str, force: bool, log: &Path) -> Result<()> {
        let mut cmd = self.command("delete", log);
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        match self.run_checked(cmd, "delete", id, log, "") {
            Ok(_) => Ok(()),
            Err(Error::Runc { message, .. }) if message.contains("does not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn gone(message: &str) -> bool {
    message.contains("does not exist")
        || message.contains("not running")
        || message.contains("process already finished")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn runc_message_prefers_json_log_errors_over_stderr() {
        let log = r#"{"level":"warning","msg":"ignored","time":"2026-01-01T00:00:00Z"}
{"level":"error","msg":"runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"2026-01-01T00:00:00Z"}
not json
"#;
        let status = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(
            runc_message(log, "stderr text", status),
            "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(runc_message("", " stderr text\n", status), "stderr text");
        assert!(runc_message("", "", status).contains("exit status: 1"));
    }

    #[test]
    fn missing_runc_says_how_to_install_it() {
        let e = find_runc(Some(Path::new("/nonexistent/runc"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "runc not found in PATH: install Debian's runc (apt-get install runc)"
        );
    }

    #[test]
    fn runc_is_found_on_this_host() {
        let p = find_runc(None).expect("runc is installed on the test host");
        assert!(p.ends_with("runc"));
    }
}
