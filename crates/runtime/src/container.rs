//! Container lifecycle on top of runc: create (bundle + state), start in the foreground (`runc
//! run`, output to the caller's stdio, exit code returned) or detached (through the shim, see
//! [`crate::shim`]), list, stop (stop signal, grace period, SIGKILL), kill, wait, remove
//! (`runc delete --force`, unmount, remove state) and logs.
//!
//! Exit codes are recorded by whoever waits for the process: the foreground caller or the shim.
//! When that recorder died, the exit is reported without a code (never invented). It must never
//! act on a container outside its own state root and runc root.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oci::manifest::ContainerConfig;
use time::OffsetDateTime;

use crate::cgroups::CgroupSetup;
use crate::error::{Error, Result};
use crate::logs::{LogOptions, print_log};
use crate::runc::{Runc, find_runc};
use crate::spec::{EtcFiles, Overrides, SpecInput, build_spec, process_args, user_spec};
use crate::state::{Attach, ContainerState, Layout, Status, new_id, remove_dir, validate_name};
use crate::user::resolve_user;

/// How long `remove --force` and `stop` wait after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the recorder to write an exit that runc already reports.
const RECORD_WAIT: Duration = Duration::from_secs(2);

/// Mounts a root filesystem at the given (empty, existing) directory; the error text is shown
/// to the user.
pub type MountFn = Box<dyn FnOnce(&Path) -> std::result::Result<(), String> + Send>;

/// The container id a [`MountFn`] is called for, read from its target
/// (`<state root>/containers/<id>/rootfs`): a snapshotter keys the container's rootfs by it.
pub fn container_id_of_rootfs(target: &Path) -> std::result::Result<String, String> {
    target
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "rootfs mount target {} is not inside a container directory",
                target.display()
            )
        })
}

/// Where the container's root filesystem comes from.
pub enum RootfsSource {
    /// An existing directory, used in place; berth never modifies or removes it.
    Path(PathBuf),
    /// berth creates `<container dir>/rootfs` and calls the function to mount the rootfs there
    /// (e.g. `unpack::Rootfs::mount`); `remove` unmounts it.
    Mount(MountFn),
}

impl std::fmt::Debug for RootfsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootfsSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            RootfsSource::Mount(_) => f.write_str("Mount(..)"),
        }
    }
}

/// What to create.
#[derive(Debug)]
pub struct CreateOptions {
    /// Unique name; default: the first 12 characters of the id.
    pub name: Option<String>,
    /// The image reference (recorded for display).
    pub image: String,
    /// The image's runtime config (`config` of the image config JSON).
    pub config: Option<ContainerConfig>,
    pub rootfs: RootfsSource,
    pub overrides: Overrides,
    /// Remove the container once it exits (`--rm`).
    pub auto_remove: bool,
}

/// stdio of a foreground container.
#[derive(Debug)]
pub struct ForegroundIo {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl Default for ForegroundIo {
    /// stdin from /dev/null, stdout and stderr inherited from the caller.
    fn default() -> Self {
        ForegroundIo {
            stdin: Stdio::null(),
            stdout: Stdio::inherit(),
            stderr: Stdio::inherit(),
        }
    }
}

/// How to start the shim: `program args... <state root> <container id> <runc>`; for berth that is
/// `/proc/self/exe <hidden subcommand>`, whose handler calls [`crate::shim_main`].
#[derive(Debug, Clone)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// What the runtime found on this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    pub root: PathBuf,
    pub runc: PathBuf,
    pub runc_version: String,
    pub cgroups: CgroupSetup,
    /// Parent of container cgroups (`/berth/<id>` or `system.slice:berth:<id>`).
    pub cgroup_parent: String,
    /// Always `host` for now: containers share the host network namespace.
    pub network: &'static str,
}

impl std::fmt::Display for RuntimeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runc: {} ({})\ncgroups: {}\ncgroup path: {}\nnetwork: {}\nstate root: {}",
            self.runc.display(),
            self.runc_version,
            self.cgroups,
            self.cgroup_parent,
            self.network,
            self.root.display()
        )
    }
}

/// The container runtime rooted at one state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) layout: Layout,
    pub(crate) runc: Runc,
    pub(crate) cgroups: CgroupSetup,
}

/// Parse a signal given as `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| Error::UnknownSignal(s.into()));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| Error::UnknownSignal(s.into()))
}

impl Runtime {
    /// Open (creating) the state root, find runc (PATH, then /usr/sbin...) and detect cgroups.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        Self::with_runc(root, None)
    }

    /// Like [`Runtime::new`] with an explicit runc binary.
    pub fn with_runc(root: impl Into<PathBuf>, runc: Option<&Path>) -> Result<Self> {
        let root = root.into();
        let runc_path = find_runc(runc)?;
        let cgroups = CgroupSetup::detect()?;
        let layout = Layout { root: root.clone() };
        for dir in [layout.containers(), layout.runc_root()] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        }
        let runc = Runc::new(
            runc_path,
            layout.runc_root(),
            cgroups.driver == crate::cgroups::CgroupDriver::Systemd,
        );
        Ok(Runtime {
            layout,
            runc,
            cgroups,
        })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// runc, cgroup layout and driver in use.
    pub fn info(&self) -> Result<RuntimeInfo> {
        Ok(RuntimeInfo {
            root: self.layout.root.clone(),
            runc: self.runc.path().to_path_buf(),
            runc_version: self.runc.version()?,
            cgroups: self.cgroups,
            cgroup_parent: self.cgroups.cgroups_path("<id>"),
            network: "host",
        })
    }

    /// The directory of container `id` (bundle, log, state).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.layout.dir(id)
    }

    /// The CRI-format log file of container `id` (detached containers only).
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.layout.dir(id).join("log")
    }

    fn cgroup_hint(&self, st: &ContainerState) -> String {
        format!("cgroups: {}, cgroupsPath {}", self.cgroups, st.cgroups_path)
    }

    fn runc_log(&self, id: &str, sub: &str) -> PathBuf {
        self.layout.dir(id).join(format!("runc-{sub}.log"))
    }

    /// Create a container: reserve the name, prepare the rootfs, resolve the user inside it and
    /// write the bundle. Nothing runs yet.
    pub fn create(&self, opts: CreateOptions) -> Result<ContainerState> {
        self.create_labeled(opts, Default::default())
    }

    /// [`Runtime::create`] recording `labels` in the container's state (see
    /// [`ContainerState::labels`]), so a supervisor can find its containers again after a restart.
    pub fn create_labeled(
        &self,
        opts: CreateOptions,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<ContainerState> {
        let command = process_args(opts.config.as_ref(), &opts.overrides)?;
        let stop_signal = match opts.config.as_ref().and_then(|c| c.stop_signal.as_deref()) {
            Some(s) if !s.is_empty() => parse_signal(s).map_err(|_| Error::InvalidConfig {
                field: "image config StopSignal",
                value: s.into(),
                reason: "not a known signal".into(),
            })?,
            _ => Signal::SIGTERM as i32,
        };
        let id = new_id();
        let name = opts.name.clone().unwrap_or_else(|| id[..12].to_string());
        validate_name(&name)?;
        let dir = self.layout.dir(&id);
        let (rootfs, mount) = match opts.rootfs {
            RootfsSource::Path(p) => {
                let abs = fs::canonicalize(&p).map_err(|e| Error::io("resolving rootfs", &p, e))?;
                (abs, None)
            }
            RootfsSource::Mount(f) => (dir.join("rootfs"), Some(f)),
        };
        let mut st = ContainerState {
            id: id.clone(),
            name: name.clone(),
            image: opts.image.clone(),
            command,
            status: Status::Created,
            created: OffsetDateTime::now_utc(),
            started: None,
            finished: None,
            pid: None,
            pid_start: None,
            exit_code: None,
            error: None,
            attach: None,
            auto_remove: opts.auto_remove,
            stop_signal,
            rootfs: rootfs.clone(),
            rootfs_mounted: false,
            cgroups_path: self.cgroups.cgroups_path(&id),
            labels,
        };
        {
            let _lock = self.layout.lock()?;
            if let Some(other) = self.layout.all()?.into_iter().find(|s| s.name == name) {
                return Err(Error::NameInUse { name, id: other.id });
            }
            fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
            self.layout.save_unsynced(&st)?;
        }
        self.layout.sync(&st.id)?;
        let result = (|| -> Result<()> {
            if let Some(mount) = mount {
                fs::create_dir_all(&rootfs).map_err(|e| Error::io("creating", &rootfs, e))?;
                mount(&rootfs).map_err(|message| Error::RootfsMount {
                    id: id.clone(),
                    path: rootfs.clone(),
                    message,
                })?;
                st.rootfs_mounted = true;
                self.layout.save(&st)?;
            }
            self.write_bundle(&st, opts.config.as_ref(), &opts.overrides)
        })();
        if let Err(e) = result {
            self.cleanup(&st);
            return Err(e);
        }
        Ok(st)
    }

    fn write_bundle(
        &self,
        st: &ContainerState,
        config: Option<&ContainerConfig>,
        overrides: &Overrides,
    ) -> Result<()> {
        let dir = self.layout.dir(&st.id);
        let user = resolve_user(&st.rootfs, &user_spec(config, overrides))?;
        let hostname = overrides
            .hostname
            .clone()
            .unwrap_or_else(|| st.id[..12].to_string());
        let etc = EtcFiles {
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
        };
        let write = |path: &Path, content: &str| {
            fs::write(path, content).map_err(|e| Error::io("writing", path, e))
        };
        write(&etc.hosts, &hosts_file(&hostname))?;
        // Host network: the host's resolver configuration works unchanged inside.
        write(
            &etc.resolv_conf,
            &fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )?;
        write(&etc.hostname, &format!("{hostname}\n"))?;
        let spec = build_spec(&SpecInput {
            config,
            overrides,
            rootfs: &st.rootfs,
            user: &user,
            hostname: &hostname,
            etc_files: &etc,
            cgroups_path: &st.cgroups_path,
            cgroup_mode: self.cgroups.mode,
        })?;
        let json = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        let path = dir.join("config.json");
        fs::write(&path, json).map_err(|e| Error::io("writing", &path, e))
    }

    fn cleanup(&self, st: &ContainerState) {
        if st.rootfs_mounted {
            unmount(&st.rootfs);
        }
        let _ = remove_dir(&self.layout, &st.id);
    }

    fn take_for_start(&self, key: &str, attach: Attach) -> Result<ContainerState> {
        let st = {
            let _lock = self.layout.lock()?;
            let st = self.layout.resolve(key)?;
            if st.status != Status::Created || st.attach.is_some() {
                return Err(Error::NotStartable {
                    name: st.name.clone(),
                    status: st.status.to_string(),
                });
            }
            self.layout
                .update_unsynced(&st.id, |s| s.attach = Some(attach))?
        };
        self.layout.sync(&st.id)?;
        Ok(st)
    }

    /// Run a created container in the foreground with `runc run`: its stdout/stderr go to `io`,
    /// signals sent to runc are forwarded to it, and its exit status is returned (128 + signal
    /// when killed). The exit is recorded; `auto_remove` containers are removed afterwards.
    pub fn run_foreground(&self, key: &str, io: ForegroundIo) -> Result<i32> {
        let st = self.take_for_start(key, Attach::Foreground)?;
        let dir = self.layout.dir(&st.id);
        let pid_file = dir.join("pid");
        let log = self.runc_log(&st.id, "run");
        let mut cmd = self.runc.command("run", &log);
        cmd.arg("--bundle")
            .arg(&dir)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&st.id);
        cmd.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
        let mut child = cmd.spawn().map_err(|source| Error::RuncExec {
            path: self.runc.path().to_path_buf(),
            command: "run",
            source,
        })?;
        let mut recorded_pid = false;
        let mut delay = Duration::from_millis(5);
        let status = loop {
            if !recorded_pid && let Some(pid) = read_pid(&pid_file) {
                recorded_pid = true;
                self.layout.update(&st.id, |s| {
                    s.status = Status::Running;
                    s.pid = Some(pid);
                    s.pid_start = process_start(pid);
                    s.started = Some(OffsetDateTime::now_utc());
                })?;
            }
            if recorded_pid {
                break child.wait();
            }
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                Err(e) => break Err(e),
            }
        }
        .map_err(|e| Error::io("waiting for runc run of", &dir, e))?;
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        let runc_failed = log_text.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| matches!(v["level"].as_str(), Some("error" | "fatal" | "panic")))
        });
        if runc_failed || (!recorded_pid && !status.success()) {
            let err = self
                .runc
                .failure("run", &st.id, &log, "", status, &self.cgroup_hint(&st));
            let _ = self.layout.update(&st.id, |s| {
                s.status = Status::Exited;
                s.pid = None;
                s.finished = Some(OffsetDateTime::now_utc());
                s.error = Some(err.to_string());
            });
            if st.auto_remove {
                let _ = self.remove(&st.id, true);
            }
            return Err(err);
        }
        let code = exit_code(status);
        self.record_exit(&st.id, Some(code), None);
        if st.auto_remove {
            self.remove(&st.id, true)?;
        }
        Ok(code)
    }

    pub(crate) fn record_exit(&self, id: &str, code: Option<i32>, error: Option<String>) {
        let r = self.layout.update(id, |s| {
            s.status = Status::Exited;
            s.pid = None;
            s.pid_start = None;
            s.exit_code = code;
            s.finished = Some(OffsetDateTime::now_utc());
            if error.is_some() {
                s.error = error;
            }
        });
        if let Err(e) = r {
            tracing::warn!(container = %id, error = %e, "recording the exit failed");
        }
    }

    /// Start a created container detached: `shim` is spawned (`program args... <root> <id> <runc>`:
    /// it runs this runtime's runc), creates and starts the container with its stdout/stderr on pipes
    /// it copies into the log file, reports back, and keeps running after the caller exits to record
    /// the exit (and remove an `auto_remove` container). Returns once the container runs.
    pub fn start_detached(&self, key: &str, shim: &ShimCommand) -> Result<ContainerState> {
        let st = self.take_for_start(key, Attach::Detached)?;
        let dir = self.layout.dir(&st.id);
        let shim_log_path = dir.join("shim.log");
        let shim_log =
            File::create(&shim_log_path).map_err(|e| Error::io("creating", &shim_log_path, e))?;
        let mut child = Command::new(&shim.program)
            .args(&shim.args)
            .arg(&self.layout.root)
            .arg(&st.id)
            .arg(self.runc.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .spawn()
            .map_err(|e| Error::Shim {
                id: st.id.clone(),
                message: format!("spawning {}: {e}", shim.program.display()),
                log: shim_log_path.clone(),
            })?;
        let mut report = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut report);
        }
        // Reap the shim when it ends (a long-lived caller must not collect zombies).
        std::thread::spawn(move || child.wait());
        let report = report.trim();
        if let Some(pid) = report.strip_prefix("ok ") {
            tracing::debug!(container = %st.id, pid, "started detached");
            return self.layout.load(&st.id);
        }
        let message = match report.strip_prefix("error ") {
            Some(m) => m.to_string(),
            None => {
                let shim_text = fs::read_to_string(&shim_log_path).unwrap_or_default();
                format!("the shim exited without reporting: {}", shim_text.trim())
            }
        };
        Err(Error::Shim {
            id: st.id.clone(),
            message,
            log: shim_log_path,
        })
    }

    /// All containers, oldest first, with the status of running ones checked (through `/proc` for
    /// records that name their process, else runc).
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        Ok(self
            .layout
            .all()?
            .into_iter()
            .map(|s| self.refresh(s))
            .collect())
    }

    /// All container records as last written, oldest first, without asking runc: cheap enough
    /// to poll. A running record may belong to a process whose recorder died; [`Runtime::list`]
    /// or [`Runtime::inspect`] check that.
    pub fn records(&self) -> Result<Vec<ContainerState>> {
        self.layout.all()
    }

    /// One container by name, id or unique id prefix (status checked against runc).
    pub fn inspect(&self, key: &str) -> Result<ContainerState> {
        Ok(self.refresh(self.layout.resolve(key)?))
    }

    /// A running record whose process runc no longer has is reported exited without a code
    /// (the recorder may still be about to write it; nothing is saved here).
    fn refresh(&self, st: ContainerState) -> ContainerState {
        if st.status != Status::Running || self.process_alive(&st) {
            return st;
        }
        match self.layout.load(&st.id) {
            Ok(fresh) if fresh.status != Status::Running => fresh,
            _ => ContainerState {
                status: Status::Exited,
                pid: None,
                pid_start: None,
                error: Some("the exit status was not recorded (yet)".into()),
                ..st
            },
        }
    }

    /// Whether the record's process still runs. A record that names its process (pid and start time)
    /// is answered from `/proc` (no runc process is spawned: supervisors poll this for every running
    /// container); older records ask `runc state`.
    fn process_alive(&self, st: &ContainerState) -> bool {
        if let (Some(pid), Some(start)) = (st.pid, st.pid_start) {
            match proc_stat(pid) {
                Some(p) => return p.start == start && !p.is_zombie(),
                // No such process; unless /proc itself is missing, where only runc can tell.
                None if Path::new("/proc/self/stat").exists() => return false,
                None => {}
            }
        }
        match self.runc.state(&st.id, &self.runc_log(&st.id, "state")) {
            Ok(Some(s)) => s.status != "stopped",
            Ok(None) => false,
            // When runc cannot tell, trust the record rather than report a false exit.
            Err(_) => true,
        }
    }

    /// Send `signal` to the container's init process.
    pub fn kill(&self, key: &str, signal: i32) -> Result<()> {
        let st = self.layout.resolve(key)?;
        match st.status {
            Status::Exited => return Ok(()),
            Status::Running => {}
            // Started but not yet recorded as running (the starter is still reading runc's pid file):
            // runc is the judge, so a signal sent right after the process starts is not lost.
            Status::Created => {
                let log = self.runc_log(&st.id, "state");
                let live = self
                    .runc
                    .state(&st.id, &log)?
                    .is_some_and(|s| matches!(s.status.as_str(), "created" | "running" | "paused"));
                if !live {
                    return Ok(());
                }
            }
        }
        self.runc
            .kill(&st.id, signal, false, &self.runc_log(&st.id, "kill"))
    }

    /// Wait until the container has exited; `None` waits forever.
    pub fn wait(&self, key: &str, timeout: Option<Duration>) -> Result<ContainerState> {
        let st = self.layout.resolve(key)?;
        self.wait_exit(st, timeout)
    }

    fn wait_exit(
        &self,
        mut last: ContainerState,
        timeout: Option<Duration>,
    ) -> Result<ContainerState> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut gone_since: Option<Instant> = None;
        loop {
            match self.layout.load(&last.id) {
                Ok(st) => last = st,
                // Removed meanwhile (auto-remove): it has exited.
                Err(Error::NotFound(_)) => {
                    return Ok(ContainerState {
                        status: Status::Exited,
                        pid: None,
                        ..last
                    });
                }
                Err(e) => return Err(e),
            }
            if last.status == Status::Exited
                || (last.status == Status::Created && last.attach.is_none())
            {
                return Ok(last);
            }
            if last.status == Status::Running && !self.process_alive(&last) {
                let since = *gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RECORD_WAIT {
                    self.record_exit(
                        &last.id,
                        None,
                        Some("the exit status was lost: the process that watched the container is gone".into()),
                    );
                    return self.layout.load(&last.id);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout {
                    name: last.name.clone(),
                    seconds: timeout.map_or(0, |t| t.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop: the stop signal, then SIGKILL after `grace`. Returns the exited state.
    pub fn stop(&self, key: &str, grace: Duration) -> Result<ContainerState> {
        let st = self.inspect(key)?;
        if st.status != Status::Running {
            return Ok(st);
        }
        let log = self.runc_log(&st.id, "kill");
        self.runc.kill(&st.id, st.stop_signal, false, &log)?;
        match self.wait_exit(st.clone(), Some(grace)) {
            Ok(done) => return Ok(done),
            Err(Error::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        self.runc.kill(&st.id, Signal::SIGKILL as i32, true, &log)?;
        self.wait_exit(st.clone(), Some(KILL_WAIT))
            .map_err(|e| match e {
                Error::Timeout { name, .. } => Error::Timeout {
                    name,
                    seconds: (grace + KILL_WAIT).as_secs(),
                },
                e => e,
            })
    }

    /// Remove a container: a running one only with `force` (it is killed first); then
    /// `runc delete --force`, unmount of a rootfs berth mounted, and removal of its directory.
    pub fn remove(&self, key: &str, force: bool) -> Result<()> {
        let st = match self.layout.resolve(key) {
            Ok(st) => self.refresh(st),
            Err(e) => return Err(e),
        };
        if st.status == Status::Running {
            if !force {
                return Err(Error::Running { name: st.name });
            }
            self.runc.kill(
                &st.id,
                Signal::SIGKILL as i32,
                true,
                &self.runc_log(&st.id, "kill"),
            )?;
            match self.wait_exit(st.clone(), Some(KILL_WAIT)) {
                Ok(_) | Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let _lock = self.layout.lock()?;
        let dir = self.layout.dir(&st.id);
        if dir.exists() {
            self.runc
                .delete(&st.id, true, &self.runc_log(&st.id, "delete"))?;
        }
        self.cleanup(&st);
        Ok(())
    }

    /// Print a detached container's log (see [`LogOptions`]); foreground containers have none.
    pub fn logs(
        &self,
        key: &str,
        opts: LogOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<()> {
        let st = self.layout.resolve(key)?;
        let path = self.log_path(&st.id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let id = st.id.clone();
        print_log(file, opts, stdout, stderr, || {
            self.layout.load(&id).is_ok_and(|s| {
                s.status == Status::Running || (s.status == Status::Created && s.attach.is_some())
            })
        })
        .map_err(|e| Error::io("reading", &path, e))
    }

    pub(crate) fn open_log(&self, id: &str) -> Result<File> {
        let path = self.log_path(id);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))
    }
}

/// `/etc/hosts` for a host-network container: localhost entries plus the container hostname.
fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start: u64,
}

impl ProcStat {
    /// Exited, not yet (or never to be) reaped.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse `/proc/<pid>/stat` (by hand: two fields of one line, after the parenthesised command name,
/// which may itself contain spaces and parentheses, hence the last `)`).
pub(crate) fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come between the state (3) and the start time (22).
    let start = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start })
}

/// The state and start time of process `pid`; `None` when there is no such process.
pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_proc_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of process `pid` (see [`ContainerState::pid_start`]).
pub(crate) fn process_start(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|p| p.start)
}

/// Exit status as a shell reports it: the code, or 128 + signal.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Detach-unmount a rootfs berth mounted (not mounted or already gone is fine).
pub(crate) fn unmount(path: &Path) {
    use nix::mount::{MntFlags, umount2};
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unmounting the rootfs failed")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_container_id_comes_from_the_mount_targets_directory() {
        use std::path::{Path, PathBuf};
        let id = "ab".repeat(32);
        let target = PathBuf::from(format!("/var/lib/berth/runtime/containers/{id}/rootfs"));
        assert_eq!(super::container_id_of_rootfs(&target).unwrap(), id);
        assert!(super::container_id_of_rootfs(Path::new("/rootfs")).is_err());
        assert!(super::container_id_of_rootfs(Path::new("/x/../rootfs")).is_err());
    }

    use super::*;

    #[test]
    fn signals_parse_by_name_short_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGQUIT").unwrap(), 3);
        assert!(matches!(
            parse_signal("SIGNOPE"),
            Err(Error::UnknownSignal(_))
        ));
        assert!(parse_signal("999").is_err());
    }

    fn running_record(pid: i32, pid_start: Option<u64>) -> ContainerState {
        ContainerState {
            id: "ab".repeat(32),
            name: "probe".into(),
            image: "img".into(),
            command: vec!["sleep".into()],
            status: Status::Running,
            created: OffsetDateTime::now_utc(),
            started: Some(OffsetDateTime::now_utc()),
            finished: None,
            pid: Some(pid),
            pid_start,
            exit_code: None,
            error: None,
            attach: Some(Attach::Detached),
            auto_remove: false,
            stop_signal: 15,
            rootfs: "/r".into(),
            rootfs_mounted: false,
            cgroups_path: "/berth/probe".into(),
            labels: Default::default(),
        }
    }

    /// A runtime whose runc cannot run: any liveness answer it gives came from `/proc`.
    fn runtime_without_runc(root: &Path) -> Runtime {
        let layout = Layout {
            root: root.to_path_buf(),
        };
        Runtime {
            runc: Runc::new("/nonexistent/runc".into(), layout.runc_root(), false),
            layout,
            cgroups: CgroupSetup {
                mode: crate::cgroups::CgroupMode::Unified,
                driver: crate::cgroups::CgroupDriver::Cgroupfs,
            },
        }
    }

    #[test]
    fn proc_stat_parses_state_and_start_time_past_a_command_with_parentheses() {
        let line = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_proc_stat(line),
            Some(ProcStat {
                state: 'S',
                start: 987654
            })
        );
        assert!(parse_proc_stat("4242 (cut) S 1 2").is_none());
        let own = proc_stat(std::process::id() as i32).expect("own /proc entry");
        assert!(!own.is_zombie());
    }

    #[test]
    fn liveness_of_a_recorded_process_comes_from_proc_without_runc() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime_without_runc(dir.path());
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let start = process_start(pid).expect("the child's start time");
        assert!(rt.process_alive(&running_record(pid, Some(start))));
        // The same pid with another start time is another process (pid reuse): not the container.
        assert!(!rt.process_alive(&running_record(pid, Some(start + 1))));
        child.kill().unwrap();
        // Not reaped yet: a zombie is an exited container.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!rt.process_alive(&running_record(pid, Some(start))));
        child.wait().unwrap();
        assert!(!rt.process_alive(&running_record(pid, Some(start))));
        // Without a start time only runc can tell; a runc that cannot answer leaves the record trusted.
        assert!(rt.process_alive(&running_record(pid, None)));
    }

    #[test]
    fn hosts_file_names_localhost_and_the_container() {
        let h = hosts_file("box");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("127.0.1.1\tbox\n"));
    }
}
