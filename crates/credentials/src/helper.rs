//! Docker credential helpers (`docker-credential-<name> get`): the exec protocol of docker-credential-helpers.
//! The server URL is written to the helper's stdin, the answer is `{"ServerURL","Username","Secret"}` on stdout;
//! a `<token>` user name means the secret is an identity token; "credentials not found in native keychain" means
//! no credential. It owns running the helper; it must never pass a secret as a process argument, never echo the
//! helper's stdout (it may contain the secret) and never wait forever (a helper is killed after a timeout).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker_config::DockerConfigEntry;
use crate::redact::SecretString;

/// The helper's "no credential" message.
pub const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error(
        "credential helper {program} not found in PATH; install it or remove it from credHelpers/credsStore in {config}"
    )]
    NotFound { program: String, config: String },
    #[error("credential helper {program}: cannot run: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "credential helper {program} did not answer within {seconds}s for {server_url}; it was stopped"
    )]
    Timeout {
        program: String,
        server_url: String,
        seconds: u64,
    },
    #[error("credential helper {program} failed for {server_url} ({status}): {message}")]
    Failed {
        program: String,
        server_url: String,
        status: String,
        message: String,
    },
    #[error(
        "credential helper {program} returned malformed output for {server_url}: expected JSON with Username and Secret"
    )]
    InvalidOutput { program: String, server_url: String },
}

/// Runs credential helpers found on a search path (normally `$PATH`).
#[derive(Debug, Clone)]
pub struct HelperRunner {
    search_path: Option<OsString>,
    timeout: Duration,
}

impl Default for HelperRunner {
    fn default() -> HelperRunner {
        HelperRunner {
            search_path: std::env::var_os("PATH"),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl HelperRunner {
    /// A runner searching `search_path` (a `PATH`-style list) instead of `$PATH`.
    pub fn with_search_path(search_path: impl Into<OsString>) -> HelperRunner {
        HelperRunner {
            search_path: Some(search_path.into()),
            ..HelperRunner::default()
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> HelperRunner {
        self.timeout = timeout;
        self
    }

    /// The executable `docker-credential-<name>` on the search path.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        let program = format!("docker-credential-{name}");
        std::env::split_paths(self.search_path.as_deref()?)
            .map(|d| d.join(&program))
            .find(|p| is_executable(p))
    }

    /// `docker-credential-<name> get` for `server_url`. `Ok(None)` when the helper has no credential. `config`
    /// names the file that configured the helper, for the not-found message.
    pub fn get(
        &self,
        name: &str,
        server_url: &str,
        config: &str,
    ) -> Result<Option<DockerConfigEntry>, HelperError> {
        let program = format!("docker-credential-{name}");
        let path = self.find(name).ok_or_else(|| HelperError::NotFound {
            program: program.clone(),
            config: config.into(),
        })?;
        // ETXTBSY: a helper just written (by an installer, or another thread whose fork still holds the
        // write descriptor until its exec) cannot be executed for a moment; retry briefly.
        let mut attempts = 0;
        let mut child = loop {
            match Command::new(&path)
                .arg("get")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                spawned => {
                    break spawned.map_err(|source| HelperError::Spawn {
                        program: program.clone(),
                        source,
                    })?;
                }
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is judged by its exit status below.
            let _ = stdin.write_all(server_url.as_bytes());
        }
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.by_ref().take(1 << 20).read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.by_ref().take(64 << 10).read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait().map_err(|source| HelperError::Spawn {
                program: program.clone(),
                source,
            })? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HelperError::Timeout {
                        program,
                        server_url: server_url.into(),
                        seconds: self.timeout.as_secs(),
                    });
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        if !status.success() {
            let text = String::from_utf8_lossy(if out.is_empty() { &err } else { &out })
                .trim()
                .to_owned();
            if text.contains(NOT_FOUND_MESSAGE) {
                return Ok(None);
            }
            // A failing helper prints an error message, not a credential; keep its first line, bounded.
            let message: String = text
                .lines()
                .next()
                .unwrap_or("no message")
                .chars()
                .take(300)
                .collect();
            return Err(HelperError::Failed {
                program,
                server_url: server_url.into(),
                status: status.to_string(),
                message,
            });
        }
        let answer: HelperAnswer =
            serde_json::from_slice(&out).map_err(|_| HelperError::InvalidOutput {
                program: program.clone(),
                server_url: server_url.into(),
            })?;
        let mut entry = DockerConfigEntry::default();
        if answer.username == "<token>" {
            entry.identity_token = Some(SecretString::new(answer.secret));
        } else {
            entry.username = answer.username;
            entry.password = SecretString::new(answer.secret);
        }
        Ok(Some(entry))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
